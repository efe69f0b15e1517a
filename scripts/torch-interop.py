#!/usr/bin/python3
"""Check that a PyTorch model's weights evaluate the same under tapegrad.

Trains the PyTorch twin of a `tapegrad train` model briefly on Fashion-MNIST,
evaluates it in PyTorch, writes its state_dict to a safetensors file (with a
small writer of the format: 8-byte little-endian header length, JSON header,
raw little-endian data), runs `tapegrad eval` on that file and compares the
two test accuracies. Exits 0 when they agree within --tolerance, 1 when they
do not, and 77 (skipped) when PyTorch is not importable.

Usage: scripts/torch-interop.py [--tapegrad PATH] [--model cnn|cnn-bn|mlp]
                                [--train-images N] [--data DIR]
"""
import argparse
import collections
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover
    print(f"torch-interop: skipped, PyTorch is not importable ({e})")
    sys.exit(77)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    n_dims = magic & 0xFF
    dims = struct.unpack(">" + "I" * n_dims, data[4:4 + 4 * n_dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(dims)


def load(data_dir, train):
    prefix = "train" if train else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(y.astype(np.int64))


def build(model):
    """The PyTorch twin of tools/models.c, with the same state_dict names."""
    layers = []
    if model == "mlp":
        layers = [("flatten", nn.Flatten()), ("fc1", nn.Linear(784, 512)), ("relu1", nn.ReLU()),
                  ("drop", nn.Dropout(0.2)), ("fc2", nn.Linear(512, 10))]
    else:
        bn = model == "cnn-bn"
        layers.append(("conv1", nn.Conv2d(1, 32, 5, padding=2)))
        if bn:
            layers.append(("bn1", nn.BatchNorm2d(32)))
        layers += [("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
                   ("conv2", nn.Conv2d(32, 64, 5, padding=2))]
        if bn:
            layers.append(("bn2", nn.BatchNorm2d(64)))
        layers += [("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
                   ("fc1", nn.Linear(3136, 1024)), ("relu3", nn.ReLU()),
                   ("drop", nn.Dropout(0.4)), ("fc2", nn.Linear(1024, 10))]
    return nn.Sequential(collections.OrderedDict(layers))


def save_safetensors(state, path):
    header, blobs, offset = {}, [], 0
    for name, t in state.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float32:
            dtype, raw = "F32", t.numpy().astype("<f4").tobytes()
        elif t.dtype == torch.int64:
            dtype, raw = "I64", t.numpy().astype("<i8").tobytes()
        else:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--tapegrad", default=os.path.join(here, "..", "build", "release", "tools",
                                                       "tapegrad"))
    ap.add_argument("--model", default="cnn", choices=["mlp", "cnn", "cnn-bn"])
    ap.add_argument("--train-images", type=int, default=6000)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--tolerance", type=float, default=0.001)
    args = ap.parse_args()
    if not os.path.isdir(args.data):
        print(f"torch-interop: skipped, no data set in {args.data}")
        return 77

    torch.manual_seed(0)
    xtr, ytr = load(args.data, True)
    xte, yte = load(args.data, False)
    xtr, ytr = xtr[:args.train_images], ytr[:args.train_images]
    model = build(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for i in range(0, len(xtr), 64):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xtr[i:i + 64]), ytr[i:i + 64])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum())
                      for i in range(0, len(xte), 1000))
    torch_acc = correct / len(xte)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "torch.safetensors")
        save_safetensors(model.state_dict(), path)
        out = subprocess.run([args.tapegrad, "eval", "--checkpoint", path, "--model", args.model,
                              "--data", args.data], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"torch-interop: tapegrad eval failed: {out.stderr.strip()}")
        return 1
    tg_acc = None
    for line in out.stdout.splitlines():
        if line.startswith("test accuracy"):
            tg_acc = float(line.split()[2].rstrip(","))
    ok = tg_acc is not None and abs(tg_acc - torch_acc) <= args.tolerance
    print(f"torch-interop: {args.model}: PyTorch accuracy {torch_acc:.4f}, "
          f"tapegrad eval {tg_acc}, {'PASS' if ok else 'FAIL'} (tolerance {args.tolerance})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
