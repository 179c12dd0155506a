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

/// Record batches of one Parquet file or of a dataset directory's parts, in row order; a decoder
/// failure or panic is an error that names the file.
pub struct Batches {
    schema: SchemaRef,
    /// The parts still to read, in order (one for a single file).
    parts: std::collections::VecDeque<(PathBuf, ParquetRecordBatchReader)>,
    failed: bool,
}

impl Batches {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Iterator for Batches {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            let (path, inner) = self.parts.front_mut()?;
            let item = match guarded(|| inner.next()) {
                Ok(Some(Err(e))) => Some(Err(ArrowError::ExternalError(Box::new(corrupted(path, e))))),
                Ok(item) => item,
                Err(panic) => Some(Err(ArrowError::ExternalError(Box::new(corrupted(path, format!("decoder panic: {panic}")))))),
            };
            match item {
                None => {
                    self.parts.pop_front();
                }
                Some(item) => {
                    self.failed = item.is_err();
                    return Some(item);
                }
            }
        }
        None
    }
}

/// One file of a source.
struct Part {
    path: PathBuf,
    builder: ParquetRecordBatchReaderBuilder<File>,
}

/// An opened Parquet table whose schema was checked against the expected one: one file, or a
/// dataset directory of shard parts ([`crate::dataset`]) read as one table in part order.
pub struct ParquetSource {
    pub path: PathBuf,
    /// The key-value metadata (of the first part; every part must agree, see [`ParquetSource::open`]).
    pub metadata: BTreeMap<String, String>,
    pub num_rows: usize,
    parts: Vec<Part>,
}

/// Metadata that may differ between the parts of one dataset: shards on different machines see the
/// source under different paths.
const PER_PART_METADATA: [&str; 1] = [meta::SOURCE_PATH];

impl ParquetSource {
    /// Opens `path` and checks that it holds every column of `expected` with the right type. A
    /// directory is a dataset of shard parts: it must be complete, and its parts must agree on the
    /// schema and on the metadata (they come from one sharded run).
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
        let files = if path.is_dir() { crate::dataset::parts(path)? } else { vec![path.to_path_buf()] };
        let mut parts = Vec::with_capacity(files.len());
        let mut metadata = BTreeMap::new();
        let mut num_rows = 0;
        for file_path in files {
            let file = File::open(&file_path).map_err(|e| Error::io(&file_path, e))?;
            let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(file))
                .map_err(|panic| corrupted(&file_path, format!("decoder panic: {panic}")))?
                .map_err(|e| corrupted(&file_path, e))?;
            check(&file_path, expected, builder.schema())?;
            let file_meta = builder.metadata().file_metadata();
            let part_metadata: BTreeMap<String, String> = file_meta
                .key_value_metadata()
                .map(|kv| kv.iter().filter_map(|k| Some((k.key.clone(), k.value.clone()?))).collect())
                .unwrap_or_default();
            num_rows += file_meta.num_rows() as usize;
            if let Some(first) = parts.first() {
                check_same_part(first, &metadata, &file_path, builder.schema(), &part_metadata)?;
            } else {
                metadata = part_metadata;
            }
            parts.push(Part { path: file_path, builder });
        }
        Ok(ParquetSource { path: path.to_path_buf(), metadata, num_rows, parts })
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The table's Arrow schema (for columns whose type depends on the file, e.g. an embedding's width).
    pub fn schema(&self) -> SchemaRef {
        self.parts[0].builder.schema().clone()
    }

    /// Streams record batches holding only the named columns, in row order.
    pub fn read_columns(self, columns: &[&str]) -> Result<Batches> {
        self.read(columns, None)
    }

    /// Rows in each row group, in row order across parts (a streaming reader's unit of IO).
    pub fn row_group_rows(&self) -> Vec<usize> {
        self.parts.iter().flat_map(|p| p.builder.metadata().row_groups().iter().map(|g| g.num_rows() as usize)).collect()
    }

    /// Like [`ParquetSource::read_columns`], but only the given row groups (ascending indices into
    /// [`ParquetSource::row_group_rows`]).
    pub fn read_row_groups(self, columns: &[&str], groups: Vec<usize>) -> Result<Batches> {
        self.read(columns, Some(groups))
    }

    fn read(self, columns: &[&str], groups: Option<Vec<usize>>) -> Result<Batches> {
        let mut readers = std::collections::VecDeque::with_capacity(self.parts.len());
        let mut first_group = 0;
        let mut schema = None;
        for Part { path, builder } in self.parts {
            let arrow_schema = builder.schema().clone();
            let roots: Vec<usize> = columns.iter().map(|c| arrow_schema.index_of(c).map_err(|e| Error::arrow(&path, e))).collect::<Result<_>>()?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            let count = builder.metadata().num_row_groups();
            let mut builder = builder.with_projection(mask).with_batch_size(ROW_GROUP_ROWS);
            if let Some(groups) = &groups {
                let local = groups.iter().filter(|&&g| g >= first_group && g < first_group + count).map(|g| g - first_group).collect();
                builder = builder.with_row_groups(local);
            }
            first_group += count;
            let inner = builder.build().map_err(|e| corrupted(&path, e))?;
            schema.get_or_insert_with(|| arrow::record_batch::RecordBatchReader::schema(&inner));
            readers.push_back((path, inner));
        }
        let schema = schema.expect("a source has at least one part");
        Ok(Batches { schema, parts: readers, failed: false })
    }

    /// Reads the named columns fully into memory.
    pub fn collect_columns(self, columns: &[&str]) -> Result<Vec<RecordBatch>> {
        let path = self.path.clone();
        self.read_columns(columns)?.collect::<Result<Vec<_>, _>>().map_err(|e| Error::arrow(path, e))
    }
}

