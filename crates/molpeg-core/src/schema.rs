//! The single source of truth for every Parquet column name, Arrow type and the schema version.
//!
//! Each submodule describes one file kind. Writers build their batches from these fields; readers
//! check what they open against [`check`], so a mismatch names the columns expected and found.
//! ARCHITECTURE.md documents the meaning of every column listed here.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::{Error, Result};

/// Bumped whenever a column is added, removed or changes type or meaning.
pub const SCHEMA_VERSION: &str = "2";

/// Parquet key-value metadata keys written by every stage.
pub mod meta {
    pub const SCHEMA_VERSION: &str = "molpeg.schema_version";
    pub const TOOL_VERSION: &str = "molpeg.tool_version";
    pub const KIND: &str = "molpeg.kind";
    pub const RDKIT_VERSION: &str = "molpeg.rdkit_version";
    pub const SOURCE_SHA256: &str = "molpeg.source_sha256";
    pub const SOURCE_PATH: &str = "molpeg.source_path";
    /// JSON array of task (label column) names, in the order of the `labels` list.
    pub const TASK_NAMES: &str = "molpeg.task_names";
    /// `binary` or `regression`.
    pub const TASK_TYPE: &str = "molpeg.task_type";
    /// JSON array of each task's unit (`""` where the dataset gives none), aligned with
    /// [`TASK_NAMES`]; written when the dataset sets `[dataset.label_units]`.
    pub const TASK_UNITS: &str = "molpeg.task_units";
    /// The featurizer's version (`molpeg_chem::FEATURIZER_VERSION`), on `graphs.parquet` and copied
    /// into fine-tuned checkpoints.
    pub const FEATURIZER_VERSION: &str = "molpeg.featurizer_version";
    /// Checkpoint metadata: JSON `{"scheme": "hu", "version": "1"}`, the node/edge features the model
    /// reads (`atom_hu`, `bond_hu`) and the featurizer version that produced them.
    pub const FEATURIZER: &str = "molpeg.featurizer";
}

fn list_of_fixed(item: DataType, width: i32) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::FixedSizeList(Arc::new(Field::new("item", item, false)), width),
        false,
    )))
}

/// `graphs.parquet`: one row per accepted molecule (written by `molpeg-featurize`).
pub mod graphs {
    use super::*;
    pub const KIND: &str = "graphs";
    pub const MOL_ID: &str = "mol_id";
    pub const SMILES: &str = "smiles";
    pub const CANONICAL_SMILES: &str = "canonical_smiles";
    pub const SCAFFOLD: &str = "scaffold";
    pub const NUM_ATOMS: &str = "num_atoms";
    pub const NUM_BONDS: &str = "num_bonds";
    pub const ATOM_HU: &str = "atom_hu";
    pub const ATOM_OGB: &str = "atom_ogb";
    pub const EDGE_INDEX: &str = "edge_index";
    pub const BOND_HU: &str = "bond_hu";
    pub const BOND_OGB: &str = "bond_ogb";
    pub const LABELS: &str = "labels";

    pub const ATOM_HU_WIDTH: i32 = 2;
    pub const ATOM_OGB_WIDTH: i32 = 9;
    pub const BOND_HU_WIDTH: i32 = 2;
    pub const BOND_OGB_WIDTH: i32 = 3;

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(SMILES, DataType::Utf8, false),
            Field::new(CANONICAL_SMILES, DataType::Utf8, false),
            Field::new(SCAFFOLD, DataType::Utf8, false),
            Field::new(NUM_ATOMS, DataType::UInt16, false),
            Field::new(NUM_BONDS, DataType::UInt16, false),
            Field::new(ATOM_HU, list_of_fixed(DataType::UInt8, ATOM_HU_WIDTH), false),
            Field::new(ATOM_OGB, list_of_fixed(DataType::UInt8, ATOM_OGB_WIDTH), false),
            Field::new(EDGE_INDEX, list_of_fixed(DataType::UInt16, 2), false),
            Field::new(BOND_HU, list_of_fixed(DataType::UInt8, BOND_HU_WIDTH), false),
            Field::new(BOND_OGB, list_of_fixed(DataType::UInt8, BOND_OGB_WIDTH), false),
            Field::new(LABELS, DataType::List(Arc::new(Field::new("item", DataType::Float32, true))), false),
        ]))
    }
}

