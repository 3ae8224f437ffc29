/* ip_hash and hash KEY [consistent].
 *
 * ip_hash: the key is the first three octets of a client's IPv4 address, or
 * the whole IPv6 address (as nginx documents it); other clients (unix
 * sockets) fall back to weighted round robin. hash: the key is a complex
 * value evaluated per request.
 *
 * Both non-consistent variants map hash(key) onto the cumulative weights of
 * the primary peers; when that peer is not usable the hash is remixed and
 * tried again, up to 20 times, then weighted round robin takes over. So a
 * key sticks to its peer as long as the peer list does not change.
 *
 * consistent: a ketama ring. Each peer gets 160 points per weight unit:
 * MD5("<address>-<i>") for i < 40 * weight, each digest giving four 32-bit
 * points; a key goes to the first point at or after MD5(key) (first four
 * bytes, little endian), walking on to the next points when that peer is not
 * usable. Adding a server moves about 1/N of the keys. The ring is per worker
 * and rebuilt when the group's peers change at runtime (zone generation).
 *
 * Backup servers are refused with these methods, as nginx. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "balancer.h"
#include "../core/time.h"

#define HASH_TRIES 20

typedef struct {
    pt_lb_state_t base;
    uint32_t      hash;
    unsigned      tries;      /* hash attempts made */
    unsigned      fallback:1; /* round robin from now on */
    unsigned      point;      /* consistent: ring position */
} hash_state_t;

/* ------------------------------------------------------------------------ */
/* Hashing */

