/*
 * Every op of the core engine against PyTorch: each case of
 * tests/data/torch-ops.jsonl whose op this engine provides is run forward on a
 * tape, compared with PyTorch's output, then run backward with the case's
 * upstream gradient and compared with PyTorch's input gradients. Cases of the
 * nn layer set (batch norm, optimisers, clipping, BCE) are listed explicitly
 * and counted, so that a new op in the file fails the coverage test instead of
 * passing unnoticed. Tolerances are explained in tests/data/README.md.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refcase.h"
#include "testutil.h"

#define DATA_FILE TG_TEST_DATA_DIR "/torch-ops.jsonl"
#define N_CASES   55
#define MAX_IN    3

/* The file, loaded once by main() before the runner forks. */
static struct refcase_set cases;
static enum tg_status cases_status = TG_ERR_STATE;
static char cases_error[REFCASE_ERR_SIZE] = "not loaded";

/* ---- The op table ------------------------------------------------------ */

/* Runs one case's op on in[] (ordered as op_entry.inputs; absent ones NULL). */
typedef struct tg_tensor *(*run_fn)(const struct refcase *rc, struct tg_tensor *const *in);

struct op_entry {
    const char *op;             /* "op" in the file */
    const char *inputs[MAX_IN]; /* tensor inputs in call order, NULL-terminated */
    int n_required;             /* the first n_required must be in the case */
    run_fn run;
};

/* |got - want| <= atol + rtol |want|, for outputs and for gradients. */
struct tol {
    double fwd_atol, fwd_rtol;
    double grad_atol, grad_rtol;
};

struct family {
    const char *name;
    const struct op_entry *ops;
    int n_ops;
    struct tol tol;
};

/* Class indices stored as floats: checked to be integers in [0, n_classes). */
static int32_t *labels_of(const struct refcase *rc, int64_t n_rows, int64_t n_classes)
{
    const struct refcase_tensor *l = refcase_input(rc, "labels");
    ck_assert_msg(l != NULL, "line %d %s: no labels", rc->line, rc->op);
    ck_assert_msg(l->n_elems == n_rows, "line %d %s: %lld labels for %lld rows", rc->line, rc->op,
                  (long long)l->n_elems, (long long)n_rows);
    int32_t *labels = malloc((size_t)(n_rows > 0 ? n_rows : 1) * sizeof(*labels));
    ck_assert(labels != NULL);
    for (int64_t i = 0; i < n_rows; i++) {
        float v = l->data[i];
        ck_assert_msg(v >= 0.0f && v < (float)n_classes && v == floorf(v),
                      "line %d %s: label %lld is %g, not a class index below %lld", rc->line,
                      rc->op, (long long)i, v, (long long)n_classes);
        labels[i] = (int32_t)v;
    }
    return labels;
}

static enum tg_reduction reduction_of(const struct refcase *rc)
{
    const char *r = refcase_param_str(rc, "reduction", "mean");
    if (strcmp(r, "sum") == 0)
        return TG_REDUCE_SUM;
    ck_assert_msg(strcmp(r, "mean") == 0, "line %d %s: unknown reduction \"%s\"", rc->line, rc->op,
                  r);
    return TG_REDUCE_MEAN;
}

static int required_int(const struct refcase *rc, const char *key)
{
    ck_assert_msg(refcase_param_has(rc, key), "line %d %s: no param \"%s\"", rc->line, rc->op, key);
    return refcase_param_int(rc, key, 0);
}

static struct tg_tensor *run_matmul(const struct refcase *rc, struct tg_tensor *const *in)
{
    return tg_matmul(in[0], in[1], refcase_param_bool(rc, "transpose_a", false),
                     refcase_param_bool(rc, "transpose_b", false));
}

static struct tg_tensor *run_add(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_add(in[0], in[1]);
}

static struct tg_tensor *run_mul(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_mul(in[0], in[1]);
}

static struct tg_tensor *run_div(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_div(in[0], in[1]);
}

static struct tg_tensor *run_relu(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_relu(in[0]);
}

static struct tg_tensor *run_sigmoid(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_sigmoid(in[0]);
}

static struct tg_tensor *run_tanh(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_tanh(in[0]);
}

static struct tg_tensor *run_elu(const struct refcase *rc, struct tg_tensor *const *in)
{
    return tg_elu(in[0], (float)refcase_param_double(rc, "alpha", 1.0));
}

static struct tg_tensor *run_leaky_relu(const struct refcase *rc, struct tg_tensor *const *in)
{
    return tg_leaky_relu(in[0], (float)refcase_param_double(rc, "negative_slope", 0.01));
}

static struct tg_tensor *run_exp(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_exp(in[0]);
}

