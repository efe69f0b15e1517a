/*
 * Activations: relu, leaky_relu, elu, sigmoid, tanh. Hand-worked values, the
 * gradient at the kink (relu's is 0 at exactly 0, as in PyTorch), sigmoid and
 * tanh at +-100 and beyond without overflow or NaN, large inputs against libm,
 * the PyTorch reference cases, and central differences on inputs kept at
 * least 0.1 away from the kink at 0.
 *
 * Tolerances: values to 2e-7 relative (libm's float functions), gradients
 * against PyTorch to 1e-4 relative, gradchecks at the defaults.
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

/* An activation with its parameter. */
struct act {
    const char *name;
    int which; // 0 relu, 1 leaky_relu, 2 elu, 3 sigmoid, 4 tanh
    float param;
};

static struct act acts[] = {
        {"tg_relu", 0, 0.0f}, {"tg_leaky_relu", 1, 0.01f}, {"tg_leaky_relu", 1, 0.2f},
        {"tg_elu", 2, 1.0f},  {"tg_elu", 2, 0.5f},         {"tg_sigmoid", 3, 0.0f},
        {"tg_tanh", 4, 0.0f},
};
#define N_ACTS ((int)(sizeof(acts) / sizeof(acts[0])))

static struct tg_tensor *apply_act(const struct act *a, struct tg_tensor *x)
{
    switch (a->which) {
    case 0:
        return tg_relu(x);
    case 1:
        return tg_leaky_relu(x, a->param);
    case 2:
        return tg_elu(x, a->param);
    case 3:
        return tg_sigmoid(x);
    default:
        return tg_tanh(x);
    }
}

/* Reference value and derivative of an activation, in double. */
static double ref_value(const struct act *a, double x)
{
    switch (a->which) {
    case 0:
        return x > 0 ? x : 0;
    case 1:
        return x > 0 ? x : a->param * x;
    case 2:
        return x > 0 ? x : a->param * expm1(x);
    case 3:
        return 1.0 / (1.0 + exp(-x));
    default:
        return tanh(x);
    }
}

static double ref_grad(const struct act *a, double x)
{
    switch (a->which) {
    case 0:
        return x > 0 ? 1 : 0;
    case 1:
        return x > 0 ? 1 : a->param;
    case 2:
        return x > 0 ? 1 : a->param * exp(x);
    case 3: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 - s);
    }
    default:
        return 1 - tanh(x) * tanh(x);
    }
}

/* y = act(x) and dL/dx for upstream ones, on a fresh tape. */
static void run_with_grad(const struct act *a, struct tg_tensor *x, float *y_out, float *g_out)
{
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tg_tensor_zero_grad(x);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_ptr_nonnull(tape);
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = apply_act(a, x);
    ck_assert_msg(y != NULL, "%s: %s", a->name, tg_last_error());
    ck_assert_int_eq(tg_tape_n_entries(tape), 1);
    memcpy(y_out, y->data, (size_t)y->n_elems * sizeof(float));
    struct tg_tensor *seed = tg_tape_tensor_new(tape, y->n_dims, y->shape);
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    memcpy(g_out, x->grad, (size_t)x->n_elems * sizeof(float));
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
}

/* ---- Hand-worked values ----------------------------------------------------- */

