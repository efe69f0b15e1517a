/*
 * Training end to end: a short Fashion-MNIST run that must learn, a run
 * resumed from a checkpoint of model, optimiser and RNG state that ends with
 * the weights of an uninterrupted run, a checkpoint round trip that keeps the
 * evaluation, bit-for-bit determinism for a seed, and warm steps that make
 * no heap allocation. Only the first test
 * needs the real data set (skipped with a note when it is absent); the others
 * train on a small synthetic set.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define BATCH     32
#define MAX_NAMED 16 // parameters and buffers of the models below
#define MAX_STATE 32 // optimiser state tensors
#define N_CLASSES 10
#define DATA_SEED 1000 // order of the training batches, the same for every run

/* ---- A training run ---------------------------------------------------------- */

/* Everything one run owns; a resumed run rebuilds it all from scratch. */
struct run {
    struct tg_rng rng; // initial weights, then dropout masks; outlives the model
    struct tg_nn_module *model;
    struct tg_param named[MAX_NAMED]; // parameters and buffers, state_dict order
    size_t n_named;
    struct tg_tensor *params[MAX_NAMED]; // what the optimiser updates
    size_t n_params;
    struct tg_optim *opt;
    struct tg_tape *tape;
    struct tg_batch_iter *it;
    struct tg_tensor *x;
    int32_t labels[BATCH];
    int64_t step;
};

/* Synthetic model for 1x8x8 inputs, with batch norm buffers and dropout. */
static struct tg_nn_module *synthetic_model(struct tg_rng *rng)
{
    struct tg_conv2d_params same = TG_CONV2D_DEFAULT;
    same.pad_h = same.pad_w = 1;
    struct tg_pool2d_params pool = {2, 2, 2, 2, 0, 0, true};
    struct tg_nn_module *m = tg_nn_sequential_new();
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(
            tg_nn_sequential_add(m, "conv1", tg_nn_conv2d_new(1, 4, 3, 3, &same, true, rng)),
            TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(
                             m, "bn1", tg_nn_batch_norm2d_new(4, TG_NN_BN_EPS, TG_NN_BN_MOMENTUM)),
                     TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "relu1", tg_nn_relu_new()), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "pool1", tg_nn_max_pool2d_new(&pool)), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "flatten", tg_nn_flatten_new(1)), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "fc1", tg_nn_linear_new(4 * 4 * 4, 32, true, rng)),
                     TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "relu2", tg_nn_relu_new()), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "drop", tg_nn_dropout_new(0.25f, rng)), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "fc2", tg_nn_linear_new(32, N_CLASSES, true, rng)),
                     TG_OK);
    return m;
}

/* The example's CNN, for 1x28x28 Fashion-MNIST images. */
static struct tg_nn_module *fashion_model(struct tg_rng *rng)
{
    struct tg_conv2d_params same = TG_CONV2D_DEFAULT;
    same.pad_h = same.pad_w = 1;
    struct tg_pool2d_params pool = {2, 2, 2, 2, 0, 0, true};
    struct tg_nn_module *m = tg_nn_sequential_new();
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(
            tg_nn_sequential_add(m, "conv1", tg_nn_conv2d_new(1, 8, 3, 3, &same, true, rng)),
            TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "relu1", tg_nn_relu_new()), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "pool1", tg_nn_max_pool2d_new(&pool)), TG_OK);
    ck_assert_int_eq(
            tg_nn_sequential_add(m, "conv2", tg_nn_conv2d_new(8, 16, 3, 3, &same, true, rng)),
            TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "relu2", tg_nn_relu_new()), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "pool2", tg_nn_max_pool2d_new(&pool)), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "flatten", tg_nn_flatten_new(1)), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(m, "fc", tg_nn_linear_new(16 * 7 * 7, 10, true, rng)),
                     TG_OK);
    return m;
}

/*
 * Build a run: model from seed (weights drawn from r->rng, which then drives
 * dropout), Adam with the given learning rate, an iterator over ds shuffled
 * from DATA_SEED.
 */
