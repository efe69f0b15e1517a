/*
 * Datasets and mini-batches: IDX files written into a temporary directory
 * (gzip and plain) and read back, every malformed file, the batch iterator's
 * orders, and the real Fashion-MNIST test set when it is installed.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "testutil.h"

#include <tapegrad/data.h>

/* ---- Temporary files ----------------------------------------------------- */

static char tmp_dir[64];

static void tmp_setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/tg-test-data-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void tmp_teardown(void)
{
    DIR *d = opendir(tmp_dir);
    if (d == NULL)
        return;
    struct dirent *de;
    char path[512];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmp_dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

/* Path of name inside the temporary directory (a static buffer per slot). */
static const char *tmp_path(int slot, const char *name)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof(paths[slot]), "%s/%s", tmp_dir, name);
    return paths[slot];
}

/* A growable byte buffer for building files. */
struct bytes {
    uint8_t data[1 << 16];
    size_t n;
};

static void put_u8(struct bytes *b, uint8_t v)
{
    ck_assert_uint_lt(b->n, sizeof(b->data));
    b->data[b->n++] = v;
}

static void put_be32(struct bytes *b, uint32_t v)
{
    for (int s = 24; s >= 0; s -= 8)
        put_u8(b, (uint8_t)(v >> s));
}

static void write_file(const char *path, bool gz, const uint8_t *data, size_t n)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        if (n > 0)
            ck_assert_int_eq(gzwrite(f, data, (unsigned)n), (int)n);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, n, f), n);
        ck_assert_int_eq(fclose(f), 0);
    }
}

/* Pixel k of image i in the fixtures: distinct enough to trace items. */
static uint8_t pixel_of(uint32_t i, uint32_t k)
{
    return (uint8_t)((i * 7 + k * 3) % 256);
}

/* IDX images file of n images h x w with pixel_of() values. */
static void build_images(struct bytes *b, uint32_t n, uint32_t h, uint32_t w)
{
    b->n = 0;
    put_be32(b, 0x00000803);
    put_be32(b, n);
    put_be32(b, h);
    put_be32(b, w);
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < h * w; k++)
            put_u8(b, pixel_of(i, k));
    }
}

/* IDX labels file of n labels i % mod. */
static void build_labels(struct bytes *b, uint32_t n, uint32_t mod)
{
    b->n = 0;
    put_be32(b, 0x00000801);
    put_be32(b, n);
    for (uint32_t i = 0; i < n; i++)
        put_u8(b, (uint8_t)(i % mod));
}

/* Write a valid images/labels pair (n items of h x w, labels i % mod). */
static void write_pair(const char *images,
                       const char *labels,
                       bool gz,
                       uint32_t n,
                       uint32_t h,
                       uint32_t w,
                       uint32_t mod)
{
    static struct bytes b;
    build_images(&b, n, h, w);
    write_file(images, gz, b.data, b.n);
    build_labels(&b, n, mod);
    write_file(labels, gz, b.data, b.n);
}

static void assert_error(enum tg_status want, const char *part1, const char *part2)
{
    ck_assert_int_eq(tg_last_status(), want);
    const char *msg = tg_last_error();
    ck_assert_msg(strstr(msg, part1) != NULL, "message \"%s\" lacks \"%s\"", msg, part1);
    if (part2 != NULL)
        ck_assert_msg(strstr(msg, part2) != NULL, "message \"%s\" lacks \"%s\"", msg, part2);
}

/* ---- Loading valid files -------------------------------------------------- */

static void
check_fixture(const struct tg_dataset *ds, uint32_t n, uint32_t h, uint32_t w, uint32_t mod)
{
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->n_items, n);
    ck_assert_int_eq(ds->height, h);
    ck_assert_int_eq(ds->width, w);
    ck_assert_int_eq(ds->n_classes, 10);
    ck_assert_int_eq(ds->norm, TG_DATASET_NORM_UNIT);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_int_eq(ds->labels[i], (int32_t)(i % mod));
        for (uint32_t k = 0; k < h * w; k++)
            ck_assert_float_eq(ds->images[i * h * w + k], (float)pixel_of(i, k) / 255.0f);
    }
}

