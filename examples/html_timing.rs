//! Times an evalr HTML page in headless Chromium: first contentful paint, the moment the row
//! list is ready (the page sets `data-shown` on its row status), the main thread's long tasks
//! while loading (a task over 50 ms is one the user can feel; their sum beyond 50 ms each is
//! the "total blocking time"), a subject filter, an outcome filter, the first text search
//! (which inflates every row chunk), opening a row, and the JavaScript heap kept after a
//! garbage collection. Used by benches/html/run.sh; prints one JSON object.
//!
//! Usage: html_timing PAGE.html [REPEAT] [SCREENSHOT.png]

#[path = "../tests/integration/common/browser.rs"]
mod browser;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Installed before the page's own script runs (DevTools-injected, so the page's CSP does
/// not apply): records long tasks and the first time the row status says how many rows show.
const PROBE: &str = r#"
window.__evalr = { longTasks: [], readyAt: null };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__evalr.longTasks.push([e.startTime, e.duration]);
}).observe({ type: 'longtask', buffered: true });
new MutationObserver((changes, observer) => {
  for (const c of changes) {
    if (c.target.dataset && c.target.dataset.shown != null && window.__evalr.readyAt == null) {
      window.__evalr.readyAt = performance.now();
      observer.disconnect();
    }
  }
}).observe(document, { attributes: true, attributeFilter: ['data-shown'], subtree: true });
"#;

/// The load figures, read once the page is ready.
const LOAD_FIGURES: &str = r#"(() => {
  const p = performance.getEntriesByName('first-contentful-paint')[0];
  const n = performance.getEntriesByType('navigation')[0];
  const ready = window.__evalr.readyAt;
  const tasks = window.__evalr.longTasks.filter(([start]) => start <= ready);
  return {
    first_contentful_paint_ms: p ? p.startTime : null,
    dom_content_loaded_ms: n.domContentLoadedEventEnd,
    load_event_ms: n.loadEventEnd,
    rows_ready_ms: ready,
    long_tasks_until_ready: tasks.length,
    longest_task_ms: tasks.reduce((m, [, d]) => Math.max(m, d), 0),
    total_blocking_time_ms: tasks.reduce((s, [, d]) => s + Math.max(0, d - 50), 0),
  };
})()"#;

/// Time of a synchronous filter change (the page filters on `change` without waiting), and
/// the longest task it caused.
fn filter_script(status: &str, setup: &str, undo: &str) -> String {
    format!(
        r#"(async () => {{
  const t = performance.now();
  {setup}
  const d = performance.now() - t;
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const frame = performance.now() - t;
  {undo}
  return {{ handler_ms: d, until_next_frame_ms: frame, shown: Number(document.querySelector('{status}').dataset.shown) }};
}})()"#
    )
}

const SEARCH: &str = r#"(async () => {
  const s = document.querySelector('#filter-search');
  const status = document.querySelector('#row-status');
  const before = window.__evalr.longTasks.length;
  const t = performance.now();
  s.value = 'zzzz-no-such-text';
  s.dispatchEvent(new Event('input'));
  while (status.dataset.shown !== '0') await new Promise((r) => setTimeout(r, 10));
  const total = performance.now() - t;
  const tasks = window.__evalr.longTasks.slice(before);
  // The second search reads the text already inflated.
  const t2 = performance.now();
  s.value = 'zzzz-no-such-text-2';
  s.dispatchEvent(new Event('input'));
  while (status.dataset.shown !== '0') await new Promise((r) => setTimeout(r, 10));
  const second = performance.now() - t2;
  s.value = '';
  s.dispatchEvent(new Event('input'));
  while (status.dataset.shown == null || status.dataset.shown === '0') await new Promise((r) => setTimeout(r, 10));
  // Both include the page's 180 ms typing debounce.
  return { first_search_ms: total, second_search_ms: second, debounce_ms: 180, longest_task_ms: tasks.reduce((m, [, d]) => Math.max(m, d), 0) };
})()"#;

const OPEN_ROW: &str = r#"(async () => {
  const list = document.querySelector('#row-list, .flip-list');
  const detail = document.querySelector('#row-detail, .flip-detail');
  list.scrollTop = list.scrollHeight / 2;
  list.dispatchEvent(new Event('scroll'));
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const row = list.querySelector('.vrow');
  const id = row.querySelector('.id').textContent;
  const t = performance.now();
  row.click();
  while (detail.dataset.row !== id) await new Promise((r) => setTimeout(r, 5));
  return performance.now() - t;
})()"#;

/// The JavaScript heap the page holds on to: used size after a garbage collection (exact, from
/// DevTools; `performance.memory` is coarse and updated lazily).
fn retained_heap_mb(browser: &mut browser::Browser) -> f64 {
    browser.call("HeapProfiler.collectGarbage", json!({}));
    let usage = browser.call("Runtime.getHeapUsage", json!({}));
    usage["usedSize"].as_f64().unwrap_or(f64::NAN) / 1_048_576.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: html_timing PAGE.html [REPEAT] [SCREENSHOT.png]";
    let Some(page) = args.next().map(PathBuf::from) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let repeat: usize = match args.next().map(|r| r.parse()) {
        None => 3,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let screenshot = args.next().map(PathBuf::from);
    let Some(binary) = browser::chromium_binary() else {
        eprintln!("chromium not found (scripts/setup.sh --test, or set EVALR_CHROMIUM)");
        std::process::exit(2);
    };
    let mut runs = Vec::new();
    for k in 0..repeat {
        // A fresh browser each time: nothing cached from the previous load.
        let mut browser = browser::Browser::launch(&binary);
        browser.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": PROBE}),
        );
        let started = Instant::now();
        browser.open(&page);
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        browser.wait_for("window.__evalr.readyAt != null", Duration::from_secs(300));
        let mut run = browser.eval(LOAD_FIGURES);
        run["load_event_wall_ms"] = json!(load_ms);
        run["js_heap_at_ready_mb"] = json!(retained_heap_mb(&mut browser));
        let run_page =
            browser.eval("Boolean(document.querySelector('#filter-subject'))") == Value::Bool(true);
        if run_page {
            run["subject_filter"] = browser.eval(&filter_script(
                "#row-status",
                "const s = document.querySelector('#filter-subject'); s.value = s.options[s.options.length - 1].value; s.dispatchEvent(new Event('change'));",
                "s.value = ''; s.dispatchEvent(new Event('change'));",
            ));
            run["outcome_filter"] = browser.eval(&filter_script(
                "#row-status",
                "const c = document.querySelector('#filter-outcomes input[data-outcome=correct]'); c.checked = false; c.dispatchEvent(new Event('change'));",
                "c.checked = true; c.dispatchEvent(new Event('change'));",
            ));
            run["search"] = browser.eval(SEARCH);
        } else {
            run["direction_filter"] = browser.eval(&filter_script(
                ".flip-status",
                "const s = document.querySelector('.flip-direction'); s.value = '0'; s.dispatchEvent(new Event('change'));",
                "s.value = ''; s.dispatchEvent(new Event('change'));",
            ));
        }
        run["open_row_ms"] = browser.eval(OPEN_ROW);
        // After the search has read every row chunk and a row was opened.
        run["js_heap_mb"] = json!(retained_heap_mb(&mut browser));
        if k == 0
            && let Some(path) = &screenshot
        {
            browser.screenshot(path);
        }
        let errors = browser.errors();
        if !errors.is_empty() {
            run["page_errors"] = json!(errors);
        }
        runs.push(run);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"page": page.display().to_string(), "runs": runs}))
            .unwrap_or_default()
    );
}
