/*
 * Safetensors checkpoints: the header is written and parsed with cJSON, every
 * entry is checked against the file before any tensor is touched, and saving
 * goes through an exclusive temporary file renamed over the destination.
 * Training checkpoints add the optimiser's and the generator's state on top.
 */
#include <tapegrad/checkpoint.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

#include "core-impl.h"

#define META_KEY      "__metadata__"
#define MAX_JSON_INT  9007199254740992.0 // 2^53: larger integers are not exact in a double
#define STAGING_BYTES ((size_t)1 << 16)

struct tg_checkpoint {
    FILE *f;
    char *path;
    uint64_t data_start; // 8 + header length
    uint64_t data_size;
    int n_entries;
    struct tg_checkpoint_entry *entries;        // header order
    const struct tg_checkpoint_entry **by_name; // sorted by name
    int n_meta;
    struct tg_checkpoint_meta *meta;
    char *pool; // every name, key and value, back to back
    size_t pool_used;
};

/* Put func in front of the message of a failed allocation. */
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

static char *str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = tg_xmalloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

/* "2x3x4" ("scalar" for 0 dimensions) into buf. */
static char *shape_str(int n_dims, const int64_t *shape, char *buf, size_t size)
{
    if (n_dims == 0) {
        snprintf(buf, size, "scalar");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n_dims && used < size; i++) {
        int w = snprintf(buf + used, size - used, i == 0 ? "%" PRId64 : "x%" PRId64, shape[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

/* ---- Byte order: the file is little-endian ------------------------------- */

static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Reverse the bytes of n 4-byte words on a big-endian host; no-op elsewhere. */
static void words_to_le(uint8_t *p, size_t n)
{
    if (host_is_little_endian())
        return;
    for (size_t i = 0; i < n; i++, p += 4) {
        uint8_t t0 = p[0];
        uint8_t t1 = p[1];
        p[0] = p[3];
        p[1] = p[2];
        p[2] = t1;
        p[3] = t0;
    }
}

/* ---- Saving -------------------------------------------------------------- */

static enum tg_status check_save_args(const char *path,
                                      int n,
                                      const char *const *names,
                                      const struct tg_tensor *const *tensors,
                                      int n_meta,
                                      const struct tg_checkpoint_meta *meta)
{
    const char *func = "tg_checkpoint_save";
    if (path == NULL || n < 0 || n_meta < 0 || (n > 0 && (names == NULL || tensors == NULL)) ||
        (n_meta > 0 && meta == NULL))
        return tg_error_set(TG_ERR_INVALID, "%s: NULL argument or negative count", func);
    for (int i = 0; i < n; i++) {
        if (names[i] == NULL || names[i][0] == '\0' || strcmp(names[i], META_KEY) == 0)
            return tg_error_set(TG_ERR_INVALID, "%s: name %d is %s", func, i,
                                names[i] == NULL   ? "NULL"
                                : names[i][0] == 0 ? "empty"
                                                   : "the reserved \"" META_KEY "\"");
        if (tensors[i] == NULL || tensors[i]->data == NULL)
            return tg_error_set(TG_ERR_INVALID, "%s: tensor %d (%s) is NULL", func, i, names[i]);
        for (int j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0)
                return tg_error_set(TG_ERR_INVALID, "%s: name \"%s\" given twice", func, names[i]);
        }
    }
    for (int i = 0; i < n_meta; i++) {
        if (meta[i].key == NULL || meta[i].value == NULL)
            return tg_error_set(TG_ERR_INVALID, "%s: metadata pair %d has a NULL string", func, i);
        for (int j = 0; j < i; j++) {
            if (strcmp(meta[i].key, meta[j].key) == 0)
                return tg_error_set(TG_ERR_INVALID, "%s: metadata key \"%s\" given twice", func,
                                    meta[i].key);
        }
    }
    return TG_OK;
}

/* Add one {"dtype", "shape", "data_offsets"} entry; false when cJSON fails. */
static bool add_entry(cJSON *root, const char *name, const struct tg_tensor *t, uint64_t begin)
{
    cJSON *e = cJSON_AddObjectToObject(root, name);
    if (e == NULL || cJSON_AddStringToObject(e, "dtype", "F32") == NULL)
        return false;
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON *offsets = cJSON_AddArrayToObject(e, "data_offsets");
    if (shape == NULL || offsets == NULL)
        return false;
    for (int d = 0; d < t->n_dims; d++) {
        if (!cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d])))
            return false;
    }
    uint64_t end = begin + (uint64_t)t->n_elems * sizeof(float);
    return cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)begin)) &&
           cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)end));
}

/* The JSON header text (to be released with cJSON_free), or NULL. */
static char *build_header(int n,
                          const char *const *names,
                          const struct tg_tensor *const *tensors,
                          int n_meta,
                          const struct tg_checkpoint_meta *meta)
{
    char *text = NULL;
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        goto fail;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, META_KEY);
        if (m == NULL)
            goto fail;
        for (int i = 0; i < n_meta; i++) {
            if (cJSON_AddStringToObject(m, meta[i].key, meta[i].value) == NULL)
                goto fail;
        }
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (!add_entry(root, names[i], tensors[i], offset))
            goto fail;
        offset += (uint64_t)tensors[i]->n_elems * sizeof(float);
    }
    text = cJSON_PrintUnformatted(root);
    if (text == NULL)
        goto fail;
    cJSON_Delete(root);
    return text;

fail:
    cJSON_Delete(root);
    tg_error_set(TG_ERR_NOMEM, "tg_checkpoint_save: out of memory building the JSON header");
    return NULL;
}

