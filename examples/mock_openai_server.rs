//! The test suite's local chat-completions server as a standalone program, for benchmarks:
//! `cargo run --release --example mock_openai_server -- --port 8999 --rpm 6000 --latency-ms 100`.
//! It answers "A" to everything (the benchmark measures throughput, not accuracy).

#[path = "../tests/integration/common/openai_server.rs"]
mod openai_server;

use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 8999)]
    port: u16,
    /// Requests per minute the server allows (evaluated over 1-second windows).
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens per minute the server allows.
    #[arg(long)]
    tpm: Option<u32>,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The window the quota is evaluated over, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    window_ms: u64,
    /// Rate-limit headers on success: azure, azure-limits, openai or none.
    #[arg(long, default_value = "azure")]
    headers: String,
    /// Send this constant `x-ratelimit-remaining-requests` on every answer (a gateway's
    /// quota that does not bind), whatever was sent.
    #[arg(long)]
    constant_remaining: Option<u64>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = openai_server::ServerConfig {
        rpm: args.rpm,
        tpm: args.tpm,
        latency: Duration::from_millis(args.latency_ms),
        window: Duration::from_millis(args.window_ms),
        quota_headers: match args.headers.as_str() {
            "azure-limits" => openai_server::QuotaHeaderStyle::AzureWithLimits,
            "openai" => openai_server::QuotaHeaderStyle::OpenAi,
            "none" => openai_server::QuotaHeaderStyle::None,
            _ => openai_server::QuotaHeaderStyle::Azure,
        },
        constant_remaining: args.constant_remaining,
        ..Default::default()
    };
    let addr =
        openai_server::ChatServer::serve_forever(config, &format!("127.0.0.1:{}", args.port)).await;
    eprintln!("listening on http://{addr}");
    std::future::pending::<()>().await;
}
