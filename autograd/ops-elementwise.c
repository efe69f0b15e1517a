/*
 * Element-wise ops: add, sub, mul and div with NumPy/PyTorch broadcasting, and
 * the unary ops scale, add_scalar, neg, exp, log, sqrt and pow.
 *
 * Binary ops run on a broadcast plan: the output's dimensions with size-1
 * dimensions dropped and neighbours merged wherever both operands stay
 * contiguous across them. The hot cases of training fall out as plans of one
 * to three dimensions: equal shapes and a one-element operand give a single
 * flat row, a row bias (N, F) + (F) gives N rows of F, a channel bias
 * (N, C, H, W) + (1, C, 1, 1) gives (N, C, H*W) with the bias constant along
 * each row. Work is cut into row chunks that run in parallel; backward sums
 * the gradient over the broadcast dimensions deterministically (the order of
 * the sums does not depend on the thread count).
 */
#include <math.h>
#include <string.h>

#include "core-impl.h"
#include "ops-impl.h"

/* Elements per task of the binary kernels (and size of their stack buffers). */
#define CHUNK 1024

/* ---- Broadcast plan -------------------------------------------------------- */

/*
 * The output viewed as rows: size[0..n_dims) with the last dimension the row,
 * stride[k][d] the step of operand k along dimension d (0 where it is
 * broadcast). The row stride of each operand is 0 or 1.
 */
struct bcast {
    int n_dims; // 1 to TG_MAX_DIMS
    int64_t size[TG_MAX_DIMS];
    int64_t stride[2][TG_MAX_DIMS];
    int64_t n_rows;   // product of the sizes but the last
    int64_t row_len;  // the last size
    int64_t n_chunks; // chunks per row
};

/* Size of dimension d (counted from the end, 0 = last) of t, 1 past its rank. */
static int64_t size_from_end(const struct tg_tensor *t, int d)
{
    return d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
}

/* Turn the n dims of a plan built inner first to outer first and count its rows. */
static void plan_finish(struct bcast *p, int n)
{
    for (int i = 0; i < n / 2; i++) {
        int j = n - 1 - i;
        int64_t t = p->size[i];
        p->size[i] = p->size[j];
        p->size[j] = t;
        for (int k = 0; k < 2; k++) {
            t = p->stride[k][i];
            p->stride[k][i] = p->stride[k][j];
            p->stride[k][j] = t;
        }
    }
    p->n_dims = n;
    p->row_len = p->size[n - 1];
    p->n_rows = 1;
    for (int d = 0; d < n - 1; d++)
        p->n_rows *= p->size[d];
    p->n_chunks = (p->row_len + CHUNK - 1) / CHUNK;
}

/* Fill the plan for inputs a, b whose shapes were checked to broadcast. */
static void bcast_plan(struct bcast *p, const struct tg_tensor *a, const struct tg_tensor *b)
{
    const struct tg_tensor *ops[2] = {a, b};
    int rank = a->n_dims > b->n_dims ? a->n_dims : b->n_dims;
    int64_t step[2] = {1, 1};
    int n = 0;

    /* Walk from the last dimension, dropping size-1 dims, merging where possible. */
    for (int d = 0; d < rank; d++) {
        int64_t sa = size_from_end(a, d);
        int64_t sb = size_from_end(b, d);
        int64_t size = sa > sb ? sa : sb;
        if (sa == 0 || sb == 0)
            size = 0;
        if (size == 1)
            continue;
        int64_t st[2];
        for (int k = 0; k < 2; k++) {
            st[k] = size_from_end(ops[k], d) == 1 ? 0 : step[k];
            step[k] *= size_from_end(ops[k], d);
        }
        /* Merge into the previous (inner) dim when each operand continues it. */
        if (n > 0 && st[0] == p->stride[0][n - 1] * p->size[n - 1] &&
            st[1] == p->stride[1][n - 1] * p->size[n - 1]) {
            p->size[n - 1] *= size;
            continue;
        }
        p->size[n] = size;
        p->stride[0][n] = st[0];
        p->stride[1][n] = st[1];
        n++;
    }
    if (n == 0) {
        p->size[0] = 1;
        p->stride[0][0] = 0;
        p->stride[1][0] = 0;
        n = 1;
    }

    plan_finish(p, n);
}

