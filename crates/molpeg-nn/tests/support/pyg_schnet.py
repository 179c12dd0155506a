"""PyTorch Geometric's SchNet on molpeg's weights: the independent side of molpeg's SchNet cross-check
(`schnet_matches_pyg_schnet_on_the_same_weights` in crates/molpeg-nn/src/schnet.rs, also used by
bench/pyg_schnet.py for the model itself).

Usage: python pyg_schnet.py IN.json OUT.json
IN: {"config": {hidden, filters, interactions, gaussians, cutoff, readout, num_tasks},
     "tensors": {molpeg variable name: nested list},
     "molecules": [{"z": [...], "pos": [[x, y, z], ...]}, ...]}
OUT: {"outputs": [[...per task...] per molecule], "pairs": number of neighbour pairs}
The neighbour list is a brute-force radius graph (i != j, d < cutoff, same molecule) so that
torch_cluster is not needed; PyG's SchNet takes it through `interaction_graph=`.
"""
import json
import sys

import torch
from torch_geometric.nn.models import SchNet


def radius_graph(cutoff):
    def graph(pos, batch):
        d = torch.cdist(pos, pos)
        same = batch.view(-1, 1) == batch.view(1, -1)
        eye = torch.eye(pos.size(0), dtype=torch.bool)
        # edge_index[0] = source j, [1] = target i, as torch_cluster's radius_graph (flow source_to_target).
        target, source = torch.nonzero(same & ~eye & (d < cutoff), as_tuple=True)
        edge_index = torch.stack([source, target])
        row, col = edge_index
        return edge_index, (pos[row] - pos[col]).norm(dim=-1)

    return graph


def pyg_name(molpeg_name):
    """molpeg's `schnet.X` is PyG's `X`; `schnet_output.lin1` is PyG's `lin1`."""
    for prefix in ("schnet.", "schnet_output."):
        if molpeg_name.startswith(prefix):
            return molpeg_name[len(prefix):]
    raise ValueError(f"not a SchNet variable: {molpeg_name}")


def main():
    spec = json.load(open(sys.argv[1]))
    c = spec["config"]
    torch.manual_seed(0)
    model = SchNet(hidden_channels=c["hidden"], num_filters=c["filters"], num_interactions=c["interactions"],
                   num_gaussians=c["gaussians"], cutoff=c["cutoff"], interaction_graph=radius_graph(c["cutoff"]),
                   readout="add" if c["readout"] == "sum" else "mean")
    # PyG's output layer has one unit; molpeg's has one per task.
    model.lin2 = torch.nn.Linear(c["hidden"] // 2, c["num_tasks"])
    tensors = dict(spec["tensors"])
    # molpeg's sum readout adds a per-task molecule offset after the sum (PyG has none; see
    # SchnetHead in schnet.rs): added to PyG's output below.
    offset = torch.tensor(tensors.pop("schnet_output.offset", [0.0] * c["num_tasks"]))
    state = {pyg_name(k): torch.tensor(v, dtype=torch.float32) for k, v in tensors.items()}
    # CFConv holds the block's filter network a second time (`conv.nn` is `mlp`): same tensors.
    for k in list(state):
        if ".mlp." in k:
            state[k.replace(".mlp.", ".conv.nn.")] = state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The Gaussian centres are a buffer computed from the config on both sides.
    missing = [m for m in missing if m != "distance_expansion.offset"]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.eval()
    z = torch.tensor([a for m in spec["molecules"] for a in m["z"]], dtype=torch.long)
    pos = torch.tensor([p for m in spec["molecules"] for p in m["pos"]], dtype=torch.float32)
    batch = torch.tensor([g for g, m in enumerate(spec["molecules"]) for _ in m["z"]], dtype=torch.long)
    with torch.no_grad():
        out = model(z, pos, batch) + offset
        pairs = model.interaction_graph(pos, batch)[0].size(1)
    json.dump({"outputs": out.tolist(), "pairs": pairs}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
