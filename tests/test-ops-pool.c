/*
 * 2-d max and average pooling: hand-worked windows, a naive reference on
 * random inputs for many settings (also large enough to run threaded), the
 * tie and NaN rules of max-pool, gradient checks, recorded and no-grad calls,
 * and every error path.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define P2D(k, s, p, inc) ((struct tg_pool2d_params){k, k, s, s, p, p, inc})

/* ---- Naive references, one window at a time, in double ------------------------------ */

static int64_t out_size(int64_t h, int k, int s, int p)
{
    return (h + 2 * p - k) / s + 1;
}

/*
 * Max over each window (padding as -inf, first strict maximum wins) and the
 * winner's flat input index; idx may be NULL.
 */
static void
naive_max_pool(float *y, int64_t *idx, const struct tg_tensor *x, const struct tg_pool2d_params *p)
{
    int64_t nc = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t ho = out_size(h, p->kernel_h, p->stride_h, p->pad_h);
    int64_t wo = out_size(w, p->kernel_w, p->stride_w, p->pad_w);
    for (int64_t pl = 0; pl < nc; pl++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                double best = -INFINITY;
                int64_t at = -1;
                for (int64_t i = 0; i < p->kernel_h; i++)
                    for (int64_t j = 0; j < p->kernel_w; j++) {
                        int64_t ih = oh * p->stride_h - p->pad_h + i;
                        int64_t iw = ow * p->stride_w - p->pad_w + j;
                        if (ih < 0 || ih >= h || iw < 0 || iw >= w)
                            continue;
                        int64_t k = (pl * h + ih) * w + iw;
                        if (at < 0 || x->data[k] > best) {
                            best = x->data[k];
                            at = k;
                        }
                    }
                int64_t o = (pl * ho + oh) * wo + ow;
                y[o] = (float)best;
                if (idx != NULL)
                    idx[o] = at;
            }
}

static void naive_avg_pool(float *y, const struct tg_tensor *x, const struct tg_pool2d_params *p)
{
    int64_t nc = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t ho = out_size(h, p->kernel_h, p->stride_h, p->pad_h);
    int64_t wo = out_size(w, p->kernel_w, p->stride_w, p->pad_w);
    for (int64_t pl = 0; pl < nc; pl++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                double sum = 0.0;
                int count = 0;
                for (int64_t i = 0; i < p->kernel_h; i++)
                    for (int64_t j = 0; j < p->kernel_w; j++) {
                        int64_t ih = oh * p->stride_h - p->pad_h + i;
                        int64_t iw = ow * p->stride_w - p->pad_w + j;
                        if (ih < 0 || ih >= h || iw < 0 || iw >= w)
                            continue;
                        sum += x->data[(pl * h + ih) * w + iw];
                        count++;
                    }
                int div = p->count_include_pad ? p->kernel_h * p->kernel_w : count;
                y[(pl * ho + oh) * wo + ow] = (float)(sum / div);
            }
}

/* dx of sum(y * seed) for avg-pool: each seed value spread over its window. */
static void naive_avg_pool_grad(float *dx,
                                const float *seed,
                                const struct tg_tensor *x,
                                const struct tg_pool2d_params *p)
{
    int64_t nc = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t ho = out_size(h, p->kernel_h, p->stride_h, p->pad_h);
    int64_t wo = out_size(w, p->kernel_w, p->stride_w, p->pad_w);
    memset(dx, 0, (size_t)x->n_elems * sizeof(float));
    for (int64_t pl = 0; pl < nc; pl++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                int count = 0;
                for (int pass = 0; pass < 2; pass++)
                    for (int64_t i = 0; i < p->kernel_h; i++)
                        for (int64_t j = 0; j < p->kernel_w; j++) {
                            int64_t ih = oh * p->stride_h - p->pad_h + i;
                            int64_t iw = ow * p->stride_w - p->pad_w + j;
                            if (ih < 0 || ih >= h || iw < 0 || iw >= w)
                                continue;
                            if (pass == 0) {
                                count++;
                                continue;
                            }
                            int div = p->count_include_pad ? p->kernel_h * p->kernel_w : count;
                            dx[(pl * h + ih) * w + iw] += seed[(pl * ho + oh) * wo + ow] / div;
                        }
            }
}

/* ---- Helpers ---------------------------------------------------------------------- */

static struct tg_tensor *tensor4(int64_t n, int64_t c, int64_t h, int64_t w, const float *data)
{
    struct tg_tensor *t = tg_tensor_from_data(4, (int64_t[]){n, c, h, w}, data);
    ck_assert_msg(t != NULL, "%s", tg_last_error());
    return t;
}

