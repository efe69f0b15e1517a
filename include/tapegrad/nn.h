/*
 * Neural-network building blocks: a seedable random number generator,
 * initialisers, layers (modules) with PyTorch's parameter names, batch norm,
 * dropout and the losses.
 *
 * A module owns its parameters (leaf tensors that require grad) and buffers
 * (leaf tensors without grad, such as batch norm's running statistics). Each
 * has a name as in PyTorch's state_dict: "weight", "bias", "running_mean";
 * inside a Sequential the child's name is prefixed ("0.weight",
 * "conv1.weight", "features.0.weight"), so a model can list, count, save and
 * load them by name.
 *
 * Layer forwards run built-in ops (or ops defined here), so on a recording
 * tape their outputs take part in backward like any other op.
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include <tapegrad/ops.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Random numbers                                                           */
/* ======================================================================== */

/**
 * A seedable random number generator: xoshiro256** (Blackman and Vigna,
 * 2018), its 256-bit state filled from the seed by four steps of splitmix64.
 * The same seed gives the same sequence on every platform, bit for bit.
 * The caller may keep it on the stack; the fields are private.
 */
struct tg_rng {
    uint64_t s[4]; /**< the state; never all zero */
    /** A second normal deviate from the last Box-Muller pair, when has_spare. */
    float spare;
    bool has_spare;
};

/** Number of uint64_t words of tg_rng_get_state() and tg_rng_set_state(). */
#define TG_RNG_STATE_WORDS 5

/**
 * Seed a generator.
 * @param rng the generator (NULL is a no-op).
 * @param seed any value, 0 included.
 */
TG_API void tg_rng_seed(struct tg_rng *rng, uint64_t seed);

/**
 * Next 64 random bits.
 * @param rng a seeded generator.
 */
TG_API uint64_t tg_rng_next_u64(struct tg_rng *rng);

/**
 * Uniform float in [0, 1), from the top 24 bits of one draw.
 * @param rng a seeded generator.
 */
TG_API float tg_rng_uniform(struct tg_rng *rng);

/**
 * Standard normal float (mean 0, standard deviation 1) by the Box-Muller
 * transform, computed in double; each pair of uniforms gives two deviates,
 * the second kept for the next call.
 * @param rng a seeded generator.
 */
TG_API float tg_rng_normal(struct tg_rng *rng);

/**
 * Uniform integer in [0, n), unbiased: draws below 2^64 mod n are rejected
 * and redrawn, then the draw is reduced modulo n.
 * @param rng a seeded generator.
 * @param n the bound; 0 gives 0.
 */
TG_API uint64_t tg_rng_int(struct tg_rng *rng, uint64_t n);

/**
 * Copy the whole state out, for a checkpoint: the four xoshiro words, then
 * the spare normal deviate (its float bits in the low 32 bits) with bit 32
 * set when it is pending.
 * @param rng the generator.
 * @param state receives TG_RNG_STATE_WORDS words.
 */
TG_API void tg_rng_get_state(const struct tg_rng *rng, uint64_t state[TG_RNG_STATE_WORDS]);

/**
 * Restore a state saved by tg_rng_get_state(): the generator then continues
 * exactly where the saved one stood.
 * @param rng the generator.
 * @param state TG_RNG_STATE_WORDS words.
 * @return TG_OK; TG_ERR_INVALID for NULL, an all-zero xoshiro state or unknown
 *         bits in the last word (rng is then unchanged).
 */
TG_API enum tg_status tg_rng_set_state(struct tg_rng *rng,
                                       const uint64_t state[TG_RNG_STATE_WORDS]);

/* ======================================================================== */
/* Initialisers                                                             */
/* ======================================================================== */
/*
 * Fans as PyTorch computes them: for a tensor of shape (O, I, k...) fan_in =
 * I * prod(k) and fan_out = O * prod(k); a 1-d tensor has fan_in = fan_out =
 * its size. Every initialiser writes t->data only, draws from rng in
 * row-major order and returns TG_ERR_INVALID for a NULL tensor or rng (t is
 * then unchanged).
 */

/** Which fan Kaiming initialisation preserves. */
enum tg_init_fan {
    TG_FAN_IN = 0, /**< keeps the forward variance (PyTorch's default) */
    TG_FAN_OUT,    /**< keeps the backward variance */
};

