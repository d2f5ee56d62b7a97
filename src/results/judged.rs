//! The judge folders of a judged run (`evalr judge`): their layout, the judge manifest, the
//! judge rows' own fields, and `judged.jsonl`.
//!
//! ```text
//! results/<run-id>/
//!   judged.jsonl                per judged row: its id and every judge's fields
//!   judge/<name>/               one judge run (an ordinary results folder) per judge;
//!                               <name> is the metric, or <metric>@<label> for another judge
//!     judge.json                what the judgment was asked (JudgeManifest)
//!     repeats/<k>/              repeats 2..K of the judgment, ordinary results folders
//! ```
//!
//! A judge row is an ordinary output record whose row carries `metric` and `judged_id` (the
//! judged run's row). `run::judge` writes the folders and the manifest; `score` reads the
//! judgments from what [`judge_folders`] finds and computes the fields of `judged.jsonl`,
//! which [`write_judged_rows`] writes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{OUTPUTS_FILE, OutputRecord, ResultsError};

/// Where `evalr judge` writes its judge runs inside a result folder.
pub const JUDGE_FOLDER: &str = "judge";
/// `judge.json` in a judge folder: what the judgment was asked.
pub const JUDGE_MANIFEST: &str = "judge.json";
/// The per-row judged fields of a run, one line per judged row.
pub const JUDGED_ROWS_FILE: &str = "judged.jsonl";
/// Where repeats 2..K of a judgment live inside its folder.
pub const REPEATS_FOLDER: &str = "repeats";

/// `judge/<name>/judge.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeManifest {
    /// The metric (`coherence`, or the judge program's name for a user's judge).
    pub metric: String,
    /// The judge program as given (`judges/coherence`, or a path).
    pub program: String,
    /// A score at or above this passes.
    pub threshold: u8,
    /// Judgments per row (1 + the repeats in `repeats/`).
    #[serde(default = "one")]
    pub repeats: u32,
    /// The judge model as given (`--judge-model`).
    #[serde(default)]
    pub model: Option<String>,
}

fn one() -> u32 {
    1
}

impl JudgeManifest {
    /// The manifest of the judge folder `folder`; `None` when it has none.
    pub fn read(folder: &Path) -> Result<Option<JudgeManifest>, ResultsError> {
        let path = folder.join(JUDGE_MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ResultsError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| ResultsError::Json {
                path,
                line: 1,
                error,
            })
    }

    /// Writes `judge.json` into the judge folder `folder`, whole.
    pub fn write(&self, folder: &Path) -> Result<(), ResultsError> {
        let path = folder.join(JUDGE_MANIFEST);
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        crate::files::write_atomic(&path, text.as_bytes())
            .map_err(|source| ResultsError::Io { path, source })
    }
}

/// The metric a judge row belongs to (`row.metric`); `None` for rows that are not judge rows.
pub fn judge_metric(record: &OutputRecord) -> Option<&str> {
    record.row.extra.get("metric").and_then(Value::as_str)
}

/// The judged run's row a judge row judged (`row.judged_id`).
pub fn judged_id(record: &OutputRecord) -> Option<&str> {
    record.row.extra.get("judged_id").and_then(Value::as_str)
}

/// A judge folder of a run, as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeFolder {
    /// `coherence`, or `coherence@<label>`.
    pub name: String,
    pub path: PathBuf,
}

impl JudgeFolder {
    /// The metric judged (the part of the name before `@`).
    pub fn metric(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }

    /// Its `judge.json`, if it has one.
    pub fn manifest(&self) -> Result<Option<JudgeManifest>, ResultsError> {
        JudgeManifest::read(&self.path)
    }

    /// The results folders of its repeats, in order: the judge folder itself (repeat 1),
    /// then `repeats/<k>/` by `k`, each only if it holds outputs.
    pub fn repeats(&self) -> Result<Vec<PathBuf>, ResultsError> {
        let mut folders = vec![self.path.clone()];
        let root = self.path.join(REPEATS_FOLDER);
        if root.is_dir() {
            let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(&root)
                .map_err(io_error(&root))?
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let k = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    Some((k, e.path()))
                })
                .filter(|(_, p)| p.join(OUTPUTS_FILE).is_file())
                .collect();
            numbered.sort();
            folders.extend(numbered.into_iter().map(|(_, p)| p));
        }
        Ok(folders)
    }
}

