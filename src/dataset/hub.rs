//! Fetching parquet files from a Hugging Face dataset repository with `hf-hub`, and turning
//! them into JSONL datasets.
//!
//! The hub conventions are hf-hub's and huggingface_hub's: `HF_HOME` (cache in
//! `$HF_HOME/hub`, default `~/.cache/huggingface/hub`), `HF_ENDPOINT` (default
//! `https://huggingface.co`), `HF_TOKEN` (else the token file `$HF_HOME/token`), and
//! `HF_HUB_OFFLINE=1` (no network: files come from the cache or the fetch fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::tokio::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use super::DatasetError;
use super::convert::{ColumnMap, RowBuilder, RowSink};
use super::records::read_parquet;

/// Failures talking to the hub or finding files in a repository.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error(
        "cannot reach {url}: {message} (check HF_ENDPOINT and the network, or set HF_HUB_OFFLINE=1 to use the cache)"
    )]
    Unreachable { url: String, message: String },
    #[error("{url}: no complete answer within {seconds} s (see --timeout)")]
    Timeout { url: String, seconds: u64 },
    #[error("{url}: the answer broke off: {message} (try again)")]
    Interrupted { url: String, message: String },
    #[error("{url}: unexpected answer: {message}")]
    Protocol { url: String, message: String },
    #[error("{repo}: {message}")]
    NoFiles { repo: String, message: String },
    #[error("offline (HF_HUB_OFFLINE is set): {message}")]
    Offline { message: String },
    #[error("hub cache {}: {message}", path.display())]
    Cache { path: PathBuf, message: String },
}

impl HubError {
    /// True when the user must change something (repository, subject, split, token,
    /// offline cache): exit code 2. Server failures, timeouts and unreachable hosts are
    /// worth a retry: exit code 1.
    pub fn is_usage(&self) -> bool {
        match self {
            HubError::Status { status, .. } => (400..500).contains(status),
            HubError::NoFiles { .. } | HubError::Offline { .. } => true,
            HubError::Unreachable { .. }
            | HubError::Timeout { .. }
            | HubError::Interrupted { .. }
            | HubError::Protocol { .. }
            | HubError::Cache { .. } => false,
        }
    }
}

/// What to fetch and where to write it.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `owner/name` of a dataset repository, e.g. `cais/mmlu`.
    pub repo: String,
    /// A subject (config folder) name, `all` for one file per subject, or `None` for a
    /// repository without subjects.
    pub subject: Option<String>,
    pub split: String,
    pub revision: String,
    pub map: ColumnMap,
    /// The `dataset` field and file name prefix; default: the repository name (`mmlu`).
    pub dataset: Option<String>,
    pub datasets_dir: PathBuf,
    /// Limit for each hub request (listing, each file download).
    pub timeout: Duration,
    pub progress: bool,
}

/// One JSONL file written by a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    pub path: PathBuf,
    pub subject: Option<String>,
    pub rows: u64,
    /// The repository files it was made from.
    pub sources: Vec<String>,
}

/// A group of repository files that becomes one JSONL file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    subject: Option<String>,
    files: Vec<String>,
}

