//! Import and export of GIN checkpoints in the layout of Hu et al.'s pretrain-gnns (`chem/model.py`,
//! `GNN` and `GNN_graphpred`), which GraphMAE's and MolPeg's code use verbatim, so that published
//! checkpoints (e.g. MolPeg's `PubChem_Pretrained.pth`) load into molpeg and molpeg's models load
//! into that code.
//!
//! **Names.** A Hu state dict holds `x_embedding1.weight` [120, d], `x_embedding2.weight` [3, d] and,
//! per layer `i`, `gnns.{i}.edge_embedding1.weight` [6, d], `gnns.{i}.edge_embedding2.weight` [3, d],
//! `gnns.{i}.mlp.0.{weight,bias}` [2d, d], `gnns.{i}.mlp.2.{weight,bias}` [d, 2d],
//! `batch_norms.{i}.{weight,bias,running_mean,running_var,num_batches_tracked}`: with no prefix
//! (`GNN.state_dict()`) or under `gnn.` (`GNN_graphpred.state_dict()`, with `graph_pred_linear.*`).
//! molpeg uses the same names under `gnn.` ([`crate::model`]); only the embedding tables differ.
//!
//! **Vocabularies.** molpeg's tables have explicit "other" rows (values Hu's featurizer has no index
//! for and would fail on) and the self-loop and mask tokens after them:
//!
//! | table | Hu rows | molpeg rows | import: molpeg row ← Hu row | export: Hu row ← molpeg row |
//! |---|---|---|---|---|
//! | atom type `x_embedding1` | 120: 0..117 elements, 118 unused, 119 mask | 120: 0..117, 118 other, 119 mask | identity | identity |
//! | chirality `x_embedding2` | 3: unspecified, CW, CCW | 4: …, 3 other | 0,1,2 ← 0,1,2; **3 ← 0** (unspecified) | 0,1,2 ← 0,1,2 (3 dropped) |
//! | bond type `edge_embedding1` | 6: single, double, triple, aromatic, 4 self-loop, 5 mask | 7: …, 4 other, 5 self-loop, 6 mask | 0..3 ← 0..3; **4 ← 0** (single); 5 ← 4; 6 ← 5 | 0..3 ← 0..3; 4 ← 5; 5 ← 6 (4 dropped) |
//! | bond direction `edge_embedding2` | 3: none, end-up-right, end-down-right | 4: …, 3 other | 0,1,2 ← 0,1,2; **3 ← 0** (none) | 0,1,2 ← 0,1,2 (3 dropped) |
//!
//! So an imported model treats an unknown chirality tag as unspecified, an unknown bond type (e.g.
//! dative) as a single bond and an unknown direction as none; on molecules without "other" values it
//! computes exactly what the Hu model computes. Export drops the "other" rows (Hu's code has no index
//! that could reach them), so export ∘ import is the identity on Hu files, and import ∘ export resets
//! the "other" rows of a molpeg model to those defaults.
//!
//! **Shapes.** Layers and width come from the tensors' shapes; the head's output count gives the
//! tasks, and its input width `(layers + 1)·d` means `JK = "concat"`. Hu files do not record pooling,
//! JK "last" vs "sum" or dropout: [`ImportOptions`] supplies them (mean, last, 0.5 as in Hu's
//! fine-tuning). `num_batches_tracked` is ignored on import (molpeg's BatchNorm uses momentum 0.1,
//! where PyTorch does not read it) and written as 0 on export, so the exported keys are exactly those
//! of `GNN.state_dict()` / `GNN_graphpred.state_dict()`. Any other tensor is an error that lists it.
//!
//! **Files.** `.safetensors` directly. `.pth` / `.pt` / `.bin` (a `torch.save` zip pickle): libtorch's
//! pickle reader (`Tensor::loadz_multi`) is tried first, but it reads only plain dicts, not the
//! `OrderedDict` every `state_dict()` is, so such files are converted by [`PTH_HELPER`] run with
//! PyTorch's Python (`$MOLPEG_PYTHON`, default `python3`); writing a `.pth` always uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, Checkpoint, Scope};
use crate::data::{ATOM_TYPES, BOND_DIRECTIONS, BOND_TYPES, CHIRALITY_TAGS};
use crate::model::{Jk, Model, ModelConfig, Pooling, ENCODER_PREFIX, HEAD_NAME};
use crate::{Error, Result};

