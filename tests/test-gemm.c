/*
 * tg_sgemm against a double-precision reference: odd shapes around the tile
 * (6x16) and block sizes and around the limits of the A B^T dot-product path
 * (small m and n, long k), all four transpose cases, alpha/beta, padded
 * leading dimensions, both micro-kernels, determinism, bad arguments and a
 * failed allocation.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/gemm.h>

#include "gemm-impl.h"
#include "testutil.h"

/* Padding past each stored row: must be neither read (A, B) nor written (C). */
#define PAD_A      3
#define PAD_B      5
#define PAD_C      7
#define C_SENTINEL 12345.0f

/* m, n, k */
static const int64_t shapes[][3] = {
        {1, 1, 1},     {7, 13, 5},     {6, 16, 1},    {33, 65, 17},  {100, 37, 257},
        {6, 16, 400},  {5, 15, 500},   {7, 17, 300},  {12, 32, 256}, {11, 31, 257},
        {145, 33, 20}, {143, 47, 255}, {289, 18, 40}, {13, 4097, 3}, {2, 4111, 7},
        {50, 50, 513}, {1, 1000, 100}, {1000, 1, 40}, {64, 96, 800}, {300, 300, 300},
        {32, 25, 784}, {64, 10, 1024}, {64, 64, 256}, {4, 3, 255},
};
#define N_SHAPES ((int)(sizeof(shapes) / sizeof(shapes[0])))

/* alpha, beta; beta == 0 runs with NaN in C */
static const float scales[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-1.5f, 0.5f}};
#define N_SCALES ((int)(sizeof(scales) / sizeof(scales[0])))

/* One product's operands, stored with padded rows. */
struct problem {
    bool trans_a;
    bool trans_b;
    int64_t m;
    int64_t n;
    int64_t k;
    int64_t lda;
    int64_t ldb;
    int64_t ldc;
    float *a;
    float *b;
    float *c;
    float *c0;   // C before the product
    double *sum; // reference op(A) op(B), m x n
    double *mag; // sum over p of |op(A)(i, p) op(B)(p, j)|
};

static float *alloc_floats(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Random values in the live part of each row, NaN in the padding. */
static void fill_matrix(float *x, int64_t rows, int64_t cols, int64_t ld, uint64_t *rng)
{
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < ld; j++)
            x[i * ld + j] = j < cols ? tu_rand_uniform(rng, -1.0f, 1.0f) : NAN;
    }
}

static double elem_a(const struct problem *pb, int64_t i, int64_t p)
{
    return pb->trans_a ? pb->a[p * pb->lda + i] : pb->a[i * pb->lda + p];
}

static double elem_b(const struct problem *pb, int64_t p, int64_t j)
{
    return pb->trans_b ? pb->b[j * pb->ldb + p] : pb->b[p * pb->ldb + j];
}

/* Double-precision op(A) op(B) and its magnitude, once per problem. */
static void problem_reference(struct problem *pb)
{
    for (int64_t i = 0; i < pb->m; i++) {
        for (int64_t j = 0; j < pb->n; j++) {
            double sum = 0.0;
            double mag = 0.0;
            for (int64_t p = 0; p < pb->k; p++) {
                double t = elem_a(pb, i, p) * elem_b(pb, p, j);
                sum += t;
                mag += fabs(t);
            }
            pb->sum[i * pb->n + j] = sum;
            pb->mag[i * pb->n + j] = mag;
        }
    }
}

