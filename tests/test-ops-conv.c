/*
 * tg_conv2d: hand-worked cases, a table of stride / padding / dilation /
 * groups / bias / shape combinations against a direct seven-loop convolution
 * with a gradient check of input, weight and bias for every one, the PyTorch
 * reference cases of tests/data/torch-ops.jsonl, accumulation and skipped
 * gradients, thread-count independence on a Fashion-MNIST-sized layer, and
 * every error path.
 *
 * Tolerances: forward values against a double-precision loop within 1e-5
 * relative plus 2e-6 per term of each sum. The convolution is linear in each
 * input element, so central differences have no truncation error and the
 * gradient checks use a step of 1e-2 to keep float32 rounding small, with the
 * checker's default atol 1e-3 and rtol 1e-2.
 */
#include <stdlib.h>
#include <string.h>

#include <tapegrad/gemm.h>

#include "refcase.h"
#include "testutil.h"

/* ---- Direct reference ---------------------------------------------------- */

struct conv_case {
    int64_t n, c, h, w; // x
    int64_t o, kh, kw;  // weight (O, C / groups, KH, KW)
    int sh, sw, ph, pw, dh, dw, groups;
    bool bias;
};

static int64_t out_len(int64_t in, int pad, int dil, int64_t k, int stride)
{
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

static struct tg_conv2d_params case_params(const struct conv_case *c)
{
    return (struct tg_conv2d_params){c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->groups};
}

/* x value at (n, ch, ih, iw), 0 in the padding. */
static double
x_at(const float *x, const struct conv_case *c, int64_t n, int64_t ch, int64_t ih, int64_t iw)
{
    if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w)
        return 0.0;
    return x[((n * c->c + ch) * c->h + ih) * c->w + iw];
}

/* y (N, O, Ho, Wo) by the definition, in double. */
static void
naive_conv(float *y, const float *x, const float *w, const float *b, const struct conv_case *c)
{
    int64_t ho = out_len(c->h, c->ph, c->dh, c->kh, c->sh);
    int64_t wo = out_len(c->w, c->pw, c->dw, c->kw, c->sw);
    int64_t cg = c->c / c->groups, og = c->o / c->groups;
    for (int64_t n = 0; n < c->n; n++)
        for (int64_t o = 0; o < c->o; o++)
            for (int64_t oh = 0; oh < ho; oh++)
                for (int64_t ow = 0; ow < wo; ow++) {
                    double s = b ? b[o] : 0.0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < c->kh; i++)
                            for (int64_t j = 0; j < c->kw; j++)
                                s += w[((o * cg + ci) * c->kh + i) * c->kw + j] *
                                     x_at(x, c, n, o / og * cg + ci, oh * c->sh - c->ph + i * c->dh,
                                          ow * c->sw - c->pw + j * c->dw);
                    y[((n * c->o + o) * ho + oh) * wo + ow] = (float)s;
                }
}

/* dW (O, Cg, KH, KW) and db (O) of sum(y * dy), by the definition, in double. */
static void
naive_conv_dw(float *dw, float *db, const float *x, const float *dy, const struct conv_case *c)
{
    int64_t ho = out_len(c->h, c->ph, c->dh, c->kh, c->sh);
    int64_t wo = out_len(c->w, c->pw, c->dw, c->kw, c->sw);
    int64_t cg = c->c / c->groups, og = c->o / c->groups;
    for (int64_t o = 0; o < c->o; o++) {
        double sb = 0.0;
        for (int64_t n = 0; n < c->n; n++)
            for (int64_t q = 0; q < ho * wo; q++)
                sb += dy[(n * c->o + o) * ho * wo + q];
        db[o] = (float)sb;
        for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t i = 0; i < c->kh; i++)
                for (int64_t j = 0; j < c->kw; j++) {
                    double s = 0.0;
                    for (int64_t n = 0; n < c->n; n++)
                        for (int64_t oh = 0; oh < ho; oh++)
                            for (int64_t ow = 0; ow < wo; ow++)
                                s += dy[((n * c->o + o) * ho + oh) * wo + ow] *
                                     x_at(x, c, n, o / og * cg + ci, oh * c->sh - c->ph + i * c->dh,
                                          ow * c->sw - c->pw + j * c->dw);
                    dw[((o * cg + ci) * c->kh + i) * c->kw + j] = (float)s;
                }
    }
}

