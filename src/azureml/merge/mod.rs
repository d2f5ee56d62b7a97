//! `evalr merge`: join the shard folders of one run into one result folder.
//!
//! Layout: a run given `--shard K/N --results-dir DIR` writes `DIR/shard-K-of-N/` (run.json
//! with `"shard": {"index": K, "count": N}`, outputs.jsonl, errors.jsonl), so the N shards of
//! a multi-node job can share one output folder. `evalr merge DIR --out MERGED` (or the shard
//! folders themselves) checks that the folders are the N shards of one run, then writes one
//! ordinary result folder that `evalr score` reads like any unsharded run.
//!
//! Every line is read through `crate::results` (so a shard in a bad format is refused with
//! its file and line), then copied byte for byte: a merged run holds exactly the lines the
//! shards wrote. The merged status is the worst shard's ([`RunStatus::worst`]): a failed
//! shard is never reported as, say, a budget stop.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::dataset::shard::ShardSpec;
use crate::results::{
    self, ErrorRecord, Line, MANIFEST_FILE, MergedShard, OutputRecord, ResultsError, RunManifest,
    RunStatus,
};

mod order;

use order::dataset_order;
pub use order::natural_cmp;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Results(#[from] ResultsError),
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
    pub manifest: RunManifest,
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
    /// The worst status of the shards (see [`RunStatus::worst`]).
    pub status: RunStatus,
    pub order: RowOrder,
    /// Non-fatal observations (a torn last line, unfinished shards).
    pub warnings: Vec<String>,
}

