/*
 * Checkpoints: named float32 tensors and string metadata in the safetensors
 * format, written atomically and read back with every size checked.
 *
 * A file is an 8-byte little-endian header length L, L bytes of JSON padded
 * with spaces to a multiple of 8, then the data buffer. The JSON maps each
 * tensor's name to {"dtype": "F32", "shape": [...], "data_offsets": [begin,
 * end]} (byte offsets into the buffer, little-endian values, row-major), and
 * the optional key "__metadata__" to an object of string values. The tensors
 * cover the buffer exactly, without gaps or overlap.
 */
#ifndef TAPEGRAD_CHECKPOINT_H
#define TAPEGRAD_CHECKPOINT_H

#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest JSON header accepted on reading, in bytes (as the reference reader). */
#define TG_CHECKPOINT_MAX_HEADER ((uint64_t)100 << 20)

/** One key/value pair of a checkpoint's "__metadata__". */
struct tg_checkpoint_meta {
    const char *key;
    const char *value;
};

/** One tensor entry of a checkpoint file, as its header describes it. */
struct tg_checkpoint_entry {
    const char *name;
    const char *dtype;          /**< "F32", or another safetensors dtype name */
    int n_dims;                 /**< 0 to TG_MAX_DIMS */
    int64_t shape[TG_MAX_DIMS]; /**< sizes; entries past n_dims are 1 */
    uint64_t begin;             /**< first byte in the data buffer */
    uint64_t end;               /**< one past the last byte */
};

/** Options of tg_checkpoint_load() and tg_checkpoint_read(). */
struct tg_checkpoint_load_opts {
    /** Accept a file holding tensors beyond the ones asked for (default: refuse). */
    bool allow_extra;
};

/** An opaque open checkpoint file whose header has been read and checked. */
struct tg_checkpoint;

/**
 * Write tensors and metadata to a checkpoint file, atomically.
 *
 * The file is written as "<path>.tmp.<pid>" (created exclusively), flushed
 * and synced, then renamed over path, and the directory is synced. On any
 * failure the temporary file is removed and an existing file at path stays as
 * it was.
 *
 * @param path the destination.
 * @param n number of tensors, >= 0.
 * @param names n distinct non-empty names, none "__metadata__"; the entries
 *        are written in this order.
 * @param tensors n tensors (their data is read; grads are not saved).
 * @param n_meta number of metadata pairs, >= 0.
 * @param meta n_meta pairs with distinct keys and non-NULL strings; may be
 *        NULL when n_meta is 0.
 * @return TG_OK; TG_ERR_INVALID for NULL arguments, empty, reserved or
 *         repeated names or keys; TG_ERR_IO when the file cannot be written,
 *         synced or renamed; TG_ERR_NOMEM.
 */
TG_API enum tg_status tg_checkpoint_save(const char *path,
                                         int n,
                                         const char *const *names,
                                         const struct tg_tensor *const *tensors,
                                         int n_meta,
                                         const struct tg_checkpoint_meta *meta);

/**
 * Fill existing tensors from a checkpoint file: tg_checkpoint_open(),
 * tg_checkpoint_read() and tg_checkpoint_close() in one call.
 *
 * @param path the file.
 * @param n, names, tensors, opts as for tg_checkpoint_read().
 * @return the statuses of tg_checkpoint_open() and tg_checkpoint_read(). On
 *         failure every tensor is unchanged.
 */
TG_API enum tg_status tg_checkpoint_load(const char *path,
                                         int n,
                                         const char *const *names,
                                         struct tg_tensor *const *tensors,
                                         const struct tg_checkpoint_load_opts *opts);

