//! `evalr programs list|render|check`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::UsageError;
use super::exit::Exit;
use crate::program::{
    CallKind, Program, ProgramOrigin, Step, complete_inputs, list_programs, load_program,
    template_context,
};
use crate::say;

/// Where programs are looked up by name (after the built-in ones are overridden).
#[derive(Debug, Args)]
pub struct ProgramsDir {
    /// Folder of .prompty programs that add to or override the built-in ones.
    #[arg(long, env = "EVALR_PROGRAMS_DIR", default_value = "programs")]
    pub programs_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ProgramsCommand {
    /// List the programs (built in and in the programs folder); files that fail to load are
    /// listed with their error.
    List {
        #[command(flatten)]
        dir: ProgramsDir,
    },
    /// Print the exact messages a row's first call would send, with no model call. Without
    /// --dataset, the program's `sample` values (and --input) are the row.
    Render {
        /// Program name or path to a .prompty file.
        #[arg(value_name = "PROGRAM", required_unless_present = "program")]
        file: Option<String>,
        #[arg(long, conflicts_with = "file")]
        program: Option<String>,
        #[arg(long)]
        dataset: Option<String>,
        /// Row number (0-based, in dataset order).
        #[arg(long, default_value_t = 0)]
        row: usize,
        /// Start from the program's `sample` values even with --dataset (the row wins).
        #[arg(long)]
        sample: bool,
        /// An input value, KEY=VALUE (VALUE read as JSON when it parses, else as text);
        /// repeatable; overrides the row and the sample.
        #[arg(long = "input", value_name = "KEY=VALUE", value_parser = parse_input)]
        inputs: Vec<(String, Value)>,
        #[arg(long)]
        examples: Option<String>,
        #[arg(long)]
        shots: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object, `{"messages": [...], "call": {...} | null}`, the messages
        /// as they are sent (for machines; the text form is for people).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: ProgramsDir,
        #[arg(long, default_value = "datasets", env = "EVALR_DATASETS_DIR")]
        datasets_dir: PathBuf,
    },
    /// Check a program: front matter keys evalr ignores, and with --dataset, the template
    /// variables no row or input default provides, required inputs rows lack, and rows that
    /// fail to render. Exit 3 when a problem is found.
    Check {
        /// Program name or path to a .prompty file.
        program: String,
        #[arg(long)]
        dataset: Option<String>,
        /// Check at most N rows.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        dir: ProgramsDir,
        #[arg(long, default_value = "datasets", env = "EVALR_DATASETS_DIR")]
        datasets_dir: PathBuf,
    },
}

fn parse_input(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.trim().to_string(), value))
}

fn usage(e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UsageError(e.to_string()))
}

pub fn execute(command: ProgramsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ProgramsCommand::List { dir } => list(&dir),
        ProgramsCommand::Render {
            file,
            program,
            dataset,
            row,
            sample,
            inputs,
            examples,
            shots,
            seed,
            json,
            dir,
            datasets_dir,
        } => {
            let spec = file.or(program).unwrap_or_default();
            render(RenderRequest {
                spec,
                dataset,
                row,
                sample,
                inputs,
                examples,
                shots,
                seed,
                json,
                dir,
                datasets_dir,
            })
        }
        ProgramsCommand::Check {
            program,
            dataset,
            limit,
            dir,
            datasets_dir,
        } => check(&program, dataset.as_deref(), limit, &dir, &datasets_dir),
    }
}

fn list(dir: &ProgramsDir) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for entry in list_programs(&dir.programs_dir) {
        let origin = match &entry.origin {
            ProgramOrigin::BuiltIn => "built in".to_string(),
            ProgramOrigin::Folder(path) => path.display().to_string(),
        };
        let line = match &entry.program {
            Ok(program) => format!(
                "{:<28} {:<10} {}",
                entry.name,
                origin_label(&origin),
                program.description
            ),
            Err(error) => format!(
                "{:<28} {:<10} ERROR: {error}",
                entry.name,
                origin_label(&origin)
            ),
        };
        // A closed pipe (`| head`) is a normal end.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn origin_label(origin: &str) -> &str {
    if origin == "built in" {
        "built-in"
    } else {
        "folder"
    }
}

struct RenderRequest {
    spec: String,
    dataset: Option<String>,
    row: usize,
    sample: bool,
    inputs: Vec<(String, Value)>,
    examples: Option<String>,
    shots: Option<usize>,
    seed: u64,
    json: bool,
    dir: ProgramsDir,
    datasets_dir: PathBuf,
}