START_TEST(test_dataset_load_idx_reads_gzip)
{
    write_pair(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), true, 5, 3, 4, 10);
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), NULL);
    check_fixture(ds, 5, 3, 4, 10);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_dataset_load_idx_reads_plain_files)
{
    write_pair(tmp_path(0, "img"), tmp_path(1, "lab"), false, 7, 2, 5, 3);
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img"), tmp_path(1, "lab"), NULL);
    check_fixture(ds, 7, 2, 5, 3);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_dataset_load_idx_mixes_gzip_and_plain)
{
    static struct bytes b;
    build_images(&b, 4, 2, 2);
    write_file(tmp_path(0, "img.gz"), true, b.data, b.n);
    build_labels(&b, 4, 10);
    write_file(tmp_path(1, "lab"), false, b.data, b.n);
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab"), NULL);
    check_fixture(ds, 4, 2, 2, 10);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_dataset_load_idx_raw_norm)
{
    write_pair(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), true, 6, 4, 4, 10);
    struct tg_dataset_opts o = {.norm = TG_DATASET_NORM_RAW};
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), &o);
    ck_assert_ptr_nonnull(ds);
    for (uint32_t i = 0; i < 6; i++) {
        for (uint32_t k = 0; k < 16; k++)
            ck_assert_float_eq(ds->images[i * 16 + k], (float)pixel_of(i, k));
    }
    ck_assert_float_eq(ds->mean, 0.0f);
    ck_assert_float_eq(ds->std, 1.0f);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_dataset_load_idx_standard_norm_given_stats)
{
    write_pair(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), true, 3, 5, 5, 10);
    struct tg_dataset_opts o = {.norm = TG_DATASET_NORM_STANDARD, .mean = 0.25f, .std = 0.5f};
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), &o);
    ck_assert_ptr_nonnull(ds);
    for (uint32_t i = 0; i < 3; i++) {
        for (uint32_t k = 0; k < 25; k++) {
            double want = ((double)pixel_of(i, k) / 255.0 - 0.25) / 0.5;
            ck_assert_double_eq_tol(ds->images[i * 25 + k], want, 1e-6);
        }
    }
    ck_assert_int_eq(ds->norm, TG_DATASET_NORM_STANDARD);
    ck_assert_float_eq(ds->mean, 0.25f);
    ck_assert_float_eq(ds->std, 0.5f);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_dataset_load_idx_standard_norm_computed_stats)
{
    write_pair(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), true, 9, 6, 7, 10);
    struct tg_dataset_opts o = {.norm = TG_DATASET_NORM_STANDARD, .compute_stats = true};
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), &o);
    ck_assert_ptr_nonnull(ds);

    /* Naive two-pass statistics of the fixture's pixels in [0, 1]. */
    int n = 9 * 42;
    double sum = 0.0;
    for (uint32_t i = 0; i < 9; i++) {
        for (uint32_t k = 0; k < 42; k++)
            sum += pixel_of(i, k) / 255.0;
    }
    double mean = sum / n;
    double sq = 0.0;
    for (uint32_t i = 0; i < 9; i++) {
        for (uint32_t k = 0; k < 42; k++)
            sq += (pixel_of(i, k) / 255.0 - mean) * (pixel_of(i, k) / 255.0 - mean);
    }
    double std = sqrt(sq / n);
    ck_assert_double_eq_tol(ds->mean, mean, 1e-6);
    ck_assert_double_eq_tol(ds->std, std, 1e-6);

    /* The normalised images have mean 0 and std 1. */
    double m2 = 0.0;
    double s2 = 0.0;
    for (int j = 0; j < n; j++)
        m2 += ds->images[j];
    m2 /= n;
    for (int j = 0; j < n; j++)
        s2 += (ds->images[j] - m2) * (ds->images[j] - m2);
    ck_assert_double_eq_tol(m2, 0.0, 1e-5);
    ck_assert_double_eq_tol(sqrt(s2 / n), 1.0, 1e-5);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_dataset_load_idx_accepts_more_classes)
{
    write_pair(tmp_path(0, "img"), tmp_path(1, "lab"), false, 40, 1, 1, 40);
    struct tg_dataset_opts o = {.n_classes = 40};
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img"), tmp_path(1, "lab"), &o);
    ck_assert_ptr_nonnull(ds);
    ck_assert_int_eq(ds->n_classes, 40);
    ck_assert_int_eq(ds->labels[39], 39);
    tg_dataset_free(ds);
}
END_TEST

/* ---- Malformed files ------------------------------------------------------ */

enum target { IMAGES, LABELS };

/* One malformed pair: how the bytes are spoiled and what the error must say. */
struct bad_case {
    const char *what;
    enum target target; // the file that is spoiled (and named by the message)
    bool gz;
    void (*spoil)(struct bytes *b);
    enum tg_status status;
    const char *msg;
};

static void spoil_magic(struct bytes *b)
{
    b->data[0] = 0x12;
}
static void spoil_type(struct bytes *b)
{
    b->data[2] = 0x0D; // float
}
static void spoil_dims_images(struct bytes *b)
{
    b->data[3] = 2;
}
static void spoil_truncate_payload(struct bytes *b)
{
    b->n -= 5;
}
static void spoil_truncate_header(struct bytes *b)
{
    b->n = 6;
}
static void spoil_empty(struct bytes *b)
{
    b->n = 0;
}
static void spoil_trailing(struct bytes *b)
{
    put_u8(b, 0);
    put_u8(b, 1);
    put_u8(b, 2);
}
static void spoil_label_range(struct bytes *b)
{
    b->data[8 + 3] = 10;
}
static void spoil_label_count(struct bytes *b)
{
    b->data[7] -= 1; // header says one label fewer...
    b->n -= 1;       // ...and the file agrees
}
static void spoil_zero_size(struct bytes *b)
{
    memset(b->data + 8, 0, 4); // height 0
}
static void spoil_labels_as_images(struct bytes *b)
{
    b->data[3] = 3;
}
static void spoil_garbage(struct bytes *b)
{
    const char *text = "<html>not an IDX file</html>\n";
    b->n = strlen(text);
    memcpy(b->data, text, b->n);
}
static void spoil_huge_claim(struct bytes *b)
{
    memset(b->data + 4, 0xFF, 4); // 2^32 - 1 images of 6x4: far past the file
}
static void spoil_overflow(struct bytes *b)
{
    memset(b->data + 4, 0xFF, 12); // (2^32 - 1)^3 pixels
}

