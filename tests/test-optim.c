/*
 * Optimisers, learning-rate schedules, gradient clipping and norms: the
 * PyTorch reference cases of tests/data/torch-ops.jsonl (three steps of each
 * optimiser, global-norm clipping), a naive float32 implementation written
 * here for longer runs on larger tensors, closed forms of the schedules,
 * every refusal, and a bit-exact resume from saved state.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refcase.h"
#include "testutil.h"

#define DATA_FILE TG_TEST_DATA_DIR "/torch-ops.jsonl"
#define N_OF(a)   ((int)(sizeof(a) / sizeof((a)[0])))

/* Reference tolerances: PyTorch's results rounded once to float32. */
#define REF_RTOL 1e-5
#define REF_ATOL 1e-6

static struct refcase_set cases;
static enum tg_status cases_status = TG_ERR_STATE;
static char cases_error[REFCASE_ERR_SIZE];

/* ---- Helpers ------------------------------------------------------------- */

/* A heap parameter of the given shape with a grad buffer, filled from data (or zeros). */
static struct tg_tensor *param_new(int n_dims, const int64_t *shape, const float *data)
{
    struct tg_tensor *p = tg_tensor_from_data(n_dims, shape, data);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(tg_tensor_set_requires_grad(p, true), TG_OK);
    return p;
}

static struct tg_tensor *param_1d(int64_t n)
{
    return param_new(1, &n, NULL);
}

static void set_grad(struct tg_tensor *p, const float *g)
{
    memcpy(p->grad, g, (size_t)p->n_elems * sizeof(float));
}

static float *copy_floats(const float *x, int64_t n)
{
    float *c = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(c);
    memcpy(c, x, (size_t)n * sizeof(float));
    return c;
}

