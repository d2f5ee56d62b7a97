//! A local Files + Batches server for tests, speaking the Azure OpenAI and OpenAI protocols
//! the way the services do:
//!
//! - Azure: `POST /openai/files` (multipart, `purpose=batch`), `GET /openai/files/{id}/content`,
//!   `POST /openai/batches`, `GET /openai/batches`, `GET /openai/batches/{id}`,
//!   `POST /openai/batches/{id}/cancel`, all with `?api-version=` and the `api-key` header;
//!   lines name the deployment in `body.model` and use `url: /chat/completions`.
//! - OpenAI: the same under `/v1/` with a bearer key; lines use `url: /v1/chat/completions`.
//! - The chat-completions routes of both are served too (proxied to the `ChatServer` that
//!   answers every line, so a batch line and a live request get the same answer).
//!
//! Batches move like the services': `validating` -> `in_progress` (lines run a few per look)
//! -> `finalizing` -> `completed`, with `request_counts`; output and error files in the
//! documented line format. Faults: lines that fail (HTTP 500) the first time or always, an
//! enqueued-token quota counted with the model's tokenizer (a batch over it fails with
//! `token_limit_exceeded`), expiry after a
//! number of looks, cancel, and a hold that keeps batches in progress until released.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct BatchServerConfig {
    pub api_key: String,
    /// Lines run per look at an `in_progress` batch.
    pub lines_per_look: usize,
    /// Questions whose lines fail (HTTP 500) the first time they run.
    pub fail_first: Vec<String>,
    /// Questions whose lines always fail (HTTP 500).
    pub fail_always: Vec<String>,
    /// Enqueued tokens (prompt characters / 4 + max_tokens of each line) allowed across the
    /// batches not yet ended.
    pub enqueued_token_quota: Option<u64>,
    /// A batch still running after this many looks expires (its unrun lines fail with
    /// `batch_expired`); only for the first `expire_batches` batches.
    pub expire_after_looks: Option<u32>,
    pub expire_batches: usize,
}

impl Default for BatchServerConfig {
    fn default() -> Self {
        BatchServerConfig {
            api_key: "test-key".into(),
            lines_per_look: usize::MAX,
            fail_first: Vec::new(),
            fail_always: Vec::new(),
            enqueued_token_quota: None,
            expire_after_looks: None,
            expire_batches: usize::MAX,
        }
    }
}

#[derive(Debug, Clone)]
struct Line {
    custom_id: String,
    url: String,
    body: Value,
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub id: String,
    pub status: String,
    pub input_file_id: String,
    pub endpoint: String,
    pub tokens: u64,
    pub lines: usize,
    lines_data: Vec<Line>,
    /// (custom_id, status, body) of the lines run so far.
    results: Vec<(String, u16, Value)>,
    looks: u32,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    errors: Option<Value>,
    azure: bool,
    expires: bool,
}

#[derive(Default)]
struct State_ {
    files: HashMap<String, Vec<u8>>,
    batches: Vec<Batch>,
    next_id: u64,
    /// How many times each request (its messages) ran in a batch.
    runs_per_request: HashMap<String, usize>,
    /// custom_ids of every line of every batch that was accepted (not refused).
    accepted_custom_ids: Vec<String>,
    refusals: usize,
    /// The most enqueued tokens held by running batches at once.
    peak_enqueued: u64,
    batch_requests_run: usize,
}

struct Shared {
    config: BatchServerConfig,
    chat: String,
    state: Mutex<State_>,
    hold: AtomicBool,
    client: reqwest::Client,
}

