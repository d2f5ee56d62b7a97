//! Datasets: the row schema, the streaming JSONL reader/writer, conversions, the hub.

mod row;

pub use row::Row;

mod interim;
pub use interim::{DatasetError, DatasetSource, RowError, RowReader};
