//! The seeded pool few-shot examples are drawn from at random (`--examples` without
//! `--knn`).

use std::collections::{HashMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{Row, derived_seed};

/// Few-shot examples: for each subject a fixed, seeded order of candidate rows; a row's
/// examples are the first `k` candidates of its subject that are not the row itself (same id
/// or same question), topped up from the other subjects if its own has too few. Rows of one
/// subject thus share their examples, and so a prompt prefix the local model can reuse.
pub struct ExamplePool {
    by_subject: HashMap<String, Vec<Row>>,
    all: Vec<Row>,
}

impl ExamplePool {
    pub fn new(rows: Vec<Row>, seed: u64) -> ExamplePool {
        let mut by_subject: HashMap<String, Vec<Row>> = HashMap::new();
        for row in &rows {
            by_subject
                .entry(row.subject.clone().unwrap_or_default())
                .or_default()
                .push(row.clone());
        }
        for (subject, rows) in by_subject.iter_mut() {
            rows.shuffle(&mut ChaCha8Rng::seed_from_u64(derived_seed(seed, subject)));
        }
        let mut all = rows;
        all.shuffle(&mut ChaCha8Rng::seed_from_u64(derived_seed(seed, "*all*")));
        ExamplePool { by_subject, all }
    }

    pub fn examples_for(&self, row: &Row, k: usize) -> Vec<&Row> {
        let usable =
            |candidate: &&Row| candidate.id != row.id && candidate.question != row.question;
        let subject = row.subject.clone().unwrap_or_default();
        let mut chosen: Vec<&Row> = self
            .by_subject
            .get(&subject)
            .into_iter()
            .flatten()
            .filter(usable)
            .take(k)
            .collect();
        if chosen.len() < k {
            let have: HashSet<&str> = chosen.iter().map(|r| r.id.as_str()).collect();
            let extra: Vec<&Row> = self
                .all
                .iter()
                .filter(usable)
                .filter(|r| !have.contains(r.id.as_str()))
                .take(k - chosen.len())
                .collect();
            chosen.extend(extra);
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, subject: &str) -> Row {
        Row {
            id: id.into(),
            dataset: None,
            subject: Some(subject.into()),
            question: format!("q {id}"),
            choices: vec!["a".into(), "b".into()],
            correct_answer: Some(0),
            extra: Default::default(),
        }
    }

    #[test]
    fn examples_never_include_the_row_and_are_shared_within_a_subject() {
        let rows: Vec<Row> = (0..10)
            .map(|i| row(&i.to_string(), if i < 6 { "s" } else { "t" }))
            .collect();
        let pool = ExamplePool::new(rows.clone(), 1);
        for r in &rows {
            let examples = pool.examples_for(r, 5);
            assert_eq!(examples.len(), 5);
            assert!(examples.iter().all(|e| e.id != r.id));
        }
        // Two rows of "s" outside each other's first five share all five examples.
        let first = pool.examples_for(&row("x", "s"), 5);
        let second = pool.examples_for(&row("y", "s"), 5);
        assert_eq!(
            first.iter().map(|r| &r.id).collect::<Vec<_>>(),
            second.iter().map(|r| &r.id).collect::<Vec<_>>()
        );
        assert!(first.iter().all(|r| r.subject.as_deref() == Some("s")));
    }
}
