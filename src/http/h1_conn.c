/* HTTP/1.x connections.
 *
 * States of a connection:
 *   WAIT     no request: a new connection or an idle keep-alive one. Holds no
 *            pool and no buffer; the first readable event takes a header
 *            buffer (given back at once if the read would block).
 *   HEAD     a request has started (pool, buffer): reading and parsing its
 *            head. The head is parsed again from the start as data grows
 *            (only when a new LF arrived), in one contiguous buffer that grows
 *            up to large_client_header_buffers (number x size).
 *   REQUEST  the request runs; after pt_http_finalize_request() the output
 *            drains, an unread body is discarded, then the LOG phase runs and
 *            a posted event ends the request: keep-alive (the pipelined rest
 *            starts the next request at once) or close (lingering when the
 *            client may still be sending).
 *   LINGER   lingering close: write side shut, input read and dropped for a
 *            bounded time so a reset does not destroy the response.
 *
 * Requests and connections are only freed from the posted "done" event or
 * from a top-level event handler, never from inside a call that a handler
 * made, so nothing on the stack can see freed memory. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core.h"
#include "h1_conn.h"
#include "h1_parse.h"
#include "proxy_protocol.h"
#include "limit_rate.h"
#include "../core/buf.h"
#include "../core/log.h"
#include "../core/time.h"

enum { ST_WAIT = 0, ST_HEAD, ST_REQUEST, ST_LINGER, ST_DETACHED };
enum { STAT_NONE = 0, STAT_READING, STAT_WRITING, STAT_WAITING };

/* A request body left unread when the response is done is read and dropped
 * (so the connection can be kept alive) up to this many bytes; beyond it, or
 * when the size is unknown and it grows past it, the connection closes. */
#define DISCARD_MAX   (1024 * 1024)
#define IOV_N         64
#define FAIR_READS    4       /* reads of dropped input per wakeup */
#define STACK_HEADERS 64

/* Chunk framing ("\r\n" "1f40" "\r\n") queued between body buffers. Lives in
 * the request pool; recycled through h->frame_free once written. */
typedef struct framing_s {
    pt_buf_t b;
    char     text[24];
} framing_t;

static char framing_tag;

typedef struct {
    pt_conn_t               *c;
    pt_http_addr_conf_t     *addr;
    pt_http_core_srv_conf_t *srv;       /* default server of the address */
    pt_http_request_t       *r;
    pt_buf_t                *buf;       /* input: head, preread body, pipelined */
    pt_buf_t                *next_buf;  /* bytes read past a chunked body: the
                                         * next request (h->buf still holds the
                                         * head the request points into) */
    size_t                   scanned;   /* head bytes already searched for a LF */
    pt_h1_header_t          *hdrs;      /* parser output when the stack array is
                                         * too small (r->pool, grows by doubling) */
    size_t                   hdrs_cap;

    const char              *hdr;       /* serialised response head (r->pool) */
    size_t                   hdr_len;
    pt_buf_t                *out, **out_last;
    size_t                   out_bytes; /* queued body bytes incl. framing */
    framing_t               *frame_free;
    int64_t                  body_queued; /* response body bytes queued */

    int64_t                  body_rest; /* request Content-Length bytes to come */
    pt_h1_chunked_t         *chunked;   /* request body decoder (r->pool) */
    int64_t                  discarded;
    int64_t                  start_msec;/* connection start (keepalive_time) */
    int64_t                  deadline;  /* lingering / discard end */
    int64_t                  ka_timeout;
    int64_t                  linger_timeout;
    pt_event_t               done_ev;

    unsigned                 state:3;
    unsigned                 stat:2;
    unsigned                 body_done:1;    /* request body fully consumed */
    unsigned                 body_reading:1; /* a handler reads the body */
    unsigned                 body_timedout:1;
    unsigned                 continue_sent:1;
    unsigned                 chunked_out:1;  /* response body chunk-encoded */
    unsigned                 chunk_open:1;   /* a data chunk needs its CRLF */
    unsigned                 last_queued:1;  /* the response body has ended */
    unsigned                 finalized:1;
    unsigned                 output_done:1;
    unsigned                 discarding:1;
    unsigned                 write_error:1;
    unsigned                 blocked:1;      /* waiting for the socket to drain */
    unsigned                 force_close:1;  /* framing broken: no keep-alive */
    unsigned                 done_posted:1;
    unsigned                 nodelay:1;      /* set TCP_NODELAY when idle */
    unsigned                 rate_delayed:1; /* limit_rate: write timer is a pause */
} h1_conn_t;

static void on_read(pt_event_t *ev);
static void on_write(pt_event_t *ev);
static void on_done(pt_event_t *ev);
static void wait_read(h1_conn_t *h);
static void process_head(h1_conn_t *h);
static void close_conn(h1_conn_t *h);
static int  flush(h1_conn_t *h);
static void output_complete(h1_conn_t *h);
static int  discard_read(h1_conn_t *h);
static void linger_read(h1_conn_t *h);

static int     h1_send_header(pt_http_request_t *r);
static int     h1_send_body(pt_http_request_t *r, pt_buf_t *chain);
static size_t  h1_pending(pt_http_request_t *r);
static ssize_t h1_read_body(pt_http_request_t *r, char *buf, size_t size, int *status);
static int     h1_discard_body(pt_http_request_t *r);
static void    h1_finalize(pt_http_request_t *r);
static pt_conn_t *h1_detach(pt_http_request_t *r, pt_buf_t **preread);

const pt_http_proto_t pt_h1_proto = {
    .send_header = h1_send_header,
    .send_body = h1_send_body,
    .pending = h1_pending,
    .read_body = h1_read_body,
    .discard_body = h1_discard_body,
    .finalize = h1_finalize,
    .detach = h1_detach,
};

/* A scratch buffer for bytes that are read only to be dropped. */
static char drop_buf[16384];

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

