/*
 * The nn layer set: the generator, the initialisers, every layer's forward
 * values (hand-worked or against naive loops) and gradients, batch norm in
 * both modes with its running statistics, dropout, the losses, parameter
 * names of nested Sequentials, and the error paths. PyTorch's reference
 * cases for batch norm and BCE with logits are checked here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "refcase.h"
#include "testutil.h"

#define DATA_FILE TG_TEST_DATA_DIR "/torch-ops.jsonl"

static void assert_error(enum tg_status status, const char *frag1, const char *frag2)
{
    ck_assert_int_eq(tg_last_status(), status);
    ck_assert_msg(strstr(tg_last_error(), frag1) != NULL, "%s", tg_last_error());
    if (frag2 != NULL)
        ck_assert_msg(strstr(tg_last_error(), frag2) != NULL, "%s", tg_last_error());
}

static struct tg_tensor *mk(int n_dims, const int64_t *shape, const float *data)
{
    struct tg_tensor *t = tg_tensor_from_data(n_dims, shape, data);
    ck_assert_msg(t != NULL, "%s", tg_last_error());
    return t;
}

/* Mean and standard deviation of a tensor's values, in double. */
static void moments(const struct tg_tensor *t, double *mean, double *std)
{
    double s = 0.0;
    for (int64_t i = 0; i < t->n_elems; i++)
        s += t->data[i];
    *mean = s / (double)t->n_elems;
    double q = 0.0;
    for (int64_t i = 0; i < t->n_elems; i++)
        q += (t->data[i] - *mean) * (t->data[i] - *mean);
    *std = sqrt(q / (double)t->n_elems);
}

/* Every value in [lo, hi]; one assertion (Check's are slow inside long loops). */
static void assert_values_in(const float *v, int64_t n, float lo, float hi)
{
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        if (!(v[i] >= lo && v[i] <= hi))
            bad = i;
    }
    ck_assert_msg(bad < 0, "element %lld = %g outside [%g, %g]", (long long)bad,
                  bad < 0 ? 0.0 : v[bad], lo, hi);
}

static void assert_range(const struct tg_tensor *t, float lo, float hi)
{
    assert_values_in(t->data, t->n_elems, lo, hi);
}

/* ---- RNG ---------------------------------------------------------------------------- */

START_TEST(test_rng_known_values)
{
    /* splitmix64 from 0 gives 0xe220a8397b1dcdaf first (its published first output). */
    struct tg_rng rng;
    uint64_t st[TG_RNG_STATE_WORDS];
    tg_rng_seed(&rng, 0);
    tg_rng_get_state(&rng, st);
    ck_assert_uint_eq(st[0], 0xe220a8397b1dcdafu);
    ck_assert_uint_eq(st[4], 0);

    /* xoshiro256** from the state {1, 2, 3, 4}. */
    const uint64_t s1234[TG_RNG_STATE_WORDS] = {1, 2, 3, 4, 0};
    ck_assert_int_eq(tg_rng_set_state(&rng, s1234), TG_OK);
    ck_assert_uint_eq(tg_rng_next_u64(&rng), 0x2d00u);
    ck_assert_uint_eq(tg_rng_next_u64(&rng), 0x0u);
    ck_assert_uint_eq(tg_rng_next_u64(&rng), 0x5a007080u);
    ck_assert_uint_eq(tg_rng_next_u64(&rng), 0x10e0000000009d80u);

    /* Seed 42, computed by a Python transcription of the two algorithms. */
    tg_rng_seed(&rng, 42);
    ck_assert_uint_eq(tg_rng_next_u64(&rng), 0x15780b2e0c2ec716u);
    ck_assert_uint_eq(tg_rng_next_u64(&rng), 0x6104d9866d113a7eu);
    ck_assert_uint_eq(tg_rng_next_u64(&rng), 0xae17533239e499a1u);
}
END_TEST

START_TEST(test_rng_same_seed_same_sequence)
{
    struct tg_rng a;
    struct tg_rng b;
    struct tg_rng c;
    tg_rng_seed(&a, 1234);
    tg_rng_seed(&b, 1234);
    tg_rng_seed(&c, 1235);
    int differ = 0;
    bool same = true;
    for (int i = 0; i < 1000; i++) {
        float ua = tg_rng_uniform(&a);
        float na = tg_rng_normal(&a);
        uint64_t ia = tg_rng_int(&a, 10);
        float ub = tg_rng_uniform(&b);
        float nb = tg_rng_normal(&b);
        same = same && memcmp(&ua, &ub, sizeof(ua)) == 0 && memcmp(&na, &nb, sizeof(na)) == 0 &&
               ia == tg_rng_int(&b, 10);
        differ += tg_rng_next_u64(&a) != tg_rng_next_u64(&c);
        tg_rng_next_u64(&b);
    }
    ck_assert(same);
    ck_assert_int_gt(differ, 990);
}
END_TEST

START_TEST(test_rng_state_round_trip)
{
    struct tg_rng a;
    tg_rng_seed(&a, 7);
    (void)tg_rng_normal(&a); // leaves a spare deviate pending
    uint64_t st[TG_RNG_STATE_WORDS];
    tg_rng_get_state(&a, st);
    ck_assert_uint_ne(st[4] >> 32, 0);
    float want[9];
    for (int i = 0; i < 9; i++)
        want[i] = i % 3 ? tg_rng_normal(&a) : tg_rng_uniform(&a);

    struct tg_rng b;
    tg_rng_seed(&b, 99);
    ck_assert_int_eq(tg_rng_set_state(&b, st), TG_OK);
    for (int i = 0; i < 9; i++) {
        float got = i % 3 ? tg_rng_normal(&b) : tg_rng_uniform(&b);
        ck_assert(memcmp(&got, &want[i], sizeof(got)) == 0);
    }

    /* Bad states leave the generator as it was. */
    struct tg_rng before = b;
    const uint64_t zero[TG_RNG_STATE_WORDS] = {0, 0, 0, 0, 0};
    ck_assert_int_eq(tg_rng_set_state(&b, zero), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_rng_set_state", "all zero");
    const uint64_t junk[TG_RNG_STATE_WORDS] = {1, 2, 3, 4, (uint64_t)1 << 40};
    ck_assert_int_eq(tg_rng_set_state(&b, junk), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_rng_set_state", "word 4");
    ck_assert(memcmp(&before.s, &b.s, sizeof(b.s)) == 0);
    ck_assert_int_eq(tg_rng_set_state(NULL, st), TG_ERR_INVALID);
}
END_TEST

START_TEST(test_rng_distributions)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 2024);
    enum { N = 200000 };
    double su = 0.0;
    double sn = 0.0;
    double qn = 0.0;
    int64_t counts[7] = {0};
    bool in_range = true;
    for (int i = 0; i < N; i++) {
        float u = tg_rng_uniform(&rng);
        double z = tg_rng_normal(&rng);
        uint64_t k = tg_rng_int(&rng, 7);
        in_range = in_range && u >= 0.0f && u < 1.0f && isfinite(z) && k < 7;
        su += u;
        sn += z;
        qn += z * z;
        counts[k < 7 ? k : 0]++;
    }
    ck_assert(in_range);
    ck_assert_double_eq_tol(su / N, 0.5, 0.005);
    ck_assert_double_eq_tol(sn / N, 0.0, 0.01);
    ck_assert_double_eq_tol(sqrt(qn / N), 1.0, 0.01);
    for (int k = 0; k < 7; k++)
        ck_assert_double_eq_tol((double)counts[k] / N, 1.0 / 7.0, 0.005);
    ck_assert_uint_eq(tg_rng_int(&rng, 0), 0);
    ck_assert_uint_eq(tg_rng_int(&rng, 1), 0);
}
END_TEST

/* ---- Initialisers ------------------------------------------------------------------- */

