/*
 * The tape: recording, backward (fan-out, a parameter used twice, seeds),
 * retained and released saved state, no-grad mode, allocation-free steps,
 * user-defined ops, several tapes on several threads, and its error paths.
 */
#include <pthread.h>
#include <string.h>

#include "testutil.h"

/* ---- User-defined ops, written only against the public API ---------------- */

/* y = x^2 element-wise; saves nothing, reads x in backward. */
static enum tg_status
square_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)ctx;
    (void)n_in;
    for (int64_t i = 0; i < out->n_elems; i++)
        out->data[i] = in[0]->data[i] * in[0]->data[i];
    return TG_OK;
}

static enum tg_status square_backward(struct tg_op_ctx *ctx,
                                      const struct tg_tensor *out,
                                      struct tg_tensor *const *in,
                                      int n_in)
{
    (void)ctx;
    (void)n_in;
    if (in[0]->grad != NULL)
        for (int64_t i = 0; i < out->n_elems; i++)
            in[0]->grad[i] += 2.0f * in[0]->data[i] * out->grad[i];
    return TG_OK;
}

static enum tg_status same_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    for (int i = 1; i < n_in; i++)
        if (!tg_tensor_same_shape(in[0], in[i]))
            return tg_error_set(TG_ERR_SHAPE, "%s: inputs differ in shape", tg_op_ctx_name(ctx));
    *n_dims = in[0]->n_dims;
    memcpy(shape, in[0]->shape, sizeof(in[0]->shape));
    return TG_OK;
}

static const struct tg_op_def square_op = {"test_square", 0, same_shape, square_forward,
                                           square_backward};

/* y = a * b element-wise; saves a copy of both inputs to exercise tg_op_ctx_save. */
static enum tg_status
prod_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)n_in;
    size_t n = (size_t)out->n_elems;
    float *saved = tg_op_ctx_save(ctx, 2 * n * sizeof(float));
    if (saved == NULL)
        return tg_last_status();
    memcpy(saved, in[0]->data, n * sizeof(float));
    memcpy(saved + n, in[1]->data, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        out->data[i] = in[0]->data[i] * in[1]->data[i];
    return TG_OK;
}

static enum tg_status prod_backward(struct tg_op_ctx *ctx,
                                    const struct tg_tensor *out,
                                    struct tg_tensor *const *in,
                                    int n_in)
{
    (void)n_in;
    size_t n = (size_t)out->n_elems;
    const float *saved = tg_op_ctx_save(ctx, 0);
    if (saved == NULL)
        return tg_last_status();
    float *tmp = tg_op_ctx_scratch(ctx, n * sizeof(float));
    if (tmp == NULL)
        return tg_last_status();
    for (int k = 0; k < 2; k++) {
        if (in[k]->grad == NULL)
            continue;
        const float *other = saved + (k == 0 ? n : 0);
        for (size_t i = 0; i < n; i++)
            tmp[i] = other[i] * out->grad[i];
        for (size_t i = 0; i < n; i++)
            in[k]->grad[i] += tmp[i];
    }
    return TG_OK;
}

static const struct tg_op_def prod_op = {"test_prod", 0, same_shape, prod_forward, prod_backward};

/* An op that refuses in forward, to test that a failed call records nothing. */
static enum tg_status
refuse_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)out;
    (void)in;
    (void)n_in;
    return tg_error_set(TG_ERR_UNSUPPORTED, "%s: refuses on purpose", tg_op_ctx_name(ctx));
}

static const struct tg_op_def refuse_op = {"test_refuse", 0, same_shape, refuse_forward,
                                           square_backward};

static struct tg_tensor *square(struct tg_tensor *x)
{
    return tg_op_apply(&square_op, 1, &x, NULL);
}

static struct tg_tensor *prod(struct tg_tensor *a, struct tg_tensor *b)
{
    struct tg_tensor *in[2] = {a, b};
    return tg_op_apply(&prod_op, 2, in, NULL);
}

