//! `report.html` and `compare.html` in a real browser (headless Chromium over the DevTools
//! protocol): the figures shown are summary.json's and compare.json's, filters change the rows
//! shown, a row's calls show the exact messages the model server received, markup inside data
//! shows as text and never runs, and the page loads nothing. A screenshot of each page is kept
//! in target/test-artifacts/html/. Also `evalr view`, which lists runs and serves their pages.

use crate::common::{browser, openai_server, runs, score_fixtures};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use browser::{Browser, artifact_dir, browser_or_skip};
use openai_server::{ChatServer, ServerConfig};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// The value at a dotted path ("accuracy.micro.value") of a JSON document.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| &v[key])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(1.0)
}

/// Checks every `data-figure` of the page whose name is a path into `document` (and that path
/// exists there): the number the page carries is the document's.
fn figures_match(browser: &mut Browser, document: &Value) -> usize {
    let figures = browser.eval(
        "[...document.querySelectorAll('[data-figure]')].map(e => [e.dataset.figure, e.dataset.value, e.textContent.trim()])",
    );
    let mut checked = 0;
    for figure in figures.as_array().expect("figures") {
        let name = figure[0].as_str().unwrap();
        let shown = figure[1].as_str().unwrap();
        let expected = at(document, name);
        if expected.is_null() {
            continue;
        }
        let values: Vec<f64> = shown
            .split(',')
            .map(|v| v.parse().expect("number"))
            .collect();
        let wanted: Vec<f64> = match expected {
            Value::Array(items) => items.iter().map(|v| v.as_f64().unwrap()).collect(),
            other => vec![other.as_f64().unwrap_or_else(|| panic!("{name}: {other}"))],
        };
        assert_eq!(values.len(), wanted.len(), "{name}");
        for (got, want) in values.iter().zip(&wanted) {
            assert!(close(*got, *want), "{name}: page {got}, file {want}");
        }
        checked += 1;
    }
    checked
}

/// 14042 -> "14,042".
fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shown_rows(browser: &mut Browser, status: &str) -> u64 {
    browser
        .eval(&format!(
            "Number(document.querySelector('{status}').dataset.shown)"
        ))
        .as_u64()
        .expect("row count")
}

fn assert_clean(browser: &mut Browser, page: &Path) {
    let errors = browser.errors();
    assert!(errors.is_empty(), "page errors: {errors:?}");
    let page_url = format!("file://{}", page.canonicalize().unwrap().display());
    let requests = browser.requests();
    assert_eq!(
        requests,
        vec![page_url],
        "the page loads nothing but itself"
    );
}

