//! Loading a GGUF file: the process-wide llama.cpp backend, checks that turn a missing or
//! broken file into an error naming its path, and the file's identity.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use sha2::{Digest, Sha256};

use super::LocalError;

/// The first four bytes of every GGUF file.
const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// llama.cpp's global state may be initialised once per process, so every `LocalBackend`
/// (and a test that checks the backend through the low-level API) shares this one.
pub fn llama_backend() -> Result<&'static LlamaBackend, LocalError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    let backend = BACKEND.get_or_init(|| {
        let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
        // llama.cpp logs every tensor it loads to stderr; evalr reports errors itself.
        if std::env::var_os("EVALR_LLAMA_LOG").is_none() {
            backend.void_logs();
        }
        Ok(backend)
    });
    backend
        .as_ref()
        .map_err(|reason| LocalError::Init(reason.clone()))
}

/// Fails with an error naming `path` unless it is a readable file that starts like a GGUF
/// file. llama.cpp's own message for a bad file is a log line, not an error value.
pub fn check_model_file(path: &Path) -> Result<u64, LocalError> {
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LocalError::NotFound {
            path: path.to_path_buf(),
        },
        _ => LocalError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !metadata.is_file() {
        return Err(LocalError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|source| LocalError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let read = read_up_to(&mut file, &mut magic).map_err(|source| LocalError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    if read < magic.len() || &magic != GGUF_MAGIC {
        return Err(LocalError::Corrupt {
            path: path.to_path_buf(),
            reason: "it does not start with the GGUF magic bytes".to_string(),
        });
    }
    Ok(metadata.len())
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

pub fn load_model(backend: &LlamaBackend, path: &Path) -> Result<LlamaModel, LocalError> {
    LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| {
        LocalError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("llama.cpp could not load it ({e}); the file is truncated or corrupt"),
        }
    })
}

/// `local:<file name>@<first 12 hex digits of the file's sha256>`: two different files with the
/// same name never share cached answers. Hashing 253 MB takes well under a second in release
/// builds; it runs while the worker thread loads the model.
pub fn identity(path: &Path) -> Result<String, LocalError> {
    let file = File::open(path).map_err(|source| LocalError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buffer)
            .map_err(|source| LocalError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let digest = hex::encode(hasher.finalize());
    Ok(format!("local:{}@{}", file_name(path), &digest[..12]))
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
