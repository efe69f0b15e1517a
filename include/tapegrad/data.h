/*
 * Image classification data: IDX files (the MNIST / Fashion-MNIST format,
 * gzip-compressed or plain) read into float32 images and int32 labels, and a
 * mini-batch iterator that shuffles from a seed without allocating per batch.
 */
#ifndef TAPEGRAD_DATA_H
#define TAPEGRAD_DATA_H

#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Where Debian's dataset-fashion-mnist package installs the four files. */
#define TG_FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

/** Number of Fashion-MNIST classes. */
#define TG_FASHION_MNIST_N_CLASSES 10

/** How pixel bytes (0 to 255) become floats. */
enum tg_dataset_norm {
    TG_DATASET_NORM_UNIT = 0, /**< x / 255, in [0, 1] (the default) */
    TG_DATASET_NORM_STANDARD, /**< (x / 255 - mean) / std */
    TG_DATASET_NORM_RAW,      /**< x as stored, 0 to 255 */
};

/**
 * Options of the dataset loaders. A zero-initialised struct (or NULL) gives
 * pixels in [0, 1] and labels checked against 10 classes.
 */
struct tg_dataset_opts {
    enum tg_dataset_norm norm; /**< pixel scaling */
    /**
     * With TG_DATASET_NORM_STANDARD: take mean and std from the loaded images
     * themselves (over every pixel, in [0, 1] units) instead of the two fields
     * below. Evaluation sets should rather reuse the training set's values.
     */
    bool compute_stats;
    float mean;    /**< with TG_DATASET_NORM_STANDARD, in [0, 1] units */
    float std;     /**< with TG_DATASET_NORM_STANDARD, > 0, in [0, 1] units */
    int n_classes; /**< labels must lie in [0, n_classes); 0 means 10 */
    /**
     * Keep the pixel bytes (one byte per pixel, a quarter of the float
     * images) and turn them into floats only as batches are copied out: the
     * dataset's images field is then NULL and its pixels field set. Batches
     * hold exactly the floats the default storage would give.
     */
    bool compact;
};

/**
 * A set of single-channel images with integer labels. Every field may be
 * read; images, pixels and labels may be written (the library reads them
 * only). Exactly one of images and pixels is set: images for the default
 * storage, pixels for a compact one (tg_dataset_opts.compact), whose item
 * values are pixel_values[byte]. tg_dataset_item() reads an item either way.
 */
struct tg_dataset {
    int64_t n_items; /**< number of images, >= 1 */
    int64_t height;  /**< rows of each image */
    int64_t width;   /**< columns of each image */
    int n_classes;   /**< labels lie in [0, n_classes) */
    /** n_items * height * width floats: item-major, then row-major (N, 1, H, W) */
    float *images;
    int32_t *labels; /**< n_items labels */
    /**
     * The normalisation applied: TG_DATASET_NORM_STANDARD stores its mean and
     * std here (in [0, 1] units), the other modes store 0 and 1.
     */
    enum tg_dataset_norm norm;
    float mean; /**< see norm */
    float std;  /**< see norm */
    /** Compact storage: n_items * height * width pixel bytes, laid out as images; else NULL */
    uint8_t *pixels;
    /** Compact storage: the float value of each pixel byte, after normalisation */
    float pixel_values[256];
};

/**
 * Read an images file and a labels file in the IDX format.
 *
 * The images file holds magic 0x00000803 (unsigned bytes, 3 dimensions), the
 * big-endian sizes N, H, W and N*H*W pixel bytes; the labels file holds
 * magic 0x00000801, N and N label bytes. Either may be gzip-compressed (it is
 * read through zlib) or plain. Everything is checked: the magic, the type
 * byte, the number of dimensions, non-zero sizes that fit in memory, the data
 * actually present against the sizes (a truncated file and trailing bytes are
 * both refused), equal item counts and the label range.
 *
 * @param images_path the images file.
 * @param labels_path the labels file.
 * @param opts pixel normalisation and class count; NULL for the defaults.
 * @return the dataset, released with tg_dataset_free(); NULL with
 *         TG_ERR_INVALID for NULL paths, bad options, or compute_stats on
 *         images whose pixels are all equal; TG_ERR_IO when a file cannot be
 *         opened or read; TG_ERR_FORMAT for malformed contents, corrupt gzip
 *         data included (the message names the file and what was wrong);
 *         TG_ERR_NOMEM. Nothing is allocated on failure.
 */
TG_API struct tg_dataset *tg_dataset_load_idx(const char *images_path,
                                              const char *labels_path,
                                              const struct tg_dataset_opts *opts);

/**
 * Read the Fashion-MNIST training or test set from a directory holding the
 * four standard files: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
 * t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.
 *
 * @param dir the directory, NULL for TG_FASHION_MNIST_DEFAULT_DIR.
 * @param train true for the 60000 training images, false for the 10000 test
 *        images.
 * @param opts as for tg_dataset_load_idx(); NULL for the defaults.
 * @return as tg_dataset_load_idx().
 */
TG_API struct tg_dataset *
tg_dataset_load_fashion_mnist(const char *dir, bool train, const struct tg_dataset_opts *opts);

/**
 * Copy the items [first, first + n) of a dataset into a new one, for quick
 * runs and train/validation splits. The copy keeps the normalisation fields
 * and the storage (float images or compact pixels).
 *
 * @param ds the source, unchanged.
 * @param first index of the first item kept.
 * @param n number of items, >= 1, with first + n <= ds->n_items.
 * @return the new dataset, released with tg_dataset_free(); NULL with
 *         TG_ERR_INVALID for NULL or a range outside ds, TG_ERR_NOMEM.
 */
