/* Heap tensors: creation with checked sizes, grads, fill and copy. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"
#include "ops-impl.h"

enum tg_status tg_shape_numel(int n_dims, const int64_t *shape, int64_t *n_elems)
{
    if (n_dims < 0 || n_dims > TG_MAX_DIMS)
        return tg_error_set(TG_ERR_INVALID, "tensor: %d dimensions, expected 0 to %d", n_dims,
                            TG_MAX_DIMS);
    if (n_dims > 0 && shape == NULL)
        return tg_error_set(TG_ERR_INVALID, "tensor: shape is NULL for %d dimensions", n_dims);
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0)
            return tg_error_set(TG_ERR_INVALID,
                                "tensor: size %" PRId64 " of dimension %d is negative", shape[i],
                                i);
        if (shape[i] != 0 && n > TG_MAX_ELEMS / shape[i])
            return tg_error_set(TG_ERR_NOMEM,
                                "tensor: element count overflows at dimension %d (limit %" PRId64
                                " elements, 1 TiB)",
                                i, (int64_t)TG_MAX_ELEMS);
        n *= shape[i];
    }
    *n_elems = n;
    return TG_OK;
}

void tg_tensor_init_shape(struct tg_tensor *t, int n_dims, const int64_t *shape, int64_t n_elems)
{
    for (int i = 0; i < TG_MAX_DIMS; i++)
        t->shape[i] = i < n_dims ? shape[i] : 1;
    t->n_dims = n_dims;
    t->n_elems = n_elems;
}

struct tg_tensor *tg_tensor_new(int n_dims, const int64_t *shape)
{
    return tg_tensor_from_data(n_dims, shape, NULL);
}

struct tg_tensor *tg_tensor_from_data(int n_dims, const int64_t *shape, const float *data)
{
    int64_t n;
    if (tg_shape_numel(n_dims, shape, &n) != TG_OK)
        return NULL;
    struct tg_tensor *t = tg_xcalloc(sizeof(*t));
    if (t == NULL)
        return NULL;
    t->data = tg_xmalloc((size_t)n * sizeof(float));
    if (t->data == NULL) {
        tg_xfree(t);
        return NULL;
    }
    if (data != NULL)
        memcpy(t->data, data, (size_t)n * sizeof(float));
    else
        memset(t->data, 0, (size_t)n * sizeof(float));
    tg_tensor_init_shape(t, n_dims, shape, n);
    t->flags = TG_TENSOR_HEAP;
    return t;
}

void tg_tensor_free(struct tg_tensor *t)
{
    if (t == NULL || !(t->flags & TG_TENSOR_HEAP))
        return;
    tg_xfree(t->grad);
    tg_xfree(t->data);
    tg_xfree(t);
}

enum tg_status tg_tensor_set_requires_grad(struct tg_tensor *t, bool requires_grad)
{
    if (t == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_tensor_set_requires_grad: tensor is NULL");
    if (!(t->flags & TG_TENSOR_HEAP))
        return tg_error_set(TG_ERR_INVALID,
                            "tg_tensor_set_requires_grad: tensor belongs to a tape; only heap "
                            "tensors can be leaves");
    if (requires_grad && t->grad == NULL) {
        t->grad = tg_xcalloc((size_t)t->n_elems * sizeof(float));
        if (t->grad == NULL)
            return TG_ERR_NOMEM;
    } else if (!requires_grad) {
        tg_xfree(t->grad);
        t->grad = NULL;
    }
    t->requires_grad = requires_grad;
    return TG_OK;
}

/* Bytes per piece of a threaded clear. */
#define ZERO_PIECE ((size_t)64 << 10)

void tg_zero_bytes(void *p, size_t bytes)
{
    char *c = p;
    int64_t n_pieces = (int64_t)((bytes + ZERO_PIECE - 1) / ZERO_PIECE);
    int64_t total = (int64_t)(bytes / sizeof(float)); // compared with TG_PARALLEL_MIN floats
    (void)total;                                      // only read by the OpenMP clause
    TG_PARALLEL_LOOP(
            total, for (int64_t i = 0; i < n_pieces; i++) {
                size_t at = (size_t)i * ZERO_PIECE;
                memset(c + at, 0, bytes - at < ZERO_PIECE ? bytes - at : ZERO_PIECE);
            });
}

void tg_tensor_zero_grad(struct tg_tensor *t)
{
    if (t != NULL && t->grad != NULL)
        tg_zero_bytes(t->grad, (size_t)t->n_elems * sizeof(float));
}

void tg_tensor_fill(struct tg_tensor *t, float value)
{
    if (t == NULL)
        return;
    for (int64_t i = 0; i < t->n_elems; i++)
        t->data[i] = value;
}

bool tg_tensor_same_shape(const struct tg_tensor *a, const struct tg_tensor *b)
{
    if (a == NULL || b == NULL || a->n_dims != b->n_dims)
        return false;
    for (int i = 0; i < a->n_dims; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

enum tg_status tg_tensor_copy(struct tg_tensor *dst, const struct tg_tensor *src)
{
    if (dst == NULL || src == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_tensor_copy: %s is NULL",
                            dst == NULL ? "dst" : "src");
    if (!tg_tensor_same_shape(dst, src)) {
        char ds[64], ss[64];
        return tg_error_set(TG_ERR_SHAPE, "tg_tensor_copy: shapes differ (dst: %s, src: %s)",
                            tg_tensor_shape_str(dst, ds, sizeof(ds)),
                            tg_tensor_shape_str(src, ss, sizeof(ss)));
    }
    if (dst != src)
        memmove(dst->data, src->data, (size_t)src->n_elems * sizeof(float));
    return TG_OK;
}

char *tg_tensor_shape_str(const struct tg_tensor *t, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return buf;
    if (t == NULL) {
        snprintf(buf, size, "null");
        return buf;
    }
    if (t->n_dims == 0) {
        snprintf(buf, size, "scalar");
        return buf;
    }
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->n_dims && off < size; i++) {
        int w = snprintf(buf + off, size - off, i ? "x%" PRId64 : "%" PRId64, t->shape[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    return buf;
}
