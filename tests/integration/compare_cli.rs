//! `evalr compare` on fixture result folders: report snapshot, exit codes, CI gate,
//! GITHUB_STEP_SUMMARY, --intersect, --json, --out.

use crate::common::score_fixtures;

use score_fixtures::{copy_fixtures, evalr};
use serde_json::Value;

#[test]
fn compare_two_runs_over_the_same_rows() {
    let dir = copy_fixtures(&["run-a", "run-b"]);
    let json = dir.path().join("compare.json");
    let output = evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-b", "--json"])
        .arg(&json)
        .assert()
        .code(0);
    let markdown = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    insta::assert_snapshot!("compare_a_b", markdown);

    let comparison: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("JSON");
    let pair = &comparison["pairs"][0];
    assert_eq!(pair["rows"]["compared"], 40);
    assert_eq!(pair["difference"], 0.825 - 0.575);
    // 1 row right only in A, 11 right only in B. statsmodels 0.15.0:
    // mcnemar([[0, 1], [11, 0]], exact=True).pvalue == 0.00634765625 (= 2 * 13 / 4096)
    let p = pair["mcnemar_p"].as_f64().unwrap();
    assert!((p - 0.00634765625).abs() < 1e-12, "{p}");
    assert_eq!(
        pair["flipped"]["right_to_wrong"],
        serde_json::json!(["mmlu/astronomy/test/0"])
    );
    assert_eq!(
        pair["flipped"]["wrong_to_right"].as_array().unwrap().len(),
        11
    );
    assert_eq!(pair["subjects"][0]["subject"], "high_school_mathematics");
    assert_eq!(comparison["bootstrap"]["resamples"], 10000);
    let ci = pair["ci95"].as_array().unwrap();
    let (low, high) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(
        low > 0.0 && low < 0.25 && high > 0.25 && high <= 0.45,
        "{ci:?}"
    );
}

#[test]
fn the_gate_fails_only_when_significantly_worse_by_more_than_the_threshold() {
    let dir = copy_fixtures(&["run-a", "run-b"]);
    // B = run-a is 25 points below A = run-b; the 95% interval's upper bound is -10 points.
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-b", "run-a", "--fail-if-worse", "5"])
        .assert()
        .code(3)
        .stderr(
            "gate failed: run-a is worse than run-b by more than 5 points (B - A = -25.0 pp, 95% CI upper bound -10.0 pp)\n",
        );
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-b", "run-a", "--fail-if-worse", "15"])
        .assert()
        .code(0);
    // Better is never a failure.
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-b", "--fail-if-worse", "0"])
        .assert()
        .code(0);
}

#[test]
fn a_negative_threshold_is_a_usage_error() {
    let dir = copy_fixtures(&["run-a", "run-b"]);
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-b", "--fail-if-worse", "-1"])
        .assert()
        .code(2);
}

#[test]
fn the_markdown_is_appended_to_the_github_step_summary() {
    let dir = copy_fixtures(&["run-a", "run-b"]);
    let summary = dir.path().join("step_summary.md");
    std::fs::write(&summary, "# earlier step\n").unwrap();
    let output = evalr()
        .current_dir(dir.path())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["compare", "run-a", "run-b"])
        .assert()
        .code(0);
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    let written = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(written, format!("# earlier step\n{stdout}\n"));
}

#[test]
fn runs_over_different_rows_are_refused_unless_intersect() {
    let dir = copy_fixtures(&["run-a", "run-c"]);
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-c"])
        .assert()
        .code(2)
        .stderr(
            "error: run-a and run-c cover different rows (10 only in the first, 10 only in the second, e.g. \"mmlu/world_religions/test/0\"); pass --intersect to compare the 30 shared rows\n",
        );
    let output = evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-c", "--intersect"])
        .assert()
        .code(0);
    let markdown = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    assert!(markdown.contains("Restricted to the rows all runs share (`--intersect`)"));
    assert!(markdown.contains("> 30 shared rows compared; left out: 10 rows of A, 10 rows of B."));
    assert!(
        markdown.contains("| accuracy (30 rows) | 56.7% | 50.0% |"),
        "{markdown}"
    );
}

#[test]
fn three_runs_compare_each_to_the_first_and_write_report_files() {
    let dir = copy_fixtures(&["run-a", "run-b", "run-c"]);
    let out = dir.path().join("report");
    let output = evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-b", "run-c", "--intersect", "--out"])
        .arg(&out)
        .assert()
        .code(0);
    let markdown = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    assert!(markdown.contains("## B: run-b vs A: run-a"));
    assert!(markdown.contains("## B: run-c vs A: run-a"));
    // Every pair uses the rows all three share.
    assert!(
        markdown.contains("| accuracy (30 rows) | 56.7% | 90.0% |"),
        "{markdown}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("compare.md")).unwrap(),
        markdown
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["pairs"].as_array().unwrap().len(), 2);
    assert_eq!(json["intersect"], true);
    for chart in ["compare-subjects-1.svg", "compare-subjects-2.svg"] {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("Accuracy by subject"),
            "{chart}"
        );
    }
}

#[test]
fn a_bad_folder_among_the_runs_is_a_usage_error() {
    let dir = copy_fixtures(&["run-a", "bad-line"]);
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "bad-line"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "bad-line/outputs.jsonl line 3 column 120: not a valid record",
        ));
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a"])
        .assert()
        .code(2);
}