static const struct bad_case bad_cases[] = {
        {"bad magic", IMAGES, true, spoil_magic, TG_ERR_FORMAT, "bad magic 0x12000803"},
        {"bad magic plain", LABELS, false, spoil_magic, TG_ERR_FORMAT, "bad magic"},
        {"type byte", IMAGES, true, spoil_type, TG_ERR_FORMAT, "element type 0x0d, expected 0x08"},
        {"dims", IMAGES, true, spoil_dims_images, TG_ERR_FORMAT, "2 dimensions, expected 3"},
        {"labels dims", LABELS, true, spoil_labels_as_images, TG_ERR_FORMAT,
         "3 dimensions, expected 1"},
        {"truncated pixels", IMAGES, true, spoil_truncate_payload, TG_ERR_FORMAT,
         "expected 120 bytes of pixels after the header, file ends after 115"},
        {"truncated pixels plain", IMAGES, false, spoil_truncate_payload, TG_ERR_FORMAT,
         "file ends after 115"},
        {"truncated labels", LABELS, true, spoil_truncate_payload, TG_ERR_FORMAT,
         "expected 5 bytes of labels after the header, file ends after 0"},
        {"truncated header", IMAGES, true, spoil_truncate_header, TG_ERR_FORMAT,
         "file ends after 6 bytes, inside its 16-byte header"},
        {"empty file", LABELS, false, spoil_empty, TG_ERR_FORMAT, "file ends after 0 bytes"},
        {"trailing", IMAGES, true, spoil_trailing, TG_ERR_FORMAT,
         "3 trailing bytes after the 120 bytes"},
        {"trailing labels", LABELS, false, spoil_trailing, TG_ERR_FORMAT, "3 trailing bytes"},
        {"label range", LABELS, true, spoil_label_range, TG_ERR_FORMAT,
         "label 10 of item 3 out of range (expected 0 to 9)"},
        {"count mismatch", LABELS, true, spoil_label_count, TG_ERR_FORMAT, "holds 5 images but"},
        {"zero size", IMAGES, true, spoil_zero_size, TG_ERR_FORMAT, "size of dimension 1 is 0"},
        {"garbage", IMAGES, false, spoil_garbage, TG_ERR_FORMAT, "bad magic 0x3c68746d"},
        {"huge claim", IMAGES, true, spoil_huge_claim, TG_ERR_FORMAT,
         "expected 103079215080 bytes of pixels after the header, file ends after 120"},
        {"overflow", IMAGES, true, spoil_overflow, TG_ERR_FORMAT, "too many to hold in memory"},
};

START_TEST(test_dataset_load_idx_rejects_malformed)
{
    const struct bad_case *c = &bad_cases[_i];
    static struct bytes b;
    const char *images = tmp_path(0, c->gz ? "images.gz" : "images");
    const char *labels = tmp_path(1, c->gz ? "labels.gz" : "labels");
    build_images(&b, 5, 6, 4);
    if (c->target == IMAGES)
        c->spoil(&b);
    write_file(images, c->gz, b.data, b.n);
    build_labels(&b, 5, 10);
    if (c->target == LABELS)
        c->spoil(&b);
    write_file(labels, c->gz, b.data, b.n);

    tg_clear_error();
    struct tg_dataset *ds = tg_dataset_load_idx(images, labels, NULL);
    ck_assert_msg(ds == NULL, "case %s: loaded", c->what);
    ck_assert_msg(strncmp(tg_last_error(), "tg_dataset_load_idx: ", 21) == 0, "case %s: %s",
                  c->what, tg_last_error());
    assert_error(c->status, c->target == IMAGES ? images : labels, c->msg);
}
END_TEST

/* Gzip files spoiled after compression: a cut stream and a wrong checksum. */
START_TEST(test_dataset_load_idx_rejects_bad_gzip)
{
    static struct bytes b;
    const char *images = tmp_path(0, "images.gz");
    const char *labels = tmp_path(1, "labels.gz");
    write_pair(images, labels, true, 5, 6, 4, 10);
    FILE *f = fopen(images, "rb");
    ck_assert_ptr_nonnull(f);
    b.n = fread(b.data, 1, sizeof(b.data), f);
    fclose(f);
    ck_assert_uint_gt(b.n, 30);

    /* Cut inside the deflate data. */
    write_file(images, false, b.data, b.n - 20);
    ck_assert_ptr_null(tg_dataset_load_idx(images, labels, NULL));
    assert_error(TG_ERR_FORMAT, images, "gzip stream cut short");

    /* Whole data but no trailer. */
    write_file(images, false, b.data, b.n - 8);
    ck_assert_ptr_null(tg_dataset_load_idx(images, labels, NULL));
    assert_error(TG_ERR_FORMAT, images, "gzip stream cut short");

    /* Wrong CRC-32 in the trailer. */
    b.data[b.n - 8] ^= 0x5A;
    write_file(images, false, b.data, b.n);
    ck_assert_ptr_null(tg_dataset_load_idx(images, labels, NULL));
    assert_error(TG_ERR_FORMAT, images, "corrupt gzip data");
}
END_TEST

START_TEST(test_dataset_load_idx_rejects_missing_file)
{
    write_pair(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), true, 2, 2, 2, 10);
    ck_assert_ptr_null(tg_dataset_load_idx(tmp_path(2, "nope.gz"), tmp_path(1, "lab.gz"), NULL));
    assert_error(TG_ERR_IO, tmp_path(2, "nope.gz"), "cannot open");
    ck_assert_ptr_null(tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(2, "nope.gz"), NULL));
    assert_error(TG_ERR_IO, tmp_path(2, "nope.gz"), "cannot open");
    ck_assert_ptr_null(tg_dataset_load_idx(tmp_dir, tmp_path(1, "lab.gz"), NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_IO);
}
END_TEST

START_TEST(test_dataset_load_idx_rejects_label_beyond_n_classes)
{
    write_pair(tmp_path(0, "img"), tmp_path(1, "lab"), false, 9, 2, 2, 10);
    struct tg_dataset_opts o = {.n_classes = 5};
    ck_assert_ptr_null(tg_dataset_load_idx(tmp_path(0, "img"), tmp_path(1, "lab"), &o));
    assert_error(TG_ERR_FORMAT, "label 5 of item 5 out of range (expected 0 to 4)", NULL);
}
END_TEST

