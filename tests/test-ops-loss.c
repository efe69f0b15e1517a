/*
 * Losses: mean squared error, cross-entropy from logits (plain and with label
 * smoothing, against a double-precision reference, with logits of magnitude
 * 1e4) and NLL; forward values, gradients, recorded and tape-free calls, the
 * copy of the labels, and every error path.
 */
#include <math.h>
#include <string.h>

#include "testutil.h"

static struct tg_tensor *make2(int64_t n, int64_t c, const float *data)
{
    struct tg_tensor *t = tg_tensor_from_data(2, (int64_t[]){n, c}, data);
    ck_assert_msg(t != NULL, "%s", tg_last_error());
    return t;
}

static void assert_error(enum tg_status status, const char *frag1, const char *frag2)
{
    ck_assert_int_eq(tg_last_status(), status);
    ck_assert_msg(strstr(tg_last_error(), frag1) != NULL, "%s", tg_last_error());
    if (frag2 != NULL)
        ck_assert_msg(strstr(tg_last_error(), frag2) != NULL, "%s", tg_last_error());
}

/*
 * Run loss_of(inputs) on a fresh tape, backward from it (seed 1); returns the
 * loss value. Inputs that require grad get their gradient zeroed first.
 */
typedef struct tg_tensor *(*loss_fn)(struct tg_tensor *const *in, int n, void *user);

static float loss_and_grad(loss_fn fn, struct tg_tensor *const *in, int n, void *user)
{
    for (int i = 0; i < n; i++)
        tg_tensor_zero_grad(in[i]);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *loss = fn(in, n, user);
    ck_assert_msg(loss != NULL, "%s", tg_last_error());
    ck_assert_int_eq(loss->n_dims, 0);
    ck_assert_int_eq(loss->n_elems, 1);
    ck_assert(loss->requires_grad);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 1);
    ck_assert_int_eq(tg_tape_backward(tape, loss, NULL, 0), TG_OK);
    float v = loss->data[0];
    tg_tape_end(tape);
    tg_tape_free(tape);
    return v;
}

/* ---- Double-precision references ------------------------------------------------------ */

/* Cross-entropy with smoothing s; dx (may be NULL) gets d loss / d logits. */
static double naive_cross_entropy(double *dx,
                                  const float *x,
                                  const int32_t *labels,
                                  int64_t n,
                                  int64_t c,
                                  double s,
                                  bool mean)
{
    double total = 0.0;
    double scale = mean ? 1.0 / (double)n : 1.0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * c;
        double m = row[0];
        for (int64_t j = 1; j < c; j++)
            m = row[j] > m ? row[j] : m;
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++)
            sum += exp(row[j] - m);
        double lse = m + log(sum);
        double smooth = 0.0;
        for (int64_t j = 0; j < c; j++)
            smooth += (lse - row[j]) / (double)c;
        total += (1.0 - s) * (lse - row[labels[i]]) + s * smooth;
        for (int64_t j = 0; dx != NULL && j < c; j++) {
            double q = s / (double)c + (j == labels[i] ? 1.0 - s : 0.0);
            dx[i * c + j] = scale * (exp(row[j] - lse) - q);
        }
    }
    return total * scale;
}

static void
assert_close_double(const float *got, const double *want, int64_t n, double atol, double rtol)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i]),
                      "element %lld: got %.9g, want %.9g", (long long)i, (double)got[i], want[i]);
}

/* ---- MSE ----------------------------------------------------------------------------- */

struct mse_args {
    enum tg_reduction reduction;
};

static struct tg_tensor *mse_fn(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    return tg_mse_loss(in[0], in[1], ((const struct mse_args *)user)->reduction);
}