/// The `.pth` ⇄ safetensors converter run with PyTorch's Python (see the module doc).
pub const PTH_HELPER: &str = include_str!("interop_pth.py");
/// Exit status of [`PTH_HELPER`] when `import torch` fails.
const HELPER_NO_TORCH: i32 = 3;

/// Metadata keys of an imported checkpoint: the source file's name and sha256.
pub const META_IMPORTED_FROM: &str = "molpeg.imported_from";
pub const META_IMPORTED_SHA256: &str = "molpeg.imported_sha256";
/// Metadata key of an exported safetensors file: the molpeg model configuration it came from, which
/// says how to build the Python model (`num_layer`, `emb_dim`, `JK`, `graph_pooling`, `num_tasks`).
pub const META_EXPORTED_MODEL: &str = "molpeg.exported_model";

/// How one embedding table maps between the two vocabularies.
#[derive(Debug)]
pub struct RowMap {
    /// Name of the table relative to the encoder (per layer for the edge tables).
    pub table: &'static str,
    /// `import[r]`: the Hu row that molpeg row `r` is copied from.
    pub import: &'static [i64],
    /// `export[h]`: the molpeg row written as Hu row `h`.
    pub export: &'static [i64],
}

const fn identity<const N: usize>() -> [i64; N] {
    let mut rows = [0i64; N];
    let mut i = 0;
    while i < N {
        rows[i] = i as i64;
        i += 1;
    }
    rows
}

const ATOM_IDENTITY: [i64; ATOM_TYPES] = identity();
pub const ATOM_ROWS: RowMap = RowMap { table: "x_embedding1.weight", import: &ATOM_IDENTITY, export: &ATOM_IDENTITY };
pub const CHIRALITY_ROWS: RowMap = RowMap { table: "x_embedding2.weight", import: &[0, 1, 2, 0], export: &[0, 1, 2] };
pub const BOND_TYPE_ROWS: RowMap = RowMap { table: "edge_embedding1.weight", import: &[0, 1, 2, 3, 0, 4, 5], export: &[0, 1, 2, 3, 5, 6] };
pub const BOND_DIRECTION_ROWS: RowMap = RowMap { table: "edge_embedding2.weight", import: &[0, 1, 2, 0], export: &[0, 1, 2] };
const _: () = assert!(
    ATOM_ROWS.import.len() == ATOM_TYPES
        && CHIRALITY_ROWS.import.len() == CHIRALITY_TAGS
        && BOND_TYPE_ROWS.import.len() == BOND_TYPES
        && BOND_DIRECTION_ROWS.import.len() == BOND_DIRECTIONS
);

/// The row map of an encoder tensor (Hu name without prefix), if it is an embedding table.
fn row_map(name: &str) -> Option<&'static RowMap> {
    [&ATOM_ROWS, &CHIRALITY_ROWS, &BOND_TYPE_ROWS, &BOND_DIRECTION_ROWS]
        .into_iter()
        .find(|m| name == m.table || (name.starts_with("gnns.") && name.ends_with(&format!(".{}", m.table))))
}

fn select_rows(t: &Tensor, rows: &[i64]) -> Result<Tensor> {
    Ok(t.f_index_select(0, &Tensor::from_slice(rows))?)
}

