/* The access log module: log_format, access_log, open_log_file_cache.
 *
 * A format is compiled once into ops (literal text or a variable index with
 * the format's escaping). At the LOG phase each access_log of the request's
 * final location builds its line in one piece and writes it with one
 * write(2) (O_APPEND keeps lines of several workers whole), or appends it to
 * the file's buffer when buffer=/gzip is set; buffers are flushed when full,
 * by their flush= timer and when the worker exits. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../config/cycle.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"

extern pt_module_t pt_http_log_module;

enum { ESC_DEFAULT = 0, ESC_JSON, ESC_NONE };

typedef struct {
    pt_str_t text;          /* literal; data NULL for a variable */
    unsigned index;         /* variable */
} log_op_t;

typedef struct {
    pt_str_t  name;
    log_op_t *ops;
    unsigned  nops;
    int       escape;
} log_fmt_t;

/* One file's write buffer (buffer=, gzip). Each worker has its own copy (the
 * config memory is copied on fork), so no locking is needed. */
typedef struct log_buf_s {
    pt_open_file_t    *file;
    char              *start, *pos, *end;
    int64_t            flush;       /* ms, 0 none */
    int                gzip;        /* level, 0 none */
    pt_event_t         ev;          /* flush timer */
    struct log_buf_s  *next;
} log_buf_t;

typedef struct {
    pt_open_file_t *file;           /* NULL when the path has variables */
    pt_http_cv_t   *path;           /* path with variables */
    log_fmt_t      *fmt;
    log_buf_t      *buf;            /* NULL: one write(2) per line */
    pt_http_cv_t   *cond;           /* if= */
} log_t;

typedef struct {
    pt_array_t  formats;            /* log_fmt_t */
    pt_array_t *default_logs;       /* the implicit "logs/access.log combined" */
    log_buf_t  *buffers;            /* every buffer, for flushing at exit */
    pt_str_t    prefix;             /* for relative paths with variables */
} log_main_conf_t;

typedef struct {
    pt_array_t *logs;               /* log_t; NULL with off; UNSET_PTR inherit */
    int         off;
} log_loc_conf_t;

static const char combined_fmt[] =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
    "\"$http_referer\" \"$http_user_agent\"";

/* ------------------------------------------------------------------------ */
/* Escaping                                                                  */

static int needs_default_escape(unsigned char c)
{
    return c == '"' || c == '\\' || c < 0x20 || c >= 0x7f;
}

static size_t escaped_len(const pt_str_t *v, int mode)
{
    size_t n = v->len;
    if (mode == ESC_NONE)
        return n;
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char) v->data[i];
        if (mode == ESC_DEFAULT) {
            if (needs_default_escape(c))
                n += 3;                         /* \xXX */
        } else if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t'
                   || c == '\b' || c == '\f') {
            n += 1;
        } else if (c < 0x20) {
            n += 5;                             /* \u00XX */
        }
    }
    return n;
}

static char *escape_copy(char *p, const pt_str_t *v, int mode)
{
    static const char HEX[] = "0123456789ABCDEF";
    static const char hex[] = "0123456789abcdef";
    if (mode == ESC_NONE) {
        memcpy(p, v->data, v->len);
        return p + v->len;
    }
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char) v->data[i];
        if (mode == ESC_DEFAULT) {
            if (needs_default_escape(c)) {
                *p++ = '\\';
                *p++ = 'x';
                *p++ = HEX[c >> 4];
                *p++ = HEX[c & 0xf];
            } else {
                *p++ = (char) c;
            }
            continue;
        }
        switch (c) {
        case '"': *p++ = '\\'; *p++ = '"'; break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        case '\b': *p++ = '\\'; *p++ = 'b'; break;
        case '\f': *p++ = '\\'; *p++ = 'f'; break;
        default:
            if (c < 0x20) {
                memcpy(p, "\\u00", 4);
                p += 4;
                *p++ = hex[c >> 4];
                *p++ = hex[c & 0xf];
            } else {
                *p++ = (char) c;
            }
        }
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

static void write_all(pt_open_file_t *file, const char *p, size_t n, pt_log_t *log)
{
    static time_t last_error;
    while (n > 0) {
        ssize_t w = write(file->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* at most one complaint a second, as a full disk would flood */
            if (pt_time_sec != last_error) {
                last_error = pt_time_sec;
                pt_log_error(PT_LOG_ALERT, log, errno, "write() to \"%s\" failed", file->path);
            }
            return;
        }
        p += w;
        n -= (size_t) w;
    }
}

