/*
 * Losses: mean squared error, softmax cross-entropy from logits (with label
 * smoothing) and negative log-likelihood. Each reduces to a 0-dimensional
 * tensor; sums run in double. The label arrays belong to the caller and are
 * read only during the call: a recorded call copies them into its saved state,
 * and backward reads that copy, never the pointer in the parameters.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "core-impl.h"
#include "ops-impl.h"

static enum tg_status check_reduction(const char *name, enum tg_reduction r)
{
    if (r != TG_REDUCE_MEAN && r != TG_REDUCE_SUM)
        return tg_error_set(TG_ERR_INVALID,
                            "%s: unknown reduction (got %d, expected TG_REDUCE_MEAN or "
                            "TG_REDUCE_SUM)",
                            name, (int)r);
    return TG_OK;
}

/* Factor from the summed loss to the reduced one: 1 / count for a mean. */
static double reduce_scale(enum tg_reduction r, int64_t count)
{
    return r == TG_REDUCE_MEAN ? 1.0 / (double)count : 1.0;
}

/* ---- Kernels: outputs first ------------------------------------------------ */

static double mse_forward(const float *a, const float *b, int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        sum += d * d;
    }
    return sum;
}

/* d/da sum (a - b)^2 = 2 (a - b); sign -1 gives the gradient for b. */
static void mse_backward(float *dx, const float *a, const float *b, int64_t n, float k)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += k * (a[i] - b[i]););
}

/* log(sum_c exp(x_c)) of one row, shifted by the row's maximum. */
static double row_logsumexp(const float *x, int64_t c)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < c; j++)
        m = x[j] > m ? x[j] : m;
    double sum = 0.0;
    for (int64_t j = 0; j < c; j++)
        sum += exp((double)x[j] - (double)m);
    return (double)m + log(sum);
}

/*
 * x: (n, c) logits. With lse_i = logsumexp(x_i), -log p_ic = lse_i - x_ic, so
 * loss_i = (1 - s) (lse_i - x_i,label) + s (lse_i - mean_c x_ic).
 * Writes each row's loss and lse; rows are independent.
 */
static void cross_entropy_forward(double *loss,
                                  double *lse,
                                  const float *x,
                                  const int32_t *labels,
                                  int64_t n,
                                  int64_t c,
                                  float s)
{
    TG_PARALLEL_LOOP(
            n * c, for (int64_t i = 0; i < n; i++) {
                const float *row = x + i * c;
                double l = row_logsumexp(row, c);
                double nll = l - (double)row[labels[i]];
                double mean_x = 0.0;
                for (int64_t j = 0; s != 0.0f && j < c; j++)
                    mean_x += (double)row[j];
                mean_x /= (double)c;
                loss[i] = s != 0.0f ? (1.0 - (double)s) * nll + (double)s * (l - mean_x) : nll;
                lse[i] = l;
            });
}

/* dx_ic += k (softmax(x_i)_c - q_ic), q_i = (1 - s) onehot(label_i) + s / c. */
static void cross_entropy_backward(float *dx,
                                   const float *x,
                                   const double *lse,
                                   const int32_t *labels,
                                   int64_t n,
                                   int64_t c,
                                   float s,
                                   float k)
{
    float off = s / (float)c;
    TG_PARALLEL_LOOP(
            n * c, for (int64_t i = 0; i < n; i++) {
                const float *row = x + i * c;
                float *drow = dx + i * c;
                for (int64_t j = 0; j < c; j++) {
                    float p = expf((float)((double)row[j] - lse[i]));
                    float q = j == labels[i] ? 1.0f - s + off : off;
                    drow[j] += k * (p - q);
                }
            });
}

static double nll_forward(const float *logp, const int32_t *labels, int64_t n, int64_t c)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum -= (double)logp[i * c + labels[i]];
    return sum;
}

static void nll_backward(float *dlogp, const int32_t *labels, int64_t n, int64_t c, float k)
{
    for (int64_t i = 0; i < n; i++)
        dlogp[i * c + labels[i]] -= k;
}

/* ---- Mean squared error ----------------------------------------------------- */

struct mse_params {
    enum tg_reduction reduction;
};

