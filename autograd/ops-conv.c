/*
 * 2-d convolution (cross-correlation, as PyTorch's conv2d) by im2col + GEMM.
 *
 * Layouts: x (N, C, H, W), w (O, Cg, KH, KW) with Cg = C / groups, bias (O),
 * y (N, O, Ho, Wo). Per image n and group g, with Og = O / groups,
 * Kg = Cg KH KW and P = Ho Wo:
 *   cols (Kg, P): cols[(c KH + i) KW + j][oh Wo + ow] = x[n, g Cg + c, ih, iw]
 *       with ih = oh sh - ph + i dh, iw = ow sw - pw + j dw, 0 outside x;
 *   y[n, g Og .. g Og + Og) (Og, P) = W_g (Og, Kg) cols + bias per row.
 * Backward, per image and group (each part only when its grad exists):
 *   dW_g += dY_g cols^T;  dcols = W_g^T dY_g, added back into dx by col2im;
 *   db[o] += sum over n and p of dY[n, o, p].
 *
 * Backward recomputes the columns instead of saving them: saving would keep
 * N groups Kg P floats per call on the tape (40 MB for a 5x5 32 -> 64 layer on
 * 14x14 images in batches of 64), while im2col is a copy that costs a small
 * fraction of the GEMM it feeds. A 1x1 kernel with stride 1 and no padding
 * needs no columns: x itself is the column matrix.
 *
 * Threads: images are processed one after the other and each product is
 * threaded inside tg_sgemm(), which splits C among threads; im2col, col2im and
 * the bias sum are split over rows or channels. No sum is split across
 * threads (dW accumulates image by image with beta = 1), so every result is
 * bit-identical from run to run and does not depend on the thread count as
 * long as tg_sgemm()'s do not. Splitting the batch over threads instead would
 * run products concurrently, and tg_sgemm() keeps one set of packing buffers
 * per process: a second concurrent product allocates its own on every call,
 * which a warm training step must not do.
 */
#include <string.h>

#include <tapegrad/gemm.h>

#include "core-impl.h"
#include "ops-impl.h"

struct conv_geom {
    int64_t n, c, h, w;     // x: (N, C, H, W)
    int64_t o, kh, kw;      // w: (O, Cg, KH, KW)
    int64_t ho, wo;         // y: (N, O, Ho, Wo)
    int64_t groups, cg, og; // groups and channels per group
    int64_t kg, p;          // columns: (Kg, P) = (Cg KH KW, Ho Wo)
    int64_t sh, sw, ph, pw, dh, dw;
    bool direct; // 1x1 kernel, stride 1, no padding: cols is x itself
};

/* Output size along one axis, or 0 when the dilated kernel does not fit. */
static int64_t out_size(int64_t in, int64_t pad, int64_t dil, int64_t k, int64_t stride)
{
    int64_t room = in + 2 * pad - 1; // <= 2^62 for any tensor that fits in memory
    if (room < 0 || k - 1 > room / dil)
        return 0;
    return (room - dil * (k - 1)) / stride + 1;
}

