//! evalr: evaluate large language models on MMLU-style datasets.
//!
//! Data flows one way: `dataset` rows go through a `program` in `run`, which calls a
//! `backend` under the `limiter` and journals every finished row; `score` and `report` read
//! only result folders.

pub mod azureml;
pub mod backend;
pub mod batch;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod examples;
pub mod files;
pub mod layers;
pub mod limiter;
pub mod live;
pub mod play;
pub mod prices;
pub mod program;
pub mod report;
pub mod results;
pub mod run;
pub mod score;
pub mod secret;
