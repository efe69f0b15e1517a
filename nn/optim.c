/*
 * Optimisers (SGD, Adam, AdamW) with PyTorch's float32 update formulas,
 * learning-rate schedules in closed form, and gradient clipping and norms.
 *
 * Each update is a plain loop over one parameter's elements, outputs first,
 * evaluated in the same order as PyTorch's CPU kernels; the scalar factors
 * (bias corrections, step size) are computed in double as PyTorch computes
 * them in Python, then rounded to float once.
 */
#include <tapegrad/optim.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"
#include "ops-impl.h"

#define STATE_NAME_SIZE 48 // "state.<20 digits>.exp_avg_sq" fits
#define MAX_STATE_PER   2  // exp_avg and exp_avg_sq
#define CLIP_NORM_EPS   1e-6
#define PI              3.14159265358979323846

enum optim_kind { OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW };

static const char *const kind_names[] = {"sgd", "adam", "adamw"};

struct tg_optim {
    enum optim_kind kind;
    size_t n_params;
    struct tg_tensor **params; // n_params, not owned
    double lr;
    double momentum;     // SGD
    double weight_decay; // all
    bool nesterov;       // SGD
    double beta1;        // Adam, AdamW
    double beta2;
    double eps;
    int64_t step;
    size_t n_per;             // state tensors per parameter: 0, 1 or 2
    struct tg_tensor **state; // n_params * n_per, parameter-major
    char (*state_names)[STATE_NAME_SIZE];
};

/* ---- Checking arguments -------------------------------------------------- */

static bool in_range(double x, double lo, double hi, bool hi_open)
{
    return isfinite(x) && x >= lo && (hi_open ? x < hi : x <= hi);
}

static enum tg_status
check_setting(const char *func, const char *name, double x, double lo, double hi, bool hi_open)
{
    if (in_range(x, lo, hi, hi_open))
        return TG_OK;
    if (isinf(hi))
        return tg_error_set(TG_ERR_INVALID, "%s: %s out of range (got %g, expected >= %g)", func,
                            name, x, lo);
    return tg_error_set(TG_ERR_INVALID, "%s: %s out of range (got %g, expected %g <= %s %s %g)",
                        func, name, x, lo, name, hi_open ? "<" : "<=", hi);
}

static enum tg_status check_params(const char *func, struct tg_tensor *const *params, size_t n)
{
    if (params == NULL)
        return tg_error_set(TG_ERR_INVALID, "%s: params is NULL", func);
    if (n == 0)
        return tg_error_set(TG_ERR_INVALID, "%s: no parameters (got n = 0, expected >= 1)", func);
    for (size_t i = 0; i < n; i++) {
        const struct tg_tensor *p = params[i];
        if (p == NULL)
            return tg_error_set(TG_ERR_INVALID, "%s: parameter %zu is NULL", func, i);
        if (!(p->flags & TG_TENSOR_HEAP))
            return tg_error_set(TG_ERR_INVALID,
                                "%s: parameter %zu belongs to a tape (expected a heap tensor)",
                                func, i);
        if (p->grad == NULL)
            return tg_error_set(TG_ERR_INVALID,
                                "%s: parameter %zu has no grad buffer (call "
                                "tg_tensor_set_requires_grad first)",
                                func, i);
        for (size_t j = 0; j < i; j++)
            if (params[j] == p)
                return tg_error_set(TG_ERR_INVALID, "%s: parameter %zu repeats parameter %zu", func,
                                    i, j);
    }
    return TG_OK;
}

static enum tg_status check_sgd_opts(const struct tg_sgd_opts *o)
{
    const char *func = "tg_optim_new_sgd";
    if (check_setting(func, "lr", o->lr, 0.0, HUGE_VAL, false) ||
        check_setting(func, "momentum", o->momentum, 0.0, 1.0, true) ||
        check_setting(func, "weight_decay", o->weight_decay, 0.0, HUGE_VAL, false))
        return TG_ERR_INVALID;
    if (o->nesterov && o->momentum == 0.0)
        return tg_error_set(TG_ERR_INVALID,
                            "%s: nesterov needs momentum (got momentum 0, expected > 0)", func);
    return TG_OK;
}

