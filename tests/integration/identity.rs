//! Entra ID tokens against a local managed-identity endpoint.

use crate::common::identity_server;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use evalr::backend::identity::{
    AZUREML_SCOPE, COGNITIVE_SERVICES_SCOPE, CachedTokenSource, MsiEndpoint, TokenSource,
};
use identity_server::{IdentityServer, SECRET};

fn azureml_msi(server: &IdentityServer, secret: &str) -> MsiEndpoint {
    MsiEndpoint::new(
        format!("{}/msi/token", server.base),
        Some(secret.into()),
        None,
    )
}

#[tokio::test]
async fn azureml_compute_protocol_gets_and_caches_a_token() {
    let server = IdentityServer::start(3600);
    let source = CachedTokenSource::new(azureml_msi(&server, SECRET));
    assert_eq!(
        source.token(COGNITIVE_SERVICES_SCOPE).await.unwrap(),
        "token-1"
    );
    assert_eq!(
        source.token(COGNITIVE_SERVICES_SCOPE).await.unwrap(),
        "token-1"
    );
    assert_eq!(source.token(AZUREML_SCOPE).await.unwrap(), "token-2");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(
        requests[0].params["resource"],
        "https://cognitiveservices.azure.com"
    );
    assert_eq!(requests[0].params["api-version"], "2017-09-01");
    assert_eq!(requests[0].headers["secret"], SECRET);
    assert_eq!(requests[1].params["resource"], "https://ml.azure.com");
    let token = source.access_token(AZUREML_SCOPE).await.unwrap();
    let left = token.expires_at.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires() {
    // Tokens live 4 s; the source refreshes 2 s before expiry.
    let server = IdentityServer::start(4);
    let source =
        CachedTokenSource::with_margin(azureml_msi(&server, SECRET), Duration::from_secs(2));
    assert_eq!(
        source.token(COGNITIVE_SERVICES_SCOPE).await.unwrap(),
        "token-1"
    );
    assert_eq!(
        source.token(COGNITIVE_SERVICES_SCOPE).await.unwrap(),
        "token-1"
    );
    // expires_on has whole seconds: after 2.5 s at most 1.5 s are left, inside the margin,
    // though the token has not expired yet.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let token = source.access_token(COGNITIVE_SERVICES_SCOPE).await.unwrap();
    assert_eq!(token.secret, "token-2");
    assert_eq!(
        source.token(COGNITIVE_SERVICES_SCOPE).await.unwrap(),
        "token-2"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_request() {
    let server = IdentityServer::start(3600);
    let source = Arc::new(CachedTokenSource::new(azureml_msi(&server, SECRET)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.token(COGNITIVE_SERVICES_SCOPE).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "token-1");
    }
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_request_says_where_and_why_without_the_secret() {
    let server = IdentityServer::start(3600);
    let source = CachedTokenSource::new(azureml_msi(&server, "wrong-secret"));
    let error = source
        .token(COGNITIVE_SERVICES_SCOPE)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "ManagedIdentity(MSI_ENDPOINT, AzureML): token request to {}/msi/token failed: HTTP 401 Unauthorized: {{\"error\":\"invalid secret\"}}",
            server.base
        )
    );
    assert!(!error.contains("wrong-secret"));
}

#[tokio::test]
async fn cloud_shell_protocol_posts_a_form() {
    let server = IdentityServer::start(3600);
    let source = CachedTokenSource::new(MsiEndpoint::new(
        format!("{}/msi/token", server.base),
        None,
        None,
    ));
    assert_eq!(source.token(AZUREML_SCOPE).await.unwrap(), "token-1");
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.params["resource"].as_str()),
        ("POST", "https://ml.azure.com")
    );
    assert_eq!(r.headers["metadata"], "true");
}

/// The binary with only these variables (and PATH, for the Azure CLI credential).
fn evalr_with_env(vars: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evalr"));
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn stdout_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).unwrap()
}

#[test]
fn auth_check_uses_the_identity_endpoint_through_azure_identity() {
    let server = IdentityServer::start(3600);
    let assert = evalr_with_env(&[
        (
            "IDENTITY_ENDPOINT",
            format!("{}/appservice/token", server.base),
        ),
        ("IDENTITY_HEADER", SECRET.to_string()),
    ])
    .args(["auth-check", "--scope", AZUREML_SCOPE])
    .assert()
    .success();
    let out = stdout_of(&assert);
    assert!(
        out.starts_with("ok: got a token for https://ml.azure.com/.default from ManagedIdentityCredential, valid until "),
        "{out}"
    );
    assert!(
        !out.contains("token-1"),
        "the token itself is printed: {out}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/appservice/token");
    assert_eq!(requests[0].params["resource"], "https://ml.azure.com");
    assert_eq!(requests[0].params["api-version"], "2019-08-01");
    assert_eq!(requests[0].headers["x-identity-header"], SECRET);
}

