/*
 * Batch normalisation: the tg_batch_norm op (batch statistics with the
 * running update in training, running statistics in evaluation, analytic
 * backward for x, weight and bias) and the BatchNorm1d / BatchNorm2d layers.
 */
#include <math.h>
#include <string.h>

#include "core-impl.h"
#include "nn-impl.h"
#include "ops-impl.h"

/* x: (N, C, S) with S the product of the sizes past dimension 1. */
struct bn_dims {
    int64_t n, c, s;
};

struct bn_params {
    struct tg_tensor *running_mean;
    struct tg_tensor *running_var;
    bool training;
    bool has_weight;
    bool has_bias;
    float momentum;
    float eps;
};

static struct bn_dims bn_dims_of(const struct tg_tensor *x)
{
    struct bn_dims d = {x->shape[0], x->shape[1], 1};
    for (int i = 2; i < x->n_dims; i++)
        d.s *= x->shape[i];
    return d;
}

/* ---- Kernels: outputs first ------------------------------------------------ */

/*
 * Per channel: mean and biased variance over (N, S), accumulated in double
 * (two passes, so large offsets cost no precision). stats: mean[C], invstd[C].
 */
static void bn_batch_stats(
        float *mean, float *invstd, double *var_biased, const float *x, struct bn_dims d, float eps)
{
    double count = (double)(d.n * d.s);
    TG_PARALLEL_LOOP(
            d.n * d.c * d.s, for (int64_t c = 0; c < d.c; c++) {
                double sum = 0.0;
                for (int64_t i = 0; i < d.n; i++) {
                    const float *row = x + (i * d.c + c) * d.s;
                    for (int64_t k = 0; k < d.s; k++)
                        sum += (double)row[k];
                }
                double m = sum / count;
                double sq = 0.0;
                for (int64_t i = 0; i < d.n; i++) {
                    const float *row = x + (i * d.c + c) * d.s;
                    for (int64_t k = 0; k < d.s; k++)
                        sq += ((double)row[k] - m) * ((double)row[k] - m);
                }
                var_biased[c] = sq / count;
                mean[c] = (float)m;
                invstd[c] = (float)(1.0 / sqrt(var_biased[c] + (double)eps));
            });
}

/* y = (x - mean) invstd weight + bias, per channel. */
static void bn_forward_kernel(float *y,
                              const float *x,
                              const float *mean,
                              const float *invstd,
                              const float *weight,
                              const float *bias,
                              struct bn_dims d)
{
    TG_PARALLEL_LOOP(
            d.n * d.c * d.s, for (int64_t nc = 0; nc < d.n * d.c; nc++) {
                int64_t c = nc % d.c;
                float g = (weight ? weight[c] : 1.0f) * invstd[c];
                float b = bias ? bias[c] : 0.0f;
                const float *xr = x + nc * d.s;
                float *yr = y + nc * d.s;
                for (int64_t k = 0; k < d.s; k++)
                    yr[k] = (xr[k] - mean[c]) * g + b;
            });
}

/*
 * With xhat = (x - mean) invstd, g = weight and m = N S values per channel:
 * dbias = sum dy, dweight = sum dy xhat, and in training (mean and invstd
 * depend on x) dx = g invstd / m (m dy - sum dy - xhat sum dy xhat); in
 * evaluation dx = g invstd dy.
 */
static void bn_backward_kernel(float *dx,
                               float *dweight,
                               float *dbias,
                               const float *dy,
                               const float *x,
                               const float *mean,
                               const float *invstd,
                               const float *weight,
                               struct bn_dims d,
                               bool training)
{
    double count = (double)(d.n * d.s);
    TG_PARALLEL_LOOP(
            d.n * d.c * d.s, for (int64_t c = 0; c < d.c; c++) {
                double sum_dy = 0.0;
                double sum_dy_xhat = 0.0;
                for (int64_t i = 0; i < d.n; i++) {
                    const float *xr = x + (i * d.c + c) * d.s;
                    const float *gr = dy + (i * d.c + c) * d.s;
                    for (int64_t k = 0; k < d.s; k++) {
                        sum_dy += (double)gr[k];
                        sum_dy_xhat += (double)gr[k] * (double)((xr[k] - mean[c]) * invstd[c]);
                    }
                }
                if (dbias)
                    dbias[c] += (float)sum_dy;
                if (dweight)
                    dweight[c] += (float)sum_dy_xhat;
                if (!dx)
                    continue;
                double gi = (double)((weight ? weight[c] : 1.0f) * invstd[c]);
                double mean_dy = training ? sum_dy / count : 0.0;
                double mean_dy_xhat = training ? sum_dy_xhat / count : 0.0;
                for (int64_t i = 0; i < d.n; i++) {
                    const float *xr = x + (i * d.c + c) * d.s;
                    const float *gr = dy + (i * d.c + c) * d.s;
                    float *dr = dx + (i * d.c + c) * d.s;
                    for (int64_t k = 0; k < d.s; k++) {
                        double xhat = (double)((xr[k] - mean[c]) * invstd[c]);
                        dr[k] += (float)(gi * ((double)gr[k] - mean_dy - xhat * mean_dy_xhat));
                    }
                }
            });
}

