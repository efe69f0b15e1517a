/*
 * Modules: the common core (naming, parameter lists, train/eval, freeing),
 * Sequential, and the layers that wrap built-in ops: Linear, Conv2d, the
 * pools, the activations, Flatten and Dropout (with its op).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"
#include "nn-impl.h"
#include "ops-impl.h"

/* Deepest nesting of Sequentials supported (names and refreshes walk it). */
#define NN_MAX_DEPTH 32

/* ---- Core ---------------------------------------------------------------- */

struct tg_nn_module *nn_module_new(const struct nn_layer_def *def)
{
    struct tg_nn_module *m = tg_xcalloc(sizeof(*m));
    if (!m)
        return NULL;
    m->def = def;
    m->training = true;
    return m;
}

struct tg_tensor *nn_module_add_tensor(struct tg_nn_module *m,
                                       const char *name,
                                       int n_dims,
                                       const int64_t *shape,
                                       bool is_buffer,
                                       float value)
{
    if (m->n_own >= NN_MAX_OWN) {
        tg_error_set(TG_ERR_STATE, "%s: too many tensors", m->def->func);
        return NULL;
    }
    struct tg_tensor *t = tg_tensor_new(n_dims, shape);
    if (!t)
        return NULL;
    if (!is_buffer && tg_tensor_set_requires_grad(t, true) != TG_OK) {
        tg_tensor_free(t);
        return NULL;
    }
    tg_tensor_fill(t, value);
    m->own[m->n_own++] = (struct nn_own){name, t, is_buffer};
    return t;
}

