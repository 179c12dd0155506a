#!/usr/bin/env python3
"""PyTorch Geometric peer of `molpeg-bench-train`: the same GIN (Hu et al. 2019, as in the MolPeg and
pretrain-gnns code: per-layer bond-type + bond-direction embeddings, self-loops with their own bond
type, message x_j + e_ij, sum aggregation, MLP 2x, BatchNorm, ReLU but last, dropout, mean pooling,
linear head), the same molecules (read from the same graphs.parquet / split.parquet), the same batch
size, optimizer (Adam 1e-3), masked BCE loss and thread count. Times training (forward + backward +
Adam step, DataLoader collation included) and inference, and prints one JSON line like the Rust bench.

With --gemm it also measures the GEMM ceiling (GFLOP/s of a plain fp32 matmul shaped like the GIN's
first MLP layer on a batch) in the same process.

Usage: python bench/pyg_peer.py --data DIR --layers 5 --width 300 [--gemm]
"""

import argparse
import json
import statistics
import time

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MessagePassing, global_mean_pool
from torch_geometric.utils import add_self_loops

NUM_ATOM_TYPE, NUM_CHIRALITY = 120, 4
NUM_BOND_TYPE, NUM_BOND_DIRECTION, SELF_LOOP = 7, 4, 5


class GINConv(MessagePassing):
    """Hu et al.'s GINConv (pretrain-gnns/chem/model.py), vocabulary sizes as molpeg's."""

    def __init__(self, emb_dim):
        super().__init__(aggr="add")
        self.mlp = nn.Sequential(nn.Linear(emb_dim, 2 * emb_dim), nn.ReLU(), nn.Linear(2 * emb_dim, emb_dim))
        self.edge_embedding1 = nn.Embedding(NUM_BOND_TYPE, emb_dim)
        self.edge_embedding2 = nn.Embedding(NUM_BOND_DIRECTION, emb_dim)
        nn.init.xavier_uniform_(self.edge_embedding1.weight.data)
        nn.init.xavier_uniform_(self.edge_embedding2.weight.data)

    def forward(self, x, edge_index, edge_attr):
        edge_index, _ = add_self_loops(edge_index, num_nodes=x.size(0))
        self_loop_attr = torch.zeros(x.size(0), 2, dtype=edge_attr.dtype, device=edge_attr.device)
        self_loop_attr[:, 0] = SELF_LOOP
        edge_attr = torch.cat((edge_attr, self_loop_attr), dim=0)
        edge_embeddings = self.edge_embedding1(edge_attr[:, 0]) + self.edge_embedding2(edge_attr[:, 1])
        return self.propagate(edge_index, x=x, edge_attr=edge_embeddings)

    def message(self, x_j, edge_attr):
        return x_j + edge_attr

    def update(self, aggr_out):
        return self.mlp(aggr_out)


class GNNGraphPred(nn.Module):
    def __init__(self, num_layer, emb_dim, num_tasks, drop_ratio=0.5):
        super().__init__()
        self.num_layer, self.drop_ratio = num_layer, drop_ratio
        self.x_embedding1 = nn.Embedding(NUM_ATOM_TYPE, emb_dim)
        self.x_embedding2 = nn.Embedding(NUM_CHIRALITY, emb_dim)
        nn.init.xavier_uniform_(self.x_embedding1.weight.data)
        nn.init.xavier_uniform_(self.x_embedding2.weight.data)
        self.gnns = nn.ModuleList([GINConv(emb_dim) for _ in range(num_layer)])
        self.batch_norms = nn.ModuleList([nn.BatchNorm1d(emb_dim) for _ in range(num_layer)])
        self.graph_pred_linear = nn.Linear(emb_dim, num_tasks)

    def forward(self, x, edge_index, edge_attr, batch):
        h = self.x_embedding1(x[:, 0]) + self.x_embedding2(x[:, 1])
        for layer in range(self.num_layer):
            h = self.batch_norms[layer](self.gnns[layer](h, edge_index, edge_attr))
            if layer < self.num_layer - 1:
                h = F.relu(h)
            h = F.dropout(h, self.drop_ratio, training=self.training)
        return self.graph_pred_linear(global_mean_pool(h, batch))