static void
problem_init(struct problem *pb, bool trans_a, bool trans_b, const int64_t shape[3], uint64_t seed)
{
    int64_t m = shape[0];
    int64_t n = shape[1];
    int64_t k = shape[2];
    int64_t a_rows = trans_a ? k : m;
    int64_t b_rows = trans_b ? n : k;
    *pb = (struct problem){.trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k};
    pb->lda = (trans_a ? m : k) + PAD_A;
    pb->ldb = (trans_b ? k : n) + PAD_B;
    pb->ldc = n + PAD_C;
    pb->a = alloc_floats(a_rows * pb->lda);
    pb->b = alloc_floats(b_rows * pb->ldb);
    pb->c = alloc_floats(m * pb->ldc);
    pb->c0 = alloc_floats(m * pb->ldc);
    pb->sum = malloc(sizeof(double) * (size_t)(m * n + 1));
    pb->mag = malloc(sizeof(double) * (size_t)(m * n + 1));
    ck_assert(pb->sum && pb->mag);

    uint64_t rng = seed;
    fill_matrix(pb->a, a_rows, trans_a ? m : k, pb->lda, &rng);
    fill_matrix(pb->b, b_rows, trans_b ? k : n, pb->ldb, &rng);
    fill_matrix(pb->c0, m, n, pb->ldc, &rng);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = n; j < pb->ldc; j++)
            pb->c0[i * pb->ldc + j] = C_SENTINEL;
    }
    problem_reference(pb);
}

static void problem_free(struct problem *pb)
{
    free(pb->a);
    free(pb->b);
    free(pb->c);
    free(pb->c0);
    free(pb->sum);
    free(pb->mag);
}

/* Run tg_sgemm on a fresh copy of C0 (NaN in C's live part when beta == 0). */
static enum tg_status problem_run(struct problem *pb, float alpha, float beta)
{
    memcpy(pb->c, pb->c0, sizeof(float) * (size_t)(pb->m * pb->ldc));
    if (beta == 0.0f) {
        for (int64_t i = 0; i < pb->m; i++) {
            for (int64_t j = 0; j < pb->n; j++)
                pb->c[i * pb->ldc + j] = NAN;
        }
    }
    return tg_sgemm(pb->trans_a, pb->trans_b, pb->m, pb->n, pb->k, alpha, pb->a, pb->lda, pb->b,
                    pb->ldb, beta, pb->c, pb->ldc);
}

/*
 * Compare C with a double-precision product. Tolerance per element: (k + 4)
 * float roundings of sum |alpha a b| + |beta c|, a bound on the error of any
 * summation order; padding must still hold the sentinel.
 */
static void problem_check(const struct problem *pb, float alpha, float beta)
{
    const double u = 1.2e-7;
    for (int64_t i = 0; i < pb->m; i++) {
        for (int64_t j = 0; j < pb->n; j++) {
            double c0 = pb->c0[i * pb->ldc + j];
            double want = alpha * pb->sum[i * pb->n + j] + (beta == 0.0f ? 0.0 : beta * c0);
            double scale =
                    fabs(alpha) * pb->mag[i * pb->n + j] + (beta == 0.0f ? 0.0 : fabs(beta * c0));
            double got = pb->c[i * pb->ldc + j];
            ck_assert_msg(fabs(got - want) <= u * (double)(pb->k + 4) * scale,
                          "C(%lld, %lld) = %.9g, want %.9g (m=%lld n=%lld k=%lld ta=%d tb=%d "
                          "alpha=%g beta=%g)",
                          (long long)i, (long long)j, got, want, (long long)pb->m, (long long)pb->n,
                          (long long)pb->k, pb->trans_a, pb->trans_b, (double)alpha, (double)beta);
        }
        for (int64_t j = pb->n; j < pb->ldc; j++)
            ck_assert_float_eq(pb->c[i * pb->ldc + j], C_SENTINEL);
    }
}

/* Every transpose case and alpha/beta pair of shapes[index]. */
static void check_shape(int index)
{
    for (int t = 0; t < 4; t++) {
        struct problem pb;
        problem_init(&pb, t & 1, t & 2, shapes[index], 1000u + (uint64_t)(index * 4 + t));
        for (int s = 0; s < N_SCALES; s++) {
            ck_assert_int_eq(problem_run(&pb, scales[s][0], scales[s][1]), TG_OK);
            problem_check(&pb, scales[s][0], scales[s][1]);
        }
        problem_free(&pb);
    }
}