/* Full path of m within its root, "features.0"; "" for a root. */
static void module_path(const struct tg_nn_module *m, char *buf, size_t size)
{
    const char *parts[NN_MAX_DEPTH];
    int n = 0;
    for (; m && m->parent && n < NN_MAX_DEPTH; m = m->parent)
        parts[n++] = m->local_name;
    size_t len = 0;
    buf[0] = '\0';
    for (int i = n - 1; i >= 0 && len < size; i--) {
        int w = snprintf(buf + len, size - len, "%s%s", i == n - 1 ? "" : ".", parts[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

enum tg_status nn_err(const struct tg_nn_module *m, enum tg_status status, const char *fmt, ...)
{
    char msg[400];
    char path[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    module_path(m, path, sizeof(path));
    if (path[0])
        return tg_error_set(status, "%s (%s): %s", m->def->func, path, msg);
    return tg_error_set(status, "%s: %s", m->def->func, msg);
}

void nn_drop(struct tg_tensor *t)
{
    if (t && !t->tape)
        tg_tensor_free(t);
}

/* ---- Flat lists of named tensors ----------------------------------------- */

struct flat_list {
    size_t n;
    struct tg_param *items;
    char *names;
};

/* The flat list of one child, or its replacement while a refresh is pending. */
static void child_flat(const struct tg_nn_module *child,
                       const struct tg_nn_module *replaced,
                       const struct flat_list *replacement,
                       const struct tg_param **items,
                       size_t *n)
{
    if (child == replaced) {
        *items = replacement->items;
        *n = replacement->n;
    } else {
        *items = child->flat;
        *n = child->n_flat;
    }
}

/* Build m's list: its own tensors, then each child's with "<child>." in front. */
static enum tg_status build_flat(const struct tg_nn_module *m,
                                 const struct tg_nn_module *replaced,
                                 const struct flat_list *replacement,
                                 struct flat_list *out)
{
    size_t n = (size_t)m->n_own;
    size_t bytes = 0;
    for (int i = 0; i < m->n_own; i++)
        bytes += strlen(m->own[i].name) + 1;
    for (size_t c = 0; c < m->n_children; c++) {
        const struct tg_param *items;
        size_t cn;
        child_flat(m->children[c], replaced, replacement, &items, &cn);
        n += cn;
        for (size_t k = 0; k < cn; k++)
            bytes += strlen(m->child_names[c]) + 1 + strlen(items[k].name) + 1;
    }

    out->n = n;
    out->items = tg_xmalloc(n ? n * sizeof(*out->items) : 1);
    out->names = tg_xmalloc(bytes ? bytes : 1);
    if (!out->items || !out->names) {
        tg_xfree(out->items);
        tg_xfree(out->names);
        return TG_ERR_NOMEM;
    }

    char *p = out->names;
    size_t k = 0;
    for (int i = 0; i < m->n_own; i++) {
        size_t len = strlen(m->own[i].name) + 1;
        memcpy(p, m->own[i].name, len);
        out->items[k++] = (struct tg_param){p, m->own[i].tensor, m->own[i].is_buffer};
        p += len;
    }
    for (size_t c = 0; c < m->n_children; c++) {
        const struct tg_param *items;
        size_t cn;
        child_flat(m->children[c], replaced, replacement, &items, &cn);
        for (size_t j = 0; j < cn; j++) {
            int w = sprintf(p, "%s.%s", m->child_names[c], items[j].name);
            out->items[k++] = (struct tg_param){p, items[j].tensor, items[j].is_buffer};
            p += w + 1;
        }
    }
    return TG_OK;
}

/* Build the new lists of m and every ancestor first, then swap them all in. */
enum tg_status nn_module_refresh(struct tg_nn_module *m)
{
    struct flat_list lists[NN_MAX_DEPTH];
    struct tg_nn_module *nodes[NN_MAX_DEPTH];
    int depth = 0;
    const struct tg_nn_module *prev = NULL;
    enum tg_status st = TG_OK;

    for (struct tg_nn_module *cur = m; cur; cur = cur->parent) {
        if (depth == NN_MAX_DEPTH) {
            st = tg_error_set(TG_ERR_UNSUPPORTED, "%s: modules nested more than %d deep",
                              m->def->func, NN_MAX_DEPTH);
            break;
        }
        st = build_flat(cur, prev, depth ? &lists[depth - 1] : NULL, &lists[depth]);
        if (st != TG_OK)
            break;
        nodes[depth++] = cur;
        prev = cur;
    }

    for (int i = 0; i < depth; i++) {
        if (st == TG_OK) {
            tg_xfree(nodes[i]->flat);
            tg_xfree(nodes[i]->flat_names);
            nodes[i]->flat = lists[i].items;
            nodes[i]->flat_names = lists[i].names;
            nodes[i]->n_flat = lists[i].n;
        } else {
            tg_xfree(lists[i].items);
            tg_xfree(lists[i].names);
        }
    }
    return st;
}

/* ---- Public module API --------------------------------------------------- */

struct tg_tensor *tg_nn_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    if (!m) {
        tg_error_set(TG_ERR_INVALID, "tg_nn_forward: module is NULL");
        return NULL;
    }
    if (!x) {
        tg_error_null_input(m->def->func, 0);
        return NULL;
    }
    struct tg_tensor *y = m->def->forward(m, x);
    if (!y && m->n_children == 0 && strncmp(tg_last_error(), "tg_nn_", 6) != 0) {
        /* An op refused: say which layer ran it. */
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", tg_last_error());
        nn_err(m, tg_last_status() != TG_OK ? tg_last_status() : TG_ERR_INVALID, "%s", msg);
    }
    return y;
}

void tg_nn_free(struct tg_nn_module *m)
{
    if (!m)
        return;
    for (size_t c = 0; c < m->n_children; c++) {
        tg_nn_free(m->children[c]);
        tg_xfree(m->child_names[c]);
    }
    tg_xfree(m->children);
    tg_xfree(m->child_names);
    for (int i = 0; i < m->n_own; i++)
        tg_tensor_free(m->own[i].tensor);
    tg_xfree(m->flat);
    tg_xfree(m->flat_names);
    tg_xfree(m);
}

const char *tg_nn_type(const struct tg_nn_module *m)
{
    return m ? m->def->type : "null";
}

void tg_nn_set_training(struct tg_nn_module *m, bool training)
{
    if (!m)
        return;
    m->training = training;
    for (size_t c = 0; c < m->n_children; c++)
        tg_nn_set_training(m->children[c], training);
}

bool tg_nn_is_training(const struct tg_nn_module *m)
{
    return m && m->training;
}

size_t tg_nn_n_params(const struct tg_nn_module *m, bool include_buffers)
{
    size_t n = 0;
    for (size_t i = 0; m && i < m->n_flat; i++)
        n += include_buffers || !m->flat[i].is_buffer;
    return n;
}

enum tg_status tg_nn_params(const struct tg_nn_module *m,
                            struct tg_param *out,
                            size_t cap,
                            bool include_buffers,
                            size_t *n)
{
    if (!m)
        return tg_error_set(TG_ERR_INVALID, "tg_nn_params: module is NULL");
    if (!out && cap > 0)
        return tg_error_set(TG_ERR_INVALID, "tg_nn_params: out is NULL with cap %zu", cap);
    size_t k = 0;
    for (size_t i = 0; i < m->n_flat; i++) {
        if (!include_buffers && m->flat[i].is_buffer)
            continue;
        if (k < cap)
            out[k] = m->flat[i];
        k++;
    }
    if (n)
        *n = k;
    if (k > cap)
        return tg_error_set(TG_ERR_NOMEM, "tg_nn_params: room for %zu entries, the list has %zu",
                            cap, k);
    return TG_OK;
}

struct tg_tensor *tg_nn_find(const struct tg_nn_module *m, const char *name)
{
    for (size_t i = 0; m && name && i < m->n_flat; i++) {
        if (strcmp(m->flat[i].name, name) == 0)
            return m->flat[i].tensor;
    }
    return NULL;
}

int64_t tg_nn_n_elems(const struct tg_nn_module *m, bool include_buffers)
{
    int64_t n = 0;
    for (size_t i = 0; m && i < m->n_flat; i++) {
        if (include_buffers || !m->flat[i].is_buffer)
            n += m->flat[i].tensor->n_elems;
    }
    return n;
}

void tg_nn_zero_grad(struct tg_nn_module *m)
{
    for (size_t i = 0; m && i < m->n_flat; i++)
        tg_tensor_zero_grad(m->flat[i].tensor);
}

int tg_nn_summary(const struct tg_nn_module *m, char *buf, size_t size)
{
    if (!m)
        return -1;
    size_t len = 0;
    for (size_t i = 0; i <= m->n_flat; i++) {
        char shape[TG_SHAPE_STR];
        char *dst = len < size ? buf + len : NULL;
        size_t room = len < size ? size - len : 0;
        int w;
        if (i < m->n_flat)
            w = snprintf(dst, room, "%s %s%s\n", m->flat[i].name, SHAPE(m->flat[i].tensor, shape),
                         m->flat[i].is_buffer ? " (buffer)" : "");
        else
            w = snprintf(dst, room, "total %lld parameters\n", (long long)tg_nn_n_elems(m, false));
        if (w < 0)
            return -1;
        len += (size_t)w;
    }
    if (size > 0 && len >= size)
        buf[size - 1] = '\0';
    return (int)len;
}

/* ---- Sequential ---------------------------------------------------------- */

static struct tg_tensor *sequential_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    if (m->n_children == 0)
        return tg_reshape(x, x->n_dims, x->shape); // identity, as a new tensor
    struct tg_tensor *h = x;
    for (size_t c = 0; c < m->n_children; c++) {
        struct tg_tensor *y = tg_nn_forward(m->children[c], h);
        if (h != x)
            nn_drop(h);
        if (!y)
            return NULL;
        h = y;
    }
    return h;
}

static const struct nn_layer_def sequential_def = {"Sequential", "tg_nn_sequential",
                                                   sequential_forward};

struct tg_nn_module *tg_nn_sequential_new(void)
{
    return nn_module_new(&sequential_def);
}

static bool is_ancestor(const struct tg_nn_module *a, const struct tg_nn_module *m)
{
    for (; m; m = m->parent) {
        if (m == a)
            return true;
    }
    return false;
}

static enum tg_status check_child_name(const struct tg_nn_module *seq, const char *name)
{
    if (name[0] == '\0' || strchr(name, '.'))
        return tg_error_set(TG_ERR_INVALID,
                            "tg_nn_sequential_add: bad child name \"%s\" (expected non-empty, "
                            "without '.')",
                            name);
    for (size_t c = 0; c < seq->n_children; c++) {
        if (strcmp(seq->child_names[c], name) == 0)
            return tg_error_set(TG_ERR_INVALID,
                                "tg_nn_sequential_add: a child is already named \"%s\"", name);
    }
    return TG_OK;
}

static enum tg_status grow_children(struct tg_nn_module *seq)
{
    if (seq->n_children < seq->cap_children)
        return TG_OK;
    size_t cap = seq->cap_children ? 2 * seq->cap_children : 8;
    struct tg_nn_module **children = tg_xmalloc(cap * sizeof(*children));
    char **names = tg_xmalloc(cap * sizeof(*names));
    if (!children || !names) {
        tg_xfree(children);
        tg_xfree(names);
        return TG_ERR_NOMEM;
    }
    if (seq->n_children) {
        memcpy(children, seq->children, seq->n_children * sizeof(*children));
        memcpy(names, seq->child_names, seq->n_children * sizeof(*names));
    }
    tg_xfree(seq->children);
    tg_xfree(seq->child_names);
    seq->children = children;
    seq->child_names = names;
    seq->cap_children = cap;
    return TG_OK;
}

/* Register child under name; on failure seq is as before and child is not freed. */
static enum tg_status
sequential_attach(struct tg_nn_module *seq, const char *name, struct tg_nn_module *child)
{
    char index[24];
    if (!name) {
        snprintf(index, sizeof(index), "%zu", seq->n_children);
        name = index;
    }
    enum tg_status st = check_child_name(seq, name);
    if (st == TG_OK)
        st = grow_children(seq);
    if (st != TG_OK)
        return st;
    size_t len = strlen(name) + 1;
    char *copy = tg_xmalloc(len);
    if (!copy)
        return TG_ERR_NOMEM;
    memcpy(copy, name, len);

    seq->children[seq->n_children] = child;
    seq->child_names[seq->n_children] = copy;
    seq->n_children++;
    child->parent = seq;
    child->local_name = copy;
    st = nn_module_refresh(seq);
    if (st != TG_OK) {
        seq->n_children--;
        child->parent = NULL;
        child->local_name = NULL;
        tg_xfree(copy);
    }
    return st;
}

enum tg_status
tg_nn_sequential_add(struct tg_nn_module *seq, const char *name, struct tg_nn_module *child)
{
    enum tg_status st;
    if (!child)
        st = tg_error_null_input("tg_nn_sequential_add", 2);
    else if (!seq || seq->def != &sequential_def)
        st = tg_error_set(TG_ERR_INVALID, "tg_nn_sequential_add: %s is not a Sequential",
                          seq ? seq->def->type : "NULL");
    else if (child->parent || is_ancestor(child, seq))
        return tg_error_set(TG_ERR_INVALID,
                            "tg_nn_sequential_add: the %s child already has a parent or contains "
                            "the Sequential",
                            child->def->type); // owned elsewhere: not freed
    else
        st = sequential_attach(seq, name, child);
    if (st != TG_OK && child)
        tg_nn_free(child);
    return st;
}

size_t tg_nn_sequential_len(const struct tg_nn_module *seq)
{
    return seq && seq->def == &sequential_def ? seq->n_children : 0;
}

struct tg_nn_module *tg_nn_sequential_at(const struct tg_nn_module *seq, size_t i)
{
    if (!seq || seq->def != &sequential_def || i >= seq->n_children)
        return NULL;
    return seq->children[i];
}

/* ---- Linear -------------------------------------------------------------- */

/* x: (N, in) -> y: (N, out) = x W^T + b. */
static struct tg_tensor *linear_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    char s[TG_SHAPE_STR];
    if (x->n_dims != 2) {
        nn_err(m, TG_ERR_SHAPE, "input has %d dimensions, expected 2 (N, features) (x: %s)",
               x->n_dims, SHAPE(x, s));
        return NULL;
    }
    if (x->shape[1] != m->cfg.linear.in) {
        nn_err(m, TG_ERR_SHAPE, "input has %lld features, layer expects %lld (x: %s)",
               (long long)x->shape[1], (long long)m->cfg.linear.in, SHAPE(x, s));
        return NULL;
    }
    struct tg_tensor *xw = tg_matmul(x, m->own[0].tensor, false, true);
    if (m->n_own < 2 || !xw)
        return xw;
    struct tg_tensor *y = tg_add(xw, m->own[1].tensor);
    nn_drop(xw);
    return y;
}

static const struct nn_layer_def linear_def = {"Linear", "tg_nn_linear", linear_forward};

struct tg_nn_module *
tg_nn_linear_new(int64_t in_features, int64_t out_features, bool bias, struct tg_rng *rng)
{
    if (in_features < 1 || out_features < 1 || !rng) {
        tg_error_set(TG_ERR_INVALID,
                     "tg_nn_linear_new: bad arguments (in %lld, out %lld, rng %s), expected "
                     "sizes >= 1 and an rng",
                     (long long)in_features, (long long)out_features, rng ? "set" : "NULL");
        return NULL;
    }
    struct tg_nn_module *m = nn_module_new(&linear_def);
    if (!m)
        return NULL;
    m->cfg.linear.in = in_features;
    m->cfg.linear.out = out_features;
    int64_t wshape[2] = {out_features, in_features};
    struct tg_tensor *w = nn_module_add_tensor(m, "weight", 2, wshape, false, 0.0f);
    struct tg_tensor *b = NULL;
    if (w && bias)
        b = nn_module_add_tensor(m, "bias", 1, &out_features, false, 0.0f);
    if (!w || (bias && !b) || tg_init_torch_default(w, b, rng) != TG_OK ||
        nn_module_refresh(m) != TG_OK) {
        tg_nn_free(m);
        return NULL;
    }
    return m;
}

/* ---- Conv2d -------------------------------------------------------------- */

int tg_nn_same_padding(int kernel, int dilation)
{
    if (kernel < 1 || dilation < 1)
        return -1;
    int span = dilation * (kernel - 1);
    return span % 2 ? -1 : span / 2;
}

/* x: (N, C, H, W) -> y: (N, O, Ho, Wo). */
static struct tg_tensor *conv2d_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    char s[TG_SHAPE_STR];
    if (x->n_dims != 4) {
        nn_err(m, TG_ERR_SHAPE, "input has %d dimensions, expected 4 (N, C, H, W) (x: %s)",
               x->n_dims, SHAPE(x, s));
        return NULL;
    }
    if (x->shape[1] != m->cfg.conv.in) {
        nn_err(m, TG_ERR_SHAPE, "input has %lld channels, layer expects %lld (x: %s)",
               (long long)x->shape[1], (long long)m->cfg.conv.in, SHAPE(x, s));
        return NULL;
    }
    struct tg_tensor *b = m->n_own > 1 ? m->own[1].tensor : NULL;
    return tg_conv2d(x, m->own[0].tensor, b, &m->cfg.conv.p);
}

static const struct nn_layer_def conv2d_def = {"Conv2d", "tg_nn_conv2d", conv2d_forward};

static enum tg_status check_conv(int64_t in,
                                 int64_t out,
                                 int kh,
                                 int kw,
                                 const struct tg_conv2d_params *p,
                                 const struct tg_rng *rng)
{
    if (in < 1 || out < 1 || kh < 1 || kw < 1 || !rng)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_nn_conv2d_new: bad arguments (in %lld, out %lld, kernel %dx%d, "
                            "rng %s), expected sizes >= 1 and an rng",
                            (long long)in, (long long)out, kh, kw, rng ? "set" : "NULL");
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 ||
        p->pad_h < 0 || p->pad_w < 0)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_nn_conv2d_new: bad settings (stride %dx%d, padding %dx%d, "
                            "dilation %dx%d), expected stride, dilation >= 1 and padding >= 0",
                            p->stride_h, p->stride_w, p->pad_h, p->pad_w, p->dilation_h,
                            p->dilation_w);
    if (p->groups < 1 || in % p->groups || out % p->groups)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_nn_conv2d_new: groups %d must divide in_channels %lld and "
                            "out_channels %lld",
                            p->groups, (long long)in, (long long)out);
    return TG_OK;
}

