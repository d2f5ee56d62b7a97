//! The one HTTP client constructor: every request evalr makes (model backends, the
//! `MSI_ENDPOINT` identity, the Files and Batches APIs, MLflow) goes through a client built
//! here, so timeouts, proxies and TLS are decided in one place.
//!
//! - Timeouts: the caller's whole-request timeout, and at most [`CONNECT_TIMEOUT`] to connect.
//! - Proxies: reqwest's system proxy, read from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//!   `NO_PROXY` (upper or lower case) when the client is built. Nothing here turns it off.
//! - TLS: rustls with the Mozilla roots built into reqwest (`rustls-tls`), plus the CA
//!   certificates named by `SSL_CERT_FILE`, `SSL_CERT_DIR` or `REQUESTS_CA_BUNDLE` (the
//!   variables OpenSSL, curl and Python's requests read), so a machine set up for `az` or
//!   `pip` behind a TLS-inspecting proxy or a private CA works for evalr as it is. They are
//!   added to the built-in roots rather than replacing them: a file holding only the private
//!   CA still lets public endpoints through.

use std::error::Error;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The longest a connection may take to open (capped by the request's own timeout): a service
/// that accepts no connection in 10 s is down or unreachable, and waiting out the whole
/// request timeout would only delay the retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The variables naming CA certificates to trust besides the built-in roots: PEM files
/// (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`) and folders of PEM files (`SSL_CERT_DIR`, several
/// separated by `:` as OpenSSL reads it).
pub const CA_VARIABLES: [&str; 3] = ["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"];

const USER_AGENT: &str = concat!("evalr/", env!("CARGO_PKG_VERSION"));

/// Why no HTTP client could be built (the message says what to fix).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct HttpClientError(String);

/// A client whose requests time out after `timeout`, with evalr's user agent, the system
/// proxy, and the built-in roots plus the CA certificates the environment names.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    // Read once per process: the variables do not change while evalr runs, and a folder such
    // as /etc/ssl/certs holds hundreds of files.
    static ROOTS: OnceLock<Result<Vec<reqwest::Certificate>, String>> = OnceLock::new();
    let roots = ROOTS
        .get_or_init(|| extra_roots(|name| std::env::var_os(name)).map_err(|e| e.0))
        .clone()
        .map_err(HttpClientError)?;
    http_client_trusting(timeout, roots)
}

/// [`http_client`] with the extra roots given.
fn http_client_trusting(
    timeout: Duration,
    roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, HttpClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .user_agent(USER_AGENT);
    for root in roots {
        builder = builder.add_root_certificate(root);
    }
    builder
        .build()
        .map_err(|e| HttpClientError(error_chain(&e)))
}

/// The CA certificates the variables `env` gives name. A file that cannot be read or holds
/// no certificate is an error (a typo would otherwise show up later as an untrusted server);
/// in a folder, files that are not PEM certificates are skipped, as OpenSSL skips them.
fn extra_roots(
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<reqwest::Certificate>, HttpClientError> {
    let mut roots = Vec::new();
    for name in CA_VARIABLES {
        let Some(value) = env(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        if name == "SSL_CERT_DIR" {
            for folder in std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()) {
                roots.extend(certificates_in_folder(name, &folder)?);
            }
            continue;
        }
        let path = PathBuf::from(value);
        let bytes = std::fs::read(&path).map_err(|e| {
            HttpClientError(format!(
                "{name} names {}, which cannot be read: {e}",
                path.display()
            ))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&bytes)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                HttpClientError(format!(
                    "{name} names {}, which holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                ))
            })?;
        roots.extend(certificates);
    }
    Ok(roots)
}

fn certificates_in_folder(
    name: &str,
    folder: &Path,
) -> Result<Vec<reqwest::Certificate>, HttpClientError> {
    let entries = std::fs::read_dir(folder).map_err(|e| {
        HttpClientError(format!(
            "{name} names {}, which cannot be read: {e}",
            folder.display()
        ))
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    Ok(paths
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|bytes| reqwest::Certificate::from_pem_bundle(&bytes).ok())
        .flatten()
        .collect())
}

/// What is wrong with the server's certificate, when that is why a request failed (an
/// unknown issuer, an expired certificate, another host's name): a failure every request to
/// that host will meet the same way until the trust settings change, never worth a retry.
pub fn certificate_problem(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(
            tls @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented),
        ) = cause.downcast_ref::<rustls::Error>()
        {
            return Some(tls.to_string());
        }
        // An I/O error's `source` skips the error it wraps (its own message is the wrapped
        // one's): the TLS handshake's rustls error is found only by looking inside.
        source = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
            None => cause.source(),
        };
    }
    None
}

