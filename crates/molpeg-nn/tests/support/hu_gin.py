"""A reference GIN with the architecture and parameter names of Hu et al.'s pretrain-gnns
(chem/model.py `GINConv`, `GNN`, `GNN_graphpred`, as MolPeg's model/gnn.py uses them), for the
interop test of molpeg-nn (tests/finetune.rs). Plain torch: the scatter-sum is index_add_, so
torch_geometric is not needed. Input graphs come from molpeg's graphs.parquet (the Hu features),
read with pyarrow.

Usage:
  python hu_gin.py make --layers L --width D --tasks T --seed S OUT.pth [--eval GRAPHS.parquet OUT.json]
      A GNN_graphpred (JK last, mean pooling) with seeded random weights and random, non-trivial
      BatchNorm affine parameters and running statistics, saved with torch.save(model.state_dict());
      --eval then runs `eval` on the saved file (one Python start instead of two).
  python hu_gin.py eval STATE.pth GRAPHS.parquet OUT.json
      Builds GNN_graphpred with the layers/width/tasks/JK the state dict's shapes imply, loads it with
      load_state_dict(strict=True), and writes eval-mode outputs and mean-pooled graph embeddings of
      every molecule without an "other" feature value (Hu's featurizer has no index for those):
      {"mol_ids": [...], "outputs": [[...]], "embeddings": [[...]], "skipped": n}.
"""
import argparse
import json

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

NUM_ATOM_TYPE = 120  # atomic number - 1 for 1..118, 119 = mask
NUM_CHIRALITY_TAG = 3  # unspecified, CW, CCW
NUM_BOND_TYPE = 6  # single, double, triple, aromatic, 4 = self-loop, 5 = mask
NUM_BOND_DIRECTION = 3  # none, end-up-right, end-down-right
SELF_LOOP = 4
# molpeg's stored "other" values (graphs.parquet): atom 118, chirality 3, bond type 4, direction 3.
# Every other stored value is Hu's index unchanged.
OTHER_ATOM, OTHER_CHIRALITY, OTHER_BOND_TYPE, OTHER_DIRECTION = 118, 3, 4, 3


class GINConv(nn.Module):
    def __init__(self, emb_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(emb_dim, 2 * emb_dim), nn.ReLU(), nn.Linear(2 * emb_dim, emb_dim))
        self.edge_embedding1 = nn.Embedding(NUM_BOND_TYPE, emb_dim)
        self.edge_embedding2 = nn.Embedding(NUM_BOND_DIRECTION, emb_dim)
        nn.init.xavier_uniform_(self.edge_embedding1.weight.data)
        nn.init.xavier_uniform_(self.edge_embedding2.weight.data)

    def forward(self, x, edge_index, edge_attr):
        n = x.size(0)
        loops = torch.arange(n)
        edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        self_loop_attr = torch.zeros(n, 2, dtype=torch.long)
        self_loop_attr[:, 0] = SELF_LOOP
        edge_attr = torch.cat([edge_attr, self_loop_attr], dim=0)
        edge_embeddings = self.edge_embedding1(edge_attr[:, 0]) + self.edge_embedding2(edge_attr[:, 1])
        # message x_j + e_ij from source j = edge_index[0], summed ("add") at target edge_index[1]
        messages = x[edge_index[0]] + edge_embeddings
        aggregated = torch.zeros_like(x).index_add_(0, edge_index[1], messages)
        return self.mlp(aggregated)


class GNN(nn.Module):
    def __init__(self, num_layer, emb_dim, JK="last", drop_ratio=0.0):
        super().__init__()
        self.num_layer, self.JK, self.drop_ratio = num_layer, JK, drop_ratio
        self.x_embedding1 = nn.Embedding(NUM_ATOM_TYPE, emb_dim)
        self.x_embedding2 = nn.Embedding(NUM_CHIRALITY_TAG, emb_dim)
        nn.init.xavier_uniform_(self.x_embedding1.weight.data)
        nn.init.xavier_uniform_(self.x_embedding2.weight.data)
        self.gnns = nn.ModuleList([GINConv(emb_dim) for _ in range(num_layer)])
        self.batch_norms = nn.ModuleList([nn.BatchNorm1d(emb_dim) for _ in range(num_layer)])

    def forward(self, x, edge_index, edge_attr):
        h_list = [self.x_embedding1(x[:, 0]) + self.x_embedding2(x[:, 1])]
        for layer in range(self.num_layer):
            h = self.batch_norms[layer](self.gnns[layer](h_list[layer], edge_index, edge_attr))
            if layer == self.num_layer - 1:
                h = nn.functional.dropout(h, self.drop_ratio, training=self.training)
            else:
                h = nn.functional.dropout(nn.functional.relu(h), self.drop_ratio, training=self.training)
            h_list.append(h)
        if self.JK == "concat":
            return torch.cat(h_list, dim=1)
        return h_list[-1]


