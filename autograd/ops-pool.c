/*
 * 2-d max and average pooling of NCHW tensors with PyTorch's output size,
 * padding limit and tie rule (ceil_mode is not supported). Every (n, c) plane
 * is pooled on its own, so large inputs split the planes across threads.
 * Max-pool saves, when recorded, the in-plane index of each window's winner;
 * its backward scatters the gradient to those winners. Average pooling saves
 * nothing: its backward spreads each output gradient evenly over the window.
 */
#include <math.h>

#include "core-impl.h"
#include "ops-impl.h"

/* Sizes of one call: input plane, output plane and the window settings. */
struct pool_geom {
    int64_t planes; // N * C
    int64_t h, w;   // input plane
    int64_t ho, wo; // output plane
    int64_t kh, kw, sh, sw, ph, pw;
    bool include_pad;
};

static struct pool_geom geom_of(const struct tg_tensor *x, const struct tg_pool2d_params *p)
{
    struct pool_geom g = {
            .planes = x->shape[0] * x->shape[1],
            .h = x->shape[2],
            .w = x->shape[3],
            .kh = p->kernel_h,
            .kw = p->kernel_w,
            .sh = p->stride_h,
            .sw = p->stride_w,
            .ph = p->pad_h,
            .pw = p->pad_w,
            .include_pad = p->count_include_pad,
    };
    g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
    g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
    return g;
}

/*
 * Window rows [h0, h1) of output row oh, clipped to the input. Since pad <=
 * kernel / 2 and ceil_mode is off, every window holds at least one input
 * element and never reaches past the far padding.
 */
static void window_rows(const struct pool_geom *g, int64_t oh, int64_t *h0, int64_t *h1)
{
    int64_t start = oh * g->sh - g->ph;
    int64_t end = start + g->kh;
    *h0 = start > 0 ? start : 0;
    *h1 = end < g->h ? end : g->h;
}

static void window_cols(const struct pool_geom *g, int64_t ow, int64_t *w0, int64_t *w1)
{
    int64_t start = ow * g->sw - g->pw;
    int64_t end = start + g->kw;
    *w0 = start > 0 ? start : 0;
    *w1 = end < g->w ? end : g->w;
}

/* ---- Max pooling kernels: outputs first ------------------------------------ */

/*
 * PyTorch's CPU comparison: a strictly greater value replaces the winner, so
 * the first of equal maxima wins; a NaN always replaces it.
 */
static inline void take_max(float v, int64_t at, float *best, int64_t *best_at)
{
    if (v > *best || isnan(v)) {
        *best = v;
        *best_at = at;
    }
}

/* One plane, any window; idx (in-plane winner index per output) may be NULL. */
static void max_pool_plane(float *y, int32_t *idx, const float *x, const struct pool_geom *g)
{
    for (int64_t oh = 0; oh < g->ho; oh++) {
        int64_t h0, h1;
        window_rows(g, oh, &h0, &h1);
        for (int64_t ow = 0; ow < g->wo; ow++) {
            int64_t w0, w1;
            window_cols(g, ow, &w0, &w1);
            float best = -INFINITY; // what padding counts as
            int64_t best_at = h0 * g->w + w0;
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++)
                    take_max(x[ih * g->w + iw], ih * g->w + iw, &best, &best_at);
            y[oh * g->wo + ow] = best;
            if (idx != NULL)
                idx[oh * g->wo + ow] = (int32_t)best_at;
        }
    }
}

/*
 * One plane, 2x2 windows at stride 2 without padding: four loads per output
 * and take_max()'s rule as selects instead of branches, so that the row loop
 * vectorises.
 */
