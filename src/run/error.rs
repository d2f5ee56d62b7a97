//! Why a run could not start or could not go on.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::dataset::DatasetError;
use crate::program::ProgramError;
use crate::results::ResultsError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag or setting that cannot work (found before anything was sent).
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The results folder could not be written (or, resuming, read).
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("cannot resume {}: {message}", folder.display())]
    Resume { folder: PathBuf, message: String },
    #[error("the model cannot be used: {0}")]
    Backend(String),
    /// Every row tried failed: nothing was evaluated.
    #[error("{0}")]
    NothingAnswered(String),
    #[error("the run finished but could not be scored: {0}")]
    Score(#[from] crate::score::ScoreError),
    #[error("batch: {0}")]
    Batch(#[from] crate::batch::BatchError),
    #[error(transparent)]
    Examples(#[from] crate::examples::ExamplesError),
    #[error(
        "cannot embed the examples and rows for --pick knn (the embeddings model is --embeddings-model, else the run's model): {0}"
    )]
    Embed(#[from] EmbedError),
}

impl RunError {
    /// Errors found before anything was sent: the user must fix input or configuration.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            RunError::Io { .. }
                | RunError::NothingAnswered(_)
                | RunError::Score(_)
                | RunError::Results(_)
                | RunError::Batch(_)
                | RunError::Embed(_)
        )
    }
}

impl From<crate::play::ensemble::EnsembleError> for RunError {
    fn from(error: crate::play::ensemble::EnsembleError) -> Self {
        use crate::play::ensemble::EnsembleError;
        match error {
            // Resuming: the repeats already finished could not be read back.
            EnsembleError::Finished { ref folder, .. } => RunError::Resume {
                folder: folder.clone(),
                message: error.to_string(),
            },
            EnsembleError::Journal(source) => RunError::Results(source),
        }
    }
}

/// Why embedding rows (`evalr embed`, `--pick knn`) failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    File(#[from] crate::examples::vectors::VectorsError),
    #[error("embedding failed: {0}")]
    Backend(#[from] crate::play::RowFailure),
}
