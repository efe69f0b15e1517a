/*
 * Reductions: sum and mean of all elements or along one axis, and softmax and
 * log-softmax along one axis.
 *
 * Along an axis of length L a tensor is viewed as (outer, L, inner): outer is
 * the product of the sizes before the axis, inner of those after it. Sums are
 * accumulated in double, in an order that does not depend on the number of
 * threads, so large reductions stay accurate and reproducible. Softmax
 * subtracts the maximum of each lane before exponentiating and works in double,
 * so logits of any finite magnitude (1e4 and beyond) give results correct to
 * float precision.
 */
#include <math.h>
#include <string.h>

#include "core-impl.h"
#include "ops-impl.h"

/* Elements per block of the full sum; blocks are summed in parallel. */
#define SUM_BLOCK 4096
/* Inner elements per task of an axis sum. */
#define AXIS_CHUNK 1024

struct axis_params {
    int axis;
    bool keepdim; // reductions only
};

/* ---- Geometry -------------------------------------------------------------- */

/*
 * Check that axis names a dimension of x and normalise it. A 0-d tensor
 * accepts axis 0 or -1, as in PyTorch, and behaves like one of shape (1).
 */
static enum tg_status
axis_check(const struct tg_op_ctx *ctx, const struct tg_tensor *x, int axis, int *norm)
{
    int rank = x->n_dims > 0 ? x->n_dims : 1;
    *norm = tg_axis_norm(axis, rank);
    if (*norm >= 0)
        return TG_OK;
    char xs[TG_SHAPE_STR];
    return tg_error_set(TG_ERR_INVALID, "%s: axis %d out of range (x: %s, expected -%d to %d)",
                        ctx->op->name, axis, SHAPE(x, xs), rank, rank - 1);
}

/* View x as (outer, len, inner) around axis (already normalised). */
static void
axis_split(const struct tg_tensor *x, int axis, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    *len = x->n_dims > 0 ? x->shape[axis] : 1;
    for (int d = 0; d < axis; d++)
        *outer *= x->shape[d];
    for (int d = axis + 1; d < x->n_dims; d++)
        *inner *= x->shape[d];
}

static const struct axis_params *axis_params_of(const struct tg_op_ctx *ctx)
{
    return tg_op_ctx_params(ctx);
}

/* ---- Shape checks ---------------------------------------------------------- */

static enum tg_status full_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    (void)ctx;
    (void)in;
    (void)n_in;
    (void)shape;
    *n_dims = 0;
    return TG_OK;
}

static enum tg_status axis_reduce_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct tg_tensor *x = in[0];
    const struct axis_params *p = axis_params_of(ctx);
    int axis;
    (void)n_in;
    enum tg_status st = axis_check(ctx, x, p->axis, &axis);
    if (st != TG_OK)
        return st;

    /* A 0-d input gives a 0-d output, keepdim or not (PyTorch does the same). */
    int n = 0;
    for (int d = 0; d < x->n_dims; d++) {
        if (d != axis)
            shape[n++] = x->shape[d];
        else if (p->keepdim)
            shape[n++] = 1;
    }
    *n_dims = n;
    return TG_OK;
}

static enum tg_status softmax_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    int axis;
    enum tg_status st = axis_check(ctx, in[0], axis_params_of(ctx)->axis, &axis);
    if (st != TG_OK)
        return st;
    return tg_shape_same_as_first(ctx, in, n_in, n_dims, shape);
}

/* ---- Kernels: outputs first -------------------------------------------------- */

/* Sum of n floats in double, in index order. */
static double sum_run(const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i];
    return s;
}

/* Sum of all n elements: blocks in parallel into part, then the block sums in order. */
static double sum_all(const float *x, int64_t n, double *part)
{
    int64_t n_blocks = (n + SUM_BLOCK - 1) / SUM_BLOCK;

    TG_PARALLEL_LOOP(
            n, for (int64_t b = 0; b < n_blocks; b++) {
                int64_t i0 = b * SUM_BLOCK;
                part[b] = sum_run(x + i0, n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK);
            });
    double s = 0.0;
    for (int64_t b = 0; b < n_blocks; b++)
        s += part[b];
    return s;
}