#[test]
fn run_page_shows_summary_figures_and_browses_rows() {
    let dir = score_fixtures::copy_fixtures(&["run-a"]);
    let folder = dir.path().join("run-a");
    let output = score_fixtures::evalr()
        .arg("score")
        .arg(&folder)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).to_string();
    let page = folder.join("report.html");
    assert!(
        stdout.contains(&format!("wrote {}", page.display())),
        "{stdout}"
    );
    let html = std::fs::read_to_string(&page).expect("report.html");
    // Self-contained: no external style, script, image or font.
    for needle in ["<link", " src=\"http", "@import", "url(http"] {
        assert!(!html.contains(needle), "report.html holds {needle}");
    }
    assert!(html.contains("Content-Security-Policy"));
    let summary = read_json(&folder.join("summary.json"));

    let Some(mut browser) = browser_or_skip("run_page_shows_summary_figures_and_browses_rows")
    else {
        return;
    };
    browser.open(&page);
    browser.wait_for("document.querySelector('#row-status').dataset.shown", WAIT);
    assert!(figures_match(&mut browser, &summary) >= 15);
    // The headline as the user reads it.
    let accuracy = browser
        .eval("document.querySelector('[data-figure=\"accuracy.micro.value\"]').textContent");
    assert_eq!(accuracy, "57.5%");
    assert_eq!(summary["accuracy"]["micro"]["value"].as_f64(), Some(0.575));

    // Subjects: one line each, with the summary's accuracy; sorting by name orders them.
    let subjects = browser.eval(
        "[...document.querySelectorAll('#subject-table tbody tr')].map(r => [r.dataset.subject, Number(r.querySelector('[data-figure]').dataset.value)])",
    );
    let subjects = subjects.as_array().unwrap();
    assert_eq!(
        subjects.len(),
        summary["subjects"].as_array().unwrap().len()
    );
    for pair in subjects {
        let expected = summary["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == pair[0])
            .expect("subject in summary");
        assert!(close(
            pair[1].as_f64().unwrap(),
            expected["accuracy"]["value"].as_f64().unwrap()
        ));
    }
    browser.click("#subject-table th[data-sort='text']");
    let names = browser.eval(
        "[...document.querySelectorAll('#subject-table tbody tr')].map(r => r.dataset.subject)",
    );
    let mut sorted: Vec<String> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let shown = sorted.clone();
    sorted.sort();
    assert_eq!(shown, sorted, "a click on the subject header sorts by name");

    // The answer-position matrix is the summary's.
    let matrix = browser.eval(
        "[...document.querySelectorAll('#position-matrix tbody tr')].map(r => [...r.querySelectorAll('td')].map(td => Number(td.textContent.replace(/,/g, ''))))",
    );
    assert_eq!(matrix, summary["position_bias"]["matrix"]);
    // One calibration point per bin that has rows.
    let points = browser.eval("document.querySelectorAll('#calibration-chart circle').length");
    let bins = summary["calibration"]["bins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["n"].as_u64() > Some(0))
        .count();
    assert_eq!(points.as_u64(), Some(bins as u64));

    // The row browser: 40 output rows and the one that failed for good.
    let total =
        summary["rows"]["outputs"].as_u64().unwrap() + summary["rows"]["failed"].as_u64().unwrap();
    assert_eq!(shown_rows(&mut browser, "#row-status"), total);
    browser.click("#filter-outcomes input[data-outcome='correct']");
    let correct = summary["rows"]["correct"].as_u64().unwrap();
    assert_eq!(shown_rows(&mut browser, "#row-status"), total - correct);
    browser.click("#filter-outcomes input[data-outcome='correct']");
    let k = browser.eval("[...document.querySelectorAll('#filter-subject option')].find(o => o.textContent.startsWith('philosophy')).value");
    browser.set_value("#filter-subject", k.as_str().unwrap());
    assert_eq!(shown_rows(&mut browser, "#row-status"), 10);
    browser.set_value("#filter-subject", "");
    browser.set_value("#filter-search", "supernova");
    browser.wait_for(
        "document.querySelector('#row-status').dataset.shown === '1'",
        WAIT,
    );
    browser.set_value("#filter-search", "");
    browser.wait_for(
        &format!("document.querySelector('#row-status').dataset.shown === '{total}'"),
        WAIT,
    );

    // The failed row shows its error; a scored row its probabilities and path.
    browser.set_value("#filter-search", "HTTP 500");
    browser.wait_for(
        "document.querySelector('#row-status').dataset.shown === '1'",
        WAIT,
    );
    browser.click("#row-list .vrow");
    browser.wait_for("document.querySelector('#row-detail .error-box')", WAIT);
    let error = browser.eval("document.querySelector('#row-detail .error-box').textContent");
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("HTTP 500 from the service after 4 attempts"),
        "{error}"
    );
    browser.set_value("#filter-search", "supernova");
    browser.wait_for(
        "document.querySelector('#row-status').dataset.shown === '1'",
        WAIT,
    );
    browser.click("#row-list .vrow");
    browser.wait_for(
        "document.querySelector('#row-detail').dataset.row === 'mmlu/astronomy/test/0'",
        WAIT,
    );
    let probs = browser.eval(
        "[...document.querySelectorAll('#row-detail ol.choices .prob')].map(p => p.textContent)",
    );
    // As the fixture recorded them for that row, to one decimal.
    let record = std::fs::read_to_string(folder.join("outputs.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|r| r["id"] == "mmlu/astronomy/test/0")
        .expect("the fixture has the astronomy row");
    let recorded: Vec<String> = record["calls"][0]["option_probs"]
        .as_array()
        .expect("option_probs")
        .iter()
        .map(|p| format!("{:.1}%", p.as_f64().unwrap() * 100.0))
        .collect();
    assert_eq!(probs, json!(recorded));
    let detail = browser.eval("document.querySelector('#row-detail').textContent");
    assert!(
        detail.as_str().unwrap().contains("logprobs"),
        "select path shown"
    );
    assert_clean(&mut browser, &page);
    browser.set_value("#filter-search", "");
    browser.screenshot(&artifact_dir().join("run-a-report.png"));
}

/// The JSON of a page's `evalr-index` element.
fn page_index(html: &str) -> Value {
    let start = html
        .find("id=\"evalr-index\">")
        .expect("the page has a row index")
        + "id=\"evalr-index\">".len();
    let end = start + html[start..].find("</script>").expect("the index ends");
    serde_json::from_str(&html[start..end]).expect("the index is JSON")
}

/// How many rows of the index have each outcome, by name.
fn outcome_counts(index: &Value) -> std::collections::BTreeMap<String, u64> {
    let names = index["outcomes"].as_array().unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for code in index["outcome"].as_array().unwrap() {
        let name = names[code.as_u64().unwrap() as usize].as_str().unwrap();
        *counts.entry(name.to_string()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_run_larger_than_the_page_holds_its_failures_and_a_sample_and_says_so() {
    let dir = score_fixtures::copy_fixtures(&["run-a"]);
    let folder = dir.path().join("run-a");
    // The default bound holds run-a whole (40 output rows and 1 failed): no note.
    score_fixtures::evalr()
        .arg("score")
        .arg(&folder)
        .assert()
        .success();
    let page = folder.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(!html.contains("id=\"rows-subset\""));
    assert_eq!(page_index(&html)["id"].as_array().unwrap().len(), 41);
    let summary = read_json(&folder.join("summary.json"));
    assert_eq!(summary["rows"]["correct"], 23);

    // A page of at most 10 rows: the failed row, then the 17 wrong, unparsed or refused rows
    // up to 10 - 1 - a quarter of 10 (2) = 7, and an even sample of 2 of the 23 correct ones.
    score_fixtures::evalr()
        .args(["score", "--html-rows", "10"])
        .arg(&folder)
        .assert()
        .success();
    let html = std::fs::read_to_string(&page).expect("report.html");
    let index = page_index(&html);
    assert_eq!(index["id"].as_array().unwrap().len(), 10);
    let counts = outcome_counts(&index);
    assert_eq!(counts.get("failed"), Some(&1));
    assert_eq!(counts.get("correct"), Some(&2));
    assert_eq!(
        counts
            .iter()
            .filter(|(k, _)| ["wrong", "unparsed", "refused"].contains(&k.as_str()))
            .map(|(_, n)| n)
            .sum::<u64>(),
        7
    );
    assert!(
        html.contains("data-held=\"10\" data-total=\"41\""),
        "the page says what it holds"
    );
    // The figures still count every row.
    let summary_again = read_json(&folder.join("summary.json"));
    assert_eq!(summary_again, summary);

    let Some(mut browser) =
        browser_or_skip("a_run_larger_than_the_page_holds_its_failures_and_a_sample_and_says_so")
    else {
        return;
    };
    browser.open(&page);
    browser.wait_for("document.querySelector('#row-status').dataset.shown", WAIT);
    assert_eq!(shown_rows(&mut browser, "#row-status"), 10);
    let note = browser.eval("document.querySelector('#rows-subset').textContent");
    let note = note
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needed in [
        "This run has 41 rows, more than a page holds (10)",
        "7 of the 17 wrong, unparsed or refused rows",
        "1 of the 1 that failed for good",
        "2 of the 23 others",
        "outputs.parquet",
        "outputs.jsonl",
        "evalr score --html-rows N",
    ] {
        assert!(note.contains(needed), "{needed:?} not in {note:?}");
    }
    // The files named link to the ones beside the page.
    let links = browser
        .eval("[...document.querySelectorAll('#rows-subset a')].map(a => a.getAttribute('href'))");
    assert_eq!(
        links,
        json!(["outputs.parquet", "outputs.jsonl", "errors.jsonl"])
    );
    assert!(figures_match(&mut browser, &summary) >= 15);
    assert_clean(&mut browser, &page);
}

/// A dataset of three subjects plus one row whose every field holds markup and script.
fn dataset_with_markup(dir: &Path) -> (PathBuf, Vec<Value>) {
    let mut rows = Vec::new();
    for name in [
        "mmlu_anatomy_test",
        "mmlu_astronomy_test",
        "mmlu_virology_test",
    ] {
        rows.extend(runs::dataset_rows(name).into_iter().take(8));
    }
    rows.push(json!({
        "id": "markup/<i>1</i>",
        "subject": "<b>markup</b>",
        "question": "Which is a tag? <script>window.__pwned = 'question'</script><img src=x onerror=\"window.__pwned = 'img'\">",
        "choices": ["</script><script>window.__pwned = 'choice'</script>", "<!-- a comment", "&amp; <b>bold</b>", "plain"],
        "correct_answer": 3,
        "context": "<style>body { display: none }</style>"
    }));
    let path = dir.join("markup.jsonl");
    let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(&path, text).expect("dataset");
    (path, rows)
}

struct RealRun {
    _dir: tempfile::TempDir,
    folder: PathBuf,
    model: ChatServer,
    _judge: ChatServer,
    rows: Vec<Value>,
}

/// A real `evalr run` of the chain-of-thought program (two calls a row) against the local
/// model server, then `evalr judge` (coherence) against a judge server scoring row i with
/// (i % 5) + 1.
fn real_run() -> RealRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let (dataset, rows) = dataset_with_markup(dir.path());
    let (key, _) = runs::answer_key(&rows, |i| i % 3 != 0);
    let model = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let scores: Vec<(String, String)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r["question"].as_str().unwrap().to_string(),
                ((i % 5) + 1).to_string(),
            )
        })
        .collect();
    // The judges reason first and answer in JSON, as azure-ai-evaluation's do.
    let judge = ChatServer::start(ServerConfig {
        answer_key: scores,
        default_answer: "1".into(),
        style: openai_server::AnswerStyle::JudgeJson,
        ..Default::default()
    });
    let folder = dir.path().join("run");
    let output = runs::evalr()
        .env("AZURE_OPENAI_ENDPOINT", model.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_cot",
            "--model",
            "azure:gpt-4o",
            "--no-cache",
            "--quiet",
        ])
        .arg("--dataset")
        .arg(&dataset)
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .expect("evalr run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = runs::evalr()
        .env("AZURE_OPENAI_ENDPOINT", judge.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .arg("judge")
        .arg(&folder)
        .args([
            "--metric",
            "coherence",
            "--judge-model",
            "azure:gpt-4o",
            "--quiet",
            "--no-cache",
        ])
        .output()
        .expect("evalr judge");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    RealRun {
        _dir: dir,
        folder,
        model,
        _judge: judge,
        rows,
    }
}

#[test]
fn every_call_shows_the_messages_the_model_received_and_judge_scores_filter() {
    let run = real_run();
    let page = run.folder.join("report.html");
    assert!(page.is_file(), "evalr run (and judge) wrote report.html");
    let summary = read_json(&run.folder.join("summary.json"));
    let Some(mut browser) =
        browser_or_skip("every_call_shows_the_messages_the_model_received_and_judge_scores_filter")
    else {
        return;
    };
    browser.open(&page);
    browser.wait_for("document.querySelector('#row-status').dataset.shown", WAIT);
    figures_match(&mut browser, &summary);
    assert_eq!(
        shown_rows(&mut browser, "#row-status"),
        run.rows.len() as u64
    );

    // The judge's card: counts (tokens, unparsed answers) read as whole numbers, not
    // "7816459.000" as a full MMLU run showed, and the mean comes with its interval.
    let judged = &summary["judged"][0];
    let card = browser.eval("document.querySelector('.card.judged').innerText");
    let lines: Vec<&str> = card.as_str().unwrap().lines().map(str::trim).collect();
    for key in ["prompt_tokens", "completion_tokens", "unparsed"] {
        let count = judged[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {judged}"));
        let expected = format!("{}: {}", key.replace('_', " "), with_commas(count));
        assert!(
            lines.contains(&expected.as_str()),
            "{expected:?} in {lines:?}"
        );
    }
    let ci = &judged["ci95"];
    let expected = format!(
        "95% CI {:.2} – {:.2}",
        ci[0].as_f64().unwrap(),
        ci[1].as_f64().unwrap()
    );
    assert!(
        lines.contains(&expected.as_str()),
        "{expected:?} in {lines:?}"
    );

    // Judge scores: coherence 5 is given to rows 4, 9, 14, 19, 24.
    browser.set_value("#filter-judge-metric", "0");
    browser.set_value("#filter-judge-min", "5");
    browser.set_value("#filter-judge-max", "5");
    assert_eq!(shown_rows(&mut browser, "#row-status"), 5);
    browser.set_value("#filter-judge-min", "3");
    assert_eq!(shown_rows(&mut browser, "#row-status"), 15);
    browser.set_value("#filter-judge-metric", "");

    // Open an anatomy row: both calls, each with exactly the messages the server received.
    let id = run.rows[1]["id"].as_str().unwrap().to_string();
    let question = run.rows[1]["question"].as_str().unwrap().to_string();
    browser.set_value("#filter-search", &question[..40.min(question.len())]);
    browser.wait_for(
        "document.querySelector('#row-status').dataset.shown === '1'",
        WAIT,
    );
    browser.click("#row-list .vrow");
    browser.wait_for(
        &format!(
            "document.querySelector('#row-detail').dataset.row === {}",
            json!(id)
        ),
        WAIT,
    );
    let shown = browser.eval(
        "[...document.querySelectorAll('#row-detail .call')].map(c => [...c.querySelectorAll('.msg[data-role]')].map(m => ({role: m.dataset.role, content: m.querySelector('pre').textContent})))",
    );
    let sent: Vec<Value> = run
        .model
        .seen()
        .into_iter()
        .filter(|r| r.question.as_deref() == Some(question.as_str()))
        .map(|r| r.body["messages"].clone())
        .collect();
    assert_eq!(sent.len(), 2, "the CoT program makes two calls");
    assert_eq!(
        shown,
        Value::Array(sent),
        "the page shows the exact messages of each call"
    );
    let judged = browser.eval("[...document.querySelectorAll('#row-detail h3')].map(h => h.textContent).filter(t => t.startsWith('Judge'))");
    assert_eq!(judged, json!(["Judge: coherence = 2"]));
    assert_clean(&mut browser, &page);
    browser.set_value("#filter-search", "");
    browser.screenshot(&artifact_dir().join("cot-judged-report.png"));
}

#[test]
fn markup_in_a_row_shows_as_text_and_never_runs() {
    let run = real_run();
    let page = run.folder.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    // Row data never appears as markup in the file (it is escaped or compressed).
    for raw in [
        "<script>window.__pwned",
        "onerror=\"window",
        "<b>markup</b>",
        "<i>1</i>",
        "<style>body",
    ] {
        assert!(!html.contains(raw), "{raw} appears unescaped");
    }
    let Some(mut browser) = browser_or_skip("markup_in_a_row_shows_as_text_and_never_runs") else {
        return;
    };
    browser.open(&page);
    browser.wait_for("document.querySelector('#row-status').dataset.shown", WAIT);
    // The subject shows with its angle brackets, as text.
    let cell = browser.eval("(() => { const td = [...document.querySelectorAll('#subject-table td')].find(td => td.textContent.includes('markup')); return [td.textContent, td.children.length]; })()");
    assert_eq!(cell, json!(["<b>markup</b>", 0]));
    browser.set_value("#filter-search", "pwned");
    browser.wait_for(
        "document.querySelector('#row-status').dataset.shown === '1'",
        WAIT,
    );
    let listed = browser.eval("document.querySelector('#row-list .vrow .txt').textContent");
    assert!(
        listed.as_str().unwrap().contains("markup/<i>1</i>"),
        "{listed}"
    );
    browser.click("#row-list .vrow");
    browser.wait_for(
        "document.querySelector('#row-detail').dataset.row === 'markup/<i>1</i>'",
        WAIT,
    );
    let question = browser.eval("document.querySelector('#row-detail .question').textContent");
    assert_eq!(question, run.rows.last().unwrap()["question"]);
    let choices = browser.eval("[...document.querySelectorAll('#row-detail ol.choices li > span:nth-child(2)')].map(s => s.textContent)");
    assert_eq!(choices, run.rows.last().unwrap()["choices"]);
    // The messages sent hold the markup as text too.
    let message =
        browser.eval("document.querySelector('#row-detail .msg[data-role=user] pre').textContent");
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("<script>window.__pwned = 'question'</script>")
    );
    // Nothing ran: no global was set, no element was created from data.
    assert_eq!(browser.eval("typeof window.__pwned"), "undefined");
    assert_eq!(
        browser.eval("document.querySelectorAll('main img, main i, main style, main script, #row-detail .question *, #row-detail ol.choices b').length"),
        0
    );
    assert_eq!(
        browser.eval("[...document.scripts].filter(s => !s.type).length"),
        1,
        "the page's own script is the only one"
    );
    assert!(browser.eval("getComputedStyle(document.body).display") != "none");
    assert_clean(&mut browser, &page);
    browser.screenshot(&artifact_dir().join("markup-row.png"));
}

#[test]
fn compare_page_shows_difference_error_bars_flips_and_gate() {
    let dir = score_fixtures::copy_fixtures(&["run-a", "run-b"]);
    let out = dir.path().join("cmp");
    score_fixtures::evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-b", "--fail-if-worse", "1", "--out"])
        .arg(&out)
        .assert()
        .success();
    let comparison = read_json(&out.join("compare.json"));
    let pair = &comparison["pairs"][0];
    // compare.json carries the error bars of Miller (2024) and per-subject intervals.
    let bars = &pair["error_bars"];
    assert_eq!(bars["clusters"], 4);
    assert!(bars["se_clustered"].as_f64().unwrap() > 0.0);
    assert!(bars["minimum_detectable_effect"].as_f64().unwrap() > 0.0);
    assert_eq!(bars["power"], 0.8);
    for subject in pair["subjects"].as_array().unwrap() {
        let ci = subject["ci95"].as_array().unwrap();
        let d = subject["difference"].as_f64().unwrap();
        assert!(
            ci[0].as_f64().unwrap() <= d && d <= ci[1].as_f64().unwrap(),
            "{subject}"
        );
    }
    let page = out.join("compare.html");
    let Some(mut browser) =
        browser_or_skip("compare_page_shows_difference_error_bars_flips_and_gate")
    else {
        return;
    };
    browser.open(&page);
    browser.wait_for("document.querySelector('.flip-status').dataset.shown", WAIT);
    assert!(figures_match(&mut browser, pair) >= 6);
    let difference = browser.eval("document.querySelector('[data-figure=difference]').textContent");
    assert_eq!(difference, "+25.0 pp");
    let verdict =
        browser.eval("document.querySelector('#verdict-0').textContent.replace(/\\s+/g, ' ')");
    assert!(
        verdict
            .as_str()
            .unwrap()
            .contains("B is better than A by +25.0 pp"),
        "{verdict}"
    );
    assert_eq!(
        browser.eval("document.querySelector('#gate-0').dataset.failed"),
        "false"
    );
    // Subjects, largest change first, as in compare.json.
    let subjects = browser.eval("[...document.querySelectorAll('#subjects-0 tbody tr td:first-child')].map(td => td.textContent)");
    let expected: Vec<Value> = pair["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].clone())
        .collect();
    assert_eq!(subjects, Value::Array(expected));
    // Flipped rows: 1 right only in A, 11 right only in B.
    assert_eq!(shown_rows(&mut browser, ".flip-status"), 12);
    browser.set_value(".flip-direction", "1");
    assert_eq!(shown_rows(&mut browser, ".flip-status"), 11);
    browser.set_value(".flip-direction", "0");
    assert_eq!(shown_rows(&mut browser, ".flip-status"), 1);
    let id = pair["flipped"]["right_to_wrong"][0]
        .as_str()
        .unwrap()
        .to_string();
    browser.click(".flip-list .vrow");
    browser.wait_for(
        &format!(
            "document.querySelector('.flip-detail').dataset.row === {}",
            json!(id)
        ),
        WAIT,
    );
    let sides = browser.eval("[...document.querySelectorAll('.flip-detail .side > div')].map(d => [d.querySelector('h3').textContent, d.querySelector('.pill').textContent])");
    assert_eq!(
        sides,
        json!([["A: run-a", "correct"], ["B: run-b", "wrong"]])
    );
    browser.set_value(".flip-direction", "");
    assert_clean(&mut browser, &page);
    browser.screenshot(&artifact_dir().join("compare-a-b.png"));
}

#[test]
fn a_failed_gate_and_no_significant_change_say_what_could_be_missed() {
    let dir = score_fixtures::copy_fixtures(&["run-a", "run-b"]);
    let out = dir.path().join("cmp");
    // B as the baseline: A is 25 points worse, so a 1-point gate fails.
    score_fixtures::evalr()
        .current_dir(dir.path())
        .args(["compare", "run-b", "run-a", "--fail-if-worse", "1", "--out"])
        .arg(&out)
        .assert()
        .code(3);
    let html = std::fs::read_to_string(out.join("compare.html")).expect("compare.html");
    assert!(html.contains("data-failed=\"true\""));
    assert!(html.contains("FAILED"));
    // The same run against itself: no significant change, and the page says how large a
    // change these rows could have missed.
    let same = dir.path().join("same");
    score_fixtures::evalr()
        .current_dir(dir.path())
        .args(["compare", "run-a", "run-a", "--out"])
        .arg(&same)
        .assert()
        .success();
    let html = std::fs::read_to_string(same.join("compare.html")).expect("compare.html");
    assert!(html.contains("No significant difference"), "verdict");
    assert!(html.contains("could have been missed"));
    let comparison = read_json(&same.join("compare.json"));
    assert_eq!(
        comparison["pairs"][0]["error_bars"]["minimum_detectable_effect"],
        0.0
    );
}

/// `evalr view` on 127.0.0.1: the list of runs links to their pages; a run without
/// report.html gets its page made on request; nothing outside the list is served.
#[test]
fn view_lists_runs_and_serves_their_pages() {
    let dir = score_fixtures::copy_fixtures(&["run-a", "run-b", "corrupt"]);
    score_fixtures::evalr()
        .arg("score")
        .arg(dir.path().join("run-a"))
        .assert()
        .success();
    let listed = score_fixtures::evalr()
        .arg("view")
        .arg(dir.path())
        .arg("--list")
        .assert()
        .success();
    let text = String::from_utf8_lossy(&listed.get_output().stdout).to_string();
    assert!(text.contains("run-a") && text.contains("57.5%"), "{text}");
    assert!(
        text.contains("run-b") && text.contains("not scored"),
        "{text}"
    );
    assert!(
        !text.contains("corrupt"),
        "a folder that is not a run is not listed: {text}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_evalr"))
        .arg("view")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("evalr view");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = loop {
        let line = lines.next().expect("a line").expect("text");
        if let Some(rest) = line.strip_prefix("serving on ") {
            break rest.split_whitespace().next().expect("url").to_string();
        }
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let get = |path: &str| {
        runtime.block_on(async {
            let response = reqwest::get(format!("{url}{path}")).await.expect("GET");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        })
    };
    let (status, index) = get("");
    assert_eq!(status, 200);
    assert!(
        index.contains("href=\"runs/0/\">run-a</a>")
            && index.contains("href=\"runs/1/\">run-b</a>"),
        "{index}"
    );
    let (status, page) = get("runs/0/");
    assert_eq!(status, 200);
    assert_eq!(
        page,
        std::fs::read_to_string(dir.path().join("run-a/report.html")).unwrap()
    );
    let (status, page) = get("runs/1/");
    assert_eq!(status, 200);
    assert!(page.starts_with("<!doctype html>") && page.contains("evalr report: run-b"));
    assert!(
        !dir.path().join("run-b/report.html").exists(),
        "view writes nothing"
    );
    assert_eq!(get("runs/7/").0, 404);
    assert_eq!(get("runs/..%2F..%2Fetc/").0, 400);
    let _ = child.kill();
    let _ = child.wait();
}
