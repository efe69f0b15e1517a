/*
 * Datasets: IDX images and labels read through zlib (gzip or plain files)
 * with every size checked against the bytes actually present, pixel
 * normalisation, and a seeded mini-batch iterator that allocates only its
 * permutation.
 */
#include <tapegrad/data.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "alloc-impl.h"

#define IDX_TYPE_UBYTE  0x08
#define IDX_IMAGES_DIMS 3
#define IDX_LABELS_DIMS 1
#define FIRST_CHUNK     ((size_t)1 << 28) // payload buffer before it grows
#define GZ_MAX_READ     ((size_t)1 << 30) // gzread takes an unsigned length

static const char *const fashion_mnist_classes[TG_FASHION_MNIST_N_CLASSES] = {
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

const char *tg_fashion_mnist_class_name(int label)
{
    if (label < 0 || label >= TG_FASHION_MNIST_N_CLASSES)
        return NULL;
    return fashion_mnist_classes[label];
}

/*
 * Put func in front of the message of a failed allocation (the wrapper's own
 * message cannot know which call it served).
 */
static void name_nomem(const char *func)
{
    size_t n = strlen(func);
    const char *msg = tg_last_error();
    if (tg_last_status() != TG_ERR_NOMEM || (strncmp(msg, func, n) == 0 && msg[n] == ':'))
        return;
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", msg);
    tg_error_set(TG_ERR_NOMEM, "%s: %s", func, copy);
}

/* ---- Reading an IDX file ------------------------------------------------- */

/* An open IDX file and the names used in its error messages. */
struct idx_src {
    gzFile gz;
    const char *func; // the public call, first word of every message
    const char *path;
};

/* Status and message for a zlib error on src, or TG_OK when there is none. */
static enum tg_status gz_failure(const struct idx_src *src)
{
    int errnum = Z_OK;
    const char *msg = gzerror(src->gz, &errnum);
    if (errnum == Z_OK || errnum == Z_BUF_ERROR)
        return TG_OK; // Z_BUF_ERROR: a cut gzip stream, reported as a short read
    if (errnum == Z_ERRNO)
        return tg_error_set(TG_ERR_IO, "%s: %s: read failed (%s)", src->func, src->path,
                            strerror(errno));
    return tg_error_set(TG_ERR_FORMAT, "%s: %s: corrupt gzip data (%s)", src->func, src->path, msg);
}

/* Whether the gzip stream of src ended before its end-of-stream marker. */
static bool gz_cut_short(const struct idx_src *src)
{
    int errnum = Z_OK;
    gzerror(src->gz, &errnum);
    return errnum == Z_BUF_ERROR;
}

/*
 * Read up to n bytes; *got receives how many arrived (fewer only at the end
 * of the file). Fails only on a read error or corrupt gzip data.
 */
static enum tg_status read_upto(const struct idx_src *src, uint8_t *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < GZ_MAX_READ ? n - *got : GZ_MAX_READ;
        int r = gzread(src->gz, buf + *got, (unsigned)want);
        if (r <= 0)
            return gz_failure(src); // TG_OK at the end of the data
        *got += (size_t)r;
    }
    return TG_OK;
}

/* Fail unless the file ends right after the data its header announced. */
static enum tg_status expect_end(const struct idx_src *src, size_t n_data)
{
    uint8_t buf[4096];
    uint64_t extra = 0;
    size_t got;
    do {
        enum tg_status st = read_upto(src, buf, sizeof(buf), &got);
        if (st != TG_OK)
            return st;
        extra += got;
    } while (got == sizeof(buf));
    if (extra > 0)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: %s: %" PRIu64
                            " trailing bytes after the %zu bytes of data its header announces",
                            src->func, src->path, extra, n_data);
    if (gz_cut_short(src))
        return tg_error_set(TG_ERR_FORMAT, "%s: %s: gzip stream cut short after its data",
                            src->func, src->path);
    return TG_OK;
}

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/*
 * Read and check the header of an IDX file of unsigned bytes with n_dims
 * dimensions; dims receives the sizes, each >= 1.
 */
