/*
 * The gradient checker itself: it must catch backward rules that are wrong in
 * small ways (one element off by 5%, a flipped sign, an overwrite where fan-out
 * needs an accumulation), pass correct ones, restore its inputs bit for bit,
 * leave inputs that do not require grad alone, leave the caller's tape current,
 * and report every failure with a status and a message.
 *
 * The ops under test are user-defined here through struct tg_op_def, so the
 * suite depends on nothing but the tape.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- User ops with optional bugs ------------------------------------------ */

enum sq_bug {
    SQ_CORRECT = 0,
    SQ_ONE_ELEMENT_5PCT, // the gradient of one element is 5% too large
    SQ_WRONG_SIGN,       // every gradient has the wrong sign
    SQ_OVERWRITE,        // assigns into x->grad instead of adding
};

struct sq_params {
    enum sq_bug bug;
    int64_t bad_index;
};

/* y = x^2, element-wise. */
static enum tg_status
sq_shape(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    (void)ctx;
    (void)n_in;
    *n_dims = in[0]->n_dims;
    memcpy(shape, in[0]->shape, sizeof(in[0]->shape));
    return TG_OK;
}

static enum tg_status
sq_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)ctx;
    (void)n_in;
    for (int64_t i = 0; i < out->n_elems; i++)
        out->data[i] = in[0]->data[i] * in[0]->data[i];
    return TG_OK;
}

static enum tg_status sq_backward(struct tg_op_ctx *ctx,
                                  const struct tg_tensor *out,
                                  struct tg_tensor *const *in,
                                  int n_in)
{
    const struct sq_params *p = tg_op_ctx_params(ctx);
    struct tg_tensor *x = in[0];
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    for (int64_t i = 0; i < out->n_elems; i++) {
        float g = 2.0f * x->data[i] * out->grad[i];
        if (p->bug == SQ_ONE_ELEMENT_5PCT && i == p->bad_index)
            g *= 1.05f;
        if (p->bug == SQ_WRONG_SIGN)
            g = -g;
        if (p->bug == SQ_OVERWRITE)
            x->grad[i] = g;
        else
            x->grad[i] += g;
    }
    return TG_OK;
}

static const struct tg_op_def sq_op = {"test_sq", sizeof(struct sq_params), sq_shape, sq_forward,
                                       sq_backward};

/* y = a * b, element-wise, same shapes. */
static enum tg_status
mul_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)ctx;
    (void)n_in;
    for (int64_t i = 0; i < out->n_elems; i++)
        out->data[i] = in[0]->data[i] * in[1]->data[i];
    return TG_OK;
}

static enum tg_status mul_backward(struct tg_op_ctx *ctx,
                                   const struct tg_tensor *out,
                                   struct tg_tensor *const *in,
                                   int n_in)
{
    (void)ctx;
    (void)n_in;
    for (int64_t i = 0; i < out->n_elems; i++) {
        if (in[0]->grad != NULL)
            in[0]->grad[i] += in[1]->data[i] * out->grad[i];
        if (in[1]->grad != NULL)
            in[1]->grad[i] += in[0]->data[i] * out->grad[i];
    }
    return TG_OK;
}

static const struct tg_op_def mul_op = {"test_mul", 0, sq_shape, mul_forward, mul_backward};

/* y = a + b, element-wise, same shapes. */
static enum tg_status
add_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)ctx;
    (void)n_in;
    for (int64_t i = 0; i < out->n_elems; i++)
        out->data[i] = in[0]->data[i] + in[1]->data[i];
    return TG_OK;
}

static enum tg_status add_backward(struct tg_op_ctx *ctx,
                                   const struct tg_tensor *out,
                                   struct tg_tensor *const *in,
                                   int n_in)
{
    (void)ctx;
    for (int k = 0; k < n_in; k++)
        for (int64_t i = 0; in[k]->grad != NULL && i < out->n_elems; i++)
            in[k]->grad[i] += out->grad[i];
    return TG_OK;
}

