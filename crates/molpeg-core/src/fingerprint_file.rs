//! Reading `fingerprints.parquet` ([`crate::schema::fingerprints`], written by the featurize stage):
//! the packed Morgan bits of the molecules a caller asks for, in the caller's order. The static
//! `kmeans-fp` rules (molpeg-prune) and the fingerprint model (molpeg-nn) both read it here.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;

use crate::parquet_io::ParquetSource;
use crate::schema::{self, fingerprints};
use crate::{Error, Result};

/// What writes the fingerprint file, for error messages.
pub const PRODUCED_BY: &str = "`molpeg-featurize --fingerprints` (or `fingerprints = true` in the pipeline's [featurize] section)";

/// Packed fingerprints: row `i` (`bytes` bytes, bit `j` at [`fingerprints::bit`]) belongs to the
/// caller's `mol_ids[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedFingerprints {
    pub packed: Vec<u8>,
    pub bytes: usize,
    /// The file's Morgan radius, when its metadata records one.
    pub radius: Option<u32>,
}

impl PackedFingerprints {
    pub fn bits(&self) -> usize {
        8 * self.bytes
    }

    pub fn row(&self, i: usize) -> &[u8] {
        &self.packed[i * self.bytes..(i + 1) * self.bytes]
    }
}

/// Reads the fingerprints of `mol_ids` from `path`. A molecule without a row (a file from another
/// dataset or an older featurize run) or with two rows is an error naming the file; `what` names the
/// molecules in that error ("training molecules").
pub fn read_packed(path: &Path, mol_ids: &[u32], what: &str) -> Result<PackedFingerprints> {
    let source = ParquetSource::open(path, &fingerprints::base_schema())?;
    let found = source.schema();
    let bytes = fingerprints::bytes(&found)
        .ok_or_else(|| Error::invalid(path, format!("column `{}` is missing or not fixed-size binary", fingerprints::MORGAN)))?;
    schema::check(path, &fingerprints::schema(bytes), &found)?;
    let radius = source.meta(fingerprints::META_RADIUS).and_then(|r| r.parse().ok());
    let bytes = bytes as usize;
    let at: HashMap<u32, usize> = mol_ids.iter().enumerate().map(|(i, &m)| (m, i)).collect();
    let mut packed = vec![0u8; mol_ids.len() * bytes];
    let mut seen = vec![false; mol_ids.len()];
    for batch in source.read_columns(&[fingerprints::MOL_ID, fingerprints::MORGAN])? {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let ids = batch.column(0).as_primitive::<UInt32Type>();
        let column = batch.column(1).as_fixed_size_binary();
        for row in 0..batch.num_rows() {
            let Some(&i) = at.get(&ids.value(row)) else { continue };
            if std::mem::replace(&mut seen[i], true) {
                return Err(Error::invalid(path, format!("mol_id {} appears twice", ids.value(row))));
            }
            packed[i * bytes..(i + 1) * bytes].copy_from_slice(column.value(row));
        }
    }
    let missing: Vec<u32> = mol_ids.iter().zip(&seen).filter(|(_, &s)| !s).map(|(&m, _)| m).collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            path,
            format!(
                "{} {what} have no fingerprint (first mol_ids: {:?}); the file comes from another featurize run: rerun {PRODUCED_BY} with --force",
                missing.len(),
                &missing[..missing.len().min(5)]
            ),
        ));
    }
    Ok(PackedFingerprints { packed, bytes, radius })
}
