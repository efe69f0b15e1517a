/*
 * Element-wise ops: add, sub, mul, div with broadcasting (row bias, channel
 * bias, outer broadcast, scalars, rank mismatch, up to 6 dimensions) checked
 * against a naive implementation written here, gradients against central
 * differences, and the unary ops scale, add_scalar, neg, exp, log, sqrt, pow.
 *
 * Tolerances: forward values are computed in float exactly as the naive loop
 * does, so they must agree to the bit; gradients of broadcast operands are
 * sums, compared to a double-precision sum at 1e-5 relative; gradchecks use
 * the defaults (atol 1e-3, rtol 1e-2) on inputs away from 0 for div and log.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- Helpers ------------------------------------------------------------- */

static struct tg_tensor *mk(int n_dims, const int64_t *shape, const float *data)
{
    struct tg_tensor *t = tg_tensor_from_data(n_dims, shape, data);
    ck_assert_msg(t != NULL, "tg_tensor_from_data: %s", tg_last_error());
    return t;
}

#define SHP(...) ((const int64_t[]){__VA_ARGS__})
#define VAL(...) ((const float[]){__VA_ARGS__})

static float *copy_data(const struct tg_tensor *t)
{
    float *c = malloc((size_t)(t->n_elems > 0 ? t->n_elems : 1) * sizeof(float));
    ck_assert_ptr_nonnull(c);
    memcpy(c, t->data, (size_t)t->n_elems * sizeof(float));
    return c;
}

static void assert_unchanged(const struct tg_tensor *t, const float *before)
{
    ck_assert_msg(memcmp(t->data, before, (size_t)t->n_elems * sizeof(float)) == 0,
                  "input was modified");
}

static void assert_shape(const struct tg_tensor *t, int n_dims, const int64_t *shape)
{
    ck_assert_int_eq(t->n_dims, n_dims);
    for (int d = 0; d < n_dims; d++)
        ck_assert_int_eq(t->shape[d], shape[d]);
}

typedef struct tg_tensor *(*binary_fn)(struct tg_tensor *, struct tg_tensor *);

enum kind { K_ADD, K_SUB, K_MUL, K_DIV };

struct binary_case {
    const char *name;
    binary_fn fn;
    enum kind kind;
};

static struct binary_case binaries[4] = {
        {"tg_add", tg_add, K_ADD},
        {"tg_sub", tg_sub, K_SUB},
        {"tg_mul", tg_mul, K_MUL},
        {"tg_div", tg_div, K_DIV},
};

static float naive_op(enum kind k, float a, float b)
{
    switch (k) {
    case K_ADD:
        return a + b;
    case K_SUB:
        return a - b;
    case K_MUL:
        return a * b;
    case K_DIV:
        return a / b;
    }
    return 0.0f;
}

/* Flat index in t of output element flat, t broadcast to out's shape. */
static int64_t
src_index(const struct tg_tensor *t, int out_rank, const int64_t *out_shape, int64_t flat)
{
    int64_t idx = 0;
    int64_t stride = 1;
    for (int d = 0; d < out_rank; d++) {
        int64_t size = out_shape[out_rank - 1 - d];
        int64_t coord = flat % size;
        flat /= size;
        if (d < t->n_dims) {
            int64_t ts = t->shape[t->n_dims - 1 - d];
            if (ts != 1)
                idx += coord * stride;
            stride *= ts;
        }
    }
    return idx;
}

/* Naive broadcast shape of a and b (the pairs used here always broadcast). */
static int naive_shape(const struct tg_tensor *a, const struct tg_tensor *b, int64_t *shape)
{
    int rank = a->n_dims > b->n_dims ? a->n_dims : b->n_dims;
    for (int d = 0; d < rank; d++) {
        int64_t sa = d < a->n_dims ? a->shape[a->n_dims - 1 - d] : 1;
        int64_t sb = d < b->n_dims ? b->shape[b->n_dims - 1 - d] : 1;
        shape[rank - 1 - d] = sa == 1 ? sb : sa;
    }
    return rank;
}

/*
 * Check forward and backward of one binary op against the naive loops: y must
 * match to the bit, the gradients of sum(y * seed) to 1e-5 relative.
 */