def load(data_dir):
    graphs = pq.read_table(f"{data_dir}/graphs.parquet", columns=["mol_id", "atom_hu", "edge_index", "bond_hu", "labels"])
    split = pq.read_table(f"{data_dir}/split.parquet")
    train_ids = {m for m, s in zip(split.column("mol_id").to_pylist(), split.column("split").to_pylist()) if s == "train"}
    out = []
    cols = [graphs.column(c).to_pylist() for c in ["mol_id", "atom_hu", "edge_index", "bond_hu", "labels"]]
    for mol_id, atoms, edges, bonds, labels in zip(*cols):
        if mol_id not in train_ids:
            continue
        y = torch.tensor([[float("nan") if v is None else v for v in labels]])
        edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t().contiguous()
        out.append(Data(x=torch.tensor(atoms, dtype=torch.long), edge_index=edge_index,
                        edge_attr=torch.tensor(bonds, dtype=torch.long).reshape(-1, 2), y=y))
    return out


def gemm_ceiling(rows, width, reps=20):
    """GFLOP/s of fp32 (rows x width) @ (width x 2 width), like the GIN's first MLP layer."""
    a, b = torch.randn(rows, width), torch.randn(width, 2 * width)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * rows * width * 2 * width * reps / (time.perf_counter() - t) / 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--width", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gemm", action="store_true")
    p.add_argument("--warmup-seconds", type=float, default=5.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dataset = load(a.data)
    tasks = dataset[0].y.shape[1]
    model = GNNGraphPred(a.layers, a.width, tasks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(dataset, batch_size=a.batch_size, shuffle=True, drop_last=True)

    def batches(n):
        """n batches from the (reshuffled, cycled) loader, collation included in the caller's timing."""
        done = 0
        while True:
            for b in loader:
                yield b
                done += 1
                if done == n:
                    return

    def train(n):
        model.train()
        for b in batches(n):
            out = model(b.x, b.edge_index, b.edge_attr, b.batch)
            y = b.y.view(out.shape)
            valid = ~torch.isnan(y)
            loss_mat = F.binary_cross_entropy_with_logits(out, torch.where(valid, y, torch.zeros_like(y)), reduction="none")
            loss = torch.sum(loss_mat * valid) / valid.sum().clamp_min(1)
            opt.zero_grad()
            loss.backward()
            opt.step()

    @torch.no_grad()
    def infer(n):
        model.eval()
        for b in batches(n):
            model(b.x, b.edge_index, b.edge_attr, b.batch)

    t = time.perf_counter()
    while True:  # page-ins of libtorch's code, allocator warm-up
        train(3)
        infer(1)
        if time.perf_counter() - t >= a.warmup_seconds:
            break
    per_rep = a.batches * a.batch_size
    train_rates, infer_rates = [], []
    for _ in range(a.reps):
        t = time.perf_counter()
        train(a.batches)
        train_rates.append(per_rep / (time.perf_counter() - t))
        t = time.perf_counter()
        infer(a.batches)
        infer_rates.append(per_rep / (time.perf_counter() - t))
    result = {
        "impl": "pyg", "pyg_version": __import__("torch_geometric").__version__, "torch_version": torch.__version__,
        "layers": a.layers, "width": a.width, "batch_size": a.batch_size, "threads": a.threads,
        "train_graphs_per_s": statistics.median(train_rates), "infer_graphs_per_s": statistics.median(infer_rates),
        "train_reps": train_rates, "infer_reps": infer_rates,
    }
    if a.gemm:
        nodes = sum(d.num_nodes for d in dataset) / len(dataset)
        result["gemm_gflops"] = gemm_ceiling(int(nodes * a.batch_size), a.width)
        # FLOPs of the MLPs alone (forward 2 GEMMs, backward 4), the bulk of the work at width 300.
        mlp_flops_per_graph = a.layers * 3 * 2 * 2 * nodes * a.width * 2 * a.width
        result["mlp_gflop_per_graph"] = mlp_flops_per_graph / 1e9
        result["gemm_ceiling_graphs_per_s"] = result["gemm_gflops"] / result["mlp_gflop_per_graph"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
