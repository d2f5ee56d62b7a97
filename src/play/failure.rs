//! Why a row did not finish.

use crate::backend::BackendError;
use crate::program::ProgramError;

/// Why a row did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RowFailure {
    #[error("{error} (after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    Backend { error: BackendError, attempts: u32 },
    #[error("{0}")]
    Program(#[from] ProgramError),
    #[error(
        "row `{id}`: the program's required input `{field}` has no value in the row and no default"
    )]
    MissingInput { id: String, field: String },
    #[error("row `{id}`: {message}")]
    Ensemble { id: String, message: String },
}

impl RowFailure {
    pub fn attempts(&self) -> u32 {
        match self {
            RowFailure::Backend { attempts, .. } => *attempts,
            _ => 0,
        }
    }
    /// Errors that will fail every row the same way: stop the run instead of burning rows.
    pub fn is_fatal_for_run(&self) -> bool {
        matches!(self, RowFailure::Backend { error, .. } if error.is_fatal())
    }
}
