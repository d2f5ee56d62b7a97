//! `evalr datasets fetch` against a local hub (tests/integration/common/hf_hub.rs) serving the MMLU
//! mirror in tests/fixtures/hf (a copy of the MMLU test split laid out like the hub, see its README).

use crate::common::hf_hub;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use assert_cmd::Command;
use hf_hub::{Fault, HubMirror};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

const MMLU_HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf");

fn mmlu_parquet(subject: &str) -> PathBuf {
    Path::new(MMLU_HF)
        .join("cais/mmlu")
        .join(subject)
        .join("test-00000-of-00001.parquet")
}

/// A temporary HF_HOME and datasets folder.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn hf_home(&self) -> PathBuf {
        self.dir.path().join("hf-home")
    }

    fn datasets(&self) -> PathBuf {
        self.dir.path().join("datasets")
    }

    /// `evalr datasets fetch ARGS` with the hub at `endpoint` and nothing from the caller's
    /// environment.
    fn fetch(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_evalr"));
        command
            .args(["datasets", "fetch"])
            .args(args)
            .arg("--datasets-dir")
            .arg(self.datasets())
            .env("HF_HOME", self.hf_home())
            .env("HF_ENDPOINT", endpoint)
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("EVALR_DATASETS_DIR")
            .timeout(Duration::from_secs(120));
        command
    }
}

/// The rows of an MMLU parquet file as the JSONL lines evalr must write.
fn expected_lines(parquet: &Path, subject: &str) -> Vec<String> {
    let file = std::fs::File::open(parquet).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut lines = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let question = batch.column_by_name("question").unwrap().as_string::<i32>();
        let choices = batch.column_by_name("choices").unwrap().as_list::<i32>();
        let answer = batch
            .column_by_name("answer")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let options = choices.value(i);
            let options: Vec<&str> = options
                .as_string::<i32>()
                .iter()
                .map(|o| o.unwrap())
                .collect();
            let row = json!({
                "id": format!("mmlu/{subject}/test/{}", lines.len()),
                "dataset": "mmlu",
                "subject": subject,
                "question": question.value(i),
                "choices": options,
                "correct_answer": answer.value(i),
            });
            lines.push(row.to_string());
        }
    }
    lines
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn fetch_writes_the_parquet_rows_and_the_second_fetch_downloads_nothing() {
    let mirror = HubMirror::start(Path::new(MMLU_HF));
    let setup = Setup::new();
    let out = setup.datasets().join("mmlu_anatomy_test.jsonl");

    setup
        .fetch(
            &mirror.endpoint(),
            &["cais/mmlu", "--subject", "anatomy", "--split", "test"],
        )
        .assert()
        .success()
        .stdout(format!("{}: 135 rows\n", out.display()));
    let written = std::fs::read_to_string(&out).unwrap();
    let expected = expected_lines(&mmlu_parquet("anatomy"), "anatomy");
    assert_eq!(expected.len(), 135);
    assert_eq!(written.lines().collect::<Vec<_>>(), expected);
    assert_eq!(mirror.downloads(), 1);
    // The file landed in the hub cache under the commit the hub reported.
    let cached = setup
        .hf_home()
        .join("hub/datasets--cais--mmlu/snapshots")
        .join(mirror.commit("cais/mmlu"))
        .join("anatomy/test-00000-of-00001.parquet");
    assert_eq!(
        std::fs::read(cached).unwrap(),
        std::fs::read(mmlu_parquet("anatomy")).unwrap()
    );

    // Second fetch: the listing is asked again, the file is not.
    mirror.clear_requests();
    std::fs::remove_file(&out).unwrap();
    setup
        .fetch(&mirror.endpoint(), &["cais/mmlu", "--subject", "anatomy"])
        .assert()
        .success();
    let paths: Vec<String> = mirror.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/api/datasets/cais/mmlu/revision/main"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);

    // Offline, with the hub gone: the cache alone answers.
    let endpoint = mirror.endpoint();
    mirror.stop();
    std::fs::remove_file(&out).unwrap();
    setup
        .fetch(&endpoint, &["cais/mmlu", "--subject", "anatomy"])
        .env("HF_HUB_OFFLINE", "1")
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
}

