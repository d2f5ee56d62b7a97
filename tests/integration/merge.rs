//! `evalr merge` on shard folders written by evalr's results writer.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use evalr::azureml::shard::ShardSpec;
use evalr::results::{ErrorRecord, OutputRecord, RunManifest, write_folder};
use serde_json::{Value, json};

const COUNT: u32 = 4;

/// Dataset order on purpose not the natural id order, so the test sees which one was used.
fn ids() -> Vec<String> {
    [7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6]
        .iter()
        .map(|n| format!("mmlu/anatomy/test/{n}"))
        .collect()
}

fn output_record(id: &str, shard: u32) -> OutputRecord {
    serde_json::from_value(json!({"id": id, "row": {"id": id, "question": "q", "choices": ["a", "b"], "correct_answer": 1},
           "program": "zero_shot", "captures": {"answer": "B"},
           "answer": {"capture": "answer", "option": "B", "index": 1}, "outcome": "correct",
           "calls": [], "usage": {"prompt_tokens": 10, "completion_tokens": 1},
           "latency_ms": 12.5, "attempts": 1, "rate_limited": 0, "model": "m",
           "finished_at": format!("2026-11-24T02:2{shard}:00Z")}))
    .unwrap()
}

/// The line the results writer makes of a row's record.
fn output_line(id: &str, shard: u32) -> String {
    serde_json::to_string(&output_record(id, shard)).unwrap()
}

fn failed(id: &str, error: &str, at: &str) -> ErrorRecord {
    serde_json::from_value(
        json!({"id": id, "kind": "failed", "error": error, "attempts": 3, "at": at}),
    )
    .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    shared: PathBuf,
    dataset: PathBuf,
}

fn run_json(spec: ShardSpec, dataset: &Path, dataset_sha: &str) -> Value {
    json!({
        "run_id": "run-42",
        "evalr_version": "0.1.0",
        "status": "finished",
        "program": {"name": "zero_shot", "path": "programs/zero_shot.jinja", "sha256": "p".repeat(64)},
        "dataset": {"spec": dataset.display().to_string(), "files": [dataset.display().to_string()],
                    "sha256": dataset_sha, "rows": 12},
        "model": {"identity": "openai-compatible:m", "backend": "openai"},
        "config": {"concurrency": 8},
        "shard": {"index": spec.index, "count": spec.count},
        "started_at": format!("2026-11-24T02:1{}:00Z", 4 - spec.index),
        "finished_at": format!("2026-11-24T02:3{}:00Z", spec.index),
    })
}

/// Four shards under `root/shared/shard-K-of-4/`, rows assigned by the real `owns`.
/// Shard owning `ids()[0]` also logged an error for it before finishing it on resume; the row
/// `ids()[1]` failed for good.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let dataset = root.join("anatomy.jsonl");
    let rows: Vec<String> = ids()
        .iter()
        .map(|id| {
            json!({"id": id, "question": "q", "choices": ["a", "b"], "correct_answer": 1})
                .to_string()
        })
        .collect();
    fs::write(&dataset, rows.join("\n") + "\n").unwrap();
    let shared = root.join("shared");
    let ids = ids();
    for index in 0..COUNT {
        let spec = ShardSpec::new(index, COUNT).unwrap();
        let folder = shared.join(spec.folder_name());
        let run: RunManifest = serde_json::from_value(run_json(spec, &dataset, "d1")).unwrap();
        let mut outputs = Vec::new();
        let mut errors = Vec::new();
        for id in ids.iter().filter(|id| spec.owns(id)) {
            if id == &ids[0] {
                errors.push(failed(id, "HTTP 500", "2026-11-24T02:20:00Z"));
            }
            if id == &ids[1] {
                errors.push(failed(id, "HTTP 500", "2026-11-24T02:21:00Z"));
                errors.push(failed(id, "HTTP 503", "2026-11-24T02:22:00Z"));
                continue;
            }
            outputs.push(output_record(id, index));
        }
        write_folder(&folder, &run, &outputs, &errors).unwrap();
    }
    Fixture {
        _dir: dir,
        root,
        shared,
        dataset,
    }
}

fn evalr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_evalr"))
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn shard_of_id(id: &str) -> u32 {
    (0..COUNT)
        .find(|&i| ShardSpec::new(i, COUNT).unwrap().owns(id))
        .unwrap()
}

