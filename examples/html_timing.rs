//! Times an evalr HTML page in headless Chromium: first contentful paint, the moment the row
//! list is ready, a subject filter, the first text search (which inflates every row chunk),
//! opening a row, and the JavaScript heap. Used by benches/html.sh; prints one JSON object.
//!
//! Usage: cargo run --release --example html_timing -- PAGE.html [REPEAT]

#[path = "../tests/integration/common/browser.rs"]
mod browser;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn main() {
    let mut args = std::env::args().skip(1);
    let page = PathBuf::from(args.next().expect("usage: html_timing PAGE.html [REPEAT]"));
    let repeat: usize = args
        .next()
        .map_or(3, |r| r.parse().expect("REPEAT is a number"));
    let binary = browser::chromium_binary().expect("chromium not found (scripts/setup.sh --test)");
    let mut runs = Vec::new();
    for _ in 0..repeat {
        // A fresh browser each time: nothing cached from the previous load.
        let mut browser = browser::Browser::launch(&binary);
        let started = Instant::now();
        browser.open(&page);
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let timeout = Duration::from_secs(120);
        browser.wait_for(
            "document.querySelector('#row-status, .flip-status').dataset.shown",
            timeout,
        );
        let paint = browser.eval(
            "(() => { const p = performance.getEntriesByName('first-contentful-paint')[0]; const n = performance.getEntriesByType('navigation')[0]; return {fcp: p ? p.startTime : null, dom_content_loaded: n.domContentLoadedEventEnd, load: n.loadEventEnd, ready: performance.now()}; })()",
        );
        let mut run = json!({"load_event_wall_ms": load_ms, "paint": paint});
        if browser.eval("Boolean(document.querySelector('#filter-subject'))") == Value::Bool(true) {
            run["subject_filter_ms"] = browser.eval(
                "(() => { const s = document.querySelector('#filter-subject'); const t = performance.now(); s.value = s.options[1].value; s.dispatchEvent(new Event('change')); const d = performance.now() - t; s.value = ''; s.dispatchEvent(new Event('change')); return d; })()",
            );
            run["first_search_ms"] = browser.eval(
                "(async () => { const s = document.querySelector('#filter-search'); const t = performance.now(); s.value = 'zzzz-no-such-text'; s.dispatchEvent(new Event('input')); while (document.querySelector('#row-status').dataset.shown !== '0') await new Promise(r => setTimeout(r, 10)); return performance.now() - t - 180; })()",
            );
            run["open_row_ms"] = browser.eval(
                "(async () => { const s = document.querySelector('#filter-search'); s.value = ''; s.dispatchEvent(new Event('input')); while (document.querySelector('#row-status').dataset.shown === '0') await new Promise(r => setTimeout(r, 10)); const list = document.querySelector('#row-list'); list.scrollTop = list.scrollHeight / 2; list.dispatchEvent(new Event('scroll')); await new Promise(r => requestAnimationFrame(r)); const row = list.querySelector('.vrow'); const t = performance.now(); row.click(); while (document.querySelector('#row-detail').dataset.row !== row.title) await new Promise(r => setTimeout(r, 5)); return performance.now() - t; })()",
            );
        }
        run["js_heap_mb"] =
            browser.eval("performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null");
        runs.push(run);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"page": page.display().to_string(), "runs": runs}))
            .expect("JSON")
    );
}
