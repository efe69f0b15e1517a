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
 * Threads: one parallel region per pass splits the batch. Each thread takes
 * whole images with its own column scratch and runs single-threaded products
 * (tg_sgemm()'s packing buffers are a pool that concurrent calls share, so a
 * warm step allocates nothing). y and dx are per image, so each thread writes
 * its own part. dW is a sum over images: the batch is cut into a fixed number
 * of chunks that depends only on the batch and layer sizes, each chunk sums
 * its images in order into a partial, and the partials are added in chunk
 * order. So every result is bit-identical from run to run and for any thread
 * count. With fewer images than threads (a single image, say), the images run
 * one after the other and each product is threaded inside tg_sgemm().
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <tapegrad/gemm.h>

#include "core-impl.h"
#include "gemm-impl.h"
#include "ops-impl.h"

/* Floats past the end of cols and xpad that copy_floats8() may touch. */
#define SLACK 8

/* Upper bounds of the threads of one pass and of the dW chunks (see the top). */
#define CONV_MAX_THREADS 64
#define MAX_CHUNKS       16
#define CHUNK_FLOATS     ((int64_t)1 << 24) // 64 MiB of dW partials at most

/* Image blocks: columns per product aimed at, most images, most column floats. */
#define BLOCK_COLS   768
#define MAX_BLOCK    8
#define BLOCK_FLOATS ((int64_t)1 << 20)

struct conv_geom {
    int64_t n, c, h, w;     // x: (N, C, H, W)
    int64_t o, kh, kw;      // w: (O, Cg, KH, KW)
    int64_t ho, wo;         // y: (N, O, Ho, Wo)
    int64_t groups, cg, og; // groups and channels per group
    int64_t kg, p;          // columns: (Kg, P) = (Cg KH KW, Ho Wo)
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t nb; // images whose columns go side by side into one product
    int64_t ld; // row stride of the column matrix: nb P + SLACK
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
    /* Enough images per product for about BLOCK_COLS columns, within BLOCK_FLOATS */
    g->nb = g->p > 0 ? (BLOCK_COLS + g->p - 1) / g->p : 1;
    g->nb = g->nb > MAX_BLOCK ? MAX_BLOCK : g->nb;
    while (g->nb > 1 && g->kg * g->nb * g->p > BLOCK_FLOATS)
        g->nb--;
    g->ld = g->nb * g->p + SLACK;
}

/* Scratch of one thread for a block of up to nb images. */
struct conv_ws {
    float *cols; // (Kg, ld): the images' columns side by side; dcols in backward
    float *xpad; // (Cg, H + 2 ph, W + 2 pw) + SLACK: one image's group, zero-bordered
    float *out;  // (Og, nb P): the block's outputs (forward) or its dY (backward)
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

/*
 * d[0..n) = s[0..n) in blocks of eight floats, so it may read and write up to
 * seven floats past n: the callers' buffers leave that room (SLACK), and a
 * later copy overwrites what spilled into the next row. Rows are short (14
 * floats in a 14x14 layer), where a memcpy() call per row costs more than the
 * copy.
 */
static inline void copy_floats8(float *restrict d, const float *restrict s, int64_t n)
{
    for (int64_t i = 0; i < n; i += 8)
        memcpy(d + i, s + i, 8 * sizeof(float));
}

/* xp (Cg, Hp, Wp) + SLACK = the planes of xg (Cg, H, W) inside a border of ph, pw zeros. */
static void pad_planes(float *xp, const float *xg, const struct conv_geom *g)
{
    int64_t hp = g->h + 2 * g->ph;
    int64_t wp = g->w + 2 * g->pw;
    int64_t plane = hp * wp;
    if (g->ph == 0 && g->pw == 0) {
        memcpy(xp, xg, (size_t)(g->cg * plane) * sizeof(float));
        memset(xp + g->cg * plane, 0, SLACK * sizeof(float));
        return;
    }
    memset(xp, 0, (size_t)(g->cg * plane + SLACK) * sizeof(float));
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t ih = 0; ih < g->h; ih++)
            memcpy(xp + c * plane + (ih + g->ph) * wp + g->pw, xg + (c * g->h + ih) * g->w,
                   (size_t)g->w * sizeof(float));
}