/* dx += g everywhere. */
static void fill_add_backward(float *dx, float g, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += g;);
}

/*
 * y[o, i] = sum_l x[o, l, i] / div, for x (outer, len, inner). With inner > 1
 * each task adds whole rows of one inner chunk into acc (double, n_out).
 */
static void sum_axis_forward(float *y,
                             const float *x,
                             int64_t outer,
                             int64_t len,
                             int64_t inner,
                             double div,
                             double *acc)
{
    if (inner == 1) {
        TG_PARALLEL_LOOP(outer * len, for (int64_t o = 0; o < outer; o++) y[o] =
                                              (float)(sum_run(x + o * len, len) / div););
        return;
    }
    int64_t n_chunks = (inner + AXIS_CHUNK - 1) / AXIS_CHUNK;

    TG_PARALLEL_LOOP(
            outer * len * inner, for (int64_t t = 0; t < outer * n_chunks; t++) {
                int64_t o = t / n_chunks;
                int64_t i0 = (t % n_chunks) * AXIS_CHUNK;
                int64_t n = inner - i0 < AXIS_CHUNK ? inner - i0 : AXIS_CHUNK;
                double *a = acc + o * inner + i0;
                memset(a, 0, (size_t)n * sizeof(double));
                for (int64_t l = 0; l < len; l++) {
                    const float *row = x + (o * len + l) * inner + i0;
                    for (int64_t i = 0; i < n; i++)
                        a[i] += (double)row[i];
                }
                for (int64_t i = 0; i < n; i++)
                    y[o * inner + i0 + i] = (float)(a[i] / div);
            });
}

/* dx[o, l, i] += dy[o, i] * scale. */
static void sum_axis_backward(
        float *dx, const float *dy, int64_t outer, int64_t len, int64_t inner, float scale)
{
    TG_PARALLEL_LOOP(
            outer * len * inner, for (int64_t r = 0; r < outer * len; r++) {
                float *d = dx + r * inner;
                const float *g = dy + (r / len) * inner;
                for (int64_t i = 0; i < inner; i++)
                    d[i] += g[i] * scale;
            });
}

/*
 * Softmax or log-softmax of one lane: n values step apart. exp and the sum
 * run in double on x - max, so nothing overflows. Log-softmax is rounded to
 * float once; softmax keeps each exp in y as a float until the sum is known,
 * so it is rounded twice (within one ulp) for one exp per element.
 */
static void softmax_lane(float *y, const float *x, int64_t n, int64_t step, bool log_out)
{
    float m = -INFINITY;
    for (int64_t l = 0; l < n; l++)
        if (x[l * step] > m)
            m = x[l * step];
    double s = 0.0;

    if (log_out) {
        for (int64_t l = 0; l < n; l++)
            s += exp((double)x[l * step] - (double)m);
        double shift = (double)m + log(s);
        for (int64_t l = 0; l < n; l++)
            y[l * step] = (float)((double)x[l * step] - shift);
        return;
    }
    for (int64_t l = 0; l < n; l++) {
        double e = exp((double)x[l * step] - (double)m);
        y[l * step] = (float)e;
        s += e;
    }
    for (int64_t l = 0; l < n; l++)
        y[l * step] = (float)((double)y[l * step] / s);
}

/* y = softmax or log-softmax of x (outer, len, inner) along len; a task per lane. */
static void
softmax_forward(float *y, const float *x, int64_t outer, int64_t len, int64_t inner, bool log_out)
{
    TG_PARALLEL_LOOP(
            outer * len * inner, for (int64_t t = 0; t < outer * inner; t++) {
                int64_t off = (t / inner) * len * inner + t % inner;
                softmax_lane(y + off, x + off, len, inner, log_out);
            });
}

/*
 * One lane of backward, from the saved output y:
 * softmax:     dx = y (g - sum(g y));
 * log-softmax: dx = g - exp(y) sum(g), exp(y) being the softmax.
 */
