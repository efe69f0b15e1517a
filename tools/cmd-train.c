/*
 * `tapegrad train`: train a model on Fashion-MNIST with progress, per-epoch
 * evaluation, metrics, checkpoints that resume exactly, and Ctrl-C saving.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "models.h"

#define CMD    "train"
#define PREFIX "tapegrad train"

struct train_opts {
    const char *model;
    long epochs;
    long batch;
    double lr;
    const char *optimizer;
    const char *schedule;
    long seed;
    long threads;
    const char *data;
    const char *save;
    const char *resume;
    const char *init;
    bool shuffle;
    double grad_clip;
    const char *metrics;
    bool grad_stats;
    double grad_low, grad_high;
    bool quiet;
    long limit;
    long limit_test;
};

static const char usage[] =
        "usage: tapegrad train [options]\n"
        "Train a model on Fashion-MNIST (defaults: the TensorFlow layers-tutorial CNN, Adam).\n"
        "  --model mlp|cnn|cnn-bn  model to train (cnn)\n"
        "  --epochs N              epochs to run (12)\n"
        "  --batch N               mini-batch size (64)\n"
        "  --lr X                  learning rate (1e-3 for adam/adamw, 0.05 for sgd)\n"
        "  --optimizer sgd|adam|adamw  optimiser (adam); sgd uses momentum 0.9\n"
        "  --schedule none|step|cosine  learning rate per epoch: constant, x0.1 every\n"
        "                          third of the run, or cosine annealing to 0 (cosine)\n"
        "  --seed N                seed of initialisation, shuffling and dropout (1)\n"
        "  --threads N             threads of the kernels (all cores)\n"
        "  --data DIR              directory of the four IDX files (" TG_FASHION_MNIST_DEFAULT_DIR
        ")\n"
        "  --save FILE             write a checkpoint after each epoch and on Ctrl-C\n"
        "  --resume FILE           continue the run saved in FILE\n"
        "  --init FILE             start from a checkpoint's weights\n"
        "  --no-shuffle            visit the training set in file order\n"
        "  --grad-clip X           clip gradients to global L2 norm X\n"
        "  --metrics FILE          write one CSV line per epoch\n"
        "  --grad-stats            print per-parameter gradient norms each epoch\n"
        "  --grad-low X, --grad-high X  warn when the global norm leaves [X, X] (1e-6, 1e3)\n"
        "  --limit N               use only the first N training images\n"
        "  --limit-test N          evaluate on only the first N test images\n"
        "  --quiet                 print only the final line\n";

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- Command line ----------------------------------------------------------- */

static bool parse_double(const char *opt, const char *text, double lo, double hi, double *v)
{
    char *end;
    double x = strtod(text, &end);
    if (end == text || *end != '\0' || !(x >= lo && x <= hi)) {
        cli_usage_error(CMD, "%s: '%s' is not a number in [%g, %g]", opt, text, lo, hi);
        return false;
    }
    *v = x;
    return true;
}

static bool is_valued_option(const char *a)
{
    static const char *const names[] = {
            "--model",     "--schedule", "--epochs",   "--batch",     "--lr",     "--optimizer",
            "--seed",      "--threads",  "--data",     "--save",      "--resume", "--init",
            "--grad-clip", "--metrics",  "--grad-low", "--grad-high", "--limit",  "--limit-test",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(a, names[i]) == 0)
            return true;
    return false;
}