/* Offset of the start of row r in operand k. */
static int64_t row_offset(const struct bcast *p, int k, int64_t r)
{
    int64_t off = 0;
    for (int d = p->n_dims - 2; d >= 0; d--) {
        off += (r % p->size[d]) * p->stride[k][d];
        r /= p->size[d];
    }
    return off;
}

/* ---- Shape check --------------------------------------------------------- */

/* Report that dimension d (counted from the end) of a and b does not broadcast. */
static enum tg_status broadcast_error(const struct tg_op_ctx *ctx,
                                      const struct tg_tensor *a,
                                      const struct tg_tensor *b,
                                      int d)
{
    char as[TG_SHAPE_STR], bs[TG_SHAPE_STR];
    return tg_error_set(TG_ERR_SHAPE,
                        "%s: shapes do not broadcast (a: %s, b: %s; sizes %lld and %lld at dim %d)",
                        ctx->op->name, SHAPE(a, as), SHAPE(b, bs), (long long)size_from_end(a, d),
                        (long long)size_from_end(b, d), -1 - d);
}

static enum tg_status binary_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct tg_tensor *a = in[0];
    const struct tg_tensor *b = in[1];
    int rank = a->n_dims > b->n_dims ? a->n_dims : b->n_dims;
    (void)n_in;

    for (int d = 0; d < rank; d++) {
        int64_t sa = size_from_end(a, d);
        int64_t sb = size_from_end(b, d);
        if (sa != sb && sa != 1 && sb != 1)
            return broadcast_error(ctx, a, b, d);
        shape[rank - 1 - d] = sa == 1 ? sb : sa;
    }
    *n_dims = rank;
    return TG_OK;
}

/* ---- Forward kernels: outputs first -------------------------------------- */

enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV };

#define ADD_F(x, y) ((x) + (y))
#define SUB_F(x, y) ((x) - (y))
#define MUL_F(x, y) ((x) * (y))
#define DIV_F(x, y) ((x) / (y))

/* One stretch of a row: each operand steps by 1 or stays put (stride 0). */
#define ROW_LOOP(F)                                                                                \
    do {                                                                                           \
        if (sa != 0 && sb != 0) {                                                                  \
            for (int64_t i = 0; i < n; i++)                                                        \
                y[i] = F(a[i], b[i]);                                                              \
        } else if (sa != 0) {                                                                      \
            float bv = b[0];                                                                       \
            for (int64_t i = 0; i < n; i++)                                                        \
                y[i] = F(a[i], bv);                                                                \
        } else {                                                                                   \
            float av = a[0];                                                                       \
            for (int64_t i = 0; i < n; i++)                                                        \
                y[i] = F(av, b[i * sb]);                                                           \
        }                                                                                          \
    } while (0)

static void binary_row(float *restrict y,
                       const float *a,
                       int64_t sa,
                       const float *b,
                       int64_t sb,
                       int64_t n,
                       enum binop op)
{
    switch (op) {
    case OP_ADD:
        ROW_LOOP(ADD_F);
        break;
    case OP_SUB:
        ROW_LOOP(SUB_F);
        break;
    case OP_MUL:
        ROW_LOOP(MUL_F);
        break;
    case OP_DIV:
        ROW_LOOP(DIV_F);
        break;
    }
}

/* y = a op b over the plan; each task is one chunk of one row. */
static void
binary_forward(float *y, const float *a, const float *b, const struct bcast *p, enum binop op)
{
    int64_t n_tasks = p->n_rows * p->n_chunks;
    int64_t n_total = p->n_rows * p->row_len;
    int64_t sa = p->stride[0][p->n_dims - 1];
    int64_t sb = p->stride[1][p->n_dims - 1];

    TG_PARALLEL_LOOP(
            n_total, for (int64_t t = 0; t < n_tasks; t++) {
                int64_t r = t / p->n_chunks;
                int64_t i0 = (t % p->n_chunks) * CHUNK;
                int64_t len = p->row_len - i0 < CHUNK ? p->row_len - i0 : CHUNK;
                binary_row(y + r * p->row_len + i0, a + row_offset(p, 0, r) + i0 * sa, sa,
                           b + row_offset(p, 1, r) + i0 * sb, sb, len, op);
            });
}