struct tg_nn_module *tg_nn_conv2d_new(int64_t in_channels,
                                      int64_t out_channels,
                                      int kernel_h,
                                      int kernel_w,
                                      const struct tg_conv2d_params *p,
                                      bool bias,
                                      struct tg_rng *rng)
{
    struct tg_conv2d_params cp = p ? *p : TG_CONV2D_DEFAULT;
    if (check_conv(in_channels, out_channels, kernel_h, kernel_w, &cp, rng) != TG_OK)
        return NULL;
    struct tg_nn_module *m = nn_module_new(&conv2d_def);
    if (!m)
        return NULL;
    m->cfg.conv.in = in_channels;
    m->cfg.conv.out = out_channels;
    m->cfg.conv.p = cp;
    int64_t wshape[4] = {out_channels, in_channels / cp.groups, kernel_h, kernel_w};
    struct tg_tensor *w = nn_module_add_tensor(m, "weight", 4, wshape, false, 0.0f);
    struct tg_tensor *b = NULL;
    if (w && bias)
        b = nn_module_add_tensor(m, "bias", 1, &out_channels, false, 0.0f);
    if (!w || (bias && !b) || tg_init_torch_default(w, b, rng) != TG_OK ||
        nn_module_refresh(m) != TG_OK) {
        tg_nn_free(m);
        return NULL;
    }
    return m;
}