static int parse_opts(int argc, char **argv, struct train_opts *o)
{
    *o = (struct train_opts){.model = "cnn",
                             .epochs = 12,
                             .batch = 64,
                             .lr = -1,
                             .optimizer = "adam",
                             .schedule = "cosine",
                             .seed = 1,
                             .shuffle = true,
                             .grad_low = 1e-6,
                             .grad_high = 1e3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        bool flag = strcmp(a, "--no-shuffle") == 0 || strcmp(a, "--grad-stats") == 0 ||
                    strcmp(a, "--quiet") == 0;
        if (flag) {
            if (strcmp(a, "--no-shuffle") == 0)
                o->shuffle = false;
            else if (strcmp(a, "--grad-stats") == 0)
                o->grad_stats = true;
            else
                o->quiet = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return cli_usage_error(CMD, "unexpected argument '%s'", a);
        if (!is_valued_option(a))
            return cli_usage_error(CMD, "unknown option '%s'", a);
        if (i + 1 >= argc)
            return cli_usage_error(CMD, "%s needs a value", a);
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(a, "--model") == 0) {
            if (!model_is_known(v))
                return cli_usage_error(CMD, "--model: '%s' is not one of %s", v, MODEL_NAMES);
            o->model = v;
        } else if (strcmp(a, "--epochs") == 0) {
            ok = cli_parse_int(CMD, a, v, 1, 100000, &o->epochs);
        } else if (strcmp(a, "--batch") == 0) {
            ok = cli_parse_int(CMD, a, v, 1, 65536, &o->batch);
        } else if (strcmp(a, "--lr") == 0) {
            ok = parse_double(a, v, 1e-12, 100, &o->lr);
        } else if (strcmp(a, "--optimizer") == 0) {
            if (strcmp(v, "sgd") != 0 && strcmp(v, "adam") != 0 && strcmp(v, "adamw") != 0)
                return cli_usage_error(CMD, "--optimizer: '%s' is not one of sgd|adam|adamw", v);
            o->optimizer = v;
        } else if (strcmp(a, "--schedule") == 0) {
            if (strcmp(v, "none") != 0 && strcmp(v, "step") != 0 && strcmp(v, "cosine") != 0)
                return cli_usage_error(CMD, "--schedule: '%s' is not one of none|step|cosine", v);
            o->schedule = v;
        } else if (strcmp(a, "--seed") == 0) {
            ok = cli_parse_int(CMD, a, v, 0, 2147483647L, &o->seed);
        } else if (strcmp(a, "--threads") == 0) {
            ok = cli_parse_int(CMD, a, v, 1, 1024, &o->threads);
        } else if (strcmp(a, "--data") == 0) {
            if (access(v, R_OK) != 0)
                return cli_usage_error(CMD, "--data: cannot read directory '%s'", v);
            o->data = v;
        } else if (strcmp(a, "--save") == 0) {
            o->save = v;
        } else if (strcmp(a, "--resume") == 0) {
            o->resume = v;
        } else if (strcmp(a, "--init") == 0) {
            o->init = v;
        } else if (strcmp(a, "--grad-clip") == 0) {
            ok = parse_double(a, v, 1e-12, 1e12, &o->grad_clip);
        } else if (strcmp(a, "--metrics") == 0) {
            o->metrics = v;
        } else if (strcmp(a, "--grad-low") == 0) {
            ok = parse_double(a, v, 0, 1e30, &o->grad_low);
        } else if (strcmp(a, "--grad-high") == 0) {
            ok = parse_double(a, v, 0, 1e30, &o->grad_high);
        } else if (strcmp(a, "--limit") == 0) {
            ok = cli_parse_int(CMD, a, v, 1, 100000000L, &o->limit);
        } else if (strcmp(a, "--limit-test") == 0) {
            ok = cli_parse_int(CMD, a, v, 1, 100000000L, &o->limit_test);
        } else {
            return cli_usage_error(CMD, "unknown option '%s'", a);
        }
        if (!ok)
            return CLI_EXIT_USAGE;
    }
    if (o->resume && o->init)
        return cli_usage_error(CMD, "--resume and --init exclude each other");
    if (o->lr < 0)
        o->lr = strcmp(o->optimizer, "sgd") == 0 ? 0.05 : 1e-3;
    return 0;
}

/* ---- Run state --------------------------------------------------------------- */

struct run {
    struct train_opts o;
    struct tg_rng rng;
    struct tg_nn_module *model;
    struct tg_param *tensors; // parameters and buffers, checkpoint order
    size_t n_tensors;
    const char **ck_names;         // tensors[i].name, as the checkpoint calls take them
    struct tg_tensor **ck_tensors; // tensors[i].tensor, likewise
    struct tg_tensor **params;     // the optimised ones
    size_t n_params;
    const char **param_names;
    struct tg_optim *opt;
    struct tg_dataset *train, *test;
    struct tg_batch_iter *it;
    struct tg_tape *tape;
    struct tg_tensor *x;
    int32_t *labels;
    int64_t epoch;   // epochs completed
    int64_t batch;   // batches completed in the current epoch
    double *grad_sq; // per parameter, sum over the epoch's steps of norm^2
    FILE *metrics;
};

