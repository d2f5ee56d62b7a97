//! The one HTTP client constructor: every request evalr makes (model backends, the
//! `MSI_ENDPOINT` identity, the Files and Batches APIs, MLflow) goes through a client built
//! here, so timeouts, proxies and TLS are decided in one place.
//!
//! - Timeouts: the caller's whole-request timeout, and at most [`CONNECT_TIMEOUT`] to connect.
//! - Proxies: reqwest's system proxy, read from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//!   `NO_PROXY` (upper or lower case) when the client is built. Nothing here turns it off.
//! - TLS: rustls with the Mozilla roots built into reqwest (`rustls-tls`). A private CA
//!   (`SSL_CERT_FILE`, `SSL_CERT_DIR`, `REQUESTS_CA_BUNDLE`) belongs in [`http_client`] too,
//!   as roots added to the builder, so that every caller trusts the same certificates.

use std::error::Error;
use std::time::Duration;

/// The longest a connection may take to open (capped by the request's own timeout): a service
/// that accepts no connection in 10 s is down or unreachable, and waiting out the whole
/// request timeout would only delay the retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const USER_AGENT: &str = concat!("evalr/", env!("CARGO_PKG_VERSION"));

/// Why no HTTP client could be built (the message says what to fix).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct HttpClientError(String);

/// A client whose requests time out after `timeout`, with evalr's user agent, the system
/// proxy and evalr's TLS roots.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| HttpClientError(error_chain(&e)))
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
}