START_TEST(test_init_fans_and_gains)
{
    int64_t fi;
    int64_t fo;
    struct tg_tensor *w4 = tu_tensor(32, 8, 5, 3, -1);
    ck_assert_int_eq(tg_init_fans(w4, &fi, &fo), TG_OK);
    ck_assert_int_eq(fi, 8 * 15);
    ck_assert_int_eq(fo, 32 * 15);
    struct tg_tensor *w2 = tu_tensor(10, 784, -1);
    ck_assert_int_eq(tg_init_fans(w2, &fi, &fo), TG_OK);
    ck_assert_int_eq(fi, 784);
    ck_assert_int_eq(fo, 10);
    struct tg_tensor *w1 = tu_tensor(6, -1);
    ck_assert_int_eq(tg_init_fans(w1, &fi, &fo), TG_OK);
    ck_assert_int_eq(fi, 6);
    ck_assert_int_eq(fo, 6);
    struct tg_tensor *s = tg_tensor_new(0, NULL);
    ck_assert_int_eq(tg_init_fans(s, &fi, &fo), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_init_fans", "scalar");

    ck_assert_float_eq_tol(tg_init_gain(TG_NONLIN_LINEAR, 0.0f), 1.0f, 1e-7f);
    ck_assert_float_eq_tol(tg_init_gain(TG_NONLIN_RELU, 0.0f), sqrtf(2.0f), 1e-7f);
    ck_assert_float_eq_tol(tg_init_gain(TG_NONLIN_LEAKY_RELU, 0.2f), sqrtf(2.0f / 1.04f), 1e-7f);
    ck_assert_float_eq_tol(tg_init_gain(TG_NONLIN_LEAKY_RELU, sqrtf(5.0f)), sqrtf(1.0f / 3.0f),
                           1e-6f);
    ck_assert_float_eq_tol(tg_init_gain(TG_NONLIN_TANH, 0.0f), 5.0f / 3.0f, 1e-7f);
    tg_tensor_free(w4);
    tg_tensor_free(w2);
    tg_tensor_free(w1);
    tg_tensor_free(s);
}
END_TEST

/* A large weight (O, I, 3, 3): fan_in = 9 I, fan_out = 9 O. */
#define BIG_O 192
#define BIG_I 128

static void check_normal(const struct tg_tensor *t, double want_std)
{
    double mean;
    double std;
    moments(t, &mean, &std);
    double n = (double)t->n_elems;
    ck_assert_msg(fabs(mean) < 4.0 * want_std / sqrt(n), "mean %g (std %g)", mean, want_std);
    ck_assert_msg(fabs(std / want_std - 1.0) < 0.01, "std %g, expected %g", std, want_std);
}

static void check_uniform(const struct tg_tensor *t, double bound)
{
    double mean;
    double std;
    assert_range(t, (float)-bound, (float)bound);
    moments(t, &mean, &std);
    double want_std = bound / sqrt(3.0);
    ck_assert_msg(fabs(mean) < 4.0 * want_std / sqrt((double)t->n_elems), "mean %g", mean);
    ck_assert_msg(fabs(std / want_std - 1.0) < 0.01, "std %g, expected %g", std, want_std);
    /* the values reach close to both bounds */
    float lo = t->data[0];
    float hi = t->data[0];
    for (int64_t i = 1; i < t->n_elems; i++) {
        lo = fminf(lo, t->data[i]);
        hi = fmaxf(hi, t->data[i]);
    }
    ck_assert(lo < -0.99 * bound && hi > 0.99 * bound);
}

START_TEST(test_init_kaiming_statistics)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 11);
    struct tg_tensor *w = tu_tensor(BIG_O, BIG_I, 3, 3, -1);
    double fan_in = BIG_I * 9.0;
    double fan_out = BIG_O * 9.0;

    ck_assert_int_eq(tg_init_kaiming_normal(w, &rng, 0.0f, TG_FAN_IN, TG_NONLIN_RELU), TG_OK);
    check_normal(w, sqrt(2.0) / sqrt(fan_in));
    ck_assert_int_eq(tg_init_kaiming_normal(w, &rng, 0.0f, TG_FAN_OUT, TG_NONLIN_RELU), TG_OK);
    check_normal(w, sqrt(2.0) / sqrt(fan_out));
    ck_assert_int_eq(tg_init_kaiming_uniform(w, &rng, 0.0f, TG_FAN_IN, TG_NONLIN_RELU), TG_OK);
    check_uniform(w, sqrt(6.0 / fan_in));
    ck_assert_int_eq(tg_init_kaiming_uniform(w, &rng, 0.1f, TG_FAN_OUT, TG_NONLIN_LEAKY_RELU),
                     TG_OK);
    check_uniform(w, sqrt(2.0 / 1.01) * sqrt(3.0 / fan_out));
    ck_assert_int_eq(tg_init_kaiming_uniform(w, &rng, 0.0f, TG_FAN_IN, TG_NONLIN_LINEAR), TG_OK);
    check_uniform(w, sqrt(3.0 / fan_in));
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_init_xavier_statistics)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 12);
    struct tg_tensor *w = tu_tensor(BIG_O, BIG_I, 3, 3, -1);
    double fans = (BIG_O + BIG_I) * 9.0;
    ck_assert_int_eq(tg_init_xavier_uniform(w, &rng, 1.0f), TG_OK);
    check_uniform(w, sqrt(6.0 / fans));
    ck_assert_int_eq(tg_init_xavier_normal(w, &rng, 2.0f), TG_OK);
    check_normal(w, 2.0 * sqrt(2.0 / fans));
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_init_plain_fills)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 13);
    struct tg_tensor *w = tu_tensor(300, 1000, -1);
    ck_assert_int_eq(tg_init_uniform(w, &rng, -0.5f, 1.5f), TG_OK);
    assert_range(w, -0.5f, 1.5f);
    double mean;
    double std;
    moments(w, &mean, &std);
    ck_assert_double_eq_tol(mean, 0.5, 0.005);
    ck_assert_int_eq(tg_init_normal(w, &rng, 3.0f, 0.25f), TG_OK);
    moments(w, &mean, &std);
    ck_assert_double_eq_tol(mean, 3.0, 0.002);
    ck_assert_double_eq_tol(std, 0.25, 0.0025);
    ck_assert_int_eq(tg_init_constant(w, 0.75f), TG_OK);
    assert_range(w, 0.75f, 0.75f);
    ck_assert_int_eq(tg_init_zeros(w), TG_OK);
    assert_range(w, 0.0f, 0.0f);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_init_torch_default_bounds)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 14);
    struct tg_tensor *w = tu_tensor(BIG_O, BIG_I, 3, 3, -1);
    struct tg_tensor *b = tu_tensor(4096, -1);
    ck_assert_int_eq(tg_init_torch_default(w, b, &rng), TG_OK);
    double bound = 1.0 / sqrt(BIG_I * 9.0);
    check_uniform(w, bound);
    assert_range(b, (float)-bound, (float)bound);
    ck_assert_int_eq(tg_init_torch_default(w, NULL, &rng), TG_OK);
    check_uniform(w, bound);

    /* The same as kaiming_uniform with a = sqrt(5), fan_in, from the same state. */
    struct tg_tensor *w2 = tu_tensor(BIG_O, BIG_I, 3, 3, -1);
    struct tg_rng r1;
    struct tg_rng r2;
    tg_rng_seed(&r1, 5);
    tg_rng_seed(&r2, 5);
    ck_assert_int_eq(tg_init_torch_default(w, NULL, &r1), TG_OK);
    ck_assert_int_eq(tg_init_kaiming_uniform(w2, &r2, sqrtf(5.0f), TG_FAN_IN, TG_NONLIN_LEAKY_RELU),
                     TG_OK);
    tu_assert_close(w->data, w2->data, w->n_elems, 1e-7, 1e-5);
    tg_tensor_free(w);
    tg_tensor_free(w2);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_init_rejects_bad_arguments)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 1);
    struct tg_tensor *w = tu_tensor(2, 3, -1);
    tg_tensor_fill(w, 9.0f);
    ck_assert_int_eq(tg_init_uniform(w, &rng, 1.0f, 0.0f), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_init_uniform", "lo 1");
    ck_assert_int_eq(tg_init_normal(w, &rng, 0.0f, -1.0f), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_init_normal", "std");
    ck_assert_int_eq(tg_init_kaiming_normal(w, NULL, 0.0f, TG_FAN_IN, TG_NONLIN_RELU),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_init_kaiming_normal", "rng is NULL");
    ck_assert_int_eq(tg_init_xavier_uniform(NULL, &rng, 1.0f), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_init_xavier_uniform", "tensor is NULL");
    ck_assert_int_eq(tg_init_constant(NULL, 1.0f), TG_ERR_INVALID);
    ck_assert_int_eq(tg_init_torch_default(w, NULL, NULL), TG_ERR_INVALID);
    assert_range(w, 9.0f, 9.0f); // unchanged
    struct tg_tensor *s = tg_tensor_new(0, NULL);
    ck_assert_int_eq(tg_init_kaiming_uniform(s, &rng, 0.0f, TG_FAN_IN, TG_NONLIN_RELU),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_init_kaiming_uniform", "scalar");
    struct tg_tensor *e = tu_tensor(0, 3, -1);
    ck_assert_int_eq(tg_init_kaiming_uniform(e, &rng, 0.0f, TG_FAN_OUT, TG_NONLIN_RELU),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_init_kaiming_uniform", "fan is 0");
    tg_tensor_free(w);
    tg_tensor_free(s);
    tg_tensor_free(e);
}
END_TEST

/* ---- Layer helpers ------------------------------------------------------------------ */

/* Forward of one module, for the gradient checker: inputs[0] is x, the rest its tensors. */
static struct tg_tensor *module_fn(struct tg_tensor *const *inputs, int n, void *user)
{
    (void)n;
    return tg_nn_forward(user, inputs[0]);
}

/* Check d/dx and d/d(every parameter) of m at x. */
static void
gradcheck_module(struct tg_nn_module *m, struct tg_tensor *x, const struct tg_gradcheck_opts *opts)
{
    struct tg_tensor *in[8] = {x};
    struct tg_param ps[7];
    size_t n;
    ck_assert_int_eq(tg_nn_params(m, ps, 7, false, &n), TG_OK);
    for (size_t i = 0; i < n; i++)
        in[i + 1] = ps[i].tensor;
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(module_fn, m, (int)n + 1, in, opts);
}

/* Run m on x without a tape: a heap output the caller frees. */
static struct tg_tensor *run_no_tape(struct tg_nn_module *m, struct tg_tensor *x)
{
    ck_assert_ptr_null(tg_tape_current());
    struct tg_tensor *y = tg_nn_forward(m, x);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_ptr_null(y->tape);
    return y;
}

static struct tg_tensor *
random_tensor(uint64_t *state, float lo, float hi, int d0, int d1, int d2, int d3)
{
    struct tg_tensor *t = tu_tensor(d0, d1, d2, d3, -1);
    tu_fill_uniform(t, state, lo, hi);
    return t;
}

/* ---- Linear ------------------------------------------------------------------------- */

START_TEST(test_linear_forward_by_hand)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 1);
    struct tg_nn_module *m = tg_nn_linear_new(3, 2, true, &rng);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(tg_nn_type(m), "Linear");
    struct tg_tensor *w = tg_nn_find(m, "weight");
    struct tg_tensor *b = tg_nn_find(m, "bias");
    ck_assert(w && b && w->requires_grad && b->requires_grad);
    ck_assert_int_eq(w->shape[0], 2);
    ck_assert_int_eq(w->shape[1], 3);
    const float wv[6] = {1, 2, 3, -1, 0, 0.5f};
    memcpy(w->data, wv, sizeof(wv));
    b->data[0] = 0.5f;
    b->data[1] = -1.0f;
    struct tg_tensor *x = mk(2, (int64_t[]){2, 3}, (const float[]){1, 1, 1, 2, -1, 4});
    struct tg_tensor *y = run_no_tape(m, x);
    /* row 0: 1+2+3+0.5, -1+0+0.5-1; row 1: 2-2+12+0.5, -2+0+2-1 */
    const float want[4] = {6.5f, -1.5f, 12.5f, -1.0f};
    ck_assert_int_eq(y->n_dims, 2);
    tu_assert_close(y->data, want, 4, 1e-6, 1e-6);
    tg_tensor_free(y);

    struct tg_nn_module *nb = tg_nn_linear_new(3, 2, false, &rng);
    ck_assert_uint_eq(tg_nn_n_params(nb, true), 1);
    ck_assert_ptr_null(tg_nn_find(nb, "bias"));
    memcpy(tg_nn_find(nb, "weight")->data, wv, sizeof(wv));
    y = run_no_tape(nb, x);
    const float want_nb[4] = {6.0f, -0.5f, 12.0f, 0.0f};
    tu_assert_close(y->data, want_nb, 4, 1e-6, 1e-6);
    tg_tensor_free(y);
    tg_nn_free(nb);
    tg_tensor_free(x);
    tg_nn_free(m);
}
END_TEST

START_TEST(test_linear_default_init_and_gradcheck)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 2);
    struct tg_nn_module *m = tg_nn_linear_new(20, 7, true, &rng);
    float bound = 1.0f / sqrtf(20.0f);
    assert_range(tg_nn_find(m, "weight"), -bound, bound);
    assert_range(tg_nn_find(m, "bias"), -bound, bound);
    uint64_t st = 3;
    struct tg_tensor *x = tu_tensor(4, 20, -1);
    tu_fill_uniform(x, &st, -1.0f, 1.0f);
    gradcheck_module(m, x, NULL);
    tg_tensor_free(x);
    tg_nn_free(m);
}
END_TEST

/* ---- Conv2d ------------------------------------------------------------------------- */

/* Direct convolution with every setting, in double. */
static void naive_conv2d(float *y,
                         const struct tg_tensor *x,
                         const struct tg_tensor *w,
                         const struct tg_tensor *b,
                         const struct tg_conv2d_params *p,
                         int64_t ho,
                         int64_t wo)
{
    int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], wd = x->shape[3];
    int64_t o = w->shape[0], cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    int64_t og = o / p->groups;
    for (int64_t i = 0; i < n; i++)
        for (int64_t oc = 0; oc < o; oc++)
            for (int64_t r = 0; r < ho; r++)
                for (int64_t q = 0; q < wo; q++) {
                    double acc = b ? b->data[oc] : 0.0;
                    int64_t g = oc / og;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t a = 0; a < kh; a++)
                            for (int64_t e = 0; e < kw; e++) {
                                int64_t ih = r * p->stride_h - p->pad_h + a * p->dilation_h;
                                int64_t iw = q * p->stride_w - p->pad_w + e * p->dilation_w;
                                if (ih < 0 || ih >= h || iw < 0 || iw >= wd)
                                    continue;
                                int64_t cc = g * cg + ci;
                                acc += (double)x->data[((i * c + cc) * h + ih) * wd + iw] *
                                       w->data[((oc * cg + ci) * kh + a) * kw + e];
                            }
                    y[((i * o + oc) * ho + r) * wo + q] = (float)acc;
                }
}

