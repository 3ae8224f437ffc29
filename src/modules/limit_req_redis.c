/* The Redis client behind cluster-wide limit_req zones (see the header for
 * the contract and the failure model).
 *
 * One connection per worker, registered once with the loop (edge triggered).
 * Commands are encoded into one output buffer as they come and written by a
 * posted event after the current loop iteration, so the requests of one
 * iteration leave in one send(); replies come back in order and are matched
 * to a FIFO of commands. One timer watches the oldest pending command (all
 * share the same timeout, so the oldest is due first). */
#include "limit_req_redis.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../config/conf.h"
#include "../core/time.h"

#define RD_BACKOFF_MIN   100     /* ms before the first reconnection */
#define RD_BACKOFF_MAX   2000
#define RD_IN_MIN        4096

/* ------------------------------------------------------------------------ */
/* RESP                                                                      */

/* Finds the CRLF ending the line at buf[pos..len): returns the index of its
 * CR, -2 if not there yet, -1 on a bare CR or LF. */
static ssize_t line_end(const char *buf, size_t len, size_t pos)
{
    for (size_t i = pos; i < len; i++) {
        if (buf[i] == '\r') {
            if (i + 1 == len)
                return -2;
            return buf[i + 1] == '\n' ? (ssize_t) i : -1;
        }
        if (buf[i] == '\n')
            return -1;
    }
    return -2;
}