/*
 * P columns of an image into cols (Kg rows of stride ld) from one group's
 * channels xg (Cg, H, W). The planes are first staged in xpad with their zero
 * borders, so that every tap reads in bounds: row (c, i, j) is then a strided
 * 2-d copy of plane c, one short block copy per output row when the stride is
 * 1. The copies may spill SLACK floats past the image's P columns of a row:
 * into the next image's columns, written later, or the row's slack.
 */
static void im2col(float *cols, float *xpad, const float *xg, const struct conv_geom *g)
{
    int64_t hp = g->h + 2 * g->ph;
    int64_t wp = g->w + 2 * g->pw;
    pad_planes(xpad, xg, g);
    int64_t taps = g->kh * g->kw;
    for (int64_t r = 0; r < g->kg; r++) {
        int64_t c = r / taps;
        int64_t i = r % taps / g->kw;
        int64_t j = r % g->kw;
        const float *src = xpad + (c * hp + i * g->dh) * wp + j * g->dw;
        float *row = cols + r * g->ld;
        for (int64_t oh = 0; oh < g->ho; oh++, row += g->wo) {
            const float *s = src + oh * g->sh * wp;
            if (g->sw == 1) {
                copy_floats8(row, s, g->wo);
            } else {
                for (int64_t ow = 0; ow < g->wo; ow++)
                    row[ow] = s[ow * g->sw];
            }
        }
    }
}

/*
 * Add row (i, j) of dcols into channel plane dxc (H, W): the adjoint of that
 * row's im2col copy, skipping the padding instead of staging it.
 */
static void col2im_row(float *restrict dxc,
                       const float *restrict row,
                       int64_t i,
                       int64_t j,
                       const struct conv_geom *g)
{
    int64_t offh = i * g->dh - g->ph;
    int64_t offw = j * g->dw - g->pw;
    int64_t lo, hi;
    valid_span(&lo, &hi, offw, g->sw, g->w, g->wo);
    for (int64_t oh = 0; oh < g->ho; oh++, row += g->wo) {
        int64_t ih = oh * g->sh + offh;
        if (ih < 0 || ih >= g->h)
            continue;
        float *restrict dxr = dxc + ih * g->w;
        if (g->sw == 1) {
            for (int64_t ow = lo; ow < hi; ow++)
                dxr[ow + offw] += row[ow];
        } else {
            for (int64_t ow = lo; ow < hi; ow++)
                dxr[ow * g->sw + offw] += row[ow];
        }
    }
}

/* dxg (Cg, H, W) += col2im(one image's dcols, rows of stride ld), taps in order. */
static void col2im(float *dxg, const float *dcols, const struct conv_geom *g)
{
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++)
                col2im_row(dxg + c * g->h * g->w, dcols + ((c * g->kh + i) * g->kw + j) * g->ld, i,
                           j, g);
}

/* d[0..n) = s[0..n) + add. */
static void copy_add(float *restrict d, const float *restrict s, int64_t n, float add)
{
    for (int64_t q = 0; q < n; q++)
        d[q] = s[q] + add;
}

/* d[0..n) += add, when there is a bias at all. */
static void add_in_place(float *d, int64_t n, float add, bool any)
{
    if (!any)
        return;
    for (int64_t q = 0; q < n; q++)
        d[q] += add;
}

/*
 * Images [n, n + cnt), cnt <= nb, of x (N, C, H, W): y (N, O, P) = W_g
 * cols_g per group, plus bias (O) or NULL. One product per group covers the
 * whole block; its columns of each image are those a product of that image
 * alone would give.
 */
