/*
 * Allocation wrapper: 64-byte aligned blocks from jemalloc (mallocx) when the
 * build has it, else from aligned_alloc; an allocation counter and a fault
 * injector for tests.
 */
#include "alloc-impl.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include <tapegrad/tensor.h>

static atomic_uint_fast64_t n_allocs;
static atomic_uint_fast64_t fail_target; // absolute allocation number to fail, 0 = none

uint64_t tg_alloc_count(void)
{
    return atomic_load(&n_allocs);
}

void tg_alloc_fail_at(uint64_t n)
{
    atomic_store(&fail_target, n ? atomic_load(&n_allocs) + n : 0);
}

bool tg_alloc_uses_jemalloc(void)
{
#ifdef TG_HAVE_JEMALLOC
    return true;
#else
    return false;
#endif
}

void *tg_xmalloc(size_t bytes)
{
    uint64_t k = atomic_fetch_add(&n_allocs, 1) + 1;
    uint64_t target = atomic_load(&fail_target);
    if (target != 0 && k == target) {
        atomic_store(&fail_target, 0);
        tg_error_set(TG_ERR_NOMEM, "out of memory allocating %zu bytes (injected failure)", bytes);
        return NULL;
    }
    if (bytes > SIZE_MAX - TG_ALIGN) {
        tg_error_set(TG_ERR_NOMEM, "allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    size_t rounded = (bytes + TG_ALIGN - 1) / TG_ALIGN * TG_ALIGN;
    if (rounded == 0)
        rounded = TG_ALIGN;
#ifdef TG_HAVE_JEMALLOC
    void *p = mallocx(rounded, MALLOCX_LG_ALIGN(6)); // 2^6 = TG_ALIGN
#else
    void *p = aligned_alloc(TG_ALIGN, rounded);
#endif
    if (p == NULL)
        tg_error_set(TG_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *tg_xcalloc(size_t bytes)
{
    void *p = tg_xmalloc(bytes);
    if (p != NULL)
        memset(p, 0, bytes);
    return p;
}

void tg_xfree(void *p)
{
    if (p == NULL)
        return;
#ifdef TG_HAVE_JEMALLOC
    dallocx(p, 0);
#else
    free(p);
#endif
}
