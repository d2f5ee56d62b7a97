//! `--model local...` specs: the default model's place, plain paths, and `local:hf:` downloads
//! from a Hub that the test runs on 127.0.0.1 (see local_hub.rs).
//! It is a test binary of its own: it sets process environment variables, which would leak
//! into the other tests of the shared integration binary.
//!
//! Everything runs in one test function because it sets process environment variables
//! (`EVALR_MODEL_DIR`, `HF_ENDPOINT`, `HF_HOME`, `HF_TOKEN`) the way a user does.
#![cfg(feature = "local")]

mod local_hub;

use std::path::PathBuf;

use evalr::backend::Backend;
use evalr::backend::local::{LocalBackend, LocalOptions, resolve_local_model};
use local_hub::LocalHub;

fn set_env(key: &str, value: &str) {
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var(key, value) }
}

/// Deterministic bytes that start like a GGUF file; 23 MB so that hf-hub fetches it in three
/// ranged chunks of 10 MB.
fn blob(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(b"GGUF");
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push((state >> 24) as u8);
    }
    bytes
}

#[test]
fn local_specs_resolve_and_hub_files_download_once_into_the_hf_cache() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    let installed_model = evalr::backend::local::default_model_path().ok();

    // `local` is the default model in EVALR_MODEL_DIR, with a hint when it is missing.
    set_env("EVALR_MODEL_DIR", models.to_str().unwrap());
    let expected = models.join("gemma-3-270m-q4_k_m.gguf");
    let error = resolve_local_model("local").unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the default local model is not installed ({} does not exist): run \
             scripts/install-default-model.sh, or pass --model local:PATH.gguf",
            expected.display()
        )
    );
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(&expected, b"GGUF").unwrap();
    assert_eq!(resolve_local_model("local").unwrap(), expected);

    // `local:PATH`
    let missing = home.path().join("nope.gguf");
    assert_eq!(
        resolve_local_model(&format!("local:{}", missing.display()))
            .unwrap_err()
            .to_string(),
        format!("model file not found: {}", missing.display())
    );
    assert_eq!(
        resolve_local_model(&format!("local:{}", expected.display())).unwrap(),
        expected
    );
    assert_eq!(
        resolve_local_model("llama:model.gguf")
            .unwrap_err()
            .to_string(),
        "invalid local model \"llama:model.gguf\": a local model is `local`, `local:PATH.gguf` \
         or `local:hf:OWNER/REPO/FILE.gguf`"
    );
    assert!(
        resolve_local_model("local:hf:just-a-file.gguf")
            .unwrap_err()
            .to_string()
            .starts_with("invalid local model \"local:hf:just-a-file.gguf\": expected `local:hf:OWNER/REPO/FILE.gguf`")
    );

    // `local:hf:OWNER/REPO/FILE` through HF_ENDPOINT, into HF_HOME, with HF_TOKEN.
    let content = blob(23_000_000);
    let hub = LocalHub::start("evalr-test/tiny-GGUF", "tiny-q4_k_m.gguf", content.clone());
    let hf_home = home.path().join("hf");
    set_env("HF_ENDPOINT", &hub.endpoint);
    set_env("HF_HOME", hf_home.to_str().unwrap());
    set_env("HF_TOKEN", "hf_secret_test_token");
    let path = resolve_local_model("local:hf:evalr-test/tiny-GGUF/tiny-q4_k_m.gguf").unwrap();
    assert_eq!(
        path,
        hf_home
            .join("hub/models--evalr-test--tiny-GGUF/snapshots")
            .join(&hub.commit)
            .join("tiny-q4_k_m.gguf")
    );
    assert!(
        std::fs::read(&path).unwrap() == content,
        "downloaded bytes differ"
    );
    let requests = hub.requests();
    assert_eq!(
        requests[0].path,
        "/evalr-test/tiny-GGUF/resolve/main/tiny-q4_k_m.gguf"
    );
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Bearer hf_secret_test_token")
    );
    let ranges: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/lfs/"))
        .filter_map(|r| r.range.clone())
        .collect();
    assert_eq!(
        ranges,
        [
            "bytes=0-0",
            "bytes=0-9999999",
            "bytes=10000000-19999999",
            "bytes=20000000-23000000"
        ]
    );

    // A second resolution is answered by the cache: no request at all.
    let before = hub.requests().len();
    assert_eq!(
        resolve_local_model("local:hf:evalr-test/tiny-GGUF/tiny-q4_k_m.gguf").unwrap(),
        path
    );
    assert_eq!(hub.requests().len(), before);

    // A file the repository does not have: the error names repo, file and endpoint, never
    // the token.
    let error = resolve_local_model("local:hf:evalr-test/tiny-GGUF/missing.gguf")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "cannot download missing.gguf from the Hugging Face repository evalr-test/tiny-GGUF at {}: ",
            hub.endpoint
        )),
        "{error}"
    );
    assert!(error.contains("404"), "{error}");
    assert!(!error.contains("hf_secret_test_token"), "{error}");

    // The real default model, served by the hub, downloads and loads.
    let Some(model) = installed_model.filter(|p| p.is_file()) else {
        if std::env::var_os("EVALR_REQUIRE_MODEL").is_some() {
            panic!("EVALR_REQUIRE_MODEL is set but the default model is not installed");
        }
        eprintln!(
            "\n*** SKIPPED the Hub download of the real model: the default model is not \
             installed (run scripts/install-default-model.sh) ***\n"
        );
        return;
    };
    let gguf = std::fs::read(&model).unwrap();
    let real_hub = LocalHub::start("google/gemma-3-270m-GGUF", "gemma-3-270m-q4_k_m.gguf", gguf);
    set_env("HF_ENDPOINT", &real_hub.endpoint);
    let downloaded: PathBuf =
        resolve_local_model("local:hf:google/gemma-3-270m-GGUF/gemma-3-270m-q4_k_m.gguf").unwrap();
    let backend = LocalBackend::load(&downloaded, LocalOptions::default()).unwrap();
    assert_eq!(
        backend.identity(),
        "local:gemma-3-270m-q4_k_m.gguf@a5fd3b62230a"
    );
}
