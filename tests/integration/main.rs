//! The integration tests: one test binary (links evalr and llama.cpp once), one module per
//! area. Each test runs the real `evalr` binary against servers started on 127.0.0.1.

mod common;

mod azureml_yaml;
mod batch;
mod compare_cli;
mod container;
mod datasets_cli;
mod datasets_fetch;
mod docs_commands;
mod html_pages;
mod identity;
mod judge;
mod judge_azure;
mod judge_programs;
mod local_backend;
mod medprompt;
mod medprompt_local;
mod merge;
mod mlflow;
mod prompty;
mod prompty_conformance;
mod prompty_images;
mod prompty_seams;
mod quota;
mod results_seams;
mod run_azureml_endpoint;
mod run_local;
mod run_remote;
mod score_cli;
mod sharded_run;
mod tls;
