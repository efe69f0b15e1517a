/*
 * The one allocation wrapper of the library: every tensor, tape block and
 * workspace goes through it, so tests can count allocations and make the n-th
 * one fail.
 */
#ifndef TAPEGRAD_ALLOC_IMPL_H
#define TAPEGRAD_ALLOC_IMPL_H

#include <stddef.h>

/* 64-byte aligned block of at least bytes; NULL with TG_ERR_NOMEM set on failure. */
void *tg_xmalloc(size_t bytes);
/* As tg_xmalloc(), zero-filled. */
void *tg_xcalloc(size_t bytes);
/* Release a block from tg_xmalloc(); NULL is a no-op. */
void tg_xfree(void *p);

#endif
