//! k nearest neighbours by cosine similarity over a pool's embeddings.
//!
//! Vectors are normalised once (in f64) when the index is built, so a similarity is one dot
//! product. Similarities are compared at a resolution of 1e-9, far coarser than the rounding of
//! the arithmetic, so vectors at the same angle tie exactly; ties go to the pool row with the
//! smaller id, so the pick depends neither on the order of the pool file nor on rounding.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One pool vector's place in the ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Index into the pool.
    pub index: usize,
    pub similarity: f64,
}

/// The normalised vectors of a pool, with the ids that order ties.
pub struct KnnIndex {
    ids: Vec<String>,
    vectors: Vec<Vec<f64>>,
    dims: usize,
}

/// The grid similarities are compared on.
const RESOLUTION: f64 = 1e9;

/// `a . b`, rounded to the comparison grid.
fn similarity(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    (dot * RESOLUTION).round() / RESOLUTION
}

/// `a` ranks before `b`: higher similarity, then smaller id.
fn ranks_before(a: (f64, &str), b: (f64, &str)) -> bool {
    match a.0.total_cmp(&b.0) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.1 < b.1,
    }
}

/// A heap entry ordered so that the *worst* of the kept neighbours is on top.
struct Kept<'a> {
    similarity: f64,
    id: &'a str,
    index: usize,
}

impl PartialEq for Kept<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Kept<'_> {}
impl PartialOrd for Kept<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kept<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Greater = worse: lower similarity, then larger id.
        other
            .similarity
            .total_cmp(&self.similarity)
            .then_with(|| self.id.cmp(other.id))
    }
}

/// Unit-length copy of `v` in f64 (a zero vector stays zero: it is similar to nothing).
pub fn normalised(v: &[f32]) -> Vec<f64> {
    let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if norm == 0.0 {
        return v.iter().map(|x| *x as f64).collect();
    }
    v.iter().map(|x| *x as f64 / norm).collect()
}

impl KnnIndex {
    /// `entries`: (id, vector) of each pool row, in pool order. All vectors must have the same
    /// length.
    pub fn new(entries: Vec<(String, Vec<f32>)>) -> Result<KnnIndex, String> {
        let dims = entries.first().map(|(_, v)| v.len()).unwrap_or(0);
        if let Some((id, v)) = entries.iter().find(|(_, v)| v.len() != dims) {
            return Err(format!(
                "pool row `{id}` has a {}-dimensional embedding, others {dims}: embed the pool and the rows with one model",
                v.len()
            ));
        }
        let (ids, vectors) = entries
            .into_iter()
            .map(|(id, v)| (id, normalised(&v)))
            .unzip();
        Ok(KnnIndex { ids, vectors, dims })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `k` pool entries most similar to `query`, best first, skipping those `exclude`
    /// rejects (the row itself, an identical question).
    pub fn nearest(
        &self,
        query: &[f32],
        k: usize,
        exclude: impl Fn(usize) -> bool,
    ) -> Vec<Neighbour> {
        if k == 0 {
            return Vec::new();
        }
        let query = normalised(query);
        let mut heap: BinaryHeap<Kept> = BinaryHeap::with_capacity(k + 1);
        for (index, vector) in self.vectors.iter().enumerate() {
            if exclude(index) {
                continue;
            }
            let candidate = Kept {
                similarity: similarity(&query, vector),
                id: &self.ids[index],
                index,
            };
            if heap.len() < k {
                heap.push(candidate);
            } else if let Some(worst) = heap.peek()
                && ranks_before(
                    (candidate.similarity, candidate.id),
                    (worst.similarity, worst.id),
                )
            {
                heap.pop();
                heap.push(candidate);
            }
        }
        // Ascending by "worseness" is best first.
        heap.into_sorted_vec()
            .into_iter()
            .map(|kept| Neighbour {
                index: kept.index,
                similarity: kept.similarity,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Every similarity computed, everything sorted: what `nearest` must equal.
    fn brute_force(
        entries: &[(String, Vec<f32>)],
        query: &[f32],
        k: usize,
        exclude: &dyn Fn(usize) -> bool,
    ) -> Vec<(usize, f64)> {
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let mut all: Vec<(usize, f64, &str)> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !exclude(*i))
            .map(|(i, (id, v))| {
                let cosine = v
                    .iter()
                    .zip(query)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
                    / (norm(v) * norm(query));
                // The documented comparison grid.
                (i, (cosine * 1e9).round() / 1e9, id.as_str())
            })
            .collect();
        all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.2.cmp(b.2)));
        all.into_iter().take(k).map(|(i, s, _)| (i, s)).collect()
    }

    #[test]
    fn nearest_equals_brute_force_on_random_vectors() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let entries: Vec<(String, Vec<f32>)> = (0..300)
            .map(|i| {
                (
                    format!("row-{i:03}"),
                    (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                )
            })
            .collect();
        let index = KnnIndex::new(entries.clone()).unwrap();
        for q in 0..40 {
            let query: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let exclude = |i: usize| i % 7 == q % 7;
            for k in [1, 5, 12] {
                let got: Vec<(usize, f64)> = index
                    .nearest(&query, k, exclude)
                    .into_iter()
                    .map(|n| (n.index, n.similarity))
                    .collect();
                let want = brute_force(&entries, &query, k, &exclude);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.0, w.0, "query {q} k {k}");
                    assert!((g.1 - w.1).abs() < 1e-6, "{} vs {}", g.1, w.1);
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_smaller_id_whatever_the_pool_order() {
        // Four identical directions (scaled), one other; ids deliberately out of order.
        let entries = vec![
            ("d".to_string(), vec![2.0, 0.0]),
            ("b".to_string(), vec![1.0, 0.0]),
            ("x".to_string(), vec![0.0, 1.0]),
            ("c".to_string(), vec![3.0, 0.0]),
            ("a".to_string(), vec![0.5, 0.0]),
        ];
        let index = KnnIndex::new(entries.clone()).unwrap();
        let picked: Vec<&str> = index
            .nearest(&[1.0, 0.0], 3, |_| false)
            .iter()
            .map(|n| entries[n.index].0.as_str())
            .collect();
        assert_eq!(picked, ["a", "b", "c"]);
        // Excluded entries are never returned, even when they are the nearest.
        let picked: Vec<&str> = index
            .nearest(&[1.0, 0.0], 5, |i| entries[i].0 == "a")
            .iter()
            .map(|n| entries[n.index].0.as_str())
            .collect();
        assert_eq!(picked, ["b", "c", "d", "x"]);
    }

    #[test]
    fn mixed_dimensions_are_refused() {
        let err = KnnIndex::new(vec![("a".into(), vec![1.0]), ("b".into(), vec![1.0, 2.0])])
            .err()
            .unwrap();
        assert!(err.contains("pool row `b`"), "{err}");
    }
}
