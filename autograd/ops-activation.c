/*
 * Activations: ReLU, leaky ReLU, ELU, sigmoid, tanh. Each is an op table entry
 * with a shared shape check (y has x's shape), a forward and a backward loop.
 * Backward reads the saved output where the derivative is a function of it
 * (sigmoid, tanh) and the input otherwise.
 */
#include <math.h>

#include "core-impl.h"
#include "ops-impl.h"

/* ---- Kernels: outputs first ---------------------------------------------- */

static void relu_forward(float *y, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] =
                                x[i] < 0.0f ? 0.0f : x[i];); // NaN stays NaN, as in PyTorch
}

static void relu_backward(float *dx, const float *dy, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(
            n, for (int64_t i = 0; i < n; i++) {
                float g = dy[i]; // loaded unconditionally so the loop vectorises
                dx[i] += x[i] > 0.0f ? g : 0.0f;
            });
}

static void leaky_relu_forward(float *y, const float *x, int64_t n, float slope)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];);
}

static void leaky_relu_backward(float *dx, const float *dy, const float *x, int64_t n, float slope)
{
    TG_PARALLEL_LOOP(
            n, for (int64_t i = 0; i < n; i++) {
                float g = dy[i];
                dx[i] += x[i] > 0.0f ? g : slope * g;
            });
}

static void elu_forward(float *y, const float *x, int64_t n, float alpha)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] =
                                x[i] > 0.0f ? x[i] : alpha * expm1f(x[i]););
}

/* d/dx alpha (exp(x) - 1) = alpha exp(x) for x <= 0, from x: exact for very negative x. */
static void elu_backward(float *dx, const float *dy, const float *x, int64_t n, float alpha)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] +=
                        x[i] > 0.0f ? dy[i] : dy[i] * alpha * expf(x[i]););
}

/* exp of a negative argument only, so neither branch overflows. */
static void sigmoid_forward(float *y, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(
            n, for (int64_t i = 0; i < n; i++) {
                if (x[i] >= 0.0f) {
                    y[i] = 1.0f / (1.0f + expf(-x[i]));
                } else {
                    float e = expf(x[i]);
                    y[i] = e / (1.0f + e);
                }
            });
}

static void sigmoid_backward(float *dx, const float *dy, const float *y, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]););
}

static void tanh_forward(float *y, const float *x, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]););
}

static void tanh_backward(float *dx, const float *dy, const float *y, int64_t n)
{
    TG_PARALLEL_LOOP(n, for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]););
}

/* ---- Op table entries ------------------------------------------------------ */

struct slope_params {
    float value; // leaky slope or ELU alpha
};

static enum tg_status
act_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in);
static enum tg_status act_backward(struct tg_op_ctx *ctx,
                                   const struct tg_tensor *out,
                                   struct tg_tensor *const *in,
                                   int n_in);

static const struct tg_op_def relu_op = {"tg_relu", 0, tg_shape_same_as_first, act_forward,
                                         act_backward};
static const struct tg_op_def leaky_relu_op = {"tg_leaky_relu", sizeof(struct slope_params),
                                               tg_shape_same_as_first, act_forward, act_backward};
static const struct tg_op_def elu_op = {"tg_elu", sizeof(struct slope_params),
                                        tg_shape_same_as_first, act_forward, act_backward};
static const struct tg_op_def sigmoid_op = {"tg_sigmoid", 0, tg_shape_same_as_first, act_forward,
                                            act_backward};
static const struct tg_op_def tanh_op = {"tg_tanh", 0, tg_shape_same_as_first, act_forward,
                                         act_backward};

static float param_value(struct tg_op_ctx *ctx)
{
    const struct slope_params *p = tg_op_ctx_params(ctx);
    return p ? p->value : 0.0f;
}

static enum tg_status
act_forward(struct tg_op_ctx *ctx, struct tg_tensor *out, struct tg_tensor *const *in, int n_in)
{
    const struct tg_op_def *op = ctx->op;
    const float *x = in[0]->data;
    int64_t n = out->n_elems;
    (void)n_in;
    if (op == &relu_op)
        relu_forward(out->data, x, n);
    else if (op == &leaky_relu_op)
        leaky_relu_forward(out->data, x, n, param_value(ctx));
    else if (op == &elu_op)
        elu_forward(out->data, x, n, param_value(ctx));
    else if (op == &sigmoid_op)
        sigmoid_forward(out->data, x, n);
    else
        tanh_forward(out->data, x, n);
    return TG_OK;
}

static enum tg_status act_backward(struct tg_op_ctx *ctx,
                                   const struct tg_tensor *out,
                                   struct tg_tensor *const *in,
                                   int n_in)
{
    const struct tg_op_def *op = ctx->op;
    struct tg_tensor *x = in[0];
    int64_t n = out->n_elems;
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    if (op == &relu_op)
        relu_backward(x->grad, out->grad, x->data, n);
    else if (op == &leaky_relu_op)
        leaky_relu_backward(x->grad, out->grad, x->data, n, param_value(ctx));
    else if (op == &elu_op)
        elu_backward(x->grad, out->grad, x->data, n, param_value(ctx));
    else if (op == &sigmoid_op)
        sigmoid_backward(x->grad, out->grad, out->data, n);
    else
        tanh_backward(x->grad, out->grad, out->data, n);
    return TG_OK;
}

/* ---- Public entry points --------------------------------------------------- */

struct tg_tensor *tg_relu(struct tg_tensor *x)
{
    return tg_op_apply(&relu_op, 1, &x, NULL);
}

struct tg_tensor *tg_leaky_relu(struct tg_tensor *x, float slope)
{
    struct slope_params p = {slope};
    return tg_op_apply(&leaky_relu_op, 1, &x, &p);
}

struct tg_tensor *tg_elu(struct tg_tensor *x, float alpha)
{
    struct slope_params p = {alpha};
    return tg_op_apply(&elu_op, 1, &x, &p);
}

struct tg_tensor *tg_sigmoid(struct tg_tensor *x)
{
    return tg_op_apply(&sigmoid_op, 1, &x, NULL);
}

struct tg_tensor *tg_tanh(struct tg_tensor *x)
{
    return tg_op_apply(&tanh_op, 1, &x, NULL);
}