/** The non-linearity that follows a layer, for the gain of its initialiser. */
enum tg_init_nonlinearity {
    TG_NONLIN_LINEAR = 0, /**< gain 1 (also for sigmoid and conv without activation) */
    TG_NONLIN_RELU,       /**< gain sqrt(2) */
    TG_NONLIN_LEAKY_RELU, /**< gain sqrt(2 / (1 + a^2)) */
    TG_NONLIN_TANH,       /**< gain 5/3 */
};

/**
 * The recommended gain of a non-linearity, as torch.nn.init.calculate_gain.
 * @param nl the non-linearity.
 * @param a the negative slope, for TG_NONLIN_LEAKY_RELU only.
 */
TG_API float tg_init_gain(enum tg_init_nonlinearity nl, float a);

/**
 * Fan-in and fan-out of a weight tensor, as described above.
 * @param t a tensor of at least 1 dimension.
 * @return TG_OK; TG_ERR_INVALID for NULL or a 0-dimensional tensor.
 */
TG_API enum tg_status tg_init_fans(const struct tg_tensor *t, int64_t *fan_in, int64_t *fan_out);

/** t = 0. */
TG_API enum tg_status tg_init_zeros(struct tg_tensor *t);
/** t = value. */
TG_API enum tg_status tg_init_constant(struct tg_tensor *t, float value);
/** t ~ U(lo, hi); TG_ERR_INVALID when hi < lo. */
TG_API enum tg_status tg_init_uniform(struct tg_tensor *t, struct tg_rng *rng, float lo, float hi);
/** t ~ N(mean, std^2); TG_ERR_INVALID when std < 0. */
TG_API enum tg_status
tg_init_normal(struct tg_tensor *t, struct tg_rng *rng, float mean, float std);

/**
 * Kaiming/He uniform: t ~ U(-b, b), b = gain * sqrt(3 / fan).
 * @param a the negative slope for TG_NONLIN_LEAKY_RELU.
 * @return also TG_ERR_INVALID when fan is 0.
 */
TG_API enum tg_status tg_init_kaiming_uniform(struct tg_tensor *t,
                                              struct tg_rng *rng,
                                              float a,
                                              enum tg_init_fan mode,
                                              enum tg_init_nonlinearity nl);

/** Kaiming/He normal: t ~ N(0, std^2), std = gain / sqrt(fan). */
TG_API enum tg_status tg_init_kaiming_normal(struct tg_tensor *t,
                                             struct tg_rng *rng,
                                             float a,
                                             enum tg_init_fan mode,
                                             enum tg_init_nonlinearity nl);

/** Xavier/Glorot uniform: t ~ U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)). */
TG_API enum tg_status tg_init_xavier_uniform(struct tg_tensor *t, struct tg_rng *rng, float gain);

/** Xavier/Glorot normal: t ~ N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)). */
TG_API enum tg_status tg_init_xavier_normal(struct tg_tensor *t, struct tg_rng *rng, float gain);

/**
 * PyTorch's default for Linear and Conv2d: the weight by kaiming_uniform with
 * a = sqrt(5), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias (may
 * be NULL) by U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the weight's fan_in.
 * The weight is drawn first, then the bias.
 */
TG_API enum tg_status
tg_init_torch_default(struct tg_tensor *weight, struct tg_tensor *bias, struct tg_rng *rng);

/* ======================================================================== */
/* Functional ops of the layers                                             */
/* ======================================================================== */

/**
 * Batch normalisation over the channel dimension 1 of x (N, C) or (N, C, H, W)
 * (or any rank >= 2), as torch.nn.functional.batch_norm.
 *
 * Training: with m and v the mean and the biased variance of each channel
 * over the batch (and the spatial positions),
 * y = (x - m) / sqrt(v + eps) * weight + bias; when the running tensors are
 * given they are updated in place, running_mean = (1 - momentum)
 * running_mean + momentum m and running_var = (1 - momentum) running_var +
 * momentum v', where v' is the unbiased variance (n / (n - 1) v, n = values
 * per channel). Evaluation: m and v are the running statistics, which are
 * then required and only read.
 *
 * The running tensors are not inputs of the op: they receive no gradient and
 * are updated when forward runs (also when the tape does not record).
 * @param x (N, C, ...), N * (spatial size) >= 2 in training.
 * @param weight (C), or NULL for 1; may require grad.
 * @param bias (C), or NULL for 0; may require grad.
 * @param running_mean (C) or NULL (training only).
 * @param running_var (C) or NULL (training only); both given or neither.
 * @param training batch statistics (true) or running ones (false).
 * @param momentum in [0, 1] (PyTorch's default 0.1).
 * @param eps > 0 (PyTorch's default 1e-5).
 * @return y of x's shape; NULL with TG_ERR_SHAPE for a bad rank or channel
 *         count, TG_ERR_INVALID for a bad momentum or eps, missing running
 *         statistics in evaluation, or a single value per channel in training.
 */
