/*
 * tg_matmul and tg_bmm: hand-worked products, every transpose combination
 * against a naive triple loop (sizes that cross the GEMM's register and cache
 * tiles), gradient checks of both operands, an operand used on both sides,
 * accumulation into existing gradients, and the error paths.
 *
 * Tolerances: forward values are compared with a double-precision loop, within
 * 1e-5 relative plus 2e-6 per term of the sum (float32 rounding of k
 * products of values in [-1, 1]). Products are bilinear, so the gradient
 * checks use the checker's defaults: central differences are exact up to
 * rounding.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- Naive reference ------------------------------------------------------ */

/* y (m, n) = op(a) op(b) in double; a stored (m, k) or (k, m), b (k, n) or (n, k). */
static void naive_matmul(
        float *y, const float *a, const float *b, int64_t m, int64_t n, int64_t k, bool ta, bool tb)
{
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < k; p++) {
                double av = ta ? a[p * m + i] : a[i * k + p];
                double bv = tb ? b[j * k + p] : b[p * n + j];
                s += av * bv;
            }
            y[i * n + j] = (float)s;
        }
    }
}

/* a heap tensor holding op(a)'s operand for sizes (rows, cols) of op(), stored transposed if t. */
static struct tg_tensor *operand(int64_t batch, int64_t rows, int64_t cols, bool t, uint64_t *rng)
{
    struct tg_tensor *x = batch > 0 ? tu_tensor(batch, t ? cols : rows, t ? rows : cols, -1)
                                    : tu_tensor(t ? cols : rows, t ? rows : cols, -1);
    tu_fill_uniform(x, rng, -1.0f, 1.0f);
    return x;
}

static void assert_product(const struct tg_tensor *y,
                           const float *a,
                           const float *b,
                           int64_t m,
                           int64_t n,
                           int64_t k,
                           bool ta,
                           bool tb)
{
    float *want = malloc((size_t)(m * n + 1) * sizeof(float));
    ck_assert_ptr_nonnull(want);
    naive_matmul(want, a, b, m, n, k, ta, tb);
    tu_assert_close(y->data, want, m * n, 2e-6 * (double)(k + 1), 1e-5);
    free(want);
}

/* Sizes of a product (m, n, k): odd sizes, vectors, and some past the GEMM's tiles. */
static const int64_t sizes[][3] = {
        {1, 1, 1}, {3, 4, 5}, {7, 1, 9}, {1, 17, 6}, {37, 29, 41}, {65, 70, 130}, {6, 16, 300},
};
#define N_SIZES ((int)(sizeof(sizes) / sizeof(sizes[0])))

/* ---- Functions for the gradient checker ----------------------------------- */

struct mm_case {
    bool ta, tb;
    bool batched;
};

static struct tg_tensor *mm_fn(struct tg_tensor *const *in, int n, void *user)
{
    const struct mm_case *c = user;
    struct tg_tensor *b = n > 1 ? in[1] : in[0];
    return c->batched ? tg_bmm(in[0], b, c->ta, c->tb) : tg_matmul(in[0], b, c->ta, c->tb);
}

/* ---- tg_matmul forward ---------------------------------------------------- */

START_TEST(test_matmul_hand_worked)
{
    /* [1 2 3; 4 5 6] [7 8; 9 10; 11 12] = [58 64; 139 154] */
    const float av[] = {1, 2, 3, 4, 5, 6};
    const float bv[] = {7, 8, 9, 10, 11, 12};
    const float at[] = {1, 4, 2, 5, 3, 6};    // a^T stored (3, 2)
    const float bt[] = {7, 9, 11, 8, 10, 12}; // b^T stored (2, 3)
    const float want[] = {58, 64, 139, 154};
    struct tg_tensor *a = tg_tensor_from_data(2, (int64_t[]){2, 3}, av);
    struct tg_tensor *b = tg_tensor_from_data(2, (int64_t[]){3, 2}, bv);
    struct tg_tensor *a_t = tg_tensor_from_data(2, (int64_t[]){3, 2}, at);
    struct tg_tensor *b_t = tg_tensor_from_data(2, (int64_t[]){2, 3}, bt);
    struct tg_tensor *ys[4] = {
            tg_matmul(a, b, false, false),
            tg_matmul(a_t, b, true, false),
            tg_matmul(a, b_t, false, true),
            tg_matmul(a_t, b_t, true, true),
    };
    for (int i = 0; i < 4; i++) {
        ck_assert_ptr_nonnull(ys[i]);
        ck_assert_int_eq(ys[i]->n_dims, 2);
        ck_assert_int_eq(ys[i]->shape[0], 2);
        ck_assert_int_eq(ys[i]->shape[1], 2);
        tu_assert_close(ys[i]->data, want, 4, 0.0, 0.0);
        tg_tensor_free(ys[i]);
    }
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(a_t);
    tg_tensor_free(b_t);
}
END_TEST

