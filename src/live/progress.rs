//! Progress: a bar on a terminal (rows, rate, ETA, errors), plain periodic lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::results::Outcome;

const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    done: u64,
    errors: u64,
    correct: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(total: u64, already_done: u64, enabled: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} rows  {per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(already_done);
            bar
        });
        Progress {
            bar,
            plain: enabled && !terminal,
            total,
            done: already_done,
            errors: 0,
            correct: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self) {
        let message = format!("{} errors", self.errors);
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            bar.set_message(message);
        } else if self.plain && self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{}/{} rows, {rate:.1} rows/s, {message}",
                self.done, self.total
            );
        }
    }

    pub fn row_done(&mut self, outcome: Outcome) {
        self.done += 1;
        if outcome == Outcome::Correct {
            self.correct += 1;
        }
        self.update();
    }

    pub fn row_failed(&mut self, message: &str) {
        self.errors += 1;
        if let Some(bar) = &self.bar {
            bar.println(format!("row failed: {message}"));
        }
        self.update();
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