/* ---- Op table entry -------------------------------------------------------- */

static enum tg_status check_vec(const char *what, const struct tg_tensor *t, int64_t c)
{
    char s[TG_SHAPE_STR];
    if (t && (t->n_dims != 1 || t->shape[0] != c))
        return tg_error_set(TG_ERR_SHAPE, "tg_batch_norm: %s is %s, expected %lld (channels)", what,
                            SHAPE(t, s), (long long)c);
    return TG_OK;
}

static enum tg_status
bn_shape(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct bn_params *p = tg_op_ctx_params(ctx);
    const struct tg_tensor *x = in[0];
    char s[TG_SHAPE_STR];
    if (x->n_dims < 2)
        return tg_error_set(TG_ERR_SHAPE, "tg_batch_norm: x is %s, expected (N, C, ...)",
                            SHAPE(x, s));
    struct bn_dims d = bn_dims_of(x);
    int k = 1;
    enum tg_status st = check_vec("weight", p->has_weight ? in[k++] : NULL, d.c);
    if (st == TG_OK)
        st = check_vec("bias", p->has_bias ? in[k++] : NULL, d.c);
    if (st == TG_OK)
        st = check_vec("running_mean", p->running_mean, d.c);
    if (st == TG_OK)
        st = check_vec("running_var", p->running_var, d.c);
    if (st != TG_OK)
        return st;
    if (k != n_in || !(p->eps > 0.0f) || !(p->momentum >= 0.0f && p->momentum <= 1.0f))
        return tg_error_set(TG_ERR_INVALID,
                            "tg_batch_norm: bad settings (eps %g, momentum %g), expected eps > 0 "
                            "and 0 <= momentum <= 1",
                            (double)p->eps, (double)p->momentum);
    if (!p->running_mean != !p->running_var)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_batch_norm: running_mean and running_var must be given together");
    if (!p->training && !p->running_mean)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_batch_norm: evaluation mode needs running_mean and running_var");
    if (p->training && d.n * d.s < 2 && x->n_elems > 0)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_batch_norm: expected more than 1 value per channel in training "
                            "(x: %s)",
                            SHAPE(x, s));
    return tg_shape_same_as_first(ctx, in, 1, n_dims, shape);
}

/* Inputs after x: [weight] [bias], as the flags say. */
static void bn_inputs(const struct bn_params *p,
                      struct tg_tensor *const *in,
                      struct tg_tensor **weight,
                      struct tg_tensor **bias)
{
    int k = 1;
    *weight = p->has_weight ? in[k++] : NULL;
    *bias = p->has_bias ? in[k++] : NULL;
}

/* running = (1 - momentum) running + momentum stat; the variance unbiased. */
static void bn_update_running(const struct bn_params *p,
                              const float *mean,
                              const double *var_biased,
                              struct bn_dims d)
{
    double m = (double)(d.n * d.s);
    float keep = 1.0f - p->momentum;
    for (int64_t c = 0; c < d.c; c++) {
        float unbiased = (float)(var_biased[c] * m / (m - 1.0));
        p->running_mean->data[c] = keep * p->running_mean->data[c] + p->momentum * mean[c];
        p->running_var->data[c] = keep * p->running_var->data[c] + p->momentum * unbiased;
    }
}

static enum tg_status
bn_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct bn_params *p = tg_op_ctx_params(ctx);
    struct tg_tensor *weight;
    struct tg_tensor *bias;
    struct bn_dims d = bn_dims_of(in[0]);
    (void)n_in;
    bn_inputs(p, in, &weight, &bias);

    /* saved: mean[C], invstd[C] for backward */
    float *stats = tg_op_ctx_save(ctx, 2 * (size_t)d.c * sizeof(float));
    if (!stats)
        return tg_last_status();
    float *mean = stats;
    float *invstd = stats + d.c;
    if (p->training) {
        double *var = tg_op_ctx_scratch(ctx, (size_t)d.c * sizeof(double));
        if (!var)
            return tg_last_status();
        bn_batch_stats(mean, invstd, var, in[0]->data, d, p->eps);
        if (p->running_mean)
            bn_update_running(p, mean, var, d);
    } else {
        for (int64_t c = 0; c < d.c; c++) {
            mean[c] = p->running_mean->data[c];
            invstd[c] = 1.0f / sqrtf(p->running_var->data[c] + p->eps);
        }
    }
    bn_forward_kernel(out->data, in[0]->data, mean, invstd, weight ? weight->data : NULL,
                      bias ? bias->data : NULL, d);
    return TG_OK;
}

