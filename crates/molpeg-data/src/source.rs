//! Streaming `(row, smiles, labels)` out of a dataset CSV (plain or gzipped).

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::dataset::{DatasetSpec, LabelColumns, TaskType};
use crate::fetch::{is_gzip, FetchError};

/// One data row of the source file.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledRow {
    /// 0-based index among the data rows (the header is not a row); becomes `mol_id`.
    pub row: u32,
    pub smiles: String,
    /// One entry per task, `None` where the label is missing.
    pub labels: Vec<Option<f32>>,
    /// The row's geometry cells `(elements, positions)` as written, when the dataset names geometry
    /// columns (parsed by the featurizer, in parallel).
    pub geometry: Option<(String, String)>,
}

/// Counts the bytes read from the file (the compressed offset of a gzip error) and keeps the last
/// decoded byte (a file cut mid-row ends without a newline).
struct Tracked<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct LastByte<R> {
    inner: R,
    last: Arc<AtomicU8>,
}

impl<R: Read> Read for LastByte<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last.store(buf[n - 1], Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Reads a dataset CSV row by row; the header is checked on open.
pub struct RowReader {
    path: PathBuf,
    gzip: bool,
    compressed_bytes: Arc<AtomicU64>,
    last_byte: Arc<AtomicU8>,
    finished: bool,
    records: csv::StringRecordsIntoIter<Box<dyn Read + Send>>,
    smiles_index: usize,
    label_indices: Vec<usize>,
    /// Per task, the factor its values are multiplied by when read ([`crate::dataset::LabelUnit`]).
    label_scales: Vec<f64>,
    /// Per task, its unit (`""` when the dataset does not say).
    task_units: Vec<String>,
    geometry_indices: Option<(usize, usize)>,
    task_names: Vec<String>,
    task_type: TaskType,
    missing: Vec<String>,
    next_row: u32,
}

impl RowReader {
    pub fn open(path: &Path, spec: &DatasetSpec) -> Result<Self, FetchError> {
        let file = std::fs::File::open(path).map_err(|e| molpeg_core::Error::io(path, e))?;
        let gzip = is_gzip(path)?;
        let compressed_bytes = Arc::new(AtomicU64::new(0));
        let last_byte = Arc::new(AtomicU8::new(b'\n'));
        let tracked = BufReader::new(Tracked { inner: file, bytes: compressed_bytes.clone() });
        let decoded: Box<dyn Read + Send> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(tracked)) } else { Box::new(tracked) };
        let inner: Box<dyn Read + Send> = Box::new(LastByte { inner: decoded, last: last_byte.clone() });
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(inner);
        let headers: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(|h| h.trim().to_string()).collect(),
            Err(e) => return Err(read_error(path, gzip, compressed_bytes.load(Ordering::Relaxed), None, &e).into()),
        };
        if let Some(duplicate) = headers.iter().enumerate().find_map(|(i, h)| headers[..i].contains(h).then_some(h)) {
            return Err(molpeg_core::Error::invalid(path, format!("the CSV header names column `{duplicate}` twice; rename one so every column is unambiguous")).into());
        }
        let column_error = |what: &str| {
            molpeg_core::Error::invalid(
                path,
                format!("{what}; the file has columns: {}. Fix [dataset] in the pipeline file.", headers.join(", ")),
            )
        };
        let find = |name: &str| headers.iter().position(|h| h == name);
        let smiles_index =
            find(&spec.smiles_column).ok_or_else(|| column_error(&format!("SMILES column `{}` not found", spec.smiles_column)))?;
        let task_names: Vec<String> = match &spec.label_columns {
            LabelColumns::Named(names) => names.clone(),
            LabelColumns::All(star) if star == "*" => headers
                .iter()
                .filter(|h| **h != spec.smiles_column && !spec.ignore_columns.contains(h))
                .filter(|h| spec.geometry.as_ref().is_none_or(|g| **h != g.elements && **h != g.positions))
                .cloned()
                .collect(),
            LabelColumns::All(other) => return Err(column_error(&format!("label_columns must be a list or \"*\", not \"{other}\"")).into()),
        };
        // An explicit empty list is fine (molpeg-predict reads SMILES only); "*" finding nothing is a mistake.
        if task_names.is_empty() && matches!(spec.label_columns, LabelColumns::All(_)) {
            return Err(column_error("no label columns: `label_columns = \"*\"` found no column besides the SMILES and ignored columns").into());
        }
        let label_indices = task_names
            .iter()
            .map(|name| find(name).ok_or_else(|| column_error(&format!("label column `{name}` not found"))))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(column) = spec.label_units.keys().find(|c| !task_names.contains(c)) {
            return Err(column_error(&format!("[dataset.label_units] names `{column}`, which is not a label column")).into());
        }
        let unit = |name: &String| spec.label_units.get(name);
        let label_scales: Vec<f64> = task_names.iter().map(|n| unit(n).map_or(1.0, |u| u.scale)).collect();
        if let Some((name, scale)) = task_names.iter().zip(&label_scales).find(|(_, s)| !s.is_finite() || **s == 0.0) {
            return Err(column_error(&format!("[dataset.label_units] scale {scale} of `{name}` must be a finite, non-zero number")).into());
        }
        let task_units = task_names.iter().map(|n| unit(n).map(|u| u.unit.clone()).unwrap_or_default()).collect();
        let task_names: Vec<String> = task_names.iter().map(|n| unit(n).and_then(|u| u.name.clone()).unwrap_or_else(|| n.clone())).collect();
        let geometry_indices = match &spec.geometry {
            None => None,
            Some(g) => {
                let column = |name: &str| find(name).ok_or_else(|| column_error(&format!("geometry column `{name}` not found")));
                Some((column(&g.elements)?, column(&g.positions)?))
            }
        };
        Ok(RowReader {
            path: path.to_path_buf(),
            gzip,
            compressed_bytes,
            last_byte,
            finished: false,
            records: reader.into_records(),
            smiles_index,
            label_indices,
            label_scales,
            task_units,
            geometry_indices,
            task_names,
            task_type: spec.task_type,
            missing: spec.missing.clone(),
            next_row: 0,
        })
    }

    /// The tasks' names, after [`crate::dataset::LabelUnit::name`] renames.
    pub fn task_names(&self) -> &[String] {
        &self.task_names
    }

    /// Each task's unit (`""` where the dataset gives none).
    pub fn task_units(&self) -> &[String] {
        &self.task_units
    }

    fn parse_label(&self, row: u32, column: usize, cell: &str) -> Result<Option<f32>, FetchError> {
        let cell = cell.trim();
        if self.missing.iter().any(|m| m == cell) {
            return Ok(None);
        }
        let fail = |why: String| -> FetchError {
            molpeg_core::Error::Row { path: self.path.clone(), row: row as usize, message: why }.into()
        };
        let value: f32 = cell.parse().map_err(|_| {
            fail(format!(
                "label column `{}`: cannot read {cell:?} as a number; if it means \"missing\", add it to `missing` in [dataset]",
                self.task_names[column]
            ))
        })?;
        if !value.is_finite() {
            return Err(fail(format!(
                "label column `{}`: {cell:?} is not a finite number (labels are 32-bit floats, |x| < 3.4e38); fix or remove the row",
                self.task_names[column]
            )));
        }
        if self.task_type == TaskType::Binary && value != 0.0 && value != 1.0 {
            return Err(fail(format!(
                "label column `{}`: {cell:?} is not 0 or 1, but the task type is binary; set task_type = \"regression\" if intended",
                self.task_names[column]
            )));
        }
        let scale = self.label_scales[column];
        // Scaled in f64, then rounded once to f32.
        Ok(Some(if scale == 1.0 { value } else { (cell.parse::<f64>().unwrap_or(value as f64) * scale) as f32 }))
    }
}