static enum tg_status
read_header(const struct idx_src *src, const char *kind, int n_dims, uint32_t *dims)
{
    uint8_t head[4 + 4 * IDX_IMAGES_DIMS];
    size_t n_head = 4 + 4 * (size_t)n_dims;
    size_t got;
    enum tg_status st = read_upto(src, head, n_head, &got);
    if (st != TG_OK)
        return st;
    uint32_t want_magic = (uint32_t)IDX_TYPE_UBYTE << 8 | (uint32_t)n_dims;
    if (got >= 4 && (head[0] != 0 || head[1] != 0))
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: %s: bad magic 0x%08" PRIx32 ", expected 0x%08" PRIx32
                            " (IDX %s file)",
                            src->func, src->path, load_be32(head), want_magic, kind);
    if (got >= 4 && head[2] != IDX_TYPE_UBYTE)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: %s: element type 0x%02x, expected 0x%02x (unsigned byte)",
                            src->func, src->path, head[2], IDX_TYPE_UBYTE);
    if (got >= 4 && head[3] != n_dims)
        return tg_error_set(TG_ERR_FORMAT, "%s: %s: %d dimensions, expected %d (IDX %s file)",
                            src->func, src->path, head[3], n_dims, kind);
    if (got < n_head)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: %s: file ends after %zu bytes, inside its %zu-byte header%s",
                            src->func, src->path, got, n_head,
                            gz_cut_short(src) ? " (gzip stream cut short)" : "");

    for (int i = 0; i < n_dims; i++) {
        dims[i] = load_be32(head + 4 + 4 * i);
        if (dims[i] == 0)
            return tg_error_set(TG_ERR_FORMAT, "%s: %s: size of dimension %d is 0", src->func,
                                src->path, i);
    }
    return TG_OK;
}

/*
 * Read exactly n bytes of payload into a new buffer, then check that the file
 * ends there. A payload up to FIRST_CHUNK (256 MiB) gets its buffer at once,
 * so a real data set is read in place with no copy: the pages of a buffer
 * that a lying header made too large are never written and take no memory.
 * Past that the buffer doubles as data arrives, so a header claiming more
 * than the file holds cannot make us allocate more than twice what is
 * actually present.
 */
static enum tg_status
read_payload(const struct idx_src *src, const char *what, size_t n, uint8_t **out)
{
    size_t cap = n < FIRST_CHUNK ? n : FIRST_CHUNK;
    uint8_t *buf = tg_xmalloc(cap);
    if (buf == NULL)
        return TG_ERR_NOMEM;
    size_t have = 0;
    enum tg_status st;
    for (;;) {
        size_t got;
        st = read_upto(src, buf + have, cap - have, &got);
        if (st != TG_OK)
            goto free_buf;
        have += got;
        if (have < cap) {
            st = tg_error_set(TG_ERR_FORMAT,
                              "%s: %s: expected %zu bytes of %s after the header, file ends "
                              "after %zu%s",
                              src->func, src->path, n, what, have,
                              gz_cut_short(src) ? " (gzip stream cut short)" : "");
            goto free_buf;
        }
        if (have == n)
            break;

        size_t new_cap = cap <= n / 2 ? cap * 2 : n;
        uint8_t *bigger = tg_xmalloc(new_cap);
        if (bigger == NULL) {
            st = TG_ERR_NOMEM;
            goto free_buf;
        }
        memcpy(bigger, buf, have);
        tg_xfree(buf);
        buf = bigger;
        cap = new_cap;
    }
    st = expect_end(src, n);
    if (st != TG_OK)
        goto free_buf;
    *out = buf;
    return TG_OK;

free_buf:
    tg_xfree(buf);
    return st;
}

