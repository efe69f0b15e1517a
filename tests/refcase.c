/*
 * Loader of the PyTorch reference cases (see refcase.h): cJSON does the
 * parsing, this file checks the structure of each case and copies the numbers
 * into float32 buffers. Every failure becomes a status and a message naming
 * the line and the field, never an abort.
 */
#include "refcase.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest tensor a case may hold; the real ones have a few hundred elements. */
#define MAX_ELEMS (INT64_C(1) << 24)

static enum tg_status fail(char *err, enum tg_status status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static enum tg_status fail(char *err, enum tg_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, REFCASE_ERR_SIZE, fmt, ap);
        va_end(ap);
    }
    return status;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- Releasing ---------------------------------------------------------- */

static void tensor_free(struct refcase_tensor *t)
{
    free(t->name);
    free(t->data);
    memset(t, 0, sizeof(*t));
}

static void list_free(struct refcase_list *l)
{
    for (int i = 0; i < l->n; i++)
        tensor_free(&l->items[i]);
    free(l->items);
    free(l->name);
    memset(l, 0, sizeof(*l));
}

static void group_free(struct refcase_group *g)
{
    for (int i = 0; i < g->n_tensors; i++)
        tensor_free(&g->tensors[i]);
    for (int i = 0; i < g->n_lists; i++)
        list_free(&g->lists[i]);
    free(g->tensors);
    free(g->lists);
    memset(g, 0, sizeof(*g));
}

void refcase_free(struct refcase *rc)
{
    if (!rc)
        return;
    group_free(&rc->inputs);
    tensor_free(&rc->upstream);
    tensor_free(&rc->output);
    group_free(&rc->output_parts);
    group_free(&rc->grads);
    free(rc->op);
    cJSON_Delete(rc->json);
    memset(rc, 0, sizeof(*rc));
}

void refcase_set_free(struct refcase_set *set)
{
    if (!set)
        return;
    for (int i = 0; i < set->n; i++)
        refcase_free(&set->cases[i]);
    free(set->cases);
    set->cases = NULL;
    set->n = 0;
}

/* ---- Tensors ------------------------------------------------------------ */

/* A float from a JSON number, refusing values a float cannot hold. */
static bool to_float(const cJSON *j, float *out)
{
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || fabs(j->valuedouble) > FLT_MAX)
        return false;
    *out = (float)j->valuedouble;
    return true;
}

/* shape: an array of at most TG_MAX_DIMS integers in [0, MAX_ELEMS]. */
static enum tg_status
parse_shape(const cJSON *j, struct refcase_tensor *t, int line, const char *what, char *err)
{
    if (!cJSON_IsArray(j))
        return fail(err, TG_ERR_FORMAT, "line %d: %s: \"shape\" is not an array", line, what);
    int n = cJSON_GetArraySize(j);
    if (n > TG_MAX_DIMS)
        return fail(err, TG_ERR_FORMAT, "line %d: %s: %d dimensions (at most %d)", line, what, n,
                    TG_MAX_DIMS);
    t->n_dims = n;
    t->n_elems = 1;
    for (int d = 0; d < TG_MAX_DIMS; d++)
        t->shape[d] = 1;
    int d = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, j)
    {
        double v = cJSON_IsNumber(s) ? s->valuedouble : -1.0;
        if (!(v >= 0.0 && v <= (double)MAX_ELEMS && v == floor(v)))
            return fail(err, TG_ERR_FORMAT, "line %d: %s: size %d is not an integer in [0, %lld]",
                        line, what, d, (long long)MAX_ELEMS);
        t->shape[d++] = (int64_t)v;
        t->n_elems *= (int64_t)v;
        if (t->n_elems > MAX_ELEMS)
            return fail(err, TG_ERR_FORMAT, "line %d: %s: more than %lld elements", line, what,
                        (long long)MAX_ELEMS);
    }
    return TG_OK;
}

/*
 * A tensor from {"shape": [...], "data": [...]} or a bare number (0 dims).
 * On failure t holds what was allocated; the caller frees it.
 */