static struct tg_tensor *run_log(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_log(in[0]);
}

static struct tg_tensor *run_sqrt(const struct refcase *rc, struct tg_tensor *const *in)
{
    (void)rc;
    return tg_sqrt(in[0]);
}

/* axis null reduces every element to a 0-d tensor; an int axis is removed. */
static struct tg_tensor *run_sum(const struct refcase *rc, struct tg_tensor *const *in)
{
    if (!refcase_param_has(rc, "axis"))
        return tg_sum(in[0]);
    return tg_sum_axis(in[0], required_int(rc, "axis"), false);
}

static struct tg_tensor *run_mean(const struct refcase *rc, struct tg_tensor *const *in)
{
    if (!refcase_param_has(rc, "axis"))
        return tg_mean(in[0]);
    return tg_mean_axis(in[0], required_int(rc, "axis"), false);
}

static struct tg_tensor *run_softmax(const struct refcase *rc, struct tg_tensor *const *in)
{
    return tg_softmax(in[0], required_int(rc, "axis"));
}

static struct tg_tensor *run_log_softmax(const struct refcase *rc, struct tg_tensor *const *in)
{
    return tg_log_softmax(in[0], required_int(rc, "axis"));
}

static struct tg_tensor *run_conv2d(const struct refcase *rc, struct tg_tensor *const *in)
{
    int stride = refcase_param_int(rc, "stride", 1);
    int pad = refcase_param_int(rc, "padding", 0);
    int dilation = refcase_param_int(rc, "dilation", 1);
    struct tg_conv2d_params p = {
            stride, stride, pad, pad, dilation, dilation, refcase_param_int(rc, "groups", 1),
    };
    return tg_conv2d(in[0], in[1], in[2], &p);
}

/* PyTorch's defaults: stride = kernel, no padding, count_include_pad true. */
static struct tg_pool2d_params pool_params(const struct refcase *rc)
{
    int kernel = required_int(rc, "kernel");
    int stride = refcase_param_int(rc, "stride", kernel);
    int pad = refcase_param_int(rc, "padding", 0);
    return (struct tg_pool2d_params){
            kernel,
            kernel,
            stride,
            stride,
            pad,
            pad,
            refcase_param_bool(rc, "count_include_pad", true),
    };
}

static struct tg_tensor *run_max_pool2d(const struct refcase *rc, struct tg_tensor *const *in)
{
    struct tg_pool2d_params p = pool_params(rc);
    return tg_max_pool2d(in[0], &p);
}

static struct tg_tensor *run_avg_pool2d(const struct refcase *rc, struct tg_tensor *const *in)
{
    struct tg_pool2d_params p = pool_params(rc);
    return tg_avg_pool2d(in[0], &p);
}

static struct tg_tensor *run_cross_entropy(const struct refcase *rc, struct tg_tensor *const *in)
{
    ck_assert_msg(in[0]->n_dims == 2, "line %d %s: logits are not 2-d", rc->line, rc->op);
    int32_t *labels = labels_of(rc, in[0]->shape[0], in[0]->shape[1]);
    struct tg_tensor *y =
            tg_cross_entropy_loss(in[0], labels, reduction_of(rc),
                                  (float)refcase_param_double(rc, "label_smoothing", 0.0));
    free(labels);
    return y;
}

static struct tg_tensor *run_nll(const struct refcase *rc, struct tg_tensor *const *in)
{
    ck_assert_msg(in[0]->n_dims == 2, "line %d %s: logp is not 2-d", rc->line, rc->op);
    int32_t *labels = labels_of(rc, in[0]->shape[0], in[0]->shape[1]);
    struct tg_tensor *y = tg_nll_loss(in[0], labels, reduction_of(rc));
    free(labels);
    return y;
}

static struct tg_tensor *run_mse(const struct refcase *rc, struct tg_tensor *const *in)
{
    return tg_mse_loss(in[0], in[1], reduction_of(rc));
}

