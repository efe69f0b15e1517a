/*
 * tg_sgemm: a cache-blocked GEMM on packed panels, in the GotoBLAS/BLIS
 * manner. Per thread the loop nest is
 *
 *   jc  NC columns of C        packed B block (KC x NC) lives in L2/L3
 *    pc  KC of the k sum
 *     ic  MC rows of C         pack op(A)[ic.., pc..]; A block (MC x KC) in L2
 *      jr  NR columns          B micro-panel (KC x NR) in L1; packed during the
 *                              first ic pass, right before its first use
 *       ir  MR rows            micro-kernel: C tile (MR x NR) += A panel B panel
 *
 * Packing resolves both transposes, so one micro-kernel serves all four
 * cases. Threads split C into tile-aligned rectangles, one per thread, and
 * each runs the whole nest on its own rectangle with its own buffers: no
 * barriers, and each element of C sees the same operations in the same order
 * whatever the thread count (the k blocking depends on k alone).
 */
#include <tapegrad/gemm.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TG_GEMM_X86 1
#endif

#ifdef TG_HAVE_CBLAS
#include <cblas.h>
#include <limits.h>
#endif

#include "alloc-impl.h"
#include "gemm-impl.h"

/* Register tile of the micro-kernels and cache blocks (Zen 3: 32 KiB L1d,
 * 512 KiB L2 per core, 32 MiB L3). KC x NR floats of B stay in L1, MC x KC
 * of A in L2. MC is a multiple of MR and NC of NR. */
#define MR 6
#define NR 16
#define KC 256
#define MC 144
#define NC 4096

/* Products below SMALL_WORK multiply-adds take a plain loop; a thread gets at
 * least THREAD_WORK multiply-adds. */
#define SMALL_WORK  (32 * 32 * 32)
#define THREAD_WORK (2 * 64 * 64 * 64)
#define MAX_THREADS 64

/* C tile (MR x NR, row stride ldc) = alpha * (A panel)(B panel) + beta * C
 * tile over k steps; C is not read when beta == 0. */
typedef void (*kernel_fn)(
        int64_t k, const float *a, const float *b, float *c, int64_t ldc, float alpha, float beta);

/* One product and the code path chosen for it. */
struct gemm_job {
    bool trans_a;
    bool trans_b;
    int64_t m;
    int64_t n;
    int64_t k;
    float alpha;
    float beta;
    const float *a;
    int64_t lda;
    const float *b;
    int64_t ldb;
    float *c;
    int64_t ldc;
    kernel_fn kernel;
    bool avx2; // pack with the AVX2 transposes
};

static atomic_int kernel_choice;           // enum tg_gemm_kernel; AUTO until first use
static atomic_int n_threads_user;          // tg_set_num_threads(); 0 = OpenMP's default
static float *pack_bufs[MAX_THREADS];      // pool of packing space, kept for life
static atomic_bool pack_busy[MAX_THREADS]; // pack_bufs[i] is taken by a product

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

static int64_t ceil_div(int64_t x, int64_t y)
{
    return (x + y - 1) / y;
}

/* Split len into equal blocks of at most max, rounded up to a multiple of unit. */
static int64_t block_size(int64_t len, int64_t max, int64_t unit)
{
    int64_t n_blocks = ceil_div(len, max);
    return ceil_div(ceil_div(len, n_blocks), unit) * unit;
}

/* ---- Portable micro-kernel and packing ------------------------------------ */

static void kernel_portable(
        int64_t k, const float *a, const float *b, float *c, int64_t ldc, float alpha, float beta)
{
    float acc[MR][NR] = {{0}};

    for (int64_t p = 0; p < k; p++) {
        for (int i = 0; i < MR; i++) {
            for (int j = 0; j < NR; j++)
                acc[i][j] += a[i] * b[j];
        }
        a += MR;
        b += NR;
    }

    for (int i = 0; i < MR; i++) {
        float *row = c + i * ldc;
        for (int j = 0; j < NR; j++)
            row[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * row[j];
    }
}

/*
 * Pack rows [0, mc) and columns [0, kc) of op(A), a pointing at its (0, 0),
 * into MR-row micro-panels: ap[(i / MR) * MR * kc + p * MR + i % MR] =
 * op(A)(i, p), rows past mc zero.
 */
static void pack_a(float *ap, const float *a, int64_t lda, bool trans, int64_t mc, int64_t kc)
{
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
        int64_t mr = min64(MR, mc - i0);
        if (mr < MR)
            memset(ap, 0, sizeof(float) * MR * (size_t)kc);
        if (trans) {
            for (int64_t p = 0; p < kc; p++) {
                for (int64_t i = 0; i < mr; i++)
                    ap[p * MR + i] = a[p * lda + i0 + i];
            }
        } else {
            for (int64_t i = 0; i < mr; i++) {
                for (int64_t p = 0; p < kc; p++)
                    ap[p * MR + i] = a[(i0 + i) * lda + p];
            }
        }
        ap += MR * kc;
    }
}