static void max_pool_plane_2x2(float *restrict y,
                               int32_t *restrict idx,
                               const float *restrict x,
                               const struct pool_geom *g)
{
    int32_t w = (int32_t)g->w;
    for (int64_t oh = 0; oh < g->ho; oh++) {
        const float *r0 = x + 2 * oh * g->w;
        const float *r1 = r0 + g->w;
        float *yr = y + oh * g->wo;
        int32_t *ir = idx != NULL ? idx + oh * g->wo : NULL;
        int32_t row_at = (int32_t)(2 * oh) * w;
        for (int64_t ow = 0; ow < g->wo; ow++) {
            float best = r0[2 * ow];
            int32_t off = 0;
            float v = r0[2 * ow + 1];
            bool t = v > best || v != v;
            best = t ? v : best;
            off = t ? 1 : off;
            v = r1[2 * ow];
            t = v > best || v != v;
            best = t ? v : best;
            off = t ? w : off;
            v = r1[2 * ow + 1];
            t = v > best || v != v;
            best = t ? v : best;
            off = t ? w + 1 : off;
            yr[ow] = best;
            if (ir != NULL)
                ir[ow] = row_at + (int32_t)(2 * ow) + off;
        }
    }
}

static bool is_2x2_stride_2(const struct pool_geom *g)
{
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0;
}

/* x: (planes, h, w), y and idx: (planes, ho, wo). */
static void max_pool_forward(float *y, int32_t *idx, const float *x, const struct pool_geom *g)
{
    int64_t in_plane = g->h * g->w;
    int64_t out_plane = g->ho * g->wo;
    bool fast = is_2x2_stride_2(g);
    TG_PARALLEL_LOOP(
            g->planes * in_plane, for (int64_t p = 0; p < g->planes; p++) {
                int32_t *pidx = idx != NULL ? idx + p * out_plane : NULL;
                if (fast)
                    max_pool_plane_2x2(y + p * out_plane, pidx, x + p * in_plane, g);
                else
                    max_pool_plane(y + p * out_plane, pidx, x + p * in_plane, g);
            });
}

/* Each output's gradient goes to its window's winner; planes are disjoint. */
static void
max_pool_backward(float *dx, const float *dy, const int32_t *idx, const struct pool_geom *g)
{
    int64_t in_plane = g->h * g->w;
    int64_t out_plane = g->ho * g->wo;
    TG_PARALLEL_LOOP(
            g->planes * in_plane, for (int64_t p = 0; p < g->planes; p++) {
                float *pdx = dx + p * in_plane;
                for (int64_t o = p * out_plane; o < (p + 1) * out_plane; o++)
                    pdx[idx[o]] += dy[o];
            });
}

/* ---- Average pooling kernels ----------------------------------------------- */

/* Divisor of a window: the full kernel, or only the input elements it covers. */
static float avg_divisor(const struct pool_geom *g, int64_t h0, int64_t h1, int64_t w0, int64_t w1)
{
    return g->include_pad ? (float)(g->kh * g->kw) : (float)((h1 - h0) * (w1 - w0));
}

static void avg_pool_plane(float *y, const float *x, const struct pool_geom *g)
{
    for (int64_t oh = 0; oh < g->ho; oh++) {
        int64_t h0, h1;
        window_rows(g, oh, &h0, &h1);
        for (int64_t ow = 0; ow < g->wo; ow++) {
            int64_t w0, w1;
            window_cols(g, ow, &w0, &w1);
            float sum = 0.0f;
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++)
                    sum += x[ih * g->w + iw];
            y[oh * g->wo + ow] = sum / avg_divisor(g, h0, h1, w0, w1);
        }
    }
}

static void avg_pool_plane_2x2(float *y, const float *x, const struct pool_geom *g)
{
    for (int64_t oh = 0; oh < g->ho; oh++) {
        const float *r0 = x + 2 * oh * g->w;
        const float *r1 = r0 + g->w;
        for (int64_t ow = 0; ow < g->wo; ow++) {
            int64_t c = 2 * ow;
            y[oh * g->wo + ow] = (r0[c] + r0[c + 1] + r1[c] + r1[c + 1]) / 4.0f;
        }
    }
}

