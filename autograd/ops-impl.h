/*
 * Private helpers shared by the built-in ops: common shape checks, message
 * formatting and the threading threshold of element-wise loops.
 */
#ifndef TAPEGRAD_OPS_IMPL_H
#define TAPEGRAD_OPS_IMPL_H

#include <tapegrad/gemm.h>
#include <tapegrad/ops.h>

/* Element-wise loops run on several threads only above this many elements. */
#define TG_PARALLEL_MIN 32768

#ifdef _OPENMP
#define TG_PRAGMA(x) _Pragma(#x)
#define TG_PARALLEL_FOR(n)                                                                         \
    TG_PRAGMA(omp parallel for schedule(static) num_threads(tg_get_num_threads())               \
                      if ((n) >= TG_PARALLEL_MIN))
#else
#define TG_PARALLEL_FOR(n)
#endif

/* Shape callback: one input, output of the same shape. */
enum tg_status tg_shape_same_as_first(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape);

/* "2x3x4" for messages; buf of at least TG_SHAPE_STR bytes. */
#define TG_SHAPE_STR  96
#define SHAPE(t, buf) tg_tensor_shape_str((t), (buf), sizeof(buf))

/* Normalise a possibly negative axis of a rank-n tensor; -1 when out of range. */
int tg_axis_norm(int axis, int n_dims);

#endif
