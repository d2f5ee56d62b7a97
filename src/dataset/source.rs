//! Naming datasets on the command line: `NAME`, a `.jsonl` path, or a folder.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{DatasetError, RowReader};

/// Where rows come from: one or more JSONL files resolved from a NAME, a path, or a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSource {
    files: Vec<PathBuf>,
    spec: String,
    name: String,
}

impl DatasetSource {
    /// Resolves what the user typed, in this order:
    /// 1. an existing file (any extension; `.parquet` and `.csv` are refused with a hint to
    ///    convert them first);
    /// 2. an existing folder: every `*.jsonl` directly inside, in name order (an AzureML
    ///    `uri_folder` input is mounted as such a folder);
    /// 3. `NAME` -> `<datasets_dir>/NAME.jsonl`, or the folder `<datasets_dir>/NAME`.
    pub fn resolve(spec: &str, datasets_dir: &Path) -> Result<DatasetSource, DatasetError> {
        let path = Path::new(spec);
        if spec.is_empty() {
            return Err(not_found(
                spec,
                datasets_dir,
                "the name is empty".to_string(),
            ));
        }
        if path.is_file() {
            return Self::from_file(spec, path);
        }
        if path.is_dir() {
            return Self::from_folder(spec, path);
        }
        let is_plain_name = path.components().count() == 1 && path.extension().is_none();
        if is_plain_name {
            let file = datasets_dir.join(format!("{spec}.jsonl"));
            if file.is_file() {
                return Self::from_file(spec, &file);
            }
            let folder = datasets_dir.join(spec);
            if folder.is_dir() {
                return Self::from_folder(spec, &folder);
            }
            let message = format!(
                "no file or folder `{spec}`, no {} and no folder {}",
                file.display(),
                folder.display()
            );
            return Err(not_found(spec, datasets_dir, message));
        }
        Err(not_found(
            spec,
            datasets_dir,
            format!("no file or folder {}", path.display()),
        ))
    }

    fn from_file(spec: &str, path: &Path) -> Result<DatasetSource, DatasetError> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if matches!(extension.as_str(), "parquet" | "csv") {
            return Err(DatasetError::Format {
                path: path.to_path_buf(),
                message: format!(
                    "a .{extension} file is not read directly; convert it first: \
                     evalr datasets convert {} --out datasets/NAME.jsonl",
                    path.display()
                ),
            });
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(DatasetSource {
            files: vec![path.to_path_buf()],
            spec: spec.to_string(),
            name,
        })
    }

    fn from_folder(spec: &str, folder: &Path) -> Result<DatasetSource, DatasetError> {
        let files = jsonl_files_in(folder)?;
        if files.is_empty() {
            return Err(DatasetError::EmptyFolder {
                folder: folder.to_path_buf(),
            });
        }
        let name = folder_name(folder);
        Ok(DatasetSource {
            files,
            spec: spec.to_string(),
            name,
        })
    }

