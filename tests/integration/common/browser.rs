//! Headless Chromium driven over the DevTools protocol (a WebSocket speaking JSON), for tests
//! that load evalr's HTML pages from disk and read what the browser rendered.
//!
//! Chromium is Debian's `chromium` package (`scripts/setup.sh --test` installs it). Without it
//! the browser tests are skipped with a message, unless `EVALR_REQUIRE_BROWSER` is set (CI),
//! where a missing browser fails them.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium binary: `EVALR_CHROMIUM`, else the first of the usual names on PATH.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EVALR_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Starts a browser, or explains why a test is skipped (panics when the browser is required).
pub fn browser_or_skip(test: &str) -> Option<Browser> {
    match chromium_binary() {
        Some(binary) => Some(Browser::launch(&binary)),
        None if std::env::var_os("EVALR_REQUIRE_BROWSER").is_some() => {
            panic!(
                "{test}: chromium not found and EVALR_REQUIRE_BROWSER is set (install it with scripts/setup.sh --test)"
            )
        }
        None => {
            eprintln!(
                "SKIPPED {test}: chromium not found (install it with scripts/setup.sh --test, or set EVALR_CHROMIUM)"
            );
            None
        }
    }
}

/// Where tests keep their screenshots: target/test-artifacts/html/.
pub fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/html");
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir
}

/// One browser at a time: the tests of a binary run in parallel threads, and a few Chromium
/// instances at once would only compete for the same cores.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

pub struct Browser {
    _turn: MutexGuard<'static, ()>,
    child: Child,
    _profile: tempfile::TempDir,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
    events: VecDeque<Value>,
    /// Every event seen since the page was opened (exceptions, console, network).
    pub log: Vec<Value>,
}

impl Browser {
    pub fn launch(binary: &Path) -> Browser {
        let turn = ONE_BROWSER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let profile = tempfile::tempdir().expect("profile folder");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1360,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // Chromium writes its DevTools port and browser path into the profile once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && text.lines().count() >= 2
            {
                break text;
            }
            assert!(Instant::now() < deadline, "chromium did not start in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut lines = text.lines();
        let port = lines.next().expect("port line").trim().to_string();
        let path = lines.next().expect("path line").trim().to_string();
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (socket, _) = tungstenite::connect(url.as_str()).expect("DevTools WebSocket");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("read timeout");
        }
        let mut browser = Browser {
            _turn: turn,
            child,
            _profile: profile,
            socket,
            next_id: 1,
            session: None,
            events: VecDeque::new(),
            log: Vec::new(),
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        );
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            browser.call(domain, json!({}));
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1360, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::String(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .expect("send to DevTools");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method} in 120 s");
            match self.read() {
                Some(value) if value["id"].as_u64() == Some(id) => {
                    if let Some(error) = value.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return value["result"].clone();
                }
                Some(event) => {
                    self.log.push(event.clone());
                    self.events.push_back(event);
                }
                None => {}
            }
        }
    }

    fn read(&mut self) -> Option<Value> {
        match self.socket.read() {
            Ok(Message::Text(text)) => serde_json::from_str(text.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection: {e}"),
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// A command on the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, session)
    }

    fn wait_event(&mut self, method: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.events.iter().position(|e| e["method"] == method) {
                self.events.drain(..=at);
                return;
            }
            assert!(Instant::now() < deadline, "no {method} in {timeout:?}");
            if let Some(event) = self.read() {
                self.log.push(event.clone());
                self.events.push_back(event);
            }
        }
    }

    /// Opens a file and waits for its load event.
    pub fn open(&mut self, path: &Path) {
        let url = format!(
            "file://{}",
            path.canonicalize().expect("page path").display()
        );
        self.open_url(&url);
    }

    pub fn open_url(&mut self, url: &str) {
        self.events.clear();
        self.log.clear();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_event("Page.loadEventFired", Duration::from_secs(120));
    }

    /// Evaluates a JavaScript expression in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until a JavaScript expression is true.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.eval(&format!("Boolean({expression})")) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {expression}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks an element (by CSS selector) the way a user does: a DOM click event.
    pub fn click(&mut self, selector: &str) {
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            serde_json::to_string(selector).expect("selector")
        ));
        assert_eq!(found, Value::Bool(true), "no element {selector}");
    }

    /// Sets a form control's value and fires the events a user's input fires.
    pub fn set_value(&mut self, selector: &str, value: &str) {
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.value = {}; e.dispatchEvent(new Event('input', {{bubbles: true}})); e.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
            serde_json::to_string(selector).expect("selector"),
            serde_json::to_string(value).expect("value")
        ));
        assert_eq!(found, Value::Bool(true), "no element {selector}");
    }

    /// A PNG of the whole page, saved to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(1360.0);
        let height = size["height"].as_f64().unwrap_or(900.0).min(12_000.0);
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
            }),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("PNG base64");
        std::fs::write(path, bytes).expect("write screenshot");
    }

    /// Uncaught exceptions and error-level log entries (CSP violations among them) so far.
    pub fn errors(&mut self) -> Vec<String> {
        while let Some(event) = self.read() {
            self.log.push(event.clone());
            self.events.push_back(event);
        }
        self.log
            .iter()
            .filter_map(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    Some(e["params"]["exceptionDetails"].to_string())
                }
                Some("Log.entryAdded") if e["params"]["entry"]["level"] == "error" => {
                    Some(e["params"]["entry"]["text"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// URLs the page requested (its own file included).
    pub fn requests(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
