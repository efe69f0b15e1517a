/* Shape ops: reshape, flatten, 2-d transpose, concatenation. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"
#include "ops-impl.h"

enum tg_status tg_shape_same_as_first(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    (void)ctx;
    (void)n_in;
    *n_dims = in[0]->n_dims;
    memcpy(shape, in[0]->shape, sizeof(in[0]->shape));
    return TG_OK;
}

int tg_axis_norm(int axis, int n_dims)
{
    if (axis < 0)
        axis += n_dims;
    return axis >= 0 && axis < n_dims ? axis : -1;
}

/*
 * Reshape and flatten copy x into a new tensor of the new shape, and their
 * backward adds the gradient back element for element. Transpose works on
 * 32x32 tiles so that both sides stay in cache. Concat copies each input's
 * block of columns per outer index; backward slices the gradient back the
 * same way.
 */

/* "2x-1x4" for a requested shape; "scalar" for 0 dimensions. */
static char *dims_str(char *buf, size_t size, int n_dims, const int64_t *dims)
{
    size_t off = 0;
    buf[0] = '\0';
    if (n_dims == 0)
        snprintf(buf, size, "scalar");
    for (int i = 0; i < n_dims && off < size; i++) {
        int w = snprintf(buf + off, size - off, i ? "x%" PRId64 : "%" PRId64, dims[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    return buf;
}

/* Product of sizes >= 0, saturated at INT64_MAX. */
static int64_t dims_product(int n_dims, const int64_t *dims)
{
    int64_t prod = 1;
    bool saturated = false;
    for (int i = 0; i < n_dims; i++) {
        if (dims[i] == 0)
            return 0;
        if (prod > INT64_MAX / dims[i])
            saturated = true;
        else
            prod *= dims[i];
    }
    return saturated ? INT64_MAX : prod;
}

/* ---- Kernels: outputs first ------------------------------------------------ */

static void copy_forward(float *y, const float *x, int64_t n)
{
    if (n > 0)
        memcpy(y, x, (size_t)n * sizeof(float));
}

static void copy_backward(float *dx, const float *dy, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i];);
}

#define TILE 32

/* x: (m, n) -> y: (n, m). */
static void transpose_forward(float *y, const float *x, int64_t m, int64_t n)
{
    for (int64_t i0 = 0; i0 < m; i0 += TILE)
        for (int64_t j0 = 0; j0 < n; j0 += TILE)
            for (int64_t i = i0; i < i0 + TILE && i < m; i++)
                for (int64_t j = j0; j < j0 + TILE && j < n; j++)
                    y[j * m + i] = x[i * n + j];
}

/* dx: (m, n) += dy^T, dy: (n, m). */
static void transpose_backward(float *dx, const float *dy, int64_t m, int64_t n)
{
    for (int64_t i0 = 0; i0 < m; i0 += TILE)
        for (int64_t j0 = 0; j0 < n; j0 += TILE)
            for (int64_t i = i0; i < i0 + TILE && i < m; i++)
                for (int64_t j = j0; j < j0 + TILE && j < n; j++)
                    dx[i * n + j] += dy[j * m + i];
}

/*
 * Seen around the axis, x_i is (outer, len_i) and y is (outer, total) with the
 * inputs' column blocks side by side; offset is where x_i's block starts.
 */
static void concat_forward_one(
        float *y, const float *x, int64_t outer, int64_t len, int64_t total, int64_t offset)
{
    if (len == 0)
        return;
    for (int64_t o = 0; o < outer; o++)
        memcpy(y + o * total + offset, x + o * len, (size_t)len * sizeof(float));
}

static void concat_backward_one(
        float *dx, const float *dy, int64_t outer, int64_t len, int64_t total, int64_t offset)
{
    TG_PARALLEL_LOOP(outer * len,
                     for (int64_t o = 0; o < outer; o++) for (int64_t j = 0; j < len; j++)
                             dx[o * len + j] += dy[o * total + offset + j];);
}

/* ---- Reshape and flatten ---------------------------------------------------- */

struct reshape_params {
    int n_dims;
    bool shape_missing; // shape was NULL with n_dims > 0
    int64_t shape[TG_MAX_DIMS];
};

struct flatten_params {
    int start_dim;
};

/* The requested sizes: a rank in range, at most one -1, the others >= 0. */
static enum tg_status check_reshape_sizes(const struct reshape_params *p, int *infer)
{
    char ds[TG_SHAPE_STR];
    if (p->n_dims < 0 || p->n_dims > TG_MAX_DIMS)
        return tg_error_set(TG_ERR_INVALID, "tg_reshape: bad rank (got %d, expected 0 to %d)",
                            p->n_dims, TG_MAX_DIMS);
    if (p->shape_missing)
        return tg_error_set(TG_ERR_INVALID, "tg_reshape: shape is NULL for %d dimensions",
                            p->n_dims);
    for (int i = 0; i < p->n_dims; i++) {
        if (p->shape[i] < -1)
            return tg_error_set(TG_ERR_INVALID,
                                "tg_reshape: negative size (got %s, expected sizes >= 0 or one -1)",
                                dims_str(ds, sizeof(ds), p->n_dims, p->shape));
        if (p->shape[i] == -1 && *infer >= 0)
            return tg_error_set(TG_ERR_INVALID,
                                "tg_reshape: more than one size is -1 (got %s, expected one -1 "
                                "at most)",
                                dims_str(ds, sizeof(ds), p->n_dims, p->shape));
        if (p->shape[i] == -1)
            *infer = i;
    }
    return TG_OK;
}

static enum tg_status reshape_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct reshape_params *p = tg_op_ctx_params(ctx);
    const struct tg_tensor *x = in[0];
    char xs[TG_SHAPE_STR], ds[TG_SHAPE_STR];
    int infer = -1;
    (void)n_in;
    enum tg_status st = check_reshape_sizes(p, &infer);
    if (st != TG_OK)
        return st;

    /* Product of the given sizes, the inferred one counted as 1. */
    int64_t sizes[TG_MAX_DIMS];
    for (int i = 0; i < p->n_dims; i++)
        sizes[i] = i == infer ? 1 : p->shape[i];
    int64_t prod = dims_product(p->n_dims, sizes);
    if (infer >= 0 && prod == 0)
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_reshape: -1 is ambiguous beside a size 0 (got %s for input %s)",
                            dims_str(ds, sizeof(ds), p->n_dims, p->shape), SHAPE(x, xs));
    bool fits = infer >= 0 ? x->n_elems % prod == 0 : x->n_elems == prod;
    if (!fits)
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_reshape: element counts differ (got input %s of %" PRId64
                            " elements, requested shape %s)",
                            SHAPE(x, xs), x->n_elems,
                            dims_str(ds, sizeof(ds), p->n_dims, p->shape));
    if (infer >= 0)
        sizes[infer] = x->n_elems / prod;
    *n_dims = p->n_dims;
    for (int i = 0; i < p->n_dims; i++)
        shape[i] = sizes[i];
    return TG_OK;
}