static void use_portable(void)
{
    ck_assert(tg_gemm_force_kernel(TG_GEMM_KERNEL_PORTABLE));
}

static void use_auto(void)
{
    unsetenv("TG_GEMM_KERNEL");
    ck_assert(tg_gemm_force_kernel(TG_GEMM_KERNEL_AUTO));
    tg_set_num_threads(0);
}

static bool uses_cblas(void)
{
    return strcmp(tg_gemm_kernel_name(), "cblas") == 0;
}

/* ---- Values ---------------------------------------------------------------- */

START_TEST(test_sgemm_matches_reference)
{
    check_shape(_i);
}
END_TEST

START_TEST(test_sgemm_portable_matches_reference)
{
    check_shape(_i);
}
END_TEST

START_TEST(test_sgemm_env_selects_portable)
{
    setenv("TG_GEMM_KERNEL", "portable", 1);
    ck_assert(tg_gemm_force_kernel(TG_GEMM_KERNEL_AUTO));
    const char *name = tg_gemm_kernel_name();
    ck_assert_msg(uses_cblas() || strncmp(name, "portable", 8) == 0, "kernel %s", name);
    check_shape(4);
}
END_TEST

START_TEST(test_sgemm_kernel_name_is_set)
{
    const char *name = tg_gemm_kernel_name();
    ck_assert_ptr_nonnull(name);
    ck_assert_int_gt((int)strlen(name), 0);
}
END_TEST

