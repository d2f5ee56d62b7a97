//! `evalr mlflow-log` against a real `mlflow server`, read back through its REST API.

use crate::common::mlflow_server;

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use mlflow_server::reqwest::{get_json, get_text, post_json};
use mlflow_server::{MlflowServer, RecordingProxy};
use serde_json::{Value, json};

fn result_folder(dir: &Path, run_id: &str) {
    fs::create_dir_all(dir).unwrap();
    let run = json!({
        "run_id": run_id, "evalr_version": "0.1.0", "status": "finished",
        "program": {"name": "zero_shot", "path": "programs/zero_shot.jinja", "sha256": "ab12"},
        "dataset": {"spec": "mmlu:anatomy", "files": ["anatomy.jsonl"], "sha256": "cd34", "rows": 4},
        "model": {"identity": "openai-compatible:tiny", "backend": "openai"},
        "config": {"concurrency": 8, "temperature": 0.0},
        "shard": null, "started_at": "2026-11-24T02:00:00Z", "finished_at": "2026-11-24T02:01:00Z"
    });
    fs::write(
        dir.join("run.json"),
        serde_json::to_string_pretty(&run).unwrap(),
    )
    .unwrap();
    let summary = json!({"rows": 4, "accuracy": 0.75, "unparsed": 0,
                         "accuracy_by_subject": {"anatomy": 0.5, "astronomy": 1.0},
                         "accuracy_ci95": [0.3, 0.95], "model": "tiny"});
    fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    fs::write(dir.join("report.md"), "# Report\n\naccuracy 75.0%\n").unwrap();
    fs::write(dir.join("outputs.jsonl"), "{\"id\": \"a\"}\n").unwrap();
    fs::write(dir.join("errors.jsonl"), "").unwrap();
}

