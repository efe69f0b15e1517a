/*
 * Safetensors checkpoints: bit-exact round trips, the byte layout, metadata,
 * listing, every malformed file (written by hand into a temporary directory),
 * atomic saves that leave the old file intact, and destinations unchanged on
 * every failed load; training checkpoints of model, optimiser and generator.
 */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include <tapegrad/checkpoint.h>

/* ---- Temporary files ----------------------------------------------------- */

static char tmp_dir[64];

static void tmp_setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/tg-test-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

/* Remove a directory tree one level deep (the tests make at most one subdir). */
static void remove_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    char path[512];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (unlink(path) != 0 && depth > 0)
            remove_tree(path, depth - 1);
    }
    closedir(d);
    rmdir(dir);
}

static void tmp_teardown(void)
{
    remove_tree(tmp_dir, 2);
}

static const char *tmp_path(int slot, const char *name)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof(paths[slot]), "%s/%s", tmp_dir, name);
    return paths[slot];
}

static int count_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Whole file into a malloc'd buffer; *n receives its size. */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/*
 * A hand-made checkpoint: length (header_len, or the JSON's length when
 * UINT64_MAX), the JSON, then data_len bytes of a fixed pattern.
 */
static void
write_raw_checkpoint(const char *path, uint64_t header_len, const char *json, size_t data_len)
{
    size_t n_json = strlen(json);
    uint64_t len = header_len == UINT64_MAX ? n_json : header_len;
    size_t total = 8 + n_json + data_len;
    uint8_t *buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(len >> (8 * i));
    memcpy(buf + 8, json, n_json);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + n_json + i] = (uint8_t)(i * 37 + 11);
    write_bytes(path, buf, total);
    free(buf);
}

static void assert_error(enum tg_status want, const char *part1, const char *part2)
{
    ck_assert_int_eq(tg_last_status(), want);
    const char *msg = tg_last_error();
    ck_assert_msg(strstr(msg, part1) != NULL, "message \"%s\" lacks \"%s\"", msg, part1);
    if (part2 != NULL)
        ck_assert_msg(strstr(msg, part2) != NULL, "message \"%s\" lacks \"%s\"", msg, part2);
}

/* ---- A small model: three tensors with known values ----------------------- */

#define N_MODEL 3

struct model {
    const char *names[N_MODEL];
    struct tg_tensor *t[N_MODEL];
};

static void model_init(struct model *m, uint64_t seed)
{
    m->names[0] = "conv1.weight";
    m->names[1] = "conv1.bias";
    m->names[2] = "fc.weight";
    m->t[0] = tu_tensor(4, 1, 3, 3, -1);
    m->t[1] = tu_tensor(4, -1);
    m->t[2] = tu_tensor(10, 36, -1);
    for (int i = 0; i < N_MODEL; i++)
        tu_fill_uniform(m->t[i], &seed, -2.0f, 2.0f);
}

static void model_free(struct model *m)
{
    for (int i = 0; i < N_MODEL; i++)
        tg_tensor_free(m->t[i]);
}

static enum tg_status model_save(const struct model *m, const char *path)
{
    return tg_checkpoint_save(path, N_MODEL, m->names, (const struct tg_tensor *const *)m->t, 0,
                              NULL);
}

static void assert_same_data(const struct model *a, const struct model *b)
{
    for (int i = 0; i < N_MODEL; i++)
        ck_assert_mem_eq(a->t[i]->data, b->t[i]->data, (size_t)a->t[i]->n_elems * sizeof(float));
}

/* Load into m, expect failure with status and message parts; m must be unchanged. */
static void
assert_load_fails(const char *path, struct model *m, enum tg_status status, const char *part)
{
    struct model before;
    model_init(&before, 0);
    for (int i = 0; i < N_MODEL; i++)
        tg_tensor_copy(before.t[i], m->t[i]);
    tg_clear_error();
    ck_assert_int_eq(tg_checkpoint_load(path, N_MODEL, m->names, m->t, NULL), status);
    ck_assert_msg(strncmp(tg_last_error(), "tg_checkpoint_load: ", 20) == 0, "%s", tg_last_error());
    assert_error(status, path, part);
    assert_same_data(m, &before);
    model_free(&before);
}

/* ---- Round trips ---------------------------------------------------------- */

START_TEST(test_checkpoint_roundtrip_bit_exact)
{
    struct model a;
    struct model b;
    model_init(&a, 1);
    model_init(&b, 2);
    /* Values a float-to-text path would mangle. */
    uint32_t specials[] = {0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC01234u,
                           0x00000001u, 0x007FFFFFu, 0x3EAAAAABu, 0x7F7FFFFFu};
    memcpy(a.t[2]->data, specials, sizeof(specials));
    const char *path = tmp_path(0, "model.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);
    ck_assert_int_eq(tg_checkpoint_load(path, N_MODEL, b.names, b.t, NULL), TG_OK);
    assert_same_data(&a, &b);
    ck_assert_int_eq(count_dir_entries(tmp_dir), 1); // no temporary file left
    model_free(&a);
    model_free(&b);
}
END_TEST

START_TEST(test_checkpoint_roundtrip_scalar_and_empty)
{
    const char *names[] = {"step", "empty", "w"};
    struct tg_tensor *t[3] = {tg_tensor_new(0, NULL), tu_tensor(0, 3, -1), tu_tensor(2, 2, -1)};
    t[0]->data[0] = 42.5f;
    for (int i = 0; i < 4; i++)
        t[2]->data[i] = (float)i - 1.5f;
    const char *path = tmp_path(0, "x.safetensors");
    ck_assert_int_eq(
            tg_checkpoint_save(path, 3, names, (const struct tg_tensor *const *)t, 0, NULL), TG_OK);
    struct tg_tensor *u[3] = {tg_tensor_new(0, NULL), tu_tensor(0, 3, -1), tu_tensor(2, 2, -1)};
    ck_assert_int_eq(tg_checkpoint_load(path, 3, names, u, NULL), TG_OK);
    ck_assert_float_eq(u[0]->data[0], 42.5f);
    ck_assert_mem_eq(u[2]->data, t[2]->data, 4 * sizeof(float));

    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    ck_assert_int_eq(tg_checkpoint_find(ck, "step")->n_dims, 0);
    ck_assert_int_eq(tg_checkpoint_find(ck, "empty")->begin, tg_checkpoint_find(ck, "empty")->end);
    tg_checkpoint_close(ck);
    for (int i = 0; i < 3; i++) {
        tg_tensor_free(t[i]);
        tg_tensor_free(u[i]);
    }
}
END_TEST

START_TEST(test_checkpoint_save_no_tensors)
{
    const char *path = tmp_path(0, "empty.safetensors");
    struct tg_checkpoint_meta meta[] = {{"epoch", "3"}};
    ck_assert_int_eq(tg_checkpoint_save(path, 0, NULL, NULL, 1, meta), TG_OK);
    ck_assert_int_eq(tg_checkpoint_load(path, 0, NULL, NULL, NULL), TG_OK);
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_int_eq(tg_checkpoint_n_entries(ck), 0);
    ck_assert_str_eq(tg_checkpoint_meta_get(ck, "epoch"), "3");
    tg_checkpoint_close(ck);
}
END_TEST

/* The bytes on disk follow the safetensors layout exactly. */
START_TEST(test_checkpoint_file_layout)
{
    struct model a;
    model_init(&a, 3);
    const char *path = tmp_path(0, "m.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);
    size_t n;
    uint8_t *buf = slurp(path, &n);
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--)
        len = len << 8 | buf[i];
    ck_assert_uint_eq(len % 8, 0);
    ck_assert_uint_eq(n, 8 + len + (36 + 4 + 360) * sizeof(float));
    ck_assert_int_eq(buf[8], '{');
    size_t last = 8 + len - 1;
    while (buf[last] == ' ')
        last--;
    ck_assert_int_eq(buf[last], '}');
    ck_assert_uint_lt(8 + len - 1 - last, 8); // at most 7 spaces of padding

    const char *want = "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3],"
                       "\"data_offsets\":[0,144]},\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[4],"
                       "\"data_offsets\":[144,160]},\"fc.weight\":{\"dtype\":\"F32\",\"shape\":"
                       "[10,36],\"data_offsets\":[160,1600]}}";
    ck_assert_uint_eq(last - 8 + 1, strlen(want));
    ck_assert_mem_eq(buf + 8, want, strlen(want));

    /* Data: little-endian floats, tensors back to back. */
    const uint8_t *data = buf + 8 + len;
    for (int i = 0; i < 4; i++) {
        uint32_t bits;
        memcpy(&bits, &a.t[1]->data[i], 4);
        const uint8_t *p = data + 144 + 4 * i;
        uint32_t got =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        ck_assert_uint_eq(got, bits);
    }
    free(buf);
    model_free(&a);
}
END_TEST

START_TEST(test_checkpoint_metadata_roundtrip)
{
    struct model a;
    model_init(&a, 4);
    struct tg_checkpoint_meta meta[] = {
            {"format", "tapegrad"},
            {"epoch", "12"},
            {"note", "quote\" backslash\\ tab\t newline\n caf\xc3\xa9"},
            {"", "empty key"},
    };
    const char *path = tmp_path(0, "meta.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, a.names,
                                        (const struct tg_tensor *const *)a.t, 4, meta),
                     TG_OK);
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    int n_meta = -1;
    const struct tg_checkpoint_meta *got = tg_checkpoint_meta(ck, &n_meta);
    ck_assert_int_eq(n_meta, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(got[i].key, meta[i].key);
        ck_assert_str_eq(got[i].value, meta[i].value);
    }
    ck_assert_str_eq(tg_checkpoint_meta_get(ck, "epoch"), "12");
    ck_assert_ptr_null(tg_checkpoint_meta_get(ck, "nope"));
    ck_assert_ptr_null(tg_checkpoint_meta_get(ck, NULL));
    ck_assert_int_eq(tg_checkpoint_n_entries(ck), N_MODEL);
    tg_checkpoint_close(ck);

    ck_assert_int_eq(model_save(&a, path), TG_OK);
    ck = tg_checkpoint_open(path);
    ck_assert_ptr_null(tg_checkpoint_meta(ck, &n_meta));
    ck_assert_int_eq(n_meta, 0);
    tg_checkpoint_close(ck);
    model_free(&a);
}
END_TEST

