//! The one reader of a results folder. Lenient where the format allows (fields added later
//! default, blank lines are skipped), strict where a silent guess would be wrong (a bad
//! line in the middle, the same row twice, a folder from a newer evalr).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::manifest::{RunManifest, SCHEMA_VERSION};
use super::record::{ErrorRecord, OutputRecord, RepeatLine};
use super::{ERRORS_FILE, MANIFEST_FILE, OUTPUTS_FILE, REPEATS_FILE, ResultsError};

/// An opened results folder: `run.json` read, the JSONL files ready to stream.
#[derive(Debug, Clone)]
pub struct ResultFolder {
    pub path: PathBuf,
    pub manifest: RunManifest,
}

/// What reading a JSONL file noticed besides its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadNotes {
    /// The last line had no newline and did not parse: a write cut short (a kill mid-line).
    /// It is left out; `torn_at` is the byte offset where it starts.
    pub torn_last_line: bool,
    pub torn_at: Option<u64>,
    /// The number of the torn line.
    pub torn_line: Option<u64>,
    /// The last line parsed but has no newline (an editor, a copy): appending must first
    /// end it.
    pub unterminated_last_line: bool,
}

/// One line of a JSONL file: its number (from 1), its text without the newline, its record.
pub struct Line<'a, T> {
    pub number: u64,
    pub text: &'a str,
    pub record: T,
}

/// Streams a JSONL file record by record, by the rule every reader of a results folder
/// shares: blank lines are skipped; a last line without its newline that does not parse is
/// a write cut short and is left out (noted); any other line that does not parse is an
/// error naming the file and line. A missing file is an error; see [`read_optional`].
pub fn for_each_line<T: DeserializeOwned, E: From<ResultsError>>(
    path: &Path,
    mut visit: impl FnMut(Line<'_, T>) -> Result<(), E>,
) -> Result<ReadNotes, E> {
    let io = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut buffer = String::new();
    let (mut number, mut offset) = (0u64, 0u64);
    let mut notes = ReadNotes::default();
    loop {
        buffer.clear();
        let read = reader.read_line(&mut buffer).map_err(io)?;
        if read == 0 {
            break;
        }
        number += 1;
        let complete = buffer.ends_with('\n');
        let text = buffer.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            match serde_json::from_str::<T>(text) {
                Ok(record) => {
                    notes.unterminated_last_line = !complete;
                    visit(Line {
                        number,
                        text,
                        record,
                    })?;
                }
                Err(_) if !complete => {
                    notes.torn_last_line = true;
                    notes.torn_at = Some(offset);
                    notes.torn_line = Some(number);
                    break;
                }
                Err(error) => {
                    return Err(ResultsError::Json {
                        path: path.to_path_buf(),
                        line: number,
                        error,
                    }
                    .into());
                }
            }
        }
        offset += read as u64;
    }
    Ok(notes)
}