/* Heap inputs of a case filled with uniform values in [-1, 1); b is NULL without bias. */
static void make_inputs(const struct conv_case *c,
                        uint64_t seed,
                        struct tg_tensor **x,
                        struct tg_tensor **w,
                        struct tg_tensor **b)
{
    uint64_t rng = seed;
    *x = tu_tensor(c->n, c->c, c->h, c->w, -1);
    *w = tu_tensor(c->o, c->c / c->groups, c->kh, c->kw, -1);
    *b = c->bias ? tu_tensor(c->o, -1) : NULL;
    tu_fill_uniform(*x, &rng, -1.0f, 1.0f);
    tu_fill_uniform(*w, &rng, -1.0f, 1.0f);
    if (*b)
        tu_fill_uniform(*b, &rng, -1.0f, 1.0f);
}

static void assert_matches_naive(const struct tg_tensor *y,
                                 const struct tg_tensor *x,
                                 const struct tg_tensor *w,
                                 const struct tg_tensor *b,
                                 const struct conv_case *c)
{
    int64_t ho = out_len(c->h, c->ph, c->dh, c->kh, c->sh);
    int64_t wo = out_len(c->w, c->pw, c->dw, c->kw, c->sw);
    ck_assert_int_eq(y->n_dims, 4);
    ck_assert_int_eq(y->shape[0], c->n);
    ck_assert_int_eq(y->shape[1], c->o);
    ck_assert_int_eq(y->shape[2], ho);
    ck_assert_int_eq(y->shape[3], wo);
    float *want = malloc((size_t)y->n_elems * sizeof(float));
    ck_assert_ptr_nonnull(want);
    naive_conv(want, x->data, w->data, b ? b->data : NULL, c);
    int64_t terms = c->c / c->groups * c->kh * c->kw + 1;
    tu_assert_close(y->data, want, y->n_elems, 2e-6 * (double)terms, 1e-5);
    free(want);
}

/*
 * The sweep: stride 1/2/3, padding 0/1/2 (and beyond the kernel), dilation
 * 1/2/3, groups 1/2/4/6 with depthwise, with and without bias, square and
 * non-square kernels and inputs, odd sizes, batches of 1 and 3, the 1x1 fast
 * path and kernels as large as the padded input.
 */
static const struct conv_case cases[] = {
        /* n c h w     o kh kw   sh sw ph pw dh dw g  bias */
        {1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1, true},
        {3, 2, 7, 6, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1, false},
        {1, 3, 9, 7, 2, 3, 3, 2, 2, 1, 0, 1, 1, 1, true},
        {3, 2, 8, 9, 3, 2, 3, 3, 2, 2, 1, 1, 1, 1, true},
        {1, 2, 9, 8, 2, 3, 3, 1, 1, 2, 2, 2, 2, 1, true},
        {3, 4, 6, 7, 4, 3, 3, 2, 1, 1, 1, 2, 1, 2, false},
        {1, 4, 7, 5, 8, 1, 3, 1, 2, 0, 1, 1, 2, 4, true},
        {3, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, true},   // depthwise
        {1, 6, 5, 7, 12, 2, 2, 3, 3, 2, 1, 2, 1, 6, false}, // depthwise, multiplier 2
        {3, 3, 5, 5, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},   // 1x1: no columns
        {1, 4, 4, 6, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2, false},  // 1x1 grouped
        {1, 2, 4, 5, 3, 1, 1, 2, 2, 0, 0, 1, 1, 1, true},   // 1x1 strided
        {1, 1, 3, 3, 2, 4, 4, 1, 1, 1, 1, 1, 1, 1, true},   // kernel = padded input
        {3, 2, 11, 10, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1, true}, // 5x5 'same'
        {1, 2, 5, 13, 2, 2, 5, 3, 3, 0, 2, 1, 3, 2, true},  // wide
        {3, 1, 7, 7, 2, 3, 3, 2, 2, 0, 0, 3, 3, 1, true},   // 1x1 output
        {1, 1, 3, 4, 1, 2, 2, 2, 3, 2, 2, 1, 1, 1, true},   // padding beyond the kernel
        {1, 2, 1, 9, 2, 1, 3, 1, 2, 0, 1, 1, 1, 1, false},  // a single row
};
#define N_CASES ((int)(sizeof(cases) / sizeof(cases[0])))