/* (d0, ..., d_{s-1}, d_s, ..., d_last) -> (d0, ..., d_{s-1}, d_s * ... * d_last). */
static enum tg_status flatten_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct flatten_params *p = tg_op_ctx_params(ctx);
    const struct tg_tensor *x = in[0];
    char xs[TG_SHAPE_STR];
    (void)n_in;
    if (x->n_dims == 0) {
        if (p->start_dim != 0 && p->start_dim != -1)
            return tg_error_set(TG_ERR_INVALID,
                                "tg_flatten: start_dim out of range (got %d for a scalar, "
                                "expected -1 or 0)",
                                p->start_dim);
        *n_dims = 1;
        shape[0] = 1;
        return TG_OK;
    }
    int start = tg_axis_norm(p->start_dim, x->n_dims);
    if (start < 0)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_flatten: start_dim out of range (got %d for input %s, expected "
                            "%d to %d)",
                            p->start_dim, SHAPE(x, xs), -x->n_dims, x->n_dims - 1);
    *n_dims = start + 1;
    for (int i = 0; i < start; i++)
        shape[i] = x->shape[i];
    shape[start] = dims_product(x->n_dims - start, x->shape + start);
    return TG_OK;
}

static enum tg_status
copy_op_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    (void)ctx;
    (void)n_in;
    copy_forward(out->data, in[0]->data, out->n_elems);
    return TG_OK;
}

