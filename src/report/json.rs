//! JSON: `summary.json` and `compare --json`, pretty-printed, fields in schema order.

use serde::Serialize;

use super::{ExportError, Exporter};

pub struct JsonExporter;

impl<T: Serialize> Exporter<T> for JsonExporter {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, ExportError> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| ExportError(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
