//! One dataset run as 4 shards in 4 processes, merged with `evalr merge`, gives exactly the
//! rows of the unsharded run; a shard killed mid-run and resumed loses nothing and sends no
//! row twice.
//!
//! Needs the run core to write `--shard K/N --results-dir DIR` into `DIR/shard-K-of-N/`
//! (`evalr::azureml::shard::ShardSpec::folder_name`), as azureml/jobs/sharded-run.yml relies
//! on: every rank of the MPI job is given the same output folder.

use crate::common::openai_server;
use crate::common::runs;
use crate::common::runs::succeeds;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openai_server::{ChatServer, ServerConfig};
use runs::{answer_key, dataset_rows, evalr, letters_run, read_jsonl, summary};
use serde_json::Value;

const SHARDS: u32 = 4;

fn run_command(server: &ChatServer, results: &Path, shard: Option<u32>) -> std::process::Command {
    let mut command = letters_run(&server.azure_endpoint());
    command
        .args(["--no-cache", "--quiet", "--max-in-flight", "4"])
        .arg("--results-dir")
        .arg(results);
    if let Some(k) = shard {
        command.arg("--shard").arg(format!("{k}/{SHARDS}"));
    }
    command
}

/// An output line without what differs between two runs of the same rows (times).
fn stable(mut record: Value) -> Value {
    let object = record.as_object_mut().unwrap();
    object.remove("latency_ms");
    object.remove("finished_at");
    for call in object["calls"].as_array_mut().unwrap() {
        call.as_object_mut().unwrap().remove("latency_ms");
    }
    record
}

fn by_id(records: Vec<Value>) -> BTreeMap<String, Value> {
    records
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), stable(r)))
        .collect()
}

fn outcome_counts(records: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts
            .entry(r["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter(|l| serde_json::from_str::<Value>(l).is_ok())
                .count()
        })
        .unwrap_or(0)
}

fn merge(shards: &Path, out: &Path) {
    succeeds(evalr().arg("merge").arg(shards).arg("--out").arg(out));
}

#[test]
fn four_shards_merged_equal_the_unsharded_run() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, correct) = answer_key(&rows, |i| i % 3 != 0);
    let config = ServerConfig {
        answer_key: key,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();

    // One server for both runs: its address is part of the model identity in every line.
    let server = ChatServer::start(config);
    let whole = dir.path().join("whole");
    let status = run_command(&server, &whole, None).status().unwrap();
    assert!(status.success());
    assert_eq!(server.seen().len(), 135);

    let shards = dir.path().join("shards");
    let mut children: Vec<_> = (0..SHARDS)
        .map(|k| run_command(&server, &shards, Some(k)).spawn().unwrap())
        .collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let merged = dir.path().join("merged");
    merge(&shards, &merged);

    let whole_records = read_jsonl(&whole.join("outputs.jsonl"));
    let merged_records = read_jsonl(&merged.join("outputs.jsonl"));
    assert_eq!(merged_records.len(), 135);
    // The same rows with the same answers, calls, usage and outcomes.
    let (merged_by_id, whole_by_id) = (by_id(merged_records.clone()), by_id(whole_records.clone()));
    assert_eq!(merged_by_id.len(), whole_by_id.len());
    for (id, record) in &whole_by_id {
        assert_eq!(merged_by_id.get(id), Some(record), "row {id} differs");
    }
    assert_eq!(
        outcome_counts(&merged_records),
        outcome_counts(&whole_records)
    );
    assert_eq!(outcome_counts(&merged_records)["correct"], correct);
    assert_eq!(
        summary(&whole)["correct"].as_u64().unwrap() as usize,
        correct
    );
    // In dataset order, each row sent once over all shards.
    let ids: Vec<&str> = merged_records
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let dataset_ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, dataset_ids);
    // The shards sent each row exactly once: every question was asked twice in all.
    assert!(server.answered_per_question().values().all(|&n| n == 2));
    assert_eq!(server.seen().len(), 270);
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["shard"], Value::Null);
    assert_eq!(run["status"], "finished");
    assert_eq!(
        run["merged_from"].as_array().unwrap().len(),
        SHARDS as usize
    );
}

#[test]
fn a_shard_killed_and_resumed_loses_nothing() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, correct) = answer_key(&rows, |i| i % 4 != 1);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        latency: Duration::from_millis(40),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    let folder = |k: u32| -> PathBuf { shards.join(format!("shard-{k}-of-{SHARDS}")) };
    // Shards 0, 1 and 3 run to the end; then shard 2 runs, is killed after 10 rows, and resumed.
    let mut others: Vec<_> = [0, 1, 3]
        .iter()
        .map(|&k| run_command(&server, &shards, Some(k)).spawn().unwrap())
        .collect();
    for child in &mut others {
        assert!(child.wait().unwrap().success());
    }
    // The server answers shard 2's first 10 requests and holds every later one unanswered. Once
    // its 10 rows are on disk no answer is on its way to it, so the kill cannot land between an
    // answer and its line (such a row is rightly sent again on resume, and would be counted
    // twice below: the race this test used to lose under load).
    server.hang_after(10);
    let mut victim = run_command(&server, &shards, Some(2)).spawn().unwrap();
    let outputs = folder(2).join("outputs.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines_in(&outputs) < 10 {
        assert!(Instant::now() < deadline, "shard 2 never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert_eq!(lines_in(&outputs), 10, "only answered rows are written");
    // Merging now would merge an unfinished shard: it is, with its status.
    let early = dir.path().join("early");
    merge(&shards, &early);
    let early_run: Value =
        serde_json::from_str(&std::fs::read_to_string(early.join("run.json")).unwrap()).unwrap();
    assert_ne!(early_run["status"], "finished");
    assert!(read_jsonl(&early.join("outputs.jsonl")).len() < 135);

    server.stop_hanging();
    let mut resume = evalr();
    resume
        .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args(["run", "--quiet", "--resume"])
        .arg(folder(2));
    assert!(resume.status().unwrap().success());

    let merged = dir.path().join("merged");
    merge(&shards, &merged);
    let records = read_jsonl(&merged.join("outputs.jsonl"));
    assert_eq!(records.len(), 135);
    assert_eq!(outcome_counts(&records)["correct"], correct);
    let counts = server.answered_per_question();
    assert_eq!(counts.len(), 135);
    assert!(
        counts.values().all(|&n| n == 1),
        "rows sent twice: {}",
        counts.values().filter(|&&n| n > 1).count()
    );
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], "finished");
}
