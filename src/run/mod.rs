//! Runs: scheduling, retries, the journal, resume.