static bool same_floats(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* The last failure has status want and a message containing needle1 (and needle2). */
static void assert_last_error(enum tg_status want, const char *needle1, const char *needle2)
{
    ck_assert_int_eq(tg_last_status(), want);
    ck_assert_msg(strstr(tg_last_error(), needle1) != NULL, "message \"%s\" lacks \"%s\"",
                  tg_last_error(), needle1);
    if (needle2 != NULL)
        ck_assert_msg(strstr(tg_last_error(), needle2) != NULL, "message \"%s\" lacks \"%s\"",
                      tg_last_error(), needle2);
}

/* A call returned got = want, with a message as assert_last_error() checks. */
static void
assert_error(enum tg_status got, enum tg_status want, const char *needle1, const char *needle2)
{
    ck_assert_int_eq(got, want);
    assert_last_error(want, needle1, needle2);
}

static const struct refcase *find_case(const char *op)
{
    ck_assert_msg(cases_status == TG_OK, "%s: %s", DATA_FILE, cases_error);
    for (int i = 0; i < cases.n; i++)
        if (strcmp(cases.cases[i].op, op) == 0)
            return &cases.cases[i];
    ck_abort_msg("no case %s in %s", op, DATA_FILE);
    return NULL;
}

/* ---- PyTorch reference cases --------------------------------------------- */

static const char *const optimizer_ops[] = {
        "optimizer_sgd",  "optimizer_sgd_momentum", "optimizer_sgd_nesterov_wd",
        "optimizer_adam", "optimizer_adam_wd",      "optimizer_adamw",
};

/* Make the optimiser a reference case describes, over the one parameter w. */
static struct tg_optim *optim_for_case(const struct refcase *rc, struct tg_tensor *w)
{
    struct tg_tensor *params[] = {w};
    if (strncmp(rc->op, "optimizer_sgd", 13) == 0) {
        struct tg_sgd_opts o = {
                .lr = refcase_param_double(rc, "lr", NAN),
                .momentum = refcase_param_double(rc, "momentum", 0.0),
                .weight_decay = refcase_param_double(rc, "weight_decay", 0.0),
                .nesterov = refcase_param_bool(rc, "nesterov", false),
        };
        return tg_optim_new_sgd(params, 1, &o);
    }
    const cJSON *betas = cJSON_GetObjectItem(rc->params, "betas");
    ck_assert(cJSON_IsArray(betas) && cJSON_GetArraySize(betas) == 2);
    struct tg_adam_opts o = {
            .lr = refcase_param_double(rc, "lr", NAN),
            .beta1 = cJSON_GetArrayItem(betas, 0)->valuedouble,
            .beta2 = cJSON_GetArrayItem(betas, 1)->valuedouble,
            .eps = refcase_param_double(rc, "eps", NAN),
            .weight_decay = refcase_param_double(rc, "weight_decay", 0.0),
    };
    if (strcmp(rc->op, "optimizer_adamw") == 0)
        return tg_optim_new_adamw(params, 1, &o);
    return tg_optim_new_adam(params, 1, &o);
}

/* Three steps with the case's gradients; the weight after each must match. */
START_TEST(test_optim_matches_torch_reference)
{
    const struct refcase *rc = find_case(optimizer_ops[_i]);
    const struct refcase_tensor *w0 = refcase_input(rc, "weight");
    const struct refcase_list *grads = refcase_group_list(&rc->inputs, "grads");
    const struct refcase_list *after = refcase_group_list(&rc->output_parts, "after_each_step");
    ck_assert(w0 != NULL && grads != NULL && after != NULL);
    ck_assert_int_eq(grads->n, after->n);

    struct tg_tensor *w = param_new(w0->n_dims, w0->shape, w0->data);
    struct tg_optim *opt = optim_for_case(rc, w);
    ck_assert_msg(opt != NULL, "%s: %s", rc->op, tg_last_error());
    for (int s = 0; s < grads->n; s++) {
        ck_assert_int_eq(grads->items[s].n_elems, w->n_elems);
        set_grad(w, grads->items[s].data);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        ck_assert_int_eq(tg_optim_get_step(opt), s + 1);
        tu_assert_close(w->data, after->items[s].data, w->n_elems, REF_ATOL, REF_RTOL);
        ck_assert(same_floats(w->grad, grads->items[s].data, w->n_elems)); // grads only read
    }
    tg_optim_free(opt);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_clip_grad_norm_matches_torch_reference)
{
    const struct refcase *rc = find_case("clip_grad_norm");
    const struct refcase_list *in = refcase_group_list(&rc->inputs, "grads");
    const struct refcase_list *want = refcase_group_list(&rc->output_parts, "grads");
    const cJSON *norm_json = cJSON_GetObjectItem(rc->output_json, "total_norm");
    ck_assert(in != NULL && want != NULL && cJSON_IsNumber(norm_json));
    ck_assert_int_eq(in->n, want->n);
    ck_assert_int_eq(refcase_param_int(rc, "norm_type", 2), 2);

    struct tg_tensor *params[4];
    ck_assert_int_le(in->n, N_OF(params));
    for (int i = 0; i < in->n; i++) {
        params[i] = param_new(in->items[i].n_dims, in->items[i].shape, NULL);
        set_grad(params[i], in->items[i].data);
    }
    double total = -1.0;
    ck_assert_int_eq(tg_clip_grad_norm(params, (size_t)in->n,
                                       refcase_param_double(rc, "max_norm", NAN), &total),
                     TG_OK);
    ck_assert_double_eq_tol(total, norm_json->valuedouble, 1e-6 * norm_json->valuedouble);
    for (int i = 0; i < in->n; i++) {
        tu_assert_close(params[i]->grad, want->items[i].data, want->items[i].n_elems, REF_ATOL,
                        REF_RTOL);
        tg_tensor_free(params[i]);
    }
}
END_TEST

/* ---- A naive implementation over larger tensors and more steps ------------ */

enum naive_kind { NAIVE_SGD, NAIVE_NESTEROV, NAIVE_ADAM, NAIVE_ADAMW, N_NAIVE };

struct naive {
    enum naive_kind kind;
    double lr, momentum, wd, beta1, beta2, eps;
};

static const struct naive naive_cases[N_NAIVE] = {
        {NAIVE_SGD, 0.05, 0.8, 0.001, 0, 0, 0},
        {NAIVE_NESTEROV, 0.05, 0.9, 0.01, 0, 0, 0},
        {NAIVE_ADAM, 0.003, 0, 0.02, 0.85, 0.99, 1e-6},
        {NAIVE_ADAMW, 0.003, 0, 0.1, 0.9, 0.995, 1e-8},
};

/* One step of the formulas of optim.h on w, state a, b, written out again here. */
static void naive_step(
        const struct naive *c, float *w, float *a, float *b, const float *g, int64_t n, int64_t t)
{
    for (int64_t i = 0; i < n; i++) {
        if (c->kind == NAIVE_SGD || c->kind == NAIVE_NESTEROV) {
            float d = g[i] + (float)c->wd * w[i];
            a[i] = t == 1 ? d : (float)c->momentum * a[i] + d;
            float u = c->kind == NAIVE_NESTEROV ? d + (float)c->momentum * a[i] : a[i];
            w[i] -= (float)c->lr * u;
            continue;
        }
        if (c->kind == NAIVE_ADAMW)
            w[i] *= (float)(1.0 - c->lr * c->wd);
        float d = c->kind == NAIVE_ADAM ? g[i] + (float)c->wd * w[i] : g[i];
        a[i] = (float)c->beta1 * a[i] + (float)(1.0 - c->beta1) * d;
        b[i] = (float)c->beta2 * b[i] + (float)(1.0 - c->beta2) * d * d;
        double m_hat = a[i] / (1.0 - pow(c->beta1, (double)t));
        double v_hat = b[i] / (1.0 - pow(c->beta2, (double)t));
        w[i] -= (float)(c->lr * m_hat / (sqrt(v_hat) + c->eps));
    }
}

static struct tg_optim *
naive_optim(const struct naive *c, struct tg_tensor *const *params, size_t n)
{
    if (c->kind == NAIVE_SGD || c->kind == NAIVE_NESTEROV) {
        struct tg_sgd_opts o = {c->lr, c->momentum, c->wd, c->kind == NAIVE_NESTEROV};
        return tg_optim_new_sgd(params, n, &o);
    }
    struct tg_adam_opts o = {c->lr, c->beta1, c->beta2, c->eps, c->wd};
    return c->kind == NAIVE_ADAM ? tg_optim_new_adam(params, n, &o)
                                 : tg_optim_new_adamw(params, n, &o);
}

/*
 * Two parameters, one large enough for the threaded loops, ten steps of
 * random gradients: the library and the loop above agree within float
 * rounding, and a warm step allocates nothing.
 */
START_TEST(test_optim_step_matches_naive_loop)
{
    const struct naive *c = &naive_cases[_i];
    int64_t sizes[2] = {40000, 7};
    struct tg_tensor *p[2];
    float *w[2], *a[2], *b[2];
    uint64_t rng = 1234 + (uint64_t)_i;
    for (int k = 0; k < 2; k++) {
        p[k] = param_1d(sizes[k]);
        tu_fill_uniform(p[k], &rng, -1.0f, 1.0f);
        w[k] = copy_floats(p[k]->data, sizes[k]);
        a[k] = calloc((size_t)sizes[k], sizeof(float));
        b[k] = calloc((size_t)sizes[k], sizeof(float));
    }
    struct tg_optim *opt = naive_optim(c, p, 2);
    ck_assert_ptr_nonnull(opt);
    for (int64_t t = 1; t <= 10; t++) {
        for (int k = 0; k < 2; k++) {
            for (int64_t i = 0; i < sizes[k]; i++)
                p[k]->grad[i] = tu_rand_uniform(&rng, -2.0f, 2.0f);
            naive_step(c, w[k], a[k], b[k], p[k]->grad, sizes[k], t);
        }
        uint64_t allocs = tg_alloc_count();
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        ck_assert_uint_eq(tg_alloc_count(), allocs);
        for (int k = 0; k < 2; k++)
            tu_assert_close(p[k]->data, w[k], sizes[k], 1e-6, 1e-5);
    }
    tg_optim_free(opt);
    for (int k = 0; k < 2; k++) {
        tg_tensor_free(p[k]);
        free(w[k]);
        free(a[k]);
        free(b[k]);
    }
}
END_TEST

/* Hand-worked: w = 1, g = 0.5, lr 0.1, momentum 0.9 -> 0.95, then buf 0.95 -> 0.855. */
START_TEST(test_optim_sgd_momentum_by_hand)
{
    struct tg_tensor *w = param_1d(1);
    w->data[0] = 1.0f;
    struct tg_sgd_opts o = {.lr = 0.1, .momentum = 0.9};
    struct tg_optim *opt = tg_optim_new_sgd(&w, 1, &o);
    w->grad[0] = 0.5f;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_float_eq_tol(w->data[0], 0.95f, 1e-7f);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK); // buf = 0.9 * 0.5 + 0.5
    ck_assert_float_eq_tol(w->data[0], 0.855f, 1e-7f);
    tg_optim_free(opt);
    tg_tensor_free(w);
}
END_TEST

