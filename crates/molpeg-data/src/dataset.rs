//! The `[dataset]` section of a pipeline file: where the data comes from and how to read its labels.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Kind of prediction task; decides the loss, the metrics and how labels are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// Labels are 0 or 1 (missing allowed); ROC-AUC / average precision.
    #[default]
    Binary,
    /// Real-valued labels; MAE / RMSE.
    Regression,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Binary => "binary",
            TaskType::Regression => "regression",
        }
    }
}

/// Which columns hold labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelColumns {
    /// These columns, in this order.
    Named(Vec<String>),
    /// `"*"`: every column except the SMILES column and `ignore_columns` (ToxCast's 617 tasks).
    All(String),
}

/// Where a dataset comes from and how to read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Short name; the cached file is `data/raw/<file>`.
    pub name: String,
    /// Canonical download location.
    #[serde(default)]
    pub url: Option<String>,
    /// File name in the cache (`data/raw/`). Optional: defaults to the file name of `path`, else of
    /// the URL, else `<name>.csv`.
    #[serde(default)]
    pub file: String,
    /// Names to look for in the offline mirror directory, in order (default: `file`, then the URL's last segment).
    #[serde(default)]
    pub mirror_names: Vec<String>,
    /// Every accepted sha256: of the file's bytes, or of its decompressed content when it is gzipped,
    /// so a gzipped mirror copy of a plain canonical CSV is recognised.
    #[serde(default)]
    pub sha256: Vec<String>,
    /// A local CSV (plain or gzipped) to use instead of downloading; checked only against `sha256` if given.
    #[serde(default)]
    pub path: Option<PathBuf>,
    pub smiles_column: String,
    pub label_columns: LabelColumns,
    /// Columns that are neither SMILES nor labels (names, ids), skipped when `label_columns = "*"`.
    #[serde(default)]
    pub ignore_columns: Vec<String>,
    #[serde(default)]
    pub task_type: TaskType,
    /// Cell values meaning "label missing" (compared after trimming whitespace).
    #[serde(default = "default_missing")]
    pub missing: Vec<String>,
    /// Columns holding each molecule's 3D geometry (QM9's DFT coordinates): the featurize stage
    /// writes them to `atoms3d.parquet`. Absent for datasets without coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<GeometryColumns>,
    /// Per label column, the unit conversion applied when it is read, and the task's name and unit
    /// from then on (e.g. QM9's `HOMO_LUMO_gap_au` in Hartree → task `gap` in eV). The one place
    /// where a dataset's units are set; the task names and units go into `graphs.parquet`'s metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label_units: BTreeMap<String, LabelUnit>,
}

/// The columns of a dataset's geometry: per row, a list of element symbols (`['C','H','H','H','H']`)
/// and a list of `[x, y, z]` positions in ångström, one per element, hydrogens included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeometryColumns {
    pub elements: String,
    pub positions: String,
}

/// How one label column is converted when read: `value × scale`, then called `name` (default: the
/// column's name) with unit `unit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelUnit {
    #[serde(default)]
    pub name: Option<String>,
    pub unit: String,
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

/// Hartree in electronvolts (CODATA 2018), for QM9's energies.
pub const HARTREE_IN_EV: f64 = 27.211386245988;

fn default_missing() -> Vec<String> {
    ["", "nan", "NaN", "NA", "None"].iter().map(|s| s.to_string()).collect()
}

impl DatasetSpec {
    /// `file`, or the name it defaults to.
    pub fn file_name(&self) -> String {
        if !self.file.is_empty() {
            return self.file.clone();
        }
        let from_path = self.path.as_deref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        let from_url = self.url.as_deref().and_then(|u| u.rsplit('/').next()).filter(|s| !s.is_empty()).map(str::to_string);
        from_path.or(from_url).unwrap_or_else(|| format!("{}.csv", self.name))
    }

    /// Mirror file names to try, in order.
    pub fn mirror_candidates(&self) -> Vec<String> {
        if !self.mirror_names.is_empty() {
            return self.mirror_names.clone();
        }
        let file = self.file_name();
        let mut names = vec![file.clone()];
        if let Some(last) = self.url.as_deref().and_then(|u| u.rsplit('/').next()).filter(|s| !s.is_empty()) {
            if last != file {
                names.push(last.to_string());
            }
        }
        names
    }
}