START_TEST(test_dataset_load_idx_rejects_bad_options)
{
    write_pair(tmp_path(0, "img"), tmp_path(1, "lab"), false, 3, 2, 2, 10);
    const char *img = tmp_path(0, "img");
    const char *lab = tmp_path(1, "lab");
    ck_assert_ptr_null(tg_dataset_load_idx(NULL, lab, NULL));
    assert_error(TG_ERR_INVALID, "tg_dataset_load_idx: images path is NULL", NULL);
    ck_assert_ptr_null(tg_dataset_load_idx(img, NULL, NULL));
    assert_error(TG_ERR_INVALID, "labels path is NULL", NULL);

    struct tg_dataset_opts o = {.norm = (enum tg_dataset_norm)7};
    ck_assert_ptr_null(tg_dataset_load_idx(img, lab, &o));
    assert_error(TG_ERR_INVALID, "unknown normalisation 7", NULL);
    o = (struct tg_dataset_opts){.norm = TG_DATASET_NORM_STANDARD, .mean = 0.5f, .std = 0.0f};
    ck_assert_ptr_null(tg_dataset_load_idx(img, lab, &o));
    assert_error(TG_ERR_INVALID, "std > 0", NULL);
    o = (struct tg_dataset_opts){.norm = TG_DATASET_NORM_STANDARD, .mean = NAN, .std = 1.0f};
    ck_assert_ptr_null(tg_dataset_load_idx(img, lab, &o));
    assert_error(TG_ERR_INVALID, "expected finite", NULL);
    o = (struct tg_dataset_opts){.n_classes = 300};
    ck_assert_ptr_null(tg_dataset_load_idx(img, lab, &o));
    assert_error(TG_ERR_INVALID, "300 classes", NULL);
    o = (struct tg_dataset_opts){.n_classes = -1};
    ck_assert_ptr_null(tg_dataset_load_idx(img, lab, &o));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
}
END_TEST

START_TEST(test_dataset_load_idx_rejects_constant_images_for_computed_stats)
{
    static struct bytes b;
    b.n = 0;
    put_be32(&b, 0x00000803);
    put_be32(&b, 2);
    put_be32(&b, 2);
    put_be32(&b, 2);
    for (int k = 0; k < 8; k++)
        put_u8(&b, 42);
    write_file(tmp_path(0, "img"), false, b.data, b.n);
    build_labels(&b, 2, 10);
    write_file(tmp_path(1, "lab"), false, b.data, b.n);
    struct tg_dataset_opts o = {.norm = TG_DATASET_NORM_STANDARD, .compute_stats = true};
    ck_assert_ptr_null(tg_dataset_load_idx(tmp_path(0, "img"), tmp_path(1, "lab"), &o));
    assert_error(TG_ERR_INVALID, "std is 0", NULL);
}
END_TEST

START_TEST(test_dataset_load_idx_survives_alloc_failure)
{
    write_pair(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), true, 5, 3, 4, 10);
    struct tg_dataset *ds = NULL;
    int n_failed = 0;
    for (uint64_t k = 1; ds == NULL && k < 100; k++) {
        tg_alloc_fail_at(k);
        ds = tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), NULL);
        if (ds == NULL) {
            assert_error(TG_ERR_NOMEM, "tg_dataset_load_idx: ", NULL);
            n_failed++;
        }
    }
    tg_alloc_fail_at(0);
    ck_assert_int_ge(n_failed, 4);
    check_fixture(ds, 5, 3, 4, 10);

    /* compact storage, which takes the bytes it read */
    struct tg_dataset_opts o = {.compact = true};
    struct tg_dataset *small = NULL;
    n_failed = 0;
    for (uint64_t k = 1; small == NULL && k < 100; k++) {
        tg_alloc_fail_at(k);
        small = tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), &o);
        if (small == NULL) {
            assert_error(TG_ERR_NOMEM, "tg_dataset_load_idx: ", NULL);
            n_failed++;
        }
    }
    tg_alloc_fail_at(0);
    ck_assert_int_ge(n_failed, 3);
    float item[12];
    for (int64_t i = 0; i < 5; i++) {
        ck_assert_int_eq(tg_dataset_item(small, i, item), TG_OK);
        ck_assert_mem_eq(item, ds->images + i * 12, sizeof(item));
    }
    tg_dataset_free(small);
    tg_dataset_free(ds);
}
END_TEST

/* ---- Fashion-MNIST names and directory loader ----------------------------- */

START_TEST(test_fashion_mnist_class_name)
{
    ck_assert_str_eq(tg_fashion_mnist_class_name(0), "T-shirt/top");
    ck_assert_str_eq(tg_fashion_mnist_class_name(1), "Trouser");
    ck_assert_str_eq(tg_fashion_mnist_class_name(5), "Sandal");
    ck_assert_str_eq(tg_fashion_mnist_class_name(9), "Ankle boot");
    ck_assert_ptr_null(tg_fashion_mnist_class_name(-1));
    ck_assert_ptr_null(tg_fashion_mnist_class_name(10));
}
END_TEST

START_TEST(test_dataset_load_fashion_mnist_reads_standard_names)
{
    write_pair(tmp_path(0, "t10k-images-idx3-ubyte.gz"), tmp_path(1, "t10k-labels-idx1-ubyte.gz"),
               true, 6, 4, 3, 10);
    write_pair(tmp_path(2, "train-images-idx3-ubyte.gz"), tmp_path(3, "train-labels-idx1-ubyte.gz"),
               true, 8, 4, 3, 10);
    struct tg_dataset *test = tg_dataset_load_fashion_mnist(tmp_dir, false, NULL);
    check_fixture(test, 6, 4, 3, 10);
    struct tg_dataset *train = tg_dataset_load_fashion_mnist(tmp_dir, true, NULL);
    check_fixture(train, 8, 4, 3, 10);
    tg_dataset_free(test);
    tg_dataset_free(train);

    unlink(tmp_path(3, "train-labels-idx1-ubyte.gz"));
    ck_assert_ptr_null(tg_dataset_load_fashion_mnist(tmp_dir, true, NULL));
    assert_error(TG_ERR_IO, "tg_dataset_load_fashion_mnist: ", "train-labels-idx1-ubyte.gz");
}
END_TEST

