//! The judge programs in programs/judges parse and render: valid front matter whose inputs
//! are row fields, a body that renders with a row (select/gen stand for the engine's calls
//! here and only record their arguments), role lines in order, a 1-5 score select first.
//! Running them against a model is the run engine's job (`evalr judge`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error};

const METRICS: [&str; 5] = [
    "groundedness",
    "coherence",
    "fluency",
    "relevance",
    "similarity",
];
const ROW_FIELDS: [&str; 6] = [
    "question",
    "choices",
    "correct_answer",
    "response",
    "context",
    "ground_truth",
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
            let _stop: Vec<String> = kwargs.get("stop")?;
            kwargs.assert_all_used()?;
            assert!(max_tokens <= 100);
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
        let inputs: Vec<&str> = front["inputs"]
            .as_sequence()
            .expect("inputs is a list")
            .iter()
            .map(|v| v.as_str().expect("input name"))
            .collect();
        assert!(inputs.contains(&"response"), "{metric} judges the response");
        assert!(
            inputs.iter().all(|i| ROW_FIELDS.contains(i)),
            "{metric}: {inputs:?}"
        );

        let row = serde_json::json!({
            "question": "Which planet is largest?",
            "choices": ["Mars", "Jupiter", "Venus", "Mercury"],
            "correct_answer": 1,
            "response": "Jupiter is the largest planet.",
            "context": "Jupiter is the largest planet in the Solar System.",
            "ground_truth": "Jupiter",
        });
        let (rendered, calls) = render(&body, row);
        assert_eq!(
            calls,
            vec![
                Call {
                    kind: "select",
                    capture: "score".into(),
                    options: ["1", "2", "3", "4", "5"].map(String::from).to_vec()
                },
                Call {
                    kind: "gen",
                    capture: "reason".into(),
                    options: vec![]
                },
            ],
            "{metric}"
        );
        let roles: Vec<&str> = rendered
            .lines()
            .filter(|l| matches!(*l, "system:" | "user:" | "assistant:"))
            .collect();
        assert_eq!(
            roles,
            ["system:", "user:", "assistant:", "user:", "assistant:"],
            "{metric}"
        );
        // The score select opens its own assistant message, nothing before it.
        let after = rendered
            .split("assistant:\n")
            .nth(1)
            .expect("assistant message");
        assert!(
            after.trim_start().starts_with("[[select score]]"),
            "{metric}"
        );
        for input in &inputs {
            if *input == "response" || *input == "question" || *input == "context" {
                let value = match *input {
                    "response" => "Jupiter is the largest planet.",
                    "question" => "Which planet is largest?",
                    _ => "Jupiter is the largest planet in the Solar System.",
                };
                assert!(rendered.contains(value), "{metric} shows {input}");
            }
        }
        // A rubric from 1 to 5.
        for level in ["5 - ", "4 - ", "3 - ", "2 - ", "1 - "] {
            assert!(rendered.contains(level), "{metric} rubric has {level}");
        }
    }
}

#[test]
fn relevance_lists_the_options_of_a_multiple_choice_question() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/judges/relevance.prompty");
    let (_, body) = split(&std::fs::read_to_string(path).unwrap());
    let (rendered, _) = render(
        &body,
        serde_json::json!({"question": "q?", "choices": ["x", "y"], "response": "B", "correct_answer": null,
                           "context": null, "ground_truth": null}),
    );
    assert!(rendered.contains("A. x\nB. y\n"), "{rendered}");
}
