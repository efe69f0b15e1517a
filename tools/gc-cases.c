/*
 * The gradient-check case table (see gc-cases.h): generators of shapes,
 * arguments and inputs for every built-in op, the functions under test, and
 * the driver that checks one drawn instance.
 *
 * Sizes are drawn small (1 to 7, odd ones included) so that most instances
 * are checked element by element within a fraction of a second.
 */
#include "gc-cases.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- Random draws --------------------------------------------------------- */

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Integer in [lo, hi]. */
static int64_t draw(uint64_t *rng, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(rng) % (uint64_t)(hi - lo + 1));
}

static float uniform(uint64_t *rng, float lo, float hi)
{
    float u = (float)(rng_next(rng) >> 40) * (1.0f / 16777216.0f);
    return lo + (hi - lo) * u;
}

static bool coin(uint64_t *rng)
{
    return rng_next(rng) >> 63;
}

/* ---- Fills ---------------------------------------------------------------- */

static void fill_uniform(struct tg_tensor *t, uint64_t *rng, float lo, float hi)
{
    for (int64_t i = 0; i < t->n_elems; i++)
        t->data[i] = uniform(rng, lo, hi);
}

/* |x| in [min_abs, max_abs], random sign: keeps kinks at 0 at least min_abs away. */
static void fill_away(struct tg_tensor *t, uint64_t *rng, float min_abs, float max_abs)
{
    for (int64_t i = 0; i < t->n_elems; i++) {
        float v = uniform(rng, min_abs, max_abs);
        t->data[i] = coin(rng) ? v : -v;
    }
}

/* A random permutation of a grid spaced gap apart: no two elements within gap. */
static void fill_distinct(struct tg_tensor *t, uint64_t *rng, float gap)
{
    int64_t n = t->n_elems;
    for (int64_t i = 0; i < n; i++)
        t->data[i] = ((float)i - 0.5f * (float)n) * gap;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = draw(rng, 0, i);
        float tmp = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = tmp;
    }
}

/* ---- Instances ------------------------------------------------------------ */

/* A new input of the instance, requiring grad; NULL (inst unchanged) on failure. */
static struct tg_tensor *add_input(struct gc_instance *inst, int n_dims, const int64_t *shape)
{
    if (inst->n_inputs >= GC_MAX_INPUTS)
        return NULL;
    struct tg_tensor *t = tg_tensor_new(n_dims, shape);
    if (t == NULL)
        return NULL;
    if (tg_tensor_set_requires_grad(t, true) != TG_OK) {
        tg_tensor_free(t);
        return NULL;
    }
    inst->in[inst->n_inputs++] = t;
    return t;
}

static void add_param(struct gc_instance *inst, const char *fmt, ...) TG_PRINTF(2, 3);

