//! `template: mustache` bodies, rendered by `ribboncurls` (the Mustache engine the official
//! Rust Prompty runtime uses, spec-compliant: `{{x}}` is HTML-escaped, `{{{x}}}` is not).
//!
//! Mustache has no functions, so `select`/`gen` calls are Jinja-only; a mustache program is
//! one completion. Values are marked as in Jinja bodies: every non-empty string of the data
//! is wrapped in the program's value markers before rendering, so role lines inside values
//! stay text.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

fn wrap(value: &Value, open: &str, close: &str) -> Value {
    match value {
        // Empty strings stay empty: they are falsy in a section and print nothing.
        Value::String(s) if !s.is_empty() => Value::String(format!("{open}{s}{close}")),
        Value::Array(items) => Value::Array(items.iter().map(|v| wrap(v, open, close)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), wrap(v, open, close)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Renders `body` with `context`; string values come out wrapped in `open`/`close`.
pub fn render(
    body: &str,
    context: &Map<String, Value>,
    open: &str,
    close: &str,
) -> Result<String, String> {
    let data = wrap(&Value::Object(context.clone()), open, close);
    let data = serde_json::to_string(&data).map_err(|e| e.to_string())?;
    ribboncurls::render(body, &data, None).map_err(|e| format!("mustache: {e}"))
}

static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{\{?\s*([#^&]?)\s*([A-Za-z_][\w.-]*)\s*\}?\}\}").expect("constant regex")
});

/// Top-level names a mustache body reads (the first segment of each tag's name), for
/// `programs check`.
pub fn variables(body: &str) -> Vec<String> {
    let names: BTreeSet<String> = TAG
        .captures_iter(body)
        .map(|c| c[2].split('.').next().unwrap_or_default().to_string())
        .collect();
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_sections_escapes_and_marks_values() {
        let context = json!({"name": "A&B", "items": ["x", "y"], "empty": ""});
        let out = render(
            "Hi {{name}} {{{name}}}{{#items}} {{.}}{{/items}}{{^empty}} none{{/empty}}{{missing}}",
            context.as_object().unwrap(),
            "[",
            "]",
        )
        .unwrap();
        assert_eq!(out, "Hi [A&amp;B] [A&B] [x] [y] none");
    }

    #[test]
    fn variables_are_the_first_segments() {
        assert_eq!(
            variables("{{a.b}} {{#list}}{{x}}{{/list}} {{{raw}}} {{! comment}}"),
            vec!["a", "list", "raw", "x"]
        );
    }
}