/* Adam's first step moves each weight by lr sign(g) (for |g| >> eps). */
START_TEST(test_optim_adam_first_step_is_lr_sign)
{
    struct tg_tensor *w = param_1d(3);
    float g[] = {2.0f, -0.001f, 30.0f};
    set_grad(w, g);
    struct tg_optim *opt = tg_optim_new_adam(&w, 1, NULL);
    ck_assert_double_eq(tg_optim_get_lr(opt), 1e-3);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    float want[] = {-1e-3f, 1e-3f, -1e-3f};
    tu_assert_close(w->data, want, 3, 1e-9, 1e-4);
    tg_optim_free(opt);
    tg_tensor_free(w);
}
END_TEST

/* AdamW with zero gradient only decays: w *= 1 - lr wd each step. */
START_TEST(test_optim_adamw_zero_grad_only_decays)
{
    struct tg_tensor *w = param_1d(2);
    w->data[0] = 2.0f;
    w->data[1] = -4.0f;
    struct tg_adam_opts o = TG_ADAMW_OPTS_INIT;
    o.lr = 0.1;
    o.weight_decay = 0.5;
    struct tg_optim *opt = tg_optim_new_adamw(&w, 1, &o);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_float_eq_tol(w->data[0], 2.0f * 0.95f * 0.95f, 1e-6f);
    ck_assert_float_eq_tol(w->data[1], -4.0f * 0.95f * 0.95f, 1e-6f);
    tg_optim_free(opt);
    tg_tensor_free(w);
}
END_TEST

/* ---- Running: NaN refusal, zero_grad, lr, accessors ----------------------- */

START_TEST(test_optim_step_refuses_nonfinite_grad)
{
    const float bad_values[] = {NAN, INFINITY, -INFINITY};
    struct tg_tensor *p[2] = {param_1d(4), param_1d(3)};
    uint64_t rng = 7;
    tu_fill_uniform(p[0], &rng, -1.0f, 1.0f);
    tu_fill_uniform(p[1], &rng, -1.0f, 1.0f);
    struct tg_optim *opt = tg_optim_new_adam(p, 2, NULL);
    for (int i = 0; i < 4; i++)
        p[0]->grad[i] = 0.25f;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK); // state now non-zero
    float *w0_before = copy_floats(p[0]->data, 4);

    struct tg_tensor *st[4];
    const char *names[4];
    ck_assert_int_eq(tg_optim_state_list(opt, 4, names, st), TG_OK);
    float *w_before = copy_floats(p[1]->data, 3);
    float *m_before = copy_floats(st[0]->data, 4);
    for (int v = 0; v < N_OF(bad_values); v++) {
        p[1]->grad[2] = bad_values[v];
        assert_error(tg_optim_step(opt), TG_ERR_NONFINITE, "tg_optim_step", "parameter 1");
        ck_assert_int_eq(tg_optim_get_step(opt), 1);
        ck_assert(same_floats(p[1]->data, w_before, 3));
        ck_assert(same_floats(st[0]->data, m_before, 4));
        ck_assert(same_floats(p[0]->data, w0_before, 4)); // the earlier parameter too
    }
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "element 2"));
    free(w0_before);
    free(w_before);
    free(m_before);
    tg_optim_free(opt);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

START_TEST(test_optim_zero_grad_clears_every_grad)
{
    struct tg_tensor *p[2] = {param_1d(5), param_1d(2)};
    struct tg_optim *opt = tg_optim_new_sgd(p, 2, NULL);
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < p[k]->n_elems; i++)
            p[k]->grad[i] = 3.0f;
    tg_optim_zero_grad(opt);
    tg_optim_zero_grad(NULL);
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < p[k]->n_elems; i++)
            ck_assert_float_eq(p[k]->grad[i], 0.0f);
    tg_optim_free(opt);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

START_TEST(test_optim_set_lr_changes_next_step)
{
    struct tg_tensor *w = param_1d(1);
    struct tg_optim *opt = tg_optim_new_sgd(&w, 1, NULL);
    ck_assert_double_eq(tg_optim_get_lr(opt), 0.01);
    ck_assert_int_eq(tg_optim_set_lr(opt, 0.5), TG_OK);
    ck_assert_double_eq(tg_optim_get_lr(opt), 0.5);
    w->grad[0] = 1.0f;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_float_eq(w->data[0], -0.5f);

    assert_error(tg_optim_set_lr(opt, -0.1), TG_ERR_INVALID, "tg_optim_set_lr", "lr");
    assert_error(tg_optim_set_lr(opt, NAN), TG_ERR_INVALID, "tg_optim_set_lr", "lr");
    assert_error(tg_optim_set_lr(NULL, 0.1), TG_ERR_INVALID, "tg_optim_set_lr", NULL);
    ck_assert_double_eq(tg_optim_get_lr(opt), 0.5);
    ck_assert(isnan(tg_optim_get_lr(NULL)));
    tg_optim_free(opt);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_optim_accessors)
{
    struct tg_tensor *p[3] = {param_1d(2), param_1d(3), param_1d(4)};
    struct tg_optim *sgd = tg_optim_new_sgd(p, 3, NULL);
    struct tg_optim *adam = tg_optim_new_adam(p, 3, NULL);
    struct tg_optim *adamw = tg_optim_new_adamw(p, 3, NULL);
    ck_assert_str_eq(tg_optim_name(sgd), "sgd");
    ck_assert_str_eq(tg_optim_name(adam), "adam");
    ck_assert_str_eq(tg_optim_name(adamw), "adamw");
    ck_assert_ptr_null(tg_optim_name(NULL));
    ck_assert_uint_eq(tg_optim_n_params(adam), 3);
    ck_assert_uint_eq(tg_optim_n_params(NULL), 0);
    ck_assert_int_eq(tg_optim_get_step(sgd), 0);
    ck_assert_int_eq(tg_optim_get_step(NULL), -1);
    ck_assert_uint_eq(tg_optim_n_state(sgd), 0); // no momentum, no buffer
    ck_assert_uint_eq(tg_optim_n_state(adamw), 6);
    ck_assert_uint_eq(tg_optim_n_state(NULL), 0);
    ck_assert_double_eq(tg_optim_get_lr(adamw), 1e-3);
    assert_error(tg_optim_step(NULL), TG_ERR_INVALID, "tg_optim_step", NULL);
    tg_optim_free(sgd);
    tg_optim_free(adam);
    tg_optim_free(adamw);
    tg_optim_free(NULL);
    for (int k = 0; k < 3; k++)
        tg_tensor_free(p[k]);
}
END_TEST