struct conv_case {
    int c, o, kh, kw;
    struct tg_conv2d_params p;
    bool bias;
};

static const struct conv_case conv_cases[] = {
        {3, 4, 3, 3, {1, 1, 0, 0, 1, 1, 1}, true},
        {2, 4, 3, 2, {2, 1, 1, 0, 1, 1, 1}, true},
        {4, 6, 3, 3, {1, 2, 2, 1, 2, 1, 2}, false},
        {2, 2, 5, 5, {1, 1, 2, 2, 1, 1, 1}, true}, // 'same'
};

START_TEST(test_conv2d_forward_matches_naive)
{
    const struct conv_case *cc = &conv_cases[_i];
    struct tg_rng rng;
    tg_rng_seed(&rng, 20 + (uint64_t)_i);
    struct tg_nn_module *m = tg_nn_conv2d_new(cc->c, cc->o, cc->kh, cc->kw, &cc->p, cc->bias, &rng);
    ck_assert_msg(m != NULL, "%s", tg_last_error());
    ck_assert_str_eq(tg_nn_type(m), "Conv2d");
    struct tg_tensor *w = tg_nn_find(m, "weight");
    ck_assert_int_eq(w->shape[0], cc->o);
    ck_assert_int_eq(w->shape[1], cc->c / cc->p.groups);
    float bound = 1.0f / sqrtf((float)(cc->c / cc->p.groups * cc->kh * cc->kw));
    assert_range(w, -bound, bound);
    ck_assert_uint_eq(tg_nn_n_params(m, false), cc->bias ? 2 : 1);

    uint64_t st = 5;
    struct tg_tensor *x = random_tensor(&st, -1.0f, 1.0f, 2, cc->c, 7, 6);
    struct tg_tensor *y = run_no_tape(m, x);
    int64_t ho = (7 + 2 * cc->p.pad_h - cc->p.dilation_h * (cc->kh - 1) - 1) / cc->p.stride_h + 1;
    int64_t wo = (6 + 2 * cc->p.pad_w - cc->p.dilation_w * (cc->kw - 1) - 1) / cc->p.stride_w + 1;
    ck_assert_int_eq(y->shape[2], ho);
    ck_assert_int_eq(y->shape[3], wo);
    float *want = calloc((size_t)y->n_elems, sizeof(float));
    naive_conv2d(want, x, w, tg_nn_find(m, "bias"), &cc->p, ho, wo);
    tu_assert_close(y->data, want, y->n_elems, 1e-5, 1e-4);
    free(want);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_nn_free(m);
}
END_TEST

START_TEST(test_conv2d_gradcheck)
{
    const struct conv_case *cc = &conv_cases[_i];
    struct tg_rng rng;
    tg_rng_seed(&rng, 30 + (uint64_t)_i);
    struct tg_nn_module *m = tg_nn_conv2d_new(cc->c, cc->o, cc->kh, cc->kw, &cc->p, cc->bias, &rng);
    uint64_t st = 6;
    struct tg_tensor *x = random_tensor(&st, -1.0f, 1.0f, 2, cc->c, 6, 5);
    gradcheck_module(m, x, NULL);
    tg_tensor_free(x);
    tg_nn_free(m);
}
END_TEST

START_TEST(test_conv2d_same_padding_keeps_size)
{
    ck_assert_int_eq(tg_nn_same_padding(5, 1), 2);
    ck_assert_int_eq(tg_nn_same_padding(3, 2), 2);
    ck_assert_int_eq(tg_nn_same_padding(1, 1), 0);
    ck_assert_int_eq(tg_nn_same_padding(4, 1), -1);
    ck_assert_int_eq(tg_nn_same_padding(0, 1), -1);
    struct tg_rng rng;
    tg_rng_seed(&rng, 3);
    int pad = tg_nn_same_padding(5, 1);
    struct tg_conv2d_params p = {1, 1, pad, pad, 1, 1, 1};
    struct tg_nn_module *m = tg_nn_conv2d_new(1, 32, 5, 5, &p, true, &rng);
    struct tg_tensor *x = tu_tensor(2, 1, 28, 28, -1);
    struct tg_tensor *y = run_no_tape(m, x);
    ck_assert_int_eq(y->shape[1], 32);
    ck_assert_int_eq(y->shape[2], 28);
    ck_assert_int_eq(y->shape[3], 28);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_nn_free(m);
}
END_TEST

START_TEST(test_conv2d_rejects_bad_input_and_settings)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 4);
    struct tg_nn_module *seq = tg_nn_sequential_new();
    ck_assert_int_eq(
            tg_nn_sequential_add(seq, "conv1", tg_nn_conv2d_new(1, 4, 3, 3, NULL, true, &rng)),
            TG_OK);
    struct tg_tensor *x = tu_tensor(8, 3, 28, 28, -1);
    ck_assert_ptr_null(tg_nn_forward(seq, x));
    assert_error(TG_ERR_SHAPE, "tg_nn_conv2d (conv1): input has 3 channels, layer expects 1",
                 "8x3x28x28");
    struct tg_tensor *x2 = tu_tensor(8, 784, -1);
    ck_assert_ptr_null(tg_nn_forward(seq, x2));
    assert_error(TG_ERR_SHAPE, "tg_nn_conv2d (conv1)", "expected 4");
    /* too small an input: the op's message, with the layer named in front */
    struct tg_tensor *x3 = tu_tensor(1, 1, 2, 2, -1);
    ck_assert_ptr_null(tg_nn_forward(seq, x3));
    assert_error(TG_ERR_SHAPE, "tg_nn_conv2d (conv1): tg_conv2d", NULL);

    struct tg_conv2d_params bad = {0, 1, 0, 0, 1, 1, 1};
    ck_assert_ptr_null(tg_nn_conv2d_new(1, 4, 3, 3, &bad, true, &rng));
    assert_error(TG_ERR_INVALID, "tg_nn_conv2d_new", "stride 0x1");
    struct tg_conv2d_params grp = {1, 1, 0, 0, 1, 1, 3};
    ck_assert_ptr_null(tg_nn_conv2d_new(4, 6, 3, 3, &grp, true, &rng));
    assert_error(TG_ERR_INVALID, "tg_nn_conv2d_new", "groups 3");
    ck_assert_ptr_null(tg_nn_conv2d_new(0, 4, 3, 3, NULL, true, &rng));
    assert_error(TG_ERR_INVALID, "tg_nn_conv2d_new", "in 0");
    ck_assert_ptr_null(tg_nn_conv2d_new(1, 4, 3, 3, NULL, true, NULL));
    assert_error(TG_ERR_INVALID, "tg_nn_conv2d_new", "rng NULL");
    tg_tensor_free(x);
    tg_tensor_free(x2);
    tg_tensor_free(x3);
    tg_nn_free(seq);
}
END_TEST