static void add_param(struct gc_instance *inst, const char *fmt, ...)
{
    size_t used = strlen(inst->params);
    if (used + 2 >= sizeof(inst->params))
        return;
    if (used > 0)
        inst->params[used++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(inst->params + used, sizeof(inst->params) - used, fmt, ap);
    va_end(ap);
}

/* Shape of rank n with each size in [lo, hi]. */
static void draw_shape(uint64_t *rng, int n, int64_t lo, int64_t hi, int64_t *shape)
{
    for (int i = 0; i < n; i++)
        shape[i] = draw(rng, lo, hi);
}

static const char *reduction_name(enum tg_reduction r)
{
    return r == TG_REDUCE_SUM ? "sum" : "mean";
}

/* ---- Linear algebra ------------------------------------------------------- */

/* variant bit 0: transpose a; bit 1: transpose b. */
static enum tg_status make_matmul(struct gc_instance *inst, uint64_t *rng)
{
    int64_t m = draw(rng, 1, 6), k = draw(rng, 1, 6), n = draw(rng, 1, 6);
    struct gc_args *a = &inst->a;
    a->trans_a = inst->c->variant & 1;
    a->trans_b = inst->c->variant & 2;
    int64_t sa[2] = {a->trans_a ? k : m, a->trans_a ? m : k};
    int64_t sb[2] = {a->trans_b ? n : k, a->trans_b ? k : n};
    struct tg_tensor *x = add_input(inst, 2, sa);
    struct tg_tensor *y = add_input(inst, 2, sb);
    if (x == NULL || y == NULL)
        return TG_ERR_NOMEM;
    fill_uniform(x, rng, -1.0f, 1.0f);
    fill_uniform(y, rng, -1.0f, 1.0f);
    return TG_OK;
}

static enum tg_status make_bmm(struct gc_instance *inst, uint64_t *rng)
{
    int64_t b = draw(rng, 1, 3), m = draw(rng, 1, 5), k = draw(rng, 1, 5), n = draw(rng, 1, 5);
    struct gc_args *a = &inst->a;
    a->trans_a = inst->c->variant & 1;
    a->trans_b = inst->c->variant & 2;
    int64_t sa[3] = {b, a->trans_a ? k : m, a->trans_a ? m : k};
    int64_t sb[3] = {b, a->trans_b ? n : k, a->trans_b ? k : n};
    struct tg_tensor *x = add_input(inst, 3, sa);
    struct tg_tensor *y = add_input(inst, 3, sb);
    if (x == NULL || y == NULL)
        return TG_ERR_NOMEM;
    fill_uniform(x, rng, -1.0f, 1.0f);
    fill_uniform(y, rng, -1.0f, 1.0f);
    return TG_OK;
}

static struct tg_tensor *fn_matmul(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_matmul(in[0], in[1], inst->a.trans_a, inst->a.trans_b);
}

static struct tg_tensor *fn_bmm(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_bmm(in[0], in[1], inst->a.trans_a, inst->a.trans_b);
}

/* ---- Broadcasting binary ops ---------------------------------------------- */

#define BIN_BROADCAST 1 // draw one of the broadcast patterns instead of equal shapes
#define BIN_DENOM     2 // b is a denominator: keep |b| in [0.5, 1.5]

/*
 * Broadcast patterns: full shape (N, C, H, W) or (N, F) against row bias (F),
 * channel bias (1, C, 1, 1) and (C, 1, 1), an outer product (N, 1) x (1, F),
 * a 0-d scalar, and a random pattern with sizes set to 1 and leading
 * dimensions dropped on either side.
 */
static void draw_broadcast(uint64_t *rng, int *na, int64_t *sa, int *nb, int64_t *sb)
{
    int64_t s[4];
    draw_shape(rng, 4, 1, 4, s);
    switch (draw(rng, 0, 5)) {
    case 0: // row bias
        *na = 2, sa[0] = s[0], sa[1] = s[1];
        *nb = 1, sb[0] = s[1];
        break;
    case 1: // channel bias, rank 4
        *na = 4, memcpy(sa, s, sizeof(s));
        *nb = 4, sb[0] = 1, sb[1] = s[1], sb[2] = 1, sb[3] = 1;
        break;
    case 2: // channel bias, rank 3
        *na = 4, memcpy(sa, s, sizeof(s));
        *nb = 3, sb[0] = s[1], sb[1] = 1, sb[2] = 1;
        break;
    case 3: // outer
        *na = 2, sa[0] = s[0], sa[1] = 1;
        *nb = 2, sb[0] = 1, sb[1] = s[1];
        break;
    case 4: // scalar
        *na = 3, memcpy(sa, s, 3 * sizeof(*s));
        *nb = 0;
        break;
    default: { // random: some sizes 1 on each side, b maybe of lower rank
        int r = (int)draw(rng, 1, 4);
        *na = r;
        *nb = r - (int)draw(rng, 0, r - 1);
        for (int i = 0; i < r; i++)
            sa[i] = draw(rng, 0, 2) == 0 ? 1 : s[i];
        for (int i = 0; i < *nb; i++) {
            int64_t full = s[r - *nb + i];
            sb[i] = sa[r - *nb + i] == 1 ? full : (draw(rng, 0, 2) == 0 ? 1 : full);
        }
        break;
    }
    }
}

static enum tg_status make_binary(struct gc_instance *inst, uint64_t *rng)
{
    int na, nb;
    int64_t sa[TG_MAX_DIMS], sb[TG_MAX_DIMS];
    if (inst->c->variant & BIN_BROADCAST) {
        draw_broadcast(rng, &na, sa, &nb, sb);
    } else {
        na = nb = (int)draw(rng, 0, 4);
        draw_shape(rng, na, 1, 5, sa);
        memcpy(sb, sa, sizeof(sa));
    }
    /* Either side may be the broadcast one. */
    bool swap = (inst->c->variant & BIN_BROADCAST) && coin(rng);
    struct tg_tensor *x = add_input(inst, swap ? nb : na, swap ? sb : sa);
    struct tg_tensor *y = add_input(inst, swap ? na : nb, swap ? sa : sb);
    if (x == NULL || y == NULL)
        return TG_ERR_NOMEM;
    fill_uniform(x, rng, -1.0f, 1.0f);
    if (inst->c->variant & BIN_DENOM)
        fill_away(y, rng, 0.5f, 1.5f);
    else
        fill_uniform(y, rng, -1.0f, 1.0f);
    return TG_OK;
}

static struct tg_tensor *fn_add(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_add(in[0], in[1]);
}

static struct tg_tensor *fn_sub(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_sub(in[0], in[1]);
}

static struct tg_tensor *fn_mul(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_mul(in[0], in[1]);
}

static struct tg_tensor *fn_div(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_div(in[0], in[1]);
}

/* ---- Element-wise unary ops and activations -------------------------------- */

/* variant: input range (low 4 bits) and the scalar argument (high bits). */
enum {
    UN_WIDE = 0,     // [-2, 2]
    UN_POSITIVE = 1, // [0.5, 2]: log, sqrt, pow
    UN_AWAY = 2,     // |x| in [0.05, 2]: kinks at 0
    UN_C_ANY = 1 << 4,
    UN_C_POW = 2 << 4,
    UN_C_SLOPE = 3 << 4,
    UN_C_ALPHA = 4 << 4,
};

static float draw_scalar(uint64_t *rng, int kind)
{
    static const float exponents[] = {2.0f, 3.0f, 0.5f, -1.0f, 1.5f, -0.5f, 1.0f, 0.0f};
    switch (kind) {
    case UN_C_ANY:
        return uniform(rng, -2.0f, 2.0f);
    case UN_C_POW:
        return exponents[draw(rng, 0, 7)];
    case UN_C_SLOPE:
        return coin(rng) ? 0.01f : uniform(rng, 0.05f, 0.5f);
    case UN_C_ALPHA:
        return coin(rng) ? 1.0f : uniform(rng, 0.2f, 2.0f);
    default:
        return 0.0f;
    }
}

static enum tg_status make_unary(struct gc_instance *inst, uint64_t *rng)
{
    int v = inst->c->variant;
    int64_t s[TG_MAX_DIMS];
    int n = (int)draw(rng, 0, 4);
    draw_shape(rng, n, 1, 5, s);
    struct tg_tensor *x = add_input(inst, n, s);
    if (x == NULL)
        return TG_ERR_NOMEM;
    if ((v & 15) == UN_POSITIVE)
        fill_uniform(x, rng, 0.5f, 2.0f);
    else if ((v & 15) == UN_AWAY)
        fill_away(x, rng, 0.05f, 2.0f);
    else
        fill_uniform(x, rng, -2.0f, 2.0f);
    if (v & ~15) {
        inst->a.c = draw_scalar(rng, v & ~15);
        add_param(inst, "c=%g", (double)inst->a.c);
    }
    return TG_OK;
}

#define UNARY_FN(name, call)                                                                       \
    static struct tg_tensor *fn_##name(struct tg_tensor *const *in, int n, void *user)             \
    {                                                                                              \
        const struct gc_instance *inst = user;                                                     \
        (void)n;                                                                                   \
        (void)inst;                                                                                \
        return call;                                                                               \
    }

UNARY_FN(scale, tg_scale(in[0], inst->a.c))
UNARY_FN(add_scalar, tg_add_scalar(in[0], inst->a.c))
UNARY_FN(neg, tg_neg(in[0]))
UNARY_FN(exp, tg_exp(in[0]))
UNARY_FN(log, tg_log(in[0]))
UNARY_FN(sqrt, tg_sqrt(in[0]))
UNARY_FN(pow, tg_pow(in[0], inst->a.c))
UNARY_FN(relu, tg_relu(in[0]))
UNARY_FN(leaky_relu, tg_leaky_relu(in[0], inst->a.c))
UNARY_FN(elu, tg_elu(in[0], inst->a.c))
UNARY_FN(sigmoid, tg_sigmoid(in[0]))
UNARY_FN(tanh, tg_tanh(in[0]))

/* ---- Convolution and pooling ---------------------------------------------- */

#define CONV_STRIDE   1
#define CONV_PAD      2
#define CONV_DILATION 4
#define CONV_GROUPS   8
#define CONV_NO_BIAS  16

/* Smallest input size that leaves one output for an effective kernel keff. */
static int64_t draw_spatial(uint64_t *rng, int64_t keff, int pad, int64_t extra)
{
    int64_t lo = keff - 2 * pad;
    if (lo < 1)
        lo = 1;
    return draw(rng, lo, lo + extra);
}

static enum tg_status make_conv2d(struct gc_instance *inst, uint64_t *rng)
{
    int v = inst->c->variant;
    struct tg_conv2d_params *p = &inst->a.conv;
    *p = TG_CONV2D_DEFAULT;
    p->stride_h = v & CONV_STRIDE ? (int)draw(rng, 1, 3) : 1;
    p->stride_w = v & CONV_STRIDE ? (int)draw(rng, 1, 3) : 1;
    p->pad_h = v & CONV_PAD ? (int)draw(rng, 0, 2) : 0;
    p->pad_w = v & CONV_PAD ? (int)draw(rng, 0, 2) : 0;
    p->dilation_h = v & CONV_DILATION ? (int)draw(rng, 1, 3) : 1;
    p->dilation_w = v & CONV_DILATION ? (int)draw(rng, 1, 3) : 1;
    p->groups = v & CONV_GROUPS ? (int)draw(rng, 2, 3) : 1;
    inst->a.has_bias = !(v & CONV_NO_BIAS);
    /* A variant's setting is never the default in both directions. */
    if ((v & CONV_STRIDE) && p->stride_h == 1 && p->stride_w == 1)
        p->stride_h = 2;
    if ((v & CONV_PAD) && p->pad_h == 0 && p->pad_w == 0)
        p->pad_w = 1;
    if ((v & CONV_DILATION) && p->dilation_h == 1 && p->dilation_w == 1)
        p->dilation_h = 2;

    int64_t kh = draw(rng, 1, 3), kw = draw(rng, 1, 3);
    int64_t cg = draw(rng, 1, 3), og = draw(rng, 1, 3);
    int64_t n = draw(rng, 1, 2);
    int64_t h = draw_spatial(rng, p->dilation_h * (kh - 1) + 1, p->pad_h, 3);
    int64_t w = draw_spatial(rng, p->dilation_w * (kw - 1) + 1, p->pad_w, 3);
    int64_t sx[4] = {n, p->groups * cg, h, w};
    int64_t sw[4] = {p->groups * og, cg, kh, kw};
    int64_t sb[1] = {p->groups * og};
    struct tg_tensor *x = add_input(inst, 4, sx);
    struct tg_tensor *wt = add_input(inst, 4, sw);
    struct tg_tensor *b = inst->a.has_bias ? add_input(inst, 1, sb) : wt;
    if (x == NULL || wt == NULL || b == NULL)
        return TG_ERR_NOMEM;
    /* Outputs near 1 keep the rounding of the ~40 outputs a weight feeds below atol. */
    fill_uniform(x, rng, -1.0f, 1.0f);
    fill_uniform(wt, rng, -0.5f, 0.5f);
    if (inst->a.has_bias)
        fill_uniform(b, rng, -1.0f, 1.0f);
    add_param(inst, "s=%d,%d p=%d,%d d=%d,%d g=%d", p->stride_h, p->stride_w, p->pad_h, p->pad_w,
              p->dilation_h, p->dilation_w, p->groups);
    return TG_OK;
}

static struct tg_tensor *fn_conv2d(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    return tg_conv2d(in[0], in[1], n > 2 ? in[2] : NULL, &inst->a.conv);
}

#define POOL_RANDOM   1 // random stride and padding (else stride = kernel, no padding)
#define POOL_EXCL_PAD 2 // avg-pool: count_include_pad off
#define POOL_DISTINCT 4 // max-pool: distinct inputs, no ties within 2 eps

static enum tg_status make_pool(struct gc_instance *inst, uint64_t *rng)
{
    int v = inst->c->variant;
    struct tg_pool2d_params *p = &inst->a.pool;
    p->kernel_h = (int)draw(rng, 1, 3);
    p->kernel_w = (int)draw(rng, 1, 3);
    p->stride_h = v & POOL_RANDOM ? (int)draw(rng, 1, 3) : p->kernel_h;
    p->stride_w = v & POOL_RANDOM ? (int)draw(rng, 1, 3) : p->kernel_w;
    p->pad_h = v & POOL_RANDOM ? (int)draw(rng, 0, p->kernel_h / 2) : 0;
    p->pad_w = v & POOL_RANDOM ? (int)draw(rng, 0, p->kernel_w / 2) : 0;
    p->count_include_pad = !(v & POOL_EXCL_PAD);

    int64_t s[4] = {draw(rng, 1, 2), draw(rng, 1, 3), 0, 0};
    s[2] = draw_spatial(rng, p->kernel_h, p->pad_h, 4);
    s[3] = draw_spatial(rng, p->kernel_w, p->pad_w, 4);
    struct tg_tensor *x = add_input(inst, 4, s);
    if (x == NULL)
        return TG_ERR_NOMEM;
    if (v & POOL_DISTINCT)
        fill_distinct(x, rng, 0.01f);
    else
        fill_uniform(x, rng, -1.0f, 1.0f);
    add_param(inst, "k=%d,%d s=%d,%d p=%d,%d", p->kernel_h, p->kernel_w, p->stride_h, p->stride_w,
              p->pad_h, p->pad_w);
    return TG_OK;
}

static struct tg_tensor *fn_max_pool2d(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_max_pool2d(in[0], &inst->a.pool);
}

static struct tg_tensor *fn_avg_pool2d(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_avg_pool2d(in[0], &inst->a.pool);
}

/* ---- Shape ops ------------------------------------------------------------ */

static struct tg_tensor *
new_filled(struct gc_instance *inst, uint64_t *rng, int n_dims, const int64_t *shape)
{
    struct tg_tensor *x = add_input(inst, n_dims, shape);
    if (x != NULL)
        fill_uniform(x, rng, -1.0f, 1.0f);
    return x;
}

/* Target: the element count's prime factors dealt into a random rank, maybe one -1. */
static enum tg_status make_reshape(struct gc_instance *inst, uint64_t *rng)
{
    int64_t s[TG_MAX_DIMS];
    int n = (int)draw(rng, 1, 4);
    draw_shape(rng, n, 1, 5, s);
    struct tg_tensor *x = new_filled(inst, rng, n, s);
    if (x == NULL)
        return TG_ERR_NOMEM;

    struct gc_args *a = &inst->a;
    a->n_dims = (int)draw(rng, 1, 4);
    for (int i = 0; i < a->n_dims; i++)
        a->shape[i] = 1;
    int64_t rest = x->n_elems;
    for (int64_t f = 2; rest > 1; f++)
        while (rest % f == 0) {
            a->shape[draw(rng, 0, a->n_dims - 1)] *= f;
            rest /= f;
        }
    char buf[64] = "";
    size_t used = 0;
    bool inferred = coin(rng);
    int infer_at = (int)draw(rng, 0, a->n_dims - 1);
    for (int i = 0; i < a->n_dims; i++) {
        if (inferred && i == infer_at)
            a->shape[i] = -1;
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%lld", i ? "x" : "",
                                 (long long)a->shape[i]);
    }
    add_param(inst, "to=%s", buf);
    return TG_OK;
}