static enum tg_status make_optimizer(struct run *r)
{
    if (strcmp(r->o.optimizer, "sgd") == 0) {
        struct tg_sgd_opts so = TG_SGD_OPTS_INIT;
        so.lr = r->o.lr;
        so.momentum = 0.9;
        r->opt = tg_optim_new_sgd(r->params, r->n_params, &so);
    } else {
        struct tg_adam_opts ao = TG_ADAM_OPTS_INIT;
        if (strcmp(r->o.optimizer, "adamw") == 0)
            ao = (struct tg_adam_opts)TG_ADAMW_OPTS_INIT;
        ao.lr = r->o.lr;
        r->opt = strcmp(r->o.optimizer, "adam") == 0
                         ? tg_optim_new_adam(r->params, r->n_params, &ao)
                         : tg_optim_new_adamw(r->params, r->n_params, &ao);
    }
    return r->opt ? TG_OK : tg_last_status();
}

static enum tg_status setup_model(struct run *r)
{
    tg_rng_seed(&r->rng, (uint64_t)r->o.seed);
    r->model = model_build(r->o.model, &r->rng);
    if (r->model == NULL)
        return tg_last_status();
    enum tg_status st = model_tensors(r->model, &r->tensors, &r->n_tensors);
    if (st != TG_OK)
        return st;
    r->params = calloc(r->n_tensors, sizeof(*r->params));
    r->param_names = calloc(r->n_tensors, sizeof(*r->param_names));
    r->grad_sq = calloc(r->n_tensors, sizeof(*r->grad_sq));
    r->ck_names = calloc(r->n_tensors, sizeof(*r->ck_names));
    r->ck_tensors = calloc(r->n_tensors, sizeof(*r->ck_tensors));
    if (r->params == NULL || r->param_names == NULL || r->grad_sq == NULL || r->ck_names == NULL ||
        r->ck_tensors == NULL)
        return tg_error_set(TG_ERR_NOMEM, "train: out of memory");
    for (size_t i = 0; i < r->n_tensors; i++) {
        r->ck_names[i] = r->tensors[i].name;
        r->ck_tensors[i] = r->tensors[i].tensor;
        if (!r->tensors[i].is_buffer) {
            r->param_names[r->n_params] = r->tensors[i].name;
            r->params[r->n_params++] = r->tensors[i].tensor;
        }
    }
    return make_optimizer(r);
}

static enum tg_status setup_data(struct run *r)
{
    /* Pixel bytes, turned into floats batch by batch: a quarter of the memory */
    static const struct tg_dataset_opts compact = {.compact = true};
    r->train = tg_dataset_load_fashion_mnist(r->o.data, true, &compact);
    if (r->train == NULL)
        return tg_last_status();
    if (r->o.limit > 0 && r->o.limit < r->train->n_items) {
        struct tg_dataset *sub = tg_dataset_subset(r->train, 0, r->o.limit);
        tg_dataset_free(r->train);
        r->train = sub;
        if (sub == NULL)
            return tg_last_status();
    }
    r->test = tg_dataset_load_fashion_mnist(r->o.data, false, &compact);
    if (r->test == NULL)
        return tg_last_status();
    if (r->o.limit_test > 0 && r->o.limit_test < r->test->n_items) {
        struct tg_dataset *sub = tg_dataset_subset(r->test, 0, r->o.limit_test);
        tg_dataset_free(r->test);
        r->test = sub;
        if (sub == NULL)
            return tg_last_status();
    }
    struct tg_batch_opts bo = {r->o.batch, r->o.shuffle, (uint64_t)r->o.seed, false};
    r->it = tg_batch_iter_new(r->train, &bo);
    r->x = tg_tensor_new(4, (int64_t[]){r->o.batch, 1, r->train->height, r->train->width});
    r->labels = malloc((size_t)r->o.batch * sizeof(*r->labels));
    r->tape = tg_tape_new();
    if (r->it == NULL || r->x == NULL || r->tape == NULL)
        return tg_last_status();
    if (r->labels == NULL)
        return tg_error_set(TG_ERR_NOMEM, "train: out of memory");
    return TG_OK;
}