static enum tg_status bn_backward(struct tg_op_ctx *ctx,
                                  const struct tg_tensor *out,
                                  struct tg_tensor *const *in,
                                  int n_in)
{
    const struct bn_params *p = tg_op_ctx_params(ctx);
    struct tg_tensor *weight;
    struct tg_tensor *bias;
    struct bn_dims d = bn_dims_of(in[0]);
    (void)n_in;
    bn_inputs(p, in, &weight, &bias);
    const float *stats = tg_op_ctx_save(ctx, 0);
    if (!stats)
        return tg_last_status();
    bn_backward_kernel(in[0]->grad, weight ? weight->grad : NULL, bias ? bias->grad : NULL,
                       out->grad, in[0]->data, stats, stats + d.c, weight ? weight->data : NULL, d,
                       p->training);
    return TG_OK;
}

static const struct tg_op_def batch_norm_op = {"tg_batch_norm", sizeof(struct bn_params), bn_shape,
                                               bn_forward, bn_backward};

struct tg_tensor *tg_batch_norm(struct tg_tensor *x,
                                struct tg_tensor *weight,
                                struct tg_tensor *bias,
                                struct tg_tensor *running_mean,
                                struct tg_tensor *running_var,
                                bool training,
                                float momentum,
                                float eps)
{
    struct bn_params p = {running_mean, running_var, training, weight != NULL,
                          bias != NULL, momentum,    eps};
    struct tg_tensor *in[3] = {x, NULL, NULL};
    int n = 1;
    if (weight)
        in[n++] = weight;
    if (bias)
        in[n++] = bias;
    return tg_op_apply(&batch_norm_op, n, in, &p);
}

/* ---- Layers ---------------------------------------------------------------- */

static struct tg_tensor *bn_layer_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    char s[TG_SHAPE_STR];
    int rank = m->cfg.bn.rank;
    if (x->n_dims != rank) {
        nn_err(m, TG_ERR_SHAPE, "input has %d dimensions, expected %d %s (x: %s)", x->n_dims, rank,
               rank == 2 ? "(N, C)" : "(N, C, H, W)", SHAPE(x, s));
        return NULL;
    }
    if (x->shape[1] != m->cfg.bn.features) {
        nn_err(m, TG_ERR_SHAPE, "input has %lld channels, layer expects %lld (x: %s)",
               (long long)x->shape[1], (long long)m->cfg.bn.features, SHAPE(x, s));
        return NULL;
    }
    return tg_batch_norm(x, m->own[0].tensor, m->own[1].tensor, m->own[2].tensor, m->own[3].tensor,
                         m->training, m->cfg.bn.momentum, m->cfg.bn.eps);
}

static const struct nn_layer_def bn1d_def = {"BatchNorm1d", "tg_nn_batch_norm1d", bn_layer_forward};
static const struct nn_layer_def bn2d_def = {"BatchNorm2d", "tg_nn_batch_norm2d", bn_layer_forward};

static struct tg_nn_module *bn_new(const struct nn_layer_def *def,
                                   const char *func,
                                   int rank,
                                   int64_t features,
                                   float eps,
                                   float momentum)
{
    if (features < 1 || !(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f)) {
        tg_error_set(TG_ERR_INVALID,
                     "%s: bad arguments (num_features %lld, eps %g, momentum %g), expected "
                     "num_features >= 1, eps > 0, 0 <= momentum <= 1",
                     func, (long long)features, (double)eps, (double)momentum);
        return NULL;
    }
    struct tg_nn_module *m = nn_module_new(def);
    if (!m)
        return NULL;
    m->cfg.bn.features = features;
    m->cfg.bn.rank = rank;
    m->cfg.bn.eps = eps;
    m->cfg.bn.momentum = momentum;
    if (!nn_module_add_tensor(m, "weight", 1, &features, false, 1.0f) ||
        !nn_module_add_tensor(m, "bias", 1, &features, false, 0.0f) ||
        !nn_module_add_tensor(m, "running_mean", 1, &features, true, 0.0f) ||
        !nn_module_add_tensor(m, "running_var", 1, &features, true, 1.0f) ||
        nn_module_refresh(m) != TG_OK) {
        tg_nn_free(m);
        return NULL;
    }
    return m;
}

struct tg_nn_module *tg_nn_batch_norm1d_new(int64_t num_features, float eps, float momentum)
{
    return bn_new(&bn1d_def, "tg_nn_batch_norm1d_new", 2, num_features, eps, momentum);
}

struct tg_nn_module *tg_nn_batch_norm2d_new(int64_t num_features, float eps, float momentum)
{
    return bn_new(&bn2d_def, "tg_nn_batch_norm2d_new", 4, num_features, eps, momentum);
}