class GNN_graphpred(nn.Module):
    def __init__(self, num_layer, emb_dim, num_tasks, JK="last", drop_ratio=0.0):
        super().__init__()
        self.gnn = GNN(num_layer, emb_dim, JK, drop_ratio)
        mult = num_layer + 1 if JK == "concat" else 1
        self.graph_pred_linear = nn.Linear(mult * emb_dim, num_tasks)

    def forward(self, x, edge_index, edge_attr, batch, num_graphs):
        nodes = self.gnn(x, edge_index, edge_attr)
        sums = torch.zeros(num_graphs, nodes.size(1)).index_add_(0, batch, nodes)
        counts = torch.zeros(num_graphs).index_add_(0, batch, torch.ones(batch.size(0)))
        graph = sums / counts[:, None]  # global_mean_pool
        return self.graph_pred_linear(graph), graph


def make(args):
    torch.manual_seed(args.seed)
    model = GNN_graphpred(args.layers, args.width, args.tasks)
    with torch.no_grad():
        for bn in model.gnn.batch_norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.running_mean.normal_(0.0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(1234)
    torch.save(model.state_dict(), args.out)
    if args.eval:
        evaluate(argparse.Namespace(state=args.out, graphs=args.eval[0], out=args.eval[1]))


def load_graphs(path):
    """Molecules of graphs.parquet as one disjoint-union graph, skipping those with an "other" value."""
    table = pq.read_table(path, columns=["mol_id", "atom_hu", "edge_index", "bond_hu"])
    ids, xs, edges, attrs, batch, skipped, offset = [], [], [], [], [], 0, 0
    for mol_id, atoms, edge_index, bonds in zip(*(table[c].to_pylist() for c in table.column_names)):
        atoms = np.asarray(atoms, dtype=np.int64).reshape(-1, 2)
        edge_index = np.asarray(edge_index, dtype=np.int64).reshape(-1, 2)
        bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
        if (atoms[:, 0] == OTHER_ATOM).any() or (atoms[:, 1] == OTHER_CHIRALITY).any() or (bonds[:, 0] == OTHER_BOND_TYPE).any() or (bonds[:, 1] == OTHER_DIRECTION).any():
            skipped += 1
            continue
        batch.append(np.full(len(atoms), len(ids)))
        ids.append(mol_id)
        xs.append(atoms)
        edges.append(edge_index + offset)
        attrs.append(bonds)
        offset += len(atoms)
    cat = lambda parts, shape: torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(shape, dtype=torch.long)
    x, edge_index, edge_attr = cat(xs, (0, 2)), cat(edges, (0, 2)).t().contiguous(), cat(attrs, (0, 2))
    return ids, x, edge_index, edge_attr, cat(batch, (0,)), skipped


def evaluate(args):
    state = torch.load(args.state, map_location="cpu", weights_only=True)
    width = state["gnn.x_embedding1.weight"].shape[1]
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("gnn.gnns."))
    tasks, inputs = state["graph_pred_linear.weight"].shape
    jk = "concat" if inputs == (layers + 1) * width else "last"
    model = GNN_graphpred(layers, width, tasks, JK=jk)
    model.load_state_dict(state, strict=True)
    model.eval()
    ids, x, edge_index, edge_attr, batch, skipped = load_graphs(args.graphs)
    with torch.no_grad():
        outputs, embeddings = model(x, edge_index, edge_attr, batch, len(ids))
    with open(args.out, "w") as f:
        json.dump({"mol_ids": ids, "outputs": outputs.tolist(), "embeddings": embeddings.tolist(), "skipped": skipped, "layers": layers, "width": width, "jk": jk}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    for flag in ("--layers", "--width", "--tasks", "--seed"):
        m.add_argument(flag, type=int, required=True)
    m.add_argument("out")
    m.add_argument("--eval", nargs=2, metavar=("GRAPHS", "JSON"))
    e = sub.add_parser("eval")
    e.add_argument("state")
    e.add_argument("graphs")
    e.add_argument("out")
    args = parser.parse_args()
    make(args) if args.command == "make" else evaluate(args)


if __name__ == "__main__":
    main()
