//! The judge programs in programs/judges parse and render: valid front matter whose inputs
//! are judge row fields, a body that renders with a row (select/gen stand for the engine's
//! calls here and only record their arguments), role lines in order, and the contract of
//! azure-ai-evaluation's judges: a 1-5 rubric, the reason asked before the score, one JSON
//! answer generated last. Running them against a model is `evalr judge`'s job.

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