static void softmax_lane_backward(
        float *dx, const float *dy, const float *y, int64_t n, int64_t step, bool log_out)
{
    double s = 0.0;
    for (int64_t l = 0; l < n; l++)
        s += log_out ? (double)dy[l * step] : (double)dy[l * step] * (double)y[l * step];
    float sf = (float)s;

    for (int64_t l = 0; l < n; l++) {
        int64_t k = l * step;
        if (log_out)
            dx[k] += dy[k] - expf(y[k]) * sf;
        else
            dx[k] += y[k] * (dy[k] - sf);
    }
}

static void softmax_backward(float *dx,
                             const float *dy,
                             const float *y,
                             int64_t outer,
                             int64_t len,
                             int64_t inner,
                             bool log_out)
{
    TG_PARALLEL_LOOP(
            outer * len * inner, for (int64_t t = 0; t < outer * inner; t++) {
                int64_t off = (t / inner) * len * inner + t % inner;
                softmax_lane_backward(dx + off, dy + off, y + off, len, inner, log_out);
            });
}

/* ---- Op table entries ------------------------------------------------------ */

static enum tg_status
full_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in);
static enum tg_status full_backward(struct tg_op_ctx *ctx,
                                    const struct tg_tensor *out,
                                    struct tg_tensor *const *in,
                                    int n_in);
static enum tg_status
axis_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in);
static enum tg_status axis_backward(struct tg_op_ctx *ctx,
                                    const struct tg_tensor *out,
                                    struct tg_tensor *const *in,
                                    int n_in);
static enum tg_status softmax_forward_cb(struct tg_op_ctx *ctx,
                                         struct tg_tensor *out,
                                         struct tg_tensor *const *in,
                                         int n_in);
static enum tg_status softmax_backward_cb(struct tg_op_ctx *ctx,
                                          const struct tg_tensor *out,
                                          struct tg_tensor *const *in,
                                          int n_in);

static const struct tg_op_def sum_op = {"tg_sum", 0, full_shape, full_forward, full_backward};
static const struct tg_op_def mean_op = {"tg_mean", 0, full_shape, full_forward, full_backward};
static const struct tg_op_def sum_axis_op = {"tg_sum_axis", sizeof(struct axis_params),
                                             axis_reduce_shape, axis_forward, axis_backward};
static const struct tg_op_def mean_axis_op = {"tg_mean_axis", sizeof(struct axis_params),
                                              axis_reduce_shape, axis_forward, axis_backward};
static const struct tg_op_def softmax_op = {"tg_softmax", sizeof(struct axis_params), softmax_shape,
                                            softmax_forward_cb, softmax_backward_cb};
static const struct tg_op_def log_softmax_op = {"tg_log_softmax", sizeof(struct axis_params),
                                                softmax_shape, softmax_forward_cb,
                                                softmax_backward_cb};

static enum tg_status
full_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct tg_tensor *x = in[0];
    int64_t n_blocks = (x->n_elems + SUM_BLOCK - 1) / SUM_BLOCK;
    (void)n_in;
    double *part = tg_op_ctx_scratch(ctx, (size_t)n_blocks * sizeof(double));
    if (part == NULL)
        return TG_ERR_NOMEM;
    double s = sum_all(x->data, x->n_elems, part);
    /* The mean of nothing is NaN (0 / 0), as in PyTorch. */
    out->data[0] = (float)(ctx->op == &mean_op ? s / (double)x->n_elems : s);
    return TG_OK;
}

static enum tg_status full_backward(struct tg_op_ctx *ctx,
                                    const struct tg_tensor *out,
                                    struct tg_tensor *const *in,
                                    int n_in)
{
    struct tg_tensor *x = in[0];
    float g = out->grad[0];
    (void)n_in;
    if (x->grad == NULL || x->n_elems == 0)
        return TG_OK;
    if (ctx->op == &mean_op)
        g = (float)((double)g / (double)x->n_elems);
    fill_add_backward(x->grad, g, x->n_elems);
    return TG_OK;
}

