/* Helpers shared by the balancers of issue 4: peer availability, passive
 * health bookkeeping, slow start, a smooth weighted round robin pick used as
 * the fallback of the hash-like methods, and the common init/free of the
 * per-request state. See balancer.h for the contracts. */
#include <string.h>

#include "balancer.h"
#include "../core/time.h"

pt_upstream_ext_t *pt__upstream_ext(pt_conf_t *cf, pt_upstream_group_t *g)
{
    if (g->ext == NULL) {
        g->ext = pt_pcalloc(cf->pool, sizeof(pt_upstream_ext_t));
        if (g->ext) {
            g->ext->zone_size = -1;
            g->ext->resolver_timeout = -1;
        }
    }
    return g->ext;
}

int pt__upstream_peer_is_usable(const pt_upstream_peer_t *p, int64_t now)
{
    if (p->down || p->drain || p->removed || p->unhealthy)
        return 0;
    if (p->max_fails && p->fails >= p->max_fails && now - p->checked <= p->fail_timeout)
        return 0;
    if (p->max_conns && p->conns >= p->max_conns)
        return 0;
    return 1;
}

int pt__lb_usable(const pt_upstream_peers_t *ps, const pt_upstream_peer_t *p, int64_t now)
{
    if (!ps->single)
        return pt__upstream_peer_is_usable(p, now);
    /* as nginx: the only peer of a group is never "failed" */
    return !(p->down || p->drain || p->removed || p->unhealthy
             || (p->max_conns && p->conns >= p->max_conns));
}

int pt__upstream_peer_weight(const pt_upstream_peer_t *p, int64_t now)
{
    /* in 1/PT_LB_WEIGHT_SCALE units so that even a weight of 1 can ramp */
    int64_t w = (int64_t) p->effective_weight * PT_LB_WEIGHT_SCALE;
    if (p->slow_start > 0 && p->start_time > 0 && now - p->start_time < p->slow_start) {
        int64_t ramp = (int64_t) p->weight * PT_LB_WEIGHT_SCALE * (now - p->start_time)
                       / p->slow_start;
        if (ramp < 1)
            ramp = 1;
        if (ramp < w)
            w = ramp;
    }
    return (int) w;
}

void pt__upstream_peer_take(pt_upstream_peer_t *p, int64_t now)
{
    p->conns++;
    p->requests++;
    /* after fail_timeout the failed peer gets one probe request: moving
     * `checked` makes the next ones wait for this one's outcome */
    if (now - p->checked > p->fail_timeout)
        p->checked = now;
}

void pt__upstream_peer_done(pt_upstream_peer_t *p, int state, int64_t now)
{
    if (p->conns)
        p->conns--;
    if (state == PT_UPSTREAM_PEER_FAILED) {
        p->fails++;
        p->failures++;
        p->accessed = now;
        p->checked = now;
        if (p->max_fails) {
            p->effective_weight -= p->weight / (int) p->max_fails;
            if (p->effective_weight < 0)
                p->effective_weight = 0;
            if (p->fails == p->max_fails && p->slow_start)
                p->start_time = 0;
        }
    } else {
        if (p->accessed < p->checked) {
            /* a success after the failure window reopened */
            if (p->max_fails && p->fails >= p->max_fails && p->slow_start)
                p->start_time = now;
            p->fails = 0;
        }
        if (p->effective_weight < p->weight)
            p->effective_weight++;
    }
}

int pt__lb_pick_wrr(pt_lb_state_t *s, pt_upstream_peers_t *ps, int64_t now)
{
    int best = -1, total = 0;
    for (unsigned i = 0; i < ps->number; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        if (pt__lb_tried(s, i) || !pt__lb_usable(ps, p, now))
            continue;
        int w = pt__upstream_peer_weight(p, now);
        p->current_weight += w;
        total += w;
        if (best < 0 || p->current_weight > ps->peer[best].current_weight)
            best = (int) i;
    }
    if (best >= 0)
        ps->peer[best].current_weight -= total;
    return best;
}

int pt__lb_init_peer(pt_http_request_t *r, pt_upstream_t *u, size_t size)
{
    pt_lb_state_t *s = pt_pcalloc(r->pool, size);
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

void pt__lb_choose(pt_upstream_t *u, pt_lb_state_t *s, unsigned i, int64_t now)
{
    pt_upstream_peer_t *p = &s->peers->peer[i];
    pt__lb_mark(s, i);
    pt__upstream_peer_take(p, now);
    s->current = p;
    u->peer = p;
}

void pt__lb_free_peer(pt_upstream_t *u, int state)
{
    pt_lb_state_t *s = u->peer_data;
    pt_upstream_peer_t *p = s->current;
    if (p == NULL)
        return;
    s->current = NULL;
    pt__upstream_lock(u->group);
    pt__upstream_peer_done(p, state, pt_current_msec);
    pt__upstream_unlock(u->group);
    if (u->tries)
        u->tries--;
}

int pt__lb_none(pt_upstream_t *u)
{
    for (pt_upstream_peers_t *ps = u->group->peers; ps; ps = ps->next)
        for (unsigned i = 0; i < ps->number; i++)
            ps->peer[i].fails = 0;
    return PT_BUSY;
}

int pt__lb_no_backup(pt_conf_t *cf, pt_upstream_group_t *g, const char *method)
{
    if (g->peers && g->peers->next) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0,
                     "load balancing method \"%s\" does not support \"backup\" servers "
                     "in upstream \"%.*s\" in %s:%u", method, (int) g->name.len, g->name.data,
                     g->file ? g->file : "-", g->line);
        return -1;
    }
    return 0;
}

void pt__lb_init_weights(pt_upstream_group_t *g)
{
    for (pt_upstream_peers_t *ps = g->peers; ps; ps = ps->next) {
        int total = 0;
        ps->weighted = 0;
        for (unsigned i = 0; i < ps->number; i++) {
            pt_upstream_peer_t *p = &ps->peer[i];
            p->effective_weight = p->weight;
            p->current_weight = 0;
            if (!p->removed)
                total += p->weight;
            if (p->weight != 1)
                ps->weighted = 1;
        }
        ps->total_weight = total;
    }
}
