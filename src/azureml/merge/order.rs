//! The order merged rows come back in: the dataset's, or natural id order.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};

/// Row ids in dataset order, when run.json names dataset files that are readable JSONL.
pub(super) fn dataset_order(files: &[String]) -> Option<HashMap<String, usize>> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    if files.is_empty() {
        return None;
    }
    let mut order = HashMap::new();
    for path in files {
        if !path.ends_with(".jsonl") {
            return None;
        }
        let reader = BufReader::new(fs::File::open(path).ok()?);
        for line in reader.lines() {
            let line = line.ok()?;
            if let Ok(IdOnly { id }) = serde_json::from_str::<IdOnly>(&line) {
                let next = order.len();
                order.entry(id).or_insert(next);
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
