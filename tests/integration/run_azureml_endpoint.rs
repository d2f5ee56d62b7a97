//! `evalr run` against AzureML online endpoints served locally: a managed endpoint hosting a
//! catalog model (`input_data` / `output`, bearer key, deployment header) and a custom
//! scoring script described by a request template and a response pointer.

use crate::common::openai_server;
use crate::common::runs;

use openai_server::{AnswerStyle, ChatServer, ServerConfig};
use runs::{answer_key, dataset_rows, evalr, read_jsonl, summary};

fn run_with_profile(profile: &str, limit: &str) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("evalr.toml");
    std::fs::write(&config, profile).unwrap();
    let output = evalr()
        .env("AZUREML_ENDPOINT_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "endpoint",
            "--no-cache",
            "--quiet",
            "--limit",
            limit,
        ])
        .arg("--config")
        .arg(&config)
        .arg("--results-dir")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    (dir, output)
}

#[test]
fn a_managed_online_endpoint_is_asked_with_input_data_and_answers_are_matched() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(12)
        .collect();
    let (key, correct) = answer_key(&rows, |i| i % 3 != 2);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        style: AnswerStyle::Sentence,
        ..Default::default()
    });
    let profile = format!(
        "[models.endpoint]\nkind = \"azureml\"\nendpoint = \"http://{}/score\"\ndeployment = \"llama-3-8b-chat-1\"\nrpm = 600\n",
        server.addr
    );
    let (dir, output) = run_with_profile(&profile, "12");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let folder = dir.path().join("run");
    let s = summary(&folder);
    assert_eq!(
        s["correct"].as_u64().unwrap() as usize,
        correct,
        "{s} {}",
        std::fs::read_to_string(folder.join("errors.jsonl")).unwrap_or_default()
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 12);
    for request in &seen {
        assert_eq!(request.deployment.as_deref(), Some("llama-3-8b-chat-1"));
        let input = &request.body["input_data"];
        assert_eq!(
            input["input_string"].as_array().unwrap().last().unwrap()["role"],
            "assistant"
        );
        assert_eq!(input["parameters"]["max_new_tokens"], 24);
        assert_eq!(input["parameters"]["do_sample"], false);
    }
    let outputs = read_jsonl(&folder.join("outputs.jsonl"));
    assert!(
        outputs
            .iter()
            .all(|r| r["calls"][0]["path"] == "generate_match")
    );
    assert!(
        outputs[0]["model"]
            .as_str()
            .unwrap()
            .starts_with("azureml:http://")
    );
}

#[test]
fn a_custom_scoring_script_uses_the_profiles_request_template_and_response_pointer() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(6)
        .collect();
    let (key, correct) = answer_key(&rows, |i| i != 4);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let profile = format!(
        "[models.endpoint]\nkind = \"azureml\"\nendpoint = \"http://{}/custom/score\"\nrequest_template = '{{\"prompt\": {{{{ prompt | tojson }}}}, \"max_new_tokens\": {{{{ parameters.max_new_tokens }}}}}}'\nresponse_pointer = \"/result/generated\"\n",
        server.addr
    );
    let (dir, output) = run_with_profile(&profile, "6");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        summary(&dir.path().join("run"))["correct"]
            .as_u64()
            .unwrap() as usize,
        correct
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 6);
    assert!(seen[0].body["prompt"].as_str().unwrap().contains("Answer:"));
    assert_eq!(seen[0].body["max_new_tokens"], 24);
    assert!(seen[0].deployment.is_none());
}

#[test]
fn a_wrong_response_pointer_stops_the_run_with_an_error_that_names_it() {
    let server = ChatServer::start(ServerConfig::default());
    let profile = format!(
        "[models.endpoint]\nkind = \"azureml\"\nendpoint = \"http://{}/score\"\nresponse_pointer = \"/choices/0/text\"\n",
        server.addr
    );
    let (dir, output) = run_with_profile(&profile, "2");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("set `response_pointer` in the profile")
    );
    let errors = read_jsonl(&dir.path().join("run/errors.jsonl"));
    assert!(!errors.is_empty());
    assert_eq!(errors[0]["attempts"], 1);
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("nothing at /choices/0/text"),
        "{}",
        errors[0]
    );
}