#[test]
fn subject_all_writes_one_file_per_subject_matching_the_published_counts() {
    let mirror = HubMirror::start(Path::new(MMLU_HF));
    let setup = Setup::new();
    let output = setup
        .fetch(&mirror.endpoint(), &["cais/mmlu", "--subject", "all"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.ends_with("57 files, 14042 rows\n"), "{stdout}");
    let mut names: Vec<String> = std::fs::read_dir(setup.datasets())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 57);
    assert!(!names.contains(&"mmlu_all_test.jsonl".to_string()));
    let count = |name: &str| {
        std::fs::read_to_string(setup.datasets().join(name))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(count("mmlu_anatomy_test.jsonl"), 135);
    assert_eq!(count("mmlu_professional_law_test.jsonl"), 1534);
    assert_eq!(count("mmlu_high_school_psychology_test.jsonl"), 545);
    assert_eq!(count("mmlu_abstract_algebra_test.jsonl"), 100);
    let professional_law =
        std::fs::read_to_string(setup.datasets().join("mmlu_professional_law_test.jsonl")).unwrap();
    assert_eq!(
        professional_law.lines().collect::<Vec<_>>(),
        expected_lines(&mmlu_parquet("professional_law"), "professional_law")
    );
    // 57 subject downloads, each once.
    assert_eq!(mirror.downloads(), 57);

    // The committed datasets are exactly what fetch writes.
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    for name in &names {
        assert_eq!(
            std::fs::read(committed.join(name)).unwrap(),
            std::fs::read(setup.datasets().join(name)).unwrap(),
            "{name} differs from the committed file"
        );
    }
}

#[test]
fn a_missing_repository_subject_or_split_is_a_usage_error_naming_what_exists() {
    let mirror = HubMirror::start(Path::new(MMLU_HF));
    let setup = Setup::new();
    let endpoint = mirror.endpoint();
    setup.fetch(&endpoint, &["cais/nothing", "--subject", "anatomy"]).assert().code(2).stderr(format!(
        "error: {endpoint}/api/datasets/cais/nothing/revision/main: HTTP 404 (no such repository, revision or file)\n"
    ));
    let output = setup
        .fetch(&endpoint, &["cais/mmlu", "--subject", "anatomi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.starts_with("error: cais/mmlu: no subject `anatomi` in split `test` (subjects: abstract_algebra, all, anatomy, "), "{stderr}");
    setup
        .fetch(
            &endpoint,
            &["cais/mmlu", "--subject", "anatomy", "--split", "dev"],
        )
        .assert()
        .code(2)
        .stderr("error: cais/mmlu: no parquet files for split `dev` (splits: test)\n");
    setup
        .fetch(&endpoint, &["cais/mmlu", "--subject", "anatomy", "--revision", "v9"])
        .assert()
        .code(2)
        .stderr(format!("error: {endpoint}/api/datasets/cais/mmlu/revision/v9: HTTP 404 (no such repository, revision or file)\n"));
    setup
        .fetch(&endpoint, &["mmlu"])
        .assert()
        .code(2)
        .stderr("error: `mmlu` is not a repository name: expected OWNER/NAME, e.g. cais/mmlu\n");
    assert!(!setup.datasets().exists());
}

#[test]
fn hub_failures_are_clear_errors_with_exit_code_1_and_no_file() {
    let mirror = HubMirror::start(Path::new(MMLU_HF));
    let setup = Setup::new();
    let endpoint = mirror.endpoint();
    let args = ["cais/mmlu", "--subject", "anatomy", "--timeout", "3"];
    let resolve =
        format!("{endpoint}/datasets/cais/mmlu/resolve/main/anatomy/test-00000-of-00001.parquet");

    mirror.inject("/api/", Fault::Status(500));
    setup.fetch(&endpoint, &args).assert().code(1).stderr(format!(
        "error: {endpoint}/api/datasets/cais/mmlu/revision/main: HTTP 500 (the hub failed; try again later)\n"
    ));

    mirror.clear_faults();
    mirror.inject("/resolve/", Fault::Status(503));
    setup
        .fetch(&endpoint, &args)
        .assert()
        .code(1)
        .stderr(format!(
            "error: {resolve}: HTTP 503 (the hub failed; try again later)\n"
        ));

    mirror.clear_faults();
    mirror.inject("/resolve/", Fault::Status(404));
    setup
        .fetch(&endpoint, &args)
        .assert()
        .code(2)
        .stderr(format!(
            "error: {resolve}: HTTP 404 (no such repository, revision or file)\n"
        ));

    mirror.clear_faults();
    mirror.inject("/api/", Fault::Hang);
    setup.fetch(&endpoint, &args).assert().code(1).stderr(format!(
        "error: {endpoint}/api/datasets/cais/mmlu/revision/main: no complete answer within 3 s (see --timeout)\n"
    ));

    mirror.clear_faults();
    mirror.inject("/blobs/", Fault::CutBody);
    setup
        .fetch(&endpoint, &args)
        .assert()
        .code(1)
        .stderr(format!(
            "error: {resolve}: the answer broke off: error reading a body from connection: \
         end of file before message length reached (try again)\n"
        ));

    for fault in [Fault::Drop, Fault::CutBody] {
        mirror.clear_faults();
        mirror.inject("/blobs/", fault.clone());
        let output = setup.fetch(&endpoint, &args).output().unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{fault:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(
            stderr.contains("/blobs/") || stderr.contains(&resolve),
            "{fault:?}: the message names the URL: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    mirror.stop();
    let output = setup.fetch(&endpoint, &args).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach {endpoint}/api/datasets/cais/mmlu/revision/main: "
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(
            "(check HF_ENDPOINT and the network, or set HF_HUB_OFFLINE=1 to use the cache)\n"
        ),
        "{stderr}"
    );
    assert!(!setup.datasets().join("mmlu_anatomy_test.jsonl").exists());

    // Offline with nothing cached.
    setup.fetch(&endpoint, &args).env("HF_HUB_OFFLINE", "1").assert().code(2).stderr(format!(
        "error: offline (HF_HUB_OFFLINE is set): cais/mmlu at `main` was never fetched into the cache {} (fetch it once online)\n",
        setup.hf_home().join("hub/datasets--cais--mmlu").display()
    ));
}

#[test]
fn the_token_is_sent_from_hf_token_and_never_printed() {
    let mirror = HubMirror::start(Path::new(MMLU_HF));
    mirror.require_token("hf_s3cret");
    let setup = Setup::new();
    let endpoint = mirror.endpoint();
    setup.fetch(&endpoint, &["cais/mmlu", "--subject", "anatomy"]).assert().code(2).stderr(format!(
        "error: {endpoint}/api/datasets/cais/mmlu/revision/main: HTTP 401 (the repository is private or gated, \
         or does not exist: set HF_TOKEN to a token that can read it)\n"
    ));
    setup
        .fetch(&endpoint, &["cais/mmlu", "--subject", "anatomy"])
        .env("HF_TOKEN", "hf_s3cret")
        .assert()
        .success();
    let hub_requests: Vec<_> = mirror
        .requests()
        .into_iter()
        .filter(|r| r.server == "hub")
        .collect();
    assert!(hub_requests.len() >= 3);
    assert!(
        hub_requests[1..]
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer hf_s3cret")),
        "{hub_requests:?}"
    );

    mirror.inject("/api/", Fault::Status(500));
    let output = setup
        .fetch(&endpoint, &["cais/mmlu", "--subject", "anatomy"])
        .env("HF_TOKEN", "hf_s3cret")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!stderr_of(&output).contains("s3cret"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("s3cret"));
}

/// Writes a parquet file with other column names than MMLU's, for `--map`.
fn write_custom_parquet(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let column = |values: &[&str]| Arc::new(StringArray::from(values.to_vec())) as ArrayRef;
    let batch = RecordBatch::try_from_iter([
        (
            "prompt",
            column(&["2+2?", "Capital of France?", "Largest planet?"]),
        ),
        ("opa", column(&["3", "Paris", "Mars"])),
        ("opb", column(&["4", "Lyon", "Jupiter"])),
        ("opc", column(&["5", "Nice", "Venus"])),
        ("cop", column(&["B", "A", "B"])),
        ("source", column(&["arith", "geo", "astro"])),
        (
            "year",
            Arc::new(Int64Array::from(vec![2001, 2002, 2003])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn other_repositories_work_with_and_without_a_column_map() {
    let root = tempfile::tempdir().unwrap();
    let tasksource = root.path().join("tasksource/mmlu/anatomy");
    std::fs::create_dir_all(&tasksource).unwrap();
    std::fs::copy(
        mmlu_parquet("anatomy"),
        tasksource.join("test-00000-of-00001.parquet"),
    )
    .unwrap();
    write_custom_parquet(
        &root
            .path()
            .join("someone/quiz/data/test-00000-of-00001.parquet"),
    );
    let mirror = HubMirror::start(root.path());
    let setup = Setup::new();

    setup
        .fetch(
            &mirror.endpoint(),
            &["tasksource/mmlu", "--subject", "anatomy"],
        )
        .assert()
        .success();
    let written =
        std::fs::read_to_string(setup.datasets().join("mmlu_anatomy_test.jsonl")).unwrap();
    assert_eq!(
        written.lines().collect::<Vec<_>>(),
        expected_lines(&mmlu_parquet("anatomy"), "anatomy")
    );

    setup
        .fetch(&mirror.endpoint(), &["someone/quiz"])
        .assert()
        .code(2)
        .stderr("error: someone/quiz/data/test-00000-of-00001.parquet: record 1: field `question`: no such column \
                 (columns: prompt, opa, opb, opc, cop, source, year); name it with --map question=COLUMN\n");
    let out = setup.datasets().join("quiz_test.jsonl");
    setup
        .fetch(
            &mirror.endpoint(),
            &[
                "someone/quiz",
                "--map",
                "question=prompt,choices=opa+opb+opc,answer=cop",
            ],
        )
        .assert()
        .success()
        .stdout(format!("{}: 3 rows\n", out.display()));
    let rows: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows[1],
        json!({"id": "quiz/test/1", "dataset": "quiz", "question": "Capital of France?",
               "choices": ["Paris", "Lyon", "Nice"], "correct_answer": 0, "source": "geo", "year": 2002})
    );
    assert_eq!(rows[2]["correct_answer"], 1);
}

#[test]
fn a_failure_during_subject_all_writes_no_dataset_at_all() {
    let mirror = HubMirror::start(Path::new(MMLU_HF));
    mirror.inject("/resolve/main/virology/", Fault::Status(502));
    let setup = Setup::new();
    let endpoint = mirror.endpoint();
    setup.fetch(&endpoint, &["cais/mmlu", "--subject", "all"]).assert().code(1).stderr(format!(
        "error: {endpoint}/datasets/cais/mmlu/resolve/main/virology/test-00000-of-00001.parquet: \
         HTTP 502 (the hub failed; try again later)\n"
    ));
    assert!(
        !setup.datasets().exists(),
        "files are downloaded before any dataset is written"
    );
    // The retry downloads only what is missing.
    mirror.clear_faults();
    mirror.clear_requests();
    setup
        .fetch(&endpoint, &["cais/mmlu", "--subject", "all"])
        .assert()
        .success();
    let downloaded: Vec<String> = mirror
        .requests()
        .into_iter()
        .filter(|r| r.server == "hub" && r.path.contains("/resolve/"))
        .map(|r| r.path)
        .collect();
    assert!(!downloaded.is_empty());
    assert!(
        downloaded.iter().all(|p| !p.contains("/anatomy/")),
        "{downloaded:?}"
    );
    assert_eq!(std::fs::read_dir(setup.datasets()).unwrap().count(), 57);
}
