//! Writing a file whole: into a temporary file beside the target, then renamed onto it, so a
//! reader (a CI job, `evalr score` running beside a run) never sees half a file.
//!
//! Why not `tempfile::NamedTempFile::new_in` alone: it creates files with mode 0600 whatever
//! the umask, and the rename keeps that mode, so reports, `summary.json`, `outputs.parquet`
//! and converted datasets came out unreadable to the colleague or the CI job that picks them
//! up. Files made here ask for 0666 and get the user's umask applied, like any file a
//! command creates with `open(2)`.

use std::io::Write;
use std::path::Path;

use tempfile::NamedTempFile;

/// A temporary file in `folder` (created with the user's umask) that [`NamedTempFile::persist`]
/// renames onto its target; dropped unpersisted, it is removed.
pub fn temp_file_in(folder: &Path) -> std::io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".evalr-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(folder)
}

/// The folder a file at `path` is written from (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically (temporary file + rename), with the user's umask.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// Writes `path` atomically from `write`, which streams into a buffered temporary file (so a
/// report of a million rows never has to be whole in memory); the file replaces `path` only
/// when `write` succeeded.
pub fn write_atomic_with<E: From<std::io::Error>>(
    path: &Path,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), E>,
) -> Result<(), E> {
    let file = temp_file_in(folder_of(path))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    write(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The mode a new file gets from `open(2)` under the current umask.
    fn mode_of_a_plain_new_file(dir: &Path) -> u32 {
        let path = dir.join("plain");
        std::fs::write(&path, b"x").unwrap();
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_written_whole_get_the_users_umask_not_0600() {
        let dir = tempfile::tempdir().unwrap();
        let expected = mode_of_a_plain_new_file(dir.path());
        let path = dir.path().join("report.md");
        write_atomic(&path, b"# report\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, expected,
            "mode {mode:o}, a plain file gets {expected:o}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"# report\n");
    }
}