fn evalr(tracking_uri: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evalr"));
    for var in [
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_EXPERIMENT_NAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("MLFLOW_TRACKING_URI", tracking_uri);
    cmd
}

fn metric(run: &Value, key: &str) -> Option<f64> {
    run["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["key"] == key)?["value"]
        .as_f64()
}

fn param(run: &Value, key: &str) -> Option<String> {
    Some(
        run["data"]["params"]
            .as_array()?
            .iter()
            .find(|m| m["key"] == key)?["value"]
            .as_str()?
            .to_string(),
    )
}

/// One server for all scenarios: it takes tens of seconds to start.
#[test]
fn mlflow_log_against_a_real_tracking_server() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let api = format!("{}/api/2.0", server.base);
    let tmp = tempfile::tempdir().unwrap();

    // 1. A new run in a new experiment: params, metrics, artifacts, ended FINISHED.
    let dir = tmp.path().join("run-a");
    result_folder(&dir, "run-a");
    let assert = evalr(&server.base)
        .env("MLFLOW_EXPERIMENT_NAME", "evalr-test")
        .arg("mlflow-log")
        .arg(&dir)
        .assert()
        .success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();

    let experiment = get_json(&format!(
        "{api}/mlflow/experiments/get-by-name?experiment_name=evalr-test"
    ));
    let experiment_id = experiment["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let found = post_json(
        &format!("{api}/mlflow/runs/search"),
        json!({"experiment_ids": [experiment_id]}),
    );
    let runs = found["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run_id = runs[0]["info"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        stdout,
        format!(
            "logged {} to MLflow run {run_id} (experiment {experiment_id}) at {}: 17 params, 7 metrics, 4 artifacts (errors.jsonl, report.md, run.json, summary.json)\n",
            dir.display(),
            server.base
        )
    );
    let run = &get_json(&format!("{api}/mlflow/runs/get?run_id={run_id}"))["run"];
    assert_eq!(run["info"]["run_name"], "run-a");
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(metric(run, "accuracy"), Some(0.75));
    assert_eq!(metric(run, "accuracy_by_subject.anatomy"), Some(0.5));
    assert_eq!(metric(run, "accuracy_by_subject.astronomy"), Some(1.0));
    assert_eq!(metric(run, "accuracy_ci95.1"), Some(0.95));
    assert_eq!(metric(run, "rows"), Some(4.0));
    assert_eq!(run["data"]["metrics"].as_array().unwrap().len(), 7);
    assert_eq!(
        param(run, "model.identity").as_deref(),
        Some("openai-compatible:tiny")
    );
    assert_eq!(param(run, "config.concurrency").as_deref(), Some("8"));
    assert_eq!(
        param(run, "dataset.files").as_deref(),
        Some("[\"anatomy.jsonl\"]")
    );
    assert_eq!(param(run, "shard"), None);
    // run_id, evalr_version, status, program.{name,path,sha256}, dataset.{spec,files,sha256,
    // rows}, model.{identity,backend}, config.{concurrency,temperature}, started_at, finished_at
    assert_eq!(run["data"]["params"].as_array().unwrap().len(), 17);
    let listed = get_json(&format!("{api}/mlflow/artifacts/list?run_id={run_id}"));
    let mut names: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["errors.jsonl", "report.md", "run.json", "summary.json"]
    );
    let root = run["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mlflow-artifacts:/")
        .to_string();
    assert_eq!(
        get_text(&format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/report.md",
            server.base
        )),
        "# Report\n\naccuracy 75.0%\n"
    );

    // 2. An existing run (AzureML's MLFLOW_RUN_ID), through a proxy that records headers:
    //    logged into, not ended, with the MLFLOW_TRACKING_TOKEN bearer on every request.
    let created = post_json(
        &format!("{api}/mlflow/runs/create"),
        json!({"experiment_id": experiment_id, "run_name": "azureml-job", "start_time": 1}),
    );
    let job_run = created["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let proxy = RecordingProxy::start(&server.base);
    let dir_b = tmp.path().join("run-b");
    result_folder(&dir_b, "run-b");
    evalr(&proxy.base)
        .env("MLFLOW_RUN_ID", &job_run)
        .env("MLFLOW_TRACKING_TOKEN", "tracking-token-123")
        .arg("mlflow-log")
        .arg(&dir_b)
        .assert()
        .success();
    let run = &get_json(&format!("{api}/mlflow/runs/get?run_id={job_run}"))["run"];
    assert_eq!(run["info"]["status"], "RUNNING");
    assert_eq!(run["info"]["run_name"], "azureml-job");
    assert_eq!(metric(run, "accuracy"), Some(0.75));
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(_, _, auth)| auth.as_deref() == Some("Bearer tracking-token-123")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(_, path, _)| !path.ends_with("runs/create") && !path.ends_with("runs/update")),
        "{seen:?}"
    );
    drop(proxy);

    // 3. A folder that was not scored is refused before anything is sent.
    let dir_c = tmp.path().join("run-c");
    result_folder(&dir_c, "run-c");
    fs::remove_file(dir_c.join("summary.json")).unwrap();
    let assert = evalr(&server.base)
        .arg("mlflow-log")
        .arg(&dir_c)
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8(assert.get_output().stderr.clone()).unwrap(),
        format!(
            "error: {}: missing: score the run first (`evalr score {}`)\n",
            dir_c.join("summary.json").display(),
            dir_c.display()
        )
    );
}

#[test]
fn mlflow_log_needs_a_tracking_uri() {
    let tmp = tempfile::tempdir().unwrap();
    result_folder(tmp.path(), "r");
    let assert = Command::new(env!("CARGO_BIN_EXE_evalr"))
        .env_remove("MLFLOW_TRACKING_URI")
        .arg("mlflow-log")
        .arg(tmp.path())
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8(assert.get_output().stderr.clone()).unwrap(),
        "error: MLFLOW_TRACKING_URI is not set: point it at a tracking server (http://host:port, or the azureml:// URI of a workspace; AzureML jobs set it)\n"
    );
}

#[test]
fn an_unreachable_server_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    result_folder(tmp.path(), "r");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let assert = evalr(&format!("http://127.0.0.1:{port}"))
        .env("MLFLOW_EXPERIMENT_ID", "0")
        .arg("mlflow-log")
        .arg(tmp.path())
        .assert()
        .code(1);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "error: MLflow mlflow/runs/create at http://127.0.0.1:{port}: error sending request"
        )),
        "{stderr}"
    );
}