static enum tg_status
parse_tensor(const cJSON *j, int line, const char *what, struct refcase_tensor *t, char *err)
{
    if (cJSON_IsNumber(j)) {
        t->n_dims = 0;
        t->n_elems = 1;
        for (int d = 0; d < TG_MAX_DIMS; d++)
            t->shape[d] = 1;
        t->data = malloc(sizeof(float));
        if (!t->data)
            return fail(err, TG_ERR_NOMEM, "line %d: %s: out of memory", line, what);
        if (!to_float(j, t->data))
            return fail(err, TG_ERR_FORMAT, "line %d: %s: not a finite float", line, what);
        return TG_OK;
    }
    if (!cJSON_IsObject(j))
        return fail(err, TG_ERR_FORMAT, "line %d: %s: not a tensor object", line, what);

    enum tg_status st =
            parse_shape(cJSON_GetObjectItemCaseSensitive(j, "shape"), t, line, what, err);
    if (st != TG_OK)
        return st;

    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (!cJSON_IsArray(data))
        return fail(err, TG_ERR_FORMAT, "line %d: %s: \"data\" is not an array", line, what);
    int64_t n = cJSON_GetArraySize(data);
    if (n != t->n_elems)
        return fail(err, TG_ERR_FORMAT, "line %d: %s: %lld values for %lld elements", line, what,
                    (long long)n, (long long)t->n_elems);
    t->data = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!t->data)
        return fail(err, TG_ERR_NOMEM, "line %d: %s: out of memory", line, what);
    int64_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, data)
    {
        if (!to_float(v, &t->data[i]))
            return fail(err, TG_ERR_FORMAT, "line %d: %s: value %lld is not a finite float", line,
                        what, (long long)i);
        i++;
    }
    return TG_OK;
}

