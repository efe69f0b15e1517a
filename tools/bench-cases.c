/*
 * The benchmark case table and each kind's setup, timed run and teardown.
 *
 * Shapes are those of the default model ("cnn" of models.c) at batch 64, as
 * the library runs them: tg_conv2d() multiplies image by image, so its GEMMs
 * are per image (conv2 forward: W (64 x 800) cols (800 x 196)), and
 * tg_nn_linear's fc1 is x (64 x 3136) W^T with W (1024 x 3136).
 */
#include "bench-cases.h"

#include <stdlib.h>
#include <time.h>

#include "models.h"

/* Per-image GEMMs of conv1 (1 -> 32, 5x5, 28x28: Kg 25, P 784), conv2
 * (32 -> 64, 5x5, 14x14: Kg 800, P 196) and fc1 (3136 -> 1024), with the
 * transposes and beta that ops-conv.c and ops-linalg.c use. */
#define G(ta, tb, m, n, k, beta)                                                                   \
    {                                                                                              \
        ta, tb, m, n, k, beta                                                                      \
    }

static const struct bench_case cases[] = {
        {"fma peak", BENCH_PEAK, BENCH_FWD, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "the FMA units' rate from registers: what every GFLOP/s figure is a share of"},
        {"sgemm 64", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 64, 64, 64, 0.0f), false, "square, nn"},
        {"sgemm 128", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 128, 128, 128, 0.0f), false, "square, nn"},
        {"sgemm 256", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 256, 256, 256, 0.0f), false, "square, nn"},
        {"sgemm 512", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 512, 512, 512, 0.0f), false, "square, nn"},
        {"sgemm 1024", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 1024, 1024, 1024, 0.0f), true,
         "square, nn"},
        {"sgemm 2048", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 2048, 2048, 2048, 0.0f), true,
         "square, nn"},
        {"sgemm conv1-fwd", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 32, 784, 25, 0.0f), false,
         "per image: y = W cols"},
        {"sgemm conv1-bwd-w", BENCH_GEMM, BENCH_FWD, 0, G(0, 1, 32, 25, 784, 1.0f), false,
         "per image: dW += dY cols^T"},
        {"sgemm conv1-bwd-x", BENCH_GEMM, BENCH_FWD, 0, G(1, 0, 25, 784, 32, 0.0f), false,
         "per image: dcols = W^T dY"},
        {"sgemm conv2-fwd", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 64, 784, 800, 0.0f), false,
         "per block of 4 images: y = W cols"},
        {"sgemm conv2-bwd-w", BENCH_GEMM, BENCH_FWD, 0, G(0, 1, 64, 800, 784, 1.0f), false,
         "per block of 4 images: dW += dY cols^T"},
        {"sgemm conv2-bwd-x", BENCH_GEMM, BENCH_FWD, 0, G(1, 0, 800, 784, 64, 0.0f), false,
         "per block of 4 images: dcols = W^T dY"},
        {"sgemm conv2-batch", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 64, 12544, 800, 0.0f), true,
         "whole batch as one product (a common OpenBLAS reference shape)"},
        {"sgemm fc1-fwd", BENCH_GEMM, BENCH_FWD, 0, G(0, 1, 64, 1024, 3136, 0.0f), false,
         "y = x W^T"},
        {"sgemm fc1-bwd-x", BENCH_GEMM, BENCH_FWD, 0, G(0, 0, 64, 3136, 1024, 1.0f), false,
         "dx += dY W"},
        {"sgemm fc1-bwd-w", BENCH_GEMM, BENCH_FWD, 0, G(1, 0, 1024, 3136, 64, 1.0f), false,
         "dW += dY^T x"},
        {"conv1 fwd", BENCH_CONV, BENCH_FWD, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "64x1x28x28, 32 5x5 filters, pad 2, with bias"},
        {"conv1 bwd-x", BENCH_CONV, BENCH_BWD_X, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "backward into x only (not run in training: the input needs no grad)"},
        {"conv1 bwd-w", BENCH_CONV, BENCH_BWD_W, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "backward into the weight only"},
        {"conv2 fwd", BENCH_CONV, BENCH_FWD, 1, G(0, 0, 0, 0, 0, 0.0f), false,
         "64x32x14x14, 64 5x5 filters, pad 2, with bias"},
        {"conv2 bwd-x", BENCH_CONV, BENCH_BWD_X, 1, G(0, 0, 0, 0, 0, 0.0f), false,
         "backward into x only"},
        {"conv2 bwd-w", BENCH_CONV, BENCH_BWD_W, 1, G(0, 0, 0, 0, 0, 0.0f), false,
         "backward into the weight only"},
        {"max-pool1 fwd", BENCH_POOL, BENCH_FWD, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "2x2 stride 2 on 64x32x28x28"},
        {"max-pool1 bwd", BENCH_POOL, BENCH_BWD_X, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "2x2 stride 2 on 64x32x28x28"},
        {"max-pool2 fwd", BENCH_POOL, BENCH_FWD, 1, G(0, 0, 0, 0, 0, 0.0f), false,
         "2x2 stride 2 on 64x64x14x14"},
        {"max-pool2 bwd", BENCH_POOL, BENCH_BWD_X, 1, G(0, 0, 0, 0, 0, 0.0f), false,
         "2x2 stride 2 on 64x64x14x14"},
        {"relu1 fwd", BENCH_RELU, BENCH_FWD, 0, G(0, 0, 0, 0, 0, 0.0f), false, "64x32x28x28"},
        {"relu1 bwd", BENCH_RELU, BENCH_BWD_X, 0, G(0, 0, 0, 0, 0, 0.0f), false, "64x32x28x28"},
        {"relu2 fwd", BENCH_RELU, BENCH_FWD, 1, G(0, 0, 0, 0, 0, 0.0f), false, "64x64x14x14"},
        {"relu2 bwd", BENCH_RELU, BENCH_BWD_X, 1, G(0, 0, 0, 0, 0, 0.0f), false, "64x64x14x14"},
        {"tape add", BENCH_TAPE, BENCH_FWD, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "chain of 1000 tg_add on 4 floats: record, backward, reset"},
        {"tape relu", BENCH_TAPE, BENCH_FWD, 1, G(0, 0, 0, 0, 0, 0.0f), false,
         "chain of 1000 tg_relu on 4 floats: record, backward, reset"},
        {"train-step cnn", BENCH_TRAIN, BENCH_FWD, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "forward, cross-entropy, backward, Adam step, zero grad, tape reset; batch 64"},
        {"peak-rss train-step", BENCH_RSS, BENCH_FWD, 0, G(0, 0, 0, 0, 0, 0.0f), false,
         "VmHWM of a fresh process after 3 training steps"},
};

