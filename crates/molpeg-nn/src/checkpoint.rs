//! Checkpoints in safetensors: every model variable as little-endian f32 under Hu-style names
//! (see [`crate::model`]), plus string metadata: `molpeg.model` (the [`ModelConfig`] as JSON) and
//! whatever the caller adds (task names, regression target standardization). Readable from Python
//! with `safetensors.torch.load_file`.
//!
//! Loading checks names and shapes before touching the model; a mismatch is one error listing every
//! missing, unexpected and misshapen tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use crate::model::{Model, ModelConfig};
use crate::{Error, Result};

/// Metadata key holding the model configuration as JSON.
pub const META_MODEL: &str = "molpeg.model";

/// The node and edge feature scheme every molpeg GIN reads (`atom_hu`, `bond_hu` of `graphs.parquet`).
pub const FEATURE_SCHEME: &str = "hu";

/// The featurizer a model was trained with, as recorded in [`molpeg_core::schema::meta::FEATURIZER`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeaturizerInfo {
    pub scheme: String,
    /// `molpeg_chem::FEATURIZER_VERSION` of the featurize run that produced the training graphs;
    /// `None` when the graphs did not record one (synthetic fixtures).
    pub version: Option<String>,
}

/// The JSON of [`FeaturizerInfo`] for graphs featurized with `version`.
pub fn featurizer_metadata(version: Option<&str>) -> String {
    serde_json::to_string(&FeaturizerInfo { scheme: FEATURE_SCHEME.into(), version: version.map(str::to_string) }).expect("serializes")
}

/// What a fine-tuned checkpoint records for prediction: tasks, their type, the regression
/// standardisation and the featurizer.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub task_names: Vec<String>,
    pub task_kind: crate::data::TaskKind,
    pub target_mean: Vec<f32>,
    pub target_std: Vec<f32>,
    pub featurizer: Option<FeaturizerInfo>,
    /// The 3D atoms a 3D model was trained on: `atoms3d.parquet`'s `molpeg.geometry`
    /// (`dataset:<column>`, `etkdg`, `etkdg+mmff`) and conformer seed, copied by `molpeg-finetune`;
    /// `None` for other models and for checkpoints written before they were recorded.
    pub geometry: Option<TrainingGeometry>,
}

/// Where a 3D model's training geometries came from ([`TaskInfo::geometry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingGeometry {
    pub source: String,
    pub conformer_seed: Option<u32>,
}

/// Which variables a load copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every variable; the file must hold exactly the model's variables.
    Full,
    /// Only the encoder (`gnn.*`); the head keeps its fresh initialization and other tensors in the
    /// file (a pretraining head, a fine-tuning head) are ignored.
    Encoder,
}

/// A checkpoint read into memory (CPU tensors).
pub struct Checkpoint {
    pub path: PathBuf,
    pub metadata: HashMap<String, String>,
    pub tensors: BTreeMap<String, Tensor>,
}

/// Writes `vars` (e.g. [`Model::snapshot`]) with the model's configuration and `extra` metadata,
/// atomically. The bytes depend only on the inputs (sorted names, sorted metadata), so equal weights
/// give equal files and equal manifest hashes.
pub fn save(path: &Path, vars: &[(String, Tensor)], config: &ModelConfig, extra: &BTreeMap<String, String>) -> Result<()> {
    let mut metadata = extra.clone();
    metadata.insert("format".into(), "pt".into());
    metadata.insert(META_MODEL.into(), serde_json::to_string(config).expect("model config serializes"));
    write_tensors(path, vars, &metadata)
}