static enum tg_status idx_open(struct idx_src *src, const char *func, const char *path)
{
    src->func = func;
    src->path = path;
    errno = 0;
    src->gz = gzopen(path, "rb");
    if (src->gz == NULL) {
        if (errno == 0)
            return tg_error_set(TG_ERR_NOMEM, "%s: %s: out of memory opening the file", func, path);
        return tg_error_set(TG_ERR_IO, "%s: %s: cannot open (%s)", func, path, strerror(errno));
    }
    gzbuffer(src->gz, 1u << 16);
    return TG_OK;
}

/* Read an images file: *pixels receives n * h * w bytes. */
static enum tg_status
read_images(const char *func, const char *path, uint8_t **pixels, uint32_t *dims)
{
    struct idx_src src;
    enum tg_status st = idx_open(&src, func, path);
    if (st != TG_OK)
        return st;
    st = read_header(&src, "images", IDX_IMAGES_DIMS, dims);
    if (st != TG_OK)
        goto close_file;

    /* Floats of every pixel must fit in size_t and int64_t. */
    uint64_t limit = (uint64_t)(SIZE_MAX < INT64_MAX ? SIZE_MAX : INT64_MAX) / sizeof(float);
    uint64_t plane = (uint64_t)dims[1] * dims[2];
    if (plane > limit / dims[0]) {
        st = tg_error_set(TG_ERR_FORMAT,
                          "%s: %s: %" PRIu32 " images of %" PRIu32 "x%" PRIu32
                          " pixels are too many to hold in memory",
                          func, path, dims[0], dims[1], dims[2]);
        goto close_file;
    }
    st = read_payload(&src, "pixels", (size_t)(plane * dims[0]), pixels);

close_file:
    gzclose(src.gz);
    return st;
}

/* Read a labels file: *labels receives n bytes. */
static enum tg_status read_labels(const char *func, const char *path, uint8_t **labels, uint32_t *n)
{
    struct idx_src src;
    enum tg_status st = idx_open(&src, func, path);
    if (st != TG_OK)
        return st;
    st = read_header(&src, "labels", IDX_LABELS_DIMS, n);
    if (st == TG_OK)
        st = read_payload(&src, "labels", *n, labels);
    gzclose(src.gz);
    return st;
}

/* ---- Building the dataset ------------------------------------------------ */

static enum tg_status check_opts(const char *func, const struct tg_dataset_opts *o)
{
    if (o->norm != TG_DATASET_NORM_UNIT && o->norm != TG_DATASET_NORM_STANDARD &&
        o->norm != TG_DATASET_NORM_RAW)
        return tg_error_set(TG_ERR_INVALID, "%s: unknown normalisation %d", func, (int)o->norm);
    if (o->n_classes < 0 || o->n_classes > 256)
        return tg_error_set(TG_ERR_INVALID, "%s: %d classes, expected 1 to 256 (0 for 10)", func,
                            o->n_classes);
    if (o->norm != TG_DATASET_NORM_STANDARD || o->compute_stats)
        return TG_OK;
    if (!isfinite(o->mean) || !isfinite(o->std) || !(o->std > 0.0f))
        return tg_error_set(TG_ERR_INVALID, "%s: mean %g and std %g, expected finite and std > 0",
                            func, (double)o->mean, (double)o->std);
    return TG_OK;
}

static enum tg_status
check_labels(const char *func, const char *path, const uint8_t *labels, uint32_t n, int n_classes)
{
    for (uint32_t i = 0; i < n; i++) {
        if (labels[i] >= n_classes)
            return tg_error_set(TG_ERR_FORMAT,
                                "%s: %s: label %d of item %" PRIu32 " out of range (expected 0 "
                                "to %d)",
                                func, path, labels[i], i, n_classes - 1);
    }
    return TG_OK;
}

/* Mean and std of all pixels in [0, 1] units, exact through a histogram. */
static void pixel_stats(const uint8_t *pixels, size_t n, double *mean, double *std)
{
    uint64_t hist[256] = {0};
    for (size_t i = 0; i < n; i++)
        hist[pixels[i]]++;
    double sum = 0.0;
    for (int v = 0; v < 256; v++)
        sum += (double)hist[v] * v;
    *mean = sum / (double)n;
    double sq = 0.0;
    for (int v = 0; v < 256; v++)
        sq += (double)hist[v] * (v - *mean) * (v - *mean);
    *std = sqrt(sq / (double)n) / 255.0;
    *mean /= 255.0;
}

