//! Ctrl-C, the same for every transport: the first stops taking new work (what is in flight
//! finishes and is journaled, or, in a batch run, the batches keep running on the service); a
//! second one quits at once with exit code 130.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The watcher of one run. Installing it starts listening for Ctrl-C.
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Interrupt {
    /// Watches Ctrl-C: the first sets the flag, sets `stop` too (the scheduler's "take no more
    /// rows") and prints `note`, if given; a second one exits the process with 130.
    pub fn install(stop: Option<Arc<AtomicBool>>, note: Option<&'static str>) -> Interrupt {
        let flag = Arc::new(AtomicBool::new(false));
        let notify = Arc::new(Notify::new());
        let (f, n) = (Arc::clone(&flag), Arc::clone(&notify));
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                f.store(true, Ordering::SeqCst);
                if let Some(stop) = stop {
                    stop.store(true, Ordering::SeqCst);
                }
                if let Some(note) = note {
                    eprintln!("\n{note}");
                }
                n.notify_waiters();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        Interrupt { flag, notify }
    }

    /// Whether Ctrl-C was pressed.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps `duration`; true when interrupted meanwhile (the sleep ends at once).
    pub async fn sleep(&self, duration: Duration) -> bool {
        if self.is_set() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => self.is_set(),
            _ = self.notify.notified() => true,
        }
    }
}