/// A request's error with its whole cause chain and without its URL (which may carry a query
/// string with a key; callers name the URL themselves). reqwest's own message ("error sending
/// request") hides why: the refused connection, the unknown host, the certificate.
pub fn request_error_text(error: reqwest::Error) -> String {
    error_chain(&error.without_url())
}

/// `error: cause: cause of the cause`, each message once (some layers repeat their source's
/// message in their own).
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !message.is_empty() && !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// An HTTPS server for tests, whose certificate a CA made by the test signs.
#[cfg(test)]
pub(crate) mod test_tls {
    use std::net::SocketAddr;

    /// Serves `https://localhost:PORT` (on 127.0.0.1) on the current tokio runtime, answering
    /// every request `{"ok": true}`; the CA that signed its certificate is `ca_pem`.
    pub struct TlsServer {
        pub base: String,
        pub ca_pem: String,
        handle: axum_server::Handle<SocketAddr>,
    }

    impl TlsServer {
        pub async fn start() -> TlsServer {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
            let issuer = Issuer::new(ca_params, ca_key);
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["localhost".to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            // The test binary links more than one rustls provider: name one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                cert.pem().into_bytes(),
                key.serialize_pem().into_bytes(),
            )
            .await
            .unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let base = format!(
                "https://localhost:{}",
                listener.local_addr().unwrap().port()
            );
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(listener, config)
                .unwrap()
                .handle(handle.clone());
            let app = axum::Router::new()
                .fallback(|| async { axum::Json(serde_json::json!({"ok": true})) });
            tokio::spawn(async move { server.serve(app.into_make_service()).await });
            TlsServer {
                base,
                ca_pem,
                handle,
            }
        }
    }

    impl Drop for TlsServer {
        fn drop(&mut self) {
            self.handle.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(message: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            message,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let error = layer(
            "error sending request",
            Some(layer(
                "client error (Connect)",
                Some(layer(
                    "tcp connect error: Connection refused (os error 111)",
                    Some(layer("Connection refused (os error 111)", None)),
                )),
            )),
        );
        assert_eq!(
            error_chain(&error),
            "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = http_client(Duration::from_secs(5)).unwrap();
        let error = client
            .get(format!("http://127.0.0.1:{port}/x?api-key=secret"))
            .send()
            .await
            .unwrap_err();
        let text = request_error_text(error);
        assert!(text.starts_with("error sending request"), "{text}");
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn a_server_signed_by_an_unknown_ca_is_refused_and_trusted_with_its_ca() {
        let server = test_tls::TlsServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &server.ca_pem).unwrap();
        let url = format!("{}/ping", server.base);

        let untrusting = http_client_trusting(Duration::from_secs(10), Vec::new()).unwrap();
        let error = untrusting.get(&url).send().await.unwrap_err();
        let problem = certificate_problem(&error).expect("a certificate problem");
        assert_eq!(problem, "invalid peer certificate: UnknownIssuer");
        assert!(
            request_error_text(error).ends_with("invalid peer certificate: UnknownIssuer"),
            "the cause chain names the problem"
        );

        for variable in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR"] {
            let value = match variable {
                "SSL_CERT_DIR" => dir.path().as_os_str().to_owned(),
                _ => ca_file.as_os_str().to_owned(),
            };
            let roots = extra_roots(|name| (name == variable).then(|| value.clone())).unwrap();
            assert_eq!(roots.len(), 1, "{variable}");
            let trusting = http_client_trusting(Duration::from_secs(10), roots).unwrap();
            let answer = trusting.get(&url).send().await.unwrap();
            assert_eq!(answer.text().await.unwrap(), r#"{"ok":true}"#, "{variable}");
        }
    }

    #[test]
    fn ca_variables_that_name_nothing_usable_say_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error =
            extra_roots(|name| (name == "SSL_CERT_FILE").then(|| missing.as_os_str().to_owned()))
                .unwrap_err()
                .to_string();
        assert!(
            error.starts_with(&format!(
                "cannot build the HTTP client: SSL_CERT_FILE names {}, which cannot be read: ",
                missing.display()
            )),
            "{error}"
        );
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let error = extra_roots(|name| {
            (name == "REQUESTS_CA_BUNDLE").then(|| not_pem.as_os_str().to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("REQUESTS_CA_BUNDLE names"), "{error}");
        assert!(error.contains("holds no PEM certificate"), "{error}");
        // In a folder, what is not a certificate is skipped; empty variables are unset.
        assert!(
            extra_roots(|name| (name == "SSL_CERT_DIR").then(|| dir.path().as_os_str().to_owned()))
                .unwrap()
                .is_empty()
        );
        assert!(extra_roots(|_| Some(OsString::new())).unwrap().is_empty());
    }
}
