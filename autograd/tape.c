/*
 * The tape: recording ops as they run (tg_op_apply), reverse-mode backward,
 * and the op-context calls through which ops save state and get scratch.
 *
 * Memory: everything an op makes while a tape is current (output tensors,
 * entries, copied parameters, saved state, later the gradients) is bumped
 * from the tape's arena and released at once by tg_tape_reset().
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"

static _Thread_local struct tg_tape *current;

/* ---- Lifecycle ----------------------------------------------------------- */

struct tg_tape *tg_tape_new(void)
{
    struct tg_tape *tape = tg_xcalloc(sizeof(*tape));
    if (tape == NULL)
        return NULL;
    arena_init(&tape->mem);
    arena_init(&tape->scratch);
    tape->grad_enabled = true;
    return tape;
}

void tg_tape_free(struct tg_tape *tape)
{
    if (tape == NULL)
        return;
    arena_destroy(&tape->mem);
    arena_destroy(&tape->scratch);
    tg_xfree(tape);
}

enum tg_status tg_tape_begin(struct tg_tape *tape)
{
    if (tape == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_tape_begin: tape is NULL");
    int expected = 0;
    if (!atomic_compare_exchange_strong(&tape->active, &expected, 1))
        return tg_error_set(TG_ERR_STATE, "tg_tape_begin: tape is already current on a thread");
    tape->prev_current = current;
    current = tape;
    return TG_OK;
}

enum tg_status tg_tape_end(struct tg_tape *tape)
{
    if (tape == NULL || tape != current)
        return tg_error_set(TG_ERR_STATE,
                            "tg_tape_end: tape is not the current tape of the calling thread");
    current = tape->prev_current;
    tape->prev_current = NULL;
    atomic_store(&tape->active, 0);
    return TG_OK;
}

struct tg_tape *tg_tape_current(void)
{
    return current;
}

bool tg_tape_set_grad_enabled(struct tg_tape *tape, bool enabled)
{
    if (tape == NULL)
        return false;
    bool old = tape->grad_enabled;
    tape->grad_enabled = enabled;
    return old;
}

void tg_tape_reset(struct tg_tape *tape)
{
    if (tape == NULL)
        return;
    arena_reset(&tape->mem);
    arena_reset(&tape->scratch);
    tape->last = NULL;
    tape->n_entries = 0;
    tape->released = false;
}

size_t tg_tape_n_entries(const struct tg_tape *tape)
{
    return tape ? tape->n_entries : 0;
}

size_t tg_tape_bytes_in_use(const struct tg_tape *tape)
{
    return tape ? arena_in_use(&tape->mem) : 0;
}

size_t tg_tape_bytes_reserved(const struct tg_tape *tape)
{
    return tape ? arena_reserved(&tape->mem) + arena_reserved(&tape->scratch) : 0;
}

/* ---- Tensors on the tape ------------------------------------------------- */

static struct tg_tensor *
tape_tensor(struct tg_tape *tape, int n_dims, const int64_t *shape, int64_t n)
{
    struct tg_tensor *t = arena_alloc(&tape->mem, sizeof(*t));
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    t->data = arena_alloc(&tape->mem, (size_t)n * sizeof(float));
    if (t->data == NULL)
        return NULL;
    tg_tensor_init_shape(t, n_dims, shape, n);
    t->tape = tape;
    return t;
}

struct tg_tensor *tg_tape_tensor_new(struct tg_tape *tape, int n_dims, const int64_t *shape)
{
    int64_t n;
    if (tape == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_tape_tensor_new: tape is NULL");
        return NULL;
    }
    if (tg_shape_numel(n_dims, shape, &n) != TG_OK)
        return NULL;
    struct arena_mark m = arena_mark(&tape->mem);
    struct tg_tensor *t = tape_tensor(tape, n_dims, shape, n);
    if (t == NULL) {
        arena_rewind(&tape->mem, m);
        return NULL;
    }
    memset(t->data, 0, (size_t)n * sizeof(float));
    return t;
}

enum tg_status tg_tape_ensure_grad(struct tg_tape *tape, struct tg_tensor *t)
{
    if (t->grad != NULL)
        return TG_OK;
    t->grad = arena_alloc(&tape->mem, (size_t)t->n_elems * sizeof(float));
    if (t->grad == NULL)
        return TG_ERR_NOMEM;
    tg_zero_bytes(t->grad, (size_t)t->n_elems * sizeof(float));
    return TG_OK;
}

/* ---- Running an op ------------------------------------------------------- */

static enum tg_status check_apply_args(const struct tg_op_def *op,
                                       int n_in,
                                       struct tg_tensor *const *in,
                                       const void *params)
{
    if (op == NULL || op->name == NULL || op->shape == NULL || op->forward == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_op_apply: op definition is incomplete");
    if (n_in < 1 || n_in > TG_MAX_OP_INPUTS || in == NULL)
        return tg_error_set(TG_ERR_INVALID, "%s: %d inputs, expected 1 to %d", op->name, n_in,
                            TG_MAX_OP_INPUTS);
    if (op->params_size > 0 && params == NULL)
        return tg_error_set(TG_ERR_INVALID, "%s: params are NULL", op->name);
    for (int i = 0; i < n_in; i++)
        if (in[i] == NULL)
            return tg_error_null_input(op->name, i);
    return TG_OK;
}

/* Record the call as an entry; the params copy and saved block already live in mem. */
static enum tg_status
record(struct tg_op_ctx *ctx, struct tg_tensor *out, int n_in, struct tg_tensor *const *in)
{
    struct tg_tape *tape = ctx->tape;
    struct tg_entry *e = arena_alloc(&tape->mem, sizeof(*e));
    struct tg_tensor **ins = arena_alloc(&tape->mem, (size_t)n_in * sizeof(*ins));
    if (e == NULL || ins == NULL)
        return TG_ERR_NOMEM;
    memcpy(ins, in, (size_t)n_in * sizeof(*ins));
    e->prev = tape->last;
    e->op = ctx->op;
    e->out = out;
    e->in = ins;
    e->n_in = n_in;
    e->params = (void *)(uintptr_t)ctx->params;
    e->saved = ctx->saved;
    tape->last = e;
    tape->n_entries++;
    return TG_OK;
}

static bool any_requires_grad(int n_in, struct tg_tensor *const *in)
{
    for (int i = 0; i < n_in; i++)
        if (in[i]->requires_grad)
            return true;
    return false;
}

/* Name the op in an out-of-memory message that the allocator wrote. */
static void prefix_nomem(const char *name, enum tg_status st)
{
    if (st != TG_ERR_NOMEM || tg_last_status() != TG_ERR_NOMEM)
        return;
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", tg_last_error());
    if (strncmp(msg, name, strlen(name)) != 0)
        tg_error_set(TG_ERR_NOMEM, "%s: %s", name, msg);
}

/* Output, forward and recording for a call on a tape; rewinds on failure. */
static struct tg_tensor *apply_on_tape(struct tg_op_ctx *ctx,
                                       int n_in,
                                       struct tg_tensor *const *in,
                                       int n_dims,
                                       const int64_t *shape,
                                       int64_t n)
{
    struct tg_tape *tape = ctx->tape;
    struct arena_mark m = arena_mark(&tape->mem);
    struct arena_mark sm = arena_mark(&tape->scratch);
    enum tg_status st = TG_ERR_NOMEM;

    if (ctx->recording && ctx->op->params_size > 0) {
        void *copy = arena_alloc(&tape->mem, ctx->op->params_size);
        if (copy == NULL)
            goto rewind;
        memcpy(copy, ctx->params, ctx->op->params_size);
        ctx->params = copy;
    }
    struct tg_tensor *out = tape_tensor(tape, n_dims, shape, n);
    if (out == NULL)
        goto rewind;
    st = ctx->op->forward(ctx, out, in, n_in);
    arena_rewind(&tape->scratch, sm);
    if (st != TG_OK)
        goto rewind;
    if (ctx->recording) {
        st = record(ctx, out, n_in, in);
        if (st != TG_OK)
            goto rewind;
        out->requires_grad = true;
    }
    return out;

rewind:
    arena_rewind(&tape->scratch, sm);
    arena_rewind(&tape->mem, m);
    prefix_nomem(ctx->op->name, st);
    return NULL;
}

/* Output and forward for a call with no tape: a heap output, call-local scratch. */
static struct tg_tensor *apply_on_heap(struct tg_op_ctx *ctx,
                                       int n_in,
                                       struct tg_tensor *const *in,
                                       int n_dims,
                                       const int64_t *shape)
{
    struct arena local;
    arena_init(&local);
    ctx->scratch = &local;
    struct tg_tensor *out = tg_tensor_new(n_dims, shape);
    if (out == NULL) {
        prefix_nomem(ctx->op->name, tg_last_status());
        goto fail;
    }
    enum tg_status st = ctx->op->forward(ctx, out, in, n_in);
    if (st != TG_OK) {
        prefix_nomem(ctx->op->name, st);
        tg_tensor_free(out);
        out = NULL;
    }
fail:
    arena_destroy(&local);
    return out;
}

struct tg_tensor *
tg_op_apply(const struct tg_op_def *op, int n_in, struct tg_tensor *const *in, const void *params)
{
    if (check_apply_args(op, n_in, in, params) != TG_OK)
        return NULL;
    struct tg_tape *tape = current;
    struct tg_op_ctx ctx = {
            .op = op,
            .params = op->params_size > 0 ? params : NULL,
            .tape = tape,
            .scratch = tape ? &tape->scratch : NULL,
            .recording = tape != NULL && tape->grad_enabled && op->backward != NULL &&
                         any_requires_grad(n_in, in),
    };

    int n_dims = 0;
    int64_t shape[TG_MAX_DIMS] = {0};
    if (op->shape(&ctx, in, n_in, &n_dims, shape) != TG_OK)
        return NULL;
    int64_t n;
    if (tg_shape_numel(n_dims, shape, &n) != TG_OK)
        return NULL;
    if (tape == NULL)
        return apply_on_heap(&ctx, n_in, in, n_dims, shape);
    return apply_on_tape(&ctx, n_in, in, n_dims, shape, n);
}

/* ---- Context calls -------------------------------------------------------- */

const void *tg_op_ctx_params(const struct tg_op_ctx *ctx)
{
    return ctx ? ctx->params : NULL;
}

bool tg_op_ctx_is_recording(const struct tg_op_ctx *ctx)
{
    return ctx != NULL && ctx->recording;
}

const char *tg_op_ctx_name(const struct tg_op_ctx *ctx)
{
    return ctx && ctx->op ? ctx->op->name : "?";
}

void *tg_op_ctx_save(struct tg_op_ctx *ctx, size_t bytes)
{
    if (ctx == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_op_ctx_save: ctx is NULL");
        return NULL;
    }
    if (ctx->in_backward) {
        if (ctx->saved == NULL)
            tg_error_set(TG_ERR_STATE, "%s: backward found no saved state", ctx->op->name);
        return ctx->saved;
    }
    if (ctx->saved != NULL) {
        tg_error_set(TG_ERR_STATE, "%s: state saved twice in one forward", ctx->op->name);
        return NULL;
    }
    struct arena *a = ctx->recording ? &ctx->tape->mem : ctx->scratch;
    void *p = arena_alloc(a, bytes ? bytes : 1);
    if (p == NULL)
        return NULL;
    tg_zero_bytes(p, bytes);
    ctx->saved = p;
    return p;
}

void *tg_op_ctx_scratch(struct tg_op_ctx *ctx, size_t bytes)
{
    if (ctx == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_op_ctx_scratch: ctx is NULL");
        return NULL;
    }
    return arena_alloc(ctx->scratch, bytes ? bytes : 1);
}

/* ---- Backward ------------------------------------------------------------ */

static enum tg_status
check_backward_args(struct tg_tape *tape, struct tg_tensor *out, const struct tg_tensor *seed)
{
    char os[64], ss[64];
    if (tape == NULL || out == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_tape_backward: %s is NULL",
                            tape == NULL ? "tape" : "out");
    if (tape->released)
        return tg_error_set(TG_ERR_STATE,
                            "tg_tape_backward: the saved tensors were released by an earlier "
                            "backward; pass TG_BACKWARD_RETAIN to the first call to run it again");
    if (out->tape != tape)
        return tg_error_set(TG_ERR_INVALID, "tg_tape_backward: out was not made on this tape");
    if (!out->requires_grad)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_tape_backward: out does not require grad (no input of its ops "
                            "requires grad, or it was made with gradients disabled)");
    if (seed == NULL && out->n_elems != 1)
        return tg_error_set(TG_ERR_SHAPE,
                            "tg_tape_backward: out has shape %s; a non-scalar needs a seed",
                            tg_tensor_shape_str(out, os, sizeof(os)));
    if (seed != NULL && seed->n_elems != out->n_elems)
        return tg_error_set(TG_ERR_SHAPE, "tg_tape_backward: seed has shape %s, out has %s",
                            tg_tensor_shape_str(seed, ss, sizeof(ss)),
                            tg_tensor_shape_str(out, os, sizeof(os)));
    return TG_OK;
}

static enum tg_status run_entry(struct tg_tape *tape, struct tg_entry *e)
{
    for (int i = 0; i < e->n_in; i++) {
        struct tg_tensor *x = e->in[i];
        if (x->requires_grad && x->tape == tape && tg_tape_ensure_grad(tape, x) != TG_OK)
            return TG_ERR_NOMEM;
    }
    struct tg_op_ctx ctx = {
            .op = e->op,
            .params = e->params,
            .tape = tape,
            .scratch = &tape->scratch,
            .saved = e->saved,
            .recording = false,
            .in_backward = true,
    };
    struct arena_mark sm = arena_mark(&tape->scratch);
    enum tg_status st = e->op->backward(&ctx, e->out, e->in, e->n_in);
    arena_rewind(&tape->scratch, sm);
    return st;
}

enum tg_status tg_tape_backward(struct tg_tape *tape,
                                struct tg_tensor *out,
                                const struct tg_tensor *seed,
                                unsigned flags)
{
    enum tg_status st = check_backward_args(tape, out, seed);
    if (st != TG_OK)
        return st;

    /* Clear the intermediate gradients of an earlier retained backward. */
    for (struct tg_entry *e = tape->last; e != NULL; e = e->prev)
        if (e->out->grad != NULL)
            tg_zero_bytes(e->out->grad, (size_t)e->out->n_elems * sizeof(float));
    if (tg_tape_ensure_grad(tape, out) != TG_OK)
        return TG_ERR_NOMEM;
    if (seed != NULL) {
        memcpy(out->grad, seed->data, (size_t)out->n_elems * sizeof(float));
    } else {
        float *restrict g = out->grad;
        for (int64_t i = 0; i < out->n_elems; i++)
            g[i] = 1.0f;
    }

    /* Reverse walk: an entry whose output got no gradient is not upstream of out. */
    for (struct tg_entry *e = tape->last; e != NULL; e = e->prev) {
        if (e->out->grad == NULL)
            continue;
        st = run_entry(tape, e);
        if (st != TG_OK) {
            if (tg_last_status() == TG_OK)
                tg_error_set(st, "tg_tape_backward: backward of %s failed", e->op->name);
            return st;
        }
    }
    if (!(flags & TG_BACKWARD_RETAIN))
        tape->released = true;
    return TG_OK;
}