static const struct tg_op_def add_op = {"test_add", 0, sq_shape, add_forward, add_backward};

/* y = x, with a backward that always fails. */
static enum tg_status failing_backward(struct tg_op_ctx *ctx,
                                       const struct tg_tensor *out,
                                       struct tg_tensor *const *in,
                                       int n_in)
{
    (void)ctx;
    (void)out;
    (void)in;
    (void)n_in;
    return tg_error_set(TG_ERR_UNSUPPORTED, "test_badback: no gradient today");
}

static enum tg_status
copy_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)ctx;
    (void)n_in;
    memcpy(out->data, in[0]->data, (size_t)out->n_elems * sizeof(float));
    return TG_OK;
}

/* y = the first n - 1 elements of x, flattened. */
static enum tg_status head_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    (void)ctx;
    (void)n_in;
    *n_dims = 1;
    shape[0] = in[0]->n_elems - 1;
    return TG_OK;
}

static enum tg_status head_backward(struct tg_op_ctx *ctx,
                                    const struct tg_tensor *out,
                                    struct tg_tensor *const *in,
                                    int n_in)
{
    (void)ctx;
    (void)n_in;
    for (int64_t i = 0; in[0]->grad != NULL && i < out->n_elems; i++)
        in[0]->grad[i] += out->grad[i];
    return TG_OK;
}

static const struct tg_op_def head_op = {"test_head", 0, head_shape, copy_forward, head_backward};

static const struct tg_op_def badback_op = {"test_badback", 0, sq_shape, copy_forward,
                                            failing_backward};

/* ---- Functions under test ------------------------------------------------- */

static struct tg_tensor *sq(struct tg_tensor *x, const struct sq_params *p)
{
    return tg_op_apply(&sq_op, 1, &x, p);
}

static struct tg_tensor *fn_sq(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return sq(in[0], user);
}

/* x used twice: y = x^2 + x^2, so an overwriting backward loses half the gradient. */
static struct tg_tensor *fn_fanout(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    struct tg_tensor *ab[2] = {sq(in[0], user), sq(in[0], user)};
    return tg_op_apply(&add_op, 2, ab, NULL);
}

static struct tg_tensor *fn_mul(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_op_apply(&mul_op, 2, in, NULL);
}

static struct tg_tensor *fn_sigmoid_tanh(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_sigmoid(tg_tanh(in[0]));
}

static struct tg_tensor *fn_badback(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_op_apply(&badback_op, 1, in, NULL);
}

static struct tg_tensor *fn_identity(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return in[0];
}

/* Fails with a message of its own on the n-th call (counting from 1). */
struct fail_on {
    int call;
    int fail_at;
    bool set_message;
};

static struct tg_tensor *fn_fail_on(struct tg_tensor *const *in, int n, void *user)
{
    struct fail_on *f = user;
    (void)n;
    if (++f->call != f->fail_at)
        return sq(in[0], &(struct sq_params){SQ_CORRECT, 0});
    if (f->set_message)
        tg_error_set(TG_ERR_SHAPE, "myfn: refusing on call %d", f->call);
    return NULL;
}

/* Output shape that changes after the first call. */
static struct tg_tensor *fn_shape_changes(struct tg_tensor *const *in, int n, void *user)
{
    int *calls = user;
    (void)n;
    if ((*calls)++ == 0)
        return sq(in[0], &(struct sq_params){SQ_CORRECT, 0});
    return tg_op_apply(&head_op, 1, in, NULL);
}

/* Records whether fixed input 1 ever differed from its saved copy. */
struct watch {
    const float *want;
    bool changed;
    int calls;
};

static struct tg_tensor *fn_mul_watch(struct tg_tensor *const *in, int n, void *user)
{
    struct watch *w = user;
    w->calls++;
    if (memcmp(in[1]->data, w->want, (size_t)in[1]->n_elems * sizeof(float)) != 0)
        w->changed = true;
    return fn_mul(in, n, NULL);
}

