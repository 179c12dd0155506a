//! The only module that opens Parquet files: schema-checked reading and atomic, row-group-streamed
//! writing with molpeg's key-value metadata.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use arrow::error::ArrowError;

use crate::atomic::{AtomicFile, PendingRename};
use crate::schema::{self, meta};
use crate::{Error, Result};

/// Rows per Parquet row group; readers stream one group at a time.
pub const ROW_GROUP_ROWS: usize = 16 * 1024;

/// Writes one Parquet file atomically: nothing appears under the final name until [`ParquetSink::finish`].
pub struct ParquetSink {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    pending: PendingRename,
    rows: usize,
}

impl ParquetSink {
    /// `kind` is one of the `schema::*::KIND` names; `extra` adds stage-specific metadata.
    pub fn create(path: impl AsRef<Path>, schema: SchemaRef, kind: &str, extra: &BTreeMap<String, String>) -> Result<Self> {
        let path = path.as_ref();
        let (file, pending) = AtomicFile::create(path)?.into_parts();
        let mut kv = vec![
            KeyValue::new(meta::SCHEMA_VERSION.to_string(), schema::SCHEMA_VERSION.to_string()),
            KeyValue::new(meta::TOOL_VERSION.to_string(), crate::TOOL_VERSION.to_string()),
            KeyValue::new(meta::KIND.to_string(), kind.to_string()),
        ];
        kv.extend(extra.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())));
        // Also on the Arrow schema: pyarrow reads metadata from the embedded Arrow schema.
        let schema_metadata = kv.iter().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect();
        let schema = Arc::new(schema.as_ref().clone().with_metadata(schema_metadata));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
            .set_max_row_group_size(ROW_GROUP_ROWS)
            .set_key_value_metadata(Some(kv))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| Error::parquet(path, e))?;
        Ok(ParquetSink { writer, schema, pending, rows: 0 })
    }

    /// Writes a batch built against the plain schema (without metadata).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        let path = self.pending.final_path();
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|e| Error::arrow(path, e))?;
        self.writer.write(&batch).map_err(|e| Error::parquet(path, e))
    }

    /// Closes the file, syncs it and renames it into place. Returns the final path and row count.
    pub fn finish(self) -> Result<(PathBuf, usize)> {
        let path = self.pending.final_path().to_path_buf();
        let file = self.writer.into_inner().map_err(|e| Error::parquet(&path, e))?;
        let path = self.pending.commit(&file)?;
        Ok((path, self.rows))
    }
}

/// Writes a whole table in one call.
pub fn write_batches(path: impl AsRef<Path>, schema: SchemaRef, kind: &str, extra: &BTreeMap<String, String>, batches: &[RecordBatch]) -> Result<PathBuf> {
    let mut sink = ParquetSink::create(path, schema, kind, extra)?;
    for batch in batches {
        sink.write(batch)?;
    }
    Ok(sink.finish()?.0)
}

