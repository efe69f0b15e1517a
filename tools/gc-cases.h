/*
 * The gradient-check case table shared by `tapegrad gradcheck` and the sweep
 * test: one entry per built-in op or op variant, each with a generator that
 * draws shapes and parameters from a seed and fills inputs away from the op's
 * kinks and ties on purpose (ReLU-like inputs at least 0.05 from 0, log, sqrt
 * and pow inputs and denominators well away from 0, max-pool inputs distinct
 * by 0.01, far more than the 2 eps a central difference moves them).
 */
#ifndef TAPEGRAD_TOOLS_GC_CASES_H
#define TAPEGRAD_TOOLS_GC_CASES_H

#include <tapegrad/tapegrad.h>

/** Most tensor inputs a case makes. */
#define GC_MAX_INPUTS 4
/** Most rows a loss case draws (each with one label). */
#define GC_MAX_LABELS 8
/** Inputs up to this many elements in all are checked element by element. */
#define GC_FULL_MAX 1500
/** Random directions used above GC_FULL_MAX elements. */
#define GC_N_PROJECTIONS 48

/** Non-tensor arguments of one drawn instance; each case reads what it needs. */
struct gc_args {
    bool trans_a, trans_b;
    float c; /**< scale, shift, exponent, slope, alpha or label smoothing */
    int axis;
    bool keepdim;
    int start_dim;
    int n_dims; /**< reshape target */
    int64_t shape[TG_MAX_DIMS];
    struct tg_conv2d_params conv;
    bool has_bias;
    struct tg_pool2d_params pool;
    enum tg_reduction reduction;
    int32_t labels[GC_MAX_LABELS];
};

struct gc_case;

/** One draw of a case: its inputs (heap, requiring grad) and arguments. */
struct gc_instance {
    const struct gc_case *c;
    int n_inputs;
    struct tg_tensor *in[GC_MAX_INPUTS];
    struct gc_args a;
    char params[96]; /**< the arguments in words, "" when none */
};

/** A row of the table. */
struct gc_case {
    const char *name; /**< unique, e.g. "conv2d_groups" */
    const char *op;   /**< the function under test, e.g. "tg_conv2d" */
    int variant;      /**< meaning private to make */
    /** Draw shapes, arguments and input values; NULL inputs mean failure. */
    enum tg_status (*make)(struct gc_instance *inst, uint64_t *rng);
    tg_gradcheck_fn fn; /**< user is the gc_instance */
    float atol, rtol;   /**< 0 for TG_GRADCHECK_DEFAULT's */
};

/** What one checked instance gave. */
struct gc_outcome {
    struct tg_gradcheck_result res;
    char shape[160]; /**< input shapes and arguments, e.g. "2x3x5x5, 4x3x3x3, 4 s=1,2 p=0,1" */
    bool projected;  /**< checked along random directions, not element by element */
};

/** The table. */
extern const struct gc_case gc_cases[];
/** Its number of rows. */
extern const int gc_n_cases;

/**
 * Whether a case is selected by name: its own name, its op's name, or the
 * op's name without the "tg_" prefix ("conv2d" selects every conv2d case).
 */
bool gc_case_matches(const struct gc_case *c, const char *name);

/**
 * Draw an instance of case c from seed.
 * @return TG_OK; TG_ERR_NOMEM (inst then holds no tensors).
 */
enum tg_status gc_instance_make(const struct gc_case *c, uint64_t seed, struct gc_instance *inst);

/** Release an instance's tensors. */
void gc_instance_free(struct gc_instance *inst);

/**
 * Draw an instance of c from seed and gradient-check it: element by element
 * up to GC_FULL_MAX input elements, along GC_N_PROJECTIONS directions above.
 * @return TG_OK when the check ran (out->res.passed tells the verdict), or
 *         the status with which drawing or tg_gradcheck() failed.
 */
enum tg_status gc_case_run(const struct gc_case *c, uint64_t seed, struct gc_outcome *out);

#endif