pub struct BatchServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl BatchServer {
    /// Starts on 127.0.0.1; every line runs against the chat server at `chat` (`http://host:port`).
    pub fn start(config: BatchServerConfig, chat: String) -> BatchServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = Arc::new(Shared {
            config,
            chat,
            state: Mutex::new(State_::default()),
            hold: AtomicBool::new(false),
            client: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/openai/files", post(upload))
            .route("/v1/files", post(upload))
            .route("/openai/files/{id}/content", get(content))
            .route("/v1/files/{id}/content", get(content))
            .route("/openai/batches", post(create).get(list))
            .route("/v1/batches", post(create).get(list))
            .route("/openai/batches/{id}", get(retrieve))
            .route("/v1/batches/{id}", get(retrieve))
            .route("/openai/batches/{id}/cancel", post(cancel))
            .route("/v1/batches/{id}/cancel", post(cancel))
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(proxy_azure_chat),
            )
            .route("/v1/chat/completions", post(proxy_openai_chat))
            .with_state(Arc::clone(&shared));
        let addr = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            addr
        });
        BatchServer {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Keeps batches `in_progress` (no line runs) until `release`.
    pub fn hold(&self) {
        self.shared.hold.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.shared.hold.store(false, Ordering::SeqCst);
    }

    pub fn batches(&self) -> Vec<Batch> {
        self.shared.state.lock().unwrap().batches.clone()
    }

    pub fn accepted_custom_ids(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .unwrap()
            .accepted_custom_ids
            .clone()
    }

    pub fn runs_per_request(&self) -> HashMap<String, usize> {
        self.shared.state.lock().unwrap().runs_per_request.clone()
    }

    pub fn refusals(&self) -> usize {
        self.shared.state.lock().unwrap().refusals
    }

    pub fn peak_enqueued(&self) -> u64 {
        self.shared.state.lock().unwrap().peak_enqueued
    }

    /// Chat requests made by batch lines that reached the model (the rest of the chat
    /// server's requests were live).
    pub fn batch_requests_run(&self) -> usize {
        self.shared.state.lock().unwrap().batch_requests_run
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": {"code": code, "message": message, "type": "invalid_request_error"}})
            .to_string(),
    )
        .into_response()
}

fn json_response(value: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The credential and api-version checks of both services; `Some(response)` refuses.
fn check(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    azure: bool,
) -> Option<Response> {
    let key = if azure {
        headers.get("api-key").and_then(|v| v.to_str().ok())
    } else {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    };
    if key != Some(shared.config.api_key.as_str()) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint.",
        ));
    }
    if azure && !query.contains_key("api-version") {
        return Some(error(
            StatusCode::NOT_FOUND,
            "404",
            "Resource not found (no api-version)",
        ));
    }
    None
}

fn is_azure(uri: &axum::http::Uri) -> bool {
    uri.path().starts_with("/openai/")
}

fn next_id(state: &mut State_, prefix: &str) -> String {
    state.next_id += 1;
    format!("{prefix}-{:04}", state.next_id)
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    if let Some(refused) = check(&shared, &headers, &query, is_azure(&uri)) {
        return refused;
    }
    let mut purpose = None;
    let mut file = None;
    let mut filename = String::new();
    while let Ok(Some(field)) = multipart.next_field().await {
        match field.name() {
            Some("purpose") => purpose = field.text().await.ok(),
            Some("file") => {
                filename = field.file_name().unwrap_or("").to_string();
                file = field.bytes().await.ok();
            }
            _ => {}
        }
    }
    if purpose.as_deref() != Some("batch") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "purpose must be batch",
        );
    }
    let Some(bytes) = file else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "no file part");
    };
    let mut state = shared.state.lock().unwrap();
    let id = next_id(&mut state, "file");
    let size = bytes.len();
    state.files.insert(id.clone(), bytes.to_vec());
    json_response(json!({
        "id": id, "object": "file", "bytes": size, "created_at": 1_700_000_000,
        "filename": filename, "purpose": "batch", "status": "processed"
    }))
}