/// `rejects.parquet`: input rows that could not be featurized.
pub mod rejects {
    use super::*;
    pub const KIND: &str = "rejects";
    pub const ROW: &str = "row";
    pub const SMILES: &str = "smiles";
    pub const REASON: &str = "reason";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(ROW, DataType::UInt32, false),
            Field::new(SMILES, DataType::Utf8, false),
            Field::new(REASON, DataType::Utf8, false),
        ]))
    }
}

/// `fingerprints.parquet` (`molpeg-featurize` with `fingerprints = true`): one row per accepted
/// molecule, the same `mol_id`s in the same order as `graphs.parquet`. The fingerprint width is a
/// setting, so readers get it from the file with [`fingerprints::bytes`] before checking the schema.
pub mod fingerprints {
    use super::*;
    pub const KIND: &str = "fingerprints";
    /// File name in the featurize stage directory (written by molpeg-chem, read by molpeg-prune).
    pub const FILE: &str = "fingerprints.parquet";
    pub const MOL_ID: &str = "mol_id";
    /// Morgan (ECFP-like) bit vector, packed: bit i is bit `i % 8` (least significant first) of byte
    /// `i / 8`, as in Arrow's own bitmaps (`numpy.unpackbits(..., bitorder="little")`).
    pub const MORGAN: &str = "morgan";
    /// Metadata keys: the Morgan radius and the number of bits.
    pub const META_RADIUS: &str = "molpeg.morgan_radius";
    pub const META_BITS: &str = "molpeg.morgan_bits";

    /// Every column; `bytes` = bits / 8.
    pub fn schema(bytes: i32) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(MOL_ID, DataType::UInt32, false), Field::new(MORGAN, DataType::FixedSizeBinary(bytes), false)]))
    }

    /// Every column but the fingerprint: what a reader can check before it knows the width.
    pub fn base_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(MOL_ID, DataType::UInt32, false)]))
    }

    /// The byte width of a found schema's fingerprint column, if it is fixed-size binary.
    pub fn bytes(found: &Schema) -> Option<i32> {
        match found.field_with_name(MORGAN).ok()?.data_type() {
            DataType::FixedSizeBinary(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether bit `i` is set in a packed fingerprint.
    pub fn bit(packed: &[u8], i: usize) -> bool {
        packed[i / 8] >> (i % 8) & 1 == 1
    }
}

/// `atoms3d.parquet` (`molpeg-featurize` when the molecules have 3D geometry: the dataset's own, e.g.
/// QM9's DFT coordinates, or RDKit conformers): one row per accepted molecule, the same `mol_id`s in
/// the same order as `graphs.parquet`. Every atom **including hydrogens**, in the geometry's own
/// order, which is not the graph's atom order (RDKit's graph has no hydrogens): do not index one
/// with the other.
pub mod atoms3d {
    use super::*;
    pub const KIND: &str = "atoms3d";
    /// File name in the featurize stage directory.
    pub const FILE: &str = "atoms3d.parquet";
    pub const MOL_ID: &str = "mol_id";
    /// Atomic number of each atom (1 = H).
    pub const ATOMIC_NUMBERS: &str = "atomic_numbers";
    /// Cartesian position of each atom in ångström, `[x, y, z]`.
    pub const POSITIONS: &str = "positions";
    /// Metadata: where the geometry came from: `dataset:<column>` (the file's coordinates), `etkdg`
    /// or `etkdg+mmff` (an RDKit conformer, with its seed in [`atoms3d::META_SEED`]).
    pub const META_GEOMETRY: &str = "molpeg.geometry";
    pub const META_SEED: &str = "molpeg.conformer_seed";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(ATOMIC_NUMBERS, DataType::List(Arc::new(Field::new("item", DataType::UInt8, false))), false),
            Field::new(POSITIONS, list_of_fixed(DataType::Float32, 3), false),
        ]))
    }
}

