//! `evalr datasets convert | list | show`, and the reader's edge cases as users meet them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Value, json};

const MMLU_HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf");

fn evalr(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evalr"));
    command
        .args(args)
        .env_remove("EVALR_DATASETS_DIR")
        .timeout(Duration::from_secs(120));
    command
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

const ROW_A: &str = r#"{"id":"a","question":"Q1?","choices":["x","y"],"correct_answer":1}"#;
const ROW_B: &str = r#"{"id":"b","question":"Q2?","choices":["x","y","z"],"correct_answer":2}"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The rows `show` prints, one JSON value per `--row`, until it fails.
fn show_row(file: &Path, row: u64) -> std::process::Output {
    evalr(&[
        "datasets",
        "show",
        path_str(file),
        "--row",
        &row.to_string(),
    ])
    .output()
    .unwrap()
}

fn shown_id(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row: Value = serde_json::from_slice(&output.stdout).unwrap();
    row["id"].as_str().unwrap().to_string()
}

#[test]
fn bom_crlf_blank_lines_and_no_final_newline_read_as_rows() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "x.jsonl",
        format!("\u{feff}{ROW_A}\r\n\r\n{ROW_B}").as_bytes(),
    );
    assert_eq!(shown_id(&show_row(&file, 0)), "a");
    assert_eq!(shown_id(&show_row(&file, 1)), "b");
    evalr(&["datasets", "show", path_str(&file), "--row", "2"])
        .assert()
        .code(2)
        .stderr("error: x has 2 rows; there is no row 2 (rows count from 0)\n");
}

#[test]
fn malformed_lines_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 6] = [
        (
            "types.jsonl",
            br#"{"id":"a","question":"q","choices":"xy"}"#,
            "2: field `choices`: expected an array of strings, found a string",
        ),
        (
            "range.jsonl",
            br#"{"id":"a","question":"q","choices":["x"],"correct_answer":1}"#,
            "2: field `correct_answer`: 1 is out of range: there are 1 choices (valid: 0..=0)",
        ),
        (
            "question.jsonl",
            br#"{"id":"a","question":["q"],"choices":["x"]}"#,
            "2: field `question`: expected a string, found an array",
        ),
        (
            "utf8.jsonl",
            b"{\"id\":\"a\",\"question\":\"\xff\",\"choices\":[\"x\"]}",
            "2: not valid UTF-8 (byte 23 of the line)",
        ),
        (
            "truncated.jsonl",
            br#"{"id":"a","question":"q","cho"#,
            "2: truncated JSON: EOF while parsing a string (column 29)",
        ),
        (
            "notjson.jsonl",
            b"id,question",
            "2: invalid JSON: expected value (column 1)",
        ),
    ];
    for (name, bad_line, message) in cases {
        let mut bytes = format!("{ROW_A}\n").into_bytes();
        bytes.extend_from_slice(bad_line);
        let file = write(dir.path(), name, &bytes);
        assert_eq!(shown_id(&show_row(&file, 0)), "a");
        evalr(&["datasets", "show", path_str(&file), "--row", "1"])
            .assert()
            .code(2)
            .stderr(format!("error: {}:{message}\n", file.display()));
    }
}

#[test]
fn an_empty_file_and_a_10_mb_line() {
    let dir = tempfile::tempdir().unwrap();
    let datasets = dir.path().join("datasets");
    write(&datasets, "empty.jsonl", b"");
    let long = "y".repeat(10 * 1024 * 1024);
    let big = ROW_B.replace("Q2?", &long);
    write(
        &datasets,
        "long.jsonl",
        format!("{big}\n{ROW_A}\n").as_bytes(),
    );
    evalr(&["datasets", "list", "--datasets-dir", path_str(&datasets)])
        .assert()
        .success()
        .stdout(
            "NAME      ROWS  INVALID  SUBJECTS\n\
         empty        0        0  -\n\
         long         2        0  -\n\
         total        2        0  2 datasets\n",
        );
    let output = evalr(&[
        "datasets",
        "show",
        "long",
        "--row",
        "0",
        "--datasets-dir",
        path_str(&datasets),
    ])
    .output()
    .unwrap();
    let row: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(row["question"].as_str().unwrap().len(), long.len());
}