/* ---- Pooling ------------------------------------------------------------- */

static struct tg_tensor *pool_check(struct tg_nn_module *m, struct tg_tensor *x)
{
    char s[TG_SHAPE_STR];
    if (x->n_dims != 4) {
        nn_err(m, TG_ERR_SHAPE, "input has %d dimensions, expected 4 (N, C, H, W) (x: %s)",
               x->n_dims, SHAPE(x, s));
        return NULL;
    }
    return x;
}

static struct tg_tensor *max_pool2d_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    return pool_check(m, x) ? tg_max_pool2d(x, &m->cfg.pool) : NULL;
}

static struct tg_tensor *avg_pool2d_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    return pool_check(m, x) ? tg_avg_pool2d(x, &m->cfg.pool) : NULL;
}

static const struct nn_layer_def max_pool2d_def = {"MaxPool2d", "tg_nn_max_pool2d",
                                                   max_pool2d_forward};
static const struct nn_layer_def avg_pool2d_def = {"AvgPool2d", "tg_nn_avg_pool2d",
                                                   avg_pool2d_forward};

static struct tg_nn_module *
pool_new(const struct nn_layer_def *def, const char *func, const struct tg_pool2d_params *p)
{
    if (!p) {
        tg_error_set(TG_ERR_INVALID, "%s: settings are NULL", func);
        return NULL;
    }
    if (p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_h < 0 ||
        p->pad_w < 0 || p->pad_h > p->kernel_h / 2 || p->pad_w > p->kernel_w / 2) {
        tg_error_set(TG_ERR_INVALID,
                     "%s: bad settings (kernel %dx%d, stride %dx%d, padding %dx%d), expected "
                     "kernel, stride >= 1 and padding 0 to half the kernel",
                     func, p->kernel_h, p->kernel_w, p->stride_h, p->stride_w, p->pad_h, p->pad_w);
        return NULL;
    }
    struct tg_nn_module *m = nn_module_new(def);
    if (m)
        m->cfg.pool = *p;
    return m;
}