static const struct op_entry matmul_ops[] = {
        {"matmul", {"a", "b"}, 2, run_matmul},
};
static const struct op_entry binary_ops[] = {
        {"add", {"a", "b"}, 2, run_add},
        {"mul", {"a", "b"}, 2, run_mul},
        {"div", {"a", "b"}, 2, run_div},
};
static const struct op_entry unary_ops[] = {
        {"relu", {"x"}, 1, run_relu}, {"sigmoid", {"x"}, 1, run_sigmoid},
        {"tanh", {"x"}, 1, run_tanh}, {"exp", {"x"}, 1, run_exp},
        {"elu", {"x"}, 1, run_elu},   {"leaky_relu", {"x"}, 1, run_leaky_relu},
        {"log", {"x"}, 1, run_log},   {"sqrt", {"x"}, 1, run_sqrt},
};
static const struct op_entry reduce_ops[] = {
        {"sum", {"x"}, 1, run_sum},
        {"mean", {"x"}, 1, run_mean},
};
static const struct op_entry softmax_ops[] = {
        {"softmax", {"x"}, 1, run_softmax},
        {"log_softmax", {"x"}, 1, run_log_softmax},
};
static const struct op_entry conv_ops[] = {
        {"conv2d", {"x", "weight", "bias"}, 2, run_conv2d},
};
static const struct op_entry pool_ops[] = {
        {"max_pool2d", {"x"}, 1, run_max_pool2d},
        {"avg_pool2d", {"x"}, 1, run_avg_pool2d},
};
static const struct op_entry loss_ops[] = {
        {"cross_entropy", {"logits"}, 1, run_cross_entropy},
        {"nll", {"logp"}, 1, run_nll},
        {"mse", {"a", "b"}, 2, run_mse},
};

#define N_OF(array) ((int)(sizeof(array) / sizeof((array)[0])))

/*
 * Forward rtol 1e-5 and gradient rtol 1e-4 as tests/data/README.md states;
 * atol covers results that cancel to near zero, scaled to the number of terms
 * a result sums (conv2d weight gradients sum up to 162 products).
 */
enum { F_MATMUL, F_BINARY, F_UNARY, F_REDUCE, F_SOFTMAX, F_CONV, F_POOL, F_LOSS, N_FAMILIES };
static const struct family families[N_FAMILIES] = {
        [F_MATMUL] = {"matmul", matmul_ops, N_OF(matmul_ops), {1e-5, 1e-5, 1e-5, 1e-4}},
        [F_BINARY] = {"binary", binary_ops, N_OF(binary_ops), {1e-6, 1e-5, 1e-5, 1e-4}},
        [F_UNARY] = {"unary", unary_ops, N_OF(unary_ops), {1e-6, 1e-5, 1e-6, 1e-4}},
        [F_REDUCE] = {"reduce", reduce_ops, N_OF(reduce_ops), {1e-5, 1e-5, 1e-6, 1e-4}},
        [F_SOFTMAX] = {"softmax", softmax_ops, N_OF(softmax_ops), {1e-6, 1e-5, 1e-6, 1e-4}},
        [F_CONV] = {"conv2d", conv_ops, N_OF(conv_ops), {2e-5, 1e-5, 1e-4, 1e-4}},
        [F_POOL] = {"pool", pool_ops, N_OF(pool_ops), {1e-6, 1e-5, 1e-6, 1e-4}},
        [F_LOSS] = {"loss", loss_ops, N_OF(loss_ops), {1e-6, 1e-5, 1e-6, 1e-4}},
};

/*
 * Cases of the nn layer set, checked against the same file by other suites:
 * the optimiser and clipping cases by tests/test-optim.c, the batch-norm and
 * binary cross-entropy cases by tests/test-nn.c (test_nn_matches_torch). The
 * coverage test counts and lists them; none is silently passed here.
 */
static const char *const nn_layer_ops[] = {
        "bce_with_logits", "batch_norm_train",       "batch_norm_running_stats",
        "optimizer_sgd",   "optimizer_sgd_momentum", "optimizer_sgd_nesterov_wd",
        "optimizer_adam",  "optimizer_adam_wd",      "optimizer_adamw",
        "clip_grad_norm",
};
#define N_NN_LAYER_OPS N_OF(nn_layer_ops)

static const struct op_entry *find_entry(const char *op, const struct family **fam)
{
    for (int f = 0; f < N_FAMILIES; f++)
        for (int k = 0; k < families[f].n_ops; k++)
            if (strcmp(families[f].ops[k].op, op) == 0) {
                if (fam)
                    *fam = &families[f];
                return &families[f].ops[k];
            }
    return NULL;
}

static bool is_nn_layer_op(const char *op)
{
    for (int i = 0; i < N_NN_LAYER_OPS; i++)
        if (strcmp(nn_layer_ops[i], op) == 0)
            return true;
    return false;
}

/* ---- Running one case ---------------------------------------------------- */

static void assert_cases_loaded(void)
{
    ck_assert_msg(cases_status == TG_OK, "%s: %s", DATA_FILE, cases_error);
}