START_TEST(test_relu_values_and_gradient_at_zero)
{
    struct act relu = {"tg_relu", 0, 0.0f};
    struct tg_tensor *x = mk(1, SHP(5), VAL(-2, -0.5f, 0, 0.5f, 2));
    float y[5], g[5];
    run_with_grad(&relu, x, y, g);
    tu_assert_close(y, VAL(0, 0, 0, 0.5f, 2), 5, 0, 0);
    /* The gradient at exactly 0 is 0, as in PyTorch. */
    tu_assert_close(g, VAL(0, 0, 0, 1, 1), 5, 0, 0);
    ck_assert(!signbit(y[0]) && !signbit(y[1])); // relu gives +0, not -0
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_leaky_relu_values)
{
    struct act lr = {"tg_leaky_relu", 1, 0.1f};
    struct tg_tensor *x = mk(1, SHP(4), VAL(-3, -0.5f, 0, 2));
    float y[4], g[4];
    run_with_grad(&lr, x, y, g);
    tu_assert_close(y, VAL(-0.3f, -0.05f, 0, 2), 4, 0, 1e-7);
    /* At 0 the negative slope applies, as in PyTorch. */
    tu_assert_close(g, VAL(0.1f, 0.1f, 0.1f, 1), 4, 0, 0);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_elu_values)
{
    /* elu(-1) = e^-1 - 1 = -0.632120559, its slope e^-1; alpha 2 doubles both. */
    struct act e1 = {"tg_elu", 2, 1.0f};
    struct act e2 = {"tg_elu", 2, 2.0f};
    struct tg_tensor *x = mk(1, SHP(4), VAL(-1, 0, 1.5f, -20));
    float y[4], g[4];
    run_with_grad(&e1, x, y, g);
    tu_assert_close(y, VAL(-0.632120559f, 0, 1.5f, -0.999999998f), 4, 0, 2e-7);
    tu_assert_close(g, VAL(0.367879441f, 1, 1, 2.06115362e-9f), 4, 1e-7, 1e-6);
    run_with_grad(&e2, x, y, g);
    tu_assert_close(y, VAL(-1.26424112f, 0, 1.5f, -1.999999996f), 4, 0, 2e-7);
    tu_assert_close(g, VAL(0.735758882f, 2, 1, 4.1223072e-9f), 4, 1e-7, 1e-6);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_sigmoid_values)
{
    struct act sg = {"tg_sigmoid", 3, 0.0f};
    struct tg_tensor *x = mk(1, SHP(5), VAL(0, 2, -2, 0.5f, -0.5f));
    float y[5], g[5];
    run_with_grad(&sg, x, y, g);
    tu_assert_close(y, VAL(0.5f, 0.880797078f, 0.119202922f, 0.622459331f, 0.377540669f), 5, 0,
                    2e-7);
    tu_assert_close(g, VAL(0.25f, 0.104993585f, 0.104993585f, 0.235003712f, 0.235003712f), 5, 0,
                    1e-6);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_sigmoid_extremes_finite)
{
    /* exp(100) and beyond overflow float: neither branch may meet them. */
    struct act sg = {"tg_sigmoid", 3, 0.0f};
    struct tg_tensor *x = mk(1, SHP(6), VAL(100, -100, 1000, -1000, 88.8f, -88.8f));
    float y[6], g[6];
    run_with_grad(&sg, x, y, g);
    for (int i = 0; i < 6; i++) {
        ck_assert_msg(isfinite(y[i]) && isfinite(g[i]), "element %d: y %g, dy/dx %g", i, y[i],
                      g[i]);
        ck_assert(y[i] >= 0.0f && y[i] <= 1.0f && g[i] >= 0.0f);
    }
    ck_assert_float_eq(y[0], 1.0f);
    ck_assert_float_eq(y[2], 1.0f);
    ck_assert_float_eq(y[3], 0.0f);
    ck_assert_float_eq(g[0], 0.0f);
    /* sigmoid(-100) = e^-100 = 3.72e-44, a float subnormal, not 0 or NaN. */
    ck_assert_float_eq_tol(y[1], 3.72007598e-44f, 3e-45f);
    ck_assert_float_eq_tol(g[1], 3.72007598e-44f, 3e-45f);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_tanh_values_and_extremes)
{
    struct act th = {"tg_tanh", 4, 0.0f};
    struct tg_tensor *x = mk(1, SHP(5), VAL(0, 0.5f, -1, 100, -100));
    float y[5], g[5];
    run_with_grad(&th, x, y, g);
    tu_assert_close(y, VAL(0, 0.462117157f, -0.761594156f, 1, -1), 5, 0, 2e-7);
    tu_assert_close(g, VAL(1, 0.786447733f, 0.419974342f, 0, 0), 5, 0, 1e-6);
    tg_tensor_free(x);
}
END_TEST

/* ---- Against double references and central differences ---------------------------- */

START_TEST(test_activation_large_matches_reference)
{
    /* Above the threading threshold, inputs in [-6, 6] except a band around 0. */
    const struct act *a = &acts[_i];
    int64_t n = 70001;
    uint64_t rng = 10 + (uint64_t)_i;
    struct tg_tensor *x = mk(1, &n, NULL);
    tu_fill_away_from_zero(x, &rng, 1e-3f, 6.0f);
    float *y = malloc((size_t)n * sizeof(float));
    float *g = malloc((size_t)n * sizeof(float));
    ck_assert(y != NULL && g != NULL);
    run_with_grad(a, x, y, g);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        double xv = x->data[i];
        double yv = ref_value(a, xv), gv = ref_grad(a, xv);
        if (fabs(y[i] - yv) > 1e-7 + 4e-7 * fabs(yv) || fabs(g[i] - gv) > 1e-6 + 1e-5 * fabs(gv))
            bad = i;
    }
    if (bad >= 0)
        ck_abort_msg("%s: x = %.9g: y %.9g (want %.9g), dy/dx %.9g (want %.9g)", a->name,
                     x->data[bad], y[bad], ref_value(a, x->data[bad]), g[bad],
                     ref_grad(a, x->data[bad]));
    free(y);
    free(g);
    tg_tensor_free(x);
}
END_TEST