/* Compresses data as one gzip member (members concatenate into a valid
 * .gz file, as nginx writes them) and writes it. */
static void write_gzip(log_buf_t *b, const char *data, size_t len, pt_log_t *log)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, b->gzip, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        pt_log_error(PT_LOG_ALERT, log, 0, "deflateInit2() failed");
        return;
    }
    uLong bound = deflateBound(&zs, (uLong) len);
    char stack[16384];
    char *out = bound <= sizeof(stack) ? stack : malloc(bound);   /* worker, rare */
    if (out == NULL) {
        deflateEnd(&zs);
        return;
    }
    zs.next_in = (Bytef *) data;
    zs.avail_in = (uInt) len;
    zs.next_out = (Bytef *) out;
    zs.avail_out = (uInt) bound;
    if (deflate(&zs, Z_FINISH) == Z_STREAM_END)
        write_all(b->file, out, bound - zs.avail_out, log);
    else
        pt_log_error(PT_LOG_ALERT, log, 0, "deflate() failed");
    deflateEnd(&zs);
    if (out != stack)
        free(out);
}

static void buf_flush(log_buf_t *b, pt_log_t *log)
{
    if (b->ev.timer_set)
        pt_timer_del(&b->ev);
    size_t n = (size_t) (b->pos - b->start);
    if (n == 0)
        return;
    if (b->gzip)
        write_gzip(b, b->start, n, log);
    else
        write_all(b->file, b->start, n, log);
    b->pos = b->start;
}

static void on_flush_timer(pt_event_t *ev)
{
    buf_flush(ev->data, NULL);
}

static void log_write(log_t *lg, const char *line, size_t len, pt_http_request_t *r)
{
    pt_log_t *elog = r->connection ? &r->connection->log : NULL;
    log_buf_t *b = lg->buf;
    if (b == NULL) {
        write_all(lg->file, line, len, elog);
        return;
    }
    if ((size_t) (b->end - b->pos) < len)
        buf_flush(b, elog);
    if ((size_t) (b->end - b->pos) < len) {
        /* longer than the whole buffer: straight out */
        if (b->gzip)
            write_gzip(b, line, len, elog);
        else
            write_all(b->file, line, len, elog);
        return;
    }
    memcpy(b->pos, line, len);
    b->pos += len;
    if (b->flush && !b->ev.timer_set)
        pt_timer_add(&b->ev, b->flush);
}

static void write_to_path(pt_http_request_t *r, log_t *lg, const char *line, size_t len)
{
    pt_str_t path;
    if (pt_http_cv_eval(r, lg->path, &path) != 0 || path.len == 0)
        return;
    log_main_conf_t *lmcf = pt_http_get_module_main_conf(r, pt_http_log_module);
    char *full;
    if (path.data[0] == '/')
        full = pt_pstrndup(r->pool, path.data, path.len);
    else
        full = pt_psprintf(r->pool, "%.*s%.*s", (int) lmcf->prefix.len, lmcf->prefix.data,
                           (int) path.len, path.data);
    if (full == NULL)
        return;
    int fd = open(full, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        pt_log_error(PT_LOG_ERR, r->connection ? &r->connection->log : NULL, errno,
                     "open() \"%s\" failed", full);
        return;
    }
    pt_open_file_t f = { .path = full, .fd = fd, .next = NULL };
    write_all(&f, line, len, r->connection ? &r->connection->log : NULL);
    close(fd);
}

static int cond_ok(pt_http_request_t *r, const pt_http_cv_t *cond)
{
    pt_str_t v;
    if (pt_http_cv_eval(r, cond, &v) != 0)
        return 0;
    return !(v.len == 0 || (v.len == 1 && v.data[0] == '0'));
}

typedef struct {
    pt_str_t s;
    unsigned raw;           /* copy as is (the "-" of a missing value) */
} log_val_t;

