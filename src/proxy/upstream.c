/* The upstream state machine (HTTP/1.x to a backend):
 *
 *   start ─> [read the whole body when buffered] ─> connect (pool or new)
 *         ─> send head + body (streamed from the client with backpressure)
 *         ─> read and parse the response head (1xx skipped; 101 ─> tunnel)
 *         ─> relay the body: Content-Length, chunked or until close,
 *            each buffer read from the backend handed to the client writer
 *            as is. When the writer is full: with proxy_buffering on the
 *            backend goes on being read into an unlinked temp file (up to
 *            proxy_max_temp_file_size, then it waits), which the writer
 *            drains before buffers are passed directly again; with
 *            proxy_buffering off (or X-Accel-Buffering: no) the backend is
 *            not read until the writer drains (every byte is flushed as it
 *            arrives)
 *         ─> done: keep-alive pool or close (as soon as the backend's part
 *            is over, even while a spool still feeds the client); finalize.
 *
 * Failures before the response head was sent may go to the next peer
 * (proxy_next_upstream); otherwise 502/504, or a closed client connection
 * once the head is out (a truncated body is never presented as complete).
 *
 * Timers: connect and send timeouts on the upstream write event, the read
 * timeout on the upstream read event. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/variables.h"

#define MAX_RESPONSE_HEADERS 128
/* relay_body() yields after READS_PER_EVENT reads or RELAY_EVENT_BYTES body
 * bytes in one event (32 reads of the default proxy_buffers, as before the
 * large reads), so other connections get their turn */
#define READS_PER_EVENT      32
#define RELAY_EVENT_BYTES    (1024 * 1024)
/* The body is read from the backend in buffers of up to this size, bounded
 * by proxy_buffers (number x size) minus what the client writer still holds:
 * one recv and one writev move up to this many bytes instead of one
 * proxy_buffers buffer each. */
#define RELAY_READ_MAX       (64 * 1024)
/* While the other side keeps up (the writer holds nothing: all it was given
 * is in the kernel), a read may take this much (the largest pt_buf class):
 * fewer, larger batches, fewer wake-ups of the peer. A side that falls
 * behind is held to proxy_buffers again, so it holds at most that plus one
 * large read. */
#define RELAY_READ_BIG       (256 * 1024)

static void on_upstream_read(pt_event_t *ev);
static void on_upstream_write(pt_event_t *ev);
static void on_client_read(pt_http_request_t *r);
static void on_client_write(pt_http_request_t *r);
static void connect_peer(pt_upstream_t *u);
static void send_request(pt_upstream_t *u);
static void read_response_head(pt_upstream_t *u);
static void relay_body(pt_upstream_t *u);
static void drain_spool(pt_upstream_t *u);
static void next_upstream(pt_upstream_t *u, unsigned ft, const char *what, int err);
static void start_tls(pt_upstream_t *u);

static pt_log_t *ulog(pt_upstream_t *u)
{
    return &u->r->connection->log;
}

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */

pt_upstream_t *pt_upstream_create(pt_http_request_t *r, const pt_upstream_conf_t *conf,
                                  pt_upstream_group_t *group)
{
    pt_upstream_t *u = pt_pcalloc(r->pool, sizeof(*u));
    if (u == NULL)
        return NULL;
    if (pt_array_init(&u->states, r->pool, 1, sizeof(pt_upstream_state_t)) != 0)
        return NULL;
    u->r = r;
    u->conf = conf;
    u->group = group;
    u->body_fd = -1;
    u->spool_fd = -1;
    u->length = -1;
    u->headers_in.content_length_n = -1;
    u->buffering = conf->buffering ? 1 : 0;
    r->upstream = u;
    return u;
}

/* ------------------------------------------------------------------------ */
/* Finishing                                                                 */

static void close_upstream_conn(pt_upstream_t *u)
{
    if (u->c) {
        pt_conn_close(u->c);
        u->c = NULL;
    }
}

static void release_head_buf(pt_upstream_t *u)
{
    if (u->head_buf) {
        pt_buf_put(u->head_buf);
        u->head_buf = NULL;
    }
}

static void release_request_body(pt_upstream_t *u)
{
    pt_buf_put_chain(u->body);
    u->body = NULL;
    u->body_out = NULL;
    if (u->stream_buf) {
        pt_buf_put(u->stream_buf);
        u->stream_buf = NULL;
    }
    if (u->body_fd >= 0) {
        close(u->body_fd);
        u->body_fd = -1;
    }
}

static void finish_state(pt_upstream_t *u)
{
    if (u->state && u->state->response_time < 0)
        u->state->response_time = pt_current_msec - u->state->start;
}

/* Ends the upstream side and the request with rc (PT_OK: response complete;
 * a status: special response or, once the head is out, a cut connection). */
/* Releases the backend side: the peer (balancer), the connection (to the
 * keep-alive pool when the exchange was complete and clean), buffers. The
 * request may live on (draining a spool to a slow client). */
static void release_upstream(pt_upstream_t *u, int rc)
{
    if (u->upstream_done)
        return;
    u->upstream_done = 1;
    finish_state(u);

    pt_upstream_peer_t *peer = u->peer;
    if (u->peer) {
        u->group->balancer->free_peer(u, u->failed ? PT_UPSTREAM_PEER_FAILED
                                                   : PT_UPSTREAM_PEER_OK);
        u->peer = NULL;
    }

    if (u->c) {
        pt_conn_t *c = u->c;
        int pool = rc == PT_OK && u->keepalive && u->body_done && u->request_sent
                   && !u->failed && u->group->keepalive && !c->close && !c->io.read.eof
                   && !c->io.read.error && peer != NULL
                   && (int64_t) c->requests < u->group->keepalive_requests
                   && pt_current_msec - u->conn_created < u->group->keepalive_time;
        u->c = NULL;
        pt_timer_del(&c->io.read);
        pt_timer_del(&c->io.write);
        if (pool)
            pt_upstream_keepalive_put(u->group, peer, c, u->conn_created);
        else
            pt_conn_close(c);
    }
    release_head_buf(u);
    release_request_body(u);
}

void pt__upstream_finalize(pt_upstream_t *u, int rc)
{
    if (u->finished)
        return;
    u->finished = 1;
    release_upstream(u, rc);
    if (u->spool_fd >= 0) {
        close(u->spool_fd);
        u->spool_fd = -1;
    }

    pt_http_request_t *r = u->r;
    r->read_event_handler = NULL;
    r->write_event_handler = NULL;
    pt_http_finalize_request(r, rc);
}

static void log_upstream(pt_upstream_t *u, int level, int err, const char *what)
{
    /* nginx's shape: "connect() failed (111: Connection refused) while
     * connecting to upstream": the errno goes before the " while" part; the
     * connection's log context adds client, server, request and host */
    char msg[400];
    const char *w = strstr(what, " while ");
    if (err && w) {
        snprintf(msg, sizeof(msg), "%.*s (%d: %s)%s", (int) (w - what), what, err,
                 strerror(err), w);
        what = msg;
    } else if (err) {
        snprintf(msg, sizeof(msg), "%s (%d: %s)", what, err, strerror(err));
        what = msg;
    }
    if (u->peer)
        pt_log_error(level, ulog(u), 0, "%s, upstream: \"%s://%.*s\"", what,
                     u->ssl ? "https" : "http", (int) u->peer->name.len, u->peer->name.data);
    else
        pt_log_error(level, ulog(u), 0, "%s", what);
}

/* The client went away (or its writer failed): abandon the upstream side;
 * its connection is never reused. */
