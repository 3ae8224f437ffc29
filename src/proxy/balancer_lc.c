/* least_conn: the peer with the fewest active connections relative to its
 * weight (conns_a / weight_a < conns_b / weight_b, compared by cross
 * multiplication). Several peers tied for the least are served by smooth
 * weighted round robin among themselves, so an idle group still balances by
 * weight. Backup servers are used when no primary peer is usable. */
#include <string.h>

#include "balancer.h"
#include "../core/time.h"

static int lc_init_group(pt_conf_t *cf, pt_upstream_group_t *g)
{
    (void) cf;
    pt__lb_init_weights(g);
    return 0;
}

static int lc_init_peer(pt_http_request_t *r, pt_upstream_t *u)
{
    return pt__lb_init_peer(r, u, sizeof(pt_lb_state_t));
}

/* Returns the index chosen in ps or -1. */
static int lc_pick(pt_lb_state_t *s, pt_upstream_peers_t *ps, int64_t now)
{
    int best = -1, ties = 0;
    int64_t bc = 0, bw = 1;

    for (unsigned i = 0; i < ps->number; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        if (pt__lb_tried(s, i) || !pt__lb_usable(ps, p, now))
            continue;
        int64_t w = pt__upstream_peer_weight(p, now);
        if (w < 1)
            w = 1;
        int64_t c = p->conns;
        if (best < 0 || c * bw < bc * w) {
            best = (int) i;
            bc = c;
            bw = w;
            ties = 1;
        } else if (c * bw == bc * w) {
            ties++;
        }
    }
    if (best < 0 || ties == 1)
        return best;

    /* several share the least load: weighted round robin among them */
    int pick = -1, total = 0;
    for (unsigned i = (unsigned) best; i < ps->number; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        if (pt__lb_tried(s, i) || !pt__lb_usable(ps, p, now))
            continue;
        int64_t w = pt__upstream_peer_weight(p, now);
        if (w < 1)
            w = 1;
        if ((int64_t) p->conns * bw != bc * w)
            continue;
        int ew = pt__upstream_peer_weight(p, now);
        p->current_weight += ew;
        total += ew;
        if (pick < 0 || p->current_weight > ps->peer[pick].current_weight)
            pick = (int) i;
    }
    ps->peer[pick].current_weight -= total;
    return pick;
}

static int lc_get_peer(pt_upstream_t *u)
{
    pt_lb_state_t *s = u->peer_data;
    int64_t now = pt_current_msec;

    pt__upstream_lock(u->group);
    int i = lc_pick(s, s->peers, now);
    if (i < 0 && s->peers == u->group->peers && s->peers->next) {
        s->peers = s->peers->next;
        memset(s->tried, 0, sizeof(s->tried));
        i = lc_pick(s, s->peers, now);
    }
    if (i < 0) {
        int rc = pt__lb_none(u);
        pt__upstream_unlock(u->group);
        return rc;
    }
    pt__lb_choose(u, s, (unsigned) i, now);
    pt__upstream_unlock(u->group);
    return PT_OK;
}

const pt_upstream_balancer_t pt_upstream_balancer_lc = {
    .name = "least_conn",
    .init_group = lc_init_group,
    .init_peer = lc_init_peer,
    .get_peer = lc_get_peer,
    .free_peer = pt__lb_free_peer,
};