char *pt_http_format_int(char *p, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u;

    if (v < 0) {
        *p++ = '-';
        u = (uint64_t) 0 - (uint64_t) v;
    } else {
        u = (uint64_t) v;
    }
    do {
        tmp[n++] = (char) ('0' + u % 10);
        u /= 10;
    } while (u);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *format_hex(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

#define CPY(p, lit) (memcpy(p, lit, sizeof(lit) - 1), (p) + sizeof(lit) - 1)

static inline char *cpy(char *p, const char *s, size_t n)
{
    if (n)
        memcpy(p, s, n);
    return p + n;
}

static void stat_set(h1_conn_t *h, unsigned st)
{
    switch (h->stat) {
    case STAT_READING: pt_conn_stats.reading--; break;
    case STAT_WRITING: pt_conn_stats.writing--; break;
    case STAT_WAITING: pt_conn_stats.waiting--; break;
    default: break;
    }
    switch (st) {
    case STAT_READING: pt_conn_stats.reading++; break;
    case STAT_WRITING: pt_conn_stats.writing++; break;
    case STAT_WAITING: pt_conn_stats.waiting++; break;
    default: break;
    }
    h->stat = st;
}

static pt_http_core_loc_conf_t *clcf_of(pt_http_request_t *r)
{
    return pt_http_get_module_loc_conf(r, pt_http_core_module);
}

static pt_http_core_srv_conf_t *cscf_of(pt_http_request_t *r)
{
    return pt_http_get_module_srv_conf(r, pt_http_core_module);
}

/* The connection logs to the error_log of the server (level) that handles
 * it: the default server's until a Host picks another one, then the
 * location's (pt_http_core_find_config), as nginx. */
static void use_error_log(pt_conn_t *c, void **loc_conf)
{
    pt_http_core_loc_conf_t *clcf = loc_conf[pt_http_core_module.index];
    if (clcf->error_log && clcf->error_log->level) {
        c->log.file = clcf->error_log->file;
        c->log.level = clcf->error_log->level;
        c->log.next = clcf->error_log->next;
    }
}

static size_t buffered(const h1_conn_t *h)
{
    return h->buf ? (size_t) (h->buf->last - h->buf->pos) : 0;
}

static size_t pipelined(const h1_conn_t *h)
{
    return buffered(h) + (h->next_buf ? pt_buf_size(h->next_buf) : 0);
}

/* ", client: 1.2.3.4, server: x, request: "GET / HTTP/1.1", host: "x"" */
static size_t log_ctx(pt_log_t *log, char *buf, size_t len)
{
    h1_conn_t *h = log->ctx;
    pt_http_request_t *r = h->r;
    const pt_str_t *server = &h->srv->server_name;
    int n, total = 0;

    if (r && r->srv_conf)
        server = &cscf_of(r)->server_name;
    n = snprintf(buf, len, ", client: %.*s, server: %.*s",
                 (int) h->c->addr_text.len, h->c->addr_text.data ? h->c->addr_text.data : "",
                 (int) server->len, server->data ? server->data : "");
    if (n < 0)
        return 0;
    total = n;
    if (r && r->request_line.len && (size_t) total < len) {
        n = snprintf(buf + total, len - (size_t) total, ", request: \"%.*s\"",
                     (int) r->request_line.len, r->request_line.data);
        if (n > 0)
            total += n;
    }
    if (r && r->headers_in.host && (size_t) total < len) {
        n = snprintf(buf + total, len - (size_t) total, ", host: \"%.*s\"",
                     (int) r->headers_in.host->value.len, r->headers_in.host->value.data);
        if (n > 0)
            total += n;
    }
    if ((size_t) total >= len)
        total = len ? (int) len - 1 : 0;
    return (size_t) total;
}

/* ------------------------------------------------------------------------ */
/* Connection start and end                                                  */

void pt_http_init_connection(pt_conn_t *c)
{
    pt_http_addr_conf_t *addr = pt_http_addr_conf_get(c);
    /* proxy_protocol hook: the PROXY header comes first */
    if (pt_proxy_protocol_start(c, addr, pt_http_init_connection))
        return;
    h1_conn_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        pt_log_error(PT_LOG_ALERT, &c->log, errno, "calloc() failed");
        pt_conn_close(c);
        return;
    }
    h->c = c;
    h->addr = addr;
    h->srv = h->addr->default_server;
    h->start_msec = pt_current_msec;
    h->out_last = &h->out;
    h->done_ev.handler = on_done;
    h->done_ev.data = h;
    h->done_ev.timer_index = SIZE_MAX;
    h->state = ST_WAIT;

    c->data = h;
    c->io.read.handler = on_read;
    c->io.write.handler = on_write;
    c->log.ctx_handler = log_ctx;
    c->log.ctx = h;
    use_error_log(c, h->srv->ctx->loc_conf);

    stat_set(h, STAT_WAITING);
    pt_conn_reusable(c, 1);
    pt_timer_add(&c->io.read, h->srv->client_header_timeout);

    if (c->io.read.ready)
        wait_read(h);
}

static void release_buf(h1_conn_t *h, pt_buf_t *b)
{
    if (b->tag == &framing_tag) {
        framing_t *f = (framing_t *) b;
        f->b.next = (pt_buf_t *) h->frame_free;
        h->frame_free = f;
    } else {
        pt_buf_put(b);
    }
}

static void drop_output(h1_conn_t *h)
{
    pt_buf_t *b = h->out, *next;
    for (; b; b = next) {
        next = b->next;
        release_buf(h, b);
    }
    h->out = NULL;
    h->out_last = &h->out;
    h->out_bytes = 0;
    h->hdr_len = 0;
}

static void free_request(h1_conn_t *h)
{
    pt_http_request_t *r = h->r;
    if (r == NULL)
        return;
    drop_output(h);
    h->frame_free = NULL;       /* pool memory */
    h->chunked = NULL;
    h->r = NULL;
    pt_pool_put(r->pool, (size_t) h->srv->request_pool_size);
}

static void close_conn(h1_conn_t *h)
{
    pt_conn_t *c = h->c;

    free_request(h);
    if (h->buf) {
        pt_buf_put(h->buf);
        h->buf = NULL;
    }
    if (h->next_buf) {
        pt_buf_put(h->next_buf);
        h->next_buf = NULL;
    }
    if (h->done_posted)
        pt_event_unpost(&h->done_ev);
    stat_set(h, STAT_NONE);
    c->data = NULL;
    c->log.ctx_handler = NULL;
    c->log.ctx = NULL;
    pt_conn_close(c);
    free(h);
}

static void post_done(h1_conn_t *h)
{
    if (!h->done_posted) {
        h->done_posted = 1;
        pt_event_post(&h->done_ev);
    }
}

/* Logs what a request that never got to run did, then closes. */
static void abort_request(h1_conn_t *h, int status)
{
    pt_http_request_t *r = h->r;
    if (r) {
        if (r->headers_out.status == 0)
            r->headers_out.status = status;
        pt_http_log_request(r);
    }
    close_conn(h);
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */

/* worker_shutdown_timeout: the connection must go (c->close on an active
 * request). Nothing is freed behind the back of whoever holds the request:
 * its output fails from now on and its own handler finalizes. */
static void force_end(h1_conn_t *h)
{
    pt_http_request_t *r = h->r;

    h->write_error = 1;
    drop_output(h);
    if (h->finalized) {
        r->aborted = 1;
        pt_http_log_request(r);
        post_done(h);
    } else if (r->write_event_handler) {
        r->write_event_handler(r);
    } else if (r->read_event_handler) {
        r->read_event_handler(r);
    } else {
        pt_http_finalize_request(r, PT_ERROR);
    }
}

static void request_read(h1_conn_t *h)
{
    pt_event_t *ev = &h->c->io.read;
    pt_http_request_t *r = h->r;

    if (h->c->close && pt_conn_shutting_down && !h->write_error) {
        force_end(h);
        return;
    }

    if (h->discarding) {
        (void) discard_read(h);
        return;
    }
    if (h->finalized)
        return;
    if (ev->timedout) {
        ev->timedout = 0;
        h->body_timedout = 1;
    }
    if (r->read_event_handler)
        r->read_event_handler(r);
}

static void on_read(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    h1_conn_t *h = c->data;

    if (h == NULL)
        return;
    switch (h->state) {
    case ST_WAIT:
        wait_read(h);
        break;
    case ST_HEAD:
        if (ev->timedout) {
            pt_log_error(PT_LOG_INFO, &c->log, ETIMEDOUT, "client timed out");
            abort_request(h, 408);
            return;
        }
        if (c->close && pt_conn_shutting_down) {
            abort_request(h, 400);
            return;
        }
        process_head(h);
        break;
    case ST_REQUEST:
        request_read(h);
        break;
    case ST_LINGER:
        linger_read(h);
        break;
    default:
        break;
    }
}

static void on_write(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    h1_conn_t *h = c->data;
    pt_http_request_t *r;
    int rc;

    if (h == NULL || h->state != ST_REQUEST)
        return;
    r = h->r;

    if (h->rate_delayed) {           /* limit_rate hook: the pause is over */
        h->rate_delayed = 0;
        ev->timedout = 0;
    }
    if (ev->timedout) {
        /* send_timeout: nothing more can reach the client. A producer still
         * running (a proxy relaying, a file being sent) learns it from its
         * handler (r->aborted; its next send_body fails) and finalizes
         * itself, ending its own side first (an upstream connection is
         * closed, never pooled); only a request without one ends here. */
        ev->timedout = 0;
        pt_log_error(PT_LOG_INFO, &c->log, ETIMEDOUT, "client timed out");
        h->write_error = 1;
        drop_output(h);
        if (h->finalized) {
            r->aborted = 1;
            pt_http_log_request(r);
            post_done(h);
            return;
        }
        r->aborted = 1;
        if (r->headers_out.status == 0)
            r->headers_out.status = 408;
        if (r->write_event_handler)
            r->write_event_handler(r);
        else if (r->read_event_handler)
            r->read_event_handler(r);
        else
            pt_http_finalize_request(r, 408);
        return;
    }

    h->blocked = 0;
    rc = flush(h);
    if (rc == PT_AGAIN)
        return;
    if (rc == PT_ERROR) {
        drop_output(h);
        if (h->finalized) {
            r->aborted = 1;
            pt_http_log_request(r);
            post_done(h);
        } else if (r->write_event_handler) {
            r->write_event_handler(r);   /* its next output fails: it finalizes */
        } else {
            pt_http_finalize_request(r, PT_ERROR);
        }
        return;
    }
    if (h->finalized) {
        if (!h->output_done)
            output_complete(h);
    } else if (r->write_event_handler) {
        r->write_event_handler(r);
    }
}

/* ------------------------------------------------------------------------ */
/* Reading the request head                                                  */

static pt_http_request_t *start_request(h1_conn_t *h)
{
    pt_conn_t *c = h->c;
    pt_http_core_srv_conf_t *srv = h->srv;
    pt_pool_t *pool = pt_pool_get((size_t) srv->request_pool_size);
    pt_http_request_t *r;
    extern const size_t pt_modules_n;

    if (pool == NULL)
        return NULL;
    r = pt_pcalloc(pool, sizeof(*r));
    if (r == NULL)
        goto fail;
    r->ctx = pt_pcalloc(pool, sizeof(void *) * pt_modules_n);
    if (r->ctx == NULL || pt_array_init(&r->headers_out.list, pool, 4, sizeof(pt_http_header_t)) != 0)
        goto fail;
    r->pool = pool;
    r->connection = c;
    r->proto = &pt_h1_proto;
    r->proto_data = h;
    r->main_conf = srv->ctx->main_conf;
    r->srv_conf = srv->ctx->srv_conf;
    r->loc_conf = srv->ctx->loc_conf;
    r->headers_in.content_length_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->uri_changes = 11;          /* 10 internal redirects / uri changes */
    r->start_msec = pt_time_msec;

    c->requests++;
    pt_conn_stats.requests++;
    if (c->requests > 1)
        use_error_log(c, srv->ctx->loc_conf);

    h->r = r;
    h->scanned = 0;
    h->hdrs = NULL;
    h->hdrs_cap = 0;
    h->hdr = NULL;
    h->hdr_len = 0;
    h->out = NULL;
    h->out_last = &h->out;
    h->out_bytes = 0;
    h->frame_free = NULL;
    h->body_queued = 0;
    h->body_rest = 0;
    h->chunked = NULL;
    h->discarded = 0;
    if (h->next_buf) {              /* cannot happen: on_done moved it */
        pt_buf_put(h->next_buf);
        h->next_buf = NULL;
    }
    h->body_done = 1;
    h->body_reading = 0;
    h->body_timedout = 0;
    h->continue_sent = 0;
    h->chunked_out = 0;
    h->chunk_open = 0;
    h->last_queued = 0;
    h->finalized = 0;
    h->output_done = 0;
    h->discarding = 0;
    h->write_error = 0;
    h->blocked = 0;
    h->force_close = 0;
    return r;

fail:
    pt_pool_put(pool, (size_t) srv->request_pool_size);
    return NULL;
}

/* WAIT: a new or idle connection became readable (or timed out). */
static void wait_read(h1_conn_t *h)
{
    pt_conn_t *c = h->c;
    pt_event_t *rev = &c->io.read;
    int keepalive = c->requests > 0;
    ssize_t n;

    if (rev->timedout) {
        if (!keepalive)
            pt_log_error(PT_LOG_INFO, &c->log, ETIMEDOUT, "client timed out");
        close_conn(h);
        return;
    }
    if (c->close && !pt_conn_shutting_down) {
        close_conn(h);              /* reclaimed: the record is needed now */
        return;
    }

    if (h->buf == NULL) {
        h->buf = pt_buf_get((size_t) h->srv->client_header_buffer_size);
        if (h->buf == NULL) {
            close_conn(h);
            return;
        }
    }
    n = c->recv(c, h->buf->last, (size_t) (h->buf->end - h->buf->last));
    if (n == PT_IO_AGAIN) {
        /* nothing after all: an idle connection holds no buffer */
        pt_buf_put(h->buf);
        h->buf = NULL;
        if (c->close)
            close_conn(h);          /* graceful shutdown: nothing in flight */
        return;
    }
    if (n <= 0) {
        if (n == 0 && !keepalive)
            pt_log_error(PT_LOG_INFO, &c->log, 0,
                         "client closed connection while waiting for request");
        close_conn(h);
        return;
    }
    h->buf->last += n;

    if (start_request(h) == NULL) {
        close_conn(h);
        return;
    }
    pt_conn_reusable(c, 0);
    h->state = ST_HEAD;
    stat_set(h, STAT_READING);
    /* a new connection keeps its timer from accept (the whole head must
     * come within client_header_timeout of it); after keep-alive the header
     * timer is armed only if the head does not come in one read */
    if (keepalive && rev->timer_set)
        pt_timer_del(rev);
    process_head(h);
}

static size_t count_lf(const char *p, size_t len)
{
    size_t n = 0;
    const char *end = p + len;
    while (p < end && (p = memchr(p, '\n', (size_t) (end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

static void head_error(h1_conn_t *h, pt_h1_request_t *preq, int status);
static void process_request(h1_conn_t *h, pt_h1_request_t *preq, size_t head_len);

/* Grows the head buffer toward large_client_header_buffers (num x size).
 * Returns 0, or -1 when it is at the limit. */
static int grow_head(h1_conn_t *h, size_t limit)
{
    pt_http_core_srv_conf_t *srv = h->srv;
    size_t large = (size_t) srv->large_client_header_buffers_size;
    size_t used = (size_t) (h->buf->last - h->buf->pos);
    size_t want = (limit / large + 1) * large;
    size_t max = (size_t) srv->large_client_header_buffers_num * large;

    if (want > max)
        want = max;
    if (want <= limit)
        return -1;
    pt_buf_t *nb = pt_buf_get(want);
    if (nb == NULL)
        return -1;
    memcpy(nb->last, h->buf->pos, used);
    nb->last += used;
    if (h->r->request_line.len)   /* kept for the log context: rebase it */
        h->r->request_line.data = nb->pos + (h->r->request_line.data - h->buf->pos);
    pt_buf_put(h->buf);
    h->buf = nb;
    return 0;
}

/* HEAD: parse what we have, read more as needed. */
static void process_head(h1_conn_t *h)
{
    pt_conn_t *c = h->c;
    pt_http_core_srv_conf_t *srv = h->srv;
    size_t max_total = (size_t) srv->large_client_header_buffers_num
                       * (size_t) srv->large_client_header_buffers_size;
    pt_h1_header_t stack_headers[STACK_HEADERS];
    pt_h1_request_t preq;

    preq.request_line_len = 0;
    preq.method.len = 0;
    preq.too_large = 0;

    for (;;) {
        pt_buf_t *b = h->buf;
        size_t len = (size_t) (b->last - b->pos);
        size_t cap = (size_t) (b->end - b->pos);
        size_t limit = cap < max_total ? cap : max_total;
        int full = len >= limit;

        /* a head can only complete with a new LF: skip the parse otherwise
         * (a slow client costs a memchr per read, not a parse) */
        if (full || memchr(b->pos + h->scanned, '\n', len - h->scanned) != NULL) {
            size_t nlf = count_lf(b->pos, len);
            int status = 400;
            int rc;

            preq.headers = stack_headers;
            preq.nheaders = STACK_HEADERS;
            if (nlf > STACK_HEADERS) {
                /* one array per request, doubled as needed: a client that
                 * trickles many small headers cannot make every re-parse
                 * allocate again */
                if (nlf > h->hdrs_cap) {
                    size_t ncap = h->hdrs_cap ? h->hdrs_cap * 2 : 4 * STACK_HEADERS;
                    if (ncap < nlf)
                        ncap = nlf;
                    h->hdrs = pt_palloc(h->r->pool, ncap * sizeof(pt_h1_header_t));
                    if (h->hdrs == NULL) {
                        abort_request(h, 500);
                        return;
                    }
                    h->hdrs_cap = ncap;
                }
                preq.headers = h->hdrs;
                preq.nheaders = h->hdrs_cap;
            }
            preq.request_line_len = 0;
            preq.method.len = 0;
            rc = pt_h1_parse_request(b->pos, len, &preq,
                                     (size_t) srv->large_client_header_buffers_size,
                                     srv->underscores_in_headers, &status);
            if (rc > 0) {
                process_request(h, &preq, (size_t) rc);
                return;
            }
            if (rc == PT_H1_ERROR) {
                head_error(h, &preq, preq.too_large ? 494 : status);
                return;
            }
            if (preq.request_line_len && preq.method.len && h->r->request_line.len == 0) {
                h->r->request_line.data = preq.method.data;
                h->r->request_line.len = preq.request_line_len;
            }
        }
        h->scanned = len;

        if (full) {
            if (grow_head(h, limit) != 0) {
                head_error(h, &preq, preq.request_line_len ? 494 : 414);
                return;
            }
            continue;
        }

        ssize_t n = c->recv(c, b->last, limit - len);
        if (n == PT_IO_AGAIN) {
            if (!c->io.read.timer_set)
                pt_timer_add(&c->io.read, srv->client_header_timeout);
            return;
        }
        if (n <= 0) {
            if (n == 0)
                pt_log_error(PT_LOG_INFO, &c->log, 0, "client prematurely closed connection "
                             "while reading client request headers");
            abort_request(h, 400);
            return;
        }
        b->last += n;
    }
}

static void enter_request(h1_conn_t *h)
{
    h->state = ST_REQUEST;
    stat_set(h, STAT_WRITING);
    if (h->c->io.read.timer_set)
        pt_timer_del(&h->c->io.read);
}

static void head_error(h1_conn_t *h, pt_h1_request_t *preq, int status)
{
    pt_http_request_t *r = h->r;
    pt_conn_t *c = h->c;

    if (preq->request_line_len && preq->method.len) {
        r->request_line.data = preq->method.data;
        r->request_line.len = preq->request_line_len;
        r->method_name = preq->method;
        r->method = pt_h1_method_id(&preq->method);
        r->http_version = preq->version;
        r->http_protocol = preq->protocol;
        r->unparsed_uri = preq->target;
    }
    switch (status) {
    case 414:
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent too long URI");
        break;
    case 494:
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent too large request");
        break;
    case 505:
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent unsupported HTTP version");
        break;
    default:
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid request");
        break;
    }
    /* the rest of the input cannot be trusted: answer and close */
    r->keepalive = 0;
    h->body_done = 0;
    h->buf->pos = h->buf->last;
    enter_request(h);
    pt_http_finalize_request(r, status);
}

/* ------------------------------------------------------------------------ */
/* Building the request from the parsed head                                 */

static int token_in_list(const pt_str_t *v, const char *tok, size_t tlen)
{
    const char *p = v->data, *end = v->data + v->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t) (e - s) == tlen && pt_strncasecmp(s, tok, tlen) == 0)
            return 1;
    }
    return 0;
}

#define NAME_IS(h, lit) ((h)->name.len == sizeof(lit) - 1 \
                         && pt_strncasecmp((h)->name.data, lit, sizeof(lit) - 1) == 0)

static int duplicate(pt_http_request_t *r, const pt_http_header_t *hh)
{
    pt_log_error(PT_LOG_INFO, &r->connection->log, 0,
                 "client sent duplicate header line: \"%.*s: %.*s\"",
                 (int) hh->name.len, hh->name.data, (int) hh->value.len, hh->value.data);
    return 400;
}

/* Fills headers_in from the parsed headers, validates framing and Host and
 * selects the server. Returns 0 or a status. */
static int process_headers(h1_conn_t *h, pt_h1_request_t *preq)
{
    pt_http_request_t *r = h->r;
    pt_http_headers_in_t *hi = &r->headers_in;
    pt_conn_t *c = h->c;
    size_t n = preq->nheaders;

    if (pt_array_init(&hi->list, r->pool, n ? n : 1, sizeof(pt_http_header_t)) != 0)
        return 500;

    for (size_t i = 0; i < n; i++) {
        const pt_h1_header_t *ph = &preq->headers[i];
        pt_http_header_t *hh;

        if (ph->invalid_name) {
            if (h->srv->ignore_invalid_headers) {
                pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid header line: \"%.*s\"",
                             (int) ph->name.len, ph->name.data);
                continue;
            }
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid header line: \"%.*s\"",
                         (int) ph->name.len, ph->name.data);
            return 400;
        }
        hh = pt_array_push(&hi->list);
        hh->name = ph->name;
        hh->value = ph->value;
        hh->hash = pt_hash_lower(ph->name.data, ph->name.len);

        switch (ph->name.len) {
        case 4:
            if (NAME_IS(hh, "host")) {
                if (hi->host)
                    return duplicate(r, hh);
                hi->host = hh;
            }
            break;
        case 6:
            if (NAME_IS(hh, "expect")) {
                if (hi->expect)
                    return duplicate(r, hh);
                hi->expect = hh;
            }
            break;
        case 7:
            if (NAME_IS(hh, "upgrade")) {
                if (!hi->upgrade)
                    hi->upgrade = hh;
            } else if (NAME_IS(hh, "referer")) {
                if (!hi->referer)
                    hi->referer = hh;
            }
            break;
        case 10:
            if (NAME_IS(hh, "connection")) {
                if (!hi->connection)
                    hi->connection = hh;
                if (token_in_list(&hh->value, "close", 5))
                    hi->connection_close = 1;
                if (token_in_list(&hh->value, "keep-alive", 10))
                    hi->connection_keep_alive = 1;
                if (token_in_list(&hh->value, "upgrade", 7))
                    hi->connection_upgrade = 1;
            } else if (NAME_IS(hh, "user-agent")) {
                if (!hi->user_agent)
                    hi->user_agent = hh;
            }
            break;
        case 13:
            if (NAME_IS(hh, "authorization")) {
                if (hi->authorization)
                    return duplicate(r, hh);
                hi->authorization = hh;
            }
            break;
        case 14:
            if (NAME_IS(hh, "content-length")) {
                if (hi->content_length) {
                    if (!pt_str_eq(&hi->content_length->value, &hh->value))
                        return duplicate(r, hh);
                    hh->deleted = 1;   /* one copy is enough */
                } else {
                    hi->content_length = hh;
                }
            }
            break;
        case 15:
            if (NAME_IS(hh, "x-forwarded-for")) {
                if (!hi->x_forwarded_for)
                    hi->x_forwarded_for = hh;
            } else if (NAME_IS(hh, "accept-encoding")) {
                if (!hi->accept_encoding)
                    hi->accept_encoding = hh;
            }
            break;
        case 17:
            if (NAME_IS(hh, "transfer-encoding")) {
                if (hi->transfer_encoding)
                    return duplicate(r, hh);
                hi->transfer_encoding = hh;
            } else if (NAME_IS(hh, "if-modified-since")) {
                if (hi->if_modified_since)
                    return duplicate(r, hh);
                hi->if_modified_since = hh;
            }
            break;
        default:
            break;
        }
    }

    /* Host: an absolute-form target's authority wins (RFC 9112 §3.2.2) */
    if (r->host_in_target.len) {
        hi->server = r->host_in_target;
        if (pt_http_validate_host(&hi->server, r->pool) != 0) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid host in request line");
            return 400;
        }
    } else if (hi->host) {
        hi->server = hi->host->value;
        if (pt_http_validate_host(&hi->server, r->pool) != 0) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid host header");
            return 400;
        }
    } else if (r->http_version >= 11) {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent HTTP/1.1 request without \"Host\" header");
        return 400;
    }

    /* the server for this Host: its error pages answer what follows */
    pt_http_core_srv_conf_t *cscf = pt_http_find_server(h->addr, &hi->server, r);
    r->srv_conf = cscf->ctx->srv_conf;
    r->loc_conf = cscf->ctx->loc_conf;
    if (cscf != h->srv)
        use_error_log(c, r->loc_conf);

    if (hi->content_length) {
        hi->content_length_n = pt_atoi64(hi->content_length->value.data,
                                         hi->content_length->value.len);
        if (hi->content_length_n < 0) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid \"Content-Length\" header");
            return 400;
        }
    }

    if (hi->transfer_encoding) {
        const pt_str_t *te = &hi->transfer_encoding->value;
        if (r->http_version < 11) {
            pt_log_error(PT_LOG_INFO, &c->log, 0,
                         "client sent HTTP/1.0 request with \"Transfer-Encoding\" header");
            return 400;
        }
        if (hi->content_length) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent \"Content-Length\" and "
                         "\"Transfer-Encoding\" headers at the same time");
            return 400;
        }
        int rc = pt_http_check_transfer_encoding(te);
        if (rc == 0) {
            hi->chunked = 1;
        } else if (rc == 400) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid \"Transfer-Encoding\": \"%.*s\"",
                         (int) te->len, te->data);
            return 400;
        } else {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent unknown \"Transfer-Encoding\": \"%.*s\"",
                         (int) te->len, te->data);
            return 501;
        }
    }

    if (hi->expect && r->http_version >= 11 && hi->expect->value.len == 12
        && pt_strncasecmp(hi->expect->value.data, "100-continue", 12) == 0)
        hi->expect_continue = 1;

    if (r->http_version >= 11)
        r->keepalive = !hi->connection_close;
    else
        r->keepalive = hi->connection_keep_alive && !hi->connection_close;

    if (r->method == PT_HTTP_CONNECT) {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent CONNECT method");
        return 405;
    }
    if (r->method == PT_HTTP_TRACE) {      /* never echoed back (nginx: 405) */
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent TRACE method");
        return 405;
    }
    return 0;
}

