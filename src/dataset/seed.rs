//! Reproducible random streams: every seeded choice (a `--sample`, the few-shot examples, an
//! ensemble's permutations) draws from a seed derived from the user's `--seed` and a name.

use sha2::{Digest, Sha256};

/// A seed derived from the user's seed and a name, so each subject (or row) gets its own
/// reproducible random stream that does not shift when other subjects are added.
pub fn derived_seed(seed: u64, name: &str) -> u64 {
    let digest = Sha256::digest(format!("{seed}:{name}").as_bytes());
    u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}
