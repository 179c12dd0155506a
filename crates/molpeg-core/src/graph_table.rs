//! Row-wise molecule graphs and their conversion to a `graphs.parquet` record batch. The featurizer
//! produces [`GraphRecord`]s; tests build fixtures with the same code.

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListBuilder, Float32Builder, ListBuilder, PrimitiveBuilder, StringArray, UInt16Array, UInt32Array};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, UInt16Type, UInt8Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::schema::graphs;

/// One featurized molecule, as stored in one row of `graphs.parquet`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphRecord {
    pub mol_id: u32,
    pub smiles: String,
    pub canonical_smiles: String,
    pub scaffold: String,
    pub atom_hu: Vec<[u8; 2]>,
    pub atom_ogb: Vec<[u8; 9]>,
    /// Directed edges, both directions of every bond (bond i → edges 2i and 2i+1).
    pub edge_index: Vec<[u16; 2]>,
    pub bond_hu: Vec<[u8; 2]>,
    pub bond_ogb: Vec<[u8; 3]>,
    pub labels: Vec<Option<f32>>,
}

impl GraphRecord {
    pub fn num_atoms(&self) -> usize {
        self.atom_hu.len()
    }
    /// Undirected bonds (half the directed edges).
    pub fn num_bonds(&self) -> usize {
        self.edge_index.len() / 2
    }
}

/// `list<fixed_size_list<T, W>>` column from per-row slices of `[T; W]`.
fn list_of_fixed<T: ArrowPrimitiveType, const W: usize>(rows: impl Iterator<Item = impl AsRef<[[T::Native; W]]>>) -> ArrayRef {
    let item = Arc::new(Field::new("item", T::DATA_TYPE, false));
    let inner = FixedSizeListBuilder::new(PrimitiveBuilder::<T>::new(), W as i32).with_field(item.clone());
    let mut builder = ListBuilder::new(inner).with_field(Arc::new(Field::new("item", DataType::FixedSizeList(item, W as i32), false)));
    for row in rows {
        for values in row.as_ref() {
            builder.values().values().append_slice(values);
            builder.values().append(true);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

/// Builds a batch with exactly [`graphs::schema`] from records.
pub fn to_batch(records: &[GraphRecord]) -> Result<RecordBatch, ArrowError> {
    let mut labels = ListBuilder::new(Float32Builder::new());
    for r in records {
        for &l in &r.labels {
            labels.values().append_option(l);
        }
        labels.append(true);
    }
    let strings = |f: fn(&GraphRecord) -> &str| Arc::new(StringArray::from_iter_values(records.iter().map(f))) as ArrayRef;
    let counts = |f: fn(&GraphRecord) -> usize| Arc::new(UInt16Array::from_iter_values(records.iter().map(|r| f(r) as u16))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(records.iter().map(|r| r.mol_id))),
        strings(|r| &r.smiles),
        strings(|r| &r.canonical_smiles),
        strings(|r| &r.scaffold),
        counts(GraphRecord::num_atoms),
        counts(GraphRecord::num_bonds),
        list_of_fixed::<UInt8Type, 2>(records.iter().map(|r| &r.atom_hu)),
        list_of_fixed::<UInt8Type, 9>(records.iter().map(|r| &r.atom_ogb)),
        list_of_fixed::<UInt16Type, 2>(records.iter().map(|r| &r.edge_index)),
        list_of_fixed::<UInt8Type, 2>(records.iter().map(|r| &r.bond_hu)),
        list_of_fixed::<UInt8Type, 3>(records.iter().map(|r| &r.bond_ogb)),
        Arc::new(labels.finish()),
    ];
    RecordBatch::try_new(graphs::schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn batch_matches_schema_and_values() {
        let r = GraphRecord {
            mol_id: 7,
            smiles: "CO".into(),
            canonical_smiles: "CO".into(),
            scaffold: String::new(),
            atom_hu: vec![[5, 0], [7, 0]],
            atom_ogb: vec![[5, 0, 4, 5, 3, 0, 2, 0, 0], [7, 0, 2, 5, 1, 0, 2, 0, 0]],
            edge_index: vec![[0, 1], [1, 0]],
            bond_hu: vec![[0, 0], [0, 0]],
            bond_ogb: vec![[0, 0, 0], [0, 0, 0]],
            labels: vec![Some(1.0), None],
        };
        let batch = to_batch(&[r.clone(), GraphRecord { mol_id: 8, ..Default::default() }]).unwrap();
        assert_eq!(batch.schema(), graphs::schema());
        assert_eq!(batch.num_rows(), 2);
        let bonds = batch.column(5).as_primitive::<UInt16Type>();
        assert_eq!(bonds.value(0), 1);
        let labels = batch.column(11).as_list::<i32>().value(0);
        assert!(labels.is_null(1) && !labels.is_null(0));
        let edges = batch.column(8).as_list::<i32>().value(0);
        let flat = edges.as_fixed_size_list().values().as_primitive::<UInt16Type>().values().to_vec();
        assert_eq!(flat, vec![0, 1, 1, 0]);
    }
}