/// `split.parquet`: which split each molecule belongs to.
pub mod split {
    use super::*;
    pub const KIND: &str = "split";
    pub const MOL_ID: &str = "mol_id";
    pub const SPLIT: &str = "split";
    pub const TRAIN: &str = "train";
    pub const VALID: &str = "valid";
    pub const TEST: &str = "test";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(SPLIT, DataType::Utf8, false),
        ]))
    }
}

/// `scores.parquet`: long form, one row per training sample each time the dual-pace models see it.
pub mod scores {
    use super::*;
    pub const KIND: &str = "scores";
    pub const MOL_ID: &str = "mol_id";
    pub const EPOCH: &str = "epoch";
    pub const LOSS_ONLINE: &str = "loss_online";
    pub const LOSS_REF: &str = "loss_ref";
    pub const SCORE: &str = "score";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(EPOCH, DataType::UInt32, false),
            Field::new(LOSS_ONLINE, DataType::Float32, false),
            Field::new(LOSS_REF, DataType::Float32, false),
            Field::new(SCORE, DataType::Float32, false),
        ]))
    }
}

/// `sample_scores.parquet`: one row per training sample, the per-sample summary of `scores.parquet`.
pub mod sample_scores {
    use super::*;
    pub const KIND: &str = "sample_scores";
    pub const MOL_ID: &str = "mol_id";
    pub const SCORE_LAST: &str = "score_last";
    pub const SCORE_MEAN: &str = "score_mean";
    /// Signed discrepancy `loss_online - loss_ref` at the last sighting.
    pub const DELTA_LAST: &str = "delta_last";
    pub const TIMES_SEEN: &str = "times_seen";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(SCORE_LAST, DataType::Float32, false),
            Field::new(SCORE_MEAN, DataType::Float32, false),
            Field::new(DELTA_LAST, DataType::Float32, false),
            Field::new(TIMES_SEEN, DataType::UInt32, false),
        ]))
    }
}

/// `coreset.parquet`: the training samples a static selection keeps.
pub mod coreset {
    use super::*;
    pub const KIND: &str = "coreset";
    pub const MOL_ID: &str = "mol_id";
    pub const RANK: &str = "rank";
    pub const SCORE: &str = "score";
    pub const WEIGHT: &str = "weight";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(RANK, DataType::UInt32, false),
            Field::new(SCORE, DataType::Float64, true),
            Field::new(WEIGHT, DataType::Float32, false),
        ]))
    }
}

/// `outputs.parquet` (`molpeg-score --signals`): long form, the proxy model's eval-mode outputs on every
/// training sample after every epoch. Scalars only, so the size does not grow with the task count.
/// `el2n`, `grand` and `correct` are null for regression tasks; `loss`, `el2n` and `grand` are null for
/// a sample without any valid label.
pub mod outputs {
    use super::*;
    pub const KIND: &str = "outputs";
    pub const MOL_ID: &str = "mol_id";
    /// 1-based epoch after whose training the outputs were taken (as in `scores.parquet`).
    pub const EPOCH: &str = "epoch";
    /// Per-sample loss: mean over the valid tasks, as in training.
    pub const LOSS: &str = "loss";
    /// ‖p − y‖₂ over the valid tasks (Paul et al. 2021).
    pub const EL2N: &str = "el2n";
    /// Norm of the loss gradient w.r.t. the linear head, ‖p − y‖₂·√(‖h‖² + 1) (Paul et al. 2021).
    pub const GRAND: &str = "grand";
    /// Every valid task classified correctly at threshold 0.5 (Toneva et al. 2019's forgetting events).
    pub const CORRECT: &str = "correct";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(EPOCH, DataType::UInt32, false),
            Field::new(LOSS, DataType::Float32, true),
            Field::new(EL2N, DataType::Float32, true),
            Field::new(GRAND, DataType::Float32, true),
            Field::new(CORRECT, DataType::Boolean, true),
        ]))
    }
}