/* Builds the line for fmt (with its '\n') into buf or r->pool. */
static char *format_line(pt_http_request_t *r, const log_fmt_t *fmt, char *buf, size_t bufsize,
                         size_t *lenp)
{
    log_val_t local[32];
    log_val_t *vals = local;
    if (fmt->nops > 32) {
        vals = pt_palloc(r->pool, fmt->nops * sizeof(log_val_t));
        if (vals == NULL)
            return NULL;
    }
    size_t len = 1;
    for (unsigned i = 0; i < fmt->nops; i++) {
        const log_op_t *op = &fmt->ops[i];
        if (op->text.data) {
            vals[i].s = op->text;
            vals[i].raw = 1;
            len += op->text.len;
            continue;
        }
        pt_http_var_value_t *v = pt_http_var_get(r, op->index);
        if (v == NULL || v->not_found) {
            /* nginx: "-" for a missing value, nothing in json/none modes */
            if (fmt->escape == ESC_DEFAULT)
                pt_str_set(&vals[i].s, "-");
            else
                pt_str_set(&vals[i].s, "");
            vals[i].raw = 1;
            len += vals[i].s.len;
            continue;
        }
        vals[i].s = v->value;
        vals[i].raw = 0;
        len += escaped_len(&v->value, fmt->escape);
    }
    char *line = len <= bufsize ? buf : pt_pnalloc(r->pool, len);
    if (line == NULL)
        return NULL;
    char *p = line;
    for (unsigned i = 0; i < fmt->nops; i++) {
        if (vals[i].raw) {
            memcpy(p, vals[i].s.data, vals[i].s.len);
            p += vals[i].s.len;
        } else {
            p = escape_copy(p, &vals[i].s, fmt->escape);
        }
    }
    *p++ = '\n';
    *lenp = (size_t) (p - line);
    return line;
}

static int log_handler(pt_http_request_t *r)
{
    log_loc_conf_t *llcf = r->loc_conf ? pt_http_get_module_loc_conf(r, pt_http_log_module) : NULL;
    if (llcf == NULL || llcf->off || llcf->logs == NULL || llcf->logs == PT_CONF_UNSET_PTR)
        return PT_OK;
    log_t *logs = llcf->logs->elts;
    for (size_t i = 0; i < llcf->logs->nelts; i++) {
        log_t *lg = &logs[i];
        if (lg->cond && !cond_ok(r, lg->cond))
            continue;
        char stack[4096];
        size_t len;
        char *line = format_line(r, lg->fmt, stack, sizeof(stack), &len);
        if (line == NULL)
            continue;
        if (lg->path)
            write_to_path(r, lg, line, len);
        else
            log_write(lg, line, len, r);
    }
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* Config time                                                               */

static int is_name_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* Compiles the concatenation of parts into fmt->ops. */
static int compile_format(pt_conf_t *cf, log_fmt_t *fmt, const pt_str_t *parts, size_t nparts)
{
    pt_array_t ops;
    if (pt_array_init(&ops, cf->pool, 16, sizeof(log_op_t)) != 0)
        return -1;
    for (size_t k = 0; k < nparts; k++) {
        const pt_str_t *s = &parts[k];
        size_t i = 0;
        while (i < s->len) {
            if (s->data[i] != '$') {
                size_t start = i;
                while (i < s->len && s->data[i] != '$')
                    i++;
                log_op_t *op = pt_array_push(&ops);
                if (op == NULL)
                    return -1;
                op->text.data = s->data + start;
                op->text.len = i - start;
                continue;
            }
            i++;
            int bracket = 0;
            if (i < s->len && s->data[i] == '{') {
                bracket = 1;
                i++;
            }
            size_t start = i;
            while (i < s->len && is_name_char((unsigned char) s->data[i]))
                i++;
            pt_str_t name = { i - start, s->data + start };
            if (bracket) {
                if (i >= s->len || s->data[i] != '}') {
                    pt_conf_error(cf, PT_LOG_EMERG, 0,
                                  "the closing bracket in \"%.*s\" variable is missing",
                                  (int) name.len, name.data);
                    return -1;
                }
                i++;
            }
            if (name.len == 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid variable name in \"%.*s\"",
                              (int) s->len, s->data);
                return -1;
            }
            int idx = pt_http_var_index(cf, &name);
            if (idx < 0)
                return -1;
            log_op_t *op = pt_array_push(&ops);
            if (op == NULL)
                return -1;
            op->text.data = NULL;
            op->text.len = 0;
            op->index = (unsigned) idx;
        }
    }
    fmt->ops = ops.elts;
    fmt->nops = (unsigned) ops.nelts;
    return 0;
}

static log_fmt_t *find_format(pt_conf_t *cf, log_main_conf_t *lmcf, const pt_str_t *name)
{
    log_fmt_t *f = lmcf->formats.elts;
    for (size_t i = 0; i < lmcf->formats.nelts; i++)
        if (pt_str_eq(&f[i].name, name))
            return &f[i];
    if (!pt_str_eq_lit(name, "combined"))
        return NULL;
    /* the predefined format, compiled when first used */
    log_fmt_t *fmt = pt_array_push(&lmcf->formats);
    if (fmt == NULL)
        return NULL;
    pt_str_set(&fmt->name, "combined");
    fmt->escape = ESC_DEFAULT;
    pt_str_t part = { sizeof(combined_fmt) - 1, (char *) combined_fmt };
    if (compile_format(cf, fmt, &part, 1) != 0) {
        lmcf->formats.nelts--;
        return NULL;
    }
    return fmt;
}

static const char *log_format_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    log_main_conf_t *lmcf = conf;
    pt_str_t *value = cf->args->elts;
    size_t n = cf->args->nelts;

    log_fmt_t *f = lmcf->formats.elts;
    for (size_t i = 0; i < lmcf->formats.nelts; i++) {
        if (pt_str_eq(&f[i].name, &value[1])) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate \"log_format\" name \"%s\"", value[1].data);
            return PT_CONF_ERROR;
        }
    }
    if (pt_str_eq_lit(&value[1], "combined")) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate \"log_format\" name \"combined\"");
        return PT_CONF_ERROR;
    }

    int escape = ESC_DEFAULT;
    size_t first = 2;
    if (n > 2 && value[2].len > 7 && memcmp(value[2].data, "escape=", 7) == 0) {
        pt_str_t e = { value[2].len - 7, value[2].data + 7 };
        if (pt_str_eq_lit(&e, "default"))
            escape = ESC_DEFAULT;
        else if (pt_str_eq_lit(&e, "json"))
            escape = ESC_JSON;
        else if (pt_str_eq_lit(&e, "none"))
            escape = ESC_NONE;
        else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "unknown log format escaping \"%.*s\"",
                          (int) e.len, e.data);
            return PT_CONF_ERROR;
        }
        first = 3;
    }
    if (first >= n) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of arguments in \"log_format\" directive");
        return PT_CONF_ERROR;
    }

    log_fmt_t fmt;
    memset(&fmt, 0, sizeof(fmt));
    fmt.name = value[1];
    fmt.escape = escape;
    if (compile_format(cf, &fmt, &value[first], n - first) != 0)
        return PT_CONF_ERROR;
    log_fmt_t *nf = pt_array_push(&lmcf->formats);
    if (nf == NULL)
        return "failed (out of memory)";
    *nf = fmt;
    return PT_CONF_OK;
}

static int has_vars(const pt_str_t *s)
{
    return memchr(s->data, '$', s->len) != NULL;
}

/* Opens (or finds) the file of an access_log path. */
static const char *open_log(pt_conf_t *cf, const pt_str_t *arg, log_t *lg)
{
    pt_str_t path = *arg;
    if (pt_conf_full_name(cf->cycle, &path, 0) != 0)
        return "failed (out of memory)";
    lg->file = pt_open_file_get(cf->pool, &cf->cycle->open_files, path.data);
    if (lg->file == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "open() \"%s\" failed", path.data);
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static log_buf_t *find_buffer(log_main_conf_t *lmcf, pt_open_file_t *file)
{
    for (log_buf_t *b = lmcf->buffers; b; b = b->next)
        if (b->file == file)
            return b;
    return NULL;
}

static const char *access_log_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    log_loc_conf_t *llcf = conf;
    log_main_conf_t *lmcf = pt_http_conf_get_module_main_conf(cf, pt_http_log_module);
    pt_str_t *value = cf->args->elts;
    size_t n = cf->args->nelts;

    if (pt_str_eq_lit(&value[1], "off")) {
        if (n != 2) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[2].data);
            return PT_CONF_ERROR;
        }
        llcf->off = 1;
        return PT_CONF_OK;
    }
    if (llcf->logs == PT_CONF_UNSET_PTR || llcf->logs == NULL) {
        llcf->logs = pt_array_create(cf->pool, 2, sizeof(log_t));
        if (llcf->logs == NULL)
            return "failed (out of memory)";
    }
    log_t lg;
    memset(&lg, 0, sizeof(lg));

    if (value[1].len > 7 && memcmp(value[1].data, "syslog:", 7) == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "syslog logging is not supported by Portico yet");
        return PT_CONF_ERROR;
    }

    if (has_vars(&value[1])) {
        lg.path = pt_palloc(cf->pool, sizeof(pt_http_cv_t));
        if (lg.path == NULL || pt_http_cv_compile(cf, &value[1], lg.path) != 0)
            return PT_CONF_ERROR;
    } else {
        const char *rv = open_log(cf, &value[1], &lg);
        if (rv != PT_CONF_OK)
            return rv;
    }

    pt_str_t fmt_name = pt_string("combined");
    size_t i = 2;
    if (n > 2) {
        /* as nginx, the second argument is always the format's name */
        fmt_name = value[2];
        i = 3;
    }
    lg.fmt = find_format(cf, lmcf, &fmt_name);
    if (lg.fmt == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "unknown log format \"%.*s\"", (int) fmt_name.len, fmt_name.data);
        return PT_CONF_ERROR;
    }

    int64_t size = 0, flush = 0;
    int gzip = 0;
    for (; i < n; i++) {
        pt_str_t *a = &value[i];
        if (a->len > 7 && memcmp(a->data, "buffer=", 7) == 0) {
            pt_str_t s = { a->len - 7, a->data + 7 };
            size = pt_conf_parse_size(&s);
            if (size <= 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid buffer size \"%.*s\"", (int) s.len, s.data);
                return PT_CONF_ERROR;
            }
        } else if (a->len > 6 && memcmp(a->data, "flush=", 6) == 0) {
            pt_str_t s = { a->len - 6, a->data + 6 };
            flush = pt_conf_parse_msec(&s);
            if (flush <= 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid flush time \"%.*s\"", (int) s.len, s.data);
                return PT_CONF_ERROR;
            }
        } else if (pt_str_eq_lit(a, "gzip")) {
            gzip = 1;
        } else if (a->len > 5 && memcmp(a->data, "gzip=", 5) == 0) {
            pt_str_t s = { a->len - 5, a->data + 5 };
            int64_t lv = pt_atoi64(s.data, s.len);
            if (lv < 1 || lv > 9) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid compression level \"%.*s\"", (int) s.len, s.data);
                return PT_CONF_ERROR;
            }
            gzip = (int) lv;
        } else if (a->len > 3 && memcmp(a->data, "if=", 3) == 0) {
            pt_str_t s = { a->len - 3, a->data + 3 };
            lg.cond = pt_palloc(cf->pool, sizeof(pt_http_cv_t));
            if (lg.cond == NULL || pt_http_cv_compile(cf, &s, lg.cond) != 0)
                return PT_CONF_ERROR;
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", a->data);
            return PT_CONF_ERROR;
        }
    }

    if (flush && size == 0 && !gzip) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "no buffer is defined for access_log \"%s\"", value[1].data);
        return PT_CONF_ERROR;
    }
    if (size || gzip) {
        if (lg.path) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "buffered logs cannot have variables in name");
            return PT_CONF_ERROR;
        }
        if (size == 0)
            size = 64 * 1024;
        log_buf_t *b = find_buffer(lmcf, lg.file);
        if (b) {
            if (b->end - b->start != size || b->flush != flush || b->gzip != gzip) {
                pt_conf_error(cf, PT_LOG_EMERG, 0,
                              "access_log \"%s\" already defined with conflicting parameters",
                              value[1].data);
                return PT_CONF_ERROR;
            }
        } else {
            b = pt_pcalloc(cf->pool, sizeof(*b));
            if (b == NULL)
                return "failed (out of memory)";
            b->start = pt_pnalloc(cf->pool, (size_t) size);
            if (b->start == NULL)
                return "failed (out of memory)";
            b->pos = b->start;
            b->end = b->start + size;
            b->file = lg.file;
            b->flush = flush;
            b->gzip = gzip;
            b->ev.handler = on_flush_timer;
            b->ev.data = b;
            b->ev.timer_index = (size_t) -1;
            b->next = lmcf->buffers;
            lmcf->buffers = b;
        }
        lg.buf = b;
    } else if (lg.file && find_buffer(lmcf, lg.file)) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "access_log \"%s\" already defined with buffer",
                      value[1].data);
        return PT_CONF_ERROR;
    }

    log_t *nl = pt_array_push(llcf->logs);
    if (nl == NULL)
        return "failed (out of memory)";
    *nl = lg;
    return PT_CONF_OK;
}