/* ---- Backward kernels ------------------------------------------------------ */

/*
 * What dL/dout is multiplied by for one operand:
 * add: 1 and 1; sub: 1 and -1; mul: b and a; div: 1/b and -(a/b)/b = -y/b.
 */
enum gkind { G_ONE, G_NEG, G_MUL, G_DIV, G_DIV_B };

struct gsrc {
    enum gkind kind;
    const float *dy;    // dL/dout
    const float *y;     // the output (G_DIV_B)
    const float *other; // the factor operand: the other one for G_MUL, b for G_DIV*
    int k_other;        // its index: 0 = a, 1 = b
    int k;              // which operand gets the gradient
};

/* g[0..n) = the gradient terms of output elements [o, o + n) of row r. */
static void grad_terms(float *restrict g,
                       const struct gsrc *s,
                       const struct bcast *p,
                       int64_t r,
                       int64_t i0,
                       int64_t n)
{
    int64_t o = r * p->row_len + i0;
    const float *dy = s->dy + o;
    int64_t so = p->stride[s->k_other][p->n_dims - 1];
    const float *v = s->other ? s->other + row_offset(p, s->k_other, r) + i0 * so : NULL;

    switch (s->kind) {
    case G_ONE:
        memcpy(g, dy, (size_t)n * sizeof(float));
        break;
    case G_NEG:
        for (int64_t i = 0; i < n; i++)
            g[i] = -dy[i];
        break;
    case G_MUL:
        for (int64_t i = 0; i < n; i++)
            g[i] = dy[i] * v[i * so];
        break;
    case G_DIV:
        for (int64_t i = 0; i < n; i++)
            g[i] = dy[i] / v[i * so];
        break;
    case G_DIV_B:
        for (int64_t i = 0; i < n; i++)
            g[i] = -dy[i] * (s->y[o + i] / v[i * so]);
        break;
    }
}

/* Operand the same size as the output: every element gets one term. */
static void grad_direct(float *dx, const struct gsrc *s, const struct bcast *p)
{
    int64_t n_tasks = p->n_rows * p->n_chunks;

    TG_PARALLEL_LOOP(
            p->n_rows * p->row_len, for (int64_t t = 0; t < n_tasks; t++) {
                float g[CHUNK];
                int64_t r = t / p->n_chunks;
                int64_t i0 = (t % p->n_chunks) * CHUNK;
                int64_t len = p->row_len - i0 < CHUNK ? p->row_len - i0 : CHUNK;
                float *d = dx + r * p->row_len + i0;
                grad_terms(g, s, p, r, i0, len);
                for (int64_t i = 0; i < len; i++)
                    d[i] += g[i];
            });
}

/*
 * Operand broadcast over outer dims but spanning the row (a row bias): each
 * task owns a column chunk, so no two tasks touch the same element.
 */
static void grad_sum_rows(double *acc, const struct gsrc *s, const struct bcast *p)
{
    TG_PARALLEL_LOOP(
            p->n_rows * p->row_len, for (int64_t c = 0; c < p->n_chunks; c++) {
                float g[CHUNK];
                int64_t i0 = c * CHUNK;
                int64_t len = p->row_len - i0 < CHUNK ? p->row_len - i0 : CHUNK;
                for (int64_t r = 0; r < p->n_rows; r++) {
                    double *d = acc + row_offset(p, s->k, r) + i0;
                    grad_terms(g, s, p, r, i0, len);
                    for (int64_t i = 0; i < len; i++)
                        d[i] += (double)g[i];
                }
            });
}

/*
 * Operand constant along each row (a channel bias or a scalar): sum each
 * chunk in parallel, then add the chunk sums to their elements in order.
 */
