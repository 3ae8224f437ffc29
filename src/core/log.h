/* Error logging, nginx-style:
 *   2026/11/22 20:21:43 [error] 1234#0: *5 message, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1"
 * Levels as nginx: emerg alert crit error warn notice info debug. A log is a
 * chain of targets (several error_log lines); a message goes to every target
 * whose level admits it. Writing never blocks the event loop for long: plain
 * write(2) with O_APPEND, like nginx. */
#ifndef PT_LOG_H
#define PT_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include "pool.h"
#include "str.h"

enum {
    PT_LOG_STDERR = 0,   /* always printed, no level shown (startup) */
    PT_LOG_EMERG,
    PT_LOG_ALERT,
    PT_LOG_CRIT,
    PT_LOG_ERR,
    PT_LOG_WARN,
    PT_LOG_NOTICE,
    PT_LOG_INFO,
    PT_LOG_DEBUG
};

/* An open file shared by everything that writes to the same path (error and
 * access logs). USR1 reopens all of them in place (same struct, new fd). */
typedef struct pt_open_file_s {
    char                  *path;   /* absolute, NUL-terminated */
    int                    fd;
    struct pt_open_file_s *next;
} pt_open_file_t;

typedef struct pt_log_s pt_log_t;
/* Adds context (", client: ..., server: ...") to a message; returns bytes written. */
typedef size_t (*pt_log_ctx_cb)(pt_log_t *log, char *buf, size_t len);

struct pt_log_s {
    int             level;     /* highest level written */
    pt_open_file_t *file;      /* NULL: stderr */
    pt_log_t       *next;      /* further targets */
    uint64_t        connection;/* "*N" prefix when non-zero */
    pt_log_ctx_cb   ctx_handler;
    void           *ctx;
};

/* The process-wide fallback log (stderr until a config names a file). */
extern pt_log_t *pt_log_default;
extern int       pt_log_worker_id;   /* printed after the pid: "1234#<id>" */
/* While set (startup, -t), a message of level warn or more serious that no
 * target wrote to stderr is also printed there as "portico: [level] msg",
 * like nginx. The process layer clears it once the server runs (after the
 * daemon fork / stderr redirect). Default 1. */
extern int       pt_log_use_stderr;

void pt_log_error(int level, pt_log_t *log, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pt_log_verror(int level, pt_log_t *log, int err, const char *fmt, va_list ap);
/* "portico: [emerg] msg" on stderr (and to the log file when one is open), as
 * nginx prints config errors; used by -t and during startup. */
void pt_log_stderr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses "debug" .. "emerg"; returns -1 when unknown. */
int pt_log_level_parse(const pt_str_t *name);
extern const char *const pt_log_level_names[];

/* Finds or opens (O_WRONLY|O_APPEND|O_CREAT, 0644) a file of the list, by path.
 * Returns NULL with errno set if it cannot be opened. "stderr" gives fd 2. */
pt_open_file_t *pt_open_file_get(pt_pool_t *pool, pt_open_file_t **list, const char *path);
/* Reopens every file of the list in place (USR1); errors are logged to log. */
void pt_open_files_reopen(pt_open_file_t *list, pt_log_t *log);
void pt_open_files_close(pt_open_file_t *list);

#endif
