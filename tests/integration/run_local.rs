//! `evalr run` and `evalr judge` on the embedded model (the real Gemma 3 270M GGUF). Skipped
//! loudly when the model is not installed, unless `EVALR_REQUIRE_MODEL` is set (CI sets it).

use crate::common::runs;
use crate::common::runs::succeeds;

use runs::{evalr, model_installed, read_jsonl, summary};

#[test]
fn the_main_job_runs_20_rows_on_the_embedded_model_with_exact_selects() {
    if !model_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    // No --model: with no endpoint configured, the embedded model is the default.
    succeeds(
        evalr()
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--dataset",
                "mmlu_anatomy_test",
                "--limit",
                "20",
                "--no-cache",
                "--quiet",
                "--threads",
                "2",
            ])
            .arg("--results-dir")
            .arg(&folder),
    );
    let outputs = read_jsonl(&folder.join("outputs.jsonl"));
    assert_eq!(outputs.len(), 20);
    for record in &outputs {
        assert!(
            record["model"]
                .as_str()
                .unwrap()
                .starts_with("local:gemma-3-270m-q4_k_m.gguf@")
        );
        assert!(
            record["outcome"] == "correct" || record["outcome"] == "wrong",
            "{record}"
        );
        let call = &record["calls"][0];
        assert_eq!(call["path"], "loglikelihood");
        let probs: Vec<f64> = call["option_probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), 4);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        // The chosen letter is the most probable one, and the answer index is that letter's.
        let best = (0..4)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        assert_eq!(call["chosen"].as_u64().unwrap() as usize, best);
        assert_eq!(record["answer"]["index"].as_u64().unwrap() as usize, best);
        assert_eq!(record["answer"]["option"], ["A", "B", "C", "D"][best]);
    }
    let s = summary(&folder);
    assert_eq!(s["rows"], 20);
    assert_eq!(
        s["correct"].as_u64().unwrap() + s["wrong"].as_u64().unwrap(),
        20
    );
}

#[test]
fn judges_run_on_the_embedded_model_too() {
    if !model_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    succeeds(
        evalr()
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--dataset",
                "mmlu_anatomy_test",
                "--model",
                "local",
                "--limit",
                "3",
                "--quiet",
            ])
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--results-dir")
            .arg(&folder),
    );
    succeeds(
        evalr()
            .arg("judge")
            .arg(&folder)
            .args(["--metric", "relevance", "--judge-model", "local", "--quiet"])
            .arg("--cache-dir")
            .arg(dir.path().join("cache")),
    );
    let judged = read_jsonl(&folder.join("judge/relevance/outputs.jsonl"));
    assert_eq!(judged.len(), 3);
    for record in &judged {
        // The judge reasons and scores in one generated answer (no forced score select).
        assert_eq!(record["calls"].as_array().unwrap().len(), 1);
        assert_eq!(record["calls"][0]["kind"], "gen");
        assert_eq!(record["calls"][0]["capture"], "judgment");
    }
    // A 270M model rarely writes the JSON asked for: whatever it wrote is either a score in
    // 1..5 or counted as without one, never guessed.
    let fields = read_jsonl(&folder.join("judged.jsonl"));
    assert_eq!(fields.len(), 3);
    for row in &fields {
        match row["relevance"].as_f64() {
            Some(score) => {
                assert!((1.0..=5.0).contains(&score));
                assert!(row["relevance_result"] == "pass" || row["relevance_result"] == "fail");
            }
            None => assert!(
                row["relevance_result"] == "unknown" || row["relevance_result"] == "not_applicable"
            ),
        }
    }
    let full: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(full["judged"][0]["metric"], "relevance");
    let judged = &full["judged"][0];
    assert_eq!(
        judged["n"].as_u64().unwrap() + judged["unjudged"].as_u64().unwrap(),
        3
    );
}

#[test]
fn a_missing_model_file_is_an_error_naming_the_path_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let output = evalr()
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--limit",
            "1",
        ])
        .arg("--model")
        .arg(format!("local:{}", missing.display()))
        .arg("--results-dir")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains(missing.to_str().unwrap()));
    assert!(!dir.path().join("run").exists());
}

#[test]
fn an_image_program_is_refused_by_the_embedded_model_before_any_row_runs() {
    if !model_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(
        &rows,
        "{\"id\": \"1\", \"photo\": \"images/red.png\"}\n{\"id\": \"2\", \"photo\": \"https://example.test/p.png\"}\n",
    )
    .unwrap();
    let folder = dir.path().join("run");
    let program = "tests/fixtures/prompty/v2_image.prompty";
    let output = evalr()
        .args(["run", "--program", program, "--model", "local", "--quiet"])
        .arg("--dataset")
        .arg(&rows)
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(program)
            && stderr
                .contains("image input `photo` is sent as an image, which this model cannot read"),
        "{stderr}"
    );
    // Nothing ran: no row answered, none failed.
    assert!(read_jsonl(&folder.join("outputs.jsonl")).is_empty());
    assert!(read_jsonl(&folder.join("errors.jsonl")).is_empty());
}
