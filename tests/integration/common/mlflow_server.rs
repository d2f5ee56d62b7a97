//! A real `mlflow server` (PyPI `mlflow`) on 127.0.0.1, started and stopped by the test, and
//! a recording proxy in front of it to see which headers evalr sends.
//!
//! When `mlflow` is not installed the test fails, unless `EVALR_SKIP_MLFLOW=1`.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct MlflowServer {
    pub base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MlflowServer {
    /// `None` (with a note on stderr) when mlflow is missing and EVALR_SKIP_MLFLOW=1.
    pub fn start() -> Option<Self> {
        let installed = Command::new("mlflow")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !installed {
            if std::env::var("EVALR_SKIP_MLFLOW").as_deref() == Ok("1") {
                eprintln!("SKIPPED: mlflow is not installed and EVALR_SKIP_MLFLOW=1");
                return None;
            }
            panic!(
                "`mlflow` is not installed: `pip install mlflow` (the MLflow tests run a real tracking server), or set EVALR_SKIP_MLFLOW=1 to skip them"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new("mlflow")
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}/mlflow.db", dir.path().display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group: the server forks workers, and Drop stops them all.
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let base = format!("http://127.0.0.1:{port}");
        let mut server = MlflowServer {
            base,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if reqwest::blocking_get_ok(&format!("{}/health", server.base)) {
                return Some(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server._dir.path().join("server.log"))
                    .unwrap_or_default();
                panic!("mlflow server exited ({status}) before answering:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer /health within 180 s"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Blocking HTTP GET through a throwaway runtime, for the tests' synchronous code.
pub mod reqwest {
    pub fn blocking_get_ok(url: &str) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            ::reqwest::Client::new()
                .get(url)
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        })
    }

    /// GET returning JSON.
    pub fn get_json(url: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().json().await.unwrap() })
    }

    pub fn get_text(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }

    pub fn post_json(url: &str, body: serde_json::Value) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = ::reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.json().await.unwrap()
        })
    }
}

/// (method, path, Authorization header) of each request seen.
pub type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// Forwards every request to `upstream` unchanged and records its method, path and
/// `Authorization` header.
pub struct RecordingProxy {
    pub base: String,
    pub seen: Seen,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RecordingProxy {
    pub fn start(upstream: &str) -> Self {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::IntoResponse;

        #[derive(Clone)]
        struct Shared {
            upstream: String,
            seen: Seen,
            http: ::reqwest::Client,
        }
        async fn forward(
            State(s): State<Shared>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> axum::response::Response {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            s.seen
                .lock()
                .unwrap()
                .push((method.to_string(), uri.path().to_string(), auth));
            let url = format!(
                "{}{}",
                s.upstream,
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            let method = ::reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
            let mut request = s.http.request(method, url).body(body.to_vec());
            if let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok()) {
                request = request.header("content-type", ct);
            }
            match request.send().await {
                Ok(r) => {
                    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                    let bytes = r.bytes().await.unwrap_or_default();
                    (
                        status,
                        [("content-type", "application/json")],
                        bytes.to_vec(),
                    )
                        .into_response()
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }

        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            upstream: upstream.to_string(),
            seen: seen.clone(),
            http: ::reqwest::Client::new(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().fallback(forward).with_state(shared);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        RecordingProxy {
            base,
            seen,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