async fn content(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = check(&shared, &headers, &query, is_azure(&uri)) {
        return refused;
    }
    let state = shared.state.lock().unwrap();
    match state.files.get(&id) {
        Some(bytes) => (
            StatusCode::OK,
            [("content-type", "application/octet-stream")],
            bytes.clone(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "404", "No such file"),
    }
}

/// What a line enqueues, counted as the service does with the model's tokenizer (gpt-4o:
/// o200k_base): each message's tokens plus 4, plus 3 for the reply, plus max_tokens.
fn line_tokens(body: &Value) -> u64 {
    let bpe = tiktoken_rs::o200k_base_singleton();
    let prompt: u64 = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["content"].as_str())
                .map(|c| 4 + bpe.encode_ordinary(c).len() as u64)
                .sum()
        })
        .unwrap_or(0);
    let max = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(16);
    prompt + 3 + max
}

fn batch_json(batch: &Batch) -> Value {
    let completed = batch.results.iter().filter(|r| r.1 == 200).count();
    let failed = batch.results.iter().filter(|r| r.1 != 200).count()
        + if matches!(batch.status.as_str(), "expired" | "cancelled") {
            batch.lines - batch.results.len()
        } else {
            0
        };
    json!({
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": batch.errors,
        "input_file_id": batch.input_file_id,
        "completion_window": "24h",
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": 1_700_000_000,
        "request_counts": {"total": batch.lines, "completed": completed, "failed": failed},
        "metadata": null
    })
}

async fn create(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let azure = is_azure(&uri);
    if let Some(refused) = check(&shared, &headers, &query, azure) {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body is not JSON",
        );
    };
    let expected_endpoint = if azure {
        "/chat/completions"
    } else {
        "/v1/chat/completions"
    };
    if request["completion_window"] != "24h" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "completion_window must be 24h",
        );
    }
    if request["endpoint"] != expected_endpoint {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unsupported endpoint",
        );
    }
    let input_file_id = request["input_file_id"].as_str().unwrap_or("").to_string();
    let mut state = shared.state.lock().unwrap();
    let Some(bytes) = state.files.get(&input_file_id).cloned() else {
        return error(StatusCode::NOT_FOUND, "404", "input file not found");
    };
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    for (i, text) in String::from_utf8_lossy(&bytes).lines().enumerate() {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => {
                let line = Line {
                    custom_id: v["custom_id"].as_str().unwrap_or("").to_string(),
                    url: v["url"].as_str().unwrap_or("").to_string(),
                    body: v["body"].clone(),
                };
                if v["method"] != "POST" || line.url != expected_endpoint {
                    problems.push(json!({"code": "invalid_url", "message": "method must be POST and url the batch endpoint", "line": i + 1}));
                }
                if azure && line.body["model"].as_str().is_none() {
                    problems.push(json!({"code": "invalid_request", "message": "body.model must name the deployment", "line": i + 1}));
                }
                if !ids.insert(line.custom_id.clone()) {
                    problems.push(json!({"code": "duplicate_custom_id", "message": "custom_id must be unique", "line": i + 1}));
                }
                lines.push(line);
            }
            Err(e) => problems.push(
                json!({"code": "invalid_json_line", "message": e.to_string(), "line": i + 1}),
            ),
        }
    }
    let tokens = lines.iter().map(|l| line_tokens(&l.body)).sum();
    let id = next_id(&mut state, "batch");
    let running: u64 = state
        .batches
        .iter()
        .filter(|b| {
            matches!(
                b.status.as_str(),
                "validating" | "in_progress" | "finalizing"
            )
        })
        .map(|b| b.tokens)
        .sum();
    let mut batch = Batch {
        id,
        status: "validating".into(),
        input_file_id,
        endpoint: expected_endpoint.into(),
        tokens,
        lines: lines.len(),
        lines_data: lines,
        results: Vec::new(),
        looks: 0,
        output_file_id: None,
        error_file_id: None,
        errors: None,
        azure,
        expires: false,
    };
    if !problems.is_empty() {
        batch.errors = Some(json!({"object": "list", "data": problems}));
    } else if shared
        .config
        .enqueued_token_quota
        .is_some_and(|quota| running + tokens > quota)
    {
        state.refusals += 1;
        batch.errors = Some(json!({"object": "list", "data": [{
            "code": "token_limit_exceeded",
            "message": format!("The number of enqueued tokens has surpassed the configured limit of {} for the deployment. Please either increase the limit or try again once the current jobs have finished.", shared.config.enqueued_token_quota.unwrap_or(0)),
            "line": null, "param": null}]}));
    } else {
        let expiring = state.batches.iter().filter(|b| b.expires).count();
        batch.expires =
            shared.config.expire_after_looks.is_some() && expiring < shared.config.expire_batches;
        state.peak_enqueued = state.peak_enqueued.max(running + tokens);
        let ids: Vec<String> = batch
            .lines_data
            .iter()
            .map(|l| l.custom_id.clone())
            .collect();
        state.accepted_custom_ids.extend(ids);
    }
    let answer = batch_json(&batch);
    state.batches.push(batch);
    json_response(answer)
}