/*
 * Run op on a fresh tape with x requiring grad, backward with seed (NULL for
 * ones); copies the output into y and x's gradient into dx.
 */
static void run_backward(struct tg_tensor *(*op)(struct tg_tensor *,
                                                 const struct tg_pool2d_params *),
                         struct tg_tensor *x,
                         const struct tg_pool2d_params *p,
                         const float *seed,
                         float *y,
                         float *dx)
{
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tg_tensor_zero_grad(x);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *out = op(x, p);
    ck_assert_msg(out != NULL, "%s", tg_last_error());
    ck_assert(out->requires_grad);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 1);
    struct tg_tensor *s = tg_tape_tensor_new(tape, out->n_dims, out->shape);
    for (int64_t i = 0; i < s->n_elems; i++)
        s->data[i] = seed ? seed[i] : 1.0f;
    ck_assert_int_eq(tg_tape_backward(tape, out, s, 0), TG_OK);
    if (y != NULL)
        memcpy(y, out->data, (size_t)out->n_elems * sizeof(float));
    memcpy(dx, x->grad, (size_t)x->n_elems * sizeof(float));
    tg_tape_end(tape);
    tg_tape_free(tape);
}

/* ---- Hand-worked forward values ------------------------------------------------------ */

static const float ramp16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const float ramp9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

