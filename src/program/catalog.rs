//! Where programs come from: the ones built into the binary (the repository's `programs/`
//! folder, compiled in so `evalr run --program zero_shot` works from any folder and in the
//! container), overridden and extended by a programs folder (`--programs-dir`,
//! `EVALR_PROGRAMS_DIR`, default `./programs`), or a path to any `.prompty` file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use super::{ProgramError, ProgramFile};

static BUILT_IN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/programs");

/// Where a listed program comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramOrigin {
    BuiltIn,
    Folder(PathBuf),
}

/// One program of `evalr programs list`: loaded, or the error that keeps it from loading.
#[derive(Debug)]
pub struct ProgramEntry {
    pub name: String,
    pub origin: ProgramOrigin,
    pub program: Result<ProgramFile, ProgramError>,
}

/// The path a built-in program reports (in errors and `run.json`).
fn built_in_path(name: &str) -> PathBuf {
    PathBuf::from(format!("(built in)/programs/{name}.prompty"))
}

fn built_in_text(name: &str) -> Option<&'static str> {
    BUILT_IN
        .get_file(format!("{name}.prompty"))
        .and_then(|f| f.contents_utf8())
}

fn built_in_names() -> Vec<String> {
    fn walk(dir: &Dir<'static>, out: &mut Vec<String>) {
        for file in dir.files() {
            if let Some(name) = file
                .path()
                .to_str()
                .and_then(|p| p.strip_suffix(".prompty"))
            {
                out.push(name.to_string());
            }
        }
        for sub in dir.dirs() {
            walk(sub, out);
        }
    }
    let mut names = Vec::new();
    walk(&BUILT_IN, &mut names);
    names
}

/// Program names in a folder (recursively, `judges/coherence` for sub-folders).
fn folder_names(programs_dir: &Path) -> std::io::Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path, &format!("{prefix}{file_name}/"), out)?;
            } else if let Some(stem) = file_name.strip_suffix(".prompty") {
                out.push(format!("{prefix}{stem}"));
            }
        }
        Ok(())
    }
    let mut names = Vec::new();
    if programs_dir.is_dir() {
        walk(programs_dir, "", &mut names)?;
    }
    Ok(names)
}

/// Loads a program by name (the programs folder first, then the built-in ones) or by path.
pub fn load_program(spec: &str, programs_dir: &Path) -> Result<ProgramFile, ProgramError> {
    if !spec.ends_with(".prompty") {
        let named = programs_dir.join(format!("{spec}.prompty"));
        if named.is_file() {
            return ProgramFile::load(&named);
        }
        if let Some(text) = built_in_text(spec) {
            return ProgramFile::parse(&built_in_path(spec), text);
        }
    }
    let as_path = Path::new(spec);
    if as_path.is_file() {
        return ProgramFile::load(as_path);
    }
    let mut names: Vec<String> = list_programs(programs_dir)
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.dedup();
    Err(ProgramError::NotFound {
        spec: spec.to_string(),
        available: names.join(", "),
    })
}

/// Every program: built in, then the folder's (a folder program of the same name replaces the
/// built-in one), sorted by name, each loaded or with its load error.
pub fn list_programs(programs_dir: &Path) -> Vec<ProgramEntry> {
    let mut entries: BTreeMap<String, ProgramEntry> = BTreeMap::new();
    for name in built_in_names() {
        let program = match built_in_text(&name) {
            Some(text) => ProgramFile::parse(&built_in_path(&name), text),
            None => Err(ProgramError::NotFound {
                spec: name.clone(),
                available: String::new(),
            }),
        };
        entries.insert(
            name.clone(),
            ProgramEntry {
                name,
                origin: ProgramOrigin::BuiltIn,
                program,
            },
        );
    }
    // An unreadable folder lists what it can: the built-in programs still work.
    for name in folder_names(programs_dir).unwrap_or_default() {
        let path = programs_dir.join(format!("{name}.prompty"));
        entries.insert(
            name.clone(),
            ProgramEntry {
                name,
                program: ProgramFile::load(&path),
                origin: ProgramOrigin::Folder(path),
            },
        );
    }
    entries.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_programs_load_from_anywhere() {
        let empty = tempfile::tempdir().unwrap();
        let program = load_program("zero_shot", empty.path()).unwrap();
        assert_eq!(program.name, "zero_shot");
        assert!(program.path.starts_with("(built in)"));
        let entries = list_programs(empty.path());
        assert!(entries.iter().any(|e| e.name == "few_shot"));
        assert!(entries.iter().all(|e| e.program.is_ok()), "{entries:?}");
    }

    #[test]
    fn folder_overrides_and_lists_broken_files_with_their_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("zero_shot.prompty"),
            "---\nname: mine\n---\nuser:\n{{question}}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("broken.prompty"),
            "---\nname: b\nuser:\nhi\n",
        )
        .unwrap();
        assert_eq!(load_program("zero_shot", dir.path()).unwrap().name, "mine");
        let entries = list_programs(dir.path());
        let broken = entries.iter().find(|e| e.name == "broken").unwrap();
        let err = broken.program.as_ref().unwrap_err().to_string();
        assert!(err.contains("never closed"), "{err}");
        let err = load_program("nope", dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken") && err.contains("zero_shot"), "{err}");
    }
}