/// As [`for_each_line`], with a missing file read as an empty one (a run that wrote no
/// error, a shard that finished no row).
pub fn read_optional<T: DeserializeOwned, E: From<ResultsError>>(
    path: &Path,
    visit: impl FnMut(Line<'_, T>) -> Result<(), E>,
) -> Result<ReadNotes, E> {
    if !path.exists() {
        return Ok(ReadNotes::default());
    }
    for_each_line(path, visit)
}

/// Reads `run.json` of `folder`, refusing a folder written by a newer format.
pub fn read_manifest(folder: &Path) -> Result<RunManifest, ResultsError> {
    let path = folder.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ResultsError::Io {
        path: path.clone(),
        source,
    })?;
    let manifest: RunManifest =
        serde_json::from_str(&text).map_err(|error| ResultsError::Json {
            line: error.line() as u64,
            path: path.clone(),
            error,
        })?;
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(ResultsError::NewerSchema {
            path,
            found: manifest.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(manifest)
}

impl ResultFolder {
    /// Opens a folder; fails when it is missing, has no readable `run.json`, or has no
    /// `outputs.jsonl`.
    pub fn open(path: &Path) -> Result<Self, ResultsError> {
        if !path.is_dir() {
            return Err(ResultsError::NotAFolder(path.to_path_buf()));
        }
        let manifest = read_manifest(path)?;
        let outputs = path.join(OUTPUTS_FILE);
        if !outputs.is_file() {
            return Err(ResultsError::Io {
                path: outputs,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            });
        }
        Ok(ResultFolder {
            path: path.to_path_buf(),
            manifest,
        })
    }

    pub fn outputs_path(&self) -> PathBuf {
        self.path.join(OUTPUTS_FILE)
    }

    pub fn errors_path(&self) -> PathBuf {
        self.path.join(ERRORS_FILE)
    }

    /// A short name for reports: the run id, or the folder name.
    pub fn name(&self) -> String {
        self.manifest.name_or(&self.path)
    }

    /// Streams `outputs.jsonl`: `visit(line_number, record)` for each row, in file order (a
    /// folder of a million rows never has to fit in memory). The same id twice is an error
    /// naming both lines.
    pub fn for_each_output<E: From<ResultsError>>(
        &self,
        mut visit: impl FnMut(u64, OutputRecord) -> Result<(), E>,
    ) -> Result<ReadNotes, E> {
        let path = self.outputs_path();
        // The ids seen so far, as 64-bit hashes: 8 bytes a row instead of the id's string
        // (a million ids held as strings were the largest thing `evalr score` kept). A hash
        // already seen is only a suspicion; the file is read again to find the id itself.
        let mut seen: HashSet<u64> = HashSet::new();
        for_each_line(&path, |line: Line<'_, OutputRecord>| {
            if !seen.insert(id_hash(&line.record.id))
                && let Some(first_line) = first_line_of(&path, &line.record.id, line.number)?
            {
                return Err(ResultsError::DuplicateId {
                    path: path.clone(),
                    line: line.number,
                    id: line.record.id,
                    first_line,
                }
                .into());
            }
            visit(line.number, line.record)
        })
    }

    /// `errors.jsonl` (absent means no errors).
    pub fn errors(&self) -> Result<Vec<ErrorRecord>, ResultsError> {
        let mut errors = Vec::new();
        read_optional(&self.errors_path(), |line: Line<'_, ErrorRecord>| {
            errors.push(line.record);
            Ok::<_, ResultsError>(())
        })?;
        Ok(errors)
    }
}

/// A row id's hash for spotting repeats (SipHash with fixed keys: the same in every process).
fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id)
}

/// The first line before `before` of the JSONL file at `path` whose record has id `id`.
fn first_line_of(path: &Path, id: &str, before: u64) -> Result<Option<u64>, ResultsError> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    let mut found = None;
    let result = for_each_line(path, |line: Line<'_, IdOnly>| {
        if line.number >= before {
            return Err(Stop::Done);
        }
        if line.record.id == id {
            found = Some(line.number);
            return Err(Stop::Done);
        }
        Ok(())
    });
    match result {
        Ok(_) | Err(Stop::Done) => Ok(found),
        Err(Stop::Failed(error)) => Err(error),
    }
}

/// Ends a scan early ([`first_line_of`]) or carries a read error.
enum Stop {
    Done,
    Failed(ResultsError),
}

impl From<ResultsError> for Stop {
    fn from(error: ResultsError) -> Self {
        Stop::Failed(error)
    }
}

/// Reads a journal file of `folder` before appending to it again (resume): a torn last line
/// is cut off the file, and an unterminated one ended, so appending goes on from a clean line
/// boundary. A missing file is an empty one.
fn read_for_resume<T: DeserializeOwned>(
    path: &Path,
    visit: impl FnMut(Line<'_, T>) -> Result<(), ResultsError>,
) -> Result<(), ResultsError> {
    let notes = read_optional(path, visit)?;
    let io = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(offset) = notes.torn_at {
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(offset).map_err(io)?;
    } else if notes.unterminated_last_line {
        let mut file = OpenOptions::new().append(true).open(path).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
    }
    Ok(())
}

/// The ids already in `outputs.jsonl` of `folder`, for resuming (see [`read_for_resume`]).
pub fn finished_ids(folder: &Path) -> Result<HashSet<String>, ResultsError> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    let mut ids = HashSet::new();
    read_for_resume(&folder.join(OUTPUTS_FILE), |line: Line<'_, IdOnly>| {
        ids.insert(line.record.id);
        Ok(())
    })?;
    Ok(ids)
}

