/*
 * Losses of the nn layer set: thin wrappers over the built-in loss ops, and
 * binary cross-entropy with logits as its own op.
 */
#include <math.h>

#include "core-impl.h"
#include "nn-impl.h"
#include "ops-impl.h"

struct tg_tensor *
tg_loss_mse(struct tg_tensor *pred, struct tg_tensor *target, enum tg_reduction reduction)
{
    return tg_mse_loss(pred, target, reduction);
}

struct tg_tensor *tg_loss_cross_entropy(struct tg_tensor *logits,
                                        const int32_t *labels,
                                        enum tg_reduction reduction,
                                        float label_smoothing)
{
    return tg_cross_entropy_loss(logits, labels, reduction, label_smoothing);
}

struct tg_tensor *
tg_loss_nll(struct tg_tensor *logp, const int32_t *labels, enum tg_reduction reduction)
{
    return tg_nll_loss(logp, labels, reduction);
}

/* ---- Binary cross-entropy with logits -------------------------------------- */

struct bce_params {
    enum tg_reduction reduction;
};

/* l = max(x, 0) - x t + log1p(exp(-|x|)); summed in double. */
static double bce_forward_kernel(const float *x, const float *t, int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double xi = (double)x[i];
        sum += (xi > 0.0 ? xi : 0.0) - xi * (double)t[i] + log1p(exp(-fabs(xi)));
    }
    return sum;
}

static float sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* dl/dx = g (sigmoid(x) - t), dl/dt = -g x, g the upstream over the reduction. */
static void
bce_backward_kernel(float *dx, float *dt, float g, const float *x, const float *t, int64_t n)
{
    TG_PARALLEL_LOOP(
            n, for (int64_t i = 0; i < n; i++) {
                if (dx)
                    dx[i] += g * (sigmoid(x[i]) - t[i]);
                if (dt)
                    dt[i] -= g * x[i];
            });
}

static enum tg_status
bce_shape(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct bce_params *p = tg_op_ctx_params(ctx);
    char a[TG_SHAPE_STR];
    char b[TG_SHAPE_STR];
    (void)n_in;
    (void)shape;
    if (!tg_tensor_same_shape(in[0], in[1]))
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_loss_bce_with_logits: shapes differ (logits: %s, target: %s)",
                            SHAPE(in[0], a), SHAPE(in[1], b));
    if (p->reduction != TG_REDUCE_MEAN && p->reduction != TG_REDUCE_SUM)
        return tg_error_set(TG_ERR_INVALID, "tg_loss_bce_with_logits: unknown reduction %d",
                            (int)p->reduction);
    *n_dims = 0;
    return TG_OK;
}

static float bce_divisor(const struct bce_params *p, int64_t n)
{
    return p->reduction == TG_REDUCE_MEAN ? (float)n : 1.0f;
}

static enum tg_status
bce_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct bce_params *p = tg_op_ctx_params(ctx);
    int64_t n = in[0]->n_elems;
    (void)n_in;
    double sum = bce_forward_kernel(in[0]->data, in[1]->data, n);
    out->data[0] = (float)(sum / (double)bce_divisor(p, n));
    return TG_OK;
}

static enum tg_status bce_backward(struct tg_op_ctx *ctx,
                                   const struct tg_tensor *out,
                                   struct tg_tensor *const *in,
                                   int n_in)
{
    const struct bce_params *p = tg_op_ctx_params(ctx);
    int64_t n = in[0]->n_elems;
    (void)n_in;
    float g = out->grad[0] / bce_divisor(p, n);
    bce_backward_kernel(in[0]->grad, in[1]->grad, g, in[0]->data, in[1]->data, n);
    return TG_OK;
}

static const struct tg_op_def bce_op = {"tg_loss_bce_with_logits", sizeof(struct bce_params),
                                        bce_shape, bce_forward, bce_backward};

struct tg_tensor *tg_loss_bce_with_logits(struct tg_tensor *logits,
                                          struct tg_tensor *target,
                                          enum tg_reduction reduction)
{
    struct bce_params p = {reduction};
    struct tg_tensor *in[2] = {logits, target};
    return tg_op_apply(&bce_op, 2, in, &p);
}