struct tg_nn_module *tg_nn_max_pool2d_new(const struct tg_pool2d_params *p)
{
    return pool_new(&max_pool2d_def, "tg_nn_max_pool2d_new", p);
}

struct tg_nn_module *tg_nn_avg_pool2d_new(const struct tg_pool2d_params *p)
{
    return pool_new(&avg_pool2d_def, "tg_nn_avg_pool2d_new", p);
}

/* ---- Activations and Flatten ----------------------------------------------- */

static struct tg_tensor *relu_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    (void)m;
    return tg_relu(x);
}

static struct tg_tensor *leaky_relu_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    return tg_leaky_relu(x, m->cfg.value);
}

static struct tg_tensor *elu_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    return tg_elu(x, m->cfg.value);
}

static struct tg_tensor *sigmoid_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    (void)m;
    return tg_sigmoid(x);
}

static struct tg_tensor *tanh_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    (void)m;
    return tg_tanh(x);
}

static struct tg_tensor *flatten_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    char s[TG_SHAPE_STR];
    if (m->cfg.start_dim >= x->n_dims) {
        nn_err(m, TG_ERR_SHAPE, "start_dim %d is past the input's %d dimensions (x: %s)",
               m->cfg.start_dim, x->n_dims, SHAPE(x, s));
        return NULL;
    }
    return tg_flatten(x, m->cfg.start_dim);
}