static enum tg_status
parse_list(const cJSON *j, int line, const char *what, struct refcase_list *l, char *err)
{
    int n = cJSON_GetArraySize(j);
    l->items = calloc((size_t)(n > 0 ? n : 1), sizeof(*l->items));
    if (!l->items)
        return fail(err, TG_ERR_NOMEM, "line %d: %s: out of memory", line, what);
    const cJSON *item;
    cJSON_ArrayForEach(item, j)
    {
        char where[128]; // what (at most 95 chars) and an index
        snprintf(where, sizeof(where), "%s[%d]", what, l->n);
        enum tg_status st = parse_tensor(item, line, where, &l->items[l->n++], err);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

/* ---- Groups: the members of "inputs", "grads" or an object "output" ----- */

static enum tg_status
group_add(const cJSON *m, int line, const char *what, struct refcase_group *g, char *err)
{
    char where[96];
    snprintf(where, sizeof(where), "%s.%s", what, m->string);
    if (cJSON_IsArray(m)) {
        struct refcase_list *l = &g->lists[g->n_lists++];
        l->name = dup_str(m->string);
        if (!l->name)
            return fail(err, TG_ERR_NOMEM, "line %d: %s: out of memory", line, where);
        return parse_list(m, line, where, l, err);
    }
    struct refcase_tensor *t = &g->tensors[g->n_tensors++];
    t->name = dup_str(m->string);
    if (!t->name)
        return fail(err, TG_ERR_NOMEM, "line %d: %s: out of memory", line, where);
    return parse_tensor(m, line, where, t, err);
}

/* obj must be an object; an empty one gives an empty group. */
static enum tg_status
parse_group(const cJSON *obj, int line, const char *what, struct refcase_group *g, char *err)
{
    if (!cJSON_IsObject(obj))
        return fail(err, TG_ERR_FORMAT, "line %d: \"%s\" is not an object", line, what);
    int n = cJSON_GetArraySize(obj);
    g->tensors = calloc((size_t)(n > 0 ? n : 1), sizeof(*g->tensors));
    g->lists = calloc((size_t)(n > 0 ? n : 1), sizeof(*g->lists));
    if (!g->tensors || !g->lists)
        return fail(err, TG_ERR_NOMEM, "line %d: %s: out of memory", line, what);
    const cJSON *m;
    cJSON_ArrayForEach(m, obj)
    {
        enum tg_status st = group_add(m, line, what, g, err);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

const struct refcase_tensor *refcase_group_tensor(const struct refcase_group *g, const char *name)
{
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

const struct refcase_list *refcase_group_list(const struct refcase_group *g, const char *name)
{
    for (int i = 0; i < g->n_lists; i++)
        if (strcmp(g->lists[i].name, name) == 0)
            return &g->lists[i];
    return NULL;
}

const struct refcase_tensor *refcase_input(const struct refcase *rc, const char *name)
{
    return refcase_group_tensor(&rc->inputs, name);
}

const struct refcase_tensor *refcase_grad(const struct refcase *rc, const char *name)
{
    return refcase_group_tensor(&rc->grads, name);
}

/* ---- Checking each kind of case ------------------------------------------ */

static bool same_shape(const struct refcase_tensor *a, const struct refcase_tensor *b)
{
    if (a->n_dims != b->n_dims)
        return false;
    for (int d = 0; d < a->n_dims; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static bool is_null_or_absent(const cJSON *j)
{
    return j == NULL || cJSON_IsNull(j);
}

/* Plain case: one output tensor, an upstream of its shape, grads of inputs' shapes. */
static enum tg_status check_plain(struct refcase *rc, char *err)
{
    int line = rc->line;
    enum tg_status st = parse_tensor(rc->output_json, line, "output", &rc->output, err);
    if (st != TG_OK)
        return st;
    rc->output_is_tensor = true;
    if (!rc->has_upstream)
        return fail(err, TG_ERR_FORMAT, "line %d: %s: no \"upstream\"", line, rc->op);
    if (!same_shape(&rc->upstream, &rc->output))
        return fail(err, TG_ERR_FORMAT, "line %d: %s: upstream and output shapes differ", line,
                    rc->op);
    if (rc->grads.n_tensors == 0 || rc->grads.n_lists != 0)
        return fail(err, TG_ERR_FORMAT, "line %d: %s: \"grads\" must hold tensors", line, rc->op);
    for (int i = 0; i < rc->grads.n_tensors; i++) {
        const struct refcase_tensor *g = &rc->grads.tensors[i];
        const struct refcase_tensor *x = refcase_input(rc, g->name);
        if (!x || !same_shape(x, g))
            return fail(err, TG_ERR_FORMAT, "line %d: %s: grad \"%s\" matches no input's shape",
                        line, rc->op, g->name);
    }
    return TG_OK;
}

static bool list_shapes_are(const struct refcase_list *l, const struct refcase_tensor *like)
{
    for (int i = 0; i < l->n; i++)
        if (!same_shape(&l->items[i], like))
            return false;
    return true;
}

/* Optimiser: weight, grads (list), output after_each_step (one weight per grad). */
static enum tg_status check_optimizer(const struct refcase *rc, char *err)
{
    const struct refcase_tensor *w = refcase_input(rc, "weight");
    const struct refcase_list *g = refcase_group_list(&rc->inputs, "grads");
    const struct refcase_list *steps = refcase_group_list(&rc->output_parts, "after_each_step");
    if (!w || !g || !steps || g->n < 1 || steps->n != g->n)
        return fail(err, TG_ERR_FORMAT,
                    "line %d: %s: want inputs weight and grads (list) and output after_each_step "
                    "(a list as long as grads)",
                    rc->line, rc->op);
    if (!list_shapes_are(g, w) || !list_shapes_are(steps, w))
        return fail(err, TG_ERR_FORMAT, "line %d: %s: grads and steps must have weight's shape",
                    rc->line, rc->op);
    return TG_OK;
}

/* Clipping: grads (list) in; total_norm and the clipped grads out. */
static enum tg_status check_clip(const struct refcase *rc, char *err)
{
    const struct refcase_list *in = refcase_group_list(&rc->inputs, "grads");
    const struct refcase_list *out = refcase_group_list(&rc->output_parts, "grads");
    const struct refcase_tensor *norm = refcase_group_tensor(&rc->output_parts, "total_norm");
    if (!in || !out || !norm || norm->n_elems != 1 || in->n != out->n)
        return fail(err, TG_ERR_FORMAT,
                    "line %d: %s: want inputs grads (list), output total_norm and grads (list of "
                    "the same length)",
                    rc->line, rc->op);
    for (int i = 0; i < in->n; i++)
        if (!same_shape(&in->items[i], &out->items[i]))
            return fail(err, TG_ERR_FORMAT, "line %d: %s: clipped grad %d changes shape", rc->line,
                        rc->op, i);
    return TG_OK;
}

/* Running statistics: x (N, C, ...) in; running_mean and running_var of (C) out. */
static enum tg_status check_running_stats(const struct refcase *rc, char *err)
{
    const struct refcase_tensor *x = refcase_input(rc, "x");
    const struct refcase_tensor *m = refcase_group_tensor(&rc->output_parts, "running_mean");
    const struct refcase_tensor *v = refcase_group_tensor(&rc->output_parts, "running_var");
    if (!x || !m || !v || x->n_dims < 2)
        return fail(err, TG_ERR_FORMAT,
                    "line %d: %s: want input x (N, C, ...) and output running_mean, running_var",
                    rc->line, rc->op);
    if (m->n_dims != 1 || v->n_dims != 1 || m->shape[0] != x->shape[1] ||
        v->shape[0] != x->shape[1])
        return fail(err, TG_ERR_FORMAT, "line %d: %s: running statistics must have shape (%lld)",
                    rc->line, rc->op, (long long)x->shape[1]);
    return TG_OK;
}

static enum refcase_kind kind_of(const char *op)
{
    if (strncmp(op, "optimizer_", strlen("optimizer_")) == 0)
        return REFCASE_OPTIMIZER;
    if (strcmp(op, "clip_grad_norm") == 0)
        return REFCASE_CLIP_GRAD_NORM;
    if (strcmp(op, "batch_norm_running_stats") == 0)
        return REFCASE_BN_RUNNING_STATS;
    return REFCASE_PLAIN;
}

static enum tg_status check_kind(struct refcase *rc, char *err)
{
    if (rc->kind == REFCASE_PLAIN)
        return check_plain(rc, err);
    enum tg_status st = parse_group(rc->output_json, rc->line, "output", &rc->output_parts, err);
    if (st != TG_OK)
        return st;
    switch (rc->kind) {
    case REFCASE_OPTIMIZER:
        return check_optimizer(rc, err);
    case REFCASE_CLIP_GRAD_NORM:
        return check_clip(rc, err);
    case REFCASE_BN_RUNNING_STATS:
        return check_running_stats(rc, err);
    case REFCASE_PLAIN:
        break;
    }
    return TG_OK;
}

/* ---- One line ------------------------------------------------------------ */

/* The members every case has: op, params, inputs, upstream, output, grads. */
static enum tg_status parse_members(struct refcase *rc, char *err)
{
    int line = rc->line;
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(rc->json, "op");
    if (!cJSON_IsString(op) || op->valuestring[0] == '\0')
        return fail(err, TG_ERR_FORMAT, "line %d: \"op\" is not a non-empty string", line);
    rc->op = dup_str(op->valuestring);
    if (!rc->op)
        return fail(err, TG_ERR_NOMEM, "line %d: out of memory", line);
    rc->kind = kind_of(rc->op);

    const cJSON *params = cJSON_GetObjectItemCaseSensitive(rc->json, "params");
    if (!is_null_or_absent(params) && !cJSON_IsObject(params))
        return fail(err, TG_ERR_FORMAT, "line %d: \"params\" is not an object", line);
    rc->params = cJSON_IsObject(params) ? params : NULL;

    enum tg_status st = parse_group(cJSON_GetObjectItemCaseSensitive(rc->json, "inputs"), line,
                                    "inputs", &rc->inputs, err);
    if (st != TG_OK)
        return st;

    const cJSON *up = cJSON_GetObjectItemCaseSensitive(rc->json, "upstream");
    if (!is_null_or_absent(up)) {
        st = parse_tensor(up, line, "upstream", &rc->upstream, err);
        if (st != TG_OK)
            return st;
        rc->has_upstream = true;
    }

    const cJSON *grads = cJSON_GetObjectItemCaseSensitive(rc->json, "grads");
    if (!is_null_or_absent(grads)) {
        st = parse_group(grads, line, "grads", &rc->grads, err);
        if (st != TG_OK)
            return st;
    }

    rc->output_json = cJSON_GetObjectItemCaseSensitive(rc->json, "output");
    if (is_null_or_absent(rc->output_json))
        return fail(err, TG_ERR_FORMAT, "line %d: %s: no \"output\"", line, rc->op);
    return check_kind(rc, err);
}

enum tg_status refcase_parse(const char *text, int line, struct refcase *rc, char *err)
{
    if (!rc)
        return fail(err, TG_ERR_INVALID, "refcase_parse: rc is NULL");
    memset(rc, 0, sizeof(*rc));
    if (!text)
        return fail(err, TG_ERR_FORMAT, "line %d: no text", line);
    rc->line = line;

    const char *end = NULL;
    rc->json = cJSON_ParseWithOpts(text, &end, 1);
    if (!rc->json) {
        ptrdiff_t at = end ? end - text : 0;
        return fail(err, TG_ERR_FORMAT, "line %d: not valid JSON (near byte %td)", line, at);
    }
    if (!cJSON_IsObject(rc->json)) {
        refcase_free(rc);
        return fail(err, TG_ERR_FORMAT, "line %d: not a JSON object", line);
    }
    enum tg_status st = parse_members(rc, err);
    if (st != TG_OK)
        refcase_free(rc);
    return st;
}

/* ---- A whole file ---------------------------------------------------------- */

static bool is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return false;
    return true;
}

static enum tg_status
set_push(struct refcase_set *set, int *cap, const char *text, int line, char *err)
{
    if (set->n == *cap) {
        int new_cap = *cap ? 2 * *cap : 64;
        struct refcase *p = realloc(set->cases, (size_t)new_cap * sizeof(*p));
        if (!p)
            return fail(err, TG_ERR_NOMEM, "line %d: out of memory", line);
        set->cases = p;
        *cap = new_cap;
    }
    enum tg_status st = refcase_parse(text, line, &set->cases[set->n], err);
    if (st == TG_OK)
        set->n++;
    return st;
}

enum tg_status refcase_load(const char *path, struct refcase_set *set, char *err)
{
    memset(set, 0, sizeof(*set));
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));

    char *buf = NULL;
    size_t buf_size = 0;
    int cap = 0;
    int line = 0;
    enum tg_status st = TG_OK;
    while (st == TG_OK && getline(&buf, &buf_size, f) != -1) {
        line++;
        if (!is_blank(buf))
            st = set_push(set, &cap, buf, line, err);
    }
    if (st == TG_OK && ferror(f))
        st = fail(err, TG_ERR_IO, "%s: read error after line %d", path, line);
    free(buf);
    fclose(f);
    if (st != TG_OK)
        refcase_set_free(set);
    return st;
}

/* ---- Params ---------------------------------------------------------------- */

static const cJSON *param(const struct refcase *rc, const char *key)
{
    if (!rc->params)
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(rc->params, key);
}

bool refcase_param_has(const struct refcase *rc, const char *key)
{
    return !is_null_or_absent(param(rc, key));
}

int refcase_param_int(const struct refcase *rc, const char *key, int def)
{
    const cJSON *j = param(rc, key);
    if (!cJSON_IsNumber(j))
        return def;
    double v = j->valuedouble;
    if (!(v >= (double)INT_MIN && v <= (double)INT_MAX && v == floor(v)))
        return def;
    return (int)v;
}

double refcase_param_double(const struct refcase *rc, const char *key, double def)
{
    const cJSON *j = param(rc, key);
    return cJSON_IsNumber(j) ? j->valuedouble : def;
}

bool refcase_param_bool(const struct refcase *rc, const char *key, bool def)
{
    const cJSON *j = param(rc, key);
    return cJSON_IsBool(j) ? cJSON_IsTrue(j) : def;
}

const char *refcase_param_str(const struct refcase *rc, const char *key, const char *def)
{
    const cJSON *j = param(rc, key);
    return cJSON_IsString(j) ? j->valuestring : def;
}
