//! The `model:` section of a program: the request settings it asks for (v1 `parameters`,
//! v2 `options`) and the model it names (v1 `configuration`, v2 `connection`/`provider`/`id`).
//!
//! Settings are read into one typed set whatever the version; a setting evalr does not know
//! is kept in `unknown` so that a run can refuse it before any request instead of dropping it
//! silently. `${env:VAR}` references are kept as references: they are resolved only when the
//! run builds its model, and an API key is never resolved by evalr at all: its variable's
//! name is handed to the backend, which reads it at request time (so no secret can reach a
//! log, `run.json` or an error).

use serde::Serialize;
use serde_json::{Map, Value};

/// The response format a program asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this schema (structured outputs).
    JsonSchema {
        schema: Value,
    },
}

/// Request settings, from `model.parameters` (v1), `model.options` (v2) and evalr's older
/// top-level `parameters` key. Calls may override them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DefaultParameters {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub response_format: Option<ResponseFormat>,
    /// Settings the file asks for that evalr cannot send (`logit_bias`, `top_k`, `n`...):
    /// a run refuses them up front.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

/// A string from the front matter that may be an `${env:VAR}` / `${env:VAR:default}`
/// reference. Its `Debug` shows the reference, never a resolved value.
#[derive(Clone, PartialEq, Eq)]
pub enum Setting {
    Literal(String),
    Env {
        var: String,
        default: Option<String>,
    },
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Literal(text) => write!(f, "{text:?}"),
            Setting::Env { var, .. } => write!(f, "${{env:{var}}}"),
        }
    }
}

impl Setting {
    pub fn parse(text: &str) -> Setting {
        let trimmed = text.trim();
        if let Some(inner) = trimmed
            .strip_prefix("${env:")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            let (var, default) = match inner.split_once(':') {
                Some((var, default)) => (var, Some(default.to_string())),
                None => (inner, None),
            };
            return Setting::Env {
                var: var.trim().to_string(),
                default,
            };
        }
        Setting::Literal(text.to_string())
    }

    /// The value, reading the environment for a reference; `Err(VAR)` when it is unset and
    /// has no default.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Setting::Literal(text) => Ok(text.clone()),
            Setting::Env { var, default } => std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .or_else(|| default.clone())
                .ok_or_else(|| var.clone()),
        }
    }
}

/// Which service a program's `configuration`/`connection` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    AzureOpenAi,
    OpenAi,
    /// A type evalr cannot call from a program file (serverless, anthropic...).
    Other(String),
}

/// The model a program names: its default when `--model` is not given.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConnection {
    pub kind: ServiceKind,
    pub endpoint: Option<Setting>,
    pub deployment: Option<Setting>,
    pub api_version: Option<Setting>,
    /// Only ever a reference: the name of the variable holding the key.
    pub api_key: Option<Setting>,
    /// The model name for OpenAI (`model`), also the tokenizer's.
    pub model: Option<Setting>,
}

/// `model:` as evalr reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSection {
    /// `model.id` (v2) or the shorthand `model: gpt-4o`.
    pub id: Option<String>,
    /// `api` (v1) / `apiType` (v2): `chat` unless said otherwise.
    pub api: Option<String>,
    pub connection: Option<ModelConnection>,
    pub parameters: DefaultParameters,
}

fn as_f64(value: &Value, key: &str) -> Result<f64, String> {
    value
        .as_f64()
        .ok_or_else(|| format!("model.{key} must be a number, found {value}"))
}

fn as_u32(value: &Value, key: &str) -> Result<u32, String> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("model.{key} must be a whole number, found {value}"))
}

fn strings(value: &Value, key: &str) -> Result<Vec<String>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("model.{key} must be a list of strings"))
            })
            .collect(),
        other => Err(format!(
            "model.{key} must be a string or a list of strings, found {other}"
        )),
    }
}

fn response_format(value: &Value) -> Result<Option<ResponseFormat>, String> {
    let kind = match value {
        Value::Null => return Ok(None),
        Value::String(kind) => kind.as_str(),
        Value::Object(object) => object.get("type").and_then(Value::as_str).unwrap_or(""),
        other => return Err(format!("response_format must be a map, found {other}")),
    };
    match kind {
        "text" => Ok(Some(ResponseFormat::Text)),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            // OpenAI's shape: {type: json_schema, json_schema: {name, schema, strict}}.
            let schema = value
                .get("json_schema")
                .and_then(|j| j.get("schema").or(Some(j)))
                .cloned()
                .ok_or("response_format json_schema needs `json_schema.schema`")?;
            Ok(Some(ResponseFormat::JsonSchema { schema }))
        }
        other => Err(format!(
            "response_format type `{other}` is not one of text, json_object, json_schema"
        )),
    }
}

