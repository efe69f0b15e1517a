/*
 * Reductions: sum and mean of everything and along an axis (negative axes,
 * keepdim, 0-d and empty inputs), softmax and log-softmax along any axis
 * (logits of magnitude 1e4), checked against hand-worked values, a naive
 * double-precision implementation written here, the PyTorch reference cases
 * in tests/data/torch-ops.jsonl, and central differences.
 *
 * Tolerances: sums are accumulated in double, so they must match a double
 * naive sum to 1e-6 relative even over 1e6 elements; softmax values to 2e-7
 * relative (one float rounding); log-softmax of large logits to one ulp of the
 * PyTorch value; gradchecks use the defaults (atol 1e-3, rtol 1e-2).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "refcase.h"
#include "testutil.h"

#define DATA_FILE TG_TEST_DATA_DIR "/torch-ops.jsonl"

/* ---- Helpers ------------------------------------------------------------- */

static struct tg_tensor *mk(int n_dims, const int64_t *shape, const float *data)
{
    struct tg_tensor *t = tg_tensor_from_data(n_dims, shape, data);
    ck_assert_msg(t != NULL, "tg_tensor_from_data: %s", tg_last_error());
    return t;
}

#define SHP(...) ((const int64_t[]){__VA_ARGS__})
#define VAL(...) ((const float[]){__VA_ARGS__})

static void assert_shape(const struct tg_tensor *t, int n_dims, const int64_t *shape)
{
    ck_assert_int_eq(t->n_dims, n_dims);
    for (int d = 0; d < n_dims; d++)
        ck_assert_int_eq(t->shape[d], shape[d]);
}

/* View t as (outer, len, inner) around axis a (normalised). */
static void split(const struct tg_tensor *t, int a, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    *len = t->shape[a];
    for (int d = 0; d < a; d++)
        *outer *= t->shape[d];
    for (int d = a + 1; d < t->n_dims; d++)
        *inner *= t->shape[d];
}

/* Run backward of y with the given seed (NULL: ones) on the current tape. */
static void backward_with_seed(struct tg_tape *tape, struct tg_tensor *y, const float *seed)
{
    struct tg_tensor *s = tg_tape_tensor_new(tape, y->n_dims, y->shape);
    ck_assert_ptr_nonnull(s);
    for (int64_t i = 0; i < s->n_elems; i++)
        s->data[i] = seed ? seed[i] : 1.0f;
    ck_assert_int_eq(tg_tape_backward(tape, y, s, 0), TG_OK);
}

/* ---- Full sum and mean ------------------------------------------------------- */