static void client_gone(pt_upstream_t *u, const char *while_what)
{
    if (!u->abort_reported) {
        u->abort_reported = 1;
        char msg[160];
        snprintf(msg, sizeof(msg), "client prematurely closed connection while %s", while_what);
        log_upstream(u, PT_LOG_INFO, 0, msg);
    }
    u->keepalive = 0;
    close_upstream_conn(u);
    if (u->state && u->state->status == 0)
        u->state->status = 499;
    pt__upstream_finalize(u, 499);
}

/* ------------------------------------------------------------------------ */
/* Start: body mode, buffered body                                           */

/* An unlinked temp file in client_body_temp_path (or /tmp). */
static int open_temp_file(pt_upstream_t *u)
{
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(u->r, pt_http_core_module);
    char path[4096];
    const char *dir = "/tmp";
    if (clcf->client_body_temp_path.len && clcf->client_body_temp_path.len < sizeof(path)) {
        memcpy(path, clcf->client_body_temp_path.data, clcf->client_body_temp_path.len);
        path[clcf->client_body_temp_path.len] = '\0';
        dir = path;
    }
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && dir == path)
        fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        pt_log_error(PT_LOG_CRIT, ulog(u), errno, "open() temp file in \"%s\" failed", dir);
    return fd;
}