static struct tg_tensor *leaf(float v0, float v1, float v2)
{
    float d[3] = {v0, v1, v2};
    struct tg_tensor *t = tg_tensor_from_data(1, (int64_t[]){3}, d);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_tensor_set_requires_grad(t, true), TG_OK);
    return t;
}

/* ---- Recording and backward ------------------------------------------------ */

START_TEST(test_tape_records_user_op_and_backward)
{
    struct tg_tensor *x = leaf(1, -2, 3);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    ck_assert_ptr_eq(tg_tape_current(), tape);
    struct tg_tensor *y = square(x);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_eq(y->tape, tape);
    ck_assert(y->requires_grad);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 1);
    ck_assert_float_eq(y->data[1], 4.0f);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    float want[] = {2, -4, 6};
    tu_assert_close(x->grad, want, 3, 0, 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    ck_assert_ptr_null(tg_tape_current());
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

/* z = (x*x) * x + x*x with x used by several ops: dz/dx = 3x^2 + 2x. */
START_TEST(test_tape_fan_out_and_same_input_twice)
{
    struct tg_tensor *x = leaf(0.5f, -1.5f, 2.0f);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *x2 = prod(x, x);
    struct tg_tensor *x3 = prod(x2, x);
    struct tg_tensor *s = square(x);
    struct tg_tensor *z = prod(x3, s); // x^5: dz/dx = 5x^4
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, z, seed, 0), TG_OK);
    for (int i = 0; i < 3; i++) {
        float v = x->data[i];
        ck_assert_float_eq_tol(x->grad[i], 5 * v * v * v * v, 1e-4f);
    }
    /* The intermediate x2 got its own gradient: dz/dx2 = x^3. */
    for (int i = 0; i < 3; i++) {
        float v = x->data[i];
        ck_assert_float_eq_tol(x2->grad[i], v * v * v, 1e-5f);
    }
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_tape_seed_scales_gradient_and_grads_accumulate)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    for (int step = 0; step < 2; step++) {
        struct tg_tensor *y = square(x);
        struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
        seed->data[0] = 1;
        seed->data[1] = 0;
        seed->data[2] = -2;
        ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
        tg_tape_reset(tape);
    }
    /* No zero_grad between steps: leaf grads accumulate like PyTorch's. */
    float want[] = {4, 0, -24};
    tu_assert_close(x->grad, want, 3, 0, 0);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_tape_only_ops_upstream_of_out_run)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    struct tg_tensor *w = leaf(1, 1, 1);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *y = square(x);
    struct tg_tensor *unused = prod(w, x); // recorded after y, not upstream of it
    ck_assert_ptr_nonnull(unused);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq(w->grad[i], 0.0f);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_tape_second_backward_needs_retain)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *y = prod(x, x);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, TG_BACKWARD_RETAIN), TG_OK);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    float want[] = {4, 8, 12}; // 2x, twice
    tu_assert_close(x->grad, want, 3, 0, 0);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "released"));
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "TG_BACKWARD_RETAIN"));
    tu_assert_close(x->grad, want, 3, 0, 0); // the refused call changed nothing
    tg_tape_reset(tape);
    y = prod(x, x);
    seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK); // a reset tape is fresh
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_tape_backward_rejects_bad_arguments)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    struct tg_tensor *c = tu_tensor(3, -1); // does not require grad
    struct tg_tape *tape = tg_tape_new();
    struct tg_tape *other = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *y = square(x);
    struct tg_tensor *yc = square(c);

    ck_assert_int_eq(tg_tape_backward(NULL, y, NULL, 0), TG_ERR_INVALID);
    ck_assert_int_eq(tg_tape_backward(tape, NULL, NULL, 0), TG_ERR_INVALID);
    ck_assert_int_eq(tg_tape_backward(tape, y, NULL, 0), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(),
                     "tg_tape_backward: out has shape 3; a non-scalar needs a seed");
    struct tg_tensor *bad_seed = tg_tape_tensor_new(tape, 1, (int64_t[]){4});
    ck_assert_int_eq(tg_tape_backward(tape, y, bad_seed, 0), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(), "tg_tape_backward: seed has shape 4, out has 3");
    ck_assert_int_eq(tg_tape_backward(other, y, NULL, 0), TG_ERR_INVALID);
    ck_assert_int_eq(tg_tape_backward(tape, yc, NULL, 0), TG_ERR_INVALID);
    ck_assert_int_eq(tg_tape_backward(tape, x, NULL, 0), TG_ERR_INVALID);
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq(x->grad[i], 0.0f);

    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tape_free(other);
    tg_tensor_free(x);
    tg_tensor_free(c);
}
END_TEST