static void run_free(struct run *r)
{
    if (r->metrics)
        fclose(r->metrics);
    tg_tape_free(r->tape);
    tg_tensor_free(r->x);
    free(r->labels);
    tg_batch_iter_free(r->it);
    tg_dataset_free(r->train);
    tg_dataset_free(r->test);
    tg_optim_free(r->opt);
    free(r->params);
    free(r->param_names);
    free(r->grad_sq);
    free(r->ck_tensors);
    free(r->ck_names);
    free(r->tensors);
    tg_nn_free(r->model);
}

/* ---- Checkpoints ------------------------------------------------------------- */

/*
 * A checkpoint holds the training state of tg_train_state_save(): the
 * model's state_dict (PyTorch names), the optimiser's state under
 * "optimizer.", its step and the RNG state; the metadata adds the run's
 * position (epoch, batch) and settings.
 */
static enum tg_status save_checkpoint(struct run *r, const char *path)
{
    char epoch[32], batch[32], seed[32], lr[32];
    snprintf(epoch, sizeof(epoch), "%lld", (long long)r->epoch);
    snprintf(batch, sizeof(batch), "%lld", (long long)r->batch);
    snprintf(seed, sizeof(seed), "%ld", r->o.seed);
    snprintf(lr, sizeof(lr), "%.17g", r->o.lr);
    struct tg_checkpoint_meta meta[] = {
            {"format", "tapegrad-train-1"},
            {"model", r->o.model},
            {"optimizer", r->o.optimizer},
            {"epoch", epoch},
            {"batch", batch},
            {"seed", seed},
            {"lr", lr},
    };
    return tg_train_state_save(path, (int)r->n_tensors, r->ck_names,
                               (const struct tg_tensor *const *)r->ck_tensors, r->opt, &r->rng,
                               (int)(sizeof(meta) / sizeof(meta[0])), meta);
}

static bool parse_i64(const char *s, int64_t *v)
{
    char *end;
    if (s == NULL)
        return false;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || x < 0)
        return false;
    *v = x;
    return true;
}

/* The saved run's model, and with resume its optimiser and position, fit this run. */
static enum tg_status check_saved_run(const struct run *r,
                                      const struct tg_checkpoint *ck,
                                      const char *path,
                                      bool resume,
                                      int64_t *epoch,
                                      int64_t *batch)
{
    const char *model = tg_checkpoint_meta_get(ck, "model");
    if (model != NULL && strcmp(model, r->o.model) != 0)
        return tg_error_set(TG_ERR_FORMAT, "%s: holds a '%s' model, --model is '%s'", path, model,
                            r->o.model);
    if (!resume)
        return TG_OK;
    const char *opt_name = tg_checkpoint_meta_get(ck, "optimizer");
    if (opt_name == NULL || strcmp(opt_name, r->o.optimizer) != 0)
        return tg_error_set(TG_ERR_FORMAT, "%s: saved with optimizer '%s', --optimizer is '%s'",
                            path, opt_name ? opt_name : "?", r->o.optimizer);
    if (!parse_i64(tg_checkpoint_meta_get(ck, "epoch"), epoch) ||
        !parse_i64(tg_checkpoint_meta_get(ck, "batch"), batch))
        return tg_error_set(TG_ERR_FORMAT, "%s: metadata lacks the run's position", path);
    return TG_OK;
}

/* Load the model's tensors; with resume also the optimiser, RNG and position. */
static enum tg_status load_checkpoint(struct run *r, const char *path, bool resume)
{
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    if (ck == NULL)
        return tg_last_status();
    int64_t epoch = 0;
    int64_t batch = 0;
    enum tg_status st = check_saved_run(r, ck, path, resume, &epoch, &batch);
    struct tg_checkpoint_load_opts lo = {true}; // an --init file may hold optimiser state
    if (st == TG_OK)
        st = tg_train_state_read(ck, (int)r->n_tensors, r->ck_names, r->ck_tensors,
                                 resume ? r->opt : NULL, resume ? &r->rng : NULL, &lo);
    if (st == TG_OK && resume) {
        r->epoch = epoch;
        r->batch = batch;
    }
    tg_checkpoint_close(ck);
    return st;
}

/* ---- Training ------------------------------------------------------------------ */

static void
progress(const struct run *r, int64_t done, int64_t total, double loss, double rate, double eta)
{
    int width = 30;
    int fill = total > 0 ? (int)(width * done / total) : width;
    fprintf(stderr, "\repoch %lld/%ld [", (long long)r->epoch + 1, r->o.epochs);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '=' : (i == fill ? '>' : ' '), stderr);
    fprintf(stderr, "] %lld/%lld loss %.4f %.0f samples/s ETA %d:%02d ", (long long)done,
            (long long)total, loss, rate, (int)eta / 60, (int)eta % 60);
    fflush(stderr);
}