START_TEST(test_checkpoint_lists_entries)
{
    struct model a;
    model_init(&a, 5);
    const char *path = tmp_path(0, "list.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    ck_assert_int_eq(tg_checkpoint_n_entries(ck), 3);
    uint64_t offset = 0;
    for (int i = 0; i < N_MODEL; i++) {
        const struct tg_checkpoint_entry *e = tg_checkpoint_entry_at(ck, i);
        ck_assert_ptr_nonnull(e);
        ck_assert_str_eq(e->name, a.names[i]);
        ck_assert_str_eq(e->dtype, "F32");
        ck_assert_int_eq(e->n_dims, a.t[i]->n_dims);
        for (int d = 0; d < TG_MAX_DIMS; d++)
            ck_assert_int_eq(e->shape[d], a.t[i]->shape[d]);
        ck_assert_uint_eq(e->begin, offset);
        offset += (uint64_t)a.t[i]->n_elems * 4;
        ck_assert_uint_eq(e->end, offset);
        ck_assert_ptr_eq(tg_checkpoint_find(ck, a.names[i]), e);
    }
    ck_assert_ptr_null(tg_checkpoint_entry_at(ck, 3));
    ck_assert_ptr_null(tg_checkpoint_entry_at(ck, -1));
    ck_assert_ptr_null(tg_checkpoint_find(ck, "fc.bias"));
    ck_assert_ptr_null(tg_checkpoint_find(ck, NULL));
    ck_assert_int_eq(tg_checkpoint_n_entries(NULL), -1);
    ck_assert_ptr_null(tg_checkpoint_entry_at(NULL, 0));
    tg_checkpoint_close(ck);
    tg_checkpoint_close(NULL);
    model_free(&a);
}
END_TEST

/* A tensor subset via tg_checkpoint_read with allow_extra, on an open file. */
START_TEST(test_checkpoint_read_subset_with_allow_extra)
{
    struct model a;
    model_init(&a, 6);
    const char *path = tmp_path(0, "sub.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);
    struct tg_tensor *bias = tu_tensor(4, -1);
    const char *name = "conv1.bias";
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_int_eq(tg_checkpoint_read(ck, 1, &name, &bias, NULL), TG_ERR_FORMAT);
    assert_error(TG_ERR_FORMAT, "tg_checkpoint_read: ",
                 "2 tensors not asked for, first "
                 "\"conv1.weight\"");
    ck_assert_float_eq(bias->data[0], 0.0f);
    struct tg_checkpoint_load_opts opts = {.allow_extra = true};
    ck_assert_int_eq(tg_checkpoint_read(ck, 1, &name, &bias, &opts), TG_OK);
    ck_assert_mem_eq(bias->data, a.t[1]->data, 4 * sizeof(float));
    tg_checkpoint_close(ck);
    tg_tensor_free(bias);
    model_free(&a);
}
END_TEST

/* ---- Loads refused against the model ------------------------------------- */

START_TEST(test_checkpoint_load_rejects_shape_mismatch)
{
    const char *name = "conv1.weight";
    struct tg_tensor *saved = tu_tensor(32, 1, 5, 5, -1);
    const char *path = tmp_path(0, "s.safetensors");
    ck_assert_int_eq(
            tg_checkpoint_save(path, 1, &name, (const struct tg_tensor *const *)&saved, 0, NULL),
            TG_OK);
    struct tg_tensor *model = tu_tensor(32, 1, 3, 3, -1);
    tg_tensor_fill(model, 7.0f);
    ck_assert_int_eq(tg_checkpoint_load(path, 1, &name, &model, NULL), TG_ERR_SHAPE);
    assert_error(TG_ERR_SHAPE, "conv1.weight: file has 32x1x5x5, model expects 32x1x3x3", NULL);
    ck_assert_float_eq(model->data[0], 7.0f);

    /* Same element count, other rank. */
    struct tg_tensor *flat = tu_tensor(800, -1);
    ck_assert_int_eq(tg_checkpoint_load(path, 1, &name, &flat, NULL), TG_ERR_SHAPE);
    assert_error(TG_ERR_SHAPE, "file has 32x1x5x5, model expects 800", NULL);
    tg_tensor_free(flat);
    tg_tensor_free(model);
    tg_tensor_free(saved);
}
END_TEST

START_TEST(test_checkpoint_load_rejects_missing_and_extra_names)
{
    struct model a;
    struct model b;
    model_init(&a, 7);
    model_init(&b, 8);
    const char *path = tmp_path(0, "m.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);

    b.names[2] = "fc2.weight";
    assert_load_fails(path, &b, TG_ERR_FORMAT, "no tensor named \"fc2.weight\" (the file holds 3)");
    b.names[2] = "fc.weight";

    /* The file holds one tensor the model lacks. */
    const char *names4[] = {"conv1.weight", "conv1.bias", "fc.weight", "fc.bias"};
    struct tg_tensor *t4[] = {a.t[0], a.t[1], a.t[2], a.t[1]};
    ck_assert_int_eq(
            tg_checkpoint_save(path, 4, names4, (const struct tg_tensor *const *)t4, 0, NULL),
            TG_OK);
    assert_load_fails(path, &b, TG_ERR_FORMAT, "1 tensors not asked for, first \"fc.bias\"");
    struct tg_checkpoint_load_opts opts = {.allow_extra = true};
    ck_assert_int_eq(tg_checkpoint_load(path, N_MODEL, b.names, b.t, &opts), TG_OK);
    assert_same_data(&a, &b);
    model_free(&a);
    model_free(&b);
}
END_TEST

START_TEST(test_checkpoint_load_rejects_other_dtype)
{
    struct model b;
    model_init(&b, 9);
    const char *path = tmp_path(0, "d.safetensors");
    const char *json = "{\"conv1.weight\":{\"dtype\":\"F16\",\"shape\":[4,1,3,3],\"data_offsets\":"
                       "[0,72]},\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":"
                       "[72,88]},\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,36],"
                       "\"data_offsets\":[88,1528]}}";
    write_raw_checkpoint(path, UINT64_MAX, json, 1528);
    struct tg_checkpoint *ck = tg_checkpoint_open(path); // listing accepts other dtypes
    ck_assert_ptr_nonnull(ck);
    ck_assert_str_eq(tg_checkpoint_entry_at(ck, 0)->dtype, "F16");
    tg_checkpoint_close(ck);
    assert_load_fails(path, &b, TG_ERR_FORMAT, "conv1.weight: dtype F16, expected F32");
    model_free(&b);
}
END_TEST

START_TEST(test_checkpoint_load_rejects_bad_args)
{
    struct model a;
    model_init(&a, 10);
    const char *path = tmp_path(0, "m.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);
    ck_assert_int_eq(tg_checkpoint_load(NULL, N_MODEL, a.names, a.t, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_checkpoint_load: path is NULL", NULL);
    ck_assert_int_eq(tg_checkpoint_load(path, -1, a.names, a.t, NULL), TG_ERR_INVALID);
    ck_assert_int_eq(tg_checkpoint_load(path, N_MODEL, NULL, a.t, NULL), TG_ERR_INVALID);
    const char *dup[] = {"conv1.bias", "conv1.bias", "fc.weight"};
    ck_assert_int_eq(tg_checkpoint_load(path, N_MODEL, dup, a.t, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "\"conv1.bias\" or its tensor given twice", NULL);
    struct tg_tensor *with_null[] = {a.t[0], NULL, a.t[2]};
    ck_assert_int_eq(tg_checkpoint_load(path, N_MODEL, a.names, with_null, NULL), TG_ERR_INVALID);
    ck_assert_int_eq(tg_checkpoint_read(NULL, 0, NULL, NULL, NULL), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_checkpoint_open(NULL));
    ck_assert_int_eq(tg_last_status(), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_checkpoint_open(tmp_path(1, "absent")));
    assert_error(TG_ERR_IO, "tg_checkpoint_open: ", "cannot open");
    ck_assert_ptr_null(tg_checkpoint_open(tmp_dir));
    assert_error(TG_ERR_IO, "not a regular file", NULL);
    model_free(&a);
}
END_TEST

/* ---- Malformed files ------------------------------------------------------ */

/* The model's three entries, correct, to be spoiled one field at a time. */
#define GOOD_W "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3],\"data_offsets\":[0,144]}"
#define GOOD_B "\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[144,160]}"
#define GOOD_F "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,36],\"data_offsets\":[160,1600]}"

struct bad_file {
    const char *what;
    uint64_t header_len; // UINT64_MAX: the JSON's own length
    const char *json;
    size_t data_len;
    enum tg_status status;
    const char *msg;
};

static const struct bad_file bad_files[] = {
        {"control: valid", UINT64_MAX, "{" GOOD_W "," GOOD_B "," GOOD_F "}", 1600, TG_OK, ""},
        {"header longer than file", 5000, "{" GOOD_W "," GOOD_B "," GOOD_F "}", 1600, TG_ERR_FORMAT,
         "header length 5000, expected 2 to"},
        {"header length 0", 0, "{}", 0, TG_ERR_FORMAT, "header length 0"},
        {"header length huge", (uint64_t)1 << 62, "{}", 0, TG_ERR_FORMAT,
         "header length 4611686018427387904"},
        {"header cuts JSON", 20, "{" GOOD_W "," GOOD_B "," GOOD_F "}", 1600, TG_ERR_FORMAT,
         "not valid JSON"},
        {"not JSON", UINT64_MAX, "this is not json", 16, TG_ERR_FORMAT, "not valid JSON"},
        {"JSON array", UINT64_MAX, "[1, 2, 3]", 0, TG_ERR_FORMAT, "not a JSON object"},
        {"junk after JSON", UINT64_MAX, "{" GOOD_W "," GOOD_B "," GOOD_F "}  x", 1600,
         TG_ERR_FORMAT, "bytes after its JSON"},
        {"entry not object", UINT64_MAX, "{\"conv1.weight\":[1]," GOOD_B "," GOOD_F "}", 1600,
         TG_ERR_FORMAT, "conv1.weight: entry is not a JSON object"},
        {"no dtype", UINT64_MAX,
         "{\"conv1.weight\":{\"shape\":[4,1,3,3],\"data_offsets\":[0,144]}," GOOD_B "," GOOD_F "}",
         1600, TG_ERR_FORMAT, "\"dtype\" is missing"},
        {"unknown dtype", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F99\",\"shape\":[4,1,3,3],\"data_offsets\":[0,144]}"
         "," GOOD_B "," GOOD_F "}",
         1600, TG_ERR_UNSUPPORTED, "unknown dtype \"F99\""},
        {"shape not array", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":36,\"data_offsets\":[0,144]}," GOOD_B
         "," GOOD_F "}",
         1600, TG_ERR_FORMAT, "\"shape\" is missing or not an array"},
        {"negative size", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,-1,3,3],\"data_offsets\":[0,144]}"
         "," GOOD_B "," GOOD_F "}",
         1600, TG_ERR_FORMAT, "size 1 of \"shape\" is not a whole number"},
        {"fractional size", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3.5],\"data_offsets\":[0,144]}"
         "," GOOD_B "," GOOD_F "}",
         1600, TG_ERR_FORMAT, "size 3 of \"shape\""},
        {"too many dims", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3,1,1,1],\"data_offsets\":[0,144]"
         "}," GOOD_B "," GOOD_F "}",
         1600, TG_ERR_UNSUPPORTED, "7 dimensions, at most 6"},
        {"offsets not pair", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3],\"data_offsets\":[0]}," GOOD_B
         "," GOOD_F "}",
         1600, TG_ERR_FORMAT, "\"data_offsets\" is not [begin, end]"},
        {"offsets reversed", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3],\"data_offsets\":[144,0]}"
         "," GOOD_B "," GOOD_F "}",
         1600, TG_ERR_FORMAT, "\"data_offsets\" is not [begin, end]"},
        {"span differs from shape", UINT64_MAX,
         "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,3,3],\"data_offsets\":[0,140]}"
         "," GOOD_B "," GOOD_F "}",
         1600, TG_ERR_FORMAT, "data_offsets span 140 bytes, a F32 of that shape needs 144"},
        {"overlap", UINT64_MAX,
         "{" GOOD_W
         ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[140,156]}," GOOD_F "}",
         1600, TG_ERR_FORMAT, "conv1.bias: data starts at byte 140, expected 144 (overlaps"},
        {"gap", UINT64_MAX,
         "{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[148,164]},"
         "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,36],\"data_offsets\":[164,1604]}}",
         1604, TG_ERR_FORMAT, "expected 144 (leaves a gap)"},
        {"offsets past end", UINT64_MAX,
         "{" GOOD_W "," GOOD_B ",\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,36],"
         "\"data_offsets\":[160,1600]}}",
         1000, TG_ERR_FORMAT,
         "tensors need 1600 bytes of data, file has 1000 after the header "
         "(truncated)"},
        {"trailing data", UINT64_MAX, "{" GOOD_W "," GOOD_B "," GOOD_F "}", 1604, TG_ERR_FORMAT,
         "file has 1604 after the header (trailing bytes)"},
        {"duplicate name", UINT64_MAX,
         "{" GOOD_W "," GOOD_B ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":"
         "[160,176]},"
         "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,36],\"data_offsets\":"
         "[176,1616]}}",
         1616, TG_ERR_FORMAT, "tensor \"conv1.bias\" appears twice"},
        {"metadata not object", UINT64_MAX,
         "{\"__metadata__\":\"x\"," GOOD_W "," GOOD_B "," GOOD_F "}", 1600, TG_ERR_FORMAT,
         "\"__metadata__\" is not a JSON object"},
        {"metadata value not string", UINT64_MAX,
         "{\"__metadata__\":{\"epoch\":3}," GOOD_W "," GOOD_B "," GOOD_F "}", 1600, TG_ERR_FORMAT,
         "metadata value of \"epoch\" is not a string"},
        {"file shorter than length", 0, "", 0, TG_ERR_FORMAT,
         "too short for the 8-byte header length"},
};

