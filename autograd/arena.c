/*
 * Arena allocator behind the tape: bump allocation in a chain of blocks,
 * rewinding to a mark, and a reset that keeps memory for the next step.
 */
#include <string.h>

#include "core-impl.h"

#define HEADER_SIZE ((sizeof(struct arena_block) + TG_ALIGN - 1) / TG_ALIGN * TG_ALIGN)
#define MIN_BLOCK   ((size_t)1 << 20)

static char *block_data(struct arena_block *b)
{
    return (char *)b + HEADER_SIZE;
}

static struct arena_block *block_new(size_t size)
{
    if (size > SIZE_MAX - HEADER_SIZE) {
        tg_error_set(TG_ERR_NOMEM, "arena: block of %zu bytes overflows", size);
        return NULL;
    }
    struct arena_block *b = tg_xmalloc(HEADER_SIZE + size);
    if (b == NULL)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

void arena_init(struct arena *a)
{
    memset(a, 0, sizeof(*a));
}

void arena_destroy(struct arena *a)
{
    struct arena_block *b = a->head;
    while (b != NULL) {
        struct arena_block *next = b->next;
        tg_xfree(b);
        b = next;
    }
    arena_init(a);
}

size_t arena_in_use(const struct arena *a)
{
    size_t total = 0;
    for (const struct arena_block *b = a->head; b != NULL; b = b->next) {
        total += b->used;
        if (b == a->cur)
            break;
    }
    return total;
}

void *arena_alloc(struct arena *a, size_t bytes)
{
    if (bytes > SIZE_MAX - TG_ALIGN) {
        tg_error_set(TG_ERR_NOMEM, "arena: allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    size_t need = (bytes + TG_ALIGN - 1) / TG_ALIGN * TG_ALIGN;

    /* Use the current block, or a later one kept from an earlier step. */
    struct arena_block *b = a->cur;
    while (b != NULL && b->size - b->used < need) {
        b = b->next;
        if (b != NULL)
            b->used = 0;
    }
    if (b == NULL) {
        size_t size = need > MIN_BLOCK ? need : MIN_BLOCK;
        if (a->cur != NULL && a->cur->size > size / 2 && a->cur->size <= SIZE_MAX / 2)
            size = a->cur->size * 2 > need ? a->cur->size * 2 : need;
        b = block_new(size);
        if (b == NULL)
            return NULL;
        /* Append at the end of the chain so kept blocks stay in order. */
        struct arena_block **tail = &a->head;
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = b;
    }
    a->cur = b;
    void *p = block_data(b) + b->used;
    b->used += need;
    size_t in_use = arena_in_use(a);
    if (in_use > a->high_water)
        a->high_water = in_use;
    return p;
}

struct arena_mark arena_mark(const struct arena *a)
{
    struct arena_mark m = {a->cur, a->cur ? a->cur->used : 0};
    return m;
}

void arena_rewind(struct arena *a, struct arena_mark m)
{
    if (m.block == NULL) {
        a->cur = a->head;
        if (a->cur != NULL)
            a->cur->used = 0;
        return;
    }
    a->cur = m.block;
    a->cur->used = m.used;
}

void arena_reset(struct arena *a)
{
    if (a->head != NULL && a->head->next != NULL && a->head->next->used > 0) {
        /* The last cycle spilled: merge into one block of the high-water size. */
        size_t size = a->high_water + a->high_water / 8;
        struct arena_block *merged = block_new(size);
        if (merged != NULL) {
            arena_destroy(a);
            a->head = merged;
        }
        // on failure the old blocks stay and serve as before
    }
    for (struct arena_block *b = a->head; b != NULL; b = b->next)
        b->used = 0;
    a->cur = a->head;
    a->high_water = 0;
}

size_t arena_reserved(const struct arena *a)
{
    size_t total = 0;
    for (const struct arena_block *b = a->head; b != NULL; b = b->next)
        total += HEADER_SIZE + b->size;
    return total;
}