/**
 * Open a checkpoint file and check its header: the length against the file
 * size, valid JSON, each entry's dtype, shape and offsets (in range, matching
 * the shape, covering the data buffer without gap or overlap, the buffer
 * ending exactly at the end of the file), unique names, string metadata.
 *
 * @param path the file.
 * @return the open file, released with tg_checkpoint_close(); NULL with
 *         TG_ERR_INVALID for NULL, TG_ERR_IO when it cannot be opened or
 *         read, TG_ERR_FORMAT for a malformed file (the message names the
 *         file and what is wrong), TG_ERR_UNSUPPORTED for a tensor of more
 *         than TG_MAX_DIMS dimensions or an unknown dtype, TG_ERR_NOMEM.
 */
TG_API struct tg_checkpoint *tg_checkpoint_open(const char *path);

/**
 * Close a checkpoint file. NULL is a no-op.
 * @param ck the file.
 */
TG_API void tg_checkpoint_close(struct tg_checkpoint *ck);

/**
 * Number of tensor entries in a checkpoint.
 * @param ck the open file.
 * @return the count; -1 for NULL.
 */
TG_API int tg_checkpoint_n_entries(const struct tg_checkpoint *ck);

/**
 * One tensor entry, in the order of the file's header.
 * @param ck the open file.
 * @param i 0 to tg_checkpoint_n_entries() - 1.
 * @return the entry, valid until tg_checkpoint_close(); NULL for NULL or an
 *         index out of range.
 */
TG_API const struct tg_checkpoint_entry *tg_checkpoint_entry_at(const struct tg_checkpoint *ck,
                                                                int i);

/**
 * Find a tensor entry by name.
 * @param ck the open file.
 * @param name the name.
 * @return the entry, valid until tg_checkpoint_close(); NULL when absent or
 *         for NULL arguments.
 */
TG_API const struct tg_checkpoint_entry *tg_checkpoint_find(const struct tg_checkpoint *ck,
                                                            const char *name);

/**
 * The metadata pairs of a checkpoint, in the order of the file's header.
 * @param ck the open file.
 * @param n_meta receives the number of pairs.
 * @return the pairs, valid until tg_checkpoint_close() (NULL when there are
 *         none); NULL with *n_meta = 0 for NULL.
 */
TG_API const struct tg_checkpoint_meta *tg_checkpoint_meta(const struct tg_checkpoint *ck,
                                                           int *n_meta);

/**
 * Value of one metadata key.
 * @param ck the open file.
 * @param key the key.
 * @return the value, valid until tg_checkpoint_close(); NULL when absent or
 *         for NULL arguments.
 */
TG_API const char *tg_checkpoint_meta_get(const struct tg_checkpoint *ck, const char *key);

/**
 * Fill existing tensors from an open checkpoint. Every name must be present
 * with dtype F32 and the tensor's exact shape, and, unless opts allows it,
 * the file must hold no other tensor. Everything is checked and read before
 * the first tensor is written, so on failure every tensor is unchanged.
 *
 * @param ck the open file.
 * @param n number of tensors, >= 0.
 * @param names n distinct names.
 * @param tensors n tensors, whose data receives the values (grads untouched).
 * @param opts NULL for the defaults.
 * @return TG_OK; TG_ERR_INVALID for NULL arguments or repeated names;
 *         TG_ERR_FORMAT for a missing name, another dtype or names the
 *         caller did not ask for; TG_ERR_SHAPE for a shape that differs
 *         ("conv1.weight: file has 32x1x5x5, model expects 32x1x3x3");
 *         TG_ERR_IO when the data cannot be read (for example the file was
 *         truncated after it was opened); TG_ERR_NOMEM.
 */
TG_API enum tg_status tg_checkpoint_read(struct tg_checkpoint *ck,
                                         int n,
                                         const char *const *names,
                                         struct tg_tensor *const *tensors,
                                         const struct tg_checkpoint_load_opts *opts);

/*
 * Training state: what a run needs to continue exactly where it stopped. A
 * training checkpoint is an ordinary checkpoint holding the model's tensors
 * (its state_dict), then each optimiser state tensor under "optimizer." and
 * its name from tg_optim_state_list() ("optimizer.state.0.exp_avg", ...),
 * and in the metadata "optimizer_step" (tg_optim_get_step() in decimal) and
 * "rng" (the TG_RNG_STATE_WORDS words of tg_rng_get_state(), each as 16
 * lower-case hex digits, joined by ':'), next to the caller's own pairs.
 */