/// `embeddings.parquet` (`molpeg-score --signals`): one row per training sample, the proxy model after
/// its last epoch. The embedding width D is the model's graph representation width, so readers get it
/// from the file with [`embeddings::dim`] before checking the full schema.
pub mod embeddings {
    use super::*;
    pub const KIND: &str = "embeddings";
    pub const MOL_ID: &str = "mol_id";
    /// The sample's labels, one per task, null = missing (copied from `graphs.parquet`, so the
    /// label-based rules read the score directory only).
    pub const LABELS: &str = "labels";
    /// σ(logit) per task for binary tasks; the whole list is null for regression.
    pub const PROBS: &str = "probs";
    /// The pooled graph representation h fed to the linear head.
    pub const EMBEDDING: &str = "embedding";
    /// Metadata key: the epoch after which the row was taken.
    pub const META_EPOCH: &str = "molpeg.epoch";

    fn float_list() -> DataType {
        DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
    }

    /// Every column; `dim` = D.
    pub fn schema(dim: i32) -> SchemaRef {
        let mut fields = base_fields();
        fields.push(Field::new(EMBEDDING, DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), dim), false));
        Arc::new(Schema::new(fields))
    }

    /// Every column but the embedding: what a reader can check before it knows D.
    pub fn base_schema() -> SchemaRef {
        Arc::new(Schema::new(base_fields()))
    }

    fn base_fields() -> Vec<Field> {
        vec![Field::new(MOL_ID, DataType::UInt32, false), Field::new(LABELS, float_list(), false), Field::new(PROBS, float_list(), true)]
    }

    /// D of a found schema's embedding column, if it is a fixed-size list of float32.
    pub fn dim(found: &Schema) -> Option<i32> {
        match found.field_with_name(EMBEDDING).ok()?.data_type() {
            DataType::FixedSizeList(item, d) if item.data_type() == &DataType::Float32 => Some(*d),
            _ => None,
        }
    }
}

/// `metrics.parquet`: long-form training curve written by `molpeg-finetune`.
pub mod metrics {
    use super::*;
    pub const KIND: &str = "metrics";
    pub const EPOCH: &str = "epoch";
    pub const SPLIT: &str = "split";
    pub const METRIC: &str = "metric";
    pub const VALUE: &str = "value";
    pub const LOSS: &str = "loss";
    pub const SAMPLES_SEEN: &str = "samples_seen";
    pub const SECONDS: &str = "seconds";
    /// Null on the average rows (every row before schema version 2); a task name on the per-task rows.
    /// Readers of the averages filter on `task IS NULL`.
    pub const TASK: &str = "task";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(EPOCH, DataType::UInt32, false),
            Field::new(SPLIT, DataType::Utf8, false),
            Field::new(METRIC, DataType::Utf8, false),
            Field::new(VALUE, DataType::Float64, true),
            Field::new(LOSS, DataType::Float64, true),
            Field::new(SAMPLES_SEEN, DataType::UInt64, false),
            Field::new(SECONDS, DataType::Float64, false),
            Field::new(TASK, DataType::Utf8, true),
        ]))
    }

    /// One row of `metrics.parquet`: what molpeg-finetune writes and molpeg-report reads.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct MetricRow {
        pub epoch: u32,
        pub split: String,
        pub metric: String,
        pub value: Option<f64>,
        pub loss: Option<f64>,
        pub samples_seen: u64,
        /// Wall-clock seconds since training started.
        pub seconds: f64,
        /// `None` on the average rows (and every row of files without a `task` column); the task's
        /// name on per-task rows (`loss` is then null).
        #[serde(default)]
        pub task: Option<String>,
    }
}