/// The repeats already in `repeats.jsonl` of `folder`, by row id, for resuming an ensemble
/// run (see [`read_for_resume`]).
pub fn finished_repeats(folder: &Path) -> Result<HashMap<String, Vec<RepeatLine>>, ResultsError> {
    let mut done: HashMap<String, Vec<RepeatLine>> = HashMap::new();
    read_for_resume(&folder.join(REPEATS_FILE), |line: Line<'_, RepeatLine>| {
        done.entry(line.record.id.clone())
            .or_default()
            .push(line.record);
        Ok(())
    })?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record_line(i: usize) -> String {
        serde_json::json!({
            "id": format!("t/{i}"),
            "row": {"id": format!("t/{i}"), "question": "q", "choices": ["a", "b"], "correct_answer": 1},
            "answer": {"capture": "answer", "option": "B", "index": 1},
            "outcome": "correct",
        })
        .to_string()
    }

    fn folder_with(outputs: &str) -> (tempfile::TempDir, ResultFolder) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(MANIFEST_FILE), r#"{"run_id": "t"}"#).expect("run.json");
        std::fs::write(dir.path().join(OUTPUTS_FILE), outputs).expect("outputs");
        let folder = ResultFolder::open(dir.path()).expect("opens");
        (dir, folder)
    }

    proptest! {
        /// Whatever a bad line holds, the error names its line (or, as the unterminated last
        /// line, it is cut off as torn), and the rows before it were all read.
        #[test]
        fn a_bad_line_is_named_by_its_number(
            good_before in 0usize..6,
            garbage in "[^\n]{0,40}",
            terminated in any::<bool>(),
        ) {
            let mut text: String = (0..good_before).map(|i| record_line(i) + "\n").collect();
            text.push_str(&garbage);
            if terminated {
                text.push('\n');
            }
            let (_dir, folder) = folder_with(&text);
            let mut seen = 0usize;
            let result = folder.for_each_output(|_, _| { seen += 1; Ok::<_, ResultsError>(()) });
            let blank = garbage.trim().is_empty();
            let valid = serde_json::from_str::<OutputRecord>(garbage.trim()).is_ok();
            match result {
                Ok(notes) => {
                    prop_assert!(blank || valid || (!terminated && notes.torn_last_line));
                }
                Err(ResultsError::Json { line, .. }) => {
                    prop_assert!(terminated && !blank && !valid);
                    prop_assert_eq!(line, good_before as u64 + 1);
                    prop_assert_eq!(seen, good_before);
                }
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
    }

    #[test]
    fn the_same_id_twice_names_both_lines() {
        let lines = [
            record_line(0),
            record_line(1),
            record_line(2),
            record_line(1),
        ];
        let (_dir, folder) = folder_with(&(lines.join("\n") + "\n"));
        let mut seen = Vec::new();
        let err = folder
            .for_each_output(|line, record| {
                seen.push((line, record.id));
                Ok::<_, ResultsError>(())
            })
            .unwrap_err();
        match err {
            ResultsError::DuplicateId {
                line,
                first_line,
                id,
                ..
            } => assert_eq!((line, first_line, id.as_str()), (4, 2, "t/1")),
            other => panic!("unexpected error {other}"),
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn torn_last_line_is_cut_and_ids_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OUTPUTS_FILE);
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"ro").unwrap();
        let ids = finished_ids(dir.path()).unwrap();
        assert_eq!(ids, HashSet::from(["a".to_string(), "b".to_string()]));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"
        );
    }

    #[test]
    fn an_unterminated_last_line_is_ended_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OUTPUTS_FILE);
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"id\":\"b\"}").unwrap();
        let ids = finished_ids(dir.path()).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"
        );
    }

    #[test]
    fn a_bad_complete_line_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OUTPUTS_FILE), "{\"id\":\"a\"}\nnot json\n").unwrap();
        let err = finished_ids(dir.path()).unwrap_err().to_string();
        assert!(err.contains("outputs.jsonl line 2"), "{err}");
    }

    #[test]
    fn a_folder_from_a_newer_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            format!(
                r#"{{"schema_version": {}, "status": "finished"}}"#,
                SCHEMA_VERSION + 1
            ),
        )
        .unwrap();
        let err = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(err.contains("upgrade evalr"), "{err}");
    }
}