#[test]
fn merges_four_shards_into_one_run_in_dataset_order() {
    let f = fixture();
    let out = f.root.join("merged");
    let assert = evalr()
        .arg("merge")
        .arg(&f.shared)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert_eq!(
        stderr,
        format!(
            "merged 4 shards into {}: 11 rows, 1 errors, status finished (dataset order; 0 duplicate output lines and 2 superseded error lines dropped)\n",
            out.display()
        )
    );

    // Exactly the lines the shards wrote, in the dataset's order, the failed row absent.
    let expected: Vec<String> = ids()
        .iter()
        .filter(|id| **id != ids()[1])
        .map(|id| output_line(id, shard_of_id(id)))
        .collect();
    assert_eq!(lines(&out.join("outputs.jsonl")), expected);

    // The row that finished after an error is not an error; the row that failed twice keeps
    // its last error.
    let errors = lines(&out.join("errors.jsonl"));
    assert_eq!(errors.len(), 1);
    let error: Value = serde_json::from_str(&errors[0]).unwrap();
    assert_eq!(error["id"], json!(ids()[1]));
    assert_eq!(error["error"], json!("HTTP 503"));

    let run: Value =
        serde_json::from_str(&fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["shard"], Value::Null);
    assert_eq!(run["run_id"], json!("run-42"));
    assert_eq!(run["status"], json!("finished"));
    assert_eq!(run["started_at"], json!("2026-11-24T02:11:00Z"));
    assert_eq!(run["finished_at"], json!("2026-11-24T02:33:00Z"));
    assert_eq!(run["dataset"]["sha256"], json!("d1"));
    assert_eq!(run["merged_from"].as_array().unwrap().len(), 4);
    assert_eq!(run["merged_from"][2]["index"], json!(2));
}

#[test]
fn shard_folders_can_be_named_one_by_one() {
    let f = fixture();
    let out = f.root.join("merged");
    let mut cmd = evalr();
    cmd.arg("merge");
    for i in [3, 1, 0, 2] {
        cmd.arg(f.shared.join(format!("shard-{i}-of-4")));
    }
    cmd.arg("--out").arg(&out).assert().success();
    assert_eq!(lines(&out.join("outputs.jsonl")).len(), 11);
}

#[test]
fn missing_shards_are_listed_and_nothing_is_written() {
    let f = fixture();
    let out = f.root.join("merged");
    let s0 = f.shared.join("shard-0-of-4");
    let s2 = f.shared.join("shard-2-of-4");
    let assert = evalr()
        .arg("merge")
        .arg(&s0)
        .arg(&s2)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8(assert.get_output().stderr.clone()).unwrap(),
        format!(
            "error: missing shard(s) 1/4, 3/4 of 4; found 0/4 in {}, 2/4 in {}\n",
            s0.display(),
            s2.display()
        )
    );
    assert!(!out.exists());
}

#[test]
fn shards_of_different_runs_are_refused() {
    let f = fixture();
    let s3 = f.shared.join("shard-3-of-4");
    let spec = ShardSpec::new(3, 4).unwrap();
    fs::write(
        s3.join("run.json"),
        run_json(spec, &f.dataset, "d2").to_string(),
    )
    .unwrap();
    let assert = evalr()
        .arg("merge")
        .arg(&f.shared)
        .arg("--out")
        .arg(f.root.join("merged"))
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8(assert.get_output().stderr.clone()).unwrap(),
        format!(
            "error: the shards are not from the same run: dataset.sha256 is \"d1\" in {} but \"d2\" in {}\n",
            f.shared.join("shard-0-of-4").display(),
            s3.display()
        )
    );
}

#[test]
fn the_same_shard_twice_is_refused() {
    let f = fixture();
    let copy = f.root.join("copy-of-1");
    fs::create_dir_all(&copy).unwrap();
    for name in ["run.json", "outputs.jsonl", "errors.jsonl"] {
        fs::copy(f.shared.join("shard-1-of-4").join(name), copy.join(name)).unwrap();
    }
    let assert = evalr()
        .arg("merge")
        .arg(&f.shared)
        .arg(&copy)
        .arg("--out")
        .arg(f.root.join("merged"))
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8(assert.get_output().stderr.clone()).unwrap(),
        format!(
            "error: shard 1/4 is given twice: {} and {}\n",
            f.shared.join("shard-1-of-4").display(),
            copy.display()
        )
    );
}