static struct tg_tensor *conv_fn(struct tg_tensor *const *in, int n, void *user)
{
    const struct conv_case *c = user;
    struct tg_conv2d_params p = case_params(c);
    return tg_conv2d(in[0], in[1], n > 2 ? in[2] : NULL, &p);
}

/* ---- Forward ---------------------------------------------------------------- */

START_TEST(test_conv2d_hand_worked)
{
    /* x = 1..9 (3x3), w = [1 2; 3 4], bias 0.5 */
    const float xv[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float wv[] = {1, 2, 3, 4};
    const float bv[] = {0.5f};
    struct tg_tensor *x = tg_tensor_from_data(4, (int64_t[]){1, 1, 3, 3}, xv);
    struct tg_tensor *w = tg_tensor_from_data(4, (int64_t[]){1, 1, 2, 2}, wv);
    struct tg_tensor *b = tg_tensor_from_data(1, (int64_t[]){1}, bv);

    /* valid: [1+4+12+20, 2+6+15+24; 4+10+21+32, 5+12+24+36] + 0.5 */
    const float want[] = {37.5f, 47.5f, 67.5f, 77.5f};
    struct tg_tensor *y = tg_conv2d(x, w, b, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 2);
    ck_assert_int_eq(y->shape[3], 2);
    tu_assert_close(y->data, want, 4, 0.0, 0.0);
    tg_tensor_free(y);

    /* padding 1, stride 2: windows [-1,0]^2, [-1,0]x[1,2], [1,2]x[-1,0], [1,2]^2 */
    struct tg_conv2d_params p = {2, 2, 1, 1, 1, 1, 1};
    const float want_pad[] = {4, 2 * 3 + 3 * 4, 4 * 2 + 7 * 4, 77};
    y = tg_conv2d(x, w, NULL, &p);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 2);
    ck_assert_int_eq(y->shape[3], 2);
    tu_assert_close(y->data, want_pad, 4, 0.0, 0.0);
    tg_tensor_free(y);

    /* dilation 2 on a 3x3 input: one window of the corners, 1 + 2*3 + 3*7 + 4*9 */
    p = (struct tg_conv2d_params){1, 1, 0, 0, 2, 2, 1};
    y = tg_conv2d(x, w, NULL, &p);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->n_elems, 1);
    ck_assert_float_eq(y->data[0], 64.0f);
    tg_tensor_free(y);

    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_conv2d_hand_worked_backward)
{
    const float xv[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float wv[] = {1, 2, 3, 4};
    struct tg_tensor *x = tg_tensor_from_data(4, (int64_t[]){1, 1, 3, 3}, xv);
    struct tg_tensor *w = tg_tensor_from_data(4, (int64_t[]){1, 1, 2, 2}, wv);
    struct tg_tensor *b = tu_tensor(1, -1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(w, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_conv2d(x, w, b, NULL);
    ck_assert_ptr_nonnull(y);
    struct tg_tensor *seed = tu_tensor(1, 1, 2, 2, -1);
    tg_tensor_fill(seed, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);

    /* dW: sums of each tap's 2x2 window; dx: the kernel taps covering each pixel */
    const float dw[] = {1 + 2 + 4 + 5, 2 + 3 + 5 + 6, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9};
    const float dx[] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
    tu_assert_close(w->grad, dw, 4, 0.0, 0.0);
    tu_assert_close(x->grad, dx, 9, 0.0, 0.0);
    ck_assert_float_eq(b->grad[0], 4.0f);

    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(seed);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* Loop index: a row of cases[]. */
START_TEST(test_conv2d_matches_naive)
{
    const struct conv_case *c = &cases[_i];
    struct tg_tensor *x, *w, *b;
    make_inputs(c, 1000 + (uint64_t)_i, &x, &w, &b);
    struct tg_conv2d_params p = case_params(c);
    struct tg_tensor *y = tg_conv2d(x, w, b, &p);
    ck_assert_msg(y != NULL, "case %d: %s", _i, tg_last_error());
    assert_matches_naive(y, x, w, b, c);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* A batch of no images gives an empty output, and backward has nothing to do. */
START_TEST(test_conv2d_empty_batch)
{
    struct tg_tensor *x = tu_tensor(0, 2, 5, 5, -1);
    struct tg_tensor *w = tu_tensor(3, 2, 3, 3, -1);
    struct tg_tensor *b = tu_tensor(3, -1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(w, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_conv2d_params p = {1, 1, 1, 1, 1, 1, 1};
    struct tg_tensor *y = tg_conv2d(x, w, b, &p);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(y->n_elems, 0);
    ck_assert_int_eq(y->shape[1], 3);
    ck_assert_int_eq(y->shape[2], 5);
    ck_assert_int_eq(tg_tape_backward(tape, y, y, 0), TG_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq(b->grad[i], 0.0f);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* The conv2d cases computed by PyTorch 1.13 (tests/data/torch-ops.jsonl): values and grads. */
START_TEST(test_conv2d_matches_pytorch)
{
    struct refcase_set set;
    char err[REFCASE_ERR_SIZE];
    ck_assert_msg(refcase_load(TG_TEST_DATA_DIR "/torch-ops.jsonl", &set, err) == TG_OK, "%s", err);
    int n_checked = 0;
    for (int k = 0; k < set.n; k++) {
        const struct refcase *rc = &set.cases[k];
        if (strcmp(rc->op, "conv2d") != 0)
            continue;
        const char *names[3] = {"x", "weight", "bias"};
        struct tg_tensor *in[3] = {NULL, NULL, NULL};
        int n_in = 0;
        for (int i = 0; i < 3; i++) {
            const struct refcase_tensor *t = refcase_input(rc, names[i]);
            if (t == NULL)
                continue;
            in[n_in] = tg_tensor_from_data(t->n_dims, t->shape, t->data);
            ck_assert_int_eq(tg_tensor_set_requires_grad(in[n_in], true), TG_OK);
            n_in++;
        }
        int s = refcase_param_int(rc, "stride", 1);
        int pad = refcase_param_int(rc, "padding", 0);
        int d = refcase_param_int(rc, "dilation", 1);
        struct tg_conv2d_params p = {s, s, pad, pad, d, d, refcase_param_int(rc, "groups", 1)};

        struct tg_tape *tape = tg_tape_new();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        struct tg_tensor *y = tg_conv2d(in[0], in[1], n_in > 2 ? in[2] : NULL, &p);
        ck_assert_msg(y != NULL, "line %d: %s", rc->line, tg_last_error());
        ck_assert_int_eq(y->n_elems, rc->output.n_elems);
        tu_assert_close(y->data, rc->output.data, y->n_elems, 1e-5, 1e-5);
        struct tg_tensor *seed =
                tg_tensor_from_data(rc->upstream.n_dims, rc->upstream.shape, rc->upstream.data);
        ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
        for (int i = 0; i < n_in; i++) {
            const struct refcase_tensor *g = refcase_grad(rc, names[i]);
            ck_assert_ptr_nonnull(g);
            tu_assert_close(in[i]->grad, g->data, g->n_elems, 1e-4, 1e-4);
        }
        tg_tape_end(tape);
        tg_tape_free(tape);
        tg_tensor_free(seed);
        for (int i = 0; i < n_in; i++)
            tg_tensor_free(in[i]);
        n_checked++;
    }
    ck_assert_int_ge(n_checked, 7);
    refcase_set_free(&set);
}
END_TEST

/* ---- Backward ---------------------------------------------------------------- */

/* Loop index: a row of cases[]; input, weight and bias all checked. */
START_TEST(test_conv2d_gradcheck)
{
    const struct conv_case *c = &cases[_i];
    struct tg_tensor *in[3];
    make_inputs(c, 2000 + (uint64_t)_i, &in[0], &in[1], &in[2]);
    int n = c->bias ? 3 : 2;
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(tg_tensor_set_requires_grad(in[i], true), TG_OK);
    struct tg_gradcheck_opts opts = TG_GRADCHECK_DEFAULT;
    opts.eps = 1e-2f;
    opts.seed = 3 + (uint64_t)_i;
    tu_assert_gradcheck(conv_fn, (void *)(uintptr_t)c, n, in, &opts);
    for (int i = 0; i < n; i++)
        tg_tensor_free(in[i]);
}
END_TEST

/*
 * A first layer: x needs no gradient (x->grad stays NULL, no col2im), while w
 * and b accumulate onto what they held.
 */
START_TEST(test_conv2d_backward_skips_input_and_accumulates)
{
    const struct conv_case c = {3, 2, 9, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true};
    struct tg_tensor *x, *w, *b;
    make_inputs(&c, 77, &x, &w, &b);
    ck_assert_int_eq(tg_tensor_set_requires_grad(w, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    tg_tensor_fill(w, 0.25f); // weights do not enter dW or db
    for (int64_t i = 0; i < w->n_elems; i++)
        w->grad[i] = 1.0f;
    b->grad[0] = -2.0f;

    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_conv2d_params p = case_params(&c);
    struct tg_tensor *y = tg_conv2d(x, w, b, &p);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_eq(y->tape, tape);
    ck_assert(y->requires_grad);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 1);
    struct tg_tensor *seed = tu_tensor(c.n, c.o, 9, 8, -1);
    uint64_t rng = 5;
    tu_fill_uniform(seed, &rng, -1.0f, 1.0f);
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);

    float *dw = malloc((size_t)w->n_elems * sizeof(float));
    float db[4];
    naive_conv_dw(dw, db, x->data, seed->data, &c);
    for (int64_t i = 0; i < w->n_elems; i++)
        dw[i] += 1.0f;
    db[0] += -2.0f;
    tu_assert_close(w->grad, dw, w->n_elems, 1e-4, 1e-5);
    tu_assert_close(b->grad, db, 4, 1e-4, 1e-5);
    ck_assert_ptr_null(x->grad);

    free(dw);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(seed);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* Only the input requires grad: the weight and bias keep no gradient. */
START_TEST(test_conv2d_backward_input_only)
{
    const struct conv_case c = {3, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, true};
    struct tg_tensor *in[3];
    make_inputs(&c, 78, &in[0], &in[1], &in[2]);
    ck_assert_int_eq(tg_tensor_set_requires_grad(in[0], true), TG_OK);
    struct tg_gradcheck_opts opts = TG_GRADCHECK_DEFAULT;
    opts.eps = 1e-2f;
    tu_assert_gradcheck(conv_fn, (void *)(uintptr_t)&c, 3, in, &opts);
    ck_assert_ptr_null(in[1]->grad);
    ck_assert_ptr_null(in[2]->grad);
    for (int i = 0; i < 3; i++)
        tg_tensor_free(in[i]);
}
END_TEST

/* ---- Threads ------------------------------------------------------------------ */

struct conv_run {
    struct tg_tensor *y, *dx, *dw, *db; // heap copies
};

static struct tg_tensor *copy_of(int n_dims, const int64_t *shape, const float *data)
{
    struct tg_tensor *t = tg_tensor_from_data(n_dims, shape, data);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Forward and backward of the second Fashion-MNIST layer; results copied out. */
static struct conv_run run_layer(const struct conv_case *c,
                                 struct tg_tensor *x,
                                 struct tg_tensor *w,
                                 struct tg_tensor *b,
                                 const struct tg_tensor *seed)
{
    tg_tensor_zero_grad(x);
    tg_tensor_zero_grad(w);
    tg_tensor_zero_grad(b);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_conv2d_params p = case_params(c);
    struct tg_tensor *y = tg_conv2d(x, w, b, &p);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    struct conv_run r = {
            copy_of(y->n_dims, y->shape, y->data),
            copy_of(x->n_dims, x->shape, x->grad),
            copy_of(w->n_dims, w->shape, w->grad),
            copy_of(b->n_dims, b->shape, b->grad),
    };
    tg_tape_end(tape);
    tg_tape_free(tape);
    return r;
}

static void assert_same_bits(const struct conv_run *a, const struct conv_run *b)
{
    const struct tg_tensor *ta[4] = {a->y, a->dx, a->dw, a->db};
    const struct tg_tensor *tb[4] = {b->y, b->dx, b->dw, b->db};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(memcmp(ta[i]->data, tb[i]->data, (size_t)ta[i]->n_elems * sizeof(float)) == 0,
                      "result %d differs", i);
}

static void run_free(struct conv_run *r)
{
    tg_tensor_free(r->y);
    tg_tensor_free(r->dx);
    tg_tensor_free(r->dw);
    tg_tensor_free(r->db);
}

/*
 * Layers that are right, and bit-identical from run to run and between one,
 * two and three threads: 5x5 'same', 32 -> 64 channels on 14x14 over five
 * images (uneven shares of the batch); 37 small images (several images per
 * product, two or three per dW chunk); strided, grouped, 20 images.
 */
static const struct conv_case thread_cases[] = {
        {5, 32, 14, 14, 64, 5, 5, 1, 1, 2, 2, 1, 1, 1, true},
        {37, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
        {20, 4, 9, 9, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2, true},
};

START_TEST(test_conv2d_threads_bit_identical)
{
    const struct conv_case c = thread_cases[_i];
    struct tg_tensor *x, *w, *b;
    make_inputs(&c, 99, &x, &w, &b);
    ck_assert_int_eq(tg_tensor_set_requires_grad(x, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(w, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    int64_t ho = out_len(c.h, c.ph, c.dh, c.kh, c.sh);
    int64_t wo = out_len(c.w, c.pw, c.dw, c.kw, c.sw);
    struct tg_tensor *seed = tu_tensor(c.n, c.o, ho, wo, -1);
    uint64_t rng = 6;
    tu_fill_uniform(seed, &rng, -1.0f, 1.0f);

    int saved = tg_get_num_threads();
    tg_set_num_threads(2);
    struct conv_run r1 = run_layer(&c, x, w, b, seed);
    struct conv_run r2 = run_layer(&c, x, w, b, seed);
    tg_set_num_threads(1);
    struct conv_run r3 = run_layer(&c, x, w, b, seed);
    tg_set_num_threads(3);
    struct conv_run r4 = run_layer(&c, x, w, b, seed);
    tg_set_num_threads(saved);
    assert_same_bits(&r1, &r2);
    assert_same_bits(&r1, &r3);
    assert_same_bits(&r1, &r4);

    assert_matches_naive(r1.y, x, w, b, &c);
    float *dw = malloc((size_t)w->n_elems * sizeof(float));
    float db[64];
    naive_conv_dw(dw, db, x->data, seed->data, &c);
    tu_assert_close(r1.dw->data, dw, w->n_elems, 1e-3, 1e-4);
    tu_assert_close(r1.db->data, db, c.o, 1e-4, 1e-5);
    free(dw);

    run_free(&r1);
    run_free(&r2);
    run_free(&r3);
    run_free(&r4);
    tg_tensor_free(seed);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* Once a tape has run one step, forward and backward of the same shapes allocate nothing. */
START_TEST(test_conv2d_warm_step_allocates_nothing)
{
    const struct conv_case c = {4, 8, 14, 14, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1, true};
    struct tg_tensor *x, *w, *b;
    make_inputs(&c, 12, &x, &w, &b);
    ck_assert_int_eq(tg_tensor_set_requires_grad(w, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_conv2d_params p = case_params(&c);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    uint64_t before = 0;
    for (int step = 0; step < 3; step++) {
        if (step == 2)
            before = tg_alloc_count();
        tg_tape_reset(tape);
        struct tg_tensor *y = tg_conv2d(x, w, b, &p);
        ck_assert_ptr_nonnull(y);
        struct tg_tensor *seed = tg_tape_tensor_new(tape, 4, y->shape);
        ck_assert_ptr_nonnull(seed);
        tg_tensor_fill(seed, 0.5f);
        ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    }
    ck_assert_uint_eq(tg_alloc_count(), before);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* ---- Without a tape, and failures --------------------------------------------- */

START_TEST(test_conv2d_without_tape_returns_heap_tensor)
{
    const struct conv_case c = {2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true};
    struct tg_tensor *x, *w, *b;
    make_inputs(&c, 5, &x, &w, &b);
    ck_assert_int_eq(tg_tensor_set_requires_grad(w, true), TG_OK);
    ck_assert_ptr_null(tg_tape_current());
    struct tg_conv2d_params p = case_params(&c);
    struct tg_tensor *y = tg_conv2d(x, w, b, &p);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->tape);
    ck_assert(!y->requires_grad);
    assert_matches_naive(y, x, w, b, &c);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

/* A refused call: NULL, the status, a message naming tg_conv2d and containing part. */
static void assert_refused(struct tg_tensor *y, enum tg_status st, const char *part)
{
    ck_assert_ptr_null(y);
    ck_assert_int_eq(tg_last_status(), st);
    ck_assert_msg(strncmp(tg_last_error(), "tg_conv2d: ", 11) == 0, "message: %s", tg_last_error());
    ck_assert_msg(strstr(tg_last_error(), part) != NULL, "message: %s", tg_last_error());
}

START_TEST(test_conv2d_rejects_bad_params)
{
    struct tg_tensor *x = tu_tensor(1, 2, 5, 5, -1);
    struct tg_tensor *w = tu_tensor(2, 2, 3, 3, -1);
    const struct {
        struct tg_conv2d_params p;
        const char *part;
    } bad[] = {
            {{0, 1, 0, 0, 1, 1, 1}, "stride must be >= 1 (got 0x1)"},
            {{1, -2, 0, 0, 1, 1, 1}, "stride must be >= 1 (got 1x-2)"},
            {{1, 1, -1, 0, 1, 1, 1}, "padding must be >= 0 (got -1x0)"},
            {{1, 1, 0, -1, 1, 1, 1}, "padding must be >= 0"},
            {{1, 1, 0, 0, 0, 1, 1}, "dilation must be >= 1 (got 0x1)"},
            {{1, 1, 0, 0, 1, 0, 1}, "dilation must be >= 1"},
            {{1, 1, 0, 0, 1, 1, 0}, "groups must be >= 1 (got 0)"},
            {{1, 1, 0, 0, 1, 1, -1}, "groups must be >= 1"},
    };
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_clear_error();
        assert_refused(tg_conv2d(x, w, NULL, &bad[i].p), TG_ERR_INVALID, bad[i].part);
    }
    ck_assert_uint_eq(tg_tape_n_entries(tape), 0);
    tg_tape_end(tape);
    tg_tape_free(tape);

    /* A zeroed struct is invalid too; NULL means the defaults. */
    struct tg_conv2d_params zero = {0, 0, 0, 0, 0, 0, 0};
    assert_refused(tg_conv2d(x, w, NULL, &zero), TG_ERR_INVALID, "stride");
    struct tg_tensor *y = tg_conv2d(x, w, NULL, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 3);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_conv2d_rejects_bad_shapes)
{
    struct tg_tensor *x = tu_tensor(2, 3, 5, 5, -1);
    struct tg_tensor *x3 = tu_tensor(3, 5, 5, -1);
    struct tg_tensor *x4 = tu_tensor(1, 4, 5, 5, -1);
    struct tg_tensor *w1 = tu_tensor(2, 1, 3, 3, -1);
    struct tg_tensor *w3 = tu_tensor(2, 3, 3, -1);
    struct tg_tensor *w_big = tu_tensor(2, 3, 7, 3, -1);
    struct tg_tensor *w_o3 = tu_tensor(3, 2, 3, 3, -1);
    struct tg_tensor *w_empty = tu_tensor(2, 3, 0, 3, -1);
    struct tg_tensor *w = tu_tensor(2, 3, 3, 3, -1);
    struct tg_tensor *b3 = tu_tensor(3, -1);
    struct tg_tensor *b2d = tu_tensor(1, 2, -1);
    uint64_t rng = 1;
    tu_fill_uniform(x, &rng, -1.0f, 1.0f);
    tu_fill_uniform(w, &rng, -1.0f, 1.0f);
    float *x_before = malloc((size_t)x->n_elems * sizeof(float));
    memcpy(x_before, x->data, (size_t)x->n_elems * sizeof(float));
    struct tg_conv2d_params g2 = TG_CONV2D_DEFAULT;
    g2.groups = 2;

    tg_clear_error();
    assert_refused(tg_conv2d(x, w1, NULL, NULL), TG_ERR_SHAPE,
                   "input has 3 channels, weight expects 1 (x: 2x3x5x5, w: 2x1x3x3, groups 1)");
    assert_refused(tg_conv2d(x3, w, NULL, NULL), TG_ERR_SHAPE, "input must be 4-d");
    assert_refused(tg_conv2d(x, w3, NULL, NULL), TG_ERR_SHAPE, "weight must be 4-d");
    assert_refused(tg_conv2d(x, w_empty, NULL, NULL), TG_ERR_SHAPE, "weight has a zero size");
    assert_refused(tg_conv2d(x, w, NULL, &g2), TG_ERR_SHAPE,
                   "2 groups do not divide the 3 input channels");
    assert_refused(tg_conv2d(x4, w_o3, NULL, &g2), TG_ERR_SHAPE,
                   "2 groups do not divide the 3 output channels");
    assert_refused(tg_conv2d(x4, w1, NULL, &g2), TG_ERR_SHAPE,
                   "input has 4 channels, weight expects 2");
    assert_refused(tg_conv2d(x, w, b3, NULL), TG_ERR_SHAPE,
                   "bias must have one element per output channel (bias: 3, expected 2)");
    assert_refused(tg_conv2d(x, w, b2d, NULL), TG_ERR_SHAPE, "bias: 1x2");
    assert_refused(tg_conv2d(x, w_big, NULL, NULL), TG_ERR_SHAPE,
                   "output would be 0x3 (input 5x5, padding 0x0, kernel 7x3");
    struct tg_conv2d_params dil = {1, 1, 0, 0, 3, 1, 1};
    assert_refused(tg_conv2d(x, w, NULL, &dil), TG_ERR_SHAPE, "output would be 0x3");
    struct tg_tensor *x_flat = tu_tensor(1, 3, 0, 4, -1);
    struct tg_conv2d_params s2 = {2, 2, 0, 0, 1, 1, 1};
    struct tg_tensor *w_1x1 = tu_tensor(2, 3, 1, 1, -1);
    assert_refused(tg_conv2d(x_flat, w_1x1, NULL, &s2), TG_ERR_SHAPE, "output would be 0x2");
    tg_tensor_free(x_flat);
    tg_tensor_free(w_1x1);
    ck_assert_mem_eq(x->data, x_before, (size_t)x->n_elems * sizeof(float));

    free(x_before);
    struct tg_tensor *all[] = {x, x3, x4, w1, w3, w_big, w_o3, w_empty, w, b3, b2d};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        tg_tensor_free(all[i]);
}
END_TEST

START_TEST(test_conv2d_null_input_keeps_first_error)
{
    struct tg_tensor *x = tu_tensor(1, 1, 3, 3, -1);
    struct tg_tensor *w = tu_tensor(1, 1, 2, 2, -1);
    tg_clear_error();
    assert_refused(tg_conv2d(NULL, w, NULL, NULL), TG_ERR_INVALID, "input 0 is NULL");
    tg_clear_error();
    assert_refused(tg_conv2d(x, NULL, NULL, NULL), TG_ERR_INVALID, "input 1 is NULL");
    tg_error_set(TG_ERR_SHAPE, "tg_earlier: first failure");
    ck_assert_ptr_null(tg_conv2d(NULL, w, NULL, NULL));
    ck_assert_str_eq(tg_last_error(), "tg_earlier: first failure");
    tg_clear_error();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

/* Fail each allocation of a call in turn: NOMEM naming the op, until one succeeds. */
START_TEST(test_conv2d_reports_allocation_failure)
{
    const struct conv_case c = {2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true};
    struct tg_tensor *x, *w, *b;
    make_inputs(&c, 8, &x, &w, &b);
    struct tg_conv2d_params p = case_params(&c);
    struct tg_tensor *y = NULL;
    int n_failed = 0;
    for (uint64_t k = 1; y == NULL && k < 20; k++) {
        tg_clear_error();
        tg_alloc_fail_at(k);
        y = tg_conv2d(x, w, b, &p);
        tg_alloc_fail_at(0);
        if (y == NULL) {
            assert_refused(y, TG_ERR_NOMEM, "");
            n_failed++;
        }
    }
    ck_assert_ptr_nonnull(y);
    ck_assert_int_ge(n_failed, 2); // the output, then the column buffer
    assert_matches_naive(y, x, w, b, &c);
    tg_tensor_free(y);
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(b);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("ops-conv");
    TCase *tf = tcase_create("forward");
    tcase_add_test(tf, test_conv2d_hand_worked);
    tcase_add_loop_test(tf, test_conv2d_matches_naive, 0, N_CASES);
    tcase_add_test(tf, test_conv2d_matches_pytorch);
    tcase_add_test(tf, test_conv2d_empty_batch);
    tcase_add_test(tf, test_conv2d_without_tape_returns_heap_tensor);
    suite_add_tcase(s, tf);
    TCase *tb = tcase_create("backward");
    tcase_add_test(tb, test_conv2d_hand_worked_backward);
    tcase_add_loop_test(tb, test_conv2d_gradcheck, 0, N_CASES);
    tcase_add_test(tb, test_conv2d_backward_skips_input_and_accumulates);
    tcase_add_test(tb, test_conv2d_backward_input_only);
    tcase_add_loop_test(tb, test_conv2d_threads_bit_identical, 0,
                        (int)(sizeof(thread_cases) / sizeof(thread_cases[0])));
    tcase_add_test(tb, test_conv2d_warm_step_allocates_nothing);
    suite_add_tcase(s, tb);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_conv2d_rejects_bad_params);
    tcase_add_test(te, test_conv2d_rejects_bad_shapes);
    tcase_add_test(te, test_conv2d_null_input_keeps_first_error);
    tcase_add_test(te, test_conv2d_reports_allocation_failure);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    return tu_run_suite(conv_suite());
}