static enum tg_status
mse_shape(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct mse_params *p = tg_op_ctx_params(ctx);
    char as[TG_SHAPE_STR], bs[TG_SHAPE_STR];
    (void)n_in;
    (void)shape;
    if (!tg_tensor_same_shape(in[0], in[1]))
        return tg_error_set(TG_ERR_SHAPE, "tg_mse_loss: shapes differ (got a: %s, b: %s)",
                            SHAPE(in[0], as), SHAPE(in[1], bs));
    *n_dims = 0;
    return check_reduction("tg_mse_loss", p->reduction);
}

static enum tg_status
mse_op_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct mse_params *p = tg_op_ctx_params(ctx);
    int64_t n = in[0]->n_elems;
    (void)n_in;
    double sum = mse_forward(in[0]->data, in[1]->data, n);
    out->data[0] = (float)(sum * reduce_scale(p->reduction, n));
    return TG_OK;
}

static enum tg_status mse_op_backward(struct tg_op_ctx *ctx,
                                      const struct tg_tensor *out,
                                      struct tg_tensor *const *in,
                                      int n_in)
{
    const struct mse_params *p = tg_op_ctx_params(ctx);
    int64_t n = in[0]->n_elems;
    float k = (float)(2.0 * (double)out->grad[0] * reduce_scale(p->reduction, n));
    (void)n_in;
    if (in[0]->grad != NULL)
        mse_backward(in[0]->grad, in[0]->data, in[1]->data, n, k);
    if (in[1]->grad != NULL)
        mse_backward(in[1]->grad, in[0]->data, in[1]->data, n, -k);
    return TG_OK;
}

static const struct tg_op_def mse_op = {"tg_mse_loss", sizeof(struct mse_params), mse_shape,
                                        mse_op_forward, mse_op_backward};

/* ---- Cross-entropy and NLL -------------------------------------------------- */

struct class_loss_params {
    const int32_t *labels; // the caller's array: valid during the call only
    enum tg_reduction reduction;
    float smoothing; // cross-entropy only
};

/*
 * Saved state of a recorded cross-entropy: n labels, then n row lse values
 * (double, 8-byte aligned). NLL saves the labels only.
 */
static size_t lse_offset(int64_t n)
{
    return ((size_t)n * sizeof(int32_t) + 7) / 8 * 8;
}

/* Shared checks: (N, C) scores, a known reduction, every label in [0, C). */
static enum tg_status
check_class_input(const char *name, const struct tg_tensor *x, const struct class_loss_params *p)
{
    char xs[TG_SHAPE_STR];
    if (x->n_dims != 2)
        return tg_error_set(TG_ERR_SHAPE, "%s: input is not 2-d (got %s, expected N x C)", name,
                            SHAPE(x, xs));
    enum tg_status st = check_reduction(name, p->reduction);
    if (st != TG_OK)
        return st;
    int64_t n = x->shape[0];
    int64_t c = x->shape[1];
    if (p->labels == NULL && n > 0)
        return tg_error_set(TG_ERR_INVALID, "%s: labels are NULL (expected %" PRId64 " labels)",
                            name, n);
    for (int64_t i = 0; i < n; i++)
        if (p->labels[i] < 0 || p->labels[i] >= c)
            return tg_error_set(TG_ERR_INVALID,
                                "%s: label out of range (got %" PRId32 " in row %" PRId64
                                ", expected 0 to %" PRId64 ")",
                                name, p->labels[i], i, c - 1);
    return TG_OK;
}

static enum tg_status cross_entropy_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct class_loss_params *p = tg_op_ctx_params(ctx);
    (void)n_in;
    (void)shape;
    if (!(p->smoothing >= 0.0f && p->smoothing <= 1.0f))
        return tg_error_set(TG_ERR_INVALID,
                            "tg_cross_entropy_loss: label_smoothing out of range (got %g, "
                            "expected 0 to 1)",
                            (double)p->smoothing);
    *n_dims = 0;
    return check_class_input("tg_cross_entropy_loss", in[0], p);
}

static enum tg_status cross_entropy_op_forward(struct tg_op_ctx *ctx,
                                               struct tg_tensor *out,
                                               struct tg_tensor *const *in,
                                               int n_in)
{
    const struct class_loss_params *p = tg_op_ctx_params(ctx);
    int64_t n = in[0]->shape[0];
    int64_t c = in[0]->shape[1];
    (void)n_in;

    /* Saved when recording (labels and lse), else scratch for the lse. */
    size_t off = lse_offset(n);
    char *state = tg_op_ctx_is_recording(ctx)
                          ? tg_op_ctx_save(ctx, off + (size_t)n * sizeof(double))
                          : tg_op_ctx_scratch(ctx, off + (size_t)n * sizeof(double));
    double *loss = tg_op_ctx_scratch(ctx, (size_t)n * sizeof(double));
    if (state == NULL || loss == NULL)
        return tg_last_status();
    double *lse = (double *)(void *)(state + off);
    if (n > 0)
        memcpy(state, p->labels, (size_t)n * sizeof(int32_t));

    cross_entropy_forward(loss, lse, in[0]->data, p->labels, n, c, p->smoothing);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) // in row order, whatever the threading
        sum += loss[i];
    out->data[0] = (float)(sum * reduce_scale(p->reduction, n));
    return TG_OK;
}