static void avg_pool_forward(float *y, const float *x, const struct pool_geom *g)
{
    int64_t in_plane = g->h * g->w;
    int64_t out_plane = g->ho * g->wo;
    bool fast = is_2x2_stride_2(g);
    TG_PARALLEL_LOOP(
            g->planes * in_plane, for (int64_t p = 0; p < g->planes; p++) {
                if (fast)
                    avg_pool_plane_2x2(y + p * out_plane, x + p * in_plane, g);
                else
                    avg_pool_plane(y + p * out_plane, x + p * in_plane, g);
            });
}

/* dy / divisor to every input element of the window. */
static void avg_pool_plane_backward(float *dx, const float *dy, const struct pool_geom *g)
{
    for (int64_t oh = 0; oh < g->ho; oh++) {
        int64_t h0, h1;
        window_rows(g, oh, &h0, &h1);
        for (int64_t ow = 0; ow < g->wo; ow++) {
            int64_t w0, w1;
            window_cols(g, ow, &w0, &w1);
            float share = dy[oh * g->wo + ow] / avg_divisor(g, h0, h1, w0, w1);
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++)
                    dx[ih * g->w + iw] += share;
        }
    }
}

static void avg_pool_backward(float *dx, const float *dy, const struct pool_geom *g)
{
    int64_t in_plane = g->h * g->w;
    int64_t out_plane = g->ho * g->wo;
    TG_PARALLEL_LOOP(g->planes * in_plane,
                     for (int64_t p = 0; p < g->planes; p++)
                             avg_pool_plane_backward(dx + p * in_plane, dy + p * out_plane, g););
}

/* ---- Op table entries ------------------------------------------------------ */

static enum tg_status check_settings(const char *name, const struct tg_pool2d_params *p)
{
    if (p->kernel_h < 1 || p->kernel_w < 1)
        return tg_error_set(TG_ERR_INVALID, "%s: kernel must be positive (got %dx%d)", name,
                            p->kernel_h, p->kernel_w);
    if (p->stride_h < 1 || p->stride_w < 1)
        return tg_error_set(TG_ERR_INVALID, "%s: stride must be positive (got %dx%d)", name,
                            p->stride_h, p->stride_w);
    if (p->pad_h < 0 || p->pad_w < 0)
        return tg_error_set(TG_ERR_INVALID, "%s: padding must not be negative (got %dx%d)", name,
                            p->pad_h, p->pad_w);
    if (p->pad_h > p->kernel_h / 2 || p->pad_w > p->kernel_w / 2)
        return tg_error_set(TG_ERR_INVALID,
                            "%s: padding exceeds half the kernel (got pad %dx%d with kernel %dx%d, "
                            "expected pad <= %dx%d)",
                            name, p->pad_h, p->pad_w, p->kernel_h, p->kernel_w, p->kernel_h / 2,
                            p->kernel_w / 2);
    return TG_OK;
}

/* x: (N, C, H, W) -> (N, C, Ho, Wo); refuses windows larger than the padded input. */
static enum tg_status pool_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const char *name = tg_op_ctx_name(ctx);
    const struct tg_pool2d_params *p = tg_op_ctx_params(ctx);
    const struct tg_tensor *x = in[0];
    char xs[TG_SHAPE_STR];
    (void)n_in;
    if (x->n_dims != 4)
        return tg_error_set(TG_ERR_SHAPE, "%s: input is not 4-d (got %s, expected N x C x H x W)",
                            name, SHAPE(x, xs));
    enum tg_status st = check_settings(name, p);
    if (st != TG_OK)
        return st;
    if (x->shape[2] == 0 || x->shape[3] == 0)
        return tg_error_set(TG_ERR_SHAPE, "%s: empty input plane (got %s, expected H, W >= 1)",
                            name, SHAPE(x, xs));
    if (x->shape[2] + 2 * (int64_t)p->pad_h < p->kernel_h ||
        x->shape[3] + 2 * (int64_t)p->pad_w < p->kernel_w)
        return tg_error_set(TG_ERR_SHAPE,
                            "%s: kernel larger than the padded input (got input %s, pad %dx%d, "
                            "kernel %dx%d)",
                            name, SHAPE(x, xs), p->pad_h, p->pad_w, p->kernel_h, p->kernel_w);
    struct pool_geom g = geom_of(x, p);
    *n_dims = 4;
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = g.ho;
    shape[3] = g.wo;
    return TG_OK;
}

