//! evalr renders the messages Microsoft's own Prompty runtime renders.
//!
//! The official Rust runtime (the `prompty` crate, 2.1.0) is the reference peer: each case
//! is a v2 Prompty file with inputs, loaded and prepared by `prompty::prepare` (its Jinja and
//! mustache renderers and its role-marker parser) and by evalr's loader and renderer; the
//! roles and texts of the messages must be equal. Cases are v2 files without `select`/`gen`
//! (the runtime knows neither) and without `${env:...}` (its loader resolves them eagerly).

use std::path::Path;

use evalr::program::{Program, ProgramFile, Step, complete_inputs, template_context};
use serde_json::{Value, json};

/// Role, text and the `name` a message is sent with.
type Sent = (String, String, Option<String>);

fn evalr_messages(path: &Path, text: &str, inputs: &Value) -> Vec<Sent> {
    let program = Program::compile(ProgramFile::parse(path, text).unwrap()).unwrap();
    let mut context = template_context(inputs, Vec::new());
    complete_inputs(&program.file.inputs, &mut context).unwrap();
    let messages = match program.next_step(&context, &Default::default()).unwrap() {
        Step::Call(call) => call.messages,
        Step::Done(messages) => messages,
    };
    messages
        .into_iter()
        .map(|m| (m.role.as_str().to_string(), m.content, m.name))
        .collect()
}

fn runtime_messages(path: &Path, text: &str, inputs: &Value) -> Vec<Sent> {
    prompty::register_defaults();
    let agent = prompty::load_from_string(text, path).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let messages = runtime
        .block_on(prompty::prepare(&agent, Some(inputs)))
        .unwrap();
    messages
        .into_iter()
        .map(|m| {
            // The runtime keeps role-line attributes as metadata and sends `name` (spec §7.1.1).
            let name = m
                .metadata
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string);
            (m.role.to_string(), m.text_content(), name)
        })
        .collect()
}

fn assert_same(name: &str, text: &str, inputs: Value) {
    let path = Path::new("tests/fixtures/prompty").join(name);
    let ours = evalr_messages(&path, text, &inputs);
    let theirs = runtime_messages(&path, text, &inputs);
    assert_eq!(ours, theirs, "{name}");
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new("tests/fixtures/prompty").join(name)).unwrap()
}

#[test]
fn v2_fixture_with_a_thread_input() {
    assert_same(
        "v2_chat.prompty",
        &fixture("v2_chat.prompty"),
        json!({
            "question": "And in Germany?",
            "conversation": [
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."}
            ]
        }),
    );
}

/// The runtime's loader wants `items` on array inputs and rejects the spec's own shorthand
/// `template: mustache` (spec §2.8); evalr accepts both, so the runtime gets the long forms.
fn long_forms(text: &str) -> String {
    text.replace(
        "template: mustache",
        "template:\n  format:\n    kind: mustache\n  parser:\n    kind: prompty",
    )
    .replace(
        "    kind: array",
        "    kind: array\n    items:\n      kind: string",
    )
}

#[test]
fn mustache_fixture() {
    assert_same(
        "mustache.prompty",
        &long_forms(&fixture("mustache.prompty")),
        json!({"name": "Ann & Bo", "items": ["milk", "eggs"]}),
    );
}

#[test]
fn json_outputs_fixture() {
    assert_same(
        "json_outputs.prompty",
        &fixture("json_outputs.prompty"),
        json!({"question": "Capital of France?"}),
    );
}

#[test]
fn role_line_forms_blank_edges_indentation_and_empty_messages() {
    let text = "---\nname: forms\ninputs:\n  - name: who\n    kind: string\n    default: you\n---\nPreamble is system.\n\n# USER:\n\n\n  Indented {{ who }}.\n\n\nassistant :\nDEVELOPER:\nRules.\n  user:\nlast{{ undefined_variable }}\n";
    assert_same("forms.prompty", text, json!({}));
}

#[test]
fn jinja_loops_conditionals_and_filters() {
    let text = "---\nname: loops\ninputs:\n  - name: items\n    kind: array\n  - name: flag\n    kind: boolean\n---\nsystem:\n{% for i in items %}{{ loop.index }}. {{ i | upper }}\n{% endfor %}{% if flag %}flag on{% else %}flag off{% endif %}\nuser:\n{{ items | join(\", \") }} ({{ items | length }}) {{ missing | default(\"fallback\") }}\n";
    assert_same(
        "loops.prompty",
        &long_forms(text),
        json!({"items": ["a", "b"], "flag": true}),
    );
}

/// Names of role lines, with the runtime's strict mode off: in strict mode (its default) it
/// rewrites every role line as `role[nonce=...]:` before rendering and so loses the line's
/// attributes; evalr marks values instead of rewriting role lines and keeps them.
#[test]
fn role_line_names_and_v2_markdown_images_kept_as_text() {
    let text = "---\nname: names\ninputs:\n  - name: who\n    kind: string\ntemplate:\n  format:\n    kind: jinja2\n    strict: false\n  parser:\n    kind: prompty\n---\nsystem[name=\"rules\"]:\nBe fair. See ![a chart](chart.png).\nuser[name=\"{{ who }}\"]:\nhi\nassistant:\nhello\n";
    assert_same("names.prompty", text, json!({"who": "alice"}));
}