/// Finds the shard folders among `inputs`: each is a shard folder (holds run.json) or a
/// folder whose sub-folders are shard folders.
pub fn find_shards(inputs: &[PathBuf]) -> Result<Vec<ShardFolder>, MergeError> {
    let mut shards = Vec::new();
    for input in inputs {
        if input.join(MANIFEST_FILE).is_file() {
            shards.push(read_shard(input)?);
            continue;
        }
        let entries = fs::read_dir(input).map_err(|source| ResultsError::Io {
            path: input.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.join(MANIFEST_FILE).is_file())
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
    let manifest = results::read_manifest(path)?;
    let Some(shard) = manifest.shard else {
        return Err(MergeError::NotAShard(path.to_path_buf()));
    };
    let spec = ShardSpec::new(shard.index, shard.count).map_err(|e| MergeError::BadShard {
        path: path.join(MANIFEST_FILE),
        message: e.to_string(),
    })?;
    Ok(ShardFolder {
        path: path.to_path_buf(),
        spec,
        manifest,
    })
}

/// The run.json fields that must agree for folders to be shards of one run, as the error
/// names and shows them.
fn same_run_fields(m: &RunManifest) -> [(&'static str, String); 4] {
    [
        ("program.sha256", format!("{:?}", m.program.sha256)),
        ("dataset.sha256", format!("{:?}", m.dataset.sha256)),
        ("model.identity", format!("{:?}", m.model.identity)),
        (
            "shard.count",
            m.shard.map_or("absent".into(), |s| s.count.to_string()),
        ),
    ]
}

/// Checks that `shards` are all the shards of one run; returns them sorted by index.
pub fn check_shards(mut shards: Vec<ShardFolder>) -> Result<Vec<ShardFolder>, MergeError> {
    shards.sort_by_key(|s| s.spec.index);
    let Some(first) = shards.first() else {
        return Err(MergeError::NoShards(PathBuf::from(".")));
    };
    let expected = same_run_fields(&first.manifest);
    for other in &shards[1..] {
        for ((field, a), (_, b)) in expected.iter().zip(same_run_fields(&other.manifest)) {
            if *a != b {
                return Err(MergeError::Mismatch {
                    field: field.to_string(),
                    first: first.path.clone(),
                    first_value: a.clone(),
                    other: other.path.clone(),
                    other_value: b,
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

/// A journal line kept as written (merge copies lines byte for byte), with its id.
struct Kept {
    id: Option<String>,
    /// For error lines without id: the dataset line they are about.
    line: Option<u64>,
    text: String,
}

/// Reads one shard journal file through the results reader; a torn last line becomes a
/// warning.
fn read_journal<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: impl Fn(&T) -> (Option<String>, Option<u64>),
    warnings: &mut Vec<String>,
) -> Result<Vec<Kept>, MergeError> {
    let mut kept = Vec::new();
    let notes = results::read_optional(path, |line: Line<'_, T>| {
        let (id, number) = key(&line.record);
        kept.push(Kept {
            id,
            line: number,
            text: line.text.to_string(),
        });
        Ok::<_, ResultsError>(())
    })?;
    if let Some(number) = notes.torn_line {
        warnings.push(format!(
            "{}:{number}: skipped a torn last line (a write cut short)",
            path.display()
        ));
    }
    Ok(kept)
}

/// The outputs of all shards: the first line of each id wins (shards never share a row; a
/// repeated id comes from a journal written twice, and both lines describe the same finished
/// row). Returns the lines and how many were dropped.
fn merged_outputs(
    shards: &[ShardFolder],
    warnings: &mut Vec<String>,
) -> Result<(Vec<Kept>, usize), MergeError> {
    let mut outputs = Vec::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for s in shards {
        let path = s.path.join(results::OUTPUTS_FILE);
        let key = |r: &OutputRecord| (Some(r.id.clone()), None);
        for line in read_journal(&path, key, warnings)? {
            if seen.insert(line.id.clone().unwrap_or_default()) {
                outputs.push(line);
            } else {
                duplicates += 1;
            }
        }
    }
    Ok((outputs, duplicates))
}

/// The errors of all shards: rows that finished anywhere are not failures of the merged run;
/// of several failures of one row the last one written stands. Returns the lines and how
/// many were dropped.
fn merged_errors(
    shards: &[ShardFolder],
    finished: &HashSet<&str>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Kept>, usize), MergeError> {
    let mut errors: Vec<Kept> = Vec::new();
    let mut slot: HashMap<String, usize> = HashMap::new();
    let mut dropped = 0;
    for s in shards {
        let path = s.path.join(results::ERRORS_FILE);
        let key = |r: &ErrorRecord| (r.id.clone(), r.line);
        for line in read_journal(&path, key, warnings)? {
            if line.id.as_deref().is_some_and(|id| finished.contains(id)) {
                dropped += 1;
                continue;
            }
            let key = match (&line.id, line.line) {
                (Some(id), _) => format!("id:{id}"),
                (None, Some(n)) => format!("line:{n}"),
                (None, None) => format!("text:{}", line.text),
            };
            match slot.get(&key) {
                Some(&at) => {
                    errors[at] = line;
                    dropped += 1;
                }
                None => {
                    slot.insert(key, errors.len());
                    errors.push(line);
                }
            }
        }
    }
    Ok((errors, dropped))
}

/// Sorts lines in dataset order when the dataset files are readable, else by natural id.
fn sort_lines(base: &RunManifest, outputs: &mut [Kept], errors: &mut [Kept]) -> RowOrder {
    let id = |l: &Kept| l.id.clone().unwrap_or_default();
    match dataset_order(&base.dataset.files) {
        Some(positions) => {
            let key = |l: &Kept| l.id.as_ref().and_then(|id| positions.get(id)).copied();
            let by_position = |a: &Kept, b: &Kept| match (key(a), key(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => natural_cmp(&id(a), &id(b)),
            };
            outputs.sort_by(by_position);
            errors.sort_by(by_position);
            RowOrder::Dataset
        }
        None => {
            outputs.sort_by(|a, b| natural_cmp(&id(a), &id(b)));
            errors.sort_by(|a, b| natural_cmp(&id(a), &id(b)));
            RowOrder::NaturalId
        }
    }
}

/// `run.json` of the merged run: the first shard's, with the worst status, the earliest
/// start, the last finish (none while a shard has not finished) and the shards it came from.
fn merged_manifest(shards: &[ShardFolder], out: &Path) -> RunManifest {
    let mut run = shards[0].manifest.clone();
    let run_ids: HashSet<&str> = shards.iter().map(|s| s.manifest.run_id.as_str()).collect();
    run.run_id = match run_ids.iter().next() {
        Some(id) if run_ids.len() == 1 && !id.is_empty() => id.to_string(),
        _ => out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "merged".to_string()),
    };
    run.status = RunStatus::worst(shards.iter().map(|s| s.manifest.status));
    run.shard = None;
    run.started_at = shards.iter().filter_map(|s| s.manifest.started_at).min();
    let finished: Option<Vec<_>> = shards.iter().map(|s| s.manifest.finished_at).collect();
    run.finished_at = finished.and_then(|times| times.into_iter().max());
    run.merged_from = shards
        .iter()
        .map(|s| MergedShard {
            index: s.spec.index,
            count: s.spec.count,
            run_id: s.manifest.run_id.clone(),
            status: s.manifest.status,
            path: s.path.display().to_string(),
        })
        .collect();
    run
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
    if out.join(MANIFEST_FILE).exists() {
        return Err(MergeError::OutExists(out.to_path_buf()));
    }
    let mut warnings: Vec<String> = shards
        .iter()
        .filter(|s| s.manifest.status != RunStatus::Finished)
        .map(|s| {
            format!(
                "shard {} ({}) has status {}: its rows are merged as they are",
                s.spec,
                s.path.display(),
                s.manifest.status
            )
        })
        .collect();
    let (mut outputs, duplicate_outputs) = merged_outputs(&shards, &mut warnings)?;
    let finished: HashSet<&str> = outputs.iter().filter_map(|l| l.id.as_deref()).collect();
    let (mut errors, dropped_errors) = merged_errors(&shards, &finished, &mut warnings)?;
    let manifest = merged_manifest(&shards, out);
    let order = sort_lines(&manifest, &mut outputs, &mut errors);

    fs::create_dir_all(out).map_err(|source| ResultsError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    results::write_lines(
        &out.join(results::OUTPUTS_FILE),
        outputs.iter().map(|l| l.text.as_str()),
    )?;
    results::write_lines(
        &out.join(results::ERRORS_FILE),
        errors.iter().map(|l| l.text.as_str()),
    )?;
    // run.json last: its presence marks a complete merge.
    results::write_manifest(out, &manifest)?;

    Ok(MergeSummary {
        shards: shards[0].spec.count,
        outputs: outputs.len(),
        errors: errors.len(),
        duplicate_outputs,
        dropped_errors,
        status: manifest.status,
        order,
        warnings,
    })
}
