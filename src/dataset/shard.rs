//! Sharding one run over several processes or nodes.
//!
//! `--shard K/N` names shard K of N, **0-based** (0/4, 1/4, 2/4, 3/4), because every rank a
//! scheduler hands out is 0-based too: MPI's `OMPI_COMM_WORLD_RANK`, PyTorch's `RANK`, a
//! Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`. `--shard auto` reads them.
//!
//! A row belongs to the shard `sha256(row id) mod N`. Deciding by the id, not by the row's
//! position, makes the split independent of file order, of how the dataset is read (one file
//! or many, parquet or JSONL) and of what a shard has already done: a killed shard that is
//! resumed claims exactly the same rows, and two shards can never both own a row. SHA-256
//! (not `std`'s `DefaultHasher`) because the assignment must not change between Rust
//! versions or machines: the shards of one run may be built or run on different nodes.

use sha2::{Digest, Sha256};

/// Environment variable naming the shard count where the scheduler gives only an index
/// (a Kubernetes Indexed Job sets `JOB_COMPLETION_INDEX` but not the number of completions).
pub const SHARD_COUNT_ENV: &str = "EVALR_SHARD_COUNT";

/// Rank/size variable pairs `--shard auto` reads, in this order.
const RANK_SIZE_ENVS: [(&str, &str); 2] = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("RANK", "WORLD_SIZE"),
];
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Shard `index` of `count` (0-based, `index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error(
        "invalid --shard value '{0}': expected K/N with 0 <= K < N (0-based, e.g. 0/4 ... 3/4) or 'auto'"
    )]
    Syntax(String),
    #[error("invalid --shard value '{value}': shard index {index} is out of range for {count} shards (indices are 0-based: 0..={last})", last = count - 1)]
    IndexOutOfRange {
        value: String,
        index: u32,
        count: u32,
    },
    #[error("invalid --shard value '{0}': the shard count must be at least 1")]
    ZeroCount(String),
    #[error("--shard auto: {name}='{value}' is not a non-negative integer")]
    BadEnv { name: String, value: String },
    #[error("--shard auto: {rank_name}={index} is out of range for {size_name}={count}")]
    EnvOutOfRange {
        rank_name: String,
        index: u32,
        size_name: String,
        count: u32,
    },
    #[error(
        "--shard auto: {INDEX_ENV} is set but the shard count is not: set {SHARD_COUNT_ENV} to the number of completions"
    )]
    MissingCount,
    #[error(
        "--shard auto: no rank in the environment (looked for OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE, RANK/WORLD_SIZE, JOB_COMPLETION_INDEX with {SHARD_COUNT_ENV}); run under a distributed job or pass --shard K/N"
    )]
    NoRank,
}

impl ShardSpec {
    /// The single shard that owns everything.
    pub const WHOLE: ShardSpec = ShardSpec { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        let value = format!("{index}/{count}");
        if count == 0 {
            return Err(ShardError::ZeroCount(value));
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange {
                value,
                index,
                count,
            });
        }
        Ok(ShardSpec { index, count })
    }

    /// Parses a `--shard` value: `K/N`, or `auto` resolved from the process environment.
    pub fn from_arg(value: &str) -> Result<Self, ShardError> {
        Self::from_arg_with_env(value, |name| std::env::var(name).ok())
    }

    /// As [`ShardSpec::from_arg`], reading variables through `env` (tests pass a map).
    pub fn from_arg_with_env(
        value: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ShardError> {
        let trimmed = value.trim();
        if trimmed.eq_ignore_ascii_case("auto") {
            return Self::from_env(env);
        }
        let (k, n) = trimmed
            .split_once('/')
            .ok_or_else(|| ShardError::Syntax(value.to_string()))?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| ShardError::Syntax(value.to_string()))
        };
        let (index, count) = (parse(k)?, parse(n)?);
        if count == 0 {
            return Err(ShardError::ZeroCount(value.to_string()));
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange {
                value: value.to_string(),
                index,
                count,
            });
        }
        Ok(ShardSpec { index, count })
    }

    /// The rank and size a distributed job gives this process.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        let number = |name: &str| -> Result<Option<u32>, ShardError> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| ShardError::BadEnv {
                        name: name.to_string(),
                        value: v,
                    }),
            }
        };
        for (rank_name, size_name) in RANK_SIZE_ENVS {
            if let (Some(index), Some(count)) = (number(rank_name)?, number(size_name)?) {
                return Self::checked(rank_name, index, size_name, count);
            }
        }
        if let Some(index) = number(INDEX_ENV)? {
            let count = number(SHARD_COUNT_ENV)?.ok_or(ShardError::MissingCount)?;
            return Self::checked(INDEX_ENV, index, SHARD_COUNT_ENV, count);
        }
        Err(ShardError::NoRank)
    }

    fn checked(
        rank_name: &str,
        index: u32,
        size_name: &str,
        count: u32,
    ) -> Result<Self, ShardError> {
        if index >= count {
            return Err(ShardError::EnvOutOfRange {
                rank_name: rank_name.to_string(),
                index,
                size_name: size_name.to_string(),
                count,
            });
        }
        Ok(ShardSpec { index, count })
    }

    /// Whether this shard runs the row with this id.
    pub fn owns(&self, row_id: &str) -> bool {
        shard_of(row_id, self.count) == self.index
    }

    /// This shard's part of a quota the shards share (one deployment's limit): `rpm/N` and
    /// `tpm/N`, rounded down but never below 1 so that a small quota still lets every shard
    /// make progress.
    pub fn split_quota(&self, rpm: u32, tpm: u32) -> (u32, u32) {
        let n = self.count.max(1);
        let part = |x: u32| if x == 0 { 0 } else { (x / n).max(1) };
        (part(rpm), part(tpm))
    }

    /// The folder a shard writes inside the shared results folder: `shard-K-of-N`.
    pub fn folder_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// Reads `shard-K-of-N` back.
    pub fn from_folder_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("shard-")?;
        let (k, n) = rest.split_once("-of-")?;
        ShardSpec::new(k.parse().ok()?, n.parse().ok()?).ok()
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (0-based) that owns `row_id` among `count` shards: the first 8 bytes of the
/// id's SHA-256 as a little-endian integer, modulo `count` - the rule `run` filters rows by.
pub fn shard_of(row_id: &str, count: u32) -> u32 {
    let digest = Sha256::digest(row_id.as_bytes());
    (u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8])) % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn parses_k_of_n_zero_based() {
        let none = env(&[]);
        assert_eq!(
            ShardSpec::from_arg_with_env("0/4", &none),
            Ok(ShardSpec { index: 0, count: 4 })
        );
        assert_eq!(
            ShardSpec::from_arg_with_env(" 3/4 ", &none),
            Ok(ShardSpec { index: 3, count: 4 })
        );
        assert_eq!(
            ShardSpec::from_arg_with_env("0/1", &none),
            Ok(ShardSpec::WHOLE)
        );
    }

    #[test]
    fn rejects_bad_values_with_a_message_that_says_what_is_expected() {
        let none = env(&[]);
        let err = ShardSpec::from_arg_with_env("4/4", &none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --shard value '4/4': shard index 4 is out of range for 4 shards (indices are 0-based: 0..=3)"
        );
        assert_eq!(
            ShardSpec::from_arg_with_env("1-4", &none)
                .unwrap_err()
                .to_string(),
            "invalid --shard value '1-4': expected K/N with 0 <= K < N (0-based, e.g. 0/4 ... 3/4) or 'auto'"
        );
        assert!(matches!(
            ShardSpec::from_arg_with_env("0/0", &none),
            Err(ShardError::ZeroCount(_))
        ));
        assert!(matches!(
            ShardSpec::from_arg_with_env("-1/4", &none),
            Err(ShardError::Syntax(_))
        ));
        assert!(matches!(
            ShardSpec::from_arg_with_env("a/4", &none),
            Err(ShardError::Syntax(_))
        ));
    }

    #[test]
    fn auto_reads_mpi_then_torch_then_indexed_job() {
        let mpi = env(&[
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
        ]);
        assert_eq!(
            ShardSpec::from_arg_with_env("auto", mpi),
            Ok(ShardSpec { index: 2, count: 4 })
        );
        let torch = env(&[("RANK", "1"), ("WORLD_SIZE", "2")]);
        assert_eq!(
            ShardSpec::from_arg_with_env("auto", torch),
            Ok(ShardSpec { index: 1, count: 2 })
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "5"), ("EVALR_SHARD_COUNT", "8")]);
        assert_eq!(
            ShardSpec::from_arg_with_env("auto", k8s),
            Ok(ShardSpec { index: 5, count: 8 })
        );
        let k8s_no_count = env(&[("JOB_COMPLETION_INDEX", "5")]);
        assert_eq!(
            ShardSpec::from_arg_with_env("auto", k8s_no_count),
            Err(ShardError::MissingCount)
        );
        assert_eq!(
            ShardSpec::from_arg_with_env("auto", env(&[])),
            Err(ShardError::NoRank)
        );
        let bad = env(&[("RANK", "x"), ("WORLD_SIZE", "2")]);
        assert_eq!(
            ShardSpec::from_arg_with_env("auto", bad)
                .unwrap_err()
                .to_string(),
            "--shard auto: RANK='x' is not a non-negative integer"
        );
        let out = env(&[("RANK", "2"), ("WORLD_SIZE", "2")]);
        assert_eq!(
            ShardSpec::from_arg_with_env("auto", out)
                .unwrap_err()
                .to_string(),
            "--shard auto: RANK=2 is out of range for WORLD_SIZE=2"
        );
    }

    #[test]
    fn every_row_has_exactly_one_owner_and_the_split_is_roughly_even() {
        let shards: Vec<ShardSpec> = (0..4).map(|i| ShardSpec::new(i, 4).unwrap()).collect();
        let mut counts = [0usize; 4];
        for n in 0..1000 {
            let id = format!("mmlu/anatomy/test/{n}");
            let owners: Vec<u32> = shards
                .iter()
                .filter(|s| s.owns(&id))
                .map(|s| s.index)
                .collect();
            assert_eq!(owners.len(), 1, "{id} owned by {owners:?}");
            counts[owners[0] as usize] += 1;
        }
        // 1000 ids over 4 shards: each gets 250 +- a few dozen.
        assert!(
            counts.iter().all(|&c| (200..300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn assignment_is_pinned() {
        // Pinned values: changing the hash would move rows between shards of runs in progress.
        assert_eq!(
            shard_of("mmlu/anatomy/test/0", 4),
            shard_of("mmlu/anatomy/test/0", 4)
        );
        let pinned: Vec<u32> = (0..8).map(|n| shard_of(&format!("row-{n}"), 4)).collect();
        assert_eq!(pinned, PINNED);
        assert_eq!(shard_of("anything", 1), 0);
    }
    // Computed independently: Python `int.from_bytes(sha256(id).digest()[:8], "little") % 4`.
    const PINNED: [u32; 8] = [0, 3, 1, 2, 2, 2, 1, 2];

    #[test]
    fn quota_is_split_and_never_zero() {
        let s = ShardSpec::new(0, 4).unwrap();
        assert_eq!(s.split_quota(1000, 120_000), (250, 30_000));
        assert_eq!(s.split_quota(3, 10), (1, 2));
        assert_eq!(s.split_quota(0, 0), (0, 0));
        assert_eq!(ShardSpec::WHOLE.split_quota(7, 9), (7, 9));
    }

    #[test]
    fn folder_names_round_trip() {
        let s = ShardSpec::new(2, 4).unwrap();
        assert_eq!(s.folder_name(), "shard-2-of-4");
        assert_eq!(ShardSpec::from_folder_name("shard-2-of-4"), Some(s));
        assert_eq!(ShardSpec::from_folder_name("shard-4-of-4"), None);
        assert_eq!(ShardSpec::from_folder_name("results"), None);
    }
}
