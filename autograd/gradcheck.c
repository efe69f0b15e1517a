/*
 * The gradient checker: runs the function under test once with recording on
 * and backward seeded with a fixed random r (the analytic gradient of
 * sum(out * r)), then again with recording off at perturbed inputs (central
 * differences of the same sum, accumulated in double), and compares the two
 * element by element or along random sign directions.
 *
 * Every evaluation runs on a tape of the checker's own, made current for that
 * evaluation only and reset after it, so the caller's current tape is left as
 * it was.
 */
#include <tapegrad/gradcheck.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"

/* One check in progress: the arguments and what the evaluations share. */
struct gc_run {
    tg_gradcheck_fn fn;
    void *user;
    int n_inputs;
    struct tg_tensor *const *inputs;
    struct tg_gradcheck_opts opts;
    struct tg_tape *tape;
    struct tg_tensor *r; // upstream weights, of out's shape (heap)
    struct tg_gradcheck_result *res;
    double worst_ratio; // |a - n| / (atol + rtol |n|) at the worst element so far
    bool tape_stuck;    // fn left the tape on the thread's stack: it must not be freed
};

/* ---- Random numbers ------------------------------------------------------- */

/* splitmix64: small, seedable, and the same on every platform. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Upstream weight: magnitude in [0.5, 1.5), random sign, so no output element is ignored. */
static float rng_weight(uint64_t *state)
{
    uint64_t u = rng_next(state);
    float mag = 0.5f + (float)(u >> 40) * (1.0f / 16777216.0f);
    return (u & 1) ? mag : -mag;
}

/* ---- Arguments ------------------------------------------------------------ */

static enum tg_status check_input(struct tg_tensor *const *inputs, int i)
{
    const struct tg_tensor *x = inputs[i];
    if (x == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_gradcheck: input %d is NULL", i);
    if (x->tape != NULL)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_gradcheck: input %d is owned by a tape (expected a heap tensor)",
                            i);
    if (x->requires_grad && x->grad == NULL)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_gradcheck: input %d requires grad but has no grad buffer (use "
                            "tg_tensor_set_requires_grad)",
                            i);
    return TG_OK;
}

static enum tg_status check_opts(const struct tg_gradcheck_opts *o)
{
    if (!(o->eps > 0.0f) || !isfinite(o->eps))
        return tg_error_set(TG_ERR_INVALID, "tg_gradcheck: eps is %g (expected > 0 and finite)",
                            (double)o->eps);
    if (!(o->atol >= 0.0f) || !(o->rtol >= 0.0f) || (o->atol == 0.0f && o->rtol == 0.0f))
        return tg_error_set(TG_ERR_INVALID,
                            "tg_gradcheck: atol %g, rtol %g (expected >= 0, not both 0)",
                            (double)o->atol, (double)o->rtol);
    if (o->n_projections < 0)
        return tg_error_set(TG_ERR_INVALID, "tg_gradcheck: n_projections is %d (expected >= 0)",
                            o->n_projections);
    return TG_OK;
}

static enum tg_status check_args(tg_gradcheck_fn fn,
                                 int n_inputs,
                                 struct tg_tensor *const *inputs,
                                 const struct tg_gradcheck_opts *opts,
                                 struct tg_gradcheck_result *result)
{
    if (fn == NULL || inputs == NULL || result == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_gradcheck: %s is NULL",
                            fn == NULL       ? "fn"
                            : inputs == NULL ? "inputs"
                                             : "result");
    if (n_inputs < 1 || n_inputs > TG_MAX_OP_INPUTS)
        return tg_error_set(TG_ERR_INVALID, "tg_gradcheck: %d inputs (expected 1 to %d)", n_inputs,
                            TG_MAX_OP_INPUTS);
    bool any = false;
    for (int i = 0; i < n_inputs; i++) {
        enum tg_status st = check_input(inputs, i);
        if (st != TG_OK)
            return st;
        any = any || inputs[i]->requires_grad;
    }
    if (!any)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_gradcheck: none of the %d inputs requires grad (nothing to check)",
                            n_inputs);
    return opts ? check_opts(opts) : TG_OK;
}