/* Loop index: size * 4 + transpose combination. */
START_TEST(test_matmul_matches_naive)
{
    const int64_t *s = sizes[_i / 4];
    bool ta = _i & 1;
    bool tb = _i & 2;
    uint64_t rng = 100 + (uint64_t)_i;
    struct tg_tensor *a = operand(0, s[0], s[2], ta, &rng);
    struct tg_tensor *b = operand(0, s[2], s[1], tb, &rng);
    struct tg_tensor *y = tg_matmul(a, b, ta, tb);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(y->shape[0], s[0]);
    ck_assert_int_eq(y->shape[1], s[1]);
    assert_product(y, a->data, b->data, s[0], s[1], s[2], ta, tb);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_matmul_empty_inner_dimension_gives_zeros)
{
    struct tg_tensor *a = tu_tensor(3, 0, -1);
    struct tg_tensor *b = tu_tensor(0, 2, -1);
    struct tg_tensor *y = tg_matmul(a, b, false, false);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(y->n_elems, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(y->data[i], 0.0f);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- tg_matmul backward --------------------------------------------------- */

/* Loop index: transpose combination. */
START_TEST(test_matmul_gradcheck)
{
    struct mm_case c = {_i & 1, _i & 2, false};
    uint64_t rng = 7 + (uint64_t)_i;
    struct tg_tensor *in[2] = {operand(0, 3, 4, c.ta, &rng), operand(0, 4, 5, c.tb, &rng)};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(tg_tensor_set_requires_grad(in[i], true), TG_OK);
    tu_assert_gradcheck(mm_fn, &c, 2, in, NULL);
    tg_tensor_free(in[0]);
    tg_tensor_free(in[1]);
}
END_TEST

/* y = a a (square) or a^T a, a^T a^T, ...: both contributions reach a->grad. */
START_TEST(test_matmul_same_tensor_both_sides)
{
    struct mm_case c = {_i & 1, _i & 2, false};
    uint64_t rng = 11 + (uint64_t)_i;
    struct tg_tensor *a = operand(0, 4, 4, false, &rng);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    tu_assert_gradcheck(mm_fn, &c, 1, &a, NULL);

    /* Explicitly, for y = a a with seed s: da = s a^T + a^T s. */
    if (_i == 0) {
        struct tg_tape *tape = tg_tape_new();
        ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
        tg_tensor_zero_grad(a);
        struct tg_tensor *y = tg_matmul(a, a, false, false);
        struct tg_tensor *s = operand(0, 4, 4, false, &rng);
        ck_assert_int_eq(tg_tape_backward(tape, y, s, 0), TG_OK);
        float want[16], t1[16], t2[16];
        naive_matmul(t1, s->data, a->data, 4, 4, 4, false, true);
        naive_matmul(t2, a->data, s->data, 4, 4, 4, true, false);
        for (int i = 0; i < 16; i++)
            want[i] = t1[i] + t2[i];
        tu_assert_close(a->grad, want, 16, 1e-5, 1e-5);
        tg_tape_end(tape);
        tg_tape_free(tape);
        tg_tensor_free(s);
    }
    tg_tensor_free(a);
}
END_TEST

/* Backward adds into an existing gradient and leaves an input without one alone. */
START_TEST(test_matmul_backward_accumulates_and_skips)
{
    uint64_t rng = 5;
    struct tg_tensor *a = operand(0, 3, 2, false, &rng);
    struct tg_tensor *b = operand(0, 2, 4, false, &rng);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    for (int i = 0; i < 6; i++)
        a->grad[i] = 1.0f;
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    struct tg_tensor *y = tg_matmul(a, b, false, false);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_eq(y->tape, tape);
    ck_assert_uint_eq(tg_tape_n_entries(tape), 1);
    struct tg_tensor *s = operand(0, 3, 4, false, &rng);
    ck_assert_int_eq(tg_tape_backward(tape, y, s, 0), TG_OK);

    /* da = 1 + s b^T */
    float want[6];
    naive_matmul(want, s->data, b->data, 3, 2, 4, false, true);
    for (int i = 0; i < 6; i++)
        want[i] += 1.0f;
    tu_assert_close(a->grad, want, 6, 1e-6, 1e-6);
    ck_assert_ptr_null(b->grad);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(s);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* Once a tape has run one step, forward and backward of the same shapes allocate nothing. */
START_TEST(test_matmul_warm_step_allocates_nothing)
{
    uint64_t rng = 31;
    struct tg_tensor *a = operand(0, 64, 200, false, &rng);
    struct tg_tensor *b = operand(0, 200, 96, true, &rng);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_int_eq(tg_tensor_set_requires_grad(b, true), TG_OK);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);
    uint64_t before = 0;
    for (int step = 0; step < 3; step++) {
        if (step == 2)
            before = tg_alloc_count();
        tg_tape_reset(tape);
        struct tg_tensor *y = tg_matmul(a, b, false, true);
        ck_assert_ptr_nonnull(y);
        struct tg_tensor *seed = tg_tape_tensor_new(tape, 2, y->shape);
        ck_assert_ptr_nonnull(seed);
        tg_tensor_fill(seed, 0.5f);
        ck_assert_int_eq(tg_tape_backward(tape, y, seed, 0), TG_OK);
    }
    ck_assert_uint_eq(tg_alloc_count(), before);
    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- tg_matmul without a tape, and failures --------------------------------- */

START_TEST(test_matmul_without_tape_returns_heap_tensor)
{
    uint64_t rng = 3;
    struct tg_tensor *a = operand(0, 2, 3, false, &rng);
    struct tg_tensor *b = operand(0, 3, 2, false, &rng);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    ck_assert_ptr_null(tg_tape_current());
    struct tg_tensor *y = tg_matmul(a, b, false, false);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->tape);
    ck_assert(!y->requires_grad);
    assert_product(y, a->data, b->data, 2, 2, 3, false, false);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* A failing call returns NULL, names the op, and leaves its inputs as they were. */
static void
assert_refused(struct tg_tensor *y, enum tg_status st, const char *name, const char *part)
{
    ck_assert_ptr_null(y);
    ck_assert_int_eq(tg_last_status(), st);
    ck_assert_msg(strncmp(tg_last_error(), name, strlen(name)) == 0, "message: %s",
                  tg_last_error());
    ck_assert_msg(strstr(tg_last_error(), part) != NULL, "message: %s", tg_last_error());
}

START_TEST(test_matmul_rejects_bad_shapes)
{
    struct tg_tensor *a = tu_tensor(3, 4, -1);
    struct tg_tensor *b = tu_tensor(5, 2, -1);
    struct tg_tensor *v = tu_tensor(4, -1);
    struct tg_tensor *c3 = tu_tensor(2, 4, 2, -1);
    for (int i = 0; i < 12; i++)
        a->data[i] = (float)i;

    tg_clear_error();
    assert_refused(tg_matmul(a, b, false, false), TG_ERR_SHAPE, "tg_matmul",
                   "inner dimensions differ (a: 3x4, b: 5x2");
    assert_refused(tg_matmul(a, b, true, true), TG_ERR_SHAPE, "tg_matmul", "inner dimensions");
    assert_refused(tg_matmul(a, v, false, false), TG_ERR_SHAPE, "tg_matmul", "2 dimensions");
    assert_refused(tg_matmul(c3, b, false, false), TG_ERR_SHAPE, "tg_matmul", "2x4x2");
    /* Fits only once a is transposed. */
    struct tg_tensor *b4 = tu_tensor(4, 2, -1);
    assert_refused(tg_matmul(a, b4, true, false), TG_ERR_SHAPE, "tg_matmul", "a^T: 3x4");
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(a->data[i], (float)i);

    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(b4);
    tg_tensor_free(v);
    tg_tensor_free(c3);
}
END_TEST

START_TEST(test_matmul_null_input_keeps_first_error)
{
    struct tg_tensor *a = tu_tensor(2, 2, -1);
    tg_clear_error();
    ck_assert_ptr_null(tg_matmul(NULL, a, false, false));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "tg_matmul"));

    tg_error_set(TG_ERR_SHAPE, "tg_earlier: first failure");
    ck_assert_ptr_null(tg_matmul(a, NULL, false, false));
    ck_assert_str_eq(tg_last_error(), "tg_earlier: first failure");
    ck_assert_ptr_null(tg_bmm(NULL, a, false, false));
    ck_assert_str_eq(tg_last_error(), "tg_earlier: first failure");
    tg_clear_error();
    tg_tensor_free(a);
}
END_TEST

START_TEST(test_matmul_reports_allocation_failure)
{
    uint64_t rng = 9;
    struct tg_tensor *a = operand(0, 40, 50, false, &rng);
    struct tg_tensor *b = operand(0, 50, 30, false, &rng);
    tg_clear_error();
    tg_alloc_fail_at(1);
    struct tg_tensor *y = tg_matmul(a, b, false, false);
    tg_alloc_fail_at(0);
    assert_refused(y, TG_ERR_NOMEM, "tg_matmul", "");
    y = tg_matmul(a, b, false, false);
    ck_assert_ptr_nonnull(y);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- tg_bmm ------------------------------------------------------------------ */

/* Loop index: size * 4 + transpose combination. */
START_TEST(test_bmm_matches_naive)
{
    const int64_t *s = sizes[_i / 4 % 5];
    bool ta = _i & 1;
    bool tb = _i & 2;
    int64_t batch = 3;
    uint64_t rng = 200 + (uint64_t)_i;
    struct tg_tensor *a = operand(batch, s[0], s[2], ta, &rng);
    struct tg_tensor *b = operand(batch, s[2], s[1], tb, &rng);
    struct tg_tensor *y = tg_bmm(a, b, ta, tb);
    ck_assert_msg(y != NULL, "%s", tg_last_error());
    ck_assert_int_eq(y->n_dims, 3);
    ck_assert_int_eq(y->shape[0], batch);
    ck_assert_int_eq(y->shape[1], s[0]);
    ck_assert_int_eq(y->shape[2], s[1]);
    float *want = malloc((size_t)(s[0] * s[1]) * sizeof(float));
    for (int64_t i = 0; i < batch; i++) {
        naive_matmul(want, a->data + i * s[0] * s[2], b->data + i * s[2] * s[1], s[0], s[1], s[2],
                     ta, tb);
        tu_assert_close(y->data + i * s[0] * s[1], want, s[0] * s[1], 2e-6 * (double)(s[2] + 1),
                        1e-5);
    }
    free(want);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_bmm_gradcheck)
{
    struct mm_case c = {_i & 1, _i & 2, true};
    uint64_t rng = 17 + (uint64_t)_i;
    struct tg_tensor *in[2] = {operand(2, 3, 4, c.ta, &rng), operand(2, 4, 2, c.tb, &rng)};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(tg_tensor_set_requires_grad(in[i], true), TG_OK);
    tu_assert_gradcheck(mm_fn, &c, 2, in, NULL);
    tg_tensor_free(in[0]);
    tg_tensor_free(in[1]);
}
END_TEST

START_TEST(test_bmm_same_tensor_both_sides)
{
    struct mm_case c = {_i & 1, _i & 2, true};
    uint64_t rng = 23 + (uint64_t)_i;
    struct tg_tensor *a = operand(3, 3, 3, false, &rng);
    ck_assert_int_eq(tg_tensor_set_requires_grad(a, true), TG_OK);
    tu_assert_gradcheck(mm_fn, &c, 1, &a, NULL);
    tg_tensor_free(a);
}
END_TEST

START_TEST(test_bmm_rejects_bad_shapes)
{
    struct tg_tensor *a = tu_tensor(2, 3, 4, -1);
    struct tg_tensor *b = tu_tensor(3, 4, 5, -1);
    struct tg_tensor *c = tu_tensor(2, 5, 4, -1);
    struct tg_tensor *m = tu_tensor(4, 5, -1);
    tg_clear_error();
    assert_refused(tg_bmm(a, b, false, false), TG_ERR_SHAPE, "tg_bmm",
                   "batch sizes differ (a: 2x3x4, b: 3x4x5)");
    assert_refused(tg_bmm(a, c, false, false), TG_ERR_SHAPE, "tg_bmm", "inner dimensions");
    assert_refused(tg_bmm(a, m, false, false), TG_ERR_SHAPE, "tg_bmm", "3 dimensions");
    struct tg_tensor *y = tg_bmm(a, c, false, true); // (2,3,4) (2,5,4)^T fits
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 5);
    tg_tensor_free(y);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
    tg_tensor_free(m);
}
END_TEST

static Suite *linalg_suite(void)
{
    Suite *s = suite_create("ops-linalg");
    TCase *tm = tcase_create("matmul");
    tcase_add_test(tm, test_matmul_hand_worked);
    tcase_add_loop_test(tm, test_matmul_matches_naive, 0, 4 * N_SIZES);
    tcase_add_test(tm, test_matmul_empty_inner_dimension_gives_zeros);
    tcase_add_loop_test(tm, test_matmul_gradcheck, 0, 4);
    tcase_add_loop_test(tm, test_matmul_same_tensor_both_sides, 0, 4);
    tcase_add_test(tm, test_matmul_backward_accumulates_and_skips);
    tcase_add_test(tm, test_matmul_warm_step_allocates_nothing);
    tcase_add_test(tm, test_matmul_without_tape_returns_heap_tensor);
    tcase_add_test(tm, test_matmul_rejects_bad_shapes);
    tcase_add_test(tm, test_matmul_null_input_keeps_first_error);
    tcase_add_test(tm, test_matmul_reports_allocation_failure);
    suite_add_tcase(s, tm);
    TCase *tb = tcase_create("bmm");
    tcase_add_loop_test(tb, test_bmm_matches_naive, 0, 4 * 5);
    tcase_add_loop_test(tb, test_bmm_gradcheck, 0, 4);
    tcase_add_loop_test(tb, test_bmm_same_tensor_both_sides, 0, 4);
    tcase_add_test(tb, test_bmm_rejects_bad_shapes);
    suite_add_tcase(s, tb);
    return s;
}

int main(void)
{
    return tu_run_suite(linalg_suite());
}