async fn list(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = check(&shared, &headers, &query, is_azure(&uri)) {
        return refused;
    }
    let state = shared.state.lock().unwrap();
    let data: Vec<Value> = state.batches.iter().rev().map(batch_json).collect();
    json_response(json!({"object": "list", "data": data, "has_more": false}))
}

async fn cancel(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = check(&shared, &headers, &query, is_azure(&uri)) {
        return refused;
    }
    let mut state = shared.state.lock().unwrap();
    let Some(batch) = state.batches.iter_mut().find(|b| b.id == id) else {
        return error(StatusCode::NOT_FOUND, "404", "No such batch");
    };
    if matches!(
        batch.status.as_str(),
        "validating" | "in_progress" | "finalizing"
    ) {
        batch.status = "cancelling".into();
    }
    json_response(batch_json(batch))
}

/// One look at a batch moves it on, as time would on the service.
async fn retrieve(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = check(&shared, &headers, &query, is_azure(&uri)) {
        return refused;
    }
    let (status, to_run) = {
        let mut state = shared.state.lock().unwrap();
        let Some(batch) = state.batches.iter_mut().find(|b| b.id == id) else {
            return error(StatusCode::NOT_FOUND, "404", "No such batch");
        };
        batch.looks += 1;
        match batch.status.as_str() {
            "validating" => {
                batch.status = if batch.errors.is_some() {
                    "failed"
                } else {
                    "in_progress"
                }
                .into();
                (batch.status.clone(), Vec::new())
            }
            "in_progress" if !shared.hold.load(Ordering::SeqCst) => {
                let done = batch.results.len();
                let n = shared.config.lines_per_look.min(batch.lines - done);
                let lines: Vec<Line> = batch.lines_data[done..done + n].to_vec();
                (batch.status.clone(), lines)
            }
            other => (other.to_string(), Vec::new()),
        }
    };
    let mut results = Vec::new();
    if status == "in_progress" {
        for line in to_run {
            results.push(run_line(&shared, &line).await);
        }
    }
    let mut state = shared.state.lock().unwrap();
    let State_ {
        batches,
        files,
        next_id: counter,
        ..
    } = &mut *state;
    let batch = batches.iter_mut().find(|b| b.id == id).expect("batch");
    batch.results.extend(results);
    let finish = |batch: &mut Batch,
                  files: &mut HashMap<String, Vec<u8>>,
                  counter: &mut u64,
                  unrun_code: &str| {
        let mut output = String::new();
        let mut errors = String::new();
        for (n, (custom_id, status, body)) in batch.results.iter().enumerate() {
            let line = json!({"id": format!("batch_req_{n}"), "custom_id": custom_id,
                "response": {"status_code": status, "request_id": format!("req-{n}"), "body": body},
                "error": null});
            if *status == 200 {
                output.push_str(&line.to_string());
                output.push('\n');
            } else {
                errors.push_str(&line.to_string());
                errors.push('\n');
            }
        }
        for line in &batch.lines_data[batch.results.len()..] {
            let text = json!({"id": "batch_req_unrun", "custom_id": line.custom_id, "response": null,
                "error": {"code": unrun_code, "message": "This request could not be executed before the batch ended."}});
            errors.push_str(&text.to_string());
            errors.push('\n');
        }
        if !output.is_empty() {
            *counter += 1;
            let id = format!("file-out-{counter:04}");
            files.insert(id.clone(), output.into_bytes());
            batch.output_file_id = Some(id);
        }
        if !errors.is_empty() {
            *counter += 1;
            let id = format!("file-err-{counter:04}");
            files.insert(id.clone(), errors.into_bytes());
            batch.error_file_id = Some(id);
        }
    };
    match batch.status.as_str() {
        "in_progress" if batch.results.len() == batch.lines => batch.status = "finalizing".into(),
        "in_progress"
            if batch.expires
                && shared
                    .config
                    .expire_after_looks
                    .is_some_and(|n| batch.looks > n) =>
        {
            finish(batch, files, counter, "batch_expired");
            batch.status = "expired".into();
        }
        "finalizing" => {
            finish(batch, files, counter, "batch_expired");
            batch.status = "completed".into();
        }
        "cancelling" => {
            finish(batch, files, counter, "batch_cancelled");
            batch.status = "cancelled".into();
        }
        _ => {}
    }
    json_response(batch_json(batch))
}