static void
grad_sum_within_rows(double *acc, double *part, const struct gsrc *s, const struct bcast *p)
{
    int64_t n_tasks = p->n_rows * p->n_chunks;

    TG_PARALLEL_LOOP(
            p->n_rows * p->row_len, for (int64_t t = 0; t < n_tasks; t++) {
                float g[CHUNK];
                int64_t r = t / p->n_chunks;
                int64_t i0 = (t % p->n_chunks) * CHUNK;
                int64_t len = p->row_len - i0 < CHUNK ? p->row_len - i0 : CHUNK;
                double sum = 0.0;
                grad_terms(g, s, p, r, i0, len);
                for (int64_t i = 0; i < len; i++)
                    sum += (double)g[i];
                part[t] = sum;
            });
    for (int64_t t = 0; t < n_tasks; t++)
        acc[row_offset(p, s->k, t / p->n_chunks)] += part[t];
}

/* ADD dL/d(operand s->k) into dx, reducing over its broadcast dimensions. */
static enum tg_status binary_grad(
        struct tg_op_ctx *ctx, float *dx, int64_t n_x, const struct gsrc *s, const struct bcast *p)
{
    if (n_x == p->n_rows * p->row_len) {
        grad_direct(dx, s, p);
        return TG_OK;
    }

    /* Broadcast operand: sum in double, then add once. */
    bool spans_row = p->stride[s->k][p->n_dims - 1] != 0;
    size_t n_part = spans_row ? 0 : (size_t)(p->n_rows * p->n_chunks);
    double *acc = tg_op_ctx_scratch(ctx, ((size_t)n_x + n_part) * sizeof(double));
    if (acc == NULL)
        return TG_ERR_NOMEM;
    memset(acc, 0, (size_t)n_x * sizeof(double));
    if (spans_row)
        grad_sum_rows(acc, s, p);
    else
        grad_sum_within_rows(acc, acc + n_x, s, p);
    for (int64_t i = 0; i < n_x; i++)
        dx[i] += (float)acc[i];
    return TG_OK;
}

/* ---- Op table entries ------------------------------------------------------ */

static enum tg_status binary_forward_cb(struct tg_op_ctx *ctx,
                                        struct tg_tensor *out,
                                        struct tg_tensor *const *in,
                                        int n_in);
static enum tg_status binary_backward_cb(struct tg_op_ctx *ctx,
                                         const struct tg_tensor *out,
                                         struct tg_tensor *const *in,
                                         int n_in);

static const struct tg_op_def add_op = {"tg_add", 0, binary_shape, binary_forward_cb,
                                        binary_backward_cb};
static const struct tg_op_def sub_op = {"tg_sub", 0, binary_shape, binary_forward_cb,
                                        binary_backward_cb};
static const struct tg_op_def mul_op = {"tg_mul", 0, binary_shape, binary_forward_cb,
                                        binary_backward_cb};
static const struct tg_op_def div_op = {"tg_div", 0, binary_shape, binary_forward_cb,
                                        binary_backward_cb};

static enum binop binop_of(const struct tg_op_def *op)
{
    if (op == &add_op)
        return OP_ADD;
    if (op == &sub_op)
        return OP_SUB;
    if (op == &mul_op)
        return OP_MUL;
    return OP_DIV;
}

static enum tg_status binary_forward_cb(struct tg_op_ctx *ctx,
                                        struct tg_tensor *out,
                                        struct tg_tensor *const *in,
                                        int n_in)
{
    struct bcast p;
    (void)n_in;
    if (out->n_elems == 0)
        return TG_OK;
    bcast_plan(&p, in[0], in[1]);
    binary_forward(out->data, in[0]->data, in[1]->data, &p, binop_of(ctx->op));
    return TG_OK;
}

/* The gradient source of operand k of op. */
static struct gsrc
gsrc_of(enum binop op, int k, const struct tg_tensor *out, struct tg_tensor *const *in)
{
    static const enum gkind kinds[4][2] = {
            [OP_ADD] = {G_ONE, G_ONE},
            [OP_SUB] = {G_ONE, G_NEG},
            [OP_MUL] = {G_MUL, G_MUL},
            [OP_DIV] = {G_DIV, G_DIV_B},
    };
    struct gsrc s = {kinds[op][k], out->grad, out->data, NULL, 1 - k, k};
    if (op == OP_DIV)
        s.k_other = 1;
    if (op == OP_MUL || op == OP_DIV)
        s.other = in[s.k_other]->data;
    return s;
}