START_TEST(test_linear_rejects_bad_input)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 4);
    struct tg_nn_module *m = tg_nn_linear_new(784, 10, true, &rng);
    struct tg_tensor *x = tu_tensor(8, 100, -1);
    ck_assert_ptr_null(tg_nn_forward(m, x));
    assert_error(TG_ERR_SHAPE, "tg_nn_linear: input has 100 features, layer expects 784", "8x100");
    struct tg_tensor *x3 = tu_tensor(8, 28, 28, -1);
    ck_assert_ptr_null(tg_nn_forward(m, x3));
    assert_error(TG_ERR_SHAPE, "tg_nn_linear", "3 dimensions");
    ck_assert_ptr_null(tg_nn_linear_new(0, 10, true, &rng));
    assert_error(TG_ERR_INVALID, "tg_nn_linear_new", "in 0");

    /* A NULL input keeps the earlier message. */
    tg_error_set(TG_ERR_NOMEM, "earlier failure");
    ck_assert_ptr_null(tg_nn_forward(m, NULL));
    assert_error(TG_ERR_NOMEM, "earlier failure", NULL);
    tg_clear_error();
    ck_assert_ptr_null(tg_nn_forward(m, NULL));
    assert_error(TG_ERR_INVALID, "tg_nn_linear", "NULL");
    ck_assert_ptr_null(tg_nn_forward(NULL, x));
    assert_error(TG_ERR_INVALID, "tg_nn_forward", "NULL");
    tg_tensor_free(x);
    tg_tensor_free(x3);
    tg_nn_free(m);
}
END_TEST

/* ---- Pooling, activations, flatten -------------------------------------------------- */

START_TEST(test_pool_layers_forward_by_hand)
{
    struct tg_pool2d_params p = {2, 2, 2, 2, 0, 0, true};
    struct tg_nn_module *mp = tg_nn_max_pool2d_new(&p);
    struct tg_nn_module *ap = tg_nn_avg_pool2d_new(&p);
    ck_assert_str_eq(tg_nn_type(mp), "MaxPool2d");
    ck_assert_str_eq(tg_nn_type(ap), "AvgPool2d");
    ck_assert_uint_eq(tg_nn_n_params(mp, true), 0);
    const float xv[16] = {1, 5, 2, 0, 3, 4, 8, 6, -1, -2, 7, 9, -3, -4, 10, 11};
    struct tg_tensor *x = mk(4, (int64_t[]){1, 1, 4, 4}, xv);
    struct tg_tensor *y = run_no_tape(mp, x);
    tu_assert_close(y->data, ((const float[]){5, 8, -1, 11}), 4, 0, 0);
    tg_tensor_free(y);
    y = run_no_tape(ap, x);
    tu_assert_close(y->data, ((const float[]){3.25f, 4.0f, -2.5f, 9.25f}), 4, 1e-6, 1e-6);
    tg_tensor_free(y);

    uint64_t st = 8;
    struct tg_tensor *xg = tu_tensor(2, 3, 6, 6, -1);
    tu_fill_distinct(xg, &st, 0.05f);
    gradcheck_module(mp, xg, NULL);
    gradcheck_module(ap, xg, NULL);

    struct tg_tensor *x2 = tu_tensor(4, 4, -1);
    ck_assert_ptr_null(tg_nn_forward(mp, x2));
    assert_error(TG_ERR_SHAPE, "tg_nn_max_pool2d", "expected 4");
    struct tg_pool2d_params bad = {2, 2, 0, 2, 0, 0, true};
    ck_assert_ptr_null(tg_nn_max_pool2d_new(&bad));
    assert_error(TG_ERR_INVALID, "tg_nn_max_pool2d_new", "stride 0x2");
    ck_assert_ptr_null(tg_nn_avg_pool2d_new(NULL));
    assert_error(TG_ERR_INVALID, "tg_nn_avg_pool2d_new", "NULL");
    tg_tensor_free(x);
    tg_tensor_free(x2);
    tg_tensor_free(xg);
    tg_nn_free(mp);
    tg_nn_free(ap);
}
END_TEST

START_TEST(test_activation_layers_forward_and_gradcheck)
{
    struct tg_nn_module *mods[5] = {tg_nn_relu_new(), tg_nn_leaky_relu_new(0.1f),
                                    tg_nn_elu_new(0.5f), tg_nn_sigmoid_new(), tg_nn_tanh_new()};
    const char *types[5] = {"ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh"};
    const float xv[4] = {-2.0f, -0.5f, 0.5f, 3.0f};
    struct tg_tensor *x = mk(2, (int64_t[]){2, 2}, xv);
    for (int k = 0; k < 5; k++) {
        ck_assert_str_eq(tg_nn_type(mods[k]), types[k]);
        struct tg_tensor *y = run_no_tape(mods[k], x);
        for (int i = 0; i < 4; i++) {
            double v = xv[i];
            double want[5] = {v > 0 ? v : 0, v > 0 ? v : 0.1 * v, v > 0 ? v : 0.5 * expm1(v),
                              1.0 / (1.0 + exp(-v)), tanh(v)};
            ck_assert_double_eq_tol(y->data[i], want[k], 1e-6);
        }
        tg_tensor_free(y);
    }
    uint64_t st = 9;
    struct tg_tensor *xg = tu_tensor(3, 5, -1);
    tu_fill_away_from_zero(xg, &st, 0.1f, 2.0f);
    for (int k = 0; k < 5; k++)
        gradcheck_module(mods[k], xg, NULL);
    ck_assert_ptr_null(tg_nn_leaky_relu_new(NAN));
    assert_error(TG_ERR_INVALID, "tg_nn_leaky_relu_new", "finite");
    for (int k = 0; k < 5; k++)
        tg_nn_free(mods[k]);
    tg_tensor_free(x);
    tg_tensor_free(xg);
}
END_TEST

START_TEST(test_flatten_layer)
{
    struct tg_nn_module *f = tg_nn_flatten_new(1);
    ck_assert_str_eq(tg_nn_type(f), "Flatten");
    uint64_t st = 10;
    struct tg_tensor *x = random_tensor(&st, -1, 1, 2, 3, 4, 5);
    struct tg_tensor *y = run_no_tape(f, x);
    ck_assert_int_eq(y->n_dims, 2);
    ck_assert_int_eq(y->shape[0], 2);
    ck_assert_int_eq(y->shape[1], 60);
    tu_assert_close(y->data, x->data, x->n_elems, 0, 0);
    tg_tensor_free(y);
    gradcheck_module(f, x, NULL);
    struct tg_nn_module *f4 = tg_nn_flatten_new(4);
    ck_assert_ptr_null(tg_nn_forward(f4, x));
    assert_error(TG_ERR_SHAPE, "tg_nn_flatten", "start_dim 4");
    ck_assert_ptr_null(tg_nn_flatten_new(-1));
    assert_error(TG_ERR_INVALID, "tg_nn_flatten_new", "-1");
    tg_tensor_free(x);
    tg_nn_free(f);
    tg_nn_free(f4);
}
END_TEST

/* ---- Dropout ------------------------------------------------------------------------ */

START_TEST(test_dropout_eval_is_identity)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 40);
    struct tg_nn_module *d = tg_nn_dropout_new(0.4f, &rng);
    ck_assert_str_eq(tg_nn_type(d), "Dropout");
    ck_assert(tg_nn_is_training(d));
    tg_nn_set_training(d, false);
    ck_assert(!tg_nn_is_training(d));
    uint64_t st = 11;
    struct tg_tensor *x = random_tensor(&st, -1, 1, 4, 50, -1, -1);
    uint64_t before[TG_RNG_STATE_WORDS];
    uint64_t after[TG_RNG_STATE_WORDS];
    tg_rng_get_state(&rng, before);
    struct tg_tensor *y = run_no_tape(d, x);
    tg_rng_get_state(&rng, after);
    ck_assert(memcmp(before, after, sizeof(before)) == 0); // no draw in eval
    tu_assert_close(y->data, x->data, x->n_elems, 0, 0);
    tg_tensor_free(y);
    gradcheck_module(d, x, NULL);
    tg_tensor_free(x);
    tg_nn_free(d);
}
END_TEST

