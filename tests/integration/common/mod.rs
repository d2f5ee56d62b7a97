//! Servers and helpers the integration tests share: each speaks the real protocol on 127.0.0.1.

pub mod batch_server;
pub mod hf_hub;
pub mod identity_server;
pub mod local_hub;
pub mod mlflow_server;
pub mod openai_server;
pub mod runs;
pub mod score_fixtures;