#[test]
fn runs_without_scored_rows_compare_usage_only() {
    let dir = copy_fixtures(&["run-judged"]);
    evalr()
        .current_dir(dir.path())
        .args(["compare", "run-judged", "run-judged", "--fail-if-worse", "0"])
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            "| accuracy | – | – | no row is scored in both runs (no correct_answer) |\n| tokens | 6036 | 6036 | +0 |",
        ));
}

#[test]
fn an_unwritable_json_path_fails_before_reading_the_runs() {
    let dir = copy_fixtures(&[]);
    evalr()
        .current_dir(dir.path())
        .args([
            "compare",
            "missing-a",
            "missing-b",
            "--json",
            "no/such/dir/c.json",
        ])
        .assert()
        .code(2)
        .stderr("error: --json no/such/dir/c.json: folder no/such/dir does not exist\n");
}

/// Keeps only the rows of `subject` in `folder/outputs.jsonl` (and drops `errors.jsonl`).
fn keep_one_subject(folder: &std::path::Path, subject: &str) {
    let path = folder.join("outputs.jsonl");
    let text = std::fs::read_to_string(&path).expect("outputs.jsonl");
    let kept: String = text
        .lines()
        .filter(|line| {
            let record: Value = serde_json::from_str(line).expect("JSON line");
            record["row"]["subject"] == subject
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(kept.lines().count() >= 5, "{subject}: {kept}");
    std::fs::write(&path, kept).expect("write outputs.jsonl");
    let _ = std::fs::remove_file(folder.join("errors.jsonl"));
}

/// With one subject a clustered standard error is not defined (it would be 0): summary.json
/// says so and builds the interval on the unclustered SE; report.md, the compare Markdown,
/// compare.json (minimum detectable effect) and compare.html say "unclustered: 1 subject".
#[test]
fn one_subject_falls_back_to_the_unclustered_error_and_says_so() {
    let dir = copy_fixtures(&["run-a", "run-b"]);
    for run in ["run-a", "run-b"] {
        keep_one_subject(&dir.path().join(run), "high_school_mathematics");
    }
    evalr()
        .current_dir(dir.path())
        .args(["score", "run-a"])
        .assert()
        .code(0);
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run-a/summary.json")).expect("summary"),
    )
    .expect("JSON");
    let c = &summary["accuracy"]["clustered_by_subject"];
    assert_eq!(c["clusters"], 1);
    assert!(c["se_clustered"].is_null(), "{c}");
    assert_eq!(c["se_method"], "unclustered (1 subject)");
    let (value, se) = (c["value"].as_f64().unwrap(), c["se"].as_f64().unwrap());
    assert!(se > 0.0, "{c}");
    let z = 1.959963984540054;
    assert!((c["ci95"][0].as_f64().unwrap() - (value - z * se)).abs() < 1e-12);
    assert!((c["ci95"][1].as_f64().unwrap() - (value + z * se)).abs() < 1e-12);
    let report = std::fs::read_to_string(dir.path().join("run-a/report.md")).expect("report");
    assert!(
        report.contains("Error bars unclustered: 1 subject"),
        "{report}"
    );
    let html = std::fs::read_to_string(dir.path().join("run-a/report.html")).expect("html");
    assert!(html.contains("unclustered: 1 subject"));

    let output = evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-b", "--out", "cmp"])
        .assert()
        .code(0);
    let markdown = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    assert!(
        markdown.contains("80% power, SE unclustered: 1 subject"),
        "{markdown}"
    );
    let comparison: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("cmp/compare.json")).expect("compare.json"),
    )
    .expect("JSON");
    let bars = &comparison["pairs"][0]["error_bars"];
    assert!(bars["se_clustered"].is_null(), "{bars}");
    assert_eq!(bars["se_method"], "unclustered (1 subject)");
    let se = bars["se"].as_f64().unwrap();
    let mde = bars["minimum_detectable_effect"].as_f64().unwrap();
    assert!(
        se > 0.0 && (mde - 2.8015852181129683 * se).abs() < 1e-12,
        "{bars}"
    );
    let page = std::fs::read_to_string(dir.path().join("cmp/compare.html")).expect("html");
    // The interval and the smallest detectable difference rows are always there; the verdict
    // names the error too when it is "no significant difference".
    assert!(page.contains("95% CI (unclustered: 1 subject)"));
    assert!(page.contains("% power (unclustered: 1 subject)"));
    assert!(!page.contains("clustered by subject (1)"));
}

/// One wording for a p-value: the Markdown and compare.html both say "McNemar p = 0.0063"
/// (and "p < 0.0001" for smaller ones, never "p = < 0.0001").
#[test]
fn p_values_read_the_same_in_the_markdown_and_the_page() {
    let dir = copy_fixtures(&["run-a", "run-b"]);
    let output = evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-b", "--out", "cmp"])
        .assert()
        .code(0);
    let markdown = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    assert!(markdown.contains("| McNemar p = 0.0063 |"), "{markdown}");
    let page = std::fs::read_to_string(dir.path().join("cmp/compare.html")).expect("html");
    assert!(page.contains("McNemar p = 0.0063"));
    assert!(!page.contains("McNemar p = &lt;") && !page.contains("McNemar p = p"));
}