static void process_request(h1_conn_t *h, pt_h1_request_t *preq, size_t head_len)
{
    pt_http_request_t *r = h->r;
    pt_conn_t *c = h->c;
    int rc;

    r->request_line.data = preq->method.data;
    r->request_line.len = preq->request_line_len;
    r->method_name = preq->method;
    r->method = pt_h1_method_id(&preq->method);
    r->http_version = preq->version;
    r->http_protocol = preq->protocol;
    r->unparsed_uri = preq->target;
    r->schema = preq->schema;
    r->host_in_target = preq->host;
    r->request_length = (int64_t) head_len;
    h->buf->pos += head_len;

    enter_request(h);

    /* the path: "OPTIONS *" and CONNECT have none we can route */
    if (preq->path.len == 0 || preq->path.data[0] != '/') {
        rc = r->method == PT_HTTP_CONNECT ? 405 : 400;
        if (rc == 400)
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid request");
        goto fail;
    }
    char *out = pt_pnalloc(r->pool, preq->path.len + 1);
    if (out == NULL) {
        rc = 500;
        goto fail;
    }
    if (pt_h1_normalize_uri(&preq->path, out, &r->uri, &r->args, &r->exten,
                            h->srv->merge_slashes) != 0) {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid request");
        rc = 400;
        goto fail;
    }

    rc = process_headers(h, preq);
    if (rc != 0)
        goto fail;

    if (r->headers_in.chunked) {
        h->chunked = pt_pcalloc(r->pool, sizeof(pt_h1_chunked_t));
        if (h->chunked == NULL) {
            rc = 500;
            goto fail;
        }
        h->body_done = 0;
    } else if (r->headers_in.content_length_n > 0) {
        h->body_rest = r->headers_in.content_length_n;
        h->body_done = 0;
    }

    r->phase_handler = 0;
    pt_http_core_run_phases(r);
    return;

fail:
    /* framing is unknown or ambiguous: answer and close */
    r->keepalive = 0;
    h->body_done = 0;
    pt_http_finalize_request(r, rc);
}