static enum tg_status make_flatten(struct gc_instance *inst, uint64_t *rng)
{
    int64_t s[TG_MAX_DIMS];
    int n = (int)draw(rng, 1, 4);
    draw_shape(rng, n, 1, 4, s);
    if (new_filled(inst, rng, n, s) == NULL)
        return TG_ERR_NOMEM;
    inst->a.start_dim = (int)draw(rng, 0, n - 1);
    add_param(inst, "start=%d", inst->a.start_dim);
    return TG_OK;
}

static enum tg_status make_transpose(struct gc_instance *inst, uint64_t *rng)
{
    int64_t s[2] = {draw(rng, 1, 7), draw(rng, 1, 7)};
    return new_filled(inst, rng, 2, s) ? TG_OK : TG_ERR_NOMEM;
}

/* Random axis, sometimes counted from the end. */
static int draw_axis(uint64_t *rng, int n_dims)
{
    int axis = (int)draw(rng, 0, n_dims - 1);
    return coin(rng) ? axis - n_dims : axis;
}

static enum tg_status make_concat(struct gc_instance *inst, uint64_t *rng)
{
    int64_t s[TG_MAX_DIMS];
    int n = (int)draw(rng, 1, 3);
    draw_shape(rng, n, 1, 4, s);
    inst->a.axis = draw_axis(rng, n);
    int axis = inst->a.axis < 0 ? inst->a.axis + n : inst->a.axis;
    int parts = (int)draw(rng, 1, 3);
    for (int i = 0; i < parts; i++) {
        s[axis] = draw(rng, 1, 4);
        if (new_filled(inst, rng, n, s) == NULL)
            return TG_ERR_NOMEM;
    }
    add_param(inst, "axis=%d", inst->a.axis);
    return TG_OK;
}

