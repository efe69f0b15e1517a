/* Tensors: creation, size checks, grads, copies, error and log plumbing. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

START_TEST(test_tensor_new_is_zeroed_and_aligned)
{
    int64_t shape[] = {2, 3, 5};
    struct tg_tensor *t = tg_tensor_new(3, shape);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->n_dims, 3);
    ck_assert_int_eq(t->n_elems, 30);
    ck_assert_int_eq(t->shape[3], 1);
    ck_assert_uint_eq((uintptr_t)t->data % TG_ALIGN, 0);
    ck_assert_ptr_null(t->grad);
    ck_assert_ptr_null(t->tape);
    for (int i = 0; i < 30; i++)
        ck_assert_float_eq(t->data[i], 0.0f);
    tg_tensor_free(t);
}
END_TEST

START_TEST(test_tensor_new_scalar_and_empty)
{
    struct tg_tensor *s = tg_tensor_new(0, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->n_elems, 1);
    int64_t zero[] = {4, 0};
    struct tg_tensor *e = tg_tensor_new(2, zero);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->n_elems, 0);
    int64_t six[] = {1, 2, 1, 2, 1, 3};
    struct tg_tensor *h = tg_tensor_new(6, six);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(h->n_elems, 12);
    tg_tensor_free(s);
    tg_tensor_free(e);
    tg_tensor_free(h);
}
END_TEST

START_TEST(test_tensor_new_rejects_bad_shapes)
{
    int64_t neg[] = {2, -3};
    tg_clear_error();
    ck_assert_ptr_null(tg_tensor_new(2, neg));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "negative"));

    int64_t seven[] = {1, 1, 1, 1, 1, 1, 1};
    ck_assert_ptr_null(tg_tensor_new(7, seven));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_tensor_new(-1, seven));
    ck_assert_ptr_null(tg_tensor_new(2, NULL));

    int64_t huge[] = {INT64_MAX / 2, 4};
    ck_assert_ptr_null(tg_tensor_new(2, huge));
    ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "overflow"));

    int64_t big[] = {1 << 20, 1 << 20, 1 << 20};
    ck_assert_ptr_null(tg_tensor_new(3, big));
    ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
}
END_TEST

START_TEST(test_tensor_from_data_copies)
{
    float d[] = {1, 2, 3, 4};
    int64_t shape[] = {2, 2};
    struct tg_tensor *t = tg_tensor_from_data(2, shape, d);
    d[0] = 100;
    ck_assert_float_eq(t->data[0], 1.0f);
    ck_assert_float_eq(t->data[3], 4.0f);
    tg_tensor_free(t);
}
END_TEST

START_TEST(test_tensor_requires_grad_allocates_zeroed_grad)
{
    struct tg_tensor *t = tu_tensor(3, 4, -1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(t, true), TG_OK);
    ck_assert_ptr_nonnull(t->grad);
    ck_assert_uint_eq((uintptr_t)t->grad % TG_ALIGN, 0);
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(t->grad[i], 0.0f);
    t->grad[5] = 3.0f;
    tg_tensor_zero_grad(t);
    ck_assert_float_eq(t->grad[5], 0.0f);
    ck_assert_int_eq(tg_tensor_set_requires_grad(t, false), TG_OK);
    ck_assert_ptr_null(t->grad);
    ck_assert_int_eq(tg_tensor_set_requires_grad(NULL, true), TG_ERR_INVALID);
    tg_tensor_free(t);
}
END_TEST

START_TEST(test_tensor_requires_grad_keeps_tensor_on_nomem)
{
    struct tg_tensor *t = tu_tensor(3, 4, -1);
    tg_alloc_fail_at(1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(t, true), TG_ERR_NOMEM);
    ck_assert(!t->requires_grad);
    ck_assert_ptr_null(t->grad);
    tg_tensor_free(t);
}
END_TEST

START_TEST(test_tensor_copy_and_fill)
{
    struct tg_tensor *a = tu_tensor(2, 3, -1);
    struct tg_tensor *b = tu_tensor(2, 3, -1);
    struct tg_tensor *c = tu_tensor(3, 2, -1);
    tg_tensor_fill(a, 2.5f);
    ck_assert_int_eq(tg_tensor_copy(b, a), TG_OK);
    ck_assert_float_eq(b->data[5], 2.5f);
    ck_assert_int_eq(tg_tensor_copy(c, a), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_last_error(), "tg_tensor_copy: shapes differ (dst: 3x2, src: 2x3)");
    ck_assert_float_eq(c->data[0], 0.0f);
    ck_assert_int_eq(tg_tensor_copy(NULL, a), TG_ERR_INVALID);
    ck_assert(tg_tensor_same_shape(a, b));
    ck_assert(!tg_tensor_same_shape(a, c));
    ck_assert(!tg_tensor_same_shape(a, NULL));
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
}
END_TEST

START_TEST(test_tensor_shape_str)
{
    char buf[32];
    struct tg_tensor *a = tu_tensor(64, 1, 28, 28, -1);
    ck_assert_str_eq(tg_tensor_shape_str(a, buf, sizeof(buf)), "64x1x28x28");
    ck_assert_str_eq(tg_tensor_shape_str(a, buf, 5), "64x1");
    struct tg_tensor *s = tg_tensor_new(0, NULL);
    ck_assert_str_eq(tg_tensor_shape_str(s, buf, sizeof(buf)), "scalar");
    ck_assert_str_eq(tg_tensor_shape_str(NULL, buf, sizeof(buf)), "null");
    tg_tensor_free(a);
    tg_tensor_free(s);
}
END_TEST

START_TEST(test_tensor_free_null_is_noop)
{
    tg_tensor_free(NULL);
    tg_tensor_zero_grad(NULL);
    tg_tensor_fill(NULL, 1.0f);
}
END_TEST

START_TEST(test_status_str_names_every_code)
{
    ck_assert_str_eq(tg_status_str(TG_OK), "TG_OK");
    ck_assert_str_eq(tg_status_str(TG_ERR_SHAPE), "TG_ERR_SHAPE");
    ck_assert_str_eq(tg_status_str(TG_ERR_STATE), "TG_ERR_STATE");
    ck_assert_str_eq(tg_status_str((enum tg_status)999), "unknown status");
    for (int s = TG_OK; s <= TG_ERR_STATE; s++)
        ck_assert_str_ne(tg_status_str((enum tg_status)s), "unknown status");
}
END_TEST

START_TEST(test_error_set_and_clear)
{
    ck_assert_int_eq(tg_error_set(TG_ERR_IO, "myop: cannot read %s", "x.bin"), TG_ERR_IO);
    ck_assert_str_eq(tg_last_error(), "myop: cannot read x.bin");
    ck_assert_int_eq(tg_last_status(), TG_ERR_IO);
    tg_clear_error();
    ck_assert_str_eq(tg_last_error(), "");
    ck_assert_int_eq(tg_last_status(), TG_OK);
}
END_TEST

struct log_capture {
    int n;
    enum tg_log_level level;
    char msg[128];
};

static void capture_log(enum tg_log_level level, const char *func, const char *msg, void *user)
{
    struct log_capture *c = user;
    (void)func;
    c->n++;
    c->level = level;
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

START_TEST(test_log_handler_and_level)
{
    struct log_capture c = {0};
    tg_log_set_handler(capture_log, &c);
    enum tg_log_level old = tg_log_set_level(TG_LOG_DEBUG);
    ck_assert_int_eq(old, TG_LOG_WARN);
    ck_assert_int_eq(tg_log_set_level(old), TG_LOG_DEBUG);
    tg_log_set_handler(NULL, NULL);
    ck_assert_int_eq(c.n, 0);
}
END_TEST

START_TEST(test_alloc_count_and_fault_injection)
{
    uint64_t before = tg_alloc_count();
    struct tg_tensor *t = tu_tensor(4, -1);
    ck_assert_uint_ge(tg_alloc_count() - before, 2);
    tg_tensor_free(t);

    tg_alloc_fail_at(2); // tensor struct succeeds, its data fails
    tg_clear_error();
    ck_assert_ptr_null(tg_tensor_new(1, (int64_t[]){4}));
    ck_assert_int_eq(tg_last_status(), TG_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(tg_last_error(), "out of memory"));
    t = tu_tensor(4, -1); // injection fires once only
    tg_tensor_free(t);
    tg_alloc_fail_at(0);
}
END_TEST

static Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("tensor");
    tcase_add_test(tc, test_tensor_new_is_zeroed_and_aligned);
    tcase_add_test(tc, test_tensor_new_scalar_and_empty);
    tcase_add_test(tc, test_tensor_new_rejects_bad_shapes);
    tcase_add_test(tc, test_tensor_from_data_copies);
    tcase_add_test(tc, test_tensor_requires_grad_allocates_zeroed_grad);
    tcase_add_test(tc, test_tensor_requires_grad_keeps_tensor_on_nomem);
    tcase_add_test(tc, test_tensor_copy_and_fill);
    tcase_add_test(tc, test_tensor_shape_str);
    tcase_add_test(tc, test_tensor_free_null_is_noop);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_status_str_names_every_code);
    tcase_add_test(te, test_error_set_and_clear);
    tcase_add_test(te, test_log_handler_and_level);
    tcase_add_test(te, test_alloc_count_and_fault_injection);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    return tu_run_suite(tensor_suite());
}
