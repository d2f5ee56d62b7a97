//! The row engine: playing one row through a program (render, stop at the open call, ask the
//! backend through the response cache and the retry policy, capture, render again), ensembles
//! of repeats, the stop rules and the Ctrl-C watcher.
//!
//! Both transports play rows with it: `crate::live` sends each call now, under the limiter;
//! `crate::batch` answers calls from the downloaded batch files. Nothing here knows which
//! transport is in use, and neither transport imports the other.

pub mod cache;
pub mod ensemble;
mod failure;
mod interrupt;
mod retry;
mod row;
mod stop;

pub use cache::{DEFAULT_CACHE_DIR, ResponseCache};
pub use ensemble::{EnsemblePlan, EnsembleRunner};
pub use failure::RowFailure;
pub use interrupt::Interrupt;
pub use retry::{Attempted, RetryOptions, RetryPolicy, with_retries};
pub use row::{Played, RowContext, input_context, play_program, row_context, run_row};
pub use stop::{LimitOptions, StopRules, failure_record, invalid_record};