fn render(request: RenderRequest) -> anyhow::Result<ExitCode> {
    let program = Program::compile(
        load_program(&request.spec, &request.dir.programs_dir).map_err(|e| usage(&e))?,
    )
    .map_err(|e| usage(&e))?;
    let mut context = match &request.dataset {
        Some(dataset) => {
            let source = crate::dataset::DatasetSource::resolve(dataset, &request.datasets_dir)
                .map_err(|e| usage(&e))?;
            let the_row = source
                .rows()
                .nth(request.row)
                .ok_or_else(|| usage(&format!("{dataset} has no row {}", request.row)))?
                .map_err(|e| usage(&e))?;
            let shots = request
                .shots
                .or(program.file.examples.as_ref().map(|e| e.count))
                .unwrap_or(0);
            let pool_rows: Vec<crate::dataset::Row> = match &request.examples {
                Some(spec) => crate::dataset::DatasetSource::resolve(spec, &request.datasets_dir)
                    .map_err(|e| usage(&e))?
                    .rows()
                    .filter_map(Result::ok)
                    .collect(),
                None if shots > 0 => source.rows().filter_map(Result::ok).collect(),
                None => Vec::new(),
            };
            let pool = crate::examples::ExamplePool::new(pool_rows, request.seed);
            let chosen = pool.examples_for(&the_row, shots);
            let mut context = crate::play::row_context(&the_row, &chosen);
            if request.sample {
                for (key, value) in &program.file.sample {
                    context.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            context
        }
        None => {
            if program.file.sample.is_empty() && request.inputs.is_empty() {
                return Err(usage(&format!(
                    "{} has no `sample:` values: pass --dataset D, or --input KEY=VALUE for its inputs",
                    program.file.path.display()
                )));
            }
            template_context(&Value::Object(program.file.sample.clone()), Vec::new())
        }
    };
    for (key, value) in request.inputs {
        context.insert(key, value);
    }
    complete_inputs(&program.file.inputs, &mut context).map_err(|input| {
        usage(&format!(
            "the program's required input `{}` has no value: give it with --input {}=VALUE",
            input.name, input.name
        ))
    })?;
    let step = program
        .next_step(&context, &Default::default())
        .map_err(|e| usage(&e))?;
    let (messages, call) = match step {
        Step::Call(call) => (call.messages.clone(), Some(call)),
        Step::Done(messages) => (messages, None),
    };
    let out = if request.json {
        let call = call.map(|call| {
            let mut object = serde_json::json!({"capture": call.capture});
            if let (Value::Object(object), Ok(Value::Object(kind))) =
                (&mut object, serde_json::to_value(&call.kind))
            {
                object.extend(kind);
            }
            object
        });
        let mut text = serde_json::json!({"messages": messages, "call": call}).to_string();
        text.push('\n');
        text
    } else {
        let mut out = String::new();
        for message in &messages {
            out.push_str(&message_text(message));
        }
        if let Some(call) = call {
            out.push_str(&call_line(&call, program.is_plain_completion()));
        }
        out
    };
    // A closed pipe (`| head`) is a normal end.
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// A line of a message's text, escaped so that no text can pass for a boundary: a line that
/// starts with `---` (or with the escape `\` itself) is printed with a `\` in front, so every
/// line starting with `---` is one `programs render` drew. (A row value holding
/// `--- system ---` would otherwise print exactly like a message boundary.)
fn escaped_lines(text: &str, out: &mut String) {
    for line in text.split('\n') {
        if line.starts_with("---") || line.starts_with('\\') {
            out.push('\\');
        }
        out.push_str(line);
        out.push('\n');
    }
}

/// One message as `programs render` prints it: a `--- role ---` line, then its text and parts.
fn message_text(message: &crate::backend::Message) -> String {
    let mut out = String::new();
    let name = message
        .name
        .as_deref()
        .map(|n| format!(" [name={n}]"))
        .unwrap_or_default();
    out.push_str(&format!("--- {}{name} ---\n", message.role.as_str()));
    if message.parts.is_empty() {
        escaped_lines(&message.content, &mut out);
    }
    for part in &message.parts {
        match part {
            crate::backend::ContentPart::Text { text } => escaped_lines(text, &mut out),
            crate::backend::ContentPart::ImageUrl { image_url } => {
                out.push_str(&format!("[image: {}]\n", shown_url(&image_url.url)));
            }
        }
    }
    out
}

/// The open call after the messages, as a last boundary line.
fn call_line(call: &crate::program::Call, plain_completion: bool) -> String {
    match &call.kind {
        CallKind::Select { options, .. } => {
            format!("--- select `{}` among {:?} ---\n", call.capture, options)
        }
        CallKind::Gen {
            max_tokens,
            stop,
            json_schema,
            ..
        } => {
            let what = if plain_completion {
                "completion"
            } else {
                "gen"
            };
            format!(
                "--- {what} `{}` (max_tokens {:?}, stop {:?}{}) ---\n",
                call.capture,
                max_tokens,
                stop,
                if json_schema.is_some() {
                    ", JSON schema"
                } else {
                    ""
                }
            )
        }
    }
}

/// An image URL as `programs render` shows it: a data URL by its type and size, not its bytes.
fn shown_url(url: &str) -> String {
    match url.split_once(";base64,") {
        Some((head, data)) if head.starts_with("data:") => {
            let padding = data.bytes().rev().take_while(|&b| b == b'=').count();
            format!("{head};base64, {} bytes", data.len() / 4 * 3 - padding)
        }
        _ => url.to_string(),
    }
}

fn check(
    spec: &str,
    dataset: Option<&str>,
    limit: Option<usize>,
    dir: &ProgramsDir,
    datasets_dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let program = Program::compile(load_program(spec, &dir.programs_dir).map_err(|e| usage(&e))?)
        .map_err(|e| usage(&e))?;
    let file = &program.file;
    let path = file.path.display();
    let mut problems = 0usize;
    say!(
        "{path}: loads ({} Prompty, {} template, {})",
        match file.dialect {
            crate::program::Dialect::V1 => "v1",
            crate::program::Dialect::V2 => "v2",
        },
        match file.format {
            crate::program::TemplateFormat::Jinja2 => "jinja2",
            crate::program::TemplateFormat::Mustache => "mustache",
        },
        if program.is_plain_completion() {
            "one completion captured as `output`".to_string()
        } else {
            "select/gen calls".to_string()
        }
    )?;
    for ignored in &file.ignored {
        say!("warning: ignored key {ignored}")?;
    }
    if !file.parameters.unknown.is_empty() {
        say!(
            "warning: model settings evalr cannot send (a run refuses them): {}",
            file.parameters.unknown.join(", ")
        )?;
    }
    let used = program.undeclared_variables();
    say!("template variables: {}", used.join(", "))?;
    let Some(dataset) = dataset else {
        return Ok(ExitCode::SUCCESS);
    };
    let source =
        crate::dataset::DatasetSource::resolve(dataset, datasets_dir).map_err(|e| usage(&e))?;
    // Names provided by something other than rows: evalr's namespace, globals, calls'
    // captures and input defaults.
    let mut provided: BTreeSet<String> = ["evalr", "row", "examples", "letters", "select", "gen"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    provided.extend(program.capture_names());
    provided.extend(
        file.inputs
            .iter()
            .filter(|i| i.default.is_some())
            .map(|i| i.name.clone()),
    );
    let mut seen_in_rows: BTreeSet<String> = BTreeSet::new();
    let mut missing_required: Map<String, Value> = Map::new();
    let mut render_failures = 0usize;
    let mut rows = 0usize;
    for item in source.rows().take(limit.unwrap_or(usize::MAX)) {
        let row = match item {
            Ok(row) => row,
            Err(error) => {
                say!("problem: {error}")?;
                problems += 1;
                continue;
            }
        };
        rows += 1;
        let mut context = crate::play::row_context(&row, &[]);
        if let Value::Object(fields) = row.to_json() {
            seen_in_rows.extend(fields.keys().cloned());
        }
        if let Err(input) = complete_inputs(&file.inputs, &mut context) {
            let count = missing_required
                .entry(input.name.clone())
                .or_insert(Value::from(0u64));
            *count = Value::from(count.as_u64().unwrap_or(0) + 1);
            continue;
        }
        if let Err(error) = program.next_step(&context, &Default::default()) {
            if render_failures == 0 {
                say!("problem: row `{}` does not render: {error}", row.id)?;
            }
            render_failures += 1;
        }
    }
    for name in &used {
        if !provided.contains(name) && !seen_in_rows.contains(name) {
            say!(
                "problem: the template uses `{name}`, which no row of {dataset} and no input default provides (it renders empty)"
            )?;
            problems += 1;
        }
    }
    for (name, count) in &missing_required {
        say!("problem: {count} rows have no value for the required input `{name}`")?;
        problems += 1;
    }
    if render_failures > 0 {
        say!("problem: {render_failures} rows fail to render")?;
        problems += 1;
    }
    say!("{rows} rows checked, {problems} problems")?;
    // Problems found are a verdict on the program, not an error of the check (see `exit`).
    Ok(if problems == 0 {
        Exit::Success
    } else {
        Exit::NegativeVerdict
    }
    .into())
}
