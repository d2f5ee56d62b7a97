//! From a `--model local...` spec to a GGUF file on disk.
//!
//! - `local`: the default model, `$EVALR_MODEL_DIR/gemma-3-270m-q4_k_m.gguf`
//!   (`~/.cache/evalr/models` by default), installed by `scripts/install-default-model.sh`;
//! - `local:PATH.gguf`: any GGUF file;
//! - `local:hf:OWNER/REPO/FILE.gguf`: a file of a Hugging Face model repository, downloaded
//!   once into the Hugging Face cache with `hf-hub` (honours `HF_ENDPOINT`, `HF_HOME`,
//!   `HF_TOKEN`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use hf_hub::api::tokio::ApiBuilder;

use super::LocalError;

/// File name of the default model inside the models directory.
pub const DEFAULT_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// `$EVALR_MODEL_DIR`, else `~/.cache/evalr/models`.
pub fn default_model_dir() -> Result<PathBuf, LocalError> {
    if let Some(dir) = std::env::var_os("EVALR_MODEL_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(LocalError::NoModelDir)?;
    Ok(Path::new(&home).join(".cache").join("evalr").join("models"))
}

/// Where the default model lives (whether or not it is installed).
pub fn default_model_path() -> Result<PathBuf, LocalError> {
    Ok(default_model_dir()?.join(DEFAULT_MODEL_FILE))
}

/// Resolves a `local`, `local:PATH` or `local:hf:OWNER/REPO/FILE` spec to an existing file,
/// downloading it first for `hf:`. Blocks the calling thread during a download (on a thread
/// of its own, so it may be called from inside an async runtime).
pub fn resolve_local_model(spec: &str) -> Result<PathBuf, LocalError> {
    let bad = |reason: &str| LocalError::BadSpec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    if spec == "local" {
        let path = default_model_path()?;
        if !path.is_file() {
            return Err(LocalError::DefaultModelMissing { path });
        }
        return Ok(path);
    }
    let Some(rest) = spec.strip_prefix("local:") else {
        return Err(bad(
            "a local model is `local`, `local:PATH.gguf` or `local:hf:OWNER/REPO/FILE.gguf`",
        ));
    };
    if let Some(hub) = rest.strip_prefix("hf:") {
        let (repo, file) = split_hub_spec(hub).ok_or_else(|| {
            bad("expected `local:hf:OWNER/REPO/FILE.gguf`, e.g. `local:hf:unsloth/gemma-3-270m-it-GGUF/gemma-3-270m-it-Q4_K_M.gguf`")
        })?;
        return download_from_hub(&repo, &file);
    }
    if rest.is_empty() {
        return Err(bad("the path after `local:` is empty"));
    }
    let path = PathBuf::from(rest);
    if !path.exists() {
        return Err(LocalError::NotFound { path });
    }
    Ok(path)
}

/// `OWNER/REPO/FILE...` -> (`OWNER/REPO`, `FILE...`); the file may sit in a folder.
fn split_hub_spec(hub: &str) -> Option<(String, String)> {
    let mut parts = hub.splitn(3, '/');
    let owner = parts.next().filter(|s| !s.is_empty())?;
    let name = parts.next().filter(|s| !s.is_empty())?;
    let file = parts
        .next()
        .filter(|s| !s.is_empty() && !s.ends_with('/'))?;
    Some((format!("{owner}/{name}"), file.to_string()))
}

fn download_from_hub(repo: &str, file: &str) -> Result<PathBuf, LocalError> {
    let endpoint =
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
    let fail = |reason: String| LocalError::Download {
        repo: repo.to_string(),
        file: file.to_string(),
        endpoint: endpoint.clone(),
        reason,
    };
    let repo_owned = repo.to_string();
    let file_owned = file.to_string();
    // hf-hub's API is async; a thread with its own runtime keeps this function callable from
    // synchronous code and from inside a runtime alike.
    let outcome = std::thread::spawn(move || -> Result<PathBuf, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let mut builder = ApiBuilder::from_env().with_progress(std::io::stderr().is_terminal());
            if let Ok(token) = std::env::var("HF_TOKEN")
                && !token.is_empty()
            {
                builder = builder.with_token(Some(token));
            }
            let api = builder.build().map_err(|e| e.to_string())?;
            api.model(repo_owned)
                .get(&file_owned)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| fail("the download thread panicked".to_string()))?;
    outcome.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::split_hub_spec;

    #[test]
    fn hub_specs_split_into_repo_and_file() {
        assert_eq!(
            split_hub_spec("ggml-org/gemma-3-270m-GGUF/gemma-3-270m-Q8_0.gguf"),
            Some((
                "ggml-org/gemma-3-270m-GGUF".into(),
                "gemma-3-270m-Q8_0.gguf".into()
            ))
        );
        assert_eq!(
            split_hub_spec("a/b/sub/dir/m.gguf"),
            Some(("a/b".into(), "sub/dir/m.gguf".into()))
        );
        assert_eq!(split_hub_spec("a/m.gguf"), None);
        assert_eq!(split_hub_spec("a//m.gguf"), None);
        assert_eq!(split_hub_spec("a/b/"), None);
    }
}
