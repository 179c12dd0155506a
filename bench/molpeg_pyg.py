#!/usr/bin/env python3
"""Independent PyTorch Geometric implementation of the MolPeg protocol on HIV (cross-check of issue 12).

Written from the paper (Chen et al., NeurIPS 2024) and a reading of the official code
(github.com/Data-reindeer/MolPeg: main.py, pruning/molpeg.py, model/gnn.py, splitter.py,
datasets/molnet.py, utils.py) and of snap-stanford/pretrain-gnns (chem/loader.py, chem/model.py); no
code is copied from either, and nothing here is shared with molpeg's Rust crates, so molpeg's
`molpeg-finetune` results (full data, `--dynamic molpeg --keep R`) can be checked against it.

Pipeline
  featurize  RDKit (Chem.MolFromSmiles), pretrain-gnns "simple" features: atom = [atomic number - 1,
             chirality index in (UNSPECIFIED, CW, CCW, OTHER)], bond = [type index in (SINGLE,
             DOUBLE, TRIPLE, AROMATIC), direction index in (NONE, ENDUPRIGHT, ENDDOWNRIGHT)], both
             directions of every bond; label HIV_active 0/1 (BCE target). Values outside those lists
             (pretrain-gnns would raise on them) go to index 0 and are counted in the output as
             `unlisted_features`; on HIV with a recent pip RDKit that is 2 DATIVE bonds of one iron
             complex (row 35278), which older RDKits (the official code's 2020.09) read as SINGLE.
             CHI_OTHER is treated the same way, since pretrain-gnns' model has 3 chirality embeddings.
             Cached in --cache-dir (one torch file keyed on the CSV's size/mtime and RDKit's version),
             so seeds and strategies reuse it.
  split      pretrain-gnns / MolPeg `random_split` over ALL CSV row indices: random.seed(42),
             random.shuffle(list(range(n))), train = [:int(0.8n)], valid = [int(0.8n):int(0.1n) +
             int(0.8n)], test = the rest (--split-seed changes 42). The official code's defaults are
             --split random --seed 42. Rows RDKit rejects (a pip RDKit rejects 7 HIV rows, 137, 987,
             12882, 18293, 30784, 30785, 35728, which Debian's RDKit 2022.09 accepts) are dropped
             from whichever part they fall in, AFTER the split, so the other molecules keep their
             parts; the JSON line lists them (`dropped_rows`) and the counts n_train/n_valid/n_test.
             --split-file PATH instead reads a molpeg split.parquet (mol_id = 0-based CSV row, split
             = train/valid/test; each part in the file's row order), to train on molpeg's own split.
  model      GIN of pretrain-gnns: per layer, message x_j + E_type(bond type) + E_dir(bond direction)
             over the bonds plus self-loops (bond type 4, direction 0), sum aggregation, MLP d->2d->d,
             BatchNorm, ReLU except after the last layer, dropout 0.5 after every layer (the last
             too); JK last, mean pooling, a linear head (the official `MLP(num_layers=1)`).
             Vocabularies as pretrain-gnns (120 atom types, 3 chirality tags, 6 bond types, 3 bond
             directions) so a pretrain-gnns state dict loads (--pretrained). --layers/--width default
             to 3 x 64 (molpeg's CPU configuration); the paper uses 5 x 300.
  train      Adam lr 1e-3 (no weight decay), batch 256, --epochs (100), loss BCE-with-logits in
             float64 as the official code, sum over the batch divided by the number of labels.
             Valid and test ROC-AUC (sklearn, mean over tasks with both classes) after every epoch;
             the reported test AUC is that of the first epoch with the best valid AUC (strict >).
  strategies
    full     every training molecule every epoch (the official code has no separate path: full data
             is MolPeg with ratio 1, i.e. all samples, weight 1, shuffled from the score-sorted
             order; here the shuffle is applied to 0..N-1 and the reference model is not run for
             `full`, which only changes which dropout masks the RNG hands out).
    molpeg   dynamic MolPeg with keep ratio R (--keep): an EMA reference xi of the online GNN theta
             (xi <- beta xi + (1 - beta) theta with beta = 0.5 (--ema-beta), parameters only, after
             every optimizer step); on every batch the reference is run under no_grad in TRAIN mode
             (its own dropout masks, batch statistics in its BatchNorms) through the online model's
             head, and the score of each sample is |loss_theta - loss_xi| (per sample, mean over
             tasks) from that same batch. Scores start at 1 for every sample; before every epoch the
             top int(R * N) samples by their latest score are kept (stable sort, descending: ties in
             training-split order), shuffled, and trained with loss weight 1/R. Samples not kept keep
             their stale score. With all scores 1 at the start, epoch 1 trains on the first
             int(R * N) positions of the split, and since |loss_theta - loss_xi| is almost always
             below 1, unseen samples outrank seen ones, so the first ceil(1/R) epochs sweep the
             whole training set. Pruning is applied in every epoch (the sampler's stop_prune is
             the number of epochs; its `delta` argument, InfoBatch's annealing, is unused).

Quirks of the official code, each a flag whose default is the official behaviour
  --rescale twice   main.py multiplies the per-sample loss by rescale_weight (1/R) twice for molpeg
                    (once in the `if args.method == 'molpeg'` branch, once after it), so the weight
                    is 1/R^2. `once` applies 1/R as in the paper, `none` no weight. With Adam the
                    scale of the loss nearly cancels (only eps = 1e-8 sees it), so this is expected
                    to matter little.
  --ref-init random the reference GNN is a fresh, independently initialised GNN even when theta is
                    loaded from --pretrained (the official code loads the checkpoint into theta only).
                    With beta = 0.5 its initial weights fade as 0.5^steps, so this only touches the
                    first epoch's scores. `copy` starts xi as a copy of theta.
  --ref-mode train  the reference is never put in eval mode: its forward pass uses dropout (masks
                    independent of theta's) and batch statistics. `eval` runs it deterministically.
  --shuffle official  the sampler calls np.random.seed(e - 1) before shuffling the kept samples of
                    epoch e, so the batch order does NOT depend on the run seed (identical for every
                    seed, and for `full` identical across seeds too). `seeded` draws the shuffle from
                    --seed instead.
  Not flags (no effect on HIV): the official per-sample loss averages over tasks including missing
  labels (zeros) while the batch loss divides by the number of present labels; its eval puts only
  the GNN (not the head) in eval mode, which does not matter for a linear head.

Seeds: --seed S seeds torch (initialisation of theta, then xi, then the head, in the official order;
dropout), numpy and random. The split seed stays 42 unless --split-seed.

Output: one JSON line per run appended to --results (strategy, keep, seed, layers, width, epochs,
best_epoch, valid_auc, test_auc, samples_seen, seconds, n_train/n_valid/n_test, dropped rows, flags,
versions); --epoch-csv PATH writes per-epoch rows. --skip-existing exits early when --results already
holds a run with the same configuration (used by bench/molpeg_crosscheck.sh to resume).
`--summarize FILE` prints mean +- std of valid/test AUC per configuration and exits.

Examples (one thread; OMP_WAIT_POLICY=PASSIVE is set by the script unless already set):
  python bench/molpeg_pyg.py --strategy full --seed 0
  python bench/molpeg_pyg.py --strategy molpeg --keep 0.3 --seed 0 --epoch-csv runs/x.csv
  python bench/molpeg_pyg.py --strategy molpeg --keep 0.3 --epochs 2 --limit 2000   # smoke test
  python bench/molpeg_pyg.py --summarize runs/pyg-crosscheck/results.jsonl
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import csv
import gzip
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CSV = REPO.parent / "shared/datasets/moleculenet/hiv.csv.gz"
if not DEFAULT_CSV.exists():
    DEFAULT_CSV = Path("/work/shared/datasets/moleculenet/hiv.csv.gz")
DEFAULT_CACHE = Path(os.environ.get("MOLPEG_PYG_CACHE", Path.home() / ".cache/molpeg/molpeg_pyg"))
DEFAULT_RESULTS = REPO / "runs/pyg-crosscheck/results.jsonl"

# pretrain-gnns vocabularies (chem/model.py): 119 atomic numbers + mask token, 3 chirality tags,
# 4 bond types + self-loop (4) + mask token, 3 bond directions.
NUM_ATOM_TYPE, NUM_CHIRALITY, NUM_BOND_TYPE, NUM_BOND_DIRECTION = 120, 3, 6, 3
SELF_LOOP_BOND_TYPE = 4
FEATURIZER_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Featurization (RDKit) and cache


def featurize_csv(csv_path, smiles_column, label_columns):
    """Parses every row; returns a dict of flat tensors plus per-molecule counts (0 for rejected rows)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    chirality = [Chem.ChiralType.CHI_UNSPECIFIED, Chem.ChiralType.CHI_TETRAHEDRAL_CW,
                 Chem.ChiralType.CHI_TETRAHEDRAL_CCW, Chem.ChiralType.CHI_OTHER]
    bond_types = [Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC]
    bond_dirs = [Chem.BondDir.NONE, Chem.BondDir.ENDUPRIGHT, Chem.BondDir.ENDDOWNRIGHT]
    chir_index = {c: i for i, c in enumerate(chirality) if i < NUM_CHIRALITY}
    type_index = {t: i for i, t in enumerate(bond_types)}
    dir_index = {d: i for i, d in enumerate(bond_dirs)}
    unlisted = {"chirality": 0, "bond_type": 0, "bond_dir": 0}
    unlisted_rows = set()

    opener = gzip.open if str(csv_path).endswith(".gz") else open
    with opener(csv_path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    atoms, edges, bonds, n_atoms, n_edges, labels, ok = [], [], [], [], [], [], []
    for row_id, row in enumerate(rows):
        labels.append([float(row[c]) if row[c] != "" else float("nan") for c in label_columns])
        mol = Chem.MolFromSmiles(row[smiles_column].strip())
        if mol is None or mol.GetNumAtoms() == 0:  # rejected, or an empty SMILES
            ok.append(False)
            n_atoms.append(0)
            n_edges.append(0)
            continue
        ok.append(True)
        for atom in mol.GetAtoms():
            z = atom.GetAtomicNum()
            if not 1 <= z <= 118:
                raise ValueError(f"row {row_id}: atomic number {z} outside 1..118")
            c = chir_index.get(atom.GetChiralTag())
            if c is None:
                unlisted["chirality"] += 1
                unlisted_rows.add(row_id)
                c = 0
            atoms.append((z - 1, c))
        for bond in mol.GetBonds():
            t = type_index.get(bond.GetBondType())
            if t is None:
                unlisted["bond_type"] += 1
                unlisted_rows.add(row_id)
                t = 0
            d = dir_index.get(bond.GetBondDir())
            if d is None:
                unlisted["bond_dir"] += 1
                unlisted_rows.add(row_id)
                d = 0
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            edges += [(i, j), (j, i)]
            bonds += [(t, d), (t, d)]
        n_atoms.append(mol.GetNumAtoms())
        n_edges.append(2 * mol.GetNumBonds())
    from rdkit import rdBase

    return {
        "x": torch.tensor(atoms, dtype=torch.uint8).reshape(-1, 2),
        "edge_index": torch.tensor(edges, dtype=torch.int32).reshape(-1, 2).t().contiguous(),
        "edge_attr": torch.tensor(bonds, dtype=torch.uint8).reshape(-1, 2),
        "num_nodes": torch.tensor(n_atoms, dtype=torch.long),
        "num_edges": torch.tensor(n_edges, dtype=torch.long),
        "y": torch.tensor(labels, dtype=torch.float32).reshape(len(rows), len(label_columns)),
        "ok": torch.tensor(ok, dtype=torch.bool),
        "unlisted_features": unlisted,
        "unlisted_rows": sorted(unlisted_rows),
        "rdkit_version": rdBase.rdkitVersion,
    }


def load_featurized(csv_path, cache_dir, smiles_column="smiles", label_columns=("HIV_active",)):
    from rdkit import rdBase

    st = os.stat(csv_path)
    key = f"{Path(csv_path).name}-{st.st_size}-{int(st.st_mtime)}-rdkit{rdBase.rdkitVersion}-v{FEATURIZER_VERSION}"
    path = Path(cache_dir) / f"{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=False), path
    t = time.perf_counter()
    data = featurize_csv(csv_path, smiles_column, list(label_columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(data, tmp)
    os.replace(tmp, path)
    print(f"featurized {len(data['ok'])} rows in {time.perf_counter() - t:.1f} s -> {path}", flush=True)
    return data, path


class GraphStore:
    """The featurized molecules as flat tensors; `batch(ids)` builds a PyG-style disjoint-union batch."""

    def __init__(self, data):
        self.x = data["x"].long()
        self.edge_index = data["edge_index"].long()
        self.edge_attr = data["edge_attr"].long()
        self.num_nodes = data["num_nodes"]
        self.num_edges = data["num_edges"]
        self.node_ptr = torch.cat([torch.zeros(1, dtype=torch.long), self.num_nodes.cumsum(0)])
        self.edge_ptr = torch.cat([torch.zeros(1, dtype=torch.long), self.num_edges.cumsum(0)])
        self.y = data["y"]

    @staticmethod
    def _ranges(starts, counts):
        """Concatenation of arange(s, s + c) for every (s, c)."""
        total = int(counts.sum())
        offsets = torch.cumsum(counts, 0) - counts
        return torch.repeat_interleave(starts - offsets, counts) + torch.arange(total)

    def batch(self, ids):
        ids = torch.as_tensor(ids, dtype=torch.long)
        n, e = self.num_nodes[ids], self.num_edges[ids]
        node_ids = self._ranges(self.node_ptr[ids], n)
        edge_ids = self._ranges(self.edge_ptr[ids], e)
        node_offset = torch.cumsum(n, 0) - n
        edge_index = self.edge_index[:, edge_ids] + torch.repeat_interleave(node_offset, e)
        batch = torch.repeat_interleave(torch.arange(len(ids)), n)
        return self.x[node_ids], edge_index, self.edge_attr[edge_ids], batch, self.y[ids], len(ids)


# ----------------------------------------------------------------------------------------------
# Split


def random_split_rows(n_rows, seed=42, frac_train=0.8, frac_valid=0.1):
    """pretrain-gnns' random_split over row indices 0..n-1 (Python's random module)."""
    rng_state = random.getstate()
    random.seed(seed)
    order = list(range(n_rows))
    random.shuffle(order)
    random.setstate(rng_state)
    a = int(frac_train * n_rows)
    b = int(frac_valid * n_rows) + a
    return order[:a], order[a:b], order[b:]


def read_split_file(path, n_rows):
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["mol_id", "split"])
    parts = {"train": [], "valid": [], "test": []}
    for mol_id, part in zip(t.column("mol_id").to_pylist(), t.column("split").to_pylist()):
        if mol_id < n_rows:
            parts[part].append(mol_id)
    return parts["train"], parts["valid"], parts["test"]


# ----------------------------------------------------------------------------------------------
# Model


def build_model_classes():
    from torch_geometric.nn import MessagePassing, global_mean_pool
    from torch_geometric.utils import add_self_loops

    class GINConv(MessagePassing):
        def __init__(self, emb_dim):
            super().__init__(aggr="add")
            self.mlp = nn.Sequential(nn.Linear(emb_dim, 2 * emb_dim), nn.ReLU(), nn.Linear(2 * emb_dim, emb_dim))
            self.edge_embedding1 = nn.Embedding(NUM_BOND_TYPE, emb_dim)
            self.edge_embedding2 = nn.Embedding(NUM_BOND_DIRECTION, emb_dim)
            nn.init.xavier_uniform_(self.edge_embedding1.weight)
            nn.init.xavier_uniform_(self.edge_embedding2.weight)

        def forward(self, x, edge_index, edge_attr):
            n = x.size(0)
            edge_index, _ = add_self_loops(edge_index, num_nodes=n)
            loops = torch.zeros(n, 2, dtype=edge_attr.dtype)
            loops[:, 0] = SELF_LOOP_BOND_TYPE
            edge_attr = torch.cat([edge_attr, loops], 0)
            e = self.edge_embedding1(edge_attr[:, 0]) + self.edge_embedding2(edge_attr[:, 1])
            return self.mlp(self.propagate(edge_index, x=x, e=e))

        def message(self, x_j, e):
            return x_j + e

    class GNN(nn.Module):
        """Node encoder; attribute names follow pretrain-gnns' GNN so its state dicts load."""

        def __init__(self, num_layer, emb_dim, drop_ratio=0.5):
            super().__init__()
            self.num_layer, self.drop_ratio = num_layer, drop_ratio
            self.x_embedding1 = nn.Embedding(NUM_ATOM_TYPE, emb_dim)
            self.x_embedding2 = nn.Embedding(NUM_CHIRALITY, emb_dim)
            nn.init.xavier_uniform_(self.x_embedding1.weight)
            nn.init.xavier_uniform_(self.x_embedding2.weight)
            self.gnns = nn.ModuleList([GINConv(emb_dim) for _ in range(num_layer)])
            self.batch_norms = nn.ModuleList([nn.BatchNorm1d(emb_dim) for _ in range(num_layer)])

        def forward(self, x, edge_index, edge_attr):
            h = self.x_embedding1(x[:, 0]) + self.x_embedding2(x[:, 1])
            for layer in range(self.num_layer):
                h = self.batch_norms[layer](self.gnns[layer](h, edge_index, edge_attr))
                if layer < self.num_layer - 1:
                    h = F.relu(h)
                h = F.dropout(h, self.drop_ratio, training=self.training)
            return h

    return GNN, global_mean_pool


def load_pretrained(model, path):
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    # GraphCL-style checkpoints prefix every key with "gnn." (the official load_model strips key[4:]).
    if state and all(k.startswith("gnn.") for k in state):
        state = {k[4:]: v for k, v in state.items()}
    model.load_state_dict(state)  # strict, like the official main.py


# ----------------------------------------------------------------------------------------------
# Training


def roc_auc(y_true, y_score):
    from sklearn.metrics import roc_auc_score

    aucs = []
    for t in range(y_true.shape[1]):
        valid = ~np.isnan(y_true[:, t])
        yt = y_true[valid, t]
        if (yt == 1).any() and (yt == 0).any():
            aucs.append(roc_auc_score(yt, y_score[valid, t]))
    return float(np.mean(aucs)) if aucs else float("nan")


def per_sample_losses(pred, y):
    """BCE with logits in float64 (as the official code), 0 where the label is missing; returns the
    per-sample loss (mean over tasks) and the number of present labels."""
    y = y.view(pred.shape).double()
    valid = ~torch.isnan(y)
    loss = F.binary_cross_entropy_with_logits(pred.double(), torch.where(valid, y, torch.zeros_like(y)), reduction="none")
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    return loss.mean(1), valid.sum()


@torch.no_grad()
def evaluate(gnn, head, pool, store, ids, batch_size):
    gnn.eval()
    head.eval()
    ys, ps = [], []
    for s in range(0, len(ids), batch_size):
        x, ei, ea, b, y, n = store.batch(ids[s:s + batch_size])
        ps.append(head(pool(gnn(x, ei, ea), b, size=n)))
        ys.append(y)
    return roc_auc(torch.cat(ys).numpy(), torch.cat(ps).numpy())


def config_key(a):
    """What identifies a run for --skip-existing."""
    return {k: getattr(a, k) for k in ["strategy", "keep", "seed", "split_seed", "layers", "width", "epochs",
                                       "batch_size", "lr", "dropout", "limit", "pretrained", "split_file", "rescale",
                                       "ref_init", "ref_mode", "shuffle", "ema_beta"]}


def already_done(results, key):
    if not Path(results).exists():
        return False
    for line in open(results):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if all(row.get(k) == v for k, v in key.items()):
            return True
    return False


def run(a):
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if a.strategy == "full":
        a.keep = 1.0
    if not 0 < a.keep <= 1:
        sys.exit("--keep must be in (0, 1]")
    key = config_key(a)
    if a.skip_existing and already_done(a.results, key):
        print(f"skip (already in {a.results}): {json.dumps(key)}")
        return
    t_start = time.perf_counter()
    data, cache_path = load_featurized(a.csv, a.cache_dir)
    ok = data["ok"]
    n_rows = len(ok) if not a.limit else min(a.limit, len(ok))
    parts = read_split_file(a.split_file, n_rows) if a.split_file else random_split_rows(n_rows, a.split_seed)
    dropped = {name: [r for r in p if not ok[r]] for name, p in zip(["train", "valid", "test"], parts)}
    train_rows, valid_rows, test_rows = ([r for r in p if ok[r]] for p in parts)
    store = GraphStore(data)
    n_dropped = sum(len(v) for v in dropped.values())
    print(f"rows {n_rows} (rdkit {data['rdkit_version']}): train {len(train_rows)} valid {len(valid_rows)} "
          f"test {len(test_rows)}; dropped {n_dropped} rows RDKit rejects: {dropped}; unlisted feature "
          f"values mapped to 0 (whole CSV): {data['unlisted_features']} (rows {data['unlisted_rows']})", flush=True)

    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    GNN, pool = build_model_classes()
    gnn = GNN(a.layers, a.width, a.dropout)
    ref = GNN(a.layers, a.width, a.dropout)  # created right after theta, as in main.py
    head = nn.Linear(a.width, data["y"].shape[1])
    if a.pretrained:
        load_pretrained(gnn, a.pretrained)
        print(f"loaded {a.pretrained} into theta", flush=True)
    if a.ref_init == "copy":
        ref.load_state_dict(gnn.state_dict())
    ref.train(a.ref_mode == "train")
    for p in ref.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(list(head.parameters()) + list(gnn.parameters()), lr=a.lr)
    use_ref = a.strategy == "molpeg"

    train_ids = torch.tensor(train_rows, dtype=torch.long)
    valid_ids = torch.tensor(valid_rows, dtype=torch.long)
    test_ids = torch.tensor(test_rows, dtype=torch.long)
    n_train = len(train_rows)
    scores = np.ones(n_train)  # by position in the training split
    k = int(a.keep * n_train) if a.strategy == "molpeg" else n_train
    weight = {"twice": 1 / a.keep ** 2, "once": 1 / a.keep, "none": 1.0}[a.rescale] if a.strategy == "molpeg" else 1.0
    shuffle_rng = np.random.RandomState(a.seed)

    epoch_rows = []
    best = (-math.inf, 0, math.nan)  # valid, epoch, test
    samples_seen = 0
    train_seconds = 0.0
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        if a.strategy == "molpeg":
            kept = np.argsort(-scores, kind="stable")[:k]
        else:
            kept = np.arange(n_train)
        kept = kept.copy()
        (np.random.RandomState(epoch - 1) if a.shuffle == "official" else shuffle_rng).shuffle(kept)
        gnn.train()
        head.train()
        total, total_plain, batches = 0.0, 0.0, 0
        for s in range(0, len(kept), a.batch_size):
            pos = kept[s:s + a.batch_size]
            x, ei, ea, b, y, n = store.batch(train_ids[pos])
            pred = head(pool(gnn(x, ei, ea), b, size=n))
            loss_s, n_labels = per_sample_losses(pred, y)
            if use_ref:
                with torch.no_grad():
                    pred_ref = head(pool(ref(x, ei, ea), b, size=n))
                    loss_ref, _ = per_sample_losses(pred_ref, y)
                scores[pos] = (loss_s.detach() - loss_ref).abs().numpy()
            loss = (loss_s * weight).sum() / n_labels
            opt.zero_grad()
            loss.backward()
            opt.step()
            if use_ref:
                with torch.no_grad():
                    for p_ref, p in zip(ref.parameters(), gnn.parameters()):
                        p_ref.mul_(a.ema_beta).add_(p.detach(), alpha=1 - a.ema_beta)
            total += loss.item()
            total_plain += loss_s.detach().sum().item() / n_labels.item()
            batches += 1
        samples_seen += len(kept)
        t_train = time.perf_counter() - t0
        train_seconds += t_train
        valid_auc = evaluate(gnn, head, pool, store, valid_ids, a.batch_size)
        test_auc = evaluate(gnn, head, pool, store, test_ids, a.batch_size)
        if valid_auc > best[0]:
            best = (valid_auc, epoch, test_auc)
        t_epoch = time.perf_counter() - t0
        row = {"epoch": epoch, "kept": len(kept), "loss": total_plain / max(batches, 1),
               "weighted_loss": total / max(batches, 1), "valid_auc": valid_auc,
               "test_auc": test_auc, "train_seconds": round(t_train, 3), "seconds": round(t_epoch, 3),
               "mean_score": float(scores.mean()) if use_ref else ""}
        epoch_rows.append(row)
        print(f"epoch {epoch:3d}  kept {len(kept):6d}  loss {row['loss']:.4f}  valid {valid_auc:.4f}  "
              f"test {test_auc:.4f}  train {t_train:.1f}s  epoch {t_epoch:.1f}s", flush=True)

    import torch_geometric
    from rdkit import rdBase

    result = dict(key)
    result.update({
        "impl": "pyg-crosscheck", "best_epoch": best[1], "valid_auc": best[0], "test_auc": best[2],
        "final_valid_auc": epoch_rows[-1]["valid_auc"] if epoch_rows else None,
        "final_test_auc": epoch_rows[-1]["test_auc"] if epoch_rows else None,
        "samples_seen": samples_seen, "kept_per_epoch": k, "loss_weight": weight,
        "seconds": round(time.perf_counter() - t_start, 2), "train_seconds": round(train_seconds, 2),
        "n_rows": n_rows, "n_train": len(train_rows), "n_valid": len(valid_rows), "n_test": len(test_rows),
        "dropped_rows": dropped, "n_dropped": n_dropped, "unlisted_features": data["unlisted_features"],
        "threads": a.threads, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
        "rdkit": rdBase.rdkitVersion, "csv": str(a.csv),
    })
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    with open(a.results, "a") as f:
        f.write(json.dumps(result) + "\n")
    if a.epoch_csv:
        Path(a.epoch_csv).parent.mkdir(parents=True, exist_ok=True)
        with open(a.epoch_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(epoch_rows[0]))
            w.writeheader()
            w.writerows(epoch_rows)
    print(json.dumps(result), flush=True)


def summarize(path):
    groups = {}
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        g = (r["strategy"], r["keep"], r["layers"], r["width"], r["epochs"], r.get("limit"), r.get("pretrained"), r.get("split_file"),
             r.get("rescale"), r.get("ref_init"), r.get("ref_mode"), r.get("shuffle"))
        groups.setdefault(g, []).append(r)

    def ms(v):
        v = [x for x in v if x is not None and not math.isnan(x)]
        if not v:
            return "n/a"
        return f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"

    print("| strategy | keep | model | epochs | options | seeds | valid AUC | test AUC | samples seen | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for g, rows in sorted(groups.items(), key=lambda kv: [str(x) for x in kv[0]]):
        strategy, keep, layers, width, epochs, limit, pretrained, split_file, rescale, ref_init, ref_mode, shuffle = g
        opts = [f"limit {limit}"] if limit else []
        if pretrained:
            opts.append(f"pretrained {Path(pretrained).name}")
        if split_file:
            opts.append(f"split {split_file}")
        if strategy == "molpeg":
            opts.append(f"rescale {rescale}, ref {ref_init}/{ref_mode}")
        opts.append(f"shuffle {shuffle}")
        seeds = sorted(r["seed"] for r in rows)
        print(f"| {strategy} | {keep} | {layers}×{width} | {epochs} | {'; '.join(opts)} | {','.join(map(str, seeds))} | "
              f"{ms([r['valid_auc'] for r in rows])} | {ms([r['test_auc'] for r in rows])} | "
              f"{statistics.mean(r['samples_seen'] for r in rows):,.0f} | {statistics.mean(r['seconds'] for r in rows):.0f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", choices=["full", "molpeg"], default="full")
    p.add_argument("--keep", type=float, default=1.0, help="keep ratio R for molpeg (official --ratio)")
    p.add_argument("--seed", type=int, default=0, help="torch/numpy/random seed (official --runseed)")
    p.add_argument("--split-seed", type=int, default=42, help="random_split seed (official --seed)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema-beta", type=float, default=0.5)
    p.add_argument("--rescale", choices=["twice", "once", "none"], default="twice",
                   help="molpeg loss weight: 1/R^2 (official), 1/R (paper), 1")
    p.add_argument("--ref-init", choices=["random", "copy"], default="random",
                   help="reference GNN: fresh random init (official) or a copy of theta")
    p.add_argument("--ref-mode", choices=["train", "eval"], default="train",
                   help="mode of the reference forward pass (official: train)")
    p.add_argument("--shuffle", choices=["official", "seeded"], default="official",
                   help="epoch e's order: np.random.seed(e-1) (official, independent of --seed) or from --seed")
    p.add_argument("--pretrained", default=None, help="pretrain-gnns-layout GNN state dict (.pth/.safetensors) for theta")
    p.add_argument("--split-file", default=None, help="molpeg split.parquet instead of the random split")
    p.add_argument("--limit", type=int, default=0, help="use only the first N CSV rows (split over those); smoke tests")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", default=str(DEFAULT_CSV))
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--epoch-csv", default=None)
    p.add_argument("--skip-existing", action="store_true")
    p.add_argument("--summarize", metavar="RESULTS", default=None)
    a = p.parse_args()
    if a.summarize:
        summarize(a.summarize)
        return
    run(a)


if __name__ == "__main__":
    main()