/* Convolutions of the default model: input channels, output channels, size. */
static const int64_t conv_geom[2][3] = {{1, 32, 28}, {32, 64, 14}};

/* Inputs of max-pool and ReLU: (N, C, H, W) at each of the two stages. */
static const int64_t act_shape[2][4] = {{BENCH_BATCH, 32, 28, 28}, {BENCH_BATCH, 64, 14, 14}};

#define CONV_K 5

/* Steps of bench_peak_run() per repetition: 640 MFLOP, a few ms. */
#define PEAK_ITERS 4000000

/* Multiply-adds of one training sample, doubled: conv1 forward and weight
 * backward (the input needs no grad), then three products each for conv2,
 * fc1 and fc2. Bias, ReLU, pooling and Adam are not counted. */
#define TRAIN_FLOP_PER_SAMPLE                                                                      \
    (2.0 * (2.0 * 32 * 784 * 25) + 3.0 * (2.0 * 64 * 196 * 800) + 3.0 * (2.0 * 1024 * 3136) +      \
     3.0 * (2.0 * 10 * 1024))

struct bench_state {
    const struct bench_case *c;
    struct tg_rng rng;
    struct tg_tape *tape;
    struct tg_tensor *t[4]; // GEMM: A, B, C; ops: x, weight, bias, seed
    struct tg_nn_module *model;
    struct tg_optim *opt;
    int32_t labels[BENCH_BATCH];
    double wall, cpu; // timed seconds of the current bench_run()
};

