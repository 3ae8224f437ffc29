/* random [two [least_conn]]: a peer drawn at random with probability
 * proportional to its weight among the usable, untried ones; with `two`, two
 * different peers are drawn that way and the one with fewer connections
 * relative to its weight wins (least_conn is the only, default, method).
 * The generator is a per-worker xorshift seeded from the pid and the clock,
 * so workers do not draw the same sequence. Backup servers are refused. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "balancer.h"
#include "../core/time.h"

static uint64_t rng_state;

void pt__lb_random_seed(uint64_t seed)
{
    rng_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint32_t pt__lb_random(void)
{
    if (rng_state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        pt__lb_random_seed(((uint64_t) getpid() << 32) ^ (uint64_t) ts.tv_nsec
                           ^ (uint64_t) ts.tv_sec);
    }
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (uint32_t) (x >> 32);
}

static int random_init_group(pt_conf_t *cf, pt_upstream_group_t *g)
{
    pt__lb_init_weights(g);
    return pt__lb_no_backup(cf, g, "random");
}

static int random_init_peer(pt_http_request_t *r, pt_upstream_t *u)
{
    return pt__lb_init_peer(r, u, sizeof(pt_lb_state_t));
}

/* One weighted draw among usable untried peers except `skip`; -1 if none. */
static int draw(pt_lb_state_t *s, pt_upstream_peers_t *ps, int skip, int64_t now)
{
    int64_t total = 0;
    for (unsigned i = 0; i < ps->number; i++) {
        if ((int) i == skip || pt__lb_tried(s, i) || !pt__lb_usable(ps, &ps->peer[i], now))
            continue;
        total += pt__upstream_peer_weight(&ps->peer[i], now) > 0
                 ? pt__upstream_peer_weight(&ps->peer[i], now) : 1;
    }
    if (total == 0)
        return -1;
    int64_t x = (int64_t) (pt__lb_random() % (uint64_t) total);
    for (unsigned i = 0; i < ps->number; i++) {
        if ((int) i == skip || pt__lb_tried(s, i) || !pt__lb_usable(ps, &ps->peer[i], now))
            continue;
        int w = pt__upstream_peer_weight(&ps->peer[i], now);
        x -= w > 0 ? w : 1;
        if (x < 0)
            return (int) i;
    }
    return -1;
}

static int random_get_peer(pt_upstream_t *u)
{
    pt_lb_state_t *s = u->peer_data;
    pt_lb_random_conf_t *rc = u->group->balancer_conf;
    pt_upstream_peers_t *ps = s->peers;
    int64_t now = pt_current_msec;

    pt__upstream_lock(u->group);
    int i = draw(s, ps, -1, now);
    if (i >= 0 && rc && rc->two) {
        int j = draw(s, ps, i, now);
        if (j >= 0) {
            pt_upstream_peer_t *a = &ps->peer[i], *b = &ps->peer[j];
            int64_t wa = pt__upstream_peer_weight(a, now), wb = pt__upstream_peer_weight(b, now);
            if (wa < 1)
                wa = 1;
            if (wb < 1)
                wb = 1;
            if ((int64_t) b->conns * wa < (int64_t) a->conns * wb)
                i = j;
        }
    }
    if (i < 0) {
        int r = pt__lb_none(u);
        pt__upstream_unlock(u->group);
        return r;
    }
    pt__lb_choose(u, s, (unsigned) i, now);
    pt__upstream_unlock(u->group);
    return PT_OK;
}

const pt_upstream_balancer_t pt_upstream_balancer_random = {
    .name = "random",
    .init_group = random_init_group,
    .init_peer = random_init_peer,
    .get_peer = random_get_peer,
    .free_peer = pt__lb_free_peer,
};
