/*
 * Fault injection: make the n-th allocation fail, for every n over a whole
 * forward and backward pass of a small CNN, and check that each failure is
 * reported as TG_ERR_NOMEM with a message, that parameters are unchanged, and
 * that the next pass works. Leaks are caught by the sanitizer and valgrind
 * runs of this suite.
 */
#include <string.h>

#include "testutil.h"

struct model {
    struct tg_tensor *conv_w, *conv_b, *fc_w, *fc_b;
};

static struct model model_new(void)
{
    uint64_t rng = 7;
    struct model m = {
            tu_tensor(16, 1, 3, 3, -1),
            tu_tensor(16, -1),
            tu_tensor(3, 16 * 14 * 14, -1),
            tu_tensor(3, -1),
    };
    struct tg_tensor *all[] = {m.conv_w, m.conv_b, m.fc_w, m.fc_b};
    for (int i = 0; i < 4; i++) {
        tu_fill_uniform(all[i], &rng, -0.5f, 0.5f);
        ck_assert_int_eq(tg_tensor_set_requires_grad(all[i], true), TG_OK);
    }
    return m;
}

static void model_free(struct model *m)
{
    tg_tensor_free(m->conv_w);
    tg_tensor_free(m->conv_b);
    tg_tensor_free(m->fc_w);
    tg_tensor_free(m->fc_b);
}

/*
 * x (8,1,28,28) -> conv 16x3x3 pad 1 -> relu -> max-pool 2 -> flatten -> linear -> CE loss.
 * Large enough that a step spills over several arena blocks.
 */
static enum tg_status pass(struct model *m, bool with_tape)
{
    static const int32_t labels[8] = {1, 2, 0, 1, 2, 2, 0, 1};
    uint64_t rng = 3;
    struct tg_tape *tape = NULL;
    struct tg_tensor *x = NULL;
    enum tg_status st = TG_OK;

    if (with_tape) {
        tape = tg_tape_new();
        if (tape == NULL)
            return tg_last_status();
        tg_tape_begin(tape);
        x = tg_tape_tensor_new(tape, 4, (int64_t[]){8, 1, 28, 28});
    } else {
        x = tg_tensor_new(4, (int64_t[]){8, 1, 28, 28});
    }
    if (x == NULL) {
        st = tg_last_status();
        goto out;
    }
    tu_fill_uniform(x, &rng, -1, 1);

    struct tg_conv2d_params cp = {1, 1, 1, 1, 1, 1, 1};
    struct tg_pool2d_params pp = {2, 2, 2, 2, 0, 0, false};
    if (with_tape) {
        struct tg_tensor *h = tg_relu(tg_conv2d(x, m->conv_w, m->conv_b, &cp));
        h = tg_flatten(tg_max_pool2d(h, &pp), 1);
        struct tg_tensor *logits = tg_add(tg_matmul(h, m->fc_w, false, true), m->fc_b);
        struct tg_tensor *loss = tg_cross_entropy_loss(logits, labels, TG_REDUCE_MEAN, 0.0f);
        st = loss ? tg_tape_backward(tape, loss, NULL, 0) : tg_last_status();
    } else {
        /* Heap mode: every intermediate is the caller's to free. */
        struct tg_tensor *c = tg_conv2d(x, m->conv_w, m->conv_b, &cp);
        struct tg_tensor *r = tg_relu(c);
        struct tg_tensor *p = tg_max_pool2d(r, &pp);
        struct tg_tensor *f = tg_flatten(p, 1);
        struct tg_tensor *mm = tg_matmul(f, m->fc_w, false, true);
        struct tg_tensor *lg = tg_add(mm, m->fc_b);
        struct tg_tensor *loss = tg_cross_entropy_loss(lg, labels, TG_REDUCE_MEAN, 0.0f);
        st = loss ? TG_OK : tg_last_status();
        struct tg_tensor *all[] = {c, r, p, f, mm, lg, loss};
        for (int i = 0; i < 7; i++)
            tg_tensor_free(all[i]);
    }
out:
    if (with_tape) {
        tg_tape_end(tape);
        tg_tape_free(tape);
    } else {
        tg_tensor_free(x);
    }
    return st;
}