/// Every tensor of a Hu encoder of `layers` × `width` (no prefix, no `num_batches_tracked`) and its
/// shape, in `GNN.state_dict()` order.
pub fn hu_encoder_layout(layers: usize, width: usize) -> Vec<(String, Vec<i64>)> {
    let d = width as i64;
    let rows = |m: &RowMap| m.export.len() as i64;
    let mut layout = vec![(ATOM_ROWS.table.to_string(), vec![rows(&ATOM_ROWS), d]), (CHIRALITY_ROWS.table.to_string(), vec![rows(&CHIRALITY_ROWS), d])];
    for i in 0..layers {
        layout.push((format!("gnns.{i}.mlp.0.weight"), vec![2 * d, d]));
        layout.push((format!("gnns.{i}.mlp.0.bias"), vec![2 * d]));
        layout.push((format!("gnns.{i}.mlp.2.weight"), vec![d, 2 * d]));
        layout.push((format!("gnns.{i}.mlp.2.bias"), vec![d]));
        layout.push((format!("gnns.{i}.{}", BOND_TYPE_ROWS.table), vec![rows(&BOND_TYPE_ROWS), d]));
        layout.push((format!("gnns.{i}.{}", BOND_DIRECTION_ROWS.table), vec![rows(&BOND_DIRECTION_ROWS), d]));
    }
    for i in 0..layers {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            layout.push((format!("batch_norms.{i}.{p}"), vec![d]));
        }
    }
    layout
}

/// The layer index of a Hu encoder name `gnns.{i}.…` or `batch_norms.{i}.…`.
fn layer_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("gnns.").or_else(|| name.strip_prefix("batch_norms."))?;
    rest.split('.').next()?.parse().ok()
}

/// What Hu files do not record, for [`import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Import only the encoder (`num_tasks` 0, for `molpeg-finetune --pretrained`), ignoring a head.
    pub encoder_only: bool,
    /// JK mode; `None`: `concat` when the head's input is `(layers + 1)·width`, else `last`.
    pub jk: Option<Jk>,
    pub pooling: Pooling,
    /// Dropout of the model configuration (no effect on the weights or on eval-mode outputs).
    pub dropout: f64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { encoder_only: false, jk: None, pooling: Pooling::Mean, dropout: 0.5 }
    }
}

/// A Hu state dict translated to molpeg's variables.
pub struct Imported {
    pub config: ModelConfig,
    /// molpeg variable names and f32 tensors, exactly the variables of a [`Model`] of `config`.
    pub vars: Vec<(String, Tensor)>,
    /// The prefix the encoder's tensors had in the file (`""` or `"gnn."`).
    pub prefix: String,
    /// Tensors of the file that were deliberately not imported (`num_batches_tracked`, a head with
    /// `encoder_only`).
    pub ignored: Vec<String>,
}

