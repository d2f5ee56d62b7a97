//! `evalr merge`: join the shard folders of one run into one result folder.
//!
//! Layout: a run given `--shard K/N --results-dir DIR` writes `DIR/shard-K-of-N/` (run.json
//! with `"shard": {"index": K, "count": N}`, outputs.jsonl, errors.jsonl), so the N shards of
//! a multi-node job can share one output folder. `evalr merge DIR --out MERGED` (or the shard
//! folders themselves) checks that the folders are the N shards of one run, then writes one
//! ordinary result folder that `evalr score` reads like any unsharded run.
//!
//! Output lines are copied byte for byte (only their `id` is read), so a merged run holds
//! exactly the lines the shards wrote.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::shard::ShardSpec;

mod journal;

pub use journal::natural_cmp;
use journal::{Line, dataset_order, read_jsonl};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a JSON object: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: the line has no string \"id\"")]
    NoId { path: PathBuf, line: usize },
    #[error("{0}: no shard found (expected a run.json here or shard-K-of-N/ folders under it)")]
    NoShards(PathBuf),
    #[error("{0}: this run was not sharded (run.json has \"shard\": null); nothing to merge")]
    NotAShard(PathBuf),
    #[error("{path}: run.json field \"shard\" is malformed: {message}")]
    BadShard { path: PathBuf, message: String },
    #[error(
        "the shards are not from the same run: {field} is {first_value} in {first} but {other_value} in {other}"
    )]
    Mismatch {
        field: String,
        first: PathBuf,
        first_value: String,
        other: PathBuf,
        other_value: String,
    },
    #[error("shard {shard} is given twice: {first} and {second}")]
    Duplicate {
        shard: ShardSpec,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("missing shard(s) {missing} of {count}; found {found}")]
    Missing {
        missing: String,
        count: u32,
        found: String,
    },
    #[error("{0}: already holds a run (run.json exists); choose a new --out folder or remove it")]
    OutExists(PathBuf),
    #[error("{0}: --out must not be one of the shard folders")]
    OutIsInput(PathBuf),
}

/// One shard folder and its run.json.
#[derive(Debug, Clone)]
pub struct ShardFolder {
    pub path: PathBuf,
    pub spec: ShardSpec,
    pub run: Value,
}

/// How the merged outputs were ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// The order of the dataset files named in run.json (they were readable).
    Dataset,
    /// Ids in natural order (digit runs compare as numbers: `.../test/2` before `.../test/10`).
    NaturalId,
}

#[derive(Debug, Clone)]
pub struct MergeSummary {
    pub shards: u32,
    pub outputs: usize,
    pub errors: usize,
    /// Output lines dropped because another line had the same id.
    pub duplicate_outputs: usize,
    /// Error lines dropped because the row finished (in any shard) or failed again later.
    pub dropped_errors: usize,
    pub status: String,
    pub order: RowOrder,
    /// Non-fatal observations (a torn last line, unfinished shards).
    pub warnings: Vec<String>,
}

/// Finds the shard folders among `inputs`: each is a shard folder (holds run.json) or a
/// folder whose sub-folders are shard folders.
pub fn find_shards(inputs: &[PathBuf]) -> Result<Vec<ShardFolder>, MergeError> {
    let mut shards = Vec::new();
    for input in inputs {
        if input.join("run.json").is_file() {
            shards.push(read_shard(input)?);
            continue;
        }
        let entries = fs::read_dir(input).map_err(|source| MergeError::Io {
            path: input.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.join("run.json").is_file())
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(MergeError::NoShards(input.clone()));
        }
        for path in found {
            shards.push(read_shard(&path)?);
        }
    }
    Ok(shards)
}

