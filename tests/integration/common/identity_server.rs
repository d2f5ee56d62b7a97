//! A local managed-identity endpoint speaking the real protocols, for identity tests.
//!
//! - `GET /msi/token?api-version=2017-09-01&resource=R[&clientid=C]` with header `secret`
//!   (AzureML compute, `MSI_ENDPOINT` + `MSI_SECRET`);
//! - `POST /msi/token` form `resource=R` with `Metadata: true` (Cloud Shell, `MSI_ENDPOINT`);
//! - `GET /appservice/token?api-version=2019-08-01&resource=R` with header
//!   `X-IDENTITY-HEADER` (App Service protocol, `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).
//!
//! Each answer is `{"access_token": "token-N", "expires_on": "<epoch s>", "resource": R,
//! "token_type": "Bearer"}` with N counting requests from 1.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub const SECRET: &str = "msi-secret-value";
/// The Kubernetes-projected token a workload identity exchanges (client assertion).
pub const FEDERATED_TOKEN: &str = "federated-token-value";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub params: HashMap<String, String>,
    pub headers: HashMap<String, String>,
}

#[derive(Clone)]
struct Shared {
    lifetime_secs: u64,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

pub struct IdentityServer {
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IdentityServer {
    /// Starts on 127.0.0.1 (a free port) on its own thread; tokens live `lifetime_secs`.
    pub fn start(lifetime_secs: u64) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            lifetime_secs,
            requests: requests.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = Router::new()
                    .route("/msi/token", get(msi_get).post(msi_post))
                    .route("/appservice/token", get(app_service))
                    .with_state(shared);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        IdentityServer {
            base,
            requests,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for IdentityServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn record(
    shared: &Shared,
    method: &str,
    path: &str,
    params: HashMap<String, String>,
    headers: &HeaderMap,
) -> usize {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut all = shared.requests.lock().unwrap();
    all.push(Recorded {
        method: method.into(),
        path: path.into(),
        params,
        headers,
    });
    all.len()
}

fn token_answer(shared: &Shared, n: usize, resource: Option<&String>) -> Response {
    let Some(resource) = resource else {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"resource missing\"}").into_response();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    axum::Json(json!({
        "access_token": format!("token-{n}"),
        "expires_on": (now + shared.lifetime_secs).to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn msi_get(
    State(shared): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let n = record(&shared, "GET", "/msi/token", params.clone(), &headers);
    if headers.get("secret").and_then(|v| v.to_str().ok()) != Some(SECRET) {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid secret\"}").into_response();
    }
    if params.get("api-version").map(String::as_str) != Some("2017-09-01") {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"api-version\"}").into_response();
    }
    token_answer(&shared, n, params.get("resource"))
}

async fn msi_post(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let n = record(&shared, "POST", "/msi/token", form.clone(), &headers);
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return (
            StatusCode::BAD_REQUEST,
            "{\"error\":\"Metadata header missing\"}",
        )
            .into_response();
    }
    token_answer(&shared, n, form.get("resource"))
}

async fn app_service(
    State(shared): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let n = record(
        &shared,
        "GET",
        "/appservice/token",
        params.clone(),
        &headers,
    );
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"invalid identity header\"}",
        )
            .into_response();
    }
    if params.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"api-version\"}").into_response();
    }
    token_answer(&shared, n, params.get("resource"))
}

/// A local Entra ID authority over HTTPS (`AZURE_AUTHORITY_HOST` must be https):
/// `POST /{tenant}/oauth2/v2.0/token` with the client-credentials form (a client secret or a
/// federated client assertion) answers
/// `{"token_type": "Bearer", "expires_in": lifetime, "access_token": "token-N"}`. Its
/// certificate is signed by a CA written to `ca_file`, for `SSL_CERT_FILE`.
pub struct TlsAuthority {
    pub base: String,
    pub ca_file: std::path::PathBuf,
    requests: Arc<Mutex<Vec<Recorded>>>,
    handle: axum_server::Handle<std::net::SocketAddr>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TlsAuthority {
    pub fn start(lifetime_secs: u64) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            lifetime_secs,
            requests: requests.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let handle = axum_server::Handle::new();
        let server_handle = handle.clone();
        let (cert_pem, key_pem) = (cert.pem().into_bytes(), key.serialize_pem().into_bytes());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // Both ring and aws-lc-rs are compiled into the test binary: pick one.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            runtime.block_on(async move {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem, key_pem)
                    .await
                    .unwrap();
                let app = Router::new()
                    .route(
                        "/{tenant}/oauth2/v2.0/token",
                        axum::routing::post(client_credentials),
                    )
                    .with_state(shared);
                axum_server::from_tcp_rustls(listener, config)
                    .unwrap()
                    .handle(server_handle)
                    .serve(app.into_make_service())
                    .await
                    .unwrap();
            });
        });
        TlsAuthority {
            base,
            ca_file,
            requests,
            handle,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TlsAuthority {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn client_credentials(
    State(shared): State<Shared>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut params = form.clone();
    params.insert("tenant".into(), tenant);
    let n = record(&shared, "POST", "/oauth2/v2.0/token", params, &headers);
    let secret_ok = form.get("client_secret").map(String::as_str) == Some(SECRET);
    let assertion_ok = form.get("client_assertion_type").map(String::as_str)
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && form.get("client_assertion").map(String::as_str) == Some(FEDERATED_TOKEN);
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || !(secret_ok || assertion_ok)
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]})),
        )
            .into_response();
    }
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": shared.lifetime_secs,
        "ext_expires_in": shared.lifetime_secs,
        "access_token": format!("token-{n}"),
    }))
    .into_response()
}