/* Compare n floats, naming the case, what is compared and the first bad element. */
static void assert_close(const struct refcase *rc,
                         const char *what,
                         const float *got,
                         const float *want,
                         int64_t n,
                         double atol,
                         double rtol)
{
    for (int64_t i = 0; i < n; i++) {
        double g = got[i];
        double w = want[i];
        double tol = atol + rtol * fabs(w);
        if (!(fabs(g - w) <= tol))
            ck_abort_msg("line %d %s: %s element %lld: got %.9g, want %.9g (|diff| %.3g > tol "
                         "%.3g)",
                         rc->line, rc->op, what, (long long)i, g, w, fabs(g - w), tol);
    }
}

/* "3x4", or "scalar" for 0 dimensions, as tg_tensor_shape_str() writes it. */
static const char *refcase_shape_str(const struct refcase_tensor *t, char *buf, size_t size)
{
    snprintf(buf, size, "%s", t->n_dims == 0 ? "scalar" : "");
    for (int d = 0; d < t->n_dims; d++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%lld", d > 0 ? "x" : "", (long long)t->shape[d]);
    }
    return buf;
}

static void assert_shape(const struct refcase *rc,
                         const char *what,
                         const struct tg_tensor *got,
                         const struct refcase_tensor *want)
{
    bool same = got->n_dims == want->n_dims;
    for (int d = 0; same && d < want->n_dims; d++)
        same = got->shape[d] == want->shape[d];
    if (!same) {
        char got_str[64];
        char want_str[64];
        ck_abort_msg("line %d %s: %s has shape %s, want %s", rc->line, rc->op, what,
                     tg_tensor_shape_str(got, got_str, sizeof(got_str)),
                     refcase_shape_str(want, want_str, sizeof(want_str)));
    }
}

static struct tg_tensor *leaf_of(const struct refcase *rc, const struct refcase_tensor *t)
{
    struct tg_tensor *x = tg_tensor_from_data(t->n_dims, t->shape, t->data);
    ck_assert_msg(x != NULL, "line %d %s: input %s: %s", rc->line, rc->op, t->name,
                  tg_last_error());
    if (refcase_grad(rc, t->name) != NULL) {
        enum tg_status st = tg_tensor_set_requires_grad(x, true);
        ck_assert_msg(st == TG_OK, "line %d %s: requires_grad on %s: %s", rc->line, rc->op, t->name,
                      tg_last_error());
    }
    return x;
}

/* Heap leaves for the entry's inputs; every expected grad must name one of them. */
static void build_inputs(const struct refcase *rc, const struct op_entry *e, struct tg_tensor **in)
{
    for (int k = 0; k < MAX_IN && e->inputs[k]; k++) {
        const struct refcase_tensor *t = refcase_input(rc, e->inputs[k]);
        ck_assert_msg(t != NULL || k >= e->n_required, "line %d %s: no input \"%s\"", rc->line,
                      rc->op, e->inputs[k]);
        in[k] = t ? leaf_of(rc, t) : NULL;
    }
    for (int g = 0; g < rc->grads.n_tensors; g++) {
        const char *name = rc->grads.tensors[g].name;
        bool fed = false;
        for (int k = 0; k < MAX_IN && e->inputs[k]; k++)
            fed = fed || (in[k] != NULL && strcmp(e->inputs[k], name) == 0);
        ck_assert_msg(fed, "line %d %s: the case has a gradient for \"%s\", which is not fed",
                      rc->line, rc->op, name);
    }
}

/* Seed backward with the upstream; a scalar output with upstream 1 takes NULL. */
static void run_backward(const struct refcase *rc, struct tg_tape *tape, struct tg_tensor *y)
{
    const struct refcase_tensor *up = &rc->upstream;
    struct tg_tensor *seed = NULL;
    if (!(up->n_dims == 0 && up->data[0] == 1.0f)) {
        seed = tg_tensor_from_data(up->n_dims, up->shape, up->data);
        ck_assert_msg(seed != NULL, "line %d %s: seed: %s", rc->line, rc->op, tg_last_error());
    }
    enum tg_status st = tg_tape_backward(tape, y, seed, 0);
    ck_assert_msg(st == TG_OK, "line %d %s: backward: %s (%s)", rc->line, rc->op, tg_status_str(st),
                  tg_last_error());
    tg_tensor_free(seed);
}