#[test]
fn list_counts_rows_invalid_lines_and_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let datasets = dir.path().join("datasets");
    let row = |id: &str, subject: &str| {
        json!({"id": id, "subject": subject, "question": "q", "choices": ["a", "b"], "correct_answer": 0}).to_string()
    };
    write(
        &datasets,
        "mixed.jsonl",
        format!(
            "{}\n{}\nnot json\n{}\n",
            row("1", "law"),
            row("2", "law"),
            row("3", "art")
        )
        .as_bytes(),
    );
    write(
        &datasets,
        "folder/b.jsonl",
        format!("{}\n", row("b", "x")).as_bytes(),
    );
    write(
        &datasets,
        "folder/a.jsonl",
        format!("{}\n", row("a", "x")).as_bytes(),
    );
    evalr(&["datasets", "list", "--datasets-dir", path_str(&datasets)])
        .assert()
        .success()
        .stdout(
            "NAME       ROWS  INVALID  SUBJECTS\n\
         folder        2        0  x\n\
         mixed         3        1  art, law\n\
         total         5        1  2 datasets\n",
        );
    // A folder reads its files in name order; its name is the folder's.
    let output = evalr(&[
        "datasets",
        "show",
        "folder",
        "--datasets-dir",
        path_str(&datasets),
    ])
    .output()
    .unwrap();
    let summary = String::from_utf8(output.stdout).unwrap();
    let a = datasets.join("folder/a.jsonl");
    let b = datasets.join("folder/b.jsonl");
    assert!(
        summary.starts_with(&format!(
            "name: folder\nfiles:\n  {}\n  {}\nsha256: ",
            a.display(),
            b.display()
        )),
        "{summary}"
    );
    assert!(
        summary.ends_with("rows: 2\ninvalid lines: 0\nsubjects: 1\n  x: 2\n"),
        "{summary}"
    );
    assert_eq!(
        shown_id(
            &evalr(&[
                "datasets",
                "show",
                "folder",
                "--id",
                "b",
                "--datasets-dir",
                path_str(&datasets)
            ])
            .output()
            .unwrap()
        ),
        "b"
    );
}

#[test]
fn unknown_names_list_what_exists_with_exit_code_2() {
    let datasets = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    evalr(&["datasets", "show", "anatomy", "--datasets-dir", path_str(&datasets)]).assert().code(2).stderr(format!(
        "error: dataset `anatomy` not found: no file or folder `anatomy`, no {} and no folder {}; similar names: mmlu_anatomy_test\n",
        datasets.join("anatomy.jsonl").display(),
        datasets.join("anatomy").display()
    ));
    let output = evalr(&[
        "datasets",
        "show",
        "mmlu_anatomy_test",
        "--row",
        "17",
        "--datasets-dir",
        path_str(&datasets),
    ])
    .output()
    .unwrap();
    assert_eq!(shown_id(&output), "mmlu/anatomy/test/17");
}

#[test]
fn convert_the_all_parquet_gives_the_committed_subject_files_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mmlu_all_test.jsonl");
    let input = Path::new(MMLU_HF).join("cais/mmlu/all/test-00000-of-00001.parquet");
    evalr(&[
        "datasets",
        "convert",
        path_str(&input),
        "--out",
        path_str(&out),
    ])
    .assert()
    .success()
    .stdout(format!("{}: 14042 rows, 57 subjects\n", out.display()));
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("mmlu_")
        })
        .collect();
    names.sort();
    let joined: Vec<u8> = names
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(names.len(), 57);
    assert!(
        std::fs::read(&out).unwrap() == joined,
        "convert of `all` differs from the 57 fetched files"
    );
}

