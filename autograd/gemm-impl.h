/*
 * Private GEMM controls for tests and benchmarks: choose the micro-kernel
 * instead of letting the CPU check (and TG_GEMM_KERNEL) pick it, and drop the
 * packing buffers. Not installed.
 */
#ifndef TAPEGRAD_GEMM_IMPL_H
#define TAPEGRAD_GEMM_IMPL_H

#include <stdbool.h>

/** Micro-kernels of tg_sgemm(). */
enum tg_gemm_kernel {
    TG_GEMM_KERNEL_AUTO = 0, /**< the best one the CPU supports */
    TG_GEMM_KERNEL_PORTABLE, /**< plain C */
    TG_GEMM_KERNEL_AVX2,     /**< AVX2 + FMA intrinsics, x86-64 only */
};

/*
 * Make later tg_sgemm() calls of every thread use kernel. Not thread-safe
 * against concurrent products. Returns false, changing nothing, when this CPU
 * or build lacks the kernel. Ignored when the library calls a BLAS library.
 */
bool tg_gemm_force_kernel(enum tg_gemm_kernel kernel);

/*
 * Free the packing buffers tg_sgemm() keeps for the process lifetime; the
 * next large product allocates them again. For tests (allocation failures,
 * leak checks); must not run concurrently with a product.
 */
void tg_gemm_release_buffers(void);

/*
 * Make sure n products can run at once from different threads without
 * allocating: the pool then holds packing space for n of them (slots taken
 * by other threads right now do not count). A parallel pass calls this before
 * its threads start, so that its first run, not a later one that happens to
 * overlap more, does the allocating. TG_OK, or TG_ERR_NOMEM with a message.
 */
enum tg_status tg_gemm_reserve(int n);

#endif
