//! Choosing rows: `--subjects`, `--sample N --seed S` (stratified by subject), `--limit`, shards,
//! and few-shot examples. Rows stream: only a `--sample` keeps ids in memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::shard::shard_of;
use super::{DatasetSource, Row};

/// Which rows a run takes, in dataset order.
#[derive(Debug, Clone, Default)]
pub struct RowSelection {
    pub subjects: Option<HashSet<String>>,
    /// Ids chosen by `--sample`.
    pub sample: Option<HashSet<String>>,
    pub limit: Option<u64>,
    /// `(index, count)`: rows whose id hashes to `index` modulo `count`.
    pub shard: Option<(u32, u32)>,
}

/// A seed derived from the user's seed and a name, so each subject (or row) gets its own
/// reproducible random stream that does not shift when other subjects are added.
pub fn derived_seed(seed: u64, name: &str) -> u64 {
    let digest = Sha256::digest(format!("{seed}:{name}").as_bytes());
    u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

impl RowSelection {
    fn subject_ok(&self, row: &Row) -> bool {
        match &self.subjects {
            None => true,
            Some(set) => row.subject.as_ref().is_some_and(|s| set.contains(s)),
        }
    }

    /// Whether the row is taken, not counting `--limit` (the caller counts).
    pub fn takes(&self, row: &Row) -> bool {
        self.subject_ok(row)
            && self.sample.as_ref().is_none_or(|ids| ids.contains(&row.id))
            && self
                .shard
                .is_none_or(|(index, count)| shard_of(&row.id, count) == index)
    }
}

/// Picks `n` row ids stratified by subject: each subject gets its share of `n` in proportion
/// to its size (largest remainders round), drawn uniformly with a seeded RNG.
pub fn stratified_sample(
    source: &DatasetSource,
    selection: &RowSelection,
    n: u64,
    seed: u64,
) -> HashSet<String> {
    let mut by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in source.rows().flatten() {
        if selection.subject_ok(&row) {
            by_subject
                .entry(row.subject.clone().unwrap_or_default())
                .or_default()
                .push(row.id);
        }
    }
    let total: u64 = by_subject.values().map(|v| v.len() as u64).sum();
    if n >= total {
        return by_subject.into_values().flatten().collect();
    }
    let mut shares: Vec<(String, u64, f64)> = by_subject
        .iter()
        .map(|(subject, ids)| {
            let exact = n as f64 * ids.len() as f64 / total as f64;
            (subject.clone(), exact.floor() as u64, exact - exact.floor())
        })
        .collect();
    let mut left = n - shares.iter().map(|s| s.1).sum::<u64>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.total_cmp(&shares[a].2).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    let mut chosen = HashSet::new();
    for (subject, take, _) in shares {
        let mut ids = by_subject.remove(&subject).unwrap_or_default();
        let mut rng = ChaCha8Rng::seed_from_u64(derived_seed(seed, &subject));
        ids.shuffle(&mut rng);
        chosen.extend(ids.into_iter().take(take as usize));
    }
    chosen
}

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

    #[test]
    fn shards_partition_the_ids() {
        let ids: Vec<String> = (0..1000).map(|i| format!("mmlu/x/test/{i}")).collect();
        let mut counts = [0; 4];
        for id in &ids {
            counts[shard_of(id, 4) as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<i32>(), 1000);
        assert!(counts.iter().all(|&c| c > 200), "{counts:?}");
    }
}