START_TEST(test_mse_loss_by_hand_both_inputs_need_grad)
{
    const float av[3] = {1, 2, 3}, bv[3] = {1, 0, 0};
    struct tg_tensor *a = tg_tensor_from_data(1, (int64_t[]){3}, av);
    struct tg_tensor *b = tg_tensor_from_data(1, (int64_t[]){3}, bv);

    /* No tape: a heap scalar. */
    struct tg_tensor *l = tg_mse_loss(a, b, TG_REDUCE_MEAN);
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_null(l->tape);
    ck_assert_int_eq(l->n_dims, 0);
    ck_assert_float_eq_tol(l->data[0], 13.0f / 3.0f, 1e-6f);
    tg_tensor_free(l);

    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_tensor *ab[2] = {a, b};
    struct mse_args sum = {TG_REDUCE_SUM};
    ck_assert_float_eq(loss_and_grad(mse_fn, ab, 2, &sum), 13.0f);
    const float da[3] = {0, 4, 6}, db[3] = {0, -4, -6};
    tu_assert_close(a->grad, da, 3, 0, 0);
    tu_assert_close(b->grad, db, 3, 0, 0);

    struct mse_args mean = {TG_REDUCE_MEAN};
    loss_and_grad(mse_fn, ab, 2, &mean);
    const float da_mean[3] = {0, 4.0f / 3, 2}, db_mean[3] = {0, -4.0f / 3, -2};
    tu_assert_close(a->grad, da_mean, 3, 1e-6, 1e-6);
    tu_assert_close(b->grad, db_mean, 3, 1e-6, 1e-6);

    /* Only b needs grad: a keeps none. */
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, false), TG_OK);
    loss_and_grad(mse_fn, ab, 2, &sum);
    ck_assert_ptr_null(a->grad);
    tu_assert_close(b->grad, db, 3, 0, 0);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_mse_loss_gradcheck)
{
    uint64_t rng = 51;
    struct tg_tensor *a = tu_tensor(3, 4, (int64_t)-1);
    struct tg_tensor *b = tu_tensor(3, 4, (int64_t)-1);
    tu_fill_uniform(a, &rng, -1, 1);
    tu_fill_uniform(b, &rng, -1, 1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_tensor *ab[2] = {a, b};
    for (int r = 0; r < 2; r++) {
        struct mse_args args = {r == 0 ? TG_REDUCE_MEAN : TG_REDUCE_SUM};
        tu_assert_gradcheck(mse_fn, &args, 2, ab, NULL);
    }
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_mse_loss_rejects_bad_inputs)
{
    struct tg_tensor *a = tu_tensor(3, (int64_t)-1);
    struct tg_tensor *b = tu_tensor(4, (int64_t)-1);
    struct tg_tensor *a2 = tu_tensor(3, 1, (int64_t)-1);
    tg_clear_error();
    ck_assert_ptr_null(tg_mse_loss(a, b, TG_REDUCE_MEAN));
    assert_error(TG_ERR_SHAPE, "tg_mse_loss: shapes differ (got a: 3, b: 4)", NULL);
    ck_assert_ptr_null(tg_mse_loss(a, a2, TG_REDUCE_MEAN));
    assert_error(TG_ERR_SHAPE, "tg_mse_loss", "3x1");
    ck_assert_ptr_null(tg_mse_loss(a, a, (enum tg_reduction)7));
    assert_error(TG_ERR_INVALID, "tg_mse_loss: unknown reduction (got 7", NULL);
    tg_error_set(TG_ERR_SHAPE, "tg_matmul: first failure");
    ck_assert_ptr_null(tg_mse_loss(a, NULL, TG_REDUCE_SUM));
    ck_assert_str_eq(tg_last_error(), "tg_matmul: first failure");
    tg_clear_error();
    tg_alloc_fail_at(1);
    ck_assert_ptr_null(tg_mse_loss(a, a, TG_REDUCE_SUM));
    tg_alloc_fail_at(0);
    assert_error(TG_ERR_NOMEM, "tg_mse_loss", NULL);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(a2);
}
END_TEST

/* ---- Cross-entropy ----------------------------------------------------------------------- */

struct ce_args {
    const int32_t *labels;
    enum tg_reduction reduction;
    float smoothing;
};

static struct tg_tensor *ce_fn(struct tg_tensor *const *in, int n, void *user)
{
    const struct ce_args *a = user;
    (void)n;
    return tg_cross_entropy_loss(in[0], a->labels, a->reduction, a->smoothing);
}

START_TEST(test_cross_entropy_by_hand)
{
    /* Two equal logits: log 2 whatever the label or smoothing. */
    const float x0[2] = {0, 0};
    struct tg_tensor *x = make2(1, 2, x0);
    const int32_t lab[1] = {0};
    struct tg_tensor *l = tg_cross_entropy_loss(x, lab, TG_REDUCE_MEAN, 0.0f);
    ck_assert_msg(l != NULL, "%s", tg_last_error());
    ck_assert_int_eq(l->n_dims, 0);
    ck_assert_float_eq_tol(l->data[0], 0.693147181f, 1e-6f);
    tg_tensor_free(l);
    l = tg_cross_entropy_loss(x, lab, TG_REDUCE_SUM, 0.2f);
    ck_assert_float_eq_tol(l->data[0], 0.693147181f, 1e-6f);
    tg_tensor_free(l);
    tg_tensor_free(x);

    /* logits 1, 2, 3, label 2: log(1 + e^-1 + e^-2) = 0.40760596. */
    const float x1[3] = {1, 2, 3};
    x = make2(1, 3, x1);
    const int32_t lab2[1] = {2};
    l = tg_cross_entropy_loss(x, lab2, TG_REDUCE_MEAN, 0.0f);
    ck_assert_float_eq_tol(l->data[0], 0.40760596f, 1e-6f);
    tg_tensor_free(l);
    tg_tensor_free(x);
}
END_TEST

static const float smoothings[] = {0.0f, 0.1f, 0.35f, 1.0f};

/* Loop index: smoothing k = _i / 2, reduction = _i % 2. */
START_TEST(test_cross_entropy_matches_double_reference)
{
    float s = smoothings[_i / 2];
    bool mean = _i % 2 == 0;
    int64_t n = 7, c = 5;
    uint64_t rng = 60 + (uint64_t)_i;
    struct tg_tensor *x = tu_tensor(n, c, (int64_t)-1);
    tu_fill_uniform(x, &rng, -3, 3);
    int32_t labels[7];
    for (int i = 0; i < n; i++)
        labels[i] = (int32_t)tu_rand_int(&rng, c);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);

    double dx[35];
    double want = naive_cross_entropy(dx, x->data, labels, n, c, s, mean);
    struct ce_args args = {labels, mean ? TG_REDUCE_MEAN : TG_REDUCE_SUM, s};
    float got = loss_and_grad(ce_fn, &x, 1, &args);
    ck_assert_msg(fabs(got - want) <= 1e-5 * fabs(want), "loss %.9g, want %.9g", (double)got, want);
    assert_close_double(x->grad, dx, n * c, 1e-7, 1e-5);
    tg_tensor_free(x);
}
END_TEST