/* ---- Evaluations ---------------------------------------------------------- */

/* Turn fn's failure into the checker's, keeping fn's message after a prefix. */
static enum tg_status fail_with(enum tg_status st, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", tg_last_error());
    if (st == TG_OK)
        st = TG_ERR_INVALID;
    if (msg[0] == '\0')
        return tg_error_set(st, "tg_gradcheck: %s failed without a message", what);
    return tg_error_set(st, "tg_gradcheck: %s failed: %s", what, msg);
}

/* Run fn on the checker's tape, current for this call only. *out is NULL on failure. */
static enum tg_status call_fn(struct gc_run *run, bool record, struct tg_tensor **out)
{
    *out = NULL;
    tg_tape_reset(run->tape);
    enum tg_status st = tg_tape_begin(run->tape);
    if (st != TG_OK)
        return st;
    tg_tape_set_grad_enabled(run->tape, record);
    tg_clear_error();
    struct tg_tensor *y = run->fn(run->inputs, run->n_inputs, run->user);
    enum tg_status fst = tg_last_status();
    if (tg_tape_end(run->tape) != TG_OK) {
        run->tape_stuck = true;
        return tg_error_set(TG_ERR_STATE,
                            "tg_gradcheck: fn left the tape stack unbalanced (a tg_tape_begin "
                            "without its tg_tape_end)");
    }
    if (y == NULL)
        return fail_with(fst, "fn");
    if (y->tape != run->tape)
        return tg_error_set(TG_ERR_INVALID, "tg_gradcheck: fn returned a tensor that no op made "
                                            "on the checker's tape (an input or a heap tensor?)");
    if (run->r != NULL && y->n_elems != run->r->n_elems) {
        char ys[64], rs[64];
        return tg_error_set(TG_ERR_SHAPE, "tg_gradcheck: fn's output has shape %s, first had %s",
                            tg_tensor_shape_str(y, ys, sizeof(ys)),
                            tg_tensor_shape_str(run->r, rs, sizeof(rs)));
    }
    *out = y;
    return TG_OK;
}

/* sum(out * r) at the inputs' current data, with recording off. */
static enum tg_status eval_sum(struct gc_run *run, double *value)
{
    struct tg_tensor *y;
    enum tg_status st = call_fn(run, false, &y);
    if (st != TG_OK)
        return st;
    double s = 0.0;
    for (int64_t i = 0; i < y->n_elems; i++)
        s += (double)y->data[i] * (double)run->r->data[i];
    *value = s;
    tg_tape_reset(run->tape);
    return TG_OK;
}

/* Analytic pass: leaves the gradient of sum(out * r) in each checked input's grad. */
static enum tg_status analytic_pass(struct gc_run *run, uint64_t *rng)
{
    for (int i = 0; i < run->n_inputs; i++)
        tg_tensor_zero_grad(run->inputs[i]);
    struct tg_tensor *y;
    enum tg_status st = call_fn(run, true, &y);
    if (st != TG_OK)
        return st;

    run->r = tg_tensor_new(y->n_dims, y->shape);
    if (run->r == NULL)
        return fail_with(TG_ERR_NOMEM, "allocating the upstream weights");
    for (int64_t i = 0; i < y->n_elems; i++)
        run->r->data[i] = rng_weight(rng);
    tg_clear_error();
    st = tg_tape_backward(run->tape, y, run->r, TG_BACKWARD_DEFAULT);
    if (st != TG_OK)
        st = fail_with(st, "backward");
    tg_tape_reset(run->tape);
    return st;
}

/* ---- Comparison ----------------------------------------------------------- */

/*
 * Fold one comparison into the result. The worst element is the one furthest
 * past its tolerance (so a failing check always names a failing element);
 * max_abs_err and max_rel_err are maxima over everything checked.
 */