/* ---- Tape states ------------------------------------------------------------ */

START_TEST(test_tape_begin_end_nest_and_refuse_misuse)
{
    struct tg_tape *a = tg_tape_new();
    struct tg_tape *b = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(NULL), TG_ERR_INVALID);
    ck_assert_int_eq(tg_tape_begin(a), TG_OK);
    ck_assert_int_eq(tg_tape_begin(a), TG_ERR_STATE);
    ck_assert_int_eq(tg_tape_begin(b), TG_OK);
    ck_assert_ptr_eq(tg_tape_current(), b);
    ck_assert_int_eq(tg_tape_end(a), TG_ERR_STATE); // not the innermost
    ck_assert_ptr_eq(tg_tape_current(), b);
    ck_assert_int_eq(tg_tape_end(b), TG_OK);
    ck_assert_ptr_eq(tg_tape_current(), a);
    ck_assert_int_eq(tg_tape_end(a), TG_OK);
    ck_assert_ptr_null(tg_tape_current());
    ck_assert_int_eq(tg_tape_end(a), TG_ERR_STATE);
    tg_tape_free(a);
    tg_tape_free(b);
    tg_tape_free(NULL);
    tg_tape_reset(NULL);
}
END_TEST

START_TEST(test_tape_no_grad_records_and_saves_nothing)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    ck_assert(tg_tape_set_grad_enabled(tape, false));
    struct tg_tensor *y = prod(x, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_float_eq(y->data[2], 9.0f);
    ck_assert(!y->requires_grad);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 0);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_ERR_INVALID);
    ck_assert(!tg_tape_set_grad_enabled(tape, true));
    y = prod(x, x);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 1);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