/* Logits of magnitude 1e4: no overflow, and the same answer as in double. */
START_TEST(test_cross_entropy_large_logits_stable)
{
    int64_t n = 6, c = 10;
    uint64_t rng = 70;
    struct tg_tensor *x = tu_tensor(n, c, (int64_t)-1);
    tu_fill_uniform(x, &rng, -1e4f, 1e4f);
    x->data[3] = x->data[7] + 1.5f; // two close leaders in row 0
    int32_t labels[6] = {3, 0, 9, 4, 4, 1};
    labels[0] = 7; // the runner-up
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    for (int k = 0; k < 2; k++) {
        float s = k == 0 ? 0.0f : 0.1f;
        double dx[60];
        double want = naive_cross_entropy(dx, x->data, labels, n, c, s, true);
        struct ce_args args = {labels, TG_REDUCE_MEAN, s};
        float got = loss_and_grad(ce_fn, &x, 1, &args);
        ck_assert(isfinite(got));
        ck_assert_msg(fabs(got - want) <= 1e-5 * fabs(want), "loss %.9g, want %.9g", (double)got,
                      want);
        for (int64_t i = 0; i < n * c; i++)
            ck_assert(isfinite(x->grad[i]));
        assert_close_double(x->grad, dx, n * c, 1e-6, 1e-4);
    }
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_gradcheck)
{
    float s = smoothings[_i / 2];
    uint64_t rng = 80 + (uint64_t)_i;
    struct tg_tensor *x = tu_tensor(4, 6, (int64_t)-1);
    tu_fill_uniform(x, &rng, -2, 2);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    const int32_t labels[4] = {5, 0, 2, 2};
    struct ce_args args = {labels, _i % 2 == 0 ? TG_REDUCE_MEAN : TG_REDUCE_SUM, s};
    tu_assert_gradcheck(ce_fn, &args, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

/* The call copies the labels: changing them before backward changes nothing. */
START_TEST(test_cross_entropy_copies_labels)
{
    const float xv[6] = {0.5f, -1, 2, 1, 0, -0.5f};
    struct tg_tensor *x = make2(2, 3, xv);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    int32_t labels[2] = {0, 2};
    const int32_t kept[2] = {0, 2};
    double dx[6];
    naive_cross_entropy(dx, xv, kept, 2, 3, 0.0, true);

    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *l = tg_cross_entropy_loss(x, labels, TG_REDUCE_MEAN, 0.0f);
    labels[0] = 1;
    labels[1] = 99;
    ck_assert_int_eq(tg_tape_backward(tape, l, NULL, 0), TG_OK);
    assert_close_double(x->grad, dx, 6, 1e-7, 1e-5);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_no_grad_and_empty_batch)
{
    const float xv[4] = {1, 2, 3, 4};
    struct tg_tensor *x = make2(2, 2, xv);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    const int32_t labels[2] = {1, 0};
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    tg_tape_set_grad_enabled(tape, false);
    struct tg_tensor *l = tg_cross_entropy_loss(x, labels, TG_REDUCE_SUM, 0.0f);
    ck_assert_ptr_nonnull(l);
    ck_assert(!l->requires_grad);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 0);
    double want = naive_cross_entropy(NULL, xv, labels, 2, 2, 0.0, false);
    ck_assert_float_eq_tol(l->data[0], (float)want, 1e-6f);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);

    /* No rows: the sum is 0 and the mean NaN (0 / 0), as in PyTorch. */
    struct tg_tensor *e = tu_tensor(0, 4, (int64_t)-1);
    l = tg_cross_entropy_loss(e, NULL, TG_REDUCE_SUM, 0.0f);
    ck_assert_msg(l != NULL, "%s", tg_last_error());
    ck_assert_float_eq(l->data[0], 0.0f);
    tg_tensor_free(l);
    l = tg_cross_entropy_loss(e, NULL, TG_REDUCE_MEAN, 0.0f);
    ck_assert(isnan(l->data[0]));
    tg_tensor_free(l);
    tg_tensor_free(e);
}
END_TEST

