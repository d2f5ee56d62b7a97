//! Every `evalr` command shown in docs/*.md with the exit code the docs state runs here and
//! exits with that code, so the pages cannot drift from the binary.
//!
//! The convention (docs/testing.md, "Commands in the docs"): in a fenced `sh` block, a
//! command line starting with `evalr` (after optional `NAME=value` assignments; a line ending
//! in `\` continues on the next) followed directly by a line `# exit N` is checked. Other
//! commands are examples only. Each checked command runs with `sh -c` in a fresh folder that
//! holds the score fixtures under `results/` (`run-a`, `run-b`, `run-c`, `run-judged`,
//! `corrupt`) and the repository's `datasets/`, with `evalr` on `PATH` being this build, and
//! no model setting of the caller.
//! The environment points Azure OpenAI at a test server on 127.0.0.1 (key `test-key`) that
//! answers every anatomy question right and `4` otherwise (a judge's score), with these
//! substitutions, the only ones:
//!
//! - the endpoint `https://gone.openai.azure.com` becomes a port nothing listens on (a
//!   deployment that answers no request);
//! - a command with `--max-errors` gets a server answering 500 to every request (the stop rule
//!   is what it shows).
//!
//! Commands that need Azure or an AzureML workspace for real cannot run here; the docs
//! simply give them no `# exit` line.

use std::path::Path;
use std::process::Command;

use crate::common::openai_server::{ChatServer, ServerConfig};
use crate::common::runs::{answer_key, dataset_rows};
use crate::common::score_fixtures;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");

/// The stand-in for a deployment that is gone.
const GONE_ENDPOINT: &str = "https://gone.openai.azure.com";

/// The fixture result folders every command finds under `results/`.
const FIXTURES: [&str; 5] = ["run-a", "run-b", "run-c", "run-judged", "corrupt"];

/// One command of the docs with the exit code they state.
#[derive(Debug, Clone, PartialEq)]
struct DocCommand {
    /// `docs/<file>.md:<line>` of the command's first line.
    place: String,
    command: String,
    exit: i32,
}

/// The checked commands of one Markdown page (see the module documentation).
fn commands_in(file: &str, text: &str) -> Vec<DocCommand> {
    let mut found = Vec::new();
    let mut in_sh = false;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            in_sh = !in_sh && matches!(fence.trim(), "sh" | "bash" | "shell" | "console");
            i += 1;
            continue;
        }
        if !in_sh || !is_evalr_command(line) {
            i += 1;
            continue;
        }
        let start = i;
        let mut command = String::new();
        let mut current = line;
        while let Some(head) = current.strip_suffix('\\') {
            command.push_str(head);
            command.push(' ');
            i += 1;
            current = lines.get(i).map_or("", |l| l.trim_end());
        }
        command.push_str(current);
        i += 1;
        let stated = lines.get(i).and_then(|next| {
            let rest = next.trim().strip_prefix("# exit ")?;
            let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
            code.parse::<i32>().ok()
        });
        if let Some(exit) = stated {
            found.push(DocCommand {
                place: format!("docs/{file}:{}", start + 1),
                command: command.trim().to_string(),
                exit,
            });
        }
    }
    found
}

/// `evalr ...`, or `NAME=value ... evalr ...`.
fn is_evalr_command(line: &str) -> bool {
    let is_assignment = |word: &&str| word.contains('=') && !word.starts_with('-');
    line.split_whitespace()
        .find(|word| !is_assignment(word))
        .is_some_and(|word| word == "evalr")
}

fn documented_commands() -> Vec<DocCommand> {
    let mut pages: Vec<_> = std::fs::read_dir(DOCS)
        .expect("docs/")
        .map(|entry| entry.expect("docs entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
        .iter()
        .flat_map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            commands_in(&name, &std::fs::read_to_string(path).expect("page"))
        })
        .collect()
}

/// A fresh folder with the fixtures under `results/`, the repository's `datasets/` and
/// `bin/evalr`, this build.
fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    for name in FIXTURES {
        score_fixtures::write_fixture(name, &dir.path().join("results").join(name));
    }
    // The repository's datasets, as `evalr run --dataset NAME` finds them from its root.
    let datasets = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    std::os::unix::fs::symlink(datasets, dir.path().join("datasets")).expect("link");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin/");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_evalr"), bin.join("evalr")).expect("link");
    dir
}

fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    endpoint
}

/// Runs one documented command as the module documentation says; returns its exit code
/// and what it printed on standard error.
fn run(doc: &DocCommand, healthy: &ChatServer, failing: &ChatServer) -> (Option<i32>, String) {
    let dir = sandbox();
    let server = if doc.command.contains("--max-errors") {
        failing
    } else {
        healthy
    };
    let command = doc.command.replace(GONE_ENDPOINT, &closed_endpoint());
    let output = clean_shell(dir.path())
        .arg(&command)
        .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .output()
        .expect("sh runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `sh -c` in `dir`, with `dir/bin` first on `PATH` and none of the caller's model settings.
fn clean_shell(dir: &Path) -> Command {
    let mut command = Command::new("sh");
    command.current_dir(dir).arg("-c");
    for (name, _) in std::env::vars() {
        if ["AZURE_", "OPENAI_", "EVALR_", "MLFLOW_", "GITHUB_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
    let path = std::env::var("PATH").unwrap_or_default();
    command
        .env("PATH", format!("{}:{path}", dir.join("bin").display()))
        .env("HOME", dir)
        .env("XDG_CACHE_HOME", dir.join(".cache"));
    command
}

#[test]
fn the_convention_reads_commands_continuations_and_stated_codes() {
    let page = "Text.\n\n```sh\nevalr score results/run-a\n# exit 0\nevalr view\nNAME=x evalr run \\\n  --limit 3\n# exit 1: the deployment is gone\n```\n\n```yaml\nevalr compare a b\n# exit 3\n```\n";
    let found = commands_in("x.md", page);
    assert_eq!(
        found,
        [
            DocCommand {
                place: "docs/x.md:4".into(),
                command: "evalr score results/run-a".into(),
                exit: 0
            },
            DocCommand {
                place: "docs/x.md:7".into(),
                command: "NAME=x evalr run    --limit 3".into(),
                exit: 1
            },
        ]
    );
}

#[test]
fn every_documented_command_exits_as_the_docs_say() {
    let commands = documented_commands();
    // Every code the docs state for these commands is shown by at least one example.
    for (verb, codes) in [
        ("run", &[0, 1, 2, 3, 4][..]),
        ("score", &[0, 2][..]),
        ("compare", &[0, 2, 3][..]),
        ("judge", &[0, 2][..]),
    ] {
        for code in codes {
            assert!(
                commands
                    .iter()
                    .any(|c| c.exit == *code && c.command.contains(&format!("evalr {verb} "))),
                "no `evalr {verb}` example in docs/ states `# exit {code}`: {commands:#?}"
            );
        }
    }
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, _) = answer_key(&rows, |_| true);
    let healthy = ChatServer::start(ServerConfig {
        answer_key: key,
        default_answer: "4".into(),
        ..Default::default()
    });
    let failing = ChatServer::start(ServerConfig {
        fail_every: Some(1),
        ..Default::default()
    });
    let mut wrong = Vec::new();
    for doc in &commands {
        let (code, stderr) = run(doc, &healthy, &failing);
        if code != Some(doc.exit) {
            wrong.push(format!(
                "{}: `{}` exited {code:?}, the docs say {}\n{stderr}",
                doc.place, doc.command, doc.exit
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