/// Translates a Hu state dict (`tensors` as read from `source`, named in errors) to molpeg variables,
/// after checking every name and shape; problems are one error listing every missing, misshapen and
/// unknown tensor.
pub fn import(source: &Path, tensors: &BTreeMap<String, Tensor>, options: &ImportOptions) -> Result<Imported> {
    let err = |message: String| Error::checkpoint(source, message);
    let prefix = if tensors.keys().any(|k| k.starts_with(ENCODER_PREFIX)) { ENCODER_PREFIX } else { "" };
    let head_prefix = format!("{HEAD_NAME}.");
    let mut encoder: BTreeMap<&str, &Tensor> = BTreeMap::new();
    let mut head: BTreeMap<&str, &Tensor> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut ignored = Vec::new();
    for (name, t) in tensors {
        if let Some(p) = name.strip_prefix(&head_prefix).filter(|p| *p == "weight" || *p == "bias") {
            head.insert(p, t);
        } else if let Some(hu) = name.strip_prefix(prefix) {
            if hu.ends_with(".num_batches_tracked") && hu.starts_with("batch_norms.") {
                ignored.push(name.clone());
            } else {
                encoder.insert(hu, t);
            }
        } else {
            unknown.push(name.clone());
        }
    }
    let Some(atoms) = encoder.get(ATOM_ROWS.table).filter(|t| t.dim() == 2) else {
        let found: Vec<&str> = tensors.keys().take(8).map(String::as_str).collect();
        return Err(err(format!(
            "no 2-D `{prefix}{}`: not a state dict of Hu et al.'s GIN (pretrain-gnns `GNN` or `GNN_graphpred`); its first tensors: {}",
            ATOM_ROWS.table,
            found.join(", ")
        )));
    };
    let width = atoms.size()[1] as usize;
    let layers = encoder.keys().filter_map(|n| layer_of(n)).max().map_or(0, |l| l + 1);
    if layers == 0 {
        return Err(err(format!("`{prefix}gnns.0.*` not found: the state dict has no GIN layer")));
    }
    let layout = hu_encoder_layout(layers, width);
    let expected: BTreeMap<&str, &Vec<i64>> = layout.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut missing: Vec<String> = expected.keys().filter(|n| !encoder.contains_key(*n)).map(|n| format!("{prefix}{n}")).collect();
    let mut misshapen = Vec::new();
    for (name, t) in &encoder {
        match expected.get(*name) {
            None => unknown.push(format!("{prefix}{name}")),
            Some(shape) if t.size() != **shape => misshapen.push(format!("{prefix}{name}: {:?}, expected {shape:?}", t.size())),
            Some(_) if !t.is_floating_point() => misshapen.push(format!("{prefix}{name}: dtype {:?}, expected a floating-point tensor", t.kind())),
            Some(_) => {}
        }
    }
    let use_head = !head.is_empty() && !options.encoder_only;
    let mut num_tasks = 0;
    let mut jk = options.jk.unwrap_or(Jk::Last);
    if use_head {
        match (head.get("weight"), head.get("bias")) {
            (Some(w), Some(b)) if w.dim() == 2 && b.size() == [w.size()[0]] => {
                let (tasks, inputs) = (w.size()[0] as usize, w.size()[1] as usize);
                num_tasks = tasks;
                if options.jk.is_none() && inputs == (layers + 1) * width {
                    jk = Jk::Concat;
                }
                let want = ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers, width, dropout: 0.0, pooling: options.pooling, jk, num_tasks }.graph_dim();
                if inputs != want {
                    misshapen.push(format!("{head_prefix}weight: {:?}, expected [{tasks}, {want}] for jk {jk:?} ({layers} layers of width {width})", w.size()));
                }
            }
            (Some(w), Some(b)) => misshapen.push(format!("{head_prefix}{{weight,bias}}: {:?} and {:?}, expected [T, F] and [T]", w.size(), b.size())),
            (None, _) => missing.push(format!("{head_prefix}weight")),
            (_, None) => missing.push(format!("{head_prefix}bias")),
        }
    } else {
        ignored.extend(head.keys().map(|p| format!("{head_prefix}{p}")));
    }
    if let Some(problems) = checkpoint::tensor_problems(&missing, &misshapen, &unknown, "unknown tensors (not part of a Hu et al. GIN with a linear head)") {
        return Err(err(format!("cannot import as a {layers}-layer GIN of width {width}: {problems}")));
    }

    let config = ModelConfig { kind: Default::default(), sequence: None, schnet: None, layers, width, dropout: options.dropout, pooling: options.pooling, jk, num_tasks };
    let mut vars = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for (name, _) in &layout {
            let t = encoder[name.as_str()].f_to_kind(Kind::Float)?;
            let t = match row_map(name) {
                Some(map) => select_rows(&t, map.import)?,
                None => t,
            };
            vars.push((format!("{ENCODER_PREFIX}{name}"), t));
        }
        if use_head {
            for (p, t) in &head {
                vars.push((format!("{head_prefix}{p}"), t.f_to_kind(Kind::Float)?));
            }
        }
        Ok(())
    })?;
    // The checkpoint loader's own name and shape check against a model of this configuration.
    let model = Model::new(&config, Device::Cpu)?;
    let ckpt = Checkpoint { path: source.to_path_buf(), metadata: Default::default(), tensors: vars.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect() };
    ckpt.load_into(&model, Scope::Full)?;
    Ok(Imported { config, vars, prefix: prefix.to_string(), ignored })
}

/// Options of [`export`].
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Write only the encoder, as `GNN.state_dict()` (no prefix unless `prefix` says otherwise).
    pub encoder_only: bool,
    /// Prefix of the encoder's names; `None`: `gnn.` when the head is written (`GNN_graphpred`
    /// layout), none otherwise (`GNN` layout, like `PubChem_Pretrained.pth`).
    pub prefix: Option<String>,
}

/// A molpeg checkpoint in Hu's layout.
pub struct Exported {
    pub config: ModelConfig,
    /// Hu names and tensors (f32; `num_batches_tracked` int64), in `state_dict()` order (files sort them).
    pub tensors: Vec<(String, Tensor)>,
    pub prefix: String,
    pub with_head: bool,
}