/* ------------------------------------------------------------------------ */
/* Response head                                                             */

static const char *local_host_text(pt_conn_t *c, char *buf, size_t size, size_t *len)
{
    *len = 0;
    if (pt_conn_local_addr(c) != 0)
        return buf;
    if (c->local_sockaddr.sa.sa_family == AF_INET6) {
        /* an IPv6 literal in a URL goes in brackets */
        size_t n = pt_sockaddr_text(&c->local_sockaddr.sa, c->local_socklen, buf + 1, size - 2, 0);
        if (n == 0 || buf[1] == '[')
            return buf + 1;
        buf[0] = '[';
        buf[n + 1] = ']';
        *len = n + 2;
        return buf;
    }
    *len = pt_sockaddr_text(&c->local_sockaddr.sa, c->local_socklen, buf, size, 0);
    return buf;
}

static int local_port(pt_conn_t *c)
{
    if (pt_conn_local_addr(c) != 0)
        return 0;
    if (c->local_sockaddr.sa.sa_family == AF_INET)
        return ntohs(c->local_sockaddr.sin.sin_port);
    if (c->local_sockaddr.sa.sa_family == AF_INET6)
        return ntohs(c->local_sockaddr.sin6.sin6_port);
    return 0;
}

/* The standalone headers of headers_out (location, server, date) are written
 * from their pointers; a module may also have pushed the same header into
 * the list (nginx style), so list entries of those names are skipped then. */