TG_API struct tg_tensor *tg_batch_norm(struct tg_tensor *x,
                                       struct tg_tensor *weight,
                                       struct tg_tensor *bias,
                                       struct tg_tensor *running_mean,
                                       struct tg_tensor *running_var,
                                       bool training,
                                       float momentum,
                                       float eps);

/**
 * Inverted dropout: y = x * mask / (1 - p), with mask[i] = 0 with probability
 * p, else 1, drawn from rng (one uniform per element, row-major). The mask is
 * saved for backward: dx = dy * mask / (1 - p). With training false, or p = 0,
 * y is a copy of x and rng is not used.
 * @param x any shape.
 * @param p in [0, 1); PyTorch's p = 1 (all zeros) is refused.
 * @param training whether to drop.
 * @param rng the generator (may be NULL when not training).
 * @return y of x's shape; NULL with TG_ERR_INVALID for p out of range or a
 *         NULL rng in training.
 */
TG_API struct tg_tensor *
tg_dropout(struct tg_tensor *x, float p, bool training, struct tg_rng *rng);

/* ======================================================================== */
/* Losses                                                                   */
/* ======================================================================== */

/** Mean squared error: tg_mse_loss(). */
TG_API struct tg_tensor *
tg_loss_mse(struct tg_tensor *pred, struct tg_tensor *target, enum tg_reduction reduction);

/** Softmax cross-entropy from logits (N, C) with labels: tg_cross_entropy_loss(). */
TG_API struct tg_tensor *tg_loss_cross_entropy(struct tg_tensor *logits,
                                               const int32_t *labels,
                                               enum tg_reduction reduction,
                                               float label_smoothing);

/** Negative log-likelihood of log-probabilities (N, C): tg_nll_loss(). */
TG_API struct tg_tensor *
tg_loss_nll(struct tg_tensor *logp, const int32_t *labels, enum tg_reduction reduction);

/**
 * Binary cross-entropy with logits, element-wise then reduced:
 * l = max(x, 0) - x t + log1p(exp(-|x|)), which equals
 * -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))) without overflow.
 * dl/dx = sigmoid(x) - t, dl/dt = -x.
 * @param logits any shape.
 * @param target logits' shape, usually in [0, 1]; may require grad.
 * @return a 0-dimensional tensor; TG_ERR_SHAPE when the shapes differ.
 */
TG_API struct tg_tensor *tg_loss_bce_with_logits(struct tg_tensor *logits,
                                                 struct tg_tensor *target,
                                                 enum tg_reduction reduction);

/* ======================================================================== */
/* Modules                                                                  */
/* ======================================================================== */

/** A layer or a container of layers; opaque. */
struct tg_nn_module;

/** One named tensor of a module, as listed by tg_nn_params(). */
struct tg_param {
    /** state_dict name such as "conv1.weight"; owned by the module. */
    const char *name;
    /** the leaf tensor, owned by the module. */
    struct tg_tensor *tensor;
    /** a buffer (running statistics: no grad, not optimised) or a parameter. */
    bool is_buffer;
};

/**
 * Run a module on x: y = module(x). Outputs follow the ops' rule (owned by the
 * current tape, else a heap tensor for the caller to free).
 * @param m the module.
 * @param x the input; NULL gives NULL, keeping the earlier message.
 * @return y; NULL with a message naming the layer, e.g. "tg_nn_conv2d
 *         (conv1): input has 3 channels, layer expects 1 (x: 8x3x28x28)".
 */
TG_API struct tg_tensor *tg_nn_forward(struct tg_nn_module *m, struct tg_tensor *x);