START_TEST(test_dropout_train_keeps_fraction_and_scales)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 41);
    float p = 0.4f;
    struct tg_nn_module *d = tg_nn_dropout_new(p, &rng);
    struct tg_tensor *x = tu_tensor(100, 1000, -1);
    tg_tensor_fill(x, 2.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_nn_forward(d, x);
    ck_assert_ptr_nonnull(y);
    int64_t kept = 0;
    float scaled = 2.0f / (1.0f - p);
    int64_t odd = 0;
    for (int64_t i = 0; i < y->n_elems; i++) {
        odd += y->data[i] != 0.0f && y->data[i] != scaled;
        kept += y->data[i] != 0.0f;
    }
    ck_assert_int_eq(odd, 0);
    ck_assert_double_eq_tol((double)kept / (double)y->n_elems, 1.0 - p, 0.005);

    /* backward routes dy through the same mask, scaled */
    struct tg_tensor *seed = tg_tape_tensor_new(tape, y->n_dims, y->shape);
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    odd = 0;
    for (int64_t i = 0; i < y->n_elems; i++)
        odd += x->grad[i] != (y->data[i] == 0.0f ? 0.0f : 1.0f / (1.0f - p));
    ck_assert_int_eq(odd, 0);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);

    /* the same seed gives the same mask */
    struct tg_rng r1;
    struct tg_rng r2;
    tg_rng_seed(&r1, 9);
    tg_rng_seed(&r2, 9);
    struct tg_tensor *y1 = tg_dropout(x, 0.5f, true, &r1);
    struct tg_tensor *y2 = tg_dropout(x, 0.5f, true, &r2);
    tu_assert_close(y1->data, y2->data, y1->n_elems, 0, 0);
    struct tg_tensor *y3 = tg_dropout(x, 0.0f, true, &r1); // p = 0 copies
    tu_assert_close(y3->data, x->data, x->n_elems, 0, 0);

    ck_assert_ptr_null(tg_dropout(x, 1.0f, true, &r1));
    assert_error(TG_ERR_INVALID, "tg_dropout", "p is 1");
    ck_assert_ptr_null(tg_dropout(x, 0.5f, true, NULL));
    assert_error(TG_ERR_INVALID, "tg_dropout", "rng");
    ck_assert_ptr_null(tg_nn_dropout_new(-0.1f, &rng));
    assert_error(TG_ERR_INVALID, "tg_nn_dropout_new", "p -0.1");
    ck_assert_ptr_null(tg_nn_dropout_new(0.5f, NULL));
    tg_tensor_free(y1);
    tg_tensor_free(y2);
    tg_tensor_free(y3);
    tg_tensor_free(x);
    tg_nn_free(d);
}
END_TEST

/* The mask is redrawn on each forward: reseed first so that every call drops the same. */
static struct tg_tensor *dropout_reseeded_fn(struct tg_tensor *const *inputs, int n, void *user)
{
    (void)n;
    tg_rng_seed(user, 42);
    return tg_dropout(inputs[0], 0.3f, true, user);
}