static int skip_listed(const pt_http_headers_out_t *ho, const pt_http_header_t *hh)
{
    switch (hh->name.len) {
    case 8:
        return ho->location && pt_strncasecmp(hh->name.data, "location", 8) == 0;
    case 6:
        return ho->server && pt_strncasecmp(hh->name.data, "server", 6) == 0;
    case 4:
        return ho->date && pt_strncasecmp(hh->name.data, "date", 4) == 0;
    default:
        return 0;
    }
}

static int h1_send_header(pt_http_request_t *r)
{
    h1_conn_t *h = r->proto_data;
    pt_conn_t *c = r->connection;
    pt_http_core_loc_conf_t *clcf = clcf_of(r);
    pt_http_headers_out_t *ho = &r->headers_out;
    int status = ho->status;
    pt_str_t sl, loc_prefix = pt_null_string, server, date;
    char slbuf[4], hostbuf[128], prefixbuf[320];
    size_t len;
    int ka;

    if (r->method == PT_HTTP_HEAD)
        r->header_only = 1;
    if (status < 200 || status == 204 || status == 304) {
        r->header_only = 1;
        ho->content_length_n = -1;
        if (status == 204) {
            ho->content_type.len = 0;
            ho->last_modified_time = -1;
        }
    }
    if (ho->last_modified_time != -1 && status != 200 && status != 206 && status != 304)
        ho->last_modified_time = -1;

    /* keep-alive */
    ka = r->keepalive && !c->close && !pt_conn_shutting_down && !h->force_close;
    if (ka) {
        if (clcf->keepalive_timeout == 0
            || (clcf->keepalive_requests > 0 && (int64_t) c->requests >= clcf->keepalive_requests)
            || pt_current_msec - h->start_msec > clcf->keepalive_time)
            ka = 0;
    }

    /* body framing */
    h->chunked_out = 0;
    if (status == 101) {
        ka = 0;
    } else if (!r->header_only && ho->content_length_n < 0) {
        if (r->http_version >= 11 && clcf->chunked_transfer_encoding)
            h->chunked_out = 1;
        else
            ka = 0;                       /* the end of the body is the close */
    }

    /* an unread request body must be discardable for keep-alive */
    if (ka && !h->body_done && !h->body_reading) {
        if (r->headers_in.expect_continue && !h->continue_sent)
            ka = 0;
        else if (h->chunked == NULL && h->body_rest - (int64_t) buffered(h) > DISCARD_MAX)
            ka = 0;
    }
    r->keepalive = ka;

    /* status line */
    if (ho->status_line.len) {
        sl = ho->status_line;
    } else {
        const pt_str_t *t = pt_http_status_line(status);
        if (t) {
            sl = *t;
        } else {
            int s = status < 0 ? 0 : status % 1000;
            slbuf[0] = (char) ('0' + s / 100);
            slbuf[1] = (char) ('0' + s / 10 % 10);
            slbuf[2] = (char) ('0' + s % 10);
            slbuf[3] = ' ';
            sl.data = slbuf;
            sl.len = 4;
        }
    }

    if (ho->server) {
        server = ho->server->value;
    } else if (clcf->server_tokens == PT_HTTP_SERVER_TOKENS_OFF) {
        pt_str_set(&server, "portico");
    } else {
        pt_str_set(&server, "portico/" PT_VERSION);
    }
    if (ho->date) {
        date = ho->date->value;
    } else {
        date = pt_cached_http_time;
    }

    /* relative redirects become absolute (absolute_redirect on) */
    if (ho->location && ho->location->value.len && ho->location->value.data[0] == '/'
        && clcf->absolute_redirect) {
        pt_http_core_srv_conf_t *cscf = cscf_of(r);
        pt_str_t host;
        char *p = prefixbuf;
        if (clcf->server_name_in_redirect && cscf->server_name.len) {
            host = cscf->server_name;
        } else if (r->headers_in.server.len) {
            host = r->headers_in.server;
        } else {                /* no Host: the local address (nginx) */
            host.data = (char *) local_host_text(c, hostbuf, sizeof(hostbuf), &host.len);
        }
        if (host.len > 256)
            host.len = 256;
        if (c->ssl)
            p = CPY(p, "https://");
        else
            p = CPY(p, "http://");
        p = cpy(p, host.data, host.len);
        if (clcf->port_in_redirect) {
            int port = local_port(c);
            if (port && port != (c->ssl ? 443 : 80)) {
                *p++ = ':';
                p = pt_http_format_int(p, port);
            }
        }
        loc_prefix.data = prefixbuf;
        loc_prefix.len = (size_t) (p - prefixbuf);
    }

    /* sizes */
    len = sizeof("HTTP/1.1 ") - 1 + sl.len + 2
        + sizeof("Server: ") - 1 + server.len + 2
        + sizeof("Date: ") - 1 + date.len + 2
        + 2;
    if (ho->content_type.len)
        len += sizeof("Content-Type: ") - 1 + ho->content_type.len + 2;
    if (ho->content_length_n >= 0)
        len += sizeof("Content-Length: ") - 1 + 20 + 2;
    if (ho->last_modified_time != -1)
        len += sizeof("Last-Modified: ") - 1 + 30 + 2;
    if (ho->location)
        len += sizeof("Location: ") - 1 + loc_prefix.len + ho->location->value.len + 2;
    if (h->chunked_out)
        len += sizeof("Transfer-Encoding: chunked\r\n") - 1;
    len += sizeof("Connection: keep-alive\r\n") - 1;
    if (ka && clcf->keepalive_header > 0)
        len += sizeof("Keep-Alive: timeout=") - 1 + 20 + 2;

    const pt_http_header_t *hl = ho->list.elts;
    unsigned skip = ho->location || ho->server || ho->date;
    for (size_t i = 0; i < ho->list.nelts; i++) {
        if (!hl[i].deleted)
            len += hl[i].name.len + 2 + hl[i].value.len + 2;
    }

    char *start = pt_pnalloc(r->pool, len), *p = start;
    if (start == NULL)
        return PT_ERROR;

    p = CPY(p, "HTTP/1.1 ");
    p = cpy(p, sl.data, sl.len);
    p = CPY(p, "\r\nServer: ");
    p = cpy(p, server.data, server.len);
    p = CPY(p, "\r\nDate: ");
    p = cpy(p, date.data, date.len);
    p = CPY(p, "\r\n");
    if (ho->content_type.len) {
        p = CPY(p, "Content-Type: ");
        p = cpy(p, ho->content_type.data, ho->content_type.len);
        p = CPY(p, "\r\n");
    }
    if (ho->content_length_n >= 0) {
        p = CPY(p, "Content-Length: ");
        p = pt_http_format_int(p, ho->content_length_n);
        p = CPY(p, "\r\n");
    }
    if (ho->last_modified_time != -1) {
        p = CPY(p, "Last-Modified: ");
        p += pt_http_time(p, ho->last_modified_time);
        p = CPY(p, "\r\n");
    }
    if (ho->location) {
        p = CPY(p, "Location: ");
        p = cpy(p, loc_prefix.data, loc_prefix.len);
        p = cpy(p, ho->location->value.data, ho->location->value.len);
        p = CPY(p, "\r\n");
    }
    if (h->chunked_out)
        p = CPY(p, "Transfer-Encoding: chunked\r\n");
    if (status == 101) {
        p = CPY(p, "Connection: upgrade\r\n");
    } else if (ka) {
        p = CPY(p, "Connection: keep-alive\r\n");
        if (clcf->keepalive_header > 0) {
            p = CPY(p, "Keep-Alive: timeout=");
            p = pt_http_format_int(p, clcf->keepalive_header);
            p = CPY(p, "\r\n");
        }
    } else {
        p = CPY(p, "Connection: close\r\n");
    }
    for (size_t i = 0; i < ho->list.nelts; i++) {
        if (hl[i].deleted || (skip && skip_listed(ho, &hl[i])))
            continue;
        p = cpy(p, hl[i].name.data, hl[i].name.len);
        *p++ = ':';
        *p++ = ' ';
        p = cpy(p, hl[i].value.data, hl[i].value.len);
        *p++ = '\r';
        *p++ = '\n';
    }
    *p++ = '\r';
    *p++ = '\n';

    h->hdr = start;
    h->hdr_len = (size_t) (p - start);
    r->header_size = (int64_t) h->hdr_len;
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* Response body                                                             */

static pt_buf_t *framing(h1_conn_t *h, int crlf, int64_t size, int last)
{
    framing_t *f = h->frame_free;
    char *p;

    if (f) {
        h->frame_free = (framing_t *) f->b.next;
    } else {
        f = pt_palloc(h->r->pool, sizeof(*f));
        if (f == NULL)
            return NULL;
    }
    memset(&f->b, 0, sizeof(f->b));
    p = f->text;
    if (crlf) {
        *p++ = '\r';
        *p++ = '\n';
    }
    if (last) {
        p = CPY(p, "0\r\n\r\n");
    } else {
        p = format_hex(p, (uint64_t) size);
        *p++ = '\r';
        *p++ = '\n';
    }
    f->b.start = f->b.pos = f->text;
    f->b.last = p;
    f->b.end = f->text + sizeof(f->text);
    f->b.tag = &framing_tag;
    f->b.ref = 1;
    return &f->b;
}

static void enqueue(h1_conn_t *h, pt_buf_t *b)
{
    b->next = NULL;
    *h->out_last = b;
    h->out_last = &b->next;
    h->out_bytes += pt_buf_size(b);
}

static int h1_send_body(pt_http_request_t *r, pt_buf_t *chain)
{
    h1_conn_t *h = r->proto_data;
    pt_buf_t *data = NULL, **data_last = &data, *b, *next;
    int64_t total = 0, limit;
    int last = 0;

    if (h->write_error || r->aborted || h->state != ST_REQUEST) {
        pt_buf_put_chain(chain);
        return PT_ERROR;
    }
    if (h->last_queued) {
        pt_buf_put_chain(chain);
        return h->blocked ? PT_AGAIN : PT_OK;
    }

    limit = r->headers_out.content_length_n;
    for (b = chain; b; b = next) {
        size_t sz = pt_buf_size(b);
        next = b->next;
        b->next = NULL;
        if (b->last_buf)
            last = 1;
        if (r->header_only || sz == 0) {
            pt_buf_put(b);
            continue;
        }
        if (limit >= 0 && h->body_queued + total + (int64_t) sz > limit) {
            /* never send more than Content-Length said: the excess would be
             * read as the next response */
            int64_t keep = limit - h->body_queued - total;
            if (!h->force_close)
                pt_log_error(PT_LOG_ALERT, &r->connection->log, 0,
                             "response body is longer than its Content-Length");
            h->force_close = 1;
            if (keep <= 0) {
                pt_buf_put(b);
                continue;
            }
            b->last = b->pos + keep;
            sz = (size_t) keep;
        }
        *data_last = b;
        data_last = &b->next;
        total += (int64_t) sz;
    }

    if (h->chunked_out && !r->header_only) {
        if (total) {
            pt_buf_t *f = framing(h, h->chunk_open, total, 0);
            if (f == NULL)
                goto nomem;
            enqueue(h, f);
            h->chunk_open = 1;
        }
        for (b = data; b; b = next) {
            next = b->next;
            enqueue(h, b);
        }
        data = NULL;
        if (last) {
            pt_buf_t *f = framing(h, h->chunk_open, 0, 1);
            if (f == NULL)
                goto nomem;
            enqueue(h, f);
            h->chunk_open = 0;
        }
    } else {
        for (b = data; b; b = next) {
            next = b->next;
            enqueue(h, b);
        }
        data = NULL;
    }
    h->body_queued += total;
    if (last) {
        h->last_queued = 1;
        if (limit >= 0 && h->body_queued < limit && !r->header_only)
            h->force_close = 1;   /* short body: the client must see a close */
    }

    if (h->blocked)
        return PT_AGAIN;
    return flush(h);

nomem:
    pt_buf_put_chain(data);
    h->write_error = 1;
    return PT_ERROR;
}

/* Removes n written bytes from the head and the queue. */
static void consume(h1_conn_t *h, size_t n)
{
    if (h->hdr_len) {
        size_t k = n < h->hdr_len ? n : h->hdr_len;
        h->hdr += k;
        h->hdr_len -= k;
        n -= k;
    }
    while (h->out) {
        pt_buf_t *b = h->out;
        size_t sz = pt_buf_size(b);
        if (sz > n) {
            b->pos += n;
            h->out_bytes -= n;
            return;
        }
        n -= sz;
        h->out_bytes -= sz;
        h->out = b->next;
        if (h->out == NULL)
            h->out_last = &h->out;
        release_buf(h, b);
    }
}

/* Writes the head and the queue. PT_OK when everything is out, PT_AGAIN
 * (send_timeout armed), PT_ERROR. */
static int flush(h1_conn_t *h)
{
    pt_conn_t *c = h->c;
    pt_http_request_t *r = h->r;
    struct iovec iov[IOV_N];

    for (;;) {
        int n = 0;
        size_t total = 0;

        if (h->hdr_len) {
            iov[n].iov_base = (void *) h->hdr;
            iov[n].iov_len = h->hdr_len;
            total += h->hdr_len;
            n++;
        }
        for (pt_buf_t *b = h->out; b && n < IOV_N; b = b->next) {
            size_t sz = pt_buf_size(b);
            if (sz == 0)
                continue;
            iov[n].iov_base = b->pos;
            iov[n].iov_len = sz;
            total += sz;
            n++;
        }
        if (n == 0)
            break;
        /* limit_rate hook: write what the request's budget allows */
        if (r && pt_http_limit_rate_active(r) && r->headers_out.status != 101) {
            int64_t delay;
            total = pt_http_limit_rate_iov(r, iov, &n, total, &delay);
            if (total == 0) {
                h->blocked = h->rate_delayed = 1;
                pt_timer_add(&c->io.write, delay);
                return PT_AGAIN;
            }
        }

        ssize_t w = c->writev(c, iov, n);
        if (w == PT_IO_AGAIN)
            goto again;
        if (w < 0) {
            h->write_error = 1;
            return PT_ERROR;
        }
        if (r)
            r->bytes_sent += w;
        consume(h, (size_t) w);
        if ((size_t) w < total && !c->io.write.ready)
            goto again;
    }

    /* only empty buffers may be left */
    consume(h, 0);
    if (c->io.write.timer_set)
        pt_timer_del(&c->io.write);
    h->blocked = 0;
    return PT_OK;

again:
    h->blocked = 1;
    pt_timer_add(&c->io.write, clcf_of(r)->send_timeout);
    return PT_AGAIN;
}

static size_t h1_pending(pt_http_request_t *r)
{
    h1_conn_t *h = r->proto_data;
    return h->hdr_len + h->out_bytes;
}

/* ------------------------------------------------------------------------ */
/* Request body                                                              */

/* Keeps bytes read past the end of a chunked body (the next request). They
 * cannot go into h->buf: the request's strings point into it. */
static int stash(h1_conn_t *h, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    size_t size = (size_t) h->srv->client_header_buffer_size;
    pt_buf_t *nb = pt_buf_get(n > size ? n : size);
    if (nb == NULL)
        return -1;
    memcpy(nb->last, p, n);
    nb->last += n;
    pt_buf_put(h->next_buf);      /* cannot hold anything: the body ended once */
    h->next_buf = nb;
    return 0;
}

/* Reads request body data into dst: the preread bytes first, then the
 * socket. Returns > 0 bytes of body, 0 at its end, PT_AGAIN or PT_ERROR
 * (*status: 400 client closed / bad framing, 413 too large). */
static ssize_t body_input(h1_conn_t *h, char *dst, size_t size, int *status)
{
    pt_http_request_t *r = h->r;
    pt_conn_t *c = h->c;
    ssize_t n;

    if (h->body_done)
        return 0;
    if (size == 0)
        return PT_AGAIN;

    if (h->chunked == NULL) {
        size_t want = (int64_t) size < h->body_rest ? size : (size_t) h->body_rest;
        size_t avail = buffered(h);
        if (avail) {
            n = (ssize_t) (avail < want ? avail : want);
            memcpy(dst, h->buf->pos, (size_t) n);
            h->buf->pos += n;
        } else {
            n = c->recv(c, dst, want);
            if (n == PT_IO_AGAIN)
                return PT_AGAIN;
            if (n <= 0)
                goto closed;
        }
        r->request_length += n;
        h->body_rest -= n;
        if (h->body_rest == 0)
            h->body_done = 1;
        return n;
    }

    /* chunked: decode into dst (in place for socket reads) */
    pt_http_core_loc_conf_t *clcf = clcf_of(r);
    for (;;) {
        const char *in;
        size_t inlen, off = 0, out = 0;
        int from_buf, rc = PT_H1_AGAIN;

        if (buffered(h)) {
            in = h->buf->pos;
            inlen = buffered(h);
            if (inlen > size)
                inlen = size;        /* so a data slice always fits in dst */
            from_buf = 1;
        } else {
            n = c->recv(c, dst, size);
            if (n == PT_IO_AGAIN)
                return PT_AGAIN;
            if (n <= 0)
                goto closed;
            r->request_length += n;
            in = dst;
            inlen = (size_t) n;
            from_buf = 0;
        }

        while (off < inlen) {
            size_t consumed = 0, dlen = 0;
            const char *data = NULL;
            rc = pt_h1_parse_chunked(h->chunked, in + off, inlen - off, &consumed, &data, &dlen);
            if (rc == PT_H1_ERROR) {
                pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid chunked body");
                *status = 400;
                return PT_ERROR;
            }
            if (dlen) {
                memmove(dst + out, data, dlen);
                out += dlen;
            }
            off += consumed;
            if (rc == PT_H1_DONE || rc == PT_H1_AGAIN)
                break;
        }
        if (from_buf) {
            h->buf->pos += off;
            r->request_length += (int64_t) off;
        }

        if (clcf->client_max_body_size > 0 && h->chunked->body_size > clcf->client_max_body_size
            && !h->discarding) {
            pt_log_error(PT_LOG_ERR, &c->log, 0,
                         "client intended to send too large chunked body: %lld bytes",
                         (long long) h->chunked->body_size);
            *status = 413;
            return PT_ERROR;
        }
        if (rc == PT_H1_DONE) {
            h->body_done = 1;
            if (!from_buf && stash(h, in + off, inlen - off) != 0) {
                *status = 500;
                return PT_ERROR;
            }
        }
        if (out > 0)
            return (ssize_t) out;
        if (h->body_done)
            return 0;
    }

closed:
    if (n == 0)
        pt_log_error(PT_LOG_INFO, &c->log, 0,
                     "client prematurely closed connection while reading client request body");
    *status = 400;
    c->io.read.eof = 1;
    return PT_ERROR;
}

static ssize_t h1_read_body(pt_http_request_t *r, char *buf, size_t size, int *status)
{
    h1_conn_t *h = r->proto_data;
    pt_conn_t *c = h->c;
    ssize_t n;

    *status = 0;
    if (h->state != ST_REQUEST || h->finalized) {
        *status = 500;
        return PT_ERROR;
    }
    h->body_reading = 1;

    if (!r->expect_tested) {
        r->expect_tested = 1;
        if (r->headers_in.expect_continue && !h->body_done && buffered(h) == 0) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            ssize_t w = c->send(c, cont, sizeof(cont) - 1);
            if (w != (ssize_t) (sizeof(cont) - 1)) {
                *status = 400;
                h->write_error = 1;
                return PT_ERROR;
            }
            h->continue_sent = 1;
        }
    }

    n = body_input(h, buf, size, status);
    if (n == PT_AGAIN) {
        if (h->body_timedout) {
            pt_log_error(PT_LOG_INFO, &c->log, ETIMEDOUT, "client timed out");
            *status = 408;
            return PT_ERROR;
        }
        pt_timer_add(&c->io.read, clcf_of(r)->client_body_timeout);
        return PT_AGAIN;
    }
    h->body_timedout = 0;
    if (c->io.read.timer_set)
        pt_timer_del(&c->io.read);
    if (n == 0)
        r->body_read = 1;
    if (n == PT_ERROR)
        h->force_close = 1;
    return n;
}