/* Write the length, the padded header and the data to f; false on a write error. */
static bool write_body(FILE *f,
                       const char *header,
                       int n,
                       const struct tg_tensor *const *tensors,
                       uint8_t *staging)
{
    size_t len = strlen(header);
    uint64_t padded = ((uint64_t)len + 7) / 8 * 8;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(padded >> (8 * i));
    if (fwrite(le, 1, 8, f) != 8 || fwrite(header, 1, len, f) != len)
        return false;
    for (uint64_t i = len; i < padded; i++) {
        if (fputc(' ', f) == EOF)
            return false;
    }

    size_t per_chunk = STAGING_BYTES / sizeof(float);
    for (int i = 0; i < n; i++) {
        const float *src = tensors[i]->data;
        size_t left = (size_t)tensors[i]->n_elems;
        while (left > 0) {
            size_t k = left < per_chunk ? left : per_chunk;
            memcpy(staging, src, k * sizeof(float));
            words_to_le(staging, k);
            if (fwrite(staging, sizeof(float), k, f) != k)
                return false;
            src += k;
            left -= k;
        }
    }
    return true;
}

/*
 * Sync the directory holding path, so that the rename survives a crash. buf
 * has room for path (the temporary name's buffer is reused: no allocation
 * after the rename). A failure is only logged: the new file is in place.
 */
static void sync_parent_dir(const char *path, char *buf)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(buf, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(buf, path, n);
        buf[n] = '\0';
    }
    int fd = open(buf, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        TG_LOG_WARN("%s: saved, but syncing directory %s failed (%s)", path, buf, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/*
 * Write everything to the already created temporary file tmp (open as fd),
 * sync it and close it. fd is closed on every path.
 */
static enum tg_status write_tmp(int fd,
                                const char *tmp,
                                const char *header,
                                int n,
                                const struct tg_tensor *const *tensors,
                                uint8_t *staging)
{
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        int err = errno;
        close(fd);
        return tg_error_set(TG_ERR_IO, "tg_checkpoint_save: %s: cannot open stream (%s)", tmp,
                            strerror(err));
    }
    bool ok = write_body(f, header, n, tensors, staging) && fflush(f) == 0;
    int err = errno;
    if (ok && fsync(fileno(f)) != 0) {
        ok = false;
        err = errno;
    }
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok)
        return tg_error_set(TG_ERR_IO, "tg_checkpoint_save: %s: write failed (%s)", tmp,
                            strerror(err));
    return TG_OK;
}

enum tg_status tg_checkpoint_save(const char *path,
                                  int n,
                                  const char *const *names,
                                  const struct tg_tensor *const *tensors,
                                  int n_meta,
                                  const struct tg_checkpoint_meta *meta)
{
    enum tg_status st = check_save_args(path, n, names, tensors, n_meta, meta);
    if (st != TG_OK)
        return st;

    /* Everything that can fail for lack of memory comes before the file. */
    char *header = build_header(n, names, tensors, n_meta, meta);
    if (header == NULL)
        return TG_ERR_NOMEM;
    size_t tmp_size = strlen(path) + 32;
    char *tmp = tg_xmalloc(tmp_size);
    uint8_t *staging = tg_xmalloc(STAGING_BYTES);
    if (tmp == NULL || staging == NULL) {
        st = TG_ERR_NOMEM;
        name_nomem("tg_checkpoint_save");
        goto free_buffers;
    }
    snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());

    /* Temporary file, then rename over the destination. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = tg_error_set(TG_ERR_IO, "tg_checkpoint_save: %s: cannot create (%s)", tmp,
                          strerror(errno));
        goto free_buffers;
    }
    st = write_tmp(fd, tmp, header, n, tensors, staging);
    if (st == TG_OK && rename(tmp, path) != 0)
        st = tg_error_set(TG_ERR_IO, "tg_checkpoint_save: cannot rename %s to %s (%s)", tmp, path,
                          strerror(errno));
    if (st != TG_OK)
        unlink(tmp);
    else
        sync_parent_dir(path, tmp);

free_buffers:
    tg_xfree(staging);
    tg_xfree(tmp);
    cJSON_free(header);
    return st;
}

/* ---- Opening: header checks ---------------------------------------------- */

static const struct {
    const char *name;
    uint64_t size;
} dtypes[] = {
        {"F32", 4}, {"F64", 8}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
        {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
        {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1},
};

/* Size of one element of a safetensors dtype, or 0 when the name is unknown. */
static uint64_t dtype_size(const char *name, const char **canonical)
{
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *canonical = dtypes[i].name;
            return dtypes[i].size;
        }
    }
    return 0;
}

/*
 * Copy a string of the header into the pool. The pool holds as many bytes as
 * the header text, which always suffices: every string of the JSON text takes
 * at least its decoded length plus two quotes there.
 */
static const char *pool_dup(struct tg_checkpoint *ck, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ck->pool + ck->pool_used;
    memcpy(p, s, n);
    ck->pool_used += n;
    return p;
}

/* A JSON number that is a whole value in [0, 2^53]. */
static bool json_uint(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v <= MAX_JSON_INT) || v != (double)(uint64_t)v)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* Shape of an entry: an array of at most TG_MAX_DIMS sizes. */
static enum tg_status parse_shape(const char *pfx,
                                  const char *name,
                                  const cJSON *arr,
                                  struct tg_checkpoint_entry *e,
                                  uint64_t *n_elems)
{
    if (!cJSON_IsArray(arr))
        return tg_error_set(TG_ERR_FORMAT, "%s: %s: \"shape\" is missing or not an array", pfx,
                            name);
    int n_dims = cJSON_GetArraySize(arr);
    if (n_dims > TG_MAX_DIMS)
        return tg_error_set(TG_ERR_UNSUPPORTED, "%s: %s: %d dimensions, at most %d supported", pfx,
                            name, n_dims, TG_MAX_DIMS);
    e->n_dims = n_dims;
    *n_elems = 1;
    int d = 0;
    for (const cJSON *it = arr->child; it != NULL; it = it->next, d++) {
        uint64_t size;
        if (!json_uint(it, &size))
            return tg_error_set(TG_ERR_FORMAT,
                                "%s: %s: size %d of \"shape\" is not a whole number >= 0", pfx,
                                name, d);
        if (size != 0 && *n_elems > (uint64_t)INT64_MAX / size)
            return tg_error_set(TG_ERR_FORMAT, "%s: %s: element count overflows", pfx, name);
        e->shape[d] = (int64_t)size;
        *n_elems *= size;
    }
    for (; d < TG_MAX_DIMS; d++)
        e->shape[d] = 1;
    return TG_OK;
}

