//! Prompt programs: Prompty files (v1 or v2), rendering, select/gen calls. No network.
//!
//! - `front_matter`: splitting a file into YAML and body;
//! - `file`: the front matter read into one typed `ProgramFile` (v1 and v2 keys);
//! - `inputs`, `settings`: declared inputs and the `model:` section;
//! - `catalog`: built-in programs, the programs folder, paths;
//! - `context`: what a template sees for a row (the `evalr.` namespace);
//! - `render`, `mustache`, `roles`: rendering and splitting into messages.

use std::path::PathBuf;

mod catalog;
mod content;
mod context;
mod ensemble;
mod file;
mod front_matter;
mod images;
mod inputs;
mod mustache;
mod render;
mod roles;
mod settings;

pub use catalog::{ProgramEntry, ProgramOrigin, list_programs, load_program};
pub use context::{NAMESPACE, letters, template_context};
pub use ensemble::{EnsembleSpec, Reduce, Shuffle};
pub use file::{Dialect, ExamplePick, ExamplesSpec, ProgramFile, TemplateFormat};
pub use inputs::{InputSpec, complete_inputs};
pub use render::{Call, CallKind, Captures, OUTPUT_CAPTURE, Program, Step, split_messages};
pub use settings::{
    DefaultParameters, ModelConnection, ModelSection, ResponseFormat, ServiceKind, Setting,
};

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
        "no program `{spec}` (programs: {available}); pass a name from `evalr programs list` or a path to a .prompty file"
    )]
    NotFound { spec: String, available: String },
}
