/*
 * Built-in differentiable ops. Layouts follow PyTorch: activations NCHW,
 * convolution weights OIHW, dense weights [out, in].
 *
 * Every op returns a new tensor: owned by the calling thread's current tape
 * when there is one (and recorded when that tape has gradients enabled and
 * some input requires grad), else a heap tensor for the caller to
 * tg_tensor_free(). On failure an op returns NULL with a message naming the op
 * and the shapes (tg_last_error()); its inputs are never modified. An op given
 * a NULL input returns NULL and keeps the earlier message.
 */
#ifndef TAPEGRAD_OPS_H
#define TAPEGRAD_OPS_H

#include <tapegrad/autograd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Linear algebra --------------------------------------------------- */

/**
 * Matrix product: y = op(a) op(b), op(m) = m or m^T.
 * @param a 2-d, (M, K) or (K, M) when trans_a.
 * @param b 2-d, (K, N) or (N, K) when trans_b.
 * @return y of shape (M, N); TG_ERR_SHAPE when ranks or inner sizes differ.
 */
TG_API struct tg_tensor *
tg_matmul(struct tg_tensor *a, struct tg_tensor *b, bool trans_a, bool trans_b);

/**
 * Batched matrix product: y[i] = op(a[i]) op(b[i]) for each of B batches.
 * @param a 3-d, (B, M, K) or (B, K, M) when trans_a.
 * @param b 3-d, (B, K, N) or (B, N, K) when trans_b.
 * @return y of shape (B, M, N).
 */
TG_API struct tg_tensor *
tg_bmm(struct tg_tensor *a, struct tg_tensor *b, bool trans_a, bool trans_b);

/* ---- Element-wise binary ops with broadcasting ------------------------ */
/*
 * Shapes broadcast as in NumPy and PyTorch: aligned from the last dimension,
 * each pair of sizes equal or one of them 1. A row bias (N, F) + (F) and a
 * channel bias (N, C, H, W) + (1, C, 1, 1) or (C, 1, 1) are special cases.
 * Backward sums the gradient over the broadcast dimensions.
 */

/** y = a + b, broadcast. */
TG_API struct tg_tensor *tg_add(struct tg_tensor *a, struct tg_tensor *b);
/** y = a - b, broadcast. */
TG_API struct tg_tensor *tg_sub(struct tg_tensor *a, struct tg_tensor *b);
/** y = a * b, broadcast. */
TG_API struct tg_tensor *tg_mul(struct tg_tensor *a, struct tg_tensor *b);
/** y = a / b, broadcast; division by zero follows IEEE 754. */
TG_API struct tg_tensor *tg_div(struct tg_tensor *a, struct tg_tensor *b);

/* ---- Element-wise unary ops; y has x's shape -------------------------- */

/** y = c * x. */
TG_API struct tg_tensor *tg_scale(struct tg_tensor *x, float c);
/** y = x + c. */
TG_API struct tg_tensor *tg_add_scalar(struct tg_tensor *x, float c);
/** y = -x. */
TG_API struct tg_tensor *tg_neg(struct tg_tensor *x);
/** y = exp(x). */
TG_API struct tg_tensor *tg_exp(struct tg_tensor *x);
/** y = log(x); log of a negative number is NaN, of 0 is -inf (IEEE 754). */
TG_API struct tg_tensor *tg_log(struct tg_tensor *x);
/** y = sqrt(x). */
TG_API struct tg_tensor *tg_sqrt(struct tg_tensor *x);
/**
 * y = x^p; dy/dx = p x^(p-1). At x = 0 the gradient follows PyTorch: 0 for
 * p = 0, 1 for p = 1, inf for 0 < p < 1.
 */
TG_API struct tg_tensor *tg_pow(struct tg_tensor *x, float p);

/* ---- Activations; y has x's shape ------------------------------------- */