struct tg_optim; /* <tapegrad/optim.h> */
struct tg_rng;   /* <tapegrad/nn.h> */

/**
 * Write a training checkpoint, atomically as tg_checkpoint_save(): the model
 * tensors, then the optimiser's state tensors; the caller's metadata pairs,
 * then "optimizer_step" and "rng".
 *
 * @param path the destination.
 * @param n number of model tensors, >= 0.
 * @param names n distinct non-empty names, none "__metadata__" and none
 *        starting with "optimizer.".
 * @param tensors n tensors (their data is read).
 * @param opt the optimiser whose state tensors and step count are saved (it
 *        is only read); NULL to save neither.
 * @param rng the generator whose state is saved as "rng"; NULL to save none.
 * @param n_meta number of the caller's metadata pairs, >= 0.
 * @param meta n_meta pairs with distinct keys, none "optimizer_step" or
 *        "rng", and non-NULL strings; may be NULL when n_meta is 0.
 * @return TG_OK; TG_ERR_INVALID for NULL arguments, empty, reserved or
 *         repeated names or keys; TG_ERR_IO when the file cannot be written,
 *         synced or renamed; TG_ERR_NOMEM. Messages start with
 *         "tg_train_state_save: ". On failure an existing file at path stays
 *         as it was.
 */
TG_API enum tg_status tg_train_state_save(const char *path,
                                          int n,
                                          const char *const *names,
                                          const struct tg_tensor *const *tensors,
                                          struct tg_optim *opt,
                                          const struct tg_rng *rng,
                                          int n_meta,
                                          const struct tg_checkpoint_meta *meta);

/**
 * Restore a training checkpoint written by tg_train_state_save(): the model
 * tensors as tg_checkpoint_read() reads them; with opt, its state tensors and
 * step count through tg_optim_load_state(); with rng, the generator's state.
 * Everything is read into temporaries and checked before the first value is
 * written, so on failure every tensor, the optimiser and the generator are
 * unchanged. The caller may read its own metadata from ck before or after.
 *
 * @param ck the open file.
 * @param n number of model tensors, >= 0.
 * @param names n distinct names, none starting with "optimizer.".
 * @param tensors n tensors, whose data receives the values (grads untouched).
 * @param opt the optimiser to restore, made with the same kind, settings and
 *        parameter shapes as the saved one; NULL to leave the optimiser state
 *        and "optimizer_step" unread.
 * @param rng the generator to restore; NULL to leave "rng" unread.
 * @param opts NULL for the defaults: then the file must hold nothing but the
 *        model tensors and (with opt) the optimiser's state tensors;
 *        allow_extra accepts other tensors.
 * @return TG_OK; TG_ERR_INVALID for NULL arguments, repeated or reserved
 *         names; TG_ERR_FORMAT for a missing tensor, another dtype, tensors
 *         not asked for, a missing or malformed "optimizer_step" or "rng", an
 *         "rng" tg_rng_set_state() refuses, or a count of "optimizer."
 *         tensors other than opt has (the file was saved with other
 *         parameters or another optimiser); TG_ERR_SHAPE for a shape that
 *         differs; TG_ERR_NONFINITE for optimiser state holding a NaN or
 *         infinity; TG_ERR_IO when the data cannot be read; TG_ERR_NOMEM.
 *         Messages start with "tg_train_state_read: ", then name the file
 *         (all but those of the argument checks).
 */
TG_API enum tg_status tg_train_state_read(struct tg_checkpoint *ck,
                                          int n,
                                          const char *const *names,
                                          struct tg_tensor *const *tensors,
                                          struct tg_optim *opt,
                                          struct tg_rng *rng,
                                          const struct tg_checkpoint_load_opts *opts);

#ifdef __cplusplus
}
#endif

#endif
