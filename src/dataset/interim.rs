//! Interim dataset source used by the run core until the full dataset layer lands.
//! Same public API as the dataset layer: `DatasetSource`, `RowReader`, `RowError`, `DatasetError`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Row;

#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {}{message}", file.display(), field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct RowError {
    pub file: PathBuf,
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "no dataset `{spec}`: pass a name from `evalr datasets list`, a .jsonl file or a folder"
    )]
    NotFound { spec: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct DatasetSource {
    spec: String,
    files: Vec<PathBuf>,
}

impl DatasetSource {
    pub fn resolve(spec: &str, datasets_dir: &Path) -> Result<DatasetSource, DatasetError> {
        let path = Path::new(spec);
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| DatasetError::Io {
                    path: path.into(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            files.sort();
            files
        } else if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            let named = datasets_dir.join(format!("{spec}.jsonl"));
            if !named.is_file() {
                return Err(DatasetError::NotFound { spec: spec.into() });
            }
            vec![named]
        };
        Ok(DatasetSource {
            spec: spec.into(),
            files,
        })
    }
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
    pub fn name(&self) -> String {
        Path::new(&self.spec)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.spec.clone())
    }
    pub fn content_sha256(&self) -> Result<String, DatasetError> {
        let mut hasher = Sha256::new();
        for file in &self.files {
            let bytes = std::fs::read(file).map_err(|source| DatasetError::Io {
                path: file.clone(),
                source,
            })?;
            hasher.update(&bytes);
        }
        Ok(hex::encode(hasher.finalize()))
    }
    pub fn rows(&self) -> RowReader {
        RowReader {
            files: self.files.clone().into_iter().rev().collect(),
            current: None,
            line: 0,
        }
    }
}

pub struct RowReader {
    files: Vec<PathBuf>,
    current: Option<(PathBuf, std::io::Lines<BufReader<File>>)>,
    line: u64,
}

impl Iterator for RowReader {
    type Item = Result<Row, RowError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = self.files.pop()?;
                self.line = 0;
                match File::open(&path) {
                    Ok(f) => self.current = Some((path, BufReader::new(f).lines())),
                    Err(e) => {
                        return Some(Err(RowError {
                            file: path,
                            line: 0,
                            field: None,
                            message: e.to_string(),
                        }));
                    }
                }
            }
            let (path, lines) = self.current.as_mut()?;
            match lines.next() {
                None => self.current = None,
                Some(Err(e)) => {
                    self.line += 1;
                    let file = path.clone();
                    self.current = None;
                    return Some(Err(RowError {
                        file,
                        line: self.line,
                        field: None,
                        message: e.to_string(),
                    }));
                }
                Some(Ok(text)) => {
                    self.line += 1;
                    let text = text.trim_start_matches('\u{feff}').trim();
                    if text.is_empty() {
                        continue;
                    }
                    return Some(serde_json::from_str::<Row>(text).map_err(|e| RowError {
                        file: path.clone(),
                        line: self.line,
                        field: None,
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
}