START_TEST(test_dropout_train_gradcheck)
{
    struct tg_rng rng;
    uint64_t st = 12;
    struct tg_tensor *x = random_tensor(&st, -1, 1, 6, 7, -1, -1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(dropout_reseeded_fn, &rng, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

/* ---- Batch norm --------------------------------------------------------------------- */

/* y = (x - m) / sqrt(v + eps) g + b per channel, in double; mean_out/var_out (biased). */
static void naive_bn(float *y,
                     double *mean_out,
                     double *var_out,
                     const struct tg_tensor *x,
                     const float *g,
                     const float *b,
                     const float *rm,
                     const float *rv,
                     float eps)
{
    int64_t n = x->shape[0], c = x->shape[1], s = x->n_elems / (n * c);
    for (int64_t k = 0; k < c; k++) {
        double sum = 0.0;
        double sq = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++)
                sum += x->data[(i * c + k) * s + j];
        double m = sum / (double)(n * s);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                double d = x->data[(i * c + k) * s + j] - m;
                sq += d * d;
            }
        double v = sq / (double)(n * s);
        if (mean_out) {
            mean_out[k] = m;
            var_out[k] = v;
        }
        if (rm) {
            m = rm[k];
            v = rv[k];
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                int64_t at = (i * c + k) * s + j;
                y[at] = (float)((x->data[at] - m) / sqrt(v + eps) * g[k] + b[k]);
            }
    }
}

START_TEST(test_batch_norm2d_train_eval_and_running_stats)
{
    struct tg_nn_module *bn = tg_nn_batch_norm2d_new(3, TG_NN_BN_EPS, TG_NN_BN_MOMENTUM);
    ck_assert_str_eq(tg_nn_type(bn), "BatchNorm2d");
    struct tg_tensor *g = tg_nn_find(bn, "weight");
    struct tg_tensor *b = tg_nn_find(bn, "bias");
    struct tg_tensor *rm = tg_nn_find(bn, "running_mean");
    struct tg_tensor *rv = tg_nn_find(bn, "running_var");
    ck_assert(g && b && rm && rv);
    ck_assert(!rm->requires_grad && !rv->requires_grad && g->requires_grad);
    assert_range(g, 1.0f, 1.0f);
    assert_range(b, 0.0f, 0.0f);
    assert_range(rm, 0.0f, 0.0f);
    assert_range(rv, 1.0f, 1.0f);
    ck_assert_uint_eq(tg_nn_n_params(bn, false), 2);
    ck_assert_uint_eq(tg_nn_n_params(bn, true), 4);
    uint64_t st = 50;
    tu_fill_uniform(g, &st, 0.5f, 2.0f);
    tu_fill_uniform(b, &st, -1.0f, 1.0f);

    /* two training calls: batch statistics, running update each time */
    double want_rm[3] = {0, 0, 0};
    double want_rv[3] = {1, 1, 1};
    for (int call = 0; call < 2; call++) {
        struct tg_tensor *x = random_tensor(&st, -2.0f + (float)call, 3.0f, 4, 3, 5, 5);
        struct tg_tensor *y = run_no_tape(bn, x);
        float want[300];
        double m[3];
        double v[3];
        naive_bn(want, m, v, x, g->data, b->data, NULL, NULL, 1e-5f);
        tu_assert_close(y->data, want, 300, 1e-5, 1e-5);
        for (int k = 0; k < 3; k++) {
            want_rm[k] = 0.9 * want_rm[k] + 0.1 * m[k];
            want_rv[k] = 0.9 * want_rv[k] + 0.1 * v[k] * 100.0 / 99.0;
            ck_assert_double_eq_tol(rm->data[k], want_rm[k], 1e-6);
            ck_assert_double_eq_tol(rv->data[k], want_rv[k], 1e-6);
        }
        tg_tensor_free(y);
        tg_tensor_free(x);
    }

    /* evaluation: running statistics, left unchanged */
    tg_nn_set_training(bn, false);
    struct tg_tensor *x = random_tensor(&st, -1.0f, 1.0f, 2, 3, 4, 4);
    struct tg_tensor *y = run_no_tape(bn, x);
    float want[96];
    naive_bn(want, NULL, NULL, x, g->data, b->data, rm->data, rv->data, 1e-5f);
    tu_assert_close(y->data, want, 96, 1e-5, 1e-5);
    for (int k = 0; k < 3; k++)
        ck_assert_double_eq_tol(rm->data[k], want_rm[k], 1e-6);
    tg_tensor_free(y);
    /* one value per channel is fine in evaluation, refused in training */
    struct tg_tensor *x1 = random_tensor(&st, -1.0f, 1.0f, 1, 3, 1, 1);
    y = run_no_tape(bn, x1);
    tg_tensor_free(y);
    tg_nn_set_training(bn, true);
    ck_assert_ptr_null(tg_nn_forward(bn, x1));
    assert_error(TG_ERR_INVALID, "tg_nn_batch_norm2d: tg_batch_norm", "more than 1 value");
    tg_tensor_free(x1);
    tg_tensor_free(x);
    tg_nn_free(bn);
}
END_TEST

START_TEST(test_batch_norm_gradcheck)
{
    /* _i: 0 = 2d training, 1 = 1d training, 2 = 2d evaluation */
    struct tg_nn_module *bn = _i == 1 ? tg_nn_batch_norm1d_new(5, TG_NN_BN_EPS, 0.1f)
                                      : tg_nn_batch_norm2d_new(3, TG_NN_BN_EPS, 0.1f);
    uint64_t st = 51 + (uint64_t)_i;
    tu_fill_uniform(tg_nn_find(bn, "weight"), &st, 0.5f, 2.0f);
    tu_fill_uniform(tg_nn_find(bn, "bias"), &st, -1.0f, 1.0f);
    tu_fill_uniform(tg_nn_find(bn, "running_mean"), &st, -0.5f, 0.5f);
    tu_fill_uniform(tg_nn_find(bn, "running_var"), &st, 0.5f, 2.0f);
    if (_i == 2)
        tg_nn_set_training(bn, false);
    struct tg_tensor *x = _i == 1 ? random_tensor(&st, -2.0f, 2.0f, 6, 5, -1, -1)
                                  : random_tensor(&st, -2.0f, 2.0f, 3, 3, 3, 2);
    struct tg_gradcheck_opts o = TG_GRADCHECK_DEFAULT;
    o.atol = 2e-3f;
    gradcheck_module(bn, x, &o);

    tg_tensor_free(x);
    tg_nn_free(bn);
}
END_TEST

static struct tg_tensor *bn_plain_fn(struct tg_tensor *const *inputs, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_batch_norm(inputs[0], NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f);
}

START_TEST(test_batch_norm_op_without_affine)
{
    uint64_t st = 55;
    struct tg_tensor *x = random_tensor(&st, -2.0f, 2.0f, 4, 2, 3, -1);
    struct tg_tensor *y = tg_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f);
    ck_assert_ptr_nonnull(y);
    float ones[2] = {1, 1};
    float zeros[2] = {0, 0};
    float want[24];
    naive_bn(want, NULL, NULL, x, ones, zeros, NULL, NULL, 1e-5f);
    tu_assert_close(y->data, want, 24, 1e-5, 1e-5);
    tg_tensor_free(y);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    tu_assert_gradcheck(bn_plain_fn, NULL, 1, &x, NULL);
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_batch_norm_rejects_bad_input)
{
    struct tg_nn_module *seq = tg_nn_sequential_new();
    ck_assert_int_eq(tg_nn_sequential_add(seq, "bn1", tg_nn_batch_norm1d_new(6, 1e-5f, 0.1f)),
                     TG_OK);
    struct tg_tensor *x = tu_tensor(4, 5, -1);
    ck_assert_ptr_null(tg_nn_forward(seq, x));
    assert_error(TG_ERR_SHAPE, "tg_nn_batch_norm1d (bn1): input has 5 channels, layer expects 6",
                 "4x5");
    struct tg_tensor *x4 = tu_tensor(2, 6, 3, 3, -1);
    ck_assert_ptr_null(tg_nn_forward(seq, x4));
    assert_error(TG_ERR_SHAPE, "tg_nn_batch_norm1d (bn1)", "expected 2 (N, C)");
    ck_assert_ptr_null(tg_nn_batch_norm2d_new(0, 1e-5f, 0.1f));
    assert_error(TG_ERR_INVALID, "tg_nn_batch_norm2d_new", "num_features 0");
    ck_assert_ptr_null(tg_nn_batch_norm2d_new(3, 0.0f, 0.1f));
    ck_assert_ptr_null(tg_nn_batch_norm2d_new(3, 1e-5f, 1.5f));
    assert_error(TG_ERR_INVALID, "tg_nn_batch_norm2d_new", "momentum 1.5");

    struct tg_tensor *xs = tu_tensor(4, 6, -1);
    struct tg_tensor *w5 = tu_tensor(5, -1);
    struct tg_tensor *rm = tu_tensor(6, -1);
    ck_assert_ptr_null(tg_batch_norm(xs, w5, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    assert_error(TG_ERR_SHAPE, "tg_batch_norm", "weight is 5");
    ck_assert_ptr_null(tg_batch_norm(xs, NULL, NULL, NULL, NULL, false, 0.1f, 1e-5f));
    assert_error(TG_ERR_INVALID, "tg_batch_norm", "evaluation mode needs");
    ck_assert_ptr_null(tg_batch_norm(xs, NULL, NULL, rm, NULL, true, 0.1f, 1e-5f));
    assert_error(TG_ERR_INVALID, "tg_batch_norm", "together");
    struct tg_tensor *x1 = tu_tensor(6, -1);
    ck_assert_ptr_null(tg_batch_norm(x1, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    assert_error(TG_ERR_SHAPE, "tg_batch_norm", "expected (N, C, ...)");
    assert_range(rm, 0.0f, 0.0f); // untouched by the failed calls
    tg_tensor_free(x);
    tg_tensor_free(x4);
    tg_tensor_free(xs);
    tg_tensor_free(w5);
    tg_tensor_free(rm);
    tg_tensor_free(x1);
    tg_nn_free(seq);
}
END_TEST

/* ---- Losses ------------------------------------------------------------------------- */

static struct tg_tensor *bce_fn(struct tg_tensor *const *inputs, int n, void *user)
{
    (void)n;
    return tg_loss_bce_with_logits(inputs[0], inputs[1], *(const enum tg_reduction *)user);
}

START_TEST(test_loss_bce_with_logits)
{
    /* by hand: x = 0 gives log 2 whatever t; x = 2, t = 1: log1p(exp(-2)) */
    struct tg_tensor *x = mk(1, (int64_t[]){3}, (const float[]){0.0f, 2.0f, -100.0f});
    struct tg_tensor *t = mk(1, (int64_t[]){3}, (const float[]){0.3f, 1.0f, 1.0f});
    struct tg_tensor *l = tg_loss_bce_with_logits(x, t, TG_REDUCE_SUM);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(l->n_dims, 0);
    double want = log(2.0) + log1p(exp(-2.0)) + 100.0; // the third stays finite
    ck_assert_double_eq_tol(l->data[0], want, 1e-4);
    tg_tensor_free(l);
    l = tg_loss_bce_with_logits(x, t, TG_REDUCE_MEAN);
    ck_assert_double_eq_tol(l->data[0], want / 3.0, 1e-4);
    tg_tensor_free(l);

    uint64_t st = 60;
    struct tg_tensor *xg = random_tensor(&st, -3, 3, 4, 5, -1, -1);
    struct tg_tensor *tg = random_tensor(&st, 0, 1, 4, 5, -1, -1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(xg, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(tg, true), TG_OK);
    struct tg_tensor *in[2] = {xg, tg};
    enum tg_reduction red[2] = {TG_REDUCE_MEAN, TG_REDUCE_SUM};
    for (int k = 0; k < 2; k++)
        tu_assert_gradcheck(bce_fn, &red[k], 2, in, NULL);

    ck_assert_ptr_null(tg_loss_bce_with_logits(x, tg, TG_REDUCE_MEAN));
    assert_error(TG_ERR_SHAPE, "tg_loss_bce_with_logits", "logits: 3, target: 4x5");
    ck_assert_ptr_null(tg_loss_bce_with_logits(x, t, (enum tg_reduction)7));
    assert_error(TG_ERR_INVALID, "tg_loss_bce_with_logits", "reduction 7");
    ck_assert_ptr_null(tg_loss_bce_with_logits(NULL, t, TG_REDUCE_MEAN));
    tg_tensor_free(x);
    tg_tensor_free(t);
    tg_tensor_free(xg);
    tg_tensor_free(tg);
}
END_TEST

START_TEST(test_loss_wrappers_match_ops)
{
    uint64_t st = 61;
    struct tg_tensor *a = random_tensor(&st, -2, 2, 4, 5, -1, -1);
    struct tg_tensor *b = random_tensor(&st, -2, 2, 4, 5, -1, -1);
    const int32_t labels[4] = {0, 4, 2, 1};
    struct tg_tensor *pairs[6] = {
            tg_loss_mse(a, b, TG_REDUCE_SUM),
            tg_mse_loss(a, b, TG_REDUCE_SUM),
            tg_loss_cross_entropy(a, labels, TG_REDUCE_MEAN, 0.1f),
            tg_cross_entropy_loss(a, labels, TG_REDUCE_MEAN, 0.1f),
            tg_loss_nll(a, labels, TG_REDUCE_SUM),
            tg_nll_loss(a, labels, TG_REDUCE_SUM),
    };
    for (int k = 0; k < 6; k += 2) {
        ck_assert(pairs[k] && pairs[k + 1]);
        ck_assert_float_eq(pairs[k]->data[0], pairs[k + 1]->data[0]);
    }
    for (int k = 0; k < 6; k++)
        tg_tensor_free(pairs[k]);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- PyTorch reference cases -------------------------------------------------------- */

static struct tg_tensor *ref_tensor(const struct refcase_tensor *r, bool grad)
{
    ck_assert_ptr_nonnull(r);
    struct tg_tensor *t = mk(r->n_dims, r->shape, r->data);
    if (grad)
        ck_assert_int_eq(tg_tensor_set_requires_grad(t, true), TG_OK);
    return t;
}

static void check_bce_case(const struct refcase *rc)
{
    struct tg_tensor *x = ref_tensor(refcase_input(rc, "logits"), true);
    struct tg_tensor *t = ref_tensor(refcase_input(rc, "target"), false);
    const char *red = refcase_param_str(rc, "reduction", "mean");
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *l =
            tg_loss_bce_with_logits(x, t, strcmp(red, "sum") == 0 ? TG_REDUCE_SUM : TG_REDUCE_MEAN);
    ck_assert_msg(l != NULL, "line %d: %s", rc->line, tg_last_error());
    tu_assert_close(l->data, rc->output.data, 1, 1e-6, 1e-5);
    ck_assert_int_eq(tg_tape_backward(tape, l, NULL, 0), TG_OK);
    tu_assert_close(x->grad, refcase_grad(rc, "logits")->data, x->n_elems, 1e-6, 1e-4);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(t);
}

static void check_bn_train_case(const struct refcase *rc)
{
    struct tg_tensor *x = ref_tensor(refcase_input(rc, "x"), true);
    struct tg_tensor *g = ref_tensor(refcase_input(rc, "gamma"), true);
    struct tg_tensor *b = ref_tensor(refcase_input(rc, "beta"), true);
    float eps = (float)refcase_param_double(rc, "eps", 1e-5);
    float momentum = (float)refcase_param_double(rc, "momentum", 0.1);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_batch_norm(x, g, b, NULL, NULL, true, momentum, eps);
    ck_assert_msg(y != NULL, "line %d: %s", rc->line, tg_last_error());
    tu_assert_close(y->data, rc->output.data, y->n_elems, 1e-5, 1e-5);
    struct tg_tensor *seed = tg_tape_tensor_new(tape, y->n_dims, y->shape);
    memcpy(seed->data, rc->upstream.data, (size_t)y->n_elems * sizeof(float));
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    tu_assert_close(x->grad, refcase_grad(rc, "x")->data, x->n_elems, 1e-5, 1e-4);
    tu_assert_close(g->grad, refcase_grad(rc, "gamma")->data, g->n_elems, 1e-5, 1e-4);
    tu_assert_close(b->grad, refcase_grad(rc, "beta")->data, b->n_elems, 1e-5, 1e-4);
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(g);
    tg_tensor_free(b);
}

/* The layer itself, from running statistics 0 and 1, after after_calls training calls. */
static void check_bn_running_case(const struct refcase *rc)
{
    struct tg_tensor *x = ref_tensor(refcase_input(rc, "x"), false);
    float momentum = (float)refcase_param_double(rc, "momentum", 0.1);
    struct tg_nn_module *bn = x->n_dims == 2 ? tg_nn_batch_norm1d_new(x->shape[1], 1e-5f, momentum)
                                             : tg_nn_batch_norm2d_new(x->shape[1], 1e-5f, momentum);
    ck_assert_ptr_nonnull(bn);
    int calls = refcase_param_int(rc, "after_calls", 1);
    for (int i = 0; i < calls; i++)
        tg_tensor_free(run_no_tape(bn, x));
    const struct refcase_tensor *wm = refcase_group_tensor(&rc->output_parts, "running_mean");
    const struct refcase_tensor *wv = refcase_group_tensor(&rc->output_parts, "running_var");
    ck_assert(wm && wv);
    struct tg_tensor *rm = tg_nn_find(bn, "running_mean");
    struct tg_tensor *rv = tg_nn_find(bn, "running_var");
    ck_assert_int_eq(rm->n_elems, wm->n_elems);
    tu_assert_close(rm->data, wm->data, rm->n_elems, 1e-6, 1e-5);
    tu_assert_close(rv->data, wv->data, rv->n_elems, 1e-6, 1e-5);
    tg_nn_free(bn);
    tg_tensor_free(x);
}

START_TEST(test_nn_matches_torch)
{
    struct refcase_set set;
    char err[REFCASE_ERR_SIZE];
    ck_assert_msg(refcase_load(DATA_FILE, &set, err) == TG_OK, "%s", err);
    int n_bce = 0;
    int n_train = 0;
    int n_running = 0;
    for (int i = 0; i < set.n; i++) {
        const struct refcase *rc = &set.cases[i];
        if (strcmp(rc->op, "bce_with_logits") == 0) {
            check_bce_case(rc);
            n_bce++;
        } else if (strcmp(rc->op, "batch_norm_train") == 0) {
            check_bn_train_case(rc);
            n_train++;
        } else if (strcmp(rc->op, "batch_norm_running_stats") == 0) {
            check_bn_running_case(rc);
            n_running++;
        }
    }
    ck_assert_int_eq(n_bce, 1);
    ck_assert_int_eq(n_train, 2);
    ck_assert_int_eq(n_running, 2);
    refcase_set_free(&set);
}
END_TEST

/* ---- Sequential and model helpers ---------------------------------------------------- */

/* conv1 (1->4, 3x3 'same') bn1 relu1 pool1 (2x2) flatten fc1 (64->10): input (N, 1, 8, 8). */
static struct tg_nn_module *small_cnn(struct tg_rng *rng)
{
    struct tg_conv2d_params cp = {1, 1, 1, 1, 1, 1, 1};
    struct tg_pool2d_params pp = {2, 2, 2, 2, 0, 0, true};
    struct tg_nn_module *m = tg_nn_sequential_new();
    if (!m)
        return NULL;
    enum tg_status st =
            tg_nn_sequential_add(m, "conv1", tg_nn_conv2d_new(1, 4, 3, 3, &cp, true, rng));
    if (st == TG_OK)
        st = tg_nn_sequential_add(m, "bn1", tg_nn_batch_norm2d_new(4, 1e-5f, 0.1f));
    if (st == TG_OK)
        st = tg_nn_sequential_add(m, "relu1", tg_nn_relu_new());
    if (st == TG_OK)
        st = tg_nn_sequential_add(m, "pool1", tg_nn_max_pool2d_new(&pp));
    if (st == TG_OK)
        st = tg_nn_sequential_add(m, "flatten", tg_nn_flatten_new(1));
    if (st == TG_OK)
        st = tg_nn_sequential_add(m, "fc1", tg_nn_linear_new(64, 10, true, rng));
    if (st != TG_OK) {
        tg_nn_free(m);
        return NULL;
    }
    return m;
}

START_TEST(test_sequential_cnn_parameter_names)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 70);
    struct tg_nn_module *m = small_cnn(&rng);
    ck_assert_msg(m != NULL, "%s", tg_last_error());
    ck_assert_str_eq(tg_nn_type(m), "Sequential");
    ck_assert_uint_eq(tg_nn_sequential_len(m), 6);
    ck_assert_str_eq(tg_nn_type(tg_nn_sequential_at(m, 1)), "BatchNorm2d");
    ck_assert_ptr_null(tg_nn_sequential_at(m, 6));

    const char *all[] = {"conv1.weight",     "conv1.bias",      "bn1.weight", "bn1.bias",
                         "bn1.running_mean", "bn1.running_var", "fc1.weight", "fc1.bias"};
    struct tg_param ps[8];
    size_t n;
    ck_assert_uint_eq(tg_nn_n_params(m, true), 8);
    ck_assert_uint_eq(tg_nn_n_params(m, false), 6);
    ck_assert_int_eq(tg_nn_params(m, ps, 8, true, &n), TG_OK);
    ck_assert_uint_eq(n, 8);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(ps[i].name, all[i]);
        ck_assert(ps[i].is_buffer == (i == 4 || i == 5));
        ck_assert_ptr_eq(ps[i].tensor, tg_nn_find(m, all[i]));
        ck_assert(ps[i].tensor->requires_grad == !ps[i].is_buffer);
    }
    ck_assert_int_eq(tg_nn_params(m, ps, 8, false, &n), TG_OK);
    ck_assert_uint_eq(n, 6);
    ck_assert_str_eq(ps[4].name, "fc1.weight");
    int64_t want = 4 * 9 + 4 + 4 + 4 + 64 * 10 + 10;
    ck_assert_int_eq(tg_nn_n_elems(m, false), want);
    ck_assert_int_eq(tg_nn_n_elems(m, true), want + 8);

    /* too little room: the first cap entries, the size needed, TG_ERR_NOMEM */
    ck_assert_int_eq(tg_nn_params(m, ps, 3, true, &n), TG_ERR_NOMEM);
    ck_assert_uint_eq(n, 8);
    ck_assert_str_eq(ps[2].name, "bn1.weight");
    assert_error(TG_ERR_NOMEM, "tg_nn_params", "room for 3");
    ck_assert_int_eq(tg_nn_params(m, NULL, 0, true, &n), TG_ERR_NOMEM);
    ck_assert_int_eq(tg_nn_params(NULL, ps, 8, true, &n), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_nn_find(m, "conv2.weight"));

    char buf[512];
    int len = tg_nn_summary(m, buf, sizeof(buf));
    ck_assert_int_gt(len, 0);
    ck_assert_int_lt(len, (int)sizeof(buf));
    ck_assert_msg(strstr(buf, "conv1.weight 4x1x3x3\n") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "bn1.running_var 4 (buffer)\n") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "total 698 parameters\n") != NULL, "%s", buf);
    char small[16];
    ck_assert_int_eq(tg_nn_summary(m, small, sizeof(small)), len);
    ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
    tg_nn_free(m);
}
END_TEST

START_TEST(test_sequential_nested_and_index_names)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 71);
    struct tg_nn_module *features = tg_nn_sequential_new();
    ck_assert_int_eq(
            tg_nn_sequential_add(features, NULL, tg_nn_conv2d_new(1, 2, 3, 3, NULL, false, &rng)),
            TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(features, NULL, tg_nn_relu_new()), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(features, NULL, tg_nn_batch_norm2d_new(2, 1e-5f, 0.1f)),
                     TG_OK);
    struct tg_nn_module *model = tg_nn_sequential_new();
    ck_assert_int_eq(tg_nn_sequential_add(model, "features", features), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(model, NULL, tg_nn_flatten_new(1)), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(model, "classifier", tg_nn_linear_new(18, 3, true, &rng)),
                     TG_OK);
    /* a child added to an inner Sequential after nesting shows up in the outer list */
    ck_assert_int_eq(tg_nn_sequential_add(features, NULL, tg_nn_tanh_new()), TG_OK);
    ck_assert_int_eq(
            tg_nn_sequential_add(features, NULL, tg_nn_conv2d_new(2, 2, 1, 1, NULL, true, &rng)),
            TG_OK);
    const char *want[] = {"features.0.weight",       "features.2.weight",      "features.2.bias",
                          "features.2.running_mean", "features.2.running_var", "features.4.weight",
                          "features.4.bias",         "classifier.weight",      "classifier.bias"};
    struct tg_param ps[9];
    size_t n;
    ck_assert_int_eq(tg_nn_params(model, ps, 9, true, &n), TG_OK);
    ck_assert_uint_eq(n, 9);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(ps[i].name, want[i]);
    /* the inner container lists its own names */
    ck_assert_ptr_nonnull(tg_nn_find(features, "2.running_mean"));
    ck_assert_ptr_eq(tg_nn_find(features, "4.bias"), tg_nn_find(model, "features.4.bias"));

    /* forward on a tape, backward reaches every parameter */
    uint64_t st = 72;
    struct tg_tensor *x = random_tensor(&st, -1, 1, 2, 1, 5, 5);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_nn_forward(model, x);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(y->shape[0], 2);
    ck_assert_int_eq(y->shape[1], 3);
    struct tg_tensor *loss = tg_loss_mse(y, tg_tape_tensor_new(tape, 2, y->shape), TG_REDUCE_SUM);
    ck_assert_int_eq(tg_tape_backward(tape, loss, NULL, 0), TG_OK);
    ck_assert_int_eq(tg_nn_params(model, ps, 9, false, &n), TG_OK);
    for (size_t i = 0; i < n; i++) {
        double norm = 0.0;
        for (int64_t k = 0; k < ps[i].tensor->n_elems; k++)
            norm += fabs(ps[i].tensor->grad[k]);
        ck_assert_msg(norm > 0.0, "%s has no gradient", ps[i].name);
    }
    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    tg_nn_zero_grad(model);
    for (size_t i = 0; i < n; i++)
        assert_values_in(ps[i].tensor->grad, ps[i].tensor->n_elems, 0.0f, 0.0f);

    /* train/eval reaches the grandchildren */
    tg_nn_set_training(model, false);
    ck_assert(!tg_nn_is_training(tg_nn_sequential_at(features, 2)));
    tg_nn_set_training(model, true);
    ck_assert(tg_nn_is_training(tg_nn_sequential_at(features, 2)));
    tg_tensor_free(x);
    tg_nn_free(model);
}
END_TEST

