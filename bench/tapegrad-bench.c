/*
 * tapegrad-bench: the benchmark suite as a program of its own, run by
 * `meson test --benchmark` (with --quick) and by bench/compare_torch.py. The
 * cases and the driver are tools/bench-cases.c and tools/bench-run.c, which
 * `tapegrad bench` runs too.
 */
#include "bench-cases.h"

int main(int argc, char **argv)
{
    return bench_main("tapegrad-bench", NULL, argc, argv);
}