#[test]
fn convert_the_original_mmlu_csv_layout() {
    let dir = tempfile::tempdir().unwrap();
    // No header, letter answers, quoted fields with commas and quotes, CRLF.
    let csv = "\"Which bone, if any, is in the ear?\",Femur,Stapes,Tibia,\"None, \"\"really\"\"\",B\r\n\
               What is 2+2?,3,4,5,6,B\r\n";
    let input = write(dir.path(), "anatomy_test.csv", csv.as_bytes());
    let out = dir.path().join("out/mmlu_anatomy_test.jsonl");
    evalr(&[
        "datasets",
        "convert",
        path_str(&input),
        "--out",
        path_str(&out),
    ])
    .assert()
    .success()
    .stdout(format!("{}: 2 rows, 1 subjects\n", out.display()));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!(
            "{}\n{}\n",
            json!({"id": "mmlu/anatomy/test/0", "dataset": "mmlu", "subject": "anatomy",
                   "question": "Which bone, if any, is in the ear?",
                   "choices": ["Femur", "Stapes", "Tibia", "None, \"really\""], "correct_answer": 1}),
            json!({"id": "mmlu/anatomy/test/1", "dataset": "mmlu", "subject": "anatomy",
                   "question": "What is 2+2?", "choices": ["3", "4", "5", "6"], "correct_answer": 1})
        )
    );

    // A CSV with a header and other names, through --map.
    let input = write(
        dir.path(),
        "quiz.csv",
        b"prompt,one,two,gold,source\nSky?,blue,green,blue,web\n",
    );
    let out = dir.path().join("quiz.jsonl");
    evalr(&[
        "datasets",
        "convert",
        path_str(&input),
        "--out",
        path_str(&out),
        "--map",
        "question=prompt,choices=one+two,answer=gold",
    ])
    .assert()
    .success();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!(
            "{}\n",
            json!({"id": "quiz/0", "dataset": "quiz", "question": "Sky?", "choices": ["blue", "green"],
                   "correct_answer": 0, "source": "web"})
        )
    );
}

#[test]
fn convert_jsonl_keeps_extra_keys_and_fills_ids_like_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"question":"q","choices":["a","b"],"correct_answer":0,"few_shot":[{"q":"x"}],"context":"ctx"}"#;
    let input = write(
        dir.path(),
        "raw.jsonl",
        format!("\u{feff}{line}\r\n{line}\r\n").as_bytes(),
    );
    let out = dir.path().join("promptbase_x.jsonl");
    evalr(&[
        "datasets",
        "convert",
        path_str(&input),
        "--out",
        path_str(&out),
    ])
    .assert()
    .success();
    let rows: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_id = rows[0]["id"].as_str().unwrap().to_string();
    assert!(
        first_id.starts_with("sha256:") && first_id.len() == 23,
        "{first_id}"
    );
    assert_eq!(rows[1]["id"], format!("{first_id}-2"));
    assert_eq!(
        serde_json::to_string(&rows[0]).unwrap(),
        format!(
            r#"{{"id":"{first_id}","dataset":"promptbase","question":"q","choices":["a","b"],"correct_answer":0,"few_shot":[{{"q":"x"}}],"context":"ctx"}}"#
        )
    );
    // The converted file and the raw file give the same ids.
    let raw = evalr(&["datasets", "show", path_str(&input), "--row", "1"])
        .output()
        .unwrap();
    assert_eq!(shown_id(&raw), format!("{first_id}-2"));
}

#[test]
fn a_failed_convert_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.jsonl",
        format!(
            "{ROW_A}\n{}\n{ROW_B}\n",
            r#"{"question":"q","choices":[1]}"#
        )
        .as_bytes(),
    );
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("x.jsonl");
    evalr(&["datasets", "convert", path_str(&input), "--out", path_str(&out)])
        .assert()
        .code(2)
        .stderr(format!(
            "error: cannot convert {}: {}:2: field `choices`: expected an array of strings, found an array holding a number\n",
            input.display(),
            input.display()
        ));
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "no output and no temporary file"
    );

    evalr(&["datasets", "convert", path_str(&input), "--out", path_str(&out), "--skip-invalid"])
        .assert()
        .success()
        .stdout(format!("{}: 2 rows, 0 subjects, 1 skipped\n", out.display()))
        .stderr(format!(
            "skipped: {}:2: field `choices`: expected an array of strings, found an array holding a number\n",
            input.display()
        ));

    let csv = write(dir.path(), "bad_test.csv", b"q,a,b,E\n");
    evalr(&["datasets", "convert", path_str(&csv), "--out", path_str(&out_dir.join("y.jsonl"))])
        .assert()
        .code(2)
        .stderr(format!(
            "error: cannot convert {}: {}: line 1: field `answer`: `E` (index 4) is out of range: there are 2 choices\n",
            csv.display(),
            csv.display()
        ));
    let parquet = write(dir.path(), "broken.parquet", b"PAR1 not really");
    let output = evalr(&[
        "datasets",
        "convert",
        path_str(&parquet),
        "--out",
        path_str(&out_dir.join("z.jsonl")),
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot convert {0}: {0}: not a readable parquet file: ",
            parquet.display()
        )),
        "{stderr}"
    );
    assert!(!out_dir.join("y.jsonl").exists() && !out_dir.join("z.jsonl").exists());
}