START_TEST(test_sequential_rejects_bad_children)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 73);
    struct tg_nn_module *seq = tg_nn_sequential_new();
    ck_assert_int_eq(tg_nn_sequential_add(seq, "fc", tg_nn_linear_new(4, 4, true, &rng)), TG_OK);
    /* the rejected child is freed (the leak checkers watch this) */
    ck_assert_int_eq(tg_nn_sequential_add(seq, "fc", tg_nn_relu_new()), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_nn_sequential_add", "already named \"fc\"");
    ck_assert_int_eq(tg_nn_sequential_add(seq, "a.b", tg_nn_relu_new()), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_nn_sequential_add", "\"a.b\"");
    ck_assert_int_eq(tg_nn_sequential_add(seq, "", tg_nn_relu_new()), TG_ERR_INVALID);
    /* a failed constructor: its message is kept */
    ck_assert_int_eq(tg_nn_sequential_add(seq, "bad", tg_nn_linear_new(-1, 4, true, &rng)),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_nn_linear_new", NULL);
    ck_assert_int_eq(tg_nn_sequential_add(seq, "self", seq), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_nn_sequential_add", "parent");
    ck_assert_ptr_nonnull(tg_nn_find(seq, "fc.weight")); // seq survived
    struct tg_nn_module *relu = tg_nn_relu_new();
    ck_assert_int_eq(tg_nn_sequential_add(relu, NULL, tg_nn_tanh_new()), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_nn_sequential_add", "ReLU is not a Sequential");
    ck_assert_uint_eq(tg_nn_sequential_len(seq), 1);
    ck_assert_uint_eq(tg_nn_n_params(seq, true), 2);

    /* an empty Sequential is the identity */
    struct tg_nn_module *empty = tg_nn_sequential_new();
    struct tg_tensor *x = mk(1, (int64_t[]){3}, (const float[]){1, 2, 3});
    struct tg_tensor *y = run_no_tape(empty, x);
    tu_assert_close(y->data, x->data, 3, 0, 0);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_nn_free(empty);
    tg_nn_free(relu);
    tg_nn_free(seq);
    tg_nn_free(NULL);
}
END_TEST

START_TEST(test_sequential_cnn_train_step_and_eval)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 74);
    struct tg_nn_module *m = small_cnn(&rng);
    uint64_t st = 75;
    struct tg_tensor *x = random_tensor(&st, 0, 1, 8, 1, 8, 8);
    const int32_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    struct tg_tensor *rm = tg_nn_find(m, "bn1.running_mean");

    /* a few SGD steps lower the loss */
    struct tg_tape *tape = tg_tape_new();
    float first = 0.0f;
    float last = 0.0f;
    uint64_t allocs = 0;
    for (int step = 0; step < 20; step++) {
        if (step == 10)
            allocs = tg_alloc_count();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        tg_nn_zero_grad(m);
        struct tg_tensor *loss =
                tg_loss_cross_entropy(tg_nn_forward(m, x), labels, TG_REDUCE_MEAN, 0.0f);
        ck_assert_msg(loss != NULL, "%s", tg_last_error());
        ck_assert_int_eq(tg_tape_backward(tape, loss, NULL, 0), TG_OK);
        if (step == 0)
            first = loss->data[0];
        last = loss->data[0];
        struct tg_param ps[6];
        size_t n;
        ck_assert_int_eq(tg_nn_params(m, ps, 6, false, &n), TG_OK);
        for (size_t i = 0; i < n; i++)
            for (int64_t k = 0; k < ps[i].tensor->n_elems; k++)
                ps[i].tensor->data[k] -= 0.1f * ps[i].tensor->grad[k];
        ck_assert_int_eq(tg_tape_end(tape), TG_OK);
        tg_tape_reset(tape);
    }
    ck_assert_uint_eq(tg_alloc_count(), allocs); // a warm step allocates nothing
    ck_assert_msg(last < 0.7f * first, "loss %g -> %g", first, last);
    ck_assert_float_ne(rm->data[0], 0.0f);

    /* evaluation: the same input twice gives the same output, stats unchanged */
    tg_nn_set_training(m, false);
    float rm0 = rm->data[0];
    struct tg_tensor *y1 = run_no_tape(m, x);
    struct tg_tensor *y2 = run_no_tape(m, x);
    tu_assert_close(y1->data, y2->data, y1->n_elems, 0, 0);
    ck_assert_float_eq(rm->data[0], rm0);
    tg_tensor_free(y1);
    tg_tensor_free(y2);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_nn_free(m);
}
END_TEST