/// `predictions.parquet` of `molpeg-finetune`: the best epoch's valid and test outputs, long form.
pub mod eval_predictions {
    use super::*;
    pub const KIND: &str = "eval_predictions";
    pub const FILE: &str = "predictions.parquet";
    pub const MOL_ID: &str = "mol_id";
    pub const SPLIT: &str = "split";
    pub const TASK: &str = "task";
    /// The label as trained on; null where missing.
    pub const LABEL: &str = "label";
    /// Probability σ(logit) for binary tasks, value in the target's unit for regression.
    pub const PREDICTION: &str = "prediction";
    /// Metadata: the epoch the predictions come from.
    pub const META_EPOCH: &str = "molpeg.epoch";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(MOL_ID, DataType::UInt32, false),
            Field::new(SPLIT, DataType::Utf8, false),
            Field::new(TASK, DataType::Utf8, false),
            Field::new(LABEL, DataType::Float32, true),
            Field::new(PREDICTION, DataType::Float32, false),
        ]))
    }
}

/// `predictions.parquet` of `molpeg-predict`: one row per accepted input molecule, wide form (one
/// column per task, named after it, plus `<task>_std` for an ensemble). With a 3D model, the metadata
/// also holds [`atoms3d::META_GEOMETRY`] and [`atoms3d::META_SEED`] of the conformers predicted on
/// (fine-tuned checkpoints carry the same two keys for their training geometry).
pub mod predictions {
    use super::*;
    pub const KIND: &str = "predictions";
    pub const FILE: &str = "predictions.parquet";
    /// 0-based data row of the input file (header excluded); for a `graphs.parquet` input, its `mol_id`.
    pub const ROW: &str = "row";
    pub const SMILES: &str = "smiles";
    pub const CANONICAL_SMILES: &str = "canonical_smiles";
    /// Suffix of an ensemble's per-task standard deviation column.
    pub const STD_SUFFIX: &str = "_std";
    /// Metadata: JSON array of the models' paths, and the number of models.
    pub const META_MODELS: &str = "molpeg.models";

    /// The fixed columns; task columns follow.
    pub const FIXED: [&str; 3] = [ROW, SMILES, CANONICAL_SMILES];

    /// The name of every column: the fixed ones, then per task `<task>` (and `<task>_std` right after
    /// it when `ensemble`). An error names a task that collides with another column.
    pub fn column_names(tasks: &[String], ensemble: bool) -> std::result::Result<Vec<String>, String> {
        let mut names: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
        for t in tasks {
            names.push(t.clone());
            if ensemble {
                names.push(format!("{t}{STD_SUFFIX}"));
            }
        }
        let mut sorted = names.clone();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("column `{}` would appear twice in predictions.parquet (a task is named like another column)", w[0]));
        }
        Ok(names)
    }

    pub fn schema(tasks: &[String], ensemble: bool) -> std::result::Result<SchemaRef, String> {
        let names = column_names(tasks, ensemble)?;
        let fields: Vec<Field> = names
            .iter()
            .enumerate()
            .map(|(i, n)| match i {
                0 => Field::new(n, DataType::UInt32, false),
                1 | 2 => Field::new(n, DataType::Utf8, false),
                _ => Field::new(n, DataType::Float32, false),
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// A user's molecule table (Parquet input of `molpeg-predict`): only the SMILES column, whatever its
/// name, is read.
pub mod molecules {
    use super::*;
    pub fn schema(smiles_column: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(smiles_column, DataType::Utf8, true)]))
    }
}

