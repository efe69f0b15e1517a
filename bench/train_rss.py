#!/usr/bin/python3
"""Peak resident memory and wall time of a whole training run, tapegrad against PyTorch.

Runs `tapegrad train` and the same run in PyTorch one after the other, each in
a fresh process, and reads each one's peak resident set size from the kernel
(getrusage of the finished child). Both runs do the same work: the whole
Fashion-MNIST training set held in memory as its pixel bytes, turned into
float32 in [0, 1] batch by batch (as tapegrad train keeps it), shuffled
mini-batches of 64 with Adam, dropout in training
mode, then the test set evaluated in batches of 64 without gradients. The
PyTorch model is the twin of tools/models.c from scripts/torch-interop.py.

Needs Debian's python3-torch importable by /usr/bin/python3; without it the
script says so and exits 0.

    python3 bench/train_rss.py --tapegrad build/release/tools/tapegrad --epochs 1
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import time

DATA = "/usr/share/datasets/fashion-mnist"


def torch_run(args):
    """The PyTorch side, in this (child) process."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "interop", os.path.join(here, "..", "scripts", "torch-interop.py"))
    interop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(interop)
    torch = interop.torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    # The pixel bytes, turned into floats batch by batch, as tapegrad train
    # (and torchvision's FashionMNIST) keeps them.
    def load_bytes(train):
        prefix = "train" if train else "t10k"
        x = interop.read_idx(os.path.join(args.data, f"{prefix}-images-idx3-ubyte.gz"))
        y = interop.read_idx(os.path.join(args.data, f"{prefix}-labels-idx1-ubyte.gz"))
        return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype("int64"))

    x, y = load_bytes(True)
    tx, ty = load_bytes(False)
    model = interop.build(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(model(x[idx].float().div_(255.0)), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, tx.shape[0], 64):
                xb = tx[i:i + 64].float().div_(255.0)
                correct += (model(xb).argmax(1) == ty[i:i + 64]).sum().item()
        print(f"PyTorch: test accuracy {correct / tx.shape[0]:.4f}", flush=True)


def measure(cmd, env=None):
    """Wall time (s) and peak RSS (MiB) of a child running cmd."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
    return time.monotonic() - t0, usage.ru_maxrss / 1024.0, out.strip().splitlines()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tapegrad", default="build/release/tools/tapegrad")
    ap.add_argument("--model", default="cnn", choices=["cnn", "cnn-bn", "mlp"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        torch_run(args)
        return
    # Only look torch up here: importing it would grow this process to a few
    # hundred MiB, and a child's peak RSS counts the parent's pages it starts
    # from (before exec), which would inflate the tapegrad figure.
    if importlib.util.find_spec("torch") is None:
        print(f"train_rss: skipped, PyTorch is not importable by {sys.executable}")
        return

    common = ["--model", args.model, "--epochs", str(args.epochs)]
    ours = measure([args.tapegrad, "train", *common, "--threads", str(args.threads),
                    "--data", args.data, "--quiet"])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS="1")
    theirs = measure([sys.executable, os.path.abspath(__file__), "--torch-child", *common,
                      "--threads", str(args.threads), "--data", args.data], env=env)
    print(f"model {args.model}, {args.epochs} epoch(s), {args.threads} threads")
    print(f"tapegrad: {ours[0]:7.1f} s, peak RSS {ours[1]:7.1f} MiB  ({ours[2][-1]})")
    print(f"PyTorch:  {theirs[0]:7.1f} s, peak RSS {theirs[1]:7.1f} MiB  ({theirs[2][-1]})")
    print(f"tapegrad peak RSS / PyTorch peak RSS: {ours[1] / theirs[1]:.2f}")


if __name__ == "__main__":
    main()
