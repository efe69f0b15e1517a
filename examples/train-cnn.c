/*
 * Define a small CNN, train it on Fashion-MNIST with Adam, measure its test
 * accuracy, save it as a safetensors checkpoint and load it back into a fresh
 * model. docs/tutorial.md walks through this program.
 *
 * Usage: train-cnn [DATA_DIR [N_TRAIN [EPOCHS [CHECKPOINT]]]]
 */
#include <stdio.h>
#include <stdlib.h>

#include <tapegrad/tapegrad.h>

#define BATCH      64
#define MAX_PARAMS 16

static int fail(const char *what)
{
    fprintf(stderr, "train-cnn: %s: %s\n", what, tg_last_error());
    return 1;
}

/* conv1 -> relu1 -> pool1 -> conv2 -> relu2 -> pool2 -> flatten -> fc, on 1x28x28 */
static struct tg_nn_module *build_model(uint64_t seed)
{
    struct tg_rng rng; // only used while the layers draw their initial weights
    tg_rng_seed(&rng, seed);
    struct tg_conv2d_params same = TG_CONV2D_DEFAULT;
    same.pad_h = same.pad_w = tg_nn_same_padding(3, 1);
    struct tg_pool2d_params pool = {2, 2, 2, 2, 0, 0, true};

    struct tg_nn_module *m = tg_nn_sequential_new();
    if (m == NULL)
        return NULL;
    if (tg_nn_sequential_add(m, "conv1", tg_nn_conv2d_new(1, 8, 3, 3, &same, true, &rng)) ||
        tg_nn_sequential_add(m, "relu1", tg_nn_relu_new()) ||
        tg_nn_sequential_add(m, "pool1", tg_nn_max_pool2d_new(&pool)) ||
        tg_nn_sequential_add(m, "conv2", tg_nn_conv2d_new(8, 16, 3, 3, &same, true, &rng)) ||
        tg_nn_sequential_add(m, "relu2", tg_nn_relu_new()) ||
        tg_nn_sequential_add(m, "pool2", tg_nn_max_pool2d_new(&pool)) ||
        tg_nn_sequential_add(m, "flatten", tg_nn_flatten_new(1)) ||
        tg_nn_sequential_add(m, "fc", tg_nn_linear_new(16 * 7 * 7, 10, true, &rng))) {
        tg_nn_free(m); // the failed child was freed by tg_nn_sequential_add
        return NULL;
    }
    return m;
}

/* One pass over the shuffled training set; returns the mean loss, or -1. */
static double train_epoch(struct tg_nn_module *model,
                          struct tg_optim *opt,
                          struct tg_tape *tape,
                          struct tg_batch_iter *it,
                          struct tg_tensor *x,
                          int32_t *labels)
{
    double sum = 0.0;
    int64_t n_batches = 0;
    int64_t n;
    while ((n = tg_batch_iter_next(it, x, labels)) > 0) {
        struct tg_tensor *logits = tg_nn_forward(model, x); // recorded on the tape
        struct tg_tensor *loss = tg_loss_cross_entropy(logits, labels, TG_REDUCE_MEAN, 0.0f);
        if (loss == NULL || tg_tape_backward(tape, loss, NULL, 0) || tg_optim_step(opt))
            return -1.0;
        sum += (double)loss->data[0]; // read before the reset releases it
        n_batches++;
        tg_optim_zero_grad(opt);
        tg_tape_reset(tape);
    }
    return n < 0 ? -1.0 : sum / (double)n_batches; // n is 0 at the end of the epoch
}

/* Count correct predictions on a data set, without recording; -1 on failure. */
static int64_t n_correct(struct tg_nn_module *model,
                         struct tg_tape *tape,
                         const struct tg_dataset *ds,
                         struct tg_tensor *x,
                         int32_t *labels)
{
    struct tg_batch_opts bo = {.batch_size = BATCH, .shuffle = false};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &bo);
    if (it == NULL)
        return -1;
    bool was_enabled = tg_tape_set_grad_enabled(tape, false);
    tg_nn_set_training(model, false);
    int64_t correct = 0;
    int64_t n;
    while ((n = tg_batch_iter_next(it, x, labels)) > 0) {
        struct tg_tensor *logits = tg_nn_forward(model, x); // (n, 10), on the tape
        if (logits == NULL)
            break;
        for (int64_t i = 0; i < n; i++) {
            const float *row = logits->data + i * 10;
            int best = 0;
            for (int c = 1; c < 10; c++)
                best = row[c] > row[best] ? c : best;
            correct += best == labels[i];
        }
        tg_tape_reset(tape);
    }
    tg_tape_reset(tape);
    tg_nn_set_training(model, true);
    tg_tape_set_grad_enabled(tape, was_enabled);
    tg_batch_iter_free(it);
    return n == 0 ? correct : -1; // n > 0: a forward failed, n < 0: the iterator
}