/// `pretrain_log.parquet`: one row per logging interval of self-supervised pretraining
/// (written by `molpeg-pretrain`).
pub mod pretrain_log {
    use super::*;
    pub const KIND: &str = "pretrain_log";
    /// Optimizer steps done (cumulative, across resumed runs).
    pub const STEP: &str = "step";
    /// 1-based epoch of the interval's last step.
    pub const EPOCH: &str = "epoch";
    /// Mean masked-atom reconstruction loss over the interval's steps.
    pub const LOSS: &str = "loss";
    /// Molecules trained on (cumulative).
    pub const MOLECULES: &str = "molecules";
    /// Training wall time in seconds (cumulative, across resumed runs).
    pub const SECONDS: &str = "seconds";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(STEP, DataType::UInt64, false),
            Field::new(EPOCH, DataType::UInt32, false),
            Field::new(LOSS, DataType::Float64, false),
            Field::new(MOLECULES, DataType::UInt64, false),
            Field::new(SECONDS, DataType::Float64, false),
        ]))
    }
}

/// `results.parquet` (molpeg-scaling): one row per finished cell of a scaling sweep, appended cell by
/// cell. A cell is keyed by every grid axis and the seed (see [`scaling_results::KEY`]).
pub mod scaling_results {
    use super::*;
    pub const KIND: &str = "scaling_results";
    pub const DATASET: &str = "dataset";
    pub const SPLIT: &str = "split";
    /// The encoder (`[finetune] model`): `gin`, `fingerprint` or `smiles`. Files written before the
    /// modality axis lack the column; their rows are GIN rows.
    pub const MODEL: &str = "model";
    /// `scratch` or the pretrained checkpoint's path as given.
    pub const PRETRAINED: &str = "pretrained";
    /// The GIN's layers and hidden width, or a token model's Transformer layers and token width.
    pub const LAYERS: &str = "layers";
    pub const WIDTH: &str = "width";
    /// `full` (fraction 1), `random`, `select:RULE` or `dynamic:POLICY`.
    pub const STRATEGY: &str = "strategy";
    pub const FRACTION: &str = "fraction";
    /// Training samples per epoch: ⌊fraction·N⌋.
    pub const N_TRAIN: &str = "n_train";
    pub const SEED: &str = "seed";
    pub const BEST_EPOCH: &str = "best_epoch";
    /// Name of the monitored metric (`roc_auc`, `rmse`, ...).
    pub const METRIC: &str = "metric";
    pub const VALID_METRIC: &str = "valid_metric";
    pub const TEST_METRIC: &str = "test_metric";
    pub const SAMPLES_SEEN: &str = "samples_seen";
    pub const SECONDS: &str = "seconds";
    /// Hash of the settings and inputs that produced the cell; rows of other settings are never mixed.
    pub const SETTINGS_HASH: &str = "settings_hash";
    /// The columns that identify a cell.
    pub const KEY: [&str; 9] = [DATASET, SPLIT, MODEL, PRETRAINED, LAYERS, WIDTH, STRATEGY, FRACTION, SEED];

    /// The curve's axes, the leading columns of both scaling files.
    pub(super) fn axis_fields() -> Vec<Field> {
        vec![
            Field::new(DATASET, DataType::Utf8, false),
            Field::new(SPLIT, DataType::Utf8, false),
            Field::new(MODEL, DataType::Utf8, false),
            Field::new(PRETRAINED, DataType::Utf8, false),
            Field::new(LAYERS, DataType::UInt32, false),
            Field::new(WIDTH, DataType::UInt32, false),
            Field::new(STRATEGY, DataType::Utf8, false),
        ]
    }

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new([axis_fields(), vec![
            Field::new(FRACTION, DataType::Float64, false),
            Field::new(N_TRAIN, DataType::UInt32, false),
            Field::new(SEED, DataType::UInt64, false),
            Field::new(BEST_EPOCH, DataType::UInt32, false),
            Field::new(METRIC, DataType::Utf8, false),
            Field::new(VALID_METRIC, DataType::Float64, true),
            Field::new(TEST_METRIC, DataType::Float64, true),
            Field::new(SAMPLES_SEEN, DataType::UInt64, false),
            Field::new(SECONDS, DataType::Float64, false),
            Field::new(SETTINGS_HASH, DataType::Utf8, false),
        ]]
        .concat()))
    }
}

