//! The streaming JSONL reader: one row per line, memory independent of the file size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::row::Row;

/// A line that is longer than this is reported as an error instead of being held in memory:
/// a file without newlines must not take all the machine's memory.
pub const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// After a long line, the line buffer is shrunk back to this so memory stays flat.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

/// One line that could not be read as a row: which file, which line (1-based), which field.
///
/// Displayed as `datasets/x.jsonl:12: field `choices`: expected an array of strings`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {}{message}", file.display(), field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct RowError {
    pub file: PathBuf,
    /// 1-based line number; 0 when the file itself could not be opened.
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
}

/// Streams the rows of one or more JSONL files, in order.
///
/// Each item is a row or a [`RowError`]; after an error on one line the next line is read
/// as usual (the caller decides to skip or stop). An I/O error (file vanished, disk error)
/// ends the stream after being reported once.
///
/// Accepted: UTF-8 with or without a byte order mark, LF or CRLF line ends, blank lines
/// (skipped), a last line without a newline. Rows without `id` get [`Row::content_id`].
pub struct RowReader {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<OpenFile>,
    buffer: Vec<u8>,
    /// How often each derived id was seen, so exact duplicates get distinct ids. Only rows
    /// *without* an id land here (keyed by the id's 64-bit digest, about 16 bytes a row),
    /// so files that carry ids are read in flat memory.
    derived: HashMap<u64, u32>,
    failed: bool,
}

struct OpenFile {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
}

impl RowReader {
    pub fn new(files: Vec<PathBuf>) -> RowReader {
        RowReader {
            files: files.into_iter(),
            current: None,
            buffer: Vec::new(),
            derived: HashMap::new(),
            failed: false,
        }
    }

    /// The file and 1-based line number of the item returned last (for error journals).
    pub fn position(&self) -> Option<(&Path, u64)> {
        self.current.as_ref().map(|f| (f.path.as_path(), f.line))
    }

    fn read_line(&mut self) -> Option<Result<Option<Row>, RowError>> {
        let file = self.current.as_mut()?;
        self.buffer.clear();
        let read = (&mut file.reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut self.buffer);
        match read {
            Err(error) => {
                file.line += 1;
                return Some(Err(RowError {
                    file: file.path.clone(),
                    line: file.line,
                    field: None,
                    message: format!("cannot read: {error}"),
                }));
            }
            Ok(0) => return None,
            Ok(_) => {}
        }
        file.line += 1;
        let line_number = file.line;
        if self.buffer.len() as u64 > MAX_LINE_BYTES && self.buffer.last() != Some(&b'\n') {
            // Skip the rest of the over-long line without keeping it.
            let skipped = skip_line(&mut file.reader);
            self.buffer = Vec::new();
            if let Err(error) = skipped {
                return Some(Err(RowError {
                    file: file.path.clone(),
                    line: line_number,
                    field: None,
                    message: format!("cannot read: {error}"),
                }));
            }
            return Some(Err(RowError {
                file: file.path.clone(),
                line: line_number,
                field: None,
                message: format!("line longer than {} MiB", MAX_LINE_BYTES / (1024 * 1024)),
            }));
        }
        let mut bytes: &[u8] = &self.buffer;
        if line_number == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Some(Ok(None));
        }
        let path = file.path.clone();
        let result = parse_line(bytes, &path, line_number).map(|mut row| {
            if row.id.is_empty() {
                let first = row.content_id(1);
                let digest = first
                    .strip_prefix("sha256:")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                let seen = self.derived.entry(digest).or_insert(0);
                *seen = seen.saturating_add(1);
                row.id = if *seen == 1 {
                    first
                } else {
                    row.content_id(u64::from(*seen))
                };
            }
            Some(row)
        });
        if self.buffer.capacity() > KEEP_BUFFER_BYTES {
            self.buffer = Vec::new();
        }
        Some(result)
    }
}

fn skip_line(reader: &mut BufReader<File>) -> std::io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match memchr_newline(available) {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let length = available.len();
                reader.consume(length);
            }
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Parses one line (without its line end) into a row; the error names file, line, field.
pub(crate) fn parse_line(bytes: &[u8], file: &Path, line: u64) -> Result<Row, RowError> {
    let error = |field: Option<String>, message: String| RowError {
        file: file.to_path_buf(),
        line,
        field,
        message,
    };
    if let Err(utf8) = std::str::from_utf8(bytes) {
        return Err(error(
            None,
            format!(
                "not valid UTF-8 (byte {} of the line)",
                utf8.valid_up_to() + 1
            ),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        let message = if e.is_eof() {
            format!("truncated JSON: {}", json_problem(&e))
        } else {
            format!("invalid JSON: {}", json_problem(&e))
        };
        error(None, message)
    })?;
    Row::from_json_value(value).map_err(|p| error(p.field, p.message))
}

/// serde_json's message with its position as a column: the line is ours ("line 1" in
/// serde's words would be misleading next to the file's line number).
pub(crate) fn json_problem(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&position) {
        Some(message) => format!("{message} (column {})", error.column()),
        None => text,
    }
}

