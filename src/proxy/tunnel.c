/* Two-way byte tunnel after a 101 Switching Protocols (WebSocket or any
 * Upgrade): bytes are copied as they come, frames untouched. Each direction
 * has at most one buffer, taken when bytes arrive and given back when it is
 * written out, so an idle tunnel holds no buffer. A direction whose
 * destination is full stops reading its source (backpressure).
 *
 * Timeouts as nginx: proxy_read_timeout while nothing moves (re-armed on
 * every byte either way), proxy_send_timeout while the backend does not take
 * bytes, send_timeout while the client does not. The tunnel ends when either
 * side closes (after what it sent is delivered), on an error or a timeout,
 * and when worker_shutdown_timeout force-closes its connections; a graceful
 * reload alone does not end it.
 *
 * The tunnel state is malloc'd (an idle tunnel holds it, the two connection
 * records and the request's pool, which is freed when the tunnel ends and the
 * request is logged). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "upstream.h"
#include "../core/time.h"
#include "../http/core.h"

typedef struct {
    pt_conn_t *src, *dst;
    pt_buf_t  *buf;
    unsigned   eof:1;          /* src closed */
} dir_t;

typedef struct {
    pt_upstream_t *u;
    pt_conn_t *client, *upstream;
    int64_t    bytes_down;     /* upstream -> client, for $bytes_sent */
    pt_event_t close_ev;       /* closes the connections after the request ended */
    dir_t      up;             /* client -> upstream */
    dir_t      down;           /* upstream -> client */
    int64_t    read_timeout, send_timeout, client_send_timeout;
    size_t     bufsize;
    unsigned   closed:1;
} tunnel_t;

static void on_close_ev(pt_event_t *ev)
{
    tunnel_t *t = ev->data;
    pt_conn_close(t->client);
    pt_conn_close(t->upstream);
    pt_loop_defer_free(free, t);
}

/* Ends the tunnel: the request first (its log line; the protocol layer frees
 * it from a posted event), then, from a posted event of our own, the two
 * connections, so that a worker waiting for its last connections to go
 * (graceful stop) does not exit before the request is freed. */
static void tunnel_close(tunnel_t *t)
{
    if (t->closed)
        return;
    t->closed = 1;
    pt_buf_put(t->up.buf);
    pt_buf_put(t->down.buf);
    t->up.buf = t->down.buf = NULL;
    pt_timer_del(&t->client->io.read);
    pt_timer_del(&t->client->io.write);
    pt_timer_del(&t->upstream->io.read);
    pt_timer_del(&t->upstream->io.write);

    pt_upstream_t *u = t->u;
    u->r->bytes_sent += t->bytes_down;
    u->tunnel = NULL;
    pt__upstream_finalize(u, PT_OK);

    t->close_ev.handler = on_close_ev;
    t->close_ev.data = t;
    t->close_ev.timer_index = SIZE_MAX;
    pt_event_post(&t->close_ev);
}

/* Moves bytes in one direction until nothing more can move. Returns 0, or
 * -1 when the tunnel must end. */
static int pump(tunnel_t *t, dir_t *d, int *moved)
{
    for (;;) {
        if (d->buf && pt_buf_size(d->buf) > 0) {
            ssize_t n = d->dst->send(d->dst, d->buf->pos, pt_buf_size(d->buf));
            if (n == PT_IO_AGAIN)
                return 0;
            if (n < 0)
                return -1;
            d->buf->pos += n;
            if (d == &t->down)
                t->bytes_down += n;
            *moved = 1;
            if (pt_buf_size(d->buf) > 0)
                continue;
        }
        if (d->buf && pt_buf_size(d->buf) == 0) {
            pt_buf_put(d->buf);
            d->buf = NULL;
        }
        if (d->eof)
            return -1;              /* src closed and everything delivered */
        if (!d->src->io.read.ready && !d->src->io.read.eof)
            return 0;
        if (d->buf == NULL) {
            d->buf = pt_buf_get(t->bufsize);
            if (d->buf == NULL)
                return -1;
        }
        ssize_t n = d->src->recv(d->src, d->buf->last, pt_buf_room(d->buf));
        if (n == PT_IO_AGAIN) {
            if (pt_buf_size(d->buf) == 0) {
                pt_buf_put(d->buf);
                d->buf = NULL;
            }
            return 0;
        }
        if (n == 0) {
            d->eof = 1;
            continue;
        }
        if (n < 0)
            return -1;
        d->buf->last += n;
        *moved = 1;
    }
}

static void tunnel_run(tunnel_t *t)
{
    int moved = 0;
    if (t->client->close || t->upstream->close) {
        tunnel_close(t);
        return;
    }
    if (pump(t, &t->up, &moved) != 0 || pump(t, &t->down, &moved) != 0) {
        tunnel_close(t);
        return;
    }
    /* timers */
    if (t->up.buf && pt_buf_size(t->up.buf))
        pt_timer_add(&t->upstream->io.write, t->send_timeout);
    else
        pt_timer_del(&t->upstream->io.write);
    if (t->down.buf && pt_buf_size(t->down.buf))
        pt_timer_add(&t->client->io.write, t->client_send_timeout);
    else
        pt_timer_del(&t->client->io.write);
    if (moved || !t->upstream->io.read.timer_set)
        pt_timer_add(&t->upstream->io.read, t->read_timeout);
}

static void on_tunnel_event(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    tunnel_t *t = c->data;
    if (t == NULL || t->closed)
        return;
    if (ev->timedout) {
        ev->timedout = 0;
        pt_log_error(PT_LOG_INFO, &t->client->log, 0,
                     ev->write ? "tunnel peer timed out while sending"
                               : "upstream timed out (110: Connection timed out) while proxying upgraded connection");
        tunnel_close(t);
        return;
    }
    tunnel_run(t);
}

int pt_upstream_tunnel_start(pt_upstream_t *u, pt_conn_t *uc, pt_conn_t *client,
                             pt_buf_t *client_preread, pt_buf_t *upstream_preread)
{
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(u->r, pt_http_core_module);
    tunnel_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return PT_ERROR;
    t->u = u;
    u->tunnel = t;
    t->client = client;
    t->upstream = uc;
    t->read_timeout = u->conf->read_timeout;
    t->send_timeout = u->conf->send_timeout;
    t->client_send_timeout = clcf->send_timeout > 0 ? clcf->send_timeout : 60000;
    t->bufsize = (size_t) (u->conf->buffer_size > 4096 ? u->conf->buffer_size : 4096);
    if (t->bufsize < 16384)
        t->bufsize = 16384;

    t->up.src = client;
    t->up.dst = uc;
    t->up.buf = client_preread;
    t->down.src = uc;
    t->down.dst = client;
    t->down.buf = upstream_preread;

    (void) pt_conn_nodelay(client);   /* interactive both ways (accept leaves it off) */
    client->data = t;
    client->io.read.handler = on_tunnel_event;
    client->io.write.handler = on_tunnel_event;
    pt_timer_del(&client->io.read);
    pt_timer_del(&client->io.write);
    uc->data = t;
    uc->log.ctx_handler = NULL;       /* the request's context is gone from the client */
    uc->log.ctx = NULL;
    uc->io.read.handler = on_tunnel_event;
    uc->io.write.handler = on_tunnel_event;

    tunnel_run(t);
    return PT_OK;
}