static void grad_stats_accumulate(struct run *r)
{
    for (size_t i = 0; i < r->n_params; i++) {
        double g = tg_grad_norm(r->params[i]);
        r->grad_sq[i] += g * g;
    }
}

static void grad_stats_report(struct run *r, int64_t steps)
{
    double total = 0;
    printf("  gradient norms (RMS over %lld steps):\n", (long long)steps);
    for (size_t i = 0; i < r->n_params; i++) {
        double rms = steps > 0 ? sqrt(r->grad_sq[i] / (double)steps) : 0;
        total += rms * rms;
        printf("    %-16s %.4e\n", r->param_names[i], rms);
        r->grad_sq[i] = 0;
    }
    total = sqrt(total);
    printf("    %-16s %.4e\n", "global", total);
    if (total > r->o.grad_high)
        printf("  warning: global gradient norm %.3e is above %.3e (exploding gradients?)\n", total,
               r->o.grad_high);
    if (total < r->o.grad_low)
        printf("  warning: global gradient norm %.3e is below %.3e (vanishing gradients?)\n", total,
               r->o.grad_low);
}

/* One training step on the batch in r->x; returns the loss or NAN on failure. */
static double train_step(struct run *r, int64_t n)
{
    struct tg_tensor *logits = tg_nn_forward(r->model, r->x);
    struct tg_tensor *loss = tg_loss_cross_entropy(logits, r->labels, TG_REDUCE_MEAN, 0.0f);
    double value = (double)NAN;
    (void)n;
    if (loss != NULL && tg_tape_backward(r->tape, loss, NULL, 0) == TG_OK) {
        value = (double)loss->data[0];
        if (r->o.grad_stats)
            grad_stats_accumulate(r);
        double norm;
        if (r->o.grad_clip > 0 &&
            tg_clip_grad_norm(r->params, r->n_params, r->o.grad_clip, &norm) != TG_OK)
            value = (double)NAN;
        else if (tg_optim_step(r->opt) != TG_OK)
            value = (double)NAN;
    }
    tg_optim_zero_grad(r->opt);
    tg_tape_reset(r->tape);
    return value;
}

/* Skip the batches of the current epoch that a resumed checkpoint had done. */
static void skip_batches(struct run *r)
{
    tg_batch_iter_set_epoch(r->it, r->epoch);
    for (int64_t b = 0; b < r->batch; b++)
        tg_batch_iter_next(r->it, r->x, r->labels);
}

/* The learning rate of the epoch about to run, from --schedule. */
static enum tg_status apply_schedule(struct run *r)
{
    struct tg_lr_schedule sch = {.base_lr = r->o.lr, .kind = TG_LR_CONSTANT};
    if (strcmp(r->o.schedule, "step") == 0) {
        sch.kind = TG_LR_STEP;
        sch.step_size = r->o.epochs >= 3 ? r->o.epochs / 3 : 1;
        sch.gamma = 0.1;
    } else if (strcmp(r->o.schedule, "cosine") == 0) {
        sch.kind = TG_LR_COSINE;
        sch.t_max = r->o.epochs;
    }
    return tg_optim_set_lr(r->opt, tg_lr_schedule_at(&sch, r->epoch));
}

