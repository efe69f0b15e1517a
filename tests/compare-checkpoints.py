#!/usr/bin/env python3
"""Exit 0 when two safetensors files hold bit-identical tensors of the same
names, dtypes and shapes (metadata may differ), else print the first
difference and exit 1."""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], v["shape"], blob[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items()}


a, b = read(sys.argv[1]), read(sys.argv[2])
if a.keys() != b.keys():
    print(f"names differ: {sorted(a.keys() ^ b.keys())}")
    sys.exit(1)
for name in a:
    if a[name] != b[name]:
        print(f"{name} differs")
        sys.exit(1)
print(f"{len(a)} tensors identical")
