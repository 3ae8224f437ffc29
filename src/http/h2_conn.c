/* HTTP/2 connections over libnghttp2 (module "http_v2").
 *
 * nghttp2 does the framing, HPACK and the protocol's state machine; this
 * file ties it to the event loop and to the request runtime:
 *   - input: c->recv into a per-worker buffer, nghttp2_session_mem_recv;
 *     a stream whose header block is complete becomes one pt_http_request_t
 *     and runs the phases from a posted event after the loop iteration's
 *     I/O (never inside a callback; responses of the same batch have
 *     released their upstream connections by then);
 *   - output: nghttp2_session_mem_send gathered into one connection buffer
 *     and written with c->send (one SSL_write per 16-64 KiB), stopping when
 *     the socket is full;
 *   - a response body is queued per stream (send_body) and pulled by
 *     nghttp2's data provider in http2_chunk_size frames, as the peer's flow
 *     control windows allow; send_data_cb copies each frame straight from
 *     the queue into the connection buffer. The queue is bounded: send_body answers
 *     PT_AGAIN above the high-water mark and write_event_handler runs when
 *     it drains, so a slow reader stalls its own stream's producer only;
 *   - request bodies: the stream window is http2_body_preread_size and is
 *     reopened only as the handler reads (read_body), so an unread upload
 *     holds at most the preread size per stream; the connection window is
 *     reopened at once so other streams never wait for it.
 * Attacks: nghttp2's limits (CONTINUATION count, reset rate, outbound
 * ACK queue for PING/SETTINGS floods, SETTINGS entries) plus our own
 * counters (header list size, streams reset by the client, empty frames).
 */
#include "h2_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>

#include "../core/time.h"
#include "core.h"
#include "h1_conn.h"
#include "h1_parse.h"
#include "limit_rate.h"
#include "proxy_protocol.h"
#include "request.h"

typedef struct {
    int64_t max_concurrent_streams;   /* 128 */
    int64_t chunk_size;               /* 8k */
    int64_t body_preread_size;        /* 64k */
} h2_conf_t;

static void *create_srv_conf(pt_conf_t *cf);
static const char *merge_srv_conf(pt_conf_t *cf, void *prev, void *conf);

static const pt_conf_bounds_t streams_bounds = { 1, 1 << 20 };
static const pt_conf_bounds_t chunk_bounds = { 1, 16 * 1024 * 1024 };
static const pt_conf_bounds_t preread_bounds = { 0, 0x7fffffff };

#define CTX_HS (PT_CTX_HTTP | PT_CTX_SRV)
#define CTX_HSL (PT_CTX_HTTP | PT_CTX_SRV | PT_CTX_LOC)