/* One tensor entry: {"dtype", "shape", "data_offsets"} with consistent sizes. */
static enum tg_status parse_entry(const char *pfx, const cJSON *item, struct tg_checkpoint_entry *e)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return tg_error_set(TG_ERR_FORMAT, "%s: %s: entry is not a JSON object", pfx, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dtype))
        return tg_error_set(TG_ERR_FORMAT, "%s: %s: \"dtype\" is missing or not a string", pfx,
                            name);
    uint64_t elem_size = dtype_size(dtype->valuestring, &e->dtype);
    if (elem_size == 0)
        return tg_error_set(TG_ERR_UNSUPPORTED, "%s: %s: unknown dtype \"%.32s\"", pfx, name,
                            dtype->valuestring);
    uint64_t n_elems = 0;
    enum tg_status st =
            parse_shape(pfx, name, cJSON_GetObjectItemCaseSensitive(item, "shape"), e, &n_elems);
    if (st != TG_OK)
        return st;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &e->begin) ||
        !json_uint(off->child->next, &e->end) || e->begin > e->end)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: %s: \"data_offsets\" is not [begin, end] with 0 <= begin <= end",
                            pfx, name);
    if (n_elems > UINT64_MAX / elem_size || e->end - e->begin != n_elems * elem_size)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: %s: data_offsets span %" PRIu64 " bytes, a %s of that shape needs "
                            "%" PRIu64,
                            pfx, name, e->end - e->begin, e->dtype, n_elems * elem_size);
    return TG_OK;
}

static enum tg_status parse_metadata(const char *pfx, const cJSON *obj, struct tg_checkpoint *ck)
{
    if (!cJSON_IsObject(obj))
        return tg_error_set(TG_ERR_FORMAT, "%s: \"%s\" is not a JSON object", pfx, META_KEY);
    int n = cJSON_GetArraySize(obj);
    if (n == 0)
        return TG_OK;
    ck->meta = tg_xcalloc((size_t)n * sizeof(*ck->meta));
    if (ck->meta == NULL)
        return TG_ERR_NOMEM;
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        if (!cJSON_IsString(it))
            return tg_error_set(TG_ERR_FORMAT, "%s: metadata value of \"%s\" is not a string", pfx,
                                it->string);
        for (int i = 0; i < ck->n_meta; i++) {
            if (strcmp(ck->meta[i].key, it->string) == 0)
                return tg_error_set(TG_ERR_FORMAT, "%s: metadata key \"%s\" appears twice", pfx,
                                    it->string);
        }
        ck->meta[ck->n_meta].key = pool_dup(ck, it->string);
        ck->meta[ck->n_meta].value = pool_dup(ck, it->valuestring);
        ck->n_meta++;
    }
    return TG_OK;
}

static int cmp_name(const void *a, const void *b)
{
    const struct tg_checkpoint_entry *const *x = a;
    const struct tg_checkpoint_entry *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const struct tg_checkpoint_entry *const *x = a;
    const struct tg_checkpoint_entry *const *y = b;
    if ((*x)->begin != (*y)->begin)
        return (*x)->begin < (*y)->begin ? -1 : 1;
    return (*x)->end < (*y)->end ? -1 : (*x)->end > (*y)->end;
}

/* Names unique, and the entries tile [0, data_size) exactly. Sorts ck->by_name. */
static enum tg_status check_layout(const char *pfx, struct tg_checkpoint *ck)
{
    size_t n = (size_t)ck->n_entries;
    qsort(ck->by_name, n, sizeof(*ck->by_name), cmp_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ck->by_name[i - 1]->name, ck->by_name[i]->name) == 0)
            return tg_error_set(TG_ERR_FORMAT, "%s: tensor \"%s\" appears twice", pfx,
                                ck->by_name[i]->name);
    }

    const struct tg_checkpoint_entry **by_offset = tg_xmalloc((n > 0 ? n : 1) * sizeof(*by_offset));
    if (by_offset == NULL)
        return TG_ERR_NOMEM;
    memcpy(by_offset, ck->by_name, n * sizeof(*by_offset));
    qsort(by_offset, n, sizeof(*by_offset), cmp_offset);
    enum tg_status st = TG_OK;
    uint64_t next = 0;
    for (size_t i = 0; i < n && st == TG_OK; i++) {
        const struct tg_checkpoint_entry *e = by_offset[i];
        if (e->begin != next)
            st = tg_error_set(TG_ERR_FORMAT,
                              "%s: %s: data starts at byte %" PRIu64 ", expected %" PRIu64 " (%s)",
                              pfx, e->name, e->begin, next,
                              e->begin < next ? "overlaps another tensor" : "leaves a gap");
        next = e->end;
    }
    if (st == TG_OK && next != ck->data_size)
        st = tg_error_set(TG_ERR_FORMAT,
                          "%s: tensors need %" PRIu64 " bytes of data, file has %" PRIu64
                          " after the header (%s)",
                          pfx, next, ck->data_size,
                          next > ck->data_size ? "truncated" : "trailing bytes");
    tg_xfree(by_offset);
    return st;
}

