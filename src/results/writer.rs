//! The one writer of a results folder: `outputs.jsonl` and `errors.jsonl` append-only, one
//! line per finished (or failed) row, each written in one `write` call and flushed at once,
//! so a SIGKILL loses at most the line being written (which the reader's torn-line rule cuts
//! off); `run.json` replaced whole.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::manifest::RunManifest;
use super::record::{ErrorRecord, OutputRecord, RepeatLine};
use super::{ERRORS_FILE, MANIFEST_FILE, OUTPUTS_FILE, REPEATS_FILE, ResultsError};

/// The append-only journal of a run folder.
pub struct Journal {
    folder: PathBuf,
    outputs: File,
    errors: File,
    /// What this journal appended since it was opened.
    appended: Appended,
}

/// The lines a journal appended since it was opened (a resumed run counts its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    pub outputs: u64,
    pub errors: u64,
    /// The first error line's message, for a run that must say why nothing finished.
    pub first_error: Option<String>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Appended {
    /// Why no row of a run was answered, when none was and some were tried (`done_before`:
    /// rows answered before a resume): how many failed and the first failure, whose message
    /// carries its cause.
    pub fn nothing_answered(&self, done_before: usize) -> Option<String> {
        if done_before > 0 || self.outputs > 0 || self.errors == 0 {
            return None;
        }
        Some(format!(
            "no row was answered: {} failed; the first: {}",
            self.errors,
            self.first_error.as_deref().unwrap_or("(no message)")
        ))
    }
}

impl Journal {
    /// Opens (creating the folder and files if needed) the journal of a run folder for
    /// appending. Resuming? Call [`super::finished_ids`] first: it leaves the files ending on
    /// a clean line boundary.
    pub fn open(folder: &Path) -> Result<Journal, ResultsError> {
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
            appended: Appended::default(),
        })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// What was appended since the journal was opened.
    pub fn appended(&self) -> &Appended {
        &self.appended
    }

    fn append(
        file: &mut File,
        path: PathBuf,
        value: &impl serde::Serialize,
    ) -> Result<(), ResultsError> {
        let mut line = serde_json::to_vec(value).map_err(|e| ResultsError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        // One write of the whole line: a crash leaves either the line or a torn tail, never
        // an interleaving.
        file.write_all(&line).map_err(io_error(&path))?;
        file.flush().map_err(io_error(&path))
    }

    /// Appends a finished row to `outputs.jsonl`.
    pub fn append_output(&mut self, record: &OutputRecord) -> Result<(), ResultsError> {
        Self::append(&mut self.outputs, self.folder.join(OUTPUTS_FILE), record)?;
        self.appended.outputs += 1;
        Ok(())
    }

    /// Appends a row that did not finish to `errors.jsonl`.
    pub fn append_error(&mut self, record: &ErrorRecord) -> Result<(), ResultsError> {
        Self::append(&mut self.errors, self.folder.join(ERRORS_FILE), record)?;
        self.appended.errors += 1;
        if self.appended.first_error.is_none() {
            self.appended.first_error = Some(record.error.clone());
        }
        Ok(())
    }

    /// Forces the journal to disk (at the end of a run).
    pub fn sync(&self) -> Result<(), ResultsError> {
        self.outputs
            .sync_data()
            .map_err(io_error(&self.folder.join(OUTPUTS_FILE)))?;
        self.errors
            .sync_data()
            .map_err(io_error(&self.folder.join(ERRORS_FILE)))
    }
}

/// The journal of an ensemble run's finished repeats, `repeats.jsonl`: appended by rows in
/// flight (one line per repeat, one write each), read back by [`super::finished_repeats`].
pub struct RepeatJournal {
    path: PathBuf,
    file: std::sync::Mutex<File>,
}

impl RepeatJournal {
    pub fn open(folder: &Path) -> Result<RepeatJournal, ResultsError> {
        let path = folder.join(REPEATS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Ok(RepeatJournal {
            path,
            file: std::sync::Mutex::new(file),
        })
    }

    pub fn append(&self, line: &RepeatLine) -> Result<(), ResultsError> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        Journal::append(&mut file, self.path.clone(), line)
    }
}

/// Writes `run.json` whole (temporary file + rename, with the user's umask), so a crash
/// never leaves half of it.
pub fn write_manifest(folder: &Path, manifest: &RunManifest) -> Result<(), ResultsError> {
    let path = folder.join(MANIFEST_FILE);
    let mut text = serde_json::to_vec_pretty(manifest).map_err(|e| ResultsError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    text.push(b'\n');
    crate::files::write_atomic(&path, &text).map_err(io_error(&path))
}

/// Writes a whole JSONL file from lines already in the format (`evalr merge` copies the
/// shards' lines byte for byte).
pub fn write_lines<'a>(
    path: &Path,
    lines: impl Iterator<Item = &'a str>,
) -> Result<(), ResultsError> {
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    crate::files::write_atomic(path, &bytes).map_err(io_error(path))
}

/// Writes a complete results folder at once: the journal, then `run.json` (whose presence
/// marks a complete folder). For tools that make folders from other sources (test
/// fixtures, imports) exactly as a run would.
pub fn write_folder(
    folder: &Path,
    manifest: &RunManifest,
    outputs: &[OutputRecord],
    errors: &[ErrorRecord],
) -> Result<(), ResultsError> {
    let mut journal = Journal::open(folder)?;
    for record in outputs {
        journal.append_output(record)?;
    }
    for record in errors {
        journal.append_error(record)?;
    }
    journal.sync()?;
    write_manifest(folder, manifest)
}