/// `fits.parquet` (molpeg-scaling): long form, one row per fitted parameter of each (strategy, axis
/// values, form).
pub mod scaling_fits {
    use super::*;
    pub use super::scaling_results::{DATASET, LAYERS, METRIC, MODEL, PRETRAINED, SPLIT, STRATEGY, WIDTH};
    pub const KIND: &str = "scaling_fits";
    /// `power` (m = a·x^b) or `saturating` (m = c − a·x^(−alpha)).
    pub const FORM: &str = "form";
    /// `a`, `b` (power); `a`, `alpha`, `c` (saturating).
    pub const PARAMETER: &str = "parameter";
    pub const VALUE: &str = "value";
    /// 95% bootstrap interval over seeds; null when the bootstrap could not refit.
    pub const CI_LOW: &str = "ci_low";
    pub const CI_HIGH: &str = "ci_high";
    pub const R2: &str = "r2";
    pub const POINTS: &str = "points";
    pub const SEEDS: &str = "seeds";

    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new([super::scaling_results::axis_fields(), vec![
            Field::new(METRIC, DataType::Utf8, false),
            Field::new(FORM, DataType::Utf8, false),
            Field::new(PARAMETER, DataType::Utf8, false),
            Field::new(VALUE, DataType::Float64, false),
            Field::new(CI_LOW, DataType::Float64, true),
            Field::new(CI_HIGH, DataType::Float64, true),
            Field::new(R2, DataType::Float64, false),
            Field::new(POINTS, DataType::UInt32, false),
            Field::new(SEEDS, DataType::UInt32, false),
        ]]
        .concat()))
    }
}

/// Checks that `found` has every column of `expected` with the same type (extra columns are allowed,
/// so a user can add their own). The error lists both column sets.
pub fn check(path: &Path, expected: &Schema, found: &Schema) -> Result<()> {
    let describe = |s: &Schema| s.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ");
    for field in expected.fields() {
        let problem = match found.field_with_name(field.name()) {
            Err(_) => format!("column `{}` is missing", field.name()),
            Ok(actual) if !types_match(field.data_type(), actual.data_type()) => {
                format!("column `{}` has type {} but {} was expected", field.name(), actual.data_type(), field.data_type())
            }
            Ok(_) => continue,
        };
        return Err(Error::Schema { path: path.to_path_buf(), problem, expected: describe(expected), found: describe(found) });
    }
    Ok(())
}

/// Like [`check`], for files a user may write with other tools (coreset, scores, split): an integer
/// column accepts any integer type, a float column any float or integer type, a string column any
/// string or dictionary-of-string type. Values are then converted with range checks by
/// [`crate::columns`].
pub fn check_user(path: &Path, expected: &Schema, found: &Schema) -> Result<()> {
    let lenient: Vec<Field> = expected
        .fields()
        .iter()
        .map(|f| match found.field_with_name(f.name()) {
            Ok(actual) if user_types_match(f.data_type(), actual.data_type()) => actual.as_ref().clone(),
            _ => f.as_ref().clone(),
        })
        .collect();
    check(path, &Schema::new(lenient), found)
}

fn user_types_match(expected: &DataType, found: &DataType) -> bool {
    let string = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    match (expected, found) {
        (e, f) if e.is_integer() => f.is_integer(),
        (e, f) if e.is_floating() => f.is_floating() || f.is_integer(),
        (e, f) if string(e) => string(f) || matches!(f, DataType::Dictionary(_, v) if string(v)),
        _ => false,
    }
}