/* Walk the top-level object: tensor entries and "__metadata__". */
static enum tg_status parse_items(const char *pfx, const cJSON *root, struct tg_checkpoint *ck)
{
    size_t n_items = (size_t)cJSON_GetArraySize(root);
    ck->entries = tg_xcalloc((n_items > 0 ? n_items : 1) * sizeof(*ck->entries));
    ck->by_name = tg_xmalloc((n_items > 0 ? n_items : 1) * sizeof(*ck->by_name));
    if (ck->entries == NULL || ck->by_name == NULL)
        return TG_ERR_NOMEM;
    bool seen_meta = false;
    for (const cJSON *it = root->child; it != NULL; it = it->next) {
        enum tg_status st;
        if (strcmp(it->string, META_KEY) == 0) {
            st = seen_meta ? tg_error_set(TG_ERR_FORMAT, "%s: \"%s\" appears twice", pfx, META_KEY)
                           : parse_metadata(pfx, it, ck);
            seen_meta = true;
        } else {
            struct tg_checkpoint_entry *e = &ck->entries[ck->n_entries];
            st = parse_entry(pfx, it, e);
            e->name = pool_dup(ck, it->string);
            ck->by_name[ck->n_entries++] = e;
        }
        if (st != TG_OK)
            return st;
    }
    return check_layout(pfx, ck);
}

/* Parse the JSON header text of n bytes (n + 1 with its terminator) into ck. */
static enum tg_status
parse_header(const char *pfx, const char *text, size_t n, struct tg_checkpoint *ck)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (root == NULL)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: header is not valid JSON (error at byte %td of %zu)", pfx,
                            end != NULL ? end - text : (ptrdiff_t)0, n);
    enum tg_status st = TG_OK;
    for (; end < text + n && st == TG_OK; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')
            st = tg_error_set(TG_ERR_FORMAT, "%s: header has bytes after its JSON (at byte %td)",
                              pfx, end - text);
    }
    if (st == TG_OK && !cJSON_IsObject(root))
        st = tg_error_set(TG_ERR_FORMAT, "%s: header is not a JSON object", pfx);
    if (st == TG_OK) {
        ck->pool = tg_xmalloc(n + 1);
        st = ck->pool != NULL ? parse_items(pfx, root, ck) : TG_ERR_NOMEM;
    }
    cJSON_Delete(root);
    return st;
}

/* Read the length prefix and the header text; checks the length against the file. */
static enum tg_status read_header_text(
        const char *pfx, struct tg_checkpoint *ck, uint64_t file_size, char **text, size_t *len)
{
    uint8_t le[8];
    if (file_size < 8 || fread(le, 1, 8, ck->f) != 8)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: file is %" PRIu64 " bytes, too short for the 8-byte header length",
                            pfx, file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | le[i];
    uint64_t room = file_size - 8;
    uint64_t most = room < TG_CHECKPOINT_MAX_HEADER ? room : TG_CHECKPOINT_MAX_HEADER;
    if (n < 2 || n > most)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: header length %" PRIu64 ", expected 2 to %" PRIu64
                            " (the file has %" PRIu64 " bytes after the length)",
                            pfx, n, most, room);
    *text = tg_xmalloc((size_t)n + 1);
    if (*text == NULL)
        return TG_ERR_NOMEM;
    if (fread(*text, 1, (size_t)n, ck->f) != n)
        return tg_error_set(TG_ERR_IO, "%s: cannot read the %" PRIu64 "-byte header (%s)", pfx, n,
                            ferror(ck->f) ? strerror(errno) : "file shrank while reading");
    (*text)[n] = '\0';
    *len = (size_t)n;
    ck->data_start = 8 + n;
    ck->data_size = room - n;
    return TG_OK;
}

