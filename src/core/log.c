/* Error log: one line per message, built once on the stack and written with a
 * single write(2) per target (O_APPEND keeps lines from several workers
 * whole). Filtering happens before any formatting, so a disabled debug
 * message costs a walk of the target chain. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "time.h"

#define LOG_LINE_MAX 2048

const char *const pt_log_level_names[] = {
    "", "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug", NULL
};

static pt_log_t stderr_log = { .level = PT_LOG_ERR };
pt_log_t *pt_log_default = &stderr_log;
int pt_log_worker_id;
int pt_log_use_stderr = 1;

static int target_fd(const pt_log_t *t)
{
    return t->file ? t->file->fd : STDERR_FILENO;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;   /* nowhere left to report it */
        }
        p += w;
        n -= (size_t) w;
    }
}

/* " (111: Connection refused)" into buf; returns the length. */
static size_t format_err(char *buf, size_t size, int err)
{
    const char *desc = strerrordesc_np(err);
    int n = desc ? snprintf(buf, size, " (%d: %s)", err, desc)
                 : snprintf(buf, size, " (%d: Unknown error)", err);
    if (n < 0)
        return 0;
    return (size_t) n < size ? (size_t) n : size - 1;
}

/* Appends formatted text at *p, keeping what fits before limit. The byte at
 * limit itself must be writable (it receives vsnprintf's NUL). */
static void append_v(char **p, char *limit, const char *fmt, va_list ap)
{
    size_t room = (size_t) (limit - *p);
    int n = vsnprintf(*p, room + 1, fmt, ap);
    if (n < 0)
        return;
    *p += (size_t) n < room ? (size_t) n : room;
}

static void append_mem(char **p, char *end, const char *s, size_t n)
{
    size_t room = (size_t) (end - *p);
    if (n > room)
        n = room;
    memcpy(*p, s, n);
    *p += n;
}

/* stderr may have been redirected into a log file (dup2): then a line
 * written to that file was written to stderr already. Only asked for the
 * few messages that would be echoed. */
static int same_file_as_stderr(int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstat(STDERR_FILENO, &b) == 0 && a.st_dev == b.st_dev
           && a.st_ino == b.st_ino;
}

void pt_log_verror(int level, pt_log_t *log, int err, const char *fmt, va_list ap)
{
    if (log == NULL)
        log = pt_log_default;

    int wanted = 0;
    for (pt_log_t *t = log; t; t = t->next) {
        if (level <= t->level) {
            wanted = 1;
            break;
        }
    }
    if (!wanted && !(pt_log_use_stderr && level <= PT_LOG_WARN))
        return;

    char buf[LOG_LINE_MAX];
    char *end = buf + sizeof(buf) - 1;   /* one byte kept for '\n' */
    char *p = buf;

    if (pt_cached_err_log_time.len == 0)
        pt_time_update();
    append_mem(&p, end, pt_cached_err_log_time.data, pt_cached_err_log_time.len);
    if (level > PT_LOG_STDERR && level <= PT_LOG_DEBUG) {
        const char *name = pt_log_level_names[level];
        *p++ = ' ';
        *p++ = '[';
        append_mem(&p, end, name, strlen(name));
        *p++ = ']';
    }
    char head[64];
    int hn;
    if (log->connection)
        hn = snprintf(head, sizeof(head), " %ld#%d: *%llu ", (long) getpid(), pt_log_worker_id,
                      (unsigned long long) log->connection);
    else
        hn = snprintf(head, sizeof(head), " %ld#%d: ", (long) getpid(), pt_log_worker_id);
    if (hn > 0)
        append_mem(&p, end, head, (size_t) hn < sizeof(head) ? (size_t) hn : sizeof(head) - 1);

    char *msg = p;   /* the part echoed to stderr */

    /* errno text is reserved before the message so a long message cannot
     * push it out of the line */
    char errbuf[160];
    size_t errlen = err ? format_err(errbuf, sizeof(errbuf), err) : 0;
    char *msg_end = end - errlen;
    append_v(&p, msg_end > p ? msg_end : p, fmt, ap);
    append_mem(&p, end, errbuf, errlen);
    if (log->ctx_handler && p < end)
        p += log->ctx_handler(log, p, (size_t) (end - p));
    if (p > end)
        p = end;
    *p++ = '\n';

    int wrote_stderr = 0, echo = pt_log_use_stderr && level >= PT_LOG_STDERR
                                   && level <= PT_LOG_WARN;
    for (pt_log_t *t = log; t; t = t->next) {
        if (level > t->level)
            continue;
        int fd = target_fd(t);
        if (fd < 0)
            continue;
        write_all(fd, buf, (size_t) (p - buf));
        if (fd == STDERR_FILENO || (echo && !wrote_stderr && same_file_as_stderr(fd)))
            wrote_stderr = 1;
    }

    /* during startup a serious message also reaches the terminal, in the
     * "portico: [emerg] ..." shape, when no target printed it there */
    if (echo && !wrote_stderr) {
        char out[LOG_LINE_MAX + 32];
        const char *name = pt_log_level_names[level];
        int n = snprintf(out, sizeof(out), "portico: [%s] %.*s", name, (int) (p - msg), msg);
        if (n > 0)
            write_all(STDERR_FILENO, out, (size_t) n < sizeof(out) ? (size_t) n : sizeof(out) - 1);
    }
}