static const pt_command_t commands[] = {
    { "http2_max_concurrent_streams", CTX_HS, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_SRV,
      offsetof(h2_conf_t, max_concurrent_streams), &streams_bounds },
    { "http2_chunk_size", CTX_HS, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_SRV,
      offsetof(h2_conf_t, chunk_size), &chunk_bounds },
    { "http2_body_preread_size", CTX_HS, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_SRV,
      offsetof(h2_conf_t, body_preread_size), &preread_bounds },
    { "http2_recv_buffer_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_idle_timeout", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_recv_timeout", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_max_field_size", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_max_header_size", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_max_requests", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_streams_index_size", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_push", CTX_HSL, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "http2_push_preload", CTX_HSL, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_v2_module = {
    .name = "http_v2",
    .commands = commands,
    .create_srv_conf = create_srv_conf,
    .merge_srv_conf = merge_srv_conf,
};

static void *create_srv_conf(pt_conf_t *cf)
{
    h2_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->max_concurrent_streams = PT_CONF_UNSET;
    c->chunk_size = PT_CONF_UNSET;
    c->body_preread_size = PT_CONF_UNSET;
    return c;
}

static const char *merge_srv_conf(pt_conf_t *cf, void *parent, void *child)
{
    h2_conf_t *prev = parent, *conf = child;
    pt_conf_merge(conf->max_concurrent_streams, prev->max_concurrent_streams, 128);
    pt_conf_merge(conf->chunk_size, prev->chunk_size, 8 * 1024);
    pt_conf_merge(conf->body_preread_size, prev->body_preread_size, 64 * 1024);
    return PT_CONF_OK;
}

/* ------------------------------------------------------------------------ */

#define OUT_SIZE      (64 * 1024)
#define FRAME_HDLEN   9
#define OUT_FLUSH_AT  (16 * 1024)
#define IN_SIZE       (16 * 1024)
#define MAX_CONTINUATIONS 32
#define EMPTY_FRAMES_MAX  1024

typedef struct h2_conn_s h2_conn_t;
typedef struct h2_stream_s h2_stream_t;

struct h2_stream_s {
    h2_conn_t          *h2c;          /* NULL once the connection is gone */
    h2_stream_t        *prev, *next;
    pt_http_request_t  *r;
    int32_t             id;
    pt_array_t          headers;      /* pt_http_header_t, becomes headers_in.list */
    pt_str_t            method, path, scheme, authority;
    size_t              header_bytes;
    size_t              pool_size;    /* request_pool_size it was made with */
    /* request body */
    pt_buf_t           *in, **in_last;
    size_t              in_bytes;      /* received, not yet read by the handler */
    int64_t             in_total;
    /* response body */
    pt_buf_t           *out, **out_last;
    size_t              out_bytes;
    h2_stream_t        *start_next;   /* list of streams to start */
    h2_stream_t        *tpend_next;   /* list of streams whose send_timeout
                                       * is armed after the next flush */
    pt_event_t          wake;         /* posted: read/write_event_handler */
    pt_event_t          timer;        /* client_body_timeout / send_timeout */
    unsigned            in_eof:1;      /* END_STREAM received */
    unsigned            started:1;
    unsigned            submitted:1;   /* response HEADERS submitted */
    unsigned            last_queued:1;
    unsigned            deferred:1;    /* data provider waits for send_body */
    unsigned            blocked:1;     /* send_body said PT_AGAIN */
    unsigned            finalized:1;
    unsigned            closed:1;      /* nghttp2 closed the stream */
    unsigned            logged:1;
    unsigned            discarding:1;
    unsigned            freed:1;
    unsigned            timedout:1;    /* client_body_timeout / send_timeout */
    unsigned            wake_read:1;   /* what the posted wake event reports */
    unsigned            wake_write:1;
    unsigned            rate_delayed:1; /* limit_rate: timer is a pause */
    unsigned            tpend:1;       /* on h2c->tpend */
};

struct h2_conn_s {
    pt_conn_t               *c;
    nghttp2_session         *ng;
    pt_http_addr_conf_t     *addr;
    pt_http_core_srv_conf_t *srv;
    h2_conf_t               *conf;
    pt_buf_t                *out;        /* gathered frames not yet written */
    h2_stream_t             *streams;    /* live streams */
    h2_stream_t             *start, **start_last;
    h2_stream_t             *tpend;      /* queued body, timer not armed yet */
    unsigned                 nstreams;
    unsigned                 resets;     /* streams reset by the client this second */
    int64_t                  reset_window;
    unsigned                 empty_frames;
    unsigned                 control;    /* PING/SETTINGS/PRIORITY frames this second */
    int64_t                  control_window;
    int32_t                  last_stream_id;
    pt_event_t               done_ev;    /* posted: process pending work */
    unsigned                 stat;       /* stub_status: 0 none, 2 writing, 3 waiting */
    unsigned                 in_recv:1;
    unsigned                 goaway:1;      /* final GOAWAY submitted */
    unsigned                 notice:1;      /* shutdown notice + PING sent */
    unsigned                 closing:1;
    unsigned                 dead:1;
    unsigned                 want_room:1;   /* a DATA frame waits for room in out */
    unsigned                 out_failed:1;  /* no output buffer could be had */
};

static void h2_close(h2_conn_t *h2c);
static void h2_flush(h2_conn_t *h2c);
static void h2_check(h2_conn_t *h2c);
static void start_streams(h2_conn_t *h2c);

static int     h2_send_header(pt_http_request_t *r);
static int     h2_send_body(pt_http_request_t *r, pt_buf_t *chain);
static size_t  h2_pending(pt_http_request_t *r);
static ssize_t h2_read_body(pt_http_request_t *r, char *buf, size_t size, int *status);
static int     h2_discard_body(pt_http_request_t *r);
static void    h2_finalize(pt_http_request_t *r);

static const pt_http_proto_t h2_proto = {
    .send_header = h2_send_header,
    .send_body = h2_send_body,
    .pending = h2_pending,
    .read_body = h2_read_body,
    .discard_body = h2_discard_body,
    .finalize = h2_finalize,
    .detach = NULL,
};

static char in_buf[IN_SIZE];

/* Stream pools come from pt_pool_get() (reset and reused, core/pool.c). */
/* A proxied stream uses 5-8 KiB of its pool (request, stream, upstream,
 * headers): with request_pool_size's default of 4k every stream would
 * malloc a second block; its first block is made at least this big. */
#define STREAM_POOL_MIN 8192

/* stub_status counters: an idle connection is waiting, a busy one writing. */
static void stat_set(h2_conn_t *h2c, unsigned st)
{
    if (h2c->stat == 2 && pt_conn_stats.writing)
        pt_conn_stats.writing--;
    else if (h2c->stat == 3 && pt_conn_stats.waiting)
        pt_conn_stats.waiting--;
    if (st == 2)
        pt_conn_stats.writing++;
    else if (st == 3)
        pt_conn_stats.waiting++;
    h2c->stat = st;
}

static h2_conf_t *h2conf(pt_http_core_srv_conf_t *cscf)
{
    return cscf->ctx->srv_conf[pt_http_v2_module.index];
}

static pt_http_core_loc_conf_t *clcf_of(pt_http_request_t *r)
{
    return r->loc_conf[pt_http_core_module.index];
}

/* ------------------------------------------------------------------------ */
/* Streams */

static void stream_free_cb(void *p)
{
    h2_stream_t *s = p;
    pt_buf_put_chain(s->in);
    pt_buf_put_chain(s->out);
    s->in = s->out = NULL;
    pt_pool_put(s->r->pool, s->pool_size);
}

/* Releases the stream once nghttp2 is done with it and the request is
 * finalized (deferred: r may still be on the caller's stack). */
static void stream_maybe_free(h2_stream_t *s)
{
    if (s->freed || !s->finalized || (!s->closed && s->h2c))
        return;
    s->freed = 1;
    if (!s->logged) {
        s->logged = 1;
        pt_http_log_request(s->r);
    }
    if (s->wake.posted)
        pt_event_unpost(&s->wake);
    if (s->timer.timer_set)
        pt_timer_del(&s->timer);
    if (s->h2c) {
        h2_conn_t *h2c = s->h2c;
        if (s->tpend) {
            for (h2_stream_t **pp = &h2c->tpend; *pp; pp = &(*pp)->tpend_next) {
                if (*pp == s) {
                    *pp = s->tpend_next;
                    break;
                }
            }
            s->tpend = 0;
        }
        if (s->prev)
            s->prev->next = s->next;
        else
            h2c->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
        if (h2c->nstreams)
            h2c->nstreams--;
        if (h2c->ng && !h2c->dead)
            nghttp2_session_set_stream_user_data(h2c->ng, s->id, NULL);
        s->h2c = NULL;
        if (h2c->nstreams == 0 && !h2c->dead) {
            if (!h2c->done_ev.posted)
                pt_event_post(&h2c->done_ev);
        }
    }
    if (pt_loop_defer_free(stream_free_cb, s) != 0)
        stream_free_cb(s);
}

static void on_wake(pt_event_t *ev)
{
    h2_stream_t *s = ev->data;
    pt_http_request_t *r = s->r;
    unsigned rd = s->wake_read, wr = s->wake_write;

    s->wake_read = s->wake_write = 0;
    if (s->finalized)
        return;
    if (rd && r->read_event_handler) {
        r->read_event_handler(r);
        if (s->finalized)
            return;
    }
    if (wr && r->write_event_handler)
        r->write_event_handler(r);
}

static void wake(h2_stream_t *s, int rd, int wr);

/* A stream that waited too long for body bytes (client_body_timeout) or for
 * the client to take its response (send_timeout) ends with 408. */
static void on_stream_timer(pt_event_t *ev)
{
    h2_stream_t *s = ev->data;
    if (s->rate_delayed) {           /* limit_rate hook: the pause is over */
        s->rate_delayed = 0;
        if (s->deferred && s->h2c && !s->closed && !s->h2c->dead) {
            s->deferred = 0;
            nghttp2_session_resume_data(s->h2c->ng, s->id);
            if (!s->h2c->done_ev.posted)
                pt_event_post(&s->h2c->done_ev);
        }
        return;
    }
    if (s->finalized) {
        /* the response is queued but the client does not take it */
        if (s->h2c && !s->closed && !s->h2c->dead) {
            pt_log_error(PT_LOG_INFO, &s->h2c->c->log, ETIMEDOUT, "client timed out");
            nghttp2_submit_rst_stream(s->h2c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
            if (!s->h2c->done_ev.posted)
                pt_event_post(&s->h2c->done_ev);
        }
        return;
    }
    pt_log_error(PT_LOG_INFO, &s->r->connection->log, ETIMEDOUT, "client timed out");
    /* as HTTP/1.1 does: the handler learns it from its next read_body /
     * send_body and finalizes itself (its cleanup runs); without a handler
     * waiting, finalize here */
    s->timedout = 1;
    if (s->r->read_event_handler || s->r->write_event_handler) {
        wake(s, 1, 1);
        return;
    }
    s->r->aborted = 1;
    pt_http_finalize_request(s->r, 408);
}

/* Wakes the handler: read (body data or its end), write (queue drained),
 * both (the stream is gone). */
static void wake(h2_stream_t *s, int rd, int wr)
{
    if (s->finalized)
        return;
    if (rd)
        s->wake_read = 1;
    if (wr)
        s->wake_write = 1;
    if (!s->wake.posted)
        pt_event_post(&s->wake);
}

static h2_stream_t *stream_create(h2_conn_t *h2c, int32_t id)
{
    pt_http_core_srv_conf_t *srv = h2c->srv;
    size_t pool_size = (size_t) srv->request_pool_size < STREAM_POOL_MIN
                       ? STREAM_POOL_MIN : (size_t) srv->request_pool_size;
    pt_pool_t *pool = pt_pool_get(pool_size);
    pt_http_request_t *r;
    h2_stream_t *s;
    extern const size_t pt_modules_n;

    if (pool == NULL)
        return NULL;
    r = pt_pcalloc(pool, sizeof(*r));
    s = pt_pcalloc(pool, sizeof(*s));
    if (r == NULL || s == NULL)
        goto fail;
    r->ctx = pt_pcalloc(pool, sizeof(void *) * pt_modules_n);
    if (r->ctx == NULL || pt_array_init(&r->headers_out.list, pool, 4, sizeof(pt_http_header_t)) != 0
        || pt_array_init(&s->headers, pool, 16, sizeof(pt_http_header_t)) != 0)
        goto fail;
    r->pool = pool;
    r->connection = h2c->c;
    r->proto = &h2_proto;
    r->proto_data = s;
    r->main_conf = srv->ctx->main_conf;
    r->srv_conf = srv->ctx->srv_conf;
    r->loc_conf = srv->ctx->loc_conf;
    r->headers_in.content_length_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->uri_changes = 11;
    r->start_msec = pt_time_msec;
    r->http_version = 20;
    pt_str_set(&r->http_protocol, "HTTP/2.0");
    r->keepalive = 1;

    s->h2c = h2c;
    s->r = r;
    s->id = id;
    s->pool_size = pool_size;
    s->in_last = &s->in;
    s->out_last = &s->out;
    s->wake.handler = on_wake;
    s->wake.data = s;
    s->wake.timer_index = SIZE_MAX;
    s->timer.handler = on_stream_timer;
    s->timer.data = s;
    s->timer.timer_index = SIZE_MAX;
    s->next = h2c->streams;
    if (h2c->streams)
        h2c->streams->prev = s;
    h2c->streams = s;
    h2c->nstreams++;
    if (h2c->stat != 2)
        stat_set(h2c, 2);
    h2c->c->requests++;
    pt_conn_stats.requests++;
    return s;

fail:
    pt_pool_put(pool, pool_size);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* nghttp2 callbacks */

/* The body is not copied here: the frame is written by send_data_cb,
 * straight from the stream's queue into the connection's output buffer
 * (NGHTTP2_DATA_FLAG_NO_COPY; one copy less than through nghttp2's own
 * frame buffer). */
static ssize_t data_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    h2_stream_t *s = src->ptr;
    size_t n = s->out_bytes < length ? s->out_bytes : length;

    /* limit_rate hook: send what the request's budget allows, else pause */
    if (s->r && n && pt_http_limit_rate_active(s->r)) {
        int64_t delay;
        n = pt_http_limit_rate_allow(s->r, n, &delay);
        s->rate_delayed = n == 0;
        if (n == 0) {
            s->deferred = 1;
            pt_timer_add(&s->timer, delay);
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    if (n == s->out_bytes && s->last_queued) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    return (ssize_t) n;
}

static pt_buf_t *out_room(h2_conn_t *h2c, size_t need);

static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *user)
{
    h2_conn_t *h2c = user;
    h2_stream_t *s = src->ptr;
    size_t pad = frame->data.padlen, need = FRAME_HDLEN + pad + length;
    pt_buf_t *b = h2c->out && pt_buf_size(h2c->out) >= OUT_FLUSH_AT ? NULL
                  : out_room(h2c, need);

    if (b == NULL) {
        if (h2c->out_failed)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        h2c->want_room = 1;          /* h2_flush writes, then asks again */
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    if (length > s->out_bytes)
        return NGHTTP2_ERR_CALLBACK_FAILURE;     /* cannot happen */
    memcpy(b->last, framehd, FRAME_HDLEN);
    b->last += FRAME_HDLEN;
    if (pad)
        *b->last++ = (uint8_t) (pad - 1);
    for (size_t n = length; n;) {
        pt_buf_t *q = s->out;
        size_t sz = pt_buf_size(q), take = n < sz ? n : sz;
        memcpy(b->last, q->pos, take);
        b->last += take;
        q->pos += take;
        n -= take;
        if (pt_buf_size(q) == 0) {
            s->out = q->next;
            if (s->out == NULL)
                s->out_last = &s->out;
            pt_buf_put(q);
        }
    }
    if (pad > 1) {
        memset(b->last, 0, pad - 1);
        b->last += pad - 1;
    }
    s->out_bytes -= length;
    s->r->bytes_sent += (int64_t) length;
    if (length) {
        /* progress: the client takes the response; wait send_timeout again
         * for the rest */
        if (s->out_bytes)
            pt_timer_add(&s->timer, clcf_of(s->r)->send_timeout);
        else if (s->timer.timer_set)
            pt_timer_del(&s->timer);
        /* the queue moved: let the producer go on (it may wait on pending()
         * rather than on a PT_AGAIN from send_body) */
        if (s->blocked || s->out_bytes < (size_t) h2c->conf->chunk_size * 2) {
            s->blocked = 0;
            wake(s, 0, 1);
        }
    }
    return 0;
}

static ssize_t read_length_cb(nghttp2_session *ng, uint8_t frame_type, int32_t id,
                              int32_t session_window, int32_t stream_window,
                              uint32_t remote_max_frame_size, void *user)
{
    h2_conn_t *h2c = user;
    ssize_t n = (ssize_t) h2c->conf->chunk_size;
    if (n > session_window)
        n = session_window;
    if (n > stream_window)
        n = stream_window;
    if (n > (ssize_t) remote_max_frame_size)
        n = (ssize_t) remote_max_frame_size;
    return n > 0 ? n : 1;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    h2_conn_t *h2c = user;
    h2_stream_t *s;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (h2c->goaway || h2c->closing) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s = stream_create(h2c, frame->hd.stream_id);
    if (s == NULL) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (frame->hd.stream_id > h2c->last_stream_id)
        h2c->last_stream_id = frame->hd.stream_id;
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, s);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    h2_conn_t *h2c = user;
    h2_stream_t *s;
    pt_http_request_t *r;
    size_t limit;

    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    s = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    r = s->r;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;     /* trailers: ignored */

    /* the decoded header list is bounded like HTTP/1.1's head (HPACK bomb) */
    limit = (size_t) (h2c->srv->large_client_header_buffers_num
                      * h2c->srv->large_client_header_buffers_size);
    s->header_bytes += namelen + valuelen + 32;
    if (s->header_bytes > limit || s->headers.nelts >= 1000) {
        pt_log_error(PT_LOG_INFO, &h2c->c->log, 0, "client exceeded http2 header list size");
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    /* name and value in one allocation (nghttp2's copies last only
     * during the callback) */
    char *n = pt_pnalloc(r->pool, namelen + valuelen + 2), *v;
    if (n == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    v = n + namelen + 1;
    memcpy(n, name, namelen);
    n[namelen] = '\0';
    memcpy(v, value, valuelen);
    v[valuelen] = '\0';

    if (namelen && name[0] == ':') {
        pt_str_t *dst = NULL;
        if (namelen == 7 && memcmp(name, ":method", 7) == 0)
            dst = &s->method;
        else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
            dst = &s->path;
        else if (namelen == 7 && memcmp(name, ":scheme", 7) == 0)
            dst = &s->scheme;
        else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
            dst = &s->authority;
        if (dst) {
            dst->data = v;
            dst->len = valuelen;
        }
        return 0;
    }
    if (!h2c->srv->underscores_in_headers && memchr(name, '_', namelen)) {
        pt_log_error(PT_LOG_INFO, &h2c->c->log, 0, "client sent invalid header: \"%s\"", n);
        return 0;   /* ignored as nginx (ignore_invalid_headers) */
    }
    pt_http_header_t *hh = pt_array_push(&s->headers);
    if (hh == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    hh->name.data = n;
    hh->name.len = namelen;
    hh->value.data = v;
    hh->value.len = valuelen;
    hh->hash = pt_hash_lower(n, namelen);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    h2_conn_t *h2c = user;
    h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, id);

    /* the connection window reopens at once: one stream's unread upload
     * never blocks the others */
    nghttp2_session_consume_connection(ng, len);
    if (s == NULL || s->finalized || s->discarding) {
        if (s)
            nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    s->in_total += (int64_t) len;
    while (len) {
        pt_buf_t *b = s->in ? (pt_buf_t *) ((char *) s->in_last - offsetof(pt_buf_t, next)) : NULL;
        if (b == NULL || pt_buf_room(b) == 0) {
            b = pt_buf_get(16384);
            if (b == NULL)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            *s->in_last = b;
            s->in_last = &b->next;
        }
        size_t take = pt_buf_room(b) < len ? pt_buf_room(b) : len;
        memcpy(b->last, data, take);
        b->last += take;
        data += take;
        len -= take;
        s->in_bytes += take;
    }
    if (s->started)
        wake(s, 1, 0);
    (void) h2c;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    h2_conn_t *h2c = user;
    h2_stream_t *s;

    if ((frame->hd.type == NGHTTP2_PING || frame->hd.type == NGHTTP2_SETTINGS
         || frame->hd.type == NGHTTP2_PRIORITY) && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        /* control frames cost us work (and an ACK) for free: a client
         * needs a handful per second, never a thousand */
        if (pt_current_msec - h2c->control_window > 1000) {
            h2c->control_window = pt_current_msec;
            h2c->control = 0;
        }
        if (++h2c->control > 1000) {
            pt_log_error(PT_LOG_INFO, &h2c->c->log, 0, "client sent too many control frames");
            nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
            return 0;
        }
    }
    switch (frame->hd.type) {
    case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            && ++h2c->empty_frames > EMPTY_FRAMES_MAX) {
            pt_log_error(PT_LOG_INFO, &h2c->c->log, 0, "client sent too many empty frames");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        /* fall through */
    case NGHTTP2_HEADERS:
        s = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (s == NULL)
            return 0;
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            s->in_eof = 1;
            if (s->started)
                wake(s, 1, 0);
        }
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST
            && !s->started) {
            s->started = 1;
            s->start_next = NULL;
            *h2c->start_last = s;
            h2c->start_last = &s->start_next;
        }
        break;
    case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && h2c->notice && !h2c->goaway) {
            /* one round trip after the notice: every stream the client
             * opened before seeing it has arrived */
            h2c->goaway = 1;
            nghttp2_submit_goaway(ng, NGHTTP2_FLAG_NONE, h2c->last_stream_id, NGHTTP2_NO_ERROR,
                                  NULL, 0);
        }
        break;
    case NGHTTP2_RST_STREAM: {
        if (pt_current_msec - h2c->reset_window > 1000) {
            h2c->reset_window = pt_current_msec;
            h2c->resets = 0;
        }
        if (++h2c->resets > (unsigned) h2c->conf->max_concurrent_streams * 2 + 100) {
            pt_log_error(PT_LOG_INFO, &h2c->c->log, 0, "client reset too many streams");
            nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user)
{
    h2_conn_t *h2c = user;
    if (hd->type == NGHTTP2_CONTINUATION) {
        h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, hd->stream_id);
        if (s && ++s->header_bytes > (size_t) (h2c->srv->large_client_header_buffers_num
                                                * h2c->srv->large_client_header_buffers_size))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    h2_stream_t *s;

    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS)
        || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    s = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    /* the response is out: log it now (as h1 logs when written) */
    if (s->finalized && !s->logged) {
        s->logged = 1;
        pt_http_log_request(s->r);
    }
    /* the client is still sending a body nobody will read */
    if (!s->in_eof)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, id);

    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    s->closed = 1;
    if (!s->finalized) {
        /* reset by the client (or an error) before the response was done */
        s->r->aborted = 1;
        if (!s->started) {
            s->finalized = 1;      /* never ran: nothing holds it */
            s->logged = 1;
        } else {
            wake(s, 1, 1);
        }
    }
    stream_maybe_free(s);
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                            void *user)
{
    h2_conn_t *h2c = user;
    pt_log_error(PT_LOG_INFO, &h2c->c->log, 0, "client sent invalid http2 frame: %s",
                 nghttp2_strerror(lib_error));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Starting requests */

#define NAME_IS(h, lit) ((h)->name.len == sizeof(lit) - 1 \
                         && memcmp((h)->name.data, lit, sizeof(lit) - 1) == 0)

static int build_request(h2_stream_t *s)
{
    h2_conn_t *h2c = s->h2c;
    pt_http_request_t *r = s->r;
    pt_http_headers_in_t *hi = &r->headers_in;
    pt_conn_t *c = h2c->c;
    pt_http_header_t *hh;

    if (s->method.len == 0 || (s->path.len == 0 && !pt_str_eq_lit(&s->method, "CONNECT"))) {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent no :method or :path");
        return 400;
    }
    r->method_name = s->method;
    r->method = pt_h1_method_id(&s->method);
    r->unparsed_uri = s->path;
    r->schema = s->scheme;
    r->request_line.len = s->method.len + 1 + s->path.len + sizeof(" HTTP/2.0") - 1;
    r->request_line.data = pt_pnalloc(r->pool, r->request_line.len);
    if (r->request_line.data == NULL)
        return 500;
    {
        char *p = r->request_line.data;
        memcpy(p, s->method.data, s->method.len);
        p += s->method.len;
        *p++ = ' ';
        memcpy(p, s->path.data, s->path.len);
        p += s->path.len;
        memcpy(p, " HTTP/2.0", 9);
    }
    if (r->method == PT_HTTP_CONNECT) {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent CONNECT method");
        return 405;
    }
    if (r->method == PT_HTTP_TRACE) {      /* never echoed back (nginx: 405) */
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent TRACE method");
        return 405;
    }
    if (s->path.data[0] != '/') {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid :path");
        return 400;
    }

    /* :authority becomes Host when there is none */
    hh = NULL;
    for (size_t i = 0; i < s->headers.nelts; i++) {
        pt_http_header_t *x = &((pt_http_header_t *) s->headers.elts)[i];
        if (NAME_IS(x, "host"))
            hh = x;
    }
    if (hh == NULL && s->authority.len) {
        hh = pt_array_push(&s->headers);
        if (hh == NULL)
            return 500;
        pt_str_set(&hh->name, "host");
        hh->value = s->authority;
        hh->hash = pt_hash_lower("host", 4);
    }
    hi->list = s->headers;
    hh = hi->list.elts;
    for (size_t i = 0; i < hi->list.nelts; i++, hh++) {
        r->request_length += (int64_t) (hh->name.len + hh->value.len + 4);
        switch (hh->name.len) {
        case 4:
            if (NAME_IS(hh, "host") && !hi->host)
                hi->host = hh;
            break;
        case 6:
            if (NAME_IS(hh, "expect") && !hi->expect)
                hi->expect = hh;
            break;
        case 7:
            if (NAME_IS(hh, "referer") && !hi->referer)
                hi->referer = hh;
            break;
        case 10:
            if (NAME_IS(hh, "user-agent") && !hi->user_agent)
                hi->user_agent = hh;
            break;
        case 13:
            if (NAME_IS(hh, "authorization")) {
                if (hi->authorization)
                    return 400;
                hi->authorization = hh;
            }
            break;
        case 14:
            if (NAME_IS(hh, "content-length")) {
                if (hi->content_length && !pt_str_eq(&hi->content_length->value, &hh->value))
                    return 400;
                hi->content_length = hh;
            }
            break;
        case 15:
            if (NAME_IS(hh, "x-forwarded-for") && !hi->x_forwarded_for)
                hi->x_forwarded_for = hh;
            else if (NAME_IS(hh, "accept-encoding") && !hi->accept_encoding)
                hi->accept_encoding = hh;
            break;
        case 17:
            if (NAME_IS(hh, "if-modified-since") && !hi->if_modified_since)
                hi->if_modified_since = hh;
            break;
        default:
            break;
        }
    }
    if (hi->host) {
        hi->server = hi->host->value;
        if (pt_http_validate_host(&hi->server, r->pool) != 0) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid host header");
            return 400;
        }
    }
    pt_http_core_srv_conf_t *cscf = pt_http_find_server(h2c->addr, &hi->server, r);
    r->srv_conf = cscf->ctx->srv_conf;
    r->loc_conf = cscf->ctx->loc_conf;

    char *out = pt_pnalloc(r->pool, s->path.len + 1);
    if (out == NULL)
        return 500;
    if (pt_h1_normalize_uri(&s->path, out, &r->uri, &r->args, &r->exten,
                            cscf->merge_slashes) != 0) {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid :path");
        return 400;
    }
    if (hi->content_length) {
        hi->content_length_n = pt_atoi64(hi->content_length->value.data,
                                         hi->content_length->value.len);
        if (hi->content_length_n < 0) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent invalid \"Content-Length\" header");
            return 400;
        }
    }
    if (s->in_eof) {
        r->body_read = 1;
        if (hi->content_length_n > 0) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client prematurely closed stream");
            return 400;
        }
        if (!hi->content_length)
            hi->content_length_n = 0;
    }
    r->expect_tested = 1;
    return 0;
}

static void start_streams(h2_conn_t *h2c)
{
    while (h2c->start && !h2c->dead) {
        h2_stream_t *s = h2c->start;
        h2c->start = s->start_next;
        if (h2c->start == NULL)
            h2c->start_last = &h2c->start;
        if (s->closed || s->finalized)
            continue;
        int rc = build_request(s);
        if (rc != 0) {
            s->r->keepalive = 0;
            pt_http_finalize_request(s->r, rc);
            continue;
        }
        s->r->phase_handler = 0;
        pt_http_core_run_phases(s->r);
    }
}

/* ------------------------------------------------------------------------ */
/* Proto ops */

static int h2_send_header(pt_http_request_t *r)
{
    h2_stream_t *s = r->proto_data;
    h2_conn_t *h2c = s->h2c;
    pt_http_headers_out_t *ho = &r->headers_out;
    pt_http_core_loc_conf_t *clcf = clcf_of(r);
    nghttp2_nv *nva;
    size_t n = 0, cap;
    int st = ho->status;

    if (h2c == NULL || s->closed || r->aborted)
        return PT_ERROR;
    if (s->submitted)
        return PT_OK;
    if (r->method == PT_HTTP_HEAD)
        r->header_only = 1;
    if (st < 200 || st == 204 || st == 304) {
        r->header_only = 1;
        ho->content_length_n = -1;
        if (st == 204) {
            ho->content_type.len = 0;
            ho->last_modified_time = -1;
        }
    }
    if (st < 200)
        st = 502;    /* no interim responses in this path (101 cannot be h2) */
    if (ho->last_modified_time != -1 && st != 200 && st != 206 && st != 304)
        ho->last_modified_time = -1;

    cap = 8 + ho->list.nelts;
    nva = pt_palloc(r->pool, sizeof(*nva) * cap + 64);
    if (nva == NULL)
        return PT_ERROR;
    /* status and content-length are formatted into the same allocation:
     * the request pool outlives the HEADERS frame (nghttp2 serializes it
     * before the stream can close, and the pool goes only after that), so
     * nghttp2 need not copy them, nor the static names, server and the
     * cached date (a static buffer of fixed length). Other values come from
     * elsewhere and are copied (and their names lower-cased) by nghttp2. */
    char *status = (char *) (nva + cap), *clen = status + 4, *lm = clen + 24;
#define NVF(nm, nl, vl, vlen, fl) do { nva[n].name = (uint8_t *) (nm); nva[n].namelen = (nl); \
        nva[n].value = (uint8_t *) (vl); nva[n].valuelen = (vlen); nva[n].flags = (fl); n++; } while (0)
#define OWN (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)
#define LIT NGHTTP2_NV_FLAG_NO_COPY_NAME
    status[0] = (char) ('0' + st / 100 % 10);
    status[1] = (char) ('0' + st / 10 % 10);
    status[2] = (char) ('0' + st % 10);
    NVF(":status", 7, status, 3, OWN);
    if (ho->server)
        NVF("server", 6, ho->server->value.data, ho->server->value.len, LIT);
    else if (clcf->server_tokens == PT_HTTP_SERVER_TOKENS_OFF)
        NVF("server", 6, "portico", 7, OWN);
    else
        NVF("server", 6, "portico/" PT_VERSION, sizeof("portico/" PT_VERSION) - 1, OWN);
    if (ho->date)
        NVF("date", 4, ho->date->value.data, ho->date->value.len, LIT);
    else
        NVF("date", 4, pt_cached_http_time.data, pt_cached_http_time.len, OWN);
    if (ho->content_type.len)
        NVF("content-type", 12, ho->content_type.data, ho->content_type.len, LIT);
    if (ho->content_length_n >= 0) {
        char *e = pt_http_format_int(clen, ho->content_length_n);
        NVF("content-length", 14, clen, (size_t) (e - clen), OWN);
    }
    if (ho->last_modified_time != -1) {
        size_t l = pt_http_time(lm, ho->last_modified_time);
        NVF("last-modified", 13, lm, l, OWN);
    }
    if (ho->location) {
        pt_str_t v = ho->location->value;
        if (v.len && v.data[0] == '/' && clcf->absolute_redirect) {
            pt_http_core_srv_conf_t *cscf = r->srv_conf[pt_http_core_module.index];
            pt_str_t host = r->headers_in.server;
            char hostbuf[64];
            if (clcf->server_name_in_redirect && cscf->server_name.len) {
                host = cscf->server_name;
            } else if (host.len == 0 && pt_conn_local_addr(r->connection) == 0) {
                /* no :authority nor Host: the local address (nginx) */
                const pt_conn_t *lc = r->connection;
                int v6 = lc->local_sockaddr.sa.sa_family == AF_INET6;
                size_t hl = pt_sockaddr_text(&lc->local_sockaddr.sa, lc->local_socklen,
                                             hostbuf + v6, sizeof(hostbuf) - 2, 0);
                if (v6 && hl) {
                    hostbuf[0] = '[';
                    hostbuf[++hl] = ']';
                    hl++;
                }
                host.data = v6 && hl == 0 ? hostbuf + 1 : hostbuf;
                host.len = hl;
            }
            char *p = pt_pnalloc(r->pool, v.len + host.len + 16);
            if (p == NULL)
                return PT_ERROR;
            int k = snprintf(p, v.len + host.len + 16, "%s://%.*s",
                             r->connection->ssl ? "https" : "http", (int) host.len, host.data);
            if (clcf->port_in_redirect && pt_conn_local_addr(r->connection) == 0) {
                const pt_sockaddr_t *la = &r->connection->local_sockaddr;
                int port = la->sa.sa_family == AF_INET ? ntohs(la->sin.sin_port)
                         : la->sa.sa_family == AF_INET6 ? ntohs(la->sin6.sin6_port) : 0;
                char *q = pt_pnalloc(r->pool, (size_t) k + v.len + 8);
                if (q == NULL)
                    return PT_ERROR;
                memcpy(q, p, (size_t) k);
                p = q;
                if (port && port != (r->connection->ssl ? 443 : 80))
                    k += snprintf(p + k, 8, ":%d", port);
            }
            memcpy(p + k, v.data, v.len);
            v.data = p;
            v.len = (size_t) k + v.len;
        }
        NVF("location", 8, v.data, v.len, LIT);
    }
    {
        const pt_http_header_t *hl = ho->list.elts;
        for (size_t i = 0; i < ho->list.nelts; i++) {
            const pt_http_header_t *x = &hl[i];
            if (x->deleted || x->name.len == 0)
                continue;
            if ((ho->location && pt_str_caseeq_lit(&x->name, "location"))
                || (ho->server && pt_str_caseeq_lit(&x->name, "server"))
                || (ho->date && pt_str_caseeq_lit(&x->name, "date"))
                || pt_str_caseeq_lit(&x->name, "connection")
                || pt_str_caseeq_lit(&x->name, "keep-alive")
                || pt_str_caseeq_lit(&x->name, "proxy-connection")
                || pt_str_caseeq_lit(&x->name, "transfer-encoding")
                || pt_str_caseeq_lit(&x->name, "upgrade"))
                continue;
            /* nghttp2's copy lower-cases the name */
            NVF(x->name.data, x->name.len, x->value.data, x->value.len, 0);
        }
    }
#undef NVF
#undef OWN
#undef LIT
    nghttp2_data_provider prd, *pp = NULL;
    if (!r->header_only) {
        prd.source.ptr = s;
        prd.read_callback = data_read_cb;
        pp = &prd;
    }
    if (nghttp2_submit_response(h2c->ng, s->id, nva, n, pp) != 0)
        return PT_ERROR;
    s->submitted = 1;
    r->header_size = 0;
    for (size_t i = 0; i < n; i++)
        r->header_size += (int64_t) (nva[i].namelen + nva[i].valuelen + 4);
    if (!h2c->in_recv && !h2c->done_ev.posted)
        pt_event_post(&h2c->done_ev);
    return PT_OK;
}