#[test]
fn auth_check_uses_the_azureml_msi_endpoint() {
    let server = IdentityServer::start(3600);
    let assert = evalr_with_env(&[
        ("MSI_ENDPOINT", format!("{}/msi/token", server.base)),
        ("MSI_SECRET", SECRET.to_string()),
        ("DEFAULT_IDENTITY_CLIENT_ID", "1111-2222".to_string()),
    ])
    .arg("auth-check")
    .assert()
    .success();
    let out = stdout_of(&assert);
    assert!(
        out.starts_with("ok: got a token for https://cognitiveservices.azure.com/.default from ManagedIdentity(MSI_ENDPOINT, AzureML), valid until "),
        "{out}"
    );
    assert!(
        out.ends_with(" (3599 s from now)\n") || out.ends_with(" (3600 s from now)\n"),
        "{out}"
    );
    assert_eq!(server.requests()[0].params["clientid"], "1111-2222");
}

#[test]
fn auth_check_without_any_credential_explains_what_to_do() {
    let assert = evalr_with_env(&[]).arg("auth-check").assert().code(2);
    let err = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        err.starts_with("error: no Entra ID credential worked for scope https://cognitiveservices.azure.com/.default (AzureCliCredential: "),
        "{err}"
    );
    assert!(err.trim_end().ends_with("; set a key instead, or sign in with `az login`, or run where a managed identity is available"), "{err}");
}

#[test]
fn auth_check_uses_the_environment_client_secret_against_the_authority_host() {
    let authority = identity_server::TlsAuthority::start(3600);
    let env = |secret: &str| {
        vec![
            ("AZURE_TENANT_ID", "my-tenant".to_string()),
            ("AZURE_CLIENT_ID", "my-client".to_string()),
            ("AZURE_CLIENT_SECRET", secret.to_string()),
            ("AZURE_AUTHORITY_HOST", authority.base.clone()),
            // The authority's certificate is signed by the test's CA.
            ("SSL_CERT_FILE", authority.ca_file.display().to_string()),
        ]
    };
    let assert = evalr_with_env(&env(SECRET))
        .arg("auth-check")
        .assert()
        .success();
    let out = stdout_of(&assert);
    assert!(
        out.starts_with("ok: got a token for https://cognitiveservices.azure.com/.default from EnvironmentCredential(client secret), valid until "),
        "{out}"
    );
    let requests = authority.requests();
    assert_eq!(requests.len(), 1);
    let form = &requests[0].params;
    assert_eq!(form["tenant"], "my-tenant");
    assert_eq!(form["client_id"], "my-client");
    assert_eq!(form["scope"], COGNITIVE_SERVICES_SCOPE);

    // A wrong secret: the authority's reason, never the secret.
    let assert = evalr_with_env(&env("not-the-secret"))
        .arg("auth-check")
        .assert()
        .code(2);
    let err = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("EnvironmentCredential(client secret): "),
        "{err}"
    );
    assert!(
        err.contains("AADSTS7000215: Invalid client secret provided."),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[test]
fn auth_check_uses_a_workload_identity_token_file() {
    let authority = identity_server::TlsAuthority::start(3600);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, identity_server::FEDERATED_TOKEN).unwrap();
    let assert = evalr_with_env(&[
        ("AZURE_TENANT_ID", "my-tenant".to_string()),
        ("AZURE_CLIENT_ID", "my-client".to_string()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AZURE_AUTHORITY_HOST", authority.base.clone()),
        ("SSL_CERT_FILE", authority.ca_file.display().to_string()),
    ])
    .args(["auth-check", "--scope", AZUREML_SCOPE])
    .assert()
    .success();
    let out = stdout_of(&assert);
    assert!(
        out.starts_with("ok: got a token for https://ml.azure.com/.default from WorkloadIdentityCredential, valid until "),
        "{out}"
    );
    let form = &authority.requests()[0].params;
    assert_eq!(form["client_assertion"], identity_server::FEDERATED_TOKEN);
    assert_eq!(form["scope"], AZUREML_SCOPE);
}