static enum tg_status check_adam_opts(const char *func, const struct tg_adam_opts *o)
{
    if (check_setting(func, "lr", o->lr, 0.0, HUGE_VAL, false) ||
        check_setting(func, "beta1", o->beta1, 0.0, 1.0, true) ||
        check_setting(func, "beta2", o->beta2, 0.0, 1.0, true) ||
        check_setting(func, "eps", o->eps, 0.0, HUGE_VAL, false) ||
        check_setting(func, "weight_decay", o->weight_decay, 0.0, HUGE_VAL, false))
        return TG_ERR_INVALID;
    return TG_OK;
}

/* ---- Making and freeing -------------------------------------------------- */

static const char *const state_suffix[][MAX_STATE_PER] = {
        [OPTIM_SGD] = {"momentum_buffer", NULL},
        [OPTIM_ADAM] = {"exp_avg", "exp_avg_sq"},
        [OPTIM_ADAMW] = {"exp_avg", "exp_avg_sq"},
};

/* Allocate the parameter copy and zeroed state tensors of opt (n_per set). */
static enum tg_status alloc_state(struct tg_optim *opt, struct tg_tensor *const *params)
{
    size_t n = opt->n_params;
    size_t n_state = n * opt->n_per;
    opt->params = tg_xmalloc(n * sizeof(*opt->params));
    if (opt->params == NULL)
        return TG_ERR_NOMEM;
    memcpy(opt->params, params, n * sizeof(*opt->params));
    if (n_state == 0)
        return TG_OK;
    opt->state = tg_xcalloc(n_state * sizeof(*opt->state));
    opt->state_names = tg_xmalloc(n_state * sizeof(*opt->state_names));
    if (opt->state == NULL || opt->state_names == NULL)
        return TG_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < opt->n_per; k++) {
            size_t s = i * opt->n_per + k;
            opt->state[s] = tg_tensor_new(params[i]->n_dims, params[i]->shape);
            if (opt->state[s] == NULL)
                return TG_ERR_NOMEM;
            snprintf(opt->state_names[s], STATE_NAME_SIZE, "state.%zu.%s", i,
                     state_suffix[opt->kind][k]);
        }
    return TG_OK;
}

void tg_optim_free(struct tg_optim *opt)
{
    if (opt == NULL)
        return;
    if (opt->state != NULL)
        for (size_t s = 0; s < opt->n_params * opt->n_per; s++)
            tg_tensor_free(opt->state[s]);
    tg_xfree(opt->state);
    tg_xfree(opt->state_names);
    tg_xfree(opt->params);
    tg_xfree(opt);
}

/* The common part of the constructors: opt holds the settings already. */
static struct tg_optim *optim_new(const char *func,
                                  const struct tg_optim *settings,
                                  struct tg_tensor *const *params,
                                  size_t n)
{
    struct tg_optim *opt = tg_xmalloc(sizeof(*opt));
    if (opt == NULL)
        goto fail;
    *opt = *settings;
    opt->n_params = n;
    if (alloc_state(opt, params) != TG_OK)
        goto free_opt;
    return opt;

free_opt:
    tg_optim_free(opt);
fail:
    tg_error_set(TG_ERR_NOMEM, "%s: out of memory for the state of %zu parameters", func, n);
    return NULL;
}

struct tg_optim *
tg_optim_new_sgd(struct tg_tensor *const *params, size_t n, const struct tg_sgd_opts *opts)
{
    const struct tg_sgd_opts defaults = TG_SGD_OPTS_INIT;
    const struct tg_sgd_opts *o = opts != NULL ? opts : &defaults;
    if (check_params("tg_optim_new_sgd", params, n) != TG_OK || check_sgd_opts(o) != TG_OK)
        return NULL;
    struct tg_optim settings = {
            .kind = OPTIM_SGD,
            .lr = o->lr,
            .momentum = o->momentum,
            .weight_decay = o->weight_decay,
            .nesterov = o->nesterov,
            .n_per = o->momentum != 0.0 ? 1 : 0,
    };
    return optim_new("tg_optim_new_sgd", &settings, params, n);
}

static struct tg_optim *adam_new(const char *func,
                                 enum optim_kind kind,
                                 struct tg_tensor *const *params,
                                 size_t n,
                                 const struct tg_adam_opts *o)
{
    if (check_params(func, params, n) != TG_OK || check_adam_opts(func, o) != TG_OK)
        return NULL;
    struct tg_optim settings = {
            .kind = kind,
            .lr = o->lr,
            .weight_decay = o->weight_decay,
            .beta1 = o->beta1,
            .beta2 = o->beta2,
            .eps = o->eps,
            .n_per = 2,
    };
    return optim_new(func, &settings, params, n);
}