/// An image input in a user message: the same roles and texts around it. (The runtime 2.1.0
/// expands every rich input as a thread, so it drops the image part itself, which evalr sends;
/// tests/integration/prompty_images.rs checks those parts against the chat server.)
#[test]
fn image_input_in_a_user_message_keeps_the_texts_around_it() {
    let text = "---\nname: picture\ninputs:\n  - name: question\n    kind: string\n  - name: photo\n    kind: image\n---\nsystem:\nDescribe pictures.\nuser:\n{{ question }}\n{{ photo }}\n";
    assert_same(
        "picture.prompty",
        text,
        json!({"question": "What is it?", "photo": "https://example.test/p.png"}),
    );
}

/// The messages a Python Prompty runtime prepares for a file, through
/// tests/fixtures/prompty/runtime_messages.py: `python` is the interpreter that has the
/// runtime (`python3` has prompty 2.x; the v1 lines live in virtualenvs of their own).
fn python_runtime_messages(python: &str, file: &Path) -> Vec<(String, String)> {
    // prompty 0.1.x reads a relative path from the calling script's folder.
    let file = file.canonicalize().unwrap();
    let output = std::process::Command::new(python)
        .arg("tests/fixtures/prompty/runtime_messages.py")
        .arg(&file)
        .arg("{}")
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        output.status.success(),
        "{python} {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The interpreter of a v1 runtime line: `EVALR_PROMPTY_V1_PYTHON` (prompty 0.1.x, the line
/// many samples pin) or `EVALR_PROMPTY_V1_TOOLS_PYTHON` (prompty 1.0.0b3, the last v1 line,
/// which reads `tools:` sections), else the virtualenvs `scripts/setup.sh --test` makes.
fn v1_python(variable: &str, venv: &str) -> String {
    let python = std::env::var(variable).unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/evalr/{venv}/bin/python")
    });
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: run scripts/setup.sh --test, or set {variable}"
    );
    python
}

/// evalr's messages for a file rendered with its own `sample:` values, as the runtimes'
/// `prepare` renders it without inputs.
fn evalr_messages_from_sample(file: &Path) -> Vec<(String, String)> {
    let program = Program::compile(ProgramFile::load(file).unwrap()).unwrap();
    let mut context = template_context(&Value::Object(program.file.sample.clone()), Vec::new());
    complete_inputs(&program.file.inputs, &mut context).unwrap();
    let messages = match program.next_step(&context, &Default::default()).unwrap() {
        Step::Call(call) => call.messages,
        Step::Done(messages) => messages,
    };
    messages
        .into_iter()
        .map(|m| (m.role.as_str().to_string(), m.content))
        .collect()
}

/// Blank lines between a v2 file's front matter and its first role line: prompty 2.x (and the
/// TypeScript runtime) send no empty system message for them.
#[test]
fn v2_blank_lines_after_the_front_matter_make_no_message_as_in_prompty_2() {
    let file = Path::new("tests/fixtures/prompty/v2_blank_lines.prompty");
    let theirs = python_runtime_messages("python3", file);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert_eq!(evalr_messages_from_sample(file), theirs);
}

/// A v1 file renders as the v1 runtime many samples pin (prompty 0.1.x): it drops messages
/// that are only blank (here a trailing `assistant:`) and the blank lines before the first
/// role line.
#[test]
fn v1_blank_messages_are_dropped_as_in_prompty_0_1() {
    let python = v1_python("EVALR_PROMPTY_V1_PYTHON", "venv-prompty01");
    let file = Path::new("tests/fixtures/prompty/v1_blank_messages.prompty");
    let theirs = python_runtime_messages(&python, file);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert_eq!(evalr_messages_from_sample(file), theirs);
}

/// `${file:...}` as the whole `inputs:`, inside the model's settings, and a `sample:` in a
/// folder beside the program's (`../data/...`), resolved as prompty 0.1.x resolves them.
#[test]
fn file_references_in_the_front_matter_resolve_as_in_prompty_0_1() {
    let python = v1_python("EVALR_PROMPTY_V1_PYTHON", "venv-prompty01");
    let file = Path::new("tests/fixtures/prompty/refs/flow/refs.prompty");
    let theirs = python_runtime_messages(&python, file);
    assert_eq!(
        theirs,
        [
            (
                "system".to_string(),
                "You are a terse assistant.".to_string()
            ),
            ("user".into(), "What is in the data folder?".into())
        ]
    );
    assert_eq!(evalr_messages_from_sample(file), theirs);
    let program = ProgramFile::load(file).unwrap();
    assert_eq!(
        program.parameters.response_format,
        Some(evalr::program::ResponseFormat::JsonObject)
    );
    assert_eq!(program.inputs.len(), 2);
}

/// A `tools:` section opening a v1 body declares tools: the last v1 runtime (prompty
/// 1.0.0b3) takes it out of the messages, and so does evalr.
#[test]
fn a_v1_tools_section_is_no_message_as_in_the_last_v1_runtime() {
    let python = v1_python("EVALR_PROMPTY_V1_TOOLS_PYTHON", "venv-prompty10");
    let file = Path::new("tests/fixtures/prompty/v1_tools.prompty");
    let theirs = python_runtime_messages(&python, file);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert_eq!(evalr_messages_from_sample(file), theirs);
}
