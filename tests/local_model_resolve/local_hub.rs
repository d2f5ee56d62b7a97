//! A tiny Hugging Face Hub on 127.0.0.1 that serves one model file the way the Hub serves
//! LFS files (GGUF files always are) to `hf-hub` 0.4.3:
//!
//! 1. `GET /{repo}/resolve/main/{file}` answers `302 Found` with `x-repo-commit`,
//!    `x-linked-etag` (the file's sha256), `x-linked-size` and a `Location` on another host
//!    (the Hub's CDN; here `localhost` instead of `127.0.0.1`, which `hf-hub`'s first client,
//!    following only relative redirects, does not follow);
//! 2. `GET /lfs/{sha256}` with `Range: bytes=a-b` answers `206 Partial Content` with
//!    `Content-Range: bytes a-b/size` (hf-hub first asks `bytes=0-0` to learn the size, then
//!    fetches the file in ranges).
//!
//! Anything else is a 404 with the Hub's `x-error-code: EntryNotFound`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// One request the hub received.
#[derive(Debug, Clone)]
pub struct HubRequest {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

pub struct LocalHub {
    pub endpoint: String,
    pub commit: String,
    requests: Arc<Mutex<Vec<HubRequest>>>,
}

struct Served {
    repo: String,
    file: String,
    content: Vec<u8>,
    sha256: String,
    commit: String,
    port: u16,
}

impl LocalHub {
    /// Starts the hub serving `content` as `{repo}/{file}`; it lives until the process ends.
    pub fn start(repo: &str, file: &str, content: Vec<u8>) -> LocalHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let sha256 = hex::encode(Sha256::digest(&content));
        let commit = "0123456789abcdef0123456789abcdef01234567".to_string();
        let served = Arc::new(Served {
            repo: repo.to_string(),
            file: file.to_string(),
            content,
            sha256,
            commit: commit.clone(),
            port,
        });
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let served = served.clone();
                let log = log.clone();
                std::thread::spawn(move || serve_connection(stream, &served, &log));
            }
        });
        LocalHub {
            endpoint: format!("http://127.0.0.1:{port}"),
            commit,
            requests,
        }
    }

    pub fn requests(&self) -> Vec<HubRequest> {
        self.requests.lock().expect("hub log").clone()
    }
}

fn serve_connection(stream: TcpStream, served: &Served, log: &Mutex<Vec<HubRequest>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    // Keep-alive: answer requests on this connection until the client closes it.
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut range = None;
        let mut authorization = None;
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim().to_string();
                match name.to_ascii_lowercase().as_str() {
                    "range" => range = Some(value),
                    "authorization" => authorization = Some(value),
                    "content-length" => content_length = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0u8; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        log.lock().expect("hub log").push(HubRequest {
            path: path.clone(),
            range: range.clone(),
            authorization,
        });
        let response = respond(&method, &path, range.as_deref(), served);
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

fn respond(method: &str, path: &str, range: Option<&str>, served: &Served) -> Vec<u8> {
    let resolve = format!("/{}/resolve/main/{}", served.repo, served.file);
    let blob = format!("/lfs/{}", served.sha256);
    if method == "GET" && path == resolve {
        let headers = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://localhost:{}{}\r\nx-repo-commit: {}\r\n\
             x-linked-etag: \"{}\"\r\nx-linked-size: {}\r\netag: \"pointer-etag\"\r\n\
             Content-Length: 0\r\n\r\n",
            served.port,
            blob,
            served.commit,
            served.sha256,
            served.content.len()
        );
        return headers.into_bytes();
    }
    if method == "GET" && path == blob {
        let size = served.content.len();
        let (start, end) = range
            .and_then(parse_range)
            .map(|(s, e)| (s, e.min(size.saturating_sub(1))))
            .unwrap_or((0, size.saturating_sub(1)));
        if start >= size || start > end {
            return format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .into_bytes();
        }
        let body = &served.content[start..=end];
        let status = if range.is_some() {
            "206 Partial Content"
        } else {
            "200 OK"
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\
             Accept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body);
        return response;
    }
    let body = "Entry not found";
    format!(
        "HTTP/1.1 404 Not Found\r\nx-error-code: EntryNotFound\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `bytes=a-b` -> (a, b); an open end (`bytes=a-`) reads to the end.
fn parse_range(value: &str) -> Option<(usize, usize)> {
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = if end.trim().is_empty() {
        usize::MAX
    } else {
        end.trim().parse().ok()?
    };
    Some((start, end))
}
