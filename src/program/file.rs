//! Program files: Prompty-style YAML front matter plus a Jinja body.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ProgramError;

/// Parameters a program sets for its calls unless a call overrides them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultParameters {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
}

/// How many few-shot examples a program wants from `--examples`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExamplesSpec {
    pub count: usize,
    /// How examples are chosen from the pool (`--pick` overrides): `random` (the default) or
    /// `knn` (the pool rows nearest the row by embedding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<ExamplePick>,
}

/// How few-shot examples are chosen from their pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExamplePick {
    /// A seeded order per subject (same subject first), shared by the subject's rows.
    Random,
    /// The k pool rows whose question embeddings are nearest the row's (cosine).
    Knn,
}

impl std::str::FromStr for ExamplePick {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "random" => Ok(ExamplePick::Random),
            "knn" => Ok(ExamplePick::Knn),
            _ => Err(format!("unknown pick `{text}`: use knn or random")),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    parameters: DefaultParameters,
    answer: Option<String>,
    examples: Option<ExamplesSpec>,
    ensemble: Option<super::EnsembleSpec>,
}

/// A parsed program file.
#[derive(Debug, Clone)]
pub struct ProgramFile {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    /// Row fields the program reads; checked against each row before any call.
    pub inputs: Vec<String>,
    pub parameters: DefaultParameters,
    /// The capture whose selected option is the row's answer.
    pub answer_capture: String,
    pub examples: Option<ExamplesSpec>,
    /// Repeats, choice shuffling and vote reduction the program asks for (flags override).
    pub ensemble: Option<super::EnsembleSpec>,
    /// The Jinja body.
    pub body: String,
    /// Line of the file on which the body starts (1-based), so template errors point at the file.
    pub body_first_line: usize,
    pub sha256: String,
}

impl ProgramFile {
    pub fn load(path: &Path) -> Result<ProgramFile, ProgramError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProgramError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ProgramFile, ProgramError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        let (front, body, body_first_line) = split_front_matter(text);
        let front: FrontMatter = match front {
            Some(yaml) if !yaml.trim().is_empty() => {
                serde_yaml::from_str(yaml).map_err(|e| ProgramError::FrontMatter {
                    path: path.to_path_buf(),
                    // The YAML starts on line 2 of the file, after the opening `---`.
                    line: e.location().map(|l| l.line() + 1).unwrap_or(1),
                    message: e.to_string(),
                })?
            }
            _ => FrontMatter::default(),
        };
        let name = front.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Ok(ProgramFile {
            name,
            description: front.description,
            path: path.to_path_buf(),
            inputs: front.inputs,
            parameters: front.parameters,
            answer_capture: front.answer.unwrap_or_else(|| "answer".to_string()),
            examples: front.examples,
            ensemble: front.ensemble,
            body: body.to_string(),
            body_first_line,
            sha256,
        })
    }
}

/// Splits `---\nyaml\n---\nbody` into (yaml, body, first line of body).
fn split_front_matter(text: &str) -> (Option<&str>, &str, usize) {
    let mut lines = text.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return (None, text, 1);
    };
    if first.trim_end() != "---" {
        return (None, text, 1);
    }
    let mut offset = first.len();
    let yaml_start = offset;
    let mut line_no = 1;
    for line in lines {
        line_no += 1;
        if line.trim_end() == "---" {
            let yaml = &text[yaml_start..offset];
            let body = &text[offset + line.len()..];
            return (Some(yaml), body, line_no + 1);
        }
        offset += line.len();
    }
    // No closing `---`: treat the whole file as body so the template error points at it.
    (None, text, 1)
}

/// Finds programs by name in a programs folder (`NAME` -> `programs/NAME.prompty`) or by path.
pub fn resolve_program(spec: &str, programs_dir: &Path) -> Result<PathBuf, ProgramError> {
    // A name (`zero_shot`, `judges/coherence`) first, then a path to a file.
    let named = programs_dir.join(format!("{spec}.prompty"));
    if !spec.ends_with(".prompty") && named.is_file() {
        return Ok(named);
    }
    let as_path = Path::new(spec);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    Err(ProgramError::NotFound {
        spec: spec.to_string(),
        available: list_programs(programs_dir).unwrap_or_default().join(", "),
    })
}

/// Program names in a folder (recursively, `judges/coherence` for sub-folders), sorted.
pub fn list_programs(programs_dir: &Path) -> std::io::Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path, &format!("{prefix}{file_name}/"), out)?;
            } else if let Some(stem) = file_name.strip_suffix(".prompty") {
                out.push(format!("{prefix}{stem}"));
            }
        }
        Ok(())
    }
    let mut names = Vec::new();
    walk(programs_dir, "", &mut names)?;
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_front_matter_and_body_line() {
        let text = "---\nname: t\ninputs: [question]\nparameters:\n  temperature: 0\n---\nuser:\n{{ question }}\n";
        let program = ProgramFile::parse(Path::new("t.prompty"), text).unwrap();
        assert_eq!(program.name, "t");
        assert_eq!(program.inputs, vec!["question"]);
        assert_eq!(program.parameters.temperature, Some(0.0));
        assert_eq!(program.body, "user:\n{{ question }}\n");
        assert_eq!(program.body_first_line, 7);
        assert_eq!(program.answer_capture, "answer");
    }

    #[test]
    fn unknown_front_matter_key_names_the_line() {
        let text = "---\nname: t\ntemprature: 0\n---\nuser:\nhi\n";
        let err = ProgramFile::parse(Path::new("p/t.prompty"), text).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("p/t.prompty:3:"), "{message}");
        assert!(message.contains("temprature"), "{message}");
    }

    #[test]
    fn file_without_front_matter_is_all_body() {
        let program = ProgramFile::parse(Path::new("x.prompty"), "user:\nhi").unwrap();
        assert_eq!(program.name, "x");
        assert_eq!(program.body, "user:\nhi");
        assert_eq!(program.body_first_line, 1);
    }
}
