//! Rendering: run the template with the captures known so far, stop at the first open call.
//!
//! A call whose capture is known returns its value; the first unknown call returns a marker
//! carrying its arguments. The rendered text is split into messages at role lines and cut at
//! the first marker: that conversation is exactly what the model sees at that call. The run
//! makes the call, stores the capture and renders again. Re-rendering costs microseconds
//! against a model call, and branches on a capture (`{% if answer == "A" %}`) come out right.
//!
//! A program with no call at all runs as a Prompty file runs: one completion of the whole
//! conversation, captured as `output` (JSON against the `outputs:` schema when there is one).
//!
//! Every value the template prints is wrapped in markers carrying a nonce made when the
//! program is compiled (a row cannot know it), so the splitter can tell template text from
//! data: role boundaries come from the template alone (see `roles.rs`).

use minijinja::value::{Kwargs, Rest};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior, Value};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use std::path::Path;

use super::content::{RichInputs, expand_message};
use super::roles::{MarkedText, ParsedRole, split_marked};
use super::settings::ResponseFormat;
use super::{Dialect, ProgramError, ProgramFile, TemplateFormat};
use crate::backend::{Message, Role};

const CAPTURES_KEY: &str = "__evalr_captures";
const TEMPLATE_NAME: &str = "program";
/// The capture of a program without calls: the whole completion.
pub const OUTPUT_CAPTURE: &str = "output";

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

/// The markers of one compiled program.
#[derive(Debug, Clone)]
struct Markers {
    value_open: String,
    value_close: String,
    call_open: String,
    call_close: String,
    thread_open: String,
    thread_close: String,
    image_open: String,
    image_close: String,
}

impl Markers {
    fn new() -> Markers {
        let nonce: u64 = rand::rng().random();
        let nonce = format!("{nonce:016x}");
        // Private-use characters around a random nonce: a row would have to guess the nonce
        // to forge a boundary.
        Markers {
            value_open: format!("\u{F8F0}{nonce}\u{F8F1}"),
            value_close: format!("\u{F8F2}{nonce}\u{F8F1}"),
            call_open: format!("\u{F8F3}{nonce}\u{F8F1}"),
            call_close: format!("\u{F8F4}{nonce}\u{F8F1}"),
            thread_open: format!("\u{F8F5}{nonce}\u{F8F1}"),
            thread_close: format!("\u{F8F6}{nonce}\u{F8F1}"),
            image_open: format!("\u{F8F7}{nonce}\u{F8F1}"),
            image_close: format!("\u{F8F8}{nonce}\u{F8F1}"),
        }
    }
}

/// A program compiled once and rendered for every row.
pub struct Program {
    pub file: ProgramFile,
    env: Environment<'static>,
    markers: Markers,
    /// The body has `select(`/`gen(` calls; without any, the program is one completion.
    has_calls: bool,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("file", &self.file).finish()
    }
}

