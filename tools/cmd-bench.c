/*
 * `tapegrad bench`: the benchmark suite of bench/ (the cases live in
 * bench-cases.c, shared with the standalone bench/tapegrad-bench).
 */
#include "bench-cases.h"
#include "cli.h"

int cmd_bench(int argc, char **argv)
{
    return bench_main("tapegrad bench", "bench", argc, argv);
}