START_TEST(test_checkpoint_load_rejects_malformed)
{
    const struct bad_file *c = &bad_files[_i];
    const char *path = tmp_path(0, "bad.safetensors");
    if (strcmp(c->what, "file shorter than length") == 0)
        write_bytes(path, "\x10\0\0", 3);
    else
        write_raw_checkpoint(path, c->header_len, c->json, c->data_len);
    struct model m;
    model_init(&m, 11);
    if (c->status == TG_OK) {
        ck_assert_msg(tg_checkpoint_load(path, N_MODEL, m.names, m.t, NULL) == TG_OK, "%s",
                      tg_last_error());
    } else {
        assert_load_fails(path, &m, c->status, c->msg);
        ck_assert_ptr_null(tg_checkpoint_open(path));
        ck_assert_int_eq(tg_last_status(), c->status);
    }
    model_free(&m);
}
END_TEST

/* A saved file cut short, before and after it was opened. */
START_TEST(test_checkpoint_load_rejects_truncated_file)
{
    struct model a;
    struct model b;
    model_init(&a, 12);
    model_init(&b, 13);
    const char *path = tmp_path(0, "t.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);
    size_t n;
    uint8_t *buf = slurp(path, &n);
    write_bytes(path, buf, n - 4);
    assert_load_fails(path, &b, TG_ERR_FORMAT, "tensors need 1600 bytes of data, file has 1596");

    write_bytes(path, buf, n);
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    ck_assert_int_eq(truncate(path, (off_t)(n - 100)), 0);
    struct model before;
    model_init(&before, 13);
    ck_assert_int_eq(tg_checkpoint_read(ck, N_MODEL, b.names, b.t, NULL), TG_ERR_IO);
    assert_error(TG_ERR_IO, "fc.weight: cannot read its 1440 bytes", NULL);
    assert_same_data(&b, &before);
    tg_checkpoint_close(ck);
    model_free(&before);
    free(buf);
    model_free(&a);
    model_free(&b);
}
END_TEST

/* ---- Saving: refusals and atomicity -------------------------------------- */

START_TEST(test_checkpoint_save_rejects_bad_args)
{
    struct model a;
    model_init(&a, 14);
    const struct tg_tensor *const *t = (const struct tg_tensor *const *)a.t;
    const char *path = tmp_path(0, "x.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(NULL, N_MODEL, a.names, t, 0, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_checkpoint_save: ", NULL);
    ck_assert_int_eq(tg_checkpoint_save(path, -1, a.names, t, 0, NULL), TG_ERR_INVALID);
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, a.names, t, 1, NULL), TG_ERR_INVALID);

    const char *dup[] = {"a", "b", "a"};
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, dup, t, 0, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "name \"a\" given twice", NULL);
    const char *empty[] = {"a", "", "c"};
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, empty, t, 0, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "name 1 is empty", NULL);
    const char *reserved[] = {"a", "b", "__metadata__"};
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, reserved, t, 0, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "reserved", NULL);
    const char *with_null[] = {"a", NULL, "c"};
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, with_null, t, 0, NULL), TG_ERR_INVALID);
    const struct tg_tensor *null_t[] = {a.t[0], NULL, a.t[2]};
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, a.names, null_t, 0, NULL), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tensor 1 (conv1.bias) is NULL", NULL);

    struct tg_checkpoint_meta dup_meta[] = {{"k", "1"}, {"k", "2"}};
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, a.names, t, 2, dup_meta), TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "metadata key \"k\" given twice", NULL);
    struct tg_checkpoint_meta null_meta[] = {{"k", NULL}};
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, a.names, t, 1, null_meta), TG_ERR_INVALID);
    ck_assert_int_eq(count_dir_entries(tmp_dir), 0);
    model_free(&a);
}
END_TEST

