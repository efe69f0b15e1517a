/*
 * The models of `tapegrad train` and `tapegrad eval`, and what they share: the
 * run state saved in checkpoints, evaluation over a data set.
 */
#ifndef TAPEGRAD_TOOLS_MODELS_H
#define TAPEGRAD_TOOLS_MODELS_H

#include <tapegrad/tapegrad.h>

/** Model names accepted by --model. */
#define MODEL_NAMES "mlp|cnn|cnn-bn"

/**
 * Build a model for 1x28x28 images and 10 classes, with PyTorch's default
 * initialisation drawn from rng. Names follow a PyTorch module whose
 * attributes are conv1, bn1, conv2, bn2, fc1, fc2 (see docs/tutorial.md).
 *   mlp:    fc1 784->512, ReLU, dropout 0.2, fc2 512->10
 *   cnn:    conv1 5x5x32 same, ReLU, max-pool 2, conv2 5x5x64 same, ReLU,
 *           max-pool 2, fc1 3136->1024, ReLU, dropout 0.4, fc2 1024->10
 *   cnn-bn: cnn with bn1 and bn2 (BatchNorm2d) after each convolution
 * @return the model, or NULL (unknown name with TG_ERR_INVALID, or the
 *         layer's failure).
 */
struct tg_nn_module *model_build(const char *name, struct tg_rng *rng);

/** Whether name is a model model_build() knows. */
bool model_is_known(const char *name);

/**
 * Images per evaluation batch: the training batch, so that evaluation reuses
 * the tape memory a training step already holds (a batch of 200 added about
 * 25 MiB to the peak of `tapegrad train` and saved 0.3 s per pass over the
 * 10000 test images).
 */
#define EVAL_BATCH 64

/** Results of evaluate(). */
struct eval_result {
    double loss;               // mean cross-entropy
    double accuracy;           // fraction correct
    int64_t n;                 // items evaluated
    int64_t confusion[10][10]; // [true][predicted]
};

/**
 * Evaluate a model (in eval mode, no recording) on a data set in fixed order.
 * @param tape a tape used for the outputs (reset before and after).
 * @return TG_OK, or the failing op's status (message kept).
 */
enum tg_status evaluate(struct tg_nn_module *model,
                        const struct tg_dataset *ds,
                        struct tg_tape *tape,
                        int64_t batch,
                        struct eval_result *res);

/**
 * List a model's parameters and buffers (checkpoint order).
 * @param out receives a new array of n entries, freed with free().
 */
enum tg_status model_tensors(const struct tg_nn_module *m, struct tg_param **out, size_t *n);

#endif
