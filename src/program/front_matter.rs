//! Splitting a `.prompty` file into its YAML front matter and its body (Prompty spec §2.2).
//!
//! The spec's rule: an optional BOM and leading whitespace, then `---` or `+++` on a line of its
//! own opens the front matter; the next line that is `---` or `+++` closes it. A file that
//! does not start with a delimiter is all body. A delimiter opened and never closed is an error
//! (the old loader sent such a file's YAML to the model as a system message, silently).

/// The two parts of a program file, with the lines they start on (1-based) so that YAML and
/// template errors can point into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split<'a> {
    /// The YAML between the delimiters; `None` when the file has no front matter.
    pub yaml: Option<&'a str>,
    pub yaml_first_line: usize,
    pub body: &'a str,
    pub body_first_line: usize,
}

/// The front matter was opened on `line` and never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unclosed {
    pub line: usize,
}

fn is_delimiter(line: &str) -> bool {
    matches!(line.trim(), "---" | "+++")
}

/// Splits `text` (BOM already removed or not) into front matter and body.
pub fn split(text: &str) -> Result<Split<'_>, Unclosed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let leading = text.len() - text.trim_start().len();
    let skipped_lines = text[..leading].matches('\n').count();
    let rest = &text[leading..];
    let all_body = Split {
        yaml: None,
        yaml_first_line: 1,
        body: text,
        body_first_line: 1,
    };
    let mut lines = rest.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return Ok(all_body);
    };
    if !is_delimiter(first) {
        return Ok(all_body);
    }
    let open_line = skipped_lines + 1;
    let yaml_start = leading + first.len();
    let mut offset = yaml_start;
    let mut line_no = open_line;
    for line in lines {
        line_no += 1;
        if is_delimiter(line) {
            return Ok(Split {
                yaml: Some(&text[yaml_start..offset]),
                yaml_first_line: open_line + 1,
                body: &text[offset + line.len()..],
                body_first_line: line_no + 1,
            });
        }
        offset += line.len();
    }
    Err(Unclosed { line: open_line })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The spec's normative vectors (§2.2).
    #[test]
    fn spec_vectors() {
        let s = split("---\nname: test\n---\nHello world").unwrap();
        assert_eq!(s.yaml, Some("name: test\n"));
        assert_eq!(s.body, "Hello world");
        assert_eq!(s.body_first_line, 4);

        let s = split("Just a prompt with no frontmatter").unwrap();
        assert_eq!(s.yaml, None);
        assert_eq!(s.body, "Just a prompt with no frontmatter");

        let s = split("---\n---\nBody only").unwrap();
        assert_eq!(s.yaml, Some(""));
        assert_eq!(s.body, "Body only");

        let s = split("  ---\nname: test\n---\nBody").unwrap();
        assert_eq!(s.yaml, Some("name: test\n"));
        assert_eq!(s.body, "Body");
    }

    #[test]
    fn bom_blank_lines_and_plus_delimiters() {
        let s = split("\u{feff}\n\n+++\nname: t\n+++\nuser:\nhi\n").unwrap();
        assert_eq!(s.yaml, Some("name: t\n"));
        assert_eq!(s.yaml_first_line, 4);
        assert_eq!(s.body, "user:\nhi\n");
        assert_eq!(s.body_first_line, 6);
        // CRLF files close the same way.
        let s = split("---\r\nname: t\r\n---\r\nbody").unwrap();
        assert_eq!(s.yaml, Some("name: t\r\n"));
        assert_eq!(s.body, "body");
    }

    #[test]
    fn opened_never_closed_is_an_error_with_its_line() {
        assert_eq!(
            split("\n---\nname: t\nuser:\nhi\n"),
            Err(Unclosed { line: 2 })
        );
    }
}
