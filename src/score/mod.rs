//! Scoring: metrics and statistics over a result folder.
