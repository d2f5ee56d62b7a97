//! Reading shard journals: JSONL lines with their ids, torn last lines, and the order rows
//! come back in.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::MergeError;

/// One JSONL line with its id (absent for error lines about unreadable rows).
pub(super) struct Line {
    pub id: Option<String>,
    pub value: Value,
    pub text: String,
}

/// Reads a journal file. A missing file is an empty journal (the shard finished no row). A
/// last line without its newline that does not parse is a write cut short by a kill: it is
/// skipped with a warning, as resume does. Any other bad line is an error naming it.
pub(super) fn read_jsonl(
    path: &Path,
    require_id: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Line>, MergeError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(MergeError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
    let mut buf = String::new();
    let mut number = 0;
    loop {
        buf.clear();
        let read = reader
            .read_line(&mut buf)
            .map_err(|source| MergeError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        let complete = buf.ends_with('\n');
        let text = buf.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str::<Value>(text) {
            Ok(v) if v.is_object() => v,
            Ok(_) | Err(_) if !complete => {
                warnings.push(format!(
                    "{}:{number}: skipped a torn last line (a write cut short)",
                    path.display()
                ));
                break;
            }
            Ok(v) => {
                return Err(MergeError::Json {
                    path: path.to_path_buf(),
                    line: number,
                    message: format!("found {v}"),
                });
            }
            Err(e) => {
                return Err(MergeError::Json {
                    path: path.to_path_buf(),
                    line: number,
                    message: e.to_string(),
                });
            }
        };
        let id = value.get("id").and_then(Value::as_str).map(str::to_string);
        if require_id && id.is_none() {
            return Err(MergeError::NoId {
                path: path.to_path_buf(),
                line: number,
            });
        }
        lines.push(Line {
            id,
            value,
            text: text.to_string(),
        });
    }
    Ok(lines)
}

/// Row ids in dataset order, when run.json names dataset files that are readable JSONL.
pub(super) fn dataset_order(run: &Value) -> Option<HashMap<String, usize>> {
    let files = run.get("dataset")?.get("files")?.as_array()?;
    if files.is_empty() {
        return None;
    }
    let mut order = HashMap::new();
    for file in files {
        let path = file
            .as_str()
            .or_else(|| file.get("path").and_then(Value::as_str))?;
        if !path.ends_with(".jsonl") {
            return None;
        }
        let reader = BufReader::new(fs::File::open(path).ok()?);
        for line in reader.lines() {
            let line = line.ok()?;
            if let Ok(Value::Object(row)) = serde_json::from_str::<Value>(&line)
                && let Some(id) = row.get("id").and_then(Value::as_str)
            {
                let next = order.len();
                order.entry(id.to_string()).or_insert(next);
            }
        }
    }
    Some(order)
}

/// Compares ids with digit runs as numbers, so `q/2` sorts before `q/10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len()
                .cmp(&tb.len())
                .then(ta.cmp(tb))
                .then(xa.len().cmp(&xb.len()))
        } else {
            xa.cmp(xb)
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering::*;

    #[test]
    fn natural_order_compares_numbers_as_numbers() {
        assert_eq!(natural_cmp("mmlu/a/test/2", "mmlu/a/test/10"), Less);
        assert_eq!(natural_cmp("mmlu/a/test/10", "mmlu/a/test/10"), Equal);
        assert_eq!(natural_cmp("mmlu/b/test/0", "mmlu/a/test/10"), Greater);
        assert_eq!(natural_cmp("q", "q/1"), Less);
        assert_eq!(natural_cmp("x/01", "x/1"), Greater);
    }
}