TG_API struct tg_dataset *tg_dataset_subset(const struct tg_dataset *ds, int64_t first, int64_t n);

/**
 * Copy one item's height * width values, as floats, whichever the storage.
 *
 * @param ds the dataset.
 * @param i the item, 0 <= i < ds->n_items.
 * @param out room for height * width floats.
 * @return TG_OK; TG_ERR_INVALID for a NULL argument or an item out of range
 *         (out is then untouched).
 */
TG_API enum tg_status tg_dataset_item(const struct tg_dataset *ds, int64_t i, float *out);

/**
 * Release a dataset. NULL is a no-op.
 * @param ds the dataset.
 */
TG_API void tg_dataset_free(struct tg_dataset *ds);

/**
 * Name of a Fashion-MNIST class.
 * @param label 0 to 9.
 * @return a static string ("T-shirt/top", "Trouser", "Pullover", "Dress",
 *         "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"); NULL for
 *         a label out of range.
 */
TG_API const char *tg_fashion_mnist_class_name(int label);

/** Options of tg_batch_iter_new(). */
struct tg_batch_opts {
    int64_t batch_size; /**< items per batch, >= 1 */
    /** Visit the items in a new random order each epoch; false keeps 0, 1, ... */
    bool shuffle;
    uint64_t seed;  /**< seed of the shuffle (see tg_batch_iter_new()) */
    bool drop_last; /**< skip a last batch smaller than batch_size */
};

/** An opaque iterator over the mini-batches of a dataset, epoch after epoch. */
struct tg_batch_iter;

/**
 * Make a mini-batch iterator. Its permutation is allocated here, once; the
 * calls that follow allocate nothing.
 *
 * The order of epoch e (counting from 0) is a Fisher-Yates shuffle of 0 .. N-1
 * driven by a splitmix64 generator whose state starts at
 * seed XOR (0x9E3779B97F4A7C15 * (e + 1)) (wrapping 64-bit product); step j
 * of the shuffle (j = N-1 down to 1) swaps item j with item r mod (j + 1),
 * r drawn without modulo bias by rejection. The order thus depends only on the
 * seed and the epoch, so a run resumed at an epoch with
 * tg_batch_iter_set_epoch() sees the same batches.
 *
 * @param ds the dataset; it must outlive the iterator, which reads it.
 * @param opts batch size, shuffling, seed and last-batch policy.
 * @return the iterator, released with tg_batch_iter_free(); NULL with
 *         TG_ERR_INVALID for NULL arguments, batch_size < 1, or a dataset
 *         without labels, without items, or with both or neither of images
 *         and pixels; TG_ERR_NOMEM.
 */
TG_API struct tg_batch_iter *tg_batch_iter_new(const struct tg_dataset *ds,
                                               const struct tg_batch_opts *opts);

/**
 * Release an iterator. NULL is a no-op.
 * @param it the iterator.
 */
TG_API void tg_batch_iter_free(struct tg_batch_iter *it);

/**
 * Fill the next mini-batch of the current epoch.
 *
 * images is a caller-owned tensor made as (batch_size, 1, H, W), or
 * (batch_size, H * W) for a model that takes flat vectors. For a last batch
 * of n < batch_size items (when drop_last is off) the call fills n rows and
 * sets images->shape[0] to n (n_elems follows); the call that ends the
 * epoch sets it back to batch_size. Only a tensor of batch_size rows, or the
 * one this iterator itself shortened, is accepted, so the storage is always
 * large enough.
 *
 * When the epoch has no batch left the call returns 0 and moves to the next
 * epoch, drawing its order.
 *
 * @param it the iterator.
 * @param images receives the pixels (see above).
 * @param labels receives n labels; room for batch_size.
 * @return the number of items filled, 1 to batch_size; 0 at the end of an
 *         epoch; -1 with TG_ERR_INVALID for NULL arguments or TG_ERR_SHAPE
 *         for an images tensor of another shape (nothing is written then).
 */
TG_API int64_t tg_batch_iter_next(struct tg_batch_iter *it,
                                  struct tg_tensor *images,
                                  int32_t *labels);

/**
 * Restart at the first batch of an epoch, drawing its order again from the
 * seed (so it equals the order that epoch had before).
 * @param it the iterator; NULL is a no-op.
 * @param epoch the epoch, >= 0; a negative value is taken as 0.
 */
TG_API void tg_batch_iter_set_epoch(struct tg_batch_iter *it, int64_t epoch);

/**
 * Current epoch, counting from 0: the number of times tg_batch_iter_next()
 * returned 0, plus the value given to tg_batch_iter_set_epoch().
 * @param it the iterator.
 * @return the epoch; -1 for NULL.
 */
TG_API int64_t tg_batch_iter_epoch(const struct tg_batch_iter *it);

/**
 * Number of batches in one epoch: ceil(N / batch_size), or floor(N /
 * batch_size) with drop_last.
 * @param it the iterator.
 * @return the count; -1 for NULL.
 */
TG_API int64_t tg_batch_iter_n_batches(const struct tg_batch_iter *it);

/**
 * Index into the dataset of the items of the current epoch, in visiting
 * order, for tests and for mapping predictions back to items.
 * @param it the iterator.
 * @return N indices, valid until the iterator moves to another epoch; NULL
 *         for NULL.
 */
TG_API const int64_t *tg_batch_iter_order(const struct tg_batch_iter *it);

#ifdef __cplusplus
}
#endif

#endif
