#!/usr/bin/env python3
"""PyTorch Geometric peer of `molpeg-bench-train --model schnet`: PyG's own
`torch_geometric.nn.models.SchNet` at the same size (interactions, hidden, filters, 50 gaussians,
cutoff), on the same molecules (atoms3d.parquet + split.parquet + the labels of graphs.parquet), the
same batch size, Adam 1e-3, MSE on standardized targets (one output per task, as molpeg's SchNet),
sum readout, the same thread count. Times training (forward + backward + Adam step, DataLoader
collation included) and inference, and prints one JSON line like the Rust bench.

The neighbour lists (i != j, d < cutoff, per molecule) are computed once per molecule before timing and
handed to SchNet through `interaction_graph=` (torch_cluster, which PyG's default radius graph needs, has
no wheel here); distances are computed in the forward pass from the positions, as in PyG's
RadiusInteractionGraph. molpeg builds its neighbour lists in the collator, inside the timed loop.

Usage: python bench/pyg_schnet.py --data DIR --layers 3 --width 64 --cutoff 5 [--filters F]
"""

import argparse
import json
import statistics
import time

import pyarrow.parquet as pq
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn.models import SchNet


def load(data_dir, cutoff):
    split = pq.read_table(f"{data_dir}/split.parquet").to_pydict()
    train_ids = {m for m, s in zip(split["mol_id"], split["split"]) if s == "train"}
    graphs = pq.read_table(f"{data_dir}/graphs.parquet", columns=["mol_id", "labels"]).to_pydict()
    labels = {m: y for m, y in zip(graphs["mol_id"], graphs["labels"])}
    atoms = pq.read_table(f"{data_dir}/atoms3d.parquet").to_pydict()
    items = []
    for m, z, pos in zip(atoms["mol_id"], atoms["atomic_numbers"], atoms["positions"]):
        if m not in train_ids:
            continue
        pos = torch.tensor(pos, dtype=torch.float32)
        d = torch.cdist(pos, pos)
        near = (d < cutoff) & ~torch.eye(len(z), dtype=torch.bool)
        target, source = torch.nonzero(near, as_tuple=True)
        y = torch.tensor([[float("nan") if v is None else v for v in labels[m]]], dtype=torch.float32)
        items.append(Data(z=torch.tensor(z, dtype=torch.long), pos=pos, edge_index=torch.stack([source, target]), y=y, num_nodes=len(z)))
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--filters", type=int)
    ap.add_argument("--cutoff", type=float, default=10.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup-seconds", type=float, default=5.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    items = load(a.data, a.cutoff)
    ys = torch.cat([d.y for d in items])
    mean, std = ys.nanmean(0), torch.tensor([ys[:, k][~ys[:, k].isnan()].std().item() for k in range(ys.size(1))])
    current = {}

    def graph(pos, batch):
        edge_index = current["edge_index"]
        row, col = edge_index
        return edge_index, (pos[row] - pos[col]).norm(dim=-1)

    model = SchNet(hidden_channels=a.width, num_filters=a.filters or a.width, num_interactions=a.layers, num_gaussians=50, cutoff=a.cutoff, interaction_graph=graph, readout="add")
    model.lin2 = torch.nn.Linear(a.width // 2, ys.size(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    per_rep = a.batches * a.batch_size
    def plan(rep):
        g = torch.Generator().manual_seed(rep)
        order = torch.randperm(len(items), generator=g).tolist()
        return [items[order[k % len(order)]] for k in range(per_rep)]

    def forward(batch):
        current["edge_index"] = batch.edge_index
        return model(batch.z, batch.pos, batch.batch)

    def train(subset):
        model.train()
        for batch in DataLoader(subset, batch_size=a.batch_size, shuffle=False):
            y = (batch.y - mean) / std
            valid = ~y.isnan()
            out = forward(batch)
            loss = ((out - torch.nan_to_num(y)) ** 2 * valid).sum() / valid.sum().clamp_min(1)
            opt.zero_grad()
            loss.backward()
            opt.step()

    def infer(subset):
        model.eval()
        with torch.no_grad():
            for batch in DataLoader(subset, batch_size=a.batch_size, shuffle=False):
                forward(batch)

    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < a.warmup_seconds:
        p = plan(1000 + k)
        train(p[: 3 * a.batch_size])
        infer(p[: a.batch_size])
        k += 1
    train_rates, infer_rates = [], []
    for rep in range(a.reps):
        p = plan(rep)
        t = time.perf_counter()
        train(p)
        train_rates.append(per_rep / (time.perf_counter() - t))
        t = time.perf_counter()
        infer(p)
        infer_rates.append(per_rep / (time.perf_counter() - t))
    n = len(items)
    print(json.dumps({
        "impl": "pyg", "model": "schnet", "layers": a.layers, "width": a.width, "batch_size": a.batch_size, "threads": a.threads,
        "geometry": {"atoms3d_per_graph": sum(d.num_nodes for d in items) / n, "pairs_per_graph": sum(d.edge_index.size(1) for d in items) / n, "cutoff": a.cutoff, "filters": a.filters or a.width},
        "train_graphs_per_s": statistics.median(train_rates), "infer_graphs_per_s": statistics.median(infer_rates),
        "train_reps": train_rates, "infer_reps": infer_rates,
    }))


if __name__ == "__main__":
    main()
