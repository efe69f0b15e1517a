/*
 * Initialisers: constant, uniform, normal, Kaiming/He and Xavier/Glorot with
 * PyTorch's fans and gains, and PyTorch's default for Linear and Conv2d.
 */
#include <math.h>

#include <tapegrad/nn.h>

#include "core-impl.h"

static enum tg_status check_args(const char *func, const struct tg_tensor *t, const void *rng)
{
    if (!t)
        return tg_error_set(TG_ERR_INVALID, "%s: tensor is NULL", func);
    if (!rng)
        return tg_error_set(TG_ERR_INVALID, "%s: rng is NULL", func);
    return TG_OK;
}

float tg_init_gain(enum tg_init_nonlinearity nl, float a)
{
    switch (nl) {
    case TG_NONLIN_RELU:
        return sqrtf(2.0f);
    case TG_NONLIN_LEAKY_RELU:
        return sqrtf(2.0f / (1.0f + a * a));
    case TG_NONLIN_TANH:
        return 5.0f / 3.0f;
    case TG_NONLIN_LINEAR:
        break;
    }
    return 1.0f;
}

enum tg_status tg_init_fans(const struct tg_tensor *t, int64_t *fan_in, int64_t *fan_out)
{
    if (!t || !fan_in || !fan_out)
        return tg_error_set(TG_ERR_INVALID, "tg_init_fans: NULL argument");
    if (t->n_dims < 1)
        return tg_error_set(TG_ERR_INVALID, "tg_init_fans: a scalar has no fans");
    if (t->n_dims == 1) {
        *fan_in = t->shape[0];
        *fan_out = t->shape[0];
        return TG_OK;
    }
    int64_t field = 1; // receptive field: product of the kernel sizes
    for (int d = 2; d < t->n_dims; d++)
        field *= t->shape[d];
    *fan_in = t->shape[1] * field;
    *fan_out = t->shape[0] * field;
    return TG_OK;
}

enum tg_status tg_init_zeros(struct tg_tensor *t)
{
    return tg_init_constant(t, 0.0f);
}

enum tg_status tg_init_constant(struct tg_tensor *t, float value)
{
    if (!t)
        return tg_error_set(TG_ERR_INVALID, "tg_init_constant: tensor is NULL");
    tg_tensor_fill(t, value);
    return TG_OK;
}

/* Draws in row-major order on one thread, so a seed gives the same values. */
static void fill_uniform(struct tg_tensor *t, struct tg_rng *rng, float lo, float hi)
{
    for (int64_t i = 0; i < t->n_elems; i++)
        t->data[i] = lo + (hi - lo) * tg_rng_uniform(rng);
}

static void fill_normal(struct tg_tensor *t, struct tg_rng *rng, float mean, float std)
{
    for (int64_t i = 0; i < t->n_elems; i++)
        t->data[i] = mean + std * tg_rng_normal(rng);
}

enum tg_status tg_init_uniform(struct tg_tensor *t, struct tg_rng *rng, float lo, float hi)
{
    enum tg_status st = check_args("tg_init_uniform", t, rng);
    if (st != TG_OK)
        return st;
    if (!(hi >= lo))
        return tg_error_set(TG_ERR_INVALID, "tg_init_uniform: bounds out of order (lo %g, hi %g)",
                            (double)lo, (double)hi);
    fill_uniform(t, rng, lo, hi);
    return TG_OK;
}

enum tg_status tg_init_normal(struct tg_tensor *t, struct tg_rng *rng, float mean, float std)
{
    enum tg_status st = check_args("tg_init_normal", t, rng);
    if (st != TG_OK)
        return st;
    if (!(std >= 0.0f))
        return tg_error_set(TG_ERR_INVALID, "tg_init_normal: std is %g, expected >= 0",
                            (double)std);
    fill_normal(t, rng, mean, std);
    return TG_OK;
}

/* gain / sqrt(fan) for Kaiming; fails for a zero fan. */
static enum tg_status kaiming_std(const char *func,
                                  const struct tg_tensor *t,
                                  float a,
                                  enum tg_init_fan mode,
                                  enum tg_init_nonlinearity nl,
                                  float *std)
{
    int64_t fan_in;
    int64_t fan_out;
    if (tg_init_fans(t, &fan_in, &fan_out) != TG_OK)
        return tg_error_set(TG_ERR_INVALID, "%s: a scalar has no fans", func);
    int64_t fan = mode == TG_FAN_OUT ? fan_out : fan_in;
    if (fan <= 0)
        return tg_error_set(TG_ERR_INVALID, "%s: fan is 0 (tensor has no elements)", func);
    *std = tg_init_gain(nl, a) / sqrtf((float)fan);
    return TG_OK;
}

