/*
 * Linear algebra ops: the matrix product tg_matmul and its batched form
 * tg_bmm, each with an optional transpose of either operand. Every product,
 * forward and backward, goes through tg_sgemm(); backward adds into the
 * existing gradients with beta = 1, so an operand used on both sides (a == b)
 * receives both contributions.
 */
#include <tapegrad/gemm.h>

#include "core-impl.h"
#include "ops-impl.h"

struct matmul_params {
    bool trans_a; // a is stored transposed: (K, M) instead of (M, K)
    bool trans_b; // b is stored transposed: (N, K) instead of (K, N)
};

/* Sizes of one product y (M, N) = op(a) (M, K) op(b) (K, N) and the stored row lengths. */
struct mm_dims {
    int64_t m, n, k;
    int64_t lda, ldb; // row lengths of a and b as stored
};

static struct mm_dims
mm_dims_of(const struct tg_tensor *a, const struct tg_tensor *b, const struct matmul_params *p)
{
    int r = a->n_dims; // 2 or 3; the last two dimensions are the matrix
    struct mm_dims d;
    d.lda = a->shape[r - 1];
    d.ldb = b->shape[r - 1];
    d.m = p->trans_a ? a->shape[r - 1] : a->shape[r - 2];
    d.k = p->trans_a ? a->shape[r - 2] : a->shape[r - 1];
    d.n = p->trans_b ? b->shape[r - 2] : b->shape[r - 1];
    return d;
}

/* ---- Kernels: outputs first ---------------------------------------------- */

/* y (m, n) = op(a) op(b). */
static enum tg_status matmul_forward(float *y,
                                     const float *a,
                                     const float *b,
                                     const struct mm_dims *d,
                                     const struct matmul_params *p)
{
    return tg_sgemm(p->trans_a, p->trans_b, d->m, d->n, d->k, 1.0f, a, d->lda, b, d->ldb, 0.0f, y,
                    d->n);
}

/*
 * With y = op(a) op(b): d op(a) = dy op(b)^T and d op(b) = op(a)^T dy. A
 * transposed operand receives the transpose of its gradient, which swaps the
 * factors: da = op(b) dy^T when a is stored as (K, M), db = dy^T op(a) when b
 * is stored as (N, K). da or db may be NULL to skip it.
 */
static enum tg_status matmul_backward(float *da,
                                      float *db,
                                      const float *dy,
                                      const float *a,
                                      const float *b,
                                      const struct mm_dims *d,
                                      const struct matmul_params *p)
{
    enum tg_status st = TG_OK;
    if (da != NULL && !p->trans_a)
        st = tg_sgemm(false, !p->trans_b, d->m, d->k, d->n, 1.0f, dy, d->n, b, d->ldb, 1.0f, da,
                      d->k);
    else if (da != NULL)
        st = tg_sgemm(p->trans_b, true, d->k, d->m, d->n, 1.0f, b, d->ldb, dy, d->n, 1.0f, da,
                      d->m);
    if (st != TG_OK)
        return st;
    if (db != NULL && !p->trans_b)
        st = tg_sgemm(!p->trans_a, false, d->k, d->n, d->m, 1.0f, a, d->lda, dy, d->n, 1.0f, db,
                      d->n);
    else if (db != NULL)
        st = tg_sgemm(true, p->trans_a, d->n, d->k, d->m, 1.0f, dy, d->n, a, d->lda, 1.0f, db,
                      d->k);
    return st;
}

/* ---- Shape checks ---------------------------------------------------------- */