    /// The files, in the order their rows are read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// What the user typed.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// A short name: the file stem (`mmlu_anatomy_test`) or the folder name.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// SHA-256 of the bytes of all files, in order (hex): pins exactly what a run read.
    pub fn content_sha256(&self) -> Result<String, DatasetError> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        for path in &self.files {
            let io = |source| DatasetError::Io {
                path: path.clone(),
                action: "read",
                source,
            };
            let mut file = std::fs::File::open(path).map_err(io)?;
            loop {
                let read = file.read(&mut buffer).map_err(io)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Streams every row of every file, in order.
    pub fn rows(&self) -> RowReader {
        RowReader::new(self.files.clone())
    }
}

fn folder_name(folder: &Path) -> String {
    let absolute = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    absolute
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .next_back()
        .unwrap_or_else(|| folder.display().to_string())
}

/// The `*.jsonl` files directly inside `folder`, sorted by name.
fn jsonl_files_in(folder: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: folder.to_path_buf(),
        action: "list",
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The dataset names available in `datasets_dir`: `NAME` for each `NAME.jsonl`, and each
/// folder holding `.jsonl` files; sorted.
pub fn list_names(datasets_dir: &Path) -> Result<Vec<String>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: datasets_dir.to_path_buf(),
        action: "list",
        source,
    };
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(datasets_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(error) => return Err(io(error)),
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        if stem.starts_with('.') {
            continue;
        }
        if path.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
        {
            names.push(stem);
        } else if path.is_dir() && jsonl_files_in(&path).is_ok_and(|f| !f.is_empty()) {
            names.push(
                path.file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or(stem),
            );
        }
    }
    names.sort();
    Ok(names)
}

/// A not-found error that says what exists: names containing what was typed first, then
/// the others, at most ten, and where to see them all.
fn not_found(spec: &str, datasets_dir: &Path, message: String) -> DatasetError {
    let names = list_names(datasets_dir).unwrap_or_default();
    let hint = if names.is_empty() {
        format!(
            "; {} holds no datasets (fetch one: evalr datasets fetch cais/mmlu --subject anatomy --split test)",
            datasets_dir.display()
        )
    } else {
        let needle = spec.to_ascii_lowercase();
        let similar: Vec<&String> = names
            .iter()
            .filter(|n| !needle.is_empty() && n.to_ascii_lowercase().contains(&needle))
            .collect();
        let (label, shown) = if similar.is_empty() {
            ("available", names.iter().collect())
        } else {
            ("similar names", similar)
        };
        let more = shown.len().saturating_sub(10);
        let listed = shown
            .iter()
            .take(10)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if more > 0 {
            format!("; {label}: {listed} and {more} more (evalr datasets list)")
        } else {
            format!("; {label}: {listed}")
        }
    };
    DatasetError::NotFound {
        spec: spec.to_string(),
        message: format!("{message}{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let datasets = dir.path().join("datasets");
        std::fs::create_dir_all(datasets.join("mounted")).unwrap();
        std::fs::write(datasets.join("mmlu_anatomy_test.jsonl"), "a\n").unwrap();
        std::fs::write(datasets.join("mmlu_virology_test.jsonl"), "b\n").unwrap();
        std::fs::write(datasets.join("mounted/2.jsonl"), "2\n").unwrap();
        std::fs::write(datasets.join("mounted/1.jsonl"), "1\n").unwrap();
        std::fs::write(datasets.join("mounted/notes.txt"), "x").unwrap();
        dir
    }

    #[test]
    fn names_paths_and_folders_resolve() {
        let dir = setup();
        let datasets = dir.path().join("datasets");
        let by_name = DatasetSource::resolve("mmlu_anatomy_test", &datasets).unwrap();
        assert_eq!(by_name.files(), [datasets.join("mmlu_anatomy_test.jsonl")]);
        assert_eq!(by_name.name(), "mmlu_anatomy_test");
        let path = datasets.join("mmlu_virology_test.jsonl");
        let by_path =
            DatasetSource::resolve(path.to_str().unwrap(), Path::new("elsewhere")).unwrap();
        assert_eq!(by_path.files(), [path]);
        let folder = DatasetSource::resolve("mounted", &datasets).unwrap();
        assert_eq!(
            folder.files(),
            [
                datasets.join("mounted/1.jsonl"),
                datasets.join("mounted/2.jsonl")
            ]
        );
        assert_eq!(folder.name(), "mounted");
        let folder_path = format!("{}/", datasets.join("mounted").display());
        assert_eq!(
            DatasetSource::resolve(&folder_path, Path::new("x"))
                .unwrap()
                .name(),
            "mounted"
        );
        // sha256 of "1\n2\n": the files' bytes in order.
        assert_eq!(
            folder.content_sha256().unwrap(),
            hex::encode(Sha256::digest(b"1\n2\n"))
        );
    }

    #[test]
    fn not_found_lists_similar_names() {
        let dir = setup();
        let datasets = dir.path().join("datasets");
        let error = DatasetSource::resolve("anatomy", &datasets)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("dataset `anatomy` not found: no file or folder `anatomy`, no "),
            "{error}"
        );
        assert!(
            error.ends_with("; similar names: mmlu_anatomy_test"),
            "{error}"
        );
        let error = DatasetSource::resolve("x.jsonl", &datasets)
            .unwrap_err()
            .to_string();
        assert!(
            error
                .starts_with("dataset `x.jsonl` not found: no file or folder x.jsonl; available: "),
            "{error}"
        );
        let empty = DatasetSource::resolve("x", &dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(
            empty.contains("holds no datasets (fetch one: evalr datasets fetch"),
            "{empty}"
        );
    }

    #[test]
    fn parquet_and_csv_are_refused_with_a_hint() {
        let dir = setup();
        let file = dir.path().join("t.parquet");
        std::fs::write(&file, "PAR1").unwrap();
        let error = DatasetSource::resolve(file.to_str().unwrap(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.ends_with(&format!(
            "t.parquet: a .parquet file is not read directly; convert it first: evalr datasets convert {} --out datasets/NAME.jsonl",
            file.display()
        )), "{error}");
    }
}
