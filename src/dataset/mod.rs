//! Datasets: the row schema, the streaming JSONL reader/writer, conversions, the hub.
//!
//! Everything downstream reads rows through [`DatasetSource::rows`]; everything that makes
//! dataset files writes them through [`JsonlWriter`].

mod convert;
mod hub;
mod reader;
mod records;
mod row;
mod seed;
pub mod selection;
pub mod shard;
mod source;
mod writer;

use std::path::PathBuf;

pub use convert::{ColumnMap, ConvertOptions, ConvertSummary, convert_file};
pub use hub::{FetchOptions, FetchedFile, HubError, fetch};
pub use reader::{MAX_LINE_BYTES, RowError, RowReader};
pub use row::Row;
pub use seed::derived_seed;
pub use source::{DatasetSource, list_names};
pub use writer::JsonlWriter;

/// File-level problems: a dataset that cannot be found, opened, converted or fetched.
/// Problems with one row are [`RowError`]s.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A NAME, path or folder that does not resolve; the message lists what was tried and
    /// the names that exist.
    #[error("dataset `{spec}` not found: {message}")]
    NotFound { spec: String, message: String },
    #[error("{}: no .jsonl files in this folder", folder.display())]
    EmptyFolder { folder: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// A parquet, CSV or JSONL input that cannot be converted (bad file, bad record).
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error(transparent)]
    Row(#[from] RowError),
    /// A bad `--map` argument.
    #[error("--map: {0}")]
    Map(String),
    #[error(transparent)]
    Hub(#[from] HubError),
}

impl DatasetError {
    /// True when the user must fix the command, the input or the configuration (exit code
    /// 2); false for failures of the hub that a retry may cure (exit code 1).
    pub fn is_usage(&self) -> bool {
        match self {
            DatasetError::Hub(hub) => hub.is_usage(),
            _ => true,
        }
    }
}
