/* Per-worker keep-alive pools of upstream connections, one per group with
 * `keepalive N`. An idle connection stays registered in the event loop as it
 * was (no epoll_ctl on put or get): its read handler closes it on any byte or
 * EOF from the backend, on keepalive_timeout, and on graceful shutdown (the
 * connection is on the reusable list). The caller decides whether a
 * connection may be pooled at all (complete response, no error, under
 * keepalive_requests and keepalive_time); this file only keeps at most N of
 * them, most recently used first, closing the oldest when full. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "upstream.h"
#include "../core/time.h"

typedef struct ka_item_s ka_item_t;
typedef struct ka_pool_s ka_pool_t;

struct ka_item_s {
    pt_conn_t          *c;
    pt_upstream_peer_t *peer;
    int64_t             created;
    ka_pool_t          *pool;
    ka_item_t          *prev, *next;   /* idle list (MRU first) or free list */
};

struct ka_pool_s {
    pt_upstream_group_t *group;
    ka_item_t           *idle_head, *idle_tail;
    ka_item_t           *free;
    unsigned             nidle;
    ka_pool_t           *all_next;     /* every pool of this worker */
    ka_item_t            items[];
};

static ka_pool_t *all_pools;

static ka_pool_t *pool_of(pt_upstream_group_t *g)
{
    if (g->pool)
        return g->pool;
    ka_pool_t *p = calloc(1, sizeof(*p) + g->keepalive * sizeof(ka_item_t));
    if (p == NULL)
        return NULL;
    p->group = g;
    for (unsigned i = 0; i < g->keepalive; i++) {
        p->items[i].pool = p;
        p->items[i].next = p->free;
        p->free = &p->items[i];
    }
    p->all_next = all_pools;
    all_pools = p;
    g->pool = p;
    return p;
}

static void unlink_idle(ka_pool_t *p, ka_item_t *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        p->idle_head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        p->idle_tail = it->prev;
    it->prev = it->next = NULL;
    p->nidle--;
}

static void release_item(ka_pool_t *p, ka_item_t *it)
{
    it->c = NULL;
    it->peer = NULL;
    it->next = p->free;
    p->free = it;
}

static void close_item(ka_item_t *it)
{
    ka_pool_t *p = it->pool;
    pt_conn_t *c = it->c;
    unlink_idle(p, it);
    release_item(p, it);
    if (c) {
        pt_conn_reusable(c, 0);
        pt_conn_close(c);
    }
}

/* Any event on an idle connection ends it: data we did not ask for, EOF,
 * the idle timeout, or shutdown (c->close). */
static void on_idle_event(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    ka_item_t *it = c->data;
    if (!ev->timedout && !c->close && !ev->eof && !ev->error && ev->write) {
        return;        /* writable: nothing to do */
    }
    if (!ev->timedout && !c->close && !ev->eof && !ev->error) {
        /* a read edge: peek to tell stray bytes or EOF from a spurious wake */
        char ch;
        ssize_t n = recv(c->io.fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev->ready = 0;
            return;
        }
    }
    close_item(it);
}

pt_conn_t *pt_upstream_keepalive_get(pt_upstream_group_t *g, pt_upstream_peer_t *peer,
                                     int64_t *created, uint64_t *requests)
{
    ka_pool_t *p = g->pool;
    if (p == NULL)
        return NULL;
    for (ka_item_t *it = p->idle_head; it; it = it->next) {
        if (it->peer != peer)
            continue;
        pt_conn_t *c = it->c;
        unlink_idle(p, it);
        *created = it->created;
        release_item(p, it);
        pt_conn_reusable(c, 0);
        pt_timer_del(&c->io.read);
        c->io.read.handler = NULL;
        c->io.write.handler = NULL;
        c->data = NULL;
        *requests = c->requests;
        return c;
    }
    return NULL;
}

void pt_upstream_keepalive_put(pt_upstream_group_t *g, pt_upstream_peer_t *peer,
                               pt_conn_t *c, int64_t created)
{
    ka_pool_t *p = pool_of(g);
    /* TLS reads ahead: bytes the backend sent past the response may wait
     * inside OpenSSL, where the idle check's peek at the socket cannot see
     * them; such a connection is not reused */
    if (p == NULL || g->keepalive == 0 || pt_conn_shutting_down
        || (c->ssl && SSL_has_pending((SSL *) c->ssl))) {
        pt_conn_close(c);
        return;
    }
    if (p->free == NULL)
        close_item(p->idle_tail);         /* full: the least recently used goes */

    ka_item_t *it = p->free;
    p->free = it->next;
    it->c = c;
    it->peer = peer;
    it->created = created;
    it->prev = NULL;
    it->next = p->idle_head;
    if (p->idle_head)
        p->idle_head->prev = it;
    else
        p->idle_tail = it;
    p->idle_head = it;
    p->nidle++;

    c->data = it;
    /* the log context belonged to the request that used the connection */
    c->log.ctx_handler = NULL;
    c->log.ctx = NULL;
    c->io.read.handler = on_idle_event;
    c->io.write.handler = on_idle_event;
    pt_timer_del(&c->io.write);
    pt_timer_add(&c->io.read, g->keepalive_timeout);
    pt_conn_reusable(c, 1);
    /* bytes or EOF may already be waiting (the edge came while the
     * connection was busy): look once now */
    if (c->io.read.ready || c->io.read.eof)
        pt_event_post(&c->io.read);
}

void pt_upstream_keepalive_close_all(void)
{
    for (ka_pool_t *p = all_pools; p; p = p->all_next) {
        while (p->idle_head)
            close_item(p->idle_head);
    }
}