static void run_init(struct run *r,
                     struct tg_nn_module *(*build)(struct tg_rng *),
                     uint64_t seed,
                     const struct tg_dataset *ds,
                     double lr)
{
    memset(r, 0, sizeof(*r));
    tg_rng_seed(&r->rng, seed);
    r->model = build(&r->rng);
    ck_assert_int_eq(tg_nn_params(r->model, r->named, MAX_NAMED, true, &r->n_named), TG_OK);
    for (size_t i = 0; i < r->n_named; i++)
        if (!r->named[i].is_buffer)
            r->params[r->n_params++] = r->named[i].tensor;
    struct tg_adam_opts ao = TG_ADAM_OPTS_INIT;
    ao.lr = lr;
    r->opt = tg_optim_new_adam(r->params, r->n_params, &ao);
    ck_assert_msg(r->opt != NULL, "%s", tg_last_error());
    struct tg_batch_opts bo = {.batch_size = BATCH, .shuffle = true, .seed = DATA_SEED};
    r->it = tg_batch_iter_new(ds, &bo);
    ck_assert_ptr_nonnull(r->it);
    r->x = tg_tensor_new(4, (int64_t[]){BATCH, 1, ds->height, ds->width});
    ck_assert_ptr_nonnull(r->x);
    r->tape = tg_tape_new();
    ck_assert_ptr_nonnull(r->tape);
}

static void run_free(struct run *r)
{
    tg_tape_free(r->tape);
    tg_tensor_free(r->x);
    tg_batch_iter_free(r->it);
    tg_optim_free(r->opt);
    tg_nn_free(r->model);
}

/* One optimiser step on the next batch (moving to the next epoch at the end of
 * one); returns the batch's mean loss. */
static float run_step(struct run *r)
{
    int64_t n = tg_batch_iter_next(r->it, r->x, r->labels);
    if (n == 0)
        n = tg_batch_iter_next(r->it, r->x, r->labels);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(tg_tape_begin(r->tape), TG_OK);
    struct tg_tensor *loss =
            tg_loss_cross_entropy(tg_nn_forward(r->model, r->x), r->labels, TG_REDUCE_MEAN, 0.0f);
    ck_assert_msg(loss != NULL, "%s", tg_last_error());
    ck_assert_int_eq(tg_tape_backward(r->tape, loss, NULL, 0), TG_OK);
    ck_assert_msg(tg_optim_step(r->opt) == TG_OK, "%s", tg_last_error());
    float value = loss->data[0];
    tg_optim_zero_grad(r->opt);
    ck_assert_int_eq(tg_tape_end(r->tape), TG_OK);
    tg_tape_reset(r->tape);
    r->step++;
    return value;
}

/* Position a fresh run's iterator where a run of `step` steps left its own. */
static void run_seek(struct run *r, int64_t step)
{
    int64_t per_epoch = tg_batch_iter_n_batches(r->it);
    tg_batch_iter_set_epoch(r->it, step / per_epoch);
    for (int64_t b = 0; b < step % per_epoch; b++)
        ck_assert_int_gt(tg_batch_iter_next(r->it, r->x, r->labels), 0);
    r->step = step;
}

/*
 * Evaluate without recording, in eval mode, over ds in fixed order. Writes
 * the logits (n_items x 10) when out is not NULL; returns the number correct.
 */
