/*
 * A user-defined op, written against the public API only: softplus,
 * y = log(1 + exp(x)), with its backward dy/dx = sigmoid(x). The program
 * runs it on a tape, checks its gradient against finite differences and
 * exits non-zero if the check fails. docs/adding-an-op.md walks through it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

/* Parameters are copied by tg_op_apply(), so a plain struct will do. */
struct softplus_params {
    float beta; // y = log(1 + exp(beta x)) / beta
};

/* 1. Shape: check the inputs, give the output's shape. */
static enum tg_status softplus_shape(
        struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in, int *n_dims, int64_t *shape)
{
    const struct softplus_params *p = tg_op_ctx_params(ctx);
    (void)n_in;
    if (!(p->beta > 0.0f))
        return tg_error_set(TG_ERR_INVALID, "softplus: beta is %g, expected > 0", (double)p->beta);
    *n_dims = in[0]->n_dims;
    memcpy(shape, in[0]->shape, sizeof(in[0]->shape));
    return TG_OK;
}

/* 2. Forward: write every output element; stable for large |x|. */
static enum tg_status softplus_forward(struct tg_op_ctx *ctx,
                                       struct tg_tensor *out,
                                       struct tg_tensor *const *in,
                                       int n_in)
{
    const struct softplus_params *p = tg_op_ctx_params(ctx);
    (void)n_in;
    for (int64_t i = 0; i < out->n_elems; i++) {
        float z = p->beta * in[0]->data[i];
        out->data[i] = (fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)))) / p->beta;
    }
    return TG_OK;
}

/* 3. Backward: ADD dL/dx = dL/dy * sigmoid(beta x) into the input's grad. */
static enum tg_status softplus_backward(struct tg_op_ctx *ctx,
                                        const struct tg_tensor *out,
                                        struct tg_tensor *const *in,
                                        int n_in)
{
    const struct softplus_params *p = tg_op_ctx_params(ctx);
    struct tg_tensor *x = in[0];
    (void)n_in;
    if (x->grad == NULL)
        return TG_OK;
    for (int64_t i = 0; i < out->n_elems; i++) {
        float s = 1.0f / (1.0f + expf(-p->beta * x->data[i]));
        x->grad[i] += out->grad[i] * s;
    }
    return TG_OK;
}

static const struct tg_op_def softplus_op = {
        .name = "softplus",
        .params_size = sizeof(struct softplus_params),
        .shape = softplus_shape,
        .forward = softplus_forward,
        .backward = softplus_backward,
};

/* The op's public entry point, like a built-in one. */
static struct tg_tensor *softplus(struct tg_tensor *x, float beta)
{
    struct softplus_params p = {beta};
    return tg_op_apply(&softplus_op, 1, &x, &p);
}

/* The function under check: any composition of ops on the inputs. */
static struct tg_tensor *check_fn(struct tg_tensor *const *inputs, int n_inputs, void *user)
{
    (void)n_inputs;
    (void)user;
    return softplus(inputs[0], 2.0f);
}

int main(void)
{
    float values[] = {-3.0f, -0.5f, 0.0f, 0.25f, 1.5f, 4.0f};
    struct tg_tensor *x = tg_tensor_from_data(2, (int64_t[]){2, 3}, values);
    if (x == NULL || tg_tensor_set_requires_grad(x, true) != TG_OK) {
        fprintf(stderr, "custom-op: %s\n", tg_last_error());
        return 1;
    }

    /* Record on a tape and run backward from the sum of the outputs. */
    struct tg_tape *tape = tg_tape_new();
    tg_tape_begin(tape);
    struct tg_tensor *loss = tg_sum(softplus(x, 2.0f));
    if (loss == NULL || tg_tape_backward(tape, loss, NULL, 0) != TG_OK) {
        fprintf(stderr, "custom-op: %s\n", tg_last_error());
        return 1;
    }
    printf("softplus: sum = %.6f, d/dx[0] = %.6f\n", (double)loss->data[0], (double)x->grad[0]);
    tg_tape_end(tape);
    tg_tape_free(tape);

    /* Prove the backward right against central differences. */
    struct tg_gradcheck_result r;
    if (tg_gradcheck(check_fn, NULL, 1, &x, NULL, &r) != TG_OK) {
        fprintf(stderr, "custom-op: %s\n", tg_last_error());
        return 1;
    }
    printf("gradcheck: %s, worst relative error %.2e over %lld elements\n",
           r.passed ? "PASS" : "FAIL", r.max_rel_err, (long long)r.n_checked);
    tg_tensor_free(x);
    return r.passed ? 0 : 1;
}
