/*
 * Shape ops: reshape (with an inferred size), flatten, 2-d transpose and
 * concatenation along every axis with only some inputs requiring grad;
 * forward values, gradients (seeded backward and gradient checks), recorded
 * and tape-free calls, and every error path.
 */
#include <string.h>

#include "testutil.h"

static const float six[6] = {1, 2, 3, 4, 5, 6};

static struct tg_tensor *make(int n_dims, const int64_t *shape, const float *data)
{
    struct tg_tensor *t = tg_tensor_from_data(n_dims, shape, data);
    ck_assert_msg(t != NULL, "%s", tg_last_error());
    return t;
}

static void assert_shape(const struct tg_tensor *t, int n_dims, const int64_t *shape)
{
    ck_assert_int_eq(t->n_dims, n_dims);
    for (int i = 0; i < n_dims; i++)
        ck_assert_int_eq(t->shape[i], shape[i]);
}

/* Assert the last failure has status and a message holding both fragments. */
static void assert_error(enum tg_status status, const char *frag1, const char *frag2)
{
    ck_assert_int_eq(tg_last_status(), status);
    ck_assert_msg(strstr(tg_last_error(), frag1) != NULL, "%s", tg_last_error());
    if (frag2 != NULL)
        ck_assert_msg(strstr(tg_last_error(), frag2) != NULL, "%s", tg_last_error());
}

/* Seed of out's shape on tape, filled with 0.5, 1.5, 2.5, ... */
static struct tg_tensor *ramp_seed(struct tg_tape *tape, const struct tg_tensor *out)
{
    struct tg_tensor *s = tg_tape_tensor_new(tape, out->n_dims, out->shape);
    ck_assert_ptr_nonnull(s);
    for (int64_t i = 0; i < s->n_elems; i++)
        s->data[i] = 0.5f + (float)i;
    return s;
}

/* ---- Reshape ------------------------------------------------------------------------ */

START_TEST(test_reshape_keeps_data_and_infers_size)
{
    struct tg_tensor *x = make(2, (int64_t[]){2, 3}, six);
    struct tg_tensor *y = tg_reshape(x, 2, (int64_t[]){3, 2});
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_ptr_null(y->tape);
    assert_shape(y, 2, (int64_t[]){3, 2});
    tu_assert_close(y->data, six, 6, 0, 0);
    ck_assert_ptr_ne(y->data, x->data); // a copy
    tg_tensor_free(y);

    y = tg_reshape(x, 3, (int64_t[]){-1, 1, 2});
    assert_shape(y, 3, (int64_t[]){3, 1, 2});
    tg_tensor_free(y);
    y = tg_reshape(x, 1, (int64_t[]){-1});
    assert_shape(y, 1, (int64_t[]){6});
    tg_tensor_free(y);
    tg_tensor_free(x);

    /* One element to a scalar and back. */
    struct tg_tensor *one = make(2, (int64_t[]){1, 1}, six);
    struct tg_tensor *s = tg_reshape(one, 0, NULL);
    ck_assert_msg(s != NULL, "%s", tg_last_error());
    ck_assert_int_eq(s->n_dims, 0);
    ck_assert_float_eq(s->data[0], 1.0f);
    struct tg_tensor *back = tg_reshape(s, 1, (int64_t[]){-1});
    assert_shape(back, 1, (int64_t[]){1});
    tg_tensor_free(back);
    tg_tensor_free(s);
    tg_tensor_free(one);

    /* Zero elements: -1 infers 0 next to known sizes. */
    struct tg_tensor *empty = tu_tensor(0, 3, (int64_t)-1);
    y = tg_reshape(empty, 2, (int64_t[]){-1, 3});
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    assert_shape(y, 2, (int64_t[]){0, 3});
    tg_tensor_free(y);
    tg_tensor_free(empty);
}
END_TEST

