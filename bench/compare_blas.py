#!/usr/bin/python3
"""Compare the built-in GEMM with a CBLAS library, interleaved, on the sgemm cases.

Two builds of tapegrad-bench run the same cases: the default one (built-in
packed GEMM) and one configured with -Dblas=openblas or -Dblas=blis, whose
tg_sgemm() hands every product to the library. Rounds alternate between the
two (fresh processes, a pause before each), so that drift of a shared machine
hits both; medians are over all samples of all rounds. The library's own
threads are set through OPENBLAS_NUM_THREADS / BLIS_NUM_THREADS to the thread
count of the case. ratio = library median / built-in median (above 1: the
built-in GEMM is faster).

    meson setup build/openblas -Dbuildtype=release -Dblas=openblas -Dtests=false
    ninja -C build/openblas
    python3 bench/compare_blas.py --ours build/release/bench/tapegrad-bench \\
        --blas build/openblas/bench/tapegrad-bench
"""

import argparse
import json
import os
import statistics
import subprocess
import time


def run(bench, case, threads, reps, warmup):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), BLIS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    out = subprocess.run([bench, "--json", "--samples", "--case", case, "--threads", str(threads),
                          "--reps", str(reps), "--warmup", str(warmup), "--min-time", "0"],
                         check=True, capture_output=True, text=True, env=env).stdout
    for line in out.splitlines():
        row = json.loads(line)
        if row["case"] == case:
            return row
    raise RuntimeError(f"{bench} printed no row for {case!r}")


def cases(bench, text):
    out = subprocess.run([bench, "--list", "--json"], check=True, capture_output=True,
                         text=True).stdout
    names = [json.loads(line)["case"] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith("sgemm") and text in n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", required=True, help="tapegrad-bench of the default build")
    ap.add_argument("--blas", required=True, help="tapegrad-bench of a -Dblas=... build")
    ap.add_argument("--case", default="", help="only sgemm cases whose name contains this text")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (1,2)")
    ap.add_argument("--rounds", type=int, default=5, help="alternations per case (5)")
    ap.add_argument("--reps", type=int, default=5, help="timed samples per side per round (5)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up samples per batch (2)")
    ap.add_argument("--settle", type=float, default=0.3,
                    help="seconds of idle machine before each side's batch (0.3)")
    ap.add_argument("--json", help="also write one JSON object per compared case to this file")
    args = ap.parse_args()

    print(f"built-in GEMM ({args.ours}) vs CBLAS build ({args.blas}); {args.rounds} rounds x "
          f"{args.reps} samples per side; ratio = CBLAS median / built-in median")
    print(f"{'case':22s} {'thr':>3s} {'built-in':>10s} {'CBLAS':>10s} {'ratio':>7s}  GFLOP/s")
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for case in cases(args.ours, args.case):
            mine, theirs, row = [], [], None
            for _ in range(args.rounds):
                time.sleep(args.settle)
                row = run(args.ours, case, threads, args.reps, args.warmup)
                mine += row["samples_s"]
                time.sleep(args.settle)
                theirs += run(args.blas, case, threads, args.reps, args.warmup)["samples_s"]
            m, t = statistics.median(mine), statistics.median(theirs)
            flop = row["gflops"] * row["median_s"]
            print(f"{case:22s} {threads:3d} {m * 1e3:8.3f}ms {t * 1e3:8.3f}ms {t / m:6.2f}x  "
                  f"{flop / m:6.1f} vs {flop / t:6.1f}", flush=True)
            results.append({"case": case, "threads": threads, "builtin_median_s": m,
                            "cblas_median_s": t, "ratio": t / m, "builtin_gflops": flop / m,
                            "cblas_gflops": flop / t})
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
