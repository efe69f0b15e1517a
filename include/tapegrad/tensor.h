/*
 * Float32 tensors: row-major, contiguous, 0 to TG_MAX_DIMS dimensions, with
 * storage aligned to 64 bytes.
 *
 * A tensor made by tg_tensor_new() is a leaf: it lives on the heap until
 * tg_tensor_free(). A tensor made by an op while a tape records, or by
 * tg_tape_tensor_new(), belongs to that tape and is released by
 * tg_tape_reset() or tg_tape_free().
 */
#ifndef TAPEGRAD_TENSOR_H
#define TAPEGRAD_TENSOR_H

#include <tapegrad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most dimensions a tensor can have. */
#define TG_MAX_DIMS 6

/**
 * Most elements one tensor may hold: 2^38 floats (1 TiB). Larger sizes are
 * refused with TG_ERR_NOMEM before any allocation is tried.
 */
#define TG_MAX_ELEMS ((int64_t)1 << 38)

/** Byte alignment of every tensor's data and grad. */
#define TG_ALIGN 64

struct tg_tape;

/**
 * A float32 tensor.
 *
 * The caller may read every field and may write the floats that data and grad
 * point to; the other fields are managed by the library.
 */
struct tg_tensor {
    float *data;                /**< n_elems floats, row-major, 64-byte aligned */
    float *grad;                /**< gradient of the same shape, or NULL when none is kept */
    int64_t shape[TG_MAX_DIMS]; /**< sizes; entries past n_dims are 1 */
    int n_dims;                 /**< 0 (a scalar) to TG_MAX_DIMS */
    int64_t n_elems;            /**< product of the sizes; 1 for a scalar */
    bool requires_grad;         /**< backward computes a gradient for it */
    struct tg_tape *tape;       /**< the owning tape, NULL for a heap (leaf) tensor */
    uint32_t flags;             /**< private to the library */
};

/**
 * Make a heap tensor filled with zeros.
 * @param n_dims number of dimensions, 0 to TG_MAX_DIMS.
 * @param shape n_dims sizes, each >= 0 (may be NULL when n_dims is 0).
 * @return the tensor, to be released with tg_tensor_free(); NULL with
 *         TG_ERR_INVALID for a bad rank or negative size, TG_ERR_NOMEM when
 *         the byte size overflows or the allocation fails.
 */
TG_API struct tg_tensor *tg_tensor_new(int n_dims, const int64_t *shape);

/**
 * Make a heap tensor and copy n_elems floats into it.
 * @param n_dims, shape as for tg_tensor_new().
 * @param data the values in row-major order; may be NULL for zeros.
 * @return as tg_tensor_new().
 */
TG_API struct tg_tensor *tg_tensor_from_data(int n_dims, const int64_t *shape, const float *data);

/**
 * Release a heap tensor and its gradient. NULL is a no-op, and so is a tensor
 * owned by a tape (the tape releases those).
 * @param t the tensor.
 */
TG_API void tg_tensor_free(struct tg_tensor *t);

/**
 * Mark a heap tensor as a leaf whose gradient backward accumulates. Turning it
 * on allocates a zeroed grad buffer once; turning it off frees it.
 * @param t a heap tensor.
 * @param requires_grad the new setting.
 * @return TG_OK; TG_ERR_INVALID for NULL or a tape-owned tensor; TG_ERR_NOMEM
 *         when the grad cannot be allocated (the tensor is then unchanged).
 */
TG_API enum tg_status tg_tensor_set_requires_grad(struct tg_tensor *t, bool requires_grad);

/**
 * Set a tensor's gradient to zero, if it has one.
 * @param t the tensor; NULL is a no-op.
 */
TG_API void tg_tensor_zero_grad(struct tg_tensor *t);

/**
 * Set every element of a tensor's data to value.
 * @param t the tensor; NULL is a no-op.
 * @param value the fill value.
 */
TG_API void tg_tensor_fill(struct tg_tensor *t, float value);

/**
 * Copy the data of src into dst.
 * @param dst the destination; its shape must equal src's.
 * @param src the source.
 * @return TG_OK; TG_ERR_INVALID for NULL; TG_ERR_SHAPE when the shapes differ
 *         (dst is then unchanged).
 */
TG_API enum tg_status tg_tensor_copy(struct tg_tensor *dst, const struct tg_tensor *src);

/**
 * Whether two tensors have the same number of dimensions and sizes.
 * @return false when either is NULL.
 */
TG_API bool tg_tensor_same_shape(const struct tg_tensor *a, const struct tg_tensor *b);

/**
 * Format a tensor's shape as "2x3x4" ("scalar" for 0 dimensions).
 * @param t the tensor (NULL gives "null").
 * @param buf the destination.
 * @param size bytes available in buf; the result is always terminated.
 * @return buf.
 */
TG_API char *tg_tensor_shape_str(const struct tg_tensor *t, char *buf, size_t size);

/**
 * Number of elements of a shape, with overflow and sign checks.
 * @param n_dims 0 to TG_MAX_DIMS.
 * @param shape the sizes.
 * @param n_elems receives the product on success.
 * @return TG_OK; TG_ERR_INVALID for a bad rank or a negative size;
 *         TG_ERR_NOMEM when the count exceeds TG_MAX_ELEMS.
 */
TG_API enum tg_status tg_shape_numel(int n_dims, const int64_t *shape, int64_t *n_elems);

#ifdef __cplusplus
}
#endif

#endif