static int open_body_file(pt_upstream_t *u)
{
    int fd = open_temp_file(u);
    if (fd < 0)
        return -1;
    u->body_fd = fd;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

/* Moves the in-memory body chain to the temp file. */
static int spill_body(pt_upstream_t *u)
{
    if (u->body_fd < 0 && open_body_file(u) != 0)
        return -1;
    for (pt_buf_t *b = u->body; b; b = b->next) {
        if (write_all(u->body_fd, b->pos, pt_buf_size(b)) != 0) {
            pt_log_error(PT_LOG_CRIT, ulog(u), errno, "write() to client body temp file failed");
            return -1;
        }
        u->body_file_size += (int64_t) pt_buf_size(b);
    }
    pt_buf_put_chain(u->body);
    u->body = NULL;
    return 0;
}

static void body_complete(pt_upstream_t *u)
{
    if (u->body_fd >= 0 && u->body) {
        if (spill_body(u) != 0) {
            pt__upstream_finalize(u, 500);
            return;
        }
    }
    u->body_out = u->body;
    if (u->create_request(u) != PT_OK) {
        pt__upstream_finalize(u, 500);
        return;
    }
    u->start_msec = pt_current_msec;
    connect_peer(u);
}

/* Reads the whole request body (memory up to client_body_buffer_size, then a
 * temp file) before connecting: the body can be replayed on a retry. */
static void read_buffered_body(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(r, pt_http_core_module);
    int64_t mem_limit = clcf->client_body_buffer_size > 0 ? clcf->client_body_buffer_size : 16384;
    size_t bsize = 16384;

    for (;;) {
        pt_buf_t *tail = u->body;
        while (tail && tail->next)
            tail = tail->next;
        if (tail == NULL || pt_buf_room(tail) == 0) {
            pt_buf_t *b = pt_buf_get(bsize);
            if (b == NULL) {
                pt__upstream_finalize(u, 500);
                return;
            }
            if (tail)
                tail->next = b;
            else
                u->body = b;
            tail = b;
        }
        int status = 0;
        ssize_t n = r->proto->read_body(r, tail->last, pt_buf_room(tail), &status);
        if (n > 0) {
            tail->last += n;
            u->body_len += n;
            if (u->body_fd >= 0 || u->body_len > mem_limit) {
                if (u->body_fd < 0) {
                    pt_log_error(PT_LOG_WARN, ulog(u), 0,
                                 "a client request body is buffered to a temporary file");
                }
                if (pt_buf_room(tail) == 0 || u->body_fd < 0) {
                    if (spill_body(u) != 0) {
                        pt__upstream_finalize(u, 500);
                        return;
                    }
                }
            }
            continue;
        }
        if (n == 0) {
            body_complete(u);
            return;
        }
        if (n == PT_AGAIN) {
            u->body_wait = 1;
            return;
        }
        /* client gone or bad body */
        if (status >= 400) {
            pt__upstream_finalize(u, status);
            return;
        }
        client_gone(u, "reading client request body");
        return;
    }
}

int pt_upstream_start(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    r->read_event_handler = on_client_read;
    r->write_event_handler = on_client_write;

    if (u->body_mode == PT_UPSTREAM_BODY_BUFFERED) {
        read_buffered_body(u);
        return PT_DONE;
    }
    if (u->create_request(u) != PT_OK)
        return 500;
    u->start_msec = pt_current_msec;
    connect_peer(u);
    return PT_DONE;
}

/* ------------------------------------------------------------------------ */
/* Client events                                                             */

/* The request was terminated under the upstream (an HTTP/2 stream reset by
 * the client, a send timeout): nothing more can reach the client, so the
 * backend side ends now rather than when the backend finishes (with the
 * read timer stopped while the writer is full, that could be never). */
static int client_aborted(pt_upstream_t *u)
{
    if (!u->r->aborted || (u->conf->ignore_client_abort && !u->header_done))
        return 0;
    client_gone(u, u->header_done ? "sending response to client"
                                  : "waiting for upstream response");
    return 1;
}

static void on_client_read(pt_http_request_t *r)
{
    pt_upstream_t *u = r->upstream;
    if (u == NULL || u->finished)
        return;
    if (client_aborted(u))
        return;
    if (u->body_wait) {
        u->body_wait = 0;
        if (u->body_mode == PT_UPSTREAM_BODY_BUFFERED && u->c == NULL && !u->connected)
            read_buffered_body(u);
        else if (u->c)
            send_request(u);
        return;
    }
    if (u->body_mode == PT_UPSTREAM_BODY_STREAM && !u->stream_eof)
        return;        /* unread body bytes: not a sign of anything */

    /* Body done: readable means EOF, an error, or pipelined bytes. */
    if (u->conf->ignore_client_abort && !u->header_done)
        return;                  /* the writer reports a gone client later */
    pt_conn_t *c = r->connection;
    if (c->io.read.eof || c->io.read.error) {
        client_gone(u, u->header_done ? "sending response to client"
                                      : "waiting for upstream response");
        return;
    }
    char ch;
    ssize_t n = recv(c->io.fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        client_gone(u, u->header_done ? "sending response to client"
                                      : "waiting for upstream response");
        return;
    }
}

static void on_client_write(pt_http_request_t *r)
{
    pt_upstream_t *u = r->upstream;
    if (u == NULL || u->finished)
        return;
    if (client_aborted(u))
        return;
    if (u->tunnel_wait) {
        read_response_head(u);      /* resumes the 101 hand-over */
        return;
    }
    if (u->spooling) {
        u->client_wait = 0;
        drain_spool(u);
        return;
    }
    if (u->client_wait) {
        u->client_wait = 0;
        relay_body(u);
    }
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */

static void connect_peer(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;

    if (u->peer == NULL) {
        int rc = u->group->balancer->get_peer(u);
        if (rc != PT_OK) {
            log_upstream(u, PT_LOG_ERR, 0, "no live upstreams while connecting to upstream");
            pt_upstream_state_t *st = pt_array_push(&u->states);
            if (st) {
                memset(st, 0, sizeof(*st));
                pt_str_set(&st->addr, "");
                st->addr = u->group->name;
                st->status = 502;
                st->connect_time = st->header_time = st->response_time = -1;
                st->start = pt_current_msec;
                u->state = st;
            }
            pt__upstream_finalize(u, 502);
            return;
        }
    }

    pt_upstream_state_t *st = pt_array_push(&u->states);
    if (st == NULL) {
        pt__upstream_finalize(u, 500);
        return;
    }
    memset(st, 0, sizeof(*st));
    st->addr = u->peer->name;
    st->start = pt_current_msec;
    st->connect_time = st->header_time = st->response_time = -1;
    u->state = st;

    u->head_sent = 0;
    u->any_sent = 0;
    u->request_sent = 0;
    u->body_sent = 0;
    u->connected = 0;
    u->reused = 0;
    u->keepalive = 0;

    if (u->group->keepalive && !u->no_pool) {
        uint64_t reqs = 0;
        int64_t created = 0;
        pt_conn_t *c = pt_upstream_keepalive_get(u->group, u->peer, &created, &reqs);
        if (c && (c->ssl != NULL) != (u->ssl != NULL)) {
            /* the group is also used with the other scheme elsewhere */
            pt_conn_close(c);
            c = NULL;
        }
        if (c) {
            u->c = c;
            u->reused = 1;
            u->connected = 1;
            u->conn_created = created;
            c->requests = reqs + 1;
            c->data = u;
            c->log = r->connection->log;
            c->io.read.handler = on_upstream_read;
            c->io.write.handler = on_upstream_write;
            st->connect_time = 0;
            send_request(u);
            return;
        }
    }
    u->no_pool = 0;

    const pt_upstream_peer_t *p = u->peer;
    int fd = socket(p->sockaddr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_upstream(u, PT_LOG_ALERT, errno, "socket() failed");
        pt__upstream_finalize(u, 502);
        return;
    }
    if (p->sockaddr.sa.sa_family != AF_UNIX) {
        int one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int rc = connect(fd, &p->sockaddr.sa, p->socklen);
    if (rc != 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        next_upstream(u, PT_UPSTREAM_FT_ERROR, "connect() failed while connecting to upstream", err);
        return;
    }
    pt_conn_t *c = pt_conn_get(fd, &r->connection->log);
    if (c == NULL) {
        close(fd);
        pt__upstream_finalize(u, 502);
        return;
    }
    c->upstream = 1;
    c->unix_socket = p->sockaddr.sa.sa_family == AF_UNIX;
    c->data = u;
    c->io.read.handler = on_upstream_read;
    c->io.write.handler = on_upstream_write;
    c->requests = 1;
    u->c = c;
    u->conn_created = pt_current_msec;
    if (rc == 0 && !u->ssl) {
        u->connected = 1;
        st->connect_time = pt_current_msec - st->start;
        send_request(u);
        return;
    }
    pt_timer_add(&c->io.write, u->conf->connect_timeout);
    if (rc == 0)
        start_tls(u);
}

/* proxy_pass https://: the TLS handshake on a fresh connection, under the
 * connect timer (the TLS code owns c's event handlers meanwhile); a pooled
 * connection is TLS already. The connect time includes the handshake. */
static void on_tls_done(pt_conn_t *c, int rc)
{
    pt_upstream_t *u = c->data;
    int timedout = c->io.write.timedout || c->io.read.timedout;

    c->io.write.timedout = 0;
    c->io.read.timedout = 0;
    c->io.read.handler = on_upstream_read;
    c->io.write.handler = on_upstream_write;
    if (u == NULL || u->finished || u->c != c)
        return;
    if (rc != 0) {
        /* the TLS code logged why (verify error, handshake failure, timeout) */
        next_upstream(u, timedout ? PT_UPSTREAM_FT_TIMEOUT : PT_UPSTREAM_FT_ERROR, NULL, 0);
        return;
    }
    pt_timer_del(&c->io.write);
    u->connected = 1;
    u->state->connect_time = pt_current_msec - u->state->start;
    send_request(u);
}

static void start_tls(pt_upstream_t *u)
{
    pt_tls_upstream_connect(u->c, u->ssl, &u->ssl_host, on_tls_done);
}

/* ------------------------------------------------------------------------ */
/* Sending the request                                                       */

/* Streaming: takes the next piece of the client's body into u->stream_buf
 * (framed as a chunk when re-chunking). PT_OK (data or the end), PT_AGAIN,
 * PT_ERROR (finalized). */
#define CHUNK_HDR 18
static int stream_fill(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    /* one buffer per streamed request: proxy_buffers (number x size), at
     * least 16 KiB, at most RELAY_READ_MAX (or one proxy_buffers buffer if
     * that is larger) while the backend falls behind; RELAY_READ_BIG while
     * it takes every write whole (fewer, larger reads and writes). Either
     * way one buffer: a slow backend holds at most one large read. */
    size_t bsize = (size_t) (u->conf->bufs_num * u->conf->bufs_size);
    if (bsize < 16384)
        bsize = 16384;
    if (bsize > RELAY_READ_MAX)
        bsize = RELAY_READ_MAX;
    if (!u->stream_slow && bsize < RELAY_READ_BIG)
        bsize = RELAY_READ_BIG;
    if ((size_t) u->conf->bufs_size > bsize)
        bsize = (size_t) u->conf->bufs_size;
    if (u->body_left >= 0 && !u->chunked_out && (int64_t) bsize > u->body_left)
        bsize = u->body_left > 4096 ? (size_t) u->body_left : 4096;   /* the rest fits */
    if (u->stream_buf) {
        /* empty here (only filled once written out): resize it when its
         * class is not the one wanted */
        size_t cap = (size_t) (u->stream_buf->end - u->stream_buf->start);
        if (cap < bsize || cap / 2 >= bsize) {
            pt_buf_put(u->stream_buf);
            u->stream_buf = NULL;
        }
    }
    if (u->stream_buf == NULL) {
        u->stream_buf = pt_buf_get(bsize);
        if (u->stream_buf == NULL) {
            pt__upstream_finalize(u, 500);
            return PT_ERROR;
        }
    }
    pt_buf_t *b = u->stream_buf;
    size_t cap = (size_t) (b->end - b->start);
    char *data = b->start + (u->chunked_out ? CHUNK_HDR : 0);
    size_t room = cap - (u->chunked_out ? CHUNK_HDR + 2 : 0);
    if (u->body_left >= 0 && !u->chunked_out && (int64_t) room > u->body_left)
        room = (size_t) u->body_left;

    int status = 0;
    ssize_t n = room ? r->proto->read_body(r, data, room, &status) : 0;
    if (n > 0) {
        u->stream_started = 1;
        if (u->body_left > 0)
            u->body_left -= n;
        if (u->chunked_out) {
            char hdr[CHUNK_HDR + 1];
            int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", (size_t) n);
            b->pos = data - hl;
            memcpy(b->pos, hdr, (size_t) hl);
            b->last = data + n;
            b->last[0] = '\r';
            b->last[1] = '\n';
            b->last += 2;
        } else {
            b->pos = data;
            b->last = data + n;
        }
        return PT_OK;
    }
    if (n == 0) {
        u->stream_eof = 1;
        if (u->chunked_out) {
            memcpy(b->start, "0\r\n\r\n", 5);
            b->pos = b->start;
            b->last = b->start + 5;
        } else {
            b->pos = b->last = b->start;
        }
        return PT_OK;
    }
    if (n == PT_AGAIN) {
        /* idle: give the buffer back so a waiting request holds nothing */
        pt_buf_put(u->stream_buf);
        u->stream_buf = NULL;
        u->body_wait = 1;
        return PT_AGAIN;
    }
    if (status >= 400) {
        /* bad body or too large: the backend saw part of it; that
         * connection is finished */
        u->keepalive = 0;
        close_upstream_conn(u);
        pt__upstream_finalize(u, u->header_done ? PT_ERROR : status);
        return PT_ERROR;
    }
    client_gone(u, "sending request body to upstream");
    return PT_ERROR;
}

static void request_done(pt_upstream_t *u)
{
    u->request_sent = 1;
    u->body_sent = 1;
    pt_timer_del(&u->c->io.write);
    if (!u->header_done) {
        pt_timer_add(&u->c->io.read, u->conf->read_timeout);
        if (u->c->io.read.ready)
            read_response_head(u);
    }
}

static void send_request(pt_upstream_t *u)
{
    pt_conn_t *c = u->c;

    while (!u->request_sent) {
        struct iovec iov[16];
        int n = 0;

        if (u->head_sent < u->request_head.len) {
            iov[n].iov_base = u->request_head.data + u->head_sent;
            iov[n].iov_len = u->request_head.len - u->head_sent;
            n++;
        }
        if (u->body_mode == PT_UPSTREAM_BODY_BUFFERED && u->body_fd < 0) {
            for (pt_buf_t *b = u->body_out; b && n < 16; b = b->next) {
                if (pt_buf_size(b) == 0)
                    continue;
                iov[n].iov_base = b->pos;
                iov[n].iov_len = pt_buf_size(b);
                n++;
            }
        } else if (u->body_mode == PT_UPSTREAM_BODY_STREAM && u->stream_buf
                   && pt_buf_size(u->stream_buf)) {
            iov[n].iov_base = u->stream_buf->pos;
            iov[n].iov_len = pt_buf_size(u->stream_buf);
            n++;
        }

        if (n == 0) {
            if (u->body_mode == PT_UPSTREAM_BODY_BUFFERED && u->body_fd >= 0
                && u->body_file_sent < u->body_file_size) {
                off_t off = (off_t) u->body_file_sent;
                size_t want = (size_t) (u->body_file_size - u->body_file_sent);
                if (want > (1u << 20))
                    want = 1u << 20;
                ssize_t w;
                if (c->ssl) {
                    /* no sendfile through TLS: a record's worth at a time,
                     * read again from the same offset after PT_IO_AGAIN (so
                     * a retried write sees the same bytes) */
                    char fbuf[16384];
                    if (want > sizeof(fbuf))
                        want = sizeof(fbuf);
                    ssize_t rd = pread(u->body_fd, fbuf, want, off);
                    if (rd <= 0) {
                        next_upstream(u, PT_UPSTREAM_FT_ERROR,
                                      "pread() of the request body file failed while sending "
                                      "request to upstream", rd < 0 ? errno : 0);
                        return;
                    }
                    w = c->send(c, fbuf, (size_t) rd);
                    if (w == PT_IO_AGAIN) {
                        pt_timer_add(&c->io.write, u->conf->send_timeout);
                        return;
                    }
                } else {
                    /* the head may still be staged (sendq.c): it goes first */
                    int sync = pt_conn_sync(c);
                    if (sync == PT_IO_AGAIN) {
                        pt_timer_add(&c->io.write, u->conf->send_timeout);
                        return;
                    }
                    if (sync < 0) {
                        next_upstream(u, PT_UPSTREAM_FT_ERROR,
                                      "writev() failed while sending request to upstream", errno);
                        return;
                    }
                    w = sendfile(c->io.fd, u->body_fd, &off, want);
                    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                        c->io.write.ready = 0;
                        pt_timer_add(&c->io.write, u->conf->send_timeout);
                        return;
                    }
                }
                if (w <= 0) {
                    next_upstream(u, PT_UPSTREAM_FT_ERROR,
                                  c->ssl ? "SSL_write() failed while sending request to upstream"
                                         : "sendfile() failed while sending request to upstream",
                                  errno);
                    return;
                }
                u->any_sent = 1;
                u->body_file_sent += w;
                continue;
            }
            if (u->body_mode == PT_UPSTREAM_BODY_STREAM && !u->stream_eof) {
                int rc = stream_fill(u);
                if (rc == PT_OK)
                    continue;
                if (rc == PT_AGAIN)
                    pt_timer_del(&c->io.write);
                return;
            }
            if (u->body_mode == PT_UPSTREAM_BODY_STREAM && u->stream_buf) {
                pt_buf_put(u->stream_buf);
                u->stream_buf = NULL;
            }
            request_done(u);
            return;
        }

        ssize_t w = c->writev(c, iov, n);
        if (w == PT_IO_AGAIN) {
            u->stream_slow = 1;
            pt_timer_add(&c->io.write, u->conf->send_timeout);
            return;
        }
        if (w < 0) {
            next_upstream(u, PT_UPSTREAM_FT_ERROR,
                          "writev() failed while sending request to upstream", errno);
            return;
        }
        u->any_sent = 1;
        size_t left = (size_t) w;
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += iov[i].iov_len;
        u->stream_slow = left < total;
        if (u->head_sent < u->request_head.len) {
            size_t k = u->request_head.len - u->head_sent;
            if (k > left)
                k = left;
            u->head_sent += k;
            left -= k;
        }
        if (u->body_mode == PT_UPSTREAM_BODY_BUFFERED && u->body_fd < 0) {
            while (left && u->body_out) {
                pt_buf_t *b = u->body_out;
                size_t k = pt_buf_size(b);
                if (k > left)
                    k = left;
                b->pos += k;
                left -= k;
                if (pt_buf_size(b) == 0)
                    u->body_out = b->next;
            }
            while (u->body_out && pt_buf_size(u->body_out) == 0)
                u->body_out = u->body_out->next;
        } else if (u->body_mode == PT_UPSTREAM_BODY_STREAM && u->stream_buf) {
            u->stream_buf->pos += left;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Upstream events                                                           */

static void on_upstream_write(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    pt_upstream_t *u = c->data;
    if (u == NULL || u->finished)
        return;

    if (c->close) {
        close_upstream_conn(u);
        pt__upstream_finalize(u, u->header_done ? PT_ERROR : 502);
        return;
    }
    if (ev->timedout) {
        ev->timedout = 0;
        if (!u->connected)
            next_upstream(u, PT_UPSTREAM_FT_TIMEOUT,
                          "upstream timed out (110: Connection timed out) while connecting to upstream", 0);
        else
            next_upstream(u, PT_UPSTREAM_FT_TIMEOUT,
                          "upstream timed out (110: Connection timed out) while sending request to upstream", 0);
        return;
    }
    if (!u->connected) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == 0 && ev->error)
            err = ECONNREFUSED;
        if (err) {
            next_upstream(u, PT_UPSTREAM_FT_ERROR, "connect() failed while connecting to upstream", err);
            return;
        }
        if (u->ssl) {
            start_tls(u);          /* keeps the connect timer */
            return;
        }
        u->connected = 1;
        u->state->connect_time = pt_current_msec - u->state->start;
        pt_timer_del(&c->io.write);
    }
    if (!u->request_sent && !u->header_done && !u->body_wait)
        send_request(u);
}

static void on_upstream_read(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    pt_upstream_t *u = c->data;
    if (u == NULL || u->finished)
        return;

    if (c->close) {
        close_upstream_conn(u);
        pt__upstream_finalize(u, u->header_done ? PT_ERROR : 502);
        return;
    }
    if (ev->timedout) {
        ev->timedout = 0;
        if (!u->header_done) {
            next_upstream(u, PT_UPSTREAM_FT_TIMEOUT,
                          "upstream timed out (110: Connection timed out) while reading response header from upstream", 0);
        } else {
            log_upstream(u, PT_LOG_ERR, 0,
                         "upstream timed out (110: Connection timed out) while reading upstream");
            u->failed = 1;
            close_upstream_conn(u);
            pt__upstream_finalize(u, PT_ERROR);
        }
        return;
    }
    if (!u->connected)
        return;          /* the write event reports the connect result */
    if (!u->header_done)
        read_response_head(u);
    else if (!u->client_wait || u->spooling)
        relay_body(u);
}

/* ------------------------------------------------------------------------ */
/* Retry or fail                                                             */

static unsigned status_ft(int status)
{
    switch (status) {
    case 500: return PT_UPSTREAM_FT_HTTP_500;
    case 502: return PT_UPSTREAM_FT_HTTP_502;
    case 503: return PT_UPSTREAM_FT_HTTP_503;
    case 504: return PT_UPSTREAM_FT_HTTP_504;
    case 403: return PT_UPSTREAM_FT_HTTP_403;
    case 404: return PT_UPSTREAM_FT_HTTP_404;
    case 429: return PT_UPSTREAM_FT_HTTP_429;
    default:  return 0;
    }
}

static int can_retry(pt_upstream_t *u, unsigned ft, int stale)
{
    const pt_upstream_conf_t *cf = u->conf;
    pt_http_request_t *r = u->r;
    if (r->header_sent || u->header_done)
        return 0;
    if (!stale) {
        if ((cf->next_upstream & PT_UPSTREAM_FT_OFF) || !(cf->next_upstream & ft))
            return 0;
        if (u->tries == 0)
            return 0;
        if (cf->next_upstream_tries && u->states.nelts >= (size_t) cf->next_upstream_tries)
            return 0;
        if (cf->next_upstream_timeout
            && pt_current_msec - u->start_msec >= cf->next_upstream_timeout)
            return 0;
    }
    if (u->body_mode == PT_UPSTREAM_BODY_STREAM && u->stream_started)
        return 0;                     /* the body cannot be replayed */
    if (u->any_sent && (r->method & (PT_HTTP_POST | PT_HTTP_PATCH))
        && !(cf->next_upstream & PT_UPSTREAM_FT_NON_IDEMPOTENT))
        return 0;
    return 1;
}

static void next_upstream(pt_upstream_t *u, unsigned ft, const char *what, int err)
{
    int status = ft == PT_UPSTREAM_FT_TIMEOUT ? 504 : 502;
    int http = (ft & (PT_UPSTREAM_FT_HTTP_500 | PT_UPSTREAM_FT_HTTP_502 | PT_UPSTREAM_FT_HTTP_503
                      | PT_UPSTREAM_FT_HTTP_504 | PT_UPSTREAM_FT_HTTP_403
                      | PT_UPSTREAM_FT_HTTP_404 | PT_UPSTREAM_FT_HTTP_429)) != 0;
    /* a pooled connection the backend closed before answering: not the
     * peer's fault, try once more on a fresh connection */
    int stale = u->reused && ft == PT_UPSTREAM_FT_ERROR && u->state
                && u->state->bytes_received == 0;

    if (what && !stale)
        log_upstream(u, ft == PT_UPSTREAM_FT_TIMEOUT ? PT_LOG_ERR : PT_LOG_ERR, err, what);
    if (u->state) {
        if (u->state->status == 0)
            u->state->status = status;
        finish_state(u);
    }
    close_upstream_conn(u);
    release_head_buf(u);

    if (u->peer && !stale) {
        int failed = !(ft & (PT_UPSTREAM_FT_HTTP_403 | PT_UPSTREAM_FT_HTTP_404));
        u->group->balancer->free_peer(u, failed ? PT_UPSTREAM_PEER_FAILED : PT_UPSTREAM_PEER_OK);
        u->peer = NULL;
    }
    int retry = can_retry(u, ft, stale);
    if (u->peer && !retry) {
        u->group->balancer->free_peer(u, PT_UPSTREAM_PEER_OK);
        u->peer = NULL;
    }
    if (!retry) {
        if (http && u->state)
            status = u->state->status;
        pt__upstream_finalize(u, status);
        return;
    }

    /* reset the per-try state and go again */
    u->no_pool = stale ? 1 : 0;
    u->header_done = 0;
    u->interim = 0;
    memset(&u->headers_in, 0, sizeof(u->headers_in));
    u->headers_in.content_length_n = -1;
    u->length = -1;
    for (pt_buf_t *b = u->body; b; b = b->next)
        b->pos = b->start;
    u->body_out = u->body;
    u->body_file_sent = 0;
    connect_peer(u);
}

/* ------------------------------------------------------------------------ */
/* The response head                                                         */

static int header_eq(const pt_str_t *name, const char *lit)
{
    return pt_str_caseeq_lit(name, lit);
}

static int has_token(const pt_str_t *v, const char *tok)
{
    size_t n = strlen(tok);
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
        if ((size_t) (e - s) == n && pt_strncasecmp(s, tok, n) == 0)
            return 1;
    }
    return 0;
}

/* Copies the head's headers into r->pool once (one allocation for the
 * strings) so they outlive the buffer. */
static int copy_headers(pt_upstream_t *u, const char *base, size_t head_len)
{
    pt_http_request_t *r = u->r;
    pt_h1_response_t *res = u->res;
    char *copy = pt_pnalloc(r->pool, head_len);
    if (copy == NULL)
        return -1;
    memcpy(copy, base, head_len);
    if (pt_array_init(&u->headers_in.headers, r->pool, res->nheaders ? res->nheaders : 1,
                      sizeof(pt_http_header_t)) != 0)
        return -1;
    for (size_t i = 0; i < res->nheaders; i++) {
        pt_http_header_t *h = pt_array_push(&u->headers_in.headers);
        h->name.data = copy + (res->headers[i].name.data - base);
        h->name.len = res->headers[i].name.len;
        h->value.data = res->headers[i].value.len ? copy + (res->headers[i].value.data - base) : copy;
        h->value.len = res->headers[i].value.len;
        h->hash = 0;
        h->deleted = 0;
        /* the parser's view points into the copy from now on */
        res->headers[i].name = h->name;
        res->headers[i].value = h->value;
    }
    if (res->reason.len)
        res->reason.data = copy + (res->reason.data - base);
    return 0;
}

static void start_tunnel(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    pt_buf_t *preread = NULL;
    /* detach flushes the 101 head itself; it refuses while the client's
     * socket is full: then wait for the writer to drain */
    pt_conn_t *client = r->proto->detach ? r->proto->detach(r, &preread) : NULL;
    if (client == NULL && r->proto->detach && r->proto->pending(r) > 0 && !r->aborted) {
        u->tunnel_wait = 1;
        return;
    }
    u->tunnel_wait = 0;
    if (client == NULL) {
        log_upstream(u, PT_LOG_ERR, 0, "cannot upgrade this connection");
        close_upstream_conn(u);
        pt__upstream_finalize(u, PT_ERROR);
        return;
    }
    pt_buf_t *up_pre = u->head_buf;
    u->head_buf = NULL;
    if (up_pre && pt_buf_size(up_pre) == 0) {
        pt_buf_put(up_pre);
        up_pre = NULL;
    }
    pt_timer_del(&u->c->io.read);
    pt_timer_del(&u->c->io.write);
    /* From here the tunnel owns both connections; the request stays open
     * (and is logged, with the tunnel's duration and bytes) until the
     * tunnel ends: tunnel.c calls pt__upstream_finalize then. */
    pt_conn_t *uc = u->c;
    u->c = NULL;
    r->read_event_handler = NULL;
    r->write_event_handler = NULL;
    if (pt_upstream_tunnel_start(u, uc, client, preread, up_pre) != PT_OK) {
        pt_buf_put(preread);
        pt_buf_put(up_pre);
        pt_conn_close(client);
        pt_conn_close(uc);
        pt__upstream_finalize(u, PT_ERROR);
    }
}

/* Validates framing headers. Returns NULL or the reason for a 502. */
static const char *scan_framing(pt_upstream_t *u)
{
    pt_h1_response_t *res = u->res;
    pt_upstream_headers_in_t *hi = &u->headers_in;
    int te = 0;
    hi->status = res->status;
    hi->content_length_n = -1;
    for (size_t i = 0; i < res->nheaders; i++) {
        pt_h1_header_t *h = &res->headers[i];
        if (header_eq(&h->name, "content-length")) {
            int64_t n = pt_atoi64(h->value.data, h->value.len);
            if (n < 0)
                return "upstream sent invalid \"Content-Length\" header";
            if (hi->content_length_n >= 0 && hi->content_length_n != n)
                return "upstream sent duplicate header line: \"Content-Length\"";
            hi->content_length_n = n;
        } else if (header_eq(&h->name, "transfer-encoding")) {
            if (te || !pt_str_caseeq_lit(&h->value, "chunked"))
                return "upstream sent unknown \"Transfer-Encoding\"";
            te = 1;
        } else if (header_eq(&h->name, "connection")) {
            if (has_token(&h->value, "close"))
                hi->connection_close = 1;
            if (has_token(&h->value, "keep-alive"))
                hi->keep_alive = 1;
        }
    }
    if (te && hi->content_length_n >= 0)
        return "upstream sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time";
    hi->chunked = te;
    if (res->version < 11 && !hi->keep_alive)
        hi->connection_close = 1;
    return NULL;
}

static void handle_head(pt_upstream_t *u, pt_h1_response_t *res, size_t head_len)
{
    pt_http_request_t *r = u->r;
    pt_buf_t *b = u->head_buf;

    u->res = res;
    u->state->status = res->status;
    u->state->header_time = pt_current_msec - u->state->start;

    const char *bad = scan_framing(u);
    if (bad) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s while reading response header from upstream", bad);
        next_upstream(u, PT_UPSTREAM_FT_INVALID_HEADER, msg, 0);
        return;
    }
    if (res->status == 101 && !u->upgrade_request) {
        next_upstream(u, PT_UPSTREAM_FT_INVALID_HEADER,
                      "upstream sent \"101 Switching Protocols\" without an upgrade request "
                      "while reading response header from upstream", 0);
        return;
    }

    unsigned ft = status_ft(res->status);
    if (ft && can_retry(u, ft, 0)) {
        next_upstream(u, ft, NULL, 0);
        return;
    }

    if (copy_headers(u, b->pos, head_len) != 0) {
        pt__upstream_finalize(u, 500);
        return;
    }
    b->pos += head_len;
    u->header_done = 1;
    pt_timer_del(&u->c->io.read);

    int rc = u->process_header(u);
    u->res = NULL;
    if (rc != PT_OK) {
        /* intercepted or refused: this connection's response is not read */
        close_upstream_conn(u);
        if (rc >= 500 && rc != 501)
            u->failed = 0;
        pt__upstream_finalize(u, rc);
        return;
    }

    u->keepalive = u->ka_request && !u->headers_in.connection_close;
    if (res->status == 101) {
        u->upgrade = 1;
        u->keepalive = 0;
        if (pt_http_send_header(r) == PT_ERROR) {
            client_gone(u, "sending response header to client");
            return;
        }
        start_tunnel(u);
        return;
    }

    if (r->header_only || (r->method & PT_HTTP_HEAD) || res->status == 204 || res->status == 304 || res->status < 200) {
        u->no_body = 1;
        u->length = 0;
    } else if (u->headers_in.chunked) {
        u->length = -1;
    } else if (u->headers_in.content_length_n >= 0) {
        u->length = u->headers_in.content_length_n;
    } else {
        u->until_close = 1;
        u->keepalive = 0;
    }
    if (u->no_body || u->length == 0)
        u->body_done = 1;
    if (u->no_body && pt_buf_size(b) > 0)
        u->keepalive = 0;           /* bytes where none may be */

    if (pt_http_send_header(r) == PT_ERROR) {
        client_gone(u, "sending response header to client");
        return;
    }
    if (!u->request_sent) {
        /* answered before the whole request was sent: stop sending; the
         * connection cannot be reused */
        u->keepalive = 0;
        pt_timer_del(&u->c->io.write);
    }
    relay_body(u);
}

static void read_response_head(pt_upstream_t *u)
{
    pt_conn_t *c = u->c;

    if (u->tunnel_wait) {
        start_tunnel(u);
        return;
    }

    for (;;) {
        if (u->head_buf == NULL) {
            u->head_buf = pt_buf_get((size_t) u->conf->buffer_size);
            if (u->head_buf == NULL) {
                pt__upstream_finalize(u, 500);
                return;
            }
            /* the buffer may be of a larger class: respect the configured size */
            u->head_buf->end = u->head_buf->start + u->conf->buffer_size;
        }
        pt_buf_t *b = u->head_buf;

        if (pt_buf_size(b) > 0) {
            pt_h1_header_t hdrs[MAX_RESPONSE_HEADERS];
            pt_h1_response_t res;
            memset(&res, 0, sizeof(res));
            res.headers = hdrs;
            res.nheaders = MAX_RESPONSE_HEADERS;
            int rc = pt_h1_parse_response(b->pos, pt_buf_size(b), &res);
            if (rc >= 0) {
                if (res.status >= 100 && res.status < 200 && res.status != 101) {
                    /* interim response (100 Continue, 103): not forwarded */
                    b->pos += rc;
                    if (b->pos == b->last)
                        b->pos = b->last = b->start;
                    continue;
                }
                handle_head(u, &res, (size_t) rc);
                return;
            }
            if (rc == PT_H1_ERROR) {
                next_upstream(u, PT_UPSTREAM_FT_INVALID_HEADER,
                              "upstream sent invalid header while reading response header from upstream", 0);
                return;
            }
            /* need more */
            if (pt_buf_room(b) == 0) {
                if (b->pos > b->start) {
                    size_t n = pt_buf_size(b);
                    memmove(b->start, b->pos, n);
                    b->pos = b->start;
                    b->last = b->start + n;
                } else {
                    next_upstream(u, PT_UPSTREAM_FT_INVALID_HEADER,
                                  "upstream sent too big header while reading response header from upstream", 0);
                    return;
                }
            }
        }

        ssize_t n = c->recv(c, b->last, pt_buf_room(b));
        if (n == PT_IO_AGAIN) {
            if (u->request_sent)
                pt_timer_add(&c->io.read, u->conf->read_timeout);
            return;
        }
        if (n == 0) {
            next_upstream(u, PT_UPSTREAM_FT_ERROR,
                          "upstream prematurely closed connection while reading response header from upstream", 0);
            return;
        }
        if (n < 0) {
            next_upstream(u, PT_UPSTREAM_FT_ERROR,
                          "recv() failed while reading response header from upstream", errno);
            return;
        }
        b->last += n;
        u->state->bytes_received += n;
    }
}

/* ------------------------------------------------------------------------ */
/* The response body                                                         */

/* Decodes the chunked framing of b in place: data slices are moved left over
 * the framing bytes (a single slice needs no move). Returns PT_H1_OK,
 * PT_H1_DONE or PT_H1_ERROR. */
static int dechunk(pt_upstream_t *u, pt_buf_t *b)
{
    char *in = b->pos, *end = b->last, *out = b->pos;
    char *first = NULL;
    int rc = PT_H1_AGAIN;

    while (in < end) {
        size_t consumed = 0, dlen = 0;
        const char *data = NULL;
        rc = pt_h1_parse_chunked(&u->chunked, in, (size_t) (end - in), &consumed, &data, &dlen);
        if (rc == PT_H1_ERROR)
            return PT_H1_ERROR;
        if (dlen) {
            if (first == NULL && out == b->pos) {
                /* first slice: point at it, no move */
                first = (char *) data;
                out = (char *) data + dlen;
            } else {
                if (first) {
                    /* switch to compaction: move the first slice to pos */
                    size_t fl = (size_t) (out - first);
                    memmove(b->pos, first, fl);
                    out = b->pos + fl;
                    first = NULL;
                }
                memmove(out, data, dlen);
                out += dlen;
            }
        }
        in += consumed;
        if (rc == PT_H1_DONE) {
            if (in < end)
                u->keepalive = 0;   /* data after the last chunk */
            break;
        }
        if (consumed == 0 && dlen == 0)
            break;
    }
    if (first) {
        b->pos = first;
        b->last = out;
    } else {
        b->last = out;
    }
    return rc == PT_H1_DONE ? PT_H1_DONE : PT_H1_OK;
}

static int spool_allowed(pt_upstream_t *u)
{
    return u->buffering && u->conf->max_temp_file_size > 0;
}

/* Appends b's bytes to the spool. 0 or -1 (logged). */
static int spool_append(pt_upstream_t *u, pt_buf_t *b)
{
    if (u->spool_fd < 0) {
        u->spool_fd = open_temp_file(u);
        if (u->spool_fd < 0)
            return -1;
        u->spool_r = u->spool_w = 0;
    }
    const char *p = b->pos;
    size_t n = pt_buf_size(b);
    while (n) {
        ssize_t w = pwrite(u->spool_fd, p, n, (off_t) u->spool_w);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            pt_log_error(PT_LOG_CRIT, ulog(u), errno, "pwrite() to a temp file failed");
            return -1;
        }
        p += w;
        n -= (size_t) w;
        u->spool_w += w;
    }
    return 0;
}

