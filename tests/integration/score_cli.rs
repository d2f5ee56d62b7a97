//! `evalr score` on fixture result folders: exact figures, report snapshot, parquet, errors.

use crate::common::score_fixtures;

use std::fs::File;

use arrow_array::{Array, Float64Array, ListArray, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use score_fixtures::{copy_fixtures, evalr};
use serde_json::Value;

fn summary_of(dir: &std::path::Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name).join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

#[test]
fn score_writes_summary_report_parquet_and_chart() {
    let dir = copy_fixtures(&["run-a"]);
    let folder = dir.path().join("run-a");
    let output = evalr().arg("score").arg(&folder).assert().success();
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    assert_eq!(
        stdout.lines().next(),
        Some("run-a: accuracy 57.5% (95% CI 42.2% – 71.5%) over 40 scored rows, 2 invalid")
    );
    for file in [
        "summary.json",
        "report.md",
        "outputs.parquet",
        "calibration.svg",
    ] {
        assert!(folder.join(file).is_file(), "{file} written");
        assert!(stdout.contains(&format!("wrote {}", folder.join(file).display())));
    }

    let summary = summary_of(dir.path(), "run-a");
    assert_eq!(summary["schema_version"], 1);
    let rows = &summary["rows"];
    assert_eq!(
        [
            &rows["outputs"],
            &rows["correct"],
            &rows["wrong"],
            &rows["unparsed"],
            &rows["refused"],
            &rows["failed"]
        ],
        [40, 23, 15, 1, 1, 1]
    );
    let micro = &summary["accuracy"]["micro"];
    assert_eq!(micro["value"], 0.575);
    // python3 -c "from statsmodels.stats.proportion import proportion_confint;
    //   print(proportion_confint(23, 40, method='wilson'))"  (statsmodels 0.15.0)
    let ci = micro["ci95"].as_array().expect("ci95");
    assert!(
        (ci[0].as_f64().unwrap() - 0.42195068541991065).abs() < 1e-12,
        "{ci:?}"
    );
    assert!(
        (ci[1].as_f64().unwrap() - 0.7149060744004962).abs() < 1e-12,
        "{ci:?}"
    );
    assert_eq!(summary["accuracy"]["invalid_rate"]["value"], 0.05);
    assert_eq!(summary["subjects"].as_array().unwrap().len(), 4);
    assert_eq!(
        summary["position_bias"]["matrix"][0],
        serde_json::json!([6, 1, 1, 0])
    );
    assert_eq!(summary["calibration"]["n"], 38);
    assert_eq!(summary["tokens"]["total"], 4626);
    // gpt-4o-mini from the default table: 4586 * 0.15 + 40 * 0.60 per 1M tokens
    let cost = summary["cost"]["total"].as_f64().unwrap();
    assert!((cost - (4586.0 * 0.15 + 40.0 * 0.60) / 1e6).abs() < 1e-15);
    assert_eq!(summary["cost"]["price_source"]["kind"], "default_table");
    assert_eq!(summary["cost"]["price_source"]["key"], "gpt-4o-mini");
    assert_eq!(summary["retries"]["retries"], 2);
    assert_eq!(summary["retries"]["rate_limited"], 2);
    assert_eq!(summary["throughput"]["rows_per_second"], 0.8);

    let report = std::fs::read_to_string(folder.join("report.md")).expect("report.md");
    // The version of the scorer changes with every release; the report must not.
    let report = report.replace(env!("CARGO_PKG_VERSION"), "[version]");
    insta::assert_snapshot!("report_run_a", report);

    let svg = std::fs::read_to_string(folder.join("calibration.svg")).expect("svg");
    let title = format!(
        "Calibration: run-a (ECE {:.3}, 38 rows)",
        summary["calibration"]["ece"].as_f64().unwrap()
    );
    assert!(svg.starts_with("<svg") && svg.contains(&title), "{title}");
}

#[test]
fn parquet_holds_one_row_per_output_with_probabilities() {
    let dir = copy_fixtures(&["run-a"]);
    let folder = dir.path().join("run-a");
    evalr().arg("score").arg(&folder).assert().success();
    let file = File::open(folder.join("outputs.parquet")).expect("parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet footer")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 40);
    let batch = &batches[0];
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(ids.value(0), "mmlu/astronomy/test/0");
    let outcome = batch
        .column_by_name("outcome")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(
        (outcome.value(13), outcome.value(27)),
        ("unparsed", "refused")
    );
    let probs = batch
        .column_by_name("option_probs")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let first = probs.value(0);
    let first = first.as_any().downcast_ref::<Float64Array>().unwrap();
    // As the fixture's first line recorded them.
    let recorded: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(folder.join("outputs.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let recorded: Vec<f64> = recorded["calls"][0]["option_probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(first.values().to_vec(), recorded);
    assert_eq!(recorded.len(), 4);
    assert!(probs.is_null(13), "an unparsed row has no probabilities");
}

#[test]
fn judged_rows_and_text_metrics() {
    let dir = copy_fixtures(&["run-judged"]);
    evalr()
        .arg("score")
        .arg(dir.path().join("run-judged"))
        .assert()
        .success();
    let summary = summary_of(dir.path(), "run-judged");
    assert_eq!(
        summary["accuracy"],
        Value::Null,
        "judge rows have no correct_answer"
    );
    assert_eq!(summary["rows"]["unscored"], 12);
    let judged = summary["judged"].as_array().expect("judged");
    assert_eq!(judged[0]["metric"], "fluency");
    assert_eq!(
        judged[0]["distribution"],
        serde_json::json!([0, 1, 1, 1, 3])
    );
    assert_eq!(judged[0]["mean"], 24.0 / 6.0);
    assert_eq!(judged[0]["pass_rate"], 5.0 / 6.0);
    assert_eq!(judged[1]["metric"], "similarity");
    assert_eq!(
        (&judged[1]["n"], &judged[1]["unjudged"]),
        (&Value::from(5), &Value::from(1))
    );
    assert_eq!(
        judged[1]["distribution"],
        serde_json::json!([1, 0, 0, 1, 3])
    );
    let text = &summary["text_metrics"];
    assert_eq!(text["n"], 12);
    // 6 answers, each judged twice (12 rows); only "56" = "56" matches exactly after
    // normalisation ("William Shakespeare" vs "Shakespeare" does not).
    assert_eq!(text["exact_match"], 2.0 / 12.0);
    // Token F1 per answer (SQuAD): 1/3, 2/3, 0, 2/5, 1, 1/3.
    let f1 = (1.0 / 3.0 + 2.0 / 3.0 + 0.0 + 0.4 + 1.0 + 1.0 / 3.0) / 6.0;
    assert!((text["token_f1"].as_f64().unwrap() - f1).abs() < 1e-12);
    let q = summary["quality_index"]["value"].as_f64().unwrap();
    let components = summary["quality_index"]["components"].as_array().unwrap();
    assert_eq!(components.len(), 4);
    let mean: f64 = components
        .iter()
        .map(|c| c["value"].as_f64().unwrap())
        .sum::<f64>()
        / 4.0;
    assert_eq!(q, mean);
    let report = std::fs::read_to_string(dir.path().join("run-judged/report.md")).expect("report");
    assert!(
        report.contains("| fluency | 6 | 4.00 | 2.67–5.33 | 0 | 1 | 1 | 1 | 3 | 83.3% (≥ 3) | 0 |"),
        "{report}"
    );
}

#[test]
fn a_missing_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    evalr()
        .arg("score")
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(format!(
            "error: results folder {} does not exist or is not a folder\n",
            missing.display()
        ));
}

#[test]
fn a_corrupt_run_json_names_file_and_line() {
    let dir = copy_fixtures(&["corrupt"]);
    let path = dir.path().join("corrupt/run.json");
    evalr()
        .arg("score")
        .arg(dir.path().join("corrupt"))
        .assert()
        .code(2)
        .stderr(format!(
            "error: {} line 3 column 0: not a valid record: EOF while parsing a value\n",
            path.display()
        ));
}

#[test]
fn a_bad_line_names_file_and_line() {
    let dir = copy_fixtures(&["bad-line"]);
    let path = dir.path().join("bad-line/outputs.jsonl");
    evalr()
        .arg("score")
        .arg(dir.path().join("bad-line"))
        .assert()
        .code(2)
        .stderr(format!(
            "error: {} line 3 column 120: not a valid record: EOF while parsing a string\n",
            path.display()
        ));
    assert!(!dir.path().join("bad-line/summary.json").exists());
}

#[test]
fn a_torn_last_line_is_left_out_and_reported() {
    let dir = copy_fixtures(&["run-b"]);
    let outputs = dir.path().join("run-b/outputs.jsonl");
    let mut text = std::fs::read_to_string(&outputs).unwrap();
    text.push_str("{\"id\": \"mmlu/astronomy/test/99\", \"row\": {\"id\"");
    std::fs::write(&outputs, text).unwrap();
    evalr()
        .arg("score")
        .arg(dir.path().join("run-b"))
        .assert()
        .success();
    let summary = summary_of(dir.path(), "run-b");
    assert_eq!(summary["rows"]["outputs"], 40);
    assert_eq!(summary["rows"]["torn_last_line"], true);
}

#[test]
fn a_duplicate_row_id_names_both_lines() {
    let dir = copy_fixtures(&["run-b"]);
    let outputs = dir.path().join("run-b/outputs.jsonl");
    let text = std::fs::read_to_string(&outputs).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(&outputs, format!("{text}{first}\n")).unwrap();
    evalr()
        .arg("score")
        .arg(dir.path().join("run-b"))
        .assert()
        .code(2)
        .stderr(format!(
            "error: {} line 41: row id \"mmlu/astronomy/test/0\" already appeared on line 1\n",
            outputs.display()
        ));
}

#[test]
fn the_library_entry_points_used_by_run() {
    let dir = copy_fixtures(&["run-b"]);
    let folder = dir.path().join("run-b");
    let summary = evalr::score::score_folder(&folder).expect("scored");
    assert_eq!(summary.rows.correct, 33);
    assert_eq!(
        summary.accuracy.as_ref().map(|a| a.micro.value),
        Some(0.825)
    );
    evalr::report::write_score_reports(&folder, &summary).expect("written");
    for file in [
        "summary.json",
        "report.md",
        "outputs.parquet",
        "calibration.svg",
    ] {
        assert!(folder.join(file).is_file(), "{file}");
    }
}

#[test]
fn mixed_datasets_get_a_table_each_and_rows_without_an_answer_key_are_unscored() {
    let dir = copy_fixtures(&["run-b"]);
    let outputs = dir.path().join("run-b/outputs.jsonl");
    let text = std::fs::read_to_string(&outputs).unwrap();
    let mut lines: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut record: Value = serde_json::from_str(line).unwrap();
        if record["row"]["subject"] == "philosophy" {
            record["row"]["dataset"] = "ethics".into();
        }
        if i < 2 {
            // No key to score against.
            record["row"]
                .as_object_mut()
                .unwrap()
                .remove("correct_answer");
        }
        lines.push(serde_json::to_string(&record).unwrap());
    }
    std::fs::write(&outputs, lines.join("\n") + "\n").unwrap();
    evalr()
        .arg("score")
        .arg(dir.path().join("run-b"))
        .assert()
        .success();
    let summary = summary_of(dir.path(), "run-b");
    assert_eq!(summary["rows"]["unscored"], 2);
    assert_eq!(summary["rows"]["scored"], 38);
    let datasets = summary["datasets"].as_array().unwrap();
    let names: Vec<&str> = datasets
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ethics", "mmlu"]);
    assert_eq!(datasets[0]["correct"], 8);
    let report = std::fs::read_to_string(dir.path().join("run-b/report.md")).unwrap();
    assert!(report.contains("## By dataset"));
    assert!(
        report.contains("| ethics | 10 | 8 | 2 | 0 | 80.0% |"),
        "{report}"
    );
}