static void geom_init(struct conv_geom *g,
                      const struct tg_tensor *x,
                      const struct tg_tensor *w,
                      const struct tg_conv2d_params *p)
{
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->o = w->shape[0];
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    g->sh = p->stride_h;
    g->sw = p->stride_w;
    g->ph = p->pad_h;
    g->pw = p->pad_w;
    g->dh = p->dilation_h;
    g->dw = p->dilation_w;
    g->groups = p->groups;
    g->cg = w->shape[1];
    g->og = g->o / g->groups;
    g->ho = out_size(g->h, g->ph, g->dh, g->kh, g->sh);
    g->wo = out_size(g->w, g->pw, g->dw, g->kw, g->sw);
    g->kg = g->cg * g->kh * g->kw;
    g->p = g->ho * g->wo;
    g->direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Scratch of one call: the column matrix and, with padding, the padded planes. */
struct conv_ws {
    float *cols; // (Kg, P), reused for dcols in backward; NULL when direct
    float *xpad; // (Cg, H + 2 ph, W + 2 pw), or NULL without padding
};

/* ---- Kernels: outputs first ---------------------------------------------- */

/* Smallest q >= 0 with q * d >= a, for d > 0 and any sign of a. */
static int64_t ceil_div(int64_t a, int64_t d)
{
    return a >= 0 ? (a + d - 1) / d : -(-a / d);
}

/*
 * Output columns [lo, hi) whose input column ow * stride + off lies in
 * [0, size); the others read padding.
 */
static void
valid_span(int64_t *lo, int64_t *hi, int64_t off, int64_t stride, int64_t size, int64_t n_out)
{
    int64_t a = ceil_div(-off, stride);
    int64_t b = ceil_div(size - off, stride);
    *lo = a < 0 ? 0 : a > n_out ? n_out : a;
    *hi = b < *lo ? *lo : b > n_out ? n_out : b;
}

/* xp (Cg, Hp, Wp) = the planes of xg (Cg, H, W) inside a border of ph, pw zeros. */
static void pad_planes(float *xp, const float *xg, const struct conv_geom *g)
{
    int64_t hp = g->h + 2 * g->ph;
    int64_t wp = g->w + 2 * g->pw;
    memset(xp, 0, (size_t)(g->cg * hp * wp) * sizeof(float));
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t ih = 0; ih < g->h; ih++)
            memcpy(xp + (c * hp + ih + g->ph) * wp + g->pw, xg + (c * g->h + ih) * g->w,
                   (size_t)g->w * sizeof(float));
}

/*
 * cols (Kg, P) from one group's channels xg (Cg, H, W). With padding, xg is
 * first copied into xpad (Cg, H + 2 ph, W + 2 pw) with zero borders, so that
 * every tap reads in bounds: row (c, i, j) of cols is then a strided 2-d copy
 * of plane c, one memcpy per output row when the stride is 1.
 */
static void im2col(float *cols, float *xpad, const float *xg, const struct conv_geom *g)
{
    int64_t hp = g->h + 2 * g->ph;
    int64_t wp = g->w + 2 * g->pw;
    const float *xs = xg;
    if (g->ph > 0 || g->pw > 0) {
        pad_planes(xpad, xg, g);
        xs = xpad;
    }
    int64_t taps = g->kh * g->kw;
    int64_t total = g->kg * g->p;
    (void)total; // only read by the OpenMP clause
    TG_PARALLEL_LOOP(
            total, for (int64_t r = 0; r < g->kg; r++) {
                int64_t c = r / taps;
                int64_t i = r % taps / g->kw;
                int64_t j = r % g->kw;
                const float *src = xs + (c * hp + i * g->dh) * wp + j * g->dw;
                float *row = cols + r * g->p;
                for (int64_t oh = 0; oh < g->ho; oh++, row += g->wo) {
                    const float *s = src + oh * g->sh * wp;
                    if (g->sw == 1) {
                        memcpy(row, s, (size_t)g->wo * sizeof(float));
                    } else {
                        for (int64_t ow = 0; ow < g->wo; ow++)
                            row[ow] = s[ow * g->sw];
                    }
                }
            });
}

/*
 * Add row (i, j) of dcols into channel plane dxc (H, W): the adjoint of that
 * row's im2col copy, skipping the padding instead of staging it.
 */
static void
col2im_row(float *dxc, const float *row, int64_t i, int64_t j, const struct conv_geom *g)
{
    int64_t offh = i * g->dh - g->ph;
    int64_t offw = j * g->dw - g->pw;
    int64_t lo, hi;
    valid_span(&lo, &hi, offw, g->sw, g->w, g->wo);
    for (int64_t oh = 0; oh < g->ho; oh++, row += g->wo) {
        int64_t ih = oh * g->sh + offh;
        if (ih < 0 || ih >= g->h)
            continue;
        float *dxr = dxc + ih * g->w;
        if (g->sw == 1) {
            for (int64_t ow = lo; ow < hi; ow++)
                dxr[ow + offw] += row[ow];
        } else {
            for (int64_t ow = lo; ow < hi; ow++)
                dxr[ow * g->sw + offw] += row[ow];
        }
    }
}

/*
 * dxg (Cg, H, W) += col2im(dcols (Kg, P)). The taps of one channel overlap in
 * dx, so threads split channels and add each channel's taps in order.
 */
static void col2im(float *dxg, const float *dcols, const struct conv_geom *g)
{
    int64_t total = g->kg * g->p;
    (void)total; // only read by the OpenMP clause
    TG_PARALLEL_LOOP(
            total, for (int64_t c = 0; c < g->cg; c++) for (int64_t i = 0; i < g->kh;
                                                            i++) for (int64_t j = 0; j < g->kw; j++)
                           col2im_row(dxg + c * g->h * g->w,
                                      dcols + ((c * g->kh + i) * g->kw + j) * g->p, i, j, g););
}

/* One image: y (O, P) = W_g cols_g per group, plus bias (O) or NULL; x (C, H, W). */
static enum tg_status conv_image_forward(float *y,
                                         const float *x,
                                         const float *w,
                                         const float *bias,
                                         const struct conv_ws *ws,
                                         const struct conv_geom *g)
{
    for (int64_t gi = 0; gi < g->groups; gi++) {
        const float *xg = x + gi * g->cg * g->h * g->w;
        float *yg = y + gi * g->og * g->p;
        const float *src = xg;
        if (!g->direct) {
            im2col(ws->cols, ws->xpad, xg, g);
            src = ws->cols;
        }
        float beta = 0.0f;
        if (bias != NULL) {
            for (int64_t o = 0; o < g->og; o++)
                for (int64_t q = 0; q < g->p; q++)
                    yg[o * g->p + q] = bias[gi * g->og + o];
            beta = 1.0f;
        }
        enum tg_status st = tg_sgemm(false, false, g->og, g->p, g->kg, 1.0f, w + gi * g->og * g->kg,
                                     g->kg, src, g->p, beta, yg, g->p);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

/*
 * One image: dw (O, Kg) += dY_g cols_g^T and dx (C, H, W) += col2im(W_g^T dY_g)
 * per group; dw or dx NULL skips that part. cols is reused for dcols.
 */
static enum tg_status conv_image_backward(float *dx,
                                          float *dw,
                                          const float *dy,
                                          const float *x,
                                          const float *w,
                                          const struct conv_ws *ws,
                                          const struct conv_geom *g)
{
    float *cols = ws->cols;
    enum tg_status st = TG_OK;
    for (int64_t gi = 0; gi < g->groups && st == TG_OK; gi++) {
        int64_t xoff = gi * g->cg * g->h * g->w;
        const float *dyg = dy + gi * g->og * g->p;
        const float *wg = w + gi * g->og * g->kg;

        /* dW_g (Og, Kg) += dY_g (Og, P) cols^T (P, Kg) */
        if (dw != NULL) {
            const float *src = x + xoff;
            if (!g->direct) {
                im2col(cols, ws->xpad, x + xoff, g);
                src = cols;
            }
            st = tg_sgemm(false, true, g->og, g->kg, g->p, 1.0f, dyg, g->p, src, g->p, 1.0f,
                          dw + gi * g->og * g->kg, g->kg);
        }

        /* dcols (Kg, P) = W_g^T (Kg, Og) dY_g (Og, P); direct: straight into dx */
        if (dx != NULL && st == TG_OK && g->direct) {
            st = tg_sgemm(true, false, g->kg, g->p, g->og, 1.0f, wg, g->kg, dyg, g->p, 1.0f,
                          dx + xoff, g->p);
        } else if (dx != NULL && st == TG_OK) {
            st = tg_sgemm(true, false, g->kg, g->p, g->og, 1.0f, wg, g->kg, dyg, g->p, 0.0f, cols,
                          g->p);
            if (st == TG_OK)
                col2im(dx + xoff, cols, g);
        }
    }
    return st;
}

/* Sum of r[0..n) in a fixed order, over eight running sums (vectorises, no serial chain). */
static float row_sum(const float *r, int64_t n)
{
    float s[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int64_t q = 0;
    for (; q + 8 <= n; q += 8)
        for (int k = 0; k < 8; k++)
            s[k] += r[q + k];
    float tail = 0.0f;
    for (; q < n; q++)
        tail += r[q];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}

/* db (O) += sum over images and positions of dy (N, O, P); fixed order per channel. */
static void bias_backward(float *db, const float *dy, const struct conv_geom *g)
{
    int64_t total = g->n * g->o * g->p;
    (void)total; // only read by the OpenMP clause
    TG_PARALLEL_LOOP(
            total, for (int64_t o = 0; o < g->o; o++) {
                double sum = 0.0;
                for (int64_t n = 0; n < g->n; n++)
                    sum += (double)row_sum(dy + (n * g->o + o) * g->p, g->p);
                db[o] += (float)sum;
            });
}

/* ---- Shape check ----------------------------------------------------------- */

static enum tg_status check_params(const struct tg_conv2d_params *p)
{
    if (p->stride_h < 1 || p->stride_w < 1)
        return tg_error_set(TG_ERR_INVALID, "tg_conv2d: stride must be >= 1 (got %dx%d)",
                            p->stride_h, p->stride_w);
    if (p->pad_h < 0 || p->pad_w < 0)
        return tg_error_set(TG_ERR_INVALID, "tg_conv2d: padding must be >= 0 (got %dx%d)", p->pad_h,
                            p->pad_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return tg_error_set(TG_ERR_INVALID, "tg_conv2d: dilation must be >= 1 (got %dx%d)",
                            p->dilation_h, p->dilation_w);
    if (p->groups < 1)
        return tg_error_set(TG_ERR_INVALID, "tg_conv2d: groups must be >= 1 (got %d)", p->groups);
    return TG_OK;
}

/* Ranks, kernel size and channel counts of x, w and the optional bias. */
static enum tg_status check_tensors(const struct tg_tensor *x,
                                    const struct tg_tensor *w,
                                    const struct tg_tensor *b,
                                    int groups)
{
    char xs[TG_SHAPE_STR], ws[TG_SHAPE_STR], bs[TG_SHAPE_STR];
    if (x->n_dims != 4)
        return tg_error_set(TG_ERR_SHAPE, "tg_conv2d: input must be 4-d (N, C, H, W) (x: %s)",
                            SHAPE(x, xs));
    if (w->n_dims != 4)
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_conv2d: weight must be 4-d (O, C / groups, KH, KW) (w: %s)",
                            SHAPE(w, ws));
    if (w->n_elems == 0)
        return tg_error_set(TG_ERR_SHAPE, "tg_conv2d: weight has a zero size (w: %s)",
                            SHAPE(w, ws));
    if (x->shape[1] % groups != 0)
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_conv2d: %d groups do not divide the %lld input channels (x: %s)",
                            groups, (long long)x->shape[1], SHAPE(x, xs));
    if (w->shape[0] % groups != 0)
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_conv2d: %d groups do not divide the %lld output channels (w: %s)",
                            groups, (long long)w->shape[0], SHAPE(w, ws));
    if (w->shape[1] * groups != x->shape[1])
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_conv2d: input has %lld channels, weight expects %lld (x: %s, w: "
                            "%s, groups %d)",
                            (long long)x->shape[1], (long long)(w->shape[1] * groups), SHAPE(x, xs),
                            SHAPE(w, ws), groups);
    if (b != NULL && (b->n_dims != 1 || b->shape[0] != w->shape[0]))
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_conv2d: bias must have one element per output channel (bias: "
                            "%s, expected %lld)",
                            SHAPE(b, bs), (long long)w->shape[0]);
    return TG_OK;
}

static const struct tg_conv2d_params *conv_params(struct tg_op_ctx *ctx)
{
    return tg_op_ctx_params(ctx);
}

static enum tg_status conv_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct tg_conv2d_params *p = conv_params(ctx);
    enum tg_status st = check_params(p);
    if (st == TG_OK)
        st = check_tensors(in[0], in[1], n_in > 2 ? in[2] : NULL, p->groups);
    if (st != TG_OK)
        return st;

    struct conv_geom g;
    geom_init(&g, in[0], in[1], p);
    if (g.ho < 1 || g.wo < 1)
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_conv2d: output would be %lldx%lld (input %lldx%lld, padding "
                            "%lldx%lld, kernel %lldx%lld, dilation %lldx%lld, stride %lldx%lld)",
                            (long long)g.ho, (long long)g.wo, (long long)g.h, (long long)g.w,
                            (long long)g.ph, (long long)g.pw, (long long)g.kh, (long long)g.kw,
                            (long long)g.dh, (long long)g.dw, (long long)g.sh, (long long)g.sw);
    /* Scratch of take_ws(), estimated in double so that the estimate cannot overflow. */
    double ws = (double)g.kg * (double)g.p +
                (double)g.cg * (double)(g.h + 2 * g.ph) * (double)(g.w + 2 * g.pw);
    if (ws * (double)sizeof(float) > (double)(SIZE_MAX / 2))
        return tg_error_set(TG_ERR_NOMEM,
                            "tg_conv2d: im2col scratch of %.3g floats is too large (columns "
                            "%lld x %lld)",
                            ws, (long long)g.kg, (long long)g.p);

    *n_dims = 4;
    shape[0] = g.n;
    shape[1] = g.o;
    shape[2] = g.ho;
    shape[3] = g.wo;
    return TG_OK;
}

/* ---- Op table entry -------------------------------------------------------- */

/* Scratch for im2col (none for the direct case); false when out of memory. */
static bool take_ws(struct tg_op_ctx *ctx, const struct conv_geom *g, struct conv_ws *ws)
{
    ws->cols = NULL;
    ws->xpad = NULL;
    if (g->direct)
        return true;
    int64_t n_cols = (g->kg * g->p + 15) / 16 * 16; // xpad starts on a cache line
    int64_t n_pad = 0;
    if (g->ph > 0 || g->pw > 0)
        n_pad = g->cg * (g->h + 2 * g->ph) * (g->w + 2 * g->pw);
    ws->cols = tg_op_ctx_scratch(ctx, (size_t)(n_cols + n_pad) * sizeof(float));
    if (ws->cols != NULL && n_pad > 0)
        ws->xpad = ws->cols + n_cols;
    return ws->cols != NULL;
}

static enum tg_status
conv_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct tg_tensor *x = in[0];
    const float *bias = n_in > 2 ? in[2]->data : NULL;
    struct conv_geom g;
    geom_init(&g, x, in[1], conv_params(ctx));
    struct conv_ws ws;
    if (!take_ws(ctx, &g, &ws))
        return TG_ERR_NOMEM;

    /* x: (N, C, H, W) -> y: (N, O, Ho, Wo), one image at a time */
    for (int64_t n = 0; n < g.n; n++) {
        enum tg_status st =
                conv_image_forward(out->data + n * g.o * g.p, x->data + n * g.c * g.h * g.w,
                                   in[1]->data, bias, &ws, &g);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

static enum tg_status conv_backward(struct tg_op_ctx *ctx,
                                    const struct tg_tensor *out,
                                    struct tg_tensor *const *in,
                                    int n_in)
{
    const struct tg_tensor *x = in[0];
    const struct tg_tensor *w = in[1];
    struct conv_geom g;
    geom_init(&g, x, w, conv_params(ctx));

    if (n_in > 2 && in[2]->grad != NULL)
        bias_backward(in[2]->grad, out->grad, &g);
    if (x->grad == NULL && w->grad == NULL)
        return TG_OK;
    struct conv_ws ws;
    if (!take_ws(ctx, &g, &ws))
        return TG_ERR_NOMEM;

    /* dW sums over images in order; each image's dx is its own */
    int64_t xs = g.c * g.h * g.w;
    for (int64_t n = 0; n < g.n; n++) {
        enum tg_status st =
                conv_image_backward(x->grad ? x->grad + n * xs : NULL, w->grad,
                                    out->grad + n * g.o * g.p, x->data + n * xs, w->data, &ws, &g);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

static const struct tg_op_def conv2d_op = {"tg_conv2d", sizeof(struct tg_conv2d_params), conv_shape,
                                           conv_forward, conv_backward};

/* ---- Public entry point ---------------------------------------------------- */

struct tg_tensor *tg_conv2d(struct tg_tensor *x,
                            struct tg_tensor *w,
                            struct tg_tensor *b,
                            const struct tg_conv2d_params *p)
{
    struct tg_tensor *in[3] = {x, w, b};
    struct tg_conv2d_params def = TG_CONV2D_DEFAULT;
    return tg_op_apply(&conv2d_op, b != NULL ? 3 : 2, in, p != NULL ? p : &def);
}
