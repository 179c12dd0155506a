//! `fingerprints.parquet` ([`molpeg_core::schema::fingerprints`], written by the featurize stage) for
//! the `kmeans-fp` rules: [`read_bits`] unpacks the requested molecules' Morgan bits to one 0/1 byte
//! per bit, in the caller's order, and [`select_by_fingerprints`] runs a rule on them. This crate
//! never links RDKit: the fingerprints arrive as a Parquet file.

use std::path::Path;

use molpeg_core::fingerprint_file::read_packed;
pub use molpeg_core::fingerprint_file::PRODUCED_BY;
use molpeg_core::Error;

use crate::keep::KeepFraction;
use crate::rules::{Matrix, Pick, RuleInputs, StaticRule};

/// Unpacked fingerprints: `bits` is N×`width`, row i belongs to the caller's `mol_ids[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FingerprintBits {
    pub bits: Vec<u8>,
    pub width: usize,
}

/// Reads the fingerprints of `mol_ids` from `path`. A molecule without a row (a file from another
/// dataset or an older featurize run) or with two rows is an error naming the file.
pub fn read_bits(path: &Path, mol_ids: &[u32]) -> Result<FingerprintBits, Error> {
    let packed = read_packed(path, mol_ids, "training molecules")?;
    let width = packed.bits();
    let mut bits = vec![0u8; mol_ids.len() * width];
    for (i, row) in bits.chunks_mut(width.max(1)).enumerate().take(mol_ids.len()) {
        let value = packed.row(i);
        for (j, bit) in row.iter_mut().enumerate() {
            *bit = molpeg_core::schema::fingerprints::bit(value, j) as u8;
        }
    }
    Ok(FingerprintBits { bits, width })
}