/* Open path into ck and check everything; messages start with pfx ("func: path"). */
static enum tg_status open_checked(const char *pfx, const char *path, struct tg_checkpoint *ck)
{
    ck->f = fopen(path, "rb");
    if (ck->f == NULL)
        return tg_error_set(TG_ERR_IO, "%s: cannot open (%s)", pfx, strerror(errno));
    struct stat sb;
    if (fstat(fileno(ck->f), &sb) != 0)
        return tg_error_set(TG_ERR_IO, "%s: cannot stat (%s)", pfx, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return tg_error_set(TG_ERR_IO, "%s: not a regular file", pfx);

    char *text = NULL;
    size_t len = 0;
    enum tg_status st = read_header_text(pfx, ck, (uint64_t)sb.st_size, &text, &len);
    if (st == TG_OK)
        st = parse_header(pfx, text, len, ck);
    tg_xfree(text);
    return st;
}

/* tg_checkpoint_open() on behalf of func, which names every message. */
static struct tg_checkpoint *checkpoint_open(const char *func, const char *path)
{
    if (path == NULL) {
        tg_error_set(TG_ERR_INVALID, "%s: path is NULL", func);
        return NULL;
    }
    char pfx[320];
    snprintf(pfx, sizeof(pfx), "%s: %s", func, path);
    struct tg_checkpoint *ck = tg_xcalloc(sizeof(*ck));
    if (ck != NULL)
        ck->path = str_dup(path);
    if (ck == NULL || ck->path == NULL) {
        tg_xfree(ck);
        name_nomem(pfx);
        return NULL;
    }
    if (open_checked(pfx, path, ck) != TG_OK) {
        name_nomem(pfx);
        tg_checkpoint_close(ck);
        return NULL;
    }
    return ck;
}

struct tg_checkpoint *tg_checkpoint_open(const char *path)
{
    return checkpoint_open("tg_checkpoint_open", path);
}

void tg_checkpoint_close(struct tg_checkpoint *ck)
{
    if (ck == NULL)
        return;
    if (ck->f != NULL)
        fclose(ck->f);
    tg_xfree(ck->entries);
    tg_xfree(ck->by_name);
    tg_xfree(ck->meta);
    tg_xfree(ck->pool);
    tg_xfree(ck->path);
    tg_xfree(ck);
}

/* ---- Queries ------------------------------------------------------------- */

int tg_checkpoint_n_entries(const struct tg_checkpoint *ck)
{
    return ck != NULL ? ck->n_entries : -1;
}

const struct tg_checkpoint_entry *tg_checkpoint_entry_at(const struct tg_checkpoint *ck, int i)
{
    if (ck == NULL || i < 0 || i >= ck->n_entries)
        return NULL;
    return &ck->entries[i];
}

const struct tg_checkpoint_entry *tg_checkpoint_find(const struct tg_checkpoint *ck,
                                                     const char *name)
{
    if (ck == NULL || name == NULL)
        return NULL;
    int lo = 0;
    int hi = ck->n_entries;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const struct tg_checkpoint_entry *e = ck->by_name[mid];
        int c = strcmp(e->name, name);
        if (c == 0)
            return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct tg_checkpoint_meta *tg_checkpoint_meta(const struct tg_checkpoint *ck, int *n_meta)
{
    if (n_meta != NULL)
        *n_meta = ck != NULL ? ck->n_meta : 0;
    return ck != NULL ? ck->meta : NULL;
}

const char *tg_checkpoint_meta_get(const struct tg_checkpoint *ck, const char *key)
{
    if (ck == NULL || key == NULL)
        return NULL;
    for (int i = 0; i < ck->n_meta; i++) {
        if (strcmp(ck->meta[i].key, key) == 0)
            return ck->meta[i].value;
    }
    return NULL;
}

/* ---- Reading tensors ----------------------------------------------------- */

/* Match every request to an entry: present, F32, same shape; nothing extra. */
static enum tg_status match_entries(const char *pfx,
                                    const struct tg_checkpoint *ck,
                                    int n,
                                    const char *const *names,
                                    struct tg_tensor *const *tensors,
                                    bool allow_extra,
                                    const struct tg_checkpoint_entry **found)
{
    for (int i = 0; i < n; i++) {
        const struct tg_checkpoint_entry *e = tg_checkpoint_find(ck, names[i]);
        if (e == NULL)
            return tg_error_set(TG_ERR_FORMAT, "%s: no tensor named \"%s\" (the file holds %d)",
                                pfx, names[i], ck->n_entries);
        if (strcmp(e->dtype, "F32") != 0)
            return tg_error_set(TG_ERR_FORMAT, "%s: %s: dtype %s, expected F32", pfx, names[i],
                                e->dtype);
        bool same = e->n_dims == tensors[i]->n_dims;
        for (int d = 0; same && d < e->n_dims; d++)
            same = e->shape[d] == tensors[i]->shape[d];
        if (!same) {
            char file_shape[96];
            char want_shape[96];
            return tg_error_set(TG_ERR_SHAPE, "%s: %s: file has %s, model expects %s", pfx,
                                names[i], shape_str(e->n_dims, e->shape, file_shape, 96),
                                tg_tensor_shape_str(tensors[i], want_shape, 96));
        }
        found[i] = e;
    }
    if (allow_extra || n == ck->n_entries)
        return TG_OK;

    /* Names are distinct and all found, so n < n_entries: name the first extra. */
    for (int k = 0; k < ck->n_entries; k++) {
        bool asked = false;
        for (int i = 0; i < n && !asked; i++)
            asked = found[i] == &ck->entries[k];
        if (!asked)
            return tg_error_set(TG_ERR_FORMAT,
                                "%s: the file holds %d tensors not asked for, first \"%s\" (set "
                                "allow_extra to skip them)",
                                pfx, ck->n_entries - n, ck->entries[k].name);
    }
    return TG_OK;
}

static enum tg_status
check_read_args(const char *pfx, int n, const char *const *names, struct tg_tensor *const *tensors)
{
    if (n < 0 || (n > 0 && (names == NULL || tensors == NULL)))
        return tg_error_set(TG_ERR_INVALID, "%s: NULL argument or negative count", pfx);
    for (int i = 0; i < n; i++) {
        if (names[i] == NULL || tensors[i] == NULL || tensors[i]->data == NULL)
            return tg_error_set(TG_ERR_INVALID, "%s: name or tensor %d is NULL", pfx, i);
        for (int j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0 || tensors[i] == tensors[j])
                return tg_error_set(TG_ERR_INVALID, "%s: \"%s\" or its tensor given twice", pfx,
                                    names[i]);
        }
    }
    return TG_OK;
}

/* Read every requested entry into one scratch buffer, then copy out. */
static enum tg_status read_all(const char *pfx,
                               struct tg_checkpoint *ck,
                               int n,
                               struct tg_tensor *const *tensors,
                               const struct tg_checkpoint_entry **found)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += found[i]->end - found[i]->begin;
    uint8_t *scratch = tg_xmalloc(total > 0 ? (size_t)total : 1);
    if (scratch == NULL)
        return TG_ERR_NOMEM;
    enum tg_status st = TG_OK;
    uint64_t at = 0;
    for (int i = 0; i < n && st == TG_OK; i++) {
        size_t bytes = (size_t)(found[i]->end - found[i]->begin);
        off_t pos = (off_t)(ck->data_start + found[i]->begin);
        if (fseeko(ck->f, pos, SEEK_SET) != 0 || fread(scratch + at, 1, bytes, ck->f) != bytes)
            st = tg_error_set(TG_ERR_IO, "%s: %s: cannot read its %zu bytes (%s)", pfx,
                              found[i]->name, bytes,
                              ferror(ck->f) ? strerror(errno) : "file shrank since it was opened");
        at += bytes;
    }
    at = 0;
    for (int i = 0; i < n && st == TG_OK; i++) {
        words_to_le(scratch + at, (size_t)tensors[i]->n_elems);
        memcpy(tensors[i]->data, scratch + at, (size_t)tensors[i]->n_elems * sizeof(float));
        at += (uint64_t)tensors[i]->n_elems * sizeof(float);
    }
    tg_xfree(scratch);
    return st;
}

