//! Embeddings and kNN examples on the embedded model (the real Gemma 3 270M GGUF). Skipped
//! loudly when the model is not installed, unless `EVALR_REQUIRE_MODEL` is set (CI sets it).

use crate::common::runs;
use crate::common::runs::succeeds;

use evalr::examples::vectors::VectorTable;
use runs::{dataset_rows, evalr, model_installed, read_jsonl};
use serde_json::{Value, json};

fn row(id: &str, question: &str) -> Value {
    json!({"id": id, "question": question, "choices": ["yes", "no"], "correct_answer": 0})
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn the_embedded_model_embeds_rows_into_unit_vectors_that_rank_by_meaning() {
    if !model_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("questions.jsonl");
    let rows = [
        row(
            "heart",
            "Which chamber of the heart pumps blood into the aorta?",
        ),
        row(
            "heart-again",
            "Which chamber of the heart pumps blood into the aorta?",
        ),
        row(
            "heart-near",
            "Which heart chamber sends blood out through the aorta?",
        ),
        row(
            "tax",
            "What is the marginal income tax rate for a corporation in 1990?",
        ),
    ];
    std::fs::write(
        &dataset,
        rows.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let output = dir.path().join("local.parquet");
    let run = || {
        evalr()
            .arg("embed")
            .arg(&dataset)
            .args(["--model", "local", "--threads", "2", "--no-cache"])
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The repeated question is embedded once.
    assert!(stdout.contains("4 rows (4 computed"), "{stdout}");
    let identity = {
        let file = std::fs::File::open(&output).unwrap();
        let reader =
            parquet::file::reader::SerializedFileReader::new(file).expect("a parquet file");
        use parquet::file::reader::FileReader;
        reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == "evalr.model").cloned())
            .and_then(|k| k.value)
            .unwrap()
    };
    assert!(
        identity.starts_with("local:gemma-3-270m-q4_k_m.gguf@"),
        "{identity}"
    );
    let table = VectorTable::read(&output, &identity).unwrap().unwrap();
    assert_eq!(table.order, ["heart", "heart-again", "heart-near", "tax"]);
    let vector = |id: &str| table.by_id[id].vector.clone();
    for id in &table.order {
        let v = vector(id);
        // Gemma 3 270M's hidden size.
        assert_eq!(v.len(), 640);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(
            (cosine(&v, &v) - 1.0).abs() < 1e-4,
            "{id} is not unit length"
        );
    }
    assert_eq!(vector("heart"), vector("heart-again"));
    let near = cosine(&vector("heart"), &vector("heart-near"));
    let far = cosine(&vector("heart"), &vector("tax"));
    assert!(near > far, "paraphrase {near} vs unrelated {far}");
    // A second pass finds every vector in the file.
    let again = run();
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("0 computed in 0 requests, 4 from the file")
    );
}

#[test]
fn a_knn_run_on_the_embedded_model_records_its_nearest_examples() {
    if !model_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("runs/knn");
    succeeds(
        evalr()
            .args([
                "run",
                "--program",
                "knn_few_shot",
                "--dataset",
                "mmlu_anatomy_test",
                "--examples",
                "mmlu_college_medicine_test",
                "--shots",
                "2",
                "--limit",
                "3",
                "--model",
                "local",
                "--threads",
                "2",
                "--no-cache",
                "--quiet",
            ])
            .arg("--results-dir")
            .arg(&folder),
    );
    let records = read_jsonl(&folder.join("outputs.jsonl"));
    assert_eq!(records.len(), 3);
    let pool: Vec<String> = dataset_rows("mmlu_college_medicine_test")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for record in &records {
        let examples = record["examples"].as_array().unwrap();
        assert_eq!(examples.len(), 2);
        let sims: Vec<f64> = examples
            .iter()
            .map(|e| e["similarity"].as_f64().unwrap())
            .collect();
        assert!(sims[0] >= sims[1] && sims[0] <= 1.0 + 1e-6, "{sims:?}");
        assert!(
            examples
                .iter()
                .all(|e| pool.contains(&e["id"].as_str().unwrap().to_string()))
        );
    }
    // Both embeddings files sit in runs/embeddings.
    assert_eq!(
        std::fs::read_dir(dir.path().join("runs/embeddings"))
            .unwrap()
            .count(),
        2
    );
}
