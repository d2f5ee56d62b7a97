//! The embeddings file: one vector per row id, with the embedding model's identity, as a
//! parquet table pandas and DuckDB read directly:
//!
//! | column | type | |
//! |---|---|---|
//! | `id` | utf8 | the row id |
//! | `text_sha256` | utf8 | sha256 of the embedded text (a changed question is embedded again) |
//! | `model` | utf8 | the embedding backend's identity (`azure:https://x/text-embedding-3-small`, `local:...@sha`) |
//! | `vector` | list<float32> | the embedding as the model returned it |
//!
//! The model identity is also in the file's key-value metadata (`evalr.model`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

/// Why the embeddings file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VectorsError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> VectorsError {
    VectorsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// sha256 (hex) of a text to embed.
pub fn text_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// One stored embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub text_sha256: String,
    pub vector: Vec<f32>,
}

/// The embeddings of one dataset by one model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VectorTable {
    pub model: String,
    pub by_id: HashMap<String, StoredVector>,
    /// Ids in the order they were written.
    pub order: Vec<String>,
}

impl VectorTable {
    pub fn new(model: &str) -> VectorTable {
        VectorTable {
            model: model.to_string(),
            ..VectorTable::default()
        }
    }

    /// The stored vector of `id` if it embeds `text_sha256`.
    pub fn get(&self, id: &str, text_sha256: &str) -> Option<&[f32]> {
        self.by_id
            .get(id)
            .filter(|v| v.text_sha256 == text_sha256)
            .map(|v| v.vector.as_slice())
    }

    pub fn insert(&mut self, id: &str, text_sha256: String, vector: Vec<f32>) {
        if !self.by_id.contains_key(id) {
            self.order.push(id.to_string());
        }
        self.by_id.insert(
            id.to_string(),
            StoredVector {
                text_sha256,
                vector,
            },
        );
    }

    /// Reads the file at `path`; `None` when it does not exist. Rows of another model than
    /// `model` are an error: one file holds one model's vectors.
    pub fn read(path: &Path, model: &str) -> Result<Option<VectorTable>, VectorsError> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_error(path, e)),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| file_error(path, format!("not an embeddings parquet file ({e})")))?
            .build()
            .map_err(|e| file_error(path, e))?;
        let mut table = VectorTable::new(model);
        for batch in reader {
            let batch = batch.map_err(|e| file_error(path, e))?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| file_error(path, format!("has no `{name}` column")))
            };
            let ids = column("id")?
                .as_string_opt::<i32>()
                .ok_or_else(|| file_error(path, "`id` is not a text column"))?;
            let hashes = column("text_sha256")?
                .as_string_opt::<i32>()
                .ok_or_else(|| file_error(path, "`text_sha256` is not a text column"))?;
            let models = column("model")?
                .as_string_opt::<i32>()
                .ok_or_else(|| file_error(path, "`model` is not a text column"))?;
            let vectors = column("vector")?
                .as_list_opt::<i32>()
                .ok_or_else(|| file_error(path, "`vector` is not a list column"))?;
            for i in 0..batch.num_rows() {
                if models.value(i) != model {
                    return Err(file_error(
                        path,
                        format!(
                            "holds embeddings of `{}`, not of `{model}`: choose another --output, or delete the file",
                            models.value(i)
                        ),
                    ));
                }
                let values = vectors.value(i);
                let floats = values
                    .as_primitive_opt::<Float32Type>()
                    .ok_or_else(|| file_error(path, "`vector` items are not float32"))?;
                table.insert(
                    ids.value(i),
                    hashes.value(i).to_string(),
                    floats.values().to_vec(),
                );
            }
        }
        Ok(Some(table))
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text_sha256", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new(
                "vector",
                DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
                false,
            ),
        ]))
    }

    /// Writes the table to `path` atomically (a temporary file renamed over it), with the
    /// user's umask.
    pub fn write(&self, path: &Path) -> Result<(), VectorsError> {
        let schema = Self::schema();
        let mut ids = StringBuilder::new();
        let mut hashes = StringBuilder::new();
        let mut models = StringBuilder::new();
        let mut vectors = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
            "item",
            DataType::Float32,
            true,
        )));
        for id in &self.order {
            let Some(stored) = self.by_id.get(id) else {
                continue;
            };
            ids.append_value(id);
            hashes.append_value(&stored.text_sha256);
            models.append_value(&self.model);
            vectors.values().append_slice(&stored.vector);
            vectors.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(hashes.finish()),
            Arc::new(models.finish()),
            Arc::new(vectors.finish()),
        ];
        let batch =
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| file_error(path, e))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "evalr.model".to_string(),
                self.model.clone(),
            )]))
            .build();
        let mut buffer = Vec::new();
        {
            let mut writer = ArrowWriter::try_new(&mut buffer, schema, Some(properties))
                .map_err(|e| file_error(path, e))?;
            writer.write(&batch).map_err(|e| file_error(path, e))?;
            writer.close().map_err(|e| file_error(path, e))?;
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| file_error(path, e))?;
        // Through the one atomic writer: the file gets the user's umask like any other.
        crate::files::write_atomic(path, &buffer).map_err(|e| file_error(path, e))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_another_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        let mut table = VectorTable::new("m1");
        table.insert("b", text_sha256("x"), vec![1.0, 2.0]);
        table.insert("a", text_sha256("y"), vec![0.5, -1.0]);
        table.write(&path).unwrap();
        let back = VectorTable::read(&path, "m1").unwrap().unwrap();
        assert_eq!(back, table);
        assert_eq!(back.get("a", &text_sha256("y")), Some(&[0.5f32, -1.0][..]));
        assert_eq!(back.get("a", &text_sha256("changed")), None);
        let err = VectorTable::read(&path, "m2").unwrap_err().to_string();
        assert!(err.contains("not of `m2`"), "{err}");
        assert_eq!(
            VectorTable::read(&dir.path().join("none"), "m1").unwrap(),
            None
        );
    }
}