/* The installed test set, when the dataset-fashion-mnist package is there. */
START_TEST(test_dataset_load_fashion_mnist_real_test_set)
{
    char probe[256];
    snprintf(probe, sizeof(probe), "%s/t10k-images-idx3-ubyte.gz", TG_FASHION_MNIST_DEFAULT_DIR);
    if (access(probe, R_OK) != 0) {
        printf("note: %s absent, real Fashion-MNIST test skipped\n", probe);
        return;
    }
    struct tg_dataset *ds = tg_dataset_load_fashion_mnist(NULL, false, NULL);
    ck_assert_msg(ds != NULL, "%s", tg_last_error());
    ck_assert_int_eq(ds->n_items, 10000);
    ck_assert_int_eq(ds->height, 28);
    ck_assert_int_eq(ds->width, 28);
    int per_class[10] = {0};
    for (int64_t i = 0; i < ds->n_items; i++) {
        ck_assert_int_ge(ds->labels[i], 0);
        ck_assert_int_le(ds->labels[i], 9);
        per_class[ds->labels[i]]++;
    }
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(per_class[c], 1000); // the test set is balanced
    float lo = 1.0f;
    float hi = 0.0f;
    for (int64_t j = 0; j < ds->n_items * 784; j++) {
        lo = fminf(lo, ds->images[j]);
        hi = fmaxf(hi, ds->images[j]);
    }
    ck_assert_float_eq(lo, 0.0f);
    ck_assert_float_eq(hi, 1.0f);
    tg_dataset_free(ds);
}
END_TEST

/* ---- Subsets -------------------------------------------------------------- */

START_TEST(test_dataset_subset_copies_range)
{
    write_pair(tmp_path(0, "img"), tmp_path(1, "lab"), false, 10, 3, 3, 10);
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img"), tmp_path(1, "lab"), NULL);
    ck_assert_ptr_nonnull(ds);
    struct tg_dataset *sub = tg_dataset_subset(ds, 4, 3);
    ck_assert_ptr_nonnull(sub);
    ck_assert_int_eq(sub->n_items, 3);
    ck_assert_int_eq(sub->height, 3);
    ck_assert_int_eq(sub->n_classes, 10);
    ck_assert_mem_eq(sub->images, ds->images + 4 * 9, 3 * 9 * sizeof(float));
    ck_assert_mem_eq(sub->labels, ds->labels + 4, 3 * sizeof(int32_t));
    tg_dataset_free(sub);

    sub = tg_dataset_subset(ds, 0, 10);
    ck_assert_ptr_nonnull(sub);
    tg_dataset_free(sub);

    ck_assert_ptr_null(tg_dataset_subset(ds, 8, 3));
    assert_error(TG_ERR_INVALID, "tg_dataset_subset: items 8 to 10 requested, dataset holds 10",
                 NULL);
    ck_assert_ptr_null(tg_dataset_subset(ds, -1, 3));
    ck_assert_ptr_null(tg_dataset_subset(ds, 0, 0));
    ck_assert_ptr_null(tg_dataset_subset(NULL, 0, 1));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);

    tg_alloc_fail_at(2);
    ck_assert_ptr_null(tg_dataset_subset(ds, 0, 2));
    tg_alloc_fail_at(0);
    assert_error(TG_ERR_NOMEM, "tg_dataset_subset: ", NULL);
    tg_dataset_free(ds);
    tg_dataset_free(NULL);
}
END_TEST

/*
 * Compact storage keeps the bytes and gives, through tg_dataset_item(),
 * tg_dataset_subset() and the batches, exactly the floats of the default
 * storage, in every normalisation.
 */
START_TEST(test_dataset_compact_gives_the_same_floats)
{
    write_pair(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), true, 20, 4, 5, 10);
    const struct tg_dataset_opts norms[3] = {
            {.norm = TG_DATASET_NORM_UNIT},
            {.norm = TG_DATASET_NORM_RAW},
            {.norm = TG_DATASET_NORM_STANDARD, .compute_stats = true},
    };
    for (int k = 0; k < 3; k++) {
        struct tg_dataset_opts o = norms[k];
        struct tg_dataset *full =
                tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), &o);
        o.compact = true;
        struct tg_dataset *small =
                tg_dataset_load_idx(tmp_path(0, "img.gz"), tmp_path(1, "lab.gz"), &o);
        ck_assert(full != NULL && small != NULL);
        ck_assert_ptr_null(full->pixels);
        ck_assert_ptr_null(small->images);
        ck_assert_ptr_nonnull(small->pixels);
        ck_assert_float_eq(small->mean, full->mean);
        ck_assert_float_eq(small->std, full->std);
        float item[20];
        for (int64_t i = 0; i < 20; i++) {
            for (int q = 0; q < 20; q++)
                ck_assert_int_eq(small->pixels[i * 20 + q], pixel_of((uint32_t)i, (uint32_t)q));
            ck_assert_int_eq(tg_dataset_item(small, i, item), TG_OK);
            ck_assert_mem_eq(item, full->images + i * 20, sizeof(item));
            ck_assert_int_eq(tg_dataset_item(full, i, item), TG_OK);
            ck_assert_mem_eq(item, full->images + i * 20, sizeof(item));
        }
        struct tg_dataset *sub = tg_dataset_subset(small, 5, 4);
        ck_assert_ptr_nonnull(sub);
        ck_assert_ptr_null(sub->images);
        ck_assert_int_eq(tg_dataset_item(sub, 3, item), TG_OK);
        ck_assert_mem_eq(item, full->images + 8 * 20, sizeof(item));
        tg_dataset_free(sub);

        /* the same shuffled batches from both */
        struct tg_batch_opts bo = {.batch_size = 6, .shuffle = true, .seed = 5};
        struct tg_batch_iter *a = tg_batch_iter_new(full, &bo);
        struct tg_batch_iter *b = tg_batch_iter_new(small, &bo);
        struct tg_tensor *xa = tu_tensor(6, 1, 4, 5, -1);
        struct tg_tensor *xb = tu_tensor(6, 1, 4, 5, -1);
        int32_t la[6], lb[6];
        for (int batch = 0; batch < 8; batch++) {
            int64_t na = tg_batch_iter_next(a, xa, la);
            ck_assert_int_eq(tg_batch_iter_next(b, xb, lb), na);
            ck_assert_mem_eq(la, lb, (size_t)na * sizeof(int32_t));
            ck_assert_mem_eq(xa->data, xb->data, (size_t)na * 20 * sizeof(float));
        }
        tg_tensor_free(xb);
        tg_tensor_free(xa);
        tg_batch_iter_free(b);
        tg_batch_iter_free(a);
        tg_dataset_free(small);
        tg_dataset_free(full);
    }
}
END_TEST