struct tg_optim *
tg_optim_new_adam(struct tg_tensor *const *params, size_t n, const struct tg_adam_opts *opts)
{
    const struct tg_adam_opts defaults = TG_ADAM_OPTS_INIT;
    return adam_new("tg_optim_new_adam", OPTIM_ADAM, params, n, opts != NULL ? opts : &defaults);
}

struct tg_optim *
tg_optim_new_adamw(struct tg_tensor *const *params, size_t n, const struct tg_adam_opts *opts)
{
    const struct tg_adam_opts defaults = TG_ADAMW_OPTS_INIT;
    return adam_new("tg_optim_new_adamw", OPTIM_ADAMW, params, n, opts != NULL ? opts : &defaults);
}

/* ---- Update kernels: w (and state) from g, one parameter ----------------- */

/* SGD; buf is NULL without momentum, first tells buf holds nothing yet. */
static void
sgd_update(float *w, float *buf, const float *g, int64_t n, const struct tg_optim *opt, bool first)
{
    const float lr = (float)opt->lr;
    const float wd = (float)opt->weight_decay;
    const float mom = (float)opt->momentum;
    const bool nesterov = opt->nesterov;
    TG_PARALLEL_LOOP(
            n, for (int64_t i = 0; i < n; i++) {
                float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
                if (buf != NULL) {
                    buf[i] = first ? d : buf[i] * mom + d; // dampening 0
                    d = nesterov ? d + mom * buf[i] : buf[i];
                }
                w[i] = w[i] + -lr * d;
            });
}