/* A signed decimal of the whole of p[0..n). Returns 0 or -1. */
static int parse_int(const char *p, size_t n, int64_t *out)
{
    int neg = 0;
    if (n > 0 && p[0] == '-') {
        neg = 1;
        p++;
        n--;
    }
    if (n == 0 || n > 19)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        int d = p[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? -v : v;
    return 0;
}

/* Parses one value at buf[pos..len) into *v (when v is not NULL). Returns
 * the position after it, -2 (incomplete) or -1 (protocol error). *nelem gets
 * an array's element count; its elements are parsed by the caller. */
static ssize_t parse_head(const char *buf, size_t len, size_t pos, pt_redis_value_t *v,
                          int64_t *nelem)
{
    if (pos >= len)
        return -2;
    char t = buf[pos];
    ssize_t e = line_end(buf, len, pos + 1);
    if (e < 0)
        return e;
    const char *p = buf + pos + 1;
    size_t n = (size_t) e - pos - 1;
    size_t next = (size_t) e + 2;
    int64_t i;

    *nelem = -1;
    switch (t) {
    case '+':
    case '-':
        v->type = t == '+' ? PT_REDIS_STATUS : PT_REDIS_ERROR;
        v->str = p;
        v->len = n;
        return (ssize_t) next;
    case ':':
        if (parse_int(p, n, &i) != 0)
            return -1;
        v->type = PT_REDIS_INTEGER;
        v->integer = i;
        return (ssize_t) next;
    case '$':
        if (parse_int(p, n, &i) != 0 || i < -1 || i > PT_REDIS_MAX_INPUT)
            return -1;
        if (i == -1) {
            v->type = PT_REDIS_NIL;
            return (ssize_t) next;
        }
        if (len - next < (size_t) i + 2)
            return -2;
        if (buf[next + (size_t) i] != '\r' || buf[next + (size_t) i + 1] != '\n')
            return -1;
        v->type = PT_REDIS_BULK;
        v->str = buf + next;
        v->len = (size_t) i;
        return (ssize_t) (next + (size_t) i + 2);
    case '*':
        if (parse_int(p, n, &i) != 0 || i < -1 || i > PT_REDIS_MAX_INPUT)
            return -1;
        if (i == -1) {
            v->type = PT_REDIS_NIL;
            return (ssize_t) next;
        }
        v->type = PT_REDIS_ARRAY;
        v->integer = i;
        *nelem = i;
        return (ssize_t) next;
    default:
        return -1;
    }
}

/* Skips (parses) one whole value, arrays included, down to depth. */
static ssize_t skip_value(const char *buf, size_t len, size_t pos, int depth)
{
    pt_redis_value_t v;
    int64_t n;
    if (depth > PT_REDIS_MAX_DEPTH)
        return -1;
    ssize_t next = parse_head(buf, len, pos, &v, &n);
    for (int64_t k = 0; next >= 0 && k < n; k++)
        next = skip_value(buf, len, (size_t) next, depth + 1);
    return next;
}

ssize_t pt_redis_parse(const char *buf, size_t len, pt_redis_reply_t *reply)
{
    int64_t n;
    memset(&reply->v, 0, sizeof(reply->v));
    reply->nelem = reply->nkept = 0;
    ssize_t next = parse_head(buf, len, 0, &reply->v, &n);
    if (next < 0 || n < 0)
        return next;
    reply->nelem = (size_t) n;
    for (int64_t k = 0; k < n; k++) {
        pt_redis_value_t ev = { 0 };
        int64_t en;
        ssize_t after = parse_head(buf, len, (size_t) next, &ev, &en);
        if (after < 0)
            return after;
        for (int64_t j = 0; j < en; j++) {
            after = skip_value(buf, len, (size_t) after, 2);
            if (after < 0)
                return after;
        }
        if (reply->nkept < PT_REDIS_MAX_ELEMS)
            reply->elem[reply->nkept++] = ev;
        next = after;
    }
    return next;
}

/* Writes "<c><n>\r\n" at out+pos when it fits; returns the length it takes. */
static size_t put_head(char *out, size_t cap, size_t pos, char c, size_t n)
{
    char tmp[32];
    int l = snprintf(tmp, sizeof(tmp), "%c%zu\r\n", c, n);
    if (pos + (size_t) l <= cap)
        memcpy(out + pos, tmp, (size_t) l);
    return (size_t) l;
}

size_t pt_redis_encode(char *out, size_t cap, size_t argc, const pt_str_t *argv)
{
    size_t pos = put_head(out, cap, 0, '*', argc);
    for (size_t i = 0; i < argc; i++) {
        pos += put_head(out, cap, pos, '$', argv[i].len);
        if (pos + argv[i].len + 2 <= cap) {
            if (argv[i].len)
                memcpy(out + pos, argv[i].data, argv[i].len);
            memcpy(out + pos + argv[i].len, "\r\n", 2);
        }
        pos += argv[i].len + 2;
    }
    return pos;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

const char *pt_redis_conf_parse(pt_redis_conf_t *rc, const pt_str_t *args, size_t n)
{
    static char msg[160];
    const char *err = NULL;

    memset(rc, 0, sizeof(*rc));
    rc->timeout = 200;
    pt_str_set(&rc->prefix, "portico:limit_req:");
    if (pt_sockaddr_parse(args[0].data, args[0].len, 6379, &rc->addr, &rc->socklen, &err) != 0) {
        snprintf(msg, sizeof(msg), "%s in \"%.*s\"", err ? err : "invalid address",
                 (int) args[0].len, args[0].data);
        return msg;
    }
    pt_sockaddr_text(&rc->addr.sa, rc->socklen, rc->addr_text, sizeof(rc->addr_text), 1);

    for (size_t i = 1; i < n; i++) {
        const pt_str_t *a = &args[i];
        if (a->len > 8 && strncmp(a->data, "timeout=", 8) == 0) {
            pt_str_t s = { a->len - 8, a->data + 8 };
            rc->timeout = pt_conf_parse_msec(&s);
            if (rc->timeout <= 0)
                goto invalid;
            continue;
        }
        if (a->len > 7 && strncmp(a->data, "prefix=", 7) == 0) {
            rc->prefix.data = a->data + 7;
            rc->prefix.len = a->len - 7;
            continue;
        }
        if (a->len > 9 && strncmp(a->data, "password=", 9) == 0) {
            rc->password.data = a->data + 9;
            rc->password.len = a->len - 9;
            continue;
        }
        if (a->len > 3 && strncmp(a->data, "db=", 3) == 0) {
            rc->db = pt_atoi64(a->data + 3, a->len - 3);
            if (rc->db < 0 || rc->db > 1000000)
                goto invalid;
            continue;
        }
    invalid:
        /* never echo a password back */
        if (a->len > 9 && strncmp(a->data, "password=", 9) == 0)
            return "invalid parameter \"password=...\"";
        snprintf(msg, sizeof(msg), "invalid parameter \"%.*s\"", (int) a->len, a->data);
        return msg;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The connection                                                            */

enum { RD_DOWN = 0, RD_CONNECTING, RD_UP };

struct pt_redis_cmd_s {
    pt_redis_cmd_t *next;
    pt_redis_cb     cb;         /* NULL: cancelled, or internal */
    void           *data;
    int64_t         since;      /* pt_current_msec when queued */
    const char     *internal;   /* prelude command name (AUTH, SELECT, ...) */
    unsigned        eval:1;     /* sent as EVAL (after NOSCRIPT) */
    size_t          argc;       /* arguments in tail */
    size_t          tail_len;
    char            tail[];     /* encoded bulk strings after the script/sha */
};

struct pt_redis_s {
    const pt_redis_conf_t *conf;
    pt_log_t       *log;
    pt_io_t         io;
    int             state;
    pt_event_t      flush_ev;   /* posted: write what was queued */
    pt_event_t      timer_ev;   /* the oldest command's deadline */
    char           *out;
    size_t          out_len, out_pos, out_cap;
    char           *in;
    size_t          in_len, in_cap;
    pt_redis_cmd_t *head, **tail;
    int64_t         next_try;   /* DOWN: no connection before this */
    int64_t         backoff;
    unsigned        bad:1;      /* a problem was logged; the next success is too */
    const char     *script;
    size_t          script_len;
    char            sha[41];
};

static void do_flush(pt_redis_t *rd);
static void do_read(pt_redis_t *rd);

/* Appends to the output buffer. Returns 0 or -1 (no memory). */
static int out_reserve(pt_redis_t *rd, size_t need)
{
    if (rd->out_pos > 0 && rd->out_pos == rd->out_len)
        rd->out_pos = rd->out_len = 0;
    if (rd->out_len + need <= rd->out_cap)
        return 0;
    if (rd->out_pos > 0) {
        memmove(rd->out, rd->out + rd->out_pos, rd->out_len - rd->out_pos);
        rd->out_len -= rd->out_pos;
        rd->out_pos = 0;
        if (rd->out_len + need <= rd->out_cap)
            return 0;
    }
    size_t cap = rd->out_cap ? rd->out_cap : 4096;
    while (cap < rd->out_len + need)
        cap *= 2;
    char *p = realloc(rd->out, cap);
    if (p == NULL)
        return -1;
    rd->out = p;
    rd->out_cap = cap;
    return 0;
}

static int out_command(pt_redis_t *rd, size_t argc, const pt_str_t *argv)
{
    size_t need = pt_redis_encode(NULL, 0, argc, argv);
    if (out_reserve(rd, need) != 0)
        return -1;
    pt_redis_encode(rd->out + rd->out_len, need, argc, argv);
    rd->out_len += need;
    return 0;
}

/* Encodes a script command: EVALSHA sha | EVAL script, then the tail. */
static int out_script(pt_redis_t *rd, pt_redis_cmd_t *cmd)
{
    const char *name = cmd->eval ? "EVAL" : "EVALSHA";
    const char *body = cmd->eval ? rd->script : rd->sha;
    size_t blen = cmd->eval ? rd->script_len : 40;
    char head[96];
    int l = snprintf(head, sizeof(head), "*%zu\r\n$%zu\r\n%s\r\n$%zu\r\n",
                     cmd->argc + 2, strlen(name), name, blen);
    if (out_reserve(rd, (size_t) l + blen + 2 + cmd->tail_len) != 0)
        return -1;
    char *p = rd->out + rd->out_len;
    memcpy(p, head, (size_t) l);
    p += l;
    memcpy(p, body, blen);
    p += blen;
    memcpy(p, "\r\n", 2);
    p += 2;
    memcpy(p, cmd->tail, cmd->tail_len);
    rd->out_len += (size_t) l + blen + 2 + cmd->tail_len;
    return 0;
}

static void enqueue(pt_redis_t *rd, pt_redis_cmd_t *cmd)
{
    cmd->next = NULL;
    cmd->since = pt_current_msec;
    if (rd->head == NULL)
        pt_timer_add(&rd->timer_ev, rd->conf->timeout);
    *rd->tail = cmd;
    rd->tail = &cmd->next;
    pt_event_post(&rd->flush_ev);
}

static pt_redis_cmd_t *dequeue(pt_redis_t *rd)
{
    pt_redis_cmd_t *cmd = rd->head;
    rd->head = cmd->next;
    if (rd->head == NULL) {
        rd->tail = &rd->head;
        pt_timer_del(&rd->timer_ev);
    } else {
        int64_t left = rd->head->since + rd->conf->timeout - pt_current_msec;
        pt_timer_add(&rd->timer_ev, left > 0 ? left : 0);
    }
    return cmd;
}

/* The connection failed: close it, fail every pending command (callbacks
 * with NULL), and allow the next attempt after the back-off. */
static void fail(pt_redis_t *rd, int err, const char *what)
{
    if (!rd->bad)
        pt_log_error(PT_LOG_ERR, rd->log, err,
                     "redis %s %s; sync limit_req zones use local limits until it answers",
                     rd->conf->addr_text, what);
    rd->bad = 1;
    if (rd->io.fd >= 0)
        pt_loop_close_io(&rd->io);
    rd->state = RD_DOWN;
    pt_timer_del(&rd->timer_ev);
    pt_event_unpost(&rd->flush_ev);
    rd->next_try = pt_current_msec + rd->backoff;
    rd->backoff = rd->backoff * 2 > RD_BACKOFF_MAX ? RD_BACKOFF_MAX : rd->backoff * 2;
    rd->out_len = rd->out_pos = 0;
    rd->in_len = 0;

    pt_redis_cmd_t *cmd = rd->head;
    rd->head = NULL;
    rd->tail = &rd->head;
    while (cmd != NULL) {
        pt_redis_cmd_t *next = cmd->next;
        if (cmd->cb != NULL)
            cmd->cb(cmd->data, NULL);
        free(cmd);
        cmd = next;
    }
}

static void on_timer(pt_event_t *ev)
{
    pt_redis_t *rd = ev->data;
    if (rd->head == NULL)
        return;
    int64_t left = rd->head->since + rd->conf->timeout - pt_current_msec;
    if (left > 0) {
        pt_timer_add(&rd->timer_ev, left);
        return;
    }
    fail(rd, 0, rd->state == RD_CONNECTING ? "connection timed out" : "timed out");
}

static void on_flush(pt_event_t *ev)
{
    do_flush(ev->data);
}

static void on_write(pt_event_t *ev)
{
    do_flush(ev->data);
}

static void on_read(pt_event_t *ev)
{
    pt_redis_t *rd = ev->data;
    if (rd->state == RD_CONNECTING) {
        /* an error or hang-up before the connection completed */
        if (ev->error || ev->eof) {
            int err = 0;
            socklen_t l = sizeof(err);
            (void) getsockopt(rd->io.fd, SOL_SOCKET, SO_ERROR, &err, &l);
            fail(rd, err, "connect() failed");
        }
        return;
    }
    do_read(rd);
}

static void do_flush(pt_redis_t *rd)
{
    if (rd->state == RD_DOWN)
        return;
    if (rd->state == RD_CONNECTING) {
        if (!rd->io.write.ready)
            return;     /* not connected yet: the write event comes */
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(rd->io.fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0)
            err = errno;
        if (err != 0) {
            fail(rd, err, "connect() failed");
            return;
        }
        rd->state = RD_UP;
    }
    while (rd->out_pos < rd->out_len) {
        ssize_t n = send(rd->io.fd, rd->out + rd->out_pos, rd->out_len - rd->out_pos,
                         MSG_NOSIGNAL);
        if (n > 0) {
            rd->out_pos += (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rd->io.write.ready = 0;
            return;
        }
        fail(rd, errno, "send() failed");
        return;
    }
    rd->out_pos = rd->out_len = 0;
}

/* The "back" message after a logged problem, and a fresh back-off. */
static void good(pt_redis_t *rd)
{
    rd->backoff = RD_BACKOFF_MIN;
    if (rd->bad) {
        rd->bad = 0;
        pt_log_error(PT_LOG_NOTICE, rd->log, 0,
                     "redis %s answers again; sync limit_req zones are shared again",
                     rd->conf->addr_text);
    }
}

/* Dispatches one reply to the oldest command. Returns 0, or -1 when the
 * connection was failed (rd's buffers are reset: stop parsing). */
static int dispatch(pt_redis_t *rd, const pt_redis_reply_t *rep)
{
    if (rd->head == NULL) {
        fail(rd, 0, "sent a reply nobody asked for");
        return -1;
    }
    pt_redis_cmd_t *cmd = dequeue(rd);
    int is_err = rep->v.type == PT_REDIS_ERROR;

    if (cmd->internal != NULL) {
        if (is_err) {
            char what[160];
            snprintf(what, sizeof(what), "refused %s: %.*s", cmd->internal,
                     (int) (rep->v.len > 100 ? 100 : rep->v.len), rep->v.str);
            free(cmd);
            fail(rd, 0, what);
            return -1;
        }
        free(cmd);
        return 0;
    }
    if (is_err && !cmd->eval && rep->v.len >= 8 && memcmp(rep->v.str, "NOSCRIPT", 8) == 0) {
        /* the script cache was flushed: send the script itself (which also
         * caches it again) */
        cmd->eval = 1;
        if (out_script(rd, cmd) == 0) {
            enqueue(rd, cmd);
            return 0;
        }
    }
    if (is_err) {
        if (!rd->bad)
            pt_log_error(PT_LOG_ERR, rd->log, 0,
                         "redis %s answered \"%.*s\"; the requests concerned use local limits",
                         rd->conf->addr_text, (int) (rep->v.len > 200 ? 200 : rep->v.len),
                         rep->v.str);
        rd->bad = 1;
        if (cmd->cb)
            cmd->cb(cmd->data, NULL);
    } else {
        good(rd);
        if (cmd->cb)
            cmd->cb(cmd->data, rep);
    }
    free(cmd);
    return 0;
}

static void do_read(pt_redis_t *rd)
{
    for (;;) {
        if (rd->in_len == rd->in_cap) {
            if (rd->in_cap >= PT_REDIS_MAX_INPUT) {
                fail(rd, 0, "sent a reply too large");
                return;
            }
            size_t cap = rd->in_cap ? rd->in_cap * 2 : RD_IN_MIN;
            char *p = realloc(rd->in, cap);
            if (p == NULL) {
                fail(rd, ENOMEM, "could not be read");
                return;
            }
            rd->in = p;
            rd->in_cap = cap;
        }
        ssize_t n = recv(rd->io.fd, rd->in + rd->in_len, rd->in_cap - rd->in_len, 0);
        if (n == 0) {
            if (rd->head == NULL && rd->in_len == 0) {
                /* closed while idle (Redis's `timeout`, a restart): not a
                 * failure yet; the next command reconnects at once, and
                 * logs if that fails */
                pt_loop_close_io(&rd->io);
                rd->state = RD_DOWN;
                rd->next_try = pt_current_msec;
                rd->out_len = rd->out_pos = 0;
                return;
            }
            fail(rd, 0, "closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                rd->io.read.ready = 0;
                return;
            }
            fail(rd, errno, "recv() failed");
            return;
        }
        rd->in_len += (size_t) n;

        size_t pos = 0;
        for (;;) {
            pt_redis_reply_t rep;
            ssize_t used = pt_redis_parse(rd->in + pos, rd->in_len - pos, &rep);
            if (used == -2)
                break;
            if (used < 0) {
                fail(rd, 0, "sent something that is not RESP");
                return;
            }
            pos += (size_t) used;
            if (dispatch(rd, &rep) != 0)
                return;
        }
        if (pos > 0) {
            memmove(rd->in, rd->in + pos, rd->in_len - pos);
            rd->in_len -= pos;
        }
    }
}

static pt_redis_cmd_t *cmd_new(size_t tail_len)
{
    pt_redis_cmd_t *cmd = calloc(1, sizeof(*cmd) + tail_len);
    if (cmd != NULL)
        cmd->tail_len = tail_len;
    return cmd;
}

/* Queues a prelude command (AUTH, SELECT, SCRIPT LOAD). Returns 0 or -1. */
static int prelude(pt_redis_t *rd, const char *name, size_t argc, const pt_str_t *argv)
{
    pt_redis_cmd_t *cmd = cmd_new(0);
    if (cmd == NULL || out_command(rd, argc, argv) != 0) {
        free(cmd);
        return -1;
    }
    cmd->internal = name;
    enqueue(rd, cmd);
    return 0;
}

/* Starts a connection. Returns 0 (connecting) or -1 (failed, logged). */
static int connect_start(pt_redis_t *rd)
{
    int fam = rd->conf->addr.sa.sa_family;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(rd, errno, "socket() failed");
        return -1;
    }
    if (fam != AF_UNIX) {
        int one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(fd, &rd->conf->addr.sa, rd->conf->socklen) != 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        fail(rd, err, "connect() failed");
        return -1;
    }
    rd->io.fd = fd;
    if (pt_loop_add_io(&rd->io) != 0) {
        fail(rd, errno, "could not be registered (epoll_ctl)");
        return -1;
    }
    rd->state = RD_CONNECTING;
    rd->out_len = rd->out_pos = rd->in_len = 0;

    int rc = 0;
    if (rd->conf->password.len) {
        pt_str_t a[2] = { pt_string("AUTH"), rd->conf->password };
        rc |= prelude(rd, "AUTH", 2, a);
    }
    if (rd->conf->db > 0) {
        char num[24];
        pt_str_t a[2] = { pt_string("SELECT"), { 0, num } };
        a[1].len = (size_t) snprintf(num, sizeof(num), "%lld", (long long) rd->conf->db);
        rc |= prelude(rd, "SELECT", 2, a);
    }
    /* load the script now, so the first EVALSHA finds it */
    pt_str_t a[3] = { pt_string("SCRIPT"), pt_string("LOAD"),
                      { rd->script_len, (char *) rd->script } };
    rc |= prelude(rd, "SCRIPT LOAD", 3, a);
    if (rc != 0) {
        fail(rd, ENOMEM, "could not be queued");
        return -1;
    }
    return 0;
}

pt_redis_cmd_t *pt_redis_eval(pt_redis_t *rd, size_t argc, const pt_str_t *argv,
                              pt_redis_cb cb, void *data)
{
    if (rd->state == RD_DOWN) {
        if (pt_current_msec < rd->next_try)
            return NULL;
        if (connect_start(rd) != 0)
            return NULL;
    }
    size_t tail = pt_redis_encode(NULL, 0, argc, argv);
    pt_redis_cmd_t *cmd = cmd_new(tail);
    if (cmd == NULL)
        return NULL;
    pt_redis_encode(cmd->tail, tail, argc, argv);
    /* keep the bulk strings, drop the "*N\r\n" array header */
    char *crlf = memchr(cmd->tail, '\n', tail);
    size_t hl = (size_t) (crlf - cmd->tail) + 1;
    memmove(cmd->tail, cmd->tail + hl, tail - hl);
    cmd->tail_len = tail - hl;
    cmd->argc = argc;
    cmd->cb = cb;
    cmd->data = data;
    if (out_script(rd, cmd) != 0) {
        free(cmd);
        return NULL;
    }
    enqueue(rd, cmd);
    return cmd;
}

void pt_redis_cancel(pt_redis_cmd_t *cmd)
{
    if (cmd != NULL)
        cmd->cb = NULL;
}

pt_redis_t *pt_redis_create(const pt_redis_conf_t *conf, const char *script, pt_log_t *log)
{
    pt_redis_t *rd = calloc(1, sizeof(*rd));
    if (rd == NULL)
        return NULL;
    rd->conf = conf;
    rd->log = log;
    rd->io.fd = -1;
    rd->io.read.handler = on_read;
    rd->io.read.data = rd;
    rd->io.write.handler = on_write;
    rd->io.write.data = rd;
    rd->io.read.timer_index = rd->io.write.timer_index = SIZE_MAX;
    rd->flush_ev.handler = on_flush;
    rd->flush_ev.data = rd;
    rd->flush_ev.timer_index = SIZE_MAX;
    rd->timer_ev.handler = on_timer;
    rd->timer_ev.data = rd;
    rd->timer_ev.timer_index = SIZE_MAX;
    rd->tail = &rd->head;
    rd->backoff = RD_BACKOFF_MIN;
    rd->script = script;
    rd->script_len = strlen(script);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(script, rd->script_len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        free(rd);
        return NULL;
    }
    for (unsigned i = 0; i < 20; i++)
        snprintf(rd->sha + 2 * i, 3, "%02x", md[i]);
    return rd;
}

void pt_redis_destroy(pt_redis_t *rd)
{
    if (rd == NULL)
        return;
    if (rd->io.fd >= 0)
        pt_loop_close_io(&rd->io);
    pt_timer_del(&rd->timer_ev);
    pt_event_unpost(&rd->flush_ev);
    for (pt_redis_cmd_t *cmd = rd->head, *next; cmd; cmd = next) {
        next = cmd->next;
        free(cmd);
    }
    free(rd->out);
    free(rd->in);
    free(rd);
}