START_TEST(test_max_pool2d_2x2_stride_2_by_hand)
{
    struct tg_tensor *x = tensor4(1, 1, 4, 4, ramp16);
    struct tg_tensor *y = tg_max_pool2d(x, &P2D(2, 2, 0, true));
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_ptr_null(y->tape); // no tape: a heap tensor for the caller
    ck_assert_int_eq(y->n_dims, 4);
    ck_assert_int_eq(y->shape[2], 2);
    ck_assert_int_eq(y->shape[3], 2);
    const float want[4] = {5, 7, 13, 15};
    tu_assert_close(y->data, want, 4, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

/* 3x3 kernel, stride 2, padding 1 on 1..9: each window is a 2x2 corner. */
START_TEST(test_max_pool2d_padding_by_hand)
{
    struct tg_tensor *x = tensor4(1, 1, 3, 3, ramp9);
    struct tg_tensor *y = tg_max_pool2d(x, &P2D(3, 2, 1, true));
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    const float want[4] = {5, 6, 8, 9};
    tu_assert_close(y->data, want, 4, 0, 0);
    tg_tensor_free(y);

    /* Padding is -inf, not 0: all-negative inputs keep negative maxima. */
    float neg[9];
    for (int i = 0; i < 9; i++)
        neg[i] = -ramp9[i];
    struct tg_tensor *xn = tensor4(1, 1, 3, 3, neg);
    y = tg_max_pool2d(xn, &P2D(3, 2, 1, true));
    const float want_neg[4] = {-1, -2, -4, -5};
    tu_assert_close(y->data, want_neg, 4, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(xn);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_avg_pool2d_by_hand)
{
    struct tg_tensor *x = tensor4(1, 1, 4, 4, ramp16);
    struct tg_tensor *y = tg_avg_pool2d(x, &P2D(2, 2, 0, true));
    const float want[4] = {2.5f, 4.5f, 10.5f, 12.5f};
    tu_assert_close(y->data, want, 4, 1e-6, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);

    /* Corner windows of 1..9 with padding 1: sums 12, 16, 24, 28 over 4 elements. */
    x = tensor4(1, 1, 3, 3, ramp9);
    y = tg_avg_pool2d(x, &P2D(3, 2, 1, true));
    const float want_incl[4] = {12.0f / 9, 16.0f / 9, 24.0f / 9, 28.0f / 9};
    tu_assert_close(y->data, want_incl, 4, 1e-6, 1e-6);
    tg_tensor_free(y);
    y = tg_avg_pool2d(x, &P2D(3, 2, 1, false));
    const float want_excl[4] = {3, 4, 6, 7};
    tu_assert_close(y->data, want_excl, 4, 1e-6, 1e-6);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

/* ---- Against the naive reference, table-driven ---------------------------------------- */

struct pool_case {
    int64_t n, c, h, w;
    struct tg_pool2d_params p;
};

static const struct pool_case pool_cases[] = {
        {2, 3, 8, 8, {2, 2, 2, 2, 0, 0, true}},    // fast path
        {2, 3, 9, 7, {2, 2, 2, 2, 0, 0, true}},    // fast path, odd sizes drop a row/column
        {2, 3, 9, 7, {3, 3, 2, 2, 1, 1, true}},    // ResNet stem
        {1, 2, 5, 6, {3, 3, 1, 1, 1, 1, false}},   // same-size output
        {2, 2, 5, 5, {2, 2, 1, 1, 0, 0, true}},    // overlapping windows
        {1, 3, 7, 10, {3, 2, 2, 3, 1, 1, false}},  // per-axis settings
        {1, 1, 6, 9, {4, 5, 3, 1, 2, 2, true}},    // padding = kernel / 2
        {3, 1, 4, 4, {4, 4, 4, 4, 0, 0, true}},    // one window per plane
        {1, 1, 1, 1, {1, 1, 1, 1, 0, 0, false}},   // identity
        {4, 16, 32, 32, {2, 2, 2, 2, 0, 0, true}}, // threaded fast path
        {4, 16, 32, 33, {3, 3, 2, 2, 1, 1, false}} // threaded generic path
};

START_TEST(test_max_pool2d_matches_naive)
{
    const struct pool_case *pc = &pool_cases[_i];
    uint64_t rng = 100 + (uint64_t)_i;
    struct tg_tensor *x = tu_tensor(pc->n, pc->c, pc->h, pc->w, (int64_t)-1);
    tu_fill_distinct(x, &rng, 0.01f);
    struct tg_tensor *y = tg_max_pool2d(x, &pc->p);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(y->shape[2], out_size(pc->h, pc->p.kernel_h, pc->p.stride_h, pc->p.pad_h));
    ck_assert_int_eq(y->shape[3], out_size(pc->w, pc->p.kernel_w, pc->p.stride_w, pc->p.pad_w));

    float *want = malloc((size_t)y->n_elems * sizeof(float));
    int64_t *idx = malloc((size_t)y->n_elems * sizeof(int64_t));
    naive_max_pool(want, idx, x, &pc->p);
    tu_assert_close(y->data, want, y->n_elems, 0, 0);

    /* Backward: each seed value lands on its window's winner. */
    float *seed = malloc((size_t)y->n_elems * sizeof(float));
    for (int64_t i = 0; i < y->n_elems; i++)
        seed[i] = tu_rand_uniform(&rng, -1, 1);
    float *dx = malloc((size_t)x->n_elems * sizeof(float));
    float *dx_want = calloc((size_t)x->n_elems, sizeof(float));
    for (int64_t i = 0; i < y->n_elems; i++)
        dx_want[idx[i]] += seed[i];
    run_backward(tg_max_pool2d, x, &pc->p, seed, NULL, dx);
    tu_assert_close(dx, dx_want, x->n_elems, 1e-6, 1e-6);

    free(dx_want);
    free(dx);
    free(seed);
    free(idx);
    free(want);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_avg_pool2d_matches_naive_both_pad_modes)
{
    const struct pool_case *pc = &pool_cases[_i];
    uint64_t rng = 200 + (uint64_t)_i;
    struct tg_tensor *x = tu_tensor(pc->n, pc->c, pc->h, pc->w, (int64_t)-1);
    tu_fill_uniform(x, &rng, -2, 2);
    for (int mode = 0; mode < 2; mode++) {
        struct tg_pool2d_params p = pc->p;
        p.count_include_pad = mode == 1;
        struct tg_tensor *y = tg_avg_pool2d(x, &p);
        ck_assert_msg(y != NULL, "%s", tg_last_error());
        float *want = malloc((size_t)y->n_elems * sizeof(float));
        naive_avg_pool(want, x, &p);
        tu_assert_close(y->data, want, y->n_elems, 1e-6, 1e-5);

        float *seed = malloc((size_t)y->n_elems * sizeof(float));
        for (int64_t i = 0; i < y->n_elems; i++)
            seed[i] = tu_rand_uniform(&rng, -1, 1);
        float *dx = malloc((size_t)x->n_elems * sizeof(float));
        float *dx_want = malloc((size_t)x->n_elems * sizeof(float));
        naive_avg_pool_grad(dx_want, seed, x, &p);
        run_backward(tg_avg_pool2d, x, &p, seed, NULL, dx);
        tu_assert_close(dx, dx_want, x->n_elems, 1e-6, 1e-5);
        free(dx_want);
        free(dx);
        free(seed);
        free(want);
        tg_tensor_free(y);
    }
    tg_tensor_free(x);
}
END_TEST

/* ---- Ties and NaN ------------------------------------------------------------------- */

/* Equal values: the first in row-major window order alone gets the gradient. */
START_TEST(test_max_pool2d_ties_first_element_wins)
{
    /* Fast path: one 2x2 window of equal values. */
    const float ones[4] = {1, 1, 1, 1};
    struct tg_tensor *x = tensor4(1, 1, 2, 2, ones);
    float y, dx[9];
    run_backward(tg_max_pool2d, x, &P2D(2, 2, 0, true), NULL, &y, dx);
    ck_assert_float_eq(y, 1.0f);
    const float want_fast[4] = {1, 0, 0, 0};
    tu_assert_close(dx, want_fast, 4, 0, 0);
    tg_tensor_free(x);

    /* Tie after the first element: [0 3; 3 1] -> element 1 wins over element 2. */
    const float later[4] = {0, 3, 3, 1};
    x = tensor4(1, 1, 2, 2, later);
    run_backward(tg_max_pool2d, x, &P2D(2, 2, 0, true), NULL, &y, dx);
    const float want_later[4] = {0, 1, 0, 0};
    tu_assert_close(dx, want_later, 4, 0, 0);
    tg_tensor_free(x);

    /* Generic path: overlapping 2x2 windows, stride 1, on a constant 3x3 plane. */
    const float flat[9] = {2, 2, 2, 2, 2, 2, 2, 2, 2};
    x = tensor4(1, 1, 3, 3, flat);
    run_backward(tg_max_pool2d, x, &P2D(2, 1, 0, true), NULL, NULL, dx);
    const float want_generic[9] = {1, 1, 0, 1, 1, 0, 0, 0, 0};
    tu_assert_close(dx, want_generic, 9, 0, 0);
    tg_tensor_free(x);

    /* Padded window: the first real element wins, padding never does. */
    const float zeros[4] = {0, 0, 0, 0};
    x = tensor4(1, 1, 2, 2, zeros);
    run_backward(tg_max_pool2d, x, &P2D(3, 2, 1, true), NULL, &y, dx);
    ck_assert_float_eq(y, 0.0f);
    tu_assert_close(dx, want_fast, 4, 0, 0);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_max_pool2d_nan_wins_window)
{
    const float v[8] = {1, NAN, 2, 0, 5, 6, 7, -INFINITY};
    struct tg_tensor *x = tensor4(1, 1, 2, 4, v);
    float y[2], dx[8];
    run_backward(tg_max_pool2d, x, &P2D(2, 2, 0, true), NULL, y, dx);
    ck_assert(isnan(y[0]));
    ck_assert_float_eq(y[1], 7.0f);
    const float want[8] = {0, 1, 0, 0, 0, 0, 1, 0};
    tu_assert_close(dx, want, 8, 0, 0);

    /* Generic path too. */
    run_backward(tg_max_pool2d, x, &P2D(2, 1, 0, true), NULL, NULL, dx);
    const float want_generic[8] = {0, 2, 0, 0, 0, 0, 1, 0};
    tu_assert_close(dx, want_generic, 8, 0, 0);
    tg_tensor_free(x);
}
END_TEST

/* ---- Gradient checks -------------------------------------------------------------- */

static struct tg_tensor *max_pool_fn(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return tg_max_pool2d(in[0], user);
}

static struct tg_tensor *avg_pool_fn(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return tg_avg_pool2d(in[0], user);
}

/* Distinct values 0.01 apart: a step of eps = 1e-3 never changes a winner. */
START_TEST(test_max_pool2d_gradcheck)
{
    const struct pool_case *pc = &pool_cases[_i];
    uint64_t rng = 300 + (uint64_t)_i;
    struct tg_tensor *x = tu_tensor(pc->n, pc->c, pc->h, pc->w, (int64_t)-1);
    tu_fill_distinct(x, &rng, 0.01f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_pool2d_params p = pc->p;
    tu_assert_gradcheck(max_pool_fn, &p, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_avg_pool2d_gradcheck)
{
    const struct pool_case *pc = &pool_cases[_i];
    uint64_t rng = 400 + (uint64_t)_i;
    struct tg_tensor *x = tu_tensor(pc->n, pc->c, pc->h, pc->w, (int64_t)-1);
    tu_fill_uniform(x, &rng, -1, 1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    for (int mode = 0; mode < 2; mode++) {
        struct tg_pool2d_params p = pc->p;
        p.count_include_pad = mode == 1;
        tu_assert_gradcheck(avg_pool_fn, &p, 1, &x, NULL);
    }
    tg_tensor_free(x);
}
END_TEST

/* ---- Recording modes ---------------------------------------------------------------- */

START_TEST(test_max_pool2d_no_grad_records_nothing)
{
    struct tg_tensor *x = tensor4(1, 1, 4, 4, ramp16);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    tg_tape_set_grad_enabled(tape, false);
    struct tg_tensor *y = tg_max_pool2d(x, &P2D(2, 2, 0, true));
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_eq(y->tape, tape);
    ck_assert(!y->requires_grad);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 0);
    const float want[4] = {5, 7, 13, 15};
    tu_assert_close(y->data, want, 4, 0, 0);
    y = tg_avg_pool2d(x, &P2D(2, 2, 0, true));
    ck_assert_ptr_nonnull(y);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 0);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

/* A second step of the same shapes on a reset tape makes no heap allocation. */
START_TEST(test_max_pool2d_warm_step_allocates_nothing)
{
    struct tg_tensor *x = tu_tensor(2, 3, 8, 8, (int64_t)-1);
    uint64_t rng = 7;
    tu_fill_distinct(x, &rng, 0.01f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    uint64_t before = 0;
    for (int step = 0; step < 3; step++) {
        if (step == 2)
            before = tg_alloc_count();
        struct tg_tensor *y = tg_max_pool2d(x, &P2D(3, 2, 1, true));
        struct tg_tensor *z = tg_avg_pool2d(y, &P2D(2, 1, 0, false));
        struct tg_tensor *s = tg_tape_tensor_new(tape, z->n_dims, z->shape);
        tg_tensor_fill(s, 1.0f);
        ck_assert_int_eq(tg_tape_backward(tape, z, s, 0), TG_OK);
        tg_tape_reset(tape);
    }
    ck_assert_uint_eq(tg_alloc_count(), before);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

/* ---- Errors ------------------------------------------------------------------------ */

/* Call both ops with p on x; each must fail with status and a message naming it. */
static void assert_both_refuse(struct tg_tensor *x,
                               const struct tg_pool2d_params *p,
                               enum tg_status status,
                               const char *fragment)
{
    float *before = malloc((size_t)x->n_elems * sizeof(float) + 1);
    memcpy(before, x->data, (size_t)x->n_elems * sizeof(float));
    struct tg_tensor *(*ops[2])(struct tg_tensor *,
                                const struct tg_pool2d_params *) = {tg_max_pool2d, tg_avg_pool2d};
    const char *names[2] = {"tg_max_pool2d: ", "tg_avg_pool2d: "};
    for (int k = 0; k < 2; k++) {
        tg_clear_error();
        ck_assert_ptr_null(ops[k](x, p));
        ck_assert_int_eq(tg_last_status(), status);
        ck_assert_msg(strncmp(tg_last_error(), names[k], strlen(names[k])) == 0, "%s",
                      tg_last_error());
        ck_assert_msg(strstr(tg_last_error(), fragment) != NULL, "%s", tg_last_error());
    }
    ck_assert_mem_eq(before, x->data, (size_t)x->n_elems * sizeof(float));
    free(before);
}

START_TEST(test_pool2d_rejects_bad_settings)
{
    struct tg_tensor *x = tensor4(1, 1, 4, 4, ramp16);
    assert_both_refuse(x, &P2D(0, 1, 0, true), TG_ERR_INVALID, "kernel must be positive");
    assert_both_refuse(x, &P2D(2, 0, 0, true), TG_ERR_INVALID, "stride must be positive");
    assert_both_refuse(x, &P2D(2, 2, -1, true), TG_ERR_INVALID, "negative");
    assert_both_refuse(x, &P2D(3, 1, 2, true), TG_ERR_INVALID, "padding exceeds half the kernel");
    assert_both_refuse(x, &P2D(2, 1, 2, true), TG_ERR_INVALID, "expected pad <= 1x1");
    assert_both_refuse(x, &P2D(6, 1, 0, true), TG_ERR_SHAPE, "kernel larger than the padded");
    tg_clear_error();
    ck_assert_ptr_null(tg_max_pool2d(x, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_max_pool2d"));
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_pool2d_rejects_bad_shapes)
{
    struct tg_tensor *x3 = tu_tensor(1, 4, 4, (int64_t)-1);
    assert_both_refuse(x3, &P2D(2, 2, 0, true), TG_ERR_SHAPE, "not 4-d (got 1x4x4");
    tg_tensor_free(x3);
    struct tg_tensor *empty = tu_tensor(1, 1, 0, 4, (int64_t)-1);
    assert_both_refuse(empty, &P2D(1, 1, 0, true), TG_ERR_SHAPE, "empty input plane");
    tg_tensor_free(empty);

    /*
     * A plane of more than INT32_MAX elements cannot index its winners. The
     * shape check refuses it before any data is read, so a tensor header
     * without storage stands in for the 16 GiB input.
     */
    struct tg_tensor huge = {.n_dims = 4, .shape = {1, 1, 65536, 65536, 1, 1}};
    huge.n_elems = (int64_t)65536 * 65536;
    tg_clear_error();
    ck_assert_ptr_null(tg_max_pool2d(&huge, &P2D(2, 2, 0, true)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_max_pool2d: input plane too large"));

    /* An empty batch is fine: an empty output. */
    struct tg_tensor *nobatch = tu_tensor(0, 3, 4, 4, (int64_t)-1);
    struct tg_tensor *y = tg_max_pool2d(nobatch, &P2D(2, 2, 0, true));
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->n_elems, 0);
    ck_assert_int_eq(y->shape[2], 2);
    tg_tensor_free(y);
    tg_tensor_free(nobatch);
}
END_TEST

START_TEST(test_pool2d_null_input_keeps_first_error)
{
    tg_error_set(TG_ERR_SHAPE, "tg_conv2d: earlier failure");
    ck_assert_ptr_null(tg_max_pool2d(NULL, &P2D(2, 2, 0, true)));
    ck_assert_str_eq(tg_last_error(), "tg_conv2d: earlier failure");
    ck_assert_ptr_null(tg_avg_pool2d(NULL, &P2D(2, 2, 0, true)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    tg_clear_error();
    ck_assert_ptr_null(tg_max_pool2d(NULL, &P2D(2, 2, 0, true)));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_max_pool2d"));
}
END_TEST

START_TEST(test_pool2d_reports_failed_allocation)
{
    struct tg_tensor *x = tensor4(1, 1, 4, 4, ramp16);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tg_clear_error();
    tg_alloc_fail_at(1);
    ck_assert_ptr_null(tg_max_pool2d(x, &P2D(2, 2, 0, true)));
    tg_alloc_fail_at(0);
    ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_max_pool2d"));

    /* On a cold tape, every allocation of a recorded call may fail in turn. */
    for (uint64_t k = 1; k < 8; k++) {
        struct tg_tape *tape = tg_tape_new();
        tg_tape_begin(tape);
        tg_alloc_fail_at(k);
        struct tg_tensor *y = tg_max_pool2d(x, &P2D(3, 1, 1, true));
        tg_alloc_fail_at(0);
        if (y == NULL) {
            ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
            ck_assert_uint_eq(tg_tape_n_entries(tape), 0);
        } else {
            ck_assert_uint_eq(tg_tape_n_entries(tape), 1);
        }
        tg_tape_end(tape);
        tg_tape_free(tape);
    }
    tg_tensor_free(x);
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("ops-pool");
    int n_cases = (int)(sizeof(pool_cases) / sizeof(pool_cases[0]));

    TCase *tc = tcase_create("max_pool2d");
    tcase_add_test(tc, test_max_pool2d_2x2_stride_2_by_hand);
    tcase_add_test(tc, test_max_pool2d_padding_by_hand);
    tcase_add_loop_test(tc, test_max_pool2d_matches_naive, 0, n_cases);
    tcase_add_test(tc, test_max_pool2d_ties_first_element_wins);
    tcase_add_test(tc, test_max_pool2d_nan_wins_window);
    tcase_add_loop_test(tc, test_max_pool2d_gradcheck, 0, n_cases - 2); // the big ones: too slow
    tcase_add_test(tc, test_max_pool2d_no_grad_records_nothing);
    tcase_add_test(tc, test_max_pool2d_warm_step_allocates_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("avg_pool2d");
    tcase_add_test(tc, test_avg_pool2d_by_hand);
    tcase_add_loop_test(tc, test_avg_pool2d_matches_naive_both_pad_modes, 0, n_cases);
    tcase_add_loop_test(tc, test_avg_pool2d_gradcheck, 0, n_cases - 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_pool2d_rejects_bad_settings);
    tcase_add_test(tc, test_pool2d_rejects_bad_shapes);
    tcase_add_test(tc, test_pool2d_null_input_keeps_first_error);
    tcase_add_test(tc, test_pool2d_reports_failed_allocation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(pool_suite());
}