static int64_t run_eval(struct run *r, const struct tg_dataset *ds, float *out)
{
    struct tg_batch_opts bo = {.batch_size = BATCH};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &bo);
    struct tg_tensor *x = tg_tensor_new(4, (int64_t[]){BATCH, 1, ds->height, ds->width});
    ck_assert(it != NULL && x != NULL);
    int32_t labels[BATCH];
    ck_assert_int_eq(tg_tape_begin(r->tape), TG_OK);
    bool was_enabled = tg_tape_set_grad_enabled(r->tape, false);
    tg_nn_set_training(r->model, false);
    int64_t correct = 0;
    int64_t n;
    while ((n = tg_batch_iter_next(it, x, labels)) > 0) {
        struct tg_tensor *logits = tg_nn_forward(r->model, x);
        ck_assert_msg(logits != NULL, "%s", tg_last_error());
        ck_assert_uint_eq(tg_tape_n_entries(r->tape), 0); // nothing recorded
        for (int64_t i = 0; i < n; i++) {
            const float *row = logits->data + i * N_CLASSES;
            int best = 0;
            for (int c = 1; c < N_CLASSES; c++)
                best = row[c] > row[best] ? c : best;
            correct += best == labels[i];
        }
        if (out != NULL) {
            memcpy(out, logits->data, (size_t)(n * N_CLASSES) * sizeof(float));
            out += n * N_CLASSES;
        }
        tg_tape_reset(r->tape);
    }
    ck_assert_int_eq(n, 0);
    tg_nn_set_training(r->model, true);
    tg_tape_set_grad_enabled(r->tape, was_enabled);
    ck_assert_int_eq(tg_tape_end(r->tape), TG_OK);
    tg_tensor_free(x);
    tg_batch_iter_free(it);
    return correct;
}

/* Whether every parameter and buffer of two runs is equal bit for bit. */
static bool same_weights(const struct run *a, const struct run *b)
{
    ck_assert_uint_eq(a->n_named, b->n_named);
    for (size_t i = 0; i < a->n_named; i++) {
        const struct tg_tensor *ta = a->named[i].tensor;
        const struct tg_tensor *tb = b->named[i].tensor;
        ck_assert_int_eq(ta->n_elems, tb->n_elems);
        if (memcmp(ta->data, tb->data, (size_t)ta->n_elems * sizeof(float)) != 0)
            return false;
    }
    return true;
}

/* ---- Checkpoints of a run ------------------------------------------------------- */

/* The run's parameters and buffers as the checkpoint calls take them. */
static void run_named(const struct run *r, const char **names, struct tg_tensor **tensors)
{
    for (size_t i = 0; i < r->n_named; i++) {
        names[i] = r->named[i].name;
        tensors[i] = r->named[i].tensor;
    }
}

/*
 * Save the model's state_dict, and with `full` also the optimiser's state
 * ("optimizer.state.<i>.exp_avg", ...), its step count and the RNG state.
 */
static void run_save(struct run *r, const char *path, bool full)
{
    const char *names[MAX_NAMED];
    struct tg_tensor *tensors[MAX_NAMED];
    run_named(r, names, tensors);
    enum tg_status st = tg_train_state_save(path, (int)r->n_named, names,
                                            (const struct tg_tensor *const *)tensors,
                                            full ? r->opt : NULL, full ? &r->rng : NULL, 0, NULL);
    ck_assert_msg(st == TG_OK, "%s", tg_last_error());
}

/* Load what run_save() wrote into a freshly built run. */
static void run_load(struct run *r, const char *path, bool full, bool restore_rng)
{
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_msg(ck != NULL, "%s", tg_last_error());
    const char *names[MAX_NAMED];
    struct tg_tensor *tensors[MAX_NAMED];
    run_named(r, names, tensors);
    enum tg_status st =
            tg_train_state_read(ck, (int)r->n_named, names, tensors, full ? r->opt : NULL,
                                full && restore_rng ? &r->rng : NULL, NULL);
    ck_assert_msg(st == TG_OK, "%s", tg_last_error());
    tg_checkpoint_close(ck);
}

/* ---- Data and files ------------------------------------------------------------ */

/*
 * A synthetic 10-class set of 8x8 images: noise in [0, 0.3) with a 2x2 block
 * of ones whose position gives the class. The arrays are the caller's (free
 * them with synthetic_free, not tg_dataset_free).
 */
