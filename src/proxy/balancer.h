/* Shared pieces of the balancers of issue 4 (least_conn, ip_hash, hash,
 * random) and of the group extensions (zone, active health checks, resolver,
 * runtime API). balancer_rr.c is the proxy engineer's and keeps its own code.
 *
 * Peer state lives in the peers arrays of a group. Without a zone they are
 * config memory copied into each worker by fork (per worker, as nginx); with
 * `zone` upstream_zone.c moves them into shared memory and every access to
 * the mutable fields happens under ext->mutex (pt__upstream_lock).
 *
 * Owner: upstream engineer (issue 4). */
#ifndef PT_PROXY_BALANCER_H
#define PT_PROXY_BALANCER_H

#include <stdint.h>
#include "upstream.h"
#include "../core/shm.h"
#include "../http/variables.h"

typedef struct pt_upstream_hc_s      pt_upstream_hc_t;      /* health.c */
typedef struct pt_upstream_shared_s  pt_upstream_shared_t;  /* upstream_zone.c */
typedef struct pt_upstream_resolve_s pt_upstream_resolve_t; /* resolver.c */

/* Per group extension (group->ext), made by the first directive that needs it. */
typedef struct pt_upstream_ext_s {
    pt_str_t               zone_name;
    int64_t                zone_size;
    pt_shm_zone_t         *zone;
    pt_upstream_shared_t  *shared;     /* in the zone, NULL without one */
    pt_shmtx_t            *mutex;      /* &shared->mutex, NULL without a zone */
    pt_upstream_hc_t      *hc;         /* health_check, NULL when none */
    pt_upstream_resolve_t *resolve;    /* resolve servers, NULL when none */
    unsigned               capacity;   /* peer slots of the primary set (runtime additions) */
    unsigned               backup_capacity;
    unsigned               local_generation; /* this worker's view (hash ring) */
    pt_array_t            *resolver;   /* `resolver` in the upstream block (pt_str_t), or NULL */
    int64_t                resolver_timeout; /* ms, -1 unset */
} pt_upstream_ext_t;

/* Shared part of a group in its zone. */
struct pt_upstream_shared_s {
    pt_shmtx_t           mutex;
    unsigned             generation;   /* bumped when peers are added or removed */
    unsigned             next_id;
    pt_upstream_peers_t *peers;        /* shm copies of the primary/backup sets */
    /* health check prober lease */
    int                  hc_owner;     /* pid of the probing worker, 0 none */
    int64_t              hc_lease;     /* wall ms until which the owner holds it */
    int                  resolve_owner;
    int64_t              resolve_lease;
};

pt_upstream_ext_t *pt__upstream_ext(pt_conf_t *cf, pt_upstream_group_t *g);

/* health.c: the group's health_check flags (0 without one). */
#define PT_HC_MANDATORY  1
#define PT_HC_PERSISTENT 2
unsigned pt__upstream_hc_flags(const pt_upstream_group_t *g);

/* upstream_conf.c: "host[:port]", "[v6]:port", "ip:port" or "unix:/path" to
 * addresses (host names through getaddrinfo, which blocks). Returns how many
 * were written (<= max, duplicates skipped) or -1 with *err set. */
int pt__upstream_resolve_addr(const pt_str_t *addr, in_port_t default_port,
                              pt_sockaddr_t *out, socklen_t *outlen, int max, const char **err);

/* resolver.c: setters of `resolver` and `resolver_timeout` in an upstream
 * block (conf = the group); they override the http-level ones for it. */
const char *pt__upstream_resolver_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt__upstream_resolver_timeout_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);

static inline void pt__upstream_lock(pt_upstream_group_t *g)
{
    if (g->ext && g->ext->mutex)
        pt_shmtx_lock(g->ext->mutex);
}

static inline void pt__upstream_unlock(pt_upstream_group_t *g)
{
    if (g->ext && g->ext->mutex)
        pt_shmtx_unlock(g->ext->mutex);
}

/* upstream_zone.c. After the peer list changed (lock held): totals, the
 * single flag, generation++. */
void pt__upstream_zone_changed(pt_upstream_group_t *g);
/* Adds a peer in a zone group (lock held): a free slot, or a removed one of
 * the same address; defaults weight=1 max_fails=1 fail_timeout=10s. NULL
 * when the group has no zone or no slot is left. */
pt_upstream_peer_t *pt__upstream_peer_add(pt_upstream_group_t *g, int backup,
                                          const pt_sockaddr_t *sa, socklen_t len,
                                          const pt_str_t *server);
/* Marks a peer removed (lock held); in-flight requests finish. */
void pt__upstream_peer_remove(pt_upstream_group_t *g, pt_upstream_peer_t *p);

/* Per request state common to the balancers: the set tried and a bitmap of
 * the peers already tried (256 per set, beyond that not remembered). */
typedef struct {
    pt_upstream_peers_t *peers;
    pt_upstream_peer_t  *current;
    uint64_t             tried[4];
} pt_lb_state_t;

static inline int pt__lb_tried(const pt_lb_state_t *s, unsigned i)
{
    return i < 256 && (s->tried[i / 64] >> (i % 64)) & 1;
}

static inline void pt__lb_mark(pt_lb_state_t *s, unsigned i)
{
    if (i < 256)
        s->tried[i / 64] |= (uint64_t) 1 << (i % 64);
}