static enum tg_status binary_backward_cb(struct tg_op_ctx *ctx,
                                         const struct tg_tensor *out,
                                         struct tg_tensor *const *in,
                                         int n_in)
{
    struct bcast p;
    enum binop op = binop_of(ctx->op);
    (void)n_in;
    if (out->n_elems == 0)
        return TG_OK;
    bcast_plan(&p, in[0], in[1]);

    /* a and b may be one tensor: each pass adds its own term. */
    for (int k = 0; k < 2; k++) {
        if (in[k]->grad == NULL)
            continue;
        struct gsrc s = gsrc_of(op, k, out, in);
        enum tg_status st = binary_grad(ctx, in[k]->grad, in[k]->n_elems, &s, &p);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

/* ---- Unary ops: kernels, outputs first ----------------------------------------- */

static void scale_forward(float *y, const float *x, int64_t n, float c)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = c * x[i];);
}

static void scale_backward(float *dx, const float *dy, int64_t n, float c)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += c * dy[i];);
}

static void add_scalar_forward(float *y, const float *x, int64_t n, float c)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = x[i] + c;);
}

static void exp_forward(float *y, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]););
}

/* d exp(x) = exp(x) = y. */
static void exp_backward(float *dx, const float *dy, const float *y, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * y[i];);
}

static void log_forward(float *y, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]););
}

static void log_backward(float *dx, const float *dy, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i] / x[i];);
}

static void sqrt_forward(float *y, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]););
}

/* d sqrt(x) = 1 / (2 sqrt(x)) = 1 / (2 y): infinite at 0, as in PyTorch. */
static void sqrt_backward(float *dx, const float *dy, const float *y, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i] / (2.0f * y[i]););
}

/* x^p with exact shortcuts for the common exponents (as PyTorch takes them). */
static void pow_forward(float *y, const float *x, int64_t n, float p)
{
    if (p == 2.0f) {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];);
    } else if (p == 3.0f) {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i] * x[i];);
    } else if (p == 0.5f) {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]););
    } else if (p == -1.0f) {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = 1.0f / x[i];);
    } else {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = powf(x[i], p););
    }
}

/*
 * d x^p = p x^(p-1). As in PyTorch: p = 0 gives 0 everywhere, p = 1 gives 1
 * everywhere (0^0 = 1), p < 1 gives inf at x = 0, negative x with a
 * non-integer p gives NaN.
 */
static void pow_backward(float *dx, const float *dy, const float *x, int64_t n, float p)
{
    if (p == 0.0f)
        return;
    if (p == 2.0f) {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * 2.0f * x[i];);
    } else if (p == 1.0f) {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i];);
    } else {
        TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] +=
                            dy[i] * (p * powf(x[i], p - 1.0f)););
    }
}

/* ---- Unary ops: table entries ---------------------------------------------------- */

struct const_params {
    float c; // scale factor, added constant or exponent
};

static enum tg_status
unary_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in);
static enum tg_status unary_backward(struct tg_op_ctx *ctx,
                                     const struct tg_tensor *out,
                                     struct tg_tensor *const *in,
                                     int n_in);

static const struct tg_op_def scale_op = {"tg_scale", sizeof(struct const_params),
                                          tg_shape_same_as_first, unary_forward, unary_backward};
static const struct tg_op_def add_scalar_op = {"tg_add_scalar", sizeof(struct const_params),
                                               tg_shape_same_as_first, unary_forward,
                                               unary_backward};
static const struct tg_op_def exp_op = {"tg_exp", 0, tg_shape_same_as_first, unary_forward,
                                        unary_backward};
static const struct tg_op_def log_op = {"tg_log", 0, tg_shape_same_as_first, unary_forward,
                                        unary_backward};
static const struct tg_op_def sqrt_op = {"tg_sqrt", 0, tg_shape_same_as_first, unary_forward,
                                         unary_backward};
static const struct tg_op_def pow_op = {"tg_pow", sizeof(struct const_params),
                                        tg_shape_same_as_first, unary_forward, unary_backward};