/* Records the tape current while fn runs. */
static struct tg_tensor *fn_see_tape(struct tg_tensor *const *in, int n, void *user)
{
    struct tg_tape **seen = user;
    (void)n;
    *seen = tg_tape_current();
    return sq(in[0], &(struct sq_params){SQ_CORRECT, 0});
}

/* ---- Helpers -------------------------------------------------------------- */

/* A heap tensor requiring grad, filled with magnitudes in [0.5, 1.5] of random sign. */
static struct tg_tensor *input(int64_t rows, int64_t cols, uint64_t seed)
{
    struct tg_tensor *x = tu_tensor(rows, cols, -1);
    uint64_t rng = seed;
    tu_fill_away_from_zero(x, &rng, 0.5f, 1.5f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    return x;
}

static struct tg_gradcheck_result run_check(tg_gradcheck_fn fn,
                                            void *user,
                                            int n,
                                            struct tg_tensor *const *in,
                                            const struct tg_gradcheck_opts *opts)
{
    struct tg_gradcheck_result r;
    enum tg_status st = tg_gradcheck(fn, user, n, in, opts, &r);
    ck_assert_msg(st == TG_OK, "tg_gradcheck: %s", tg_last_error());
    return r;
}

/* ---- Sensitivity ---------------------------------------------------------- */

START_TEST(test_gradcheck_passes_correct_op)
{
    struct tg_tensor *x = input(3, 5, 11);
    struct sq_params p = {SQ_CORRECT, 0};
    struct tg_gradcheck_result r = run_check(fn_sq, &p, 1, &x, NULL);
    ck_assert(r.passed);
    ck_assert_int_eq(r.n_checked, 15);
    ck_assert_int_eq(r.worst_input, 0);
    ck_assert(r.worst_index >= 0 && r.worst_index < 15);
    ck_assert(r.max_rel_err < 1e-2);

    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    o.n_projections = 20;
    r = run_check(fn_sq, &p, 1, &x, &o);
    ck_assert(r.passed);
    ck_assert_int_eq(r.n_checked, 20);
    ck_assert_int_eq(r.worst_input, -1);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_passes_builtin_chain_and_scalar_output)
{
    struct tg_tensor *x = input(4, 3, 12);
    tu_assert_gradcheck(fn_sigmoid_tanh, NULL, 1, &x, NULL);
    tg_tensor_free(x);

    struct tg_tensor *s = tg_tensor_from_data(0, NULL, (const float[]){0.7f});
    ck_assert_int_eq(tg_tensor_set_requires_grad(s, true), TG_OK);
    struct sq_params p = {SQ_CORRECT, 0};
    struct tg_gradcheck_result r = run_check(fn_sq, &p, 1, &s, NULL);
    ck_assert(r.passed);
    ck_assert_int_eq(r.n_checked, 1);
    tg_tensor_free(s);
}
END_TEST

START_TEST(test_gradcheck_full_mode_catches_one_element_5pct)
{
    struct tg_tensor *x = input(3, 5, 13);
    struct sq_params p = {SQ_ONE_ELEMENT_5PCT, 7};
    struct tg_gradcheck_result r = run_check(fn_sq, &p, 1, &x, NULL);
    ck_assert(!r.passed);
    ck_assert_int_eq(r.worst_input, 0);
    ck_assert_int_eq(r.worst_index, 7);
    ck_assert_double_eq_tol(r.analytic / r.numeric, 1.05, 1e-3);
    ck_assert(r.max_rel_err > 0.04 && r.max_rel_err < 0.06);
    ck_assert(fabs(r.analytic - r.numeric) == r.max_abs_err);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_projection_mode_catches_one_element_5pct)
{
    struct tg_tensor *x = input(2, 3, 14);
    struct sq_params p = {SQ_ONE_ELEMENT_5PCT, 4};
    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    o.n_projections = 64;
    for (uint64_t seed = 1; seed <= 5; seed++) {
        o.seed = seed;
        struct tg_gradcheck_result r = run_check(fn_sq, &p, 1, &x, &o);
        ck_assert_msg(!r.passed, "seed %d: missed (worst rel %g)", (int)seed, r.max_rel_err);
        ck_assert_int_eq(r.worst_input, -1);
        ck_assert(r.worst_index >= 0 && r.worst_index < 64);
        ck_assert_int_eq(r.n_checked, 64);
    }
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_catches_wrong_sign)
{
    struct tg_tensor *x = input(2, 4, 15);
    struct sq_params p = {SQ_WRONG_SIGN, 0};
    struct tg_gradcheck_result r = run_check(fn_sq, &p, 1, &x, NULL);
    ck_assert(!r.passed);
    ck_assert_double_eq_tol(r.analytic, -r.numeric, 1e-2 * fabs(r.numeric));

    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    o.n_projections = 4;
    r = run_check(fn_sq, &p, 1, &x, &o);
    ck_assert(!r.passed);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_catches_overwrite_with_fan_out)
{
    struct tg_tensor *x = input(3, 3, 16);
    struct sq_params good = {SQ_CORRECT, 0};
    struct sq_params bad = {SQ_OVERWRITE, 0};

    /* Without fan-out the overwrite is invisible: grads start at zero. */
    ck_assert(run_check(fn_sq, &bad, 1, &x, NULL).passed);
    ck_assert(run_check(fn_fanout, &good, 1, &x, NULL).passed);
    struct tg_gradcheck_result r = run_check(fn_fanout, &bad, 1, &x, NULL);
    ck_assert(!r.passed);
    ck_assert_double_eq_tol(r.analytic * 2.0, r.numeric, 1e-2 * fabs(r.numeric));
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_tolerance_rule)
{
    /* 5% off passes with rtol 0.1 and fails with rtol 0.01. */
    struct tg_tensor *x = input(2, 2, 17);
    struct sq_params p = {SQ_ONE_ELEMENT_5PCT, 1};
    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    o.rtol = 0.1f;
    ck_assert(run_check(fn_sq, &p, 1, &x, &o).passed);
    o.rtol = 0.01f;
    ck_assert(!run_check(fn_sq, &p, 1, &x, &o).passed);
    /* A large atol alone also hides it. */
    o.atol = 10.0f;
    ck_assert(run_check(fn_sq, &p, 1, &x, &o).passed);
    tg_tensor_free(x);
}
END_TEST

/* ---- Inputs, grads and tapes --------------------------------------------- */

START_TEST(test_gradcheck_restores_inputs_exactly)
{
    /* Values for which (x + eps) - eps != x in float. */
    const float vals[] = {1.2345678f, -0.3333333f, 1e-30f, -0.0f, 0.1f, 3.1415927f};
    struct tg_tensor *x = tg_tensor_from_data(2, (const int64_t[]){2, 3}, vals);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct sq_params p = {SQ_CORRECT, 0};
    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;

    run_check(fn_sq, &p, 1, &x, &o);
    ck_assert_mem_eq(x->data, vals, sizeof(vals));
    o.n_projections = 7;
    run_check(fn_sq, &p, 1, &x, &o);
    ck_assert_mem_eq(x->data, vals, sizeof(vals));

    /* Also when fn fails half-way through. */
    for (int fail_at = 2; fail_at <= 5; fail_at++) {
        struct fail_on f = {0, fail_at, true};
        struct tg_gradcheck_result r;
        o.n_projections = fail_at % 2 ? 3 : 0;
        ck_assert_int_eq(tg_gradcheck(fn_fail_on, &f, 1, &x, &o, &r), TG_ERR_SHAPE);
        ck_assert_mem_eq(x->data, vals, sizeof(vals));
    }
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_overwrites_grad)
{
    struct tg_tensor *x = input(2, 3, 18);
    tg_tensor_fill(x, 0.5f);
    for (int64_t i = 0; i < x->n_elems; i++)
        x->grad[i] = 100.0f; // stale gradient from an earlier step
    struct sq_params p = {SQ_CORRECT, 0};
    struct tg_gradcheck_result r = run_check(fn_sq, &p, 1, &x, NULL);
    ck_assert(r.passed);
    /* grad holds d sum(r * x^2) / dx = 2 x r with |r| in [0.5, 1.5]. */
    for (int64_t i = 0; i < x->n_elems; i++)
        ck_assert(fabsf(x->grad[i]) >= 0.5f && fabsf(x->grad[i]) <= 1.5f);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_holds_non_requires_grad_inputs_fixed)
{
    struct tg_tensor *in[2] = {input(3, 4, 19), input(3, 4, 20)};
    ck_assert_int_eq(tg_tensor_set_requires_grad(in[1], false), TG_OK);
    float want[12];
    memcpy(want, in[1]->data, sizeof(want));
    struct watch w = {want, false, 0};

    struct tg_gradcheck_result r = run_check(fn_mul_watch, &w, 2, in, NULL);
    ck_assert(r.passed);
    ck_assert_int_eq(r.n_checked, 12);
    ck_assert_int_eq(r.worst_input, 0);
    ck_assert_int_eq(w.calls, 1 + 2 * 12);
    ck_assert(!w.changed);
    ck_assert_ptr_null(in[1]->grad);
    ck_assert_mem_eq(in[1]->data, want, sizeof(want));

    /* Both checked: 24 elements, each input's own index space. */
    ck_assert_int_eq(tg_tensor_set_requires_grad(in[1], true), TG_OK);
    r = run_check(fn_mul, NULL, 2, in, NULL);
    ck_assert(r.passed);
    ck_assert_int_eq(r.n_checked, 24);
    tg_tensor_free(in[0]);
    tg_tensor_free(in[1]);
}
END_TEST

START_TEST(test_gradcheck_keeps_callers_tape_current)
{
    struct tg_tape *mine = tg_tape_new();
    ck_assert_ptr_nonnull(mine);
    ck_assert_int_eq(tg_tape_begin(mine), TG_OK);
    struct tg_tensor *x = input(2, 2, 21);
    struct tg_tape *seen = NULL;

    struct tg_gradcheck_result r = run_check(fn_see_tape, &seen, 1, &x, NULL);
    ck_assert(r.passed);
    ck_assert_ptr_nonnull(seen);
    ck_assert_ptr_ne(seen, mine);
    ck_assert_ptr_eq(tg_tape_current(), mine);
    ck_assert_int_eq(tg_tape_n_entries(mine), 0);

    /* Also after a failure. */
    struct fail_on f = {0, 1, true};
    ck_assert_int_ne(tg_gradcheck(fn_fail_on, &f, 1, &x, NULL, &r), TG_OK);
    ck_assert_ptr_eq(tg_tape_current(), mine);

    ck_assert_int_eq(tg_tape_end(mine), TG_OK);
    ck_assert_ptr_null(tg_tape_current());
    r = run_check(fn_see_tape, &seen, 1, &x, NULL);
    ck_assert_ptr_null(tg_tape_current());
    tg_tensor_free(x);
    tg_tape_free(mine);
}
END_TEST

START_TEST(test_gradcheck_same_seed_same_result)
{
    struct tg_tensor *x = input(3, 3, 22);
    struct sq_params p = {SQ_ONE_ELEMENT_5PCT, 2};
    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    o.n_projections = 9;
    struct tg_gradcheck_result a = run_check(fn_sq, &p, 1, &x, &o);
    struct tg_gradcheck_result b = run_check(fn_sq, &p, 1, &x, &o);
    ck_assert(a.max_abs_err == b.max_abs_err && a.worst_index == b.worst_index);
    ck_assert(a.analytic == b.analytic && a.numeric == b.numeric);
    tg_tensor_free(x);
}
END_TEST

/* ---- Options -------------------------------------------------------------- */

START_TEST(test_gradcheck_default_options)
{
    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    ck_assert(o.eps == 1e-3f);
    ck_assert(o.atol == 1e-3f);
    ck_assert(o.rtol == 1e-2f);
    ck_assert_int_eq(o.n_projections, 0);
    ck_assert_uint_eq(o.seed, 1);

    /* NULL options behave as TG_GRADCHECK_DEFAULT. */
    struct tg_tensor *x = input(2, 3, 23);
    struct sq_params p = {SQ_ONE_ELEMENT_5PCT, 3};
    struct tg_gradcheck_result a = run_check(fn_sq, &p, 1, &x, NULL);
    struct tg_gradcheck_result b = run_check(fn_sq, &p, 1, &x, &o);
    ck_assert(a.passed == b.passed && a.max_abs_err == b.max_abs_err);
    ck_assert(a.max_rel_err == b.max_rel_err && a.worst_index == b.worst_index);
    ck_assert(a.analytic == b.analytic && a.numeric == b.numeric);
    tg_tensor_free(x);
}
END_TEST

/* ---- Errors --------------------------------------------------------------- */

/* The call fails with st, names tg_gradcheck and leaves result untouched. */
static void assert_refused(enum tg_status want,
                           tg_gradcheck_fn fn,
                           void *user,
                           int n,
                           struct tg_tensor *const *in,
                           const struct tg_gradcheck_opts *o)
{
    struct tg_gradcheck_result r;
    memset(&r, 0x5a, sizeof(r));
    struct tg_gradcheck_result before = r;
    tg_clear_error();
    enum tg_status st = tg_gradcheck(fn, user, n, in, o, &r);
    ck_assert_msg(st == want, "got %s, want %s (%s)", tg_status_str(st), tg_status_str(want),
                  tg_last_error());
    ck_assert_int_eq(tg_last_status(), want);
    ck_assert_msg(strstr(tg_last_error(), "tg_gradcheck") != NULL, "%s", tg_last_error());
    ck_assert_mem_eq(&r, &before, sizeof(r));
}

START_TEST(test_gradcheck_rejects_bad_arguments)
{
    struct tg_tensor *x = input(2, 2, 24);
    struct tg_tensor *in2[2] = {x, NULL};
    struct sq_params p = {SQ_CORRECT, 0};
    struct tg_gradcheck_result r;

    assert_refused(TG_ERR_INVALID, NULL, &p, 1, &x, NULL);
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 0, &x, NULL);
    assert_refused(TG_ERR_INVALID, fn_sq, &p, -1, &x, NULL);
    assert_refused(TG_ERR_INVALID, fn_sq, &p, TG_MAX_OP_INPUTS + 1, &x, NULL);
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 1, NULL, NULL);
    assert_refused(TG_ERR_INVALID, fn_mul, NULL, 2, in2, NULL);
    ck_assert_int_eq(tg_gradcheck(fn_sq, &p, 1, &x, NULL, NULL), TG_ERR_INVALID);

    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    o.eps = 0.0f;
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 1, &x, &o);
    o.eps = NAN;
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 1, &x, &o);
    o = TG_GRADCHECK_DEFAULT;
    o.rtol = -1.0f;
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 1, &x, &o);
    o = TG_GRADCHECK_DEFAULT;
    o.n_projections = -2;
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 1, &x, &o);

    /* Nothing requires grad: nothing to check. */
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, false), TG_OK);
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 1, &x, NULL);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    ck_assert_int_eq(tg_gradcheck(fn_sq, &p, 1, &x, NULL, &r), TG_OK);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_rejects_tape_owned_input)
{
    struct tg_tape *tape = tg_tape_new();
    struct tg_tensor *t = tg_tape_tensor_new(tape, 1, (const int64_t[]){3});
    ck_assert_ptr_nonnull(t);
    struct sq_params p = {SQ_CORRECT, 0};
    assert_refused(TG_ERR_INVALID, fn_sq, &p, 1, &t, NULL);
    tg_tape_free(tape);
}
END_TEST