START_TEST(test_sgemm_k_zero_scales_c)
{
    float c[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(tg_sgemm(false, false, 2, 3, 0, 1.0f, NULL, 0, NULL, 3, 0.5f, c, 3), TG_OK);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(c[i], 0.5f * (float)(i + 1));

    for (int i = 0; i < 6; i++)
        c[i] = NAN;
    ck_assert_int_eq(tg_sgemm(true, true, 2, 3, 0, 1.0f, NULL, 2, NULL, 0, 0.0f, c, 3), TG_OK);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(c[i], 0.0f);
}
END_TEST

START_TEST(test_sgemm_empty_c_is_untouched)
{
    float a[4] = {1, 2, 3, 4};
    ck_assert_int_eq(tg_sgemm(false, false, 0, 3, 2, 1.0f, NULL, 2, a, 3, 0.0f, NULL, 3), TG_OK);
    ck_assert_int_eq(tg_sgemm(false, false, 2, 0, 2, 1.0f, a, 2, NULL, 0, 0.0f, NULL, 0), TG_OK);
}
END_TEST

START_TEST(test_sgemm_alpha_zero_ignores_operands)
{
    float a[4] = {NAN, INFINITY, NAN, 1};
    float c[4] = {1, 2, 3, 4};
    ck_assert_int_eq(tg_sgemm(false, false, 2, 2, 2, 0.0f, a, 2, a, 2, 2.0f, c, 2), TG_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(c[i], 2.0f * (float)(i + 1));
}
END_TEST

/* ---- Determinism ----------------------------------------------------------- */

/* Two runs of a product large enough to be threaded give the same bits. */
static void check_repeatable(bool trans_a, bool trans_b, const int64_t shape[3])
{
    struct problem pb;
    problem_init(&pb, trans_a, trans_b, shape, 77);
    size_t bytes = sizeof(float) * (size_t)(pb.m * pb.ldc);
    float *first = alloc_floats(pb.m * pb.ldc);

    ck_assert_int_eq(problem_run(&pb, 1.0f, 0.5f), TG_OK);
    memcpy(first, pb.c, bytes);
    ck_assert_int_eq(problem_run(&pb, 1.0f, 0.5f), TG_OK);
    ck_assert(memcmp(first, pb.c, bytes) == 0);

    if (!uses_cblas()) {
        // The built-in kernels give the same bits on any thread count.
        tg_set_num_threads(1);
        ck_assert_int_eq(problem_run(&pb, 1.0f, 0.5f), TG_OK);
        ck_assert(memcmp(first, pb.c, bytes) == 0);
        tg_set_num_threads(3);
        ck_assert_int_eq(problem_run(&pb, 1.0f, 0.5f), TG_OK);
        ck_assert(memcmp(first, pb.c, bytes) == 0);
        tg_set_num_threads(0);
    }
    free(first);
    problem_free(&pb);
}

START_TEST(test_sgemm_is_deterministic)
{
    static const int64_t square[3] = {300, 300, 300};
    static const int64_t wide[3] = {64, 800, 1100};
    check_repeatable(false, false, square);
    check_repeatable(false, true, wide);
    check_repeatable(true, false, wide);
}
END_TEST

/* Threads of the caller's running products at once take the private-buffer path. */
struct concurrent_job {
    struct problem *pb;
    float *out;
};

static void *concurrent_main(void *arg)
{
    struct concurrent_job *job = arg;
    const struct problem *pb = job->pb;
    for (int r = 0; r < 4; r++) {
        memcpy(job->out, pb->c0, sizeof(float) * (size_t)(pb->m * pb->ldc));
        if (tg_sgemm(pb->trans_a, pb->trans_b, pb->m, pb->n, pb->k, 1.0f, pb->a, pb->lda, pb->b,
                     pb->ldb, 1.0f, job->out, pb->ldc) != TG_OK)
            return NULL;
    }
    return job;
}

START_TEST(test_sgemm_concurrent_callers_agree)
{
    static const int64_t shape[3] = {130, 150, 170};
    struct problem pb;
    problem_init(&pb, false, true, shape, 5);
    ck_assert_int_eq(problem_run(&pb, 1.0f, 1.0f), TG_OK);

    struct concurrent_job jobs[3];
    pthread_t threads[3];
    for (int t = 0; t < 3; t++) {
        jobs[t] = (struct concurrent_job){&pb, alloc_floats(pb.m * pb.ldc)};
        ck_assert_int_eq(pthread_create(&threads[t], NULL, concurrent_main, &jobs[t]), 0);
    }
    for (int t = 0; t < 3; t++) {
        void *ret = NULL;
        ck_assert_int_eq(pthread_join(threads[t], &ret), 0);
        ck_assert_ptr_eq(ret, &jobs[t]);
        ck_assert(memcmp(jobs[t].out, pb.c, sizeof(float) * (size_t)(pb.m * pb.ldc)) == 0);
        free(jobs[t].out);
    }
    problem_free(&pb);
}
END_TEST

START_TEST(test_sgemm_num_threads_round_trip)
{
    int def = tg_get_num_threads();
    ck_assert_int_ge(def, 1);
    tg_set_num_threads(3);
#ifdef _OPENMP
    ck_assert_int_eq(tg_get_num_threads(), 3);
#else
    ck_assert_int_eq(tg_get_num_threads(), 1);
#endif
    tg_set_num_threads(-2);
    ck_assert_int_eq(tg_get_num_threads(), def);
}
END_TEST

/* ---- Errors ---------------------------------------------------------------- */

/* A call that must fail with TG_ERR_INVALID, a message naming what, C untouched. */
static void check_rejected(enum tg_status status, const float *c, const char *what)
{
    ck_assert_int_eq(status, TG_ERR_INVALID);
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    const char *msg = tg_last_error();
    ck_assert_msg(strstr(msg, "tg_sgemm") && strstr(msg, what), "message: %s", msg);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(c[i], (float)i);
}

START_TEST(test_sgemm_rejects_bad_arguments)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    float b[6] = {1, 2, 3, 4, 5, 6};
    float c[6] = {0, 1, 2, 3, 4, 5};

    tg_clear_error();
    check_rejected(tg_sgemm(false, false, -1, 3, 3, 1.0f, a, 3, b, 3, 0.0f, c, 3), c, "negative");
    check_rejected(tg_sgemm(false, false, 2, 3, 3, 1.0f, NULL, 3, b, 3, 0.0f, c, 3), c,
                   "a is NULL");
    check_rejected(tg_sgemm(false, false, 2, 3, 2, 1.0f, a, 2, NULL, 3, 0.0f, c, 3), c,
                   "b is NULL");
    check_rejected(tg_sgemm(false, false, 2, 3, 2, 1.0f, a, 2, b, 3, 0.0f, NULL, 3), c,
                   "c is NULL");
    check_rejected(tg_sgemm(false, false, 2, 3, 3, 1.0f, a, 2, b, 3, 0.0f, c, 3), c, "lda");
    check_rejected(tg_sgemm(true, false, 2, 3, 3, 1.0f, a, 1, b, 3, 0.0f, c, 3), c, "lda");
    check_rejected(tg_sgemm(false, false, 2, 3, 2, 1.0f, a, 2, b, 2, 0.0f, c, 3), c, "ldb");
    check_rejected(tg_sgemm(false, true, 2, 3, 2, 1.0f, a, 2, b, 1, 0.0f, c, 3), c, "ldb");
    check_rejected(tg_sgemm(false, false, 2, 3, 2, 1.0f, a, 2, b, 3, 0.0f, c, 2), c, "ldc");
    check_rejected(tg_sgemm(false, false, 2, 3, 2, 1.0f, a, 2, b, 3, 0.0f, c, -3), c, "ldc");
}
END_TEST

START_TEST(test_sgemm_reports_failed_allocation)
{
    if (uses_cblas())
        return; // the BLAS library allocates on its own
    static const int64_t shape[3] = {96, 96, 96};
    struct problem pb;
    problem_init(&pb, false, false, shape, 9);
    memcpy(pb.c, pb.c0, sizeof(float) * (size_t)(pb.m * pb.ldc));

    tg_gemm_release_buffers();
    tg_alloc_fail_at(1);
    enum tg_status status = tg_sgemm(false, false, pb.m, pb.n, pb.k, 1.0f, pb.a, pb.lda, pb.b,
                                     pb.ldb, 0.0f, pb.c, pb.ldc);
    tg_alloc_fail_at(0);
    ck_assert_int_eq(status, TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_sgemm"));
    ck_assert(memcmp(pb.c, pb.c0, sizeof(float) * (size_t)(pb.m * pb.ldc)) == 0);

    ck_assert_int_eq(problem_run(&pb, 1.0f, 0.0f), TG_OK);
    problem_check(&pb, 1.0f, 0.0f);
    problem_free(&pb);
}
END_TEST

/* ---- Suite ----------------------------------------------------------------- */

static Suite *gemm_suite(void)
{
    Suite *s = suite_create("gemm");

    TCase *tc = tcase_create("values");
    tcase_add_checked_fixture(tc, use_auto, use_auto);
    tcase_add_loop_test(tc, test_sgemm_matches_reference, 0, N_SHAPES);
    tcase_add_test(tc, test_sgemm_kernel_name_is_set);
    tcase_add_test(tc, test_sgemm_k_zero_scales_c);
    tcase_add_test(tc, test_sgemm_empty_c_is_untouched);
    tcase_add_test(tc, test_sgemm_alpha_zero_ignores_operands);
    suite_add_tcase(s, tc);

    tc = tcase_create("portable");
    tcase_add_checked_fixture(tc, use_portable, use_auto);
    tcase_add_loop_test(tc, test_sgemm_portable_matches_reference, 0, N_SHAPES);
    tcase_add_test(tc, test_sgemm_env_selects_portable);
    suite_add_tcase(s, tc);

    tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, use_auto, use_auto);
    tcase_add_test(tc, test_sgemm_is_deterministic);
    tcase_add_test(tc, test_sgemm_concurrent_callers_agree);
    tcase_add_test(tc, test_sgemm_num_threads_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, use_auto, use_auto);
    tcase_add_test(tc, test_sgemm_rejects_bad_arguments);
    tcase_add_test(tc, test_sgemm_reports_failed_allocation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(gemm_suite());
}
