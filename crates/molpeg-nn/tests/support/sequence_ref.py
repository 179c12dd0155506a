"""Independent PyTorch implementation of molpeg's token models (fingerprint, SMILES) for the
cross-check test: torch.nn's TransformerEncoderLayer (post-norm, ReLU, batch_first) built from a
molpeg checkpoint's configuration and weights, eval mode.

usage: sequence_ref.py MODEL.safetensors TOKENS.json OUT.json
TOKENS.json: a list of token-id lists (0 pads); OUT.json: the model's outputs, flattened.
"""
import json
import math
import struct
import sys

import numpy as np
import torch
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", info
        a, b = info["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[base + a : base + b], dtype="<f4").copy()).reshape(info["shape"])
    return meta, tensors


def main():
    model_path, tokens_path, out_path = sys.argv[1:4]
    meta, w = read_safetensors(model_path)
    config = json.loads(meta["molpeg.model"])
    seq = config["sequence"]
    d, heads, ffn, layers = config["width"], seq["heads"], seq["ffn"], config["layers"]
    torch.set_num_threads(1)
    blocks = []
    for layer in range(layers):
        block = nn.TransformerEncoderLayer(d, heads, dim_feedforward=ffn, dropout=config["dropout"], batch_first=True)
        prefix = f"encoder.layers.{layer}."
        block.load_state_dict({k[len(prefix) :]: v for k, v in w.items() if k.startswith(prefix)}, strict=True)
        block.eval()
        blocks.append(block)
    tokens = torch.tensor(json.load(open(tokens_path)), dtype=torch.long)
    pad = tokens == 0
    x = w["encoder.embedding.weight"][tokens]
    if config.get("kind") == "smiles":
        length = tokens.shape[1]
        position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
        pe = torch.zeros(length, d, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)[:, : d // 2]
        x = x + pe.float()
    keep = (~pad).float().unsqueeze(-1)
    x = x * keep
    with torch.no_grad():
        for block in blocks:
            # The fast path of eval mode would return zeros at padded positions; the mean skips them.
            x = block(x, src_key_padding_mask=pad)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        out = pooled @ w["graph_pred_linear.weight"].T + w["graph_pred_linear.bias"]
    json.dump(out.flatten().tolist(), open(out_path, "w"))


if __name__ == "__main__":
    main()