/* Ranks of a and b must be rank; inner sizes must agree; batch sizes too for rank 3. */
static enum tg_status
mm_shape(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int rank, int *n_dims, int64_t *shape)
{
    const struct matmul_params *p = tg_op_ctx_params(ctx);
    const char *name = tg_op_ctx_name(ctx);
    const struct tg_tensor *a = in[0];
    const struct tg_tensor *b = in[1];
    char as[TG_SHAPE_STR], bs[TG_SHAPE_STR];

    if (a->n_dims != rank || b->n_dims != rank)
        return tg_error_set(TG_ERR_SHAPE, "%s: operands must have %d dimensions (a: %s, b: %s)",
                            name, rank, SHAPE(a, as), SHAPE(b, bs));
    if (rank == 3 && a->shape[0] != b->shape[0])
        return tg_error_set(TG_ERR_SHAPE, "%s: batch sizes differ (a: %s, b: %s)", name,
                            SHAPE(a, as), SHAPE(b, bs));
    struct mm_dims d = mm_dims_of(a, b, p);
    int64_t kb = p->trans_b ? b->shape[rank - 1] : b->shape[rank - 2];
    if (d.k != kb)
        return tg_error_set(TG_ERR_SHAPE,
                            "%s: inner dimensions differ (a%s: %s, b%s: %s; op(a) has %lld "
                            "columns, op(b) has %lld rows)",
                            name, p->trans_a ? "^T" : "", SHAPE(a, as), p->trans_b ? "^T" : "",
                            SHAPE(b, bs), (long long)d.k, (long long)kb);

    *n_dims = rank;
    if (rank == 3)
        shape[0] = a->shape[0];
    shape[rank - 2] = d.m;
    shape[rank - 1] = d.n;
    return TG_OK;
}

static enum tg_status matmul_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    (void)n_in;
    return mm_shape(ctx, in, 2, n_dims, shape);
}

static enum tg_status
bmm_shape(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    (void)n_in;
    return mm_shape(ctx, in, 3, n_dims, shape);
}

/* ---- Op table entries ------------------------------------------------------ */

/* Matrices in the batch (1 for matmul) and the element stride between them. */
static int64_t n_batches(const struct tg_tensor *t)
{
    return t->n_dims == 3 ? t->shape[0] : 1;
}

static int64_t batch_stride(const struct tg_tensor *t)
{
    return t->n_dims == 3 ? t->shape[1] * t->shape[2] : 0;
}

/* Forward and backward serve both ops: a batch of one matrix is matmul. */
static enum tg_status
mm_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct matmul_params *p = tg_op_ctx_params(ctx);
    const struct tg_tensor *a = in[0];
    const struct tg_tensor *b = in[1];
    struct mm_dims d = mm_dims_of(a, b, p);
    (void)n_in;

    /* a: (B, ., .), b: (B, ., .), y: (B, M, N); the batch loop is serial, tg_sgemm threads. */
    for (int64_t i = 0; i < n_batches(a); i++) {
        enum tg_status st = matmul_forward(out->data + i * d.m * d.n, a->data + i * batch_stride(a),
                                           b->data + i * batch_stride(b), &d, p);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

static enum tg_status mm_backward(struct tg_op_ctx *ctx,
                                  const struct tg_tensor *out,
                                  struct tg_tensor *const *in,
                                  int n_in)
{
    const struct matmul_params *p = tg_op_ctx_params(ctx);
    const struct tg_tensor *a = in[0];
    const struct tg_tensor *b = in[1];
    struct mm_dims d = mm_dims_of(a, b, p);
    (void)n_in;

    if (a->grad == NULL && b->grad == NULL)
        return TG_OK;
    for (int64_t i = 0; i < n_batches(a); i++) {
        int64_t oa = i * batch_stride(a);
        int64_t ob = i * batch_stride(b);
        enum tg_status st =
                matmul_backward(a->grad ? a->grad + oa : NULL, b->grad ? b->grad + ob : NULL,
                                out->grad + i * d.m * d.n, a->data + oa, b->data + ob, &d, p);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

static const struct tg_op_def matmul_op = {"tg_matmul", sizeof(struct matmul_params), matmul_shape,
                                           mm_forward, mm_backward};
static const struct tg_op_def bmm_op = {"tg_bmm", sizeof(struct matmul_params), bmm_shape,
                                        mm_forward, mm_backward};

/* ---- Public entry points --------------------------------------------------- */

struct tg_tensor *tg_matmul(struct tg_tensor *a, struct tg_tensor *b, bool trans_a, bool trans_b)
{
    struct tg_tensor *in[2] = {a, b};
    struct matmul_params p = {trans_a, trans_b};
    return tg_op_apply(&matmul_op, 2, in, &p);
}

struct tg_tensor *tg_bmm(struct tg_tensor *a, struct tg_tensor *b, bool trans_a, bool trans_b)
{
    struct tg_tensor *in[2] = {a, b};
    struct matmul_params p = {trans_a, trans_b};
    return tg_op_apply(&bmm_op, 2, in, &p);
}