static void compare(struct gc_run *run, int input, int64_t index, double a, double n)
{
    const struct tg_gradcheck_opts *o = &run->opts;
    struct tg_gradcheck_result *res = run->res;
    double err = fabs(a - n);
    double tol = (double)o->atol + (double)o->rtol * fabs(n);
    double rel_floor = o->rtol > 0.0f ? (double)o->atol / (double)o->rtol : 0.0;
    double rel = err == 0.0 ? 0.0 : err / fmax(fabs(n), rel_floor);
    double ratio = tol > 0.0 ? err / tol : (err > 0.0 ? HUGE_VAL : 0.0);
    bool ok = err <= tol;

    if (!ok)
        res->passed = false;
    if (isnan(ratio))
        ratio = HUGE_VAL;
    if (!(err <= res->max_abs_err))
        res->max_abs_err = isnan(err) ? HUGE_VAL : err;
    if (!(rel <= res->max_rel_err))
        res->max_rel_err = isnan(rel) ? HUGE_VAL : rel;
    if (res->n_checked == 0 || ratio > run->worst_ratio) {
        run->worst_ratio = ratio;
        res->worst_input = input;
        res->worst_index = index;
        res->analytic = a;
        res->numeric = n;
    }
    res->n_checked++;
}

/* ---- Element by element --------------------------------------------------- */

static enum tg_status check_element(struct gc_run *run, int i, int64_t j)
{
    float *p = &run->inputs[i]->data[j];
    float x = *p;
    float xp = x + run->opts.eps;
    float xm = x - run->opts.eps;
    double fp = 0.0, fm = 0.0;

    *p = xp;
    enum tg_status st = eval_sum(run, &fp);
    *p = xm;
    if (st == TG_OK)
        st = eval_sum(run, &fm);
    memcpy(p, &x, sizeof(x)); // restore the exact bits
    if (st != TG_OK)
        return st;

    /* Divide by the step the floats actually took, not by 2 eps. */
    double h = (double)xp - (double)xm;
    double numeric = h > 0.0 ? (fp - fm) / h : (double)NAN;
    compare(run, i, j, (double)run->inputs[i]->grad[j], numeric);
    return TG_OK;
}

static enum tg_status check_full(struct gc_run *run)
{
    for (int i = 0; i < run->n_inputs; i++) {
        const struct tg_tensor *x = run->inputs[i];
        if (!x->requires_grad)
            continue;
        for (int64_t j = 0; j < x->n_elems; j++) {
            enum tg_status st = check_element(run, i, j);
            if (st != TG_OK)
                return st;
        }
    }
    return TG_OK;
}

/* ---- Random projections --------------------------------------------------- */

/* Saved data of the checked inputs, one block in input order, and one direction. */
struct gc_proj {
    float *saved;
    signed char *sign;
    int64_t total;
};

static void set_perturbed(struct gc_run *run, const struct gc_proj *pj, float scale)
{
    int64_t k = 0;
    for (int i = 0; i < run->n_inputs; i++) {
        struct tg_tensor *x = run->inputs[i];
        if (!x->requires_grad)
            continue;
        for (int64_t j = 0; j < x->n_elems; j++, k++)
            x->data[j] = pj->saved[k] + scale * (float)pj->sign[k];
    }
}

static void restore_saved(struct gc_run *run, const struct gc_proj *pj)
{
    int64_t k = 0;
    for (int i = 0; i < run->n_inputs; i++) {
        struct tg_tensor *x = run->inputs[i];
        if (!x->requires_grad)
            continue;
        memcpy(x->data, pj->saved + k, (size_t)x->n_elems * sizeof(float));
        k += x->n_elems;
    }
}

/*
 * <grad, x+ - x-> over the checked inputs, from the floats the perturbation
 * actually produced, so rounding of x +- eps v does not count as an error.
 */
static double projected_grad(struct gc_run *run, const struct gc_proj *pj)
{
    double s = 0.0;
    int64_t k = 0;
    float eps = run->opts.eps;
    for (int i = 0; i < run->n_inputs; i++) {
        const struct tg_tensor *x = run->inputs[i];
        if (!x->requires_grad)
            continue;
        for (int64_t j = 0; j < x->n_elems; j++, k++) {
            float v = (float)pj->sign[k];
            double step = (double)(pj->saved[k] + eps * v) - (double)(pj->saved[k] - eps * v);
            s += (double)x->grad[j] * step;
        }
    }
    return s;
}