static struct tg_tensor *fn_reshape(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_reshape(in[0], inst->a.n_dims, inst->a.shape);
}

static struct tg_tensor *fn_flatten(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_flatten(in[0], inst->a.start_dim);
}

static struct tg_tensor *fn_transpose(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_transpose(in[0]);
}

static struct tg_tensor *fn_concat(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    return tg_concat(n, in, inst->a.axis);
}

/* ---- Reductions ----------------------------------------------------------- */

#define RED_AXIS 1 // draw an axis (and keepdim)

static enum tg_status make_reduce(struct gc_instance *inst, uint64_t *rng)
{
    bool with_axis = inst->c->variant & RED_AXIS;
    int64_t s[TG_MAX_DIMS];
    int n = (int)draw(rng, with_axis ? 1 : 0, 4);
    draw_shape(rng, n, 1, 5, s);
    struct tg_tensor *x = add_input(inst, n, s);
    if (x == NULL)
        return TG_ERR_NOMEM;
    fill_uniform(x, rng, -2.0f, 2.0f);
    if (with_axis) {
        inst->a.axis = draw_axis(rng, n);
        inst->a.keepdim = coin(rng);
        add_param(inst, "axis=%d%s", inst->a.axis, inst->a.keepdim ? " keepdim" : "");
    }
    return TG_OK;
}

