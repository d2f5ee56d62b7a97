//! Rendering: run the template with the captures known so far, stop at the first open call.
//!
//! A call whose capture is known returns its value; the first unknown call returns a marker
//! carrying its arguments. The rendered text is split into messages at role lines and cut at
//! the first marker: that conversation is exactly what the model sees at that call. The run
//! makes the call, stores the capture and renders again. Re-rendering costs microseconds
//! against a model call, and branches on a capture (`{% if answer == "A" %}`) come out right.

use minijinja::value::{Kwargs, Rest};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::{ProgramError, ProgramFile};
use crate::backend::{Message, Role};

const MARKER_START: char = '\u{1}';
const MARKER_END: char = '\u{2}';
const CAPTURES_KEY: &str = "__evalr_captures";
const TEMPLATE_NAME: &str = "program";

/// What a call asks of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallKind {
    Select {
        options: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temperature: Option<f64>,
    },
    Gen {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<u32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stop: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temperature: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        top_p: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        regex: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_schema: Option<serde_json::Value>,
    },
}

/// The open call of a program at one point: its capture name, its kind, and the conversation
/// the model sees.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub capture: String,
    #[serde(flatten)]
    pub kind: CallKind,
    pub messages: Vec<Message>,
}

/// Where a program stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The model must answer this call before the program can go on.
    Call(Call),
    /// No call is open: the program is finished; these are the full messages.
    Done(Vec<Message>),
}

/// Captures known so far, in the order they were made.
pub type Captures = Map<String, serde_json::Value>;

/// A program compiled once and rendered for every row.
pub struct Program {
    pub file: ProgramFile,
    env: Environment<'static>,
    /// Capture names the body mentions, so a branch on a capture not made yet sees `none`
    /// instead of failing under strict undefined checks.
    capture_names: Vec<String>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("file", &self.file).finish()
    }
}

impl Program {
    pub fn compile(file: ProgramFile) -> Result<Program, ProgramError> {
        let mut env = Environment::new();
        // A misspelt row field must fail loudly, not render as an empty string.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_function("select", select_function);
        env.add_function("gen", gen_function);
        env.add_global(
            "letters",
            Value::from_serialize(('A'..='Z').map(|c| c.to_string()).collect::<Vec<_>>()),
        );
        env.add_template_owned(TEMPLATE_NAME, file.body.clone())
            .map_err(|e| template_error(&file, &e))?;
        let call_pattern =
            regex::Regex::new(r#"\b(?:select|gen)\(\s*["']([^"']+)["']"#).expect("constant regex");
        let capture_names = call_pattern
            .captures_iter(&file.body)
            .map(|c| c[1].to_string())
            .collect();
        Ok(Program {
            file,
            env,
            capture_names,
        })
    }

    /// Renders with `context` (row fields, `row`, `examples`...) and the captures so far, and
    /// returns the first open call or the finished conversation.
    pub fn next_step(
        &self,
        context: &Map<String, serde_json::Value>,
        captures: &Captures,
    ) -> Result<Step, ProgramError> {
        let mut vars = context.clone();
        for name in &self.capture_names {
            vars.insert(name.clone(), serde_json::Value::Null);
        }
        for (name, value) in captures {
            vars.insert(name.clone(), value.clone());
        }
        vars.insert(
            CAPTURES_KEY.to_string(),
            serde_json::Value::Object(captures.clone()),
        );
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(&self.file, &e))?;
        let text = template
            .render(Value::from_serialize(&vars))
            .map_err(|e| template_error(&self.file, &e))?;
        match text.find(MARKER_START) {
            None => Ok(Step::Done(split_messages(&text))),
            Some(start) => {
                let rest = &text[start + MARKER_START.len_utf8()..];
                let end = rest
                    .find(MARKER_END)
                    .ok_or_else(|| ProgramError::Template {
                        path: self.file.path.clone(),
                        line: self.file.body_first_line,
                        message: "a select/gen call was cut by a filter; print calls unmodified"
                            .into(),
                    })?;
                let call: PendingCall =
                    serde_json::from_str(&rest[..end]).map_err(|e| ProgramError::Template {
                        path: self.file.path.clone(),
                        line: self.file.body_first_line,
                        message: format!("internal call marker unreadable: {e}"),
                    })?;
                Ok(Step::Call(Call {
                    capture: call.capture,
                    kind: call.kind,
                    messages: conversation_before_call(&text[..start]),
                }))
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PendingCall {
    capture: String,
    #[serde(flatten)]
    kind: CallKind,
}

fn known_capture(state: &State, name: &str) -> Option<Value> {
    let captures = state.lookup(CAPTURES_KEY)?;
    let value = captures.get_attr(name).ok()?;
    (!value.is_undefined()).then_some(value)
}

fn marker(call: &PendingCall) -> Result<Value, minijinja::Error> {
    let json = serde_json::to_string(call)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(Value::from_safe_string(format!(
        "{MARKER_START}{json}{MARKER_END}"
    )))
}

fn strings_of(value: &Value, what: &str) -> Result<Vec<String>, minijinja::Error> {
    if let Some(s) = value.as_str() {
        return Ok(vec![s.to_string()]);
    }
    let iter = value.try_iter().map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("{what} must be a list of strings"),
        )
    })?;
    Ok(iter
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .collect())
}

/// `select(name, options=[...])` or `select(name, [...])`.
fn select_function(
    state: &State,
    name: String,
    positional: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, minijinja::Error> {
    let options_value: Option<Value> = kwargs.get("options")?;
    let temperature: Option<f64> = kwargs.get("temperature")?;
    kwargs.assert_all_used()?;
    let options_value = options_value
        .or_else(|| positional.first().cloned())
        .ok_or_else(|| {
            minijinja::Error::new(
                ErrorKind::MissingArgument,
                format!("select(\"{name}\") needs options=[...]"),
            )
        })?;
    let options = strings_of(&options_value, "options")?;
    if options.is_empty() {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("select(\"{name}\") has no options"),
        ));
    }
    if let Some(value) = known_capture(state, &name) {
        return Ok(value);
    }
    marker(&PendingCall {
        capture: name,
        kind: CallKind::Select {
            options,
            temperature,
        },
    })
}