/**
 * Release a module, its children, parameters and buffers. NULL is a no-op.
 * A module that has been added to a Sequential is freed by its parent.
 */
TG_API void tg_nn_free(struct tg_nn_module *m);

/** The layer's type name as in PyTorch: "Linear", "Conv2d", "Sequential" ... */
TG_API const char *tg_nn_type(const struct tg_nn_module *m);

/**
 * Switch a module and all its children to training (true) or evaluation
 * (false) mode; new modules start in training mode. NULL is a no-op.
 */
TG_API void tg_nn_set_training(struct tg_nn_module *m, bool training);

/** Whether the module is in training mode (false for NULL). */
TG_API bool tg_nn_is_training(const struct tg_nn_module *m);

/**
 * Number of named tensors of a module and its children.
 * @param m the module (0 for NULL).
 * @param include_buffers count buffers too.
 */
TG_API size_t tg_nn_n_params(const struct tg_nn_module *m, bool include_buffers);

/**
 * List the named tensors of a module and its children in registration order
 * (for a Sequential, child by child; within a layer "weight" before "bias",
 * then buffers "running_mean", "running_var"), the order PyTorch's
 * state_dict uses. Names and tensors stay valid until the module is freed or
 * changed (a child added).
 * @param m the module.
 * @param out receives up to cap entries (may be NULL when cap is 0).
 * @param cap room in out.
 * @param include_buffers list buffers too (for checkpoints); false gives the
 *        parameters an optimiser updates.
 * @param n receives the number of entries the full list has (may be NULL).
 * @return TG_OK; TG_ERR_INVALID for a NULL module; TG_ERR_NOMEM when cap is
 *         smaller than the list (out then holds the first cap entries and *n
 *         the size needed).
 */
TG_API enum tg_status tg_nn_params(const struct tg_nn_module *m,
                                   struct tg_param *out,
                                   size_t cap,
                                   bool include_buffers,
                                   size_t *n);

/**
 * Find a parameter or buffer by its full name.
 * @return the tensor, or NULL when absent (no error is recorded).
 */
TG_API struct tg_tensor *tg_nn_find(const struct tg_nn_module *m, const char *name);

/**
 * Total number of scalars in the parameters (and buffers when asked).
 */
TG_API int64_t tg_nn_n_elems(const struct tg_nn_module *m, bool include_buffers);

/** Set the gradient of every parameter to zero. NULL is a no-op. */
TG_API void tg_nn_zero_grad(struct tg_nn_module *m);

/**
 * Write a summary of the module, one line per parameter and buffer:
 * "conv1.weight 32x1x5x5", then a line "total N parameters".
 * @param buf the destination, always terminated when size > 0.
 * @param size bytes available.
 * @return the length the full summary needs (as snprintf), or -1 for NULL m.
 */
TG_API int tg_nn_summary(const struct tg_nn_module *m, char *buf, size_t size);

/* ---- Layers ------------------------------------------------------------ */
/*
 * Constructors return a module in training mode, or NULL with TG_ERR_INVALID
 * for a bad size or setting (the message names the constructor), or
 * TG_ERR_NOMEM. Layers with weights draw them from rng with PyTorch's default
 * initialisation; rng is only used during the call.
 */

/**
 * Linear: y = x W^T + b.
 * Parameters: weight (out_features, in_features), bias (out_features).
 * @param x (N, in_features) -> y (N, out_features).
 */
TG_API struct tg_nn_module *
tg_nn_linear_new(int64_t in_features, int64_t out_features, bool bias, struct tg_rng *rng);

/**
 * Padding that keeps the spatial size at stride 1 ('same'): dilation *
 * (kernel - 1) / 2.
 * @return the padding; -1 when dilation * (kernel - 1) is odd (an even
 *         kernel), which 'same' cannot pad symmetrically.
 */
TG_API int tg_nn_same_padding(int kernel, int dilation);

/**
 * Conv2d, as torch.nn.Conv2d. Parameters: weight (out_channels, in_channels /
 * groups, kernel_h, kernel_w), bias (out_channels).
 * @param p stride, padding, dilation and groups; NULL means TG_CONV2D_DEFAULT.
 * @param x (N, in_channels, H, W) -> y (N, out_channels, Ho, Wo).
 */