#ifdef __GNUC__
#define PREFETCH(p) __builtin_prefetch(p, 0, 3)
#else
#define PREFETCH(p) ((void)(p))
#endif

/*
 * Pack one micro-panel of op(B): nr <= NR columns and kc rows, b pointing at
 * its (0, 0), into bp[p * NR + j], columns past nr zero. With next set, also
 * prefetch the source of the following panel, so that its memory latency
 * hides behind the micro-kernels run on this one.
 */
static void pack_b_panel_generic(
        float *bp, const float *b, int64_t ldb, bool trans, int64_t nr, int64_t kc, bool next)
{
    if (nr < NR)
        memset(bp, 0, sizeof(float) * NR * (size_t)kc);
    if (trans) {
        for (int64_t j = 0; j < nr; j++) {
            for (int64_t p = 0; p < kc; p++)
                bp[p * NR + j] = b[j * ldb + p];
        }
        return;
    }
    for (int64_t p = 0; p < kc; p++) {
        const float *src = b + p * ldb;
        if (next)
            PREFETCH(src + NR + NR - 1);
        for (int64_t j = 0; j < nr; j++)
            bp[p * NR + j] = src[j];
    }
}

/* ---- AVX2 + FMA micro-kernel and packing ---------------------------------- */

#ifdef TG_GEMM_X86

#define TARGET_AVX2 __attribute__((target("avx2,fma")))

/* acc * alpha + beta * c into 16 floats of one C row. */
TARGET_AVX2 static inline void
store_row(float *c, __m256 acc0, __m256 acc1, __m256 alpha, __m256 beta, bool read_c)
{
    if (read_c) {
        acc0 = _mm256_fmadd_ps(acc0, alpha, _mm256_mul_ps(beta, _mm256_loadu_ps(c)));
        acc1 = _mm256_fmadd_ps(acc1, alpha, _mm256_mul_ps(beta, _mm256_loadu_ps(c + 8)));
    } else {
        acc0 = _mm256_mul_ps(acc0, alpha);
        acc1 = _mm256_mul_ps(acc1, alpha);
    }
    _mm256_storeu_ps(c, acc0);
    _mm256_storeu_ps(c + 8, acc1);
}

/* Row i of the tile: broadcast a[i], multiply-add both halves of the B row. */
#define FMA_ROW(i, a, b0, b1)                                                                      \
    do {                                                                                           \
        __m256 ai = _mm256_broadcast_ss((a) + (i));                                                \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                                \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                                                \
    } while (0)

/* One k step: rank-1 update of the 12 accumulators. */
#define FMA_STEP(a, b)                                                                             \
    do {                                                                                           \
        __m256 b0 = _mm256_load_ps(b);                                                             \
        __m256 b1 = _mm256_load_ps((b) + 8);                                                       \
        FMA_ROW(0, a, b0, b1);                                                                     \
        FMA_ROW(1, a, b0, b1);                                                                     \
        FMA_ROW(2, a, b0, b1);                                                                     \
        FMA_ROW(3, a, b0, b1);                                                                     \
        FMA_ROW(4, a, b0, b1);                                                                     \
        FMA_ROW(5, a, b0, b1);                                                                     \
    } while (0)

/* 6x16 tile in 12 ymm accumulators; two aligned B loads and six broadcasts
 * feed twelve FMAs per k step. */
TARGET_AVX2 static void kernel_avx2(
        int64_t k, const float *a, const float *b, float *c, int64_t ldc, float alpha, float beta)
{
    __m256 c00 = _mm256_setzero_ps();
    __m256 c01 = c00;
    __m256 c10 = c00;
    __m256 c11 = c00;
    __m256 c20 = c00;
    __m256 c21 = c00;
    __m256 c30 = c00;
    __m256 c31 = c00;
    __m256 c40 = c00;
    __m256 c41 = c00;
    __m256 c50 = c00;
    __m256 c51 = c00;

    for (int i = 0; i < MR; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }

    int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
        FMA_STEP(a, b);
        FMA_STEP(a + MR, b + NR);
        FMA_STEP(a + 2 * MR, b + 2 * NR);
        FMA_STEP(a + 3 * MR, b + 3 * NR);
        a += 4 * MR;
        b += 4 * NR;
    }
    for (; p < k; p++) {
        FMA_STEP(a, b);
        a += MR;
        b += NR;
    }

    __m256 va = _mm256_set1_ps(alpha);
    __m256 vb = _mm256_set1_ps(beta);
    bool read_c = beta != 0.0f;
    store_row(c, c00, c01, va, vb, read_c);
    store_row(c + ldc, c10, c11, va, vb, read_c);
    store_row(c + 2 * ldc, c20, c21, va, vb, read_c);
    store_row(c + 3 * ldc, c30, c31, va, vb, read_c);
    store_row(c + 4 * ldc, c40, c41, va, vb, read_c);
    store_row(c + 5 * ldc, c50, c51, va, vb, read_c);
}