static enum tg_status read_checked(const char *pfx,
                                   struct tg_checkpoint *ck,
                                   int n,
                                   const char *const *names,
                                   struct tg_tensor *const *tensors,
                                   const struct tg_checkpoint_load_opts *opts)
{
    enum tg_status st = check_read_args(pfx, n, names, tensors);
    if (st != TG_OK)
        return st;
    const struct tg_checkpoint_entry **found = tg_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(*found));
    if (found == NULL)
        return TG_ERR_NOMEM;
    bool allow_extra = opts != NULL && opts->allow_extra;
    st = match_entries(pfx, ck, n, names, tensors, allow_extra, found);
    if (st == TG_OK)
        st = read_all(pfx, ck, n, tensors, found);
    tg_xfree(found);
    return st;
}

/* tg_checkpoint_read() on behalf of func, which names every message. */
static enum tg_status checkpoint_read(const char *func,
                                      struct tg_checkpoint *ck,
                                      int n,
                                      const char *const *names,
                                      struct tg_tensor *const *tensors,
                                      const struct tg_checkpoint_load_opts *opts)
{
    if (ck == NULL)
        return tg_error_set(TG_ERR_INVALID, "%s: checkpoint is NULL", func);
    char pfx[320];
    snprintf(pfx, sizeof(pfx), "%s: %s", func, ck->path);
    enum tg_status st = read_checked(pfx, ck, n, names, tensors, opts);
    if (st == TG_ERR_NOMEM)
        name_nomem(pfx);
    return st;
}

enum tg_status tg_checkpoint_read(struct tg_checkpoint *ck,
                                  int n,
                                  const char *const *names,
                                  struct tg_tensor *const *tensors,
                                  const struct tg_checkpoint_load_opts *opts)
{
    return checkpoint_read("tg_checkpoint_read", ck, n, names, tensors, opts);
}

enum tg_status tg_checkpoint_load(const char *path,
                                  int n,
                                  const char *const *names,
                                  struct tg_tensor *const *tensors,
                                  const struct tg_checkpoint_load_opts *opts)
{
    struct tg_checkpoint *ck = checkpoint_open("tg_checkpoint_load", path);
    if (ck == NULL)
        return tg_last_status();
    enum tg_status st = checkpoint_read("tg_checkpoint_load", ck, n, names, tensors, opts);
    tg_checkpoint_close(ck);
    return st;
}

/* ---- Training state: model, optimiser and generator ---------------------- */

#define OPT_PREFIX  "optimizer."
#define STEP_KEY    "optimizer_step"
#define RNG_KEY     "rng"
#define RNG_HEX_LEN (TG_RNG_STATE_WORDS * 17 - 1) // words of 16 hex digits, ':' between

/*
 * The tensor names of a training checkpoint: the model's n (borrowed), then
 * the optimiser's n_state state tensors under OPT_PREFIX (kept in text).
 */
struct train_names {
    int n;
    size_t n_state;
    const char **names;       // n + n_state
    const char **state_names; // the optimiser's own names
    struct tg_tensor **state; // the optimiser's own tensors
    char *text;               // the prefixed names, back to back
};

static void train_names_free(struct train_names *l)
{
    tg_xfree(l->text);
    tg_xfree(l->state);
    tg_xfree(l->state_names);
    tg_xfree(l->names);
}

/* List the names of model and optimiser state (opt may be NULL); TG_ERR_NOMEM. */
static enum tg_status
train_names_make(struct train_names *l, int n, const char *const *names, struct tg_optim *opt)
{
    *l = (struct train_names){.n = n, .n_state = tg_optim_n_state(opt)};
    if (l->n_state > (size_t)(INT_MAX - n))
        return tg_error_set(TG_ERR_INVALID, "%zu optimiser state tensors are too many", l->n_state);
    l->names = tg_xmalloc(((size_t)n + l->n_state + 1) * sizeof(*l->names));
    l->state_names = tg_xmalloc((l->n_state + 1) * sizeof(*l->state_names));
    l->state = tg_xmalloc((l->n_state + 1) * sizeof(*l->state));
    if (l->names == NULL || l->state_names == NULL || l->state == NULL)
        return TG_ERR_NOMEM;
    if (opt != NULL && tg_optim_state_list(opt, l->n_state, l->state_names, l->state) != TG_OK)
        return tg_last_status();
    size_t bytes = 1;
    for (size_t s = 0; s < l->n_state; s++)
        bytes += strlen(OPT_PREFIX) + strlen(l->state_names[s]) + 1;
    l->text = tg_xmalloc(bytes);
    if (l->text == NULL)
        return TG_ERR_NOMEM;

    for (int i = 0; i < n; i++)
        l->names[i] = names[i];
    char *p = l->text;
    for (size_t s = 0; s < l->n_state; s++) {
        size_t len = strlen(l->state_names[s]) + 1;
        l->names[(size_t)n + s] = p;
        memcpy(p, OPT_PREFIX, strlen(OPT_PREFIX));
        memcpy(p + strlen(OPT_PREFIX), l->state_names[s], len);
        p += strlen(OPT_PREFIX) + len;
    }
    return TG_OK;
}

/* Put pfx in front of the last message unless it is there already. */
static enum tg_status own_error(const char *pfx)
{
    size_t n = strlen(pfx);
    const char *msg = tg_last_error();
    if (strncmp(msg, pfx, n) == 0 && msg[n] == ':')
        return tg_last_status();
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", msg);
    return tg_error_set(tg_last_status(), "%s: %s", pfx, copy);
}