START_TEST(test_reshape_backward_adds_gradient)
{
    struct tg_tensor *x = make(2, (int64_t[]){2, 3}, six);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    x->grad[0] = 10.0f; // backward must add to what is there
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *y = tg_reshape(x, 3, (int64_t[]){3, 1, 2});
    struct tg_tensor *z = tg_flatten(y, 0);
    ck_assert_ptr_eq(y->tape, tape);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 2);
    ck_assert_int_eq(tg_tape_backward(tape, z, ramp_seed(tape, z), 0), TG_OK);
    const float want[6] = {10.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f};
    tu_assert_close(x->grad, want, 6, 0, 0);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_reshape_rejects_bad_shapes)
{
    struct tg_tensor *x = make(2, (int64_t[]){2, 3}, six);
    tg_clear_error();
    ck_assert_ptr_null(tg_reshape(x, 2, (int64_t[]){4, 2}));
    assert_error(TG_ERR_SHAPE, "tg_reshape: element counts differ", "2x3");
    assert_error(TG_ERR_SHAPE, "4x2", NULL);
    ck_assert_ptr_null(tg_reshape(x, 2, (int64_t[]){-1, 4}));
    assert_error(TG_ERR_SHAPE, "tg_reshape", "-1x4");
    ck_assert_ptr_null(tg_reshape(x, 2, (int64_t[]){-1, -1}));
    assert_error(TG_ERR_INVALID, "tg_reshape: more than one size is -1", NULL);
    ck_assert_ptr_null(tg_reshape(x, 2, (int64_t[]){-2, -3}));
    assert_error(TG_ERR_INVALID, "tg_reshape: negative size", NULL);
    ck_assert_ptr_null(tg_reshape(x, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 6}));
    assert_error(TG_ERR_INVALID, "tg_reshape: bad rank", NULL);
    ck_assert_ptr_null(tg_reshape(x, -1, NULL));
    assert_error(TG_ERR_INVALID, "tg_reshape: bad rank", NULL);
    ck_assert_ptr_null(tg_reshape(x, 2, NULL));
    assert_error(TG_ERR_INVALID, "tg_reshape: shape is NULL", NULL);
    ck_assert_ptr_null(tg_reshape(x, 0, NULL));
    assert_error(TG_ERR_SHAPE, "tg_reshape", "scalar");
    tu_assert_close(x->data, six, 6, 0, 0);
    tg_tensor_free(x);

    struct tg_tensor *empty = tu_tensor(0, 3, (int64_t)-1);
    ck_assert_ptr_null(tg_reshape(empty, 2, (int64_t[]){0, -1}));
    assert_error(TG_ERR_SHAPE, "tg_reshape: -1 is ambiguous", NULL);
    tg_tensor_free(empty);

    /* Sizes whose product overflows int64 do not fit either. */
    struct tg_tensor *big = tu_tensor(4, (int64_t)-1);
    int64_t huge = (int64_t)1 << 40;
    ck_assert_ptr_null(tg_reshape(big, 3, (int64_t[]){huge, huge, 4}));
    assert_error(TG_ERR_SHAPE, "tg_reshape: element counts differ", NULL);
    tg_tensor_free(big);
}
END_TEST

static struct tg_tensor *reshape_fn(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_reshape(in[0], 3, (int64_t[]){4, -1, 3});
}