/* Reads and drops what is available of a body nobody reads. Returns PT_OK
 * (done, or continuing from read events), a status (400: malformed body) or
 * PT_ERROR (client gone, timeout, past the bound); on failure the connection
 * will close. */
static int discard_read(h1_conn_t *h)
{
    pt_conn_t *c = h->c;
    pt_http_core_loc_conf_t *clcf = clcf_of(h->r);
    int status = 0, rc = PT_ERROR;

    if (c->io.read.timedout) {
        c->io.read.timedout = 0;
        goto fail;
    }
    for (int i = 0;; i++) {
        if (i == FAIR_READS) {
            pt_event_post(&c->io.read);
            return PT_OK;
        }
        ssize_t n = body_input(h, drop_buf, sizeof(drop_buf), &status);
        if (n == 0)
            break;
        if (n == PT_AGAIN) {
            int64_t left = h->deadline - pt_current_msec;
            if (left <= 0)
                goto fail;
            pt_timer_add(&c->io.read, left < clcf->lingering_timeout ? left : clcf->lingering_timeout);
            return PT_OK;
        }
        if (n < 0) {
            if (status == 400 && !c->io.read.eof)
                rc = 400;
            goto fail;
        }
        h->discarded += n;
        if (h->discarded > DISCARD_MAX)
            goto fail;
    }
    h->discarding = 0;
    if (c->io.read.timer_set)
        pt_timer_del(&c->io.read);
    if (h->finalized && h->output_done)
        post_done(h);
    return PT_OK;

fail:
    h->discarding = 0;
    h->force_close = 1;
    h->r->keepalive = 0;
    if (c->io.read.timer_set)
        pt_timer_del(&c->io.read);
    if (h->finalized && h->output_done)
        post_done(h);
    return rc;
}