#[test]
fn an_unsharded_run_is_not_merged() {
    let f = fixture();
    let s0 = f.shared.join("shard-0-of-4");
    let mut run: Value =
        serde_json::from_str(&fs::read_to_string(s0.join("run.json")).unwrap()).unwrap();
    run["shard"] = Value::Null;
    fs::write(s0.join("run.json"), run.to_string()).unwrap();
    let assert = evalr()
        .arg("merge")
        .arg(&s0)
        .arg("--out")
        .arg(f.root.join("m"))
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8(assert.get_output().stderr.clone()).unwrap(),
        format!(
            "error: {}: this run was not sharded (run.json has \"shard\": null); nothing to merge\n",
            s0.display()
        )
    );
}

#[test]
fn without_the_dataset_rows_come_in_natural_id_order_and_a_torn_line_is_skipped() {
    let f = fixture();
    fs::remove_file(&f.dataset).unwrap();
    // A shard killed mid-write: its last line is cut short and has no newline.
    let s1 = f.shared.join("shard-1-of-4").join("outputs.jsonl");
    let mut text = fs::read_to_string(&s1).unwrap();
    text += "{\"id\": \"mmlu/anatomy/test/99\", \"row\": {";
    fs::write(&s1, text).unwrap();
    // ... and an interrupted shard makes the merged run interrupted, without finished_at.
    let s2 = f.shared.join("shard-2-of-4").join("run.json");
    let mut run: Value = serde_json::from_str(&fs::read_to_string(&s2).unwrap()).unwrap();
    run["status"] = json!("interrupted");
    run["finished_at"] = Value::Null;
    fs::write(&s2, run.to_string()).unwrap();

    let out = f.root.join("merged");
    let assert = evalr()
        .arg("merge")
        .arg(&f.shared)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains(&format!(
            "warning: {}:{}: skipped a torn last line (a write cut short)\n",
            s1.display(),
            ids()
                .iter()
                .filter(|id| ShardSpec::new(1, 4).unwrap().owns(id) && **id != ids()[1])
                .count()
                + 1
        )),
        "{stderr}"
    );
    assert!(stderr.contains("warning: shard 2/4 ("), "{stderr}");
    assert!(
        stderr.contains(
            "11 rows, 1 errors, status interrupted (id order (dataset files not readable here)"
        ),
        "{stderr}"
    );

    let got: Vec<String> = lines(&out.join("outputs.jsonl"))
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11] // 3 = ids()[1] failed
        .iter()
        .map(|n| format!("mmlu/anatomy/test/{n}"))
        .collect();
    assert_eq!(got, expected);
    let run: Value =
        serde_json::from_str(&fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], json!("interrupted"));
    assert_eq!(run["finished_at"], Value::Null);
}

#[test]
fn an_existing_run_is_not_overwritten() {
    let f = fixture();
    let out = f.root.join("merged");
    evalr()
        .arg("merge")
        .arg(&f.shared)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let assert = evalr()
        .arg("merge")
        .arg(&f.shared)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8(assert.get_output().stderr.clone()).unwrap(),
        format!(
            "error: {}: already holds a run (run.json exists); choose a new --out folder or remove it\n",
            out.display()
        )
    );
}

/// A failed shard merged with a budget-stopped one: the merged run is `failed` (the worst),
/// never `stopped_max_cost` (merge used to rank statuses as strings and forgot `failed`).
#[test]
fn a_failed_shard_is_never_reported_as_a_budget_stop() {
    let f = fixture();
    for (index, status) in [(1, "stopped_max_cost"), (2, "failed")] {
        let path = f
            .shared
            .join(format!("shard-{index}-of-4"))
            .join("run.json");
        let mut run: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        run["status"] = json!(status);
        fs::write(&path, run.to_string()).unwrap();
    }
    let out = f.root.join("merged");
    let assert = evalr()
        .arg("merge")
        .arg(&f.shared)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("status failed ("), "{stderr}");
    let run: Value =
        serde_json::from_str(&fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], json!("failed"));
    assert_eq!(run["merged_from"][2]["status"], json!("failed"));
}