/// Writes `vars` and `metadata` as a safetensors file, atomically: f32 tensors, except that int64
/// tensors stay int64 (the `num_batches_tracked` counters of a PyTorch state dict,
/// [`crate::interop`]). Every other kind is converted to f32.
pub fn write_tensors(path: &Path, vars: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<()> {
    let buffer = tch::no_grad(|| encode(vars, metadata))?;
    molpeg_core::atomic::write_atomic(path, &buffer)?;
    Ok(())
}

/// The safetensors encoding: u64 header length, JSON header (padded with spaces to 8 bytes), data.
/// Written by hand rather than with `safetensors::serialize`, whose metadata is a `HashMap` and so
/// comes out in a different order on every run.
fn encode(vars: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut sorted: Vec<&(String, Tensor)> = vars.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialize"));
    let mut data = Vec::new();
    for (name, t) in sorted {
        let kind = if t.kind() == Kind::Int64 { Kind::Int64 } else { Kind::Float };
        let t = t.f_to_device(Device::Cpu)?.f_to_kind(kind)?.f_contiguous()?;
        let start = data.len();
        let flat = t.f_flatten(0, -1)?;
        let dtype = if kind == Kind::Int64 {
            Vec::<i64>::try_from(&flat)?.iter().for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
            "I64"
        } else {
            Vec::<f32>::try_from(&flat)?.iter().for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
            "F32"
        };
        header.insert(name.clone(), serde_json::json!({ "dtype": dtype, "shape": t.size(), "data_offsets": [start, data.len()] }));
    }
    let mut header = serde_json::to_vec(&header).expect("header serializes");
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Saves a model's current weights.
pub fn save_model(path: &Path, model: &Model, extra: &BTreeMap<String, String>) -> Result<()> {
    save(path, &model.named_variables(), &model.config, extra)
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let (metadata, tensors) = read_tensors(path)?;
        if let Some((name, t)) = tensors.iter().find(|(_, t)| t.kind() != Kind::Float) {
            return Err(Error::checkpoint(path, format!("tensor `{name}` has dtype {:?}; molpeg checkpoints hold F32 only", t.kind())));
        }
        Ok(Checkpoint { path: path.to_path_buf(), metadata, tensors })
    }

    /// The model configuration recorded in the file.
    pub fn model_config(&self) -> Result<ModelConfig> {
        let json = self.metadata.get(META_MODEL).ok_or_else(|| {
            Error::checkpoint(&self.path, format!("metadata has no `{META_MODEL}`; was this file written by molpeg?"))
        })?;
        serde_json::from_str(json).map_err(|e| Error::checkpoint(&self.path, format!("metadata `{META_MODEL}` is not a model configuration: {e}")))
    }

    /// The task description a fine-tuned checkpoint carries (see [`TaskInfo`]); an error names the
    /// missing key (an encoder or an imported checkpoint has no tasks).
    pub fn task_info(&self) -> Result<TaskInfo> {
        use molpeg_core::schema::{atoms3d, meta};
        let get = |key: &str| {
            self.metadata.get(key).ok_or_else(|| {
                Error::checkpoint(&self.path, format!("metadata has no `{key}`: not a fine-tuned model (molpeg-finetune writes it; encoders and imported checkpoints have no tasks)"))
            })
        };
        let bad = |key: &str, e: String| Error::checkpoint(&self.path, format!("metadata `{key}` cannot be read: {e}"));
        let task_names: Vec<String> = serde_json::from_str(get(meta::TASK_NAMES)?).map_err(|e| bad(meta::TASK_NAMES, e.to_string()))?;
        let kind = get(meta::TASK_TYPE)?;
        let task_kind = crate::data::TaskKind::parse(kind).ok_or_else(|| bad(meta::TASK_TYPE, format!("`{kind}` is not binary or regression")))?;
        let objective: serde_json::Value = serde_json::from_str(get(crate::finetune::META_OBJECTIVE)?).map_err(|e| bad(crate::finetune::META_OBJECTIVE, e.to_string()))?;
        let floats = |name: &str| -> Result<Vec<f32>> {
            let list = objective[name].as_array().ok_or_else(|| bad(crate::finetune::META_OBJECTIVE, format!("no `{name}` list")))?;
            list.iter().map(|v| v.as_f64().map(|x| x as f32).ok_or_else(|| bad(crate::finetune::META_OBJECTIVE, format!("`{name}` holds {v}")))).collect()
        };
        let (target_mean, target_std) = (floats("target_mean")?, floats("target_std")?);
        if target_mean.len() != task_names.len() || target_std.len() != task_names.len() {
            return Err(bad(crate::finetune::META_OBJECTIVE, format!("{} tasks but {} means and {} deviations", task_names.len(), target_mean.len(), target_std.len())));
        }
        let featurizer = match self.metadata.get(meta::FEATURIZER) {
            None => None,
            Some(json) => Some(serde_json::from_str(json).map_err(|e| bad(meta::FEATURIZER, e.to_string()))?),
        };
        let geometry = match self.metadata.get(atoms3d::META_GEOMETRY) {
            None => None,
            Some(source) => {
                let conformer_seed = match self.metadata.get(atoms3d::META_SEED) {
                    None => None,
                    Some(v) => Some(v.parse().map_err(|_| bad(atoms3d::META_SEED, format!("`{v}` is not a seed")))?),
                };
                Some(TrainingGeometry { source: source.clone(), conformer_seed })
            }
        };
        Ok(TaskInfo { task_names, task_kind, target_mean, target_std, featurizer, geometry })
    }

    /// Copies the checkpoint's tensors into `model`, after checking every name and shape in `scope`.
    pub fn load_into(&self, model: &Model, scope: Scope) -> Result<()> {
        let prefix = model.encoder_prefix();
        let in_scope = |name: &str| scope == Scope::Full || name.starts_with(prefix);
        let wanted: BTreeMap<String, Tensor> = model.named_variables().into_iter().filter(|(n, _)| in_scope(n)).collect();
        let mut missing = Vec::new();
        let mut misshapen = Vec::new();
        for (name, var) in &wanted {
            match self.tensors.get(name) {
                None => missing.push(name.clone()),
                Some(t) if t.size() != var.size() => misshapen.push(format!("{name}: file {:?}, model {:?}", t.size(), var.size())),
                Some(_) => {}
            }
        }
        let unexpected: Vec<String> = self.tensors.keys().filter(|n| in_scope(n) && !wanted.contains_key(*n)).cloned().collect();
        if let Some(problems) = tensor_problems(&missing, &misshapen, &unexpected, "tensors the model does not have") {
            let hint = match self.model_config() {
                Ok(c) => format!(
                    "the file was written for model={} layers={} width={} jk={:?} num_tasks={}; the model has model={} layers={} width={} jk={:?} num_tasks={}",
                    c.kind.as_str(), c.layers, c.width, c.jk, c.num_tasks, model.config.kind.as_str(), model.config.layers, model.config.width, model.config.jk, model.config.num_tasks
                ),
                Err(_) => "check the model flags (layers, width, jk)".into(),
            };
            return Err(Error::checkpoint(&self.path, format!("does not fit the model: {problems}. {hint}")));
        }
        let pairs: Vec<(String, Tensor)> = wanted.keys().map(|n| (n.clone(), self.tensors[n].shallow_clone())).collect();
        model.restore(&pairs)
    }
}

/// One description of every missing, misshapen and unexpected tensor (`unexpected_label` names the
/// last kind), or `None` when all three lists are empty.
pub(crate) fn tensor_problems(missing: &[String], misshapen: &[String], unexpected: &[String], unexpected_label: &str) -> Option<String> {
    let parts: Vec<String> = [("missing tensors", missing, ", "), ("shape mismatches", misshapen, "; "), (unexpected_label, unexpected, ", ")]
        .into_iter()
        .filter(|(_, list, _)| !list.is_empty())
        .map(|(label, list, sep)| format!("{label}: {}", list.join(sep)))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Reads any safetensors file: its metadata and every tensor (CPU) of a floating-point or integer
/// dtype libtorch has (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL), with its dtype kept.
pub fn read_tensors(path: &Path) -> Result<(HashMap<String, String>, BTreeMap<String, Tensor>)> {
    let buffer = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let bad = |e: safetensors::SafeTensorError| Error::checkpoint(path, format!("not a readable safetensors file: {e}"));
    let (_, header) = SafeTensors::read_metadata(&buffer).map_err(bad)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&buffer).map_err(bad)?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            Dtype::F64 => Kind::Double,
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::I16 => Kind::Int16,
            Dtype::I8 => Kind::Int8,
            Dtype::U8 => Kind::Uint8,
            Dtype::BOOL => Kind::Bool,
            other => return Err(Error::checkpoint(path, format!("tensor `{name}` has dtype {other:?}, which molpeg cannot read"))),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.insert(name, Tensor::f_from_data_size(view.data(), &shape, kind)?);
    }
    Ok((metadata, tensors))
}

/// Builds the model a checkpoint describes and loads all of its weights.
pub fn load_model(path: &Path, device: Device) -> Result<(Model, Checkpoint)> {
    let ckpt = Checkpoint::read(path)?;
    let model = Model::new(&ckpt.model_config()?, device)?;
    ckpt.load_into(&model, Scope::Full)?;
    Ok((model, ckpt))
}