static void check_binary_naive(const struct binary_case *c,
                               struct tg_tensor *a,
                               struct tg_tensor *b,
                               uint64_t *rng)
{
    int64_t shape[TG_MAX_DIMS];
    int rank = naive_shape(a, b, shape);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_ptr_nonnull(tape);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    tg_tensor_zero_grad(a);
    tg_tensor_zero_grad(b);

    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = c->fn(a, b);
    ck_assert_msg(y != NULL, "%s: %s", c->name, tg_last_error());
    assert_shape(y, rank, shape);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, rank, shape);
    ck_assert_ptr_nonnull(seed);
    tu_fill_uniform(seed, rng, -1.0f, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);

    /* Naive forward and backward. */
    double *da = calloc((size_t)a->n_elems + 1, sizeof(double));
    double *db = calloc((size_t)b->n_elems + 1, sizeof(double));
    ck_assert(da != NULL && db != NULL);
    for (int64_t o = 0; o < y->n_elems; o++) {
        int64_t ia = src_index(a, rank, shape, o);
        int64_t ib = src_index(b, rank, shape, o);
        float av = a->data[ia], bv = b->data[ib];
        float want = naive_op(c->kind, av, bv);
        if (y->data[o] != want)
            ck_abort_msg("%s: element %lld: got %.9g, want %.9g", c->name, (long long)o, y->data[o],
                         want);
        double g = seed->data[o];
        switch (c->kind) {
        case K_ADD:
            da[ia] += g;
            db[ib] += g;
            break;
        case K_SUB:
            da[ia] += g;
            db[ib] -= g;
            break;
        case K_MUL:
            da[ia] += g * bv;
            db[ib] += g * av;
            break;
        case K_DIV:
            da[ia] += g / bv;
            db[ib] -= g * av / ((double)bv * bv);
            break;
        }
    }
    float *fa = malloc((size_t)(a->n_elems + 1) * sizeof(float));
    float *fb = malloc((size_t)(b->n_elems + 1) * sizeof(float));
    ck_assert(fa != NULL && fb != NULL);
    for (int64_t i = 0; i < a->n_elems; i++)
        fa[i] = (float)da[i];
    for (int64_t i = 0; i < b->n_elems; i++)
        fb[i] = (float)db[i];
    tu_assert_close(a->grad, fa, a->n_elems, 1e-5, 1e-5);
    tu_assert_close(b->grad, fb, b->n_elems, 1e-5, 1e-5);

    free(da);
    free(db);
    free(fa);
    free(fb);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
}

static struct tg_tensor *gc_binary(struct tg_tensor *const *in, int n, void *user)
{
    const struct binary_case *c = user;
    return c->fn(in[0], in[n - 1]);
}

/* ---- Hand-worked values ----------------------------------------------------- */

START_TEST(test_add_same_shape_values)
{
    struct tg_tensor *a = mk(2, SHP(2, 2), VAL(1, 2, 3, 4));
    struct tg_tensor *b = mk(2, SHP(2, 2), VAL(10, 20, 30, 40));
    struct tg_tensor *y = tg_add(a, b);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 2, SHP(2, 2));
    tu_assert_close(y->data, VAL(11, 22, 33, 44), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_sub(a, b);
    tu_assert_close(y->data, VAL(-9, -18, -27, -36), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_mul(a, b);
    tu_assert_close(y->data, VAL(10, 40, 90, 160), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_div(b, a);
    tu_assert_close(y->data, VAL(10, 10, 10, 10), 4, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_add_row_bias_values)
{
    /* (2, 3) + (3): the bias is added to each row. */
    struct tg_tensor *a = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    struct tg_tensor *b = mk(1, SHP(3), VAL(10, 20, 30));
    struct tg_tensor *y = tg_add(a, b);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 2, SHP(2, 3));
    tu_assert_close(y->data, VAL(11, 22, 33, 14, 25, 36), 6, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_add_channel_bias_values)
{
    /* (1, 2, 2, 2) + (1, 2, 1, 1) and + (2, 1, 1): one value per channel. */
    struct tg_tensor *x = mk(4, SHP(1, 2, 2, 2), VAL(0, 1, 2, 3, 4, 5, 6, 7));
    struct tg_tensor *b4 = mk(4, SHP(1, 2, 1, 1), VAL(100, 200));
    struct tg_tensor *b3 = mk(3, SHP(2, 1, 1), VAL(100, 200));
    const float *want = VAL(100, 101, 102, 103, 204, 205, 206, 207);
    struct tg_tensor *y = tg_add(x, b4);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 4, SHP(1, 2, 2, 2));
    tu_assert_close(y->data, want, 8, 0, 0);
    tg_tensor_free(y);
    y = tg_add(x, b3);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 4, SHP(1, 2, 2, 2));
    tu_assert_close(y->data, want, 8, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_tensor_free(b4);
    tg_tensor_free(b3);
}
END_TEST

START_TEST(test_add_outer_broadcast_values)
{
    /* (3, 1) + (1, 4) gives the (3, 4) table a_i + b_j. */
    struct tg_tensor *a = mk(2, SHP(3, 1), VAL(0, 10, 20));
    struct tg_tensor *b = mk(2, SHP(1, 4), VAL(1, 2, 3, 4));
    struct tg_tensor *y = tg_add(a, b);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 2, SHP(3, 4));
    tu_assert_close(y->data, VAL(1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24), 12, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_mul_scalar_operand_values)
{
    /* A 0-d scalar and a one-element tensor, on either side. */
    struct tg_tensor *x = mk(2, SHP(2, 2), VAL(1, -2, 3, -4));
    struct tg_tensor *s0 = mk(0, NULL, VAL(3));
    struct tg_tensor *s1 = mk(1, SHP(1), VAL(3));
    struct tg_tensor *y = tg_mul(x, s0);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 2, SHP(2, 2));
    tu_assert_close(y->data, VAL(3, -6, 9, -12), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_sub(s1, x);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 2, SHP(2, 2));
    tu_assert_close(y->data, VAL(2, 5, 0, 7), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_div(s0, s1);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 1, SHP(1));
    ck_assert_float_eq(y->data[0], 1.0f);
    tg_tensor_free(y);
    y = tg_add(s0, s0);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->n_dims, 0);
    ck_assert_float_eq(y->data[0], 6.0f);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_tensor_free(s0);
    tg_tensor_free(s1);
}
END_TEST