/// Type equality that ignores nested field names and nullability, which other writers
/// (pyarrow, polars) spell differently for the same logical type.
fn types_match(expected: &DataType, found: &DataType) -> bool {
    use DataType::*;
    match (expected, found) {
        (List(a), List(b)) | (List(a), LargeList(b)) => types_match(a.data_type(), b.data_type()),
        (FixedSizeList(a, n), FixedSizeList(b, m)) => n == m && types_match(a.data_type(), b.data_type()),
        (Utf8, Utf8 | LargeUtf8 | Utf8View) => true,
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_column_error_lists_both_sides() {
        let found = Schema::new(vec![Field::new("mol_id", DataType::UInt32, false)]);
        let err = check(Path::new("x.parquet"), &split::schema(), &found).unwrap_err().to_string();
        assert!(err.contains("column `split` is missing"), "{err}");
        assert!(err.contains("expected columns: mol_id: UInt32, split: Utf8"), "{err}");
        assert!(err.contains("found columns:    mol_id: UInt32"), "{err}");
    }

    #[test]
    fn wrong_type_is_rejected_and_renamed_list_items_accepted() {
        let wrong = Schema::new(vec![Field::new("mol_id", DataType::Int64, false), Field::new("split", DataType::Utf8, false)]);
        assert!(check(Path::new("x"), &split::schema(), &wrong).is_err());
        let mut fields: Vec<Field> = graphs::schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[11] = Field::new("labels", DataType::List(Arc::new(Field::new("element", DataType::Float32, true))), true);
        assert!(check(Path::new("x"), &graphs::schema(), &Schema::new(fields)).is_ok());
    }

    #[test]
    fn user_files_accept_other_integer_float_and_string_types() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let pandas = Schema::new(vec![Field::new("mol_id", DataType::Int64, true), Field::new("split", dict, true)]);
        assert!(check(Path::new("x"), &split::schema(), &pandas).is_err());
        assert!(check_user(Path::new("x"), &split::schema(), &pandas).is_ok());
        let core = Schema::new(vec![
            Field::new("mol_id", DataType::Int32, true),
            Field::new("rank", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("weight", DataType::Float64, true),
        ]);
        assert!(check_user(Path::new("x"), &coreset::schema(), &core).is_ok());
        let wrong = Schema::new(vec![Field::new("mol_id", DataType::Float64, true), Field::new("split", DataType::Utf8, true)]);
        let err = check_user(Path::new("x"), &split::schema(), &wrong).unwrap_err().to_string();
        assert!(err.contains("column `mol_id` has type Float64"), "{err}");
    }

    #[test]
    fn prediction_columns_follow_the_tasks() {
        let tasks = vec!["NR-AR".to_string(), "SR-p53".to_string()];
        assert_eq!(predictions::column_names(&tasks, true).unwrap(), ["row", "smiles", "canonical_smiles", "NR-AR", "NR-AR_std", "SR-p53", "SR-p53_std"]);
        assert_eq!(predictions::schema(&tasks, false).unwrap().fields().len(), 5);
        assert!(predictions::column_names(&["smiles".to_string()], false).is_err());
        assert!(predictions::column_names(&["a".to_string(), "a_std".to_string()], true).is_err());
    }

    #[test]
    fn fingerprint_width_comes_from_the_file_and_bits_are_lsb_first() {
        assert_eq!(fingerprints::bytes(&fingerprints::schema(256)), Some(256));
        assert_eq!(fingerprints::bytes(&split::schema()), None);
        assert!(check(Path::new("x"), &fingerprints::schema(256), &fingerprints::schema(128)).is_err());
        let packed = [0b0000_0101u8, 0b1000_0000];
        let on: Vec<usize> = (0..16).filter(|&i| fingerprints::bit(&packed, i)).collect();
        assert_eq!(on, vec![0, 2, 15]);
    }

    #[test]
    fn embedding_width_comes_from_the_file() {
        assert_eq!(embeddings::dim(&embeddings::schema(7)), Some(7));
        assert_eq!(embeddings::dim(&embeddings::base_schema()), None);
        assert!(check(Path::new("x"), &embeddings::schema(7), &embeddings::schema(8)).is_err());
    }
}