static void check_case(const struct family *fam, const struct op_entry *e, const struct refcase *rc)
{
    struct tg_tensor *in[MAX_IN] = {NULL};
    build_inputs(rc, e, in);
    struct tg_tape *tape = tg_tape_new();
    ck_assert_msg(tape != NULL, "tg_tape_new: %s", tg_last_error());
    ck_assert_int_eq(tg_tape_begin(tape), TG_OK);

    /* Forward. */
    tg_clear_error();
    struct tg_tensor *y = e->run(rc, in);
    ck_assert_msg(y != NULL, "line %d %s: forward failed: %s (%s)", rc->line, rc->op,
                  tg_status_str(tg_last_status()), tg_last_error());
    assert_shape(rc, "output", y, &rc->output);
    assert_close(rc, "output", y->data, rc->output.data, rc->output.n_elems, fam->tol.fwd_atol,
                 fam->tol.fwd_rtol);

    /* Backward, then each input's gradient. */
    run_backward(rc, tape, y);
    for (int k = 0; k < MAX_IN && e->inputs[k]; k++) {
        const struct refcase_tensor *want = refcase_grad(rc, e->inputs[k]);
        if (!want)
            continue;
        char what[64];
        snprintf(what, sizeof(what), "grad of %s", e->inputs[k]);
        ck_assert_msg(in[k]->grad != NULL, "line %d %s: %s is missing", rc->line, rc->op, what);
        assert_close(rc, what, in[k]->grad, want->data, want->n_elems, fam->tol.grad_atol,
                     fam->tol.grad_rtol);
    }

    ck_assert_int_eq(tg_tape_end(tape), TG_OK);
    tg_tape_free(tape);
    for (int k = 0; k < MAX_IN; k++)
        tg_tensor_free(in[k]);
}

/* Number of cases of the file that family f handles. */
static int family_n_cases(int f)
{
    int n = 0;
    const struct family *fam = NULL;
    for (int i = 0; i < cases.n; i++)
        if (find_entry(cases.cases[i].op, &fam) && fam == &families[f])
            n++;
    return n;
}

/* The index-th case of family f, in file order. */
static void check_family_case(int f, int index)
{
    assert_cases_loaded();
    int seen = 0;
    for (int i = 0; i < cases.n; i++) {
        const struct family *fam = NULL;
        const struct op_entry *e = find_entry(cases.cases[i].op, &fam);
        if (e && fam == &families[f] && seen++ == index) {
            check_case(fam, e, &cases.cases[i]);
            return;
        }
    }
    ck_abort_msg("family %s has no case %d", families[f].name, index);
}

/* ---- Op families: one loop iteration per case ---------------------------- */

START_TEST(test_matmul_matches_torch)
{
    check_family_case(F_MATMUL, _i);
}
END_TEST

START_TEST(test_binary_matches_torch)
{
    check_family_case(F_BINARY, _i);
}
END_TEST

START_TEST(test_unary_matches_torch)
{
    check_family_case(F_UNARY, _i);
}
END_TEST

START_TEST(test_reduce_matches_torch)
{
    check_family_case(F_REDUCE, _i);
}
END_TEST

START_TEST(test_softmax_matches_torch)
{
    check_family_case(F_SOFTMAX, _i);
}
END_TEST

START_TEST(test_conv2d_matches_torch)
{
    check_family_case(F_CONV, _i);
}
END_TEST

START_TEST(test_pool_matches_torch)
{
    check_family_case(F_POOL, _i);
}
END_TEST

START_TEST(test_loss_matches_torch)
{
    check_family_case(F_LOSS, _i);
}
END_TEST

/* ---- Coverage: every case is either checked here or a listed nn-layer case ---- */

START_TEST(test_coverage_every_case_is_accounted_for)
{
    assert_cases_loaded();
    int n_checked = 0;
    int n_nn = 0;
    char nn_lines[512] = "";
    for (int i = 0; i < cases.n; i++) {
        const struct refcase *rc = &cases.cases[i];
        if (find_entry(rc->op, NULL)) {
            n_checked++;
            continue;
        }
        ck_assert_msg(is_nn_layer_op(rc->op),
                      "line %d: op \"%s\" is neither checked by this suite nor listed as an "
                      "nn-layer case",
                      rc->line, rc->op);
        n_nn++;
        size_t used = strlen(nn_lines);
        snprintf(nn_lines + used, sizeof(nn_lines) - used, " %s(line %d)", rc->op, rc->line);
    }
    fprintf(stderr, "torch-ref: %d cases checked here, %d nn-layer cases left to other suites:%s\n",
            n_checked, n_nn, nn_lines);
    ck_assert_int_eq(n_checked + n_nn, cases.n);
    ck_assert_int_eq(n_checked, 43);
    ck_assert_int_eq(n_nn, 12);
}
END_TEST