/* Inference memory: with recording off, a call costs only its output. */
START_TEST(test_tape_no_grad_costs_only_outputs)
{
    int64_t n = 1 << 16;
    struct tg_tensor *x = tg_tensor_new(1, &n);
    tg_tensor_set_requires_grad(x, true);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    tg_tape_set_grad_enabled(tape, false);
    size_t before = tg_tape_bytes_in_use(tape);
    ck_assert_ptr_nonnull(prod(x, x));
    size_t no_grad = tg_tape_bytes_in_use(tape) - before;
    tg_tape_reset(tape);
    tg_tape_set_grad_enabled(tape, true);
    before = tg_tape_bytes_in_use(tape);
    ck_assert_ptr_nonnull(prod(x, x));
    size_t recorded = tg_tape_bytes_in_use(tape) - before;
    size_t out_bytes = (size_t)n * sizeof(float);
    ck_assert_uint_le(no_grad, out_bytes + 1024); // output and its header
    ck_assert_uint_ge(recorded, 3 * out_bytes);   // plus the saved copies
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

/* A training-like loop: after the first step, no step allocates. */
START_TEST(test_tape_warm_steps_allocate_nothing)
{
    struct tg_tensor *w = leaf(0.5f, -0.25f, 2.0f);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    uint64_t per_step[5];
    for (int step = 0; step < 5; step++) {
        uint64_t before = tg_alloc_count();
        struct tg_tensor *x = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
        tg_tensor_fill(x, (float)step);
        struct tg_tensor *h = x;
        for (int layer = 0; layer < 50; layer++)
            h = prod(square(prod(h, w)), w);
        struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
        tg_tensor_fill(seed, 1.0f);
        ck_assert_int_eq(tg_tape_backward(tape, h, seed, 0), TG_OK);
        tg_tensor_zero_grad(w);
        tg_tape_reset(tape);
        per_step[step] = tg_alloc_count() - before;
    }
    ck_assert_uint_gt(per_step[0], 0);
    for (int step = 1; step < 5; step++)
        ck_assert_msg(per_step[step] == 0, "step %d allocated %llu times", step,
                      (unsigned long long)per_step[step]);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_tape_failed_op_records_nothing)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    size_t used = tg_tape_bytes_in_use(tape);
    ck_assert_ptr_null(tg_op_apply(&refuse_op, 1, &x, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_UNSUPPORTED);
    ck_assert_str_eq(tg_last_error(), "test_refuse: refuses on purpose");
    ck_assert_uint_eq(tg_tape_n_entries(tape), 0);
    ck_assert_uint_eq(tg_tape_bytes_in_use(tape), used);
    struct tg_tensor *y = tu_tensor(4, -1);
    struct tg_tensor *in[2] = {x, y};
    ck_assert_ptr_null(tg_op_apply(&prod_op, 2, in, NULL));
    ck_assert_str_eq(tg_last_error(), "test_prod: inputs differ in shape");
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

START_TEST(test_op_apply_rejects_bad_arguments_and_chains_null)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    struct tg_op_def incomplete = {"broken", 0, NULL, NULL, NULL};
    tg_clear_error();
    ck_assert_ptr_null(tg_op_apply(&incomplete, 1, &x, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_op_apply(&square_op, 0, &x, NULL));
    ck_assert_ptr_null(tg_op_apply(NULL, 1, &x, NULL));

    /* A NULL input reports itself, and a chain keeps the first failure. */
    tg_clear_error();
    ck_assert_ptr_null(square(NULL));
    ck_assert_str_eq(tg_last_error(), "test_square: input 0 is NULL");
    struct tg_tensor *y = tu_tensor(4, -1);
    tg_clear_error();
    struct tg_tensor *z = square(prod(prod(x, y), x));
    ck_assert_ptr_null(z);
    ck_assert_str_eq(tg_last_error(), "test_prod: inputs differ in shape");
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

START_TEST(test_op_apply_without_tape_returns_heap_tensor)
{
    struct tg_tensor *x = leaf(1, 2, 3);
    ck_assert_ptr_null(tg_tape_current());
    struct tg_tensor *y = prod(x, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->tape);
    ck_assert(!y->requires_grad);
    ck_assert_float_eq(y->data[1], 4.0f);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_tape_tensor_free_is_noop_and_reset_keeps_memory)
{
    struct tg_tape *tape = tg_tape_new();
    struct tg_tensor *t = tg_tape_tensor_new(tape, 2, (int64_t[]){100, 100});
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_eq(t->tape, tape);
    ck_assert_uint_eq((uintptr_t)t->data % TG_ALIGN, 0);
    tg_tensor_free(t); // owned by the tape: no-op
    ck_assert_int_eq(tg_tensor_set_requires_grad(t, true), TG_ERR_INVALID);
    size_t reserved = tg_tape_bytes_reserved(tape);
    ck_assert_uint_gt(reserved, 0);
    tg_tape_reset(tape);
    ck_assert_uint_eq(tg_tape_bytes_reserved(tape), reserved);
    ck_assert_uint_eq(tg_tape_bytes_in_use(tape), 0);
    ck_assert_ptr_null(tg_tape_tensor_new(NULL, 1, (int64_t[]){3}));
    ck_assert_ptr_null(tg_tape_tensor_new(tape, 1, (int64_t[]){-3}));
    tg_tape_free(tape);
}
END_TEST

START_TEST(test_tape_large_step_spills_then_fits_one_block)
{
    struct tg_tape *tape = tg_tape_new();
    for (int step = 0; step < 3; step++) {
        uint64_t before = tg_alloc_count();
        for (int i = 0; i < 40; i++)
            ck_assert_ptr_nonnull(tg_tape_tensor_new(tape, 1, (int64_t[]){100000}));
        uint64_t n = tg_alloc_count() - before;
        if (step > 0)
            ck_assert_uint_eq(n, 0);
        tg_tape_reset(tape);
    }
    tg_tape_free(tape);
}
END_TEST

/* ---- Threads ---------------------------------------------------------------- */

struct worker {
    float scale;
    float grad[3];
    enum tg_status status;
};

static void *worker_run(void *arg)
{
    struct worker *wk = arg;
    struct tg_tensor *x = tg_tensor_from_data(1, (int64_t[]){3}, (float[]){1, 2, 3});
    tg_tensor_set_requires_grad(x, true);
    struct tg_tape *tape = tg_tape_new();
    wk->status = tg_tape_begin(tape);
    for (int step = 0; step < 200 && wk->status == TG_OK; step++) {
        tg_tensor_zero_grad(x);
        struct tg_tensor *y = prod(square(x), x); // x^3
        struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, (int64_t[]){3});
        tg_tensor_fill(seed, wk->scale);
        wk->status = tg_tape_backward(tape, y, seed, 0);
        tg_tape_reset(tape);
    }
    memcpy(wk->grad, x->grad, sizeof(wk->grad));
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
    return NULL;
}

START_TEST(test_tape_several_threads_record_at_once)
{
    enum { N = 4 };
    pthread_t th[N];
    struct worker wk[N];
    for (int i = 0; i < N; i++) {
        wk[i] = (struct worker){.scale = (float)(i + 1)};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_run, &wk[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(wk[i].status, TG_OK);
        for (int j = 0; j < 3; j++)
            ck_assert_float_eq_tol(wk[i].grad[j], 3.0f * (float)((j + 1) * (j + 1)) * wk[i].scale,
                                   1e-4f);
    }
    ck_assert_ptr_null(tg_tape_current());
}
END_TEST

static Suite *tape_suite(void)
{
    Suite *s = suite_create("tape");
    TCase *tb = tcase_create("backward");
    tcase_add_test(tb, test_tape_records_user_op_and_backward);
    tcase_add_test(tb, test_tape_fan_out_and_same_input_twice);
    tcase_add_test(tb, test_tape_seed_scales_gradient_and_grads_accumulate);
    tcase_add_test(tb, test_tape_only_ops_upstream_of_out_run);
    tcase_add_test(tb, test_tape_second_backward_needs_retain);
    tcase_add_test(tb, test_tape_backward_rejects_bad_arguments);
    suite_add_tcase(s, tb);
    TCase *ts = tcase_create("state");
    tcase_add_test(ts, test_tape_begin_end_nest_and_refuse_misuse);
    tcase_add_test(ts, test_tape_no_grad_records_and_saves_nothing);
    tcase_add_test(ts, test_tape_no_grad_costs_only_outputs);
    tcase_add_test(ts, test_tape_warm_steps_allocate_nothing);
    tcase_add_test(ts, test_tape_failed_op_records_nothing);
    tcase_add_test(ts, test_op_apply_rejects_bad_arguments_and_chains_null);
    tcase_add_test(ts, test_op_apply_without_tape_returns_heap_tensor);
    tcase_add_test(ts, test_tape_tensor_free_is_noop_and_reset_keeps_memory);
    tcase_add_test(ts, test_tape_large_step_spills_then_fits_one_block);
    suite_add_tcase(s, ts);
    TCase *tt = tcase_create("threads");
    tcase_add_test(tt, test_tape_several_threads_record_at_once);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    return tu_run_suite(tape_suite());
}
