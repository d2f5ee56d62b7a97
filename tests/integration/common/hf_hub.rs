//! A local Hugging Face hub for tests: serves dataset repositories from a folder laid out as
//! `<root>/<owner>/<name>/<files>` over HTTP/1.1 on 127.0.0.1, the way huggingface.co
//! answers what hf-hub 0.4.3 asks (see hf-hub's `src/api/tokio.rs`):
//!
//! - `GET /api/datasets/<owner>/<name>/revision/<rev>` -> `{"id", "sha", "siblings": [{"rfilename"}]}`
//!   (hf-hub's `info()`); unknown repository or revision -> 404 with `X-Error-Code`.
//! - `GET /datasets/<owner>/<name>/resolve/<rev>/<file>`: for `.parquet` files (LFS on the hub)
//!   a `302 Found` to a *second* server playing the CDN, with `X-Repo-Commit`,
//!   `X-Linked-Etag` (the file's sha256, quoted), `X-Linked-Size` and `ETag`; hf-hub's
//!   metadata client follows only relative redirects, so it reads those headers from the
//!   302, then asks the CDN for `Range: bytes=0-0` to learn the size from
//!   `Content-Range`. Other (small, non-LFS) files are answered directly with `ETag`,
//!   `X-Repo-Commit` and range support.
//! - CDN: `GET /blobs/<sha256>` with `Range: bytes=a-b` -> `206` + `Content-Range`, else `200`.
//!
//! Faults can be injected per path (status codes, hang, dropped connection, cut body), a
//! token can be required, and every request is logged so tests can count downloads.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// What a matching request gets instead of the normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a JSON error body.
    Status(u16),
    /// Read the request, never answer (until the mirror stops).
    Hang,
    /// Close the connection without answering.
    Drop,
    /// Send the headers and half of the body, then close.
    CutBody,
}

/// One request as the mirror saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `"hub"` or `"cdn"`.
    pub server: &'static str,
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
struct RepoFile {
    path: PathBuf,
    size: u64,
    sha256: String,
}

#[derive(Debug, Clone)]
struct RepoData {
    sha: String,
    files: BTreeMap<String, RepoFile>,
}

struct State {
    repos: BTreeMap<String, RepoData>,
    blobs: BTreeMap<String, RepoFile>,
    cdn_base: String,
    faults: Mutex<Vec<(String, Fault)>>,
    log: Mutex<Vec<Request>>,
    token: Mutex<Option<String>>,
    stop: AtomicBool,
}

