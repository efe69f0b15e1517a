/*
 * Private helpers shared by the built-in ops: common shape checks, message
 * formatting and the threading threshold of element-wise loops.
 */
#ifndef TAPEGRAD_OPS_IMPL_H
#define TAPEGRAD_OPS_IMPL_H

#include <tapegrad/gemm.h>
#include <tapegrad/ops.h>

/* Loops run on several threads only above this many elements. */
#define TG_PARALLEL_MIN 32768

/*
 * TG_PARALLEL_LOOP(n, for-statement): run the loop on the kernel threads
 * (tg_get_num_threads(), static schedule) when its work n is large enough,
 * and as a plain loop otherwise. The small case never enters the OpenMP
 * runtime, whose fork and join cost microseconds (a futex round trip and an
 * allocation): that is what keeps the tape's per-op overhead small.
 */
#ifdef _OPENMP
#define TG_PRAGMA(x) _Pragma(#x)
#define TG_PARALLEL_LOOP(n, ...)                                                                   \
    do {                                                                                           \
        int tg_nt_ = (n) >= TG_PARALLEL_MIN ? tg_get_num_threads() : 1;                            \
        if (tg_nt_ > 1) {                                                                          \
            TG_PRAGMA(omp parallel for schedule(static) num_threads(tg_nt_))                       \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)
#else
#define TG_PARALLEL_LOOP(n, ...)                                                                   \
    do {                                                                                           \
        __VA_ARGS__                                                                                \
    } while (0)
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