/* Checks that path still holds exactly old_bytes and nothing else is in the dir. */
static void
assert_old_file_intact(const char *path, const uint8_t *old_bytes, size_t old_n, int dir_entries)
{
    size_t n;
    uint8_t *now = slurp(path, &n);
    ck_assert_uint_eq(n, old_n);
    ck_assert_mem_eq(now, old_bytes, n);
    free(now);
    ck_assert_int_eq(count_dir_entries(tmp_dir), dir_entries);
}

START_TEST(test_checkpoint_save_to_missing_dir_fails)
{
    struct model a;
    model_init(&a, 15);
    const char *path = tmp_path(0, "no-such-dir/m.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_ERR_IO);
    assert_error(TG_ERR_IO, "tg_checkpoint_save: ", "cannot create");
    ck_assert_int_eq(count_dir_entries(tmp_dir), 0);
    model_free(&a);
}
END_TEST

START_TEST(test_checkpoint_save_alloc_failure_keeps_old_file)
{
    struct model old;
    struct model fresh;
    model_init(&old, 16);
    model_init(&fresh, 17);
    const char *path = tmp_path(0, "m.safetensors");
    ck_assert_int_eq(model_save(&old, path), TG_OK);
    size_t old_n;
    uint8_t *old_bytes = slurp(path, &old_n);

    enum tg_status st = TG_ERR_NOMEM;
    int n_failed = 0;
    for (uint64_t k = 1; st != TG_OK && k < 50; k++) {
        tg_alloc_fail_at(k);
        st = model_save(&fresh, path);
        tg_alloc_fail_at(0);
        if (st != TG_OK) {
            ck_assert_int_eq(st, TG_ERR_NOMEM);
            assert_error(TG_ERR_NOMEM, "tg_checkpoint_save: ", NULL);
            assert_old_file_intact(path, old_bytes, old_n, 1);
            n_failed++;
        }
    }
    ck_assert_int_eq(st, TG_OK);
    ck_assert_int_ge(n_failed, 2);
    struct model back;
    model_init(&back, 18);
    ck_assert_int_eq(tg_checkpoint_load(path, N_MODEL, back.names, back.t, NULL), TG_OK);
    assert_same_data(&back, &fresh);
    free(old_bytes);
    model_free(&back);
    model_free(&old);
    model_free(&fresh);
}
END_TEST

/* A write that fails halfway (file size limit): the old file stays, no temp is left. */
START_TEST(test_checkpoint_save_write_failure_keeps_old_file)
{
    const char *name = "big";
    struct tg_tensor *small = tu_tensor(8, -1);
    const char *path = tmp_path(0, "m.safetensors");
    ck_assert_int_eq(
            tg_checkpoint_save(path, 1, &name, (const struct tg_tensor *const *)&small, 0, NULL),
            TG_OK);
    size_t old_n;
    uint8_t *old_bytes = slurp(path, &old_n);

    struct tg_tensor *big = tu_tensor(1 << 18, -1); // 1 MiB of data
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    struct rlimit low = saved;
    low.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &low), 0);
    enum tg_status st =
            tg_checkpoint_save(path, 1, &name, (const struct tg_tensor *const *)&big, 0, NULL);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    ck_assert_int_eq(st, TG_ERR_IO);
    assert_error(TG_ERR_IO, "tg_checkpoint_save: ", "write failed");
    assert_old_file_intact(path, old_bytes, old_n, 1);
    free(old_bytes);
    tg_tensor_free(big);
    tg_tensor_free(small);
}
END_TEST