static struct tg_tensor *fn_sum(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_sum(in[0]);
}

static struct tg_tensor *fn_mean(struct tg_tensor *const *in, int n, void *user)
{
    (void)n;
    (void)user;
    return tg_mean(in[0]);
}

static struct tg_tensor *fn_sum_axis(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_sum_axis(in[0], inst->a.axis, inst->a.keepdim);
}

static struct tg_tensor *fn_mean_axis(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_mean_axis(in[0], inst->a.axis, inst->a.keepdim);
}

static struct tg_tensor *fn_softmax(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_softmax(in[0], inst->a.axis);
}

static struct tg_tensor *fn_log_softmax(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_log_softmax(in[0], inst->a.axis);
}

/* ---- Losses --------------------------------------------------------------- */

#define LOSS_SMOOTHING 1 // cross-entropy: label smoothing in (0, 1]

/*
 * A scalar loss is rounded to float once, which moves a central difference by
 * up to ulp(loss) / 2 eps: a loss near 100 would make 4e-3 of noise, above
 * atol. So sums are kept small: b within 0.5 of a, and fewer elements.
 */
static enum tg_status make_mse(struct gc_instance *inst, uint64_t *rng)
{
    int64_t s[TG_MAX_DIMS];
    inst->a.reduction = coin(rng) ? TG_REDUCE_SUM : TG_REDUCE_MEAN;
    bool sum = inst->a.reduction == TG_REDUCE_SUM;
    int n = (int)draw(rng, 0, sum ? 3 : 4);
    draw_shape(rng, n, 1, sum ? 4 : 5, s);
    struct tg_tensor *x = new_filled(inst, rng, n, s);
    struct tg_tensor *y = x ? add_input(inst, n, s) : NULL;
    if (y == NULL)
        return TG_ERR_NOMEM;
    for (int64_t i = 0; i < y->n_elems; i++)
        y->data[i] = x->data[i] + uniform(rng, -0.5f, 0.5f);
    add_param(inst, "%s", reduction_name(inst->a.reduction));
    return TG_OK;
}