static const struct nn_layer_def relu_def = {"ReLU", "tg_nn_relu", relu_forward};
static const struct nn_layer_def leaky_relu_def = {"LeakyReLU", "tg_nn_leaky_relu",
                                                   leaky_relu_forward};
static const struct nn_layer_def elu_def = {"ELU", "tg_nn_elu", elu_forward};
static const struct nn_layer_def sigmoid_def = {"Sigmoid", "tg_nn_sigmoid", sigmoid_forward};
static const struct nn_layer_def tanh_def = {"Tanh", "tg_nn_tanh", tanh_forward};
static const struct nn_layer_def flatten_def = {"Flatten", "tg_nn_flatten", flatten_forward};

struct tg_nn_module *tg_nn_relu_new(void)
{
    return nn_module_new(&relu_def);
}

static struct tg_nn_module *valued_new(const struct nn_layer_def *def, const char *func, float v)
{
    if (!isfinite(v)) {
        tg_error_set(TG_ERR_INVALID, "%s: parameter is %g, expected a finite value", func,
                     (double)v);
        return NULL;
    }
    struct tg_nn_module *m = nn_module_new(def);
    if (m)
        m->cfg.value = v;
    return m;
}

struct tg_nn_module *tg_nn_leaky_relu_new(float slope)
{
    return valued_new(&leaky_relu_def, "tg_nn_leaky_relu_new", slope);
}