/* Rename fails (the destination is a non-empty directory): the temp file goes. */
START_TEST(test_checkpoint_save_rename_failure_removes_temp)
{
    struct model a;
    model_init(&a, 19);
    const char *dir = tmp_path(0, "taken");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    write_bytes(tmp_path(1, "taken/inside"), "x", 1);
    ck_assert_int_eq(model_save(&a, dir), TG_ERR_IO);
    assert_error(TG_ERR_IO, "cannot rename", NULL);
    ck_assert_int_eq(count_dir_entries(tmp_dir), 1);
    model_free(&a);
}
END_TEST

/* A leftover temporary name is never overwritten (O_EXCL). */
START_TEST(test_checkpoint_save_refuses_existing_temp)
{
    struct model a;
    model_init(&a, 20);
    const char *path = tmp_path(0, "m.safetensors");
    ck_assert_int_eq(model_save(&a, path), TG_OK);
    size_t old_n;
    uint8_t *old_bytes = slurp(path, &old_n);
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    write_bytes(tmp, "someone else's", 14);
    ck_assert_int_eq(model_save(&a, path), TG_ERR_IO);
    assert_error(TG_ERR_IO, "cannot create", NULL);
    assert_old_file_intact(path, old_bytes, old_n, 2);
    size_t n;
    uint8_t *other = slurp(tmp, &n);
    ck_assert_uint_eq(n, 14);
    free(other);
    free(old_bytes);
    model_free(&a);
}
END_TEST

START_TEST(test_checkpoint_load_survives_alloc_failure)
{
    struct model a;
    struct model b;
    model_init(&a, 21);
    model_init(&b, 22);
    struct tg_checkpoint_meta meta[] = {{"epoch", "1"}};
    const char *path = tmp_path(0, "m.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, a.names,
                                        (const struct tg_tensor *const *)a.t, 1, meta),
                     TG_OK);
    struct model before;
    model_init(&before, 22);
    enum tg_status st = TG_ERR_NOMEM;
    int n_failed = 0;
    for (uint64_t k = 1; st != TG_OK && k < 50; k++) {
        tg_alloc_fail_at(k);
        st = tg_checkpoint_load(path, N_MODEL, b.names, b.t, NULL);
        tg_alloc_fail_at(0);
        if (st != TG_OK) {
            ck_assert_int_eq(st, TG_ERR_NOMEM);
            assert_error(TG_ERR_NOMEM, "tg_checkpoint_load: ", path);
            assert_same_data(&b, &before);
            n_failed++;
        }
    }
    ck_assert_int_eq(st, TG_OK);
    ck_assert_int_ge(n_failed, 5);
    assert_same_data(&a, &b);
    model_free(&before);
    model_free(&a);
    model_free(&b);
}
END_TEST

/* ---- Training state ------------------------------------------------------- */

/* The small model, Adam over its three tensors and a generator, some steps in. */
struct trainer {
    struct model m;
    struct tg_optim *opt;
    struct tg_rng rng;
};

/* One Adam step with gradients drawn from the generator. */
static void trainer_step(struct trainer *t)
{
    for (int i = 0; i < N_MODEL; i++) {
        for (int64_t j = 0; j < t->m.t[i]->n_elems; j++)
            t->m.t[i]->grad[j] = tg_rng_uniform(&t->rng) - 0.5f;
    }
    ck_assert_msg(tg_optim_step(t->opt) == TG_OK, "%s", tg_last_error());
}

/* Equal seeds and step counts give trainers equal bit for bit. */
static void trainer_init(struct trainer *t, uint64_t seed, int n_steps)
{
    model_init(&t->m, seed);
    for (int i = 0; i < N_MODEL; i++)
        ck_assert_int_eq(tg_tensor_set_requires_grad(t->m.t[i], true), TG_OK);
    t->opt = tg_optim_new_adam(t->m.t, N_MODEL, NULL);
    ck_assert_ptr_nonnull(t->opt);
    tg_rng_seed(&t->rng, seed);
    for (int s = 0; s < n_steps; s++)
        trainer_step(t);
    (void)tg_rng_normal(&t->rng); // leaves a spare normal deviate pending
}

static void trainer_free(struct trainer *t)
{
    tg_optim_free(t->opt);
    model_free(&t->m);
}

static enum tg_status trainer_save(struct trainer *t, const char *path)
{
    struct tg_checkpoint_meta meta[] = {{"epoch", "3"}, {"model", "small"}};
    return tg_train_state_save(path, N_MODEL, t->m.names, (const struct tg_tensor *const *)t->m.t,
                               t->opt, &t->rng, 2, meta);
}

static enum tg_status trainer_read(struct trainer *t, const char *path)
{
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    if (ck == NULL)
        return tg_last_status();
    enum tg_status st = tg_train_state_read(ck, N_MODEL, t->m.names, t->m.t, t->opt, &t->rng, NULL);
    tg_checkpoint_close(ck);
    return st;
}