impl DefaultParameters {
    /// Reads one settings map. Keys are accepted in v1 (`max_tokens`, snake case) and v2
    /// (`maxOutputTokens`, camel case) spelling; v2's `additionalProperties` is read as more
    /// settings.
    pub fn merge_from(&mut self, map: &Map<String, Value>, prefix: &str) -> Result<(), String> {
        for (key, value) in map {
            let at = format!("{prefix}{key}");
            // Null means "not set" in every runtime. `None` is Python's null written by hand
            // (`max_tokens: None` in a judge file): YAML reads it as the text "None", which
            // azure-ai-evaluation passes on unchanged (`"max_tokens": "None"`, a value the
            // service cannot honour as a number); evalr reads the author's intent: no
            // setting, as if the line were not there.
            if value.is_null() || value.as_str() == Some("None") {
                continue;
            }
            match key.as_str() {
                "temperature" => self.temperature = Some(as_f64(value, &at)?),
                "top_p" | "topP" => self.top_p = Some(as_f64(value, &at)?),
                "max_tokens" | "maxOutputTokens" | "max_completion_tokens" | "maxTokens" => {
                    self.max_tokens = Some(as_u32(value, &at)?)
                }
                "seed" => {
                    self.seed = Some(
                        value
                            .as_u64()
                            .ok_or_else(|| format!("model.{at} must be a whole number"))?,
                    )
                }
                "stop" | "stopSequences" => self.stop = strings(value, &at)?,
                "presence_penalty" | "presencePenalty" => {
                    self.presence_penalty = Some(as_f64(value, &at)?)
                }
                "frequency_penalty" | "frequencyPenalty" => {
                    self.frequency_penalty = Some(as_f64(value, &at)?)
                }
                "response_format" | "responseFormat" => {
                    self.response_format = response_format(value)?
                }
                "additionalProperties" => {
                    if let Value::Object(more) = value {
                        self.merge_from(more, &format!("{at}."))?;
                    }
                }
                // One completion per call is all evalr asks for; `n: 1` changes nothing.
                "n" if value.as_u64() == Some(1) => {}
                "stream" if value.as_bool() == Some(false) => {}
                _ => self.unknown.push(at),
            }
        }
        Ok(())
    }
}

fn setting(map: &Map<String, Value>, keys: &[&str]) -> Option<Setting> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
        .map(Setting::parse)
}

fn connection(provider: Option<&str>, map: &Map<String, Value>) -> Result<ModelConnection, String> {
    let kind_text = map
        .get("type")
        .and_then(Value::as_str)
        .or(provider)
        .unwrap_or("");
    let kind = match kind_text {
        "azure_openai" | "azure" | "AzureOpenAI" => ServiceKind::AzureOpenAi,
        "openai" | "OpenAI" => ServiceKind::OpenAi,
        // v2 connections say `kind: key` and leave the service to `provider`.
        "" if map.contains_key("azure_endpoint") => ServiceKind::AzureOpenAi,
        other => ServiceKind::Other(other.to_string()),
    };
    let api_key = setting(map, &["api_key", "apiKey", "key"]);
    if let Some(Setting::Literal(_)) = api_key {
        // Never echo the literal: it is a secret written into a file.
        return Err(
            "model configuration holds a literal API key: put it in an environment variable and write `api_key: ${env:VAR}`"
                .into(),
        );
    }
    Ok(ModelConnection {
        kind,
        endpoint: setting(map, &["azure_endpoint", "endpoint", "base_url"]),
        deployment: setting(map, &["azure_deployment", "deployment", "deploymentName"]),
        api_version: setting(map, &["api_version", "apiVersion"]),
        api_key,
        model: setting(map, &["model", "name"]),
    })
}