static enum tg_status
axis_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct tg_tensor *x = in[0];
    int axis = tg_axis_norm(axis_params_of(ctx)->axis, x->n_dims > 0 ? x->n_dims : 1);
    int64_t outer, len, inner;
    (void)n_in;
    axis_split(x, axis, &outer, &len, &inner);
    if (out->n_elems == 0)
        return TG_OK;
    double *acc = NULL;
    if (inner > 1) {
        acc = tg_op_ctx_scratch(ctx, (size_t)out->n_elems * sizeof(double));
        if (acc == NULL)
            return TG_ERR_NOMEM;
    }
    /* The mean over an empty axis is NaN (0 / 0), as in PyTorch. */
    double div = ctx->op == &mean_axis_op ? (double)len : 1.0;
    sum_axis_forward(out->data, x->data, outer, len, inner, div, acc);
    return TG_OK;
}

static enum tg_status axis_backward(struct tg_op_ctx *ctx,
                                    const struct tg_tensor *out,
                                    struct tg_tensor *const *in,
                                    int n_in)
{
    struct tg_tensor *x = in[0];
    int axis = tg_axis_norm(axis_params_of(ctx)->axis, x->n_dims > 0 ? x->n_dims : 1);
    int64_t outer, len, inner;
    (void)n_in;
    if (x->grad == NULL || x->n_elems == 0)
        return TG_OK;
    axis_split(x, axis, &outer, &len, &inner);
    float scale = ctx->op == &mean_axis_op ? (float)(1.0 / (double)len) : 1.0f;
    sum_axis_backward(x->grad, out->grad, outer, len, inner, scale);
    return TG_OK;
}

static enum tg_status softmax_forward_cb(struct tg_op_ctx *ctx,
                                         struct tg_tensor *out,
                                         struct tg_tensor *const *in,
                                         int n_in)
{
    const struct tg_tensor *x = in[0];
    int axis = tg_axis_norm(axis_params_of(ctx)->axis, x->n_dims > 0 ? x->n_dims : 1);
    int64_t outer, len, inner;
    (void)n_in;
    axis_split(x, axis, &outer, &len, &inner);
    softmax_forward(out->data, x->data, outer, len, inner, ctx->op == &log_softmax_op);
    return TG_OK;
}

static enum tg_status softmax_backward_cb(struct tg_op_ctx *ctx,
                                          const struct tg_tensor *out,
                                          struct tg_tensor *const *in,
                                          int n_in)
{
    struct tg_tensor *x = in[0];
    int axis = tg_axis_norm(axis_params_of(ctx)->axis, x->n_dims > 0 ? x->n_dims : 1);
    int64_t outer, len, inner;
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    axis_split(x, axis, &outer, &len, &inner);
    softmax_backward(x->grad, out->grad, out->data, outer, len, inner, ctx->op == &log_softmax_op);
    return TG_OK;
}

/* ---- Public entry points --------------------------------------------------- */

struct tg_tensor *tg_sum(struct tg_tensor *x)
{
    return tg_op_apply(&sum_op, 1, &x, NULL);
}

struct tg_tensor *tg_mean(struct tg_tensor *x)
{
    return tg_op_apply(&mean_op, 1, &x, NULL);
}

struct tg_tensor *tg_sum_axis(struct tg_tensor *x, int axis, bool keepdim)
{
    struct axis_params p = {axis, keepdim};
    return tg_op_apply(&sum_axis_op, 1, &x, &p);
}

struct tg_tensor *tg_mean_axis(struct tg_tensor *x, int axis, bool keepdim)
{
    struct axis_params p = {axis, keepdim};
    return tg_op_apply(&mean_axis_op, 1, &x, &p);
}

struct tg_tensor *tg_softmax(struct tg_tensor *x, int axis)
{
    struct axis_params p = {axis, false};
    return tg_op_apply(&softmax_op, 1, &x, &p);
}

struct tg_tensor *tg_log_softmax(struct tg_tensor *x, int axis)
{
    struct axis_params p = {axis, false};
    return tg_op_apply(&log_softmax_op, 1, &x, &p);
}