struct tg_nn_module *tg_nn_elu_new(float alpha)
{
    return valued_new(&elu_def, "tg_nn_elu_new", alpha);
}

struct tg_nn_module *tg_nn_sigmoid_new(void)
{
    return nn_module_new(&sigmoid_def);
}

struct tg_nn_module *tg_nn_tanh_new(void)
{
    return nn_module_new(&tanh_def);
}

struct tg_nn_module *tg_nn_flatten_new(int start_dim)
{
    if (start_dim < 0) {
        tg_error_set(TG_ERR_INVALID, "tg_nn_flatten_new: start_dim is %d, expected >= 0",
                     start_dim);
        return NULL;
    }
    struct tg_nn_module *m = nn_module_new(&flatten_def);
    if (m)
        m->cfg.start_dim = start_dim;
    return m;
}

/* ---- Dropout op ------------------------------------------------------------ */

struct dropout_params {
    float p;
    bool training;
    struct tg_rng *rng;
};

static bool dropout_active(const struct dropout_params *dp)
{
    return dp->training && dp->p > 0.0f;
}

/* mask[i] = 0 with probability p, else 1 / (1 - p); drawn serially, row-major. */
static void dropout_forward_kernel(
        float *y, float *mask, const float *x, int64_t n, float p, struct tg_rng *rng)
{
    float scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++)
        mask[i] = tg_rng_uniform(rng) < p ? 0.0f : scale;
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = x[i] * mask[i];);
}