/* Whether an unread body can be dropped to keep the connection. */
static int can_discard(h1_conn_t *h)
{
    pt_http_request_t *r = h->r;
    return r->keepalive && !h->force_close
           && !(r->headers_in.expect_continue && !h->continue_sent)
           && (h->chunked || h->body_rest - (int64_t) buffered(h) <= DISCARD_MAX);
}

static int h1_discard_body(pt_http_request_t *r)
{
    h1_conn_t *h = r->proto_data;

    if (h->state != ST_REQUEST || h->body_done || h->discarding || h->body_reading)
        return PT_OK;
    r->discard_body = 1;
    if (!can_discard(h)) {
        r->keepalive = 0;
        return PT_OK;
    }
    h->discarding = 1;
    h->deadline = pt_current_msec + clcf_of(r)->lingering_time;
    return discard_read(h);
}

/* ------------------------------------------------------------------------ */
/* End of a request                                                          */

static void h1_finalize(pt_http_request_t *r)
{
    h1_conn_t *h = r->proto_data;
    int rc;

    if (h->finalized)
        return;
    h->finalized = 1;

    if (h->state == ST_DETACHED) {
        pt_http_log_request(r);
        post_done(h);
        return;
    }

    if (r->aborted || h->write_error) {
        drop_output(h);
        pt_http_log_request(r);
        post_done(h);
        return;
    }

    /* end the framing if the producer did not */
    if (!h->last_queued) {
        if (h->chunked_out && !r->header_only) {
            pt_buf_t *f = framing(h, h->chunk_open, 0, 1);
            if (f == NULL) {
                drop_output(h);
                r->aborted = 1;
                pt_http_log_request(r);
                post_done(h);
                return;
            }
            enqueue(h, f);
        } else if (!r->header_only && r->headers_out.content_length_n >= 0
                   && h->body_queued != r->headers_out.content_length_n) {
            h->force_close = 1;
        }
        h->last_queued = 1;
    }

    /* an unread body: discard it to keep the connection, or close */
    if (!h->body_done && !h->discarding) {
        if (can_discard(h)) {
            h->discarding = 1;
            h->deadline = pt_current_msec + clcf_of(r)->lingering_time;
            (void) discard_read(h);
        } else {
            r->keepalive = 0;
        }
    }

    rc = h->blocked ? PT_AGAIN : flush(h);
    if (rc == PT_OK) {
        output_complete(h);
    } else if (rc == PT_ERROR) {
        drop_output(h);
        r->aborted = 1;
        pt_http_log_request(r);
        post_done(h);
    }
    /* PT_AGAIN: on_write goes on */
}