/* As pool_shape(); the saved winner indices are int32, which bounds a plane. */
static enum tg_status max_pool_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct tg_tensor *x = in[0];
    char xs[TG_SHAPE_STR];
    enum tg_status st = pool_shape(ctx, in, n_in, n_dims, shape);
    if (st != TG_OK)
        return st;
    if (x->shape[2] * x->shape[3] > INT32_MAX)
        return tg_error_set(TG_ERR_UNSUPPORTED,
                            "tg_max_pool2d: input plane too large (got %s, expected H * W <= %d)",
                            SHAPE(x, xs), INT32_MAX);
    return TG_OK;
}

static enum tg_status max_pool_op_forward(struct tg_op_ctx *ctx,
                                          struct tg_tensor *out,
                                          struct tg_tensor *const *in,
                                          int n_in)
{
    struct pool_geom g = geom_of(in[0], tg_op_ctx_params(ctx));
    int32_t *idx = NULL;
    (void)n_in;
    if (tg_op_ctx_is_recording(ctx)) {
        idx = tg_op_ctx_save(ctx, (size_t)out->n_elems * sizeof(*idx));
        if (idx == NULL)
            return tg_last_status();
    }
    max_pool_forward(out->data, idx, in[0]->data, &g);
    return TG_OK;
}

static enum tg_status max_pool_op_backward(struct tg_op_ctx *ctx,
                                           const struct tg_tensor *out,
                                           struct tg_tensor *const *in,
                                           int n_in)
{
    struct tg_tensor *x = in[0];
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    const int32_t *idx = tg_op_ctx_save(ctx, 0);
    if (idx == NULL)
        return tg_last_status();
    struct pool_geom g = geom_of(x, tg_op_ctx_params(ctx));
    max_pool_backward(x->grad, out->grad, idx, &g);
    return TG_OK;
}

static enum tg_status avg_pool_op_forward(struct tg_op_ctx *ctx,
                                          struct tg_tensor *out,
                                          struct tg_tensor *const *in,
                                          int n_in)
{
    struct pool_geom g = geom_of(in[0], tg_op_ctx_params(ctx));
    (void)n_in;
    avg_pool_forward(out->data, in[0]->data, &g);
    return TG_OK;
}

static enum tg_status avg_pool_op_backward(struct tg_op_ctx *ctx,
                                           const struct tg_tensor *out,
                                           struct tg_tensor *const *in,
                                           int n_in)
{
    struct tg_tensor *x = in[0];
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    struct pool_geom g = geom_of(x, tg_op_ctx_params(ctx));
    avg_pool_backward(x->grad, out->grad, &g);
    return TG_OK;
}

static const struct tg_op_def max_pool2d_op = {"tg_max_pool2d", sizeof(struct tg_pool2d_params),
                                               max_pool_shape, max_pool_op_forward,
                                               max_pool_op_backward};
static const struct tg_op_def avg_pool2d_op = {"tg_avg_pool2d", sizeof(struct tg_pool2d_params),
                                               pool_shape, avg_pool_op_forward,
                                               avg_pool_op_backward};

/* ---- Public entry points --------------------------------------------------- */

struct tg_tensor *tg_max_pool2d(struct tg_tensor *x, const struct tg_pool2d_params *p)
{
    return tg_op_apply(&max_pool2d_op, 1, &x, p);
}

struct tg_tensor *tg_avg_pool2d(struct tg_tensor *x, const struct tg_pool2d_params *p)
{
    return tg_op_apply(&avg_pool2d_op, 1, &x, p);
}
