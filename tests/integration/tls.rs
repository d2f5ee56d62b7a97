//! HTTPS to a server whose certificate a private CA signs (a TLS-inspecting proxy, a company
//! CA): refused at once, naming the host and the certificate problem, until `SSL_CERT_FILE`
//! names the CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::common::runs::{evalr, succeeds};

/// An OpenAI-compatible `/v1/embeddings` over HTTPS at `https://localhost:PORT/v1`, its
/// certificate signed by a CA written to `ca_file`. A plain TCP relay in front counts the
/// connections, so a retry shows even when no request gets through the handshake.
struct TlsEmbeddings {
    base: String,
    ca_file: PathBuf,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

async fn embeddings(
    State(requests): State<Arc<AtomicUsize>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    requests.fetch_add(1, Ordering::SeqCst);
    let inputs = body["input"].as_array().map_or(0, Vec::len);
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"index": i, "embedding": [1.0, i as f32]}))
        .collect();
    Json(json!({"data": data, "usage": {"prompt_tokens": inputs}}))
}

impl TlsEmbeddings {
    fn start() -> TlsEmbeddings {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_params.self_signed(&ca_key).unwrap().pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (counted, answered) = (connections.clone(), requests.clone());
        let front: SocketAddr = runtime.block_on(async move {
            // Both ring and aws-lc-rs are compiled into the test binary: pick one.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                cert.pem().into_bytes(),
                key.serialize_pem().into_bytes(),
            )
            .await
            .unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let tls = listener.local_addr().unwrap();
            let app = axum::Router::new()
                .route("/v1/embeddings", axum::routing::post(embeddings))
                .with_state(answered);
            let server = axum_server::from_tcp_rustls(listener, config).unwrap();
            tokio::spawn(server.serve(app.into_make_service()));
            let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let front = relay.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = relay.accept().await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(tls).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            front
        });
        TlsEmbeddings {
            base: format!("https://localhost:{}/v1", front.port()),
            ca_file,
            connections,
            requests,
            _runtime: runtime,
            _dir: dir,
        }
    }
}

#[test]
fn a_private_ca_is_refused_at_once_and_trusted_through_ssl_cert_file() {
    let server = TlsEmbeddings::start();
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("rows.jsonl");
    std::fs::write(
        &dataset,
        "{\"id\": \"r1\", \"question\": \"one?\", \"choices\": [\"a\", \"b\"], \"correct_answer\": 0}\n\
         {\"id\": \"r2\", \"question\": \"two?\", \"choices\": [\"a\", \"b\"], \"correct_answer\": 1}\n",
    )
    .unwrap();
    let output = dir.path().join("rows.parquet");
    let embed = |ca_file: Option<&PathBuf>| {
        let mut command = evalr();
        command
            .env("OPENAI_BASE_URL", &server.base)
            .env("OPENAI_API_KEY", "test-key")
            // Only what the test names is trusted besides the built-in roots.
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("REQUESTS_CA_BUNDLE")
            .arg("embed")
            .arg(&dataset)
            .args(["--model", "openai:text-embedding-3-small", "--no-cache"])
            .args(["--max-retries", "3", "--retry-interval", "0"])
            .arg("--output")
            .arg(&output);
        if let Some(ca_file) = ca_file {
            command.env("SSL_CERT_FILE", ca_file);
        }
        command
    };

    let refused = embed(None).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "{}/embeddings: the TLS certificate of localhost is not trusted (invalid peer certificate: UnknownIssuer); if a proxy or a private CA signs it, set SSL_CERT_FILE to that CA's certificate (PEM)",
            server.base
        )),
        "{stderr}"
    );
    // One connection: a certificate that fails once fails every time, so it is not retried.
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    assert!(!output.exists());

    succeeds(&mut embed(Some(&server.ca_file)));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert!(output.is_file());
}