fn env_is_true(name: &str) -> bool {
    std::env::var(name)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// Downloads (or finds in the cache) the parquet files of `options.repo` for the subject
/// and split, and writes one JSONL dataset per subject into `options.datasets_dir`.
pub async fn fetch(options: &FetchOptions) -> Result<Vec<FetchedFile>, DatasetError> {
    let offline = env_is_true("HF_HUB_OFFLINE");
    let cache = Cache::from_env();
    let repo = Repo::with_revision(
        options.repo.clone(),
        RepoType::Dataset,
        options.revision.clone(),
    );
    let endpoint = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
        .trim_end_matches('/')
        .to_string();
    let repo_dir = cache.path().join(repo.folder_name());

    let online = if offline {
        None
    } else {
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| cache.token());
        let api = ApiBuilder::from_env()
            .with_endpoint(endpoint.clone())
            .with_token(token)
            .with_progress(options.progress)
            .build()
            .map_err(|e| hub_error(e, &endpoint))?;
        Some(api.repo(repo.clone()))
    };
    let (commit, files) = match &online {
        None => cached_listing(&repo_dir, &options.repo, &options.revision)?,
        Some(api_repo) => {
            let info_url = format!(
                "{endpoint}/api/datasets/{}/revision/{}",
                options.repo,
                repo.url_revision()
            );
            let info = tokio::time::timeout(options.timeout, api_repo.info())
                .await
                .map_err(|_| HubError::Timeout {
                    url: info_url.clone(),
                    seconds: options.timeout.as_secs(),
                })?
                .map_err(|e| hub_error(e, &info_url))?;
            (
                info.sha,
                info.siblings
                    .into_iter()
                    .map(|s| s.rfilename)
                    .collect::<Vec<String>>(),
            )
        }
    };

    let groups = plan(&files, options.subject.as_deref(), &options.split).map_err(|message| {
        HubError::NoFiles {
            repo: options.repo.clone(),
            message,
        }
    })?;

    // Download every file first, so that a failure leaves no partial set of datasets.
    let mut local: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in groups.iter().flat_map(|g| g.files.iter()) {
        let cached = repo_dir.join("snapshots").join(&commit).join(file);
        if cached.is_file() {
            // Cached at the commit the hub reports now: no download.
            local.insert(file.clone(), cached);
            continue;
        }
        let Some(api_repo) = &online else {
            return Err(HubError::Offline {
                message: format!(
                    "{file} of {} is not in the cache {}",
                    options.repo,
                    repo_dir.display()
                ),
            }
            .into());
        };
        let url = format!(
            "{endpoint}/datasets/{}/resolve/{}/{file}",
            options.repo,
            repo.url_revision()
        );
        let path = tokio::time::timeout(options.timeout, api_repo.download(file))
            .await
            .map_err(|_| HubError::Timeout {
                url: url.clone(),
                seconds: options.timeout.as_secs(),
            })?
            .map_err(|e| hub_error(e, &url))?;
        local.insert(file.clone(), path);
    }

    let dataset = options.dataset.clone().unwrap_or_else(|| {
        options
            .repo
            .rsplit('/')
            .next()
            .unwrap_or(&options.repo)
            .to_ascii_lowercase()
    });
    let mut written = Vec::with_capacity(groups.len());
    for group in groups {
        let name = match &group.subject {
            Some(subject) => format!("{dataset}_{subject}_{}.jsonl", options.split),
            None => format!("{dataset}_{}.jsonl", options.split),
        };
        let out = options.datasets_dir.join(name);
        let mut builder = RowBuilder::new(
            options.map.clone(),
            dataset.clone(),
            group.subject.clone(),
            Some(options.split.clone()),
        );
        let mut sink = RowSink::create(&out, false)?;
        for file in &group.files {
            let path = &local[file];
            let name = PathBuf::from(format!("{}/{file}", options.repo));
            read_parquet(path, |number, record| {
                sink.push(&name, "record", number, builder.build(record))
            })?;
        }
        let summary = sink.finish()?;
        written.push(FetchedFile {
            path: out,
            subject: group.subject,
            rows: summary.rows,
            sources: group.files,
        });
    }
    Ok(written)
}

/// The commit and file list of a cached revision (offline mode).
fn cached_listing(
    repo_dir: &Path,
    repo: &str,
    revision: &str,
) -> Result<(String, Vec<String>), HubError> {
    let ref_path = repo_dir.join("refs").join(revision);
    let commit = match std::fs::read_to_string(&ref_path) {
        Ok(commit) => commit.trim().to_string(),
        Err(_) if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) => {
            revision.to_string()
        }
        Err(_) => {
            return Err(HubError::Offline {
                message: format!(
                    "{repo} at `{revision}` was never fetched into the cache {} (fetch it once online)",
                    repo_dir.display()
                ),
            });
        }
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    let mut files = Vec::new();
    walk(&snapshot, &snapshot, &mut files).map_err(|e| HubError::Cache {
        path: snapshot.clone(),
        message: e.to_string(),
    })?;
    files.sort();
    Ok((commit, files))
}

fn walk(root: &Path, folder: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push(parts.join("/"));
        }
    }
    Ok(())
}