static int h2_send_body(pt_http_request_t *r, pt_buf_t *chain)
{
    h2_stream_t *s = r->proto_data;
    h2_conn_t *h2c = s->h2c;
    pt_buf_t *b, *next;
    int last = 0;

    if (h2c == NULL || s->closed || r->aborted || s->timedout) {
        pt_buf_put_chain(chain);
        return PT_ERROR;
    }
    for (b = chain; b; b = next) {
        next = b->next;
        b->next = NULL;
        if (b->last_buf)
            last = 1;
        if (r->header_only || s->last_queued || pt_buf_size(b) == 0) {
            pt_buf_put(b);
            continue;
        }
        *s->out_last = b;
        s->out_last = &b->next;
        s->out_bytes += pt_buf_size(b);
    }
    if (last)
        s->last_queued = 1;
    if (s->deferred && (s->out || s->last_queued)) {
        s->deferred = 0;
        nghttp2_session_resume_data(h2c->ng, s->id);
    }
    if (!h2c->in_recv && !h2c->done_ev.posted)
        pt_event_post(&h2c->done_ev);
    if (s->out_bytes && !s->timer.timer_set && !s->tpend) {
        /* send_timeout runs only for a body still queued after the flush
         * (most responses leave at once: no timer to add and delete) */
        s->tpend = 1;
        s->tpend_next = h2c->tpend;
        h2c->tpend = s;
    }
    if (s->out_bytes > (size_t) h2c->conf->chunk_size * 4 && s->out_bytes > 65536) {
        s->blocked = 1;
        return PT_AGAIN;
    }
    return PT_OK;
}

