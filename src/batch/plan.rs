//! Cutting a round's lines into input files that respect the service's limits: requests per
//! file, bytes per file, and the enqueued-token quota (a batch larger than the quota could
//! never be accepted, so no file holds more tokens than it).

use std::ops::Range;

/// Azure's limits for a global-batch input file (OpenAI's are 50,000 requests, 200 MB).
pub const DEFAULT_MAX_REQUESTS: u64 = 50_000;
pub const DEFAULT_MAX_BYTES: u64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_requests: u64,
    pub max_bytes: u64,
    /// The enqueued-token quota of the deployment, when known.
    pub enqueued_tokens: Option<u64>,
}

/// One line's size in the file (bytes with its newline) and in the quota (tokens).
#[derive(Debug, Clone, Copy)]
pub struct LineSize {
    pub bytes: u64,
    pub tokens: u64,
}

/// Consecutive ranges of `lines`, each within every limit; a line that alone exceeds a limit
/// gets a file of its own (the service then says what is wrong with it).
pub fn pack(lines: &[LineSize], limits: &Limits) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let (mut bytes, mut tokens) = (0u64, 0u64);
    for (i, line) in lines.iter().enumerate() {
        let count = (i - start) as u64;
        let full = count > 0
            && (count + 1 > limits.max_requests.max(1)
                || bytes + line.bytes > limits.max_bytes
                || limits
                    .enqueued_tokens
                    .is_some_and(|quota| tokens + line.tokens > quota));
        if full {
            parts.push(start..i);
            start = i;
            bytes = 0;
            tokens = 0;
        }
        bytes += line.bytes;
        tokens += line.tokens;
    }
    if start < lines.len() {
        parts.push(start..lines.len());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(tokens: &[u64]) -> Vec<LineSize> {
        tokens
            .iter()
            .map(|&t| LineSize {
                bytes: 100,
                tokens: t,
            })
            .collect()
    }

    #[test]
    fn every_part_is_within_every_limit() {
        let limits = Limits {
            max_requests: 3,
            max_bytes: 1_000,
            enqueued_tokens: Some(50),
        };
        let sizes = lines(&[10, 10, 10, 10, 30, 25, 60, 5]);
        let parts = pack(&sizes, &limits);
        assert_eq!(parts, vec![0..3, 3..5, 5..6, 6..7, 7..8]);
        let bytes = Limits {
            max_requests: 100,
            max_bytes: 250,
            enqueued_tokens: None,
        };
        assert_eq!(pack(&sizes, &bytes), vec![0..2, 2..4, 4..6, 6..8]);
        assert!(pack(&[], &bytes).is_empty());
    }
}
