//! `evalr run --batch` end to end against a local Files + Batches server (Azure and OpenAI
//! routes) whose lines are answered by the same chat server a live run talks to.

use crate::common::batch_server;
use crate::common::openai_server;
use crate::common::runs;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use batch_server::{BatchServer, BatchServerConfig};
use openai_server::{ChatServer, ServerConfig};
use runs::{answer_key, dataset_rows, evalr, read_jsonl, summary};
use serde_json::Value;

const POLL: &str = "0.01";

/// A chat server that knows the anatomy answers (two in three right) and a batch server in
/// front of it.
fn servers(config: BatchServerConfig) -> (ChatServer, BatchServer) {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, _) = answer_key(&rows, |i| i % 3 != 0);
    let chat = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let batch = BatchServer::start(config, chat.azure_endpoint());
    (chat, batch)
}

/// `evalr run PROGRAM` on anatomy as `azure:gpt-4o` against `endpoint`, into `folder`.
fn run(endpoint: &str, program: &str, folder: &Path, extra: &[&str]) -> Output {
    evalr()
        .env("AZURE_OPENAI_ENDPOINT", endpoint)
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            program,
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "azure:gpt-4o",
            "--no-cache",
            "--quiet",
        ])
        .args(extra)
        .arg("--results-dir")
        .arg(folder)
        .output()
        .unwrap()
}

fn batch_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--batch", "--batch-poll-interval", POLL];
    args.extend_from_slice(extra);
    args
}

fn ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The parts of an output record a batch run must reproduce (not timings).
fn comparable(record: &Value) -> Value {
    let mut record = record.clone();
    let map = record.as_object_mut().unwrap();
    map.remove("latency_ms");
    map.remove("finished_at");
    // How the row was priced, not what it is.
    map.remove("batch");
    for call in map["calls"].as_array_mut().unwrap() {
        call.as_object_mut().unwrap().remove("latency_ms");
    }
    record
}

fn by_id(folder: &Path) -> HashMap<String, Value> {
    read_jsonl(&folder.join("outputs.jsonl"))
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), comparable(&r)))
        .collect()
}

fn manifest(folder: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap()).unwrap()
}

fn assert_no_line_twice(server: &BatchServer) {
    let ids = server.accepted_custom_ids();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "a line was submitted twice");
    let runs = server.runs_per_request();
    assert!(
        runs.values().all(|&n| n == 1),
        "{} requests ran twice",
        runs.values().filter(|&&n| n > 1).count()
    );
}

#[test]
fn a_batch_run_equals_a_live_run_row_for_row() {
    let (chat, batch) = servers(BatchServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    // The live run goes to the same endpoint (the batch server passes chat requests on), so
    // that both runs name the same model identity.
    let live = dir.path().join("live");
    ok(&run(&batch.endpoint(), "zero_shot_letters", &live, &[]));
    let live_requests = chat.seen().len();
    let batched = dir.path().join("batch");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &batched,
        &batch_args(&["--batch-max-requests", "50"]),
    ));
    let (a, b) = (by_id(&live), by_id(&batched));
    assert_eq!(a.len(), 135);
    assert_eq!(
        a.keys().collect::<HashSet<_>>(),
        b.keys().collect::<HashSet<_>>()
    );
    for (id, record) in &a {
        assert_eq!(record, &b[id], "row {id} differs");
    }
    assert_eq!(summary(&live), summary(&batched));
    // 135 lines in three files of at most 50, each line sent once, none of them live.
    let batches = batch.batches();
    assert_eq!(
        batches.iter().map(|b| b.lines).collect::<Vec<_>>(),
        vec![50, 50, 35]
    );
    assert!(batches.iter().all(|b| b.status == "completed"));
    assert_no_line_twice(&batch);
    assert_eq!(chat.seen().len(), live_requests + 135);
    assert_eq!(batch.batch_requests_run(), 135);
    // Each line is the live request, with the deployment named in the body.
    let first_live = &chat.seen()[0].body;
    let lines = std::fs::read_to_string(batched.join("batch/round-1-part-1.jsonl")).unwrap();
    let line: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(line["method"], "POST");
    assert_eq!(line["url"], "/chat/completions");
    assert_eq!(line["body"]["model"], "gpt-4o");
    let mut body = line["body"].clone();
    body.as_object_mut().unwrap().remove("model");
    assert_eq!(body["logit_bias"], first_live["logit_bias"]);
    assert_eq!(body["max_tokens"], 1);
    // run.json names every batch and file.
    let ledger = &manifest(&batched)["batch"];
    assert_eq!(ledger["api"], "azure");
    let recorded: Vec<&str> = ledger["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        recorded,
        batches.iter().map(|b| b.id.as_str()).collect::<Vec<_>>()
    );
    for entry in ledger["batches"].as_array().unwrap() {
        assert!(
            entry["input_file_id"]
                .as_str()
                .unwrap()
                .starts_with("file-")
        );
        assert!(
            entry["output_file_id"]
                .as_str()
                .unwrap()
                .starts_with("file-out-")
        );
        assert_eq!(entry["state"], "done");
        assert!(
            batched
                .join(entry["output_file"].as_str().unwrap())
                .is_file()
        );
    }
    assert_eq!(manifest(&batched)["status"], "finished");
}

