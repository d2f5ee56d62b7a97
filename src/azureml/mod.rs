//! The AzureML edge: sharding over nodes, merging shards, MLflow logging. (Entra ID token
//! sources live with the backends that use them, in `backend::identity`.)
//!
//! The core (`run`, `score`, backends) never depends on this module; it calls into it at
//! the edges (the shard filter and quota split when a run starts, MLflow when it ends, a
//! token source when a backend has no key).

pub mod merge;
pub mod mlflow;
/// Sharding is the dataset's (rows are assigned by id); kept under this path too.
pub use crate::dataset::shard;
