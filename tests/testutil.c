/* Shared helpers of the Check suites; see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

uint64_t tu_rand_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float tu_rand_uniform(uint64_t *state, float lo, float hi)
{
    double u = (double)(tu_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

int64_t tu_rand_int(uint64_t *state, int64_t n)
{
    return (int64_t)(tu_rand_u64(state) % (uint64_t)n);
}

void tu_fill_uniform(struct tg_tensor *t, uint64_t *state, float lo, float hi)
{
    for (int64_t i = 0; i < t->n_elems; i++)
        t->data[i] = tu_rand_uniform(state, lo, hi);
}

void tu_fill_away_from_zero(struct tg_tensor *t, uint64_t *state, float min_abs, float max_abs)
{
    for (int64_t i = 0; i < t->n_elems; i++) {
        float v = tu_rand_uniform(state, min_abs, max_abs);
        t->data[i] = (tu_rand_u64(state) & 1) ? v : -v;
    }
}

void tu_fill_distinct(struct tg_tensor *t, uint64_t *state, float gap)
{
    int64_t n = t->n_elems;
    for (int64_t i = 0; i < n; i++)
        t->data[i] = ((float)i - 0.5f * (float)n) * gap;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = tu_rand_int(state, i + 1);
        float tmp = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = tmp;
    }
}

struct tg_tensor *tu_tensor(int d0, ...)
{
    int64_t shape[TG_MAX_DIMS];
    int n = 0;
    va_list ap;
    va_start(ap, d0);
    for (int d = d0; d >= 0 && n < TG_MAX_DIMS; d = va_arg(ap, int))
        shape[n++] = d;
    va_end(ap);
    struct tg_tensor *t = tg_tensor_new(n, shape);
    ck_assert_msg(t != NULL, "tg_tensor_new: %s", tg_last_error());
    return t;
}

void tu_assert_close_impl(const float *got,
                          const float *want,
                          int64_t n,
                          double atol,
                          double rtol,
                          const char *file,
                          int line)
{
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        double tol = atol + rtol * fabs(w);
        if (!(fabs(g - w) <= tol) && !(isnan(g) && isnan(w)))
            ck_abort_msg("%s:%d: element %lld: got %.9g, want %.9g (tol %.3g)", file, line,
                         (long long)i, g, w, tol);
    }
}

void tu_assert_gradcheck_impl(tg_gradcheck_fn fn,
                              void *user,
                              int n,
                              struct tg_tensor *const *inputs,
                              const struct tg_gradcheck_opts *opts,
                              const char *file,
                              int line)
{
    struct tg_gradcheck_result r;
    enum tg_status st = tg_gradcheck(fn, user, n, inputs, opts, &r);
    if (st != TG_OK)
        ck_abort_msg("%s:%d: tg_gradcheck failed: %s", file, line, tg_last_error());
    if (!r.passed)
        ck_abort_msg("%s:%d: gradient mismatch at input %d element %lld: analytic %.7g, numeric "
                     "%.7g (abs %.3g, rel %.3g)",
                     file, line, r.worst_input, (long long)r.worst_index, r.analytic, r.numeric,
                     r.max_abs_err, r.max_rel_err);
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
