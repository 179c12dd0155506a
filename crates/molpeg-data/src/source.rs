//! Streaming `(row, smiles, labels)` out of a dataset CSV (plain or gzipped).

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

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
}

/// Reads a dataset CSV row by row; the header is checked on open.
pub struct RowReader {
    path: PathBuf,
    records: csv::StringRecordsIntoIter<Box<dyn Read + Send>>,
    smiles_index: usize,
    label_indices: Vec<usize>,
    task_names: Vec<String>,
    task_type: TaskType,
    missing: Vec<String>,
    next_row: u32,
}

impl RowReader {
    pub fn open(path: &Path, spec: &DatasetSpec) -> Result<Self, FetchError> {
        let file = std::fs::File::open(path).map_err(|e| molpeg_core::Error::io(path, e))?;
        let inner: Box<dyn Read + Send> =
            if is_gzip(path)? { Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))) } else { Box::new(BufReader::new(file)) };
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(inner);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| molpeg_core::Error::invalid(path, format!("cannot read the CSV header: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
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
                .cloned()
                .collect(),
            LabelColumns::All(other) => return Err(column_error(&format!("label_columns must be a list or \"*\", not \"{other}\"")).into()),
        };
        let label_indices = task_names
            .iter()
            .map(|name| find(name).ok_or_else(|| column_error(&format!("label column `{name}` not found"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RowReader {
            path: path.to_path_buf(),
            records: reader.into_records(),
            smiles_index,
            label_indices,
            task_names,
            task_type: spec.task_type,
            missing: spec.missing.clone(),
            next_row: 0,
        })
    }

    pub fn task_names(&self) -> &[String] {
        &self.task_names
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
        if self.task_type == TaskType::Binary && value != 0.0 && value != 1.0 {
            return Err(fail(format!(
                "label column `{}`: {cell:?} is not 0 or 1, but the task type is binary; set task_type = \"regression\" if intended",
                self.task_names[column]
            )));
        }
        Ok(Some(value))
    }
}

impl Iterator for RowReader {
    type Item = Result<LabeledRow, FetchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = self.records.next()?;
        let row = self.next_row;
        self.next_row += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                return Some(Err(molpeg_core::Error::Row { path: self.path.clone(), row: row as usize, message: format!("malformed CSV: {e}") }.into()))
            }
        };
        let smiles = record.get(self.smiles_index).unwrap_or("").trim().to_string();
        let labels = self
            .label_indices
            .iter()
            .enumerate()
            .map(|(column, &i)| self.parse_label(row, column, record.get(i).unwrap_or("")))
            .collect::<Result<Vec<_>, _>>();
        Some(labels.map(|labels| LabeledRow { row, smiles, labels }))
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
        }
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
        assert_eq!(rows[0], LabeledRow { row: 0, smiles: "CCO".into(), labels: vec![Some(1.0), None] });
        assert_eq!(rows[1].labels, vec![Some(0.0), Some(1.0)]);
    }

    #[test]
    fn missing_smiles_column_lists_the_columns_found() {
        let (_d, path) = write("SMILES_x,y\nC,1\n");
        let err = RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).err().unwrap().to_string();
        assert!(err.contains("SMILES column `smiles` not found") && err.contains("columns: SMILES_x, y"), "{err}");
    }

    #[test]
    fn bad_label_names_row_and_column() {
        let (_d, path) = write("smiles,y\nC,1\nCC,2\n");
        let results: Vec<_> = RowReader::open(&path, &spec(LabelColumns::Named(vec!["y".into()]))).unwrap().collect();
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("`y`") && err.contains("not 0 or 1"), "{err}");
    }
}