/* Start of a timed part: wall and process CPU clocks. */
struct stamp {
    double wall, cpu;
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct stamp tic(void)
{
    return (struct stamp){bench_now(), cpu_now()};
}

/* End of a timed part: add it to the run's totals. */
static void toc(struct bench_state *s, struct stamp t0)
{
    s->wall += bench_now() - t0.wall;
    s->cpu += cpu_now() - t0.cpu;
}

size_t bench_case_count(void)
{
    return sizeof(cases) / sizeof(cases[0]);
}

const struct bench_case *bench_case_get(size_t i)
{
    return i < bench_case_count() ? &cases[i] : NULL;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum bench_unit bench_case_unit(const struct bench_case *c)
{
    switch (c->kind) {
    case BENCH_GEMM:
    case BENCH_CONV:
    case BENCH_PEAK:
        return BENCH_UNIT_GFLOPS;
    case BENCH_POOL:
    case BENCH_RELU:
        return BENCH_UNIT_GBPS;
    case BENCH_TAPE:
        return BENCH_UNIT_NS_OP;
    case BENCH_TRAIN:
        return BENCH_UNIT_SAMPLES;
    case BENCH_RSS:
        break;
    }
    return BENCH_UNIT_MIB;
}

static double act_elems(int layer)
{
    const int64_t *s = act_shape[layer];
    return (double)(s[0] * s[1] * s[2] * s[3]);
}

/*
 * Bytes touched by pool and ReLU, each tensor counted once per read or
 * write: forward reads x and writes y; backward reads dy and x (ReLU) and
 * reads and writes dx. Pool's y and dy are a quarter of x.
 */
static double act_bytes(const struct bench_case *c)
{
    double n = act_elems(c->layer);
    double out = c->kind == BENCH_POOL ? n / 4 : n;
    if (c->pass == BENCH_FWD)
        return 4.0 * (n + out);
    return 4.0 * (out + (c->kind == BENCH_RELU ? n : 0.0) + 2.0 * n);
}

double bench_case_work(const struct bench_case *c)
{
    switch (c->kind) {
    case BENCH_GEMM:
        return 2.0 * (double)c->gemm.m * (double)c->gemm.n * (double)c->gemm.k;
    case BENCH_CONV: {
        const int64_t *g = conv_geom[c->layer];
        double p = (double)(g[2] * g[2]);
        return 2.0 * BENCH_BATCH * (double)g[1] * p * (double)(g[0] * CONV_K * CONV_K);
    }
    case BENCH_POOL:
    case BENCH_RELU:
        return act_bytes(c);
    case BENCH_TAPE:
        return BENCH_TAPE_OPS;
    case BENCH_PEAK:
        return bench_peak_flop(PEAK_ITERS);
    case BENCH_TRAIN:
        return BENCH_BATCH;
    case BENCH_RSS:
        break;
    }
    return 0;
}

/* ---- Setup ------------------------------------------------------------------ */

static struct tg_tensor *random_tensor(struct tg_rng *rng, int n_dims, const int64_t *shape)
{
    struct tg_tensor *t = tg_tensor_new(n_dims, shape);
    if (t != NULL && tg_init_uniform(t, rng, -1.0f, 1.0f) != TG_OK) {
        tg_tensor_free(t);
        return NULL;
    }
    return t;
}

static enum tg_status gemm_setup(struct bench_state *s)
{
    const struct bench_gemm *g = &s->c->gemm;
    int64_t a[2] = {g->trans_a ? g->k : g->m, g->trans_a ? g->m : g->k};
    int64_t b[2] = {g->trans_b ? g->n : g->k, g->trans_b ? g->k : g->n};
    int64_t c[2] = {g->m, g->n};
    s->t[0] = random_tensor(&s->rng, 2, a);
    s->t[1] = random_tensor(&s->rng, 2, b);
    s->t[2] = random_tensor(&s->rng, 2, c);
    return s->t[0] && s->t[1] && s->t[2] ? TG_OK : tg_last_status();
}

static const struct tg_conv2d_params conv_params = {1, 1, 2, 2, 1, 1, 1};
static const struct tg_pool2d_params pool_params = {2, 2, 2, 2, 0, 0, true};

/* The op a conv, pool or ReLU case runs, on the state's tensors. */
static struct tg_tensor *case_op(struct bench_state *s)
{
    switch (s->c->kind) {
    case BENCH_CONV:
        return tg_conv2d(s->t[0], s->t[1], s->t[2], &conv_params);
    case BENCH_POOL:
        return tg_max_pool2d(s->t[0], &pool_params);
    default:
        return tg_relu(s->t[0]);
    }
}

/* x (and for conv the weight and bias), then a seed of the output's shape. */
static enum tg_status op_setup(struct bench_state *s)
{
    const struct bench_case *c = s->c;
    if (c->kind == BENCH_CONV) {
        const int64_t *g = conv_geom[c->layer];
        s->t[0] = random_tensor(&s->rng, 4, (int64_t[]){BENCH_BATCH, g[0], g[2], g[2]});
        s->t[1] = random_tensor(&s->rng, 4, (int64_t[]){g[1], g[0], CONV_K, CONV_K});
        s->t[2] = random_tensor(&s->rng, 1, (int64_t[]){g[1]});
        if (s->t[1] == NULL || s->t[2] == NULL)
            return tg_last_status();
    } else {
        s->t[0] = random_tensor(&s->rng, 4, act_shape[c->layer]);
    }
    if (s->t[0] == NULL)
        return tg_last_status();
    struct tg_tensor *y = case_op(s);
    if (y == NULL)
        return tg_last_status();
    s->t[3] = random_tensor(&s->rng, y->n_dims, y->shape);
    tg_tape_reset(s->tape);
    if (s->t[3] == NULL)
        return tg_last_status();
    if (c->pass == BENCH_BWD_X)
        return tg_tensor_set_requires_grad(s->t[0], true);
    if (c->pass == BENCH_BWD_W)
        return tg_tensor_set_requires_grad(s->t[1], true);
    return TG_OK;
}

/* x (4 floats, positive so that the ReLU chain stays alive), a seed of ones. */
static enum tg_status tape_setup(struct bench_state *s)
{
    s->t[0] = tg_tensor_from_data(1, (int64_t[]){4}, (const float[]){0.5f, 1.0f, 1.5f, 2.0f});
    s->t[3] = tg_tensor_new(1, (int64_t[]){4});
    if (s->t[0] == NULL || s->t[3] == NULL)
        return tg_last_status();
    tg_tensor_fill(s->t[3], 1.0f);
    return tg_tensor_set_requires_grad(s->t[0], true);
}

static enum tg_status train_setup(struct bench_state *s)
{
    s->model = model_build("cnn", &s->rng);
    if (s->model == NULL)
        return tg_last_status();
    size_t n = tg_nn_n_params(s->model, false);
    struct tg_param *list = calloc(n, sizeof(*list));
    struct tg_tensor **params = calloc(n, sizeof(*params));
    enum tg_status st = TG_ERR_NOMEM;
    if (list == NULL || params == NULL) {
        tg_error_set(st, "bench: out of memory listing %zu parameters", n);
        goto out_lists;
    }
    st = tg_nn_params(s->model, list, n, false, NULL);
    for (size_t i = 0; st == TG_OK && i < n; i++)
        params[i] = list[i].tensor;
    if (st == TG_OK) {
        s->opt = tg_optim_new_adam(params, n, NULL);
        st = s->opt != NULL ? TG_OK : tg_last_status();
    }
out_lists:
    free(params);
    free(list);
    if (st != TG_OK)
        return st;

    /* A batch of uniform images and random labels. */
    s->t[0] = tg_tensor_new(4, (int64_t[]){BENCH_BATCH, 1, 28, 28});
    if (s->t[0] == NULL || tg_init_uniform(s->t[0], &s->rng, 0.0f, 1.0f) != TG_OK)
        return tg_last_status();
    for (int i = 0; i < BENCH_BATCH; i++)
        s->labels[i] = (int32_t)tg_rng_int(&s->rng, 10);
    return TG_OK;
}

struct bench_state *bench_setup(const struct bench_case *c)
{
    struct bench_state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        tg_error_set(TG_ERR_NOMEM, "bench: out of memory setting up '%s'", c->name);
        return NULL;
    }
    s->c = c;
    tg_rng_seed(&s->rng, 20240604);
    s->tape = tg_tape_new();
    if (s->tape == NULL || tg_tape_begin(s->tape) != TG_OK) {
        tg_tape_free(s->tape);
        free(s);
        return NULL;
    }
    enum tg_status st = TG_ERR_INVALID;
    if (c->kind == BENCH_GEMM)
        st = gemm_setup(s);
    else if (c->kind == BENCH_CONV || c->kind == BENCH_POOL || c->kind == BENCH_RELU)
        st = op_setup(s);
    else if (c->kind == BENCH_TAPE)
        st = tape_setup(s);
    else if (c->kind == BENCH_TRAIN || c->kind == BENCH_RSS)
        st = train_setup(s);
    else if (c->kind == BENCH_PEAK)
        st = TG_OK; // registers only
    if (st != TG_OK) {
        bench_teardown(s);
        return NULL;
    }
    return s;
}

void bench_teardown(struct bench_state *s)
{
    if (s == NULL)
        return;
    if (s->tape != NULL) {
        tg_tape_end(s->tape);
        tg_tape_free(s->tape);
    }
    for (int i = 0; i < 4; i++)
        tg_tensor_free(s->t[i]);
    tg_optim_free(s->opt);
    tg_nn_free(s->model);
    free(s);
}

size_t bench_tape_reserved(const struct bench_state *s)
{
    return tg_tape_bytes_reserved(s->tape);
}

/* ---- Timed runs --------------------------------------------------------------- */

static bool gemm_run(struct bench_state *s, int64_t inner)
{
    const struct bench_gemm *g = &s->c->gemm;
    int64_t lda = g->trans_a ? g->m : g->k;
    int64_t ldb = g->trans_b ? g->k : g->n;
    struct stamp t0 = tic();
    for (int64_t i = 0; i < inner; i++)
        if (tg_sgemm(g->trans_a, g->trans_b, g->m, g->n, g->k, 1.0f, s->t[0]->data, lda,
                     s->t[1]->data, ldb, g->beta, s->t[2]->data, g->n) != TG_OK)
            return false;
    toc(s, t0);
    return true;
}

/* Forward: the op, its output on the tape, nothing recorded (no grad needed). */
static bool op_fwd_run(struct bench_state *s, int64_t inner)
{
    struct stamp t0 = tic();
    for (int64_t i = 0; i < inner; i++) {
        if (case_op(s) == NULL)
            return false;
        tg_tape_reset(s->tape);
    }
    toc(s, t0);
    return true;
}

/* Backward: the recording forward is untimed, only tg_tape_backward() counts. */
static bool op_bwd_run(struct bench_state *s, int64_t inner)
{
    for (int64_t i = 0; i < inner; i++) {
        struct tg_tensor *y = case_op(s);
        if (y == NULL)
            return false;
        struct stamp t0 = tic();
        enum tg_status st = tg_tape_backward(s->tape, y, s->t[3], 0);
        toc(s, t0);
        tg_tape_reset(s->tape);
        if (st != TG_OK)
            return false;
    }
    return true;
}

static bool tape_run(struct bench_state *s, int64_t inner)
{
    struct stamp t0 = tic();
    for (int64_t i = 0; i < inner; i++) {
        struct tg_tensor *y = s->t[0];
        for (int j = 0; j < BENCH_TAPE_OPS; j++)
            y = s->c->layer == 0 ? tg_add(y, s->t[0]) : tg_relu(y);
        enum tg_status st = y != NULL ? tg_tape_backward(s->tape, y, s->t[3], 0) : TG_ERR_INVALID;
        tg_tape_reset(s->tape);
        if (st != TG_OK)
            return false;
    }
    toc(s, t0);
    return true;
}

/* One step as `tapegrad train` runs it. */
static bool train_run(struct bench_state *s, int64_t inner)
{
    struct stamp t0 = tic();
    for (int64_t i = 0; i < inner; i++) {
        struct tg_tensor *logits = tg_nn_forward(s->model, s->t[0]);
        struct tg_tensor *loss = tg_loss_cross_entropy(logits, s->labels, TG_REDUCE_MEAN, 0.0f);
        enum tg_status st =
                loss != NULL ? tg_tape_backward(s->tape, loss, NULL, 0) : TG_ERR_INVALID;
        if (st == TG_OK)
            st = tg_optim_step(s->opt);
        tg_optim_zero_grad(s->opt);
        tg_tape_reset(s->tape);
        if (st != TG_OK)
            return false;
    }
    toc(s, t0);
    return true;
}

static bool peak_run(struct bench_state *s, int64_t inner)
{
    volatile float sink = 0.0f;
    struct stamp t0 = tic();
    for (int64_t i = 0; i < inner; i++)
        sink = sink + bench_peak_run(PEAK_ITERS);
    toc(s, t0);
    return true;
}

static bool run_kind(struct bench_state *s, int64_t inner)
{
    switch (s->c->kind) {
    case BENCH_GEMM:
        return gemm_run(s, inner);
    case BENCH_CONV:
    case BENCH_POOL:
    case BENCH_RELU:
        return s->c->pass == BENCH_FWD ? op_fwd_run(s, inner) : op_bwd_run(s, inner);
    case BENCH_TAPE:
        return tape_run(s, inner);
    case BENCH_PEAK:
        return peak_run(s, inner);
    case BENCH_TRAIN:
    case BENCH_RSS:
        break;
    }
    return train_run(s, inner);
}

double bench_run(struct bench_state *s, int64_t inner, double *cpu)
{
    s->wall = 0;
    s->cpu = 0;
    if (!run_kind(s, inner))
        return -1;
    if (cpu != NULL)
        *cpu = s->cpu;
    return s->wall;
}

double bench_train_flop_per_sample(void)
{
    return TRAIN_FLOP_PER_SAMPLE;
}