/* Once a step has run, later steps of the same shapes allocate nothing. */
START_TEST(test_cross_entropy_warm_step_allocates_nothing)
{
    uint64_t rng = 75;
    struct tg_tensor *x = tu_tensor(16, 10, (int64_t)-1);
    tu_fill_uniform(x, &rng, -2, 2);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    int32_t labels[16];
    for (int i = 0; i < 16; i++)
        labels[i] = i % 10;
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    uint64_t before = 0;
    for (int step = 0; step < 3; step++) {
        if (step == 2)
            before = tg_alloc_count();
        struct tg_tensor *l = tg_cross_entropy_loss(x, labels, TG_REDUCE_MEAN, 0.1f);
        struct tg_tensor *n = tg_nll_loss(x, labels, TG_REDUCE_SUM);
        ck_assert_int_eq(tg_tape_backward(tape, l, NULL, 0), TG_OK);
        ck_assert_ptr_nonnull(n);
        tg_tape_reset(tape);
    }
    ck_assert_uint_eq(tg_alloc_count(), before);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_rejects_bad_labels)
{
    struct tg_tensor *x = tu_tensor(4, 5, (int64_t)-1);
    float before[20];
    memcpy(before, x->data, sizeof(before));
    tg_clear_error();
    const int32_t high[4] = {0, 1, 2, 5};
    ck_assert_ptr_null(tg_cross_entropy_loss(x, high, TG_REDUCE_MEAN, 0.0f));
    assert_error(TG_ERR_INVALID, "tg_cross_entropy_loss: label out of range (got 5 in row 3",
                 "expected 0 to 4");
    const int32_t neg[4] = {0, 1, -1, 0};
    ck_assert_ptr_null(tg_cross_entropy_loss(x, neg, TG_REDUCE_SUM, 0.0f));
    assert_error(TG_ERR_INVALID, "got -1 in row 2", NULL);
    ck_assert_ptr_null(tg_cross_entropy_loss(x, NULL, TG_REDUCE_SUM, 0.0f));
    assert_error(TG_ERR_INVALID, "tg_cross_entropy_loss: labels are NULL", NULL);
    ck_assert_mem_eq(before, x->data, sizeof(before));
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_rejects_bad_settings)
{
    struct tg_tensor *x = tu_tensor(2, 3, (int64_t)-1);
    struct tg_tensor *x1 = tu_tensor(3, (int64_t)-1);
    struct tg_tensor *x3 = tu_tensor(2, 3, 1, (int64_t)-1);
    const int32_t labels[2] = {0, 1};
    tg_clear_error();
    const float bad_s[3] = {-0.1f, 1.5f, NAN};
    for (int k = 0; k < 3; k++) {
        ck_assert_ptr_null(tg_cross_entropy_loss(x, labels, TG_REDUCE_MEAN, bad_s[k]));
        assert_error(TG_ERR_INVALID, "tg_cross_entropy_loss: label_smoothing out of range",
                     "expected 0 to 1");
    }
    ck_assert_ptr_null(tg_cross_entropy_loss(x, labels, (enum tg_reduction) - 1, 0.0f));
    assert_error(TG_ERR_INVALID, "tg_cross_entropy_loss: unknown reduction", NULL);
    ck_assert_ptr_null(tg_cross_entropy_loss(x1, labels, TG_REDUCE_MEAN, 0.0f));
    assert_error(TG_ERR_SHAPE, "tg_cross_entropy_loss: input is not 2-d (got 3,", NULL);
    ck_assert_ptr_null(tg_cross_entropy_loss(x3, labels, TG_REDUCE_MEAN, 0.0f));
    assert_error(TG_ERR_SHAPE, "tg_cross_entropy_loss", "2x3x1");
    tg_error_set(TG_ERR_NOMEM, "tg_linear: first failure");
    ck_assert_ptr_null(tg_cross_entropy_loss(NULL, labels, TG_REDUCE_MEAN, 0.0f));
    ck_assert_str_eq(tg_last_error(), "tg_linear: first failure");

    /* A failed allocation while recording leaves the tape without an entry. */
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    for (uint64_t k = 1; k < 8; k++) {
        struct tg_tape *tape = tg_tape_new();
        tg_tape_begin(tape);
        tg_clear_error();
        tg_alloc_fail_at(k);
        struct tg_tensor *l = tg_cross_entropy_loss(x, labels, TG_REDUCE_MEAN, 0.1f);
        tg_alloc_fail_at(0);
        if (l == NULL)
            assert_error(TG_ERR_NOMEM, "tg_cross_entropy_loss", NULL);
        ck_assert_uint_eq(tg_tape_n_entries(tape), l == NULL ? 0 : 1);
        tg_tape_end(tape);
        tg_tape_free(tape);
    }
    tg_tensor_free(x);
    tg_tensor_free(x1);
    tg_tensor_free(x3);
}
END_TEST