static size_t h2_pending(pt_http_request_t *r)
{
    h2_stream_t *s = r->proto_data;
    return s->out_bytes;
}

static ssize_t h2_read_body(pt_http_request_t *r, char *buf, size_t size, int *status)
{
    h2_stream_t *s = r->proto_data;
    h2_conn_t *h2c = s->h2c;
    size_t n = 0;
    pt_http_core_loc_conf_t *clcf = clcf_of(r);

    *status = 0;
    if (s->timedout) {
        *status = 408;
        return PT_ERROR;
    }
    if (h2c == NULL || s->closed) {
        if (s->in == NULL && s->in_eof)
            return 0;
        *status = 400;
        return PT_ERROR;
    }
    if (clcf->client_max_body_size > 0 && s->in_total > clcf->client_max_body_size) {
        pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                     "client intended to send too large body: %lld bytes",
                     (long long) s->in_total);
        *status = 413;
        return PT_ERROR;
    }
    while (s->in && n < size) {
        pt_buf_t *b = s->in;
        size_t sz = pt_buf_size(b), take = size - n < sz ? size - n : sz;
        memcpy(buf + n, b->pos, take);
        b->pos += take;
        n += take;
        if (pt_buf_size(b) == 0) {
            if (b->next == NULL && pt_buf_room(b)) {
                b->pos = b->last = b->start;     /* the tail: keep filling it */
                break;
            }
            s->in = b->next;
            if (s->in == NULL)
                s->in_last = &s->in;
            pt_buf_put(b);
        }
    }
    if (n) {
        if (s->timer.timer_set)
            pt_timer_del(&s->timer);
        s->in_bytes -= n;
        r->request_length += (int64_t) n;
        nghttp2_session_consume_stream(h2c->ng, s->id, n);
        if (!h2c->in_recv && !h2c->done_ev.posted)
            pt_event_post(&h2c->done_ev);
        return (ssize_t) n;
    }
    if (s->in_eof) {
        r->body_read = 1;
        if (r->headers_in.content_length_n >= 0
            && s->in_total != r->headers_in.content_length_n) {
            pt_log_error(PT_LOG_INFO, &r->connection->log, 0,
                         "client sent body of a length other than its Content-Length");
            *status = 400;
            return PT_ERROR;
        }
        return 0;
    }
    pt_timer_add(&s->timer, clcf->client_body_timeout);
    return PT_AGAIN;
}

