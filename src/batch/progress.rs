//! What a batch run shows while it waits: the batches' states, requests completed and failed
//! by the service's counts, and an ETA from the rate at which those counts grow.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::results::batch_ledger::{BatchLedger, EntryState};

/// A line no more often than this when nothing but the counts changed.
const QUIET_FOR: Duration = Duration::from_secs(10);

pub struct BatchProgress {
    enabled: bool,
    last_line: Option<String>,
    last_at: Instant,
    /// (when, requests done) at the first look at this round's batches.
    first: Option<(Instant, u64)>,
}

impl BatchProgress {
    pub fn new(enabled: bool) -> BatchProgress {
        BatchProgress {
            enabled,
            last_line: None,
            last_at: Instant::now(),
            first: None,
        }
    }

    /// Starts timing a new set of batches.
    pub fn reset(&mut self) {
        self.first = None;
    }

    pub fn message(&self, text: &str) {
        if self.enabled {
            eprintln!("{text}");
        }
    }

    /// Prints the state of the round's batches when it changed.
    pub fn show(&mut self, ledger: &BatchLedger, round: Option<u32>) {
        if !self.enabled {
            return;
        }
        let entries: Vec<_> = ledger
            .batches
            .iter()
            .filter(|b| b.state != EntryState::Split && round.is_none_or(|r| b.round == r))
            .collect();
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut total, mut completed, mut failed) = (0u64, 0u64, 0u64);
        for entry in &entries {
            *states.entry(entry.status.as_str()).or_default() += 1;
            total += entry.lines;
            completed += entry.completed;
            failed += entry.failed;
        }
        let done = completed + failed;
        let now = Instant::now();
        let first = *self.first.get_or_insert((now, done));
        let elapsed = now.duration_since(first.0).as_secs_f64();
        let eta = if done > first.1 && elapsed > 0.0 && total > done {
            let rate = (done - first.1) as f64 / elapsed;
            format!(
                ", ETA {}",
                human(Duration::from_secs_f64((total - done) as f64 / rate))
            )
        } else {
            String::new()
        };
        let states = states
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        let shape = format!("batches: {states}");
        let line = format!("{shape}; requests {completed}/{total} completed, {failed} failed{eta}");
        let changed_shape = self
            .last_line
            .as_ref()
            .is_none_or(|l| !l.starts_with(&format!("{shape};")));
        if changed_shape
            || (self.last_at.elapsed() >= QUIET_FOR && self.last_line.as_ref() != Some(&line))
        {
            eprintln!("{line}");
            self.last_line = Some(line);
            self.last_at = now;
        }
    }
}

fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}