impl Program {
    pub fn compile(file: ProgramFile) -> Result<Program, ProgramError> {
        let markers = Markers::new();
        let mut env = Environment::new();
        // Undefined variables render as empty strings, as in every Prompty runtime; safety
        // comes from declared inputs and `evalr programs check`.
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_keep_trailing_newline(true);
        let call_open = markers.call_open.clone();
        let (open, close) = (markers.value_open.clone(), markers.value_close.clone());
        env.set_formatter(move |out, state, value| {
            if let Some(text) = value.as_str()
                && value.is_safe()
                && text.starts_with(call_open.as_str())
            {
                out.write_str(text)?;
                return Ok(());
            }
            out.write_str(&open)?;
            minijinja::escape_formatter(out, state, value)?;
            out.write_str(&close)?;
            Ok(())
        });
        let call_markers = (markers.call_open.clone(), markers.call_close.clone());
        let (select_markers, gen_markers) = (call_markers.clone(), call_markers);
        env.add_function(
            "select",
            move |state: &State, name: String, positional: Rest<Value>, kwargs: Kwargs| {
                select_function(state, name, positional, kwargs, &select_markers)
            },
        );
        env.add_function("gen", move |state: &State, name: String, kwargs: Kwargs| {
            gen_function(state, name, kwargs, &gen_markers)
        });
        env.add_global(
            "letters",
            Value::from_serialize(('A'..='Z').map(|c| c.to_string()).collect::<Vec<_>>()),
        );
        if file.format == TemplateFormat::Jinja2 {
            env.add_template_owned(TEMPLATE_NAME, file.body.clone())
                .map_err(|e| template_error(&file, &e))?;
        }
        let call_pattern = regex::Regex::new(r#"\b(?:select|gen)\s*\("#).expect("constant regex");
        let has_calls = file.format == TemplateFormat::Jinja2 && call_pattern.is_match(&file.body);
        Ok(Program {
            file,
            env,
            markers,
            has_calls,
        })
    }

    /// Whether the program is one plain completion (no `select`/`gen`).
    pub fn is_plain_completion(&self) -> bool {
        !self.has_calls
    }

    /// Capture names of the body's calls (a branch may read them before they are made).
    pub fn capture_names(&self) -> Vec<String> {
        let pattern =
            regex::Regex::new(r#"\b(?:select|gen)\(\s*["']([^"']+)["']"#).expect("constant regex");
        let mut names: Vec<String> = pattern
            .captures_iter(&self.file.body)
            .map(|c| c[1].to_string())
            .collect();
        if self.is_plain_completion() {
            names.push(OUTPUT_CAPTURE.to_string());
        }
        names
    }

    /// What makes the program send images, for backends that cannot read them: its image
    /// inputs, and in v1 files the markdown images of its body (with their line). Thread
    /// values may hold images too; those are known only row by row.
    pub fn image_sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self
            .file
            .inputs
            .iter()
            .filter(|i| i.is_image())
            .map(|i| format!("image input `{}`", i.name))
            .collect();
        if self.file.dialect == Dialect::V1 && self.file.markdown_images {
            let pattern = regex::Regex::new(r"!\[[^\]\n]*\]\(").expect("constant regex");
            for (i, line) in self.file.body.lines().enumerate() {
                if pattern.is_match(line) {
                    sources.push(format!(
                        "the markdown image on line {}",
                        self.file.body_first_line + i
                    ));
                }
            }
        }
        sources
    }

    /// Variables the body reads from its context (for `programs check`).
    pub fn undeclared_variables(&self) -> Vec<String> {
        match self.file.format {
            TemplateFormat::Jinja2 => self
                .env
                .get_template(TEMPLATE_NAME)
                .map(|t| {
                    let mut names: Vec<String> =
                        t.undeclared_variables(false).into_iter().collect();
                    names.sort();
                    names
                })
                .unwrap_or_default(),
            TemplateFormat::Mustache => super::mustache::variables(&self.file.body),
        }
    }

    /// A row's template context made ready for the renders of the row ([`Program::next_step_with`]).
    pub fn row_vars<'a>(&self, context: &'a Map<String, serde_json::Value>) -> RowVars<'a> {
        // The row's values are converted for the template engine once, not at every render
        // (a row renders once per call and once more at the end). Thread and image inputs
        // are replaced by markers before each render, and mustache reads the JSON itself:
        // those take the JSON path.
        let rich = self
            .file
            .inputs
            .iter()
            .any(|input| input.is_thread() || input.is_image());
        let converted = (self.file.format == TemplateFormat::Jinja2 && !rich)
            .then(|| Value::from_serialize(context));
        RowVars { context, converted }
    }

    /// Renders with `context` (row fields, `evalr`...) and the captures so far, and returns
    /// the first open call or the finished conversation.
    pub fn next_step(
        &self,
        context: &Map<String, serde_json::Value>,
        captures: &Captures,
    ) -> Result<Step, ProgramError> {
        self.next_step_with(&self.row_vars(context), captures)
    }

    /// As [`Program::next_step`], with the row's context converted once ([`Program::row_vars`]).
    pub fn next_step_with(
        &self,
        row: &RowVars<'_>,
        captures: &Captures,
    ) -> Result<Step, ProgramError> {
        if let Some(converted) = &row.converted {
            // The captures override the row's fields of the same name, as in the JSON path
            // (of merged maps, the last that has a key gives its value).
            let mut overlay: Map<String, serde_json::Value> = captures.clone();
            overlay.insert(
                CAPTURES_KEY.to_string(),
                serde_json::Value::Object(captures.clone()),
            );
            let vars =
                minijinja::value::merge_maps([converted.clone(), Value::from_serialize(&overlay)]);
            let rendered = Rendered {
                threads: &[],
                images: &[],
                v1_thread: row.context.get("thread"),
            };
            let text = self
                .env
                .get_template(TEMPLATE_NAME)
                .and_then(|template| template.render(vars))
                .map_err(|e| template_error(&self.file, &e))?;
            return self.step_of(text, &rendered, captures);
        }
        let context = row.context;
        let mut vars = context.clone();
        // Thread and image inputs render as markers and become messages and image parts
        // after the split (spec §5.2, §6.7).
        let mut threads = Vec::new();
        let mut images = Vec::new();
        for input in &self.file.inputs {
            let (list, open, close) = if input.is_thread() {
                (
                    &mut threads,
                    &self.markers.thread_open,
                    &self.markers.thread_close,
                )
            } else if input.is_image() {
                (
                    &mut images,
                    &self.markers.image_open,
                    &self.markers.image_close,
                )
            } else {
                continue;
            };
            if let Some(value) = vars.get_mut(&input.name) {
                let marker = format!("{open}{}{close}", list.len());
                list.push((input.name.clone(), std::mem::take(value)));
                *value = serde_json::Value::String(marker);
            }
        }
        let rendered = Rendered {
            threads: &threads,
            images: &images,
            v1_thread: context.get("thread"),
        };
        for (name, value) in captures {
            vars.insert(name.clone(), value.clone());
        }
        vars.insert(
            CAPTURES_KEY.to_string(),
            serde_json::Value::Object(captures.clone()),
        );
        let text = match self.file.format {
            TemplateFormat::Jinja2 => {
                let template = self
                    .env
                    .get_template(TEMPLATE_NAME)
                    .map_err(|e| template_error(&self.file, &e))?;
                template
                    .render(Value::from_serialize(&vars))
                    .map_err(|e| template_error(&self.file, &e))?
            }
            TemplateFormat::Mustache => super::mustache::render(
                &self.file.body,
                &vars,
                &self.markers.value_open,
                &self.markers.value_close,
            )
            .map_err(|message| ProgramError::Template {
                path: self.file.path.clone(),
                line: self.file.body_first_line,
                message,
            })?,
        };
        self.step_of(text, &rendered, captures)
    }

    /// The step a rendered text stands for: its first open call, or the finished conversation.
    fn step_of(
        &self,
        text: String,
        rendered: &Rendered<'_>,
        captures: &Captures,
    ) -> Result<Step, ProgramError> {
        match text.find(&self.markers.call_open) {
            None => {
                let messages = self.messages(&text, rendered)?;
                if self.is_plain_completion() && !captures.contains_key(OUTPUT_CAPTURE) {
                    return Ok(Step::Call(self.completion_call(messages)));
                }
                Ok(Step::Done(messages))
            }
            Some(start) => {
                let rest = &text[start + self.markers.call_open.len()..];
                let end =
                    rest.find(&self.markers.call_close)
                        .ok_or_else(|| ProgramError::Template {
                            path: self.file.path.clone(),
                            line: self.file.body_first_line,
                            message:
                                "a select/gen call was cut by a filter; print calls unmodified"
                                    .into(),
                        })?;
                let call: PendingCall =
                    serde_json::from_str(&rest[..end]).map_err(|e| ProgramError::Template {
                        path: self.file.path.clone(),
                        line: self.file.body_first_line,
                        message: format!("internal call marker unreadable: {e}"),
                    })?;
                let mut messages = self.messages(&text[..start], rendered)?;
                // `assistant:` right before a call opens the model's turn: no text of its own
                // to continue, so it is not sent as an empty message.
                if messages
                    .last()
                    .is_some_and(|m| m.role == Role::Assistant && m.content.trim().is_empty())
                {
                    messages.pop();
                }
                Ok(Step::Call(Call {
                    capture: call.capture,
                    kind: call.kind,
                    messages,
                }))
            }
        }
    }

    /// The one call of a program without `select`/`gen`: the file's settings, JSON when the
    /// file declares `outputs:` or asks for a JSON response format.
    fn completion_call(&self, messages: Vec<Message>) -> Call {
        let p = &self.file.parameters;
        let json_schema = match (&p.response_format, &self.file.outputs_schema) {
            (Some(ResponseFormat::JsonSchema { schema }), _) => Some(schema.clone()),
            (_, Some(schema)) => Some(schema.clone()),
            _ => None,
        };
        Call {
            capture: OUTPUT_CAPTURE.to_string(),
            kind: CallKind::Gen {
                max_tokens: p.max_tokens,
                stop: p.stop.clone(),
                temperature: p.temperature,
                top_p: p.top_p,
                seed: p.seed,
                regex: None,
                json_schema,
            },
            messages,
        }
    }

    /// Rendered text (with value markers) to messages: split at the template's role lines,
    /// threads expanded in place, images made content parts.
    fn messages(&self, text: &str, rendered: &Rendered) -> Result<Vec<Message>, ProgramError> {
        let marked =
            MarkedText::from_wrapped(text, &self.markers.value_open, &self.markers.value_close);
        let v1 = self.file.dialect == Dialect::V1;
        let rich = RichInputs {
            thread_markers: (&self.markers.thread_open, &self.markers.thread_close),
            image_markers: (&self.markers.image_open, &self.markers.image_close),
            threads: rendered.threads,
            images: rendered.images,
            markdown_images: v1 && self.file.markdown_images,
            v1_thread: rendered.v1_thread,
            folder: self.file.path.parent().unwrap_or(Path::new(".")),
        };
        let mut out = Vec::new();
        for (i, parsed) in split_marked(&marked, v1).into_iter().enumerate() {
            if v1 {
                // The v1 runtime takes a first `tools:` section as the tools' declaration, not
                // a message (`ProgramFile::ignored` says evalr does not send them).
                if i == 0 && parsed.role == ParsedRole::Tools {
                    continue;
                }
                // The v1 runtimes (prompty 0.1.x, promptflow, azure-ai-evaluation) drop the
                // chunks between role lines that are only whitespace: an empty message of a
                // v1 file is not sent. v2 sends it (spec §6.6).
                if parsed.role != ParsedRole::Thread && parsed.content.trim().is_empty() {
                    continue;
                }
            }
            expand_message(parsed, &rich, &mut out).map_err(|message| ProgramError::Template {
                path: self.file.path.clone(),
                line: self.file.body_first_line,
                message,
            })?;
        }
        Ok(out)
    }
}

