/*
 * The tape: define-by-run recording of ops, reverse-mode backward, and the
 * interface through which built-in and user-defined ops are written.
 *
 * Thread model: each thread has its own "current tape" (see tg_tape_begin()).
 * Several tapes may record on different threads at the same time. A tape and
 * the tensors it owns must be used by one thread at a time. Leaf tensors may
 * be read by several tapes at once, but backward accumulates into a leaf's
 * grad without locking, so two tapes must not run backward into the same leaf
 * concurrently.
 */
#ifndef TAPEGRAD_AUTOGRAD_H
#define TAPEGRAD_AUTOGRAD_H

#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque recording of the ops run since the last reset, with their memory. */
struct tg_tape;

/** Options of tg_tape_backward(). */
enum tg_backward_flags {
    TG_BACKWARD_DEFAULT = 0,
    /** Keep the saved tensors so that backward can run again on the same tape. */
    TG_BACKWARD_RETAIN = 1u << 0,
};

/**
 * Make an empty tape.
 * @return the tape, or NULL with TG_ERR_NOMEM.
 */
TG_API struct tg_tape *tg_tape_new(void);

/**
 * Release a tape, every tensor it owns and its memory. NULL is a no-op. The
 * tape must not be current on any thread.
 */
TG_API void tg_tape_free(struct tg_tape *tape);

/**
 * Make tape the calling thread's current tape: from now on ops run on this
 * thread put their outputs on it and, while gradients are enabled, record
 * themselves. Calls nest: tg_tape_end() restores the tape that was current
 * before.
 * @param tape the tape to record on.
 * @return TG_OK; TG_ERR_INVALID for NULL; TG_ERR_STATE when tape is already
 *         current on some thread.
 */
TG_API enum tg_status tg_tape_begin(struct tg_tape *tape);

/**
 * Stop recording on tape and restore the calling thread's previous tape.
 * @param tape the tape given to the matching tg_tape_begin().
 * @return TG_OK; TG_ERR_STATE when tape is not the calling thread's current
 *         tape (nothing changes then).
 */
TG_API enum tg_status tg_tape_end(struct tg_tape *tape);

/**
 * The calling thread's current tape.
 * @return the tape, or NULL when none is current.
 */
TG_API struct tg_tape *tg_tape_current(void);

/**
 * Switch recording on or off (no-grad mode). With recording off, ops still put
 * their outputs on the tape but record no entries and save nothing, so
 * inference costs only the outputs themselves.
 * @param tape the tape.
 * @param enabled whether ops record.
 * @return the previous setting (false for NULL).
 */
TG_API bool tg_tape_set_grad_enabled(struct tg_tape *tape, bool enabled);

/**
 * Make a tensor owned by a tape, filled with zeros: for batch inputs and other
 * per-step data, which then cost no heap allocation once the tape is warm.
 * @param tape the owner.
 * @param n_dims, shape as for tg_tensor_new().
 * @return the tensor (released by tg_tape_reset()), or NULL with
 *         TG_ERR_INVALID or TG_ERR_NOMEM.
 */
TG_API struct tg_tensor *tg_tape_tensor_new(struct tg_tape *tape, int n_dims, const int64_t *shape);

/**
 * Run backward from out: visit the recorded entries in reverse and accumulate
 * d(sum(out * seed))/dx into the grad of every tensor x that requires it,
 * including leaves used by several ops.
 * Without TG_BACKWARD_RETAIN, backward may consume what the ops saved, and a
 * second backward on the same tape returns TG_ERR_STATE until tg_tape_reset().
 * @param tape the tape that recorded out.
 * @param out the tensor to differentiate, normally a scalar loss.
 * @param seed the gradient of the final scalar with respect to out, of out's
 *        shape; NULL means 1 and requires out to have one element.
 * @param flags a combination of tg_backward_flags.
 * @return TG_OK; TG_ERR_INVALID for NULL or a tensor of another tape;
 *         TG_ERR_SHAPE for a non-scalar out without a seed, or a seed of the
 *         wrong shape; TG_ERR_STATE when the saved tensors were released by an
 *         earlier backward; TG_ERR_NOMEM; or the status of a failing op's backward.
 *         Leaf gradients may hold partial sums after a failure.
 */
TG_API enum tg_status tg_tape_backward(struct tg_tape *tape,
                                       struct tg_tensor *out,
                                       const struct tg_tensor *seed,
                                       unsigned flags);

/**
 * Forget every entry and release every tensor the tape owns, keeping the
 * memory for reuse: once a loop has run one step, later steps of the same
 * shapes make no heap allocation. Tensors owned by the tape must not be used
 * afterwards. Leaf tensors and their grads are untouched.
 * @param tape the tape; NULL is a no-op.
 */
TG_API void tg_tape_reset(struct tg_tape *tape);

/**
 * Number of entries recorded since the last reset.
 */