/*
 * (N, C) scores and N labels: logits in [-1, 1] for cross-entropy (a row's
 * loss near log C), log-probabilities in [-2, 0] for NLL; at most 3 rows when
 * summed, to keep the loss small (see make_mse).
 */
static enum tg_status make_classes(struct gc_instance *inst, uint64_t *rng)
{
    inst->a.reduction = coin(rng) ? TG_REDUCE_SUM : TG_REDUCE_MEAN;
    bool sum = inst->a.reduction == TG_REDUCE_SUM;
    int64_t s[2] = {draw(rng, 1, sum ? 3 : GC_MAX_LABELS), draw(rng, 2, 7)};
    struct tg_tensor *x = add_input(inst, 2, s);
    if (x == NULL)
        return TG_ERR_NOMEM;
    bool nll = strcmp(inst->c->op, "tg_nll_loss") == 0;
    fill_uniform(x, rng, nll ? -2.0f : -1.0f, nll ? 0.0f : 1.0f);
    for (int64_t i = 0; i < s[0]; i++)
        inst->a.labels[i] = (int32_t)draw(rng, 0, s[1] - 1);
    add_param(inst, "%s", reduction_name(inst->a.reduction));
    if (inst->c->variant & LOSS_SMOOTHING) {
        static const float smoothing[] = {0.05f, 0.1f, 0.3f, 1.0f};
        inst->a.c = smoothing[draw(rng, 0, 3)];
        add_param(inst, "smoothing=%g", (double)inst->a.c);
    }
    return TG_OK;
}

static struct tg_tensor *fn_mse_loss(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_mse_loss(in[0], in[1], inst->a.reduction);
}

static struct tg_tensor *fn_cross_entropy_loss(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_cross_entropy_loss(in[0], inst->a.labels, inst->a.reduction, inst->a.c);
}

static struct tg_tensor *fn_nll_loss(struct tg_tensor *const *in, int n, void *user)
{
    const struct gc_instance *inst = user;
    (void)n;
    return tg_nll_loss(in[0], inst->a.labels, inst->a.reduction);
}