static enum tg_status copy_op_backward(struct tg_op_ctx *ctx,
                                       const struct tg_tensor *out,
                                       struct tg_tensor *const *in,
                                       int n_in)
{
    (void)ctx;
    (void)n_in;
    if (in[0]->grad != NULL)
        copy_backward(in[0]->grad, out->grad, out->n_elems);
    return TG_OK;
}

static const struct tg_op_def reshape_op = {"tg_reshape", sizeof(struct reshape_params),
                                            reshape_shape, copy_op_forward, copy_op_backward};
static const struct tg_op_def flatten_op = {"tg_flatten", sizeof(struct flatten_params),
                                            flatten_shape, copy_op_forward, copy_op_backward};

/* ---- Transpose -------------------------------------------------------------- */

static enum tg_status transpose_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct tg_tensor *x = in[0];
    char xs[TG_SHAPE_STR];
    (void)ctx;
    (void)n_in;
    if (x->n_dims != 2)
        return tg_error_set(TG_ERR_SHAPE, "tg_transpose: input is not 2-d (got %s, expected M x N)",
                            SHAPE(x, xs));
    *n_dims = 2;
    shape[0] = x->shape[1];
    shape[1] = x->shape[0];
    return TG_OK;
}

static enum tg_status transpose_op_forward(struct tg_op_ctx *ctx,
                                           struct tg_tensor *out,
                                           struct tg_tensor *const *in,
                                           int n_in)
{
    (void)ctx;
    (void)n_in;
    transpose_forward(out->data, in[0]->data, in[0]->shape[0], in[0]->shape[1]);
    return TG_OK;
}

static enum tg_status transpose_op_backward(struct tg_op_ctx *ctx,
                                            const struct tg_tensor *out,
                                            struct tg_tensor *const *in,
                                            int n_in)
{
    (void)ctx;
    (void)n_in;
    if (in[0]->grad != NULL)
        transpose_backward(in[0]->grad, out->grad, in[0]->shape[0], in[0]->shape[1]);
    return TG_OK;
}

static const struct tg_op_def transpose_op = {"tg_transpose", 0, transpose_shape,
                                              transpose_op_forward, transpose_op_backward};

/* ---- Concat ------------------------------------------------------------------ */

struct concat_params {
    int axis;
};

static enum tg_status concat_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct concat_params *p = tg_op_ctx_params(ctx);
    const struct tg_tensor *x0 = in[0];
    char s0[TG_SHAPE_STR], si[TG_SHAPE_STR];
    if (x0->n_dims == 0)
        return tg_error_set(TG_ERR_SHAPE, "tg_concat: input 0 is a scalar (expected 1 to %d dims)",
                            TG_MAX_DIMS);
    int axis = tg_axis_norm(p->axis, x0->n_dims);
    if (axis < 0)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_concat: axis out of range (got %d for input %s, expected %d to %d)",
                            p->axis, SHAPE(x0, s0), -x0->n_dims, x0->n_dims - 1);
    *n_dims = x0->n_dims;
    memcpy(shape, x0->shape, sizeof(x0->shape));
    for (int i = 1; i < n_in; i++) {
        bool fits = in[i]->n_dims == x0->n_dims;
        for (int d = 0; fits && d < x0->n_dims; d++)
            fits = d == axis || in[i]->shape[d] == x0->shape[d];
        if (!fits)
            return tg_error_set(TG_ERR_SHAPE,
                                "tg_concat: input %d does not fit input 0 (got %s and %s, "
                                "expected equal sizes except on axis %d)",
                                i, SHAPE(in[i], si), SHAPE(x0, s0), axis);
        shape[axis] += in[i]->shape[axis];
    }
    return TG_OK;
}

