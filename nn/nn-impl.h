/*
 * Private layout of modules, shared by the layer sources: a table of
 * callbacks per layer type, the module's own tensors, its children and a
 * flat list of every named tensor below it with full names.
 */
#ifndef TAPEGRAD_NN_IMPL_H
#define TAPEGRAD_NN_IMPL_H

#include <tapegrad/nn.h>

/* Most tensors a layer owns directly (weight, bias, two running statistics). */
#define NN_MAX_OWN 4

struct nn_layer_def {
    const char *type; // PyTorch's class name, "Conv2d"
    const char *func; // prefix of messages, "tg_nn_conv2d"
    /* y = layer(x); x is not NULL. Messages start with nn_err()'s prefix. */
    struct tg_tensor *(*forward)(struct tg_nn_module *m, struct tg_tensor *x);
};

struct nn_own {
    const char *name; // static string: "weight", "running_mean"
    struct tg_tensor *tensor;
    bool is_buffer;
};

/* Settings of each layer type; one member is used. */
union nn_config {
    struct {
        int64_t in, out;
    } linear;
    struct {
        int64_t in, out;
        struct tg_conv2d_params p;
    } conv;
    struct tg_pool2d_params pool;
    float value; // leaky slope, ELU alpha
    int start_dim;
    struct {
        float p;
        struct tg_rng *rng;
    } dropout;
    struct {
        int64_t features;
        int rank; // 2 for BatchNorm1d, 4 for BatchNorm2d
        float eps, momentum;
    } bn;
};

struct tg_nn_module {
    const struct nn_layer_def *def;
    union nn_config cfg;
    bool training;
    struct tg_nn_module *parent;
    const char *local_name; // name within the parent (owned by the parent), or NULL

    int n_own;
    struct nn_own own[NN_MAX_OWN];

    size_t n_children;
    size_t cap_children;
    struct tg_nn_module **children;
    char **child_names;

    /* Every named tensor of this module and below, full names (owned). */
    size_t n_flat;
    struct tg_param *flat;
    char *flat_names; // one block holding every flat name
};

/* A module of the given type with no tensors, in training mode; NULL with TG_ERR_NOMEM. */
struct tg_nn_module *nn_module_new(const struct nn_layer_def *def);

/*
 * Make a heap tensor of the given shape, register it under name and fill it
 * with value; parameters get requires_grad. Returns the tensor or NULL.
 */
struct tg_tensor *nn_module_add_tensor(struct tg_nn_module *m,
                                       const char *name,
                                       int n_dims,
                                       const int64_t *shape,
                                       bool is_buffer,
                                       float value);

/* Rebuild m's flat list (and its ancestors'); TG_ERR_NOMEM leaves them as they were. */
enum tg_status nn_module_refresh(struct tg_nn_module *m);

/*
 * Record a layer's failure: "<func> (<path>): <message>", the path part
 * left out for a module without a parent.
 */
enum tg_status nn_err(const struct tg_nn_module *m, enum tg_status status, const char *fmt, ...)
        TG_PRINTF(3, 4);

/* Release an intermediate result made without a tape (heap tensors only). */
void nn_drop(struct tg_tensor *t);

#endif