/// The split a repository file belongs to, from hub naming conventions:
/// `anatomy/test-00000-of-00001.parquet`, `data/test-*.parquet`, `test/0000.parquet`.
fn split_of(file: &str) -> Option<String> {
    let parts: Vec<&str> = file.split('/').collect();
    let name = parts.last()?.strip_suffix(".parquet")?;
    let stem = name.split(['-', '.']).next().unwrap_or(name);
    if !stem.is_empty() && !stem.chars().all(|c| c.is_ascii_digit()) {
        return Some(stem.to_string());
    }
    parts.len().checked_sub(2).map(|i| parts[i].to_string())
}

/// The subject (config) a file belongs to: the nearest folder that is neither `data` nor the
/// split's own folder.
fn subject_of(file: &str, split: &str) -> Option<String> {
    let parts: Vec<&str> = file.split('/').collect();
    parts[..parts.len().saturating_sub(1)]
        .iter()
        .rev()
        .find(|p| **p != "data" && **p != split && !p.is_empty())
        .map(|p| p.to_string())
}

/// Chooses the files for the subject and split; the error message lists what exists.
fn plan(files: &[String], subject: Option<&str>, split: &str) -> Result<Vec<Group>, String> {
    let candidates: Vec<&String> = files
        .iter()
        .filter(|f| split_of(f).as_deref() == Some(split))
        .collect();
    if candidates.is_empty() {
        let mut splits: Vec<String> = files.iter().filter_map(|f| split_of(f)).collect();
        splits.sort();
        splits.dedup();
        return Err(if splits.is_empty() {
            "no parquet files in this repository".to_string()
        } else {
            format!(
                "no parquet files for split `{split}` (splits: {})",
                splits.join(", ")
            )
        });
    }
    let mut by_subject: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for file in &candidates {
        by_subject
            .entry(subject_of(file, split))
            .or_default()
            .push((*file).clone());
    }
    let subjects: Vec<&str> = by_subject.keys().flatten().map(String::as_str).collect();
    let listing = || subjects.join(", ");
    match subject {
        Some("all") => {
            let groups: Vec<Group> = by_subject
                .iter()
                .filter_map(|(s, f)| match s.as_deref() {
                    Some("all") | None => None,
                    Some(name) => Some(Group {
                        subject: Some(name.to_string()),
                        files: f.clone(),
                    }),
                })
                .collect();
            if groups.is_empty() {
                return Err(format!(
                    "split `{split}` has no subject folders; leave out --subject"
                ));
            }
            Ok(groups)
        }
        Some(name) => match by_subject.get(&Some(name.to_string())) {
            Some(files) => Ok(vec![Group {
                subject: Some(name.to_string()),
                files: files.clone(),
            }]),
            None if subjects.is_empty() => Err(format!(
                "split `{split}` has no subject folders; leave out --subject"
            )),
            None => Err(format!(
                "no subject `{name}` in split `{split}` (subjects: {})",
                listing()
            )),
        },
        None if by_subject.len() == 1 => {
            let files = by_subject.into_values().next().unwrap_or_default();
            Ok(vec![Group {
                subject: None,
                files,
            }])
        }
        None => Err(format!(
            "split `{split}` has {} subjects; pass --subject NAME or --subject all (subjects: {})",
            subjects.len(),
            listing()
        )),
    }
}

