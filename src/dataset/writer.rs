//! The atomic JSONL writer.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::DatasetError;
use super::row::Row;

/// Writes rows to a temporary file beside `path` and renames it onto `path` in
/// [`JsonlWriter::finish`]. Until then `path` is untouched; if the writer is dropped
/// (error, Ctrl-C unwinding) the temporary file is removed, so an interrupted convert
/// never leaves half a dataset behind.
pub struct JsonlWriter {
    path: PathBuf,
    file: BufWriter<NamedTempFile>,
    rows: u64,
}

impl JsonlWriter {
    pub fn create(path: &Path) -> Result<Self, DatasetError> {
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&folder).map_err(|source| DatasetError::Io {
            path: folder.clone(),
            action: "create folder",
            source,
        })?;
        // With the user's umask: a converted dataset is read by others (tempfile's 0600 was not).
        let file = crate::files::temp_file_in(&folder).map_err(|source| DatasetError::Io {
            path: folder.clone(),
            action: "create a temporary file in",
            source,
        })?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(256 * 1024, file),
            rows: 0,
        })
    }

    pub fn write_row(&mut self, row: &Row) -> Result<(), DatasetError> {
        let io = |source| DatasetError::Io {
            path: self.path.clone(),
            action: "write",
            source,
        };
        serde_json::to_writer(&mut self.file, row).map_err(|e| io(std::io::Error::other(e)))?;
        self.file.write_all(b"\n").map_err(io)?;
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes, syncs and renames the temporary file onto the target path.
    pub fn finish(self) -> Result<(), DatasetError> {
        let path = self.path;
        let io = |source| DatasetError::Io {
            path: path.clone(),
            action: "write",
            source,
        };
        let file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.as_file().sync_all().map_err(io)?;
        file.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nothing_appears_until_finish_and_a_dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let row =
            Row::from_json_value(json!({"id": "1", "question": "q", "choices": ["a"]})).unwrap();
        let mut writer = JsonlWriter::create(&path).unwrap();
        writer.write_row(&row).unwrap();
        assert!(!path.exists());
        drop(writer);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            0
        );

        std::fs::write(&path, "old\n").unwrap();
        let mut writer = JsonlWriter::create(&path).unwrap();
        writer.write_row(&row).unwrap();
        writer.write_row(&row).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        writer.finish().unwrap();
        let line = r#"{"id":"1","question":"q","choices":["a"]}"#;
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{line}\n{line}\n")
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    /// A converted dataset gets the user's umask (tempfile alone made it 0600).
    #[cfg(unix)]
    #[test]
    fn a_written_dataset_gets_the_users_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let path = dir.path().join("out.jsonl");
        let row =
            Row::from_json_value(json!({"id": "1", "question": "q", "choices": ["a"]})).unwrap();
        let mut writer = JsonlWriter::create(&path).unwrap();
        writer.write_row(&row).unwrap();
        writer.finish().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
    }
}