/* Weights, step count, optimiser state and generator state agree bit for bit. */
static void assert_same_trainer(struct trainer *a, struct trainer *b)
{
    assert_same_data(&a->m, &b->m);
    ck_assert_int_eq(tg_optim_get_step(a->opt), tg_optim_get_step(b->opt));
    const char *na[2 * N_MODEL];
    const char *nb[2 * N_MODEL];
    struct tg_tensor *sa[2 * N_MODEL];
    struct tg_tensor *sb[2 * N_MODEL];
    ck_assert_int_eq(tg_optim_state_list(a->opt, 2 * N_MODEL, na, sa), TG_OK);
    ck_assert_int_eq(tg_optim_state_list(b->opt, 2 * N_MODEL, nb, sb), TG_OK);
    for (int i = 0; i < 2 * N_MODEL; i++) {
        ck_assert_str_eq(na[i], nb[i]);
        ck_assert_mem_eq(sa[i]->data, sb[i]->data, (size_t)sa[i]->n_elems * sizeof(float));
    }
    uint64_t wa[TG_RNG_STATE_WORDS];
    uint64_t wb[TG_RNG_STATE_WORDS];
    tg_rng_get_state(&a->rng, wa);
    tg_rng_get_state(&b->rng, wb);
    ck_assert_mem_eq(wa, wb, sizeof(wa));
}

START_TEST(test_train_state_roundtrip_restores_everything)
{
    struct trainer a;
    struct trainer b;
    trainer_init(&a, 30, 3);
    trainer_init(&b, 31, 1); // other weights, moments, step and generator
    const char *path = tmp_path(0, "train.safetensors");
    ck_assert_msg(trainer_save(&a, path) == TG_OK, "%s", tg_last_error());
    ck_assert_msg(trainer_read(&b, path) == TG_OK, "%s", tg_last_error());
    ck_assert_int_eq(tg_optim_get_step(b.opt), 3);
    assert_same_trainer(&a, &b);
    ck_assert_float_eq(tg_rng_normal(&a.rng), tg_rng_normal(&b.rng)); // the pending spare

    /* The runs go on alike. */
    trainer_step(&a);
    trainer_step(&b);
    assert_same_trainer(&a, &b);

    /* The names and metadata the CLI and other readers rely on. */
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    ck_assert_int_eq(tg_checkpoint_n_entries(ck), 3 * N_MODEL);
    ck_assert_str_eq(tg_checkpoint_entry_at(ck, 0)->name, "conv1.weight");
    ck_assert_str_eq(tg_checkpoint_entry_at(ck, N_MODEL)->name, "optimizer.state.0.exp_avg");
    ck_assert_ptr_nonnull(tg_checkpoint_find(ck, "optimizer.state.2.exp_avg_sq"));
    ck_assert_str_eq(tg_checkpoint_meta_get(ck, "optimizer_step"), "3");
    ck_assert_str_eq(tg_checkpoint_meta_get(ck, "epoch"), "3");
    const char *hex = tg_checkpoint_meta_get(ck, "rng");
    ck_assert_ptr_nonnull(hex);
    ck_assert_uint_eq(strlen(hex), 16 * TG_RNG_STATE_WORDS + TG_RNG_STATE_WORDS - 1);
    for (int i = 1; i < TG_RNG_STATE_WORDS; i++)
        ck_assert_int_eq(hex[17 * i - 1], ':');
    tg_checkpoint_close(ck);
    trainer_free(&a);
    trainer_free(&b);
}
END_TEST

/* Without optimiser and generator it is a plain model checkpoint. */
START_TEST(test_train_state_model_only)
{
    struct model a;
    struct model b;
    model_init(&a, 32);
    model_init(&b, 33);
    const char *path = tmp_path(0, "model.safetensors");
    ck_assert_int_eq(tg_train_state_save(path, N_MODEL, a.names,
                                         (const struct tg_tensor *const *)a.t, NULL, NULL, 0, NULL),
                     TG_OK);
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    ck_assert_ptr_null(tg_checkpoint_meta_get(ck, "rng"));
    ck_assert_int_eq(tg_train_state_read(ck, N_MODEL, b.names, b.t, NULL, NULL, NULL), TG_OK);
    assert_same_data(&a, &b);
    tg_checkpoint_close(ck);
    model_free(&a);
    model_free(&b);
}
END_TEST

/* A valid "rng" value: five words of 16 hex digits, the last with no spare pending. */
#define GOOD_RNG                                                                                   \
    "0123456789abcdef:0123456789abcdef:0123456789abcdef:0123456789abcdef:0000000000000000"

/* Metadata of a training checkpoint that must be refused, with a word of the message. */
static const struct {
    const char *step; // NULL: absent
    const char *rng;  // NULL: absent
    const char *part;
} bad_train_meta[] = {
        {"3", NULL, "no metadata \"rng\""},
        {"3", "", "metadata \"rng\" is \"\""},
        {"3", "0123456789abcdef", "16 hex digits"},
        {"3", GOOD_RNG ":", "16 hex digits"},
        {"3",
         "0123456789abcdef-0123456789abcdef:0123456789abcdef:0123456789abcdef:0000000000000000",
         "16 hex digits"},
        {"3",
         " 123456789abcdef:0123456789abcdef:0123456789abcdef:0123456789abcdef:0000000000000000",
         "16 hex digits"},
        {"3",
         "0123456789abcdef:0123456789abcdef:0123456789abcdef:0123456789abcdef:000000000000000g",
         "16 hex digits"},
        {"3",
         "0000000000000000:0000000000000000:0000000000000000:0000000000000000:0000000000000000",
         "all zero"},
        {"3",
         "0123456789abcdef:0123456789abcdef:0123456789abcdef:0123456789abcdef:ffff000000000000",
         "unknown bits"},
        {NULL, GOOD_RNG, "no metadata \"optimizer_step\""},
        {"", GOOD_RNG, "not a count >= 0"},
        {"-1", GOOD_RNG, "not a count >= 0"},
        {"3x", GOOD_RNG, "not a count >= 0"},
        {" 3", GOOD_RNG, "not a count >= 0"},
        {"99999999999999999999", GOOD_RNG, "not a count >= 0"},
};

/*
 * Write a's tensors and optimiser state under their training checkpoint
 * names with the given metadata, bypassing tg_train_state_save().
 */
static void write_train_file(struct trainer *a,
                             const char *path,
                             int n_meta,
                             const struct tg_checkpoint_meta *meta)
{
    const char *names[3 * N_MODEL];
    const struct tg_tensor *tensors[3 * N_MODEL];
    const char *state_names[2 * N_MODEL];
    struct tg_tensor *state[2 * N_MODEL];
    char prefixed[2 * N_MODEL][64];
    ck_assert_int_eq(tg_optim_state_list(a->opt, 2 * N_MODEL, state_names, state), TG_OK);
    for (int i = 0; i < N_MODEL; i++) {
        names[i] = a->m.names[i];
        tensors[i] = a->m.t[i];
    }
    for (int i = 0; i < 2 * N_MODEL; i++) {
        snprintf(prefixed[i], sizeof(prefixed[i]), "optimizer.%s", state_names[i]);
        names[N_MODEL + i] = prefixed[i];
        tensors[N_MODEL + i] = state[i];
    }
    ck_assert_int_eq(tg_checkpoint_save(path, 3 * N_MODEL, names, tensors, n_meta, meta), TG_OK);
}

/* Read path into a trainer; expect status and message parts, and nothing changed. */
static void assert_train_read_fails(const char *path,
                                    struct trainer *b,
                                    uint64_t seed,
                                    int n_steps,
                                    enum tg_status status,
                                    const char *part)
{
    tg_clear_error();
    ck_assert_int_eq(trainer_read(b, path), status);
    ck_assert_msg(strncmp(tg_last_error(), "tg_train_state_read: ", 21) == 0, "%s",
                  tg_last_error());
    assert_error(status, path, part);
    struct trainer before;
    trainer_init(&before, seed, n_steps);
    assert_same_trainer(b, &before);
    trainer_free(&before);
}