START_TEST(test_sum_values)
{
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    struct tg_tensor *s = tg_sum(x);
    struct tg_tensor *m = tg_mean(x);
    ck_assert(s != NULL && m != NULL);
    ck_assert_int_eq(s->n_dims, 0);
    ck_assert_int_eq(m->n_dims, 0);
    ck_assert_int_eq(s->n_elems, 1);
    ck_assert_float_eq(s->data[0], 21.0f);
    ck_assert_float_eq(m->data[0], 3.5f);
    tg_tensor_free(s);
    tg_tensor_free(m);
    tg_tensor_free(x);

    /* A 0-d input is its own sum and mean. */
    x = mk(0, NULL, VAL(-2.5f));
    s = tg_sum(x);
    m = tg_mean(x);
    ck_assert_float_eq(s->data[0], -2.5f);
    ck_assert_float_eq(m->data[0], -2.5f);
    tg_tensor_free(s);
    tg_tensor_free(m);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_sum_empty)
{
    /* Sum of nothing is 0; mean of nothing is NaN, as in PyTorch. */
    struct tg_tensor *x = mk(2, SHP(3, 0), NULL);
    struct tg_tensor *s = tg_sum(x);
    struct tg_tensor *m = tg_mean(x);
    ck_assert(s != NULL && m != NULL);
    ck_assert_float_eq(s->data[0], 0.0f);
    ck_assert(isnan(m->data[0]));
    tg_tensor_free(s);
    tg_tensor_free(m);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_sum_large_accurate)
{
    /*
     * 1e6 + 3 elements: a float running sum of 0.1f a million times is off by
     * about 1%; the sum here must match a double sum to 1e-6 relative.
     */
    int64_t n = 1000003;
    struct tg_tensor *x = mk(1, &n, NULL);
    tg_tensor_fill(x, 0.1f);
    struct tg_tensor *s = tg_sum(x);
    ck_assert_ptr_nonnull(s);
    double want = (double)n * (double)0.1f;
    ck_assert_msg(fabs(s->data[0] - want) <= 1e-6 * want, "got %.9g, want %.9g", s->data[0], want);
    tg_tensor_free(s);

    /* Random values of both signs, and the mean. */
    uint64_t rng = 11;
    tu_fill_uniform(x, &rng, -1.0f, 3.0f);
    double ref = 0.0;
    for (int64_t i = 0; i < n; i++)
        ref += x->data[i];
    s = tg_sum(x);
    struct tg_tensor *m = tg_mean(x);
    ck_assert(s != NULL && m != NULL);
    ck_assert_msg(fabs(s->data[0] - ref) <= 1e-6 * fabs(ref), "got %.9g, want %.9g", s->data[0],
                  ref);
    ck_assert_msg(fabs(m->data[0] - ref / (double)n) <= 1e-6 * fabs(ref / (double)n),
                  "mean %.9g, want %.9g", m->data[0], ref / (double)n);
    tg_tensor_free(s);
    tg_tensor_free(m);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_sum_backward_values)
{
    /* d sum / dx = upstream everywhere, d mean / dx = upstream / n. */
    struct tg_tensor *x = mk(2, SHP(2, 2), VAL(1, 2, 3, 4));
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    backward_with_seed(tape, tg_sum(x), VAL(3));
    tu_assert_close(x->grad, VAL(3, 3, 3, 3), 4, 0, 0);
    tg_tape_reset(tape);
    tg_tensor_zero_grad(x);
    backward_with_seed(tape, tg_mean(x), VAL(2));
    tu_assert_close(x->grad, VAL(0.5f, 0.5f, 0.5f, 0.5f), 4, 0, 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

static struct tg_tensor *gc_sum(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return user ? tg_mean(in[0]) : tg_sum(in[0]);
}

START_TEST(test_sum_gradcheck)
{
    uint64_t rng = 3;
    struct tg_tensor *x = mk(3, SHP(2, 3, 4), NULL);
    tu_fill_uniform(x, &rng, -1.0f, 1.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(gc_sum, NULL, 1, &x, NULL);
    tu_assert_gradcheck(gc_sum, x, 1, &x, NULL); // any non-NULL user: the mean
    tg_tensor_free(x);
}
END_TEST

/* ---- Sum and mean along an axis ------------------------------------------------ */

START_TEST(test_sum_axis_values)
{
    /* x = [[1, 2, 3], [4, 5, 6]]. */
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    struct tg_tensor *y;

    y = tg_sum_axis(x, 0, false);
    assert_shape(y, 1, SHP(3));
    tu_assert_close(y->data, VAL(5, 7, 9), 3, 0, 0);
    tg_tensor_free(y);
    y = tg_sum_axis(x, 1, true);
    assert_shape(y, 2, SHP(2, 1));
    tu_assert_close(y->data, VAL(6, 15), 2, 0, 0);
    tg_tensor_free(y);
    y = tg_sum_axis(x, -1, false);
    assert_shape(y, 1, SHP(2));
    tu_assert_close(y->data, VAL(6, 15), 2, 0, 0);
    tg_tensor_free(y);
    y = tg_mean_axis(x, -2, true);
    assert_shape(y, 2, SHP(1, 3));
    tu_assert_close(y->data, VAL(2.5f, 3.5f, 4.5f), 3, 0, 0);
    tg_tensor_free(y);
    y = tg_mean_axis(x, 1, false);
    assert_shape(y, 1, SHP(2));
    tu_assert_close(y->data, VAL(2, 5), 2, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_sum_axis_scalar_and_empty)
{
    /* A 0-d input accepts axis 0 and -1 and gives a 0-d output, as in PyTorch. */
    struct tg_tensor *x = mk(0, NULL, VAL(4));
    struct tg_tensor *y = tg_sum_axis(x, -1, true);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->n_dims, 0);
    ck_assert_float_eq(y->data[0], 4.0f);
    tg_tensor_free(y);
    y = tg_mean_axis(x, 0, false);
    ck_assert_ptr_nonnull(y);
    ck_assert_float_eq(y->data[0], 4.0f);
    tg_tensor_free(y);
    tg_tensor_free(x);

    /* Reducing an empty axis: sums are 0, means NaN; an empty other axis gives nothing. */
    x = mk(2, SHP(2, 0), NULL);
    y = tg_sum_axis(x, 1, false);
    assert_shape(y, 1, SHP(2));
    tu_assert_close(y->data, VAL(0, 0), 2, 0, 0);
    tg_tensor_free(y);
    y = tg_mean_axis(x, 1, false);
    ck_assert(isnan(y->data[0]) && isnan(y->data[1]));
    tg_tensor_free(y);
    y = tg_sum_axis(x, 0, true);
    assert_shape(y, 2, SHP(1, 0));
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

/* Naive sum or mean along axis a (normalised), in double. */
static void naive_sum_axis(float *y, const struct tg_tensor *x, int a, bool mean)
{
    int64_t outer, len, inner;
    split(x, a, &outer, &len, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double s = 0.0;
            for (int64_t l = 0; l < len; l++)
                s += x->data[(o * len + l) * inner + i];
            y[o * inner + i] = (float)(mean ? s / (double)len : s);
        }
}

struct shape_case {
    int n_dims;
    int64_t shape[TG_MAX_DIMS];
};

static const struct shape_case axis_shapes[] = {
        {1, {7}},           {2, {3, 5}},          {3, {2, 3, 4}},
        {4, {2, 3, 4, 5}},  {5, {2, 1, 3, 2, 2}}, {6, {2, 2, 1, 3, 2, 2}},
        {3, {4, 50, 3000}}, // rows longer than a chunk, above the threading threshold
        {2, {3, 200000}},   // long contiguous lanes
};
#define N_AXIS_SHAPES ((int)(sizeof(axis_shapes) / sizeof(axis_shapes[0])))

START_TEST(test_sum_axis_matches_naive)
{
    const struct shape_case *c = &axis_shapes[_i];
    uint64_t rng = 20 + (uint64_t)_i;
    struct tg_tensor *x = mk(c->n_dims, c->shape, NULL);
    tu_fill_uniform(x, &rng, -1.0f, 2.0f);
    float *want = malloc((size_t)x->n_elems * sizeof(float));
    ck_assert_ptr_nonnull(want);

    for (int a = -c->n_dims; a < c->n_dims; a++) {
        int an = a < 0 ? a + c->n_dims : a;
        for (int mean = 0; mean < 2; mean++) {
            for (int keep = 0; keep < 2; keep++) {
                struct tg_tensor *y = mean ? tg_mean_axis(x, a, keep) : tg_sum_axis(x, a, keep);
                ck_assert_msg(y != NULL, "%s", tg_last_error());
                ck_assert_int_eq(y->n_dims, keep ? c->n_dims : c->n_dims - 1);
                for (int d = 0, k = 0; d < c->n_dims; d++) {
                    if (d == an && !keep)
                        continue;
                    ck_assert_int_eq(y->shape[k], d == an ? 1 : c->shape[d]);
                    k++;
                }
                naive_sum_axis(want, x, an, mean);
                tu_assert_close(y->data, want, y->n_elems, 1e-6, 1e-6);
                tg_tensor_free(y);
            }
        }
    }
    free(want);
    tg_tensor_free(x);
}
END_TEST

struct axis_call {
    int op; // 0 sum_axis, 1 mean_axis, 2 softmax, 3 log_softmax
    int axis;
    bool keepdim;
};

static struct tg_tensor *apply_axis(const struct axis_call *c, struct tg_tensor *x)
{
    switch (c->op) {
    case 0:
        return tg_sum_axis(x, c->axis, c->keepdim);
    case 1:
        return tg_mean_axis(x, c->axis, c->keepdim);
    case 2:
        return tg_softmax(x, c->axis);
    default:
        return tg_log_softmax(x, c->axis);
    }
}

static struct tg_tensor *gc_axis(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return apply_axis(user, in[0]);
}

START_TEST(test_axis_ops_gradcheck)
{
    /* Every op on every axis of (2, 3, 4); also both keepdim settings of the sums. */
    uint64_t rng = 30;
    struct tg_tensor *x = mk(3, SHP(2, 3, 4), NULL);
    tu_fill_uniform(x, &rng, -2.0f, 2.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    for (int op = 0; op < 4; op++)
        for (int a = -3; a < 3; a++)
            for (int keep = 0; keep < 2; keep++) {
                struct axis_call c = {op, a, keep};
                tu_assert_gradcheck(gc_axis, &c, 1, &x, NULL);
            }
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_sum_axis_backward_values)
{
    /* x (2, 3), sum over axis 0 with upstream [1, 2, 3]: each column gets its value. */
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    backward_with_seed(tape, tg_sum_axis(x, 0, false), VAL(1, 2, 3));
    tu_assert_close(x->grad, VAL(1, 2, 3, 1, 2, 3), 6, 0, 0);
    tg_tape_reset(tape);
    tg_tensor_zero_grad(x);
    /* mean over axis 1 keepdim, upstream [3, 6]: each row gets upstream / 3. */
    backward_with_seed(tape, tg_mean_axis(x, 1, true), VAL(3, 6));
    tu_assert_close(x->grad, VAL(1, 1, 1, 2, 2, 2), 6, 1e-7, 1e-7);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

/* ---- Softmax and log-softmax --------------------------------------------------------- */

START_TEST(test_softmax_values)
{
    /* softmax([1, 2, 3]) and log-softmax, worked out in double. */
    struct tg_tensor *x = mk(1, SHP(3), VAL(1, 2, 3));
    struct tg_tensor *y = tg_softmax(x, 0);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 1, SHP(3));
    tu_assert_close(y->data, VAL(0.0900305732f, 0.244728471f, 0.665240956f), 3, 0, 2e-7);
    tg_tensor_free(y);
    y = tg_log_softmax(x, -1);
    ck_assert_ptr_nonnull(y);
    tu_assert_close(y->data, VAL(-2.40760596f, -1.40760596f, -0.407605964f), 3, 0, 2e-7);
    tg_tensor_free(y);
    tg_tensor_free(x);

    /* A 0-d input: the softmax of one value is 1, its log 0. */
    x = mk(0, NULL, VAL(7));
    y = tg_softmax(x, 0);
    ck_assert_float_eq(y->data[0], 1.0f);
    tg_tensor_free(y);
    y = tg_log_softmax(x, -1);
    ck_assert_float_eq(y->data[0], 0.0f);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_softmax_large_logits)
{
    /* exp(1e4) overflows even double; subtracting the max keeps everything finite. */
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1e4f, -1e4f, 1e4f - 1.0f, -3e4f, -3e4f, -3e4f));
    struct tg_tensor *y = tg_softmax(x, 1);
    struct tg_tensor *l = tg_log_softmax(x, 1);
    ck_assert(y != NULL && l != NULL);
    double e = exp(-1.0);
    tu_assert_close(y->data, VAL((float)(1.0 / (1.0 + e)), 0, (float)(e / (1.0 + e))), 3, 0, 2e-7);
    tu_assert_close(y->data + 3, VAL(1.0f / 3, 1.0f / 3, 1.0f / 3), 3, 0, 2e-7);
    double lse = log1p(e);
    tu_assert_close(l->data, VAL((float)-lse, (float)(-2e4 - lse), (float)(-1.0 - lse)), 3, 0, 0);
    tu_assert_close(l->data + 3, VAL((float)-log(3.0), (float)-log(3.0), (float)-log(3.0)), 3, 0,
                    0);
    tg_tensor_free(y);
    tg_tensor_free(l);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_softmax_nan_propagates)
{
    /* A NaN makes its whole lane NaN and leaves the other lanes alone. */
    struct tg_tensor *x = mk(2, SHP(2, 2), VAL(NAN, 1, 0, 0));
    struct tg_tensor *y = tg_softmax(x, 1);
    ck_assert(isnan(y->data[0]) && isnan(y->data[1]));
    tu_assert_close(y->data + 2, VAL(0.5f, 0.5f), 2, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

/* Naive softmax or log-softmax along axis a, in double. */
static void naive_softmax(float *y, const struct tg_tensor *x, int a, bool log_out)
{
    int64_t outer, len, inner;
    split(x, a, &outer, &len, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xl = x->data + o * len * inner + i;
            double m = -INFINITY;
            for (int64_t l = 0; l < len; l++)
                m = fmax(m, xl[l * inner]);
            double s = 0.0;
            for (int64_t l = 0; l < len; l++)
                s += exp(xl[l * inner] - m);
            for (int64_t l = 0; l < len; l++) {
                double v = xl[l * inner] - m;
                y[o * len * inner + i + l * inner] = (float)(log_out ? v - log(s) : exp(v) / s);
            }
        }
}

/* Naive backward from the output yv: softmax y (g - <g, y>), log-softmax g - p sum(g). */
static void naive_softmax_backward(
        float *dx, const float *g, const float *yv, const struct tg_tensor *x, int a, bool log_out)
{
    int64_t outer, len, inner;
    split(x, a, &outer, &len, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i;
            double s = 0.0;
            for (int64_t l = 0; l < len; l++) {
                int64_t k = base + l * inner;
                s += log_out ? g[k] : (double)g[k] * yv[k];
            }
            for (int64_t l = 0; l < len; l++) {
                int64_t k = base + l * inner;
                dx[k] = (float)(log_out ? g[k] - exp(yv[k]) * s : yv[k] * (g[k] - s));
            }
        }
}

static const struct shape_case softmax_shapes[] = {
        {1, {9}},
        {2, {4, 10}},
        {3, {2, 5, 3}},
        {4, {2, 3, 4, 5}},
        {6, {2, 1, 3, 2, 2, 3}},
        {2, {300, 300}},    // above the threading threshold
        {3, {2, 2000, 20}}, // long strided lanes
};
#define N_SOFTMAX_SHAPES ((int)(sizeof(softmax_shapes) / sizeof(softmax_shapes[0])))

START_TEST(test_softmax_matches_naive)
{
    const struct shape_case *c = &softmax_shapes[_i];
    uint64_t rng = 50 + (uint64_t)_i;
    struct tg_tensor *x = mk(c->n_dims, c->shape, NULL);
    tu_fill_uniform(x, &rng, -8.0f, 8.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    size_t bytes = (size_t)x->n_elems * sizeof(float);
    float *want = malloc(bytes);
    float *g = malloc(bytes);
    ck_assert(want != NULL && g != NULL);
    for (int64_t i = 0; i < x->n_elems; i++)
        g[i] = tu_rand_uniform(&rng, -1.0f, 1.0f);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);

    for (int a = -c->n_dims; a < c->n_dims; a++) {
        int an = a < 0 ? a + c->n_dims : a;
        for (int lg = 0; lg < 2; lg++) {
            struct tg_tensor *y = lg ? tg_log_softmax(x, a) : tg_softmax(x, a);
            ck_assert_msg(y != NULL, "%s", tg_last_error());
            assert_shape(y, c->n_dims, c->shape);
            naive_softmax(want, x, an, lg);
            tu_assert_close(y->data, want, y->n_elems, lg ? 1e-6 : 1e-9, 2e-7);

            tg_tensor_zero_grad(x);
            backward_with_seed(tape, y, g);
            naive_softmax_backward(want, g, y->data, x, an, lg);
            tu_assert_close(x->grad, want, x->n_elems, 1e-6, 1e-5);
            tg_tape_reset(tape);
        }
    }
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    free(want);
    free(g);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_softmax_gradcheck_channels)
{
    /* Softmax over the channels of an NCHW tensor, the segmentation case. */
    uint64_t rng = 60;
    struct tg_tensor *x = mk(4, SHP(2, 4, 3, 3), NULL);
    tu_fill_uniform(x, &rng, -3.0f, 3.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct axis_call sm = {2, 1, false};
    struct axis_call lsm = {3, 1, false};
    tu_assert_gradcheck(gc_axis, &sm, 1, &x, NULL);
    tu_assert_gradcheck(gc_axis, &lsm, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

/* ---- PyTorch reference cases ------------------------------------------------------------ */

/*
 * Run every reduction and softmax case of the reference file: output to
 * rtol_out, input gradient (of sum(y * upstream)) to 1e-4 relative.
 */
START_TEST(test_reduce_matches_torch)
{
    struct refcase_set set;
    char err[REFCASE_ERR_SIZE];
    ck_assert_msg(refcase_load(DATA_FILE, &set, err) == TG_OK, "%s", err);
    int n_run = 0;
    bool saw_large = false;
    for (int i = 0; i < set.n; i++) {
        const struct refcase *rc = &set.cases[i];
        int op;
        if (strcmp(rc->op, "sum") == 0)
            op = 0;
        else if (strcmp(rc->op, "mean") == 0)
            op = 1;
        else if (strcmp(rc->op, "softmax") == 0)
            op = 2;
        else if (strcmp(rc->op, "log_softmax") == 0)
            op = 3;
        else
            continue;
        const struct refcase_tensor *in = refcase_input(rc, "x");
        const struct refcase_tensor *gx = refcase_grad(rc, "x");
        ck_assert(in != NULL && gx != NULL && rc->output_is_tensor && rc->has_upstream);
        bool large = refcase_param_has(rc, "note");
        saw_large |= large;

        struct tg_tensor *x = mk(in->n_dims, in->shape, in->data);
        ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
        struct tg_tape *tape = tg_tape_new();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        struct tg_tensor *y;
        if (op < 2 && !refcase_param_has(rc, "axis")) {
            y = op ? tg_mean(x) : tg_sum(x);
        } else {
            struct axis_call c = {op, refcase_param_int(rc, "axis", 0), false};
            y = apply_axis(&c, x);
        }
        ck_assert_msg(y != NULL, "line %d: %s", rc->line, tg_last_error());
        assert_shape(y, rc->output.n_dims, rc->output.shape);
        /* Large logits: one ulp of the reference, which was rounded once from double. */
        tu_assert_close(y->data, rc->output.data, y->n_elems, large ? 0 : 1e-6,
                        large ? 1.2e-7 : 1e-5);
        backward_with_seed(tape, y, rc->upstream.data);
        tu_assert_close(x->grad, gx->data, x->n_elems, 1e-6, 1e-4);
        ck_assert_int_eq(tg_tape_end(tape), TG_OK);
        tg_tape_free(tape);
        tg_tensor_free(x);
        n_run++;
    }
    ck_assert_int_ge(n_run, 7);
    ck_assert(saw_large);
    refcase_set_free(&set);
}
END_TEST

/* ---- Errors, tape and no-tape calls ----------------------------------------------------- */

START_TEST(test_axis_ops_reject_bad_axis)
{
    static const char *names[4] = {"tg_sum_axis", "tg_mean_axis", "tg_softmax", "tg_log_softmax"};
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    struct tg_tensor *s = mk(0, NULL, VAL(1));
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    for (int op = 0; op < 4; op++) {
        static const int bad[] = {2, -3, 100, -100};
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
            struct axis_call c = {op, bad[j], false};
            tg_clear_error();
            ck_assert_ptr_null(apply_axis(&c, x));
            ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
            const char *msg = tg_last_error();
            ck_assert_msg(strncmp(msg, names[op], strlen(names[op])) == 0 && strstr(msg, "axis") &&
                                  strstr(msg, "2x3"),
                          "message: %s", msg);
        }
        struct axis_call c = {op, 1, false};
        ck_assert_ptr_null(apply_axis(&c, s));
        ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    }
    ck_assert_int_eq(tg_tape_n_entries(tape), 0);
    tu_assert_close(x->data, VAL(1, 2, 3, 4, 5, 6), 6, 0, 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(s);
}
END_TEST

/* Every op of the file on x: 0 sum, 1 mean, 2..5 the axis ops on axis -1. */
static struct tg_tensor *apply_any(int which, struct tg_tensor *x)
{
    if (which == 0)
        return tg_sum(x);
    if (which == 1)
        return tg_mean(x);
    struct axis_call c = {which - 2, -1, false};
    return apply_axis(&c, x);
}

static const char *const any_names[6] = {"tg_sum",       "tg_mean",    "tg_sum_axis",
                                         "tg_mean_axis", "tg_softmax", "tg_log_softmax"};

START_TEST(test_reduce_null_input)
{
    for (int k = 0; k < 6; k++) {
        tg_clear_error();
        ck_assert_ptr_null(apply_any(k, NULL));
        ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
        ck_assert_msg(strstr(tg_last_error(), any_names[k]) != NULL, "message: %s",
                      tg_last_error());
        tg_error_set(TG_ERR_SHAPE, "earlier: failure");
        ck_assert_ptr_null(apply_any(k, NULL));
        ck_assert_str_eq(tg_last_error(), "earlier: failure");
    }
    tg_clear_error();
}
END_TEST

START_TEST(test_reduce_no_tape_and_recorded)
{
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    for (int k = 0; k < 6; k++) {
        struct tg_tensor *y = apply_any(k, x);
        ck_assert_ptr_nonnull(y);
        ck_assert_ptr_null(y->tape);
        ck_assert(!y->requires_grad);
        tg_tensor_free(y);

        struct tg_tape *tape = tg_tape_new();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        y = apply_any(k, x);
        ck_assert_ptr_nonnull(y);
        ck_assert_ptr_eq(y->tape, tape);
        ck_assert(y->requires_grad);
        ck_assert_int_eq(tg_tape_n_entries(tape), 1);
        ck_assert_int_eq(tg_tape_end(tape), TG_OK);
        tg_tape_free(tape);
    }
    tu_assert_close(x->data, VAL(1, 2, 3, 4, 5, 6), 6, 0, 0);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_reduce_allocation_failure)
{
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    for (int k = 0; k < 6; k++) {
        tg_clear_error();
        tg_alloc_fail_at(1);
        struct tg_tensor *y = apply_any(k, x);
        tg_alloc_fail_at(0);
        ck_assert_ptr_null(y);
        ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
        ck_assert_msg(strncmp(tg_last_error(), any_names[k], strlen(any_names[k])) == 0,
                      "message: %s", tg_last_error());
    }
    tg_tensor_free(x);
}
END_TEST

/* ---- Suite ------------------------------------------------------------------------------ */

static Suite *reduce_suite(void)
{
    Suite *s = suite_create("ops-reduce");
    TCase *tc;

    tc = tcase_create("sum");
    tcase_add_test(tc, test_sum_values);
    tcase_add_test(tc, test_sum_empty);
    tcase_add_test(tc, test_sum_large_accurate);
    tcase_add_test(tc, test_sum_backward_values);
    tcase_add_test(tc, test_sum_gradcheck);
    suite_add_tcase(s, tc);

    tc = tcase_create("sum_axis");
    tcase_add_test(tc, test_sum_axis_values);
    tcase_add_test(tc, test_sum_axis_scalar_and_empty);
    tcase_add_loop_test(tc, test_sum_axis_matches_naive, 0, N_AXIS_SHAPES);
    tcase_add_test(tc, test_axis_ops_gradcheck);
    tcase_add_test(tc, test_sum_axis_backward_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("softmax");
    tcase_add_test(tc, test_softmax_values);
    tcase_add_test(tc, test_softmax_large_logits);
    tcase_add_test(tc, test_softmax_nan_propagates);
    tcase_add_loop_test(tc, test_softmax_matches_naive, 0, N_SOFTMAX_SHAPES);
    tcase_add_test(tc, test_softmax_gradcheck_channels);
    tcase_add_test(tc, test_reduce_matches_torch);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_axis_ops_reject_bad_axis);
    tcase_add_test(tc, test_reduce_null_input);
    tcase_add_test(tc, test_reduce_no_tape_and_recorded);
    tcase_add_test(tc, test_reduce_allocation_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(reduce_suite());
}