/* Adam and AdamW; the step count t >= 1 is already advanced. */
static void adam_update(float *w,
                        float *m,
                        float *v,
                        const float *g,
                        int64_t n,
                        const struct tg_optim *opt,
                        int64_t t)
{
    /* scalars in double, as PyTorch computes them in Python */
    const double bc1 = 1.0 - pow(opt->beta1, (double)t);
    const double bc2 = 1.0 - pow(opt->beta2, (double)t);
    const float neg_step_size = (float)(-(opt->lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = (float)opt->beta1;
    const float b2 = (float)opt->beta2;
    const float one_b1 = (float)(1.0 - opt->beta1);
    const float one_b2 = (float)(1.0 - opt->beta2);
    const float eps = (float)opt->eps;
    const bool decoupled = opt->kind == OPTIM_ADAMW;
    const float l2 = decoupled ? 0.0f : (float)opt->weight_decay;
    /* AdamW's decay as a factor (1 without it: the product is then exact), so
     * that the loop has no branch and vectorises */
    const float decay = decoupled ? (float)(1.0 - opt->lr * opt->weight_decay) : 1.0f;
    TG_PARALLEL_LOOP(
            n, for (int64_t i = 0; i < n; i++) {
                float wi = w[i] * decay;
                float d = g[i] + l2 * wi;
                float mi = m[i] * b1 + one_b1 * d;
                float vi = v[i] * b2 + one_b2 * d * d;
                float denom = sqrtf(vi) / bc2_sqrt + eps;
                m[i] = mi;
                v[i] = vi;
                w[i] = wi + neg_step_size * mi / denom;
            });
}

/* ---- Running an optimiser ------------------------------------------------- */

/*
 * Index of the first NaN or infinity of x[0..n), or -1. Blocks are screened
 * with a branch-free maximum of the exponent bits (all ones only for NaN and
 * infinity), which vectorises; only a block that fails is searched.
 */
static int64_t first_nonfinite(const float *x, int64_t n)
{
    enum { BLOCK = 1024 };
    for (int64_t b = 0; b < n; b += BLOCK) {
        int64_t e = n - b < BLOCK ? n : b + BLOCK;
        uint32_t top = 0;
        for (int64_t i = b; i < e; i++) {
            uint32_t bits;
            memcpy(&bits, &x[i], sizeof(bits));
            bits &= 0x7f800000u;
            top = bits > top ? bits : top;
        }
        if (top != 0x7f800000u)
            continue;
        for (int64_t i = b; i < e; i++)
            if (!isfinite(x[i]))
                return i;
    }
    return -1;
}

enum tg_status tg_optim_step(struct tg_optim *opt)
{
    if (opt == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_optim_step: optimiser is NULL");

    /* refuse before touching anything */
    for (size_t i = 0; i < opt->n_params; i++) {
        const struct tg_tensor *p = opt->params[i];
        int64_t bad = p->grad != NULL ? first_nonfinite(p->grad, p->n_elems) : -1;
        if (bad >= 0)
            return tg_error_set(TG_ERR_NONFINITE,
                                "tg_optim_step: gradient of parameter %zu is not finite (element "
                                "%" PRId64 " is %g); nothing updated",
                                i, bad, (double)p->grad[bad]);
    }

    int64_t t = opt->step + 1;
    for (size_t i = 0; i < opt->n_params; i++) {
        struct tg_tensor *p = opt->params[i];
        if (p->grad == NULL)
            continue;
        struct tg_tensor *const *st = opt->state != NULL ? &opt->state[i * opt->n_per] : NULL;
        if (opt->kind == OPTIM_SGD)
            sgd_update(p->data, st != NULL ? st[0]->data : NULL, p->grad, p->n_elems, opt,
                       opt->step == 0);
        else
            adam_update(p->data, st[0]->data, st[1]->data, p->grad, p->n_elems, opt, t);
    }
    opt->step = t;
    return TG_OK;
}

void tg_optim_zero_grad(struct tg_optim *opt)
{
    if (opt == NULL)
        return;
    for (size_t i = 0; i < opt->n_params; i++)
        tg_tensor_zero_grad(opt->params[i]);
}

enum tg_status tg_optim_set_lr(struct tg_optim *opt, double lr)
{
    if (opt == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_optim_set_lr: optimiser is NULL");
    if (check_setting("tg_optim_set_lr", "lr", lr, 0.0, HUGE_VAL, false) != TG_OK)
        return TG_ERR_INVALID;
    opt->lr = lr;
    return TG_OK;
}

double tg_optim_get_lr(const struct tg_optim *opt)
{
    return opt != NULL ? opt->lr : (double)NAN;
}

const char *tg_optim_name(const struct tg_optim *opt)
{
    return opt != NULL ? kind_names[opt->kind] : NULL;
}

size_t tg_optim_n_params(const struct tg_optim *opt)
{
    return opt != NULL ? opt->n_params : 0;
}

/* ---- State ----------------------------------------------------------------- */

int64_t tg_optim_get_step(const struct tg_optim *opt)
{
    return opt != NULL ? opt->step : -1;
}

size_t tg_optim_n_state(const struct tg_optim *opt)
{
    return opt != NULL ? opt->n_params * opt->n_per : 0;
}

enum tg_status tg_optim_state_list(struct tg_optim *opt,
                                   size_t cap,
                                   const char **names,
                                   struct tg_tensor **tensors)
{
    if (opt == NULL || names == NULL || tensors == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_optim_state_list: %s is NULL",
                            opt == NULL     ? "optimiser"
                            : names == NULL ? "names"
                                            : "tensors");
    size_t n_state = tg_optim_n_state(opt);
    if (cap < n_state)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_optim_state_list: too little room (got cap %zu, expected >= %zu)",
                            cap, n_state);
    for (size_t s = 0; s < n_state; s++) {
        names[s] = opt->state_names[s];
        tensors[s] = opt->state[s];
    }
    return TG_OK;
}

/* Index of the state tensor called name, or -1. */
static ptrdiff_t find_state(const struct tg_optim *opt, const char *name)
{
    for (size_t s = 0; s < tg_optim_n_state(opt); s++)
        if (strcmp(opt->state_names[s], name) == 0)
            return (ptrdiff_t)s;
    return -1;
}

/* Check the j-th saved pair against the state; seen marks the names met so far. */
static enum tg_status
check_saved(const struct tg_optim *opt, const char *name, const struct tg_tensor *t, bool *seen)
{
    const char *func = "tg_optim_load_state";
    if (name == NULL || t == NULL)
        return tg_error_set(TG_ERR_INVALID, "%s: a name or tensor is NULL", func);
    ptrdiff_t s = find_state(opt, name);
    if (s < 0)
        return tg_error_set(TG_ERR_INVALID, "%s: unknown state name \"%s\" for %s", func, name,
                            kind_names[opt->kind]);
    if (seen[s])
        return tg_error_set(TG_ERR_INVALID, "%s: state name \"%s\" given twice", func, name);
    seen[s] = true;
    if (!tg_tensor_same_shape(t, opt->state[s])) {
        char got[TG_SHAPE_STR];
        char want[TG_SHAPE_STR];
        return tg_error_set(TG_ERR_SHAPE, "%s: %s has shape %s, parameter expects %s", func, name,
                            SHAPE(t, got), SHAPE(opt->state[s], want));
    }
    int64_t bad = first_nonfinite(t->data, t->n_elems);
    if (bad >= 0)
        return tg_error_set(TG_ERR_NONFINITE, "%s: %s is not finite (element %" PRId64 " is %g)",
                            func, name, bad, (double)t->data[bad]);
    return TG_OK;
}

enum tg_status tg_optim_load_state(struct tg_optim *opt,
                                   int64_t step,
                                   size_t n,
                                   const char *const *names,
                                   const struct tg_tensor *const *tensors)
{
    const char *func = "tg_optim_load_state";
    if (opt == NULL || (n > 0 && (names == NULL || tensors == NULL)))
        return tg_error_set(TG_ERR_INVALID, "%s: %s is NULL", func,
                            opt == NULL     ? "optimiser"
                            : names == NULL ? "names"
                                            : "tensors");
    if (step < 0)
        return tg_error_set(TG_ERR_INVALID, "%s: negative step (got %" PRId64 ", expected >= 0)",
                            func, step);
    size_t n_state = tg_optim_n_state(opt);
    if (n != n_state)
        return tg_error_set(TG_ERR_INVALID,
                            "%s: wrong number of state tensors for %s (got %zu, expected %zu)",
                            func, kind_names[opt->kind], n, n_state);
    if (n == 0) {
        opt->step = step;
        return TG_OK;
    }

    bool *seen = tg_xcalloc(n * sizeof(*seen));
    if (seen == NULL)
        return tg_error_set(TG_ERR_NOMEM, "%s: out of memory", func);
    enum tg_status st = TG_OK;
    for (size_t j = 0; j < n && st == TG_OK; j++)
        st = check_saved(opt, names[j], tensors[j], seen);
    tg_xfree(seen);
    if (st != TG_OK)
        return st;

    for (size_t j = 0; j < n; j++)
        tg_tensor_copy(opt->state[find_state(opt, names[j])], tensors[j]);
    opt->step = step;
    return TG_OK;
}

/* ---- Learning-rate schedules ------------------------------------------------ */

enum tg_status tg_lr_schedule_check(const struct tg_lr_schedule *s)
{
    const char *func = "tg_lr_schedule_check";
    if (s == NULL)
        return tg_error_set(TG_ERR_INVALID, "%s: schedule is NULL", func);
    if (check_setting(func, "base_lr", s->base_lr, 0.0, HUGE_VAL, false) ||
        check_setting(func, "warmup_start_factor", s->warmup_start_factor, 0.0, 1.0, false))
        return TG_ERR_INVALID;
    if (s->warmup_steps < 0)
        return tg_error_set(TG_ERR_INVALID,
                            "%s: warmup_steps out of range (got %" PRId64 ", expected >= 0)", func,
                            s->warmup_steps);
    switch (s->kind) {
    case TG_LR_CONSTANT:
        return TG_OK;
    case TG_LR_STEP:
        if (s->step_size < 1)
            return tg_error_set(TG_ERR_INVALID,
                                "%s: step_size out of range (got %" PRId64 ", expected >= 1)", func,
                                s->step_size);
        if (!(isfinite(s->gamma) && s->gamma > 0.0))
            return tg_error_set(TG_ERR_INVALID,
                                "%s: gamma out of range (got %g, expected a finite value > 0)",
                                func, s->gamma);
        return TG_OK;
    case TG_LR_COSINE:
        if (s->t_max < 1)
            return tg_error_set(TG_ERR_INVALID,
                                "%s: t_max out of range (got %" PRId64 ", expected >= 1)", func,
                                s->t_max);
        return check_setting(func, "eta_min", s->eta_min, 0.0, HUGE_VAL, false);
    }
    return tg_error_set(TG_ERR_INVALID, "%s: unknown kind %d (expected a tg_lr_kind)", func,
                        (int)s->kind);
}

double tg_lr_schedule_at(const struct tg_lr_schedule *s, int64_t step)
{
    if (step < 0 || tg_lr_schedule_check(s) != TG_OK)
        return (double)NAN;

    double lr = s->base_lr;
    if (s->kind == TG_LR_STEP)
        lr = s->base_lr * pow(s->gamma, (double)(step / s->step_size));
    else if (s->kind == TG_LR_COSINE)
        lr = s->eta_min +
             (s->base_lr - s->eta_min) * (1.0 + cos(PI * (double)step / (double)s->t_max)) / 2.0;

    if (s->warmup_steps > 0) {
        int64_t done = step < s->warmup_steps ? step : s->warmup_steps;
        double f = s->warmup_start_factor +
                   (1.0 - s->warmup_start_factor) * (double)done / (double)s->warmup_steps;
        lr *= f;
    }
    return lr;
}

/* ---- Gradient clipping and norms --------------------------------------------- */

static double sum_squares(const float *x, int64_t n)
{
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)x[i] * (double)x[i];
    return acc;
}

double tg_grad_norm(const struct tg_tensor *t)
{
    if (t == NULL || t->grad == NULL)
        return 0.0;
    return sqrt(sum_squares(t->grad, t->n_elems));
}

static enum tg_status check_param_list(const char *func, struct tg_tensor *const *params, size_t n)
{
    if (params == NULL && n > 0)
        return tg_error_set(TG_ERR_INVALID, "%s: params is NULL", func);
    for (size_t i = 0; i < n; i++)
        if (params[i] == NULL)
            return tg_error_set(TG_ERR_INVALID, "%s: parameter %zu is NULL", func, i);
    return TG_OK;
}

enum tg_status
tg_grad_norms(struct tg_tensor *const *params, size_t n, double *norms, double *total_norm)
{
    if (check_param_list("tg_grad_norms", params, n) != TG_OK)
        return TG_ERR_INVALID;
    if (norms == NULL && n > 0)
        return tg_error_set(TG_ERR_INVALID, "tg_grad_norms: norms is NULL");
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double ss =
                params[i]->grad != NULL ? sum_squares(params[i]->grad, params[i]->n_elems) : 0.0;
        norms[i] = sqrt(ss);
        total += ss;
    }
    if (total_norm != NULL)
        *total_norm = sqrt(total);
    return TG_OK;
}

enum tg_status
tg_clip_grad_norm(struct tg_tensor *const *params, size_t n, double max_norm, double *total_norm)
{
    const char *func = "tg_clip_grad_norm";
    if (check_param_list(func, params, n) != TG_OK)
        return TG_ERR_INVALID;
    if (!(isfinite(max_norm) && max_norm > 0.0))
        return tg_error_set(TG_ERR_INVALID,
                            "%s: max_norm out of range (got %g, expected a finite value > 0)", func,
                            max_norm);

    /* the squares of finite floats cannot overflow a double sum */
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        const struct tg_tensor *p = params[i];
        double pss = p->grad != NULL ? sum_squares(p->grad, p->n_elems) : 0.0;
        if (!isfinite(pss))
            return tg_error_set(TG_ERR_NONFINITE,
                                "%s: total norm is not finite (gradient of parameter %zu holds "
                                "a NaN or infinity); no gradient changed",
                                func, i);
        ss += pss;
    }
    double total = sqrt(ss);

    double coef = max_norm / (total + CLIP_NORM_EPS);
    if (coef < 1.0) {
        const float c = (float)coef;
        for (size_t i = 0; i < n; i++) {
            float *g = params[i]->grad;
            int64_t len = g != NULL ? params[i]->n_elems : 0;
            TG_PARALLEL_LOOP(len, for (int64_t k = 0; k < len; k++) g[k] = g[k] * c;);
        }
        TG_LOG_DEBUG("clipped gradients (total norm %g, max_norm %g)", total, max_norm);
    }
    if (total_norm != NULL)
        *total_norm = total;
    return TG_OK;
}

enum tg_status tg_clip_grad_value(struct tg_tensor *const *params, size_t n, double clip_value)
{
    const char *func = "tg_clip_grad_value";
    if (check_param_list(func, params, n) != TG_OK)
        return TG_ERR_INVALID;
    if (!(isfinite(clip_value) && clip_value > 0.0))
        return tg_error_set(TG_ERR_INVALID,
                            "%s: clip_value out of range (got %g, expected a finite value > 0)",
                            func, clip_value);
    const float hi = (float)clip_value;
    for (size_t i = 0; i < n; i++) {
        float *g = params[i]->grad;
        int64_t len = g != NULL ? params[i]->n_elems : 0;
        TG_PARALLEL_LOOP(len, for (int64_t k = 0; k < len; k++) g[k] =
                                      g[k] > hi    ? hi
                                      : g[k] < -hi ? -hi
                                                   : g[k];); // NaN compares false: kept
    }
    return TG_OK;
}