enum tg_status tg_init_kaiming_uniform(struct tg_tensor *t,
                                       struct tg_rng *rng,
                                       float a,
                                       enum tg_init_fan mode,
                                       enum tg_init_nonlinearity nl)
{
    float std = 0.0f;
    enum tg_status st = check_args("tg_init_kaiming_uniform", t, rng);
    if (st == TG_OK)
        st = kaiming_std("tg_init_kaiming_uniform", t, a, mode, nl, &std);
    if (st != TG_OK)
        return st;
    float bound = sqrtf(3.0f) * std; // U(-b, b) has variance b^2 / 3
    fill_uniform(t, rng, -bound, bound);
    return TG_OK;
}

enum tg_status tg_init_kaiming_normal(struct tg_tensor *t,
                                      struct tg_rng *rng,
                                      float a,
                                      enum tg_init_fan mode,
                                      enum tg_init_nonlinearity nl)
{
    float std = 0.0f;
    enum tg_status st = check_args("tg_init_kaiming_normal", t, rng);
    if (st == TG_OK)
        st = kaiming_std("tg_init_kaiming_normal", t, a, mode, nl, &std);
    if (st != TG_OK)
        return st;
    fill_normal(t, rng, 0.0f, std);
    return TG_OK;
}

/* gain * sqrt(2 / (fan_in + fan_out)) for Xavier. */
static enum tg_status
xavier_std(const char *func, const struct tg_tensor *t, float gain, float *std)
{
    int64_t fan_in;
    int64_t fan_out;
    if (tg_init_fans(t, &fan_in, &fan_out) != TG_OK)
        return tg_error_set(TG_ERR_INVALID, "%s: a scalar has no fans", func);
    if (fan_in + fan_out <= 0)
        return tg_error_set(TG_ERR_INVALID, "%s: fans are 0 (tensor has no elements)", func);
    *std = gain * sqrtf(2.0f / (float)(fan_in + fan_out));
    return TG_OK;
}

enum tg_status tg_init_xavier_uniform(struct tg_tensor *t, struct tg_rng *rng, float gain)
{
    float std = 0.0f;
    enum tg_status st = check_args("tg_init_xavier_uniform", t, rng);
    if (st == TG_OK)
        st = xavier_std("tg_init_xavier_uniform", t, gain, &std);
    if (st != TG_OK)
        return st;
    float bound = sqrtf(3.0f) * std;
    fill_uniform(t, rng, -bound, bound);
    return TG_OK;
}

enum tg_status tg_init_xavier_normal(struct tg_tensor *t, struct tg_rng *rng, float gain)
{
    float std = 0.0f;
    enum tg_status st = check_args("tg_init_xavier_normal", t, rng);
    if (st == TG_OK)
        st = xavier_std("tg_init_xavier_normal", t, gain, &std);
    if (st != TG_OK)
        return st;
    fill_normal(t, rng, 0.0f, std);
    return TG_OK;
}

/*
 * kaiming_uniform with a = sqrt(5): gain sqrt(2 / 6), bound gain sqrt(3 /
 * fan_in) = 1 / sqrt(fan_in); the bias uses the same bound.
 */
enum tg_status
tg_init_torch_default(struct tg_tensor *weight, struct tg_tensor *bias, struct tg_rng *rng)
{
    enum tg_status st = check_args("tg_init_torch_default", weight, rng);
    if (st != TG_OK)
        return st;
    int64_t fan_in;
    int64_t fan_out;
    if (tg_init_fans(weight, &fan_in, &fan_out) != TG_OK)
        return tg_error_set(TG_ERR_INVALID, "tg_init_torch_default: a scalar weight has no fans");
    if (fan_in <= 0)
        return tg_error_set(TG_ERR_INVALID, "tg_init_torch_default: fan_in is 0");
    float bound = 1.0f / sqrtf((float)fan_in);
    fill_uniform(weight, rng, -bound, bound);
    if (bias)
        fill_uniform(bias, rng, -bound, bound);
    return TG_OK;
}