/// A URL fit for an error message: no query string (CDN URLs carry signatures there).
fn clean_url(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

fn hub_error(error: ApiError, url: &str) -> HubError {
    let url = clean_url(url);
    match error {
        ApiError::RequestError(error) => {
            let url = error.url().map(|u| clean_url(u.as_str())).unwrap_or(url);
            if let Some(status) = error.status() {
                let status = status.as_u16();
                let hint = match status {
                    401 | 403 => {
                        " (the repository is private or gated, or does not exist: set HF_TOKEN to a token that can read it)"
                    }
                    404 => " (no such repository, revision or file)",
                    429 => " (rate limited by the hub; try again later)",
                    500..=599 => " (the hub failed; try again later)",
                    _ => "",
                };
                HubError::Status { url, status, hint }
            } else if error.is_timeout() {
                HubError::Timeout { url, seconds: 0 }
            } else if error.is_body() || (error.is_decode() && !url.contains("/api/")) {
                // A file body that stopped short (the connection dropped mid-download).
                HubError::Interrupted {
                    url,
                    message: causes(&error),
                }
            } else if error.is_decode() {
                HubError::Protocol {
                    url,
                    message: format!("not the JSON a hub answers: {}", causes(&error)),
                }
            } else {
                HubError::Unreachable {
                    url,
                    message: causes(&error),
                }
            }
        }
        ApiError::TooManyRetries(inner) => hub_error(*inner, &url),
        ApiError::MissingHeader(header) => HubError::Protocol {
            url,
            message: format!("no `{header}` header (is HF_ENDPOINT a Hugging Face hub?)"),
        },
        ApiError::IoError(error) => HubError::Cache {
            path: Cache::from_env().path().clone(),
            message: error.to_string(),
        },
        ApiError::LockAcquisition(path) => HubError::Cache {
            path,
            message: "locked by another download (wait for it, or remove the .lock file)"
                .to_string(),
        },
        other => HubError::Protocol {
            url,
            message: other.to_string(),
        },
    }
}

/// The error's causes without the URL reqwest puts in its own message.
fn causes(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        if error.is_body() {
            parts.push("the connection closed before the whole answer arrived".to_string());
        } else {
            parts.push("request failed".to_string());
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_and_subjects_follow_hub_layouts() {
        assert_eq!(
            split_of("anatomy/test-00000-of-00001.parquet").as_deref(),
            Some("test")
        );
        assert_eq!(
            split_of("data/validation-00000-of-00002.parquet").as_deref(),
            Some("validation")
        );
        assert_eq!(
            split_of("default/train/0000.parquet").as_deref(),
            Some("train")
        );
        assert_eq!(split_of("README.md"), None);
        assert_eq!(
            subject_of("anatomy/test-00000-of-00001.parquet", "test").as_deref(),
            Some("anatomy")
        );
        assert_eq!(subject_of("data/test-00000-of-00001.parquet", "test"), None);
        assert_eq!(
            subject_of("virology/test/0000.parquet", "test").as_deref(),
            Some("virology")
        );
    }

    #[test]
    fn plans_pick_the_subject_or_every_subject() {
        let listing = files(&[
            ".gitattributes",
            "README.md",
            "all/test-00000-of-00001.parquet",
            "anatomy/dev-00000-of-00001.parquet",
            "anatomy/test-00000-of-00001.parquet",
            "virology/test-00000-of-00001.parquet",
            "auxiliary_train/train-00000-of-00001.parquet",
        ]);
        let one = plan(&listing, Some("anatomy"), "test").unwrap();
        assert_eq!(
            one,
            [Group {
                subject: Some("anatomy".into()),
                files: files(&["anatomy/test-00000-of-00001.parquet"])
            }]
        );
        let all = plan(&listing, Some("all"), "test").unwrap();
        assert_eq!(
            all.iter()
                .map(|g| g.subject.clone().unwrap())
                .collect::<Vec<_>>(),
            ["anatomy", "virology"]
        );
        assert_eq!(
            plan(&listing, Some("nope"), "test").unwrap_err(),
            "no subject `nope` in split `test` (subjects: all, anatomy, virology)"
        );
        assert_eq!(
            plan(&listing, None, "test").unwrap_err(),
            "split `test` has 3 subjects; pass --subject NAME or --subject all (subjects: all, anatomy, virology)"
        );
        assert_eq!(
            plan(&listing, Some("anatomy"), "tst").unwrap_err(),
            "no parquet files for split `tst` (splits: dev, test, train)"
        );
        let flat = files(&[
            "data/test-00000-of-00002.parquet",
            "data/test-00001-of-00002.parquet",
        ]);
        assert_eq!(
            plan(&flat, None, "test").unwrap(),
            [Group {
                subject: None,
                files: flat.clone()
            }]
        );
    }

    #[test]
    fn urls_in_errors_lose_their_query() {
        assert_eq!(
            clean_url("https://cdn/x?X-Amz-Signature=secret"),
            "https://cdn/x"
        );
    }
}