static void output_complete(h1_conn_t *h)
{
    h->output_done = 1;
    pt_http_log_request(h->r);
    if (!h->discarding)
        post_done(h);
}

static void start_linger(h1_conn_t *h, int64_t lingering_time)
{
    pt_conn_t *c = h->c;

    h->state = ST_LINGER;
    stat_set(h, STAT_NONE);
    if (h->buf) {
        pt_buf_put(h->buf);
        h->buf = NULL;
    }
    if (c->io.write.timer_set)
        pt_timer_del(&c->io.write);
    if (c->on_close) {            /* TLS: close_notify before the FIN */
        void (*fn)(pt_conn_t *) = c->on_close;
        c->on_close = NULL;
        fn(c);
    }
    if (pt_conn_shutdown_wr(c) != 0) {   /* after any staged bytes */
        close_conn(h);
        return;
    }
    h->deadline = pt_current_msec + lingering_time;
    linger_read(h);
}

static void linger_read(h1_conn_t *h)
{
    pt_conn_t *c = h->c;

    if (c->io.read.timedout || c->close || pt_current_msec >= h->deadline) {
        close_conn(h);
        return;
    }
    for (int i = 0;; i++) {
        if (i == FAIR_READS) {
            /* a fast sender gets one slice per loop iteration, no more */
            pt_event_post(&c->io.read);
            return;
        }
        ssize_t n = c->recv(c, drop_buf, sizeof(drop_buf));
        if (n == PT_IO_AGAIN) {
            int64_t left = h->deadline - pt_current_msec;
            pt_timer_add(&c->io.read, left < h->linger_timeout ? left : h->linger_timeout);
            return;
        }
        if (n <= 0) {
            close_conn(h);
            return;
        }
    }
}

static void set_nodelay(h1_conn_t *h)
{
    pt_conn_t *c = h->c;
    int one = 1;

    if (c->tcp_nodelay || c->unix_socket)
        return;
    if (setsockopt(c->io.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
        c->tcp_nodelay = 1;
}

/* The posted end of a request: keep-alive, lingering close or close. */
static void on_done(pt_event_t *ev)
{
    h1_conn_t *h = ev->data;
    pt_http_request_t *r = h->r;
    pt_conn_t *c = h->c;
    pt_http_core_loc_conf_t *clcf;
    int ka, linger;

    h->done_posted = 0;
    if (r == NULL)
        return;

    if (h->state == ST_DETACHED) {
        /* the connection belongs to someone else now */
        free_request(h);
        if (h->buf)
            pt_buf_put(h->buf);
        stat_set(h, STAT_NONE);
        free(h);
        return;
    }

    pt_http_log_request(r);
    clcf = clcf_of(r);
    ka = r->keepalive && !r->aborted && !h->write_error && !h->force_close
         && h->body_done && !c->close && !pt_conn_shutting_down
         && clcf->keepalive_timeout > 0;
    linger = !ka && !r->aborted && !h->write_error
             && clcf->lingering_close != PT_HTTP_LINGERING_OFF
             && (clcf->lingering_close == PT_HTTP_LINGERING_ALWAYS
                 || !h->body_done || pipelined(h) || c->io.read.ready);
    h->ka_timeout = clcf->keepalive_timeout;
    h->linger_timeout = clcf->lingering_timeout;
    h->nodelay = clcf->tcp_nodelay ? 1 : 0;
    int64_t lingering_time = clcf->lingering_time;

    free_request(h);

    if (!ka) {
        if (linger)
            start_linger(h, lingering_time);
        else
            close_conn(h);
        return;
    }

    if (c->io.write.timer_set)
        pt_timer_del(&c->io.write);
    if (h->nodelay)
        set_nodelay(h);

    if (h->next_buf) {
        /* the body ended inside a read: what followed is the next request */
        if (h->buf)
            pt_buf_put(h->buf);
        h->buf = h->next_buf;
        h->next_buf = NULL;
    }

    pt_buf_t *b = h->buf;
    if (b && b->pos < b->last) {
        /* pipelined: the next request is already here */
        size_t left = (size_t) (b->last - b->pos);
        size_t small = (size_t) h->srv->client_header_buffer_size;
        if ((size_t) (b->end - b->start) > 4096 && left <= small) {
            pt_buf_t *nb = pt_buf_get(small);
            if (nb) {
                memcpy(nb->last, b->pos, left);
                nb->last += left;
                pt_buf_put(b);
                h->buf = b = nb;
            }
        }
        if (b->pos != b->start) {
            memmove(b->start, b->pos, left);
            b->pos = b->start;
            b->last = b->start + left;
        }
        if (start_request(h) == NULL) {
            close_conn(h);
            return;
        }
        h->state = ST_HEAD;
        stat_set(h, STAT_READING);
        if (c->io.read.timer_set)
            pt_timer_del(&c->io.read);
        process_head(h);
        return;
    }

    if (b) {
        pt_buf_put(b);
        h->buf = NULL;
    }
    h->state = ST_WAIT;
    stat_set(h, STAT_WAITING);
    pt_conn_reusable(c, 1);
    pt_timer_add(&c->io.read, h->ka_timeout);
    if (c->io.read.ready || c->io.read.eof)
        wait_read(h);
}

static pt_conn_t *h1_detach(pt_http_request_t *r, pt_buf_t **preread)
{
    h1_conn_t *h = r->proto_data;
    pt_conn_t *c = h->c;

    if (h->state != ST_REQUEST)
        return NULL;
    if (h->hdr_len || h->out) {
        if (h->blocked || flush(h) != PT_OK)
            return NULL;
    }
    /* bytes after the head go to the new owner in a buffer of their own:
     * h->buf holds the head the request still points into */
    *preread = NULL;
    if (h->next_buf) {
        *preread = h->next_buf;
        h->next_buf = NULL;
    } else if (buffered(h)) {
        size_t n = buffered(h);
        pt_buf_t *nb = pt_buf_get(n);
        if (nb == NULL)
            return NULL;
        memcpy(nb->last, h->buf->pos, n);
        nb->last += n;
        h->buf->pos = h->buf->last;
        *preread = nb;
    }

    if (c->io.read.timer_set)
        pt_timer_del(&c->io.read);
    if (c->io.write.timer_set)
        pt_timer_del(&c->io.write);
    h->state = ST_DETACHED;
    c->data = NULL;
    c->io.read.handler = NULL;
    c->io.write.handler = NULL;
    c->log.ctx_handler = NULL;
    c->log.ctx = NULL;
    return c;
}
