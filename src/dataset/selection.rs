//! Choosing rows: `--subjects`, `--sample N --seed S` (stratified by subject), `--limit` and
//! shards (few-shot examples are `crate::examples`). Rows stream: only a `--sample` keeps ids
//! in memory.

use std::collections::{BTreeMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::shard::shard_of;
use super::{DatasetSource, Row, derived_seed};

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

#[cfg(test)]
mod tests {
    use super::*;

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
