/*
 * The benchmark cases shared by `tapegrad bench` and bench/tapegrad-bench:
 * a table of cases (GEMM shapes, the passes of the default model's layers,
 * the tape's fixed cost, a whole training step), each with a setup, a timed
 * run and a teardown, and the driver that times and reports them.
 */
#ifndef TAPEGRAD_TOOLS_BENCH_CASES_H
#define TAPEGRAD_TOOLS_BENCH_CASES_H

#include <tapegrad/tapegrad.h>

/** Batch size of every model-shaped case, as `tapegrad train` defaults to. */
#define BENCH_BATCH 64

/** Ops recorded per repetition of the tape-overhead cases. */
#define BENCH_TAPE_OPS 1000

/** What a case measures. */
enum bench_kind {
    BENCH_GEMM,  /**< one tg_sgemm() call */
    BENCH_CONV,  /**< one pass of a tg_conv2d() of the default model */
    BENCH_POOL,  /**< tg_max_pool2d() forward or backward */
    BENCH_RELU,  /**< tg_relu() forward or backward */
    BENCH_TAPE,  /**< record BENCH_TAPE_OPS tiny ops, backward, reset */
    BENCH_TRAIN, /**< one training step of the default model with Adam */
    BENCH_RSS,   /**< peak resident memory of training steps, in a child process */
    BENCH_PEAK,  /**< the FMA units' peak: register-only multiply-add chains */
};

/** Which pass a case times. */
enum bench_pass {
    BENCH_FWD = 0, /**< forward only, nothing recorded */
    BENCH_BWD_X,   /**< backward into the input only (also pool and ReLU backward) */
    BENCH_BWD_W,   /**< backward into the weight only */
};

/** Unit of a case's rate. */
enum bench_unit {
    BENCH_UNIT_GFLOPS,  /**< 1e9 floating-point operations per second */
    BENCH_UNIT_SAMPLES, /**< training samples per second */
    BENCH_UNIT_NS_OP,   /**< nanoseconds per recorded op */
    BENCH_UNIT_GBPS,    /**< 1e9 bytes touched per second */
    BENCH_UNIT_MIB,     /**< peak resident memory, MiB (no timing) */
};

/** A GEMM shape: C (m x n) = op(A) (m x k) op(B) (k x n) + beta C. */
struct bench_gemm {
    bool trans_a, trans_b;
    int64_t m, n, k;
    float beta;
};

/** One benchmark case. */
struct bench_case {
    const char *name;        /**< unique, matched by --case */
    enum bench_kind kind;    /**< what runs */
    enum bench_pass pass;    /**< which pass is timed */
    int layer;               /**< conv: 0 conv1, 1 conv2; pool, relu: 0 or 1; tape: 0 add, 1 relu */
    struct bench_gemm gemm;  /**< BENCH_GEMM only */
    bool heavy;              /**< left out of --quick */
    const char *description; /**< one line for --list */
};

/** A case's live buffers; opaque. */
struct bench_state;

/** Number of cases in the table. */
size_t bench_case_count(void);

/** Case i of the table, 0 <= i < bench_case_count(). */
const struct bench_case *bench_case_get(size_t i);

/** Unit of a case's rate. */
enum bench_unit bench_case_unit(const struct bench_case *c);

/** Work of one repetition: flops, samples, ops or bytes, by unit. */
double bench_case_work(const struct bench_case *c);

/**
 * Floating-point operations of one training sample of the default model:
 * the multiply-adds of its GEMMs, doubled (about 82 MFLOP); bias, ReLU,
 * pooling, the loss and Adam are not counted.
 */
double bench_train_flop_per_sample(void);

/** Floating-point operations of bench_peak_run(iters). */
double bench_peak_flop(int64_t iters);

/**
 * Run iters steps of ten independent 8-wide fused multiply-add chains, split
 * among the kernel threads (tg_get_num_threads()): AVX2 + FMA when the CPU has
 * them, plain C otherwise. Returns a value computed from the chains, for the
 * caller to consume so that no step is optimised away.
 */
float bench_peak_run(int64_t iters);

/** Monotonic clock in seconds. */
double bench_now(void);

/**
 * Allocate and fill a case's buffers with seeded random values, at the
 * current thread count. A tape is made current on the calling thread until
 * bench_teardown().
 * @return the state, or NULL with the library's message (tg_last_error()).
 */
struct bench_state *bench_setup(const struct bench_case *c);

/**
 * Run inner repetitions of a case.
 * @param cpu receives the process CPU time (all threads) of the timed part;
 *        may be NULL.
 * @return the wall-clock seconds spent in the timed part (for backward cases
 *         only the backward call, the recording forward is untimed), or a
 *         negative value on failure, with the message in tg_last_error().
 */
double bench_run(struct bench_state *s, int64_t inner, double *cpu);

/** Bytes the case's tape holds (in use or kept for reuse). */
size_t bench_tape_reserved(const struct bench_state *s);

/** Release a case's buffers and end its tape. NULL is a no-op. */
void bench_teardown(struct bench_state *s);

/**
 * The benchmark program: parse options, run the selected cases, print a
 * table or JSON lines.
 * @param prog the name used in messages and help ("tapegrad bench").
 * @param sub the subcommand to re-execute this program with for the
 *        peak-memory child ("bench"), or NULL when the program itself is
 *        the benchmark.
 * @param argc, argv the options; argv[0] is the command's name.
 * @return the exit status: 0, 1 when a case failed, 2 for a bad command line.
 */
int bench_main(const char *prog, const char *sub, int argc, char **argv);

#endif