TG_API size_t tg_tape_n_entries(const struct tg_tape *tape);

/**
 * Bytes of the tape's memory now holding tensors, entries, saved state and
 * gradients (not counting per-op scratch): what the recorded step costs.
 */
TG_API size_t tg_tape_bytes_in_use(const struct tg_tape *tape);

/**
 * Bytes of memory the tape holds (in use or kept for reuse).
 */
TG_API size_t tg_tape_bytes_reserved(const struct tg_tape *tape);

/* ------------------------------------------------------------------------- */
/* Defining an op                                                            */
/* ------------------------------------------------------------------------- */

/** Most inputs an op can take. */
#define TG_MAX_OP_INPUTS 64

/** Per-call state handed to an op's callbacks; opaque. */
struct tg_op_ctx;

/**
 * An op: a name and callbacks. Built-in ops are defined exactly this way; a
 * user op is a static const struct of this type passed to tg_op_apply().
 *
 * Callbacks receive the inputs in the order given to tg_op_apply(). They
 * report failures with tg_error_set() and return its status.
 */
struct tg_op_def {
    /** Name used in messages and tape dumps, e.g. "tg_relu". */
    const char *name;
    /** Bytes of the parameter block copied from tg_op_apply()'s params (0 for none). */
    size_t params_size;
    /**
     * Check the inputs and give the output's shape. Must not touch data.
     * @param ctx the call's context (params are readable).
     * @param in the inputs, none NULL.
     * @param n_in their number.
     * @param n_dims receives the output rank.
     * @param shape receives the output sizes.
     */
    enum tg_status (*shape)(struct tg_op_ctx *ctx,
                            struct tg_tensor *const *in,
                            int n_in,
                            int *n_dims,
                            int64_t *shape);
    /**
     * Compute out->data from the inputs' data; may save state for backward
     * with tg_op_ctx_save(). out->data is uninitialised on entry: forward
     * writes every element.
     */
    enum tg_status (*forward)(struct tg_op_ctx *ctx,
                              struct tg_tensor *out,
                              struct tg_tensor *const *in,
                              int n_in);
    /**
     * Given out->grad (dL/dout), ADD dL/din[i] into in[i]->grad for each input
     * with a non-NULL grad; leave the other inputs alone. Inputs' data and
     * out->data are as after forward. May be NULL for ops with no gradient.
     */
    enum tg_status (*backward)(struct tg_op_ctx *ctx,
                               const struct tg_tensor *out,
                               struct tg_tensor *const *in,
                               int n_in);
};

/**
 * Run an op: check its inputs, allocate its output (on the current tape if
 * there is one, else on the heap), run forward and, when a tape is recording
 * and some input requires grad, record it.
 *
 * An input that is NULL makes the call return NULL at once, keeping the
 * message of the failure that produced it, so model code can chain ops and
 * check once at the end.
 * @param op the op's definition; it must outlive the tape's entries.
 * @param n_in number of inputs, 1 to TG_MAX_OP_INPUTS.
 * @param in the inputs; they are not modified.
 * @param params the op's parameter block (op->params_size bytes, copied), or
 *        NULL when params_size is 0.
 * @return the output: a heap tensor for the caller to free when no tape is
 *         current, else owned by the tape. NULL on failure, with the op's
 *         message (TG_ERR_INVALID, TG_ERR_SHAPE, TG_ERR_NOMEM, or any status
 *         the callbacks return); nothing is recorded then.
 */
TG_API struct tg_tensor *
tg_op_apply(const struct tg_op_def *op, int n_in, struct tg_tensor *const *in, const void *params);

/** The parameter block given to tg_op_apply() (a copy), or NULL. */
TG_API const void *tg_op_ctx_params(const struct tg_op_ctx *ctx);

/** Whether the current call is being recorded (forward) for a later backward. */
TG_API bool tg_op_ctx_is_recording(const struct tg_op_ctx *ctx);

/**
 * In forward: memory kept for this entry's backward, 64-byte aligned and
 * zeroed; one block per call (a second request in the same forward fails with
 * TG_ERR_STATE). When the call is not recorded it is scratch memory released
 * when forward returns. In backward: returns the block saved in forward (bytes
 * is ignored and may be 0).
 * @return the block, or NULL with TG_ERR_NOMEM (or TG_ERR_STATE in backward
 *         when forward saved nothing).
 */
TG_API void *tg_op_ctx_save(struct tg_op_ctx *ctx, size_t bytes);

/**
 * Scratch memory for the current callback, 64-byte aligned, not zeroed,
 * released when the callback returns. Memory of this kind is reused from step
 * to step, so a warm training loop allocates nothing here.
 * @return the block, or NULL with TG_ERR_NOMEM.
 */
TG_API void *tg_op_ctx_scratch(struct tg_op_ctx *ctx, size_t bytes);

/** Name of the op being run, for messages. */
TG_API const char *tg_op_ctx_name(const struct tg_op_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif
