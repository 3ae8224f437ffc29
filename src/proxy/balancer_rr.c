/* The default balancer: smooth weighted round robin with passive health
 * (max_fails within fail_timeout marks a peer unavailable for fail_timeout).
 *
 * Smooth WRR: on each pick every available peer's current weight grows by its
 * effective weight; the peer with the largest current weight wins and loses
 * the total. Weights 3,2,1 give a,b,a,c,b,a and repeat: the heavy peer is
 * spread out instead of served in a burst. A failure lowers the peer's
 * effective weight by weight/max_fails; each success raises it back by one.
 *
 * State is per worker (peers live in config memory copied by fork), or, with
 * `zone`, in shared memory under the group's lock (upstream_zone.c); peers
 * that are drained, removed or failing active health checks are skipped and
 * slow_start ramps a peer's weight up (balancer_util.c, issue 4). */
#include <string.h>

#include "balancer.h"
#include "../core/time.h"

typedef struct {
    pt_upstream_peers_t *peers;       /* the set being tried (primary or backup) */
    pt_upstream_peer_t  *current;
    uint64_t             tried[4];    /* bitmap, up to 256 peers per set; beyond
                                       * that peers are not remembered */
} rr_state_t;

static int tried(const rr_state_t *s, unsigned i)
{
    return i < 256 && (s->tried[i / 64] >> (i % 64)) & 1;
}

static void mark_tried(rr_state_t *s, unsigned i)
{
    if (i < 256)
        s->tried[i / 64] |= (uint64_t) 1 << (i % 64);
}

static int rr_init_group(pt_conf_t *cf, pt_upstream_group_t *g)
{
    (void) cf;
    for (pt_upstream_peers_t *ps = g->peers; ps; ps = ps->next) {
        int total = 0;
        for (unsigned i = 0; i < ps->number; i++) {
            pt_upstream_peer_t *p = &ps->peer[i];
            p->effective_weight = p->weight;
            p->current_weight = 0;
            total += p->weight;
            if (p->weight != 1)
                ps->weighted = 1;
        }
        ps->total_weight = total;
    }
    return 0;
}

static int rr_init_peer(pt_http_request_t *r, pt_upstream_t *u)
{
    rr_state_t *s = pt_pcalloc(r->pool, sizeof(*s));
    if (s == NULL)
        return PT_ERROR;
    s->peers = u->group->peers;
    u->peer_data = s;
    /* as nginx: every primary and every backup peer may be tried once */
    unsigned n = 0;
    for (pt_upstream_peers_t *ps = s->peers; ps; ps = ps->next)
        for (unsigned i = 0; i < ps->number; i++)
            n += !ps->peer[i].removed;
    u->tries = n;
    return PT_OK;
}

static int peer_usable(pt_upstream_peer_t *p, int64_t now)
{
    return pt__upstream_peer_is_usable(p, now);
}

/* Picks from one set; NULL when every peer is tried or unavailable. */
static pt_upstream_peer_t *pick(rr_state_t *s, pt_upstream_peers_t *ps, int64_t now)
{
    pt_upstream_peer_t *best = NULL;
    unsigned best_i = 0;
    int total = 0;

    if (ps->single) {
        pt_upstream_peer_t *p = &ps->peer[0];
        /* as nginx: a single peer is never "failed" (max_fails ignored) */
        if (tried(s, 0) || p->down || p->drain || p->removed || p->unhealthy
            || (p->max_conns && p->conns >= p->max_conns))
            return NULL;
        mark_tried(s, 0);
        return p;
    }

    for (unsigned i = 0; i < ps->number; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        if (tried(s, i) || !peer_usable(p, now))
            continue;
        int w = pt__upstream_peer_weight(p, now);
        p->current_weight += w;
        total += w;
        if (p->effective_weight < p->weight)
            p->effective_weight++;
        if (best == NULL || p->current_weight > best->current_weight) {
            best = p;
            best_i = i;
        }
    }
    if (best == NULL)
        return NULL;
    best->current_weight -= total;
    mark_tried(s, best_i);
    if (now - best->checked > best->fail_timeout)
        best->checked = now;
    return best;
}

static int rr_get_peer(pt_upstream_t *u)
{
    rr_state_t *s = u->peer_data;
    int64_t now = pt_current_msec;
    pt__upstream_lock(u->group);
    pt_upstream_peer_t *p = pick(s, s->peers, now);

    if (p == NULL && s->peers == u->group->peers && s->peers->next) {
        /* every primary peer is down or tried: the backups */
        s->peers = s->peers->next;
        memset(s->tried, 0, sizeof(s->tried));
        p = pick(s, s->peers, now);
    }
    if (p == NULL) {
        /* nginx: when all peers of the group are failed, forget the failures
         * so the next request tries again ("no live upstreams" this time) */
        for (pt_upstream_peers_t *ps = u->group->peers; ps; ps = ps->next)
            for (unsigned i = 0; i < ps->number; i++)
                ps->peer[i].fails = 0;
        pt__upstream_unlock(u->group);
        return PT_BUSY;
    }
    s->current = p;
    p->conns++;
    p->requests++;
    pt__upstream_unlock(u->group);
    u->peer = p;
    return PT_OK;
}

static void rr_free_peer(pt_upstream_t *u, int state)
{
    rr_state_t *s = u->peer_data;
    pt_upstream_peer_t *p = s->current;
    if (p == NULL)
        return;
    s->current = NULL;
    pt__upstream_lock(u->group);
    if (p->conns)
        p->conns--;
    int64_t now = pt_current_msec;
    if (state == PT_UPSTREAM_PEER_FAILED) {
        p->fails++;
        p->failures++;
        if (p->max_fails && p->fails == p->max_fails && p->slow_start)
            p->start_time = 0;
        p->accessed = now;
        p->checked = now;
        if (p->max_fails) {
            p->effective_weight -= p->weight / (int) p->max_fails;
            if (p->effective_weight < 0)
                p->effective_weight = 0;
        }
    } else if (p->accessed < p->checked) {
        /* a success after the fail window reopened: forget the failures */
        if (p->max_fails && p->fails >= p->max_fails && p->slow_start)
            p->start_time = now;
        p->fails = 0;
    }
    pt__upstream_unlock(u->group);
    if (u->tries)
        u->tries--;
}

const pt_upstream_balancer_t pt_upstream_balancer_rr = {
    .name = "round_robin",
    .init_group = rr_init_group,
    .init_peer = rr_init_peer,
    .get_peer = rr_get_peer,
    .free_peer = rr_free_peer,
};