START_TEST(test_reshape_gradcheck)
{
    struct tg_tensor *x = tu_tensor(3, 8, (int64_t)-1);
    uint64_t rng = 11;
    tu_fill_uniform(x, &rng, -1, 1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(reshape_fn, NULL, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

/* ---- Flatten ------------------------------------------------------------------------ */

START_TEST(test_flatten_collapses_trailing_dims)
{
    struct tg_tensor *x = tu_tensor(2, 3, 4, 5, (int64_t)-1);
    uint64_t rng = 3;
    tu_fill_uniform(x, &rng, -1, 1);
    struct {
        int start;
        int n_dims;
        int64_t shape[4];
    } cases[] = {{0, 1, {120}},         {1, 2, {2, 60}},  {2, 3, {2, 3, 20}}, {3, 4, {2, 3, 4, 5}},
                 {-1, 4, {2, 3, 4, 5}}, {-3, 2, {2, 60}}, {-4, 1, {120}}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct tg_tensor *y = tg_flatten(x, cases[k].start);
        ck_assert_msg(y != NULL, "%s", tg_last_error());
        assert_shape(y, cases[k].n_dims, cases[k].shape);
        tu_assert_close(y->data, x->data, x->n_elems, 0, 0);
        tg_tensor_free(y);
    }

    /* A scalar becomes one element. */
    struct tg_tensor *s = tg_tensor_new(0, NULL);
    struct tg_tensor *y = tg_flatten(s, 0);
    assert_shape(y, 1, (int64_t[]){1});
    tg_tensor_free(y);
    tg_clear_error();
    ck_assert_ptr_null(tg_flatten(s, 1));
    assert_error(TG_ERR_INVALID, "tg_flatten: start_dim out of range", "scalar");
    tg_tensor_free(s);

    ck_assert_ptr_null(tg_flatten(x, 4));
    assert_error(TG_ERR_INVALID, "tg_flatten: start_dim out of range (got 4", "-4 to 3");
    ck_assert_ptr_null(tg_flatten(x, -5));
    assert_error(TG_ERR_INVALID, "tg_flatten", "2x3x4x5");
    tg_tensor_free(x);
}
END_TEST

static struct tg_tensor *flatten_fn(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return tg_flatten(in[0], *(const int *)user);
}

START_TEST(test_flatten_gradcheck)
{
    struct tg_tensor *x = tu_tensor(2, 3, 2, 2, (int64_t)-1);
    uint64_t rng = 5;
    tu_fill_uniform(x, &rng, -1, 1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    int start = 1;
    tu_assert_gradcheck(flatten_fn, &start, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

/* ---- Transpose ------------------------------------------------------------------------ */

START_TEST(test_transpose_by_hand_and_naive)
{
    struct tg_tensor *x = make(2, (int64_t[]){2, 3}, six);
    struct tg_tensor *y = tg_transpose(x);
    assert_shape(y, 2, (int64_t[]){3, 2});
    const float want[6] = {1, 4, 2, 5, 3, 6};
    tu_assert_close(y->data, want, 6, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);

    /* Sizes that leave partial 32x32 tiles on both sides. */
    x = tu_tensor(70, 45, (int64_t)-1);
    uint64_t rng = 9;
    tu_fill_uniform(x, &rng, -1, 1);
    y = tg_transpose(x);
    assert_shape(y, 2, (int64_t[]){45, 70});
    for (int64_t i = 0; i < 70; i++)
        for (int64_t j = 0; j < 45; j++)
            ck_assert_float_eq(y->data[j * 70 + i], x->data[i * 45 + j]);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_transpose_backward_and_errors)
{
    struct tg_tensor *x = tu_tensor(33, 40, (int64_t)-1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *y = tg_transpose(x);
    struct tg_tensor *seed = ramp_seed(tape, y);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    for (int64_t i = 0; i < 33; i++)
        for (int64_t j = 0; j < 40; j++)
            ck_assert_float_eq(x->grad[i * 40 + j], seed->data[j * 33 + i]);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);

    struct tg_tensor *x3 = tu_tensor(2, 3, 4, (int64_t)-1);
    tg_clear_error();
    ck_assert_ptr_null(tg_transpose(x3));
    assert_error(TG_ERR_SHAPE, "tg_transpose: input is not 2-d", "2x3x4");
    tg_tensor_free(x3);
    tg_error_set(TG_ERR_NOMEM, "tg_matmul: first failure");
    ck_assert_ptr_null(tg_transpose(NULL));
    ck_assert_str_eq(tg_last_error(), "tg_matmul: first failure");
}
END_TEST

static struct tg_tensor *transpose_fn(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_transpose(in[0]);
}

START_TEST(test_transpose_gradcheck)
{
    struct tg_tensor *x = tu_tensor(5, 7, (int64_t)-1);
    uint64_t rng = 13;
    tu_fill_uniform(x, &rng, -1, 1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(transpose_fn, NULL, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

/* ---- Concat --------------------------------------------------------------------------- */

/* Three 3-d inputs of base shape (2, 3, 4) whose size on axis is 1, 2 and 3. */
static void make_concat_inputs(struct tg_tensor **xs, int axis, uint64_t *rng)
{
    for (int i = 0; i < 3; i++) {
        int64_t shape[3] = {2, 3, 4};
        shape[axis] = i + 1;
        xs[i] = tg_tensor_new(3, shape);
        ck_assert_ptr_nonnull(xs[i]);
        tu_fill_uniform(xs[i], rng, -1, 1);
    }
}

/* Element (a, b, c) of the concatenation, looked up in the input that holds it. */
static float concat_at(struct tg_tensor *const *xs, int axis, int64_t *idx)
{
    int i = 0;
    while (idx[axis] >= xs[i]->shape[axis])
        idx[axis] -= xs[i++]->shape[axis];
    const struct tg_tensor *x = xs[i];
    return x->data[(idx[0] * x->shape[1] + idx[1]) * x->shape[2] + idx[2]];
}

START_TEST(test_concat_each_axis_matches_naive)
{
    int axis = _i;
    uint64_t rng = 20 + (uint64_t)axis;
    struct tg_tensor *xs[3];
    make_concat_inputs(xs, axis, &rng);

    /* No tape: a heap output; negative axes count from the end. */
    struct tg_tensor *y = tg_concat(3, xs, axis - 3);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_ptr_null(y->tape);
    int64_t want_shape[3] = {2, 3, 4};
    want_shape[axis] = 6;
    assert_shape(y, 3, want_shape);
    for (int64_t a = 0; a < y->shape[0]; a++)
        for (int64_t b = 0; b < y->shape[1]; b++)
            for (int64_t c = 0; c < y->shape[2]; c++) {
                int64_t idx[3] = {a, b, c};
                float got = y->data[(a * y->shape[1] + b) * y->shape[2] + c];
                ck_assert_float_eq(got, concat_at(xs, axis, idx));
            }
    tg_tensor_free(y);
    for (int i = 0; i < 3; i++)
        tg_tensor_free(xs[i]);
}
END_TEST

/* Inputs 0 and 2 require grad, input 1 does not: backward slices the seed back. */
START_TEST(test_concat_backward_only_inputs_needing_grad)
{
    int axis = _i;
    uint64_t rng = 30 + (uint64_t)axis;
    struct tg_tensor *xs[3];
    make_concat_inputs(xs, axis, &rng);
    ck_assert_int_eq(tg_tensor_set_requires_grad(xs[0], true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(xs[2], true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *y = tg_concat(3, xs, axis);
    ck_assert(y->requires_grad);
    struct tg_tensor *seed = ramp_seed(tape, y);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    ck_assert_ptr_null(xs[1]->grad);

    /* Rebuild the seed from the grads (and zeros for input 1) as concat would. */
    struct tg_tensor *g1 = tg_tensor_new(3, xs[1]->shape);
    struct tg_tensor *gs[3] = {NULL, g1, NULL};
    for (int i = 0; i < 3; i += 2) {
        gs[i] = tg_tensor_from_data(3, xs[i]->shape, xs[i]->grad);
        ck_assert_ptr_nonnull(gs[i]);
    }
    tg_tape_end(tape);
    struct tg_tensor *back = tg_concat(3, gs, axis);
    ck_assert_ptr_nonnull(back);
    for (int64_t k = 0; k < y->n_elems; k++) {
        int64_t c = k % y->shape[2], b = k / y->shape[2] % y->shape[1];
        int64_t a = k / (y->shape[1] * y->shape[2]);
        int64_t idx[3] = {a, b, c};
        int64_t pos = idx[axis];
        bool from_1 = pos >= xs[0]->shape[axis] && pos < xs[0]->shape[axis] + xs[1]->shape[axis];
        ck_assert_float_eq(back->data[k], from_1 ? 0.0f : seed->data[k]);
    }
    tg_tensor_free(back);
    for (int i = 0; i < 3; i++) {
        tg_tensor_free(gs[i]);
        tg_tensor_free(xs[i]);
    }
    tg_tape_free(tape);
}
END_TEST

static struct tg_tensor *concat_fn(struct tg_tensor *const *in, int n, void *user)
{
    return tg_concat(n, in, *(const int *)user);
}

START_TEST(test_concat_gradcheck_some_inputs_fixed)
{
    int axis = _i;
    uint64_t rng = 40 + (uint64_t)axis;
    struct tg_tensor *xs[3];
    make_concat_inputs(xs, axis, &rng);
    ck_assert_int_eq(tg_tensor_set_requires_grad(xs[1], true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(xs[2], true), TG_OK);
    tu_assert_gradcheck(concat_fn, &axis, 3, xs, NULL);
    for (int i = 0; i < 3; i++)
        tg_tensor_free(xs[i]);
}
END_TEST

START_TEST(test_concat_single_and_many_inputs)
{
    struct tg_tensor *x = make(2, (int64_t[]){2, 3}, six);
    struct tg_tensor *y = tg_concat(1, &x, 0);
    assert_shape(y, 2, (int64_t[]){2, 3});
    tu_assert_close(y->data, six, 6, 0, 0);
    tg_tensor_free(y);

    struct tg_tensor *many[TG_MAX_OP_INPUTS];
    for (int i = 0; i < TG_MAX_OP_INPUTS; i++)
        many[i] = x;
    y = tg_concat(TG_MAX_OP_INPUTS, many, 1);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    assert_shape(y, 2, (int64_t[]){2, 3 * TG_MAX_OP_INPUTS});
    ck_assert_float_eq(y->data[3 * TG_MAX_OP_INPUTS + 4], 5.0f);
    tg_tensor_free(y);

    /* Empty inputs take part with no columns. */
    struct tg_tensor *e = tu_tensor(2, 0, (int64_t)-1);
    struct tg_tensor *pair[3] = {e, x, e};
    y = tg_concat(3, pair, 1);
    assert_shape(y, 2, (int64_t[]){2, 3});
    tu_assert_close(y->data, six, 6, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(e);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_concat_rejects_bad_inputs)
{
    struct tg_tensor *a = tu_tensor(2, 3, (int64_t)-1);
    struct tg_tensor *b = tu_tensor(2, 4, (int64_t)-1);
    struct tg_tensor *c = tu_tensor(2, 3, 1, (int64_t)-1);
    struct tg_tensor *s = tg_tensor_new(0, NULL);
    tg_clear_error();

    struct tg_tensor *ab[2] = {a, b};
    ck_assert_ptr_null(tg_concat(2, ab, 0));
    assert_error(TG_ERR_SHAPE, "tg_concat: input 1 does not fit input 0 (got 2x4 and 2x3",
                 "axis 0");
    struct tg_tensor *ac[2] = {a, c};
    ck_assert_ptr_null(tg_concat(2, ac, 1));
    assert_error(TG_ERR_SHAPE, "tg_concat: input 1", "2x3x1");
    ck_assert_ptr_null(tg_concat(2, ab, 2));
    assert_error(TG_ERR_INVALID, "tg_concat: axis out of range (got 2", "-2 to 1");
    ck_assert_ptr_null(tg_concat(2, ab, -3));
    assert_error(TG_ERR_INVALID, "tg_concat: axis out of range", NULL);
    struct tg_tensor *ss[2] = {s, s};
    ck_assert_ptr_null(tg_concat(2, ss, 0));
    assert_error(TG_ERR_SHAPE, "tg_concat: input 0 is a scalar", NULL);
    ck_assert_ptr_null(tg_concat(0, ab, 0));
    assert_error(TG_ERR_INVALID, "tg_concat: bad input count (got 0", NULL);
    ck_assert_ptr_null(tg_concat(TG_MAX_OP_INPUTS + 1, ab, 0));
    assert_error(TG_ERR_INVALID, "tg_concat: bad input count", NULL);
    ck_assert_ptr_null(tg_concat(2, NULL, 0));
    assert_error(TG_ERR_INVALID, "tg_concat: xs is NULL", NULL);

    /* A NULL element keeps an earlier failure's message, or names its index. */
    struct tg_tensor *an[2] = {a, NULL};
    tg_error_set(TG_ERR_NOMEM, "tg_add: first failure");
    ck_assert_ptr_null(tg_concat(2, an, 0));
    ck_assert_str_eq(tg_last_error(), "tg_add: first failure");
    tg_clear_error();
    ck_assert_ptr_null(tg_concat(2, an, 0));
    assert_error(TG_ERR_INVALID, "tg_concat: input 1 is NULL", NULL);

    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
    tg_tensor_free(s);
}
END_TEST

START_TEST(test_shape_ops_report_failed_allocation)
{
    struct tg_tensor *x = make(2, (int64_t[]){2, 3}, six);
    struct tg_tensor *xx[2] = {x, x};
    for (int k = 0; k < 4; k++) {
        tg_clear_error();
        tg_alloc_fail_at(1);
        struct tg_tensor *y = k == 0   ? tg_reshape(x, 1, (int64_t[]){6})
                              : k == 1 ? tg_flatten(x, 0)
                              : k == 2 ? tg_transpose(x)
                                       : tg_concat(2, xx, 0);
        tg_alloc_fail_at(0);
        ck_assert_ptr_null(y);
        ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
        ck_assert_msg(strncmp(tg_last_error(), "tg_", 3) == 0, "%s", tg_last_error());
    }
    tu_assert_close(x->data, six, 6, 0, 0);
    tg_tensor_free(x);
}
END_TEST

static Suite *shape_suite(void)
{
    Suite *s = suite_create("ops-shape");
    TCase *tc = tcase_create("reshape");
    tcase_add_test(tc, test_reshape_keeps_data_and_infers_size);
    tcase_add_test(tc, test_reshape_backward_adds_gradient);
    tcase_add_test(tc, test_reshape_rejects_bad_shapes);
    tcase_add_test(tc, test_reshape_gradcheck);
    suite_add_tcase(s, tc);

    tc = tcase_create("flatten");
    tcase_add_test(tc, test_flatten_collapses_trailing_dims);
    tcase_add_test(tc, test_flatten_gradcheck);
    suite_add_tcase(s, tc);

    tc = tcase_create("transpose");
    tcase_add_test(tc, test_transpose_by_hand_and_naive);
    tcase_add_test(tc, test_transpose_backward_and_errors);
    tcase_add_test(tc, test_transpose_gradcheck);
    suite_add_tcase(s, tc);

    tc = tcase_create("concat");
    tcase_add_loop_test(tc, test_concat_each_axis_matches_naive, 0, 3);
    tcase_add_loop_test(tc, test_concat_backward_only_inputs_needing_grad, 0, 3);
    tcase_add_loop_test(tc, test_concat_gradcheck_some_inputs_fixed, 0, 3);
    tcase_add_test(tc, test_concat_single_and_many_inputs);
    tcase_add_test(tc, test_concat_rejects_bad_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_shape_ops_report_failed_allocation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(shape_suite());
}