impl Iterator for RowReader {
    type Item = Result<Row, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if self.current.is_none() {
                let path = self.files.next()?;
                match File::open(&path) {
                    Ok(handle) => {
                        self.current = Some(OpenFile {
                            path,
                            reader: BufReader::with_capacity(256 * 1024, handle),
                            line: 0,
                        });
                    }
                    Err(error) => {
                        self.failed = true;
                        return Some(Err(RowError {
                            file: path,
                            line: 0,
                            field: None,
                            message: format!("cannot open: {error}"),
                        }));
                    }
                }
            }
            match self.read_line() {
                None => self.current = None,
                Some(Ok(None)) => continue,
                Some(Ok(Some(row))) => return Some(Ok(row)),
                Some(Err(error)) => {
                    if error.message.starts_with("cannot read") {
                        self.failed = true;
                    }
                    return Some(Err(error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_bytes(bytes: &[u8]) -> Vec<Result<Row, RowError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, bytes).unwrap();
        RowReader::new(vec![path]).collect()
    }

    fn messages(bytes: &[u8]) -> Vec<String> {
        read_bytes(bytes)
            .into_iter()
            .map(|r| match r {
                Ok(row) => format!("ok {}", row.id),
                Err(e) => format!("{}: {:?}: {}", e.line, e.field, e.message),
            })
            .collect()
    }

    const ROW: &str = r#"{"id":"a","question":"q","choices":["x","y"],"correct_answer":1}"#;

    #[test]
    fn bom_crlf_blank_lines_and_a_missing_last_newline_are_fine() {
        let text = format!(
            "\u{feff}{ROW}\r\n\r\n  \n{}\r\n{}",
            ROW.replace("\"a\"", "\"b\""),
            ROW.replace("\"a\"", "\"c\"")
        );
        assert_eq!(messages(text.as_bytes()), ["ok a", "ok b", "ok c"]);
    }

    #[test]
    fn an_empty_file_has_no_rows() {
        assert!(read_bytes(b"").is_empty());
        assert!(read_bytes(b"\n\r\n").is_empty());
    }

    #[test]
    fn a_truncated_last_line_is_an_error_on_that_line() {
        let text = format!("{ROW}\n{}", &ROW[..30]);
        let got = messages(text.as_bytes());
        assert_eq!(got[0], "ok a");
        assert!(
            got[1].starts_with("2: None: truncated JSON: EOF while parsing"),
            "{}",
            got[1]
        );
    }

    #[test]
    fn invalid_utf8_names_the_byte() {
        let mut bytes = ROW.as_bytes().to_vec();
        bytes[20] = 0xff;
        assert_eq!(
            messages(&bytes),
            ["1: None: not valid UTF-8 (byte 21 of the line)"]
        );
    }

    #[test]
    fn wrong_types_name_file_line_and_field() {
        let text = format!("{ROW}\n{}\n", ROW.replace(r#"["x","y"]"#, r#""xy""#));
        let rows = read_bytes(text.as_bytes());
        let error = rows[1].as_ref().unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.to_string().ends_with(
                "x.jsonl:2: field `choices`: expected an array of strings, found a string"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_10_mb_line_is_read_and_memory_is_given_back() {
        let long = "x".repeat(10 * 1024 * 1024);
        let text = format!("{}\n{ROW}\n", ROW.replace("\"q\"", &format!("\"{long}\"")));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, text).unwrap();
        let mut reader = RowReader::new(vec![path]);
        assert_eq!(reader.next().unwrap().unwrap().question.len(), long.len());
        assert!(reader.buffer.capacity() <= KEEP_BUFFER_BYTES);
        assert_eq!(reader.next().unwrap().unwrap().id, "a");
        assert!(reader.next().is_none());
    }

    #[test]
    fn rows_without_ids_get_content_ids_and_duplicates_are_told_apart() {
        let row = r#"{"question":"q","choices":["x","y"]}"#;
        let got = messages(format!("{row}\n{row}\n").as_bytes());
        assert!(
            got[0].starts_with("ok sha256:") && got[0].len() == 3 + 7 + 16,
            "{got:?}"
        );
        assert_eq!(got[1], format!("{}-2", got[0]));
    }

    #[test]
    fn many_files_are_read_in_order_and_lines_restart() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("1.jsonl");
        let two = dir.path().join("2.jsonl");
        std::fs::write(&one, format!("{ROW}\n")).unwrap();
        std::fs::write(&two, format!("\n{}\n", ROW.replace("\"a\"", "\"b\""))).unwrap();
        let mut reader = RowReader::new(vec![one, two.clone()]);
        assert_eq!(reader.next().unwrap().unwrap().id, "a");
        assert_eq!(reader.next().unwrap().unwrap().id, "b");
        assert_eq!(reader.position(), Some((two.as_path(), 2)));
        assert!(reader.next().is_none());
    }

    #[test]
    fn a_missing_file_is_one_error_at_line_0() {
        let got: Vec<_> = RowReader::new(vec![PathBuf::from("/nonexistent/x.jsonl")]).collect();
        assert_eq!(got.len(), 1);
        assert!(
            got[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .starts_with("/nonexistent/x.jsonl:0: cannot open:")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let results = read_bytes(&bytes);
            let lines = bytes.split(|&b| b == b'\n').count() as u64;
            for result in results {
                if let Err(e) = result {
                    prop_assert!(e.line >= 1 && e.line <= lines);
                }
            }
        }

        #[test]
        fn never_panics_on_mangled_rows(prefix in "[\\[\\]{}\",:0-9a-z \\\\]{0,40}", cut in 0usize..80) {
            let text = format!("{prefix}{}", &ROW[..cut.min(ROW.len())]);
            let _ = read_bytes(text.as_bytes());
        }
    }
}
