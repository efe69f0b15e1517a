/*
 * The machine's floating-point peak, measured: every kernel thread runs ten
 * independent chains of 8-wide fused multiply-adds (AVX2 + FMA, when the CPU
 * has them) from registers, so nothing but the FMA units limits the rate.
 * The other cases' GFLOP/s can then be read as a fraction of this figure,
 * measured in the same run on the same machine. Without AVX2 + FMA, the same
 * chains run as plain C, which the compiler vectorises for the baseline
 * instruction set: the peak of what portable code can reach.
 */
#include "bench-cases.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PEAK_X86 1
#endif

#define CHAINS 10 // FMA latency (4 to 5 cycles) times two FMA pipes, rounded up
#define LANES  8

#ifdef PEAK_X86
/* The empty asm keeps each chain in its register and every FMA in the loop. */
#define CHAIN_STEP(x)                                                                              \
    do {                                                                                           \
        x = _mm256_fmadd_ps(x, mul, add);                                                          \
        __asm__("" : "+x"(x));                                                                     \
    } while (0)

__attribute__((target("avx2,fma"))) static float fma_chains_avx2(int64_t iters)
{
    __m256 mul = _mm256_set1_ps(0.999999f);
    __m256 add = _mm256_set1_ps(1e-6f);
    __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.1f), a2 = _mm256_set1_ps(0.2f);
    __m256 a3 = _mm256_set1_ps(0.3f), a4 = _mm256_set1_ps(0.4f), a5 = _mm256_set1_ps(0.5f);
    __m256 a6 = _mm256_set1_ps(0.6f), a7 = _mm256_set1_ps(0.7f), a8 = _mm256_set1_ps(0.8f);
    __m256 a9 = _mm256_set1_ps(0.9f);
    for (int64_t i = 0; i < iters; i++) {
        CHAIN_STEP(a0);
        CHAIN_STEP(a1);
        CHAIN_STEP(a2);
        CHAIN_STEP(a3);
        CHAIN_STEP(a4);
        CHAIN_STEP(a5);
        CHAIN_STEP(a6);
        CHAIN_STEP(a7);
        CHAIN_STEP(a8);
        CHAIN_STEP(a9);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(a8, a9));
    float out[LANES];
    _mm256_storeu_ps(out, s);
    return out[0];
}
#endif

/* The same chains in plain C: a multiply and an add per step where there is no FMA. */
static float fma_chains_portable(int64_t iters)
{
    float a[CHAINS][LANES];
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < LANES; l++)
            a[c][l] = 0.1f * (float)c;
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++)
            for (int l = 0; l < LANES; l++)
                a[c][l] = a[c][l] * 0.999999f + 1e-6f;
    float s = 0.0f;
    for (int c = 0; c < CHAINS; c++)
        s += a[c][0];
    return s;
}

static float fma_chains(int64_t iters)
{
#ifdef PEAK_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return fma_chains_avx2(iters);
#endif
    return fma_chains_portable(iters);
}

double bench_peak_flop(int64_t iters)
{
    return 2.0 * CHAINS * LANES * (double)iters;
}

float bench_peak_run(int64_t iters)
{
    float sink = 0.0f;
#ifdef _OPENMP
    int nt = tg_get_num_threads();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
    {
        int t = omp_get_thread_num();
        int n = omp_get_num_threads();
        sink += fma_chains(iters * (t + 1) / n - iters * t / n);
    }
#else
    sink = fma_chains(iters);
#endif
    return sink;
}