/* Sizes around the axis: outer = product before it, inner = product after it. */
static void concat_split(const struct tg_tensor *out, int axis, int64_t *outer, int64_t *inner)
{
    *outer = dims_product(axis, out->shape);
    *inner = dims_product(out->n_dims - axis - 1, out->shape + axis + 1);
}

static enum tg_status concat_op_forward(struct tg_op_ctx *ctx,
                                        struct tg_tensor *out,
                                        struct tg_tensor *const *in,
                                        int n_in)
{
    const struct concat_params *p = tg_op_ctx_params(ctx);
    int axis = tg_axis_norm(p->axis, out->n_dims);
    int64_t outer, inner;
    concat_split(out, axis, &outer, &inner);
    int64_t total = out->shape[axis] * inner;
    int64_t offset = 0;
    for (int i = 0; i < n_in; i++) {
        int64_t len = in[i]->shape[axis] * inner;
        concat_forward_one(out->data, in[i]->data, outer, len, total, offset);
        offset += len;
    }
    return TG_OK;
}

static enum tg_status concat_op_backward(struct tg_op_ctx *ctx,
                                         const struct tg_tensor *out,
                                         struct tg_tensor *const *in,
                                         int n_in)
{
    const struct concat_params *p = tg_op_ctx_params(ctx);
    int axis = tg_axis_norm(p->axis, out->n_dims);
    int64_t outer, inner;
    concat_split(out, axis, &outer, &inner);
    int64_t total = out->shape[axis] * inner;
    int64_t offset = 0;
    for (int i = 0; i < n_in; i++) {
        int64_t len = in[i]->shape[axis] * inner;
        if (in[i]->grad != NULL)
            concat_backward_one(in[i]->grad, out->grad, outer, len, total, offset);
        offset += len;
    }
    return TG_OK;
}

static const struct tg_op_def concat_op = {"tg_concat", sizeof(struct concat_params), concat_shape,
                                           concat_op_forward, concat_op_backward};

/* ---- Public entry points ------------------------------------------------------ */

struct tg_tensor *tg_reshape(struct tg_tensor *x, int n_dims, const int64_t *shape)
{
    struct reshape_params p = {.n_dims = n_dims};
    bool rank_ok = n_dims > 0 && n_dims <= TG_MAX_DIMS;
    if (rank_ok && shape == NULL)
        p.shape_missing = true;
    else if (rank_ok)
        memcpy(p.shape, shape, (size_t)n_dims * sizeof(*shape));
    return tg_op_apply(&reshape_op, 1, &x, &p);
}

struct tg_tensor *tg_flatten(struct tg_tensor *x, int start_dim)
{
    struct flatten_params p = {start_dim};
    return tg_op_apply(&flatten_op, 1, &x, &p);
}

struct tg_tensor *tg_transpose(struct tg_tensor *x)
{
    return tg_op_apply(&transpose_op, 1, &x, NULL);
}

struct tg_tensor *tg_concat(int n, struct tg_tensor *const *xs, int axis)
{
    struct concat_params p = {axis};
    if (n < 1 || n > TG_MAX_OP_INPUTS) {
        tg_error_set(TG_ERR_INVALID, "tg_concat: bad input count (got %d, expected 1 to %d)", n,
                     TG_MAX_OP_INPUTS);
        return NULL;
    }
    if (xs == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_concat: xs is NULL");
        return NULL;
    }
    return tg_op_apply(&concat_op, n, xs, &p);
}