/* The writer drained: feed it from the spool; once the spool is empty,
 * go back to passing the backend's buffers on directly. */
static void drain_spool(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    size_t bsize = (size_t) u->conf->bufs_size;

    for (;;) {
        if (u->spool_r == u->spool_w) {
            u->spooling = 0;
            u->spool_r = u->spool_w = 0;      /* the file is reused from its start */
            if (u->upstream_done) {
                pt_buf_t *b = pt_buf_ref("", 0);
                if (b == NULL) {
                    pt__upstream_finalize(u, PT_ERROR);
                    return;
                }
                b->last_buf = 1;
                b->flush = 1;
                if (pt_http_output(r, b) == PT_ERROR) {
                    client_gone(u, "sending response to client");
                    return;
                }
                pt__upstream_finalize(u, PT_OK);
                return;
            }
            if (u->spool_full) {
                u->spool_full = 0;
                relay_body(u);
            }
            return;
        }
        pt_buf_t *b = pt_buf_get(bsize);
        if (b == NULL) {
            pt__upstream_finalize(u, PT_ERROR);
            return;
        }
        size_t want = pt_buf_room(b);
        if ((int64_t) want > u->spool_w - u->spool_r)
            want = (size_t) (u->spool_w - u->spool_r);
        ssize_t n = pread(u->spool_fd, b->last, want, (off_t) u->spool_r);
        if (n <= 0) {
            pt_buf_put(b);
            pt_log_error(PT_LOG_CRIT, ulog(u), errno, "pread() from a temp file failed");
            pt__upstream_finalize(u, PT_ERROR);
            return;
        }
        b->last += n;
        u->spool_r += n;
        int last = u->spool_r == u->spool_w && u->upstream_done;
        if (last) {
            b->last_buf = 1;
            b->flush = 1;
        }
        int rc = pt_http_output(r, b);
        if (rc == PT_ERROR) {
            client_gone(u, "sending response to client");
            return;
        }
        if (last) {
            pt__upstream_finalize(u, PT_OK);
            return;
        }
        if (rc == PT_AGAIN) {
            u->client_wait = 1;
            return;
        }
    }
}