static int h2_discard_body(pt_http_request_t *r)
{
    h2_stream_t *s = r->proto_data;
    h2_conn_t *h2c = s->h2c;

    r->discard_body = 1;
    if (h2c == NULL || s->discarding)
        return PT_OK;
    s->discarding = 1;
    if (s->in_bytes)
        nghttp2_session_consume_stream(h2c->ng, s->id, s->in_bytes);
    pt_buf_put_chain(s->in);
    s->in = NULL;
    s->in_last = &s->in;
    s->in_bytes = 0;
    return PT_OK;
}

static void h2_finalize(pt_http_request_t *r)
{
    h2_stream_t *s = r->proto_data;
    h2_conn_t *h2c = s->h2c;

    if (s->finalized)
        return;
    s->finalized = 1;
    if (s->wake.posted)
        pt_event_unpost(&s->wake);
    if (s->timer.timer_set && s->out_bytes == 0)
        pt_timer_del(&s->timer);
    if (h2c && !s->closed) {
        if (r->aborted || !s->submitted) {
            nghttp2_submit_rst_stream(h2c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        } else {
            if (!s->last_queued) {
                s->last_queued = 1;
                if (!r->header_only && r->headers_out.content_length_n >= 0
                    && r->bytes_sent + (int64_t) s->out_bytes < r->headers_out.content_length_n)
                    nghttp2_submit_rst_stream(h2c->ng, NGHTTP2_FLAG_NONE, s->id,
                                              NGHTTP2_INTERNAL_ERROR);
            }
            if (s->deferred) {
                s->deferred = 0;
                nghttp2_session_resume_data(h2c->ng, s->id);
            }
            /* drop an unread upload: give its window back */
            h2_discard_body(r);
        }
        if (!h2c->in_recv && !h2c->done_ev.posted)
            pt_event_post(&h2c->done_ev);
    }
    stream_maybe_free(s);
}

/* ------------------------------------------------------------------------ */
/* Connection I/O */

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *user)
{
    return NGHTTP2_ERR_CALLBACK_FAILURE;   /* mem_send only */
}

