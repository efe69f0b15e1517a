/*
 * Optimisers (SGD with momentum and Nesterov, Adam, AdamW), learning-rate
 * schedules and gradient clipping, with PyTorch's update formulas.
 *
 * An optimiser works on a plain array of parameters: heap tensors with a
 * grad buffer (tg_tensor_set_requires_grad()), which any model can list. It
 * keeps pointers to them, so they must outlive it. Every update is computed
 * in float32 element by element, as PyTorch does on the CPU, so a step gives
 * the same result with any thread count. All state is allocated when the
 * optimiser is made: a step allocates nothing.
 */
#ifndef TAPEGRAD_OPTIM_H
#define TAPEGRAD_OPTIM_H

#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/** An optimiser over a fixed set of parameters; opaque. */
struct tg_optim;

/**
 * Settings of SGD, named as torch.optim.SGD's (dampening is always 0):
 * g = grad + weight_decay w; buf = momentum buf + g (buf = g on the first
 * step); g = nesterov ? g + momentum buf : buf (when momentum > 0);
 * w = w - lr g.
 */
struct tg_sgd_opts {
    double lr;           /**< learning rate, >= 0 */
    double momentum;     /**< 0 <= momentum < 1; 0 keeps no buffer */
    double weight_decay; /**< L2 penalty added to the gradient, >= 0 */
    bool nesterov;       /**< Nesterov momentum; needs momentum > 0 */
};

/** Defaults of struct tg_sgd_opts: lr 0.01, no momentum, no weight decay. */
#define TG_SGD_OPTS_INIT                                                                           \
    {                                                                                              \
        0.01, 0.0, 0.0, false                                                                      \
    }

/**
 * Settings of Adam and AdamW, named as torch.optim.Adam's. With t the step
 * count after increment: m = beta1 m + (1 - beta1) g; v = beta2 v + (1 -
 * beta2) g^2; w = w - lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) +
 * eps). Adam adds weight_decay w to g first (L2); AdamW instead multiplies w
 * by 1 - lr weight_decay before the update (decoupled).
 */
struct tg_adam_opts {
    double lr;           /**< learning rate, >= 0 */
    double beta1;        /**< decay of the first moment, 0 <= beta1 < 1 */
    double beta2;        /**< decay of the second moment, 0 <= beta2 < 1 */
    double eps;          /**< added to the denominator, >= 0 */
    double weight_decay; /**< >= 0; L2 for Adam, decoupled for AdamW */
};

/** Defaults of Adam (torch.optim.Adam's): lr 1e-3, betas (0.9, 0.999), eps 1e-8. */
#define TG_ADAM_OPTS_INIT                                                                          \
    {                                                                                              \
        1e-3, 0.9, 0.999, 1e-8, 0.0                                                                \
    }
/** Defaults of AdamW (torch.optim.AdamW's): as Adam with weight decay 1e-2. */
#define TG_ADAMW_OPTS_INIT                                                                         \
    {                                                                                              \
        1e-3, 0.9, 0.999, 1e-8, 1e-2                                                               \
    }

/* ---- Making and running an optimiser ------------------------------------ */

/**
 * Make an SGD optimiser.
 * @param params n parameters: distinct heap tensors that have a grad buffer;
 *        the array is copied, the tensors are not (they must outlive the
 *        optimiser).
 * @param n number of parameters, >= 1.
 * @param opts the settings, copied; NULL for TG_SGD_OPTS_INIT.
 * @return the optimiser, released with tg_optim_free(); NULL with
 *         TG_ERR_INVALID for NULL params, n = 0, a NULL, tape-owned,
 *         repeated or grad-less parameter or a setting out of range (the
 *         message names it, what it got and the range expected), or
 *         TG_ERR_NOMEM.
 */
TG_API struct tg_optim *
tg_optim_new_sgd(struct tg_tensor *const *params, size_t n, const struct tg_sgd_opts *opts);

/**
 * Make an Adam optimiser (weight decay as an L2 term in the gradient).
 * @param params, n as for tg_optim_new_sgd().
 * @param opts the settings, copied; NULL for TG_ADAM_OPTS_INIT.
 * @return as tg_optim_new_sgd().
 */
TG_API struct tg_optim *
tg_optim_new_adam(struct tg_tensor *const *params, size_t n, const struct tg_adam_opts *opts);

/**
 * Make an AdamW optimiser (decoupled weight decay: w *= 1 - lr weight_decay,
 * then the Adam update without L2 term).
 * @param params, n as for tg_optim_new_sgd().
 * @param opts the settings, copied; NULL for TG_ADAMW_OPTS_INIT.
 * @return as tg_optim_new_sgd().
 */
TG_API struct tg_optim *
tg_optim_new_adamw(struct tg_tensor *const *params, size_t n, const struct tg_adam_opts *opts);

