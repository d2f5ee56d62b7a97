//! The judge programs in programs/judges parse and render: valid front matter whose inputs
//! are judge row fields, a body that renders with a row (select/gen stand for the engine's
//! calls here and only record their arguments), role lines in order, and the contract of
//! azure-ai-evaluation's judges: a 1-5 rubric, the reason asked before the score, one JSON
//! answer generated last. Running them against a model is `evalr judge`'s job; the last test
//! runs every judge file the installed azure-ai-evaluation ships through `evalr judge`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error};

const METRICS: [&str; 6] = [
    "groundedness",
    "coherence",
    "fluency",
    "relevance",
    "retrieval",
    "similarity",
];
const ROW_FIELDS: [&str; 8] = [
    "query",
    "question",
    "choices",
    "response",
    "answer",
    "context",
    "ground_truth",
    "correct_answer",
];

fn split(text: &str) -> (serde_yaml::Value, String) {
    let rest = text
        .strip_prefix("---\n")
        .expect("front matter opens with ---");
    let end = rest.find("\n---\n").expect("front matter closes with ---");
    let front = serde_yaml::from_str(&rest[..end]).expect("front matter is YAML");
    (front, rest[end + 5..].to_string())
}

#[derive(Debug, Clone, PartialEq)]
struct Call {
    kind: &'static str,
    capture: String,
    options: Vec<String>,
}

fn render(body: &str, row: serde_json::Value) -> (String, Vec<Call>) {
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let mut env = Environment::new();
    let recorded = calls.clone();
    env.add_function(
        "select",
        move |capture: String, kwargs: Kwargs| -> Result<String, Error> {
            let options: Vec<String> = kwargs.get("options")?;
            kwargs.assert_all_used()?;
            recorded.lock().unwrap().push(Call {
                kind: "select",
                capture: capture.clone(),
                options,
            });
            Ok(format!("[[select {capture}]]"))
        },
    );
    let recorded = calls.clone();
    env.add_function(
        "gen",
        move |capture: String, kwargs: Kwargs| -> Result<String, Error> {
            let max_tokens: u32 = kwargs.get("max_tokens")?;
            kwargs.assert_all_used()?;
            assert_eq!(max_tokens, 800, "as azure-ai-evaluation's judges");
            recorded.lock().unwrap().push(Call {
                kind: "gen",
                capture: capture.clone(),
                options: vec![],
            });
            Ok(format!("[[gen {capture}]]"))
        },
    );
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let text = env
        .render_str(body, Value::from_serialize(&row))
        .expect("body renders");
    let calls = calls.lock().unwrap().clone();
    (text, calls)
}

#[test]
fn every_judge_program_parses_and_renders_with_a_row() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/judges");
    for metric in METRICS {
        let text = std::fs::read_to_string(dir.join(format!("{metric}.prompty"))).expect(metric);
        let (front, body) = split(&text);
        assert_eq!(front["name"].as_str(), Some(metric));
        assert!(
            front["description"].as_str().is_some_and(|d| d.len() > 40),
            "{metric}"
        );
        assert_eq!(
            front["parameters"]["temperature"].as_i64(),
            Some(0),
            "{metric}"
        );
        assert_eq!(front["answer"].as_str(), Some("judgment"), "{metric}");
        let inputs: Vec<&str> = front["inputs"]
            .as_sequence()
            .expect("inputs is a list")
            .iter()
            .map(|v| v.as_str().expect("input name"))
            .collect();
        assert!(
            inputs.contains(&"response") || inputs.contains(&"context"),
            "{metric} judges the response or the retrieved context"
        );
        assert!(
            inputs.iter().all(|i| ROW_FIELDS.contains(i)),
            "{metric}: {inputs:?}"
        );

        let row = serde_json::json!({
            "query": "Which planet is largest?",
            "question": "Which planet is largest?",
            "choices": ["Mars", "Jupiter", "Venus", "Mercury"],
            "correct_answer": 1,
            "response": "Jupiter is the largest planet.",
            "answer": "Jupiter is the largest planet.",
            "context": "Jupiter is the largest planet in the Solar System.",
            "ground_truth": "Jupiter",
        });
        let (rendered, calls) = render(&body, row);
        assert_eq!(
            calls,
            vec![Call {
                kind: "gen",
                capture: "judgment".into(),
                options: vec![]
            }],
            "{metric}: one generated judgment, no forced score"
        );
        let roles: Vec<&str> = rendered
            .lines()
            .filter(|l| matches!(*l, "system:" | "user:" | "assistant:"))
            .collect();
        assert_eq!(roles, ["system:", "user:", "assistant:"], "{metric}");
        // The judgment opens the assistant message and ends the program.
        let after = rendered.split("assistant:\n").nth(1).expect("assistant");
        assert_eq!(after.trim(), "[[gen judgment]]", "{metric}");
        for input in &inputs {
            let value = match *input {
                "response" => "Jupiter is the largest planet.",
                "query" => "Which planet is largest?",
                "context" => "Jupiter is the largest planet in the Solar System.",
                "ground_truth" => "Jupiter",
                _ => continue,
            };
            assert!(rendered.contains(value), "{metric} shows {input}");
        }
        // A rubric from 1 to 5, and the reason asked for before the score.
        for level in ["5 - ", "4 - ", "3 - ", "2 - ", "1 - "] {
            assert!(rendered.contains(level), "{metric} rubric has {level}");
        }
        let format = r#"{"reason": "<your reasoning in a few sentences>", "score": <a whole number from 1 to 5>}"#;
        assert!(
            rendered.contains(format),
            "{metric} asks for reason then score"
        );
        assert!(rendered.contains(r#""status": "skipped""#), "{metric}");
    }
}

#[test]
fn groundedness_shows_the_query_only_when_the_row_has_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/judges/groundedness.prompty");
    let (_, body) = split(&std::fs::read_to_string(path).unwrap());
    let row = |query: &str| serde_json::json!({"query": query, "response": "r", "context": "c"});
    let (with_query, _) = render(&body, row("Which planet?"));
    assert!(with_query.contains("Question: Which planet?"));
    assert!(with_query.contains("and the answer addresses the question"));
    let (without, _) = render(&body, row(""));
    assert!(!without.contains("Question:"), "{without}");
    assert!(!without.contains("addresses the question"));
}

#[test]
fn relevance_lists_the_options_of_a_multiple_choice_question() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/judges/relevance.prompty");
    let (_, body) = split(&std::fs::read_to_string(path).unwrap());
    let (rendered, _) = render(
        &body,
        serde_json::json!({"query": "q?", "choices": ["x", "y"], "response": "B"}),
    );
    assert!(rendered.contains("A. x\nB. y\n"), "{rendered}");
}

/// A finished 3-row run whose dataset rows carry a `context` and a `ground_truth`, so that
/// every judge has the fields it reads.
fn run_with_context(dir: &Path) -> std::path::PathBuf {
    use crate::common::openai_server::{ChatServer, ServerConfig};
    use crate::common::runs;
    let rows: Vec<serde_json::Value> = runs::dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(3)
        .map(|mut row| {
            let correct = row["choices"][row["correct_answer"].as_u64().unwrap() as usize]
                .as_str()
                .unwrap()
                .to_string();
            row["context"] = serde_json::json!(format!("Anatomy notes: the answer is {correct}."));
            row["ground_truth"] = serde_json::json!(correct);
            row
        })
        .collect();
    let dataset = dir.join("anatomy_with_context.jsonl");
    let lines: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&dataset, lines).unwrap();
    let model = ChatServer::start(ServerConfig {
        default_answer: "B".into(),
        ..Default::default()
    });
    let folder = dir.join("run");
    runs::succeeds(
        runs::evalr()
            .env("AZURE_OPENAI_ENDPOINT", model.azure_endpoint())
            .env("AZURE_OPENAI_API_KEY", "test-key")
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--model",
                "azure:gpt-4o",
            ])
            .args(["--no-cache", "--quiet"])
            .arg("--dataset")
            .arg(&dataset)
            .arg("--results-dir")
            .arg(&folder),
    );
    folder
}

/// Every judge file the installed azure-ai-evaluation ships with its evaluators, given to
/// `evalr judge` by path, each in a copy of one run: it loads, sends one request per row with
/// the file's own settings (`max_tokens`, `response_format`), and its JSON answers become the
/// metric the file's `name:` gives, scored on every row.
#[test]
fn every_official_judge_file_runs_through_evalr_judge() {
    use crate::common::openai_server::{AnswerStyle, ChatServer, ServerConfig};
    use crate::common::runs;
    let files: Vec<std::path::PathBuf> = runs::azure_ai_evaluation_prompty_files()
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("_evaluators"))
        .collect();
    assert!(files.len() >= 10, "{files:?}");
    let dir = tempfile::tempdir().unwrap();
    let run = run_with_context(dir.path());
    for file in &files {
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let folder = dir.path().join(&stem);
        std::fs::create_dir_all(&folder).unwrap();
        for entry in std::fs::read_dir(&run).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
            }
        }
        let server = ChatServer::start(ServerConfig {
            default_answer: "4".into(),
            style: AnswerStyle::JudgeJson,
            ..Default::default()
        });
        let output = runs::evalr()
            .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
            .env("AZURE_OPENAI_API_KEY", "test-key")
            .arg("judge")
            .arg(&folder)
            .args(["--quiet", "--no-cache", "--judge-model", "azure:gpt-4o"])
            .arg("--metric")
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{stem}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (front, _) = split(&std::fs::read_to_string(file).unwrap().replace("\r\n", "\n"));
        let parameters = &front["model"]["parameters"];
        let seen = server.seen();
        assert_eq!(seen.len(), 3, "{stem}: one request per row");
        for request in &seen {
            // `max_completion_tokens` is sent as `max_tokens`, the key the chat API takes.
            let max_tokens = parameters["max_tokens"]
                .as_u64()
                .or(parameters["max_completion_tokens"].as_u64());
            assert_eq!(request.body["max_tokens"].as_u64(), max_tokens, "{stem}");
            if let Some(kind) = parameters["response_format"]["type"].as_str() {
                assert_eq!(request.body["response_format"]["type"], kind, "{stem}");
            }
        }
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
                .unwrap();
        let judged = &summary["judged"][0];
        assert_eq!(judged["mean"], 4.0, "{stem}: {summary}");
    }
}