/* Writes gathered output; returns 0 when all is out, 1 when blocked, -1. */
static int write_out(h2_conn_t *h2c)
{
    pt_conn_t *c = h2c->c;
    pt_buf_t *b = h2c->out;

    while (b && pt_buf_size(b)) {
        ssize_t n = c->send(c, b->pos, pt_buf_size(b));
        if (n == PT_IO_AGAIN)
            return 1;
        if (n < 0)
            return -1;
        b->pos += n;
    }
    if (b) {
        pt_buf_put(b);
        h2c->out = NULL;
    }
    return 0;
}

/* The output buffer with room for need more bytes (compacted, or a bigger
 * one when it is empty and too small); NULL when the bytes gathered must be
 * written first, or when no buffer could be had (h2c->out_failed). */
static pt_buf_t *out_room(h2_conn_t *h2c, size_t need)
{
    pt_buf_t *b = h2c->out;

    if (b == NULL) {
        b = h2c->out = pt_buf_get(need > OUT_SIZE ? need : OUT_SIZE);
        if (b == NULL)
            h2c->out_failed = 1;
        return b;
    }
    if (pt_buf_room(b) >= need)
        return b;
    size_t have = pt_buf_size(b);
    if (b->pos != b->start) {
        memmove(b->start, b->pos, have);
        b->pos = b->start;
        b->last = b->start + have;
        if (pt_buf_room(b) >= need)
            return b;
    }
    if (have)
        return NULL;
    pt_buf_put(b);
    b = h2c->out = pt_buf_get(need);
    if (b == NULL)
        h2c->out_failed = 1;
    return b;
}