impl Iterator for RowReader {
    type Item = Result<LabeledRow, FetchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let row = self.next_row;
        let Some(record) = self.records.next() else {
            self.finished = true;
            // A file cut mid-row ends without a newline; its last row would be read with a truncated
            // label or SMILES. (A gzip member cut short is caught by the decoder instead.)
            let last = self.last_byte.load(Ordering::Relaxed);
            if row > 0 && last != b'\n' && last != b'\r' {
                return Some(Err(molpeg_core::Error::Row {
                    path: self.path.clone(),
                    row: row as usize - 1,
                    message: "the file ends in the middle of this row (no newline after it): it looks truncated. Fetch it again, or end the file with a newline if it is complete".into(),
                }
                .into()));
            }
            return None;
        };
        self.next_row += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                self.finished = true;
                return Some(Err(read_error(&self.path, self.gzip, self.compressed_bytes.load(Ordering::Relaxed), Some(row), &e).into()));
            }
        };
        let smiles = record.get(self.smiles_index).unwrap_or("").trim().to_string();
        let labels = self
            .label_indices
            .iter()
            .enumerate()
            .map(|(column, &i)| self.parse_label(row, column, record.get(i).unwrap_or("")))
            .collect::<Result<Vec<_>, _>>();
        let geometry = self.geometry_indices.map(|(e, p)| (record.get(e).unwrap_or("").to_string(), record.get(p).unwrap_or("").to_string()));
        Some(labels.map(|labels| LabeledRow { row, smiles, labels, geometry }))
    }
}