START_TEST(test_gradcheck_reports_fn_failure)
{
    struct tg_tensor *x = input(2, 2, 25);
    float want[4];
    memcpy(want, x->data, sizeof(want));

    /* With a message: its status, and the message kept after our prefix. */
    for (int at = 1; at <= 3; at++) {
        struct fail_on f = {0, at, true};
        assert_refused(TG_ERR_SHAPE, fn_fail_on, &f, 1, &x, NULL);
        ck_assert_msg(strstr(tg_last_error(), "myfn: refusing") != NULL, "%s", tg_last_error());
        ck_assert_int_eq(f.call, at);
    }
    /* Without one: TG_ERR_INVALID and a message all the same. */
    struct fail_on quiet = {0, 1, false};
    assert_refused(TG_ERR_INVALID, fn_fail_on, &quiet, 1, &x, NULL);
    ck_assert_mem_eq(x->data, want, sizeof(want));

    /* Returning an input instead of an op's output. */
    assert_refused(TG_ERR_INVALID, fn_identity, NULL, 1, &x, NULL);
    /* An output whose shape changes between calls. */
    int calls = 0;
    assert_refused(TG_ERR_SHAPE, fn_shape_changes, &calls, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_reports_backward_failure)
{
    struct tg_tensor *x = input(2, 2, 26);
    assert_refused(TG_ERR_UNSUPPORTED, fn_badback, NULL, 1, &x, NULL);
    ck_assert_msg(strstr(tg_last_error(), "test_badback") != NULL, "%s", tg_last_error());
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_survives_allocation_failures)
{
    struct tg_tensor *x = input(3, 2, 27);
    float want[6];
    memcpy(want, x->data, sizeof(want));
    struct sq_params p = {SQ_CORRECT, 0};
    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    int n_failed = 0;

    for (int proj = 0; proj <= 1; proj++) {
        o.n_projections = proj ? 3 : 0;
        for (uint64_t n = 1; n <= 40; n++) {
            struct tg_gradcheck_result r;
            tg_alloc_fail_at(n);
            enum tg_status st = tg_gradcheck(fn_sq, &p, 1, &x, &o, &r);
            tg_alloc_fail_at(0);
            ck_assert_msg(st == TG_OK || st == TG_ERR_NOMEM, "n %d: %s", (int)n, tg_status_str(st));
            ck_assert(st != TG_OK || r.passed);
            ck_assert_msg(st == TG_OK || strstr(tg_last_error(), "tg_gradcheck") != NULL, "%s",
                          tg_last_error());
            n_failed += st != TG_OK;
            ck_assert_mem_eq(x->data, want, sizeof(want));
        }
    }
    ck_assert(n_failed > 0);
    tg_tensor_free(x);
}
END_TEST

static Suite *gradcheck_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("sensitivity");
    tcase_add_test(tc, test_gradcheck_passes_correct_op);
    tcase_add_test(tc, test_gradcheck_passes_builtin_chain_and_scalar_output);
    tcase_add_test(tc, test_gradcheck_full_mode_catches_one_element_5pct);
    tcase_add_test(tc, test_gradcheck_projection_mode_catches_one_element_5pct);
    tcase_add_test(tc, test_gradcheck_catches_wrong_sign);
    tcase_add_test(tc, test_gradcheck_catches_overwrite_with_fan_out);
    tcase_add_test(tc, test_gradcheck_tolerance_rule);
    suite_add_tcase(s, tc);

    tc = tcase_create("inputs");
    tcase_add_test(tc, test_gradcheck_restores_inputs_exactly);
    tcase_add_test(tc, test_gradcheck_overwrites_grad);
    tcase_add_test(tc, test_gradcheck_holds_non_requires_grad_inputs_fixed);
    tcase_add_test(tc, test_gradcheck_keeps_callers_tape_current);
    tcase_add_test(tc, test_gradcheck_same_seed_same_result);
    tcase_add_test(tc, test_gradcheck_default_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_gradcheck_rejects_bad_arguments);
    tcase_add_test(tc, test_gradcheck_rejects_tape_owned_input);
    tcase_add_test(tc, test_gradcheck_reports_fn_failure);
    tcase_add_test(tc, test_gradcheck_reports_backward_failure);
    tcase_add_test(tc, test_gradcheck_survives_allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(gradcheck_suite());
}