/*
 * Turn pixel bytes into floats as opts asks, through a 256-entry table whose
 * values are correctly rounded (x / 255 as a float division, as torchvision
 * does); records the normalisation and the value of each byte in ds. A
 * compact ds (no images) only records.
 */
static enum tg_status convert_pixels(const char *func,
                                     struct tg_dataset *ds,
                                     const uint8_t *pixels,
                                     size_t n,
                                     const struct tg_dataset_opts *o)
{
    float table[256];
    ds->norm = o->norm;
    ds->mean = 0.0f;
    ds->std = 1.0f;
    if (o->norm == TG_DATASET_NORM_STANDARD) {
        double mean = (double)o->mean;
        double std = (double)o->std;
        if (o->compute_stats)
            pixel_stats(pixels, n, &mean, &std);
        if (!(std > 0.0))
            return tg_error_set(TG_ERR_INVALID,
                                "%s: every pixel has the same value, so std is 0 (pass mean and "
                                "std instead of compute_stats)",
                                func);
        ds->mean = (float)mean;
        ds->std = (float)std;
        for (int v = 0; v < 256; v++)
            table[v] = (float)((v / 255.0 - mean) / std);
    } else {
        for (int v = 0; v < 256; v++)
            table[v] = o->norm == TG_DATASET_NORM_RAW ? (float)v : (float)v / 255.0f;
    }
    memcpy(ds->pixel_values, table, sizeof(table));
    if (ds->images != NULL)
        for (size_t i = 0; i < n; i++)
            ds->images[i] = table[pixels[i]];
    return TG_OK;
}

/*
 * A dataset with room for its labels and, unless compact, its float images.
 * A compact set gets its pixel bytes from the caller.
 */
static struct tg_dataset *
dataset_alloc(int64_t n_items, int64_t height, int64_t width, bool compact)
{
    struct tg_dataset *ds = tg_xcalloc(sizeof(*ds));
    if (ds == NULL)
        return NULL;
    ds->n_items = n_items;
    ds->height = height;
    ds->width = width;
    if (!compact)
        ds->images = tg_xmalloc((size_t)(n_items * height * width) * sizeof(float));
    ds->labels = tg_xmalloc((size_t)n_items * sizeof(int32_t));
    if ((!compact && ds->images == NULL) || ds->labels == NULL) {
        tg_dataset_free(ds);
        return NULL;
    }
    return ds;
}

static struct tg_dataset *load_idx(const char *func,
                                   const char *images_path,
                                   const char *labels_path,
                                   const struct tg_dataset_opts *opts)
{
    static const struct tg_dataset_opts defaults = {0};
    const struct tg_dataset_opts *o = opts != NULL ? opts : &defaults;
    if (check_opts(func, o) != TG_OK)
        return NULL;
    int n_classes = o->n_classes != 0 ? o->n_classes : 10;

    /* Read and check both files before building anything. */
    uint8_t *pixels = NULL;
    uint8_t *labels = NULL;
    struct tg_dataset *ds = NULL;
    uint32_t dims[IDX_IMAGES_DIMS];
    uint32_t n_labels;
    if (read_images(func, images_path, &pixels, dims) != TG_OK)
        goto free_bytes;
    if (read_labels(func, labels_path, &labels, &n_labels) != TG_OK)
        goto free_bytes;
    if (n_labels != dims[0]) {
        tg_error_set(TG_ERR_FORMAT,
                     "%s: %s holds %" PRIu32 " images but %s holds %" PRIu32 " labels", func,
                     images_path, dims[0], labels_path, n_labels);
        goto free_bytes;
    }
    if (check_labels(func, labels_path, labels, n_labels, n_classes) != TG_OK)
        goto free_bytes;

    /* Convert. */
    ds = dataset_alloc(dims[0], dims[1], dims[2], o->compact);
    if (ds == NULL)
        goto free_bytes;
    ds->n_classes = n_classes;
    if (convert_pixels(func, ds, pixels, (size_t)dims[0] * dims[1] * dims[2], o) != TG_OK) {
        tg_dataset_free(ds);
        ds = NULL;
        goto free_bytes;
    }
    for (uint32_t i = 0; i < n_labels; i++)
        ds->labels[i] = labels[i];
    if (o->compact) { // keep the bytes just read, no copy
        ds->pixels = pixels;
        pixels = NULL;
    }

free_bytes:
    tg_xfree(labels);
    tg_xfree(pixels);
    if (ds == NULL)
        name_nomem(func);
    return ds;
}

