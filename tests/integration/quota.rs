//! The limiter learns a deployment's quota when it is not told: the real `evalr run` against
//! the local chat server enforcing a quota the way Azure does (at most one window's worth in
//! any window, sliding) or as a bucket of one window's worth refilled at the per-minute rate,
//! answering with Azure-style or OpenAI-style rate-limit
//! headers, or none; another client taking half the quota midway; four shard processes sharing
//! one quota; and a configured quota that stays a ceiling.
//!
//! Assertions are on what a user relies on - every row answered exactly once, few requests
//! wasted on 429s, the pace recorded in `run.json` - never on wall time.

use crate::common::runs::succeeds;
use crate::common::{openai_server, runs};

use std::path::Path;
use std::time::{Duration, Instant};

use openai_server::{ChatServer, QuotaHeaderStyle, ServerConfig};
use runs::{answer_key, dataset_rows, letters_run, summary};
use serde_json::Value;

/// The anatomy rows (135) with an answer key that is right on every row.
fn server(config: ServerConfig) -> (ChatServer, usize) {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, correct) = answer_key(&rows, |_| true);
    (
        ChatServer::start(ServerConfig {
            answer_key: key,
            latency: Duration::from_millis(20),
            ..config
        }),
        correct,
    )
}

fn run(server: &ChatServer, folder: &Path, extra: &[&str]) {
    succeeds(
        letters_run(&server.azure_endpoint())
            .args(["--no-cache", "--quiet", "--max-retries", "30"])
            .arg("--results-dir")
            .arg(folder)
            .args(extra),
    );
}

fn manifest(folder: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap()).unwrap()
}

/// The one deployment's quota trace in `run.json`.
fn trace(folder: &Path) -> Value {
    let quota = manifest(folder)["quota"].clone();
    assert_eq!(quota.as_array().map(Vec::len), Some(1), "{quota}");
    quota[0].clone()
}

fn throttled(server: &ChatServer) -> (usize, usize) {
    let seen = server.seen();
    (seen.iter().filter(|r| r.status == 429).count(), seen.len())
}

/// Requests the server admitted in the busiest `window` (sliding over arrival times).
fn busiest(server: &ChatServer, window: Duration) -> usize {
    let times: Vec<Instant> = server
        .seen()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.at)
        .collect();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

fn assert_every_row_once(server: &ChatServer, folder: &Path, correct: usize) {
    let s = summary(folder);
    assert_eq!(s["rows"], 135);
    assert_eq!(s["correct"].as_u64().unwrap() as usize, correct);
    assert_eq!(s["errors"], 0);
    let answered = server.answered_per_question();
    assert_eq!(answered.len(), 135);
    assert!(answered.values().all(|&n| n == 1), "a row was sent twice");
}

#[test]
fn azure_remaining_headers_teach_a_sliding_windows_pace_without_429s() {
    azure_remaining_headers_teach_the_pace(true);
}

#[test]
fn azure_remaining_headers_teach_a_buckets_pace_without_429s() {
    azure_remaining_headers_teach_the_pace(false);
}