static uint32_t fnv1a(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* A different but deterministic value for the next attempt. */
static uint32_t remix(uint32_t h, unsigned attempt)
{
    h ^= attempt * 0x9e3779b9u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static void md5(const void *data, size_t len, unsigned char out[16])
{
    unsigned int n = 16;
    if (EVP_Digest(data, len, out, &n, EVP_md5(), NULL) != 1)
        memset(out, 0, 16);
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t) b[0] | (uint32_t) b[1] << 8 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 24;
}

uint32_t pt__lb_ring_key(const char *data, size_t len)
{
    unsigned char d[16];
    md5(data, len, d);
    return le32(d);
}

static int point_cmp(const void *a, const void *b)
{
    const pt_lb_point_t *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->peer < y->peer ? -1 : x->peer > y->peer;
}

int pt__lb_ring_build(pt_lb_ring_t *ring, const pt_upstream_peers_t *ps)
{
    size_t n = 0;
    for (unsigned i = 0; i < ps->number; i++)
        if (!ps->peer[i].removed)
            n += 160 * (size_t) ps->peer[i].weight;
    pt_lb_point_t *pts = malloc((n ? n : 1) * sizeof(*pts));
    if (pts == NULL)
        return -1;
    size_t k = 0;
    for (unsigned i = 0; i < ps->number; i++) {
        const pt_upstream_peer_t *p = &ps->peer[i];
        if (p->removed)
            continue;
        for (int j = 0; j < 40 * p->weight; j++) {
            char buf[300];
            int len = snprintf(buf, sizeof(buf), "%.*s-%d", (int) p->name.len, p->name.data, j);
            if (len < 0 || (size_t) len >= sizeof(buf))
                len = (int) sizeof(buf) - 1;
            unsigned char d[16];
            md5(buf, (size_t) len, d);
            for (int q = 0; q < 4; q++) {
                pts[k].hash = le32(d + 4 * q);
                pts[k].peer = i;
                k++;
            }
        }
    }
    qsort(pts, k, sizeof(*pts), point_cmp);
    free(ring->points);
    ring->points = pts;
    ring->number = (unsigned) k;
    return 0;
}

unsigned pt__lb_ring_find(const pt_lb_ring_t *ring, uint32_t h)
{
    unsigned lo = 0, hi = ring->number;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (ring->points[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == ring->number ? 0 : lo;
}

/* The primary peer whose cumulative weight range holds h, -1 when the set
 * has no weight at all. */
static int by_weight(const pt_upstream_peers_t *ps, uint32_t h)
{
    int64_t total = 0;
    for (unsigned i = 0; i < ps->number; i++)
        if (!ps->peer[i].removed)
            total += ps->peer[i].weight;
    if (total <= 0)
        return -1;
    int64_t w = (int64_t) (h % (uint64_t) total);
    for (unsigned i = 0; i < ps->number; i++) {
        if (ps->peer[i].removed)
            continue;
        w -= ps->peer[i].weight;
        if (w < 0)
            return (int) i;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Common selection */

static int get_by_hash(pt_upstream_t *u, hash_state_t *s, pt_lb_hash_conf_t *hc)
{
    int64_t now = pt_current_msec;
    pt_upstream_peers_t *ps = s->base.peers;
    int i = -1;

    pt__upstream_lock(u->group);
    if (!s->fallback && hc && hc->consistent) {
        pt_upstream_ext_t *ext = u->group->ext;
        unsigned gen = ext && ext->shared ? ext->shared->generation : 0;
        if (hc->ring.points == NULL || hc->ring.generation != gen) {
            if (pt__lb_ring_build(&hc->ring, ps) == 0)
                hc->ring.generation = gen;
        }
        if (hc->ring.number) {
            if (s->tries == 0)
                s->point = pt__lb_ring_find(&hc->ring, s->hash);
            /* walk the ring from the key's point to the first usable peer */
            for (unsigned n = 0; n < hc->ring.number && s->tries < HASH_TRIES * 8; n++) {
                unsigned idx = hc->ring.points[s->point].peer;
                s->point = (s->point + 1) % hc->ring.number;
                s->tries++;
                if (idx < ps->number && !pt__lb_tried(&s->base, idx)
                    && pt__lb_usable(ps, &ps->peer[idx], now)) {
                    i = (int) idx;
                    break;
                }
            }
        }
        if (i < 0)
            s->fallback = 1;
    } else if (!s->fallback) {
        while (s->tries < HASH_TRIES) {
            uint32_t h = s->tries ? remix(s->hash, s->tries) : s->hash;
            s->tries++;
            int idx = by_weight(ps, h);
            if (idx < 0)
                break;
            if (!pt__lb_tried(&s->base, (unsigned) idx)
                && pt__lb_usable(ps, &ps->peer[idx], now)) {
                i = idx;
                break;
            }
        }
        if (i < 0)
            s->fallback = 1;
    }
    if (i < 0)
        i = pt__lb_pick_wrr(&s->base, ps, now);
    if (i < 0) {
        int rc = pt__lb_none(u);
        pt__upstream_unlock(u->group);
        return rc;
    }
    pt__lb_choose(u, &s->base, (unsigned) i, now);
    pt__upstream_unlock(u->group);
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* ip_hash */

static int ip_init_group(pt_conf_t *cf, pt_upstream_group_t *g)
{
    pt__lb_init_weights(g);
    return pt__lb_no_backup(cf, g, "ip_hash");
}

/* The key bytes of a client address; 0 when it has none (unix socket). */
size_t pt__lb_ip_key(const pt_sockaddr_t *sa, unsigned char out[16])
{
    if (sa->sa.sa_family == AF_INET) {
        memcpy(out, &sa->sin.sin_addr, 3);
        return 3;
    }
    if (sa->sa.sa_family == AF_INET6) {
        const unsigned char *a = sa->sin6.sin6_addr.s6_addr;
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(a, mapped, 12) == 0) {
            /* an IPv4-mapped client hashes like the IPv4 one */
            memcpy(out, a + 12, 3);
            return 3;
        }
        memcpy(out, a, 16);
        return 16;
    }
    return 0;
}

static int ip_init_peer(pt_http_request_t *r, pt_upstream_t *u)
{
    if (pt__lb_init_peer(r, u, sizeof(hash_state_t)) != PT_OK)
        return PT_ERROR;
    hash_state_t *s = u->peer_data;
    unsigned char key[16];
    size_t n = pt__lb_ip_key(&r->connection->sockaddr, key);
    if (n == 0)
        s->fallback = 1;
    s->hash = pt__lb_hash_key((const char *) key, n);
    return PT_OK;
}

static int ip_get_peer(pt_upstream_t *u)
{
    return get_by_hash(u, u->peer_data, NULL);
}

const pt_upstream_balancer_t pt_upstream_balancer_ip_hash = {
    .name = "ip_hash",
    .init_group = ip_init_group,
    .init_peer = ip_init_peer,
    .get_peer = ip_get_peer,
    .free_peer = pt__lb_free_peer,
};

/* ------------------------------------------------------------------------ */
/* hash KEY [consistent] */

static void ring_free(void *data)
{
    pt_lb_ring_t *ring = data;
    free(ring->points);
    ring->points = NULL;
    ring->number = 0;
}

static int hash_init_group(pt_conf_t *cf, pt_upstream_group_t *g)
{
    pt__lb_init_weights(g);
    if (pt__lb_no_backup(cf, g, "hash") != 0)
        return -1;
    pt_lb_hash_conf_t *hc = g->balancer_conf;
    if (hc && hc->consistent) {
        if (pt__lb_ring_build(&hc->ring, g->peers) != 0)
            return -1;
        /* the ring is malloc'ed (workers rebuild it): freed with the config */
        if (cf && pt_pool_cleanup_add(cf->pool, ring_free, &hc->ring) != 0)
            return -1;
    }
    return 0;
}

/* Hash of a key for the non-consistent method. */
uint32_t pt__lb_hash_key(const char *data, size_t len)
{
    return fnv1a(2166136261u, data, len);
}

static int hash_init_peer(pt_http_request_t *r, pt_upstream_t *u)
{
    if (pt__lb_init_peer(r, u, sizeof(hash_state_t)) != PT_OK)
        return PT_ERROR;
    hash_state_t *s = u->peer_data;
    pt_lb_hash_conf_t *hc = u->group->balancer_conf;
    pt_str_t key = { 0, NULL };
    if (pt_http_cv_eval(r, &hc->key, &key) != 0)
        return PT_ERROR;
    s->hash = hc->consistent ? pt__lb_ring_key(key.data, key.len)
                             : pt__lb_hash_key(key.data, key.len);
    return PT_OK;
}

static int hash_get_peer(pt_upstream_t *u)
{
    return get_by_hash(u, u->peer_data, u->group->balancer_conf);
}

const pt_upstream_balancer_t pt_upstream_balancer_hash = {
    .name = "hash",
    .init_group = hash_init_group,
    .init_peer = hash_init_peer,
    .get_peer = hash_get_peer,
    .free_peer = pt__lb_free_peer,
};