/** y = max(x, 0); the gradient at x = 0 is 0, as in PyTorch. */
TG_API struct tg_tensor *tg_relu(struct tg_tensor *x);
/** y = x for x > 0, slope * x otherwise (PyTorch's default slope is 0.01). */
TG_API struct tg_tensor *tg_leaky_relu(struct tg_tensor *x, float slope);
/** y = x for x > 0, alpha (exp(x) - 1) otherwise (PyTorch's default alpha is 1). */
TG_API struct tg_tensor *tg_elu(struct tg_tensor *x, float alpha);
/** y = 1 / (1 + exp(-x)), computed without overflow. */
TG_API struct tg_tensor *tg_sigmoid(struct tg_tensor *x);
/** y = tanh(x). */
TG_API struct tg_tensor *tg_tanh(struct tg_tensor *x);

/* ---- Convolution and pooling ------------------------------------------ */

/** Settings of tg_conv2d(); a zeroed struct is invalid, use TG_CONV2D_DEFAULT. */
struct tg_conv2d_params {
    int stride_h, stride_w;     /**< >= 1 */
    int pad_h, pad_w;           /**< zero padding on each side, >= 0 */
    int dilation_h, dilation_w; /**< >= 1 */
    int groups;                 /**< >= 1, divides both channel counts */
};

/** Stride 1, no padding, no dilation, one group. */
#define TG_CONV2D_DEFAULT ((struct tg_conv2d_params){1, 1, 0, 0, 1, 1, 1})

/**
 * 2-d convolution (cross-correlation, as PyTorch's conv2d), by im2col + GEMM.
 * Ho = (H + 2 pad_h - dilation_h (KH - 1) - 1) / stride_h + 1, likewise Wo.
 * @param x (N, C, H, W).
 * @param w (O, C / groups, KH, KW).
 * @param b (O), or NULL for no bias.
 * @param p the settings; NULL means TG_CONV2D_DEFAULT.
 * @return y of shape (N, O, Ho, Wo); TG_ERR_SHAPE when channels, groups or the
 *         output size do not fit; TG_ERR_INVALID for a bad setting.
 */
TG_API struct tg_tensor *tg_conv2d(struct tg_tensor *x,
                                   struct tg_tensor *w,
                                   struct tg_tensor *b,
                                   const struct tg_conv2d_params *p);

/** Settings of the 2-d pooling ops. */
struct tg_pool2d_params {
    int kernel_h, kernel_w; /**< >= 1 */
    int stride_h, stride_w; /**< >= 1 (PyTorch's default is the kernel size) */
    int pad_h, pad_w;       /**< 0 to half the kernel, as PyTorch requires */
    bool count_include_pad; /**< avg-pool only: divide by the full window (PyTorch's default) */
};

/**
 * 2-d max pooling; padding counts as -inf. Ho = (H + 2 pad_h - kernel_h) /
 * stride_h + 1, likewise Wo.
 * Ties: when several elements of a window share the maximum, the first in
 * row-major window order wins and alone receives the gradient (PyTorch's CPU
 * rule). A NaN in a window wins it (the last NaN when there are several).
 * Refused: kernel or stride < 1, padding < 0 or above half the kernel, an
 * output size below 1 (TG_ERR_INVALID or TG_ERR_SHAPE); planes of more than
 * INT32_MAX elements (TG_ERR_UNSUPPORTED). ceil_mode and dilation are not
 * supported.
 * @param x (N, C, H, W).
 * @return y of shape (N, C, Ho, Wo).
 */
TG_API struct tg_tensor *tg_max_pool2d(struct tg_tensor *x, const struct tg_pool2d_params *p);

/**
 * 2-d average pooling over each window, padding counting as zeros when
 * count_include_pad, else excluded from the divisor.
 * @param x (N, C, H, W).
 * @return y of shape (N, C, Ho, Wo), Ho and Wo as tg_max_pool2d().
 */
TG_API struct tg_tensor *tg_avg_pool2d(struct tg_tensor *x, const struct tg_pool2d_params *p);

/* ---- Shape ops --------------------------------------------------------- */

/**
 * Same data, new shape. One size may be -1 and is then inferred.
 * @return y of the given shape; TG_ERR_SHAPE when the element counts differ.
 */