/* neg is scale by -1 under its own name. */
static const struct tg_op_def neg_op = {"tg_neg", sizeof(struct const_params),
                                        tg_shape_same_as_first, unary_forward, unary_backward};

static float const_of(const struct tg_op_ctx *ctx)
{
    const struct const_params *p = tg_op_ctx_params(ctx);
    return p ? p->c : 0.0f;
}

static enum tg_status
unary_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct tg_op_def *op = ctx->op;
    const float *x = in[0]->data;
    int64_t n = out->n_elems;
    (void)n_in;
    if (op == &scale_op || op == &neg_op)
        scale_forward(out->data, x, n, const_of(ctx));
    else if (op == &add_scalar_op)
        add_scalar_forward(out->data, x, n, const_of(ctx));
    else if (op == &exp_op)
        exp_forward(out->data, x, n);
    else if (op == &log_op)
        log_forward(out->data, x, n);
    else if (op == &sqrt_op)
        sqrt_forward(out->data, x, n);
    else
        pow_forward(out->data, x, n, const_of(ctx));
    return TG_OK;
}

static enum tg_status unary_backward(struct tg_op_ctx *ctx,
                                     const struct tg_tensor *out,
                                     struct tg_tensor *const *in,
                                     int n_in)
{
    const struct tg_op_def *op = ctx->op;
    struct tg_tensor *x = in[0];
    int64_t n = out->n_elems;
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    if (op == &scale_op || op == &neg_op)
        scale_backward(x->grad, out->grad, n, const_of(ctx));
    else if (op == &add_scalar_op)
        scale_backward(x->grad, out->grad, n, 1.0f);
    else if (op == &exp_op)
        exp_backward(x->grad, out->grad, out->data, n);
    else if (op == &log_op)
        log_backward(x->grad, out->grad, x->data, n);
    else if (op == &sqrt_op)
        sqrt_backward(x->grad, out->grad, out->data, n);
    else
        pow_backward(x->grad, out->grad, x->data, n, const_of(ctx));
    return TG_OK;
}

/* ---- Public entry points --------------------------------------------------- */

static struct tg_tensor *
binary_apply(const struct tg_op_def *op, struct tg_tensor *a, struct tg_tensor *b)
{
    struct tg_tensor *in[2] = {a, b};
    return tg_op_apply(op, 2, in, NULL);
}

struct tg_tensor *tg_add(struct tg_tensor *a, struct tg_tensor *b)
{
    return binary_apply(&add_op, a, b);
}

struct tg_tensor *tg_sub(struct tg_tensor *a, struct tg_tensor *b)
{
    return binary_apply(&sub_op, a, b);
}

struct tg_tensor *tg_mul(struct tg_tensor *a, struct tg_tensor *b)
{
    return binary_apply(&mul_op, a, b);
}

struct tg_tensor *tg_div(struct tg_tensor *a, struct tg_tensor *b)
{
    return binary_apply(&div_op, a, b);
}

struct tg_tensor *tg_scale(struct tg_tensor *x, float c)
{
    struct const_params p = {c};
    return tg_op_apply(&scale_op, 1, &x, &p);
}

struct tg_tensor *tg_add_scalar(struct tg_tensor *x, float c)
{
    struct const_params p = {c};
    return tg_op_apply(&add_scalar_op, 1, &x, &p);
}

struct tg_tensor *tg_neg(struct tg_tensor *x)
{
    struct const_params p = {-1.0f};
    return tg_op_apply(&neg_op, 1, &x, &p);
}

struct tg_tensor *tg_exp(struct tg_tensor *x)
{
    return tg_op_apply(&exp_op, 1, &x, NULL);
}

struct tg_tensor *tg_log(struct tg_tensor *x)
{
    return tg_op_apply(&log_op, 1, &x, NULL);
}

struct tg_tensor *tg_sqrt(struct tg_tensor *x)
{
    return tg_op_apply(&sqrt_op, 1, &x, NULL);
}

struct tg_tensor *tg_pow(struct tg_tensor *x, float p)
{
    struct const_params pp = {p};
    return tg_op_apply(&pow_op, 1, &x, &pp);
}