TG_API struct tg_nn_module *tg_nn_conv2d_new(int64_t in_channels,
                                             int64_t out_channels,
                                             int kernel_h,
                                             int kernel_w,
                                             const struct tg_conv2d_params *p,
                                             bool bias,
                                             struct tg_rng *rng);

/** MaxPool2d: tg_max_pool2d() with the given settings; no parameters. */
TG_API struct tg_nn_module *tg_nn_max_pool2d_new(const struct tg_pool2d_params *p);

/** AvgPool2d: tg_avg_pool2d() with the given settings; no parameters. */
TG_API struct tg_nn_module *tg_nn_avg_pool2d_new(const struct tg_pool2d_params *p);

/** ReLU. */
TG_API struct tg_nn_module *tg_nn_relu_new(void);
/** LeakyReLU with the given negative slope (PyTorch's default 0.01). */
TG_API struct tg_nn_module *tg_nn_leaky_relu_new(float slope);
/** ELU with the given alpha (PyTorch's default 1). */
TG_API struct tg_nn_module *tg_nn_elu_new(float alpha);
/** Sigmoid. */
TG_API struct tg_nn_module *tg_nn_sigmoid_new(void);
/** Tanh. */
TG_API struct tg_nn_module *tg_nn_tanh_new(void);

/**
 * Flatten dimensions start_dim.. into one (PyTorch's default start_dim 1).
 * @param start_dim >= 0.
 */
TG_API struct tg_nn_module *tg_nn_flatten_new(int start_dim);

/**
 * Dropout with probability p in [0, 1): tg_dropout() in training mode,
 * identity in evaluation mode.
 * @param rng the generator the masks are drawn from; borrowed, it must
 *        outlive the module (so that a training run keeps one generator
 *        whose state a checkpoint can save).
 */
TG_API struct tg_nn_module *tg_nn_dropout_new(float p, struct tg_rng *rng);

/** Default eps of batch norm, as PyTorch. */
#define TG_NN_BN_EPS 1e-5f
/** Default momentum of batch norm's running statistics, as PyTorch. */
#define TG_NN_BN_MOMENTUM 0.1f

/**
 * BatchNorm1d over (N, C) input; tg_batch_norm() with the layer's parameters
 * weight (C, ones) and bias (C, zeros) and buffers running_mean (C, zeros)
 * and running_var (C, ones). PyTorch's num_batches_tracked buffer is not
 * kept (it only matters for momentum None, which is not offered); a
 * checkpoint loader should ignore it.
 */
TG_API struct tg_nn_module *tg_nn_batch_norm1d_new(int64_t num_features, float eps, float momentum);

/** BatchNorm2d over (N, C, H, W) input; otherwise as tg_nn_batch_norm1d_new(). */
TG_API struct tg_nn_module *tg_nn_batch_norm2d_new(int64_t num_features, float eps, float momentum);

/* ---- Sequential -------------------------------------------------------- */

/** An empty Sequential: y = child_n(... child_1(x)). */
TG_API struct tg_nn_module *tg_nn_sequential_new(void);

/**
 * Append a child to a Sequential.
 * @param seq the container.
 * @param name the child's name in parameter names ("conv1" gives
 *        "conv1.weight"); NULL names it by its index ("0", "1", ...). Names
 *        are non-empty, contain no '.', and are unique within seq.
 * @param child the module, whose ownership passes to seq: on failure it is
 *        freed, so calls can be chained on constructors; only a child that
 *        already has a parent, or contains seq, stays with its owner. A NULL
 *        child fails keeping the constructor's message.
 * @return TG_OK; TG_ERR_INVALID for NULL, a bad or repeated name, a child
 *         that already has a parent or is seq; TG_ERR_NOMEM. On failure seq is
 *         unchanged.
 */
TG_API enum tg_status
tg_nn_sequential_add(struct tg_nn_module *seq, const char *name, struct tg_nn_module *child);

/** Number of children of a Sequential (0 for another module or NULL). */
TG_API size_t tg_nn_sequential_len(const struct tg_nn_module *seq);

/** The i-th child of a Sequential, or NULL. */
TG_API struct tg_nn_module *tg_nn_sequential_at(const struct tg_nn_module *seq, size_t i);

#ifdef __cplusplus
}
#endif

#endif
