//! `results.parquet`: one row per finished cell (schema in `molpeg_core::schema::scaling_results`).
//! The file is small, so after every cell the sweep rewrites it whole through a temporary file and a
//! rename: a killed sweep leaves the previous complete file, never a torn one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::record_batch::RecordBatch;
use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};
use molpeg_core::parquet_io::{write_batches, ParquetSource};
use molpeg_core::schema::scaling_results as col;
use serde::Serialize;

use crate::Result;

/// The `model` of rows written before the modality axis.
const GIN: &str = "gin";

/// The grid position of a cell: every axis and the seed.
#[derive(Debug, Clone, PartialEq, PartialOrd, Serialize)]
pub struct CellKey {
    pub dataset: String,
    pub split: String,
    /// The encoder's name (`gin`, `fingerprint`, `smiles`).
    pub model: String,
    pub pretrained: String,
    pub layers: u32,
    pub width: u32,
    pub strategy: String,
    pub fraction: f64,
    pub seed: u64,
}

impl CellKey {
    /// Equality with the fraction compared bit for bit (fractions come from the same parsed config).
    pub fn same(&self, other: &CellKey) -> bool {
        self.dataset == other.dataset
            && self.split == other.split
            && self.model == other.model
            && self.pretrained == other.pretrained
            && (self.layers, self.width) == (other.layers, other.width)
            && self.strategy == other.strategy
            && self.fraction.to_bits() == other.fraction.to_bits()
            && self.seed == other.seed
    }

    /// The axes other than strategy, fraction and seed: one fitted curve per (axes, strategy).
    pub fn axes(&self) -> Axes {
        Axes {
            dataset: self.dataset.clone(),
            split: self.split.clone(),
            model: self.model.clone(),
            pretrained: self.pretrained.clone(),
            layers: self.layers,
            width: self.width,
        }
    }
}

/// Values of the optional axes (and the dataset) that one curve shares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Axes {
    pub dataset: String,
    pub split: String,
    pub model: String,
    pub pretrained: String,
    pub layers: u32,
    pub width: u32,
}

impl Axes {
    /// The values as they read in a title: `hiv`, `random split`, `gin`, `scratch`, `3x64`.
    fn parts(&self) -> [String; 5] {
        [self.dataset.clone(), format!("{} split", self.split), self.model.clone(), self.pretrained.clone(), format!("{}x{}", self.layers, self.width)]
    }

    /// The values that differ among `all` (the curves of one figure), for a legend that names only
    /// what tells the curves apart; empty when none differs.
    pub fn distinguishing(&self, all: &[&Axes]) -> String {
        let mine = self.parts();
        let others: Vec<[String; 5]> = all.iter().map(|a| a.parts()).collect();
        let varies = |i: usize| others.iter().any(|o| o[i] != mine[i]);
        (0..mine.len()).filter(|&i| varies(i)).map(|i| mine[i].clone()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Axes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.parts().join(", "))
    }
}

/// One finished cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellResult {
    pub key: CellKey,
    pub n_train: u32,
    pub best_epoch: u32,
    pub metric: String,
    pub valid_metric: Option<f64>,
    pub test_metric: Option<f64>,
    pub samples_seen: u64,
    pub seconds: f64,
    pub settings_hash: String,
}