/// Reads `model:` in its v1 or v2 form.
pub fn parse_model(value: &Value) -> Result<ModelSection, String> {
    let mut section = ModelSection::default();
    let map = match value {
        Value::Null => return Ok(section),
        Value::String(id) => {
            section.id = Some(id.clone());
            return Ok(section);
        }
        Value::Object(map) => map,
        other => return Err(format!("model must be a name or a map, found {other}")),
    };
    section.id = map.get("id").and_then(Value::as_str).map(str::to_string);
    section.api = map
        .get("api")
        .or_else(|| map.get("apiType"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let provider = map.get("provider").and_then(Value::as_str);
    if let Some(Value::Object(configuration)) =
        map.get("configuration").or_else(|| map.get("connection"))
    {
        section.connection = Some(connection(provider, configuration)?);
    } else if let Some(provider) = provider {
        section.connection = Some(connection(Some(provider), &Map::new())?);
    }
    if let Some(connection) = &mut section.connection
        && connection.model.is_none()
        && connection.deployment.is_none()
        && let Some(id) = &section.id
    {
        connection.model = Some(Setting::Literal(id.clone()));
    }
    for key in ["parameters", "options"] {
        match map.get(key) {
            Some(Value::Object(settings)) => section
                .parameters
                .merge_from(settings, &format!("{key}."))?,
            None | Some(Value::Null) => {}
            Some(other) => return Err(format!("model.{key} must be a map, found {other}")),
        }
    }
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(yaml: &str) -> Result<ModelSection, String> {
        parse_model(&serde_yaml::from_str::<Value>(yaml).unwrap())
    }

    #[test]
    fn null_and_python_none_settings_are_not_set() {
        let m = model("api: chat\nparameters:\n  max_tokens: None\n  temperature: ~\n  top_p: 1\n")
            .unwrap();
        assert_eq!(m.parameters.max_tokens, None);
        assert_eq!(m.parameters.temperature, None);
        assert_eq!(m.parameters.top_p, Some(1.0));
        assert!(
            m.parameters.unknown.is_empty(),
            "{:?}",
            m.parameters.unknown
        );
    }

    #[test]
    fn v1_configuration_and_parameters() {
        let m = model(
            "api: chat\nconfiguration:\n  type: azure_openai\n  azure_endpoint: ${env:AZURE_OPENAI_ENDPOINT}\n  azure_deployment: ${env:AZURE_OPENAI_DEPLOYMENT:gpt-4o}\n  api_key: ${env:AZURE_OPENAI_API_KEY}\nparameters:\n  temperature: 0.0\n  max_tokens: 800\n  top_p: 1.0\n  presence_penalty: 0\n  frequency_penalty: 0\n  response_format:\n    type: json_object\n",
        )
        .unwrap();
        let c = m.connection.unwrap();
        assert_eq!(c.kind, ServiceKind::AzureOpenAi);
        assert_eq!(
            c.endpoint,
            Some(Setting::Env {
                var: "AZURE_OPENAI_ENDPOINT".into(),
                default: None
            })
        );
        assert_eq!(
            c.deployment.unwrap().resolve().ok().as_deref(),
            std::env::var("AZURE_OPENAI_DEPLOYMENT")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .or(Some("gpt-4o".into()))
                .as_deref()
        );
        let p = m.parameters;
        assert_eq!(p.temperature, Some(0.0));
        assert_eq!(p.max_tokens, Some(800));
        assert_eq!(p.presence_penalty, Some(0.0));
        assert_eq!(p.response_format, Some(ResponseFormat::JsonObject));
        assert!(p.unknown.is_empty());
    }

    #[test]
    fn v2_options_in_camel_case_and_unknown_settings_kept() {
        let m = model(
            "id: gpt-4o\nprovider: openai\noptions:\n  temperature: 0.2\n  maxOutputTokens: 50\n  stopSequences: [\"\\n\"]\n  topK: 5\n  additionalProperties:\n    logit_bias: {}\n",
        )
        .unwrap();
        assert_eq!(m.id.as_deref(), Some("gpt-4o"));
        assert_eq!(m.parameters.max_tokens, Some(50));
        assert_eq!(m.parameters.stop, vec!["\n".to_string()]);
        assert_eq!(
            m.parameters.unknown,
            vec!["options.topK", "options.additionalProperties.logit_bias"]
        );
        assert_eq!(m.connection.unwrap().kind, ServiceKind::OpenAi);
    }

    #[test]
    fn literal_key_is_refused_without_echoing_it() {
        let err = model("configuration:\n  type: openai\n  api_key: sk-secret123\n").unwrap_err();
        assert!(!err.contains("sk-secret123"), "{err}");
        assert!(err.contains("${env:VAR}"), "{err}");
    }

    #[test]
    fn env_reference_debug_never_shows_the_value() {
        let s = Setting::parse("${env:PATH}");
        assert_eq!(format!("{s:?}"), "${env:PATH}");
        assert!(s.resolve().is_ok());
        assert_eq!(
            Setting::parse("${env:EVALR_SURELY_UNSET_VAR}").resolve(),
            Err("EVALR_SURELY_UNSET_VAR".into())
        );
    }

    #[test]
    fn json_schema_response_format() {
        let m = model("parameters:\n  response_format:\n    type: json_schema\n    json_schema:\n      name: x\n      schema: {type: object}\n").unwrap();
        assert_eq!(
            m.parameters.response_format,
            Some(ResponseFormat::JsonSchema {
                schema: json!({"type": "object"})
            })
        );
    }
}