static void dropout_backward_kernel(float *dx, const float *dy, const float *mask, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += mask ? dy[i] * mask[i] : dy[i];);
}

static enum tg_status dropout_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct dropout_params *dp = tg_op_ctx_params(ctx);
    if (!(dp->p >= 0.0f && dp->p < 1.0f))
        return tg_error_set(TG_ERR_INVALID, "tg_dropout: p is %g, expected 0 <= p < 1",
                            (double)dp->p);
    if (dropout_active(dp) && !dp->rng)
        return tg_error_set(TG_ERR_INVALID, "tg_dropout: rng is NULL in training mode");
    return tg_shape_same_as_first(ctx, in, n_in, n_dims, shape);
}

static enum tg_status
dropout_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct dropout_params *dp = tg_op_ctx_params(ctx);
    int64_t n = in[0]->n_elems;
    (void)n_in;
    if (!dropout_active(dp)) {
        if (n)
            memcpy(out->data, in[0]->data, (size_t)n * sizeof(float));
        return TG_OK;
    }
    float *mask = tg_op_ctx_save(ctx, (size_t)n * sizeof(float) + 1);
    if (!mask)
        return tg_last_status();
    dropout_forward_kernel(out->data, mask, in[0]->data, n, dp->p, dp->rng);
    return TG_OK;
}

static enum tg_status dropout_backward(struct tg_op_ctx *ctx,
                                       const struct tg_tensor *out,
                                       struct tg_tensor *const *in,
                                       int n_in)
{
    const struct dropout_params *dp = tg_op_ctx_params(ctx);
    (void)n_in;
    if (!in[0]->grad)
        return TG_OK;
    const float *mask = NULL;
    if (dropout_active(dp)) {
        mask = tg_op_ctx_save(ctx, 0);
        if (!mask)
            return tg_last_status();
    }
    dropout_backward_kernel(in[0]->grad, out->grad, mask, in[0]->n_elems);
    return TG_OK;
}

static const struct tg_op_def dropout_op = {"tg_dropout", sizeof(struct dropout_params),
                                            dropout_shape, dropout_forward, dropout_backward};

struct tg_tensor *tg_dropout(struct tg_tensor *x, float p, bool training, struct tg_rng *rng)
{
    struct dropout_params dp = {p, training, rng};
    return tg_op_apply(&dropout_op, 1, &x, &dp);
}

/* ---- Dropout layer --------------------------------------------------------- */

static struct tg_tensor *dropout_layer_forward(struct tg_nn_module *m, struct tg_tensor *x)
{
    return tg_dropout(x, m->cfg.dropout.p, m->training, m->cfg.dropout.rng);
}

static const struct nn_layer_def dropout_def = {"Dropout", "tg_nn_dropout", dropout_layer_forward};

struct tg_nn_module *tg_nn_dropout_new(float p, struct tg_rng *rng)
{
    if (!(p >= 0.0f && p < 1.0f) || !rng) {
        tg_error_set(TG_ERR_INVALID,
                     "tg_nn_dropout_new: bad arguments (p %g, rng %s), expected 0 <= p < 1 and "
                     "an rng",
                     (double)p, rng ? "set" : "NULL");
        return NULL;
    }
    struct tg_nn_module *m = nn_module_new(&dropout_def);
    if (m) {
        m->cfg.dropout.p = p;
        m->cfg.dropout.rng = rng;
    }
    return m;
}
