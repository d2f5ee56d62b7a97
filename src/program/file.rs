//! Program files: a Prompty file (v1 or v2 front matter, Jinja or mustache body) read into one
//! typed description. Unknown keys are never an error (the spec forbids it); they are listed
//! in `ignored` so that `evalr programs check` can say so.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ProgramError;
use super::front_matter;
use super::inputs::{InputSpec, parse_inputs};
use super::settings::{DefaultParameters, ModelSection, parse_model};

/// How many few-shot examples a program wants from `--examples` (evalr's `examples:` key).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ExamplesSpec {
    pub count: usize,
    /// How examples are chosen from the pool (`--pick` overrides): `random` (the default) or
    /// `knn` (the pool rows nearest the row by embedding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<ExamplePick>,
}

/// How few-shot examples are chosen from their pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExamplePick {
    /// A seeded order per subject (same subject first), shared by the subject's rows.
    Random,
    /// The k pool rows whose question embeddings are nearest the row's (cosine).
    Knn,
}

impl std::str::FromStr for ExamplePick {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "random" => Ok(ExamplePick::Random),
            "knn" => Ok(ExamplePick::Knn),
            _ => Err(format!("unknown pick `{text}`: use knn or random")),
        }
    }
}

/// The template language of the body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateFormat {
    #[default]
    Jinja2,
    Mustache,
}

/// Which Prompty version a file is written for. They differ in one rendering rule: v1
/// runtimes turn markdown images in a message into image parts, v2 keeps them as text
/// (spec §6.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    V1,
    #[default]
    V2,
}

/// Top-level keys the Prompty spec (v1 or v2) defines and evalr reads or knowingly passes
/// over; anything else is reported by `programs check`.
const KNOWN_KEYS: &[&str] = &[
    "name",
    "displayName",
    "description",
    "version",
    "authors",
    "tags",
    "metadata",
    "model",
    "inputs",
    "outputs",
    "sample",
    "template",
    "kind",
    "id",
    // evalr's extensions.
    "answer",
    "examples",
    "parameters",
    "ensemble",
];

/// A parsed program file.
#[derive(Debug, Clone)]
pub struct ProgramFile {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    pub dialect: Dialect,
    /// v1 files: markdown images are image parts unless `template.options.disable_image_parsing`
    /// says not (the v1 runtime's switch).
    pub markdown_images: bool,
    /// Declared inputs: defaults fill a row's missing values; a required one with no value is
    /// a row error.
    pub inputs: Vec<InputSpec>,
    /// Sample values (`sample:` of v1, inputs' `example`/`sample`), for `programs render`
    /// without a dataset.
    pub sample: Map<String, Value>,
    /// The JSON schema of `outputs:`, when declared: a program without calls asks for JSON
    /// valid against it.
    pub outputs_schema: Option<Value>,
    pub model: ModelSection,
    pub format: TemplateFormat,
    /// Request settings of the file (`model.parameters`/`model.options`, evalr's
    /// `parameters`).
    pub parameters: DefaultParameters,
    /// The capture whose selected option is the row's answer.
    pub answer_capture: String,
    pub examples: Option<ExamplesSpec>,
    /// Repeats, choice shuffling and vote reduction the program asks for (evalr's `ensemble:`
    /// key; flags override).
    pub ensemble: Option<super::EnsembleSpec>,
    /// Front matter keys evalr does not use, each with why (for `programs check`).
    pub ignored: Vec<String>,
    /// The template body.
    pub body: String,
    /// Line of the file on which the body starts (1-based), so template errors point at the file.
    pub body_first_line: usize,
    pub sha256: String,
}

