//! Medprompt-class runs end to end against the local Azure OpenAI / OpenAI-compatible server:
//! choice-shuffle ensembles and their resume, embeddings (`evalr embed`), kNN examples,
//! self-generated chain-of-thought examples, and the dry run of a medprompt run.

use crate::common::openai_server;
use crate::common::runs;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use openai_server::{ChatServer, ServerConfig, test_embedding};
use runs::{dataset_rows, evalr, read_jsonl, summary};
use serde_json::Value;

/// A key that makes the server answer each anatomy row by the *content* of a choice: the
/// correct one where `right(i)`, else the next one. Returns the key and the rows answered right.
fn choice_key(rows: &[Value], right: impl Fn(usize) -> bool) -> (Vec<(String, String)>, usize) {
    let mut correct = 0;
    let key = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let choices = row["choices"].as_array().unwrap();
            let answer = row["correct_answer"].as_u64().unwrap() as usize;
            let given = if right(i) {
                correct += 1;
                answer
            } else {
                (answer + 1) % choices.len()
            };
            (
                row["question"].as_str().unwrap().to_string(),
                choices[given].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (key, correct)
}

fn azure(server: &ChatServer, command: &mut std::process::Command) {
    command
        .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key");
}

fn run(server: &ChatServer, args: &[&str], folder: &Path) -> std::process::Output {
    let mut command = evalr();
    azure(server, &mut command);
    command
        .arg("run")
        .args(args)
        .args(["--model", "azure:gpt-4o", "--quiet"])
        .arg("--results-dir")
        .arg(folder)
        .output()
        .unwrap()
}

fn assert_ok(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn by_id(records: &[Value]) -> HashMap<String, &Value> {
    records
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn a_shuffled_ensemble_scores_exactly_as_the_plain_run_and_every_repeat_agrees() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, correct) = choice_key(&rows, |i| i % 3 != 0);
    let server = ChatServer::start(ServerConfig {
        choice_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let common = [
        "--program",
        "zero_shot_letters",
        "--dataset",
        "mmlu_anatomy_test",
        "--no-cache",
    ];
    assert_ok(&run(&server, &common, &plain));
    assert_eq!(
        summary(&plain)["correct"].as_u64().unwrap() as usize,
        correct
    );
    let plain_records = read_jsonl(&plain.join("outputs.jsonl"));
    let plain_by_id = by_id(&plain_records);

    for shuffle in ["plain-hunt", "random"] {
        let before = server.seen().len();
        let folder = dir.path().join(shuffle);
        let mut args = common.to_vec();
        args.extend(["--repeats", "5", "--shuffle", shuffle, "--seed", "3"]);
        assert_ok(&run(&server, &args, &folder));
        // Accuracy equals the plain run's exactly, row by row.
        assert_eq!(
            summary(&folder)["correct"].as_u64().unwrap() as usize,
            correct
        );
        assert_eq!(server.seen().len() - before, 5 * rows.len(), "{shuffle}");
        let records = read_jsonl(&folder.join("outputs.jsonl"));
        assert_eq!(records.len(), rows.len());
        let mut moved = 0;
        for record in &records {
            let id = record["id"].as_str().unwrap();
            let plain_answer = &plain_by_id[id]["answer"]["index"];
            assert_eq!(&record["answer"]["index"], plain_answer, "{id}");
            assert_eq!(record["outcome"], plain_by_id[id]["outcome"], "{id}");
            let ensemble = &record["ensemble"];
            assert_eq!(ensemble["shuffle"], shuffle);
            assert_eq!(ensemble["reduce"], "majority");
            let repeats = ensemble["repeats"].as_array().unwrap();
            assert_eq!(repeats.len(), 5);
            let mut permutations = HashSet::new();
            for (r, repeat) in repeats.iter().enumerate() {
                assert_eq!(repeat["repeat"].as_u64().unwrap() as usize, r);
                // The mapped answer agrees with the plain run in every repeat...
                assert_eq!(&repeat["answer"], plain_answer, "{id} repeat {r}");
                // ... and is the shown option the permutation puts there.
                let permutation: Vec<u64> = repeat["permutation"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_u64().unwrap())
                    .collect();
                let chosen = repeat["chosen"].as_u64().unwrap() as usize;
                assert_eq!(
                    Some(&permutation[chosen]),
                    repeat["answer"].as_u64().as_ref()
                );
                if chosen as u64 != repeat["answer"].as_u64().unwrap() {
                    moved += 1;
                }
                permutations.insert(permutation);
            }
            if shuffle == "plain-hunt" {
                assert_eq!(permutations.len(), 5, "{id}");
                assert_eq!(repeats[0]["permutation"], serde_json::json!([0, 1, 2, 3]));
            }
            // All five repeats voted alike: the vote share of the answer is 1.
            let answer = plain_answer.as_u64().unwrap() as usize;
            assert_eq!(ensemble["votes"][answer], 5);
            assert_eq!(ensemble["option_probs"][answer], 1.0);
        }
        // The model really saw the answer in other positions.
        assert!(
            moved > rows.len() * 2,
            "{shuffle}: only {moved} repeats moved the answer"
        );
    }
}

#[test]
fn a_killed_ensemble_resumes_without_playing_a_finished_repeat_again() {
    let rows: Vec<Value> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(30)
        .collect();
    let dataset_dir = tempfile::tempdir().unwrap();
    let dataset = dataset_dir.path().join("anatomy30.jsonl");
    std::fs::write(
        &dataset,
        rows.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let (key, correct) = choice_key(&rows, |i| i % 2 == 0);
    // The server stops answering at request 63: rows are mid-ensemble when the client dies.
    let server = ChatServer::start(ServerConfig {
        choice_key: key,
        latency: Duration::from_millis(2),
        hang_from: Some(63),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let mut command = evalr();
    azure(&server, &mut command);
    let mut child = command
        .args(["run", "--program", "zero_shot_letters", "--dataset"])
        .arg(&dataset)
        .args([
            "--model",
            "azure:gpt-4o",
            "--quiet",
            "--no-cache",
            "--max-in-flight",
            "3",
            "--repeats",
            "5",
            "--shuffle",
            "plain-hunt",
        ])
        .arg("--results-dir")
        .arg(&folder)
        .spawn()
        .unwrap();
    let repeats_file = folder.join("repeats.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answered = server.seen().iter().filter(|r| r.status == 200).count();
        if server.hanging() == 3 && read_jsonl(&repeats_file).len() == answered {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never reached the hang"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let journaled = read_jsonl(&repeats_file).len();
    assert_eq!(journaled, 62);
    let finished_rows = read_jsonl(&folder.join("outputs.jsonl")).len();
    // Some rows were cut between repeats: that is what this test is about.
    assert!(
        finished_rows * 5 < journaled,
        "{finished_rows} rows, {journaled} repeats"
    );
    server.stop_hanging();

    let mut command = evalr();
    azure(&server, &mut command);
    let output = command
        .args(["run", "--quiet", "--resume"])
        .arg(&folder)
        .output()
        .unwrap();
    assert_ok(&output);
    let records = read_jsonl(&folder.join("outputs.jsonl"));
    assert_eq!(records.len(), 30);
    assert_eq!(
        summary(&folder)["correct"].as_u64().unwrap() as usize,
        correct
    );
    // Every (row, repeat) was answered exactly once over both processes; the three requests
    // in flight at the kill were sent again because they had never been answered.
    let answered: Vec<(String, String)> = server
        .seen()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| (r.question.clone().unwrap(), r.body["messages"].to_string()))
        .collect();
    let distinct: HashSet<&(String, String)> = answered.iter().collect();
    assert_eq!((answered.len(), distinct.len()), (150, 150));
    assert_eq!(server.seen().len(), 150 + 3);
    for record in &records {
        let repeats = record["ensemble"]["repeats"].as_array().unwrap();
        let indices: Vec<u64> = repeats
            .iter()
            .map(|r| r["repeat"].as_u64().unwrap())
            .collect();
        assert_eq!(indices, [0, 1, 2, 3, 4]);
        assert_eq!(record["calls"].as_array().unwrap().len(), 5);
    }
}

/// The ids of the `k` pool rows nearest `row` under the server's embedding (brute force,
/// ties by id), never the row itself nor its question.
fn expected_neighbours(row: &Value, pool: &[Value], k: usize) -> Vec<String> {
    let unit = |v: Vec<f32>| {
        let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        v.into_iter().map(|x| x as f64 / n).collect::<Vec<f64>>()
    };
    let q = unit(test_embedding(row["question"].as_str().unwrap()));
    let mut scored: Vec<(f64, String)> = pool
        .iter()
        .filter(|p| {
            p["id"] != row["id"]
                && p["question"].as_str().unwrap().trim()
                    != row["question"].as_str().unwrap().trim()
        })
        .map(|p| {
            let v = unit(test_embedding(p["question"].as_str().unwrap()));
            let sim = v.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>();
            // Similarities are compared at 1e-9 (docs/medprompt.md), so equal angles tie.
            (
                (sim * 1e9).round() / 1e9,
                p["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

#[test]
fn knn_examples_are_the_nearest_pool_rows_never_the_row_and_embeddings_are_reused() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let pool = dataset_rows("mmlu_college_medicine_test");
    let (key, _) = choice_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        choice_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--program",
        "knn_few_shot",
        "--dataset",
        "mmlu_anatomy_test",
        "--examples",
        "mmlu_college_medicine_test",
        "--embeddings-model",
        "azure:text-embedding-3-small",
        "--limit",
        "20",
        "--no-cache",
    ];
    let first = dir.path().join("runs/first");
    assert_ok(&run(&server, &args, &first));
    let embedding_requests = |seen: &[openai_server::SeenRequest]| {
        seen.iter()
            .filter(|r| r.deployment.as_deref() == Some("text-embedding-3-small"))
            .count()
    };
    let sent = embedding_requests(&server.seen());
    // The pool's rows and the 20 rows, 32 texts a request.
    assert_eq!(sent, pool.len().div_ceil(32) + 1, "{sent}");
    let records = read_jsonl(&first.join("outputs.jsonl"));
    assert_eq!(records.len(), 20);
    let rows_by_id = by_id(&rows);
    for record in &records {
        let row = rows_by_id[record["id"].as_str().unwrap()];
        let picked: Vec<String> = record["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            picked,
            expected_neighbours(row, &pool, 5),
            "{}",
            record["id"]
        );
        let sims: Vec<f64> = record["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["similarity"].as_f64().unwrap())
            .collect();
        assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{sims:?}");
    }
    // The prompt of the first row shows its nearest pool row as the first example.
    let first_question = rows[0]["question"].as_str().unwrap();
    let first_prompt = server
        .seen()
        .into_iter()
        .find(|r| r.question.as_deref() == Some(first_question))
        .unwrap();
    let nearest = expected_neighbours(&rows[0], &pool, 1)[0].clone();
    let nearest_question = pool.iter().find(|p| p["id"] == nearest.as_str()).unwrap()["question"]
        .as_str()
        .unwrap()
        .to_string();
    let text = first_prompt.body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let at = |needle: &str| text.find(needle).unwrap();
    assert!(at(&nearest_question) < at(first_question));
    // The embeddings files sit beside the results and a second run sends no embedding request.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("runs/embeddings"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let before = embedding_requests(&server.seen());
    assert_ok(&run(&server, &args, &dir.path().join("runs/second")));
    assert_eq!(embedding_requests(&server.seen()), before);
    // Without --pick knn (the program's default is overridden) nothing is embedded.
    let mut random = args.to_vec();
    random.extend(["--pick", "random"]);
    assert_ok(&run(&server, &random, &dir.path().join("runs/random")));
    assert_eq!(embedding_requests(&server.seen()), before);
}

#[test]
fn evalr_embed_writes_one_vector_per_row_that_pandas_reads_and_a_rerun_is_free() {
    let server = ChatServer::start(ServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("anatomy.parquet");
    let embed = || {
        evalr()
            .env("OPENAI_BASE_URL", server.openai_base_url())
            .env("OPENAI_API_KEY", "test-key")
            .args([
                "embed",
                "mmlu_anatomy_test",
                "--model",
                "openai:text-embedding-3-small",
            ])
            .arg("--output")
            .arg(&output)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let out = embed();
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("135 rows (135 computed in 5 requests"));
    let requests = server.seen();
    assert_eq!(requests.len(), 5);
    assert!(
        requests
            .iter()
            .all(|r| r.body["model"] == "text-embedding-3-small")
    );
    // pandas reads the file: one row per id, the vector the server computed, the model.
    let script = r#"
import json, sys
import pandas as pd
df = pd.read_parquet(sys.argv[1])
print(json.dumps({"ids": df["id"].tolist(), "models": sorted(set(df["model"])),
  "vectors": {i: [float(x) for x in v] for i, v in zip(df["id"], df["vector"])}}))
"#;
    let python = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&output)
        .output()
        .expect("python3 with pandas and pyarrow (pip install pandas pyarrow)");
    assert_ok(&python);
    let table: Value = serde_json::from_slice(&python.stdout).unwrap();
    let rows = dataset_rows("mmlu_anatomy_test");
    let ids: Vec<&str> = table["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, want);
    let identity = format!("openai:{}/text-embedding-3-small", server.openai_base_url());
    assert_eq!(table["models"], serde_json::json!([identity]));
    for row in &rows {
        let got: Vec<f32> = table["vectors"][row["id"].as_str().unwrap()]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got, test_embedding(row["question"].as_str().unwrap()));
    }
    // Again: every vector is in the file, nothing is sent.
    let again = embed();
    assert_ok(&again);
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("0 computed in 0 requests, 135 from the file")
    );
    assert_eq!(server.seen().len(), 5);
    // A deleted file is rebuilt from the response cache, still without a request.
    std::fs::remove_file(&output).unwrap();
    let rebuilt = embed();
    assert_ok(&rebuilt);
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("135 from the cache"));
    assert_eq!(server.seen().len(), 5);
}

/// `evalr embed`'s file gets the user's umask like any file a command creates (it came out
/// 0600 whatever the umask, unreadable to the job or colleague that reads the vectors).
#[cfg(unix)]
#[test]
fn evalr_embed_writes_its_file_with_the_users_umask() {
    use std::os::unix::fs::PermissionsExt;
    let server = ChatServer::start(ServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("anatomy.parquet");
    let mut embed = evalr();
    embed
        .env("OPENAI_BASE_URL", server.openai_base_url())
        .env("OPENAI_API_KEY", "test-key")
        .args([
            "embed",
            "mmlu_anatomy_test",
            "--model",
            "openai:text-embedding-3-small",
        ])
        .arg("--output")
        .arg(&output)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"));
    // The umask is the child's own: a shell sets it, then becomes evalr.
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(embed.get_program())
        .args(embed.get_args());
    for (name, value) in embed.get_envs() {
        match value {
            Some(value) => shell.env(name, value),
            None => shell.env_remove(name),
        };
    }
    if let Some(folder) = embed.get_current_dir() {
        shell.current_dir(folder);
    }
    assert_ok(&shell.output().unwrap());
    let mode = std::fs::metadata(&output).unwrap().permissions().mode() & 0o777;
    assert_eq!(format!("{mode:o}"), "644");
}

#[test]
fn self_generated_cot_examples_feed_the_medprompt_program_end_to_end() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let pool_rows = dataset_rows("mmlu_college_medicine_test");
    // The pool's CoT run is right on even rows; the test rows are all answered right.
    let (mut key, _) = choice_key(&pool_rows, |i| i % 2 == 0);
    key.extend(choice_key(&rows, |_| true).0);
    let server = ChatServer::start(ServerConfig {
        choice_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cot = dir.path().join("cot");
    assert_ok(&run(
        &server,
        &[
            "--program",
            "zero_shot_cot",
            "--dataset",
            "mmlu_college_medicine_test",
            "--limit",
            "40",
            "--no-cache",
        ],
        &cot,
    ));
    let cot_records = read_jsonl(&cot.join("outputs.jsonl"));
    let correct_ids: HashSet<String> = cot_records
        .iter()
        .filter(|r| r["outcome"] == "correct")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(correct_ids.len(), 20);

    let cot_arg = cot.to_string_lossy().into_owned();
    let medprompt_args = [
        "--program",
        "medprompt",
        "--dataset",
        "mmlu_anatomy_test",
        "--examples",
        cot_arg.as_str(),
        "--examples-where",
        "correct",
        "--embeddings-model",
        "azure:text-embedding-3-small",
        "--limit",
        "6",
        "--no-cache",
    ];
    // The dry run counts the ensemble's calls and the embeddings still to compute.
    let mut command = evalr();
    azure(&server, &mut command);
    let dry = command
        .arg("run")
        .args(medprompt_args)
        .args(["--model", "azure:gpt-4o", "--dry-run"])
        .arg("--results-dir")
        .arg(dir.path().join("medprompt"))
        .output()
        .unwrap();
    assert_ok(&dry);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(text.contains("repeats per row:    5"), "{text}");
    // 6 rows x 5 repeats x (explanation + answer).
    assert!(text.contains("requests:           60\n"), "{text}");
    // 20 correct pool rows (one request) and 6 rows (one request).
    assert!(text.contains("texts to embed:     26"), "{text}");
    assert!(text.contains("embedding requests: 2\n"), "{text}");

    let before = server.seen().len();
    let folder = dir.path().join("medprompt");
    assert_ok(&run(&server, &medprompt_args, &folder));
    let chat_requests = server.seen()[before..]
        .iter()
        .filter(|r| r.body.get("messages").is_some())
        .count();
    assert_eq!(chat_requests, 60);
    let records = read_jsonl(&folder.join("outputs.jsonl"));
    assert_eq!(records.len(), 6);
    assert_eq!(summary(&folder)["correct"], 6);
    let explanations: HashMap<&str, &str> = cot_records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["captures"]["explanation"].as_str().unwrap(),
            )
        })
        .collect();
    for record in &records {
        let examples = record["examples"].as_array().unwrap();
        assert_eq!(examples.len(), 5);
        for example in examples {
            assert!(
                correct_ids.contains(example["id"].as_str().unwrap()),
                "{example}"
            );
        }
        assert_eq!(record["ensemble"]["repeats"].as_array().unwrap().len(), 5);
        assert_eq!(record["calls"].as_array().unwrap().len(), 10);
    }
    // Each example turn carries the explanation its CoT run wrote.
    let question = records[0]["row"]["question"].as_str().unwrap();
    let prompt = server.seen()[before..]
        .iter()
        .find(|r| r.question.as_deref() == Some(question))
        .unwrap()
        .body["messages"]
        .clone();
    let first_example = records[0]["examples"][0]["id"].as_str().unwrap();
    let messages = prompt.as_array().unwrap();
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], explanations[first_example].trim());
}