/* ---- The table ------------------------------------------------------------ */

#define CASE(name, op, variant, make, fn)                                                          \
    {                                                                                              \
        name, op, variant, make, fn, 0.0f, 0.0f                                                    \
    }

const struct gc_case gc_cases[] = {
        CASE("matmul", "tg_matmul", 0, make_matmul, fn_matmul),
        CASE("matmul_ta", "tg_matmul", 1, make_matmul, fn_matmul),
        CASE("matmul_tb", "tg_matmul", 2, make_matmul, fn_matmul),
        CASE("matmul_tab", "tg_matmul", 3, make_matmul, fn_matmul),
        CASE("bmm", "tg_bmm", 0, make_bmm, fn_bmm),
        CASE("bmm_ta", "tg_bmm", 1, make_bmm, fn_bmm),
        CASE("bmm_tb", "tg_bmm", 2, make_bmm, fn_bmm),
        CASE("bmm_tab", "tg_bmm", 3, make_bmm, fn_bmm),

        CASE("add", "tg_add", 0, make_binary, fn_add),
        CASE("add_bcast", "tg_add", BIN_BROADCAST, make_binary, fn_add),
        CASE("sub", "tg_sub", 0, make_binary, fn_sub),
        CASE("sub_bcast", "tg_sub", BIN_BROADCAST, make_binary, fn_sub),
        CASE("mul", "tg_mul", 0, make_binary, fn_mul),
        CASE("mul_bcast", "tg_mul", BIN_BROADCAST, make_binary, fn_mul),
        CASE("div", "tg_div", BIN_DENOM, make_binary, fn_div),
        CASE("div_bcast", "tg_div", BIN_DENOM | BIN_BROADCAST, make_binary, fn_div),

        CASE("scale", "tg_scale", UN_WIDE | UN_C_ANY, make_unary, fn_scale),
        CASE("add_scalar", "tg_add_scalar", UN_WIDE | UN_C_ANY, make_unary, fn_add_scalar),
        CASE("neg", "tg_neg", UN_WIDE, make_unary, fn_neg),
        CASE("exp", "tg_exp", UN_WIDE, make_unary, fn_exp),
        CASE("log", "tg_log", UN_POSITIVE, make_unary, fn_log),
        CASE("sqrt", "tg_sqrt", UN_POSITIVE, make_unary, fn_sqrt),
        CASE("pow", "tg_pow", UN_POSITIVE | UN_C_POW, make_unary, fn_pow),
        CASE("relu", "tg_relu", UN_AWAY, make_unary, fn_relu),
        CASE("leaky_relu", "tg_leaky_relu", UN_AWAY | UN_C_SLOPE, make_unary, fn_leaky_relu),
        CASE("elu", "tg_elu", UN_AWAY | UN_C_ALPHA, make_unary, fn_elu),
        CASE("sigmoid", "tg_sigmoid", UN_WIDE, make_unary, fn_sigmoid),
        CASE("tanh", "tg_tanh", UN_WIDE, make_unary, fn_tanh),

        CASE("conv2d", "tg_conv2d", 0, make_conv2d, fn_conv2d),
        CASE("conv2d_no_bias", "tg_conv2d", CONV_NO_BIAS, make_conv2d, fn_conv2d),
        CASE("conv2d_stride", "tg_conv2d", CONV_STRIDE, make_conv2d, fn_conv2d),
        CASE("conv2d_pad", "tg_conv2d", CONV_PAD, make_conv2d, fn_conv2d),
        CASE("conv2d_dilation", "tg_conv2d", CONV_DILATION, make_conv2d, fn_conv2d),
        CASE("conv2d_groups", "tg_conv2d", CONV_GROUPS, make_conv2d, fn_conv2d),
        CASE("conv2d_stride_pad", "tg_conv2d", CONV_STRIDE | CONV_PAD, make_conv2d, fn_conv2d),
        CASE("conv2d_all",
             "tg_conv2d",
             CONV_STRIDE | CONV_PAD | CONV_DILATION | CONV_GROUPS,
             make_conv2d,
             fn_conv2d),
        CASE("conv2d_all_no_bias",
             "tg_conv2d",
             CONV_STRIDE | CONV_PAD | CONV_DILATION | CONV_GROUPS | CONV_NO_BIAS,
             make_conv2d,
             fn_conv2d),
        CASE("max_pool2d", "tg_max_pool2d", POOL_DISTINCT, make_pool, fn_max_pool2d),
        CASE("max_pool2d_stride_pad",
             "tg_max_pool2d",
             POOL_DISTINCT | POOL_RANDOM,
             make_pool,
             fn_max_pool2d),
        CASE("avg_pool2d", "tg_avg_pool2d", 0, make_pool, fn_avg_pool2d),
        CASE("avg_pool2d_pad_counted", "tg_avg_pool2d", POOL_RANDOM, make_pool, fn_avg_pool2d),
        CASE("avg_pool2d_pad_excluded",
             "tg_avg_pool2d",
             POOL_RANDOM | POOL_EXCL_PAD,
             make_pool,
             fn_avg_pool2d),

        CASE("reshape", "tg_reshape", 0, make_reshape, fn_reshape),
        CASE("flatten", "tg_flatten", 0, make_flatten, fn_flatten),
        CASE("transpose", "tg_transpose", 0, make_transpose, fn_transpose),
        CASE("concat", "tg_concat", 0, make_concat, fn_concat),

        CASE("sum", "tg_sum", 0, make_reduce, fn_sum),
        CASE("mean", "tg_mean", 0, make_reduce, fn_mean),
        CASE("sum_axis", "tg_sum_axis", RED_AXIS, make_reduce, fn_sum_axis),
        CASE("mean_axis", "tg_mean_axis", RED_AXIS, make_reduce, fn_mean_axis),
        CASE("softmax", "tg_softmax", RED_AXIS, make_reduce, fn_softmax),
        CASE("log_softmax", "tg_log_softmax", RED_AXIS, make_reduce, fn_log_softmax),

        CASE("mse_loss", "tg_mse_loss", 0, make_mse, fn_mse_loss),
        CASE("cross_entropy_loss", "tg_cross_entropy_loss", 0, make_classes, fn_cross_entropy_loss),
        CASE("cross_entropy_loss_smoothing",
             "tg_cross_entropy_loss",
             LOSS_SMOOTHING,
             make_classes,
             fn_cross_entropy_loss),
        CASE("nll_loss", "tg_nll_loss", 0, make_classes, fn_nll_loss),
};