START_TEST(test_train_state_read_rejects_bad_metadata)
{
    struct trainer a;
    struct trainer b;
    trainer_init(&a, 34, 2);
    trainer_init(&b, 35, 1);
    struct tg_checkpoint_meta meta[2];
    int n_meta = 0;
    if (bad_train_meta[_i].step != NULL)
        meta[n_meta++] = (struct tg_checkpoint_meta){"optimizer_step", bad_train_meta[_i].step};
    if (bad_train_meta[_i].rng != NULL)
        meta[n_meta++] = (struct tg_checkpoint_meta){"rng", bad_train_meta[_i].rng};
    const char *path = tmp_path(0, "bad.safetensors");
    write_train_file(&a, path, n_meta, meta);
    assert_train_read_fails(path, &b, 35, 1, TG_ERR_FORMAT, bad_train_meta[_i].part);
    trainer_free(&a);
    trainer_free(&b);
}
END_TEST

/* An optimiser over other parameters than the saved one's is refused. */
START_TEST(test_train_state_read_rejects_other_parameter_set)
{
    struct trainer a;
    trainer_init(&a, 36, 2);
    const char *path = tmp_path(0, "train.safetensors");
    ck_assert_int_eq(trainer_save(&a, path), TG_OK);

    /* Fewer parameters, more parameters, the same ones in another order. */
    struct trainer b;
    trainer_init(&b, 37, 1);
    struct tg_tensor *extra = tu_tensor(5, -1);
    ck_assert_int_eq(tg_tensor_set_requires_grad(extra, true), TG_OK);
    struct tg_tensor *more[N_MODEL + 1] = {b.m.t[0], b.m.t[1], b.m.t[2], extra};
    struct tg_tensor *swapped[N_MODEL] = {b.m.t[2], b.m.t[1], b.m.t[0]};
    struct {
        struct tg_optim *opt;
        enum tg_status status;
        const char *part;
    } cases[] = {
            {tg_optim_new_adam(b.m.t, N_MODEL - 1, NULL), TG_ERR_FORMAT,
             "holds 6 optimiser state tensors, the adam optimiser has 4"},
            {tg_optim_new_adam(more, N_MODEL + 1, NULL), TG_ERR_FORMAT, "optimiser has 8"},
            {tg_optim_new_adam(swapped, N_MODEL, NULL), TG_ERR_SHAPE, "optimizer.state.0.exp_avg"},
            {tg_optim_new_sgd(b.m.t, N_MODEL, &(struct tg_sgd_opts){0.1, 0.9, 0.0, false}),
             TG_ERR_FORMAT, "the sgd optimiser has 3"},
    };
    struct tg_optim *own = b.opt;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        ck_assert_ptr_nonnull(cases[c].opt);
        b.opt = cases[c].opt;
        ck_assert_int_eq(trainer_read(&b, path), cases[c].status);
        assert_error(cases[c].status, path, cases[c].part);
        ck_assert_int_eq(tg_optim_get_step(b.opt), 0);
        tg_optim_free(cases[c].opt);
    }
    b.opt = own;
    struct trainer before;
    trainer_init(&before, 37, 1);
    assert_same_trainer(&b, &before);
    trainer_free(&before);
    tg_tensor_free(extra);
    trainer_free(&b);
    trainer_free(&a);
}
END_TEST

/* Optimiser state with a NaN: refused after reading, before anything is written. */
START_TEST(test_train_state_read_rejects_nonfinite_state)
{
    struct trainer a;
    struct trainer b;
    trainer_init(&a, 38, 2);
    trainer_init(&b, 39, 1);
    const char *names[2 * N_MODEL];
    struct tg_tensor *state[2 * N_MODEL];
    ck_assert_int_eq(tg_optim_state_list(a.opt, 2 * N_MODEL, names, state), TG_OK);
    state[3]->data[1] = NAN;
    const char *path = tmp_path(0, "nan.safetensors");
    ck_assert_int_eq(trainer_save(&a, path), TG_OK);
    assert_train_read_fails(path, &b, 39, 1, TG_ERR_NONFINITE, "not finite");
    trainer_free(&a);
    trainer_free(&b);
}
END_TEST

/* Tensors beyond the model's and the optimiser's: refused unless allow_extra. */
START_TEST(test_train_state_read_extra_tensors)
{
    struct trainer a;
    struct model b;
    trainer_init(&a, 40, 1);
    model_init(&b, 41);
    const char *path = tmp_path(0, "train.safetensors");
    ck_assert_int_eq(trainer_save(&a, path), TG_OK);
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    ck_assert_int_eq(tg_train_state_read(ck, N_MODEL, b.names, b.t, NULL, NULL, NULL),
                     TG_ERR_FORMAT);
    assert_error(TG_ERR_FORMAT, "tg_train_state_read: ", "optimizer.state.0.exp_avg");
    struct model before;
    model_init(&before, 41);
    assert_same_data(&b, &before);
    struct tg_checkpoint_load_opts lo = {.allow_extra = true};
    ck_assert_int_eq(tg_train_state_read(ck, N_MODEL, b.names, b.t, NULL, NULL, &lo), TG_OK);
    assert_same_data(&b, &a.m);
    tg_checkpoint_close(ck);
    model_free(&before);
    model_free(&b);
    trainer_free(&a);
}
END_TEST