/// The judge folders under `<run>/judge/` that hold outputs, sorted by name.
pub fn judge_folders(run: &Path) -> Result<Vec<JudgeFolder>, ResultsError> {
    let root = run.join(JUDGE_FOLDER);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(io_error(&root))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(OUTPUTS_FILE).is_file())
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| JudgeFolder {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path,
        })
        .collect())
}

/// A line of `judged.jsonl`: a judged row's id, then the fields its judges gave it
/// (`<name>`, `<name>_result`, ...; `score` computes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedRowLine {
    pub id: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// Writes `<run>/judged.jsonl` whole from its lines; returns its path.
pub fn write_judged_rows(
    run: &Path,
    lines: impl IntoIterator<Item = JudgedRowLine>,
) -> Result<PathBuf, ResultsError> {
    let path = run.join(JUDGED_ROWS_FILE);
    let mut text = String::new();
    for line in lines {
        let json = serde_json::to_string(&line).map_err(|e| ResultsError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        text.push_str(&json);
        text.push('\n');
    }
    crate::files::write_atomic(&path, text.as_bytes()).map_err(io_error(&path))?;
    Ok(path)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn judge_folders_and_their_repeats_are_found_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let judge = dir.path().join(JUDGE_FOLDER);
        for folder in [
            "fluency",
            "coherence@gpt4",
            "coherence",
            "coherence/repeats/10",
            "coherence/repeats/2",
        ] {
            std::fs::create_dir_all(judge.join(folder)).unwrap();
            std::fs::write(judge.join(folder).join(OUTPUTS_FILE), "").unwrap();
        }
        // Not judge folders or repeats: no outputs, or not numbered.
        std::fs::create_dir_all(judge.join("empty")).unwrap();
        std::fs::create_dir_all(judge.join("coherence/repeats/3")).unwrap();
        std::fs::create_dir_all(judge.join("coherence/repeats/x")).unwrap();
        std::fs::write(judge.join("coherence/repeats/x").join(OUTPUTS_FILE), "").unwrap();

        let folders = judge_folders(dir.path()).unwrap();
        let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["coherence", "coherence@gpt4", "fluency"]);
        assert_eq!(folders[1].metric(), "coherence");
        assert_eq!(
            folders[0].repeats().unwrap(),
            [
                judge.join("coherence"),
                judge.join("coherence/repeats/2"),
                judge.join("coherence/repeats/10"),
            ]
        );
        assert_eq!(folders[2].repeats().unwrap(), [judge.join("fluency")]);
        assert!(judge_folders(&judge.join("fluency")).unwrap().is_empty());
    }

    #[test]
    fn the_manifest_reads_back_and_older_ones_get_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(JudgeManifest::read(dir.path()).unwrap(), None);
        let manifest = JudgeManifest {
            metric: "coherence".into(),
            program: "judges/coherence".into(),
            threshold: 3,
            repeats: 2,
            model: Some("azure:gpt-4o".into()),
        };
        manifest.write(dir.path()).unwrap();
        assert_eq!(JudgeManifest::read(dir.path()).unwrap(), Some(manifest));
        std::fs::write(
            dir.path().join(JUDGE_MANIFEST),
            r#"{"metric": "fluency", "program": "judges/fluency", "threshold": 4}"#,
        )
        .unwrap();
        let old = JudgeManifest::read(dir.path()).unwrap().unwrap();
        assert_eq!((old.repeats, old.model), (1, None));
    }

    #[test]
    fn judged_rows_are_written_id_first_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut fields = Map::new();
        fields.insert("coherence".into(), json!(4.0));
        fields.insert("coherence_result".into(), json!("pass"));
        let path = write_judged_rows(
            dir.path(),
            [JudgedRowLine {
                id: "a/1".into(),
                fields,
            }],
        )
        .unwrap();
        assert_eq!(path, dir.path().join(JUDGED_ROWS_FILE));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a/1\",\"coherence\":4.0,\"coherence_result\":\"pass\"}\n"
        );
    }
}