static struct tg_tensor *gc_act(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return apply_act(user, in[0]);
}

START_TEST(test_activation_gradcheck)
{
    /* |x| in [0.1, 3]: the finite-difference step 1e-3 never crosses the kink. */
    struct act *a = &acts[_i];
    uint64_t rng = 20 + (uint64_t)_i;
    struct tg_tensor *x = mk(3, SHP(2, 3, 5), NULL);
    tu_fill_away_from_zero(x, &rng, 0.1f, 3.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(gc_act, a, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_activation_backward_accumulates)
{
    /* y = act(x) + act(x) through tg_add: x's gradient is twice the derivative. */
    const struct act *a = &acts[_i];
    struct tg_tensor *x = mk(1, SHP(4), VAL(-1.5f, -0.25f, 0.75f, 2));
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_add(apply_act(a, x), apply_act(a, x));
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    struct tg_tensor *seed = tg_tape_tensor_new(tape, 1, SHP(4));
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(x->grad[i], 2.0 * ref_grad(a, x->data[i]), 1e-6);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

/* ---- PyTorch reference cases ---------------------------------------------------------- */

START_TEST(test_activation_matches_torch)
{
    struct refcase_set set;
    char err[REFCASE_ERR_SIZE];
    ck_assert_msg(refcase_load(DATA_FILE, &set, err) == TG_OK, "%s", err);
    int n_run = 0;
    for (int i = 0; i < set.n; i++) {
        const struct refcase *rc = &set.cases[i];
        struct act a;
        if (strcmp(rc->op, "relu") == 0)
            a = (struct act){"tg_relu", 0, 0.0f};
        else if (strcmp(rc->op, "leaky_relu") == 0)
            a = (struct act){"tg_leaky_relu", 1,
                             (float)refcase_param_double(rc, "negative_slope", 0.01)};
        else if (strcmp(rc->op, "elu") == 0)
            a = (struct act){"tg_elu", 2, (float)refcase_param_double(rc, "alpha", 1.0)};
        else if (strcmp(rc->op, "sigmoid") == 0)
            a = (struct act){"tg_sigmoid", 3, 0.0f};
        else if (strcmp(rc->op, "tanh") == 0)
            a = (struct act){"tg_tanh", 4, 0.0f};
        else
            continue;
        const struct refcase_tensor *in = refcase_input(rc, "x");
        const struct refcase_tensor *gx = refcase_grad(rc, "x");
        ck_assert(in != NULL && gx != NULL && rc->output_is_tensor && rc->has_upstream);

        struct tg_tensor *x = mk(in->n_dims, in->shape, in->data);
        ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
        struct tg_tape *tape = tg_tape_new();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        struct tg_tensor *y = apply_act(&a, x);
        ck_assert_msg(y != NULL, "line %d: %s", rc->line, tg_last_error());
        tu_assert_close(y->data, rc->output.data, y->n_elems, 1e-6, 1e-5);
        struct tg_tensor *seed = tg_tape_tensor_new(tape, y->n_dims, y->shape);
        memcpy(seed->data, rc->upstream.data, (size_t)y->n_elems * sizeof(float));
        ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
        tu_assert_close(x->grad, gx->data, x->n_elems, 1e-6, 1e-4);
        ck_assert_int_eq(tg_tape_end(tape), TG_OK);
        tg_tape_free(tape);
        tg_tensor_free(x);
        n_run++;
    }
    ck_assert_int_eq(n_run, 5);
    refcase_set_free(&set);
}
END_TEST

/* ---- Errors, tape and no-tape calls ---------------------------------------------------- */

START_TEST(test_activation_no_tape_heap_output)
{
    const struct act *a = &acts[_i];
    struct tg_tensor *x = mk(2, SHP(2, 2), VAL(-1, 2, -3, 4));
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tensor *y = apply_act(a, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->tape);
    ck_assert(!y->requires_grad);
    ck_assert_int_eq(y->n_dims, 2);
    ck_assert(y->shape[0] == 2 && y->shape[1] == 2);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(y->data[i], ref_value(a, x->data[i]), 1e-6);
    tu_assert_close(x->data, VAL(-1, 2, -3, 4), 4, 0, 0);
    tu_assert_close(x->grad, VAL(0, 0, 0, 0), 4, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_activation_no_grad_not_recorded)
{
    const struct act *a = &acts[_i];
    struct tg_tensor *x = mk(1, SHP(3), VAL(-1, 0.5f, 2));
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    /* x does not require grad: the output is on the tape but nothing is recorded. */
    struct tg_tensor *y = apply_act(a, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_eq(y->tape, tape);
    ck_assert_int_eq(tg_tape_n_entries(tape), 0);
    ck_assert(!y->requires_grad);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_activation_null_input)
{
    const struct act *a = &acts[_i];
    tg_clear_error();
    ck_assert_ptr_null(apply_act(a, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_msg(strstr(tg_last_error(), a->name) != NULL, "message: %s", tg_last_error());
    tg_error_set(TG_ERR_SHAPE, "earlier: failure");
    ck_assert_ptr_null(apply_act(a, NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(), "earlier: failure");
    tg_clear_error();
}
END_TEST

START_TEST(test_activation_allocation_failure)
{
    const struct act *a = &acts[_i];
    struct tg_tensor *x = mk(1, SHP(3), VAL(-1, 0.5f, 2));
    tg_clear_error();
    tg_alloc_fail_at(1);
    struct tg_tensor *y = apply_act(a, x);
    tg_alloc_fail_at(0);
    ck_assert_ptr_null(y);
    ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
    ck_assert_msg(strncmp(tg_last_error(), a->name, strlen(a->name)) == 0, "message: %s",
                  tg_last_error());
    tu_assert_close(x->data, VAL(-1, 0.5f, 2), 3, 0, 0);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_activation_empty_and_scalar)
{
    const struct act *a = &acts[_i];
    struct tg_tensor *e = mk(2, SHP(0, 4), NULL);
    struct tg_tensor *s = mk(0, NULL, VAL(0.5f));
    struct tg_tensor *y = apply_act(a, e);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->n_elems, 0);
    ck_assert(y->n_dims == 2 && y->shape[0] == 0 && y->shape[1] == 4);
    tg_tensor_free(y);
    y = apply_act(a, s);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->n_dims, 0);
    ck_assert_float_eq_tol(y->data[0], ref_value(a, 0.5), 1e-7);
    tg_tensor_free(y);
    tg_tensor_free(e);
    tg_tensor_free(s);
}
END_TEST

/* ---- Suite ------------------------------------------------------------------------------ */

static Suite *activation_suite(void)
{
    Suite *s = suite_create("ops-activation");
    TCase *tc;

    tc = tcase_create("values");
    tcase_add_test(tc, test_relu_values_and_gradient_at_zero);
    tcase_add_test(tc, test_leaky_relu_values);
    tcase_add_test(tc, test_elu_values);
    tcase_add_test(tc, test_sigmoid_values);
    tcase_add_test(tc, test_sigmoid_extremes_finite);
    tcase_add_test(tc, test_tanh_values_and_extremes);
    suite_add_tcase(s, tc);

    tc = tcase_create("gradients");
    tcase_add_loop_test(tc, test_activation_large_matches_reference, 0, N_ACTS);
    tcase_add_loop_test(tc, test_activation_gradcheck, 0, N_ACTS);
    tcase_add_loop_test(tc, test_activation_backward_accumulates, 0, N_ACTS);
    tcase_add_test(tc, test_activation_matches_torch);
    suite_add_tcase(s, tc);

    tc = tcase_create("calls");
    tcase_add_loop_test(tc, test_activation_no_tape_heap_output, 0, N_ACTS);
    tcase_add_loop_test(tc, test_activation_no_grad_not_recorded, 0, N_ACTS);
    tcase_add_loop_test(tc, test_activation_null_input, 0, N_ACTS);
    tcase_add_loop_test(tc, test_activation_allocation_failure, 0, N_ACTS);
    tcase_add_loop_test(tc, test_activation_empty_and_scalar, 0, N_ACTS);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(activation_suite());
}