/* A stale name in either list would hide a gap: each must match a case. */
START_TEST(test_coverage_lists_have_no_stale_names)
{
    assert_cases_loaded();
    for (int f = 0; f < N_FAMILIES; f++)
        for (int k = 0; k < families[f].n_ops; k++) {
            const char *op = families[f].ops[k].op;
            bool found = false;
            for (int i = 0; i < cases.n && !found; i++)
                found = strcmp(cases.cases[i].op, op) == 0;
            ck_assert_msg(found, "op %s of family %s has no case", op, families[f].name);
            ck_assert_msg(!is_nn_layer_op(op), "op %s is listed twice", op);
        }
    for (int k = 0; k < N_NN_LAYER_OPS; k++) {
        bool found = false;
        for (int i = 0; i < cases.n && !found; i++)
            found = strcmp(cases.cases[i].op, nn_layer_ops[k]) == 0;
        ck_assert_msg(found, "nn-layer op %s has no case", nn_layer_ops[k]);
    }
}
END_TEST

/* ---- The loader ----------------------------------------------------------------- */

START_TEST(test_refcase_load_reads_55_cases)
{
    struct refcase_set set;
    char err[REFCASE_ERR_SIZE] = "";
    enum tg_status st = refcase_load(DATA_FILE, &set, err);
    ck_assert_msg(st == TG_OK, "%s", err);
    ck_assert_int_eq(set.n, N_CASES);
    for (int i = 0; i < set.n; i++)
        ck_assert_int_eq(set.cases[i].line, i + 1);
    refcase_set_free(&set);
    ck_assert_int_eq(set.n, 0);
}
END_TEST

START_TEST(test_refcase_load_rejects_missing_file)
{
    struct refcase_set set;
    char err[REFCASE_ERR_SIZE] = "";
    ck_assert_int_eq(refcase_load(TG_TEST_DATA_DIR "/no-such-file.jsonl", &set, err), TG_ERR_IO);
    ck_assert_ptr_null(set.cases);
    ck_assert_str_ne(err, "");
}
END_TEST

static const char good_line[] =
        "{\"op\": \"conv2d\", \"params\": {\"stride\": 2, \"axis\": null, \"flag\": true, "
        "\"reduction\": \"sum\", \"slope\": 0.25},"
        " \"inputs\": {\"x\": {\"shape\": [1, 2], \"data\": [1.5, -2]}},"
        " \"upstream\": {\"shape\": [], \"data\": [1.0]},"
        " \"output\": {\"shape\": [], \"data\": [3]},"
        " \"grads\": {\"x\": {\"shape\": [1, 2], \"data\": [0.5, 0.25]}}}";

START_TEST(test_refcase_parse_reads_fields_and_params)
{
    struct refcase rc;
    char err[REFCASE_ERR_SIZE] = "";
    ck_assert_msg(refcase_parse(good_line, 7, &rc, err) == TG_OK, "%s", err);
    ck_assert_int_eq(rc.line, 7);
    ck_assert_str_eq(rc.op, "conv2d");
    ck_assert_int_eq(rc.kind, REFCASE_PLAIN);
    const struct refcase_tensor *x = refcase_input(&rc, "x");
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(x->n_dims, 2);
    ck_assert_int_eq(x->shape[1], 2);
    ck_assert_float_eq(x->data[1], -2.0f);
    ck_assert(rc.output_is_tensor && rc.output.n_dims == 0 && rc.output.data[0] == 3.0f);
    ck_assert(rc.has_upstream && rc.upstream.n_elems == 1);
    ck_assert_float_eq(refcase_grad(&rc, "x")->data[1], 0.25f);
    ck_assert_ptr_null(refcase_grad(&rc, "w"));

    ck_assert_int_eq(refcase_param_int(&rc, "stride", 1), 2);
    ck_assert_int_eq(refcase_param_int(&rc, "padding", 9), 9);
    ck_assert_int_eq(refcase_param_int(&rc, "slope", 9), 9); // not an integer
    ck_assert(!refcase_param_has(&rc, "axis"));
    ck_assert(refcase_param_has(&rc, "stride"));
    ck_assert(refcase_param_bool(&rc, "flag", false));
    ck_assert(refcase_param_bool(&rc, "stride", false) == false);
    ck_assert_double_eq(refcase_param_double(&rc, "slope", 0.0), 0.25);
    ck_assert_str_eq(refcase_param_str(&rc, "reduction", "mean"), "sum");
    ck_assert_str_eq(refcase_param_str(&rc, "missing", "mean"), "mean");
    refcase_free(&rc);
    ck_assert_ptr_null(rc.json);
}
END_TEST