START_TEST(test_nn_survives_allocation_failures)
{
    struct tg_rng rng;
    tg_rng_seed(&rng, 76);
    uint64_t st = 77;
    struct tg_tensor *x = random_tensor(&st, 0, 1, 2, 1, 8, 8);
    int n_failed = 0;
    for (uint64_t k = 1; k < 200; k++) {
        tg_alloc_fail_at(k);
        struct tg_nn_module *m = small_cnn(&rng);
        struct tg_tensor *y = m ? tg_nn_forward(m, x) : NULL;
        tg_alloc_fail_at(0);
        if (!m || !y) {
            ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
            n_failed++;
        }
        tg_tensor_free(y);
        tg_nn_free(m);
        tg_clear_error();
    }
    ck_assert_int_gt(n_failed, 10);
    tg_tensor_free(x);
}
END_TEST

/* ---- Suite -------------------------------------------------------------------------- */

static Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    int n_conv = (int)(sizeof(conv_cases) / sizeof(conv_cases[0]));

    TCase *tc = tcase_create("rng");
    tcase_add_test(tc, test_rng_known_values);
    tcase_add_test(tc, test_rng_same_seed_same_sequence);
    tcase_add_test(tc, test_rng_state_round_trip);
    tcase_add_test(tc, test_rng_distributions);
    suite_add_tcase(s, tc);

    tc = tcase_create("init");
    tcase_add_test(tc, test_init_fans_and_gains);
    tcase_add_test(tc, test_init_kaiming_statistics);
    tcase_add_test(tc, test_init_xavier_statistics);
    tcase_add_test(tc, test_init_plain_fills);
    tcase_add_test(tc, test_init_torch_default_bounds);
    tcase_add_test(tc, test_init_rejects_bad_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("layers");
    tcase_add_test(tc, test_linear_forward_by_hand);
    tcase_add_test(tc, test_linear_default_init_and_gradcheck);
    tcase_add_test(tc, test_linear_rejects_bad_input);
    tcase_add_loop_test(tc, test_conv2d_forward_matches_naive, 0, n_conv);
    tcase_add_loop_test(tc, test_conv2d_gradcheck, 0, n_conv);
    tcase_add_test(tc, test_conv2d_same_padding_keeps_size);
    tcase_add_test(tc, test_conv2d_rejects_bad_input_and_settings);
    tcase_add_test(tc, test_pool_layers_forward_by_hand);
    tcase_add_test(tc, test_activation_layers_forward_and_gradcheck);
    tcase_add_test(tc, test_flatten_layer);
    suite_add_tcase(s, tc);

    tc = tcase_create("dropout");
    tcase_add_test(tc, test_dropout_eval_is_identity);
    tcase_add_test(tc, test_dropout_train_keeps_fraction_and_scales);
    tcase_add_test(tc, test_dropout_train_gradcheck);
    suite_add_tcase(s, tc);

    tc = tcase_create("batch_norm");
    tcase_add_test(tc, test_batch_norm2d_train_eval_and_running_stats);
    tcase_add_loop_test(tc, test_batch_norm_gradcheck, 0, 3);
    tcase_add_test(tc, test_batch_norm_op_without_affine);
    tcase_add_test(tc, test_batch_norm_rejects_bad_input);
    suite_add_tcase(s, tc);

    tc = tcase_create("loss");
    tcase_add_test(tc, test_loss_bce_with_logits);
    tcase_add_test(tc, test_loss_wrappers_match_ops);
    tcase_add_test(tc, test_nn_matches_torch);
    suite_add_tcase(s, tc);

    tc = tcase_create("sequential");
    tcase_add_test(tc, test_sequential_cnn_parameter_names);
    tcase_add_test(tc, test_sequential_nested_and_index_names);
    tcase_add_test(tc, test_sequential_rejects_bad_children);
    tcase_add_test(tc, test_sequential_cnn_train_step_and_eval);
    tcase_add_test(tc, test_nn_survives_allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(nn_suite());
}