/// A later part of a dataset must have the first part's columns and metadata: parts of two runs
/// (another featurizer, source or model) must not be read as one table.
fn check_same_part(first: &Part, first_meta: &BTreeMap<String, String>, path: &Path, schema: &SchemaRef, part_meta: &BTreeMap<String, String>) -> Result<()> {
    let fields = |s: &SchemaRef| s.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect::<Vec<_>>();
    if fields(first.builder.schema()) != fields(schema) {
        return Err(Error::invalid(path, format!("its columns differ from those of {}: the parts come from different runs. Rerun the stage's shards", first.path.display())));
    }
    let keys: std::collections::BTreeSet<&String> = first_meta.keys().chain(part_meta.keys()).collect();
    for key in keys {
        // `ARROW:schema` embeds the Arrow schema with its metadata, per-part keys included; the
        // columns were compared above.
        if PER_PART_METADATA.contains(&key.as_str()) || key.starts_with("ARROW:") || first_meta.get(key) == part_meta.get(key) {
            continue;
        }
        return Err(Error::invalid(
            path,
            format!(
                "its metadata `{key}` is {:?} but {} has {:?}: the parts come from different runs. Rerun the stage's shards",
                part_meta.get(key),
                first.path.display(),
                first_meta.get(key)
            ),
        ));
    }
    Ok(())
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

    /// A dataset directory of shard parts reads as one table in part order: rows, row groups (global
    /// indices across parts) and metadata; parts of different runs are an error naming the part.
    #[test]
    fn a_directory_of_parts_reads_as_one_table() {
        use crate::shard::Shard;
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("split.parquet");
        let schema = schema::split::schema();
        let sizes = [ROW_GROUP_ROWS + 5, 3, 0, ROW_GROUP_ROWS];
        let mut first_id = 0u32;
        let write_part = |i: usize, n: usize, first: u32, note: &str| {
            let ids: Vec<u32> = (first..first + n as u32).collect();
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt32Array::from(ids)), Arc::new(StringArray::from(vec!["train"; n]))]).unwrap();
            let path = crate::dataset::table_path(dir.path(), "split.parquet", Some(Shard { index: i, count: sizes.len() }));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let extra = BTreeMap::from([("molpeg.note".to_string(), note.to_string()), (meta::SOURCE_PATH.to_string(), format!("/node{i}/x.csv"))]);
            write_batches(&path, schema.clone(), schema::split::KIND, &extra, &[batch]).unwrap();
        };
        for (i, &n) in sizes.iter().enumerate() {
            write_part(i, n, first_id, "same run");
            first_id += n as u32;
        }
        let source = ParquetSource::open(&table, &schema).unwrap();
        assert_eq!(source.num_rows, first_id as usize);
        assert_eq!(source.meta("molpeg.note"), Some("same run"));
        assert_eq!(source.row_group_rows(), vec![ROW_GROUP_ROWS, 5, 3, ROW_GROUP_ROWS]);
        let ids = |batches: Batches| -> Vec<u32> { batches.flat_map(|b| b.unwrap().column(0).as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec()).collect() };
        assert_eq!(ids(source.read_columns(&["mol_id"]).unwrap()), (0..first_id).collect::<Vec<_>>());
        // Groups 1 (the first part's tail) and 3 (the last part): global indices.
        let some = ParquetSource::open(&table, &schema).unwrap().read_row_groups(&["mol_id"], vec![1, 3]).unwrap();
        let expected: Vec<u32> = (ROW_GROUP_ROWS as u32..ROW_GROUP_ROWS as u32 + 5).chain(ROW_GROUP_ROWS as u32 + 8..first_id).collect();
        assert_eq!(ids(some), expected);
        // A part of another run.
        write_part(1, 3, ROW_GROUP_ROWS as u32 + 5, "another run");
        let err = ParquetSource::open(&table, &schema).err().unwrap().to_string();
        assert!(err.contains("part-00001-of-00004.parquet") && err.contains("molpeg.note") && err.contains("different runs"), "{err}");
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
