//! Result files as MLflow parameters and metrics: JSON flattened to dotted names.

use serde_json::Value;

/// Parameter values beyond this are cut (MLflow servers before 2.x and AzureML refuse more).
const MAX_PARAM_VALUE: usize = 500;
const MAX_KEY: usize = 250;

/// Keys may hold letters, digits, `_ - . /` and spaces; anything else becomes `_`.
pub fn sanitize_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' | '.' | '/' | ' ' => c,
            _ => '_',
        })
        .take(MAX_KEY)
        .collect()
}

/// Every numeric leaf of `value` under its dotted name; array items by index.
pub fn numeric_leaves(value: &Value) -> Vec<(String, f64)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, f64)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Number(n) => {
                if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                    out.push((sanitize_key(prefix), x));
                }
            }
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(&join(k), v, out)),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| walk(&join(&i.to_string()), v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out.retain(|(k, _)| !k.is_empty());
    out
}

/// run.json as parameters: scalars under dotted names, arrays as compact JSON, nulls left
/// out, values cut to MLflow's limit. `merged_from` (shard bookkeeping) is not a parameter.
pub fn run_params(run: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        let text = match v {
            // Null and empty values say nothing a parameter could carry.
            Value::Null => return,
            Value::String(s) if s.is_empty() => return,
            Value::Object(map) => {
                for (k, v) in map {
                    // Lists of shards, batches and quota samples are logs, not parameters
                    // (they travel in the run.json artifact).
                    if prefix.is_empty() && ["merged_from", "batch", "quota"].contains(&k.as_str())
                    {
                        continue;
                    }
                    walk(&join(k), v, out);
                }
                return;
            }
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push((
            sanitize_key(prefix),
            text.chars().take(MAX_PARAM_VALUE).collect(),
        ));
    }
    let mut out = Vec::new();
    walk("", run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_leaves_get_dotted_names() {
        let summary = json!({"accuracy": 0.5, "rows": 4, "model": "m", "ok": true,
                             "accuracy_by_subject": {"anatomy": 0.25, "high school/bio": 1},
                             "ci": [0.4, 0.6], "none": null});
        assert_eq!(
            numeric_leaves(&summary),
            vec![
                ("accuracy".to_string(), 0.5),
                ("rows".to_string(), 4.0),
                ("accuracy_by_subject.anatomy".to_string(), 0.25),
                ("accuracy_by_subject.high school/bio".to_string(), 1.0),
                ("ci.0".to_string(), 0.4),
                ("ci.1".to_string(), 0.6),
            ]
        );
        assert_eq!(sanitize_key("acc(by:subject)"), "acc_by_subject_");
    }

    #[test]
    fn run_json_becomes_params() {
        let run = json!({"run_id": "r", "shard": null, "model": {"identity": "x", "prices": {"input_per_mtok": 2.5}},
                         "dataset": {"files": ["a.jsonl", "b.jsonl"]}, "merged_from": [{"index": 0}]});
        assert_eq!(
            run_params(&run),
            vec![
                ("run_id".to_string(), "r".to_string()),
                ("model.identity".to_string(), "x".to_string()),
                ("model.prices.input_per_mtok".to_string(), "2.5".to_string()),
                (
                    "dataset.files".to_string(),
                    "[\"a.jsonl\",\"b.jsonl\"]".to_string()
                ),
            ]
        );
    }
}