/// `gen(name, max_tokens=, stop=, temperature=, top_p=, seed=, regex=, json_schema=)`.
fn gen_function(state: &State, name: String, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let max_tokens: Option<u32> = kwargs.get("max_tokens")?;
    let stop: Option<Value> = kwargs.get("stop")?;
    let temperature: Option<f64> = kwargs.get("temperature")?;
    let top_p: Option<f64> = kwargs.get("top_p")?;
    let seed: Option<u64> = kwargs.get("seed")?;
    let regex: Option<String> = kwargs.get("regex")?;
    let json_schema: Option<Value> = kwargs.get("json_schema")?;
    kwargs.assert_all_used()?;
    if let Some(value) = known_capture(state, &name) {
        return Ok(value);
    }
    let stop = match stop {
        Some(v) if !v.is_none() && !v.is_undefined() => strings_of(&v, "stop")?,
        _ => Vec::new(),
    };
    let json_schema = json_schema
        .map(|v| serde_json::to_value(&v))
        .transpose()
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    marker(&PendingCall {
        capture: name,
        kind: CallKind::Gen {
            max_tokens,
            stop,
            temperature,
            top_p,
            seed,
            regex,
            json_schema,
        },
    })
}

fn role_of_line(line: &str) -> Option<Role> {
    match line.trim().to_ascii_lowercase().as_str() {
        "system:" => Some(Role::System),
        "user:" => Some(Role::User),
        "assistant:" => Some(Role::Assistant),
        _ => None,
    }
}

/// The conversation a call sees: the messages before its marker, where the last one keeps its
/// trailing spaces. "Answer: " then an option "B" is the text "Answer: B", which a local model
/// scores as the token " B" the way it would read it; chat APIs ignore the difference.
fn conversation_before_call(text: &str) -> Vec<Message> {
    let mut messages = split_messages(text);
    if let Some(last) = messages.last_mut() {
        let tail = text.trim_end_matches(['\n', '\r']);
        let spaces = tail.len() - tail.trim_end().len();
        if tail.trim_end().ends_with(last.content.as_str()) && spaces > 0 {
            last.content.push_str(&tail[tail.len() - spaces..]);
        }
    }
    messages
}

/// Splits rendered text into messages at lines `system:`, `user:`, `assistant:`. Text before
/// the first role line is a system message. Contents are trimmed; empty messages dropped.
pub fn split_messages(text: &str) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut role = Role::System;
    let mut content = String::new();
    let flush = |role: Role, content: &mut String, messages: &mut Vec<Message>| {
        let trimmed = content.trim();
        if !trimmed.is_empty() {
            messages.push(Message {
                role,
                content: trimmed.to_string(),
            });
        }
        content.clear();
    };
    for line in text.split_inclusive('\n') {
        if let Some(next) = role_of_line(line) {
            flush(role, &mut content, &mut messages);
            role = next;
        } else {
            content.push_str(line);
        }
    }
    flush(role, &mut content, &mut messages);
    messages
}