static void walk_failures(bool with_tape)
{
    struct model m = model_new();
    float w_before[144];
    memcpy(w_before, m.conv_w->data, sizeof(w_before));
    ck_assert_int_eq(pass(&m, with_tape), TG_OK);

    int n_failed = 0;
    for (uint64_t n = 1; n < 10000; n++) {
        tg_clear_error();
        tg_alloc_fail_at(n);
        uint64_t before = tg_alloc_count();
        enum tg_status st = pass(&m, with_tape);
        bool injected = tg_alloc_count() - before >= n;
        tg_alloc_fail_at(0);
        if (!injected) {
            ck_assert_int_eq(st, TG_OK);
            break;
        }
        n_failed++;
        ck_assert_msg(st == TG_ERR_NOMEM, "allocation %llu: status %s (%s)", (unsigned long long)n,
                      tg_status_str(st), tg_last_error());
        ck_assert_msg(strstr(tg_last_error(), "out of memory") != NULL,
                      "allocation %llu: message '%s'", (unsigned long long)n, tg_last_error());
        ck_assert_mem_eq(m.conv_w->data, w_before, sizeof(w_before));
    }
    ck_assert_int_gt(n_failed, 3);
    /* After all those failures, a pass still works. */
    ck_assert_int_eq(pass(&m, with_tape), TG_OK);
    model_free(&m);
}

START_TEST(test_alloc_fail_every_allocation_of_a_training_pass)
{
    walk_failures(true);
}
END_TEST

START_TEST(test_alloc_fail_every_allocation_of_a_heap_forward)
{
    walk_failures(false);
}
END_TEST

START_TEST(test_alloc_fail_warm_tape_needs_no_allocation)
{
    struct model m = model_new();
    struct tg_tape *tape = tg_tape_new();
    static const int32_t labels[8] = {0, 1, 2, 0, 1, 2, 0, 1};
    struct tg_conv2d_params cp = {1, 1, 1, 1, 1, 1, 1};
    struct tg_pool2d_params pp = {2, 2, 2, 2, 0, 0, false};
    tg_tape_begin(tape);
    for (int step = 0; step < 3; step++) {
        if (step == 2)
            tg_alloc_fail_at(1); // any allocation in a warm step would now fail
        struct tg_tensor *x = tg_tape_tensor_new(tape, 4, (int64_t[]){8, 1, 28, 28});
        tg_tensor_fill(x, 0.25f);
        struct tg_tensor *h = tg_relu(tg_conv2d(x, m.conv_w, m.conv_b, &cp));
        h = tg_flatten(tg_max_pool2d(h, &pp), 1);
        struct tg_tensor *logits = tg_add(tg_matmul(h, m.fc_w, false, true), m.fc_b);
        struct tg_tensor *loss = tg_cross_entropy_loss(logits, labels, TG_REDUCE_MEAN, 0.1f);
        ck_assert_msg(loss != NULL, "step %d: %s", step, tg_last_error());
        ck_assert_int_eq(tg_tape_backward(tape, loss, NULL, 0), TG_OK);
        tg_tape_reset(tape);
    }
    tg_alloc_fail_at(0);
    tg_tape_end(tape);
    tg_tape_free(tape);
    model_free(&m);
}
END_TEST

static Suite *alloc_fail_suite(void)
{
    Suite *s = suite_create("alloc-fail");
    TCase *tc = tcase_create("walk");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_alloc_fail_every_allocation_of_a_training_pass);
    tcase_add_test(tc, test_alloc_fail_every_allocation_of_a_heap_forward);
    tcase_add_test(tc, test_alloc_fail_warm_tape_needs_no_allocation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(alloc_fail_suite());
}