/* Model names: NULL arrays, a negative count, the optimiser's prefix. */
static enum tg_status check_model_names(const char *func, int n, const char *const *names)
{
    if (n < 0 || (n > 0 && names == NULL))
        return tg_error_set(TG_ERR_INVALID, "%s: NULL argument or negative count", func);
    for (int i = 0; i < n; i++) {
        if (names[i] != NULL && strncmp(names[i], OPT_PREFIX, strlen(OPT_PREFIX)) == 0)
            return tg_error_set(TG_ERR_INVALID,
                                "%s: model tensor name \"%s\" starts with \"" OPT_PREFIX
                                "\", which is kept for the optimiser's state",
                                func, names[i]);
    }
    return TG_OK;
}

/* The caller's metadata: none of the keys written here. */
static enum tg_status
check_train_meta(const char *func, int n_meta, const struct tg_checkpoint_meta *meta)
{
    if (n_meta < 0 || (n_meta > 0 && meta == NULL))
        return tg_error_set(TG_ERR_INVALID, "%s: NULL argument or negative count", func);
    for (int i = 0; i < n_meta; i++) {
        const char *key = meta[i].key;
        if (key != NULL && (strcmp(key, STEP_KEY) == 0 || strcmp(key, RNG_KEY) == 0))
            return tg_error_set(TG_ERR_INVALID, "%s: metadata key \"%s\" is written by the call",
                                func, key);
    }
    return TG_OK;
}

/* The generator's state as "w0:w1:...", RNG_HEX_LEN characters. */
static void rng_to_hex(const struct tg_rng *rng, char hex[RNG_HEX_LEN + 1])
{
    uint64_t words[TG_RNG_STATE_WORDS];
    tg_rng_get_state(rng, words);
    char *p = hex;
    for (int i = 0; i < TG_RNG_STATE_WORDS; i++)
        p += snprintf(p, (size_t)(hex + RNG_HEX_LEN + 1 - p),
                      i == 0 ? "%016" PRIx64 : ":%016" PRIx64, words[i]);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parse what rng_to_hex() writes; false for anything else. */
static bool rng_from_hex(const char *hex, uint64_t words[TG_RNG_STATE_WORDS])
{
    if (strlen(hex) != RNG_HEX_LEN)
        return false;
    for (int i = 0; i < TG_RNG_STATE_WORDS; i++) {
        const char *w = hex + 17 * i;
        if (i > 0 && w[-1] != ':')
            return false;
        uint64_t v = 0;
        for (int k = 0; k < 16; k++) {
            int d = hex_digit(w[k]);
            if (d < 0)
                return false;
            v = v << 4 | (uint64_t)d;
        }
        words[i] = v;
    }
    return true;
}

/* A decimal count >= 0 and nothing else; false otherwise. */
static bool parse_count(const char *s, int64_t *v)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *v = x;
    return true;
}

/*
 * The caller's n_meta pairs, then "optimizer_step" (with opt, its text in
 * step) and "rng" (with rng, its text in hex); returns the number of pairs.
 */
static int train_meta(struct tg_checkpoint_meta *all,
                      int n_meta,
                      const struct tg_checkpoint_meta *meta,
                      const struct tg_optim *opt,
                      char step[32],
                      const struct tg_rng *rng,
                      char hex[RNG_HEX_LEN + 1])
{
    for (int i = 0; i < n_meta; i++)
        all[i] = meta[i];
    int k = n_meta;
    if (opt != NULL) {
        snprintf(step, 32, "%" PRId64, tg_optim_get_step(opt));
        all[k++] = (struct tg_checkpoint_meta){STEP_KEY, step};
    }
    if (rng != NULL) {
        rng_to_hex(rng, hex);
        all[k++] = (struct tg_checkpoint_meta){RNG_KEY, hex};
    }
    return k;
}

enum tg_status tg_train_state_save(const char *path,
                                   int n,
                                   const char *const *names,
                                   const struct tg_tensor *const *tensors,
                                   struct tg_optim *opt,
                                   const struct tg_rng *rng,
                                   int n_meta,
                                   const struct tg_checkpoint_meta *meta)
{
    const char *func = "tg_train_state_save";
    if (path == NULL || (n > 0 && tensors == NULL))
        return tg_error_set(TG_ERR_INVALID, "%s: NULL argument", func);
    enum tg_status st = check_model_names(func, n, names);
    if (st == TG_OK)
        st = check_train_meta(func, n_meta, meta);
    if (st != TG_OK)
        return st;

    /* Tensors: the model's, then the optimiser's; metadata: the caller's, then ours. */
    struct train_names l;
    st = train_names_make(&l, n, names, opt);
    size_t total = (size_t)n + l.n_state;
    const struct tg_tensor **all = tg_xmalloc((total + 1) * sizeof(*all));
    struct tg_checkpoint_meta *all_meta = tg_xmalloc(((size_t)n_meta + 2) * sizeof(*all_meta));
    if (st == TG_OK && (all == NULL || all_meta == NULL))
        st = TG_ERR_NOMEM;
    if (st != TG_OK)
        goto free_lists;
    for (int i = 0; i < n; i++)
        all[i] = tensors[i];
    for (size_t s = 0; s < l.n_state; s++)
        all[(size_t)n + s] = l.state[s];
    char step[32];
    char hex[RNG_HEX_LEN + 1];
    int k = train_meta(all_meta, n_meta, meta, opt, step, rng, hex);
    st = tg_checkpoint_save(path, (int)total, l.names, all, k, all_meta);

free_lists:
    if (st != TG_OK)
        own_error(func);
    tg_xfree(all_meta);
    tg_xfree(all);
    train_names_free(&l);
    return st;
}