struct tg_dataset *tg_dataset_load_idx(const char *images_path,
                                       const char *labels_path,
                                       const struct tg_dataset_opts *opts)
{
    if (images_path == NULL || labels_path == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_dataset_load_idx: %s path is NULL",
                     images_path == NULL ? "images" : "labels");
        return NULL;
    }
    return load_idx("tg_dataset_load_idx", images_path, labels_path, opts);
}

/* dir + "/" + name in a new buffer. */
static char *path_join(const char *dir, const char *name)
{
    size_t n_dir = strlen(dir);
    size_t n_name = strlen(name);
    char *p = tg_xmalloc(n_dir + n_name + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, n_dir);
    p[n_dir] = '/';
    memcpy(p + n_dir + 1, name, n_name + 1);
    return p;
}

struct tg_dataset *
tg_dataset_load_fashion_mnist(const char *dir, bool train, const struct tg_dataset_opts *opts)
{
    if (dir == NULL)
        dir = TG_FASHION_MNIST_DEFAULT_DIR;
    const char *prefix = train ? "train" : "t10k";
    char images_name[64];
    char labels_name[64];
    snprintf(images_name, sizeof(images_name), "%s-images-idx3-ubyte.gz", prefix);
    snprintf(labels_name, sizeof(labels_name), "%s-labels-idx1-ubyte.gz", prefix);

    struct tg_dataset *ds = NULL;
    char *images_path = path_join(dir, images_name);
    char *labels_path = path_join(dir, labels_name);
    if (images_path != NULL && labels_path != NULL)
        ds = load_idx("tg_dataset_load_fashion_mnist", images_path, labels_path, opts);
    tg_xfree(labels_path);
    tg_xfree(images_path);
    if (ds == NULL)
        name_nomem("tg_dataset_load_fashion_mnist");
    return ds;
}

struct tg_dataset *tg_dataset_subset(const struct tg_dataset *ds, int64_t first, int64_t n)
{
    if (ds == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_dataset_subset: dataset is NULL");
        return NULL;
    }
    if (first < 0 || n < 1 || first > ds->n_items || n > ds->n_items - first) {
        tg_error_set(TG_ERR_INVALID,
                     "tg_dataset_subset: items %" PRId64 " to %" PRId64
                     " requested, dataset holds %" PRId64,
                     first, first + n - 1, ds->n_items);
        return NULL;
    }
    bool compact = ds->images == NULL;
    size_t plane = (size_t)(ds->height * ds->width);
    struct tg_dataset *sub = dataset_alloc(n, ds->height, ds->width, compact);
    if (sub != NULL && compact && (sub->pixels = tg_xmalloc((size_t)n * plane)) == NULL) {
        tg_dataset_free(sub);
        sub = NULL;
    }
    if (sub == NULL) {
        name_nomem("tg_dataset_subset");
        return NULL;
    }
    if (ds->images != NULL)
        memcpy(sub->images, ds->images + (size_t)first * plane, (size_t)n * plane * sizeof(float));
    else
        memcpy(sub->pixels, ds->pixels + (size_t)first * plane, (size_t)n * plane);
    memcpy(sub->pixel_values, ds->pixel_values, sizeof(ds->pixel_values));
    memcpy(sub->labels, ds->labels + first, (size_t)n * sizeof(int32_t));
    sub->n_classes = ds->n_classes;
    sub->norm = ds->norm;
    sub->mean = ds->mean;
    sub->std = ds->std;
    return sub;
}