START_TEST(test_add_rank_mismatch_values)
{
    /* (2, 2, 3) + (2, 1): b is aligned to the last two dims, repeated over 0. */
    struct tg_tensor *a = mk(3, SHP(2, 2, 3), NULL);
    struct tg_tensor *b = mk(2, SHP(2, 1), VAL(1, 2));
    struct tg_tensor *y = tg_add(a, b);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 3, SHP(2, 2, 3));
    tu_assert_close(y->data, VAL(1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2), 12, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_div_by_zero_follows_ieee)
{
    struct tg_tensor *a = mk(1, SHP(3), VAL(1, -1, 0));
    struct tg_tensor *b = mk(0, NULL, VAL(0));
    struct tg_tensor *y = tg_div(a, b);
    ck_assert_ptr_nonnull(y);
    ck_assert(isinf(y->data[0]) && y->data[0] > 0.0f);
    ck_assert(isinf(y->data[1]) && y->data[1] < 0.0f);
    ck_assert(isnan(y->data[2]));
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_div_backward_values)
{
    /* a = 6, b = 2, upstream 1: da = 1/b = 0.5, db = -a/b^2 = -1.5. */
    struct tg_tensor *a = mk(1, SHP(1), VAL(6));
    struct tg_tensor *b = mk(1, SHP(1), VAL(2));
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_div(a, b);
    ck_assert_ptr_nonnull(y);
    ck_assert_float_eq(y->data[0], 3.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, NULL, 0), TG_OK);
    ck_assert_float_eq_tol(a->grad[0], 0.5f, 1e-7f);
    ck_assert_float_eq_tol(b->grad[0], -1.5f, 1e-7f);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- Broadcasting against the naive loops and gradcheck ----------------------- */

struct shape_pair {
    int na;
    int64_t a[TG_MAX_DIMS];
    int nb;
    int64_t b[TG_MAX_DIMS];
};

static const struct shape_pair pairs[] = {
        {2, {3, 4}, 2, {3, 4}},                         // equal shapes
        {2, {4, 6}, 1, {6}},                            // row bias
        {4, {2, 3, 4, 5}, 4, {1, 3, 1, 1}},             // channel bias
        {4, {2, 3, 4, 5}, 3, {3, 1, 1}},                // channel bias without the batch dim
        {2, {3, 1}, 2, {1, 4}},                         // outer broadcast
        {2, {2, 3}, 0, {0}},                            // 0-d scalar second
        {0, {0}, 2, {2, 3}},                            // 0-d scalar first
        {2, {2, 3}, 1, {1}},                            // one-element tensor
        {3, {2, 3, 4}, 2, {3, 1}},                      // rank mismatch
        {3, {2, 1, 4}, 3, {1, 3, 1}},                   // both broadcast
        {1, {5}, 3, {2, 3, 5}},                         // small first, larger rank second
        {4, {1, 3, 1, 2}, 4, {2, 1, 4, 1}},             // alternating
        {6, {2, 1, 2, 3, 1, 2}, 3, {1, 3, 2}},          // six dims
        {6, {1, 2, 1, 2, 1, 3}, 6, {2, 1, 2, 1, 2, 1}}, // six dims, alternating
};
#define N_PAIRS ((int)(sizeof(pairs) / sizeof(pairs[0])))