/**
 * Release an optimiser and its state (not the parameters). NULL is a no-op.
 * @param opt the optimiser.
 */
TG_API void tg_optim_free(struct tg_optim *opt);

/**
 * Update every parameter from its gradient and advance the step count.
 * Gradients are read, never modified. A parameter whose grad buffer has been
 * released since the optimiser was made is skipped (its state is kept); note
 * that Adam's bias correction uses the optimiser's step count, not a count
 * per parameter as PyTorch keeps.
 * @param opt the optimiser.
 * @return TG_OK; TG_ERR_INVALID for NULL; TG_ERR_NONFINITE when some
 *         gradient holds a NaN or infinity (the message names the parameter
 *         and element). On failure no parameter, state or count changes.
 */
TG_API enum tg_status tg_optim_step(struct tg_optim *opt);

/**
 * Set every parameter's gradient to zero.
 * @param opt the optimiser; NULL is a no-op.
 */
TG_API void tg_optim_zero_grad(struct tg_optim *opt);

/**
 * Change the learning rate used by the following steps.
 * @param opt the optimiser.
 * @param lr the new rate, finite and >= 0.
 * @return TG_OK; TG_ERR_INVALID for NULL or a bad rate (unchanged then).
 */
TG_API enum tg_status tg_optim_set_lr(struct tg_optim *opt, double lr);

/**
 * The current learning rate.
 * @param opt the optimiser.
 * @return the rate; NaN for NULL.
 */
TG_API double tg_optim_get_lr(const struct tg_optim *opt);

/**
 * Kind of an optimiser.
 * @param opt the optimiser.
 * @return "sgd", "adam" or "adamw"; NULL for NULL.
 */
TG_API const char *tg_optim_name(const struct tg_optim *opt);

/**
 * Number of parameters an optimiser updates.
 * @param opt the optimiser.
 * @return the count; 0 for NULL.
 */
TG_API size_t tg_optim_n_params(const struct tg_optim *opt);

/* ---- State, for checkpoints ---------------------------------------------- */

/**
 * Number of steps taken (PyTorch's "step" of each parameter's state).
 * @param opt the optimiser.
 * @return the count; -1 for NULL.
 */
TG_API int64_t tg_optim_get_step(const struct tg_optim *opt);

/**
 * Number of state tensors: per parameter, one "state.<i>.momentum_buffer"
 * for SGD with momentum (none without), "state.<i>.exp_avg" and
 * "state.<i>.exp_avg_sq" for Adam and AdamW, i counting parameters from 0.
 * @param opt the optimiser.
 * @return the count; 0 for NULL.
 */
TG_API size_t tg_optim_n_state(const struct tg_optim *opt);

/**
 * List the state tensors as (name, tensor) pairs, named as PyTorch's
 * optimizer state_dict flattened ("state.0.exp_avg", "state.0.exp_avg_sq",
 * "state.1.exp_avg", ...), each with its parameter's shape. The tensors and
 * names belong to the optimiser and live as long as it does; writing into a
 * tensor's data changes the state (a checkpoint reader may fill them in
 * place). Before the first step the tensors hold zeros and are not yet used.
 * @param opt the optimiser.
 * @param cap room in names and tensors, >= tg_optim_n_state().
 * @param names receives the names.
 * @param tensors receives the tensors.
 * @return TG_OK; TG_ERR_INVALID for NULL arguments or too small a cap
 *         (nothing written then).
 */
TG_API enum tg_status tg_optim_state_list(struct tg_optim *opt,
                                          size_t cap,
                                          const char **names,
                                          struct tg_tensor **tensors);

/**
 * Restore a saved state: the step count and every state tensor, by name (in
 * any order), so that the following steps equal those of the run that saved
 * it bit for bit.
 * @param opt the optimiser, made with the same kind, settings and
 *        parameter shapes as the saved one.
 * @param step the saved step count, >= 0.
 * @param n number of pairs; must equal tg_optim_n_state().
 * @param names n names as tg_optim_state_list() gives them.
 * @param tensors n tensors, each with its parameter's shape and finite values.
 * @return TG_OK; TG_ERR_INVALID for NULL arguments, a negative step, a
 *         wrong count, an unknown, missing or repeated name; TG_ERR_SHAPE for
 *         a shape that differs; TG_ERR_NONFINITE for a NaN or infinity.
 *         Everything is checked before anything is copied: on failure the
 *         optimiser is unchanged.
 */
TG_API enum tg_status tg_optim_load_state(struct tg_optim *opt,
                                          int64_t step,
                                          size_t n,
                                          const char *const *names,
                                          const struct tg_tensor *const *tensors);

/* ---- Learning-rate schedules ----------------------------------------------- */