/// Translates a molpeg checkpoint to a Hu state dict (see the module doc for the dropped rows).
pub fn export(ckpt: &Checkpoint, options: &ExportOptions) -> Result<Exported> {
    let config = ckpt.model_config()?;
    if config.kind != crate::model::ModelKind::Gin {
        return Err(Error::checkpoint(&ckpt.path, format!("holds a {} model; only GIN checkpoints have a pretrain-gnns state dict", config.kind.as_str())));
    }
    let model = Model::new(&config, Device::Cpu)?;
    ckpt.load_into(&model, if options.encoder_only { Scope::Encoder } else { Scope::Full })?;
    let with_head = config.num_tasks > 0 && !options.encoder_only;
    let prefix = options.prefix.clone().unwrap_or_else(|| if with_head { ENCODER_PREFIX.to_string() } else { String::new() });
    let vars: BTreeMap<String, Tensor> = model.named_variables().into_iter().collect();
    let mut tensors = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for (name, _) in hu_encoder_layout(config.layers, config.width) {
            let t = vars.get(&format!("{ENCODER_PREFIX}{name}")).ok_or_else(|| Error::Internal(format!("model has no {ENCODER_PREFIX}{name}")))?.f_detach_copy()?;
            let t = match row_map(&name) {
                Some(map) => select_rows(&t, map.export)?,
                None => t,
            };
            if let Some(bn) = name.strip_suffix(".running_var") {
                tensors.push((format!("{prefix}{name}"), t));
                tensors.push((format!("{prefix}{bn}.num_batches_tracked"), Tensor::from(0i64)));
            } else {
                tensors.push((format!("{prefix}{name}"), t));
            }
        }
        if with_head {
            for p in ["weight", "bias"] {
                let name = format!("{HEAD_NAME}.{p}");
                tensors.push((name.clone(), vars[&name].f_detach_copy()?));
            }
        }
        Ok(())
    })?;
    Ok(Exported { config, tensors, prefix, with_head })
}

/// The file formats a state dict can be read from or written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    /// `torch.save` zip pickle (`.pth`, `.pt`, `.bin`).
    Pickle,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("safetensors") => Ok(Format::Safetensors),
            Some("pth" | "pt" | "bin") => Ok(Format::Pickle),
            _ => Err(Error::checkpoint(path, "unknown file type: use a `.safetensors` or a `.pth` (`.pt`, `.bin`) file name")),
        }
    }
}

/// Reads a state dict from `.safetensors` or a `torch.save` pickle (see the module doc).
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::checkpoint(path, "file not found"));
    }
    match Format::of(path)? {
        Format::Safetensors => Ok(checkpoint::read_tensors(path)?.1),
        Format::Pickle => {
            // libtorch's pickle reader handles plain dicts; an OrderedDict (any `state_dict()`) makes
            // it fail, and then PyTorch itself converts the file.
            if let Ok(pairs) = Tensor::loadz_multi(path) {
                return Ok(pairs.into_iter().collect());
            }
            let tmp = TempFile::new(std::env::temp_dir(), path, "safetensors");
            run_helper("to-safetensors", path, &tmp.0)?;
            Ok(checkpoint::read_tensors(&tmp.0)?.1)
        }
    }
}

/// Writes a state dict as `.safetensors` (with `metadata`) or as a `torch.save` pickle of an
/// `OrderedDict` (through PyTorch's Python; names sorted, metadata not kept), atomically.
pub fn write_state_dict(path: &Path, tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<()> {
    match Format::of(path)? {
        Format::Safetensors => checkpoint::write_tensors(path, tensors, metadata),
        Format::Pickle => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let st = TempFile::new(dir.to_path_buf(), path, "safetensors");
            checkpoint::write_tensors(&st.0, tensors, metadata)?;
            let out = TempFile::new(dir.to_path_buf(), path, "pth");
            run_helper("to-pth", &st.0, &out.0)?;
            std::fs::rename(&out.0, path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
            Ok(())
        }
    }
}

/// The Python that runs [`PTH_HELPER`]: `$MOLPEG_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("MOLPEG_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

fn run_helper(mode: &str, input: &Path, output: &Path) -> Result<()> {
    let python = python();
    let fail = |why: String| {
        Error::checkpoint(
            input,
            format!(
                "reading or writing a .pth needs PyTorch (libtorch alone cannot read a state_dict's OrderedDict): {why}. \
                 Set MOLPEG_PYTHON to a Python with torch (e.g. the venv of `just setup`), or convert the file to \
                 .safetensors in Python: `safetensors.torch.save_file(torch.load(IN), OUT)`"
            ),
        )
    };
    let out = Command::new(&python)
        .arg("-c")
        .arg(PTH_HELPER)
        .arg(mode)
        .arg(input)
        .arg(output)
        .output()
        .map_err(|e| fail(format!("cannot run `{python}`: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    if out.status.code() == Some(HELPER_NO_TORCH) {
        return Err(fail(format!("`{python}` has no torch ({last})")));
    }
    Err(Error::checkpoint(input, format!("`{python}` could not convert it ({mode}): {last}")))
}

/// A file name next to `like` in `dir`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(dir: PathBuf, like: &Path, ext: &str) -> TempFile {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let stem = like.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TempFile(dir.join(format!(".{stem}.{}-{n}.tmp.{ext}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::META_MODEL;

    /// A random Hu state dict: `prefix` on the encoder, a head of `head` tasks × `head_in` inputs.
    fn hu_state(layers: usize, width: usize, prefix: &str, head: Option<(i64, i64)>) -> BTreeMap<String, Tensor> {
        let mut sd: BTreeMap<String, Tensor> =
            hu_encoder_layout(layers, width).into_iter().map(|(n, shape)| (format!("{prefix}{n}"), Tensor::randn(shape, (Kind::Float, Device::Cpu)))).collect();
        for i in 0..layers {
            sd.insert(format!("{prefix}batch_norms.{i}.num_batches_tracked"), Tensor::from(17i64));
        }
        if let Some((t, f)) = head {
            sd.insert("graph_pred_linear.weight".into(), Tensor::randn([t, f], (Kind::Float, Device::Cpu)));
            sd.insert("graph_pred_linear.bias".into(), Tensor::randn([t], (Kind::Float, Device::Cpu)));
        }
        sd
    }

    fn as_checkpoint(imported: &Imported) -> Checkpoint {
        Checkpoint {
            path: "imported.safetensors".into(),
            metadata: [(META_MODEL.to_string(), serde_json::to_string(&imported.config).unwrap())].into(),
            tensors: imported.vars.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
        }
    }

    /// The paper's 5 × 300 GIN_graphpred: shapes map, the "other" rows get the documented defaults,
    /// and export gives back every tensor bit for bit.
    #[test]
    fn paper_shapes_import_and_export_back_exactly() {
        tch::manual_seed(1);
        let hu = hu_state(5, 300, "gnn.", Some((2, 300)));
        let imported = import(Path::new("hu.pth"), &hu, &ImportOptions::default()).unwrap();
        assert_eq!((imported.config.layers, imported.config.width, imported.config.num_tasks, imported.config.jk), (5, 300, 2, Jk::Last));
        assert_eq!(imported.prefix, "gnn.");
        assert_eq!(imported.ignored.len(), 5, "{:?}", imported.ignored);
        let vars: BTreeMap<_, _> = imported.vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let row = |name: &str, r: i64| vars[name].get(r);
        let hu_row = |name: &str, r: i64| hu[name].get(r);
        assert!(row("gnn.x_embedding2.weight", 3).equal(&hu_row("gnn.x_embedding2.weight", 0)));
        let (bt, bd) = ("gnn.gnns.4.edge_embedding1.weight", "gnn.gnns.4.edge_embedding2.weight");
        assert_eq!(vars[bt].size(), [7, 300]);
        for (ours, theirs) in [(0, 0), (3, 3), (4, 0), (5, 4), (6, 5)] {
            assert!(row(bt, ours).equal(&hu_row(bt, theirs)), "bond type row {ours}");
        }
        assert!(row(bd, 3).equal(&hu_row(bd, 0)));
        assert!(row("gnn.x_embedding1.weight", 118).equal(&hu_row("gnn.x_embedding1.weight", 118)));

        let exported = export(&as_checkpoint(&imported), &ExportOptions::default()).unwrap();
        assert!(exported.with_head && exported.prefix == "gnn.");
        let names: Vec<&str> = exported.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["gnn.x_embedding1.weight", "gnn.x_embedding2.weight", "gnn.gnns.0.mlp.0.weight"]);
        assert_eq!(names.iter().copied().collect::<std::collections::BTreeSet<_>>(), hu.keys().map(String::as_str).collect());
        for (name, t) in &exported.tensors {
            if name.ends_with("num_batches_tracked") {
                assert_eq!((t.kind(), t.int64_value(&[])), (Kind::Int64, 0));
            } else {
                assert!(t.equal(&hu[name]), "{name} differs after import and export");
            }
        }

        // Encoder only, GNN layout: no prefix and no head.
        let encoder = export(&as_checkpoint(&imported), &ExportOptions { encoder_only: true, prefix: None }).unwrap();
        assert!(!encoder.with_head && encoder.tensors.iter().all(|(n, _)| !n.starts_with("gnn.") && !n.starts_with("graph_pred")));
        assert_eq!(encoder.tensors.len(), hu.len() - 2);
    }

    #[test]
    fn unprefixed_encoder_concat_head_and_encoder_only() {
        tch::manual_seed(2);
        let hu = hu_state(2, 8, "", None);
        let imported = import(Path::new("gnn.pth"), &hu, &ImportOptions::default()).unwrap();
        assert_eq!((imported.config.layers, imported.config.width, imported.config.num_tasks, imported.prefix.as_str()), (2, 8, 0, ""));

        let with_head = hu_state(2, 8, "gnn.", Some((3, 24)));
        let imported = import(Path::new("jk.pth"), &with_head, &ImportOptions::default()).unwrap();
        assert_eq!((imported.config.jk, imported.config.num_tasks), (Jk::Concat, 3));
        let encoder = import(Path::new("jk.pth"), &with_head, &ImportOptions { encoder_only: true, ..Default::default() }).unwrap();
        assert_eq!(encoder.config.num_tasks, 0);
        assert!(encoder.ignored.contains(&"graph_pred_linear.weight".to_string()));
        assert!(encoder.vars.iter().all(|(n, _)| n.starts_with("gnn.")));
    }

    #[test]
    fn foreign_tensors_are_errors_that_list_them() {
        tch::manual_seed(3);
        let mut hu = hu_state(2, 8, "gnn.", Some((1, 8)));
        hu.insert("projection_head.0.weight".into(), Tensor::zeros([4, 8], (Kind::Float, Device::Cpu)));
        hu.insert("gnn.gnns.1.eps".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        hu.remove("gnn.batch_norms.1.running_var");
        hu.insert("gnn.gnns.0.edge_embedding1.weight".into(), Tensor::zeros([7, 8], (Kind::Float, Device::Cpu)));
        let err = import(Path::new("graphcl.pth"), &hu, &ImportOptions::default()).err().unwrap().to_string();
        for part in [
            "graphcl.pth",
            "2-layer GIN of width 8",
            "missing tensors: gnn.batch_norms.1.running_var",
            "gnn.gnns.0.edge_embedding1.weight: [7, 8], expected [6, 8]",
            "unknown tensors",
            "projection_head.0.weight",
            "gnn.gnns.1.eps",
        ] {
            assert!(err.contains(part), "{err} lacks {part}");
        }
        let err = import(Path::new("x.pth"), &BTreeMap::from([("w".to_string(), Tensor::from(1f32))]), &ImportOptions::default()).err().unwrap().to_string();
        assert!(err.contains("not a state dict of Hu et al.'s GIN"), "{err}");
        let wrong_head = hu_state(2, 8, "gnn.", Some((1, 16)));
        let err = import(Path::new("h.pth"), &wrong_head, &ImportOptions::default()).err().unwrap().to_string();
        assert!(err.contains("graph_pred_linear.weight: [1, 16], expected [1, 8]"), "{err}");
    }
}