thread_local! {
    /// Set while this thread decodes Parquet under [`guarded`], whose panics become errors.
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)`. The parquet crate panics on some corrupted files
/// (out-of-range offsets in a damaged page); a corrupted file must be an error naming it, never a
/// crash. The panic hook stays quiet for these panics so the user sees our message only.
fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(|d| d.get()) {
                default(info);
            }
        }));
    });
    let was = DECODING.with(|d| d.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    DECODING.with(|d| d.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "decoder panicked".into())
    })
}

/// The error for a file the decoder cannot read.
pub fn corrupted(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::invalid(
        path,
        format!("cannot decode this Parquet file ({detail}): it is corrupted or truncated. Delete it and rerun the stage that wrote it (its stage directory's manifest is then stale and the stage reruns), or pass --force to that stage"),
    )
}

/// Record batches of one Parquet file, in file order; a decoder failure or panic is an error that
/// names the file.
pub struct Batches {
    path: PathBuf,
    inner: ParquetRecordBatchReader,
    failed: bool,
}

impl Batches {
    pub fn schema(&self) -> SchemaRef {
        arrow::record_batch::RecordBatchReader::schema(&self.inner)
    }
}

impl Iterator for Batches {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let inner = &mut self.inner;
        let item = match guarded(|| inner.next()) {
            Ok(Some(Err(e))) => Some(Err(ArrowError::ExternalError(Box::new(corrupted(&self.path, e))))),
            Ok(item) => item,
            Err(panic) => Some(Err(ArrowError::ExternalError(Box::new(corrupted(&self.path, format!("decoder panic: {panic}")))))),
        };
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

/// An opened Parquet file whose schema was checked against the expected one.
pub struct ParquetSource {
    pub path: PathBuf,
    pub metadata: BTreeMap<String, String>,
    pub num_rows: usize,
    builder: ParquetRecordBatchReaderBuilder<File>,
}

impl ParquetSource {
    /// Opens `path` and checks that it holds every column of `expected` with the right type.
    pub fn open(path: impl AsRef<Path>, expected: &SchemaRef) -> Result<Self> {
        Self::open_checked(path.as_ref(), expected, schema::check)
    }

    /// Opens a file a user may have written with another tool (coreset, scores, split): integer and
    /// float columns may have any integer and float type ([`schema::check_user`]); read their values
    /// with [`crate::columns`].
    pub fn open_user(path: impl AsRef<Path>, expected: &SchemaRef) -> Result<Self> {
        Self::open_checked(path.as_ref(), expected, schema::check_user)
    }

    fn open_checked(path: &Path, expected: &SchemaRef, check: fn(&Path, &arrow::datatypes::Schema, &arrow::datatypes::Schema) -> Result<()>) -> Result<Self> {
        let path = path.to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(file))
            .map_err(|panic| corrupted(&path, format!("decoder panic: {panic}")))?
            .map_err(|e| corrupted(&path, e))?;
        check(&path, expected, builder.schema())?;
        let file_meta = builder.metadata().file_metadata();
        let metadata = file_meta
            .key_value_metadata()
            .map(|kv| kv.iter().filter_map(|k| Some((k.key.clone(), k.value.clone()?))).collect())
            .unwrap_or_default();
        let num_rows = file_meta.num_rows() as usize;
        Ok(ParquetSource { path, metadata, num_rows, builder })
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The file's Arrow schema (for columns whose type depends on the file, e.g. an embedding's width).
    pub fn schema(&self) -> SchemaRef {
        self.builder.schema().clone()
    }

    /// Streams record batches holding only the named columns, in file order.
    pub fn read_columns(self, columns: &[&str]) -> Result<Batches> {
        self.read(columns, None)
    }

    /// Rows in each row group, in file order (a streaming reader's unit of IO).
    pub fn row_group_rows(&self) -> Vec<usize> {
        self.builder.metadata().row_groups().iter().map(|g| g.num_rows() as usize).collect()
    }

    /// Like [`ParquetSource::read_columns`], but only the given row groups (ascending indices).
    pub fn read_row_groups(self, columns: &[&str], groups: Vec<usize>) -> Result<Batches> {
        self.read(columns, Some(groups))
    }

    fn read(self, columns: &[&str], groups: Option<Vec<usize>>) -> Result<Batches> {
        let schema = self.builder.parquet_schema();
        let arrow_schema = self.builder.schema().clone();
        let roots: Vec<usize> = columns
            .iter()
            .map(|c| arrow_schema.index_of(c).map_err(|e| Error::arrow(&self.path, e)))
            .collect::<Result<_>>()?;
        let mask = ProjectionMask::roots(schema, roots);
        let mut builder = self.builder.with_projection(mask).with_batch_size(ROW_GROUP_ROWS);
        if let Some(groups) = groups {
            builder = builder.with_row_groups(groups);
        }
        let inner = builder.build().map_err(|e| corrupted(&self.path, e))?;
        Ok(Batches { path: self.path, inner, failed: false })
    }

    /// Reads the named columns fully into memory.
    pub fn collect_columns(self, columns: &[&str]) -> Result<Vec<RecordBatch>> {
        let path = self.path.clone();
        self.read_columns(columns)?.collect::<Result<Vec<_>, _>>().map_err(|e| Error::arrow(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, UInt32Array};

    #[test]
    fn round_trip_with_metadata_and_schema_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.parquet");
        let schema = schema::split::schema();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt32Array::from(vec![0, 1])), Arc::new(StringArray::from(vec!["train", "test"]))],
        )
        .unwrap();
        let extra = BTreeMap::from([("molpeg.note".to_string(), "x".to_string())]);
        write_batches(&path, schema.clone(), schema::split::KIND, &extra, &[batch]).unwrap();
        let source = ParquetSource::open(&path, &schema).unwrap();
        assert_eq!(source.num_rows, 2);
        assert_eq!(source.meta(meta::KIND), Some("split"));
        assert_eq!(source.meta("molpeg.note"), Some("x"));
        let batches = source.collect_columns(&["split"]).unwrap();
        assert_eq!(batches[0].num_columns(), 1);
        let err = ParquetSource::open(&path, &schema::coreset::schema()).err().unwrap().to_string();
        assert!(err.contains("column `rank` is missing"), "{err}");
    }

    /// Every single-byte corruption and every truncation of a small file is an error naming the file,
    /// never a panic (the parquet crate panics on some of them).
    #[test]
    fn corrupted_and_truncated_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.parquet");
        let schema = schema::split::schema();
        let n = 3000u32;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt32Array::from((0..n).collect::<Vec<_>>())), Arc::new(StringArray::from((0..n).map(|i| ["train", "valid", "test"][i as usize % 3]).collect::<Vec<_>>()))],
        )
        .unwrap();
        write_batches(&path, schema.clone(), schema::split::KIND, &BTreeMap::new(), &[batch]).unwrap();
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad.parquet");
        let mut errors = 0;
        let mut read_back_equal = 0;
        let read = |p: &Path| -> Result<usize> {
            let source = ParquetSource::open(p, &schema)?;
            let batches = source.collect_columns(&["mol_id", "split"])?;
            Ok(batches.iter().map(|b| b.num_rows()).sum())
        };
        let mut cases: Vec<Vec<u8>> = (0..good.len()).step_by(7).map(|i| { let mut b = good.clone(); b[i] ^= 0x5a; b }).collect();
        cases.extend((0..good.len()).step_by(97).map(|len| good[..len].to_vec()));
        for bytes in cases {
            std::fs::write(&bad, &bytes).unwrap();
            match read(&bad) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains("bad.parquet"), "{msg}");
                    errors += 1;
                }
                Ok(_) => read_back_equal += 1, // a flipped bit in a value or padding decodes
            }
        }
        assert!(errors > 10, "{errors} errors, {read_back_equal} decoded");
    }
}