static struct tg_dataset synthetic_set(int64_t n, uint64_t seed)
{
    struct tg_dataset ds = {.n_items = n, .height = 8, .width = 8, .n_classes = N_CLASSES};
    ds.images = malloc((size_t)(n * 64) * sizeof(float));
    ds.labels = malloc((size_t)n * sizeof(int32_t));
    ds.std = 1.0f;
    ck_assert(ds.images != NULL && ds.labels != NULL);
    uint64_t st = seed;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = (int32_t)tu_rand_int(&st, N_CLASSES);
        float *img = ds.images + i * 64;
        for (int k = 0; k < 64; k++)
            img[k] = tu_rand_uniform(&st, 0.0f, 0.3f);
        int row = 2 * (c / 4) + 1;
        int col = 2 * (c % 4);
        for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
                img[(row + dy) * 8 + col + dx] = 1.0f;
        ds.labels[i] = c;
    }
    return ds;
}

static void synthetic_free(struct tg_dataset *ds)
{
    free(ds->images);
    free(ds->labels);
}

static char tmp_dir[64];

static void tmp_setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/tg-test-train-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static const char *tmp_path(const char *name)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
    return path;
}

static void tmp_teardown(void)
{
    const char *files[] = {"model.safetensors", "resume.safetensors"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(tmp_path(files[i]));
    rmdir(tmp_dir);
}

/* ---- Tests ------------------------------------------------------------------------ */

/* Bars of the short real run (3000 training images, 2 epochs, Adam lr 2e-3),
 * stated here and in the failure messages. */
#define SHORT_N_TRAIN   3000
#define SHORT_N_TEST    2000
#define SHORT_EPOCHS    2
#define SHORT_LOSS_BAR  0.45 // mean loss of the last epoch < 0.45 x the first batch's
#define SHORT_ACC_BAR   0.72 // test accuracy on the first 2000 test images
#define SHORT_N_BATCHES ((SHORT_N_TRAIN + BATCH - 1) / BATCH)

START_TEST(test_train_fashion_mnist_short_run_learns)
{
    char probe[256];
    snprintf(probe, sizeof(probe), "%s/train-images-idx3-ubyte.gz", TG_FASHION_MNIST_DEFAULT_DIR);
    if (access(probe, R_OK) != 0) {
        printf("note: %s absent (Debian package dataset-fashion-mnist), short training run "
               "skipped\n",
               probe);
        return;
    }
    struct tg_dataset *full = tg_dataset_load_fashion_mnist(NULL, true, NULL);
    struct tg_dataset *full_test = tg_dataset_load_fashion_mnist(NULL, false, NULL);
    ck_assert_msg(full != NULL && full_test != NULL, "%s", tg_last_error());
    struct tg_dataset *train = tg_dataset_subset(full, 0, SHORT_N_TRAIN);
    struct tg_dataset *test = tg_dataset_subset(full_test, 0, SHORT_N_TEST);
    ck_assert(train != NULL && test != NULL);
    tg_dataset_free(full);
    tg_dataset_free(full_test);

    /* small layers gain little from threads, and a busy test machine makes
     * OpenMP's waiting threads cost far more than they save */
    tg_set_num_threads(1);
    struct run r;
    run_init(&r, fashion_model, 5, train, 2e-3);
    ck_assert_int_eq(tg_batch_iter_n_batches(r.it), SHORT_N_BATCHES);
    float first = run_step(&r);
    for (int64_t s = 1; s < (SHORT_EPOCHS - 1) * SHORT_N_BATCHES; s++)
        run_step(&r);
    double last_epoch = 0.0;
    for (int64_t s = 0; s < SHORT_N_BATCHES; s++)
        last_epoch += (double)run_step(&r);
    last_epoch /= SHORT_N_BATCHES;
    int64_t correct = run_eval(&r, test, NULL);
    double acc = (double)correct / SHORT_N_TEST;
    printf("short run: first batch loss %.4f, last epoch mean loss %.4f, test accuracy %.4f\n",
           (double)first, last_epoch, acc);
    ck_assert_msg(last_epoch < SHORT_LOSS_BAR * (double)first,
                  "last epoch's mean loss %.4f is not below %.2f x the first batch's %.4f",
                  last_epoch, SHORT_LOSS_BAR, (double)first);
    ck_assert_msg(acc >= SHORT_ACC_BAR, "test accuracy %.4f is below %.2f", acc, SHORT_ACC_BAR);

    /* the saved weights, loaded into a model with other weights, score the same */
    run_save(&r, tmp_path("model.safetensors"), false);
    struct run fresh;
    run_init(&fresh, fashion_model, 99, train, 2e-3);
    ck_assert(!same_weights(&r, &fresh));
    run_load(&fresh, tmp_path("model.safetensors"), false, false);
    ck_assert_int_eq(run_eval(&fresh, test, NULL), correct);
    run_free(&fresh);
    run_free(&r);
    tg_dataset_free(train);
    tg_dataset_free(test);
}
END_TEST

/* Synthetic runs: steps of an uninterrupted run, and where a resumed one stops. */
#define RESUME_STEPS 30
#define RESUME_AT    13 // mid-epoch: 256 items make 8 batches per epoch

START_TEST(test_train_resume_matches_uninterrupted_run)
{
    struct tg_dataset ds = synthetic_set(256, 11);

    struct run full;
    run_init(&full, synthetic_model, 7, &ds, 1e-2);
    for (int s = 0; s < RESUME_STEPS; s++)
        run_step(&full);

    /* interrupted: k steps, save everything, drop the run */
    struct run first;
    run_init(&first, synthetic_model, 7, &ds, 1e-2);
    for (int s = 0; s < RESUME_AT; s++)
        run_step(&first);
    run_save(&first, tmp_path("resume.safetensors"), true);
    run_free(&first);

    /* resumed: built from another seed, then loaded, positioned and continued */
    struct run resumed;
    run_init(&resumed, synthetic_model, 1234, &ds, 1e-2);
    run_load(&resumed, tmp_path("resume.safetensors"), true, true);
    ck_assert_int_eq(tg_optim_get_step(resumed.opt), RESUME_AT);
    run_seek(&resumed, RESUME_AT);
    for (int s = RESUME_AT; s < RESUME_STEPS; s++)
        run_step(&resumed);
    ck_assert_int_eq(tg_optim_get_step(resumed.opt), RESUME_STEPS);
    ck_assert_msg(same_weights(&full, &resumed), "resumed weights differ from the full run's");

    /* the optimiser's moments agree as well */
    const char *na[MAX_STATE], *nb[MAX_STATE];
    struct tg_tensor *sa[MAX_STATE], *sb[MAX_STATE];
    ck_assert_int_eq(tg_optim_state_list(full.opt, MAX_STATE, na, sa), TG_OK);
    ck_assert_int_eq(tg_optim_state_list(resumed.opt, MAX_STATE, nb, sb), TG_OK);
    for (size_t i = 0; i < tg_optim_n_state(full.opt); i++)
        ck_assert_msg(memcmp(sa[i]->data, sb[i]->data, (size_t)sa[i]->n_elems * sizeof(float)) == 0,
                      "%s differs", na[i]);

    /* the check has teeth: without the RNG state the dropout masks differ */
    struct run no_rng;
    run_init(&no_rng, synthetic_model, 1234, &ds, 1e-2);
    run_load(&no_rng, tmp_path("resume.safetensors"), true, false);
    run_seek(&no_rng, RESUME_AT);
    for (int s = RESUME_AT; s < RESUME_STEPS; s++)
        run_step(&no_rng);
    ck_assert(!same_weights(&full, &no_rng));

    run_free(&no_rng);
    run_free(&resumed);
    run_free(&full);
    synthetic_free(&ds);
}
END_TEST

START_TEST(test_train_checkpoint_reload_keeps_eval)
{
    struct tg_dataset train = synthetic_set(256, 21);
    struct tg_dataset test = synthetic_set(200, 22);
    struct run r;
    run_init(&r, synthetic_model, 3, &train, 1e-2);
    for (int s = 0; s < 40; s++)
        run_step(&r);
    float *want = malloc(200 * N_CLASSES * sizeof(float));
    float *got = malloc(200 * N_CLASSES * sizeof(float));
    ck_assert(want != NULL && got != NULL);
    int64_t correct = run_eval(&r, &test, want);
    ck_assert_msg(correct >= 150, "synthetic accuracy %" PRId64 "/200 too low to compare", correct);
    run_save(&r, tmp_path("model.safetensors"), false);

    /* a fresh model with other weights and untouched running statistics */
    struct run fresh;
    run_init(&fresh, synthetic_model, 4, &train, 1e-2);
    ck_assert(!same_weights(&r, &fresh));
    run_load(&fresh, tmp_path("model.safetensors"), false, false);
    ck_assert(same_weights(&r, &fresh)); // buffers (bn1.running_*) included
    ck_assert_int_eq(run_eval(&fresh, &test, got), correct);
    ck_assert_int_eq(memcmp(got, want, 200 * N_CLASSES * sizeof(float)), 0);

    free(got);
    free(want);
    run_free(&fresh);
    run_free(&r);
    synthetic_free(&test);
    synthetic_free(&train);
}
END_TEST

START_TEST(test_train_same_seed_gives_same_weights)
{
    struct tg_dataset ds = synthetic_set(256, 31);
    struct run a, b, c;
    run_init(&a, synthetic_model, 9, &ds, 1e-2);
    run_init(&b, synthetic_model, 9, &ds, 1e-2);
    run_init(&c, synthetic_model, 10, &ds, 1e-2);
    float la = 0.0f;
    float lb = 0.0f;
    for (int s = 0; s < 20; s++) {
        la = run_step(&a);
        lb = run_step(&b);
        run_step(&c);
    }
    ck_assert_msg(memcmp(&la, &lb, sizeof(la)) == 0, "losses %a and %a", (double)la, (double)lb);
    ck_assert_msg(same_weights(&a, &b), "two runs with seed 9 differ");
    ck_assert_msg(!same_weights(&a, &c), "seeds 9 and 10 gave the same weights");
    run_free(&c);
    run_free(&b);
    run_free(&a);
    synthetic_free(&ds);
}
END_TEST

/*
 * After the first steps, a training step (batch, forward, backward, Adam,
 * zeroing) makes no heap allocation, with one kernel thread and with two; and
 * two runs on two threads end with the same weights bit for bit.
 */
START_TEST(test_train_warm_steps_allocate_nothing)
{
    struct tg_dataset ds = synthetic_set(256, 41);
    int saved = tg_get_num_threads();
    for (int threads = 1; threads <= 2; threads++) {
        tg_set_num_threads(threads);
        struct run a, b;
        run_init(&a, synthetic_model, 12, &ds, 1e-2);
        run_init(&b, synthetic_model, 12, &ds, 1e-2);
        for (int s = 0; s < 3; s++)
            run_step(&a);
        uint64_t before = tg_alloc_count();
        for (int s = 3; s < 20; s++) // crosses an epoch boundary (8 batches per epoch)
            run_step(&a);
        ck_assert_msg(tg_alloc_count() == before,
                      "%d thread(s): %" PRIu64 " allocations in warm steps", threads,
                      tg_alloc_count() - before);
        for (int s = 0; s < 20; s++)
            run_step(&b);
        ck_assert_msg(same_weights(&a, &b), "two runs on %d thread(s) differ", threads);
        run_free(&b);
        run_free(&a);
    }
    tg_set_num_threads(saved);
    synthetic_free(&ds);
}
END_TEST

static Suite *train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("fashion_mnist");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_set_timeout(tc, 240); // about 3 s alone; allow for a busy machine
    tcase_add_test(tc, test_train_fashion_mnist_short_run_learns);
    suite_add_tcase(s, tc);

    tc = tcase_create("resume");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_train_resume_matches_uninterrupted_run);
    suite_add_tcase(s, tc);

    tc = tcase_create("checkpoint");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_train_checkpoint_reload_keeps_eval);
    suite_add_tcase(s, tc);

    tc = tcase_create("determinism");
    tcase_set_timeout(tc, 120); // a few seconds alone; sanitizers and a busy machine slow it
    tcase_add_test(tc, test_train_same_seed_gives_same_weights);
    tcase_add_test(tc, test_train_warm_steps_allocate_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(train_suite());
}
