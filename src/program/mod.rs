//! Prompt programs: files, rendering, select/gen calls. No network.

use std::path::PathBuf;

mod ensemble;
mod file;
mod render;

pub use ensemble::{EnsembleSpec, Reduce, Shuffle};
pub use file::{
    DefaultParameters, ExamplePick, ExamplesSpec, ProgramFile, list_programs, resolve_program,
};
pub use render::{Call, CallKind, Captures, Program, Step, split_messages};

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("cannot read program {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: front matter: {message}", path.display())]
    FrontMatter {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: {message}", path.display())]
    Template {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "no program `{spec}` (programs here: {available}); pass a name from `evalr programs list` or a path to a .prompty file"
    )]
    NotFound { spec: String, available: String },
}