/// A CSV read failure: a damaged gzip stream is named as such (with the compressed offset reached),
/// other failures as malformed CSV at the row.
fn read_error(path: &Path, gzip: bool, offset: u64, row: Option<u32>, e: &csv::Error) -> molpeg_core::Error {
    let message = match e.kind() {
        csv::ErrorKind::Io(io) if gzip => format!(
            "the gzip stream is truncated or corrupt (decoder: {io}) near compressed byte {offset}; fetch the file again (`molpeg-fetch --force`)"
        ),
        csv::ErrorKind::Io(io) => format!("read error: {io}"),
        csv::ErrorKind::Utf8 { .. } => format!("malformed CSV: {e} (is the file text? a gzip file must end in .gz or start with the gzip magic bytes)"),
        _ => format!("malformed CSV: {e}"),
    };
    match row {
        Some(row) => molpeg_core::Error::Row { path: path.to_path_buf(), row: row as usize, message },
        None => molpeg_core::Error::invalid(path, format!("cannot read the CSV header: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(labels: LabelColumns) -> DatasetSpec {
        DatasetSpec {
            name: "t".into(),
            url: None,
            file: "t.csv".into(),
            mirror_names: vec![],
            sha256: vec![],
            path: None,
            smiles_column: "smiles".into(),
            label_columns: labels,
            ignore_columns: vec!["mol_id".into()],
            task_type: TaskType::Binary,
            missing: vec!["".into()],
            geometry: None,
            label_units: Default::default(),
        }
    }

    /// `[dataset.label_units]`: values scaled in f64 then rounded once, tasks renamed, units kept;
    /// a unit for a column that is not a label is an error naming it.
    #[test]
    fn label_units_scale_rename_and_are_checked() {
        let (_d, path) = write("smiles,gap_au,y\nC,0.5048,2\nN,,3\n");
        let mut spec = spec(LabelColumns::Named(vec!["gap_au".into(), "y".into()]));
        spec.task_type = TaskType::Regression;
        spec.label_units.insert("gap_au".into(), crate::dataset::LabelUnit { name: Some("gap".into()), unit: "eV".into(), scale: crate::dataset::HARTREE_IN_EV });
        let reader = RowReader::open(&path, &spec).unwrap();
        assert_eq!(reader.task_names(), ["gap", "y"]);
        assert_eq!(reader.task_units(), ["eV", ""]);
        let rows: Vec<LabeledRow> = reader.map(Result::unwrap).collect();
        assert_eq!(rows[0].labels, vec![Some((0.5048f64 * 27.211386245988) as f32), Some(2.0)]);
        assert_eq!(rows[1].labels, vec![None, Some(3.0)]);
        spec.label_units.insert("nope".into(), crate::dataset::LabelUnit { name: None, unit: "eV".into(), scale: 1.0 });
        let err = RowReader::open(&path, &spec).err().unwrap().to_string();
        assert!(err.contains("`nope`, which is not a label column"), "{err}");
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_rows_labels_and_missing() {
        let (_d, path) = write("a,mol_id,smiles,b\n1,X,CCO,\n0,Y,c1ccccc1,1.0\n");
        let rows: Vec<_> = RowReader::open(&path, &spec(LabelColumns::All("*".into()))).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(rows[0], LabeledRow { row: 0, smiles: "CCO".into(), labels: vec![Some(1.0), None], geometry: None });
        assert_eq!(rows[1].labels, vec![Some(0.0), Some(1.0)]);
    }

    #[test]
    fn missing_smiles_column_lists_the_columns_found() {
        let (_d, path) = write("SMILES_x,y\nC,1\n");
        let err = RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).err().unwrap().to_string();
        assert!(err.contains("SMILES column `smiles` not found") && err.contains("columns: SMILES_x, y"), "{err}");
    }

    #[test]
    fn non_finite_labels_are_errors() {
        let mut regression = spec(LabelColumns::Named(vec!["y".into()]));
        regression.task_type = TaskType::Regression;
        for bad in ["inf", "-inf", "NaN", "1e39", "1e300"] {
            let (_d, path) = write(&format!("smiles,y\nC,1.5\nCC,{bad}\n"));
            let results: Vec<_> = RowReader::open(&path, &regression).unwrap().collect();
            let err = results[1].as_ref().unwrap_err().to_string();
            assert!(err.contains("row 1") && err.contains("not a finite number"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_file_cut_mid_row_is_an_error() {
        let (_d, path) = write("smiles,y\nC,1\nCC,1");
        let results: Vec<_> = RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).unwrap().collect();
        assert_eq!(results.len(), 3);
        let err = results[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("truncated"), "{err}");
        let (_d, path) = write("smiles,y\r\nC,1\r\n");
        assert!(RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).unwrap().all(|r| r.is_ok()));
    }

    #[test]
    fn truncated_gzip_is_named_as_such() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv.gz");
        let mut text = String::from("smiles,y\n");
        for i in 0..5000 {
            text.push_str(&format!("{},{}\n", "C".repeat(1 + i % 7), i % 2));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let results: Vec<_> = RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).unwrap().collect();
        let err = results.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(err.contains("t.csv.gz") && err.contains("gzip stream is truncated or corrupt") && err.contains("compressed byte"), "{err}");
    }

    #[test]
    fn duplicate_and_missing_columns_are_errors() {
        let (_d, path) = write("smiles,y,y\nC,1,0\n");
        let err = RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).err().unwrap().to_string();
        assert!(err.contains("column `y` twice"), "{err}");
        let (_d, path) = write("smiles\nC\n");
        let err = RowReader::open(&path, &spec(LabelColumns::All("*".into()))).err().unwrap().to_string();
        assert!(err.contains("no label columns"), "{err}");
    }

    #[test]
    fn bad_label_names_row_and_column() {
        let (_d, path) = write("smiles,y\nC,1\nCC,2\n");
        let results: Vec<_> = RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).unwrap().collect();
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("`y`") && err.contains("not 0 or 1"), "{err}");
    }
}
