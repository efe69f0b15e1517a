/*
 * `tapegrad eval`: test accuracy, loss and confusion matrix of a checkpoint,
 * saved by `tapegrad train` or written from a PyTorch state_dict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "models.h"

#define CMD    "eval"
#define PREFIX "tapegrad eval"

static const char usage[] =
        "usage: tapegrad eval --checkpoint FILE [options]\n"
        "Evaluate a checkpoint on the Fashion-MNIST test set.\n"
        "  --checkpoint FILE       safetensors file with the model's weights\n"
        "  --model mlp|cnn|cnn-bn  its architecture (from the file's metadata,"
        " else cnn)\n"
        "  --data DIR              directory of the IDX files (" TG_FASHION_MNIST_DEFAULT_DIR ")\n"
        "  --threads N             threads of the kernels (all cores)\n";

static void print_confusion(const struct eval_result *ev)
{
    printf("confusion matrix (rows: true class, columns: predicted)\n%14s", "");
    for (int j = 0; j < 10; j++)
        printf(" %5d", j);
    printf("\n");
    for (int i = 0; i < 10; i++) {
        printf("%d %-12s", i, tg_fashion_mnist_class_name(i));
        for (int j = 0; j < 10; j++)
            printf(" %5lld", (long long)ev->confusion[i][j]);
        printf("\n");
    }
}

static int evaluate_file(const char *path, const char *model_name, const char *data)
{
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    if (ck == NULL) {
        fprintf(stderr, PREFIX ": %s\n", tg_last_error());
        return CLI_EXIT_FAILURE;
    }
    const char *saved_model = tg_checkpoint_meta_get(ck, "model");
    if (model_name == NULL)
        model_name = saved_model && model_is_known(saved_model) ? saved_model : "cnn";

    struct tg_rng rng;
    tg_rng_seed(&rng, 1);
    struct tg_nn_module *model = model_build(model_name, &rng);
    struct tg_param *tensors = NULL;
    size_t n = 0;
    const char **names = NULL;
    struct tg_tensor **ts = NULL;
    struct tg_dataset *test = NULL;
    struct tg_tape *tape = NULL;
    struct eval_result ev;
    enum tg_status st = model ? model_tensors(model, &tensors, &n) : tg_last_status();
    if (st == TG_OK) {
        names = calloc(n, sizeof(*names));
        ts = calloc(n, sizeof(*ts));
        if (names == NULL || ts == NULL)
            st = tg_error_set(TG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; st == TG_OK && i < n; i++) {
        names[i] = tensors[i].name;
        ts[i] = tensors[i].tensor;
    }
    struct tg_checkpoint_load_opts lo = {true}; // a training checkpoint also holds optimiser state
    if (st == TG_OK)
        st = tg_checkpoint_read(ck, (int)n, names, ts, &lo);
    if (st == TG_OK) {
        static const struct tg_dataset_opts compact = {.compact = true};
        test = tg_dataset_load_fashion_mnist(data, false, &compact);
        tape = tg_tape_new();
        st = test && tape ? tg_tape_begin(tape) : tg_last_status();
    }
    if (st == TG_OK) {
        st = evaluate(model, test, tape, EVAL_BATCH, &ev);
        tg_tape_end(tape);
    }
    if (st == TG_OK) {
        printf("model %s, checkpoint %s, %lld test images\n", model_name, path, (long long)ev.n);
        printf("test accuracy %.4f, test loss %.4f\n", ev.accuracy, ev.loss);
        print_confusion(&ev);
    } else {
        fprintf(stderr, PREFIX ": %s\n", tg_last_error());
    }
    tg_tape_free(tape);
    tg_dataset_free(test);
    free(ts);
    free(names);
    free(tensors);
    tg_nn_free(model);
    tg_checkpoint_close(ck);
    return st == TG_OK ? 0 : CLI_EXIT_FAILURE;
}

int cmd_eval(int argc, char **argv)
{
    const char *path = NULL, *model = NULL, *data = NULL;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0)
            return cli_usage_error(CMD, "unexpected argument '%s'", a);
        if (strcmp(a, "--checkpoint") != 0 && strcmp(a, "--model") != 0 &&
            strcmp(a, "--data") != 0 && strcmp(a, "--threads") != 0)
            return cli_usage_error(CMD, "unknown option '%s'", a);
        if (i + 1 >= argc)
            return cli_usage_error(CMD, "%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--checkpoint") == 0) {
            path = v;
        } else if (strcmp(a, "--model") == 0) {
            if (!model_is_known(v))
                return cli_usage_error(CMD, "--model: '%s' is not one of %s", v, MODEL_NAMES);
            model = v;
        } else if (strcmp(a, "--data") == 0) {
            if (access(v, R_OK) != 0)
                return cli_usage_error(CMD, "--data: cannot read directory '%s'", v);
            data = v;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_parse_int(CMD, a, v, 1, 1024, &threads))
                return CLI_EXIT_USAGE;
        } else {
            return cli_usage_error(CMD, "unknown option '%s'", a);
        }
    }
    if (path == NULL)
        return cli_usage_error(CMD, "--checkpoint FILE is required");
    if (threads > 0)
        tg_set_num_threads((int)threads);
    return evaluate_file(path, model, data);
}