/* One Rademacher direction v (every element moves by exactly +-eps, keeping kinks afar). */
static enum tg_status check_projection(struct gc_run *run, struct gc_proj *pj, int p, uint64_t *rng)
{
    for (int64_t k = 0; k < pj->total; k++)
        pj->sign[k] = (rng_next(rng) >> 63) ? 1 : -1;
    double fp = 0.0, fm = 0.0;
    float eps = run->opts.eps;

    set_perturbed(run, pj, eps);
    enum tg_status st = eval_sum(run, &fp);
    set_perturbed(run, pj, -eps);
    if (st == TG_OK)
        st = eval_sum(run, &fm);
    restore_saved(run, pj);
    if (st != TG_OK)
        return st;

    double two_eps = 2.0 * (double)eps;
    compare(run, -1, p, projected_grad(run, pj) / two_eps, (fp - fm) / two_eps);
    return TG_OK;
}

static enum tg_status check_projections(struct gc_run *run, uint64_t *rng)
{
    struct gc_proj pj = {NULL, NULL, 0};
    for (int i = 0; i < run->n_inputs; i++)
        if (run->inputs[i]->requires_grad)
            pj.total += run->inputs[i]->n_elems;
    size_t n = pj.total > 0 ? (size_t)pj.total : 1;
    pj.saved = tg_xmalloc(n * sizeof(float));
    if (pj.saved == NULL)
        return fail_with(TG_ERR_NOMEM, "saving the inputs");
    pj.sign = tg_xmalloc(n);
    if (pj.sign == NULL) {
        tg_xfree(pj.saved);
        return fail_with(TG_ERR_NOMEM, "saving the inputs");
    }

    int64_t k = 0;
    for (int i = 0; i < run->n_inputs; i++) {
        const struct tg_tensor *x = run->inputs[i];
        if (!x->requires_grad)
            continue;
        memcpy(pj.saved + k, x->data, (size_t)x->n_elems * sizeof(float));
        k += x->n_elems;
    }
    enum tg_status st = TG_OK;
    for (int p = 0; p < run->opts.n_projections && st == TG_OK; p++)
        st = check_projection(run, &pj, p, rng);

    tg_xfree(pj.sign);
    tg_xfree(pj.saved);
    return st;
}

/* ---- Entry point ---------------------------------------------------------- */

static void result_init(struct tg_gradcheck_result *res)
{
    memset(res, 0, sizeof(*res));
    res->passed = true;
    res->worst_input = -1;
    res->worst_index = -1;
}

enum tg_status tg_gradcheck(tg_gradcheck_fn fn,
                            void *user,
                            int n_inputs,
                            struct tg_tensor *const *inputs,
                            const struct tg_gradcheck_opts *opts,
                            struct tg_gradcheck_result *result)
{
    enum tg_status st = check_args(fn, n_inputs, inputs, opts, result);
    if (st != TG_OK)
        return st;
    struct tg_gradcheck_result res;
    result_init(&res);
    struct gc_run run = {
            .fn = fn,
            .user = user,
            .n_inputs = n_inputs,
            .inputs = inputs,
            .opts = opts ? *opts : TG_GRADCHECK_DEFAULT,
            .tape = tg_tape_new(),
            .res = &res,
    };
    if (run.tape == NULL)
        return fail_with(TG_ERR_NOMEM, "making its tape");
    uint64_t rng = run.opts.seed;

    st = analytic_pass(&run, &rng);
    if (st == TG_OK && run.opts.n_projections > 0)
        st = check_projections(&run, &rng);
    else if (st == TG_OK)
        st = check_full(&run);

    tg_tensor_free(run.r);
    if (!run.tape_stuck)
        tg_tape_free(run.tape); // else the thread's tape stack still points at it

    if (st == TG_OK)
        *result = res;
    return st;
}