/* A bigger output buffer holding the bytes not yet written and room for
 * need more. */
static pt_buf_t *out_grow(h2_conn_t *h2c, size_t need)
{
    pt_buf_t *o = h2c->out;
    size_t have = o ? pt_buf_size(o) : 0;
    pt_buf_t *b = pt_buf_get(have + need > OUT_SIZE ? have + need : OUT_SIZE);

    if (b == NULL) {
        h2c->out_failed = 1;
        return NULL;
    }
    if (o) {
        memcpy(b->last, o->pos, have);
        b->last += have;
        pt_buf_put(o);
    }
    h2c->out = b;
    return b;
}

/* Gathers nghttp2's output (frames from mem_send; DATA frames straight
 * from send_data_cb) into one buffer and writes it, one SSL_write per
 * OUT_FLUSH_AT..OUT_SIZE bytes, until all is out or the socket is full. */
static void h2_flush(h2_conn_t *h2c)
{
    pt_conn_t *c = h2c->c;

    if (h2c->dead)
        return;
    for (;;) {
        int rc = write_out(h2c);
        if (rc < 0) {
            h2c->closing = 1;
            h2_close(h2c);
            return;
        }
        if (rc > 0) {
            pt_timer_add(&c->io.write, ((pt_http_core_loc_conf_t *)
                          h2c->srv->ctx->loc_conf[pt_http_core_module.index])->send_timeout);
            return;
        }
        /* gather frames up to OUT_FLUSH_AT (or until the buffer is full),
         * then write */
        for (;;) {
            const uint8_t *data;
            h2c->want_room = 0;
            ssize_t n = nghttp2_session_mem_send(h2c->ng, &data);
            if (n < 0 || h2c->out_failed) {
                pt_log_error(PT_LOG_INFO, &c->log, 0, "nghttp2_session_mem_send() failed: %s",
                             h2c->out_failed ? "no buffer" : nghttp2_strerror((int) n));
                h2c->closing = 1;
                h2_close(h2c);
                return;
            }
            if (n == 0)
                break;           /* all gathered, or want_room: write first */
            pt_buf_t *b = out_room(h2c, (size_t) n);
            if (b == NULL) {
                if (h2c->out_failed) {
                    h2_close(h2c);
                    return;
                }
                /* write what is gathered (the frame stays in nghttp2's
                 * buffer until the next mem_send), then take it; when
                 * the socket is full, in a bigger buffer */
                int w = write_out(h2c);
                if (w < 0) {
                    h2_close(h2c);
                    return;
                }
                b = out_room(h2c, (size_t) n);
                if (b == NULL)
                    b = out_grow(h2c, (size_t) n);
                if (b == NULL) {
                    h2_close(h2c);
                    return;
                }
            }
            memcpy(b->last, data, (size_t) n);
            b->last += n;
            if (pt_buf_size(b) >= OUT_FLUSH_AT)
                break;
        }
        if (h2c->out == NULL || pt_buf_size(h2c->out) == 0) {
            if (h2c->out) {
                pt_buf_put(h2c->out);
                h2c->out = NULL;
            }
            if (c->io.write.timer_set)
                pt_timer_del(&c->io.write);
            return;
        }
    }
}

static void h2_close(h2_conn_t *h2c)
{
    pt_conn_t *c = h2c->c;
    h2_stream_t *s, *next;

    if (h2c->dead)
        return;
    h2c->dead = 1;
    stat_set(h2c, 0);
    for (s = h2c->tpend; s; s = s->tpend_next)
        s->tpend = 0;
    h2c->tpend = NULL;
    if (h2c->done_ev.posted)
        pt_event_unpost(&h2c->done_ev);
    /* requests still running end now (their cleanups run) */
    for (s = h2c->streams; s; s = next) {
        next = s->next;
        s->closed = 1;
        s->r->aborted = 1;
        if (!s->finalized && s->started) {
            /* the handler learns of the abort first (the proxy releases
             * its upstream), as on RST_STREAM and in HTTP/1.1 */
            pt_http_request_t *r = s->r;
            if (r->write_event_handler)
                r->write_event_handler(r);
            else if (r->read_event_handler)
                r->read_event_handler(r);
            if (!s->finalized)
                pt_http_finalize_request(r, PT_ERROR);
        } else if (!s->finalized) {
            s->finalized = 1;
            s->logged = 1;
        }
    }
    for (s = h2c->streams; s; s = next) {
        next = s->next;
        s->h2c = NULL;
        s->prev = s->next = NULL;
        stream_maybe_free(s);
    }
    h2c->streams = NULL;
    nghttp2_session_del(h2c->ng);
    h2c->ng = NULL;
    if (h2c->out) {
        pt_buf_put(h2c->out);
        h2c->out = NULL;
    }
    c->data = NULL;
    pt_conn_close(c);
    if (pt_loop_defer_free(free, h2c) != 0)
        free(h2c);
}

/* Streams whose body is still queued after the flush wait send_timeout
 * for the client to take it (data_read_cb re-arms it on progress). */
static void arm_send_timers(h2_conn_t *h2c)
{
    h2_stream_t *s = h2c->tpend;
    h2c->tpend = NULL;
    for (; s; s = s->tpend_next) {
        s->tpend = 0;
        if (s->out_bytes && !s->closed && !s->timer.timer_set)
            pt_timer_add(&s->timer, clcf_of(s->r)->send_timeout);
    }
}

/* After any activity: start new streams, write, decide about the end. */
static void h2_check(h2_conn_t *h2c)
{
    pt_conn_t *c = h2c->c;

    if (h2c->dead)
        return;
    start_streams(h2c);
    if (h2c->dead)
        return;
    if ((pt_conn_shutting_down || c->close) && !h2c->notice && !h2c->goaway) {
        /* graceful: a GOAWAY that refuses nothing yet, then the real one
         * after a PING round trip (or a second), so no stream in flight
         * is refused */
        h2c->notice = 1;
        nghttp2_submit_shutdown_notice(h2c->ng);
        nghttp2_submit_ping(h2c->ng, NGHTTP2_FLAG_NONE, NULL);
    }
    h2_flush(h2c);
    if (h2c->dead)
        return;
    arm_send_timers(h2c);
    if (!nghttp2_session_want_read(h2c->ng) && !nghttp2_session_want_write(h2c->ng)
        && (h2c->out == NULL)) {
        h2_close(h2c);
        return;
    }
    if (h2c->goaway && h2c->nstreams == 0 && h2c->out == NULL) {
        h2_close(h2c);
        return;
    }
    /* idle: keepalive_timeout, reclaimable; busy: no read timer (streams
     * have their own handlers' timers) */
    stat_set(h2c, h2c->nstreams ? 2 : 3);
    if (h2c->notice && !h2c->goaway) {
        pt_conn_reusable(c, 0);
        pt_timer_add(&c->io.read, 1000);
    } else if (h2c->nstreams == 0) {
        pt_http_core_loc_conf_t *clcf = h2c->srv->ctx->loc_conf[pt_http_core_module.index];
        pt_conn_reusable(c, 1);
        pt_timer_add(&c->io.read, clcf->keepalive_timeout > 0 ? clcf->keepalive_timeout : 1);
    } else {
        pt_conn_reusable(c, 0);
        if (c->io.read.timer_set)
            pt_timer_del(&c->io.read);
    }
}

static void on_done(pt_event_t *ev)
{
    h2_check(ev->data);
}