TG_API struct tg_tensor *tg_reshape(struct tg_tensor *x, int n_dims, const int64_t *shape);

/**
 * Collapse dimensions start_dim.. into one: (N, C, H, W) with start_dim 1
 * gives (N, C*H*W).
 */
TG_API struct tg_tensor *tg_flatten(struct tg_tensor *x, int start_dim);

/** 2-d transpose: x (M, N) gives y (N, M). */
TG_API struct tg_tensor *tg_transpose(struct tg_tensor *x);

/**
 * Concatenate n tensors along axis; all other sizes must agree.
 * @param n 1 to TG_MAX_OP_INPUTS.
 * @param xs the tensors.
 * @param axis 0 to rank - 1; negative counts from the end.
 */
TG_API struct tg_tensor *tg_concat(int n, struct tg_tensor *const *xs, int axis);

/* ---- Reductions ------------------------------------------------------- */

/** Sum of all elements: y has 0 dimensions. */
TG_API struct tg_tensor *tg_sum(struct tg_tensor *x);
/** Mean of all elements: y has 0 dimensions. */
TG_API struct tg_tensor *tg_mean(struct tg_tensor *x);
/**
 * Sum along one axis (negative counts from the end); keepdim leaves that axis
 * with size 1, otherwise it is removed. A 0-d x accepts axis 0 or -1, as
 * PyTorch does. An axis out of range gives TG_ERR_INVALID.
 */
TG_API struct tg_tensor *tg_sum_axis(struct tg_tensor *x, int axis, bool keepdim);
/** Mean along one axis, as tg_sum_axis(). */
TG_API struct tg_tensor *tg_mean_axis(struct tg_tensor *x, int axis, bool keepdim);

/**
 * Softmax along axis: y = exp(x - max) / sum(exp(x - max)); stable for logits
 * of any finite magnitude. y has x's shape.
 */
TG_API struct tg_tensor *tg_softmax(struct tg_tensor *x, int axis);
/** Log-softmax along axis: y = x - max - log(sum(exp(x - max))). */
TG_API struct tg_tensor *tg_log_softmax(struct tg_tensor *x, int axis);

/* ---- Losses ----------------------------------------------------------- */

/** How a loss reduces over its elements. */
enum tg_reduction {
    TG_REDUCE_MEAN = 0, /**< average (PyTorch's default) */
    TG_REDUCE_SUM,      /**< sum */
};

/**
 * Mean squared error: mean or sum of (a - b)^2 over all elements.
 * @param a, b identical shapes (no broadcasting; TG_ERR_SHAPE otherwise);
 *        both may require grad.
 * @return a 0-dimensional tensor.
 */
TG_API struct tg_tensor *
tg_mse_loss(struct tg_tensor *a, struct tg_tensor *b, enum tg_reduction reduction);

/**
 * Softmax cross-entropy from logits, with integer class labels:
 * l_i = -sum_c q_ic log softmax(x_i)_c, where q_i is one-hot on labels[i],
 * or (1 - s) one-hot + s / C with label smoothing s. Computed through
 * log-softmax, so it is stable for any finite logits.
 * @param logits (N, C).
 * @param labels N class indices in [0, C), copied by the call.
 * @param reduction mean over N or sum.
 * @param label_smoothing s in [0, 1].
 * @return a 0-dimensional tensor; TG_ERR_INVALID for a label out of range.
 */
TG_API struct tg_tensor *tg_cross_entropy_loss(struct tg_tensor *logits,
                                               const int32_t *labels,
                                               enum tg_reduction reduction,
                                               float label_smoothing);

/**
 * Negative log-likelihood: l_i = -logp[i, labels[i]].
 * @param logp (N, C), log-probabilities.
 * @param labels N class indices in [0, C), copied by the call.
 * @return a 0-dimensional tensor; TG_ERR_INVALID for a label out of range.
 */
TG_API struct tg_tensor *
tg_nll_loss(struct tg_tensor *logp, const int32_t *labels, enum tg_reduction reduction);

#ifdef __cplusplus
}
#endif

#endif