/*
 * Partial tile into tile (row stride NR): only rows [0, mr) and, when half is
 * set, only the left 8 columns are computed. Each element gets the same
 * operations as in kernel_avx2(). Inlined with constant mr and half.
 */
TARGET_AVX2 static inline __attribute__((always_inline)) void
edge_tile_avx2(int64_t k, const float *a, const float *b, float *tile, int mr, bool half)
{
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }

    for (int64_t p = 0; p < k; p++) {
        __m256 b0 = _mm256_load_ps(b);
        __m256 b1 = half ? b0 : _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (!half)
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }

#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        _mm256_store_ps(tile + i * NR, acc[i][0]);
        if (!half)
            _mm256_store_ps(tile + i * NR + 8, acc[i][1]);
    }
}

/* Dispatch a partial tile to a copy of edge_tile_avx2() specialised for it. */
TARGET_AVX2 static void
kernel_edge_avx2(int64_t k, const float *a, const float *b, float *tile, int64_t mr, int64_t nr)
{
    bool half = nr <= 8;
    switch (mr) {
    case 1:
        half ? edge_tile_avx2(k, a, b, tile, 1, true) : edge_tile_avx2(k, a, b, tile, 1, false);
        break;
    case 2:
        half ? edge_tile_avx2(k, a, b, tile, 2, true) : edge_tile_avx2(k, a, b, tile, 2, false);
        break;
    case 3:
        half ? edge_tile_avx2(k, a, b, tile, 3, true) : edge_tile_avx2(k, a, b, tile, 3, false);
        break;
    case 4:
        half ? edge_tile_avx2(k, a, b, tile, 4, true) : edge_tile_avx2(k, a, b, tile, 4, false);
        break;
    case 5:
        half ? edge_tile_avx2(k, a, b, tile, 5, true) : edge_tile_avx2(k, a, b, tile, 5, false);
        break;
    default:
        half ? edge_tile_avx2(k, a, b, tile, 6, true) : edge_tile_avx2(k, a, b, tile, 6, false);
        break;
    }
}