/** Shape of a schedule's main part. */
enum tg_lr_kind {
    TG_LR_CONSTANT = 0, /**< lr = base_lr */
    TG_LR_STEP,         /**< lr = base_lr gamma^floor(t / step_size) (StepLR) */
    /** lr = eta_min + (base_lr - eta_min) (1 + cos(pi t / t_max)) / 2, PyTorch's
     * closed form of CosineAnnealingLR: periodic, it rises again after t_max. */
    TG_LR_COSINE,
};

/**
 * A learning rate as a function of a step (or epoch) count t >= 0: the main
 * part times a linear warm-up factor, f(t) = s + (1 - s) min(t, W) / W with
 * s = warmup_start_factor and W = warmup_steps (f = 1 when W = 0), as
 * PyTorch's LinearLR chained with the main schedule. A zeroed struct with
 * base_lr set is a constant rate.
 */
struct tg_lr_schedule {
    double base_lr;             /**< >= 0 */
    enum tg_lr_kind kind;       /**< the main part */
    int64_t step_size;          /**< TG_LR_STEP: period, >= 1 */
    double gamma;               /**< TG_LR_STEP: factor per period, > 0 */
    int64_t t_max;              /**< TG_LR_COSINE: half period, >= 1 */
    double eta_min;             /**< TG_LR_COSINE: least rate, >= 0 */
    int64_t warmup_steps;       /**< W >= 0; 0 for no warm-up */
    double warmup_start_factor; /**< s, 0 <= s <= 1 */
};

/**
 * Check a schedule's fields.
 * @param s the schedule.
 * @return TG_OK; TG_ERR_INVALID for NULL or a field out of range (the
 *         message names it).
 */
TG_API enum tg_status tg_lr_schedule_check(const struct tg_lr_schedule *s);

/**
 * The learning rate a schedule gives at a step.
 * @param s a schedule that tg_lr_schedule_check() accepts.
 * @param step t >= 0.
 * @return the rate; NaN for NULL, a schedule the check refuses or a
 *         negative step (tg_optim_set_lr() refuses NaN).
 */
TG_API double tg_lr_schedule_at(const struct tg_lr_schedule *s, int64_t step);

/* ---- Gradient clipping and norms ------------------------------------------- */

/**
 * Clip gradients by their global L2 norm, as torch.nn.utils.clip_grad_norm_:
 * total = sqrt(sum over all grads of g^2) (accumulated in double); when
 * c = max_norm / (total + 1e-6) is below 1, every grad is multiplied by c.
 * Parameters without a grad buffer are skipped.
 * @param params n parameters (any tensors; their grads are scaled in place).
 * @param n number of parameters, >= 0.
 * @param max_norm the threshold, finite and > 0.
 * @param total_norm receives the norm before clipping; may be NULL.
 * @return TG_OK; TG_ERR_INVALID for NULL params (or a NULL entry) or a bad
 *         max_norm; TG_ERR_NONFINITE when the norm is NaN or infinite (a
 *         grad holds one; the message names the first such parameter). On
 *         failure no grad changes and *total_norm is not written.
 */
TG_API enum tg_status
tg_clip_grad_norm(struct tg_tensor *const *params, size_t n, double max_norm, double *total_norm);

/**
 * Clamp every gradient element to [-clip_value, clip_value], as
 * torch.nn.utils.clip_grad_value_; NaN stays NaN. Parameters without a grad
 * buffer are skipped.
 * @param params n parameters (their grads are clamped in place).
 * @param n number of parameters, >= 0.
 * @param clip_value the bound, finite and > 0.
 * @return TG_OK; TG_ERR_INVALID for NULL params (or a NULL entry) or a bad
 *         bound (no grad changes then).
 */
TG_API enum tg_status
tg_clip_grad_value(struct tg_tensor *const *params, size_t n, double clip_value);

/**
 * L2 norm of one tensor's gradient, accumulated in double.
 * @param t the tensor.
 * @return the norm (NaN or infinity when the grad holds one); 0 when t is
 *         NULL or has no grad buffer.
 */
TG_API double tg_grad_norm(const struct tg_tensor *t);

/**
 * Gradient norm of each parameter and their global norm, for watching
 * vanishing or exploding gradients.
 * @param params n parameters.
 * @param n number of parameters, >= 0.
 * @param norms receives n norms, as tg_grad_norm() gives them; may be NULL
 *        when n is 0.
 * @param total_norm receives sqrt of the sum of the squared norms; may be NULL.
 * @return TG_OK; TG_ERR_INVALID for NULL params, a NULL entry or NULL norms
 *         with n > 0 (nothing written then).
 */
TG_API enum tg_status
tg_grad_norms(struct tg_tensor *const *params, size_t n, double *norms, double *total_norm);

#ifdef __cplusplus
}
#endif

#endif