static enum tg_status conv_block_forward(float *y,
                                         const float *x,
                                         const float *w,
                                         const float *bias,
                                         int64_t n,
                                         int64_t cnt,
                                         const struct conv_ws *ws,
                                         const struct conv_geom *g)
{
    int64_t xs = g->c * g->h * g->w;
    int64_t p = g->p;
    int64_t cols_n = cnt * p;
    for (int64_t gi = 0; gi < g->groups; gi++) {
        for (int64_t b = 0; b < cnt; b++)
            im2col(ws->cols + b * p, ws->xpad, x + (n + b) * xs + gi * g->cg * g->h * g->w, g);
        /* A single image's outputs are rows of y already: no staging */
        float *yg = y + (n * g->o + gi * g->og) * p;
        float *dst = cnt == 1 ? yg : ws->out;
        enum tg_status st =
                tg_sgemm(false, false, g->og, cols_n, g->kg, 1.0f, w + gi * g->og * g->kg, g->kg,
                         ws->cols, g->ld, 0.0f, dst, cols_n);
        if (st != TG_OK)
            return st;
        for (int64_t b = 0; b < cnt; b++) {
            for (int64_t o = 0; o < g->og; o++) {
                float add = bias != NULL ? bias[gi * g->og + o] : 0.0f;
                if (dst == yg)
                    add_in_place(yg + o * p, p, add, bias != NULL);
                else
                    copy_add(yg + (b * g->o + o) * p, dst + o * cols_n + b * p, p, add);
            }
        }
    }
    return TG_OK;
}

/*
 * Images [n, n + cnt) of the batch: per group, dw (O, Kg) = dw_beta dw +
 * dY_g cols_g^T over the block, and dx (N, C, H, W) += col2im(W_g^T dY_g);
 * dw or dx NULL skips that part. cols is reused for dcols.
 */