pub struct HubMirror {
    hub: SocketAddr,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl HubMirror {
    /// Serves every `<owner>/<name>` folder under `root`, on ephemeral ports.
    pub fn start(root: &Path) -> HubMirror {
        HubMirror::start_on(root, "127.0.0.1:0")
    }

    /// Serves on `hub_address` (the CDN gets an ephemeral port).
    pub fn start_on(root: &Path, hub_address: &str) -> HubMirror {
        let repos = scan(root);
        let blobs = repos
            .values()
            .flat_map(|r| r.files.values())
            .map(|f| (f.sha256.clone(), f.clone()))
            .collect();
        let hub_listener = TcpListener::bind(hub_address).expect("bind the hub port");
        let cdn_listener = TcpListener::bind("127.0.0.1:0").expect("bind the CDN port");
        let hub = hub_listener.local_addr().expect("hub address");
        let cdn = cdn_listener.local_addr().expect("CDN address");
        let state = Arc::new(State {
            repos,
            blobs,
            cdn_base: format!("http://{cdn}"),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            token: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let threads = vec![
            accept_loop(hub_listener, "hub", state.clone()),
            accept_loop(cdn_listener, "cdn", state.clone()),
        ];
        HubMirror {
            hub,
            state,
            threads,
        }
    }

    /// The value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub)
    }

    /// The commit every revision of `repo` resolves to.
    pub fn commit(&self, repo: &str) -> String {
        self.state.repos[repo].sha.clone()
    }

    /// Requests whose path contains `path_part` get `fault` (first match wins).
    pub fn inject(&self, path_part: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .push((path_part.to_string(), fault));
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Requests to the hub without `Authorization: Bearer <token>` get 401.
    pub fn require_token(&self, token: &str) {
        *self.state.token.lock().unwrap() = Some(token.to_string());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// File contents sent by the CDN (range requests other than the 1-byte size probe).
    pub fn downloads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.server == "cdn" && r.range.as_deref() != Some("bytes=0-0"))
            .count()
    }

    /// Stops both servers: further connections are refused.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for HubMirror {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn scan(root: &Path) -> BTreeMap<String, RepoData> {
    let mut repos = BTreeMap::new();
    let owners =
        std::fs::read_dir(root).unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()));
    for owner in owners.flatten().filter(|e| e.path().is_dir()) {
        for name in std::fs::read_dir(owner.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
        {
            let repo_root = name.path();
            let mut paths = Vec::new();
            walk(&repo_root, &mut paths);
            paths.sort();
            let mut files = BTreeMap::new();
            let mut commit = Sha256::new();
            for path in paths {
                let bytes = std::fs::read(&path).expect("read a repository file");
                let sha256 = hex::encode(Sha256::digest(&bytes));
                let relative = path
                    .strip_prefix(&repo_root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                commit.update(relative.as_bytes());
                commit.update(sha256.as_bytes());
                files.insert(
                    relative,
                    RepoFile {
                        path,
                        size: bytes.len() as u64,
                        sha256,
                    },
                );
            }
            let sha = hex::encode(commit.finalize())[..40].to_string();
            let id = format!(
                "{}/{}",
                owner.file_name().to_string_lossy(),
                name.file_name().to_string_lossy()
            );
            repos.insert(id, RepoData { sha, files });
        }
    }
    repos
}

fn walk(folder: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn accept_loop(listener: TcpListener, server: &'static str, state: Arc<State>) -> JoinHandle<()> {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    std::thread::spawn(move || {
        while !state.stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = handle(stream, server, &state);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: body.to_string().into_bytes(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Response {
        let mut response = Response::json(status, serde_json::json!({ "error": message }));
        response.headers.push(("X-Error-Code".into(), code.into()));
        response
            .headers
            .push(("X-Error-Message".into(), message.into()));
        response
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn handle(stream: TcpStream, server: &'static str, state: &State) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    state.log.lock().unwrap().push(Request {
        server,
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    });

    let fault = state
        .faults
        .lock()
        .unwrap()
        .iter()
        .find(|(part, _)| path.contains(part.as_str()))
        .map(|(_, f)| f.clone());
    let mut cut_body = false;
    match fault {
        Some(Fault::Status(status)) => {
            return write_response(
                stream,
                &method,
                Response::error(status, "Injected", reason(status)),
                false,
            );
        }
        Some(Fault::Hang) => {
            while !state.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return Ok(());
        }
        Some(Fault::Drop) => return Ok(()),
        Some(Fault::CutBody) => cut_body = true,
        None => {}
    }

    let response = if server == "hub" {
        let token = state.token.lock().unwrap().clone();
        match token {
            Some(token) if headers.get("authorization") != Some(&format!("Bearer {token}")) => {
                Response::error(
                    401,
                    "Unauthorized",
                    "Invalid credentials in Authorization header",
                )
            }
            _ => hub_response(state, &path, headers.get("range").map(String::as_str)),
        }
    } else {
        cdn_response(state, &path, headers.get("range").map(String::as_str))
    };
    write_response(stream, &method, response, cut_body)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hub_response(state: &State, path: &str, range: Option<&str>) -> Response {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "datasets", owner, name, "revision", revision] => {
            let id = format!("{owner}/{name}");
            let Some(repo) = state.repos.get(&id) else {
                return Response::error(404, "RepoNotFound", "Repository not found");
            };
            let revision = percent_decode(revision);
            if revision != "main" && revision != repo.sha {
                return Response::error(
                    404,
                    "RevisionNotFound",
                    &format!("Invalid rev id: {revision}"),
                );
            }
            let siblings: Vec<serde_json::Value> = repo
                .files
                .keys()
                .map(|f| serde_json::json!({ "rfilename": f }))
                .collect();
            Response::json(
                200,
                serde_json::json!({
                    "_id": format!("{:0>24}", &repo.sha[..24]),
                    "id": id,
                    "author": owner,
                    "sha": repo.sha,
                    "private": false,
                    "gated": false,
                    "disabled": false,
                    "siblings": siblings,
                }),
            )
        }
        ["datasets", owner, name, "resolve", revision, file @ ..] => {
            let id = format!("{owner}/{name}");
            let Some(repo) = state.repos.get(&id) else {
                return Response::error(404, "RepoNotFound", "Repository not found");
            };
            let revision = percent_decode(revision);
            if revision != "main" && revision != repo.sha {
                return Response::error(
                    404,
                    "RevisionNotFound",
                    &format!("Invalid rev id: {revision}"),
                );
            }
            let file_name = percent_decode(&file.join("/"));
            let Some(entry) = repo.files.get(&file_name) else {
                return Response::error(
                    404,
                    "EntryNotFound",
                    &format!("{file_name} does not exist on \"{revision}\""),
                );
            };
            let common = vec![
                ("X-Repo-Commit".to_string(), repo.sha.clone()),
                ("Accept-Ranges".to_string(), "bytes".to_string()),
            ];
            if file_name.ends_with(".parquet") {
                let mut headers = common;
                headers.push(("X-Linked-Etag".into(), format!("\"{}\"", entry.sha256)));
                headers.push(("X-Linked-Size".into(), entry.size.to_string()));
                headers.push(("ETag".into(), format!("W/\"{}\"", &entry.sha256[..40])));
                headers.push((
                    "Location".into(),
                    format!("{}/blobs/{}", state.cdn_base, entry.sha256),
                ));
                Response {
                    status: 302,
                    headers,
                    body: Vec::new(),
                }
            } else {
                let mut response = file_response(entry, range);
                response.headers.extend(common);
                response
                    .headers
                    .push(("ETag".into(), format!("\"{}\"", &entry.sha256[..40])));
                response
            }
        }
        _ => Response::error(404, "NotFound", "Not found"),
    }
}

fn cdn_response(state: &State, path: &str, range: Option<&str>) -> Response {
    match path
        .strip_prefix("/blobs/")
        .and_then(|sha| state.blobs.get(sha))
    {
        Some(entry) => file_response(entry, range),
        None => Response::error(404, "NoSuchKey", "The specified key does not exist."),
    }
}

/// The file, or the requested byte range of it (`bytes=a-b`, `bytes=a-`; an end past the
/// file is clamped as RFC 9110 says).
fn file_response(entry: &RepoFile, range: Option<&str>) -> Response {
    let bytes = std::fs::read(&entry.path).unwrap_or_default();
    let size = bytes.len() as u64;
    let content_type = (
        "Content-Type".to_string(),
        "application/octet-stream".to_string(),
    );
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Response {
            status: 200,
            headers: vec![content_type],
            body: bytes,
        };
    };
    let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
    let start: u64 = start.trim().parse().unwrap_or(0);
    let end: u64 = end
        .trim()
        .parse()
        .unwrap_or(size.saturating_sub(1))
        .min(size.saturating_sub(1));
    if start >= size || start > end {
        return Response {
            status: 416,
            headers: vec![("Content-Range".into(), format!("bytes */{size}"))],
            body: Vec::new(),
        };
    }
    Response {
        status: 206,
        headers: vec![
            content_type,
            (
                "Content-Range".into(),
                format!("bytes {start}-{end}/{size}"),
            ),
        ],
        body: bytes[start as usize..=end as usize].to_vec(),
    }
}

fn write_response(
    mut stream: TcpStream,
    method: &str,
    response: Response,
    cut_body: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let body = if cut_body {
            &response.body[..response.body.len() / 2]
        } else {
            &response.body[..]
        };
        stream.write_all(body)?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}