const int gc_n_cases = (int)(sizeof(gc_cases) / sizeof(gc_cases[0]));

/* ---- Driver --------------------------------------------------------------- */

bool gc_case_matches(const struct gc_case *c, const char *name)
{
    if (strcmp(c->name, name) == 0 || strcmp(c->op, name) == 0)
        return true;
    return strncmp(c->op, "tg_", 3) == 0 && strcmp(c->op + 3, name) == 0;
}

void gc_instance_free(struct gc_instance *inst)
{
    for (int i = 0; i < inst->n_inputs; i++)
        tg_tensor_free(inst->in[i]);
    inst->n_inputs = 0;
}

enum tg_status gc_instance_make(const struct gc_case *c, uint64_t seed, struct gc_instance *inst)
{
    memset(inst, 0, sizeof(*inst));
    inst->c = c;
    /* Mix the case into the seed so that cases sharing a generator differ. */
    uint64_t rng = seed * 0x2545f4914f6cdd1dull;
    for (const char *s = c->name; *s; s++)
        rng = (rng ^ (uint64_t)(unsigned char)*s) * 0x100000001b3ull;
    enum tg_status st = c->make(inst, &rng);
    if (st != TG_OK)
        gc_instance_free(inst);
    return st;
}

static void describe(const struct gc_instance *inst, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < inst->n_inputs && used < size; i++) {
        char s[64];
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                                 tg_tensor_shape_str(inst->in[i], s, sizeof(s)));
    }
    if (inst->params[0] != '\0' && used < size)
        snprintf(buf + used, size - used, " %s", inst->params);
}

enum tg_status gc_case_run(const struct gc_case *c, uint64_t seed, struct gc_outcome *out)
{
    struct gc_instance inst;
    memset(out, 0, sizeof(*out));
    enum tg_status st = gc_instance_make(c, seed, &inst);
    if (st != TG_OK)
        return st;
    describe(&inst, out->shape, sizeof(out->shape));

    int64_t total = 0;
    for (int i = 0; i < inst.n_inputs; i++)
        total += inst.in[i]->n_elems;
    struct tg_gradcheck_opts opts = TG_GRADCHECK_DEFAULT;
    opts.seed = seed;
    if (c->atol > 0.0f)
        opts.atol = c->atol;
    if (c->rtol > 0.0f)
        opts.rtol = c->rtol;
    out->projected = total > GC_FULL_MAX;
    if (out->projected)
        opts.n_projections = GC_N_PROJECTIONS;

    st = tg_gradcheck(c->fn, &inst, inst.n_inputs, inst.in, &opts, &out->res);
    gc_instance_free(&inst);
    return st;
}
