/*
 * Private declarations shared by the engine's sources: the arena, the tape's
 * layout, logging macros and error helpers. Not installed.
 */
#ifndef TAPEGRAD_CORE_IMPL_H
#define TAPEGRAD_CORE_IMPL_H

#include <tapegrad/autograd.h>

#include "alloc-impl.h"

/* ---- Logging and errors ------------------------------------------------ */

void tg_log_msg(enum tg_log_level level, const char *func, const char *fmt, ...) TG_PRINTF(3, 4);
#define TG_LOG_ERROR(...) tg_log_msg(TG_LOG_ERROR, __func__, __VA_ARGS__)
#define TG_LOG_WARN(...)  tg_log_msg(TG_LOG_WARN, __func__, __VA_ARGS__)
#define TG_LOG_INFO(...)  tg_log_msg(TG_LOG_INFO, __func__, __VA_ARGS__)
#define TG_LOG_DEBUG(...) tg_log_msg(TG_LOG_DEBUG, __func__, __VA_ARGS__)

/*
 * Report a NULL input of func: keeps an earlier failure's message (so chained
 * ops report the first failure), else records TG_ERR_INVALID.
 */
enum tg_status tg_error_null_input(const char *func, int index);

/*
 * memset(p, 0, bytes), split among the kernel threads when large: gradients
 * are cleared before every backward, and one thread alone cannot fill the
 * memory bandwidth.
 */
void tg_zero_bytes(void *p, size_t bytes);

/* ---- Tensor flags -------------------------------------------------------- */

#define TG_TENSOR_HEAP 1u // data (and grad) belong to the tensor, freed with it

/* Fill shape[0..n_dims) and the 1s past it; sets n_elems. Caller checked sizes. */
void tg_tensor_init_shape(struct tg_tensor *t, int n_dims, const int64_t *shape, int64_t n_elems);

/* ---- Arena: bump allocation in reusable blocks --------------------------- */

struct arena_block {
    struct arena_block *next;
    size_t size; // usable bytes after the header
    size_t used;
};

struct arena {
    struct arena_block *head; // first block
    struct arena_block *cur;  // block being filled
    size_t high_water;        // most bytes in use at once since the last reset
};

struct arena_mark {
    struct arena_block *block;
    size_t used;
};

void arena_init(struct arena *a);
/* Release every block. */
void arena_destroy(struct arena *a);
/* 64-byte aligned, uninitialised; NULL with TG_ERR_NOMEM. */
void *arena_alloc(struct arena *a, size_t bytes);
struct arena_mark arena_mark(const struct arena *a);
/* Release everything allocated after the mark (the blocks are kept). */
void arena_rewind(struct arena *a, struct arena_mark m);
/*
 * Release everything; when the last cycle spilled over several blocks, merge
 * them into one block of the high-water size so that the next cycle of the
 * same size needs no allocation.
 */
void arena_reset(struct arena *a);
size_t arena_reserved(const struct arena *a);
/* Bytes allocated since the last reset or rewind. */
size_t arena_in_use(const struct arena *a);

/* ---- The tape ------------------------------------------------------------ */

struct tg_entry {
    struct tg_entry *prev; // entry recorded before this one
    const struct tg_op_def *op;
    struct tg_tensor *out;
    struct tg_tensor **in;
    int n_in;
    void *params;
    void *saved;
};

struct tg_tape {
    struct arena mem;      // tensors, entries, saved state, gradients
    struct arena scratch;  // callback scratch, rewound after each callback
    struct tg_entry *last; // newest entry
    size_t n_entries;
    struct tg_tape *prev_current; // the thread's current tape before tg_tape_begin
    _Atomic int active;           // 1 while current on some thread
    bool grad_enabled;
    bool released; // saved state consumed by a backward without RETAIN
};

struct tg_op_ctx {
    const struct tg_op_def *op;
    const void *params;
    struct tg_tape *tape;  // NULL when no tape is current
    struct arena *scratch; // tape->scratch, or a call-local arena
    void *saved;
    bool recording;
    bool in_backward;
};

/* Allocate a zero-filled gradient for a tape-owned tensor if it has none. */
enum tg_status tg_tape_ensure_grad(struct tg_tape *tape, struct tg_tensor *t);

#endif
