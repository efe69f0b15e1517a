/*
 * Every row of the gradient-check case table (tools/gc-cases.c) on 50 drawn
 * shapes and inputs, kept away from kinks and ties, must pass the checker at
 * its default tolerances; and the table must cover every built-in op of
 * include/tapegrad/ops.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gc-cases.h"
#include "testutil.h"

#define N_SEEDS 50

/* Every public op of ops.h, to prove the table complete. */
static const char *const all_ops[] = {
        "tg_matmul",      "tg_bmm",        "tg_add",
        "tg_sub",         "tg_mul",        "tg_div",
        "tg_scale",       "tg_add_scalar", "tg_neg",
        "tg_exp",         "tg_log",        "tg_sqrt",
        "tg_pow",         "tg_relu",       "tg_leaky_relu",
        "tg_elu",         "tg_sigmoid",    "tg_tanh",
        "tg_conv2d",      "tg_max_pool2d", "tg_avg_pool2d",
        "tg_reshape",     "tg_flatten",    "tg_transpose",
        "tg_concat",      "tg_sum",        "tg_mean",
        "tg_sum_axis",    "tg_mean_axis",  "tg_softmax",
        "tg_log_softmax", "tg_mse_loss",   "tg_cross_entropy_loss",
        "tg_nll_loss",
};

START_TEST(test_gradcheck_sweep_case_passes_every_seed)
{
    const struct gc_case *c = &gc_cases[_i];
    double worst = 0.0;
    uint64_t n_seeds = N_SEEDS;
    /* TG_SWEEP_SEEDS=n runs more seeds, to explore the margins. */
    if (getenv("TG_SWEEP_SEEDS") != NULL)
        n_seeds = strtoull(getenv("TG_SWEEP_SEEDS"), NULL, 10);
    for (uint64_t seed = 1; seed <= n_seeds; seed++) {
        struct gc_outcome out;
        tg_clear_error();
        enum tg_status st = gc_case_run(c, seed, &out);
        ck_assert_msg(st == TG_OK, "%s seed %d (%s): %s: %s", c->name, (int)seed, out.shape,
                      tg_status_str(st), tg_last_error());
        const struct tg_gradcheck_result *r = &out.res;
        ck_assert_msg(r->passed,
                      "%s seed %d (%s): input %d element %lld: analytic %.7g, numeric %.7g "
                      "(rel %.3g)",
                      c->name, (int)seed, out.shape, r->worst_input, (long long)r->worst_index,
                      r->analytic, r->numeric, r->max_rel_err);
        ck_assert_int_gt(r->n_checked, 0);
        if (r->max_rel_err > worst)
            worst = r->max_rel_err;
    }
    /* Margins below rtol, for whoever tunes a kernel's accuracy. */
    if (getenv("TG_SWEEP_VERBOSE") != NULL)
        fprintf(stderr, "%-30s worst rel %.3e\n", c->name, worst);
}
END_TEST

START_TEST(test_gradcheck_sweep_covers_every_op)
{
    for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++) {
        bool found = false;
        for (int c = 0; c < gc_n_cases && !found; c++)
            found = strcmp(gc_cases[c].op, all_ops[i]) == 0;
        ck_assert_msg(found, "no gradcheck case for %s", all_ops[i]);
    }
}
END_TEST

START_TEST(test_gradcheck_sweep_case_names_unique_and_matchable)
{
    for (int a = 0; a < gc_n_cases; a++) {
        ck_assert(gc_case_matches(&gc_cases[a], gc_cases[a].name));
        ck_assert(gc_case_matches(&gc_cases[a], gc_cases[a].op));
        ck_assert(gc_case_matches(&gc_cases[a], gc_cases[a].op + 3));
        for (int b = a + 1; b < gc_n_cases; b++)
            ck_assert_msg(strcmp(gc_cases[a].name, gc_cases[b].name) != 0, "%s twice",
                          gc_cases[a].name);
    }
}
END_TEST

START_TEST(test_gradcheck_sweep_instances_are_reproducible)
{
    for (int c = 0; c < gc_n_cases; c++) {
        struct gc_instance a, b;
        ck_assert_int_eq(gc_instance_make(&gc_cases[c], 7, &a), TG_OK);
        ck_assert_int_eq(gc_instance_make(&gc_cases[c], 7, &b), TG_OK);
        ck_assert_int_eq(a.n_inputs, b.n_inputs);
        ck_assert_str_eq(a.params, b.params);
        for (int i = 0; i < a.n_inputs; i++) {
            ck_assert(tg_tensor_same_shape(a.in[i], b.in[i]));
            ck_assert(a.in[i]->requires_grad);
            ck_assert_mem_eq(a.in[i]->data, b.in[i]->data,
                             (size_t)a.in[i]->n_elems * sizeof(float));
        }
        gc_instance_free(&a);
        gc_instance_free(&b);
    }
}
END_TEST

static Suite *sweep_suite(void)
{
    Suite *s = suite_create("gradcheck-sweep");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_gradcheck_sweep_covers_every_op);
    tcase_add_test(tc, test_gradcheck_sweep_case_names_unique_and_matchable);
    tcase_add_test(tc, test_gradcheck_sweep_instances_are_reproducible);
    suite_add_tcase(s, tc);

    tc = tcase_create("cases");
    tcase_add_loop_test(tc, test_gradcheck_sweep_case_passes_every_seed, 0, gc_n_cases);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(sweep_suite());
}