/* ---- NLL ------------------------------------------------------------------------------ */

struct nll_args {
    const int32_t *labels;
    enum tg_reduction reduction;
};

static struct tg_tensor *nll_fn(struct tg_tensor *const *in, int n, void *user)
{
    const struct nll_args *a = user;
    (void)n;
    return tg_nll_loss(in[0], a->labels, a->reduction);
}

START_TEST(test_nll_loss_by_hand)
{
    const float lp[4] = {-1, -2, -0.5f, -3};
    struct tg_tensor *x = make2(2, 2, lp);
    int32_t labels[2] = {1, 0};
    struct tg_tensor *l = tg_nll_loss(x, labels, TG_REDUCE_SUM);
    ck_assert_msg(l != NULL, "%s", tg_last_error());
    ck_assert_ptr_null(l->tape);
    ck_assert_float_eq(l->data[0], 2.5f);
    tg_tensor_free(l);

    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    l = tg_nll_loss(x, labels, TG_REDUCE_MEAN);
    ck_assert_float_eq(l->data[0], 1.25f);
    labels[0] = 0; // copied by the call: backward still uses 1
    ck_assert_int_eq(tg_tape_backward(tape, l, NULL, 0), TG_OK);
    const float want[4] = {0, -0.5f, -0.5f, 0};
    tu_assert_close(x->grad, want, 4, 0, 0);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_nll_loss_gradcheck)
{
    uint64_t rng = 90;
    struct tg_tensor *x = tu_tensor(5, 3, (int64_t)-1);
    tu_fill_uniform(x, &rng, -3, 0);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    const int32_t labels[5] = {2, 2, 0, 1, 0};
    for (int r = 0; r < 2; r++) {
        struct nll_args args = {labels, r == 0 ? TG_REDUCE_MEAN : TG_REDUCE_SUM};
        tu_assert_gradcheck(nll_fn, &args, 1, &x, NULL);
    }
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_nll_loss_rejects_bad_inputs)
{
    struct tg_tensor *x = tu_tensor(3, 4, (int64_t)-1);
    struct tg_tensor *x1 = tu_tensor(4, (int64_t)-1);
    const int32_t labels[3] = {0, 4, 1};
    const int32_t ok[3] = {0, 3, 1};
    tg_clear_error();
    ck_assert_ptr_null(tg_nll_loss(x, labels, TG_REDUCE_MEAN));
    assert_error(TG_ERR_INVALID, "tg_nll_loss: label out of range (got 4 in row 1",
                 "expected 0 to 3");
    ck_assert_ptr_null(tg_nll_loss(x, NULL, TG_REDUCE_MEAN));
    assert_error(TG_ERR_INVALID, "tg_nll_loss: labels are NULL", NULL);
    ck_assert_ptr_null(tg_nll_loss(x1, ok, TG_REDUCE_MEAN));
    assert_error(TG_ERR_SHAPE, "tg_nll_loss: input is not 2-d", NULL);
    ck_assert_ptr_null(tg_nll_loss(x, ok, (enum tg_reduction)2));
    assert_error(TG_ERR_INVALID, "tg_nll_loss: unknown reduction", NULL);
    tg_error_set(TG_ERR_SHAPE, "tg_log_softmax: first failure");
    ck_assert_ptr_null(tg_nll_loss(NULL, ok, TG_REDUCE_MEAN));
    ck_assert_str_eq(tg_last_error(), "tg_log_softmax: first failure");
    tg_tensor_free(x);
    tg_tensor_free(x1);
}
END_TEST