fn read_shard(path: &Path) -> Result<ShardFolder, MergeError> {
    let file = path.join("run.json");
    let text = fs::read_to_string(&file).map_err(|source| MergeError::Io {
        path: file.clone(),
        source,
    })?;
    let run: Value = serde_json::from_str(&text).map_err(|e| MergeError::Json {
        path: file.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let shard = run.get("shard").cloned().unwrap_or(Value::Null);
    if shard.is_null() {
        return Err(MergeError::NotAShard(path.to_path_buf()));
    }
    let number = |key: &str| {
        shard
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let (Some(index), Some(count)) = (number("index"), number("count")) else {
        return Err(MergeError::BadShard {
            path: file,
            message: format!("expected {{\"index\": K, \"count\": N}}, found {shard}"),
        });
    };
    let spec = ShardSpec::new(index, count).map_err(|e| MergeError::BadShard {
        path: file,
        message: e.to_string(),
    })?;
    Ok(ShardFolder {
        path: path.to_path_buf(),
        spec,
        run,
    })
}

/// The run.json fields that must agree for folders to be shards of one run.
const SAME_RUN_FIELDS: [&[&str]; 4] = [
    &["program", "sha256"],
    &["dataset", "sha256"],
    &["model", "identity"],
    &["shard", "count"],
];

/// Checks that `shards` are all the shards of one run; returns them sorted by index.
pub fn check_shards(mut shards: Vec<ShardFolder>) -> Result<Vec<ShardFolder>, MergeError> {
    shards.sort_by_key(|s| s.spec.index);
    let Some(first) = shards.first() else {
        return Err(MergeError::NoShards(PathBuf::from(".")));
    };
    for other in &shards[1..] {
        for field in SAME_RUN_FIELDS {
            let a = pointer(&first.run, field);
            let b = pointer(&other.run, field);
            if a != b {
                return Err(MergeError::Mismatch {
                    field: field.join("."),
                    first: first.path.clone(),
                    first_value: a.map_or("absent".into(), |v| v.to_string()),
                    other: other.path.clone(),
                    other_value: b.map_or("absent".into(), |v| v.to_string()),
                });
            }
        }
    }
    let count = first.spec.count;
    let mut seen: HashMap<u32, &Path> = HashMap::new();
    for s in &shards {
        if let Some(previous) = seen.insert(s.spec.index, &s.path) {
            return Err(MergeError::Duplicate {
                shard: s.spec,
                first: previous.to_path_buf(),
                second: s.path.clone(),
            });
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        let found: Vec<String> = shards
            .iter()
            .map(|s| format!("{} in {}", s.spec, s.path.display()))
            .collect();
        return Err(MergeError::Missing {
            missing: missing.join(", "),
            count,
            found: found.join(", "),
        });
    }
    Ok(shards)
}

fn pointer<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// Worst first: the merged run has the status of its least finished shard.
fn status_rank(status: &str) -> u8 {
    match status {
        "finished" => 0,
        "running" => 1,
        "interrupted" => 2,
        "stopped_max_errors" => 3,
        "stopped_max_cost" => 4,
        _ => 2,
    }
}

fn earliest_or_latest(values: &[Option<&str>], latest: bool) -> Option<String> {
    let mut best: Option<(chrono::DateTime<chrono::FixedOffset>, &str)> = None;
    for v in values {
        let text = (*v)?;
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) else {
            continue;
        };
        let better = match best {
            None => true,
            Some((b, _)) => (latest && t > b) || (!latest && t < b),
        };
        if better {
            best = Some((t, text));
        }
    }
    best.map(|(_, s)| s.to_string())
}

/// Merges the shards found in `inputs` into the result folder `out`.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<MergeSummary, MergeError> {
    let shards = check_shards(find_shards(inputs)?)?;
    let out_canonical = fs::canonicalize(out).ok();
    for s in &shards {
        if out_canonical.is_some() && fs::canonicalize(&s.path).ok() == out_canonical {
            return Err(MergeError::OutIsInput(out.to_path_buf()));
        }
    }
    if out.join("run.json").exists() {
        return Err(MergeError::OutExists(out.to_path_buf()));
    }

    let mut warnings = Vec::new();
    for s in &shards {
        let status = s
            .run
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("absent");
        if status != "finished" {
            warnings.push(format!(
                "shard {} ({}) has status {status}: its rows are merged as they are",
                s.spec,
                s.path.display()
            ));
        }
    }

    // Outputs: the first line of each id wins (shards never share a row; a repeated id
    // comes from a journal written twice, and both lines describe the same finished row).
    let mut outputs: Vec<Line> = Vec::new();
    let mut seen = HashSet::new();
    let mut duplicate_outputs = 0;
    for s in &shards {
        for line in read_jsonl(&s.path.join("outputs.jsonl"), true, &mut warnings)? {
            let id = line.id.clone().unwrap_or_default();
            if seen.insert(id) {
                outputs.push(line);
            } else {
                duplicate_outputs += 1;
            }
        }
    }

    // Errors: rows that finished anywhere are not failures of the merged run; of several
    // failures of one row the last one written stands.
    let mut errors: Vec<Line> = Vec::new();
    let mut error_slot: HashMap<String, usize> = HashMap::new();
    let mut dropped_errors = 0;
    for s in &shards {
        for line in read_jsonl(&s.path.join("errors.jsonl"), false, &mut warnings)? {
            let key = match (&line.id, line.value.get("line")) {
                (Some(id), _) => format!("id:{id}"),
                (None, Some(n)) => format!("line:{n}"),
                (None, None) => format!("text:{}", line.text),
            };
            if line.id.as_ref().is_some_and(|id| seen.contains(id)) {
                dropped_errors += 1;
                continue;
            }
            match error_slot.get(&key) {
                Some(&slot) => {
                    errors[slot] = line;
                    dropped_errors += 1;
                }
                None => {
                    error_slot.insert(key, errors.len());
                    errors.push(line);
                }
            }
        }
    }

    let base = &shards[0].run;
    let order = match dataset_order(base) {
        Some(positions) => {
            let key = |l: &Line| l.id.as_ref().and_then(|id| positions.get(id)).copied();
            let sort = |lines: &mut Vec<Line>| {
                lines.sort_by(|a, b| match (key(a), key(b)) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => {
                        natural_cmp(a.id.as_deref().unwrap_or(""), b.id.as_deref().unwrap_or(""))
                    }
                })
            };
            sort(&mut outputs);
            sort(&mut errors);
            RowOrder::Dataset
        }
        None => {
            outputs.sort_by(|a, b| {
                natural_cmp(a.id.as_deref().unwrap_or(""), b.id.as_deref().unwrap_or(""))
            });
            errors.sort_by(|a, b| {
                natural_cmp(a.id.as_deref().unwrap_or(""), b.id.as_deref().unwrap_or(""))
            });
            RowOrder::NaturalId
        }
    };

    let status = shards
        .iter()
        .map(|s| {
            s.run
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("running")
        })
        .max_by_key(|s| status_rank(s))
        .unwrap_or("finished")
        .to_string();
    let started: Vec<Option<&str>> = shards
        .iter()
        .map(|s| s.run.get("started_at").and_then(Value::as_str))
        .collect();
    let finished: Vec<Option<&str>> = shards
        .iter()
        .map(|s| s.run.get("finished_at").and_then(Value::as_str))
        .collect();
    let run_ids: HashSet<Option<&str>> = shards
        .iter()
        .map(|s| s.run.get("run_id").and_then(Value::as_str))
        .collect();
    let run_id = match run_ids.iter().next() {
        Some(Some(id)) if run_ids.len() == 1 => id.to_string(),
        _ => out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "merged".to_string()),
    };

    let mut run: Map<String, Value> = base.as_object().cloned().unwrap_or_default();
    run.insert("run_id".into(), Value::String(run_id));
    run.insert("status".into(), Value::String(status.clone()));
    run.insert("shard".into(), Value::Null);
    run.insert(
        "started_at".into(),
        earliest_or_latest(&started, false).map_or(Value::Null, Value::String),
    );
    // A shard without finished_at has not finished: neither has the merged run.
    let all_finished = finished.iter().all(Option::is_some);
    run.insert(
        "finished_at".into(),
        match all_finished {
            true => earliest_or_latest(&finished, true).map_or(Value::Null, Value::String),
            false => Value::Null,
        },
    );
    let merged_from: Vec<Value> = shards
        .iter()
        .map(|s| {
            let mut m = BTreeMap::new();
            m.insert("index", Value::from(s.spec.index));
            m.insert("count", Value::from(s.spec.count));
            m.insert(
                "run_id",
                s.run.get("run_id").cloned().unwrap_or(Value::Null),
            );
            m.insert(
                "status",
                s.run.get("status").cloned().unwrap_or(Value::Null),
            );
            m.insert("path", Value::String(s.path.display().to_string()));
            serde_json::to_value(m).unwrap_or(Value::Null)
        })
        .collect();
    run.insert("merged_from".into(), Value::Array(merged_from));

    fs::create_dir_all(out).map_err(|source| MergeError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    write_lines(
        &out.join("outputs.jsonl"),
        outputs.iter().map(|l| l.text.as_str()),
    )?;
    write_lines(
        &out.join("errors.jsonl"),
        errors.iter().map(|l| l.text.as_str()),
    )?;
    // run.json last: its presence marks a complete merge.
    let mut text = serde_json::to_string_pretty(&Value::Object(run)).unwrap_or_default();
    text.push('\n');
    write_file(&out.join("run.json"), text.as_bytes())?;

    Ok(MergeSummary {
        shards: shards[0].spec.count,
        outputs: outputs.len(),
        errors: errors.len(),
        duplicate_outputs,
        dropped_errors,
        status,
        order,
        warnings,
    })
}

fn write_lines<'a>(path: &Path, lines: impl Iterator<Item = &'a str>) -> Result<(), MergeError> {
    let mut buf = Vec::new();
    for line in lines {
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    write_file(path, &buf)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), MergeError> {
    let io = |source| MergeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}