/* 1 when p may take a new request now: not down, drained, removed, unhealthy,
 * failed within fail_timeout or at max_conns. */
int pt__upstream_peer_is_usable(const pt_upstream_peer_t *p, int64_t now);

/* pt__upstream_peer_is_usable, except that the single peer of a group (no
 * backups) ignores max_fails, as nginx. */
int pt__lb_usable(const pt_upstream_peers_t *ps, const pt_upstream_peer_t *p, int64_t now);

/* The weight p has now, in 1/PT_LB_WEIGHT_SCALE units: its effective
 * weight, ramped up over slow_start after it became usable again (at least 1
 * unit, so a recovering peer of weight 1 still starts with a small share). */
#define PT_LB_WEIGHT_SCALE 16
int pt__upstream_peer_weight(const pt_upstream_peer_t *p, int64_t now);

/* Bookkeeping when p is chosen (conns, the probe after fail_timeout). */
void pt__upstream_peer_take(pt_upstream_peer_t *p, int64_t now);

/* Bookkeeping after a try (conns, passive health as nginx: a failure counts
 * towards max_fails and lowers the effective weight; a success after the
 * failure window forgets the failures). */
void pt__upstream_peer_done(pt_upstream_peer_t *p, int state, int64_t now);

/* Smooth weighted round robin among the untried usable peers of ps. Returns
 * the index or -1. */
int pt__lb_pick_wrr(pt_lb_state_t *s, pt_upstream_peers_t *ps, int64_t now);

/* Common init_peer/free_peer for the balancers that keep only pt_lb_state_t
 * at the start of their state (size: of the whole state). */
int  pt__lb_init_peer(pt_http_request_t *r, pt_upstream_t *u, size_t size);
void pt__lb_free_peer(pt_upstream_t *u, int state);

/* Sets u->peer to peer index i of s->peers and takes it. */
void pt__lb_choose(pt_upstream_t *u, pt_lb_state_t *s, unsigned i, int64_t now);

/* No peer left: as nginx, forget the failures so that the next request tries
 * again. Returns PT_BUSY. */
int pt__lb_none(pt_upstream_t *u);

/* init_group check shared by the hash-like balancers: refuses backup servers
 * (nginx refuses them with ip_hash, hash and random). 0 or -1 (logged). */
int pt__lb_no_backup(pt_conf_t *cf, pt_upstream_group_t *g, const char *method);

/* Sets total_weight/weighted of every set and the start weights. */
void pt__lb_init_weights(pt_upstream_group_t *g);

/* Balancers of issue 4 (upstream_lb.c selects them). */
extern const pt_upstream_balancer_t pt_upstream_balancer_lc;
extern const pt_upstream_balancer_t pt_upstream_balancer_ip_hash;
extern const pt_upstream_balancer_t pt_upstream_balancer_hash;
extern const pt_upstream_balancer_t pt_upstream_balancer_random;

/* Ring of a consistent hash: points sorted by hash. */
typedef struct {
    uint32_t hash;
    unsigned peer;       /* index in the primary set */
} pt_lb_point_t;

typedef struct {
    pt_lb_point_t *points;
    unsigned       number;
    unsigned       generation;
} pt_lb_ring_t;

/* balancer_hash.c: conf of `hash KEY [consistent]` (group->balancer_conf);
 * the ring is per worker, rebuilt when the zone's generation moves. */
typedef struct {
    pt_http_cv_t key;
    pt_lb_ring_t ring;
    unsigned     consistent:1;
} pt_lb_hash_conf_t;

/* Builds the ring for the peers of ps (160 points per weight unit); points
 * in malloc'ed memory (replacing ring->points). Returns 0 or -1. */
int pt__lb_ring_build(pt_lb_ring_t *ring, const pt_upstream_peers_t *ps);
/* Hash of a key as the ring uses it. */
uint32_t pt__lb_ring_key(const char *data, size_t len);
/* Index of the first point >= h (wrapping). */
unsigned pt__lb_ring_find(const pt_lb_ring_t *ring, uint32_t h);

/* Key bytes of a client address for ip_hash (IPv4: 3 octets, IPv6: 16);
 * 0 for other families. */
size_t   pt__lb_ip_key(const pt_sockaddr_t *sa, unsigned char out[16]);
/* Hash of a key for the non-consistent hash method (and ip_hash). */
uint32_t pt__lb_hash_key(const char *data, size_t len);

/* balancer_random.c: conf of `random [two [least_conn]]`. */
typedef struct {
    unsigned two:1;
} pt_lb_random_conf_t;

/* Random numbers of this worker (xorshift; seeded per worker). */
uint32_t pt__lb_random(void);
void     pt__lb_random_seed(uint64_t seed);

/* resolver.c: the DNS messages. query: writes a query (RD set, class IN);
 * returns its length, 0 when the name does not fit. parse: a response's id,
 * rcode, minimum TTL and its A/AAAA answers with `port`; returns how many
 * addresses, -1 when malformed. */
size_t pt__dns_query(uint8_t *buf, size_t cap, uint16_t id, const char *host, uint16_t qtype);
int    pt__dns_parse(const uint8_t *m, size_t len, uint16_t *id, int *rcode, uint32_t *ttl,
                     in_port_t port, pt_sockaddr_t *out, socklen_t *outlen, unsigned max);

#endif