/* "optimizer_step" (with opt) and "rng" (with rng, restored into *next). */
static enum tg_status read_train_meta(const char *pfx,
                                      const struct tg_checkpoint *ck,
                                      bool want_step,
                                      int64_t *step,
                                      const struct tg_rng *rng,
                                      struct tg_rng *next)
{
    const char *s = tg_checkpoint_meta_get(ck, STEP_KEY);
    if (want_step && s == NULL)
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: no metadata \"optimizer_step\" (the optimiser's step count)", pfx);
    if (want_step && !parse_count(s, step))
        return tg_error_set(TG_ERR_FORMAT,
                            "%s: metadata \"optimizer_step\" is \"%.40s\", not a count >= 0", pfx,
                            s);
    if (rng == NULL)
        return TG_OK;
    const char *hex = tg_checkpoint_meta_get(ck, RNG_KEY);
    uint64_t words[TG_RNG_STATE_WORDS];
    if (hex == NULL)
        return tg_error_set(TG_ERR_FORMAT, "%s: no metadata \"rng\" (the generator's state)", pfx);
    if (!rng_from_hex(hex, words))
        return tg_error_set(
                TG_ERR_FORMAT,
                "%s: metadata \"rng\" is \"%.100s\", not %d ':'-joined words of 16 hex digits", pfx,
                hex, TG_RNG_STATE_WORDS);
    *next = *rng;
    if (tg_rng_set_state(next, words) != TG_OK) {
        char why[256];
        snprintf(why, sizeof(why), "%s", tg_last_error());
        return tg_error_set(TG_ERR_FORMAT, "%s: metadata \"rng\" is refused (%s)", pfx, why);
    }
    return TG_OK;
}

/* The file holds as many "optimizer." tensors as opt has state tensors. */
static enum tg_status check_state_count(const char *pfx,
                                        const struct tg_checkpoint *ck,
                                        const struct tg_optim *opt,
                                        size_t n_state)
{
    size_t in_file = 0;
    for (int k = 0; k < ck->n_entries; k++)
        in_file += strncmp(ck->entries[k].name, OPT_PREFIX, strlen(OPT_PREFIX)) == 0;
    if (in_file == n_state)
        return TG_OK;
    return tg_error_set(TG_ERR_FORMAT,
                        "%s: the file holds %zu optimiser state tensors, the %s optimiser has %zu "
                        "(saved with other parameters or another optimiser)",
                        pfx, in_file, tg_optim_name(opt), n_state);
}

/* One zeroed temporary per destination: model tensors, then optimiser state. */
static struct tg_tensor **make_temps(const struct train_names *l, struct tg_tensor *const *tensors)
{
    size_t total = (size_t)l->n + l->n_state;
    struct tg_tensor **tmp = tg_xcalloc((total + 1) * sizeof(*tmp));
    for (size_t i = 0; tmp != NULL && i < total; i++) {
        const struct tg_tensor *like = i < (size_t)l->n ? tensors[i] : l->state[i - (size_t)l->n];
        tmp[i] = tg_tensor_new(like->n_dims, like->shape);
        if (tmp[i] == NULL)
            return tmp; // the caller sees the NULL and frees
    }
    return tmp;
}

static void free_temps(struct tg_tensor **tmp, size_t total)
{
    for (size_t i = 0; tmp != NULL && i < total; i++)
        tg_tensor_free(tmp[i]);
    tg_xfree(tmp);
}

/* Read every tensor into temporaries, restore opt from them, then copy the model's out. */
static enum tg_status read_train_tensors(const char *func,
                                         struct tg_checkpoint *ck,
                                         const struct train_names *l,
                                         struct tg_tensor *const *tensors,
                                         struct tg_optim *opt,
                                         int64_t step,
                                         const struct tg_checkpoint_load_opts *opts)
{
    size_t total = (size_t)l->n + l->n_state;
    struct tg_tensor **tmp = make_temps(l, tensors);
    enum tg_status st = TG_ERR_NOMEM;
    if (tmp == NULL || (total > 0 && tmp[total - 1] == NULL))
        goto free_tmp;
    st = checkpoint_read(func, ck, (int)total, l->names, tmp, opts);
    if (st == TG_OK && opt != NULL)
        st = tg_optim_load_state(opt, step, l->n_state, l->state_names,
                                 (const struct tg_tensor *const *)tmp + l->n);
    for (int i = 0; st == TG_OK && i < l->n; i++)
        memcpy(tensors[i]->data, tmp[i]->data, (size_t)tensors[i]->n_elems * sizeof(float));
free_tmp:
    free_temps(tmp, total);
    return st;
}

enum tg_status tg_train_state_read(struct tg_checkpoint *ck,
                                   int n,
                                   const char *const *names,
                                   struct tg_tensor *const *tensors,
                                   struct tg_optim *opt,
                                   struct tg_rng *rng,
                                   const struct tg_checkpoint_load_opts *opts)
{
    const char *func = "tg_train_state_read";
    if (ck == NULL || (n > 0 && tensors == NULL))
        return tg_error_set(TG_ERR_INVALID, "%s: NULL argument", func);
    for (int i = 0; i < n; i++) {
        if (tensors[i] == NULL || tensors[i]->data == NULL)
            return tg_error_set(TG_ERR_INVALID, "%s: tensor %d is NULL", func, i);
    }
    enum tg_status st = check_model_names(func, n, names);
    if (st != TG_OK)
        return st;
    char pfx[320];
    snprintf(pfx, sizeof(pfx), "%s: %s", func, ck->path);

    /* Metadata and counts first: nothing is read while they are wrong. */
    int64_t step = 0;
    struct tg_rng next;
    st = read_train_meta(pfx, ck, opt != NULL, &step, rng, &next);
    if (st != TG_OK)
        return st;
    struct train_names l;
    st = train_names_make(&l, n, names, opt);
    if (st == TG_OK && opt != NULL)
        st = check_state_count(pfx, ck, opt, l.n_state);
    if (st == TG_OK)
        st = read_train_tensors(func, ck, &l, tensors, opt, step, opts);
    if (st == TG_OK && rng != NULL)
        *rng = next;
    if (st != TG_OK)
        own_error(pfx);
    train_names_free(&l);
    return st;
}