START_TEST(test_train_state_rejects_bad_args)
{
    struct trainer a;
    trainer_init(&a, 42, 1);
    const char *path = tmp_path(0, "train.safetensors");
    const struct tg_tensor *const *ts = (const struct tg_tensor *const *)a.m.t;
    ck_assert_int_eq(tg_train_state_save(NULL, N_MODEL, a.m.names, ts, a.opt, &a.rng, 0, NULL),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_train_state_save: ", NULL);
    ck_assert_int_eq(tg_train_state_save(path, -1, a.m.names, ts, a.opt, &a.rng, 0, NULL),
                     TG_ERR_INVALID);
    ck_assert_int_eq(tg_train_state_save(path, N_MODEL, a.m.names, NULL, a.opt, &a.rng, 0, NULL),
                     TG_ERR_INVALID);
    ck_assert_int_eq(tg_train_state_save(path, N_MODEL, a.m.names, ts, a.opt, &a.rng, 1, NULL),
                     TG_ERR_INVALID);
    struct tg_checkpoint_meta rng_key[] = {{"rng", "mine"}};
    ck_assert_int_eq(tg_train_state_save(path, N_MODEL, a.m.names, ts, NULL, NULL, 1, rng_key),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_train_state_save: ", "\"rng\"");
    const char *reserved[N_MODEL] = {"conv1.weight", "optimizer.lr", "fc.weight"};
    ck_assert_int_eq(tg_train_state_save(path, N_MODEL, reserved, ts, a.opt, &a.rng, 0, NULL),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_train_state_save: ", "optimizer.lr");
    ck_assert_int_eq(count_dir_entries(tmp_dir), 0);

    ck_assert_int_eq(trainer_save(&a, path), TG_OK);
    struct tg_checkpoint *ck = tg_checkpoint_open(path);
    ck_assert_ptr_nonnull(ck);
    ck_assert_int_eq(tg_train_state_read(NULL, N_MODEL, a.m.names, a.m.t, a.opt, &a.rng, NULL),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_train_state_read: ", NULL);
    ck_assert_int_eq(tg_train_state_read(ck, N_MODEL, a.m.names, NULL, a.opt, &a.rng, NULL),
                     TG_ERR_INVALID);
    ck_assert_int_eq(tg_train_state_read(ck, -1, a.m.names, a.m.t, a.opt, &a.rng, NULL),
                     TG_ERR_INVALID);
    ck_assert_int_eq(tg_train_state_read(ck, N_MODEL, reserved, a.m.t, a.opt, &a.rng, NULL),
                     TG_ERR_INVALID);
    assert_error(TG_ERR_INVALID, "tg_train_state_read: ", "optimizer.lr");
    const char *twice[N_MODEL] = {"conv1.weight", "conv1.weight", "fc.weight"};
    ck_assert_int_eq(tg_train_state_read(ck, N_MODEL, twice, a.m.t, a.opt, &a.rng, NULL),
                     TG_ERR_INVALID);
    tg_checkpoint_close(ck);
    trainer_free(&a);
}
END_TEST

START_TEST(test_train_state_survives_alloc_failure)
{
    struct trainer a;
    struct trainer b;
    struct trainer before;
    trainer_init(&a, 43, 2);
    trainer_init(&b, 44, 1);
    trainer_init(&before, 44, 1);
    const char *path = tmp_path(0, "train.safetensors");
    enum tg_status st = TG_ERR_NOMEM;
    int n_failed = 0;
    for (uint64_t k = 1; st != TG_OK && k < 50; k++) {
        tg_alloc_fail_at(k);
        st = trainer_save(&a, path);
        tg_alloc_fail_at(0);
        if (st != TG_OK) {
            assert_error(TG_ERR_NOMEM, "tg_train_state_save: ", NULL);
            ck_assert_int_eq(count_dir_entries(tmp_dir), 0);
            n_failed++;
        }
    }
    ck_assert_int_eq(st, TG_OK);
    ck_assert_int_ge(n_failed, 4);

    st = TG_ERR_NOMEM;
    n_failed = 0;
    for (uint64_t k = 1; st != TG_OK && k < 100; k++) {
        tg_alloc_fail_at(k);
        st = trainer_read(&b, path);
        tg_alloc_fail_at(0);
        if (st != TG_OK) {
            assert_error(TG_ERR_NOMEM, "tg_", NULL);
            assert_same_trainer(&b, &before);
            n_failed++;
        }
    }
    ck_assert_int_eq(st, TG_OK);
    ck_assert_int_ge(n_failed, 10);
    assert_same_trainer(&a, &b);
    trainer_free(&before);
    trainer_free(&b);
    trainer_free(&a);
}
END_TEST

/* ---- An independent reader ------------------------------------------------ */

/*
 * Parse a saved file with a few lines of Python (json and struct only), when
 * python3 is installed: the format is what other safetensors readers expect.
 */
START_TEST(test_checkpoint_parses_in_python)
{
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        printf("note: python3 absent, independent reader test skipped\n");
        return;
    }
    struct model a;
    model_init(&a, 23);
    struct tg_checkpoint_meta meta[] = {{"epoch", "4"}};
    const char *path = tmp_path(0, "py.safetensors");
    ck_assert_int_eq(tg_checkpoint_save(path, N_MODEL, a.names,
                                        (const struct tg_tensor *const *)a.t, 1, meta),
                     TG_OK);
    const char *script = "import json, struct, sys\n"
                         "b = open(sys.argv[1], 'rb').read()\n"
                         "n = struct.unpack('<Q', b[:8])[0]\n"
                         "assert n % 8 == 0\n"
                         "h = json.loads(b[8:8 + n])\n"
                         "data = b[8 + n:]\n"
                         "assert h.pop('__metadata__') == {'epoch': '4'}\n"
                         "s = 0.0\n"
                         "for name, e in h.items():\n"
                         "    lo, hi = e['data_offsets']\n"
                         "    assert e['dtype'] == 'F32' and hi - lo == 4 * eval('*'.join(map(str, "
                         "e['shape'])))\n"
                         "    s += sum(struct.unpack('<%df' % ((hi - lo) // 4), data[lo:hi]))\n"
                         "assert max(e['data_offsets'][1] for e in h.values()) == len(data)\n"
                         "print('%.6e' % s)\n";
    const char *script_path = tmp_path(1, "reader.py");
    write_bytes(script_path, script, strlen(script));
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "python3 %s %s", script_path, path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[64] = {0};
    ck_assert_ptr_nonnull(fgets(out, sizeof(out), p));
    ck_assert_int_eq(pclose(p), 0);
    double want = 0.0;
    for (int i = 0; i < N_MODEL; i++) {
        for (int64_t j = 0; j < a.t[i]->n_elems; j++)
            want += a.t[i]->data[j];
    }
    ck_assert_double_eq_tol(strtod(out, NULL), want, 1e-4);
    model_free(&a);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");

    TCase *tc = tcase_create("roundtrip");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_checkpoint_roundtrip_bit_exact);
    tcase_add_test(tc, test_checkpoint_roundtrip_scalar_and_empty);
    tcase_add_test(tc, test_checkpoint_save_no_tensors);
    tcase_add_test(tc, test_checkpoint_file_layout);
    tcase_add_test(tc, test_checkpoint_metadata_roundtrip);
    tcase_add_test(tc, test_checkpoint_lists_entries);
    tcase_add_test(tc, test_checkpoint_read_subset_with_allow_extra);
    tcase_add_test(tc, test_checkpoint_parses_in_python);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_checkpoint_load_rejects_shape_mismatch);
    tcase_add_test(tc, test_checkpoint_load_rejects_missing_and_extra_names);
    tcase_add_test(tc, test_checkpoint_load_rejects_other_dtype);
    tcase_add_test(tc, test_checkpoint_load_rejects_bad_args);
    tcase_add_loop_test(tc, test_checkpoint_load_rejects_malformed, 0,
                        (int)(sizeof(bad_files) / sizeof(bad_files[0])));
    tcase_add_test(tc, test_checkpoint_load_rejects_truncated_file);
    tcase_add_test(tc, test_checkpoint_load_survives_alloc_failure);
    suite_add_tcase(s, tc);

    tc = tcase_create("save");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_checkpoint_save_rejects_bad_args);
    tcase_add_test(tc, test_checkpoint_save_to_missing_dir_fails);
    tcase_add_test(tc, test_checkpoint_save_alloc_failure_keeps_old_file);
    tcase_add_test(tc, test_checkpoint_save_write_failure_keeps_old_file);
    tcase_add_test(tc, test_checkpoint_save_rename_failure_removes_temp);
    tcase_add_test(tc, test_checkpoint_save_refuses_existing_temp);
    suite_add_tcase(s, tc);

    tc = tcase_create("train_state");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_train_state_roundtrip_restores_everything);
    tcase_add_test(tc, test_train_state_model_only);
    tcase_add_loop_test(tc, test_train_state_read_rejects_bad_metadata, 0,
                        (int)(sizeof(bad_train_meta) / sizeof(bad_train_meta[0])));
    tcase_add_test(tc, test_train_state_read_rejects_other_parameter_set);
    tcase_add_test(tc, test_train_state_read_rejects_nonfinite_state);
    tcase_add_test(tc, test_train_state_read_extra_tensors);
    tcase_add_test(tc, test_train_state_rejects_bad_args);
    tcase_add_test(tc, test_train_state_survives_alloc_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(checkpoint_suite());
}