/* A parameter whose grad was released after construction is skipped. */
START_TEST(test_optim_step_skips_param_without_grad)
{
    struct tg_tensor *p[2] = {param_1d(2), param_1d(2)};
    struct tg_sgd_opts o = {.lr = 1.0};
    struct tg_optim *opt = tg_optim_new_sgd(p, 2, &o);
    p[0]->grad[0] = 1.0f;
    p[1]->grad[0] = 1.0f;
    ck_assert_int_eq(tg_tensor_set_requires_grad(p[1], false), TG_OK);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_float_eq(p[0]->data[0], -1.0f);
    ck_assert_float_eq(p[1]->data[0], 0.0f);
    tg_optim_free(opt);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

/* ---- Construction errors -------------------------------------------------- */

struct bad_sgd {
    struct tg_sgd_opts o;
    const char *needle;
};

static const struct bad_sgd bad_sgd_opts[] = {
        {{-0.1, 0.0, 0.0, false}, "lr"},
        {{NAN, 0.0, 0.0, false}, "lr"},
        {{INFINITY, 0.0, 0.0, false}, "lr"},
        {{0.1, -0.5, 0.0, false}, "momentum"},
        {{0.1, 1.0, 0.0, false}, "momentum"},
        {{0.1, NAN, 0.0, false}, "momentum"},
        {{0.1, 0.9, -1e-4, false}, "weight_decay"},
        {{0.1, 0.0, 0.0, true}, "nesterov"},
};

START_TEST(test_optim_new_sgd_rejects_bad_settings)
{
    struct tg_tensor *w = param_1d(3);
    tg_clear_error();
    ck_assert_ptr_null(tg_optim_new_sgd(&w, 1, &bad_sgd_opts[_i].o));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_sgd", bad_sgd_opts[_i].needle);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "expected"));
    tg_tensor_free(w);
}
END_TEST

struct bad_adam {
    struct tg_adam_opts o;
    const char *needle;
};

static const struct bad_adam bad_adam_opts[] = {
        {{-1e-3, 0.9, 0.999, 1e-8, 0.0}, "lr"},
        {{1e-3, 1.0, 0.999, 1e-8, 0.0}, "beta1"},
        {{1e-3, -0.1, 0.999, 1e-8, 0.0}, "beta1"},
        {{1e-3, 0.9, 1.0, 1e-8, 0.0}, "beta2"},
        {{1e-3, 0.9, NAN, 1e-8, 0.0}, "beta2"},
        {{1e-3, 0.9, 0.999, -1e-8, 0.0}, "eps"},
        {{1e-3, 0.9, 0.999, 1e-8, -0.01}, "weight_decay"},
};

START_TEST(test_optim_new_adam_rejects_bad_settings)
{
    struct tg_tensor *w = param_1d(3);
    tg_clear_error();
    ck_assert_ptr_null(tg_optim_new_adam(&w, 1, &bad_adam_opts[_i].o));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_adam:", bad_adam_opts[_i].needle);
    tg_clear_error();
    ck_assert_ptr_null(tg_optim_new_adamw(&w, 1, &bad_adam_opts[_i].o));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_adamw:", bad_adam_opts[_i].needle);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_optim_new_rejects_bad_params)
{
    struct tg_tensor *ok = param_1d(3);
    struct tg_tensor *no_grad = tg_tensor_new(1, (int64_t[]){2});
    struct tg_tape *tape = tg_tape_new();
    struct tg_tensor *on_tape = tg_tape_tensor_new(tape, 1, (int64_t[]){2});
    ck_assert_ptr_nonnull(on_tape);

    ck_assert_ptr_null(tg_optim_new_sgd(NULL, 1, NULL));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_sgd", "NULL");
    ck_assert_ptr_null(tg_optim_new_adam(&ok, 0, NULL));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_adam", "n = 0");

    struct tg_tensor *with_null[] = {ok, NULL};
    ck_assert_ptr_null(tg_optim_new_adamw(with_null, 2, NULL));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_adamw", "parameter 1 is NULL");
    struct tg_tensor *with_no_grad[] = {ok, no_grad};
    ck_assert_ptr_null(tg_optim_new_sgd(with_no_grad, 2, NULL));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_sgd", "no grad");
    struct tg_tensor *repeated[] = {ok, ok};
    ck_assert_ptr_null(tg_optim_new_sgd(repeated, 2, NULL));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_sgd", "repeats");
    struct tg_tensor *taped[] = {on_tape};
    ck_assert_ptr_null(tg_optim_new_adam(taped, 1, NULL));
    assert_last_error(TG_ERR_INVALID, "tg_optim_new_adam", "tape");

    tg_tape_free(tape);
    tg_tensor_free(no_grad);
    tg_tensor_free(ok);
}
END_TEST

/* Every allocation of a constructor failing in turn: NULL, NOMEM, nothing leaked. */
START_TEST(test_optim_new_survives_allocation_failure)
{
    struct tg_tensor *p[3] = {param_1d(2), param_1d(5), param_1d(1)};
    struct tg_sgd_opts mom = {.lr = 0.1, .momentum = 0.5};
    int failures = 0;
    for (uint64_t k = 1; k < 100; k++) {
        tg_alloc_fail_at(k);
        struct tg_optim *opt =
                _i == 0 ? tg_optim_new_adam(p, 3, NULL) : tg_optim_new_sgd(p, 3, &mom);
        tg_alloc_fail_at(0);
        if (opt != NULL) {
            tg_optim_free(opt);
            break;
        }
        failures++;
        ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
        ck_assert_ptr_nonnull(
                strstr(tg_last_error(), _i == 0 ? "tg_optim_new_adam" : "tg_optim_new_sgd"));
    }
    ck_assert_int_ge(failures, 3);
    for (int k = 0; k < 3; k++)
        tg_tensor_free(p[k]);
}
END_TEST

/* ---- State: listing, restoring, resuming --------------------------------- */

START_TEST(test_optim_state_list_names_like_pytorch)
{
    struct tg_tensor *p[2] = {param_new(2, (int64_t[]){2, 3}, NULL), param_1d(4)};
    struct tg_optim *adam = tg_optim_new_adam(p, 2, NULL);
    const char *names[4];
    struct tg_tensor *st[4];
    ck_assert_int_eq(tg_optim_state_list(adam, 4, names, st), TG_OK);
    const char *want[] = {"state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg",
                          "state.1.exp_avg_sq"};
    for (int s = 0; s < 4; s++) {
        ck_assert_str_eq(names[s], want[s]);
        ck_assert(tg_tensor_same_shape(st[s], p[s / 2]));
    }

    struct tg_sgd_opts o = {.lr = 0.1, .momentum = 0.9};
    struct tg_optim *sgd = tg_optim_new_sgd(p, 2, &o);
    ck_assert_uint_eq(tg_optim_n_state(sgd), 2);
    ck_assert_int_eq(tg_optim_state_list(sgd, 4, names, st), TG_OK);
    ck_assert_str_eq(names[1], "state.1.momentum_buffer");

    names[0] = "untouched";
    assert_error(tg_optim_state_list(adam, 3, names, st), TG_ERR_INVALID, "tg_optim_state_list",
                 "cap 3");
    ck_assert_str_eq(names[0], "untouched");
    assert_error(tg_optim_state_list(adam, 4, NULL, st), TG_ERR_INVALID, "tg_optim_state_list",
                 "names");
    assert_error(tg_optim_state_list(NULL, 4, names, st), TG_ERR_INVALID, "tg_optim_state_list",
                 NULL);
    tg_optim_free(adam);
    tg_optim_free(sgd);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

/* Random gradients for step t of the resume test, the same in both runs. */
static void resume_grads(struct tg_tensor *const *p, int n, int t)
{
    uint64_t rng = 99 + (uint64_t)t;
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < p[k]->n_elems; i++)
            p[k]->grad[i] = tu_rand_uniform(&rng, -1.0f, 1.0f);
}

/*
 * Run A takes 6 steps. Run B copies A's weights and state after 3 steps
 * (through new tensors, as a checkpoint would), restores them into a fresh
 * optimiser and takes the last 3: the weights are equal bit for bit.
 */
START_TEST(test_optim_state_round_trip_resumes_exactly)
{
    const struct naive *c = &naive_cases[_i];
    int64_t sizes[2] = {33, 50000};
    struct tg_tensor *a[2], *b[2];
    uint64_t rng = 5;
    for (int k = 0; k < 2; k++) {
        a[k] = param_1d(sizes[k]);
        b[k] = param_1d(sizes[k]);
        tu_fill_uniform(a[k], &rng, -1.0f, 1.0f);
    }
    struct tg_optim *opt_a = naive_optim(c, a, 2);
    for (int t = 1; t <= 3; t++) {
        resume_grads(a, 2, t);
        ck_assert_int_eq(tg_optim_step(opt_a), TG_OK);
    }

    /* save: copy weights and state into separate tensors */
    size_t n_state = tg_optim_n_state(opt_a);
    ck_assert_uint_eq(n_state, c->kind <= NAIVE_NESTEROV ? 2 : 4);
    const char *names[4];
    struct tg_tensor *live[4];
    struct tg_tensor *copies[4];
    const struct tg_tensor *saved[4];
    ck_assert_int_eq(tg_optim_state_list(opt_a, 4, names, live), TG_OK);
    for (size_t s = 0; s < n_state; s++) {
        copies[s] = tg_tensor_from_data(live[s]->n_dims, live[s]->shape, live[s]->data);
        saved[s] = copies[s];
    }
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(tg_tensor_copy(b[k], a[k]), TG_OK);

    /* restore in reverse order: names, not positions, count */
    const char *rev_names[4];
    const struct tg_tensor *rev[4];
    for (size_t s = 0; s < n_state; s++) {
        rev_names[s] = names[n_state - 1 - s];
        rev[s] = saved[n_state - 1 - s];
    }
    struct tg_optim *opt_b = naive_optim(c, b, 2);
    ck_assert_int_eq(tg_optim_load_state(opt_b, tg_optim_get_step(opt_a), n_state, rev_names, rev),
                     TG_OK);
    ck_assert_int_eq(tg_optim_get_step(opt_b), 3);

    for (int t = 4; t <= 6; t++) {
        resume_grads(a, 2, t);
        resume_grads(b, 2, t);
        ck_assert_int_eq(tg_optim_step(opt_a), TG_OK);
        ck_assert_int_eq(tg_optim_step(opt_b), TG_OK);
    }
    for (int k = 0; k < 2; k++) {
        ck_assert(same_floats(a[k]->data, b[k]->data, sizes[k]));
        tg_tensor_free(a[k]);
        tg_tensor_free(b[k]);
    }
    for (size_t s = 0; s < n_state; s++)
        tg_tensor_free(copies[s]);
    tg_optim_free(opt_a);
    tg_optim_free(opt_b);
}
END_TEST

START_TEST(test_optim_load_state_rejects_mismatch)
{
    struct tg_tensor *p[2] = {param_1d(3), param_1d(2)};
    struct tg_optim *opt = tg_optim_new_adam(p, 2, NULL);
    p[0]->grad[0] = 1.0f;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    const char *names[4];
    struct tg_tensor *live[4];
    ck_assert_int_eq(tg_optim_state_list(opt, 4, names, live), TG_OK);
    float m_before = live[0]->data[0];
    ck_assert(m_before != 0.0f);

    struct tg_tensor *t3 = tg_tensor_new(1, (int64_t[]){3});
    struct tg_tensor *t2 = tg_tensor_new(1, (int64_t[]){2});
    struct tg_tensor *t5 = tg_tensor_new(1, (int64_t[]){5});
    struct tg_tensor *t3_nan = tg_tensor_new(1, (int64_t[]){3});
    t3_nan->data[1] = NAN;
    const char *good_names[] = {"state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg",
                                "state.1.exp_avg_sq"};
    const struct tg_tensor *good[] = {t3, t3, t2, t2};

    const char *typo[] = {"state.0.exp_avg", "state.0.exp_avg_sq", "state.1.momentum_buffer",
                          "state.1.exp_avg_sq"};
    assert_error(tg_optim_load_state(opt, 5, 4, typo, good), TG_ERR_INVALID, "tg_optim_load_state",
                 "unknown state name \"state.1.momentum_buffer\"");
    const char *twice[] = {"state.0.exp_avg", "state.0.exp_avg", "state.1.exp_avg",
                           "state.1.exp_avg_sq"};
    assert_error(tg_optim_load_state(opt, 5, 4, twice, good), TG_ERR_INVALID, "tg_optim_load_state",
                 "twice");
    const struct tg_tensor *wrong_shape[] = {t3, t3, t5, t2};
    assert_error(tg_optim_load_state(opt, 5, 4, good_names, wrong_shape), TG_ERR_SHAPE,
                 "state.1.exp_avg has shape 5, parameter expects 2", NULL);
    const struct tg_tensor *with_nan[] = {t3, t3_nan, t2, t2};
    assert_error(tg_optim_load_state(opt, 5, 4, good_names, with_nan), TG_ERR_NONFINITE,
                 "tg_optim_load_state", "state.0.exp_avg_sq");
    assert_error(tg_optim_load_state(opt, 5, 3, good_names, good), TG_ERR_INVALID,
                 "tg_optim_load_state", "got 3, expected 4");
    assert_error(tg_optim_load_state(opt, -1, 4, good_names, good), TG_ERR_INVALID,
                 "tg_optim_load_state", "negative step");
    assert_error(tg_optim_load_state(opt, 5, 4, NULL, good), TG_ERR_INVALID, "tg_optim_load_state",
                 "names");
    assert_error(tg_optim_load_state(NULL, 5, 4, good_names, good), TG_ERR_INVALID,
                 "tg_optim_load_state", NULL);

    /* nothing changed by any refusal */
    ck_assert_int_eq(tg_optim_get_step(opt), 1);
    ck_assert_float_eq(live[0]->data[0], m_before);

    ck_assert_int_eq(tg_optim_load_state(opt, 5, 4, good_names, good), TG_OK);
    ck_assert_int_eq(tg_optim_get_step(opt), 5);
    ck_assert_float_eq(live[0]->data[0], 0.0f);

    tg_tensor_free(t3);
    tg_tensor_free(t2);
    tg_tensor_free(t5);
    tg_tensor_free(t3_nan);
    tg_optim_free(opt);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

/* SGD without momentum has no state: only the step count is restored. */
START_TEST(test_optim_load_state_without_tensors)
{
    struct tg_tensor *w = param_1d(2);
    struct tg_optim *opt = tg_optim_new_sgd(&w, 1, NULL);
    ck_assert_int_eq(tg_optim_load_state(opt, 12, 0, NULL, NULL), TG_OK);
    ck_assert_int_eq(tg_optim_get_step(opt), 12);
    tg_optim_free(opt);
    tg_tensor_free(w);
}
END_TEST

/* ---- Learning-rate schedules ------------------------------------------------ */

static const double pi = 3.14159265358979323846;

START_TEST(test_lr_schedule_constant_and_step)
{
    struct tg_lr_schedule c = {.base_lr = 0.3};
    for (int64_t t = 0; t < 50; t += 7)
        ck_assert_double_eq(tg_lr_schedule_at(&c, t), 0.3);

    struct tg_lr_schedule s = {.base_lr = 0.1, .kind = TG_LR_STEP, .step_size = 3, .gamma = 0.5};
    ck_assert_int_eq(tg_lr_schedule_check(&s), TG_OK);
    const int64_t steps[] = {0, 1, 2, 3, 5, 6, 8, 9, 30, 31};
    for (int k = 0; k < N_OF(steps); k++) {
        double want = 0.1 * pow(0.5, (double)(steps[k] / 3));
        ck_assert_double_eq_tol(tg_lr_schedule_at(&s, steps[k]), want, 1e-15);
    }
    ck_assert_double_eq_tol(tg_lr_schedule_at(&s, 2), 0.1, 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&s, 3), 0.05, 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&s, 6), 0.025, 1e-15);
}
END_TEST

START_TEST(test_lr_schedule_cosine)
{
    struct tg_lr_schedule s = {.base_lr = 0.1, .kind = TG_LR_COSINE, .t_max = 10, .eta_min = 0.001};
    ck_assert_double_eq_tol(tg_lr_schedule_at(&s, 0), 0.1, 1e-15);
    ck_assert_double_eq_tol(tg_lr_schedule_at(&s, 5), 0.0505, 1e-15); // half way
    ck_assert_double_eq_tol(tg_lr_schedule_at(&s, 10), 0.001, 1e-15); // eta_min at T_max
    ck_assert_double_eq_tol(tg_lr_schedule_at(&s, 20), 0.1, 1e-15);   // periodic closed form
    for (int64_t t = 0; t <= 25; t += 3) {
        double want = 0.001 + (0.1 - 0.001) * (1.0 + cos(pi * (double)t / 10.0)) / 2.0;
        ck_assert_double_eq_tol(tg_lr_schedule_at(&s, t), want, 1e-15);
    }
}
END_TEST

START_TEST(test_lr_schedule_warmup_composes)
{
    /* warm-up alone: 0.25 -> 1 over 4 steps, then flat */
    struct tg_lr_schedule w = {.base_lr = 0.2, .warmup_steps = 4, .warmup_start_factor = 0.25};
    const double want_w[] = {0.05, 0.0875, 0.125, 0.1625, 0.2, 0.2, 0.2};
    for (int t = 0; t < N_OF(want_w); t++)
        ck_assert_double_eq_tol(tg_lr_schedule_at(&w, t), want_w[t], 1e-15);

    /* with cosine: the product of both factors */
    struct tg_lr_schedule wc = {.base_lr = 1.0,
                                .kind = TG_LR_COSINE,
                                .t_max = 20,
                                .warmup_steps = 5,
                                .warmup_start_factor = 0.0};
    for (int64_t t = 0; t <= 20; t += 2) {
        double f = t < 5 ? (double)t / 5.0 : 1.0;
        double want = f * (1.0 + cos(pi * (double)t / 20.0)) / 2.0;
        ck_assert_double_eq_tol(tg_lr_schedule_at(&wc, t), want, 1e-15);
    }

    /* with step decay */
    struct tg_lr_schedule ws = {.base_lr = 0.1,
                                .kind = TG_LR_STEP,
                                .step_size = 2,
                                .gamma = 0.1,
                                .warmup_steps = 3,
                                .warmup_start_factor = 0.1};
    for (int64_t t = 0; t < 8; t++) {
        double f = 0.1 + 0.9 * (double)(t < 3 ? t : 3) / 3.0;
        double want = f * 0.1 * pow(0.1, (double)(t / 2));
        ck_assert_double_eq_tol(tg_lr_schedule_at(&ws, t), want, 1e-15);
    }
}
END_TEST

/* A schedule drives the optimiser: set_lr takes its values. */
START_TEST(test_lr_schedule_drives_optimiser)
{
    struct tg_tensor *w = param_1d(1);
    struct tg_optim *opt = tg_optim_new_sgd(&w, 1, NULL);
    struct tg_lr_schedule s = {.base_lr = 1.0, .kind = TG_LR_STEP, .step_size = 1, .gamma = 0.5};
    w->grad[0] = 1.0f;
    for (int64_t t = 0; t < 4; t++) {
        ck_assert_int_eq(tg_optim_set_lr(opt, tg_lr_schedule_at(&s, t)), TG_OK);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    }
    ck_assert_float_eq(w->data[0], -1.875f); // 1 + 1/2 + 1/4 + 1/8
    assert_error(tg_optim_set_lr(opt, tg_lr_schedule_at(&s, -1)), TG_ERR_INVALID, "lr", NULL);
    tg_optim_free(opt);
    tg_tensor_free(w);
}
END_TEST

struct bad_schedule {
    struct tg_lr_schedule s;
    const char *needle;
};

static const struct bad_schedule bad_schedules[] = {
        {{.base_lr = -0.1}, "base_lr"},
        {{.base_lr = NAN}, "base_lr"},
        {{.base_lr = 0.1, .kind = TG_LR_STEP, .step_size = 0, .gamma = 0.5}, "step_size"},
        {{.base_lr = 0.1, .kind = TG_LR_STEP, .step_size = 2, .gamma = 0.0}, "gamma"},
        {{.base_lr = 0.1, .kind = TG_LR_COSINE, .t_max = 0}, "t_max"},
        {{.base_lr = 0.1, .kind = TG_LR_COSINE, .t_max = 5, .eta_min = -1.0}, "eta_min"},
        {{.base_lr = 0.1, .warmup_steps = -1}, "warmup_steps"},
        {{.base_lr = 0.1, .warmup_steps = 3, .warmup_start_factor = 1.5}, "warmup_start_factor"},
        {{.base_lr = 0.1, .kind = (enum tg_lr_kind)42}, "kind"},
};

START_TEST(test_lr_schedule_rejects_bad_fields)
{
    const struct bad_schedule *b = &bad_schedules[_i];
    assert_error(tg_lr_schedule_check(&b->s), TG_ERR_INVALID, "tg_lr_schedule_check", b->needle);
    ck_assert(isnan(tg_lr_schedule_at(&b->s, 0)));
}
END_TEST

START_TEST(test_lr_schedule_rejects_null_and_negative_step)
{
    struct tg_lr_schedule s = {.base_lr = 0.1};
    assert_error(tg_lr_schedule_check(NULL), TG_ERR_INVALID, "tg_lr_schedule_check", "NULL");
    ck_assert(isnan(tg_lr_schedule_at(NULL, 0)));
    ck_assert(isnan(tg_lr_schedule_at(&s, -1)));
}
END_TEST

/* ---- Gradient clipping and norms -------------------------------------------- */

/* Grads (3, 4) and (0, 0, 12) in two parameters: global norm 13. */
static void norm13_params(struct tg_tensor **p)
{
    p[0] = param_1d(2);
    p[1] = param_1d(3);
    float g0[] = {3.0f, 4.0f};
    float g1[] = {0.0f, 0.0f, 12.0f};
    set_grad(p[0], g0);
    set_grad(p[1], g1);
}

START_TEST(test_clip_grad_norm_scales_to_threshold)
{
    struct tg_tensor *p[2];
    norm13_params(p);
    double total = 0.0;
    ck_assert_int_eq(tg_clip_grad_norm(p, 2, 6.5, &total), TG_OK);
    ck_assert_double_eq(total, 13.0);
    float c = (float)(6.5 / (13.0 + 1e-6));
    ck_assert_float_eq(p[0]->grad[0], 3.0f * c);
    ck_assert_float_eq(p[1]->grad[2], 12.0f * c);
    double after = 0.0;
    ck_assert_int_eq(tg_grad_norms(p, 2, (double[2]){0}, &after), TG_OK);
    ck_assert_double_eq_tol(after, 6.5, 1e-5);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

START_TEST(test_clip_grad_norm_leaves_small_grads)
{
    struct tg_tensor *p[2];
    norm13_params(p);
    double total = 0.0;
    ck_assert_int_eq(tg_clip_grad_norm(p, 2, 20.0, &total), TG_OK);
    ck_assert_double_eq(total, 13.0);
    ck_assert_float_eq(p[0]->grad[1], 4.0f);
    ck_assert_float_eq(p[1]->grad[2], 12.0f);
    ck_assert_int_eq(tg_clip_grad_norm(p, 2, 13.0, NULL), TG_OK); // exactly at the bound: c < 1
    ck_assert_float_eq(p[1]->grad[2], 12.0f * (float)(13.0 / (13.0 + 1e-6)));

    /* no parameters, and parameters without a grad: norm 0 */
    struct tg_tensor *bare = tg_tensor_new(1, (int64_t[]){4});
    tg_tensor_fill(bare, 1.0f);
    ck_assert_int_eq(tg_clip_grad_norm(&bare, 1, 1.0, &total), TG_OK);
    ck_assert_double_eq(total, 0.0);
    ck_assert_int_eq(tg_clip_grad_norm(NULL, 0, 1.0, &total), TG_OK);
    ck_assert_double_eq(total, 0.0);
    tg_tensor_free(bare);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

START_TEST(test_clip_grad_norm_refuses_nonfinite_norm)
{
    const float bad_values[] = {NAN, INFINITY, -INFINITY};
    struct tg_tensor *p[2];
    norm13_params(p);
    p[1]->grad[1] = bad_values[_i];
    float *g0 = copy_floats(p[0]->grad, 2);
    float *g1 = copy_floats(p[1]->grad, 3);
    double total = -7.0;
    assert_error(tg_clip_grad_norm(p, 2, 1.0, &total), TG_ERR_NONFINITE, "tg_clip_grad_norm",
                 "parameter 1");
    ck_assert_double_eq(total, -7.0);
    ck_assert(same_floats(p[0]->grad, g0, 2));
    ck_assert(same_floats(p[1]->grad, g1, 3));
    free(g0);
    free(g1);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

START_TEST(test_clip_grad_norm_rejects_bad_arguments)
{
    struct tg_tensor *p[2];
    norm13_params(p);
    double total = -7.0;
    assert_error(tg_clip_grad_norm(p, 2, 0.0, &total), TG_ERR_INVALID, "tg_clip_grad_norm",
                 "max_norm");
    assert_error(tg_clip_grad_norm(p, 2, -1.0, &total), TG_ERR_INVALID, "tg_clip_grad_norm",
                 "max_norm");
    assert_error(tg_clip_grad_norm(p, 2, NAN, &total), TG_ERR_INVALID, "tg_clip_grad_norm",
                 "max_norm");
    assert_error(tg_clip_grad_norm(NULL, 2, 1.0, &total), TG_ERR_INVALID, "tg_clip_grad_norm",
                 "NULL");
    struct tg_tensor *with_null[] = {p[0], NULL};
    assert_error(tg_clip_grad_norm(with_null, 2, 1.0, &total), TG_ERR_INVALID, "tg_clip_grad_norm",
                 "parameter 1 is NULL");
    ck_assert_double_eq(total, -7.0);
    ck_assert_float_eq(p[0]->grad[0], 3.0f);
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

START_TEST(test_clip_grad_value_clamps)
{
    struct tg_tensor *p[2] = {param_1d(5), param_1d(1)};
    float g0[] = {-3.0f, -0.5f, 0.0f, 0.75f, 2.0f};
    set_grad(p[0], g0);
    p[1]->grad[0] = NAN;
    ck_assert_int_eq(tg_clip_grad_value(p, 2, 1.0), TG_OK);
    float want[] = {-1.0f, -0.5f, 0.0f, 0.75f, 1.0f};
    ck_assert(same_floats(p[0]->grad, want, 5));
    ck_assert(isnan(p[1]->grad[0]));

    assert_error(tg_clip_grad_value(p, 2, 0.0), TG_ERR_INVALID, "tg_clip_grad_value", "clip_value");
    assert_error(tg_clip_grad_value(p, 2, INFINITY), TG_ERR_INVALID, "tg_clip_grad_value",
                 "clip_value");
    assert_error(tg_clip_grad_value(NULL, 1, 1.0), TG_ERR_INVALID, "tg_clip_grad_value", "NULL");
    ck_assert(same_floats(p[0]->grad, want, 5));
    tg_tensor_free(p[0]);
    tg_tensor_free(p[1]);
}
END_TEST

START_TEST(test_grad_norms_per_parameter)
{
    struct tg_tensor *p[3];
    norm13_params(p);
    p[2] = tg_tensor_new(1, (int64_t[]){2}); // no grad
    ck_assert_double_eq(tg_grad_norm(p[0]), 5.0);
    ck_assert_double_eq(tg_grad_norm(p[1]), 12.0);
    ck_assert_double_eq(tg_grad_norm(p[2]), 0.0);
    ck_assert_double_eq(tg_grad_norm(NULL), 0.0);

    double norms[3] = {-1, -1, -1};
    double total = -1.0;
    ck_assert_int_eq(tg_grad_norms(p, 3, norms, &total), TG_OK);
    ck_assert_double_eq(norms[0], 5.0);
    ck_assert_double_eq(norms[1], 12.0);
    ck_assert_double_eq(norms[2], 0.0);
    ck_assert_double_eq(total, 13.0);
    ck_assert_int_eq(tg_grad_norms(p, 3, norms, NULL), TG_OK);

    /* a large tensor: a float sum of 1e6 squares would drift, a double one does not */
    struct tg_tensor *big = param_1d(1000000);
    for (int64_t i = 0; i < big->n_elems; i++)
        big->grad[i] = 1e-3f;
    ck_assert_double_eq_tol(tg_grad_norm(big), 1000.0 * (double)1e-3f, 1e-9);
    tg_tensor_free(big);

    norms[0] = -1;
    assert_error(tg_grad_norms(p, 3, NULL, &total), TG_ERR_INVALID, "tg_grad_norms", "norms");
    assert_error(tg_grad_norms(NULL, 3, norms, &total), TG_ERR_INVALID, "tg_grad_norms", "NULL");
    ck_assert_double_eq(norms[0], -1);
    for (int k = 0; k < 3; k++)
        tg_tensor_free(p[k]);
}
END_TEST

/* ---- Suite ------------------------------------------------------------------ */

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("reference");
    tcase_add_loop_test(tc, test_optim_matches_torch_reference, 0, N_OF(optimizer_ops));
    tcase_add_test(tc, test_clip_grad_norm_matches_torch_reference);
    suite_add_tcase(s, tc);

    tc = tcase_create("step");
    tcase_add_loop_test(tc, test_optim_step_matches_naive_loop, 0, N_NAIVE);
    tcase_add_test(tc, test_optim_sgd_momentum_by_hand);
    tcase_add_test(tc, test_optim_adam_first_step_is_lr_sign);
    tcase_add_test(tc, test_optim_adamw_zero_grad_only_decays);
    tcase_add_test(tc, test_optim_step_refuses_nonfinite_grad);
    tcase_add_test(tc, test_optim_zero_grad_clears_every_grad);
    tcase_add_test(tc, test_optim_set_lr_changes_next_step);
    tcase_add_test(tc, test_optim_accessors);
    tcase_add_test(tc, test_optim_step_skips_param_without_grad);
    suite_add_tcase(s, tc);

    tc = tcase_create("new");
    tcase_add_loop_test(tc, test_optim_new_sgd_rejects_bad_settings, 0, N_OF(bad_sgd_opts));
    tcase_add_loop_test(tc, test_optim_new_adam_rejects_bad_settings, 0, N_OF(bad_adam_opts));
    tcase_add_test(tc, test_optim_new_rejects_bad_params);
    tcase_add_loop_test(tc, test_optim_new_survives_allocation_failure, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("state");
    tcase_add_test(tc, test_optim_state_list_names_like_pytorch);
    tcase_add_loop_test(tc, test_optim_state_round_trip_resumes_exactly, 0, N_NAIVE);
    tcase_add_test(tc, test_optim_load_state_rejects_mismatch);
    tcase_add_test(tc, test_optim_load_state_without_tensors);
    suite_add_tcase(s, tc);

    tc = tcase_create("schedule");
    tcase_add_test(tc, test_lr_schedule_constant_and_step);
    tcase_add_test(tc, test_lr_schedule_cosine);
    tcase_add_test(tc, test_lr_schedule_warmup_composes);
    tcase_add_test(tc, test_lr_schedule_drives_optimiser);
    tcase_add_loop_test(tc, test_lr_schedule_rejects_bad_fields, 0, N_OF(bad_schedules));
    tcase_add_test(tc, test_lr_schedule_rejects_null_and_negative_step);
    suite_add_tcase(s, tc);

    tc = tcase_create("clip");
    tcase_add_test(tc, test_clip_grad_norm_scales_to_threshold);
    tcase_add_test(tc, test_clip_grad_norm_leaves_small_grads);
    tcase_add_loop_test(tc, test_clip_grad_norm_refuses_nonfinite_norm, 0, 3);
    tcase_add_test(tc, test_clip_grad_norm_rejects_bad_arguments);
    tcase_add_test(tc, test_clip_grad_value_clamps);
    tcase_add_test(tc, test_grad_norms_per_parameter);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    cases_status = refcase_load(DATA_FILE, &cases, cases_error);
    int status = tu_run_suite(optim_suite());
    refcase_set_free(&cases);
    return status;
}
