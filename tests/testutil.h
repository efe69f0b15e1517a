/*
 * Helpers shared by the Check suites: a seeded RNG, random fills that keep
 * away from kinks and ties, array comparison and a gradient-check assertion.
 */
#ifndef TAPEGRAD_TESTUTIL_H
#define TAPEGRAD_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include <tapegrad/tapegrad.h>

/** splitmix64 step: a small seeded generator for test data. */
uint64_t tu_rand_u64(uint64_t *state);
/** Uniform in [lo, hi). */
float tu_rand_uniform(uint64_t *state, float lo, float hi);
/** Integer in [0, n). */
int64_t tu_rand_int(uint64_t *state, int64_t n);

/** Fill with uniform values in [lo, hi). */
void tu_fill_uniform(struct tg_tensor *t, uint64_t *state, float lo, float hi);
/**
 * Fill with values whose magnitude is in [min_abs, max_abs] and random sign:
 * keeps ReLU-like kinks at 0 at least min_abs away.
 */
void tu_fill_away_from_zero(struct tg_tensor *t, uint64_t *state, float min_abs, float max_abs);
/**
 * Fill with distinct values spaced at least gap apart, in random order: keeps
 * max-pool windows free of ties.
 */
void tu_fill_distinct(struct tg_tensor *t, uint64_t *state, float gap);

/** Make a heap tensor with the given int sizes (up to 6, terminated by -1). */
struct tg_tensor *tu_tensor(int d0, ...);

/**
 * Assert every |got - want| <= atol + rtol |want|, naming the first bad index.
 */
#define tu_assert_close(got, want, n, atol, rtol)                                                  \
    tu_assert_close_impl(got, want, n, atol, rtol, __FILE__, __LINE__)
void tu_assert_close_impl(const float *got,
                          const float *want,
                          int64_t n,
                          double atol,
                          double rtol,
                          const char *file,
                          int line);

/**
 * Run tg_gradcheck with opts (NULL for defaults) and fail the test with the
 * checker's worst element when it does not pass.
 */
#define tu_assert_gradcheck(fn, user, n, inputs, opts)                                             \
    tu_assert_gradcheck_impl(fn, user, n, inputs, opts, __FILE__, __LINE__)
void tu_assert_gradcheck_impl(tg_gradcheck_fn fn,
                              void *user,
                              int n,
                              struct tg_tensor *const *inputs,
                              const struct tg_gradcheck_opts *opts,
                              const char *file,
                              int line);

/** Run a suite with CK_ENV verbosity; returns the process exit status. */
int tu_run_suite(Suite *s);

#endif