START_TEST(test_dataset_item_rejects_bad_args)
{
    write_pair(tmp_path(0, "img"), tmp_path(1, "lab"), false, 3, 2, 2, 10);
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img"), tmp_path(1, "lab"), NULL);
    ck_assert_ptr_nonnull(ds);
    float out[4] = {7, 7, 7, 7};
    ck_assert_int_eq(tg_dataset_item(ds, 3, out), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_dataset_item: item 3 requested, dataset holds 3", NULL);
    ck_assert_int_eq(tg_dataset_item(ds, -1, out), TG_ERR_INVALID);
    ck_assert_float_eq(out[0], 7.0f); // untouched
    ck_assert_int_eq(tg_dataset_item(NULL, 0, out), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "dataset is NULL", NULL);
    ck_assert_int_eq(tg_dataset_item(ds, 0, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "out is NULL", NULL);

    /* a hand-made dataset must say where its items are */
    struct tg_dataset bad = *ds;
    bad.images = NULL;
    ck_assert_int_eq(tg_dataset_item(&bad, 0, out), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "exactly one of images and pixels", NULL);
    struct tg_batch_opts bo = {.batch_size = 2};
    ck_assert_ptr_null(tg_batch_iter_new(&bad, &bo));
    assert_error(TG_ERR_INVALID, "exactly one of images and pixels", NULL);
    tg_dataset_free(ds);
}
END_TEST

/* ---- Batches -------------------------------------------------------------- */

#define BN 50 // items of the batch fixture
#define BH 2
#define BW 3

/* BN items of BH x BW with label i == item i, raw pixels. */
static struct tg_dataset *batch_fixture(void)
{
    write_pair(tmp_path(0, "img"), tmp_path(1, "lab"), false, BN, BH, BW, 256);
    struct tg_dataset_opts o = {.norm = TG_DATASET_NORM_RAW, .n_classes = 256};
    struct tg_dataset *ds = tg_dataset_load_idx(tmp_path(0, "img"), tmp_path(1, "lab"), &o);
    ck_assert_msg(ds != NULL, "%s", tg_last_error());
    return ds;
}

/*
 * Run one epoch, checking each batch's rows against the dataset; order
 * receives the items in visiting order; returns how many were visited.
 */
static int run_epoch(struct tg_batch_iter *it,
                     const struct tg_dataset *ds,
                     struct tg_tensor *x,
                     int64_t bs,
                     int *order)
{
    int32_t labels[64];
    int n_seen = 0;
    int64_t n;
    while ((n = tg_batch_iter_next(it, x, labels)) > 0) {
        ck_assert_int_le(n, bs);
        ck_assert_int_eq(x->shape[0], n);
        ck_assert_int_eq(x->n_elems, n * BH * BW);
        for (int64_t i = 0; i < n; i++) {
            int item = labels[i];
            ck_assert_mem_eq(x->data + i * BH * BW, ds->images + item * BH * BW,
                             BH * BW * sizeof(float));
            order[n_seen++] = item;
        }
    }
    ck_assert_int_eq(n, 0);
    return n_seen;
}

static void assert_permutation(const int *order, int n)
{
    int seen[BN] = {0};
    ck_assert_int_eq(n, BN);
    for (int i = 0; i < n; i++) {
        ck_assert_int_ge(order[i], 0);
        ck_assert_int_lt(order[i], BN);
        seen[order[i]]++;
    }
    for (int i = 0; i < BN; i++)
        ck_assert_int_eq(seen[i], 1);
}

START_TEST(test_batch_iter_epoch_is_permutation)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_batch_opts o = {.batch_size = 8, .shuffle = true, .seed = 1234};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
    ck_assert_ptr_nonnull(it);
    struct tg_tensor *x = tu_tensor(8, 1, BH, BW, -1);
    int order[3][BN];
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(tg_batch_iter_epoch(it), e);
        assert_permutation(order[e], run_epoch(it, ds, x, 8, order[e]));
    }
    ck_assert_int_eq(tg_batch_iter_epoch(it), 3);
    ck_assert_msg(memcmp(order[0], order[1], sizeof(order[0])) != 0, "epochs 0 and 1 agree");
    ck_assert_msg(memcmp(order[1], order[2], sizeof(order[0])) != 0, "epochs 1 and 2 agree");
    bool identity = true;
    for (int i = 0; i < BN; i++)
        identity = identity && order[0][i] == i;
    ck_assert_msg(!identity, "shuffled order is the identity");
    tg_tensor_free(x);
    tg_batch_iter_free(it);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_batch_iter_seed_determines_order)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_tensor *x = tu_tensor(16, 1, BH, BW, -1);
    int order[3][2][BN];
    uint64_t seeds[3] = {7, 7, 8};
    for (int s = 0; s < 3; s++) {
        struct tg_batch_opts o = {.batch_size = 16, .shuffle = true, .seed = seeds[s]};
        struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
        for (int e = 0; e < 2; e++)
            assert_permutation(order[s][e], run_epoch(it, ds, x, 16, order[s][e]));
        tg_batch_iter_free(it);
    }
    ck_assert_mem_eq(order[0], order[1], sizeof(order[0]));
    ck_assert_msg(memcmp(order[0][0], order[2][0], sizeof(order[0][0])) != 0,
                  "seeds 7 and 8 give the same order");

    /* Going back to epoch 1 replays it. */
    struct tg_batch_opts o = {.batch_size = 16, .shuffle = true, .seed = 7};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
    tg_batch_iter_set_epoch(it, 1);
    ck_assert_int_eq(tg_batch_iter_epoch(it), 1);
    int again[BN];
    run_epoch(it, ds, x, 16, again);
    ck_assert_mem_eq(again, order[0][1], sizeof(again));
    tg_batch_iter_free(it);
    tg_tensor_free(x);
    tg_dataset_free(ds);
}
END_TEST

