/*
 * Single-precision matrix multiply (GEMM), the kernel behind tg_matmul and the
 * im2col convolutions, and the thread count of the library's kernels.
 */
#ifndef TAPEGRAD_GEMM_H
#define TAPEGRAD_GEMM_H

#include <tapegrad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * C = alpha * op(A) * op(B) + beta * C on row-major matrices, op(X) = X or X^T.
 *
 * Shapes: op(A) is m x k, op(B) is k x n, C is m x n. Each matrix is stored
 * row by row with a row stride (its leading dimension) of at least its stored
 * row length:
 * - A is stored m x k with lda >= k, or k x m with lda >= m when trans_a;
 * - B is stored k x n with ldb >= n, or n x k with ldb >= k when trans_b;
 * - C is stored m x n with ldc >= n.
 *
 * With beta == 0, C is written without being read, so it may hold NaN or
 * uninitialised values. With k == 0 or alpha == 0, C becomes beta * C and A
 * and B are not read; with m == 0 or n == 0 nothing is touched. A and B must
 * not overlap C.
 *
 * For a given thread count (tg_set_num_threads()) the result is bit-identical
 * from run to run: each element of C is computed by one thread, summing over k
 * in a fixed order. With the built-in kernels it does not depend on the thread
 * count either. Built with the meson option blas set, products go to
 * cblas_sgemm() and these guarantees are the BLAS library's.
 *
 * @param trans_a use A^T: A is stored k x m.
 * @param trans_b use B^T: B is stored n x k.
 * @param m rows of op(A) and of C, >= 0.
 * @param n columns of op(B) and of C, >= 0.
 * @param k columns of op(A) and rows of op(B), >= 0.
 * @param alpha scale of the product.
 * @param a first operand, read only; may be NULL when m or k is 0.
 * @param lda elements between the starts of consecutive stored rows of A.
 * @param b second operand, read only; may be NULL when k or n is 0.
 * @param ldb elements between the starts of consecutive stored rows of B.
 * @param beta scale of the previous C; 0 ignores C's previous contents.
 * @param c result, m x n, updated in place; may be NULL when m or n is 0.
 * @param ldc elements between the starts of consecutive rows of C.
 * @return TG_OK;
 *         TG_ERR_INVALID for a negative size, a NULL matrix that has elements
 *         or a leading dimension smaller than its row length;
 *         TG_ERR_NOMEM when the packing buffers (allocated on the first large
 *         product of each thread count and kept for the process lifetime)
 *         cannot be allocated.
 *         On failure C is unchanged and tg_last_error() says why.
 */
TG_API enum tg_status tg_sgemm(bool trans_a,
                               bool trans_b,
                               int64_t m,
                               int64_t n,
                               int64_t k,
                               float alpha,
                               const float *a,
                               int64_t lda,
                               const float *b,
                               int64_t ldb,
                               float beta,
                               float *c,
                               int64_t ldc);

/**
 * Name of the GEMM code path tg_sgemm() takes on this CPU.
 * @return a static string: "avx2-fma 6x16" (x86-64 with AVX2 and FMA),
 *         "portable 6x16" (plain C, also chosen by setting the environment
 *         variable TG_GEMM_KERNEL=portable before the first product) or
 *         "cblas" when the library was built to call a BLAS library.
 */
TG_API const char *tg_gemm_kernel_name(void);

/**
 * Number of threads the library's kernels use.
 * @return the count set by tg_set_num_threads(), by default OpenMP's
 *         omp_get_max_threads() (the OMP_NUM_THREADS environment variable);
 *         always 1 in a build without OpenMP.
 */
TG_API int tg_get_num_threads(void);

/**
 * Set the number of threads the library's kernels use, for all threads of
 * the process. Has no effect in a build without OpenMP.
 * @param n threads, at most 64 are used; n < 1 restores the default.
 */
TG_API void tg_set_num_threads(int n);

#ifdef __cplusplus
}
#endif

#endif