/* Each line is broken in one way; the loader must refuse it cleanly. */
static const char *const bad_lines[] = {
        "",
        "   ",
        "{",
        "not json",
        "[1, 2, 3]",
        "{\"op\": \"relu\"}",
        "{\"op\": 3, \"inputs\": {}, \"output\": 1}",
        "{\"op\": \"\", \"inputs\": {}, \"output\": 1}",
        /* data does not fill the shape */
        "{\"op\": \"relu\", \"inputs\": {\"x\": {\"shape\": [2, 2], \"data\": [1, 2, 3]}}, "
        "\"upstream\": 1, \"output\": 1, \"grads\": {\"x\": {\"shape\": [2, 2], \"data\": "
        "[1,2,3,4]}}}",
        /* negative and fractional sizes, too many dimensions */
        "{\"op\": \"relu\", \"inputs\": {\"x\": {\"shape\": [-1], \"data\": []}}, \"output\": 1}",
        "{\"op\": \"relu\", \"inputs\": {\"x\": {\"shape\": [1.5], \"data\": [1]}}, \"output\": 1}",
        "{\"op\": \"relu\", \"inputs\": {\"x\": {\"shape\": [1,1,1,1,1,1,1], \"data\": [1]}}, "
        "\"output\": 1}",
        /* a string among the numbers, an overflowing float */
        "{\"op\": \"relu\", \"inputs\": {\"x\": {\"shape\": [2], \"data\": [1, \"a\"]}}, "
        "\"output\": 1}",
        "{\"op\": \"relu\", \"inputs\": {\"x\": {\"shape\": [1], \"data\": [1e300]}}, \"output\": "
        "1}",
        /* trailing garbage after a good object */
        "{\"op\": \"relu\", \"inputs\": {}, \"output\": 1} x",
        /* a plain case without output, upstream or grads, or with a mismatched upstream */
        "{\"op\": \"relu\", \"inputs\": {\"x\": 1}, \"upstream\": 1, \"grads\": {\"x\": 1}}",
        "{\"op\": \"relu\", \"inputs\": {\"x\": 1}, \"output\": 1, \"grads\": {\"x\": 1}}",
        "{\"op\": \"relu\", \"inputs\": {\"x\": 1}, \"upstream\": 1, \"output\": 1}",
        "{\"op\": \"relu\", \"inputs\": {\"x\": 1}, \"upstream\": {\"shape\": [2], \"data\": [1, "
        "1]}, "
        "\"output\": 1, \"grads\": {\"x\": 1}}",
        /* a grad for an input that does not exist */
        "{\"op\": \"relu\", \"inputs\": {\"x\": 1}, \"upstream\": 1, \"output\": 1, "
        "\"grads\": {\"y\": 1}}",
        /* params not an object */
        "{\"op\": \"relu\", \"params\": 3, \"inputs\": {\"x\": 1}, \"upstream\": 1, \"output\": 1, "
        "\"grads\": {\"x\": 1}}",
        /* an optimiser with two grads but three steps */
        "{\"op\": \"optimizer_sgd\", \"inputs\": {\"weight\": 1, \"grads\": [1, 2]}, "
        "\"output\": {\"after_each_step\": [1, 2, 3]}}",
        /* clipping without total_norm */
        "{\"op\": \"clip_grad_norm\", \"inputs\": {\"grads\": [1]}, \"output\": {\"grads\": [1]}}",
        /* running statistics of the wrong length */
        "{\"op\": \"batch_norm_running_stats\", \"inputs\": {\"x\": {\"shape\": [1, 2], \"data\": "
        "[1, 2]}}, \"output\": {\"running_mean\": {\"shape\": [3], \"data\": [0, 0, 0]}, "
        "\"running_var\": {\"shape\": [3], \"data\": [1, 1, 1]}}}",
};
#define N_BAD_LINES N_OF(bad_lines)

START_TEST(test_refcase_parse_rejects_malformed_line)
{
    struct refcase rc;
    char err[REFCASE_ERR_SIZE] = "";
    enum tg_status st = refcase_parse(bad_lines[_i], 12, &rc, err);
    ck_assert_msg(st == TG_ERR_FORMAT, "bad line %d accepted (status %s): %s", _i,
                  tg_status_str(st), bad_lines[_i]);
    ck_assert_msg(strncmp(err, "line 12: ", strlen("line 12: ")) == 0, "message \"%s\"", err);
    ck_assert_ptr_null(rc.json);
    ck_assert_ptr_null(rc.op);
    ck_assert_ptr_null(rc.inputs.tensors);
    refcase_free(&rc); // a zeroed case frees as a no-op
}
END_TEST

/* Every proper prefix of a good line is malformed JSON and must be refused. */
START_TEST(test_refcase_parse_rejects_truncated_line)
{
    size_t len = strlen(good_line);
    char *buf = malloc(len + 1);
    ck_assert_ptr_nonnull(buf);
    for (size_t n = 0; n < len; n++) {
        memcpy(buf, good_line, n);
        buf[n] = '\0';
        struct refcase rc;
        ck_assert_msg(refcase_parse(buf, 1, &rc, NULL) == TG_ERR_FORMAT,
                      "prefix of %zu bytes accepted", n);
    }
    free(buf);
}
END_TEST