static enum tg_status conv_block_backward(float *dx,
                                          float *dw,
                                          float dw_beta,
                                          const float *dy,
                                          const float *x,
                                          const float *w,
                                          int64_t n,
                                          int64_t cnt,
                                          const struct conv_ws *ws,
                                          const struct conv_geom *g)
{
    int64_t xs = g->c * g->h * g->w;
    int64_t cols_n = cnt * g->p;
    enum tg_status st = TG_OK;
    for (int64_t gi = 0; gi < g->groups && st == TG_OK; gi++) {
        int64_t xoff = gi * g->cg * g->h * g->w;
        const float *wg = w + gi * g->og * g->kg;

        /* dY_g of the block side by side: (Og, cnt P) */
        for (int64_t b = 0; b < cnt; b++)
            for (int64_t o = 0; o < g->og; o++)
                memcpy(ws->out + o * cols_n + b * g->p,
                       dy + ((n + b) * g->o + gi * g->og + o) * g->p, (size_t)g->p * sizeof(float));

        /* dW_g (Og, Kg) = dw_beta dW_g + dY_g (Og, cnt P) cols^T (cnt P, Kg) */
        if (dw != NULL) {
            for (int64_t b = 0; b < cnt; b++)
                im2col(ws->cols + b * g->p, ws->xpad, x + (n + b) * xs + xoff, g);
            st = tg_sgemm(false, true, g->og, g->kg, cols_n, 1.0f, ws->out, cols_n, ws->cols, g->ld,
                          dw_beta, dw + gi * g->og * g->kg, g->kg);
        }

        /* dcols (Kg, cnt P) = W_g^T (Kg, Og) dY_g (Og, cnt P), then into dx image by image */
        if (dx != NULL && st == TG_OK) {
            st = tg_sgemm(true, false, g->kg, cols_n, g->og, 1.0f, wg, g->kg, ws->out, cols_n, 0.0f,
                          ws->cols, g->ld);
            for (int64_t b = 0; b < cnt && st == TG_OK; b++)
                col2im(dx + (n + b) * xs + xoff, ws->cols + b * g->p, g);
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

/* ---- Passes over the batch -------------------------------------------------- */

/* One pass over the batch: its tensors, and what each part of it computes. */
struct conv_pass {
    const struct conv_geom *g;
    const float *x;
    const float *w;
    const float *bias; // forward: the bias or NULL
    const float *dy;   // backward: dY (N, O, P)
    float *y;          // forward: y (N, O, P)
    float *dx;         // backward: dX (N, C, H, W) or NULL
    float *dw_parts;   // backward: n_chunks partial dW (O, Kg), or NULL
    int64_t n_chunks;  // backward: parts of the batch, each summed into its own partial
    bool backward;
};

/* Images [lo, hi) of part q when n images are cut into n_parts parts. */
static void part_range(int64_t n, int64_t n_parts, int64_t q, int64_t *lo, int64_t *hi)
{
    *lo = q * n / n_parts;
    *hi = (q + 1) * n / n_parts;
}

/*
 * Items [lo, hi) of a pass with scratch ws. Forward, an item is a block of nb
 * images (the last one may be short); backward, a chunk, run in blocks of at
 * most nb images from its first. Which images share a product is thus fixed
 * by the sizes alone, never by how items are shared out among threads.
 */
static enum tg_status
run_items(const struct conv_pass *ps, int64_t lo, int64_t hi, const struct conv_ws *ws)
{
    const struct conv_geom *g = ps->g;
    enum tg_status st = TG_OK;
    if (!ps->backward) {
        for (int64_t it = lo; it < hi && st == TG_OK; it++) {
            int64_t n = it * g->nb;
            int64_t cnt = g->n - n < g->nb ? g->n - n : g->nb;
            st = conv_block_forward(ps->y, ps->x, ps->w, ps->bias, n, cnt, ws, g);
        }
        return st;
    }
    for (int64_t it = lo; it < hi && st == TG_OK; it++) {
        int64_t n0, n1;
        part_range(g->n, ps->n_chunks, it, &n0, &n1);
        float *dw = ps->dw_parts ? ps->dw_parts + it * g->o * g->kg : NULL;
        for (int64_t n = n0; n < n1 && st == TG_OK; n += g->nb) {
            int64_t cnt = n1 - n < g->nb ? n1 - n : g->nb;
            st = conv_block_backward(ps->dx, dw, n == n0 ? 0.0f : 1.0f, ps->dy, ps->x, ps->w, n,
                                     cnt, ws, g);
        }
    }
    return st;
}

/*
 * Run items [0, n_items) of a pass on n_threads threads, each on a contiguous
 * share with its own scratch ws[t]; one thread runs them all in place. A
 * failure inside a thread (out of memory in tg_sgemm()) is recorded again on
 * the calling thread.
 */
static enum tg_status
run_pass(const struct conv_pass *ps, int64_t n_items, int n_threads, const struct conv_ws *ws)
{
    if (n_threads <= 1)
        return run_items(ps, 0, n_items, &ws[0]);
#ifdef _OPENMP
    enum tg_status first = tg_gemm_reserve(n_threads);
    if (first != TG_OK)
        return first;
    char msg[256] = "";
#pragma omp parallel num_threads(n_threads)
    {
        int t = omp_get_thread_num();
        int64_t lo, hi;
        part_range(n_items, omp_get_num_threads(), t, &lo, &hi);
        enum tg_status st = run_items(ps, lo, hi, &ws[t]);
        if (st != TG_OK) {
#pragma omp critical(tg_conv_error)
            if (first == TG_OK) {
                first = st;
                snprintf(msg, sizeof(msg), "%s", tg_last_error());
            }
        }
    }
    if (first != TG_OK)
        return tg_error_set(first, "%s", msg);
    return TG_OK;
#else
    return run_items(ps, 0, n_items, &ws[0]);
#endif
}

/* Threads for n_items items: one per item at most. */
static int pass_threads(int64_t n_items)
{
    int n = tg_get_num_threads();
    if (n > CONV_MAX_THREADS)
        n = CONV_MAX_THREADS;
    return n_items < n ? (int)n_items : n;
}

/*
 * Chunks of the batch for dW: a function of the batch and layer sizes only,
 * never of the thread count, so that the sum order is fixed.
 */
static int64_t dw_chunks(const struct conv_geom *g)
{
    int64_t n = g->n < MAX_CHUNKS ? g->n : MAX_CHUNKS;
    while (n > 1 && n * g->o * g->kg > CHUNK_FLOATS)
        n /= 2;
    return n < 1 ? 1 : n;
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
    /* Scratch of take_ws() at most, estimated in double so that the estimate cannot overflow. */
    double per = (double)g.kg * (double)g.ld + (double)g.og * (double)g.nb * (double)g.p +
                 (double)g.cg * (double)(g.h + 2 * g.ph) * (double)(g.w + 2 * g.pw) + 64.0;
    double ws = per * CONV_MAX_THREADS + (double)CHUNK_FLOATS;
    if (ws * (double)sizeof(float) > (double)(SIZE_MAX / 2) || ws > (double)(INT64_MAX / 8))
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

/* Floats of one thread's scratch, each part rounded to whole cache lines. */
static int64_t ws_floats(const struct conv_geom *g, int64_t *n_cols, int64_t *n_pad)
{
    *n_cols = (g->kg * g->ld + SLACK + 15) / 16 * 16;
    *n_pad = (g->cg * (g->h + 2 * g->ph) * (g->w + 2 * g->pw) + SLACK + 15) / 16 * 16;
    return *n_cols + *n_pad + (g->og * g->nb * g->p + 15) / 16 * 16;
}

/*
 * Scratch of n_threads threads followed by extra_floats more, returned in
 * *extra; false when out of memory.
 */
static bool take_ws(struct tg_op_ctx *ctx,
                    const struct conv_geom *g,
                    int n_threads,
                    struct conv_ws *ws,
                    int64_t extra_floats,
                    float **extra)
{
    int64_t n_cols, n_pad;
    int64_t per = ws_floats(g, &n_cols, &n_pad);
    float *base = tg_op_ctx_scratch(ctx, (size_t)(per * n_threads + extra_floats) * sizeof(float));
    if (base == NULL)
        return false;
    for (int t = 0; t < n_threads; t++) {
        ws[t].cols = base + t * per;
        ws[t].xpad = ws[t].cols + n_cols;
        ws[t].out = ws[t].xpad + n_pad;
    }
    if (extra != NULL)
        *extra = extra_floats > 0 ? base + per * n_threads : NULL;
    return true;
}

static enum tg_status
conv_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    struct conv_geom g;
    geom_init(&g, in[0], in[1], conv_params(ctx));
    int64_t n_blocks = (g.n + g.nb - 1) / g.nb;
    int n_threads = pass_threads(n_blocks);
    struct conv_ws ws[CONV_MAX_THREADS];
    if (!take_ws(ctx, &g, n_threads, ws, 0, NULL))
        return TG_ERR_NOMEM;

    /* x: (N, C, H, W) -> y: (N, O, Ho, Wo), blocks of images split among threads */
    struct conv_pass ps = {
            .g = &g,
            .x = in[0]->data,
            .w = in[1]->data,
            .bias = n_in > 2 ? in[2]->data : NULL,
            .y = out->data,
    };
    return run_pass(&ps, n_blocks, n_threads, ws);
}

/* dw += the partials, added in chunk order, element by element. */
static void add_partials(float *dw, const float *parts, int64_t n_chunks, int64_t size)
{
    int64_t total = n_chunks * size;
    (void)total; // only read by the OpenMP clause
    TG_PARALLEL_LOOP(
            total, for (int64_t e = 0; e < size; e++) {
                float s = parts[e];
                for (int64_t c = 1; c < n_chunks; c++)
                    s += parts[c * size + e];
                dw[e] += s;
            });
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

    /* Chunks of the batch over threads; each chunk sums its images' dW apart */
    struct conv_pass ps = {
            .g = &g,
            .x = x->data,
            .w = w->data,
            .dy = out->grad,
            .dx = x->grad,
            .n_chunks = dw_chunks(&g),
            .backward = true,
    };
    int n_threads = pass_threads(ps.n_chunks);
    struct conv_ws ws[CONV_MAX_THREADS];
    int64_t dw_size = g.o * g.kg;
    if (!take_ws(ctx, &g, n_threads, ws, w->grad ? ps.n_chunks * dw_size : 0, &ps.dw_parts))
        return TG_ERR_NOMEM;
    enum tg_status st = run_pass(&ps, ps.n_chunks, n_threads, ws);
    if (st == TG_OK && w->grad != NULL)
        add_partials(w->grad, ps.dw_parts, ps.n_chunks, dw_size);
    return st;
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