/* Save every parameter and buffer under its state_dict name, or load them back. */
static enum tg_status checkpoint(struct tg_nn_module *model, const char *path, bool save)
{
    struct tg_param p[MAX_PARAMS];
    const char *names[MAX_PARAMS];
    struct tg_tensor *tensors[MAX_PARAMS];
    size_t n;
    if (tg_nn_params(model, p, MAX_PARAMS, true, &n))
        return tg_last_status();
    for (size_t i = 0; i < n; i++) {
        names[i] = p[i].name;
        tensors[i] = p[i].tensor;
    }
    if (save)
        return tg_checkpoint_save(path, (int)n, names, (const struct tg_tensor *const *)tensors, 0,
                                  NULL);
    return tg_checkpoint_load(path, (int)n, names, tensors, NULL);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : TG_FASHION_MNIST_DEFAULT_DIR;
    long n_train = argc > 2 ? atol(argv[2]) : 0; // 0: all
    int epochs = argc > 3 ? atoi(argv[3]) : 3;
    const char *path = argc > 4 ? argv[4] : "train-cnn.safetensors";

    /* Data: pixels scaled to [0, 1], labels 0 to 9 */
    struct tg_dataset *full = tg_dataset_load_fashion_mnist(dir, true, NULL);
    struct tg_dataset *test = tg_dataset_load_fashion_mnist(dir, false, NULL);
    if (full == NULL || test == NULL)
        return fail("loading Fashion-MNIST");
    if (n_train <= 0 || n_train > full->n_items)
        n_train = (long)full->n_items;
    struct tg_dataset *train = tg_dataset_subset(full, 0, n_train);
    if (train == NULL)
        return fail("choosing the training images");
    tg_dataset_free(full);

    /* Model, optimiser, tape, batch buffers */
    struct tg_nn_module *model = build_model(1);
    if (model == NULL)
        return fail("building the model");
    struct tg_param p[MAX_PARAMS];
    struct tg_tensor *params[MAX_PARAMS];
    size_t n_params;
    if (tg_nn_params(model, p, MAX_PARAMS, false, &n_params))
        return fail("listing the parameters");
    for (size_t i = 0; i < n_params; i++)
        params[i] = p[i].tensor;
    struct tg_optim *opt = tg_optim_new_adam(params, n_params, NULL); // lr 1e-3
    struct tg_batch_opts bo = {.batch_size = BATCH, .shuffle = true, .seed = 42};
    struct tg_batch_iter *it = tg_batch_iter_new(train, &bo);
    struct tg_tensor *x = tg_tensor_new(4, (int64_t[]){BATCH, 1, 28, 28});
    int32_t labels[BATCH];
    struct tg_tape *tape = tg_tape_new();
    if (opt == NULL || it == NULL || x == NULL || tape == NULL || tg_tape_begin(tape))
        return fail("setting up training");

    /* Training */
    for (int e = 0; e < epochs; e++) {
        double loss = train_epoch(model, opt, tape, it, x, labels);
        if (loss < 0)
            return fail("training");
        int64_t correct = n_correct(model, tape, test, x, labels);
        if (correct < 0)
            return fail("evaluating");
        printf("epoch %d: train loss %.4f, test accuracy %.4f\n", e + 1, loss,
               (double)correct / (double)test->n_items);
    }

    /* Save, load into a fresh model with other weights, compare */
    int64_t before = n_correct(model, tape, test, x, labels);
    if (checkpoint(model, path, true))
        return fail("saving the checkpoint");
    struct tg_nn_module *loaded = build_model(2);
    if (loaded == NULL || checkpoint(loaded, path, false))
        return fail("loading the checkpoint");
    int64_t after = n_correct(loaded, tape, test, x, labels);
    if (before < 0 || after < 0)
        return fail("evaluating");
    printf("saved %s; correct before %lld, after loading %lld\n", path, (long long)before,
           (long long)after);

    tg_tape_end(tape);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_batch_iter_free(it);
    tg_optim_free(opt);
    tg_nn_free(loaded);
    tg_nn_free(model);
    tg_dataset_free(train);
    tg_dataset_free(test);
    return before == after ? 0 : 1;
}
