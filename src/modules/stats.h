/* The statistics zone: one small shared-memory zone, created whenever there
 * is an http { } block, that holds every counter the status modules report
 * (stub_status, metrics, status_page) so that they are totals across workers
 * and survive a reload (the zone is kept when its name and size match, as
 * every zone).
 *
 *   - the connection counters (pt_conn_stats_t, src/net/conn.h): each worker
 *     points pt_conn_stats_ptr at root->conn in pt_stats_worker_init(), so the
 *     existing `pt_conn_stats.x++` in net/ and http/ are atomic adds into shm;
 *   - request totals by status class, bytes in/out (the metrics module's LOG
 *     handler adds to them);
 *   - `status_zone NAME` slots: a fixed table of named slots; at every
 *     (re)load the names the configuration uses get their old slot back
 *     (counters go on) or a free one;
 *   - limit_req outcomes and proxy cache statuses.
 *
 * Every counter is a C11 atomic updated with one relaxed atomic add; readers
 * load them one by one (a snapshot is not atomic as a whole, as nginx's).
 *
 * Owner: status/metrics engineer (stats.c, stats.h, metrics.c,
 * status_page.c). */
#ifndef PT_MODULES_STATS_H
#define PT_MODULES_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include "../config/conf.h"
#include "../core/pool.h"
#include "../net/conn.h"

#define PT_STATS_ZONE_NAME  "portico:stats"   /* ':' keeps it apart from user zones */
#define PT_STATS_ZONES_MAX  256               /* status_zone names */
#define PT_STATS_NAME_MAX   64                /* bytes of a status_zone name */

/* Status classes: [0] no response sent (444, client gone), [1..5] 1xx..5xx. */
#define PT_STATS_CLASSES    6

typedef struct {
    _Atomic uint64_t requests;
    _Atomic uint64_t responses[PT_STATS_CLASSES];
    _Atomic uint64_t received;       /* request bytes (header + body) */
    _Atomic uint64_t sent;           /* response bytes (header + body) */
} pt_stats_counters_t;

typedef struct {
    char                name[PT_STATS_NAME_MAX];   /* NUL-terminated; "" = free */
    pt_stats_counters_t c;
} pt_stats_slot_t;

/* limit_req outcomes, indexed by r->limit_req_status (limit_req.c's values:
 * 1 passed, 2 delayed, 3 rejected, 4 delayed dry run, 5 rejected dry run). */
#define PT_STATS_LIMIT_REQ_N 6
/* Cache statuses, in this order: */
#define PT_STATS_CACHE_N     7
extern const char *const pt_stats_cache_names[PT_STATS_CACHE_N];  /* "MISS", ... "HIT" */

/* The zone's root object (slab pool's data). */
typedef struct {
    pt_conn_stats_t     conn __attribute__((aligned(64)));
    pt_stats_counters_t all __attribute__((aligned(64)));
    _Atomic uint64_t    limit_req[PT_STATS_LIMIT_REQ_N];
    _Atomic uint64_t    cache[PT_STATS_CACHE_N];
    int64_t             start_time;       /* unix seconds: first start (kept across reloads) */
    _Atomic int64_t     load_time;        /* unix seconds: last configuration loaded */
    _Atomic uint64_t    generation;       /* configurations loaded */
    pt_stats_slot_t     slots[PT_STATS_ZONES_MAX];
} pt_stats_root_t;

/* Per configuration (cycle): the status_zone names it uses, in first-use
 * order, and their slots once the zone is mapped. */
typedef struct {
    pt_str_t          names[PT_STATS_ZONES_MAX];
    pt_stats_slot_t  *slots[PT_STATS_ZONES_MAX];
    unsigned          n;
    pt_stats_root_t  *root;             /* set by the zone's init (master) */
    unsigned char     take[PT_STATS_ZONES_MAX]; /* slots[i] is renamed to names[i]
                                                 * when the cycle commits */
} pt_stats_conf_t;

/* Config time (any http module): registers the zone in this cycle once and
 * returns its per-cycle record, or NULL (logged). */
pt_stats_conf_t *pt_stats_conf(pt_conf_t *cf);
/* Config time: the index of status zone `name` (added on first use), or -1
 * (logged: too long, too many). */
int pt_stats_zone_index(pt_conf_t *cf, const pt_str_t *name);

/* In each worker, before the loop (idempotent): finds this cycle's zone,
 * sets pt_stats / pt_stats_cf and moves pt_conn_stats into it. Returns 0
 * (also when there is no http block: the counters stay process-local). */
int pt_stats_worker_init(pt_cycle_t *cycle);

/* This worker's view (NULL before pt_stats_worker_init or without http). */
extern pt_stats_root_t *pt_stats;
extern pt_stats_conf_t *pt_stats_cf;

/* Adds one finished request to c (no-op for NULL). */
static inline void pt_stats_count(pt_stats_counters_t *c, int status, int64_t in, int64_t out)
{
    if (c == NULL)
        return;
    unsigned cls = (status >= 100 && status < 600) ? (unsigned) (status / 100) : 0;
    atomic_fetch_add_explicit(&c->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->responses[cls], 1, memory_order_relaxed);
    if (in > 0)
        atomic_fetch_add_explicit(&c->received, (uint64_t) in, memory_order_relaxed);
    if (out > 0)
        atomic_fetch_add_explicit(&c->sent, (uint64_t) out, memory_order_relaxed);
}

static inline uint64_t pt_stats_load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Upstream peers as the upstream code keeps them (src/proxy/upstream.h):
 * shared across workers for a group with a `zone`, this worker's own
 * otherwise (`shared` says which). Per-peer response codes are not kept by
 * the upstream code. */
typedef struct {
    const pt_str_t *group;
    const pt_str_t *peer;          /* "127.0.0.1:8080" */
    const pt_str_t *server;        /* the server line's address as written */
    const char     *state;         /* "up", "down", "draining", "unhealthy", "unavail" */
    uint64_t        requests;      /* requests sent to it */
    uint64_t        fails_total;   /* failed attempts */
    unsigned        active;        /* connections now */
    unsigned        fails;         /* current failures (passive health) */
    unsigned        max_fails;
    unsigned        weight;
    unsigned        backup:1;
    unsigned        shared:1;      /* the group has a zone */
    unsigned        first:1;       /* first peer of its group */
} pt_stats_peer_t;

typedef void (*pt_stats_peer_cb)(const pt_stats_peer_t *p, void *arg);
/* Calls cb for each peer of each upstream group (explicit upstream { } and
 * proxy_pass's implicit ones), under the group's lock when it has a zone. */
void pt_stats_each_peer(void **main_conf, pt_stats_peer_cb cb, void *arg);

/* A growing text buffer in a request pool (for the status outputs). On
 * allocation failure `failed` is set and later appends do nothing. */
typedef struct {
    pt_pool_t *pool;
    char      *data;
    size_t     len, cap;
    int        failed;
} pt_stats_buf_t;

void pt_stats_buf_init(pt_stats_buf_t *b, pt_pool_t *pool, size_t cap);
void pt_stats_buf_printf(pt_stats_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pt_stats_buf_add(pt_stats_buf_t *b, const char *s, size_t len);
/* Appends s escaped for a JSON string (without quotes) or a Prometheus label
 * value (backslash, double quote, newline; JSON also escapes controls). */
void pt_stats_buf_json_str(pt_stats_buf_t *b, const char *s, size_t len);
void pt_stats_buf_label(pt_stats_buf_t *b, const char *s, size_t len);

#endif
