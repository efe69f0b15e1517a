/* Thread-local error state, status names and the log handler. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core-impl.h"

#define MSG_SIZE 512

static _Thread_local char last_msg[MSG_SIZE];
static _Thread_local enum tg_status last_status;

static void default_log(enum tg_log_level level, const char *func, const char *msg, void *user)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    (void)user;
    fprintf(stderr, "tapegrad: %s: %s: %s\n", names[level], func, msg);
}

static tg_log_fn log_fn = default_log;
static void *log_user;
static atomic_int log_level = TG_LOG_WARN;

const char *tg_status_str(enum tg_status status)
{
    switch (status) {
    case TG_OK:
        return "TG_OK";
    case TG_ERR_INVALID:
        return "TG_ERR_INVALID";
    case TG_ERR_SHAPE:
        return "TG_ERR_SHAPE";
    case TG_ERR_NOMEM:
        return "TG_ERR_NOMEM";
    case TG_ERR_IO:
        return "TG_ERR_IO";
    case TG_ERR_FORMAT:
        return "TG_ERR_FORMAT";
    case TG_ERR_NONFINITE:
        return "TG_ERR_NONFINITE";
    case TG_ERR_UNSUPPORTED:
        return "TG_ERR_UNSUPPORTED";
    case TG_ERR_STATE:
        return "TG_ERR_STATE";
    }
    return "unknown status";
}

const char *tg_last_error(void)
{
    return last_msg;
}

enum tg_status tg_last_status(void)
{
    return last_status;
}

void tg_clear_error(void)
{
    last_msg[0] = '\0';
    last_status = TG_OK;
}

enum tg_status tg_error_set(enum tg_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    va_end(ap);
    last_status = status == TG_OK ? TG_ERR_INVALID : status;
    return last_status;
}

enum tg_status tg_error_null_input(const char *func, int index)
{
    if (last_status == TG_OK)
        tg_error_set(TG_ERR_INVALID, "%s: input %d is NULL", func, index);
    return last_status;
}

void tg_log_set_handler(tg_log_fn fn, void *user_data)
{
    log_fn = fn ? fn : default_log;
    log_user = fn ? user_data : NULL;
}

enum tg_log_level tg_log_set_level(enum tg_log_level level)
{
    return (enum tg_log_level)atomic_exchange(&log_level, (int)level);
}

void tg_log_msg(enum tg_log_level level, const char *func, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    char msg[MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fn(level, func, msg, log_user);
}