static int run_epoch(struct run *r, bool tty)
{
    int64_t total = tg_batch_iter_n_batches(r->it);
    double t0 = now_s(), loss_sum = 0;
    int64_t seen = 0, steps = 0, n;
    tg_nn_set_training(r->model, true);
    if (apply_schedule(r) != TG_OK) {
        fprintf(stderr, PREFIX ": %s\n", tg_last_error());
        return CLI_EXIT_FAILURE;
    }
    skip_batches(r);
    while ((n = tg_batch_iter_next(r->it, r->x, r->labels)) > 0) {
        double loss = train_step(r, n);
        if (isnan(loss)) {
            fprintf(stderr, "\n" PREFIX ": %s\n",
                    tg_last_error()[0] ? tg_last_error() : "loss is not finite");
            return CLI_EXIT_FAILURE;
        }
        loss_sum += loss * (double)n;
        seen += n;
        steps++;
        r->batch++;
        if (tty && !r->o.quiet && (r->batch % 10 == 0 || r->batch == total)) {
            double dt = now_s() - t0;
            progress(r, r->batch, total, loss_sum / (double)seen, (double)seen / dt,
                     dt / (double)steps * (double)(total - r->batch));
        }
        if (interrupted)
            return 130;
    }
    double train_loss = seen ? loss_sum / (double)seen : 0;
    struct eval_result ev;
    if (evaluate(r->model, r->test, r->tape, EVAL_BATCH, &ev) != TG_OK) {
        fprintf(stderr, "\n" PREFIX ": %s\n", tg_last_error());
        return CLI_EXIT_FAILURE;
    }
    double dt = now_s() - t0;
    r->epoch++;
    r->batch = 0;
    if (tty && !r->o.quiet)
        fputc('\n', stderr);
    if (!r->o.quiet)
        printf("epoch %lld/%ld: train loss %.4f, test loss %.4f, test accuracy %.4f, %.1f s\n",
               (long long)r->epoch, r->o.epochs, train_loss, ev.loss, ev.accuracy, dt);
    if (r->o.grad_stats)
        grad_stats_report(r, steps);
    if (r->metrics) {
        fprintf(r->metrics, "%lld,%.6f,%.6f,%.6f,%.3f\n", (long long)r->epoch, train_loss, ev.loss,
                ev.accuracy, dt);
        fflush(r->metrics);
    }
    if (r->epoch == r->o.epochs)
        printf("final: test accuracy %.4f, test loss %.4f after %lld epochs\n", ev.accuracy,
               ev.loss, (long long)r->epoch);
    fflush(stdout);
    return 0;
}

static int train_loop(struct run *r)
{
    bool tty = isatty(STDERR_FILENO);
    tg_tape_begin(r->tape);
    int rc = 0;
    while (r->epoch < r->o.epochs && rc == 0) {
        rc = run_epoch(r, tty);
        /* Ctrl-C during the evaluation: stop at the epoch boundary, not a batch later */
        if (rc == 0 && interrupted && r->epoch < r->o.epochs)
            rc = 130;
        if ((rc == 0 || rc == 130) && r->o.save) {
            if (save_checkpoint(r, r->o.save) != TG_OK) {
                fprintf(stderr, PREFIX ": %s\n", tg_last_error());
                rc = CLI_EXIT_FAILURE;
            } else if (rc == 130) {
                fprintf(stderr, "\n" PREFIX ": interrupted; saved %s (epoch %lld, batch %lld)\n",
                        r->o.save, (long long)r->epoch, (long long)r->batch);
            }
        }
    }
    tg_tape_end(r->tape);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    struct run r = {0};
    int rc = parse_opts(argc, argv, &r.o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (r.o.threads > 0)
        tg_set_num_threads((int)r.o.threads);
    /* From here Ctrl-C only sets a flag: the loop saves and stops after a batch. */
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    enum tg_status st = setup_model(&r);
    if (st == TG_OK)
        st = setup_data(&r);
    if (st == TG_OK && (r.o.resume || r.o.init))
        st = load_checkpoint(&r, r.o.resume ? r.o.resume : r.o.init, r.o.resume != NULL);
    if (st == TG_OK && r.o.metrics) {
        r.metrics = fopen(r.o.metrics, r.o.resume ? "a" : "w");
        if (r.metrics == NULL)
            st = tg_error_set(TG_ERR_IO, "cannot open metrics file %s", r.o.metrics);
        else if (!r.o.resume)
            fprintf(r.metrics, "epoch,train_loss,test_loss,test_accuracy,seconds\n");
    }
    if (st != TG_OK) {
        fprintf(stderr, PREFIX ": %s\n", tg_last_error());
        run_free(&r);
        return CLI_EXIT_FAILURE;
    }
    if (!r.o.quiet)
        printf("training %s (%lld parameters) on %lld images, %s lr %g, batch %ld, %d threads\n",
               r.o.model, (long long)tg_nn_n_elems(r.model, false), (long long)r.train->n_items,
               r.o.optimizer, r.o.lr, r.o.batch, tg_get_num_threads());
    rc = train_loop(&r);
    run_free(&r);
    return rc;
}