#[test]
fn the_judge_threshold_changes_the_pass_rate() {
    let dir = copy_fixtures(&["run-judged"]);
    evalr()
        .args(["score", "--judge-threshold", "5"])
        .arg(dir.path().join("run-judged"))
        .assert()
        .success();
    let summary = summary_of(dir.path(), "run-judged");
    assert_eq!(summary["judged"][0]["threshold"], 5);
    assert_eq!(summary["judged"][0]["pass_rate"], 3.0 / 6.0);
    evalr()
        .args(["score", "--judge-threshold", "6"])
        .arg(dir.path().join("run-judged"))
        .assert()
        .code(2);
}

#[test]
fn judged_metrics_of_a_judge_run_attach_to_the_judged_run() {
    let dir = copy_fixtures(&["run-a", "run-judged"]);
    let judge = evalr::results::ResultFolder::open(&dir.path().join("run-judged")).unwrap();
    let judged = evalr::score::judged::score_judge_folder(&judge, 3).unwrap();
    let mut summary = evalr::score::score_folder(&dir.path().join("run-a")).unwrap();
    assert_eq!(summary.quality_index.as_ref().map(|q| q.value), Some(0.575));
    summary.attach_judged(judged);
    let q = summary.quality_index.expect("index");
    let names: Vec<&str> = q.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["accuracy", "fluency", "similarity"]);
    // fluency mean 4.0 -> 0.75; similarity mean (1 + 4 + 5 + 5 + 5) / 5 = 4.0 -> 0.75
    assert!(
        (q.value - (0.575 + 0.75 + 0.75) / 3.0).abs() < 1e-12,
        "{}",
        q.value
    );
}

/// Reports are created with the user's umask like any file (they were 0600, unreadable to
/// the CI job or the colleague who picks them up).
#[cfg(unix)]
#[test]
fn reports_are_created_with_the_users_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = copy_fixtures(&["run-b"]);
    let folder = dir.path().join("run-b");
    evalr().arg("score").arg(&folder).assert().success();
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("file").permissions().mode() & 0o777
    };
    // What a plain new file gets here (0644 under the usual umask 022).
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    for file in [
        "summary.json",
        "report.md",
        "outputs.parquet",
        "calibration.svg",
        "run.json",
    ] {
        assert_eq!(mode(&folder.join(file)), mode(&plain), "{file}");
    }
}