#[test]
fn a_two_call_program_runs_one_batch_per_call_and_equals_the_live_run() {
    let (_chat, batch) = servers(BatchServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_cot",
        &live,
        &["--limit", "20"],
    ));
    let batched = dir.path().join("batch");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_cot",
        &batched,
        &batch_args(&["--limit", "20"]),
    ));
    let (a, b) = (by_id(&live), by_id(&batched));
    assert_eq!(a.len(), 20);
    assert_eq!(a, b);
    // Round 1: the 20 explanations (gen); round 2: the 20 answers (select, logprobs).
    let batches = batch.batches();
    assert_eq!(batches.len(), 2);
    assert_eq!((batches[0].lines, batches[1].lines), (20, 20));
    let rounds: Vec<u64> = manifest(&batched)["batch"]["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, vec![1, 2]);
    assert_no_line_twice(&batch);
}

#[test]
fn the_openai_batch_api_works_by_base_url_with_a_bearer_key() {
    let (_chat, batch) = servers(BatchServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let openai = |base: String, folder: &Path, extra: &[&str]| {
        evalr()
            .env("OPENAI_BASE_URL", base)
            .env("OPENAI_API_KEY", "test-key")
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--dataset",
                "mmlu_anatomy_test",
                "--model",
                "openai:gpt-4o",
                "--no-cache",
                "--quiet",
                "--limit",
                "30",
            ])
            .args(extra)
            .arg("--results-dir")
            .arg(folder)
            .output()
            .unwrap()
    };
    ok(&openai(batch.openai_base_url(), &live, &[]));
    let batched = dir.path().join("batch");
    ok(&openai(batch.openai_base_url(), &batched, &batch_args(&[])));
    assert_eq!(by_id(&live), by_id(&batched));
    assert_eq!(manifest(&batched)["batch"]["api"], "openai");
    let lines = std::fs::read_to_string(batched.join("batch/round-1-part-1.jsonl")).unwrap();
    let line: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(line["url"], "/v1/chat/completions");
    assert_eq!(line["body"]["model"], "gpt-4o");
    assert_eq!(batch.batches()[0].endpoint, "/v1/chat/completions");
}