static void on_read(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    h2_conn_t *h2c = c->data;

    if (h2c == NULL || h2c->dead)
        return;
    if (ev->timedout && h2c->notice && !h2c->goaway) {
        ev->timedout = 0;
        h2c->goaway = 1;
        nghttp2_submit_goaway(h2c->ng, NGHTTP2_FLAG_NONE, h2c->last_stream_id,
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2_check(h2c);
        return;
    }
    if (ev->timedout) {
        ev->timedout = 0;
        h2c->goaway = 1;
        nghttp2_submit_goaway(h2c->ng, NGHTTP2_FLAG_NONE, h2c->last_stream_id,
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2_flush(h2c);
        if (!h2c->dead)
            h2_close(h2c);
        return;
    }
    if (c->close && h2c->nstreams == 0) {
        h2c->goaway = 1;
        nghttp2_submit_goaway(h2c->ng, NGHTTP2_FLAG_NONE, h2c->last_stream_id,
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2_flush(h2c);
        if (!h2c->dead)
            h2_close(h2c);
        return;
    }
    while (c->io.read.ready && !h2c->dead) {
        ssize_t n = c->recv(c, in_buf, sizeof(in_buf));
        if (n == PT_IO_AGAIN)
            break;
        if (n <= 0) {
            h2_close(h2c);
            return;
        }
        h2c->in_recv = 1;
        ssize_t rv = nghttp2_session_mem_recv(h2c->ng, (const uint8_t *) in_buf, (size_t) n);
        h2c->in_recv = 0;
        if (rv < 0) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "http2 error: %s", nghttp2_strerror((int) rv));
            if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
                h2_close(h2c);
                return;
            }
            /* tell the client why, then close */
            if (rv == NGHTTP2_ERR_FLOODED)
                nghttp2_session_terminate_session(h2c->ng, NGHTTP2_ENHANCE_YOUR_CALM);
            else if (rv != NGHTTP2_ERR_CALLBACK_FAILURE)
                nghttp2_session_terminate_session(h2c->ng, NGHTTP2_PROTOCOL_ERROR);
            else
                nghttp2_session_terminate_session(h2c->ng, NGHTTP2_INTERNAL_ERROR);
            h2c->goaway = 1;
            h2_flush(h2c);
            if (!h2c->dead)
                h2_close(h2c);
            return;
        }
        if (h2c->out)      /* the peer does not read: stop reading too */
            break;
    }
    /* new streams start after this batch of events (posted): responses
     * that came in the same batch release their upstream connections
     * first, and all the output is written at once */
    if (!h2c->done_ev.posted)
        pt_event_post(&h2c->done_ev);
}

static void on_write(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    h2_conn_t *h2c = c->data;

    if (h2c == NULL || h2c->dead)
        return;
    if (ev->timedout) {
        ev->timedout = 0;
        pt_log_error(PT_LOG_INFO, &c->log, ETIMEDOUT, "client timed out");
        h2_close(h2c);
        return;
    }
    h2_check(h2c);
    /* reading may have stopped while output was blocked */
    if (!h2c->dead && h2c->out == NULL && c->io.read.ready)
        on_read(&c->io.read);
}

/* ------------------------------------------------------------------------ */

static void h2_start(pt_conn_t *c, const uint8_t *preread, size_t len)
{
    pt_http_addr_conf_t *addr = pt_http_addr_conf_get(c);
    h2_conn_t *h2c = calloc(1, sizeof(*h2c));
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;

    if (h2c == NULL)
        goto fail;
    h2c->c = c;
    h2c->addr = addr;
    h2c->srv = addr->default_server;
    (void) pt_conn_nodelay(c);   /* frames interleave: no Nagle (accept leaves it) */
    h2c->conf = h2conf(h2c->srv);
    h2c->start_last = &h2c->start;
    h2c->done_ev.handler = on_done;
    h2c->done_ev.data = h2c;
    h2c->done_ev.timer_index = SIZE_MAX;

    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_send_callback(cb, send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_data_source_read_length_callback(cb, read_length_cb);
    nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);

    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 1000);           /* PING/SETTINGS floods */
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    /* no RFC 7540 priority tree (deprecated by RFC 9113): streams are
     * served round robin by RFC 9218 urgency, and closed streams are not
     * kept around for the tree */
    nghttp2_option_set_no_closed_streams(opt, 1);
    /* rapid reset: a burst of max_concurrent_streams, then 50 per second */
    nghttp2_option_set_stream_reset_rate_limit(opt, (uint64_t) h2c->conf->max_concurrent_streams
                                                    + 100, 50);
    if (nghttp2_session_server_new2(&h2c->ng, cb, h2c, opt) != 0)
        goto fail;
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    cb = NULL;
    opt = NULL;

    {
        size_t limit = (size_t) (h2c->srv->large_client_header_buffers_num
                                 * h2c->srv->large_client_header_buffers_size);
        nghttp2_settings_entry iv[] = {
            { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t) h2c->conf->max_concurrent_streams },
            { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t) h2c->conf->body_preread_size },
            { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t) limit },
            { NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
        };
        if (nghttp2_submit_settings(h2c->ng, NGHTTP2_FLAG_NONE, iv, 4) != 0)
            goto fail;
        /* a large connection window: per-stream windows do the limiting */
        nghttp2_session_set_local_window_size(h2c->ng, NGHTTP2_FLAG_NONE, 0, 16 * 1024 * 1024);
    }

    c->data = h2c;
    c->io.read.handler = on_read;
    c->io.write.handler = on_write;
    pt_conn_reusable(c, 0);

    if (len) {
        h2c->in_recv = 1;
        ssize_t rv = nghttp2_session_mem_recv(h2c->ng, preread, len);
        h2c->in_recv = 0;
        if (rv < 0) {
            h2_close(h2c);
            return;
        }
    }
    pt_timer_add(&c->io.read, h2c->srv->client_header_timeout);
    if (c->io.read.ready)
        on_read(&c->io.read);
    else
        h2_check(h2c);
    return;

fail:
    pt_log_error(PT_LOG_ALERT, &c->log, 0, "cannot start an http2 session");
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
    if (h2c && h2c->ng)
        nghttp2_session_del(h2c->ng);
    free(h2c);
    pt_conn_close(c);
}

void pt_http2_init_connection(pt_conn_t *c)
{
    h2_start(c, NULL, 0);
}

/* ---- h2c prior knowledge --------------------------------------------------- */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void on_detect(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    char buf[sizeof(preface) - 1];
    ssize_t n;

    if (ev->timedout || c->close) {
        pt_conn_close(c);
        return;
    }
    n = recv(c->io.fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->io.read.ready = 0;
        return;
    }
    if (n <= 0) {
        pt_conn_close(c);
        return;
    }
    if (memcmp(buf, preface, (size_t) n) != 0) {
        pt_timer_del(&c->io.read);
        pt_conn_reusable(c, 0);
        pt_http_init_connection(c);   /* HTTP/1.x */
        return;
    }
    if ((size_t) n < sizeof(buf)) {
        c->io.read.ready = 0;          /* a prefix of the preface: wait */
        return;
    }
    pt_timer_del(&c->io.read);
    h2_start(c, NULL, 0);
}

static void on_detect_write(pt_event_t *ev)
{
}

void pt_http2_detect_connection(pt_conn_t *c)
{
    pt_http_addr_conf_t *addr = pt_http_addr_conf_get(c);
    /* proxy_protocol hook: the PROXY header comes before the preface */
    if (pt_proxy_protocol_start(c, addr, pt_http2_detect_connection))
        return;
    c->io.read.handler = on_detect;
    c->io.write.handler = on_detect_write;
    pt_conn_reusable(c, 1);
    pt_timer_add(&c->io.read, addr->default_server->client_header_timeout);
    if (c->io.read.ready)
        on_detect(&c->io.read);
}
