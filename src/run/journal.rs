//! The journal: `outputs.jsonl` and `errors.jsonl`, append-only, one line per finished row,
//! written in one `write` call and flushed as rows finish, so a SIGKILL loses at most the
//! line being written; resume cuts a torn last line off and skips the ids already there.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::RunError;
use super::record::{ErrorRecord, OutputRecord, RunManifest};

pub const OUTPUTS_FILE: &str = "outputs.jsonl";
pub const ERRORS_FILE: &str = "errors.jsonl";
pub const MANIFEST_FILE: &str = "run.json";

pub struct Journal {
    folder: PathBuf,
    outputs: File,
    errors: File,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Journal {
    /// Opens (creating if needed) the journal files of a run folder for appending.
    pub fn open(folder: &Path) -> Result<Journal, RunError> {
        std::fs::create_dir_all(folder).map_err(io_error(folder))?;
        let open = |name: &str| {
            let path = folder.join(name);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_error(&path))
        };
        Ok(Journal {
            folder: folder.to_path_buf(),
            outputs: open(OUTPUTS_FILE)?,
            errors: open(ERRORS_FILE)?,
        })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn append(
        file: &mut File,
        path: PathBuf,
        value: &impl serde::Serialize,
    ) -> Result<(), RunError> {
        let mut line = serde_json::to_vec(value).map_err(|e| RunError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        // One write of the whole line: a crash leaves either the line or a torn tail that
        // resume cuts off, never an interleaving.
        file.write_all(&line).map_err(io_error(&path))?;
        file.flush().map_err(io_error(&path))
    }

    pub fn append_output(&mut self, record: &OutputRecord) -> Result<(), RunError> {
        Self::append(&mut self.outputs, self.folder.join(OUTPUTS_FILE), record)
    }

    pub fn append_error(&mut self, record: &ErrorRecord) -> Result<(), RunError> {
        Self::append(&mut self.errors, self.folder.join(ERRORS_FILE), record)
    }

    /// Forces the journal to disk (at the end of a run, and on Ctrl-C).
    pub fn sync(&self) -> Result<(), RunError> {
        self.outputs
            .sync_data()
            .map_err(io_error(&self.folder.join(OUTPUTS_FILE)))?;
        self.errors
            .sync_data()
            .map_err(io_error(&self.folder.join(ERRORS_FILE)))
    }
}

/// Writes `run.json` atomically (temp file + rename), so a crash never leaves half of it.
pub fn write_manifest(folder: &Path, manifest: &RunManifest) -> Result<(), RunError> {
    let path = folder.join(MANIFEST_FILE);
    let mut temp = tempfile::NamedTempFile::new_in(folder).map_err(io_error(&path))?;
    serde_json::to_writer_pretty(&mut temp, manifest).map_err(|e| RunError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    temp.write_all(b"\n").map_err(io_error(&path))?;
    temp.persist(&path).map_err(|e| RunError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(())
}

pub fn read_manifest(folder: &Path) -> Result<RunManifest, RunError> {
    let path = folder.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| RunError::Resume {
        folder: folder.to_path_buf(),
        message: format!("cannot read {}: {source}", path.display()),
    })?;
    serde_json::from_str(&text).map_err(|e| RunError::Resume {
        folder: folder.to_path_buf(),
        message: format!("{} is not a run manifest: {e}", path.display()),
    })
}

/// The ids already in `outputs.jsonl`. A torn last line (a crash mid-write) is cut off the
/// file so appending goes on from a clean line boundary; a bad line elsewhere is an error.
pub fn finished_ids(folder: &Path) -> Result<HashSet<String>, RunError> {
    let mut ids = HashSet::new();
    read_journal_lines(folder, OUTPUTS_FILE, |value| {
        if let Some(id) = value.get("id").and_then(|v| v.as_str()) {
            ids.insert(id.to_string());
        }
    })?;
    Ok(ids)
}

/// Reads every complete JSON line of the journal file `name` in `folder` (none when it does
/// not exist). A torn last line is cut off the file; a bad complete line is an error naming it.
pub fn read_journal_lines(
    folder: &Path,
    name: &str,
    mut each: impl FnMut(serde_json::Value),
) -> Result<(), RunError> {
    let path = folder.join(name);
    let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
        return Ok(());
    };
    let mut reader = BufReader::new(&file);
    let mut offset: u64 = 0;
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_error(&path))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let complete = line.ends_with(b"\n");
        let parsed = serde_json::from_slice::<serde_json::Value>(&line);
        match (parsed, complete) {
            (Ok(value), _) => {
                each(value);
                offset += read as u64;
            }
            (Err(_), false) => {
                // The last line was being written when the run died: drop it.
                file.set_len(offset).map_err(io_error(&path))?;
                let mut f = &file;
                f.seek(SeekFrom::End(0)).map_err(io_error(&path))?;
                break;
            }
            (Err(e), true) => {
                return Err(RunError::Resume {
                    folder: folder.to_path_buf(),
                    message: format!("{}:{line_no}: not a JSON line ({e})", path.display()),
                });
            }
        }
    }
    Ok(())
}

/// Appends one JSON line to the journal file `name` in `folder` (created when missing), in
/// one write, flushed: the same crash guarantees as `outputs.jsonl`.
pub fn append_journal_line(
    folder: &Path,
    name: &str,
    value: &impl serde::Serialize,
) -> Result<(), RunError> {
    let path = folder.join(name);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_error(&path))?;
    Journal::append(&mut file, path.clone(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_bad_complete_line_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OUTPUTS_FILE), "{\"id\":\"a\"}\nnot json\n").unwrap();
        let err = finished_ids(dir.path()).unwrap_err().to_string();
        assert!(err.contains("outputs.jsonl:2:"), "{err}");
    }
}