/// Runs a fingerprint rule (`kmeans-fp`, `kmeans-fp-easy`) on the fingerprints of `mol_ids` in
/// `path`; rows are in `mol_ids` order, so ties break by that order.
pub fn select_by_fingerprints(rule: &StaticRule, path: &Path, mol_ids: &[u32], keep: KeepFraction, seed: u64) -> Result<Vec<Pick>, Error> {
    let fp = read_bits(path, mol_ids)?;
    let bad = |e: crate::rules::RuleError| Error::invalid(path, e.to_string());
    let inputs = RuleInputs { fingerprints: Some(Matrix::new(&fp.bits, fp.width).map_err(bad)?), ..RuleInputs::default() };
    rule.select(&inputs, keep, seed).map_err(bad)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{FixedSizeBinaryArray, UInt32Array};
    use arrow::buffer::Buffer;
    use arrow::record_batch::RecordBatch;
    use molpeg_core::manifest::Outcome;
    use molpeg_core::parquet_io::write_batches;

    use arrow::array::AsArray;
    use arrow::datatypes::UInt32Type;
    use molpeg_core::parquet_io::ParquetSource;
    use molpeg_core::schema::{self, fingerprints};

    use super::*;
    use crate::select::{self, SelectConfig};

    const BYTES: usize = 4;

    /// Packs each row's on bits into `BYTES` bytes, as the featurize stage does.
    fn pack(on_bits: &[&[usize]]) -> Vec<u8> {
        let mut packed = vec![0u8; on_bits.len() * BYTES];
        for (i, bits) in on_bits.iter().enumerate() {
            for &b in *bits {
                packed[i * BYTES + b / 8] |= 1 << (b % 8);
            }
        }
        packed
    }

    fn fingerprint_file(path: &Path, ids: &[u32], on_bits: &[&[usize]]) {
        let column = FixedSizeBinaryArray::try_new(BYTES as i32, Buffer::from_vec(pack(on_bits)), None).unwrap();
        let schema = fingerprints::schema(BYTES as i32);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt32Array::from(ids.to_vec())), Arc::new(column)]).unwrap();
        write_batches(path, schema, fingerprints::KIND, &BTreeMap::new(), &[batch]).unwrap();
    }

    /// Ten molecules in two families (bits 0-9 and 16-25, with small variations) and mol_id 7, which
    /// shares no bit with either; written in a shuffled row order.
    fn families() -> (Vec<u32>, Vec<Vec<usize>>) {
        let ids: Vec<u32> = vec![5, 0, 9, 7, 2, 10, 1, 8, 4, 3, 6];
        let bits = ids
            .iter()
            .map(|&id| match id {
                7 => vec![10, 11, 12, 13, 26, 27, 28, 29],
                id if id < 5 => (0..10).chain([10 + id as usize % 3]).collect(),
                id => (16..26).chain([26 + id as usize % 3]).collect(),
            })
            .collect();
        (ids, bits)
    }

    #[test]
    fn bits_are_unpacked_in_the_callers_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(fingerprints::FILE);
        fingerprint_file(&path, &[4, 2], &[&[0, 31], &[9]]);
        let fp = read_bits(&path, &[2, 4]).unwrap();
        assert_eq!(fp.width, 32);
        let on = |row: usize| (0..32).filter(|&j| fp.bits[row * 32 + j] == 1).collect::<Vec<_>>();
        assert_eq!((on(0), on(1)), (vec![9], vec![0, 31]));
        let err = read_bits(&path, &[2, 3]).unwrap_err().to_string();
        assert!(err.contains("no fingerprint") && err.contains("[3]") && err.contains("molpeg-featurize --fingerprints"), "{err}");
    }

    #[test]
    fn kmeans_fp_picks_the_outlier_first_with_exact_counts_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(fingerprints::FILE);
        let (ids, bits) = families();
        fingerprint_file(&path, &ids, &bits.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let sorted: Vec<u32> = (0..11).collect();
        let hard: StaticRule = "kmeans-fp:2".parse().unwrap();
        for seed in 0..4 {
            let first = select_by_fingerprints(&hard, &path, &sorted, KeepFraction::new(1.0 / 11.0).unwrap(), seed).unwrap();
            assert_eq!(first.len(), 1);
            assert_eq!(sorted[first[0].index], 7, "seed {seed}: the molecule unlike either family comes first");
        }
        for r in [0.1, 0.3, 0.5, 1.0] {
            let keep = KeepFraction::new(r).unwrap();
            let picks = select_by_fingerprints(&hard, &path, &sorted, keep, 3).unwrap();
            assert_eq!(picks.len(), keep.count(11), "keep {r}");
            assert_eq!(picks, select_by_fingerprints(&hard, &path, &sorted, keep, 3).unwrap(), "keep {r}: same seed, same picks");
        }
        let easy: StaticRule = "kmeans-fp-easy:2".parse().unwrap();
        let all = select_by_fingerprints(&easy, &path, &sorted, KeepFraction::new(1.0).unwrap(), 0).unwrap();
        assert_eq!(sorted[all.last().unwrap().index], 7, "the easy end keeps the outlier last");
    }

    /// The stage: no score directory needed; a missing file names itself and the command that writes
    /// it; the fingerprint file is a manifest input.
    #[test]
    fn select_stage_runs_kmeans_fp_from_the_featurize_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pipeline = select::pipeline_with_split(root, 12, 11);

        let config = SelectConfig { rule: "kmeans-fp:2".into(), keep: Some(3.0 / 11.0), ..SelectConfig::default() };
        let err = select::run(&pipeline, root, &config, None, false).err().unwrap().to_string();
        assert!(err.contains("featurize/fingerprints.parquet") && err.contains("not found") && err.contains("molpeg-featurize --fingerprints") && err.contains("--fingerprints FILE"), "{err}");

        let featurize = pipeline.stage_dir(root, "featurize");
        std::fs::create_dir_all(&featurize).unwrap();
        let (mut ids, mut bits) = families();
        ids.push(11); // a test molecule: never selected
        bits.push(vec![0]);
        fingerprint_file(&featurize.join(fingerprints::FILE), &ids, &bits.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let Outcome::Ran(summary) = select::run(&pipeline, root, &config, None, false).unwrap() else { panic!("first run") };
        assert_eq!((summary.candidates, summary.kept, summary.rule.to_string().as_str()), (11, 3, "kmeans-fp:2"));
        let source = ParquetSource::open(&summary.output, &schema::coreset::schema()).unwrap();
        let kept: Vec<u32> = source.collect_columns(&[schema::coreset::MOL_ID]).unwrap().iter().flat_map(|b| b.column(0).as_primitive::<UInt32Type>().values().to_vec()).collect();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0], 7);
        assert!(!kept.contains(&11));
        assert!(matches!(select::run(&pipeline, root, &config, None, false).unwrap(), Outcome::UpToDate(_)));
        fingerprint_file(&featurize.join(fingerprints::FILE), &ids, &bits.iter().rev().map(Vec::as_slice).collect::<Vec<_>>());
        assert!(matches!(select::run(&pipeline, root, &config, None, false).unwrap(), Outcome::Ran(_)), "new fingerprints reselect");

        // --fingerprints FILE elsewhere.
        let moved = root.join("fp.parquet");
        std::fs::rename(featurize.join(fingerprints::FILE), &moved).unwrap();
        let config = SelectConfig { fingerprints: Some(moved), ..config };
        assert!(matches!(select::run(&pipeline, root, &config, None, true).unwrap(), Outcome::Ran(_)));
    }
}
