//! `evalr view [RESULTS_DIR]`: list the runs and comparisons under a results folder and serve
//! their pages on 127.0.0.1 (only there: the pages hold prompts and answers).
//!
//! A run scored before `report.html` existed gets its page made when it is asked for (the run
//! is scored in memory; nothing is written into the folder).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use clap::Args;

use super::UsageError;
use crate::report::Exporter;
use crate::report::html::listing::{self, Listing};
use crate::report::html::{HtmlExporter, REPORT_HTML, RunPage};
use crate::say;

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The results folder (or one run's folder).
    #[arg(default_value = "results")]
    pub results_dir: PathBuf,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Only list the runs and their report files; serve nothing.
    #[arg(long)]
    pub list: bool,
}

pub fn execute_view(args: ViewArgs) -> anyhow::Result<ExitCode> {
    if !args.results_dir.is_dir() {
        return Err(UsageError(format!(
            "{} is not a folder: pass the results folder `evalr run` writes into (default: results)",
            args.results_dir.display()
        ))
        .into());
    }
    let listing = listing::find_pages(&args.results_dir)
        .with_context(|| format!("reading {}", args.results_dir.display()))?;
    print_listing(&listing)?;
    if args.list {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(listing, args.port))?;
    Ok(ExitCode::SUCCESS)
}

fn print_listing(listing: &Listing) -> std::io::Result<()> {
    if listing.runs.is_empty() && listing.comparisons.is_empty() {
        say!(
            "no runs under {} (a run folder holds run.json and outputs.jsonl)",
            listing.root
        )?;
    }
    for run in &listing.runs {
        let accuracy = run
            .accuracy
            .map(|a| format!("{:.1}%", a * 100.0))
            .unwrap_or_else(|| "not scored".into());
        let page = if run.has_report {
            run.path.join(REPORT_HTML).display().to_string()
        } else {
            "(no report.html: run `evalr score`, or open it here)".into()
        };
        say!(
            "{:<40} {:<12} {:>10}  {}",
            run.name,
            run.status.as_deref().unwrap_or("-"),
            accuracy,
            page
        )?;
    }
    for comparison in &listing.comparisons {
        say!(
            "{:<40} {:<12} {:>10}  {}",
            comparison.name,
            "compare",
            "",
            comparison.path.display()
        )?;
    }
    Ok(())
}

async fn serve(listing: Listing, port: u16) -> anyhow::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (is the port taken? try --port 0)"))?;
    let bound = listener.local_addr()?;
    // Runs are looked up by their position in the listing, never by a path from the URL, so
    // a request cannot name a file outside the results folder.
    let app =
        Router::new()
            .route("/", get(index))
            .route(
                "/runs/{k}",
                get(|UrlPath(k): UrlPath<usize>| async move {
                    Redirect::permanent(&format!("/runs/{k}/"))
                }),
            )
            .route("/runs/{k}/", get(run_page))
            .route("/compare/{k}/", get(compare_page))
            .with_state(Arc::new(listing));
    say!("serving on http://{bound}/ (Ctrl-C to stop)")?;
    axum::serve(listener, app)
        .await
        .context("the page server stopped")?;
    Ok(())
}

type Shared = State<Arc<Listing>>;

fn html(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn failure(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

async fn index(State(listing): Shared) -> Response {
    match listing::render_listing(&listing) {
        Ok(page) => html(page.into_bytes()),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.0),
    }
}

async fn run_page(State(listing): Shared, UrlPath(k): UrlPath<usize>) -> Response {
    let Some(run) = listing.runs.get(k) else {
        return failure(StatusCode::NOT_FOUND, format!("no run number {k}"));
    };
    let path = run.path.clone();
    let page = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let written = path.join(REPORT_HTML);
        if written.is_file() {
            return std::fs::read(&written).map_err(|e| format!("{}: {e}", written.display()));
        }
        let summary = crate::score::score_folder(&path).map_err(|e| e.to_string())?;
        let folder = crate::results::ResultFolder::open(&path).map_err(|e| e.to_string())?;
        HtmlExporter
            .serialize(&RunPage::new(&folder, &summary))
            .map_err(|e| e.0)
    })
    .await;
    match page {
        Ok(Ok(bytes)) => html(bytes),
        Ok(Err(message)) => failure(StatusCode::INTERNAL_SERVER_ERROR, message),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn compare_page(State(listing): Shared, UrlPath(k): UrlPath<usize>) -> Response {
    let Some(comparison) = listing.comparisons.get(k) else {
        return failure(StatusCode::NOT_FOUND, format!("no comparison number {k}"));
    };
    match tokio::fs::read(&comparison.path).await {
        Ok(bytes) => html(bytes),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", comparison.path.display()),
        ),
    }
}
