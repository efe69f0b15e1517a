/*
 * Loader of the PyTorch reference cases in tests/data/torch-ops.jsonl (format
 * in tests/data/README.md): one JSON object per line, parsed with cJSON into
 * flat float32 tensors that a test can hand to tg_tensor_from_data().
 *
 * Every parse failure is reported as TG_ERR_FORMAT (or TG_ERR_NOMEM, TG_ERR_IO)
 * with a message naming the line and the offending field; the loader never
 * aborts on bad input.
 */
#ifndef TAPEGRAD_TESTS_REFCASE_H
#define TAPEGRAD_TESTS_REFCASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include <tapegrad/tensor.h>

/** Size of the message buffer of refcase_parse() and refcase_load(). */
#define REFCASE_ERR_SIZE 256

/** A tensor of a case: `{"shape": [...], "data": [...]}`, or a bare number. */
struct refcase_tensor {
    char *name;                 /**< member name; NULL for list items and the upstream */
    int n_dims;                 /**< 0 to TG_MAX_DIMS */
    int64_t shape[TG_MAX_DIMS]; /**< sizes; entries past n_dims are 1 */
    int64_t n_elems;            /**< product of the sizes */
    float *data;                /**< n_elems floats, row-major (owned) */
};

/** A named list of tensors, such as the optimiser cases' per-step gradients. */
struct refcase_list {
    char *name;                   /**< member name */
    int n;                        /**< number of tensors */
    struct refcase_tensor *items; /**< n tensors (owned) */
};

/**
 * The members of one JSON object, split by kind: tensor-valued (numbers become
 * 0-dimensional tensors) and list-of-tensor-valued.
 */
struct refcase_group {
    int n_tensors;
    struct refcase_tensor *tensors;
    int n_lists;
    struct refcase_list *lists;
};

/** What a case's "output" holds, derived from its op and checked by the loader. */
enum refcase_kind {
    /** output is one tensor; "upstream" and "grads" are given. */
    REFCASE_PLAIN = 0,
    /** optimizer_*: inputs weight and grads (list); output after_each_step (list, same length). */
    REFCASE_OPTIMIZER,
    /** clip_grad_norm: inputs grads (list); output total_norm and grads (list, same shapes). */
    REFCASE_CLIP_GRAD_NORM,
    /** batch_norm_running_stats: input x; output running_mean and running_var. */
    REFCASE_BN_RUNNING_STATS,
};

/** One parsed line. */
struct refcase {
    int line;                          /**< 1-based line number in the file */
    char *op;                          /**< "op" (owned) */
    enum refcase_kind kind;            /**< see enum refcase_kind */
    cJSON *json;                       /**< the whole parsed line (owned) */
    const cJSON *params;               /**< "params" object inside json, or NULL */
    struct refcase_group inputs;       /**< "inputs" */
    bool has_upstream;                 /**< whether "upstream" holds a tensor */
    struct refcase_tensor upstream;    /**< "upstream" when has_upstream */
    const cJSON *output_json;          /**< "output" as stored, for special cases */
    bool output_is_tensor;             /**< "output" is a single tensor (REFCASE_PLAIN) */
    struct refcase_tensor output;      /**< that tensor when output_is_tensor */
    struct refcase_group output_parts; /**< members of an object "output" otherwise */
    struct refcase_group grads;        /**< "grads" (empty when null) */
};

/** All cases of a file. */
struct refcase_set {
    int n;
    struct refcase *cases;
};

/**
 * Parse one line into rc.
 * @param text the JSON text (NUL-terminated).
 * @param line its line number, for messages.
 * @param rc receives the case, to be released with refcase_free(); zeroed on
 *        failure.
 * @param err receives a message on failure (REFCASE_ERR_SIZE bytes; may be NULL).
 * @return TG_OK; TG_ERR_FORMAT for text that is not a well-formed case;
 *         TG_ERR_NOMEM.
 */
enum tg_status refcase_parse(const char *text, int line, struct refcase *rc, char *err);

/** Release what refcase_parse() allocated; NULL is a no-op. rc is zeroed. */
void refcase_free(struct refcase *rc);

/**
 * Read every non-blank line of a jsonl file.
 * @param path the file.
 * @param set receives the cases, to be released with refcase_set_free();
 *        zeroed on failure.
 * @param err receives a message on failure (REFCASE_ERR_SIZE bytes; may be NULL).
 * @return TG_OK; TG_ERR_IO when the file cannot be read; TG_ERR_FORMAT for
 *         the first malformed line; TG_ERR_NOMEM.
 */
enum tg_status refcase_load(const char *path, struct refcase_set *set, char *err);

/** Release a set; NULL is a no-op. */
void refcase_set_free(struct refcase_set *set);

/* ---- Lookups; all return NULL (or the default) when the member is absent ---- */

/** The tensor member name of a group. */
const struct refcase_tensor *refcase_group_tensor(const struct refcase_group *g, const char *name);
/** The list member name of a group. */
const struct refcase_list *refcase_group_list(const struct refcase_group *g, const char *name);

/** Input tensor name, e.g. "x", "weight". */
const struct refcase_tensor *refcase_input(const struct refcase *rc, const char *name);
/** Expected gradient of input name. */
const struct refcase_tensor *refcase_grad(const struct refcase *rc, const char *name);

/** Whether params has key with a value other than null. */
bool refcase_param_has(const struct refcase *rc, const char *key);
/** Integer param key; def when absent, null, not a number or not an integer in int range. */
int refcase_param_int(const struct refcase *rc, const char *key, int def);
/** Number param key; def when absent, null or not a number. */
double refcase_param_double(const struct refcase *rc, const char *key, double def);
/** Boolean param key; def when absent, null or not a boolean. */
bool refcase_param_bool(const struct refcase *rc, const char *key, bool def);
/** String param key (owned by rc); def when absent, null or not a string. */
const char *refcase_param_str(const struct refcase *rc, const char *key, const char *def);

#endif