fn template_error(file: &ProgramFile, error: &minijinja::Error) -> ProgramError {
    let line = error
        .line()
        .map(|l| l + file.body_first_line - 1)
        .unwrap_or(file.body_first_line);
    let mut message = error.kind().to_string();
    if let Some(detail) = error.detail() {
        message = format!("{message}: {detail}");
    }
    ProgramError::Template {
        path: file.path.clone(),
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn program(body: &str) -> Program {
        let text = format!("---\nname: t\n---\n{body}");
        Program::compile(ProgramFile::parse(Path::new("programs/t.prompty"), &text).unwrap())
            .unwrap()
    }

    fn context() -> Map<String, serde_json::Value> {
        serde_json::json!({"question": "2+2?", "choices": ["3", "4"]})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn stops_at_first_open_call_with_the_conversation_so_far() {
        let p = program(
            "system:\nBe brief.\nuser:\n{{ question }}\n{% for c in choices %}{{ letters[loop.index0] }}. {{ c }}\n{% endfor %}assistant:\nAnswer: {{ select(\"answer\", options=letters[:choices|length]) }}\n",
        );
        let Step::Call(call) = p.next_step(&context(), &Captures::new()).unwrap() else {
            panic!("expected a call")
        };
        assert_eq!(call.capture, "answer");
        assert_eq!(
            call.kind,
            CallKind::Select {
                options: vec!["A".into(), "B".into()],
                temperature: None
            }
        );
        assert_eq!(
            call.messages,
            vec![
                Message {
                    role: Role::System,
                    content: "Be brief.".into()
                },
                Message {
                    role: Role::User,
                    content: "2+2?\nA. 3\nB. 4".into()
                },
                Message {
                    role: Role::Assistant,
                    content: "Answer: ".into()
                },
            ]
        );
    }

    #[test]
    fn known_captures_fill_in_and_branches_follow_them() {
        let p = program(
            "user:\n{{ question }}\nassistant:\n{{ gen(\"why\", max_tokens=5, stop=\"\\n\") }}\nSo: {{ select(\"answer\", [\"A\", \"B\"]) }}\n{% if answer == \"B\" %}user:\nSure?\nassistant:\n{{ select(\"sure\", options=[\"yes\", \"no\"]) }}{% endif %}",
        );
        let mut captures = Captures::new();
        let Step::Call(first) = p.next_step(&context(), &captures).unwrap() else {
            panic!()
        };
        assert_eq!(first.capture, "why");
        assert!(
            matches!(first.kind, CallKind::Gen { max_tokens: Some(5), ref stop, .. } if stop == &vec!["\n".to_string()])
        );
        captures.insert("why".into(), "it is 4".into());
        let Step::Call(second) = p.next_step(&context(), &captures).unwrap() else {
            panic!()
        };
        assert_eq!(second.capture, "answer");
        assert_eq!(second.messages.last().unwrap().content, "it is 4\nSo: ");
        captures.insert("answer".into(), "A".into());
        assert!(matches!(
            p.next_step(&context(), &captures).unwrap(),
            Step::Done(_)
        ));
        captures.insert("answer".into(), "B".into());
        let Step::Call(third) = p.next_step(&context(), &captures).unwrap() else {
            panic!()
        };
        assert_eq!(third.capture, "sure");
    }

    #[test]
    fn template_errors_name_file_and_line() {
        let text = "---\nname: t\n---\nuser:\n{{ question }}\n{{ qestion }}\n";
        let p =
            Program::compile(ProgramFile::parse(Path::new("programs/t.prompty"), text).unwrap())
                .unwrap();
        let err = p
            .next_step(&context(), &Captures::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("programs/t.prompty:6:"), "{err}");

        let bad = "---\nname: t\n---\nuser:\n{% if %}\n";
        let err = Program::compile(ProgramFile::parse(Path::new("b.prompty"), bad).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("b.prompty:5:"), "{err}");
    }

    #[test]
    fn text_before_any_role_is_system_and_empty_messages_drop() {
        assert_eq!(
            split_messages("Hello\nuser:\n\nassistant:\n  \n"),
            vec![Message {
                role: Role::System,
                content: "Hello".into()
            }]
        );
    }
}