static Suite *loss_suite(void)
{
    Suite *s = suite_create("ops-loss");
    int n_smooth = (int)(sizeof(smoothings) / sizeof(smoothings[0]));

    TCase *tc = tcase_create("mse_loss");
    tcase_add_test(tc, test_mse_loss_by_hand_both_inputs_need_grad);
    tcase_add_test(tc, test_mse_loss_gradcheck);
    tcase_add_test(tc, test_mse_loss_rejects_bad_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("cross_entropy_loss");
    tcase_add_test(tc, test_cross_entropy_by_hand);
    tcase_add_loop_test(tc, test_cross_entropy_matches_double_reference, 0, 2 * n_smooth);
    tcase_add_test(tc, test_cross_entropy_large_logits_stable);
    tcase_add_loop_test(tc, test_cross_entropy_gradcheck, 0, 2 * n_smooth);
    tcase_add_test(tc, test_cross_entropy_copies_labels);
    tcase_add_test(tc, test_cross_entropy_no_grad_and_empty_batch);
    tcase_add_test(tc, test_cross_entropy_warm_step_allocates_nothing);
    tcase_add_test(tc, test_cross_entropy_rejects_bad_labels);
    tcase_add_test(tc, test_cross_entropy_rejects_bad_settings);
    suite_add_tcase(s, tc);

    tc = tcase_create("nll_loss");
    tcase_add_test(tc, test_nll_loss_by_hand);
    tcase_add_test(tc, test_nll_loss_gradcheck);
    tcase_add_test(tc, test_nll_loss_rejects_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(loss_suite());
}