static enum tg_status cross_entropy_op_backward(struct tg_op_ctx *ctx,
                                                const struct tg_tensor *out,
                                                struct tg_tensor *const *in,
                                                int n_in)
{
    const struct class_loss_params *p = tg_op_ctx_params(ctx);
    struct tg_tensor *x = in[0];
    int64_t n = x->shape[0];
    int64_t c = x->shape[1];
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    char *state = tg_op_ctx_save(ctx, 0);
    if (state == NULL)
        return tg_last_status();
    const int32_t *labels = (const int32_t *)(void *)state;
    const double *lse = (const double *)(void *)(state + lse_offset(n));
    float k = (float)((double)out->grad[0] * reduce_scale(p->reduction, n));
    cross_entropy_backward(x->grad, x->data, lse, labels, n, c, p->smoothing, k);
    return TG_OK;
}

static enum tg_status
nll_shape(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    (void)n_in;
    (void)shape;
    *n_dims = 0;
    return check_class_input("tg_nll_loss", in[0], tg_op_ctx_params(ctx));
}

static enum tg_status
nll_op_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct class_loss_params *p = tg_op_ctx_params(ctx);
    int64_t n = in[0]->shape[0];
    (void)n_in;
    if (tg_op_ctx_is_recording(ctx)) {
        int32_t *saved = tg_op_ctx_save(ctx, (size_t)n * sizeof(int32_t));
        if (saved == NULL)
            return tg_last_status();
        if (n > 0)
            memcpy(saved, p->labels, (size_t)n * sizeof(int32_t));
    }
    double sum = nll_forward(in[0]->data, p->labels, n, in[0]->shape[1]);
    out->data[0] = (float)(sum * reduce_scale(p->reduction, n));
    return TG_OK;
}

static enum tg_status nll_op_backward(struct tg_op_ctx *ctx,
                                      const struct tg_tensor *out,
                                      struct tg_tensor *const *in,
                                      int n_in)
{
    const struct class_loss_params *p = tg_op_ctx_params(ctx);
    struct tg_tensor *x = in[0];
    int64_t n = x->shape[0];
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    const int32_t *labels = tg_op_ctx_save(ctx, 0);
    if (labels == NULL)
        return tg_last_status();
    float k = (float)((double)out->grad[0] * reduce_scale(p->reduction, n));
    nll_backward(x->grad, labels, n, x->shape[1], k);
    return TG_OK;
}

static const struct tg_op_def cross_entropy_op = {
        "tg_cross_entropy_loss", sizeof(struct class_loss_params), cross_entropy_shape,
        cross_entropy_op_forward, cross_entropy_op_backward};
static const struct tg_op_def nll_op = {"tg_nll_loss", sizeof(struct class_loss_params), nll_shape,
                                        nll_op_forward, nll_op_backward};

/* ---- Public entry points --------------------------------------------------- */

struct tg_tensor *tg_mse_loss(struct tg_tensor *a, struct tg_tensor *b, enum tg_reduction reduction)
{
    struct mse_params p = {reduction};
    struct tg_tensor *in[2] = {a, b};
    return tg_op_apply(&mse_op, 2, in, &p);
}

struct tg_tensor *tg_cross_entropy_loss(struct tg_tensor *logits,
                                        const int32_t *labels,
                                        enum tg_reduction reduction,
                                        float label_smoothing)
{
    struct class_loss_params p = {labels, reduction, label_smoothing};
    return tg_op_apply(&cross_entropy_op, 1, &logits, &p);
}

struct tg_tensor *
tg_nll_loss(struct tg_tensor *logp, const int32_t *labels, enum tg_reduction reduction)
{
    struct class_loss_params p = {labels, reduction, 0.0f};
    return tg_op_apply(&nll_op, 1, &logp, &p);
}
