//! Declared inputs (`inputs:` in the front matter) in every form real files use, and how a
//! row's values are completed from them.
//!
//! Forms accepted (Prompty spec §2.7, the v1 runtime, and evalr's own):
//! - a list of names (`inputs: [question, choices]`): evalr's form; each name is required;
//! - a v1 map (`query: {type: string, default: ..., sample: ..., description: ...}`);
//! - a v2 list of properties (`- name: query` / `kind: string` / `default:` / `required:`);
//! - a map of v2 properties (`query: {kind: string, required: true}`);
//! - scalar shorthand (`firstName: Jane`): a property whose default is the value.

use serde_json::{Map, Value};

/// One declared input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    /// `string`, `integer`, `float`, `boolean`, `array`, `object`, `thread`, `image`, `file`,
    /// `audio`; empty when the file does not say.
    pub kind: String,
    pub description: Option<String>,
    /// Filled in when a row has no value (absent or null) for the input.
    pub default: Option<Value>,
    /// A row with no value and no default is an error naming the input.
    pub required: bool,
    /// The example value (`sample` in v1, `example` in v2) used by `programs render` without a
    /// dataset.
    pub sample: Option<Value>,
}

impl InputSpec {
    fn named(name: &str) -> InputSpec {
        InputSpec {
            name: name.to_string(),
            kind: String::new(),
            description: None,
            default: None,
            required: false,
            sample: None,
        }
    }

    /// Thread inputs become messages at their place (spec §6.7).
    pub fn is_thread(&self) -> bool {
        self.kind.eq_ignore_ascii_case("thread")
    }

    pub fn is_image(&self) -> bool {
        self.kind.eq_ignore_ascii_case("image")
    }
}

fn kind_of_scalar(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "",
    }
}

/// One property given as an object (`{kind|type, default, required, sample|example, ...}`).
fn from_property(name: &str, object: &Map<String, Value>) -> Result<InputSpec, String> {
    let mut spec = InputSpec::named(name);
    spec.kind = object
        .get("kind")
        .or_else(|| object.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    spec.description = object
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    spec.default = object.get("default").cloned().filter(|v| !v.is_null());
    spec.required = match object.get("required") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "inputs.{name}.required must be true or false, found {other}"
            ));
        }
    };
    spec.sample = object
        .get("sample")
        .or_else(|| object.get("example"))
        .cloned()
        .filter(|v| !v.is_null());
    Ok(spec)
}

/// Reads `inputs:` in any of its forms. Errors name the offending entry.
pub fn parse_inputs(value: &Value) -> Result<Vec<InputSpec>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                // evalr's list of names: fields the program cannot do without.
                Value::String(name) => Ok(InputSpec {
                    required: true,
                    ..InputSpec::named(name)
                }),
                Value::Object(object) => {
                    let name = object
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("inputs[{i}] is a property without a `name`"))?;
                    from_property(name, object)
                }
                other => Err(format!(
                    "inputs[{i}] must be a name or a property ({{name, kind, ...}}), found {other}"
                )),
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(name, entry)| match entry {
                Value::Object(object) => from_property(name, object),
                // Scalar shorthand: the value is the default (spec §2.7).
                scalar => Ok(InputSpec {
                    kind: kind_of_scalar(scalar).to_string(),
                    default: Some(scalar.clone()).filter(|v| !v.is_null()),
                    ..InputSpec::named(name)
                }),
            })
            .collect(),
        other => Err(format!(
            "inputs must be a list or a map of properties, found {other}"
        )),
    }
}

/// A row value that counts as "not given".
fn is_missing(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_null)
}

/// Fills defaults into `context` and returns the first required input that has neither a
/// value nor a default.
pub fn complete_inputs<'a>(
    inputs: &'a [InputSpec],
    context: &mut Map<String, Value>,
) -> Result<(), &'a InputSpec> {
    for input in inputs {
        if !is_missing(context.get(&input.name)) {
            continue;
        }
        match &input.default {
            Some(default) => {
                context.insert(input.name.clone(), default.clone());
            }
            None if input.required => return Err(input),
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(yaml: &str) -> Vec<InputSpec> {
        parse_inputs(&serde_yaml::from_str::<Value>(yaml).unwrap()).unwrap()
    }

    #[test]
    fn list_of_names_is_required() {
        let inputs = parse("[question, choices]");
        assert_eq!(inputs.len(), 2);
        assert!(inputs.iter().all(|i| i.required));
    }

    #[test]
    fn v1_map_with_type_default_sample() {
        let inputs = parse(
            "query:\n  type: string\n  description: the question\n  sample: What is 2+2?\ncontext:\n  type: string\n  default: none given\n",
        );
        assert_eq!(inputs[0].name, "query");
        assert_eq!(inputs[0].kind, "string");
        assert_eq!(inputs[0].sample, Some(json!("What is 2+2?")));
        assert!(!inputs[0].required);
        assert_eq!(inputs[1].default, Some(json!("none given")));
    }

    #[test]
    fn v2_list_of_properties() {
        let inputs = parse(
            "- name: query\n  kind: string\n  required: true\n  example: hi\n- name: history\n  kind: thread\n",
        );
        assert!(inputs[0].required);
        assert_eq!(inputs[0].sample, Some(json!("hi")));
        assert!(inputs[1].is_thread());
    }

    #[test]
    fn scalar_shorthand_is_a_default_with_inferred_kind() {
        let inputs = parse("firstName: Jane\ncount: 3\nratio: 0.5\nflag: true\n");
        assert_eq!(inputs[0].default, Some(json!("Jane")));
        assert_eq!(inputs[0].kind, "string");
        assert_eq!(inputs[1].kind, "integer");
        assert_eq!(inputs[2].kind, "float");
        assert_eq!(inputs[3].kind, "boolean");
    }

    #[test]
    fn defaults_fill_missing_and_null_values_required_fails() {
        let inputs = parse(
            "- name: a\n  default: x\n- name: b\n  required: true\n- name: c\n  kind: string\n",
        );
        let mut context = json!({"a": null, "b": "given"})
            .as_object()
            .unwrap()
            .clone();
        complete_inputs(&inputs, &mut context).unwrap();
        assert_eq!(context["a"], json!("x"));
        assert!(!context.contains_key("c"));
        let mut empty = Map::new();
        assert_eq!(complete_inputs(&inputs, &mut empty).unwrap_err().name, "b");
    }

    #[test]
    fn unnamed_property_is_an_error_naming_the_entry() {
        let err = parse_inputs(&json!([{"kind": "string"}])).unwrap_err();
        assert!(err.contains("inputs[0]"), "{err}");
    }
}
