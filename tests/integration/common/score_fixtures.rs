//! Helpers of the score/compare tests: copies of the fixture result folders in
//! tests/fixtures/results (made by make_fixtures.py there), so tests never write into them.

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results")
}

/// A temporary directory holding copies of the named fixture folders.
pub fn copy_fixtures(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in names {
        let source = fixtures().join(name);
        let target = dir.path().join(name);
        std::fs::create_dir_all(&target).expect("create fixture copy");
        for entry in std::fs::read_dir(&source).expect("fixture folder") {
            let entry = entry.expect("fixture entry");
            std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy fixture");
        }
    }
    dir
}

pub fn evalr() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(env!("CARGO_BIN_EXE_evalr"));
    command.env_remove("GITHUB_STEP_SUMMARY");
    command
}