/// What a line asks: its messages, role and text, one after the other (a chain of thought's
/// second call repeats the question and adds the reasoning, so it is another request).
fn request_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| {
                    format!(
                        "{}: {}",
                        x["role"].as_str().unwrap_or(""),
                        x["content"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

async fn run_line(shared: &Shared, line: &Line) -> (String, u16, Value) {
    let request = request_text(&line.body);
    let runs = {
        let mut state = shared.state.lock().unwrap();
        let runs = state.runs_per_request.entry(request.clone()).or_insert(0);
        *runs += 1;
        *runs
    };
    let failing = shared
        .config
        .fail_always
        .iter()
        .any(|q| request.contains(q.as_str()))
        || (runs == 1
            && shared
                .config
                .fail_first
                .iter()
                .any(|q| request.contains(q.as_str())));
    if failing {
        return (
            line.custom_id.clone(),
            500,
            json!({"error": {"code": "InternalServerError", "message": "The server had an error while processing your request."}}),
        );
    }
    shared.state.lock().unwrap().batch_requests_run += 1;
    let mut body = line.body.clone();
    let url = if line.url == "/chat/completions" {
        let deployment = body["model"].as_str().unwrap_or("").to_string();
        if let Value::Object(map) = &mut body {
            map.remove("model");
        }
        format!(
            "{}/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21",
            shared.chat
        )
    } else {
        format!("{}/v1/chat/completions", shared.chat)
    };
    let response = shared
        .client
        .post(url)
        .header("api-key", &shared.config.api_key)
        .bearer_auth(&shared.config.api_key)
        .json(&body)
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            (line.custom_id.clone(), status, body)
        }
        Err(e) => (
            line.custom_id.clone(),
            502,
            json!({"error": {"message": e.to_string()}}),
        ),
    }
}

async fn proxy(shared: &Shared, url: String, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = shared.client.post(url).body(body.to_vec());
    for name in ["api-key", "authorization", "content-type"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
            let mut out = Response::builder().status(status);
            for (name, value) in response.headers() {
                out = out.header(name.as_str(), value.as_bytes());
            }
            let bytes = response.bytes().await.unwrap_or_default();
            out.body(axum::body::Body::from(bytes)).unwrap()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "502", &e.to_string()),
    }
}

async fn proxy_azure_chat(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let url = format!(
        "{}/openai/deployments/{deployment}/chat/completions{query}",
        shared.chat
    );
    proxy(&shared, url, headers, body).await
}

async fn proxy_openai_chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!("{}/v1/chat/completions", shared.chat);
    proxy(&shared, url, headers, body).await
}
