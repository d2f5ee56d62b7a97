//! What a template sees for one row: the row's own fields at the top level, exactly as the
//! dataset has them, and evalr's helpers under one namespace, `evalr`:
//!
//! | name              | what                                                                  |
//! |-------------------|-----------------------------------------------------------------------|
//! | `evalr.row`       | the whole row, as one object                                          |
//! | `evalr.examples`  | the few-shot examples chosen for this row: a list of objects, each a  |
//! |                   | row of the example pool plus whatever captures the example source     |
//! |                   | carries (e.g. `explanation` from a chain-of-thought run)              |
//! | `evalr.letters`   | `["A", "B", ..., "Z"]`                                                |
//!
//! The short names `row`, `examples` and `letters` are kept for evalr's older programs, but
//! only where the row has no field of that name: evalr's names never hide a row's (a
//! promptflow flow with an `examples` input keeps its own). The same holds for `evalr`
//! itself: a row with an `evalr` field keeps it, and the namespace is not there.

use serde_json::{Map, Value};

/// The namespace key.
pub const NAMESPACE: &str = "evalr";

/// The letters options are labelled with.
pub fn letters() -> Vec<String> {
    ('A'..='Z').map(|c| c.to_string()).collect()
}

/// The template context of a row (`row` must be a JSON object; anything else has no fields)
/// with its examples.
pub fn template_context(row: &Value, examples: Vec<Value>) -> Map<String, Value> {
    let mut context = match row {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let letters = Value::from(letters());
    let examples = Value::Array(examples);
    let mut namespace = Map::new();
    namespace.insert("row".into(), row.clone());
    namespace.insert("examples".into(), examples.clone());
    namespace.insert("letters".into(), letters.clone());
    for (short, value) in [
        ("row", row.clone()),
        ("examples", examples),
        ("letters", letters),
        (NAMESPACE, Value::Object(namespace)),
    ] {
        context.entry(short).or_insert(value);
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn row_fields_win_over_evalr_short_names() {
        let row = json!({"question": "q", "examples": "the flow's own", "letters": 3});
        let context = template_context(
            &row,
            vec![json!({"question": "e1", "explanation": "because"})],
        );
        assert_eq!(context["examples"], json!("the flow's own"));
        assert_eq!(context["letters"], json!(3));
        assert_eq!(
            context["evalr"]["examples"][0]["explanation"],
            json!("because")
        );
        assert_eq!(context["evalr"]["letters"][1], json!("B"));
        assert_eq!(context["row"], row);
        assert_eq!(context["evalr"]["row"], row);
    }
}
