/* The models of `tapegrad train` and `tapegrad eval`, and evaluation. */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct tg_nn_module *conv_5x5(int64_t in, int64_t out, struct tg_rng *rng)
{
    struct tg_conv2d_params p = TG_CONV2D_DEFAULT;
    p.pad_h = p.pad_w = tg_nn_same_padding(5, 1);
    return tg_nn_conv2d_new(in, out, 5, 5, &p, true, rng);
}

static struct tg_nn_module *pool_2(void)
{
    struct tg_pool2d_params p = {2, 2, 2, 2, 0, 0, true};
    return tg_nn_max_pool2d_new(&p);
}

/* Append children in order; stops at the first failure (add frees the child). */
static enum tg_status add_all(struct tg_nn_module *seq,
                              int n,
                              const char *const *names,
                              struct tg_nn_module *const *children)
{
    enum tg_status st = TG_OK;
    for (int i = 0; i < n; i++) {
        if (st == TG_OK)
            st = tg_nn_sequential_add(seq, names[i], children[i]);
        else
            tg_nn_free(children[i]);
    }
    return st;
}

static struct tg_nn_module *build_mlp(struct tg_rng *rng)
{
    struct tg_nn_module *seq = tg_nn_sequential_new();
    const char *names[] = {"flatten", "fc1", "relu1", "drop", "fc2"};
    struct tg_nn_module *c[] = {tg_nn_flatten_new(1), tg_nn_linear_new(784, 512, true, rng),
                                tg_nn_relu_new(), tg_nn_dropout_new(0.2f, rng),
                                tg_nn_linear_new(512, 10, true, rng)};
    if (seq == NULL || add_all(seq, 5, names, c) != TG_OK) {
        if (seq == NULL)
            for (int i = 0; i < 5; i++)
                tg_nn_free(c[i]);
        tg_nn_free(seq);
        return NULL;
    }
    return seq;
}

static struct tg_nn_module *build_cnn(struct tg_rng *rng, bool bn)
{
    struct tg_nn_module *seq = tg_nn_sequential_new();
    const char *names[13];
    struct tg_nn_module *c[13];
    int n = 0;

    names[n] = "conv1", c[n++] = conv_5x5(1, 32, rng);
    if (bn)
        names[n] = "bn1", c[n++] = tg_nn_batch_norm2d_new(32, TG_NN_BN_EPS, TG_NN_BN_MOMENTUM);
    names[n] = "relu1", c[n++] = tg_nn_relu_new();
    names[n] = "pool1", c[n++] = pool_2();
    names[n] = "conv2", c[n++] = conv_5x5(32, 64, rng);
    if (bn)
        names[n] = "bn2", c[n++] = tg_nn_batch_norm2d_new(64, TG_NN_BN_EPS, TG_NN_BN_MOMENTUM);
    names[n] = "relu2", c[n++] = tg_nn_relu_new();
    names[n] = "pool2", c[n++] = pool_2();
    names[n] = "flatten", c[n++] = tg_nn_flatten_new(1);
    names[n] = "fc1", c[n++] = tg_nn_linear_new(7 * 7 * 64, 1024, true, rng);
    names[n] = "relu3", c[n++] = tg_nn_relu_new();
    names[n] = "drop", c[n++] = tg_nn_dropout_new(0.4f, rng);
    names[n] = "fc2", c[n++] = tg_nn_linear_new(1024, 10, true, rng);

    if (seq == NULL || add_all(seq, n, names, c) != TG_OK) {
        if (seq == NULL)
            for (int i = 0; i < n; i++)
                tg_nn_free(c[i]);
        tg_nn_free(seq);
        return NULL;
    }
    return seq;
}

bool model_is_known(const char *name)
{
    return strcmp(name, "mlp") == 0 || strcmp(name, "cnn") == 0 || strcmp(name, "cnn-bn") == 0;
}

struct tg_nn_module *model_build(const char *name, struct tg_rng *rng)
{
    if (strcmp(name, "mlp") == 0)
        return build_mlp(rng);
    if (strcmp(name, "cnn") == 0)
        return build_cnn(rng, false);
    if (strcmp(name, "cnn-bn") == 0)
        return build_cnn(rng, true);
    tg_error_set(TG_ERR_INVALID, "model '%s' is unknown, expected %s", name, MODEL_NAMES);
    return NULL;
}

enum tg_status model_tensors(const struct tg_nn_module *m, struct tg_param **out, size_t *n)
{
    size_t count = tg_nn_n_params(m, true);
    struct tg_param *list = calloc(count ? count : 1, sizeof(*list));
    if (list == NULL)
        return tg_error_set(TG_ERR_NOMEM, "out of memory listing %zu tensors", count);
    enum tg_status st = tg_nn_params(m, list, count, true, n);
    if (st != TG_OK) {
        free(list);
        return st;
    }
    *out = list;
    return TG_OK;
}

/* Accumulate one batch: loss sum (double), correct predictions, confusion. */
static void score_batch(const struct tg_tensor *logits,
                        const int32_t *labels,
                        int64_t n,
                        struct eval_result *res)
{
    int64_t c = logits->shape[1];
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits->data + i * c;
        int64_t best = 0;
        double mx = (double)row[0];
        for (int64_t j = 1; j < c; j++)
            if ((double)row[j] > mx) {
                mx = (double)row[j];
                best = j;
            }
        double se = 0;
        for (int64_t j = 0; j < c; j++)
            se += exp((double)row[j] - mx);
        res->loss += mx + log(se) - (double)row[labels[i]];
        if (best == labels[i])
            res->accuracy += 1;
        if (labels[i] < 10 && best < 10)
            res->confusion[labels[i]][best]++;
    }
    res->n += n;
}

enum tg_status evaluate(struct tg_nn_module *model,
                        const struct tg_dataset *ds,
                        struct tg_tape *tape,
                        int64_t batch,
                        struct eval_result *res)
{
    memset(res, 0, sizeof(*res));
    struct tg_batch_opts bo = {batch, false, 0, false};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &bo);
    struct tg_tensor *x = tg_tensor_new(4, (int64_t[]){batch, 1, ds->height, ds->width});
    int32_t *labels = malloc((size_t)batch * sizeof(*labels));
    enum tg_status st = TG_OK;
    if (it == NULL || x == NULL || labels == NULL) {
        st = labels == NULL ? tg_error_set(TG_ERR_NOMEM, "evaluate: out of memory")
                            : tg_last_status();
        goto out;
    }
    bool was_training = tg_nn_is_training(model);
    tg_nn_set_training(model, false);
    bool grad = tg_tape_set_grad_enabled(tape, false);
    tg_tape_reset(tape);
    int64_t n;
    while ((n = tg_batch_iter_next(it, x, labels)) > 0) {
        struct tg_tensor *logits = tg_nn_forward(model, x);
        if (logits == NULL) {
            st = tg_last_status();
            break;
        }
        score_batch(logits, labels, n, res);
        tg_tape_reset(tape);
    }
    if (n < 0)
        st = tg_last_status();
    tg_tape_set_grad_enabled(tape, grad);
    tg_nn_set_training(model, was_training);
    if (res->n > 0) {
        res->loss /= (double)res->n;
        res->accuracy /= (double)res->n;
    }
out:
    free(labels);
    tg_tensor_free(x);
    tg_batch_iter_free(it);
    return st;
}
