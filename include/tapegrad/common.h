/*
 * Status codes, error messages, logging and the allocation hooks shared by
 * every part of tapegrad.
 */
#ifndef TAPEGRAD_COMMON_H
#define TAPEGRAD_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TG_BUILDING_LIBRARY) && defined(__GNUC__)
#define TG_API __attribute__((visibility("default")))
#else
#define TG_API
#endif

#if defined(__GNUC__)
#define TG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define TG_PRINTF(fmt, args)
#endif

/** Result of a call that can be refused. TG_OK is 0; every other value is a failure. */
enum tg_status {
    TG_OK = 0,
    TG_ERR_INVALID,     /**< a bad argument: NULL, out of range, wrong option */
    TG_ERR_SHAPE,       /**< tensor shapes that do not fit together */
    TG_ERR_NOMEM,       /**< an allocation failed, or a size overflowed */
    TG_ERR_IO,          /**< a file could not be read or written */
    TG_ERR_FORMAT,      /**< a file or string is malformed */
    TG_ERR_NONFINITE,   /**< a NaN or infinity where a finite value is required */
    TG_ERR_UNSUPPORTED, /**< a documented limit of the library */
    TG_ERR_STATE,       /**< the call does not fit the object's current state */
};

/**
 * Name of a status code.
 * @param status any value; unknown values give "unknown status".
 * @return a static string such as "TG_ERR_SHAPE".
 */
TG_API const char *tg_status_str(enum tg_status status);

/**
 * Message of the most recent failure on the calling thread.
 * Messages name the call, the problem, what it got and what it expected, for
 * example "tg_matmul: inner dimensions differ (a: 3x4, b: 5x2)".
 * @return a thread-local string, "" when nothing has failed since the last
 *         tg_clear_error(); valid until the next failing call on this thread.
 */
TG_API const char *tg_last_error(void);

/**
 * Status of the most recent failure on the calling thread.
 * @return TG_OK when nothing has failed since the last tg_clear_error().
 */
TG_API enum tg_status tg_last_status(void);

/** Forget the calling thread's last error; tg_last_error() then returns "". */
TG_API void tg_clear_error(void);

/**
 * Record a failure on the calling thread, for user-defined ops and layers.
 * The message is formatted like printf and should start with the name of the
 * failing call ("myop: ...").
 * @param status the failure's code (not TG_OK).
 * @param fmt printf format of the message.
 * @return status, so that a caller can write "return tg_error_set(...)".
 */
TG_API enum tg_status tg_error_set(enum tg_status status, const char *fmt, ...) TG_PRINTF(2, 3);

/** Log levels, most severe first. */
enum tg_log_level {
    TG_LOG_ERROR = 0,
    TG_LOG_WARN,
    TG_LOG_INFO,
    TG_LOG_DEBUG,
};

/**
 * A log handler: receives one line without a trailing newline.
 * @param level the message's level.
 * @param func the library function that logged it.
 * @param msg the message.
 * @param user_data the pointer given to tg_log_set_handler().
 */
typedef void (*tg_log_fn)(enum tg_log_level level,
                          const char *func,
                          const char *msg,
                          void *user_data);

/**
 * Route log messages to a handler of the caller's. The default handler writes
 * messages at TG_LOG_WARN and above to stderr as "tapegrad: func: msg".
 * @param fn the handler, or NULL to restore the default one.
 * @param user_data passed to every call of fn.
 */
TG_API void tg_log_set_handler(tg_log_fn fn, void *user_data);

/**
 * Set the least severe level that reaches the handler (default TG_LOG_WARN).
 * @param level the threshold.
 * @return the previous threshold.
 */
TG_API enum tg_log_level tg_log_set_level(enum tg_log_level level);

/**
 * Number of heap allocations the library has made since the process started
 * (every tensor, tape block and workspace goes through one wrapper).
 * Tests use it to prove that a training step allocates nothing once warm.
 * @return the count, over all threads.
 */
TG_API uint64_t tg_alloc_count(void);

/**
 * Fault injection for tests: make the n-th library allocation from now fail
 * (n = 1 fails the very next one), then only that one. The failing call then
 * reports TG_ERR_NOMEM like a real out-of-memory condition.
 * @param n the allocation to fail, counting from 1; 0 switches injection off.
 */
TG_API void tg_alloc_fail_at(uint64_t n);

/**
 * Whether the library was built with jemalloc as its allocator.
 * @return true when tensor and tape memory comes from jemalloc.
 */
TG_API bool tg_alloc_uses_jemalloc(void);

#ifdef __cplusplus
}
#endif

#endif