/// Rewrites `path` with `rows`, atomically.
pub fn write(path: &Path, rows: &[CellResult]) -> Result<()> {
    let strings = |f: fn(&CellResult) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let columns: Vec<ArrayRef> = vec![
        strings(|r| &r.key.dataset),
        strings(|r| &r.key.split),
        strings(|r| &r.key.model),
        strings(|r| &r.key.pretrained),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.key.layers))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.key.width))),
        strings(|r| &r.key.strategy),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.key.fraction))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.n_train))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.key.seed))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.best_epoch))),
        strings(|r| &r.metric),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.valid_metric))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.test_metric))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.samples_seen))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.seconds))),
        strings(|r| &r.settings_hash),
    ];
    let batch = RecordBatch::try_new(col::schema(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    write_batches(path, col::schema(), col::KIND, &BTreeMap::new(), &[batch])?;
    Ok(())
}

/// Reads every row of a results file (schema-checked). A file from before the modality axis (no
/// `model` column) holds GIN rows.
pub fn read(path: &Path) -> Result<Vec<CellResult>> {
    let full = col::schema();
    let without_model = Arc::new(arrow::datatypes::Schema::new(full.fields().iter().filter(|f| f.name() != col::MODEL).cloned().collect::<Vec<_>>()));
    let source = ParquetSource::open(path, &without_model)?;
    let has_model = source.schema().index_of(col::MODEL).is_ok();
    // A file with the column is checked against the full schema (the model column's type included).
    if has_model {
        molpeg_core::schema::check(path, &full, &source.schema())?;
    }
    let expected = if has_model { full } else { without_model };
    let names: Vec<&str> = expected.fields().iter().map(|f| f.name().as_str()).collect();
    let mut rows = Vec::new();
    for batch in source.collect_columns(&names)? {
        let column = |name: &str| batch.column_by_name(name).expect("projected column present");
        let text = |name: &str| arrow::compute::cast(column(name), &arrow::datatypes::DataType::Utf8).map_err(|e| molpeg_core::Error::arrow(path, e));
        let (dataset, split, pretrained, strategy, metric, hash) =
            (text(col::DATASET)?, text(col::SPLIT)?, text(col::PRETRAINED)?, text(col::STRATEGY)?, text(col::METRIC)?, text(col::SETTINGS_HASH)?);
        let model = if has_model { Some(text(col::MODEL)?) } else { None };
        let s = |a: &ArrayRef, i: usize| a.as_string::<i32>().value(i).to_string();
        let u32s = |name: &str| column(name).as_primitive::<UInt32Type>().clone();
        let u64s = |name: &str| column(name).as_primitive::<UInt64Type>().clone();
        let f64s = |name: &str| column(name).as_primitive::<Float64Type>().clone();
        let (layers, width, n_train, best_epoch) = (u32s(col::LAYERS), u32s(col::WIDTH), u32s(col::N_TRAIN), u32s(col::BEST_EPOCH));
        let (seed, samples_seen) = (u64s(col::SEED), u64s(col::SAMPLES_SEEN));
        let (fraction, valid, test, seconds) = (f64s(col::FRACTION), f64s(col::VALID_METRIC), f64s(col::TEST_METRIC), f64s(col::SECONDS));
        let optional = |a: &arrow::array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            rows.push(CellResult {
                key: CellKey {
                    dataset: s(&dataset, i),
                    split: s(&split, i),
                    model: model.as_ref().map_or_else(|| GIN.to_string(), |m| s(m, i)),
                    pretrained: s(&pretrained, i),
                    layers: layers.value(i),
                    width: width.value(i),
                    strategy: s(&strategy, i),
                    fraction: fraction.value(i),
                    seed: seed.value(i),
                },
                n_train: n_train.value(i),
                best_epoch: best_epoch.value(i),
                metric: s(&metric, i),
                valid_metric: optional(&valid, i),
                test_metric: optional(&test, i),
                samples_seen: samples_seen.value(i),
                seconds: seconds.value(i),
                settings_hash: s(&hash, i),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field_and_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.parquet");
        let key = CellKey {
            dataset: "bbbp".into(),
            split: "scaffold".into(),
            model: "smiles".into(),
            pretrained: "scratch".into(),
            layers: 2,
            width: 16,
            strategy: "random".into(),
            fraction: 0.1,
            seed: 3,
        };
        let rows = vec![
            CellResult { key: key.clone(), n_train: 10, best_epoch: 1, metric: "roc_auc".into(), valid_metric: Some(0.7), test_metric: None, samples_seen: 10, seconds: 0.5, settings_hash: "ab".into() },
            CellResult { key: CellKey { seed: 4, ..key }, n_train: 10, best_epoch: 2, metric: "roc_auc".into(), valid_metric: None, test_metric: Some(0.6), samples_seen: 20, seconds: 1.0, settings_hash: "ab".into() },
        ];
        write(&path, &rows).unwrap();
        assert_eq!(read(&path).unwrap(), rows);

        // A file written before the modality axis (no model column) reads as GIN rows.
        let old = dir.path().join("old.parquet");
        let kept: Vec<usize> = (0..col::schema().fields().len()).filter(|&i| col::schema().field(i).name() != col::MODEL).collect();
        let schema = col::schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let all = ParquetSource::open(&path, &schema).unwrap().collect_columns(&names).unwrap().remove(0).project(&kept).unwrap();
        write_batches(&old, all.schema(), col::KIND, &BTreeMap::new(), &[all]).unwrap();
        let legacy = read(&old).unwrap();
        assert!(legacy.iter().all(|r| r.key.model == GIN), "{legacy:?}");
        assert_eq!(legacy[1].key.seed, 4);
        assert!(rows[0].key.same(&rows[0].key) && !rows[0].key.same(&rows[1].key));
    }
}
