/*
 * The gradient checker: compares the gradients that backward computes with
 * central finite differences, so that whoever writes an op can prove its
 * backward right.
 */
#ifndef TAPEGRAD_GRADCHECK_H
#define TAPEGRAD_GRADCHECK_H

#include <tapegrad/autograd.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The function under test: build an output from the inputs with ops (on the
 * current tape, which the checker provides) and return it. The output may have
 * any shape; the checker reduces it to the scalar sum(out * r) with a fixed
 * random r, so every output element takes part.
 * @param inputs the tensors being checked (heap leaves, requires_grad set).
 * @param n_inputs their number.
 * @param user the pointer given to tg_gradcheck().
 * @return the output, or NULL on failure (the message is kept).
 */
typedef struct tg_tensor *(*tg_gradcheck_fn)(struct tg_tensor *const *inputs,
                                             int n_inputs,
                                             void *user);

/** Settings of tg_gradcheck(); TG_GRADCHECK_DEFAULT gives the defaults. */
struct tg_gradcheck_opts {
    /**
     * Step of the central difference (f(x + eps) - f(x - eps)) / 2 eps.
     * Default 1e-3: float32 rounding in f contributes about 1e-7 |f| / eps
     * (about 1e-4 relative) and truncation about eps^2 |f'''| / 6 (about
     * 1e-6), so 1e-3 balances the two.
     */
    float eps;
    /** Absolute tolerance; default 1e-3 (float32 differences of O(1) values). */
    float atol;
    /**
     * Relative tolerance; default 1e-2: ten times above the noise of the
     * difference, five times below the 5% error a wrong backward shows.
     * An element fails when |analytic - numeric| > atol + rtol |numeric|.
     */
    float rtol;
    /**
     * 0 checks every element of every input (2 forward passes per element).
     * n > 0 checks n random directions v instead: the numeric directional
     * derivative (f(x + eps v) - f(x - eps v)) / 2 eps against <grad, v>;
     * for inputs too large to check element by element.
     */
    int n_projections;
    /** Seed of the upstream weights r and of the projection directions. */
    uint64_t seed;
};

/** eps 1e-3, atol 1e-3, rtol 1e-2, every element, seed 1. */
#define TG_GRADCHECK_DEFAULT ((struct tg_gradcheck_opts){1e-3f, 1e-3f, 1e-2f, 0, 1})

/** What tg_gradcheck() found. */
struct tg_gradcheck_result {
    bool passed;         /**< every checked element within tolerance */
    double max_abs_err;  /**< worst |analytic - numeric| */
    double max_rel_err;  /**< worst |analytic - numeric| / max(|numeric|, atol / rtol) */
    int worst_input;     /**< input index of the worst element (-1 for a projection) */
    int64_t worst_index; /**< flat element index in it (or projection number) */
    double analytic;     /**< analytic value at the worst element */
    double numeric;      /**< finite-difference value there */
    int64_t n_checked;   /**< elements or projections compared */
};

/**
 * Check the analytic gradient of fn at inputs against central differences.
 * The inputs' data is perturbed during the check and restored exactly before
 * returning; their grad is overwritten. Inputs that do not require grad are
 * held fixed and not checked.
 * @param fn the function under test.
 * @param user passed to fn.
 * @param n_inputs 1 to TG_MAX_OP_INPUTS.
 * @param inputs heap tensors.
 * @param opts the settings, or NULL for TG_GRADCHECK_DEFAULT.
 * @param result receives the comparison.
 * @return TG_OK when the check ran (result->passed says whether it passed);
 *         TG_ERR_INVALID for bad arguments; TG_ERR_NOMEM; or the status with
 *         which fn or backward failed.
 */
TG_API enum tg_status tg_gradcheck(tg_gradcheck_fn fn,
                                   void *user,
                                   int n_inputs,
                                   struct tg_tensor *const *inputs,
                                   const struct tg_gradcheck_opts *opts,
                                   struct tg_gradcheck_result *result);

#ifdef __cplusplus
}
#endif

#endif