START_TEST(test_refcase_parse_rejects_null_text)
{
    struct refcase rc;
    ck_assert_int_eq(refcase_parse(NULL, 1, &rc, NULL), TG_ERR_FORMAT);
    ck_assert_ptr_null(rc.json);
}
END_TEST

/* The special cases reach the test in the shape the nn-layer suites will need. */
START_TEST(test_refcase_load_reads_special_cases)
{
    assert_cases_loaded();
    int n_opt = 0;
    int n_clip = 0;
    int n_stats = 0;
    for (int i = 0; i < cases.n; i++) {
        const struct refcase *rc = &cases.cases[i];
        if (rc->kind == REFCASE_OPTIMIZER) {
            n_opt++;
            const struct refcase_list *g = refcase_group_list(&rc->inputs, "grads");
            const struct refcase_list *s = refcase_group_list(&rc->output_parts, "after_each_step");
            ck_assert_int_eq(g->n, 3);
            ck_assert_int_eq(s->n, 3);
            ck_assert_int_eq(s->items[2].n_elems, refcase_input(rc, "weight")->n_elems);
            ck_assert(!rc->output_is_tensor && !rc->has_upstream && rc->grads.n_tensors == 0);
        } else if (rc->kind == REFCASE_CLIP_GRAD_NORM) {
            n_clip++;
            const struct refcase_tensor *norm =
                    refcase_group_tensor(&rc->output_parts, "total_norm");
            ck_assert_float_eq_tol(norm->data[0], 9.661537f, 1e-5f);
            ck_assert_int_eq(refcase_group_list(&rc->output_parts, "grads")->n, 2);
            ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(rc->output_json, "total_norm")));
        } else if (rc->kind == REFCASE_BN_RUNNING_STATS) {
            n_stats++;
            const struct refcase_tensor *m =
                    refcase_group_tensor(&rc->output_parts, "running_mean");
            ck_assert_int_eq(m->shape[0], refcase_input(rc, "x")->shape[1]);
            ck_assert_ptr_nonnull(refcase_group_tensor(&rc->output_parts, "running_var"));
        } else {
            ck_assert_msg(rc->output_is_tensor, "line %d: plain case without output tensor",
                          rc->line);
        }
    }
    ck_assert_int_eq(n_opt, 6);
    ck_assert_int_eq(n_clip, 1);
    ck_assert_int_eq(n_stats, 2);
}
END_TEST

/* ---- Suite ------------------------------------------------------------------ */

static Suite *torch_ref_suite(void)
{
    Suite *s = suite_create("torch-ref");

    TCase *tc = tcase_create("refcase");
    tcase_add_test(tc, test_refcase_load_reads_55_cases);
    tcase_add_test(tc, test_refcase_load_rejects_missing_file);
    tcase_add_test(tc, test_refcase_parse_reads_fields_and_params);
    tcase_add_loop_test(tc, test_refcase_parse_rejects_malformed_line, 0, N_BAD_LINES);
    tcase_add_test(tc, test_refcase_parse_rejects_null_text);
    tcase_add_test(tc, test_refcase_parse_rejects_truncated_line);
    tcase_add_test(tc, test_refcase_load_reads_special_cases);
    suite_add_tcase(s, tc);

    tc = tcase_create("coverage");
    tcase_add_test(tc, test_coverage_every_case_is_accounted_for);
    tcase_add_test(tc, test_coverage_lists_have_no_stale_names);
    suite_add_tcase(s, tc);

    /* One loop iteration per case; the count comes from the loaded file. */
    const TTest *family_tests[N_FAMILIES] = {
            [F_MATMUL] = test_matmul_matches_torch,   [F_BINARY] = test_binary_matches_torch,
            [F_UNARY] = test_unary_matches_torch,     [F_REDUCE] = test_reduce_matches_torch,
            [F_SOFTMAX] = test_softmax_matches_torch, [F_CONV] = test_conv2d_matches_torch,
            [F_POOL] = test_pool_matches_torch,       [F_LOSS] = test_loss_matches_torch,
    };
    for (int f = 0; f < N_FAMILIES; f++) {
        tc = tcase_create(families[f].name);
        /* At least one iteration, so that a family without cases fails loudly. */
        int n = family_n_cases(f);
        tcase_add_loop_test(tc, family_tests[f], 0, n > 0 ? n : 1);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    cases_status = refcase_load(DATA_FILE, &cases, cases_error);
    int status = tu_run_suite(torch_ref_suite());
    refcase_set_free(&cases);
    return status;
}