#[test]
fn failed_lines_go_into_a_follow_up_batch_and_then_into_errors() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let question = |i: usize| rows[i]["question"].as_str().unwrap().to_string();
    let (chat, batch) = servers(BatchServerConfig {
        fail_first: (0..5).map(question).collect(),
        fail_always: vec![question(10), question(11)],
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &folder,
        &batch_args(&["--max-retries", "2"]),
    ));
    // Five lines failed once and were answered by the next round; two fail every time and
    // are given up after three batches, as errors of their rows.
    let outputs = by_id(&folder);
    assert_eq!(outputs.len(), 133);
    let errors = read_jsonl(&folder.join("errors.jsonl"));
    assert_eq!(errors.len(), 2);
    let failed: HashSet<&str> = errors.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: HashSet<&str> = [10, 11]
        .iter()
        .map(|&i| rows[i]["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, expected);
    assert!(
        errors[0]["error"].as_str().unwrap().contains("HTTP 500"),
        "{}",
        errors[0]["error"]
    );
    let batches = batch.batches();
    assert_eq!(
        batches.iter().map(|b| b.lines).collect::<Vec<_>>(),
        vec![135, 7, 2]
    );
    let runs = batch.runs_per_request();
    for i in 0..5 {
        assert_eq!(
            runs.iter()
                .find(|(q, _)| q.contains(&question(i)))
                .unwrap()
                .1,
            &2
        );
    }
    assert_eq!(summary(&folder)["errors"], 2);
    // Nothing was sent live.
    assert_eq!(chat.seen().len(), batch.batch_requests_run());
}

#[test]
fn with_live_fallback_failed_lines_are_sent_live_at_once() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let question = |i: usize| rows[i]["question"].as_str().unwrap().to_string();
    let (chat, batch) = servers(BatchServerConfig {
        fail_always: (20..24).map(question).collect(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &folder,
        &batch_args(&["--batch-fallback", "live"]),
    ));
    assert_eq!(by_id(&folder).len(), 135);
    assert!(read_jsonl(&folder.join("errors.jsonl")).is_empty());
    // One batch; the four lines it failed went live, once each.
    assert_eq!(batch.batches().len(), 1);
    assert_eq!(batch.batch_requests_run(), 131);
    assert_eq!(chat.seen().len(), 131 + 4);
    // The four rows answered live are priced at the live rate, the others at the batch rate.
    let records = read_jsonl(&folder.join("outputs.jsonl"));
    let live_ids: HashSet<&str> = records
        .iter()
        .filter(|r| r.get("batch").is_none())
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let expected: HashSet<&str> = (20..24).map(|i| rows[i]["id"].as_str().unwrap()).collect();
    assert_eq!(live_ids, expected);
}

#[test]
fn batches_stay_within_the_enqueued_token_quota_and_queue_the_rest() {
    // The anatomy lines enqueue about 60-200 tokens each (prompt characters / 4 + 1).
    let quota = 4_000;
    let (_chat, batch) = servers(BatchServerConfig {
        enqueued_token_quota: Some(quota),
        lines_per_look: 10,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &folder,
        &batch_args(&["--batch-enqueued-tokens", &quota.to_string()]),
    ));
    assert_eq!(by_id(&folder).len(), 135);
    let batches = batch.batches();
    assert!(batches.len() >= 3, "{} batches", batches.len());
    assert_eq!(batch.refusals(), 0);
    assert!(batch.peak_enqueued() <= quota);
    assert_no_line_twice(&batch);
}

#[test]
fn without_a_configured_quota_refused_batches_are_split_and_queued() {
    let quota = 3_000;
    let (_chat, batch) = servers(BatchServerConfig {
        enqueued_token_quota: Some(quota),
        lines_per_look: 20,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &folder,
        &batch_args(&[]),
    ));
    assert_eq!(by_id(&folder).len(), 135);
    assert!(batch.refusals() > 0);
    assert!(batch.peak_enqueued() <= quota);
    assert_no_line_twice(&batch);
    let ledger = &manifest(&folder)["batch"];
    assert!(ledger["learned_enqueued_tokens"].as_u64().unwrap() <= quota);
    assert!(
        ledger["batches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["state"] == "split")
    );
}

#[test]
fn an_expired_batch_is_resumed_with_the_lines_it_did_not_run() {
    let (_chat, batch) = servers(BatchServerConfig {
        lines_per_look: 40,
        expire_after_looks: Some(2),
        expire_batches: 1,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &folder,
        &batch_args(&[]),
    ));
    assert_eq!(by_id(&folder).len(), 135);
    let batches = batch.batches();
    assert_eq!(batches[0].status, "expired");
    // The expired batch ran some lines; the next one holds exactly the others.
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].lines, 135);
    assert!(batches[1].lines < 135 && batches[1].lines > 0);
    assert_eq!(batch.runs_per_request().len(), 135);
    assert!(batch.runs_per_request().values().all(|&n| n == 1));
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_batch_run(batch: &BatchServer, folder: &Path) -> std::process::Child {
    evalr()
        .env("AZURE_OPENAI_ENDPOINT", batch.endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "azure:gpt-4o",
            "--no-cache",
            "--batch",
            "--batch-poll-interval",
            POLL,
            "--batch-max-requests",
            "40",
        ])
        .arg("--results-dir")
        .arg(folder)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn recorded_batch_ids(folder: &Path) -> usize {
    std::fs::read_to_string(folder.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|m| {
            m["batch"]["batches"]
                .as_array()
                .map(|b| b.iter().filter(|e| e["batch_id"].is_string()).count())
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_batch_run_resumes_by_reattaching_and_sends_nothing_twice() {
    let (_chat, batch) = servers(BatchServerConfig::default());
    batch.hold();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let mut child = spawn_batch_run(&batch, &folder);
    // Four batches of at most 40 lines are created and recorded, then held in progress.
    wait_for("four batches recorded", || recorded_batch_ids(&folder) == 4);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(read_jsonl(&folder.join("outputs.jsonl")).is_empty());
    batch.release();
    let output = evalr()
        .env("AZURE_OPENAI_ENDPOINT", batch.endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args(["run", "--quiet", "--resume"])
        .arg(&folder)
        .output()
        .unwrap();
    ok(&output);
    assert_eq!(by_id(&folder).len(), 135);
    assert_eq!(batch.batches().len(), 4);
    assert_no_line_twice(&batch);
    assert_eq!(manifest(&folder)["status"], "finished");
}

#[test]
fn ctrl_c_leaves_the_batches_running_and_says_how_to_resume_or_cancel() {
    let (_chat, batch) = servers(BatchServerConfig {
        lines_per_look: 15,
        ..Default::default()
    });
    batch.hold();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let child = spawn_batch_run(&batch, &folder);
    wait_for("four batches recorded", || recorded_batch_ids(&folder) == 4);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("evalr run --resume"), "{stderr}");
    assert!(stderr.contains("evalr batch cancel"), "{stderr}");
    assert_eq!(manifest(&folder)["status"], "interrupted");
    assert!(
        batch
            .batches()
            .iter()
            .all(|b| b.status == "in_progress" || b.status == "validating")
    );

    // Cancel the batches and resume: the lines they did not run go into new batches.
    batch.release();
    let cancel = evalr()
        .env("AZURE_OPENAI_ENDPOINT", batch.endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args(["batch", "cancel"])
        .arg(&folder)
        .output()
        .unwrap();
    ok(&cancel);
    assert_eq!(
        String::from_utf8_lossy(&cancel.stdout)
            .matches(": cancelling")
            .count(),
        4,
        "{}",
        String::from_utf8_lossy(&cancel.stdout)
    );
    let output = evalr()
        .env("AZURE_OPENAI_ENDPOINT", batch.endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args(["run", "--quiet", "--resume"])
        .arg(&folder)
        .output()
        .unwrap();
    ok(&output);
    assert_eq!(by_id(&folder).len(), 135);
    // The four cancelled batches had run nothing: their 135 lines went into four new ones.
    let batches = batch.batches();
    assert!(batches[..4].iter().all(|b| b.status == "cancelled"));
    assert_eq!(batches.len(), 8);
    assert_eq!(batches[4..].iter().map(|b| b.lines).sum::<usize>(), 135);
    let runs = batch.runs_per_request();
    assert_eq!(runs.len(), 135);
    assert!(runs.values().all(|&n| n == 1));
}

/// The official `openai` Python client, as a second client of the test server: upload,
/// create, retrieve until done, download, on both the OpenAI and the Azure routes.
#[test]
fn the_official_openai_python_client_speaks_to_the_batch_server() {
    let (_chat, batch) = servers(BatchServerConfig {
        lines_per_look: 1,
        ..Default::default()
    });
    let script = r#"
import json, sys, time, openai
base, endpoint = sys.argv[1], sys.argv[2]
line = {"custom_id": "q-1", "method": "POST", "body": {"messages": [{"role": "user", "content": "Say A"}], "max_tokens": 1}}
clients = [
    ("openai", openai.OpenAI(base_url=base, api_key="test-key"), "/v1/chat/completions", "gpt-4o"),
    ("azure", openai.AzureOpenAI(azure_endpoint=endpoint, api_key="test-key", api_version="2024-10-21"), "/chat/completions", "gpt-4o"),
]
for name, client, url, model in clients:
    lines = []
    for i in range(3):
        l = json.loads(json.dumps(line)); l["custom_id"] = f"q-{i}"; l["url"] = url; l["body"]["model"] = model
        lines.append(json.dumps(l))
    f = client.files.create(file=("in.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint=url, completion_window="24h")
    seen = [b.status]
    while b.status not in ("completed", "failed", "expired", "cancelled"):
        b = client.batches.retrieve(b.id)
        if b.status != seen[-1]:
            seen.append(b.status)
    assert seen == ["validating", "in_progress", "finalizing", "completed"], seen
    assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (3, 3, 0)
    out = [json.loads(x) for x in client.files.content(b.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == ["q-0", "q-1", "q-2"], out
    assert all(o["response"]["status_code"] == 200 for o in out)
    assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == "A"
    listed = client.batches.list()
    assert any(x.id == b.id for x in listed.data)
    f2 = client.files.create(file=("in.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch")
    c = client.batches.create(input_file_id=f2.id, endpoint=url, completion_window="24h")
    c = client.batches.cancel(c.id)
    assert c.status == "cancelling", c.status
    c = client.batches.retrieve(c.id)
    assert c.status == "cancelled", c.status
    errors = [json.loads(x) for x in client.files.content(c.error_file_id).text.splitlines()]
    assert [e["error"]["code"] for e in errors] == ["batch_cancelled"] * 3, errors
    print(name, "ok")
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(batch.openai_base_url())
        .arg(batch.endpoint())
        .output()
        .expect("python3 with the openai package (pip install openai)");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "openai ok\nazure ok\n"
    );
}

/// A profile with prices, whose runs go through batches (`batch = true`).
fn priced_profile(dir: &Path, endpoint: &str, batch: bool) -> std::path::PathBuf {
    let path = dir.join(if batch { "batch.toml" } else { "live.toml" });
    std::fs::write(
        &path,
        format!(
            r#"
[models.gpt4o]
kind = "azure"
endpoint = "{endpoint}"
deployment = "gpt-4o"
model = "gpt-4o"
batch = {batch}
prices = {{ input_per_mtok = 2.5, output_per_mtok = 10.0 }}
"#
        ),
    )
    .unwrap();
    path
}

fn priced_run(config: &Path, folder: &Path, extra: &[&str]) -> Output {
    evalr()
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "gpt4o",
            "--no-cache",
            "--quiet",
            "--batch-poll-interval",
            POLL,
        ])
        .args(extra)
        .arg("--config")
        .arg(config)
        .arg("--results-dir")
        .arg(folder)
        .output()
        .unwrap()
}

#[test]
fn batch_rows_cost_the_batch_rate_in_the_dry_run_and_the_report() {
    let (_chat, batch) = servers(BatchServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let live_config = priced_profile(dir.path(), &batch.endpoint(), false);
    let batch_config = priced_profile(dir.path(), &batch.endpoint(), true);
    let cost_line = |output: &Output| {
        ok(output);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|l| l.starts_with("cost:"))
            .unwrap()
            .to_string()
    };
    let dollars = |line: &str| -> f64 {
        line.split('$')
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let live_estimate = cost_line(&priced_run(
        &live_config,
        &dir.path().join("d1"),
        &["--dry-run"],
    ));
    let batch_estimate = cost_line(&priced_run(
        &batch_config,
        &dir.path().join("d2"),
        &["--dry-run"],
    ));
    assert!(batch_estimate.contains("batch rate"), "{batch_estimate}");
    assert!(!live_estimate.contains("batch rate"), "{live_estimate}");
    assert!((dollars(&batch_estimate) * 2.0 - dollars(&live_estimate)).abs() < 2e-4);
    // The same rows, live and through batches (the profile's `batch = true`): same tokens,
    // half the cost.
    let live = dir.path().join("live");
    let batched = dir.path().join("batched");
    ok(&priced_run(&live_config, &live, &[]));
    ok(&priced_run(&batch_config, &batched, &[]));
    assert_eq!(batch.batches().len(), 1);
    let full = |folder: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap()
    };
    let (a, b) = (full(&live), full(&batched));
    assert_eq!(a["tokens"], b["tokens"]);
    let (live_cost, batch_cost) = (
        a["cost"]["total"].as_f64().unwrap(),
        b["cost"]["total"].as_f64().unwrap(),
    );
    assert!(live_cost > 0.0);
    assert!(
        (batch_cost * 2.0 - live_cost).abs() < 1e-12,
        "{batch_cost} {live_cost}"
    );
    assert_eq!(b["cost"]["batch_rows"], 135);
    assert_eq!(a["cost"]["batch_rows"], 0);
    assert!(
        read_jsonl(&batched.join("outputs.jsonl"))
            .iter()
            .all(|r| r["batch"] == true)
    );
    assert!(
        read_jsonl(&live.join("outputs.jsonl"))
            .iter()
            .all(|r| r.get("batch").is_none())
    );
}

#[test]
fn a_select_whose_batch_answer_lacks_logprobs_falls_back_to_generation_in_the_next_round() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, _) = answer_key(&rows, |i| i % 3 != 0);
    let chat = ChatServer::start(ServerConfig {
        answer_key: key,
        logprobs: false,
        ..Default::default()
    });
    let batch = BatchServer::start(BatchServerConfig::default(), chat.azure_endpoint());
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &live,
        &["--limit", "30"],
    ));
    let batched = dir.path().join("batch");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &batched,
        &batch_args(&["--limit", "30"]),
    ));
    // Round 1 asked for logprobs and got none; round 2 asked each row's question again as a
    // short generation, as the live run does after its first answer without logprobs.
    let batches = batch.batches();
    assert_eq!(
        batches.iter().map(|b| b.lines).collect::<Vec<_>>(),
        vec![30, 30]
    );
    let (a, b) = (by_id(&live), by_id(&batched));
    assert_eq!(b.len(), 30);
    for (id, record) in &b {
        let call = &record["calls"][0];
        assert_eq!(call["path"], "generate_match", "{id}");
        assert_eq!(call["chosen"], a[id]["calls"][0]["chosen"], "{id}");
        assert_eq!(record["outcome"], a[id]["outcome"], "{id}");
    }
    assert_eq!(summary(&batched)["correct"], 20);
    let second: Value = serde_json::from_str(
        std::fs::read_to_string(batched.join("batch/round-2-part-1.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(second["body"].get("logprobs").is_none());
}

/// Batch input and output files are created with the user's umask like any file (they were
/// 0600: `tempfile` makes its files so, and the rename kept it), so a colleague or a CI job
/// reading the run folder on a shared datastore can read them.
#[cfg(unix)]
#[test]
fn batch_files_are_created_with_the_users_umask() {
    use std::os::unix::fs::PermissionsExt;
    let (_chat, batch) = servers(BatchServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("batch");
    ok(&run(
        &batch.endpoint(),
        "zero_shot_letters",
        &folder,
        &batch_args(&["--limit", "4"]),
    ));
    let mode = |path: &Path| std::fs::metadata(path).expect("file").permissions().mode() & 0o777;
    // What a plain new file gets here (0644 under the usual umask 022).
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    let files: Vec<_> = std::fs::read_dir(folder.join("batch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("round-1"))
            && files
                .iter()
                .any(|f| f.to_string_lossy().ends_with("-output.jsonl")),
        "{files:?}"
    );
    for file in &files {
        assert_eq!(mode(file), mode(&plain), "{}", file.display());
    }
}