/// A row's template context, and its conversion for the template engine when the program
/// can render from it ([`Program::row_vars`]).
pub struct RowVars<'a> {
    context: &'a Map<String, serde_json::Value>,
    converted: Option<Value>,
}

/// The rich inputs of one render, taken out of the context before the template ran.
struct Rendered<'a> {
    threads: &'a [(String, serde_json::Value)],
    images: &'a [(String, serde_json::Value)],
    /// The `thread` field, for v1 `![thread]` sections.
    v1_thread: Option<&'a serde_json::Value>,
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

fn marker(call: &PendingCall, markers: &(String, String)) -> Result<Value, minijinja::Error> {
    let json = serde_json::to_string(call)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(Value::from_safe_string(format!(
        "{}{json}{}",
        markers.0, markers.1
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
    markers: &(String, String),
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
    marker(
        &PendingCall {
            capture: name,
            kind: CallKind::Select {
                options,
                temperature,
            },
        },
        markers,
    )
}

/// `gen(name, max_tokens=, stop=, temperature=, top_p=, seed=, regex=, json_schema=)`.
fn gen_function(
    state: &State,
    name: String,
    kwargs: Kwargs,
    markers: &(String, String),
) -> Result<Value, minijinja::Error> {
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
    marker(
        &PendingCall {
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
        },
        markers,
    )
}

/// Splits template-only text into messages (no values, so every role line counts).
pub fn split_messages(text: &str) -> Vec<Message> {
    split_marked(&MarkedText::literal(text), false)
        .into_iter()
        .map(|m| {
            let role = match m.role {
                ParsedRole::System => Role::System,
                ParsedRole::User | ParsedRole::Thread => Role::User,
                ParsedRole::Assistant => Role::Assistant,
                ParsedRole::Developer | ParsedRole::Tool | ParsedRole::Tools => Role::Developer,
            };
            Message::text(role, m.content)
        })
        .collect()
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
mod tests;

#[cfg(test)]
mod rich_tests;