/* Whether ds says where its items are: images or pixels, not both. */
static bool one_storage(const struct tg_dataset *ds)
{
    return (ds->images == NULL) != (ds->pixels == NULL);
}

/* out[0 .. plane) = the values of item i, from either storage. */
static void item_copy(const struct tg_dataset *ds, int64_t i, float *restrict out)
{
    size_t plane = (size_t)(ds->height * ds->width);
    if (ds->images != NULL) {
        memcpy(out, ds->images + (size_t)i * plane, plane * sizeof(float));
        return;
    }
    const uint8_t *restrict px = ds->pixels + (size_t)i * plane;
    for (size_t k = 0; k < plane; k++)
        out[k] = ds->pixel_values[px[k]];
}

enum tg_status tg_dataset_item(const struct tg_dataset *ds, int64_t i, float *out)
{
    if (ds == NULL || out == NULL)
        return tg_error_set(TG_ERR_INVALID, "tg_dataset_item: %s is NULL",
                            ds == NULL ? "dataset" : "out");
    if (!one_storage(ds))
        return tg_error_set(TG_ERR_INVALID,
                            "tg_dataset_item: the dataset needs exactly one of images and pixels");
    if (i < 0 || i >= ds->n_items)
        return tg_error_set(TG_ERR_INVALID,
                            "tg_dataset_item: item %" PRId64 " requested, dataset holds %" PRId64,
                            i, ds->n_items);
    item_copy(ds, i, out);
    return TG_OK;
}

void tg_dataset_free(struct tg_dataset *ds)
{
    if (ds == NULL)
        return;
    tg_xfree(ds->pixels);
    tg_xfree(ds->images);
    tg_xfree(ds->labels);
    tg_xfree(ds);
}

/* ---- Mini-batches -------------------------------------------------------- */

struct tg_batch_iter {
    const struct tg_dataset *ds;
    struct tg_batch_opts opts;
    int64_t *order; // this epoch's visiting order
    int64_t pos;    // next position in order
    int64_t epoch;
    struct tg_tensor *shortened; // the images tensor whose rows the last batch cut
};

#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += GOLDEN_GAMMA);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound): reject the 2^64 mod bound smallest outputs. */
static uint64_t rand_below(uint64_t *state, uint64_t bound)
{
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = splitmix64(state);
        if (r >= threshold)
            return r % bound;
    }
}

/* Draw the order of it->epoch and rewind to its first batch. */
static void start_epoch(struct tg_batch_iter *it)
{
    int64_t n = it->ds->n_items;
    for (int64_t i = 0; i < n; i++)
        it->order[i] = i;
    it->pos = 0;
    if (!it->opts.shuffle)
        return;
    uint64_t state = it->opts.seed ^ (GOLDEN_GAMMA * ((uint64_t)it->epoch + 1));
    for (int64_t j = n - 1; j > 0; j--) {
        int64_t k = (int64_t)rand_below(&state, (uint64_t)j + 1);
        int64_t tmp = it->order[j];
        it->order[j] = it->order[k];
        it->order[k] = tmp;
    }
}

struct tg_batch_iter *tg_batch_iter_new(const struct tg_dataset *ds,
                                        const struct tg_batch_opts *opts)
{
    if (ds == NULL || opts == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_batch_iter_new: %s is NULL",
                     ds == NULL ? "dataset" : "opts");
        return NULL;
    }
    if (opts->batch_size < 1) {
        tg_error_set(TG_ERR_INVALID, "tg_batch_iter_new: batch size %" PRId64 ", expected >= 1",
                     opts->batch_size);
        return NULL;
    }
    if (!one_storage(ds) || ds->labels == NULL || ds->n_items < 1) {
        tg_error_set(TG_ERR_INVALID,
                     "tg_batch_iter_new: the dataset needs labels, at least one item and "
                     "exactly one of images and pixels");
        return NULL;
    }
    struct tg_batch_iter *it = tg_xcalloc(sizeof(*it));
    if (it != NULL)
        it->order = tg_xmalloc((size_t)ds->n_items * sizeof(int64_t));
    if (it == NULL || it->order == NULL) {
        tg_xfree(it);
        name_nomem("tg_batch_iter_new");
        return NULL;
    }
    it->ds = ds;
    it->opts = *opts;
    start_epoch(it);
    return it;
}