START_TEST(test_binary_broadcast_matches_naive)
{
    const struct shape_pair *p = &pairs[_i];
    uint64_t rng = 100 + (uint64_t)_i;
    for (int k = 0; k < 4; k++) {
        struct tg_tensor *a = mk(p->na, p->a, NULL);
        struct tg_tensor *b = mk(p->nb, p->b, NULL);
        tu_fill_uniform(a, &rng, -2.0f, 2.0f);
        tu_fill_away_from_zero(b, &rng, 0.5f, 2.0f);
        check_binary_naive(&binaries[k], a, b, &rng);
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

START_TEST(test_binary_broadcast_gradcheck)
{
    const struct shape_pair *p = &pairs[_i];
    uint64_t rng = 200 + (uint64_t)_i;
    for (int k = 0; k < 4; k++) {
        struct tg_tensor *a = mk(p->na, p->a, NULL);
        struct tg_tensor *b = mk(p->nb, p->b, NULL);
        tu_fill_uniform(a, &rng, -2.0f, 2.0f);
        tu_fill_away_from_zero(b, &rng, 0.5f, 2.0f);
        ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
        ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
        struct tg_tensor *in[2] = {a, b};
        tu_assert_gradcheck(gc_binary, &binaries[k], 2, in, NULL);
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

/* Shapes big enough for several chunks per row and the threaded loops. */
static const struct shape_pair large_pairs[] = {
        {2, {64, 2500}, 1, {2500}},             // row bias, rows longer than a chunk
        {4, {8, 16, 32, 32}, 4, {1, 16, 1, 1}}, // channel bias
        {4, {4, 8, 40, 40}, 3, {8, 1, 1}},      // channel bias, rows of 1600
        {2, {700, 1}, 2, {1, 700}},             // outer broadcast
        {1, {300001}, 0, {0}},                  // scalar, one long row
        {2, {3000, 7}, 2, {3000, 1}},           // column broadcast
        {3, {40, 50, 60}, 3, {40, 1, 60}},      // middle broadcast
};
#define N_LARGE ((int)(sizeof(large_pairs) / sizeof(large_pairs[0])))

START_TEST(test_binary_large_matches_naive)
{
    const struct shape_pair *p = &large_pairs[_i];
    uint64_t rng = 300 + (uint64_t)_i;
    for (int k = 0; k < 4; k++) {
        struct tg_tensor *a = mk(p->na, p->a, NULL);
        struct tg_tensor *b = mk(p->nb, p->b, NULL);
        /* a is a divisor below, so it too keeps away from 0. */
        tu_fill_away_from_zero(a, &rng, 0.5f, 2.0f);
        tu_fill_away_from_zero(b, &rng, 0.5f, 2.0f);
        check_binary_naive(&binaries[k], a, b, &rng);
        /* b broadcast the other way round too. */
        check_binary_naive(&binaries[k], b, a, &rng);
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

/* ---- Gradient details -------------------------------------------------------- */

START_TEST(test_mul_same_tensor_twice)
{
    /* d(x*x)/dx = 2x; d(x+x)/dx = 2; d(x-x)/dx = 0; d(x/x)/dx = 0. */
    static const float want[4][3] = {{2, 2, 2}, {0, 0, 0}, {3, -4, 1}, {0, 0, 0}};
    for (int k = 0; k < 4; k++) {
        struct tg_tensor *x = mk(1, SHP(3), VAL(1.5f, -2.0f, 0.5f));
        ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
        struct tg_tape *tape = tg_tape_new();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        struct tg_tensor *y = binaries[k].fn(x, x);
        ck_assert_ptr_nonnull(y);
        struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, SHP(3));
        tg_tensor_fill(seed, 1.0f);
        ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
        tu_assert_close(x->grad, want[k], 3, 1e-6, 1e-6);
        ck_assert_int_eq(tg_tape_end(tape), TG_OK);
        tg_tape_free(tape);

        /* And by central differences. */
        tu_assert_gradcheck(gc_binary, &binaries[k], 1, &x, NULL);
        tg_tensor_free(x);
    }
}
END_TEST

START_TEST(test_add_only_one_input_requires_grad)
{
    /* Only b (a row bias) requires grad: a gets none, b the column sums. */
    struct tg_tensor *a = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    struct tg_tensor *b = mk(1, SHP(3), VAL(1, 1, 1));
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_mul(a, b);
    ck_assert_ptr_nonnull(y);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 2, SHP(2, 3));
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    ck_assert_ptr_null(a->grad);
    tu_assert_close(b->grad, VAL(5, 7, 9), 3, 0, 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_add_backward_accumulates)
{
    /* Backward adds into an existing grad rather than overwriting it. */
    struct tg_tensor *a = mk(2, SHP(2, 2), VAL(1, 2, 3, 4));
    struct tg_tensor *b = mk(1, SHP(2), VAL(1, 1));
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    tg_tensor_fill(b, 1.0f);
    a->grad[0] = 10.0f;
    b->grad[1] = 100.0f;
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_add(a, b);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 2, SHP(2, 2));
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    tu_assert_close(a->grad, VAL(11, 1, 1, 1), 4, 0, 0);
    tu_assert_close(b->grad, VAL(2, 102), 2, 0, 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_add_empty_tensor)
{
    /* (0, 3) + (3) gives (0, 3); backward has nothing to do. */
    struct tg_tensor *a = mk(2, SHP(0, 3), NULL);
    struct tg_tensor *b = mk(1, SHP(3), VAL(1, 2, 3));
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_add(a, b);
    ck_assert_ptr_nonnull(y);
    assert_shape(y, 2, SHP(0, 3));
    ck_assert_int_eq(y->n_elems, 0);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 2, SHP(0, 3));
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    tu_assert_close(b->grad, VAL(0, 0, 0), 3, 0, 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- Errors, tape and no-tape calls ------------------------------------------------ */

START_TEST(test_binary_rejects_shape_mismatch)
{
    struct tg_tensor *a = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    struct tg_tensor *b = mk(1, SHP(4), VAL(1, 2, 3, 4));
    struct tg_tensor *c = mk(3, SHP(3, 3, 3), NULL);
    float *a0 = copy_data(a);
    float *b0 = copy_data(b);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    for (int k = 0; k < 4; k++) {
        tg_clear_error();
        ck_assert_ptr_null(binaries[k].fn(a, b));
        ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
        const char *msg = tg_last_error();
        ck_assert_msg(strncmp(msg, binaries[k].name, strlen(binaries[k].name)) == 0 &&
                              strstr(msg, "a: 2x3") && strstr(msg, "b: 4"),
                      "message: %s", msg);
    }
    /* (2, 3) and (3, 3, 3): the sizes 2 and 3 of dimension -2 clash. */
    tg_clear_error();
    ck_assert_ptr_null(tg_add(c, b));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_ptr_null(tg_mul(a, c));
    ck_assert_msg(strstr(tg_last_error(), "a: 2x3") && strstr(tg_last_error(), "b: 3x3x3"),
                  "message: %s", tg_last_error());
    ck_assert_int_eq(tg_tape_n_entries(tape), 0);
    assert_unchanged(a, a0);
    assert_unchanged(b, b0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    free(a0);
    free(b0);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
}
END_TEST

START_TEST(test_binary_null_input)
{
    struct tg_tensor *a = mk(1, SHP(2), VAL(1, 2));
    for (int k = 0; k < 4; k++) {
        tg_clear_error();
        ck_assert_ptr_null(binaries[k].fn(a, NULL));
        ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
        ck_assert_msg(strstr(tg_last_error(), binaries[k].name) != NULL, "message: %s",
                      tg_last_error());
        /* An earlier failure's message is kept. */
        tg_error_set(TG_ERR_SHAPE, "earlier: failure");
        ck_assert_ptr_null(binaries[k].fn(NULL, a));
        ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
        ck_assert_str_eq(tg_last_error(), "earlier: failure");
    }
    tg_clear_error();
    tg_tensor_free(a);
}
END_TEST

START_TEST(test_binary_no_tape_heap_output)
{
    struct tg_tensor *a = mk(2, SHP(2, 2), VAL(1, 2, 3, 4));
    struct tg_tensor *b = mk(1, SHP(2), VAL(1, 1));
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_ptr_null(tg_tape_current());
    for (int k = 0; k < 4; k++) {
        struct tg_tensor *y = binaries[k].fn(a, b);
        ck_assert_ptr_nonnull(y);
        ck_assert_ptr_null(y->tape);
        ck_assert(!y->requires_grad);
        tg_tensor_free(y);
    }
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_binary_recorded_on_tape)
{
    struct tg_tensor *a = mk(2, SHP(2, 2), VAL(1, 2, 3, 4));
    struct tg_tensor *b = mk(1, SHP(2), VAL(5, 6));
    float *a0 = copy_data(a);
    float *b0 = copy_data(b);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_mul(a, b);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_eq(y->tape, tape);
    ck_assert(y->requires_grad);
    ck_assert_int_eq(tg_tape_n_entries(tape), 1);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 2, SHP(2, 2));
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    tu_assert_close(a->grad, VAL(5, 6, 5, 6), 4, 0, 0);
    assert_unchanged(a, a0);
    assert_unchanged(b, b0);

    /* With gradients disabled nothing is recorded. */
    tg_tape_reset(tape);
    tg_tape_set_grad_enabled(tape, false);
    y = tg_add(a, b);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tape_n_entries(tape), 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    free(a0);
    free(b0);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_binary_allocation_failure)
{
    struct tg_tensor *a = mk(2, SHP(2, 2), VAL(1, 2, 3, 4));
    struct tg_tensor *b = mk(1, SHP(2), VAL(5, 6));
    for (int k = 0; k < 4; k++) {
        tg_clear_error();
        tg_alloc_fail_at(1);
        struct tg_tensor *y = binaries[k].fn(a, b);
        tg_alloc_fail_at(0);
        ck_assert_ptr_null(y);
        ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
        ck_assert_msg(strncmp(tg_last_error(), binaries[k].name, strlen(binaries[k].name)) == 0,
                      "message: %s", tg_last_error());
    }
    tu_assert_close(a->data, VAL(1, 2, 3, 4), 4, 0, 0);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- Unary ops ------------------------------------------------------------------- */

START_TEST(test_unary_values)
{
    struct tg_tensor *x = mk(1, SHP(4), VAL(0.25f, 1.0f, 4.0f, 9.0f));
    struct tg_tensor *y;

    y = tg_scale(x, -2.0f);
    tu_assert_close(y->data, VAL(-0.5f, -2, -8, -18), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_add_scalar(x, 1.5f);
    tu_assert_close(y->data, VAL(1.75f, 2.5f, 5.5f, 10.5f), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_neg(x);
    tu_assert_close(y->data, VAL(-0.25f, -1, -4, -9), 4, 0, 0);
    tg_tensor_free(y);
    y = tg_exp(x);
    tu_assert_close(y->data, VAL(1.28402542f, 2.71828183f, 54.5981500f, 8103.08393f), 4, 0, 1e-6);
    tg_tensor_free(y);
    y = tg_log(x);
    tu_assert_close(y->data, VAL(-1.38629436f, 0, 1.38629436f, 2.19722458f), 4, 1e-7, 1e-6);
    tg_tensor_free(y);
    y = tg_sqrt(x);
    tu_assert_close(y->data, VAL(0.5f, 1, 2, 3), 4, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_pow_values)
{
    struct tg_tensor *x = mk(1, SHP(3), VAL(0.25f, 2.0f, 4.0f));
    struct {
        float p;
        float want[3];
    } cases[] = {
            {2.0f, {0.0625f, 4, 16}},         {3.0f, {0.015625f, 8, 64}},
            {0.5f, {0.5f, 1.41421356f, 2}},   {-1.0f, {4, 0.5f, 0.25f}},
            {1.5f, {0.125f, 2.82842712f, 8}}, {0.0f, {1, 1, 1}},
            {-2.0f, {16, 0.25f, 0.0625f}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tg_tensor *y = tg_pow(x, cases[i].p);
        ck_assert_ptr_nonnull(y);
        tu_assert_close(y->data, cases[i].want, 3, 0, 1e-6);
        tg_tensor_free(y);
    }
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_unary_ieee_edges)
{
    /* log(0) = -inf, log(-1) = NaN, sqrt(-1) = NaN; exp(100) = inf without a trap. */
    struct tg_tensor *x = mk(1, SHP(3), VAL(0, -1, 100));
    struct tg_tensor *y = tg_log(x);
    ck_assert(isinf(y->data[0]) && y->data[0] < 0.0f);
    ck_assert(isnan(y->data[1]));
    tg_tensor_free(y);
    y = tg_sqrt(x);
    ck_assert_float_eq(y->data[0], 0.0f);
    ck_assert(isnan(y->data[1]));
    ck_assert_float_eq(y->data[2], 10.0f);
    tg_tensor_free(y);
    y = tg_exp(x);
    ck_assert_float_eq(y->data[0], 1.0f);
    ck_assert(isinf(y->data[2]));
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

/* A unary op with its constant, for the gradient checks. */
struct unary_case {
    const char *name;
    int which; // 0 scale, 1 add_scalar, 2 neg, 3 exp, 4 log, 5 sqrt, 6 pow
    float c;
};

static struct unary_case unaries[] = {
        {"tg_scale", 0, -1.5f}, {"tg_add_scalar", 1, 0.75f}, {"tg_neg", 2, 0.0f},
        {"tg_exp", 3, 0.0f},    {"tg_log", 4, 0.0f},         {"tg_sqrt", 5, 0.0f},
        {"tg_pow", 6, 2.0f},    {"tg_pow", 6, 3.0f},         {"tg_pow", 6, 0.5f},
        {"tg_pow", 6, -1.0f},   {"tg_pow", 6, 1.5f},         {"tg_pow", 6, -0.5f},
        {"tg_pow", 6, 1.0f},    {"tg_pow", 6, 0.0f},
};
#define N_UNARIES ((int)(sizeof(unaries) / sizeof(unaries[0])))

static struct tg_tensor *apply_unary(const struct unary_case *u, struct tg_tensor *x)
{
    switch (u->which) {
    case 0:
        return tg_scale(x, u->c);
    case 1:
        return tg_add_scalar(x, u->c);
    case 2:
        return tg_neg(x);
    case 3:
        return tg_exp(x);
    case 4:
        return tg_log(x);
    case 5:
        return tg_sqrt(x);
    default:
        return tg_pow(x, u->c);
    }
}

static struct tg_tensor *gc_unary(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return apply_unary(user, in[0]);
}

START_TEST(test_unary_gradcheck)
{
    /* Positive inputs in [0.5, 2]: log, sqrt and fractional powers are smooth there. */
    struct unary_case *u = &unaries[_i];
    uint64_t rng = 400 + (uint64_t)_i;
    struct tg_tensor *x = mk(2, SHP(3, 5), NULL);
    tu_fill_uniform(x, &rng, 0.5f, 2.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(gc_unary, u, 1, &x, NULL);
    /* Ops defined for negative inputs too. */
    if (u->which <= 3 || (u->which == 6 && (u->c == 2.0f || u->c == 3.0f || u->c == 1.0f))) {
        tu_fill_away_from_zero(x, &rng, 0.5f, 2.0f);
        tu_assert_gradcheck(gc_unary, u, 1, &x, NULL);
    }
    tg_tensor_free(x);
}
END_TEST

/* Gradient of sum(pow(x, p)) at x, by backward. */
static float pow_grad_at(float x0, float p)
{
    struct tg_tensor *x = mk(1, SHP(1), &x0);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_pow(x, p);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tape_backward(tape, y, NULL, 0), TG_OK);
    float g = x->grad[0];
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
    return g;
}

START_TEST(test_pow_gradient_at_zero)
{
    /* PyTorch's conventions: p = 2 gives 0, p = 1 gives 1, p = 0 gives 0, p = 0.5 gives inf. */
    ck_assert_float_eq(pow_grad_at(0.0f, 2.0f), 0.0f);
    ck_assert_float_eq(pow_grad_at(0.0f, 3.0f), 0.0f);
    ck_assert_float_eq(pow_grad_at(0.0f, 1.0f), 1.0f);
    ck_assert_float_eq(pow_grad_at(0.0f, 0.0f), 0.0f);
    ck_assert(isinf(pow_grad_at(0.0f, 0.5f)));
    /* Away from 0: 3 x^2 at x = -2 is 12; -1 / x^2 at 2 is -0.25. */
    ck_assert_float_eq_tol(pow_grad_at(-2.0f, 3.0f), 12.0f, 1e-6f);
    ck_assert_float_eq_tol(pow_grad_at(2.0f, -1.0f), -0.25f, 1e-7f);
}
END_TEST

START_TEST(test_unary_backward_values)
{
    /* Upstream 1 at x = 4: exp -> e^4, log -> 1/4, sqrt -> 1/(2*2), scale -> c, neg -> -1. */
    struct {
        int which;
        float c;
        float want;
    } cases[] = {
            {0, 3.0f, 3.0f},        {1, 5.0f, 1.0f},  {2, 0.0f, -1.0f},
            {3, 0.0f, 54.5981500f}, {4, 0.0f, 0.25f}, {5, 0.0f, 0.25f},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct unary_case u = {"", cases[i].which, cases[i].c};
        struct tg_tensor *x = mk(1, SHP(1), VAL(4.0f));
        ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
        struct tg_tape *tape = tg_tape_new();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        struct tg_tensor *y = apply_unary(&u, x);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(tg_tape_n_entries(tape), 1);
        ck_assert_int_eq(tg_tape_backward(tape, y, NULL, 0), TG_OK);
        ck_assert_float_eq_tol(x->grad[0], cases[i].want, 1e-5f * fabsf(cases[i].want));
        ck_assert_float_eq(x->data[0], 4.0f);
        ck_assert_int_eq(tg_tape_end(tape), TG_OK);
        tg_tape_free(tape);
        tg_tensor_free(x);
    }
}
END_TEST

START_TEST(test_unary_large_matches_naive)
{
    /* Above the threading threshold: compare with libm element by element. */
    int64_t n = 100003;
    uint64_t rng = 7;
    struct tg_tensor *x = mk(1, &n, NULL);
    tu_fill_uniform(x, &rng, 0.1f, 3.0f);
    struct tg_tensor *e = tg_exp(x);
    struct tg_tensor *l = tg_log(x);
    struct tg_tensor *s = tg_sqrt(x);
    struct tg_tensor *p = tg_pow(x, 1.5f);
    ck_assert(e && l && s && p);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        bad += e->data[i] != expf(x->data[i]);
        bad += l->data[i] != logf(x->data[i]);
        bad += s->data[i] != sqrtf(x->data[i]);
        bad += p->data[i] != powf(x->data[i], 1.5f);
    }
    ck_assert_int_eq(bad, 0);
    tg_tensor_free(e);
    tg_tensor_free(l);
    tg_tensor_free(s);
    tg_tensor_free(p);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_unary_null_and_no_tape)
{
    struct tg_tensor *x = mk(2, SHP(2, 3), VAL(1, 2, 3, 4, 5, 6));
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    for (int i = 0; i < N_UNARIES; i++) {
        tg_clear_error();
        ck_assert_ptr_null(apply_unary(&unaries[i], NULL));
        ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
        ck_assert_msg(strstr(tg_last_error(), unaries[i].name) != NULL, "message: %s",
                      tg_last_error());

        struct tg_tensor *y = apply_unary(&unaries[i], x);
        ck_assert_ptr_nonnull(y);
        ck_assert_ptr_null(y->tape);
        assert_shape(y, 2, SHP(2, 3));
        tg_tensor_free(y);
    }
    tu_assert_close(x->data, VAL(1, 2, 3, 4, 5, 6), 6, 0, 0);
    tg_tensor_free(x);
}
END_TEST

/* ---- Suite ------------------------------------------------------------------------- */

static Suite *elementwise_suite(void)
{
    Suite *s = suite_create("ops-elementwise");
    TCase *tc;

    tc = tcase_create("values");
    tcase_add_test(tc, test_add_same_shape_values);
    tcase_add_test(tc, test_add_row_bias_values);
    tcase_add_test(tc, test_add_channel_bias_values);
    tcase_add_test(tc, test_add_outer_broadcast_values);
    tcase_add_test(tc, test_mul_scalar_operand_values);
    tcase_add_test(tc, test_add_rank_mismatch_values);
    tcase_add_test(tc, test_div_by_zero_follows_ieee);
    tcase_add_test(tc, test_div_backward_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("broadcast");
    tcase_add_loop_test(tc, test_binary_broadcast_matches_naive, 0, N_PAIRS);
    tcase_add_loop_test(tc, test_binary_broadcast_gradcheck, 0, N_PAIRS);
    tcase_add_loop_test(tc, test_binary_large_matches_naive, 0, N_LARGE);
    suite_add_tcase(s, tc);

    tc = tcase_create("gradients");
    tcase_add_test(tc, test_mul_same_tensor_twice);
    tcase_add_test(tc, test_add_only_one_input_requires_grad);
    tcase_add_test(tc, test_add_backward_accumulates);
    tcase_add_test(tc, test_add_empty_tensor);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_binary_rejects_shape_mismatch);
    tcase_add_test(tc, test_binary_null_input);
    tcase_add_test(tc, test_binary_no_tape_heap_output);
    tcase_add_test(tc, test_binary_recorded_on_tape);
    tcase_add_test(tc, test_binary_allocation_failure);
    suite_add_tcase(s, tc);

    tc = tcase_create("unary");
    tcase_add_test(tc, test_unary_values);
    tcase_add_test(tc, test_pow_values);
    tcase_add_test(tc, test_unary_ieee_edges);
    tcase_add_loop_test(tc, test_unary_gradcheck, 0, N_UNARIES);
    tcase_add_test(tc, test_pow_gradient_at_zero);
    tcase_add_test(tc, test_unary_backward_values);
    tcase_add_test(tc, test_unary_large_matches_naive);
    tcase_add_test(tc, test_unary_null_and_no_tape);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(elementwise_suite());
}