void pt_log_error(int level, pt_log_t *log, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_log_verror(level, log, err, fmt, ap);
    va_end(ap);
}

void pt_log_stderr(int err, const char *fmt, ...)
{
    char buf[LOG_LINE_MAX];
    char *end = buf + sizeof(buf) - 1;
    char *p = buf;
    va_list ap;

    append_mem(&p, end, "portico: [emerg] ", 17);
    char *msg = p;
    char errbuf[160];
    size_t errlen = err ? format_err(errbuf, sizeof(errbuf), err) : 0;
    va_start(ap, fmt);
    append_v(&p, end - errlen, fmt, ap);
    va_end(ap);
    append_mem(&p, end, errbuf, errlen);
    char *msg_end = p;
    *p++ = '\n';
    write_all(STDERR_FILENO, buf, (size_t) (p - buf));

    /* and to the error log file(s), when one is open */
    pt_log_t *log = pt_log_default;
    int to_file = 0;
    for (pt_log_t *t = log; t; t = t->next) {
        if (PT_LOG_EMERG <= t->level && target_fd(t) > STDERR_FILENO)
            to_file = 1;
    }
    if (!to_file)
        return;
    char line[LOG_LINE_MAX];
    if (pt_cached_err_log_time.len == 0)
        pt_time_update();
    int n = snprintf(line, sizeof(line), "%.*s [emerg] %ld#%d: %.*s\n",
                     (int) pt_cached_err_log_time.len, pt_cached_err_log_time.data,
                     (long) getpid(), pt_log_worker_id, (int) (msg_end - msg), msg);
    if (n <= 0)
        return;
    if ((size_t) n >= sizeof(line)) {
        n = (int) sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    for (pt_log_t *t = log; t; t = t->next) {
        int fd = target_fd(t);
        if (PT_LOG_EMERG <= t->level && fd > STDERR_FILENO)
            write_all(fd, line, (size_t) n);
    }
}

int pt_log_level_parse(const pt_str_t *name)
{
    for (int i = PT_LOG_EMERG; i <= PT_LOG_DEBUG; i++) {
        if (pt_str_eq_lit(name, pt_log_level_names[i]))
            return i;
    }
    return -1;
}

/* ---- open files -------------------------------------------------------- */

static int is_stderr_path(const char *path)
{
    return strcmp(path, "stderr") == 0;
}

static int open_log_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

pt_open_file_t *pt_open_file_get(pt_pool_t *pool, pt_open_file_t **list, const char *path)
{
    for (pt_open_file_t *f = *list; f; f = f->next) {
        if (strcmp(f->path, path) == 0)
            return f;
    }
    pt_open_file_t *f = pt_palloc(pool, sizeof(*f));
    if (f == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    f->path = pt_pstrndup(pool, path, strlen(path));
    if (f->path == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (is_stderr_path(path)) {
        f->fd = STDERR_FILENO;
    } else {
        f->fd = open_log_path(path);
        if (f->fd < 0)
            return NULL;   /* errno from open(2) */
    }
    f->next = *list;
    *list = f;
    return f;
}

void pt_open_files_reopen(pt_open_file_t *list, pt_log_t *log)
{
    for (pt_open_file_t *f = list; f; f = f->next) {
        if (is_stderr_path(f->path) || f->fd == STDERR_FILENO)
            continue;
        int fd = open_log_path(f->path);
        if (fd < 0) {
            pt_log_error(PT_LOG_ALERT, log, errno, "open() \"%s\" failed", f->path);
            continue;
        }
        if (f->fd < 0) {
            f->fd = fd;
            continue;
        }
        /* dup over the old descriptor: everything holding the number (log
         * structs copied into connections, stderr redirects) sees the new
         * file at once */
        if (dup3(fd, f->fd, O_CLOEXEC) < 0)
            pt_log_error(PT_LOG_ALERT, log, errno, "dup3() \"%s\" failed", f->path);
        close(fd);
    }
}

void pt_open_files_close(pt_open_file_t *list)
{
    for (pt_open_file_t *f = list; f; f = f->next) {
        if (f->fd > STDERR_FILENO && !is_stderr_path(f->path))
            close(f->fd);
        f->fd = -1;
    }
}