void tg_batch_iter_free(struct tg_batch_iter *it)
{
    if (it == NULL)
        return;
    tg_xfree(it->order);
    tg_xfree(it);
}

/* Whether images can receive a batch: see tg_batch_iter_next(). */
static bool batch_shape_ok(const struct tg_batch_iter *it, const struct tg_tensor *images)
{
    const struct tg_dataset *ds = it->ds;
    int64_t rows = images->shape[0];
    bool rows_ok = rows == it->opts.batch_size ||
                   (images == it->shortened && rows >= 1 && rows < it->opts.batch_size);
    if (images->n_dims == 4)
        return rows_ok && images->shape[1] == 1 && images->shape[2] == ds->height &&
               images->shape[3] == ds->width;
    if (images->n_dims == 2)
        return rows_ok && images->shape[1] == ds->height * ds->width;
    return false;
}

int64_t tg_batch_iter_next(struct tg_batch_iter *it, struct tg_tensor *images, int32_t *labels)
{
    if (it == NULL || images == NULL || labels == NULL) {
        tg_error_set(TG_ERR_INVALID, "tg_batch_iter_next: %s is NULL",
                     it == NULL       ? "iterator"
                     : images == NULL ? "images"
                                      : "labels");
        return -1;
    }
    const struct tg_dataset *ds = it->ds;
    int64_t bs = it->opts.batch_size;
    if (!batch_shape_ok(it, images)) {
        char got[96];
        tg_error_set(TG_ERR_SHAPE,
                     "tg_batch_iter_next: images is %s, expected %" PRId64 "x1x%" PRId64 "x%" PRId64
                     " or %" PRId64 "x%" PRId64,
                     tg_tensor_shape_str(images, got, sizeof(got)), bs, ds->height, ds->width, bs,
                     ds->height * ds->width);
        return -1;
    }

    /* End of the epoch: give images its full size back, move to the next epoch. */
    int64_t left = ds->n_items - it->pos;
    size_t plane = (size_t)(ds->height * ds->width);
    if (left == 0 || (it->opts.drop_last && left < bs)) {
        images->shape[0] = bs;
        images->n_elems = bs * (int64_t)plane;
        it->shortened = NULL;
        it->epoch++;
        start_epoch(it);
        return 0;
    }

    /* Copy the items, then fit the tensor's first dimension to them. */
    int64_t n = left < bs ? left : bs;
    for (int64_t i = 0; i < n; i++) {
        int64_t src = it->order[it->pos + i];
        item_copy(ds, src, images->data + (size_t)i * plane);
        labels[i] = ds->labels[src];
    }
    it->pos += n;
    images->shape[0] = n;
    images->n_elems = n * (int64_t)plane;
    it->shortened = n < bs ? images : NULL;
    return n;
}

void tg_batch_iter_set_epoch(struct tg_batch_iter *it, int64_t epoch)
{
    if (it == NULL)
        return;
    it->epoch = epoch < 0 ? 0 : epoch;
    start_epoch(it);
}

int64_t tg_batch_iter_epoch(const struct tg_batch_iter *it)
{
    return it != NULL ? it->epoch : -1;
}

int64_t tg_batch_iter_n_batches(const struct tg_batch_iter *it)
{
    if (it == NULL)
        return -1;
    int64_t n = it->ds->n_items;
    int64_t bs = it->opts.batch_size;
    return it->opts.drop_last ? n / bs : (n + bs - 1) / bs;
}

const int64_t *tg_batch_iter_order(const struct tg_batch_iter *it)
{
    return it != NULL ? it->order : NULL;
}