/* The documented generator, written out again: the header's promise holds. */
static uint64_t doc_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

START_TEST(test_batch_iter_order_matches_documentation)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_batch_opts o = {.batch_size = 5, .shuffle = true, .seed = 0xC0FFEE};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
    for (uint64_t e = 0; e < 3; e++) {
        int64_t want[BN];
        for (int i = 0; i < BN; i++)
            want[i] = i;
        uint64_t state = o.seed ^ (0x9E3779B97F4A7C15ull * (e + 1));
        for (int j = BN - 1; j > 0; j--) {
            uint64_t bound = (uint64_t)j + 1;
            uint64_t r;
            do {
                r = doc_splitmix64(&state);
            } while (r < (0 - bound) % bound);
            int64_t k = (int64_t)(r % bound);
            int64_t t = want[j];
            want[j] = want[k];
            want[k] = t;
        }
        tg_batch_iter_set_epoch(it, (int64_t)e);
        ck_assert_mem_eq(tg_batch_iter_order(it), want, sizeof(want));
    }
    tg_batch_iter_free(it);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_batch_iter_fixed_order)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_batch_opts o = {.batch_size = 7, .shuffle = false, .seed = 99};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
    struct tg_tensor *x = tu_tensor(7, BH * BW, -1); // flat rows are accepted too
    int order[BN];
    for (int e = 0; e < 2; e++) {
        int32_t labels[7];
        int n_seen = 0;
        int64_t n;
        while ((n = tg_batch_iter_next(it, x, labels)) > 0) {
            for (int64_t i = 0; i < n; i++)
                order[n_seen++] = labels[i];
        }
        ck_assert_int_eq(n_seen, BN);
        for (int i = 0; i < BN; i++)
            ck_assert_int_eq(order[i], i);
    }
    tg_tensor_free(x);
    tg_batch_iter_free(it);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_batch_iter_keeps_or_drops_last)
{
    struct tg_dataset *ds = batch_fixture(); // 50 items, batches of 16: 16, 16, 16, 2
    struct tg_tensor *x = tu_tensor(16, 1, BH, BW, -1);
    int32_t labels[16];
    for (int drop = 0; drop < 2; drop++) {
        struct tg_batch_opts o = {.batch_size = 16, .shuffle = true, .seed = 5, .drop_last = drop};
        struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
        ck_assert_int_eq(tg_batch_iter_n_batches(it), drop ? 3 : 4);
        for (int e = 0; e < 2; e++) {
            for (int b = 0; b < 3; b++) {
                ck_assert_int_eq(tg_batch_iter_next(it, x, labels), 16);
                ck_assert_int_eq(x->shape[0], 16);
                ck_assert_int_eq(x->n_elems, 16 * BH * BW);
            }
            if (!drop) {
                ck_assert_int_eq(tg_batch_iter_next(it, x, labels), 2);
                ck_assert_int_eq(x->shape[0], 2);
                ck_assert_int_eq(x->n_elems, 2 * BH * BW);
            }
            ck_assert_int_eq(tg_batch_iter_next(it, x, labels), 0);
        }
        tg_batch_iter_free(it);
        /* After a short batch the tensor goes back to full size on its own. */
        ck_assert_int_eq(x->shape[0], 16);
    }
    tg_tensor_free(x);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_batch_iter_batch_larger_than_dataset)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_tensor *x = tu_tensor(64, 1, BH, BW, -1);
    int32_t labels[64];
    struct tg_batch_opts o = {.batch_size = 64, .shuffle = true, .seed = 1, .drop_last = true};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
    ck_assert_int_eq(tg_batch_iter_n_batches(it), 0);
    ck_assert_int_eq(tg_batch_iter_next(it, x, labels), 0);
    ck_assert_int_eq(tg_batch_iter_next(it, x, labels), 0);
    tg_batch_iter_free(it);
    o.drop_last = false;
    it = tg_batch_iter_new(ds, &o);
    ck_assert_int_eq(tg_batch_iter_next(it, x, labels), BN);
    ck_assert_int_eq(tg_batch_iter_next(it, x, labels), 0);
    ck_assert_int_eq(tg_batch_iter_next(it, x, labels), BN);
    tg_batch_iter_free(it);
    tg_tensor_free(x);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_batch_iter_rejects_bad_tensor)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_batch_opts o = {.batch_size = 16, .shuffle = false};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
    int32_t labels[16];
    struct tg_tensor *wrong_rows = tu_tensor(8, 1, BH, BW, -1);
    struct tg_tensor *wrong_plane = tu_tensor(16, 1, BW, BH, -1);
    struct tg_tensor *wrong_rank = tu_tensor(16, BH, BW, -1);
    struct tg_tensor *wrong_channels = tu_tensor(16, 3, BH, BW, -1);
    struct tg_tensor *shrunk_elsewhere = tu_tensor(2, 1, BH, BW, -1);
    struct tg_tensor *bad[] = {wrong_rows, wrong_plane, wrong_rank, wrong_channels,
                               shrunk_elsewhere};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_tensor_fill(bad[i], -3.0f);
        ck_assert_int_eq(tg_batch_iter_next(it, bad[i], labels), -1);
        assert_error(TG_ERR_SHAPE, "tg_batch_iter_next: images is ", "expected 16x1x2x3 or 16x6");
        ck_assert_float_eq(bad[i]->data[0], -3.0f);
    }
    ck_assert_int_eq(tg_batch_iter_next(NULL, wrong_rows, labels), -1);
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_int_eq(tg_batch_iter_next(it, NULL, labels), -1);
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_int_eq(tg_batch_iter_next(it, wrong_rows, NULL), -1);
    assert_error(TG_ERR_INVALID, "tg_batch_iter_next: labels is NULL", NULL);

    /* A tensor shortened by another iterator is not accepted either. */
    struct tg_tensor *x = tu_tensor(16, 1, BH, BW, -1);
    struct tg_batch_iter *other = tg_batch_iter_new(ds, &o);
    for (int b = 0; b < 4; b++)
        tg_batch_iter_next(other, x, labels);
    ck_assert_int_eq(x->shape[0], 2);
    ck_assert_int_eq(tg_batch_iter_next(it, x, labels), -1);
    ck_assert_int_eq(tg_last_status(), TG_ERR_SHAPE);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        tg_tensor_free(bad[i]);
    tg_tensor_free(x);
    tg_batch_iter_free(other);
    tg_batch_iter_free(it);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_batch_iter_new_rejects_bad_args)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_batch_opts o = {.batch_size = 0};
    ck_assert_ptr_null(tg_batch_iter_new(ds, &o));
    assert_error(TG_ERR_INVALID, "tg_batch_iter_new: batch size 0, expected >= 1", NULL);
    o.batch_size = 4;
    ck_assert_ptr_null(tg_batch_iter_new(NULL, &o));
    assert_error(TG_ERR_INVALID, "dataset is NULL", NULL);
    ck_assert_ptr_null(tg_batch_iter_new(ds, NULL));
    assert_error(TG_ERR_INVALID, "opts is NULL", NULL);
    for (uint64_t k = 1; k <= 2; k++) {
        tg_alloc_fail_at(k);
        ck_assert_ptr_null(tg_batch_iter_new(ds, &o));
        tg_alloc_fail_at(0);
        assert_error(TG_ERR_NOMEM, "tg_batch_iter_new: ", NULL);
    }
    ck_assert_int_eq(tg_batch_iter_epoch(NULL), -1);
    ck_assert_int_eq(tg_batch_iter_n_batches(NULL), -1);
    ck_assert_ptr_null(tg_batch_iter_order(NULL));
    tg_batch_iter_set_epoch(NULL, 3);
    tg_batch_iter_free(NULL);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_batch_iter_next_allocates_nothing)
{
    struct tg_dataset *ds = batch_fixture();
    struct tg_batch_opts o = {.batch_size = 16, .shuffle = true, .seed = 3};
    struct tg_batch_iter *it = tg_batch_iter_new(ds, &o);
    struct tg_tensor *x = tu_tensor(16, 1, BH, BW, -1);
    int32_t labels[16];
    uint64_t before = tg_alloc_count();
    int n_batches = 0;
    for (int e = 0; e < 5; e++) {
        while (tg_batch_iter_next(it, x, labels) > 0)
            n_batches++;
    }
    tg_batch_iter_set_epoch(it, 9);
    ck_assert_int_eq(tg_alloc_count(), before);
    ck_assert_int_eq(n_batches, 20);
    tg_tensor_free(x);
    tg_batch_iter_free(it);
    tg_dataset_free(ds);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");

    TCase *tc = tcase_create("load_idx");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_dataset_load_idx_reads_gzip);
    tcase_add_test(tc, test_dataset_load_idx_reads_plain_files);
    tcase_add_test(tc, test_dataset_load_idx_mixes_gzip_and_plain);
    tcase_add_test(tc, test_dataset_load_idx_raw_norm);
    tcase_add_test(tc, test_dataset_load_idx_standard_norm_given_stats);
    tcase_add_test(tc, test_dataset_load_idx_standard_norm_computed_stats);
    tcase_add_test(tc, test_dataset_load_idx_accepts_more_classes);
    tcase_add_loop_test(tc, test_dataset_load_idx_rejects_malformed, 0,
                        (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_dataset_load_idx_rejects_bad_gzip);
    tcase_add_test(tc, test_dataset_load_idx_rejects_missing_file);
    tcase_add_test(tc, test_dataset_load_idx_rejects_label_beyond_n_classes);
    tcase_add_test(tc, test_dataset_load_idx_rejects_bad_options);
    tcase_add_test(tc, test_dataset_load_idx_rejects_constant_images_for_computed_stats);
    tcase_add_test(tc, test_dataset_load_idx_survives_alloc_failure);
    suite_add_tcase(s, tc);

    tc = tcase_create("fashion_mnist");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_fashion_mnist_class_name);
    tcase_add_test(tc, test_dataset_load_fashion_mnist_reads_standard_names);
    tcase_add_test(tc, test_dataset_load_fashion_mnist_real_test_set);
    suite_add_tcase(s, tc);

    tc = tcase_create("subset");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_dataset_subset_copies_range);
    tcase_add_test(tc, test_dataset_compact_gives_the_same_floats);
    tcase_add_test(tc, test_dataset_item_rejects_bad_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("batch_iter");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_batch_iter_epoch_is_permutation);
    tcase_add_test(tc, test_batch_iter_seed_determines_order);
    tcase_add_test(tc, test_batch_iter_order_matches_documentation);
    tcase_add_test(tc, test_batch_iter_fixed_order);
    tcase_add_test(tc, test_batch_iter_keeps_or_drops_last);
    tcase_add_test(tc, test_batch_iter_batch_larger_than_dataset);
    tcase_add_test(tc, test_batch_iter_rejects_bad_tensor);
    tcase_add_test(tc, test_batch_iter_new_rejects_bad_args);
    tcase_add_test(tc, test_batch_iter_next_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(data_suite());
}