fn front_matter_error(path: &Path, line: usize, message: impl Into<String>) -> ProgramError {
    ProgramError::FrontMatter {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// The path of a `${file:path}` reference, if `text` is one.
fn file_reference(text: &str) -> Option<&str> {
    text.trim()
        .strip_prefix("${file:")
        .and_then(|r| r.strip_suffix('}'))
        .map(str::trim)
}

/// Reads a file the front matter names (spec §2.11): JSON or YAML by extension, else text.
/// The path is relative to the program's file. It may leave the program's folder
/// (`../data/x.json`, as promptflow's samples write): the program's author wrote it, as the
/// runtimes read it. Row values never name files to read (images are confined, `images.rs`).
fn read_referenced_file(path: &Path, reference: &str, file: &str) -> Result<Value, String> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let target = folder.join(file);
    let text = std::fs::read_to_string(&target)
        .map_err(|e| format!("`{reference}`: cannot read {}: {e}", target.display()))?;
    let extension = target
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(match extension.as_str() {
        "json" => serde_json::from_str(&text)
            .map_err(|e| format!("`{reference}`: {}: {e}", target.display()))?,
        "yaml" | "yml" => serde_yaml::from_str(&text)
            .map_err(|e| format!("`{reference}`: {}: {e}", target.display()))?,
        _ => Value::String(text),
    })
}

/// Replaces every `${file:...}` string in `value` by the file's content, wherever it stands
/// (the whole `inputs:`, `model:` or one of its settings such as `response_format`), as the
/// v1 runtimes resolve them.
fn resolve_file_references(path: &Path, value: &mut Value) -> Result<(), String> {
    match value {
        Value::String(text) => {
            if let Some(file) = file_reference(text) {
                *value = read_referenced_file(path, text, file)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_file_references(path, item)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                resolve_file_references(path, item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn template_format(value: Option<&Value>) -> Result<TemplateFormat, String> {
    let kind = match value {
        None | Some(Value::Null) => return Ok(TemplateFormat::Jinja2),
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Object(map)) => {
            let format = map.get("format").or_else(|| map.get("type"));
            match format {
                Some(Value::String(kind)) => kind.clone(),
                Some(Value::Object(f)) => f
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("jinja2")
                    .to_string(),
                _ => "jinja2".to_string(),
            }
        }
        Some(other) => return Err(format!("template must be a name or a map, found {other}")),
    };
    match kind.to_ascii_lowercase().as_str() {
        "jinja2" | "jinja" | "nunjucks" => Ok(TemplateFormat::Jinja2),
        "mustache" => Ok(TemplateFormat::Mustache),
        other => Err(format!(
            "template format `{other}` is not supported: use jinja2 or mustache"
        )),
    }
}

/// The JSON schema type of a Prompty property kind.
fn json_type(kind: &str) -> &'static str {
    match kind {
        "integer" | "int" => "integer",
        "float" | "number" => "number",
        "boolean" | "bool" => "boolean",
        "array" | "list" => "array",
        "object" | "dict" => "object",
        _ => "string",
    }
}

/// `outputs:` (a v2 property list or a v1 map) as a strict JSON schema.
fn outputs_schema(value: &Value) -> Result<Option<Value>, String> {
    let outputs = parse_inputs(value).map_err(|e| e.replace("inputs", "outputs"))?;
    if outputs.is_empty() {
        return Ok(None);
    }
    let mut properties = Map::new();
    for output in &outputs {
        let mut property = Map::new();
        property.insert("type".into(), Value::String(json_type(&output.kind).into()));
        if let Some(description) = &output.description {
            property.insert("description".into(), Value::String(description.clone()));
        }
        properties.insert(output.name.clone(), Value::Object(property));
    }
    Ok(Some(serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": outputs.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
        "additionalProperties": false,
    })))
}

/// v1 files are recognised by keys only v1 has.
fn dialect(front: &Map<String, Value>) -> Dialect {
    let model = front.get("model").and_then(Value::as_object);
    let v1_model = model.is_some_and(|m| {
        m.contains_key("configuration") || m.contains_key("parameters") || m.contains_key("api")
    });
    let v1_inputs = front
        .get("inputs")
        .and_then(Value::as_object)
        .is_some_and(|m| m.values().any(|v| v.get("type").is_some()));
    if v1_model || v1_inputs || front.contains_key("sample") {
        Dialect::V1
    } else {
        Dialect::V2
    }
}

impl ProgramFile {
    pub fn load(path: &Path) -> Result<ProgramFile, ProgramError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProgramError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ProgramFile, ProgramError> {
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        let split = front_matter::split(text).map_err(|unclosed| {
            front_matter_error(
                path,
                unclosed.line,
                "the front matter opened here is never closed: end it with a line `---`",
            )
        })?;
        let front = FrontMatter::read(path, split.yaml, split.yaml_first_line)?;
        let inputs = front.inputs()?;
        let sample = front.sample(&inputs)?;
        let model = parse_model(front.get("model").unwrap_or(&Value::Null))
            .map_err(|e| front.key_error("model", e))?;
        let parameters = front.parameters(&model)?;
        let format =
            template_format(front.get("template")).map_err(|e| front.key_error("template", e))?;
        let outputs_schema = match front.get("outputs") {
            None | Some(Value::Null) => None,
            Some(value) => outputs_schema(value).map_err(|e| front.key_error("outputs", e))?,
        };
        let examples = front
            .typed::<ExamplesSpec>("examples", "examples must be {count: N, pick: knn|random}")?;
        let ensemble = front.typed::<super::EnsembleSpec>(
            "ensemble",
            "ensemble must be {repeats: N, shuffle: none|plain-hunt|random, reduce: majority|mode|mean|pass-at-k|all-correct}",
        )?;
        let dialect = dialect(&front.map);
        let (body, body_first_line) = body_of(&split);
        let mut ignored = front.ignored_keys();
        ignored.extend(tools_section_note(dialect, body, body_first_line));
        let name = front.text("name").unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Ok(ProgramFile {
            name,
            description: front
                .text("description")
                .unwrap_or_default()
                .trim()
                .to_string(),
            path: path.to_path_buf(),
            dialect,
            markdown_images: !front
                .get("template")
                .and_then(|t| t.get("options"))
                .and_then(|o| o.get("disable_image_parsing"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            inputs,
            sample,
            outputs_schema,
            model,
            format,
            parameters,
            answer_capture: front.text("answer").unwrap_or_else(|| "answer".to_string()),
            examples,
            ensemble,
            ignored,
            body: body.to_string(),
            body_first_line,
            sha256,
        })
    }
}

/// The body and the file line it starts on. The runtimes' front matter patterns eat the
/// whitespace after the closing `---` (`---\s*(.+)` in the v1 runtimes and in prompty 2.x,
/// a trimmed body in the TypeScript runtime): blank lines there start no empty system
/// message.
fn body_of<'a>(split: &front_matter::Split<'a>) -> (&'a str, usize) {
    if split.yaml.is_none() {
        return (split.body, split.body_first_line);
    }
    let body = split.body.trim_start();
    let skipped = &split.body[..split.body.len() - body.len()];
    (body, split.body_first_line + skipped.matches('\n').count())
}

/// A v1 body that opens with a `tools:` section declares tools (the v1 runtime sends them
/// with the request and takes the section out of the messages); evalr does not send tools,
/// which `programs check` says.
fn tools_section_note(dialect: Dialect, body: &str, first_line: usize) -> Option<String> {
    let line = body.lines().next()?;
    let (role, _) = super::roles::parse_role_line(line)?;
    (dialect == Dialect::V1 && role == super::roles::ParsedRole::Tools).then(|| {
        format!(
            "tools (the section on line {first_line}): evalr does not call tools; the model is not told about them"
        )
    })
}

/// The front matter as a map of keys, with where it came from so that errors in a key point
/// at the line the key is on.
struct FrontMatter<'a> {
    path: &'a Path,
    yaml: Option<&'a str>,
    yaml_line: usize,
    map: Map<String, Value>,
}

impl<'a> FrontMatter<'a> {
    fn read(
        path: &'a Path,
        yaml: Option<&'a str>,
        yaml_line: usize,
    ) -> Result<FrontMatter<'a>, ProgramError> {
        let map = match yaml {
            Some(yaml) if !yaml.trim().is_empty() => {
                let value: Value = serde_yaml::from_str(yaml).map_err(|e| {
                    front_matter_error(
                        path,
                        e.location()
                            .map(|l| l.line() + yaml_line - 1)
                            .unwrap_or(yaml_line),
                        e.to_string(),
                    )
                })?;
                match value {
                    Value::Object(map) => map,
                    Value::Null => Map::new(),
                    other => {
                        return Err(front_matter_error(
                            path,
                            yaml_line,
                            format!("the front matter must be a map of keys, found {other}"),
                        ));
                    }
                }
            }
            _ => Map::new(),
        };
        let mut front = FrontMatter {
            path,
            yaml,
            yaml_line,
            map,
        };
        front.resolve_file_references()?;
        Ok(front)
    }

    /// Reads the files the front matter names, in place: `${file:...}` anywhere, and
    /// `sample:` given as a bare file name.
    fn resolve_file_references(&mut self) -> Result<(), ProgramError> {
        let keys: Vec<String> = self.map.keys().cloned().collect();
        for key in keys {
            let mut value = self.map[&key].take();
            let resolved = match &value {
                Value::String(name) if key == "sample" && file_reference(name).is_none() => {
                    read_referenced_file(self.path, name, name.trim()).map(|read| value = read)
                }
                _ => resolve_file_references(self.path, &mut value),
            };
            self.map[&key] = value;
            resolved.map_err(|e| self.key_error(&key, e))?;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Value::as_str).map(str::to_string)
    }

    fn key_error(&self, key: &str, message: String) -> ProgramError {
        let line = self
            .yaml
            .and_then(|yaml| {
                yaml.lines()
                    .position(|l| l.starts_with(&format!("{key}:")))
                    .map(|i| i + self.yaml_line)
            })
            .unwrap_or(self.yaml_line);
        front_matter_error(self.path, line, message)
    }

    /// Declared inputs in declaration order, one spec per name.
    fn inputs(&self) -> Result<Vec<InputSpec>, ProgramError> {
        let mut inputs = parse_inputs(self.get("inputs").unwrap_or(&Value::Null))
            .map_err(|e| self.key_error("inputs", e))?;
        let mut seen = std::collections::HashSet::new();
        inputs.retain(|i| seen.insert(i.name.clone()));
        Ok(inputs)
    }

    /// `sample:` (a map, a file reference, or a bare file name as promptflow's samples write
    /// `sample: sample.json`), completed by the inputs' own samples.
    fn sample(&self, inputs: &[InputSpec]) -> Result<Map<String, Value>, ProgramError> {
        let mut sample = match self.get("sample") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(other) => {
                let found = match other {
                    Value::String(_) => "text".to_string(),
                    other => other.to_string(),
                };
                return Err(self.key_error(
                    "sample",
                    format!(
                        "sample must be a map of input values or a JSON/YAML file of them (`sample.json`, `${{file:sample.json}}`), found {found}"
                    ),
                ));
            }
        };
        for input in inputs {
            if let Some(value) = &input.sample {
                sample
                    .entry(input.name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        Ok(sample)
    }

    /// The model's settings, then evalr's own older key: settings at the top level.
    fn parameters(&self, model: &ModelSection) -> Result<DefaultParameters, ProgramError> {
        let mut parameters = model.parameters.clone();
        if let Some(value) = self.get("parameters") {
            let map = value.as_object().ok_or_else(|| {
                self.key_error("parameters", "parameters must be a map of settings".into())
            })?;
            parameters
                .merge_from(map, "parameters.")
                .map_err(|e| self.key_error("parameters", e))?;
        }
        Ok(parameters)
    }

    /// One of evalr's typed keys; `shape` says what it should look like when it does not.
    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        shape: &str,
    ) -> Result<Option<T>, ProgramError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value::<T>(value.clone())
                .map(Some)
                .map_err(|e| self.key_error(key, format!("{shape}: {e}"))),
        }
    }

    /// Keys evalr does not use, each with why.
    fn ignored_keys(&self) -> Vec<String> {
        let mut ignored = Vec::new();
        for key in self.map.keys() {
            match key.as_str() {
                "tools" => ignored.push(
                    "tools: evalr does not call tools; the model is not told about them".into(),
                ),
                "base" => ignored.push("base: evalr does not inherit from a base file".into()),
                key if KNOWN_KEYS.contains(&key) => {}
                other => ignored.push(format!("{other}: not a Prompty key evalr reads")),
            }
        }
        ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_evalr_front_matter_and_body_line() {
        let text = "---\nname: t\ninputs: [question]\nparameters:\n  temperature: 0\n---\nuser:\n{{ question }}\n";
        let program = ProgramFile::parse(Path::new("t.prompty"), text).unwrap();
        assert_eq!(program.name, "t");
        assert_eq!(program.inputs[0].name, "question");
        assert!(program.inputs[0].required);
        assert_eq!(program.parameters.temperature, Some(0.0));
        assert_eq!(program.body, "user:\n{{ question }}\n");
        assert_eq!(program.body_first_line, 7);
        assert_eq!(program.answer_capture, "answer");
        assert!(program.ignored.is_empty());
    }

    #[test]
    fn evalr_examples_pick_and_ensemble_keys() {
        let text = "---\nname: t\nexamples:\n  count: 3\n  pick: knn\nensemble:\n  repeats: 5\n  shuffle: plain-hunt\n  reduce: majority\n---\nuser:\nhi\n";
        let program = ProgramFile::parse(Path::new("t.prompty"), text).unwrap();
        let examples = program.examples.unwrap();
        assert_eq!(examples.count, 3);
        assert_eq!(examples.pick, Some(ExamplePick::Knn));
        let ensemble = program.ensemble.unwrap();
        assert_eq!(ensemble.repeats, Some(5));
        assert_eq!(ensemble.shuffle, Some(super::super::Shuffle::PlainHunt));
        assert_eq!(ensemble.reduce, Some(super::super::Reduce::Majority));
        assert!(program.ignored.is_empty(), "{:?}", program.ignored);
    }

    #[test]
    fn bad_ensemble_names_the_key_line() {
        let text = "---\nname: t\nensemble:\n  repeats: 5\n  shufle: random\n---\nuser:\nhi\n";
        let error = ProgramFile::parse(Path::new("t.prompty"), text)
            .unwrap_err()
            .to_string();
        assert!(error.contains("t.prompty"), "{error}");
        assert!(error.contains(":3"), "{error}");
        assert!(error.contains("shufle"), "{error}");
    }

    #[test]
    fn unknown_keys_are_not_errors_but_are_listed() {
        let text = "---\nname: t\ntemprature: 0\ntools: []\n---\nuser:\nhi\n";
        let program = ProgramFile::parse(Path::new("p/t.prompty"), text).unwrap();
        assert_eq!(program.ignored.len(), 2);
        assert!(
            program.ignored[0].starts_with("temprature"),
            "{:?}",
            program.ignored
        );
    }

    #[test]
    fn bad_yaml_names_file_and_line() {
        let text = "---\nname: t\ninputs: [a\n---\nuser:\nhi\n";
        let err = ProgramFile::parse(Path::new("p/t.prompty"), text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p/t.prompty:"), "{err}");
    }

    #[test]
    fn unclosed_front_matter_is_an_error_naming_the_file() {
        let err = ProgramFile::parse(Path::new("p/t.prompty"), "---\nname: t\nuser:\nhi\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p/t.prompty:1:"), "{err}");
        assert!(err.contains("never closed"), "{err}");
    }

    #[test]
    fn file_without_front_matter_is_all_body() {
        let program = ProgramFile::parse(Path::new("x.prompty"), "user:\nhi").unwrap();
        assert_eq!(program.name, "x");
        assert_eq!(program.body, "user:\nhi");
        assert_eq!(program.body_first_line, 1);
    }

    #[test]
    fn v1_file_with_sample_inputs_map_and_template_string() {
        let text = "---\nname: Basic\ndescription: A basic prompt\nauthors: [me]\nmodel:\n  api: chat\n  configuration:\n    type: azure_openai\n    azure_deployment: gpt-35-turbo\n  parameters:\n    max_tokens: 3000\nsample:\n  firstName: Jane\ninputs:\n  firstName:\n    type: string\ntemplate: jinja2\n---\nsystem:\nHi {{firstName}}\n";
        let program = ProgramFile::parse(Path::new("basic.prompty"), text).unwrap();
        assert_eq!(program.dialect, Dialect::V1);
        assert_eq!(program.sample["firstName"], json!("Jane"));
        assert_eq!(program.parameters.max_tokens, Some(3000));
        assert_eq!(program.format, TemplateFormat::Jinja2);
        assert!(program.ignored.is_empty(), "{:?}", program.ignored);
    }

    #[test]
    fn body_starts_after_the_blank_lines_that_follow_the_front_matter() {
        let text = "---\nmodel:\n  api: chat\n---\n\n\n  system:\nhi\n";
        let program = ProgramFile::parse(Path::new("v1.prompty"), text).unwrap();
        assert_eq!(program.body, "system:\nhi\n");
        assert_eq!(program.body_first_line, 7);
        // v2 too (prompty 2.x's pattern, the TypeScript runtime's trim).
        let text = "---\nname: v2\n---\n\nsystem:\nhi\n";
        let program = ProgramFile::parse(Path::new("v2.prompty"), text).unwrap();
        assert_eq!(program.body, "system:\nhi\n");
        assert_eq!(program.body_first_line, 5);
    }

    #[test]
    fn v2_file_with_template_format_and_outputs() {
        let text = "---\nname: s\nmodel:\n  id: gpt-4o\n  options:\n    temperature: 0\ninputs:\n  - name: q\n    kind: string\n    example: why?\noutputs:\n  - name: score\n    kind: integer\n  - name: reason\n    kind: string\ntemplate:\n  format:\n    kind: mustache\n  parser:\n    kind: prompty\n---\nuser:\n{{q}}\n";
        let program = ProgramFile::parse(Path::new("s.prompty"), text).unwrap();
        assert_eq!(program.dialect, Dialect::V2);
        assert_eq!(program.format, TemplateFormat::Mustache);
        assert_eq!(program.sample["q"], json!("why?"));
        let schema = program.outputs_schema.unwrap();
        assert_eq!(schema["properties"]["score"]["type"], json!("integer"));
        assert_eq!(schema["required"], json!(["score", "reason"]));
    }

    #[test]
    fn sample_from_a_file_reference() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sample.json"), r#"{"q": "from file"}"#).unwrap();
        let path = dir.path().join("p.prompty");
        let program =
            ProgramFile::parse(&path, "---\nsample: ${file:sample.json}\n---\n{{q}}").unwrap();
        assert_eq!(program.sample["q"], json!("from file"));
        // A bare file name, as promptflow's samples write it.
        let program = ProgramFile::parse(&path, "---\nsample: sample.json\n---\n{{q}}").unwrap();
        assert_eq!(program.sample["q"], json!("from file"));
        let err = ProgramFile::parse(&path, "---\nsample: missing.json\n---\n{{q}}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.prompty:2:"), "{err}");
        assert!(err.contains("missing.json"), "{err}");
    }

    /// The author's references may leave the program's folder (promptflow's samples keep
    /// their data beside the flow's folder); relative to the program's file.
    #[test]
    fn file_references_anywhere_in_the_front_matter_and_out_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let flow = dir.path().join("flow");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&flow).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("x.json"), r#"{"q": "from above"}"#).unwrap();
        std::fs::write(
            flow.join("inputs.yaml"),
            "q:\n  type: string\n  default: dflt\n",
        )
        .unwrap();
        std::fs::write(
            flow.join("format.json"),
            r#"{"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}"#,
        )
        .unwrap();
        std::fs::write(flow.join("params.json"), r#"{"temperature": 0.5}"#).unwrap();
        let path = flow.join("p.prompty");
        let text = "---\nmodel:\n  api: chat\n  parameters:\n    max_tokens: 9\n    response_format: ${file:format.json}\ninputs: ${file:inputs.yaml}\nsample: ${file:../data/x.json}\n---\nuser:\n{{q}}";
        let program = ProgramFile::parse(&path, text).unwrap();
        assert_eq!(program.sample["q"], json!("from above"));
        assert_eq!(program.inputs[0].name, "q");
        assert_eq!(program.inputs[0].default, Some(json!("dflt")));
        assert_eq!(
            program.parameters.response_format,
            Some(super::super::ResponseFormat::JsonSchema {
                schema: json!({"type": "object"})
            })
        );
        let text = "---\nmodel:\n  api: chat\n  parameters: ${file:params.json}\n---\nuser:\nhi";
        let program = ProgramFile::parse(&path, text).unwrap();
        assert_eq!(program.parameters.temperature, Some(0.5));
    }
}