/* How many bytes the next read of the body may take: the room proxy_buffers
 * leaves beside what the writer holds (at least one proxy_buffers buffer, as
 * before), at most RELAY_READ_MAX; RELAY_READ_BIG (or one proxy_buffers
 * buffer if larger) while the writer holds nothing, i.e. the client keeps up. */
static size_t relay_read_size(size_t limit, size_t bsize, size_t pending)
{
    size_t want = limit > pending ? limit - pending : 0;
    if (want < bsize)
        want = bsize;
    size_t max = pending ? RELAY_READ_MAX : RELAY_READ_BIG;
    if (pending == 0 && want < max)
        want = max;
    if (want > max)
        want = bsize > max ? bsize : max;
    return want;
}

static void relay_body(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    pt_conn_t *c = u->c;
    int reads = 0;
    size_t moved = 0;
    size_t limit = (size_t) (u->conf->bufs_num * u->conf->bufs_size);
    size_t bsize = (size_t) u->conf->bufs_size;

    for (;;) {
        pt_buf_t *b = NULL;

        if (u->body_done) {
            if (u->spooling) {
                /* the rest is in the spool: free the backend now */
                release_upstream(u, PT_OK);
                if (!u->client_wait)
                    drain_spool(u);
                return;
            }
            b = u->head_buf;
            u->head_buf = NULL;
            if (b == NULL) {
                b = pt_buf_ref("", 0);
                if (b == NULL) {
                    pt__upstream_finalize(u, PT_ERROR);
                    return;
                }
            }
            b->pos = b->last;        /* nothing more (no_body or extra bytes) */
            b->last_buf = 1;
            b->flush = 1;
            int rc = pt_http_output(r, b);
            if (rc == PT_ERROR) {
                client_gone(u, "sending response to client");
                return;
            }
            pt__upstream_finalize(u, PT_OK);
            return;
        }

        if (u->head_buf) {
            b = u->head_buf;
            u->head_buf = NULL;
            if (pt_buf_size(b) == 0) {
                pt_buf_put(b);
                continue;
            }
        } else {
            if (u->client_wait && !u->spooling)
                return;
            size_t pending = u->spooling ? 0 : r->proto->pending(r);
            if (!u->spooling && pending >= limit) {
                if (spool_allowed(u)) {
                    u->spooling = 1;
                    u->client_wait = 1;   /* the writer calls back when drained */
                } else {
                    u->client_wait = 1;
                    pt_timer_del(&c->io.read);
                    return;
                }
            }
            if (u->spooling && u->spool_w - u->spool_r >= u->conf->max_temp_file_size) {
                /* proxy_max_temp_file_size reached: the backend waits */
                u->spool_full = 1;
                pt_timer_del(&c->io.read);
                return;
            }
            if (++reads > READS_PER_EVENT || moved >= RELAY_EVENT_BYTES) {
                /* let other connections run; continue in this iteration's
                 * posted events */
                pt_event_post(&c->io.read);
                return;
            }
            if (!c->io.read.ready && c->recv == pt_conn_recv) {
                /* the last read drained the socket (edge triggered: the
                 * next arrival is reported): no recv() just to see EAGAIN */
                pt_timer_add(&c->io.read, u->conf->read_timeout);
                return;
            }
            size_t want = relay_read_size(limit, bsize, pending);
            if (!u->headers_in.chunked && u->length >= 0 && (int64_t) want > u->length)
                want = u->length > 0 ? (size_t) u->length : 1;
            b = pt_buf_get(want);
            if (b == NULL) {
                pt__upstream_finalize(u, PT_ERROR);
                return;
            }
            ssize_t n = c->recv(c, b->last, want);
            if (n == PT_IO_AGAIN) {
                pt_buf_put(b);
                pt_timer_add(&c->io.read, u->conf->read_timeout);
                return;
            }
            if (n == 0) {
                pt_buf_put(b);
                if (u->until_close) {
                    u->body_done = 1;
                    u->keepalive = 0;
                    continue;
                }
                log_upstream(u, PT_LOG_ERR, 0,
                             "upstream prematurely closed connection while reading upstream");
                u->failed = 1;
                close_upstream_conn(u);
                pt__upstream_finalize(u, PT_ERROR);
                return;
            }
            if (n < 0) {
                pt_buf_put(b);
                log_upstream(u, PT_LOG_ERR, errno, "recv() failed while reading upstream");
                u->failed = 1;
                close_upstream_conn(u);
                pt__upstream_finalize(u, PT_ERROR);
                return;
            }
            b->last += n;
            moved += (size_t) n;
            u->state->bytes_received += n;
        }

        if (u->headers_in.chunked) {
            int rc = dechunk(u, b);
            if (rc == PT_H1_ERROR) {
                pt_buf_put(b);
                log_upstream(u, PT_LOG_ERR, 0, "upstream sent invalid chunked response");
                u->failed = 1;
                close_upstream_conn(u);
                /* nothing reached the client yet (buffered): a 502 page */
                pt__upstream_finalize(u, u->r->header_sent ? PT_ERROR : 502);
                return;
            }
            if (rc == PT_H1_DONE)
                u->body_done = 1;
        } else if (u->length >= 0) {
            if ((int64_t) pt_buf_size(b) > u->length) {
                b->last = b->pos + u->length;
                u->keepalive = 0;
            }
            u->length -= (int64_t) pt_buf_size(b);
            if (u->length == 0)
                u->body_done = 1;
        }

        if (pt_buf_size(b) == 0) {
            pt_buf_put(b);
            continue;
        }
        if (u->spooling) {
            int rc = spool_append(u, b);
            pt_buf_put(b);
            if (rc != 0) {
                close_upstream_conn(u);
                pt__upstream_finalize(u, PT_ERROR);
                return;
            }
            continue;
        }
        if (!u->buffering)
            b->flush = 1;
        if (!u->buffering)
            (void) pt_conn_nodelay(r->connection);   /* streamed: no Nagle (accept leaves it) */
        if (u->body_done) {
            b->last_buf = 1;
            b->flush = 1;
        }
        int rc = pt_http_output(r, b);
        if (rc == PT_ERROR) {
            client_gone(u, "sending response to client");
            return;
        }
        if (u->body_done) {
            pt__upstream_finalize(u, PT_OK);
            return;
        }
        if (rc == PT_AGAIN) {
            u->client_wait = 1;
            if (spool_allowed(u)) {
                u->spooling = 1;     /* keep reading the backend into the spool */
                continue;
            }
            pt_timer_del(&c->io.read);
            return;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* $upstream_* variables                                                     */

enum { UV_ADDR, UV_STATUS, UV_CONNECT, UV_HEADER, UV_RESPONSE, UV_BYTES };

static int get_upstream_state(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_upstream_t *u = r->upstream;
    v->no_cacheable = 1;
    if (u == NULL || u->states.nelts == 0) {
        v->not_found = 1;
        v->value.len = 0;
        v->value.data = (char *) "";
        return PT_OK;
    }
    pt_upstream_state_t *st = u->states.elts;
    size_t n = u->states.nelts;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += (data == UV_ADDR ? st[i].addr.len : 24) + 2;
    char *p = pt_pnalloc(r->pool, cap + 1), *q = p;
    if (p == NULL)
        return PT_ERROR;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            *q++ = ',';
            *q++ = ' ';
        }
        int64_t t = -1;
        switch (data) {
        case UV_ADDR:
            memcpy(q, st[i].addr.data, st[i].addr.len);
            q += st[i].addr.len;
            continue;
        case UV_STATUS:
            if (st[i].status)
                q += sprintf(q, "%d", st[i].status);
            else
                *q++ = '-';
            continue;
        case UV_BYTES:
            q += sprintf(q, "%lld", (long long) st[i].bytes_received);
            continue;
        case UV_CONNECT:
            t = st[i].connect_time;
            break;
        case UV_HEADER:
            t = st[i].header_time;
            break;
        default:
            t = st[i].response_time >= 0 ? st[i].response_time
                                         : pt_current_msec - st[i].start;
            break;
        }
        if (t < 0)
            *q++ = '-';
        else
            q += pt_http_var_msec_text(q, t);
    }
    v->value.data = p;
    v->value.len = (size_t) (q - p);
    v->valid = 1;
    v->not_found = 0;
    return PT_OK;
}

static int get_upstream_http(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *suffix = (const pt_str_t *) data;
    pt_upstream_t *u = r->upstream;
    v->not_found = 1;
    v->value.len = 0;
    v->value.data = (char *) "";
    if (u == NULL || u->headers_in.headers.nelts == 0)
        return PT_OK;
    pt_http_header_t *h = u->headers_in.headers.elts;
    for (size_t i = 0; i < u->headers_in.headers.nelts; i++) {
        if (h[i].name.len != suffix->len)
            continue;
        size_t k;
        for (k = 0; k < suffix->len; k++) {
            unsigned char a = pt_tolower((unsigned char) h[i].name.data[k]);
            unsigned char bch = (unsigned char) suffix->data[k];
            if (a == '-')
                a = '_';
            if (a != pt_tolower(bch))
                break;
        }
        if (k == suffix->len) {
            v->value = h[i].value;
            v->not_found = 0;
            v->valid = 1;
            return PT_OK;
        }
    }
    return PT_OK;
}

static int get_upstream_cookie(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *name = (const pt_str_t *) data;
    pt_upstream_t *u = r->upstream;
    v->not_found = 1;
    v->value.len = 0;
    v->value.data = (char *) "";
    if (u == NULL)
        return PT_OK;
    pt_http_header_t *h = u->headers_in.headers.elts;
    for (size_t i = 0; i < u->headers_in.headers.nelts; i++) {
        if (!pt_str_caseeq_lit(&h[i].name, "set-cookie"))
            continue;
        /* "name=value; attributes": only the first pair names the cookie */
        const char *p = h[i].value.data, *end = p + h[i].value.len;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t) (end - p) <= name->len || p[name->len] != '='
            || pt_strncasecmp(p, name->data, name->len) != 0)
            continue;
        p += name->len + 1;
        const char *e = memchr(p, ';', (size_t) (end - p));
        v->value.data = (char *) p;
        v->value.len = (size_t) ((e ? e : end) - p);
        v->not_found = 0;
        v->valid = 1;
        return PT_OK;
    }
    return PT_OK;
}

int pt_upstream_add_variables(pt_conf_t *cf)
{
    static const struct {
        const char *name;
        uintptr_t   data;
    } vars[] = {
        { "upstream_addr", UV_ADDR },
        { "upstream_status", UV_STATUS },
        { "upstream_connect_time", UV_CONNECT },
        { "upstream_header_time", UV_HEADER },
        { "upstream_response_time", UV_RESPONSE },
        { "upstream_bytes_received", UV_BYTES },
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        pt_str_t name = { strlen(vars[i].name), (char *) vars[i].name };
        pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
        if (v == NULL)
            return -1;
        v->get = get_upstream_state;
        v->data = vars[i].data;
    }
    pt_str_t prefix = pt_string("upstream_http_");
    pt_http_var_t *v = pt_http_var_add(cf, &prefix, PT_VAR_PREFIX | PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_upstream_http;
    pt_str_t cprefix = pt_string("upstream_cookie_");
    v = pt_http_var_add(cf, &cprefix, PT_VAR_PREFIX | PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_upstream_cookie;
    return 0;
}