fn azure_remaining_headers_teach_the_pace(sliding: bool) {
    // 1,200 requests/min evaluated over 1 s: 20 at once at most. evalr is told nothing.
    let (server, correct) = server(ServerConfig {
        rpm: Some(1_200),
        sliding,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    run(&server, &folder, &["--max-in-flight", "8"]);
    assert_every_row_once(&server, &folder, correct);
    let (limited, total) = throttled(&server);
    assert!(
        limited * 50 <= total,
        "{limited} of {total} requests answered 429 (more than 2%)"
    );
    let trace = trace(&folder);
    assert_eq!(trace["mode"], "headers");
    assert_eq!(trace["request_capacity"], 20.0);
    assert_eq!(trace["rate_limited"].as_u64().unwrap() as usize, limited);
    let learned = trace["learned_rpm"].as_f64().unwrap();
    assert!(
        (600.0..=1_300.0).contains(&learned),
        "learned {learned} requests/min of 1,200"
    );
    if sliding {
        let window = trace["request_window_s"].as_f64().unwrap();
        assert!(
            (1.0..1.1).contains(&window),
            "learned a window of {window} s"
        );
    } else {
        // Seen refilling continuously: paced as a bucket, no window claimed.
        assert!(trace["request_window_s"].is_null(), "{trace}");
    }
    let sent: u64 = trace["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(sent as usize, total);
}

#[test]
fn openai_limit_and_reset_headers_give_the_rate() {
    // OpenAI style: the limit, the remaining count and the time until full. A bucket of 40
    // (2 s worth) at 1,200/min.
    let (server, correct) = server(ServerConfig {
        rpm: Some(1_200),
        window: Duration::from_secs(2),
        quota_headers: QuotaHeaderStyle::OpenAi,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    succeeds(
        runs::evalr()
            .env("OPENAI_API_KEY", "test-key")
            .env("OPENAI_BASE_URL", server.openai_base_url())
            .args(["run", "--program", "zero_shot_letters"])
            .args(["--dataset", "mmlu_anatomy_test", "--model", "openai:gpt-4o"])
            .args(["--no-cache", "--quiet", "--max-in-flight", "8"])
            .arg("--results-dir")
            .arg(&folder),
    );
    assert_every_row_once(&server, &folder, correct);
    let (limited, total) = throttled(&server);
    assert!(limited * 50 <= total, "{limited} of {total} answered 429");
    let trace = trace(&folder);
    assert_eq!(trace["mode"], "headers");
    assert_eq!(trace["request_capacity"], 40.0);
    // The reset header states the refill: the learned pace is the quota, less what 429s took.
    let learned = trace["learned_rpm"].as_f64().unwrap();
    assert!(
        (900.0..=1_250.0).contains(&learned),
        "learned {learned} requests/min of 1,200"
    );
}

#[test]
fn without_headers_429s_teach_the_rate_and_in_flight() {
    // No rate-limit headers at all: only 429s say where the quota is.
    let (server, correct) = server(ServerConfig {
        rpm: Some(1_200),
        quota_headers: QuotaHeaderStyle::None,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    run(&server, &folder, &["--max-in-flight", "16"]);
    assert_every_row_once(&server, &folder, correct);
    let (limited, total) = throttled(&server);
    assert!(limited > 0, "the quota was never reached");
    assert!(
        limited * 5 <= total,
        "{limited} of {total} answered 429 (more than 20%)"
    );
    let trace = trace(&folder);
    assert_eq!(trace["mode"], "rate_limits");
    assert_eq!(trace["rate_limited"].as_u64().unwrap() as usize, limited);
    // Multiplicative decrease: the first 429 halved the requests in flight.
    let first_change = trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "in_flight")
        .expect("an in-flight change");
    assert_eq!(first_change["from"], 16);
    assert_eq!(first_change["to"], 8);
    let learned = trace["learned_rpm"].as_f64().unwrap();
    assert!(
        learned <= 1_500.0,
        "learned {learned} requests/min of 1,200"
    );
    // What the limiter learned is in the summary and the report, as the trace says.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap();
    let quota = &summary["quota"][0];
    assert_eq!(quota["mode"], "rate_limits");
    assert_eq!(quota["rate_limited"], trace["rate_limited"]);
    assert_eq!(quota["requests"], trace["requests"]);
    assert_eq!(quota["learned_rpm"], trace["learned_rpm"]);
    let steps = quota["timeline"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.len() <= 8, "{steps:?}");
    let step_429s: u64 = steps
        .iter()
        .map(|s| s["rate_limited"].as_u64().unwrap())
        .sum();
    assert_eq!(step_429s as usize, limited, "every 429 falls in one step");
    let report = std::fs::read_to_string(folder.join("report.md")).unwrap();
    let section = report
        .split("## Quota")
        .nth(1)
        .expect("report.md has a quota section");
    let row = format!(
        "| rate limits | not set / not set | {learned:.0} / – | {} | {limited} (",
        trace["requests"]
    );
    assert!(section.contains(&row), "{row}\n{section}");
    assert!(section.contains("Pace over the run"), "{section}");
    let page = std::fs::read_to_string(folder.join("report.html")).unwrap();
    assert!(
        page.contains("id=\"quota-table\""),
        "report.html shows the quota"
    );
    assert!(
        page.contains("<td>rate limits</td>"),
        "report.html says how it paced"
    );
}

#[test]
fn another_client_taking_half_a_sliding_window_midway_halves_the_pace() {
    another_client_taking_half_the_quota_midway_halves_the_pace(true);
}

#[test]
fn another_client_taking_half_a_bucket_midway_halves_the_pace() {
    another_client_taking_half_the_quota_midway_halves_the_pace(false);
}

fn another_client_taking_half_the_quota_midway_halves_the_pace(sliding: bool) {
    // 1,200/min; from 3 s after the first request on, another client takes half of it.
    let (server, correct) = server(ServerConfig {
        rpm: Some(1_200),
        others_take: Some((Duration::from_secs(3), 0.5)),
        sliding,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    run(&server, &folder, &["--max-in-flight", "8"]);
    assert_every_row_once(&server, &folder, correct);
    let (limited, total) = throttled(&server);
    assert!(limited * 20 <= total, "{limited} of {total} answered 429");
    // After the other client came, we were admitted at about half the quota.
    let late: Vec<Instant> = {
        let seen = server.seen();
        let start = seen[0].at + Duration::from_secs(5);
        seen.iter()
            .filter(|r| r.status == 200 && r.at >= start)
            .map(|r| r.at)
            .collect()
    };
    assert!(late.len() > 20, "too few requests after the change");
    let span = late[late.len() - 1].duration_since(late[0]).as_secs_f64();
    let per_minute = (late.len() - 1) as f64 / span * 60.0;
    assert!(
        per_minute <= 700.0,
        "{per_minute:.0} requests/min with only 600 left for us"
    );
    let learned = trace(&folder)["learned_rpm"].as_f64().unwrap();
    assert!(learned <= 800.0, "still pacing at {learned}/min");
}

#[test]
fn four_shards_learn_their_shares_of_a_sliding_window() {
    four_shards_learn_their_shares_and_stay_under_the_quota_together(true);
}

#[test]
fn four_shards_learn_their_shares_of_a_bucket() {
    four_shards_learn_their_shares_and_stay_under_the_quota_together(false);
}

fn four_shards_learn_their_shares_and_stay_under_the_quota_together(sliding: bool) {
    let (server, correct) = server(ServerConfig {
        rpm: Some(1_200),
        sliding,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("sharded");
    let children: Vec<_> = (0..4)
        .map(|k| {
            letters_run(&server.azure_endpoint())
                .args(["--no-cache", "--quiet", "--max-retries", "30"])
                .args(["--max-in-flight", "8", "--shard", &format!("{k}/4")])
                .arg("--results-dir")
                .arg(&results)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let answered = server.answered_per_question();
    assert_eq!(answered.len(), 135);
    assert!(answered.values().all(|&n| n == 1));
    let mut rows = 0;
    let mut traces = Vec::new();
    for k in 0..4 {
        let folder = results.join(format!("shard-{k}-of-4"));
        rows += summary(&folder)["rows"].as_u64().unwrap();
        let trace = trace(&folder);
        assert_eq!(trace["mode"], "headers");
        traces.push(trace);
    }
    // The pace each learned while all four ran (the first 80% of the shortest run: a shard
    // left alone at the end rightly takes the whole quota), summed.
    let samples = |trace: &Value| trace["samples"].as_array().unwrap().clone();
    let end = |s: &Value| s["at_s"].as_f64().unwrap() + s["span_s"].as_f64().unwrap();
    let together = traces
        .iter()
        .map(|t| samples(t).iter().map(end).fold(0.0, f64::max))
        .fold(f64::INFINITY, f64::min)
        * 0.8;
    let paces: Vec<f64> = traces
        .iter()
        .map(|t| {
            let paced: Vec<f64> = samples(t)
                .iter()
                .filter(|s| end(s) <= together)
                .filter_map(|s| s["pace_rpm"].as_f64())
                .collect();
            paced.iter().sum::<f64>() / paced.len().max(1) as f64
        })
        .collect();
    let learned_sum: f64 = paces.iter().sum();
    assert_eq!(rows, 135);
    let _ = correct;
    let (limited, total) = throttled(&server);
    assert!(
        limited * 10 <= total,
        "{limited} of {total} requests answered 429 (more than 10%)"
    );
    // Each learned its share: together not above the quota (and its window's slack).
    assert!(
        learned_sum <= 1_500.0,
        "the shards together paced at {learned_sum:.0}/min ({paces:?}) over their first {together:.1} s"
    );
}

#[test]
fn a_sliding_window_told_its_quota_answers_no_429() {
    // The quota told exactly (1,200/min over a 1 s window): paced by the configured buckets
    // and by the window learned from the headers together, never refused.
    let (_, trace) = told_1200(ServerConfig {
        rpm: Some(1_200),
        sliding: true,
        ..Default::default()
    });
    assert_eq!(trace["configured_rpm"], 1_200);
}

/// A run told `--rpm 1200` against a server with `config`'s quota: every row once, no 429.
/// The server and the run's quota trace.
fn told_1200(config: ServerConfig) -> (ChatServer, Value) {
    let (server, correct) = server(config);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    run(&server, &folder, &["--max-in-flight", "8", "--rpm", "1200"]);
    assert_every_row_once(&server, &folder, correct);
    assert_eq!(throttled(&server).0, 0);
    let trace = trace(&folder);
    (server, trace)
}

#[test]
fn a_configured_quota_stays_a_ceiling() {
    // The deployment would take 6,000/min, but the user said 1,200: never more than that.
    let (server, trace) = told_1200(ServerConfig {
        rpm: Some(6_000),
        ..Default::default()
    });
    // 20 a second, with a burst of half a second's worth: at most 30 in any second.
    let most = busiest(&server, Duration::from_secs(1));
    assert!(most <= 31, "{most} requests in one second at --rpm 1200");
    assert_eq!(trace["configured_rpm"], 1_200);
    assert!(trace["learned_rpm"].as_f64().unwrap() <= 1_200.0);
}

#[test]
fn a_remaining_count_that_our_requests_never_move_does_not_pace_the_run() {
    // A gateway's constant `x-ratelimit-remaining-requests: 100` (no limit, no reset, never a
    // 429). Taken at its word it is a quota of about 100 requests and paced the run (101 a
    // minute at first); answered requests that never move it say it does not bind.
    let (server, correct) = server(ServerConfig {
        constant_remaining: Some(100),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    run(&server, &folder, &["--max-in-flight", "8"]);
    assert_every_row_once(&server, &folder, correct);
    assert_eq!(throttled(&server).0, 0);
    let trace = trace(&folder);
    // The count was read (a capacity of 101) but nothing limited the run: no learned pace,
    // and the learner said when it found the requests' quota not binding - once, for good.
    assert_eq!(trace["mode"], "headers", "{trace}");
    assert_eq!(trace["request_capacity"], 101.0);
    assert!(trace["learned_rpm"].is_null(), "{trace}");
    let binding: Vec<&Value> = trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "binding")
        .collect();
    assert_eq!(binding.len(), 1, "{trace}");
    assert_eq!(binding[0]["quantity"], "requests");
    assert_eq!(binding[0]["binding"], false);
    // From the sample in which it was found on, no pace is recorded.
    let found = binding[0]["at_s"].as_f64().unwrap();
    let samples = trace["samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .filter(|s| s["at_s"].as_f64().unwrap() > found)
            .all(|s| s["pace_rpm"].is_null()),
        "{trace}"
    );
}
