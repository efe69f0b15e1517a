#!/usr/bin/python3
"""Run tapegrad's benchmark cases and their PyTorch equivalents, interleaved.

For each case and thread count, rounds alternate: one batch of repetitions of
tapegrad-bench (a fresh process, --json --samples), then one batch of each
PyTorch thread setting (long-lived worker processes, one per setting), so
that drift of a shared machine hits both sides alike. The medians are taken
over all the samples of all rounds; speedup = PyTorch median / tapegrad
median (above 1: tapegrad is faster), against PyTorch's best setting.

Needs Debian's python3-torch importable by /usr/bin/python3; without it the
script says so and exits 0.

    python3 bench/compare_torch.py --bench BUILD/bench/tapegrad-bench
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH = 64
TAPE_OPS = 1000
SAMPLE_TARGET_S = 2e-3

# (trans_a, trans_b, m, n, k, beta) of each GEMM case, as in tools/bench-cases.c.
GEMM = {
    "sgemm 64": (0, 0, 64, 64, 64, 0),
    "sgemm 128": (0, 0, 128, 128, 128, 0),
    "sgemm 256": (0, 0, 256, 256, 256, 0),
    "sgemm 512": (0, 0, 512, 512, 512, 0),
    "sgemm 1024": (0, 0, 1024, 1024, 1024, 0),
    "sgemm 2048": (0, 0, 2048, 2048, 2048, 0),
    "sgemm conv1-fwd": (0, 0, 32, 784, 25, 0),
    "sgemm conv1-bwd-w": (0, 1, 32, 25, 784, 1),
    "sgemm conv1-bwd-x": (1, 0, 25, 784, 32, 0),
    "sgemm conv2-fwd": (0, 0, 64, 784, 800, 0),
    "sgemm conv2-bwd-w": (0, 1, 64, 800, 784, 1),
    "sgemm conv2-bwd-x": (1, 0, 800, 784, 64, 0),
    "sgemm conv2-batch": (0, 0, 64, 12544, 800, 0),
    "sgemm fc1-fwd": (0, 1, 64, 1024, 3136, 0),
    "sgemm fc1-bwd-x": (0, 0, 64, 3136, 1024, 1),
    "sgemm fc1-bwd-w": (1, 0, 1024, 3136, 64, 1),
}
# conv: (input channels, output channels, size); pool and ReLU inputs.
CONV = {"conv1": (1, 32, 28), "conv2": (32, 64, 14)}
ACT = {"1": (BATCH, 32, 28, 28), "2": (BATCH, 64, 14, 14)}


# ---- PyTorch side ---------------------------------------------------------------


def torch_model(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.4),
        nn.Linear(1024, 10))


def make_case(torch, name):
    """A function run() doing one repetition of the case, or None if unknown."""
    F = torch.nn.functional
    aten = torch.ops.aten
    torch.manual_seed(1)

    def rand(*shape):
        return torch.rand(*shape) * 2 - 1

    if name in GEMM:
        ta, tb, m, n, k, beta = GEMM[name]
        a = rand(k, m).t() if ta else rand(m, k)
        b = rand(n, k).t() if tb else rand(k, n)
        c = rand(m, n)
        if beta:
            return lambda: c.addmm_(a, b)
        return lambda: torch.mm(a, b, out=c)

    layer, _, pass_ = name.partition(" ")
    if layer in CONV:
        ci, co, hw = CONV[layer]
        x, w, bias, dy = rand(BATCH, ci, hw, hw), rand(co, ci, 5, 5), rand(co), rand(BATCH, co, hw, hw)
        if pass_ == "fwd":
            return lambda: F.conv2d(x, w, bias, padding=2)
        mask = [pass_ == "bwd-x", pass_ == "bwd-w", False]
        return lambda: aten.convolution_backward(dy, x, w, [co], [1, 1], [2, 2], [1, 1], False,
                                                 [0, 0], 1, mask)

    if layer.startswith("max-pool"):
        x = rand(*ACT[layer[-1]])
        if pass_ == "fwd":
            return lambda: F.max_pool2d(x, 2)
        y, idx = aten.max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
        dy = rand(*y.shape)
        return lambda: aten.max_pool2d_with_indices_backward(dy, x, [2, 2], [2, 2], [0, 0],
                                                             [1, 1], False, idx)

    if layer.startswith("relu"):
        x = rand(*ACT[layer[-1]])
        if pass_ == "fwd":
            return lambda: torch.relu(x)
        y, dy = torch.relu(x), rand(*x.shape)
        return lambda: aten.threshold_backward(dy, y, 0)

    if layer == "tape":
        x = torch.tensor([0.5, 1.0, 1.5, 2.0], requires_grad=True)
        seed = torch.ones(4)
        add = pass_ == "add"

        def chain():
            y = x
            for _ in range(TAPE_OPS):
                y = torch.add(y, x) if add else torch.relu(y)
            y.backward(seed)
        return chain

    if name == "train-step cnn":
        return train_step(torch)
    return None


def train_step(torch):
    model = torch_model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(BATCH, 1, 28, 28)
    labels = torch.randint(0, 10, (BATCH,))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
    return step


def time_samples(run, reps, warmup):
    """Samples as tapegrad-bench takes them: calibrate, warm up, time."""
    t0 = time.perf_counter()
    run()
    t = time.perf_counter() - t0
    inner = max(1, int(SAMPLE_TARGET_S / t) + 1) if t < SAMPLE_TARGET_S else 1
    for _ in range(warmup - 1 if inner == 1 else warmup):
        for _ in range(inner):
            run()
    samples, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(inner):
            run()
        samples.append((time.perf_counter() - t0) / inner)
        cpu.append((time.process_time() - c0) / inner)
    return samples, cpu


class nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def worker():
    """Answer {"case", "threads", "reps", "warmup"} lines with {"samples"}."""
    import torch
    cache = {}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            torch.set_num_threads(req["threads"])
            name = req["case"]
            if name not in cache:
                cache[name] = make_case(torch, name)
            run = cache[name]
            if run is None:
                raise ValueError("no PyTorch equivalent")
            grad = name.startswith("tape") or name.startswith("train")
            ctx = nullcontext() if grad else torch.no_grad()
            with ctx:
                samples, cpu = time_samples(run, req["reps"], req["warmup"])
            reply = {"samples": samples, "cpu": cpu}
        except Exception as e:  # report, the parent skips the case
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_worker(threads, steps):
    """Peak RSS of a fresh process running training steps, as one JSON line."""
    base = peak_rss_mib()
    import torch
    torch.set_num_threads(threads)
    after_import = peak_rss_mib()
    step = train_step(torch)
    for _ in range(steps):
        step()
    print(json.dumps({"base_rss_mib": base, "import_rss_mib": after_import,
                      "peak_rss_mib": peak_rss_mib()}), flush=True)


# ---- Driver -----------------------------------------------------------------------


class TorchWorker:
    def __init__(self, label, intra, blas):
        self.label, self.intra = label, intra
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(intra))
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)

    def run(self, case, reps, warmup):
        req = {"case": case, "threads": self.intra, "reps": reps, "warmup": warmup}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"PyTorch {case}: {reply['error']}")
        return reply["samples"], reply["cpu"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def torch_settings(threads):
    """PyTorch settings compared with tapegrad at a thread count: (label, intra-op, OpenBLAS)."""
    if threads == 1:
        return [("1", 1, 1)]
    return [(f"{threads}/blas1", threads, 1), (f"{threads}/blas{threads}", threads, threads)]


def ours(bench, case, threads, reps, warmup):
    out = subprocess.run([bench, "--json", "--samples", "--case", case, "--threads", str(threads),
                          "--reps", str(reps), "--warmup", str(warmup), "--min-time", "0"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        row = json.loads(line)
        if row["case"] == case:
            return row
    raise RuntimeError(f"tapegrad-bench printed no row for {case!r}")


def fmt_time(s):
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


RATE_KEYS = ("gflops", "samples_per_s", "ns_per_op", "gb_per_s")


def compare_case(bench, workers, case, threads, args):
    mine, mine_cpu = [], []
    theirs, theirs_cpu = {w.label: [] for w in workers}, {w.label: [] for w in workers}
    row = None
    for _ in range(args.rounds):
        # A pause before each side: thread pools that spin-wait after their last
        # call (OpenBLAS's, OpenMP's) go to sleep instead of taking the cores
        # from the side being timed.
        time.sleep(args.settle)
        row = ours(bench, case, threads, args.reps, args.warmup)
        mine += row["samples_s"]
        mine_cpu.append(row["cpu_s"])
        for w in workers:
            time.sleep(args.settle)
            wall, cpu = w.run(case, args.reps, args.warmup)
            theirs[w.label] += wall
            theirs_cpu[w.label] += cpu
    m = statistics.median(mine)
    best = min(theirs, key=lambda k: statistics.median(theirs[k]))
    t = statistics.median(theirs[best])
    key = next((k for k in RATE_KEYS if k in row), None)
    rate = ""
    if key is not None:
        ours_rate = row[key] * row["median_s"] / m if key != "ns_per_op" else row[key] * m / row["median_s"]
        torch_rate = ours_rate * m / t if key != "ns_per_op" else ours_rate * t / m
        rate = f"{ours_rate:9.1f} vs {torch_rate:9.1f} {key}"
        peak = args.peak.get(threads)
        if key == "gflops" and peak:
            rate += f" ({100 * ours_rate / peak:.0f}% vs {100 * torch_rate / peak:.0f}% of peak)"
    # CPU time (all threads, spinning included) barely sees other processes' load.
    cpu_ratio = statistics.median(theirs_cpu[best]) / statistics.median(mine_cpu)
    others = " ".join(f"{k}:{fmt_time(statistics.median(v))}" for k, v in theirs.items() if k != best)
    print(f"{case:22s} {threads:3d} {fmt_time(m):>10s} {fmt_time(t):>10s} {best:>8s} "
          f"{t / m:7.2f}x {cpu_ratio:7.2f}x  {rate}{'  (other: ' + others + ')' if others else ''}", flush=True)
    return {"case": case, "threads": threads, "tapegrad_median_s": m, "torch_median_s": t,
            "torch_setting": best, "speedup": t / m, "cpu_speedup": cpu_ratio}


def compare_rss(bench, threads):
    out = subprocess.run([bench, "--json", "--case", "peak-rss", "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    mine = json.loads(out.splitlines()[0])
    for label, intra, blas in torch_settings(threads)[:1]:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(intra))
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-worker",
                              "--threads", str(intra), "--steps", str(mine["steps"])],
                             check=True, capture_output=True, text=True, env=env).stdout
        theirs = json.loads(res)
        print(f"{'peak-rss train-step':22s} {threads:3d}  tapegrad {mine['peak_rss_mib']:.1f} MiB, "
              f"PyTorch {theirs['peak_rss_mib']:.1f} MiB (of which {theirs['import_rss_mib']:.1f} "
              f"after import torch): {theirs['peak_rss_mib'] / mine['peak_rss_mib']:.2f}x",
              flush=True)


def find_bench():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for d in ("build-bench-rel", "build-release", "build/release", "build"):
        p = os.path.join(root, d, "bench", "tapegrad-bench")
        if os.access(p, os.X_OK):
            return p
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", help="path of tapegrad-bench (default: found in a build dir)")
    ap.add_argument("--case", default="", help="only cases whose name contains this text")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (1,2)")
    ap.add_argument("--rounds", type=int, default=5, help="alternations per case (5)")
    ap.add_argument("--reps", type=int, default=3, help="timed samples per side per round (3)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up samples per batch (2)")
    ap.add_argument("--settle", type=float, default=0.3,
                    help="seconds of idle machine before each side's batch (0.3)")
    ap.add_argument("--quick", action="store_true", help="2 rounds, no heavy cases")
    ap.add_argument("--json", help="also write one JSON object per compared case to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rss-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    args.peak = {}  # threads -> measured FMA peak (GFLOP/s), from the "fma peak" case
    if args.worker:
        return worker()
    if args.rss_worker:
        return rss_worker(threads[0], args.steps)

    try:
        import torch
    except ImportError as e:
        debian = "/usr/bin/python3"
        if os.path.exists(debian) and os.path.realpath(sys.executable) != os.path.realpath(debian):
            os.execv(debian, [debian, os.path.abspath(__file__)] + sys.argv[1:])
        print(f"compare_torch: skipped, PyTorch is not importable by {sys.executable} ({e})")
        return 0
    bench = args.bench or find_bench()
    if bench is None:
        print("compare_torch: tapegrad-bench not found; give --bench PATH", file=sys.stderr)
        return 2
    if args.quick:
        args.rounds = min(args.rounds, 2)
    listing = subprocess.run([bench, "--list", "--json"] + (["--quick"] if args.quick else []) +
                             (["--case", args.case] if args.case else []),
                             check=True, capture_output=True, text=True).stdout
    cases = [json.loads(line)["case"] for line in listing.splitlines()]

    print(f"PyTorch {torch.__version__} vs {bench}; {args.rounds} rounds x {args.reps} samples "
          f"per side; speedup = PyTorch median / tapegrad median (> 1: tapegrad faster); "
          f"cpu = the same ratio of process CPU times")
    print(f"{'case':22s} {'thr':>3s} {'tapegrad':>10s} {'PyTorch':>10s} {'setting':>8s} "
          f"{'speedup':>8s} {'cpu':>8s}  rates (tapegrad vs PyTorch)")
    results = []
    for t in threads:
        # The machine's FMA peak first, whatever the selection and before the
        # PyTorch workers start: every GFLOP/s figure is also a share of it.
        time.sleep(args.settle)
        row = ours(bench, "fma peak", t, args.reps, args.warmup)
        args.peak[t] = row["gflops"]
        print(f"{'fma peak':22s} {t:3d} {fmt_time(row['median_s']):>10s} {'':10s} {'':8s} "
              f"{'':8s} {'':8s}  {row['gflops']:9.1f} gflops: the FMA units' rate, "
              f"measured; the % are shares of it", flush=True)
        workers = [TorchWorker(*s) for s in torch_settings(t)]
        try:
            for case in cases:
                if case == "fma peak":
                    continue
                if case.startswith("peak-rss"):
                    compare_rss(bench, t)
                elif case.startswith("sgemm") or make_case_known(case):
                    results.append(compare_case(bench, workers, case, t, args))
        finally:
            for w in workers:
                w.close()
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


def make_case_known(case):
    layer = case.partition(" ")[0]
    return (layer in CONV or layer.startswith("max-pool") or layer.startswith("relu")
            or layer == "tape" or case == "train-step cnn")


if __name__ == "__main__":
    sys.exit(main())
