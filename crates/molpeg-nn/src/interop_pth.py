"""Converts PyTorch state dicts between `torch.save` pickles (.pth) and safetensors, for
`molpeg-checkpoint` (molpeg_nn::interop), which embeds this file and runs it with the Python named by
$MOLPEG_PYTHON (default python3) when libtorch cannot read or write a .pth itself.

Usage: python interop_pth.py to-safetensors IN.pth OUT.safetensors
       python interop_pth.py to-pth IN.safetensors OUT.pth

Needs only torch (safetensors is read and written by hand). Exit status 3: torch is not importable.
to-safetensors loads with weights_only=True, accepts a dict of tensors (an OrderedDict from
`module.state_dict()` included; its `_metadata` is dropped) and keeps float32/float64/float16/bfloat16
and int64 tensors as they are (other integer kinds become int64). to-pth writes an OrderedDict in the
file's order, as `torch.save(module.state_dict())` does.
"""
import collections
import json
import struct
import sys

try:
    import torch
except ImportError as e:  # the caller turns this status into an error naming the interpreter
    print(f"cannot import torch: {e}", file=sys.stderr)
    sys.exit(3)

DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
}
KINDS = {v: k for k, v in DTYPES.items()}


def to_safetensors(src: str, dst: str) -> None:
    state = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        sys.exit(f"{src}: holds a {type(state).__name__}, not a state dict (a dict of tensors)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        sys.exit(f"{src}: not a state dict of tensors; entries that are not tensors: {', '.join(map(str, bad))}")
    header, chunks, offset = {}, [], 0
    for name, t in state.items():
        t = t.detach().cpu()
        if t.dtype not in DTYPES:
            t = t.to(torch.int64 if not t.is_floating_point() else torch.float32)
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for raw in chunks:
            f.write(raw)


def to_pth(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    state = collections.OrderedDict()
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        kind = KINDS.get(info["dtype"])
        if kind is None:
            sys.exit(f"{src}: tensor {name} has dtype {info['dtype']}, which this converter does not write")
        raw = bytearray(data[lo:hi])
        t = torch.frombuffer(raw, dtype=kind) if raw else torch.empty(0, dtype=kind)
        state[name] = t.reshape(info["shape"]).clone()
    torch.save(state, dst)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("to-safetensors", "to-pth"):
        sys.exit(__doc__)
    (to_safetensors if sys.argv[1] == "to-safetensors" else to_pth)(sys.argv[2], sys.argv[3])