/* Transpose the 8x8 block in r[0..8) in place. */
TARGET_AVX2 static inline void transpose8(__m256 r[8])
{
    __m256 t[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    __m256 u[8];
    for (int i = 0; i < 2; i++) {
        __m256 *s = t + 4 * i;
        u[4 * i] = _mm256_shuffle_ps(s[0], s[2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(s[0], s[2], 0xee);
        u[4 * i + 2] = _mm256_shuffle_ps(s[1], s[3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(s[1], s[3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/*
 * Full NR-column micro-panel of op(B) = B^T: b is stored n x k, so the panel's
 * columns are 16 rows of b. Eight k at a time, two 8x8 transposes.
 */
TARGET_AVX2 static void
pack_b_trans_avx2(float *bp, const float *b, int64_t ldb, int64_t kc, bool next)
{
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        if (next && p % 16 == 0) {
            for (int j = 0; j < NR; j++)
                _mm_prefetch((const char *)(b + (NR + j) * ldb + p), _MM_HINT_T0);
        }
        for (int h = 0; h < NR / 8; h++) {
            __m256 r[8];
            for (int j = 0; j < 8; j++)
                r[j] = _mm256_loadu_ps(b + (h * 8 + j) * ldb + p);
            transpose8(r);
            for (int q = 0; q < 8; q++)
                _mm256_store_ps(bp + (p + q) * NR + h * 8, r[q]);
        }
    }
    for (; p < kc; p++) {
        for (int j = 0; j < NR; j++)
            bp[p * NR + j] = b[j * ldb + p];
    }
}

/* Full NR-column micro-panel of op(B) = B: a row of 16 floats per k. */
TARGET_AVX2 static void
pack_b_rows_avx2(float *bp, const float *b, int64_t ldb, int64_t kc, bool next)
{
    for (int64_t p = 0; p < kc; p++) {
        const float *src = b + p * ldb;
        if (next)
            _mm_prefetch((const char *)(src + 2 * NR - 1), _MM_HINT_T0);
        _mm256_store_ps(bp + p * NR, _mm256_loadu_ps(src));
        _mm256_store_ps(bp + p * NR + 8, _mm256_loadu_ps(src + 8));
    }
}

/* ---- AVX2 + FMA dot-product path for C = alpha A B^T + beta C ------------- */

/*
 * When A (m x k) and B (n x k) are both stored by rows, every element of C is
 * the dot product of two contiguous rows, and a product with few rows and
 * columns but a long k (a convolution's weight gradient summed over the
 * output positions, a narrow linear layer) can run from the operands in place:
 * the blocked path would spend about as long packing them as multiplying.
 * Blocks of up to DOT_MR rows of A by DOT_NR rows of B keep their sums in
 * registers, eight lanes each; each lane adds its k in order, the lanes are
 * then summed in a fixed tree and the k % 8 tail comes last, so the result
 * depends on the sizes alone, never on the threads.
 */
#define DOT_MR     4
#define DOT_NR     3
#define DOT_MAX_MN 64  // most rows or columns of C that take this path
#define DOT_MIN_K  256 // fewest k

/* Sum of the eight lanes of v, in a fixed order. */
TARGET_AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* C rows [i0, i0 + mr) x columns [j0, j0 + nr); inlined with constant mr and nr. */
TARGET_AVX2 static inline __attribute__((always_inline)) void
dot_block_avx2(const struct gemm_job *g, int64_t i0, int64_t j0, int mr, int nr)
{
    const float *a = g->a + i0 * g->lda;
    const float *b = g->b + j0 * g->ldb;
    int64_t k8 = g->k / 8 * 8;
    __m256 acc[DOT_MR][DOT_NR];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 3
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm256_setzero_ps();

    for (int64_t p = 0; p < k8; p += 8) {
        __m256 bv[DOT_NR];
#pragma GCC unroll 3
        for (int j = 0; j < nr; j++)
            bv[j] = _mm256_loadu_ps(b + j * g->ldb + p);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 av = _mm256_loadu_ps(a + i * g->lda + p);
#pragma GCC unroll 3
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }

#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
#pragma GCC unroll 3
        for (int j = 0; j < nr; j++) {
            float sum = hsum8(acc[i][j]);
            for (int64_t p = k8; p < g->k; p++)
                sum += a[i * g->lda + p] * b[j * g->ldb + p];
            float *c = g->c + (i0 + i) * g->ldc + j0 + j;
            *c = g->beta == 0.0f ? g->alpha * sum : g->alpha * sum + g->beta * *c;
        }
    }
}

/* One block, dispatched to a copy of dot_block_avx2() specialised for its size. */
TARGET_AVX2 static void
dot_block_any(const struct gemm_job *g, int64_t i0, int64_t j0, int mr, int nr)
{
#define DOT_CASE(r, c)                                                                             \
    case (r)*4 + (c):                                                                              \
        dot_block_avx2(g, i0, j0, r, c);                                                           \
        break
    switch (mr * 4 + nr) {
        DOT_CASE(1, 1);
        DOT_CASE(1, 2);
        DOT_CASE(1, 3);
        DOT_CASE(2, 1);
        DOT_CASE(2, 2);
        DOT_CASE(2, 3);
        DOT_CASE(3, 1);
        DOT_CASE(3, 2);
        DOT_CASE(3, 3);
        DOT_CASE(4, 1);
        DOT_CASE(4, 2);
    default:
        dot_block_avx2(g, i0, j0, DOT_MR, DOT_NR);
        break;
    }
#undef DOT_CASE
}

/* The whole product, single-threaded: rows of A in fours, rows of B in threes. */
TARGET_AVX2 static void gemm_dot_avx2(const struct gemm_job *g)
{
    for (int64_t i0 = 0; i0 < g->m; i0 += DOT_MR) {
        int mr = (int)min64(DOT_MR, g->m - i0);
        for (int64_t j0 = 0; j0 < g->n; j0 += DOT_NR)
            dot_block_any(g, i0, j0, mr, (int)min64(DOT_NR, g->n - j0));
    }
}

static bool cpu_has_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#else

static bool cpu_has_avx2(void)
{
    return false;
}

#endif

/* ---- Blocked product on one rectangle of C -------------------------------- */

/* Micro-panel j (columns [j, j + NR)) of the op(B) block at b; see pack_b_panel_generic(). */
static void
pack_b_panel(const struct gemm_job *g, float *bp, const float *b, int64_t j, int64_t nc, int64_t kc)
{
    int64_t nr = min64(NR, nc - j);
    bool next = j + NR < nc;
    const float *src = g->trans_b ? b + j * g->ldb : b + j;
#ifdef TG_GEMM_X86
    if (g->avx2 && nr == NR) {
        if (g->trans_b)
            pack_b_trans_avx2(bp, src, g->ldb, kc, next);
        else
            pack_b_rows_avx2(bp, src, g->ldb, kc, next);
        return;
    }
#endif
    pack_b_panel_generic(bp, src, g->ldb, g->trans_b, nr, kc, next);
}

/* A partial tile: the kernel fills a scratch tile, live elements are copied. */
static void edge_tile(const struct gemm_job *g,
                      int64_t mr,
                      int64_t nr,
                      int64_t kc,
                      const float *ap,
                      const float *bp,
                      float *c,
                      float beta)
{
    _Alignas(64) float tile[MR * NR];
#ifdef TG_GEMM_X86
    if (g->avx2)
        kernel_edge_avx2(kc, ap, bp, tile, mr, nr);
    else
        g->kernel(kc, ap, bp, tile, NR, 1.0f, 0.0f);
#else
    g->kernel(kc, ap, bp, tile, NR, 1.0f, 0.0f);
#endif
    for (int64_t i = 0; i < mr; i++) {
        for (int64_t j = 0; j < nr; j++) {
            float v = g->alpha * tile[i * NR + j];
            c[i * g->ldc + j] = beta == 0.0f ? v : v + beta * c[i * g->ldc + j];
        }
    }
}

/* C block (mc x nc at c) = alpha * (packed A block)(packed B block) + beta * C. */
static void macro_kernel(const struct gemm_job *g,
                         int64_t mc,
                         int64_t nc,
                         int64_t kc,
                         const float *ap,
                         const float *bp,
                         float *c,
                         float beta)
{
    for (int64_t j = 0; j < nc; j += NR) {
        int64_t nr = min64(NR, nc - j);
        for (int64_t i = 0; i < mc; i += MR) {
            int64_t mr = min64(MR, mc - i);
            const float *a_panel = ap + i * kc;
            const float *b_panel = bp + j * kc;
            float *c_tile = c + i * g->ldc + j;
            if (mr == MR && nr == NR)
                g->kernel(kc, a_panel, b_panel, c_tile, g->ldc, g->alpha, beta);
            else
                edge_tile(g, mr, nr, kc, a_panel, b_panel, c_tile, beta);
        }
    }
}

/*
 * The first MC rows of a block: each B micro-panel is packed just before the
 * micro-kernels that use it, while the next one's source is prefetched, so
 * reading B overlaps with arithmetic. Later row blocks reuse the packed B;
 * when there are none (last set), every panel goes to the same L1-hot slot.
 */
static void first_row_block(const struct gemm_job *g,
                            int64_t mc,
                            int64_t nc,
                            int64_t kc,
                            const float *ap,
                            float *bp,
                            const float *b,
                            float *c,
                            float beta,
                            bool last)
{
    for (int64_t j = 0; j < nc; j += NR) {
        float *panel = last ? bp : bp + j * kc;
        pack_b_panel(g, panel, b, j, nc, kc);
        macro_kernel(g, mc, min64(NR, nc - j), kc, ap, panel, c + j, beta);
    }
}

/* Rows [m0, m1) x columns [n0, n1) of C, with packing space buf. */
static void
gemm_rect(const struct gemm_job *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, float *buf)
{
    float *ap = buf;
    float *bp = buf + MC * KC;
    int64_t kc_step = block_size(g->k, KC, 8); // depends on k only: fixes the sum order
    int64_t mc_step = block_size(m1 - m0, MC, MR);
    int64_t nc_step = block_size(n1 - n0, NC, NR);

    for (int64_t jc = n0; jc < n1; jc += nc_step) {
        int64_t nc = min64(nc_step, n1 - jc);
        for (int64_t pc = 0; pc < g->k; pc += kc_step) {
            int64_t kc = min64(kc_step, g->k - pc);
            const float *b = g->trans_b ? g->b + jc * g->ldb + pc : g->b + pc * g->ldb + jc;
            float beta = pc == 0 ? g->beta : 1.0f;

            for (int64_t ic = m0; ic < m1; ic += mc_step) {
                int64_t mc = min64(mc_step, m1 - ic);
                const float *a = g->trans_a ? g->a + pc * g->lda + ic : g->a + ic * g->lda + pc;
                float *c = g->c + ic * g->ldc + jc;
                pack_a(ap, a, g->lda, g->trans_a, mc, kc);
                if (ic == m0)
                    first_row_block(g, mc, nc, kc, ap, bp, b, c, beta, mc == m1 - m0);
                else
                    macro_kernel(g, mc, nc, kc, ap, bp, c, beta);
            }
        }
    }
}

/* ---- Threads and buffers --------------------------------------------------- */

/* A grid of t_rows x t_cols rectangles of C, one per part. */
struct gemm_grid {
    int t_rows;
    int t_cols;
};

/*
 * Split C among up to n_threads parts, minimising the largest part's work
 * plus its packing (each part packs its rows of A and its columns of B).
 */
static struct gemm_grid choose_grid(const struct gemm_job *g, int n_threads)
{
    int64_t m_tiles = ceil_div(g->m, MR);
    int64_t n_tiles = ceil_div(g->n, NR);
    double work = (double)g->m * (double)g->n * (double)g->k;
    int n = n_threads < MAX_THREADS ? n_threads : MAX_THREADS;
    if ((double)n * THREAD_WORK > work)
        n = work < THREAD_WORK ? 1 : (int)(work / THREAD_WORK);
    n = (int)min64(n, m_tiles * n_tiles);

    struct gemm_grid best = {1, 1};
    double best_cost = -1.0;
    for (int rows = 1; rows <= n; rows++) {
        if (n % rows != 0 || rows > m_tiles || n / rows > n_tiles)
            continue;
        double h = (double)(ceil_div(m_tiles, rows) * MR);
        double w = (double)(ceil_div(n_tiles, n / rows) * NR);
        double cost = h * w + 16.0 * (h + w);
        if (best_cost < 0.0 || cost < best_cost) {
            best_cost = cost;
            best = (struct gemm_grid){rows, n / rows};
        }
    }
    return best;
}

/* Part q of grid: its tile-aligned rectangle of C. */
static void run_part(const struct gemm_job *g, struct gemm_grid grid, int q, float *buf)
{
    int64_t m_tiles = ceil_div(g->m, MR);
    int64_t n_tiles = ceil_div(g->n, NR);
    int64_t qi = q / grid.t_cols;
    int64_t qj = q % grid.t_cols;
    int64_t m0 = min64(qi * m_tiles / grid.t_rows * MR, g->m);
    int64_t m1 = min64((qi + 1) * m_tiles / grid.t_rows * MR, g->m);
    int64_t n0 = min64(qj * n_tiles / grid.t_cols * NR, g->n);
    int64_t n1 = min64((qj + 1) * n_tiles / grid.t_cols * NR, g->n);
    if (m0 < m1 && n0 < n1)
        gemm_rect(g, m0, m1, n0, n1, buf);
}

static size_t pack_buf_bytes(void)
{
    return sizeof(float) * ((size_t)MC * KC + (size_t)KC * NC);
}

/* Record the failure to allocate packing space. */
static enum tg_status no_buffer(void)
{
    return tg_error_set(TG_ERR_NOMEM, "tg_sgemm: out of memory for %zu bytes of packing space",
                        pack_buf_bytes());
}

/* Return what take_buffers() handed out: pool slots are freed, extras released. */
static void give_back_buffers(float **bufs, const int *slots, int n)
{
    for (int t = 0; t < n; t++) {
        if (slots[t] >= 0)
            atomic_store_explicit(&pack_busy[slots[t]], false, memory_order_release);
        else
            tg_xfree(bufs[t]);
    }
}

/*
 * Point bufs[0..n) at packing space: free slots of the pool first (a slot's
 * buffer is allocated on its first use and kept), so that concurrent products
 * from several threads allocate nothing once warm; private buffers when the
 * pool is exhausted. slots[t] is the pool slot of bufs[t], or -1.
 */
static enum tg_status take_buffers(float **bufs, int *slots, int n)
{
    int t = 0;
    for (int s = 0; s < MAX_THREADS && t < n; s++) {
        if (atomic_exchange_explicit(&pack_busy[s], true, memory_order_acquire))
            continue;
        if (!pack_bufs[s])
            pack_bufs[s] = tg_xmalloc(pack_buf_bytes());
        slots[t] = s;
        bufs[t++] = pack_bufs[s];
        if (!pack_bufs[s]) {
            give_back_buffers(bufs, slots, t);
            return no_buffer();
        }
    }
    for (; t < n; t++) {
        slots[t] = -1;
        bufs[t] = tg_xmalloc(pack_buf_bytes());
        if (!bufs[t]) {
            give_back_buffers(bufs, slots, t + 1);
            return no_buffer();
        }
    }
    return TG_OK;
}

enum tg_status tg_gemm_reserve(int n)
{
#ifdef TG_HAVE_CBLAS
    (void)n;
    return TG_OK;
#else
    float *bufs[MAX_THREADS];
    int slots[MAX_THREADS];
    enum tg_status status = take_buffers(bufs, slots, n < MAX_THREADS ? n : MAX_THREADS);
    if (status == TG_OK)
        give_back_buffers(bufs, slots, n < MAX_THREADS ? n : MAX_THREADS);
    return status;
#endif
}

static void run_parts(const struct gemm_job *g, struct gemm_grid grid, float *const *bufs)
{
    int n_parts = grid.t_rows * grid.t_cols;
#ifdef _OPENMP
    if (n_parts > 1) {
#pragma omp parallel num_threads(n_parts)
        {
            // A smaller team than asked for (nesting, limits) takes several parts each.
            int t = omp_get_thread_num();
            for (int q = t; q < n_parts; q += omp_get_num_threads())
                run_part(g, grid, q, bufs[t]);
        }
        return;
    }
#endif
    for (int q = 0; q < n_parts; q++)
        run_part(g, grid, q, bufs[0]);
}

/* The packed path; threaded unless called from inside a parallel region. */
static enum tg_status gemm_packed(const struct gemm_job *g)
{
    int n_threads = tg_get_num_threads();
#ifdef _OPENMP
    if (omp_in_parallel())
        n_threads = 1;
#endif
    struct gemm_grid grid = choose_grid(g, n_threads);
    int n_parts = grid.t_rows * grid.t_cols;
    float *bufs[MAX_THREADS];
    int slots[MAX_THREADS];

    enum tg_status status = take_buffers(bufs, slots, n_parts);
    if (status != TG_OK)
        return status;
    run_parts(g, grid, bufs);
    give_back_buffers(bufs, slots, n_parts);
    return TG_OK;
}

/* ---- Small products and trivial cases ------------------------------------- */

/* C = beta * C; beta == 0 overwrites without reading. */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc)
{
    if (beta == 1.0f)
        return;
    for (int64_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        for (int64_t j = 0; j < n; j++)
            row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
}

/* Row by row: C row = beta * C row, then add alpha op(A)(i, p) op(B) row p. */
static void gemm_small(const struct gemm_job *g)
{
    scale_c(g->m, g->n, g->beta, g->c, g->ldc);
    for (int64_t i = 0; i < g->m; i++) {
        float *row = g->c + i * g->ldc;
        for (int64_t p = 0; p < g->k; p++) {
            float aip = g->alpha * (g->trans_a ? g->a[p * g->lda + i] : g->a[i * g->lda + p]);
            if (g->trans_b) {
                for (int64_t j = 0; j < g->n; j++)
                    row[j] += aip * g->b[j * g->ldb + p];
            } else {
                for (int64_t j = 0; j < g->n; j++)
                    row[j] += aip * g->b[p * g->ldb + j];
            }
        }
    }
}

#ifdef TG_GEMM_X86
/*
 * The dot-product path: A B^T with few rows and columns and a long k, when the
 * blocked path would not split the product among threads anyway.
 */
static bool use_dot(const struct gemm_job *g)
{
    if (g->trans_a || !g->trans_b || g->m > DOT_MAX_MN || g->n > DOT_MAX_MN || g->k < DOT_MIN_K)
        return false;
    bool alone = tg_get_num_threads() == 1 ||
                 (double)g->m * (double)g->n * (double)g->k < 2.0 * THREAD_WORK;
#ifdef _OPENMP
    alone = alone || omp_in_parallel();
#endif
    return alone;
}
#endif

/* ---- Public entry points --------------------------------------------------- */

static enum tg_gemm_kernel current_kernel(void)
{
    int choice = atomic_load_explicit(&kernel_choice, memory_order_relaxed);
    if (choice != TG_GEMM_KERNEL_AUTO)
        return (enum tg_gemm_kernel)choice;

    const char *env = getenv("TG_GEMM_KERNEL");
    bool portable = (env && strcmp(env, "portable") == 0) || !cpu_has_avx2();
    choice = portable ? TG_GEMM_KERNEL_PORTABLE : TG_GEMM_KERNEL_AVX2;
    atomic_store_explicit(&kernel_choice, choice, memory_order_relaxed);
    return (enum tg_gemm_kernel)choice;
}

bool tg_gemm_force_kernel(enum tg_gemm_kernel kernel)
{
    if (kernel == TG_GEMM_KERNEL_AVX2 && !cpu_has_avx2())
        return false;
    atomic_store_explicit(&kernel_choice, (int)kernel, memory_order_relaxed);
    return true;
}

/* A NULL matrix is only acceptable when it has no elements. */
static enum tg_status check_matrix(const char *name, const float *x, int64_t rows, int64_t cols)
{
    if (x || rows == 0 || cols == 0)
        return TG_OK;
    return tg_error_set(TG_ERR_INVALID,
                        "tg_sgemm: %s is NULL but op(%s) has %" PRId64 "x%" PRId64 " elements",
                        name, name, rows, cols);
}

static enum tg_status check_ld(const char *name, int64_t ld, int64_t row)
{
    if (ld >= row)
        return TG_OK;
    return tg_error_set(TG_ERR_INVALID,
                        "tg_sgemm: %s is %" PRId64
                        ", expected at least the stored row length %" PRId64,
                        name, ld, row);
}

void tg_gemm_release_buffers(void)
{
    for (int t = 0; t < MAX_THREADS; t++) {
        if (atomic_load_explicit(&pack_busy[t], memory_order_acquire))
            continue;
        tg_xfree(pack_bufs[t]);
        pack_bufs[t] = NULL;
    }
}

/* Sizes, pointers and leading dimensions; records the first problem found. */
static enum tg_status check_args(bool trans_a,
                                 bool trans_b,
                                 int64_t m,
                                 int64_t n,
                                 int64_t k,
                                 const float *a,
                                 int64_t lda,
                                 const float *b,
                                 int64_t ldb,
                                 const float *c,
                                 int64_t ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_sgemm: negative size (m=%" PRId64 ", n=%" PRId64 ", k=%" PRId64
                            "), expected sizes >= 0",
                            m, n, k);

    enum tg_status status = check_matrix("a", a, m, k);
    if (status == TG_OK)
        status = check_matrix("b", b, k, n);
    if (status == TG_OK)
        status = check_matrix("c", c, m, n);
    if (status == TG_OK)
        status = check_ld("lda", lda, trans_a ? m : k);
    if (status == TG_OK)
        status = check_ld("ldb", ldb, trans_b ? k : n);
    if (status == TG_OK)
        status = check_ld("ldc", ldc, n);
    return status;
}

#ifdef TG_HAVE_CBLAS
/* Hand the product to the BLAS library when every size fits its int. */
static bool gemm_cblas(const struct gemm_job *g)
{
    int64_t most = g->m;
    const int64_t sizes[] = {g->n, g->k, g->lda, g->ldb, g->ldc};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        most = sizes[i] > most ? sizes[i] : most;
    if (most > INT_MAX)
        return false;
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k, g->alpha,
                g->a, (int)g->lda, g->b, (int)g->ldb, g->beta, g->c, (int)g->ldc);
    return true;
}
#endif

enum tg_status tg_sgemm(bool trans_a,
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
                        int64_t ldc)
{
    enum tg_status status = check_args(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    if (status != TG_OK)
        return status;
    if (m == 0 || n == 0)
        return TG_OK;
    if (k == 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return TG_OK;
    }

    struct gemm_job g = {
            .trans_a = trans_a,
            .trans_b = trans_b,
            .m = m,
            .n = n,
            .k = k,
            .alpha = alpha,
            .beta = beta,
            .a = a,
            .lda = lda,
            .b = b,
            .ldb = ldb,
            .c = c,
            .ldc = ldc,
    };
#ifdef TG_HAVE_CBLAS
    if (gemm_cblas(&g))
        return TG_OK;
#endif
    if (m < SMALL_WORK && n < SMALL_WORK && k < SMALL_WORK && m * n * k < SMALL_WORK) {
        gemm_small(&g);
        return TG_OK;
    }

    g.kernel = kernel_portable;
#ifdef TG_GEMM_X86
    g.avx2 = current_kernel() == TG_GEMM_KERNEL_AVX2;
    if (g.avx2)
        g.kernel = kernel_avx2;
    if (g.avx2 && use_dot(&g)) {
        gemm_dot_avx2(&g);
        return TG_OK;
    }
#endif
    return gemm_packed(&g);
}

const char *tg_gemm_kernel_name(void)
{
#ifdef TG_HAVE_CBLAS
    return "cblas";
#else
    return current_kernel() == TG_GEMM_KERNEL_AVX2 ? "avx2-fma 6x16" : "portable 6x16";
#endif
}

int tg_get_num_threads(void)
{
#ifdef _OPENMP
    int n = atomic_load_explicit(&n_threads_user, memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

void tg_set_num_threads(int n)
{
    atomic_store_explicit(&n_threads_user, n < 1 ? 0 : n, memory_order_relaxed);
}