static const char *open_log_file_cache_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    /* accepted: files are opened once at startup; paths with variables are
     * opened per write */
    pt_str_t *value = cf->args->elts;
    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t *a = &value[i];
        if (pt_str_eq_lit(a, "off") || (a->len > 4 && memcmp(a->data, "max=", 4) == 0)
            || (a->len > 9 && memcmp(a->data, "inactive=", 9) == 0)
            || (a->len > 9 && memcmp(a->data, "min_uses=", 9) == 0)
            || (a->len > 6 && memcmp(a->data, "valid=", 6) == 0))
            continue;
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid \"open_log_file_cache\" parameter \"%s\"", a->data);
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static void *create_main_conf(pt_conf_t *cf)
{
    log_main_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL || pt_array_init(&conf->formats, cf->pool, 4, sizeof(log_fmt_t)) != 0)
        return NULL;
    return conf;
}

static const char *init_main_conf(pt_conf_t *cf, void *c)
{
    log_main_conf_t *conf = c;
    conf->prefix = cf->cycle->prefix;
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    log_loc_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->logs = PT_CONF_UNSET_PTR;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    log_loc_conf_t *prev = parent, *conf = child;
    if (conf->off || conf->logs != PT_CONF_UNSET_PTR)
        return PT_CONF_OK;
    if (prev->off || prev->logs != PT_CONF_UNSET_PTR) {
        conf->off = prev->off;
        conf->logs = prev->logs;
        return PT_CONF_OK;
    }
    /* nobody above said anything: logs/access.log combined, shared by every
     * level (and made the parent's so later siblings inherit it) */
    log_main_conf_t *lmcf = pt_http_conf_get_module_main_conf(cf, pt_http_log_module);
    if (lmcf->default_logs == NULL) {
        pt_array_t *logs = pt_array_create(cf->pool, 1, sizeof(log_t));
        if (logs == NULL)
            return "failed (out of memory)";
        log_t *lg = pt_array_push(logs);
        if (lg == NULL)
            return "failed (out of memory)";
        pt_str_t path = pt_string("logs/access.log");
        const char *rv = open_log(cf, &path, lg);
        if (rv != PT_CONF_OK)
            return rv;
        pt_str_t name = pt_string("combined");
        lg->fmt = find_format(cf, lmcf, &name);
        if (lg->fmt == NULL)
            return PT_CONF_ERROR;
        lmcf->default_logs = logs;
    }
    conf->logs = lmcf->default_logs;
    prev->logs = lmcf->default_logs;
    return PT_CONF_OK;
}

static int log_init(pt_conf_t *cf)
{
    return pt_http_phase_add(cf, PT_HTTP_LOG_PHASE, log_handler);
}

static void log_exit_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return;
    log_main_conf_t *lmcf = cycle->http_ctx->main_conf[pt_http_log_module.index];
    if (lmcf == NULL)
        return;
    for (log_buf_t *b = lmcf->buffers; b; b = b->next)
        buf_flush(b, cycle->log);
}

#define LOG_CTX (PT_CTX_HTTP_ANY | PT_CTX_LIF | PT_CTX_LMT)

static const pt_command_t log_commands[] = {
    { "log_format", PT_CTX_HTTP, 0, 2, PT_ARGS_ANY, log_format_cmd, PT_CONF_HTTP_MAIN, 0, NULL },
    { "access_log", LOG_CTX, 0, 1, PT_ARGS_ANY, access_log_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "open_log_file_cache", PT_CTX_HTTP_ANY, 0, 1, 4, open_log_file_cache_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_log_module = {
    .name = "http_log",
    .commands = log_commands,
    .create_main_conf = create_main_conf,
    .init_main_conf = init_main_conf,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .postconfiguration = log_init,
    .exit_worker = log_exit_worker,
};
