/* Module "http_limit_req": limit_req_zone, limit_req, limit_req_status,
 * limit_req_log_level, limit_req_dry_run and $limit_req_status, with nginx's
 * semantics.
 *
 * The leaky bucket, per key of a zone:
 *   - state is `excess` (milli-requests waiting in the bucket) and `last`
 *     (when it was last accounted, pt_current_msec);
 *   - a request sees excess' = max(0, excess - rate * elapsed_ms / 1000 + 1000)
 *     (rate in milli-requests per second: 10r/s = 10000, 5r/m = 83);
 *   - excess' > burst * 1000: rejected (limit_req_status, 503 by default),
 *     and the bucket is left as it was;
 *   - otherwise it is stored, and the request waits
 *     (excess' - delay * 1000) * 1000 / rate ms when excess' exceeds the
 *     `delay` threshold (0 by default: every excess request waits; `nodelay`:
 *     none waits; `delay=N`: the first N excess requests pass at once).
 * So N requests sent at once with rate R r/s, burst B, nodelay: 1 + B pass.
 *
 * Several limit_req directives at one level all apply: every key is checked
 * first (a node checked but not the last one is held, not accounted), the
 * last one is accounted, and the earlier ones only once none rejected; the
 * longest of their delays wins (nginx's order).
 *
 * State lives in a shared memory zone (every worker limits as one): a hash
 * table of nodes keyed by the evaluated key with an LRU list; a lookup drops
 * one or two nodes idle for a minute with an empty bucket, and a full zone
 * drops the least recently used one. A zone of the same name and size keeps
 * its state across a reload (its key must not change, as nginx).
 *
 * The per-zone check sits behind limit_req_backend_t (the shared memory
 * one). A zone declared with `sync` keeps its buckets in Redis instead when
 * http {} has `limit_req_redis` (limit_req_redis.c is the client): every
 * Portico pointing at that Redis shares one budget per key. See "Cluster-wide
 * zones" below for the protocol, the clock and the failure rules.
 *
 * A delayed request is suspended with a timer (PT_AGAIN); when it fires the
 * phases run again and this handler declines (the request was limited once).
 * A client that closes meanwhile ends the request with 499. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../config/cycle.h"
#include "../core/loop.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "limit_req_redis.h"

extern pt_module_t pt_http_limit_req_module;

/* r->limit_req_status values ($limit_req_status). */
enum {
    LR_STATUS_NONE = 0,
    LR_STATUS_PASSED,
    LR_STATUS_DELAYED,
    LR_STATUS_REJECTED,
    LR_STATUS_DELAYED_DRY_RUN,
    LR_STATUS_REJECTED_DRY_RUN
};

/* Backend check results. */
enum {
    LR_OK = 0,      /* passed and accounted (the last limit) */
    LR_HELD,        /* passed; held until the last limit decided (*ref set) */
    LR_BUSY,        /* over the burst */
    LR_NOMEM        /* no room for the key: rejected too */
};

#define LR_MAX_KEY      65535
#define LR_IDLE_MS      60000       /* a node idle this long may be dropped */
#define LR_MIN_PAGES    8           /* smallest zone: 8 pages, as nginx */

typedef struct limit_req_zone_s limit_req_zone_t;

/* ------------------------------------------------------------------------ */
/* The leaky bucket arithmetic (pure, unit tested)                           */

/* Elapsed ms since last, as nginx: a clock gone back by more than a minute
 * counts as 1 ms, a small step back as 0. */
static int64_t lr_elapsed(int64_t now, int64_t last)
{
    int64_t ms = now - last;
    if (ms < -LR_IDLE_MS)
        return 1;
    if (ms < 0)
        return 0;
    return ms;
}

/* What has leaked out of the bucket in ms at rate (milli-requests/s). */
static int64_t lr_leaked(uint64_t rate, int64_t ms)
{
    if (ms <= 0 || rate == 0)
        return 0;
    if ((uint64_t) ms > (uint64_t) INT64_MAX / rate)
        return INT64_MAX;
    return (int64_t) (rate * (uint64_t) ms / 1000);
}

/* The excess (milli-requests) a new request sees: the stored excess, minus
 * what leaked in ms, plus this request (1000), floored at 0. The floor comes
 * after adding the request, as nginx: a request exactly one interval after
 * the previous one sees an empty bucket. */
static int64_t lr_excess(int64_t excess, uint64_t rate, int64_t ms)
{
    int64_t leaked = lr_leaked(rate, ms);
    if (excess < 0)
        excess = 0;
    if (excess > INT64_MAX - 1000)
        excess = INT64_MAX - 1000;
    int64_t full = excess + 1000;
    return leaked >= full ? 0 : full - leaked;
}

/* The wait (ms) for an accounted excess above the delay threshold. */
static int64_t lr_delay(int64_t excess, uint64_t delay, uint64_t rate)
{
    if (excess <= 0 || (uint64_t) excess <= delay || rate == 0)
        return 0;
    return (int64_t) (((uint64_t) excess - delay) * 1000 / rate);
}

/* "10r/s" -> 10000, "5r/m" -> 83 (milli-requests per second); 0 if invalid. */
static uint64_t lr_parse_rate(const char *p, size_t len)
{
    if (len < 4 || p[len - 3] != 'r' || p[len - 2] != '/')
        return 0;
    uint64_t scale;
    if (p[len - 1] == 's')
        scale = 1;
    else if (p[len - 1] == 'm')
        scale = 60;
    else
        return 0;
    int64_t n = pt_atoi64(p, len - 3);
    if (n <= 0 || n > INT64_MAX / 1000)
        return 0;
    return (uint64_t) n * 1000 / scale;
}

/* ------------------------------------------------------------------------ */
/* Shared state                                                              */

typedef struct lr_link_s lr_link_t;
struct lr_link_s {
    lr_link_t *prev, *next;
};

/* One key. The link comes first: an LRU link is its node. */
typedef struct lr_node_s lr_node_t;
struct lr_node_s {
    lr_link_t      lru;
    lr_node_t     *hnext;       /* hash chain */
    int64_t        last;        /* pt_current_msec when accounted; 0: new, held */
    int64_t        excess;      /* milli-requests */
    uint32_t       hash;
    uint16_t       len;
    uint16_t       count;       /* lookups holding it (not evictable) */
    unsigned char  data[];
};

typedef struct {
    lr_node_t **buckets;
    uint32_t    mask;
    uint32_t    nodes;
    lr_link_t   lru;            /* next: newest, prev: oldest */
} lr_shctx_t;

/* The check of one zone, behind a small interface: the shared-memory
 * implementation below; a cluster-wide one (Redis) later. */
typedef struct {
    const char *name;
    /* Applies one request for key with the given burst (milli). account: this
     * is the last limit to check, store the result now; otherwise a passing
     * key is held (*ref) for limit_req_backend_t.account or .release.
     * *excess gets the excess the request sees. Returns LR_OK, LR_HELD,
     * LR_BUSY or LR_NOMEM. */
    int     (*check)(limit_req_zone_t *z, const pt_str_t *key, uint64_t burst, int account,
                     void **ref, int64_t *excess);
    /* Accounts a held key (the request passed every limit); returns its new
     * excess. Releases the hold. */
    int64_t (*account)(limit_req_zone_t *z, void *ref);
    /* Drops a hold without accounting (a later limit rejected). */
    void    (*release)(limit_req_zone_t *z, void *ref);
} limit_req_backend_t;

struct limit_req_zone_s {
    pt_shm_zone_t             *shm;
    pt_http_cv_t               key;
    uint64_t                   rate;       /* milli-requests per second */
    unsigned                   sync:1;     /* shared through limit_req_redis */
    const limit_req_backend_t *backend;
    pt_slab_pool_t            *sp;         /* set when the zone is mapped */
    lr_shctx_t                *sh;
    pt_cycle_t                *cycle;      /* for messages at zone init */
};

static void lr_list_unlink(lr_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
}

static void lr_list_push(lr_link_t *head, lr_link_t *l)
{
    l->prev = head;
    l->next = head->next;
    head->next->prev = l;
    head->next = l;
}

static lr_node_t **lr_bucket(lr_shctx_t *sh, uint32_t hash)
{
    return &sh->buckets[hash & sh->mask];
}

static lr_node_t *lr_find(lr_shctx_t *sh, const pt_str_t *key, uint32_t hash)
{
    for (lr_node_t *n = *lr_bucket(sh, hash); n; n = n->hnext) {
        if (n->hash == hash && n->len == key->len
            && (key->len == 0 || memcmp(n->data, key->data, key->len) == 0))
            return n;
    }
    return NULL;
}

static void lr_remove(limit_req_zone_t *z, lr_node_t *n)
{
    lr_node_t **pp = lr_bucket(z->sh, n->hash);
    while (*pp && *pp != n)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = n->hnext;
    lr_list_unlink(&n->lru);
    z->sh->nodes--;
    pt_slab_free_locked(z->sp, n);
}

/* Drops the oldest nodes: force = 0 drops one or two that are idle a minute
 * with an empty bucket; force = 1 drops the least recently used one first
 * (the zone is full), then the same. Held nodes stop the scan (lookups move
 * nodes to the front, so nothing older is worth looking at). Locked. */
static void lr_expire(limit_req_zone_t *z, int force)
{
    int64_t now = pt_current_msec;
    int i = force ? 0 : 1;

    while (i < 3) {
        lr_link_t *l = z->sh->lru.prev;
        if (l == &z->sh->lru)
            return;
        lr_node_t *n = (lr_node_t *) l;
        if (n->count)
            return;
        if (i++ != 0) {
            int64_t ms = now - n->last;
            if (ms < 0)
                ms = -ms;
            if (ms < LR_IDLE_MS)
                return;
            if (n->excess - lr_leaked(z->rate, ms) > 0)
                return;
        }
        lr_remove(z, n);
    }
}

static int shm_check(limit_req_zone_t *z, const pt_str_t *key, uint64_t burst, int account,
                     void **ref, int64_t *ep)
{
    uint32_t hash = pt_hash(key->data, key->len);
    int64_t now = pt_current_msec;

    pt_shmtx_lock(&z->sp->mutex);
    lr_expire(z, 0);

    lr_node_t *n = lr_find(z->sh, key, hash);
    if (n != NULL) {
        lr_list_unlink(&n->lru);
        lr_list_push(&z->sh->lru, &n->lru);
        /* last == 0: created by a lookup still held, never accounted; its
         * bucket is empty (nginx: "last" 0 leaks everything) */
        int64_t ms = n->last ? lr_elapsed(now, n->last) : 0;
        int64_t excess = n->last ? lr_excess(n->excess, z->rate, ms) : 0;
        *ep = excess;
        if ((uint64_t) excess > burst) {
            pt_shmtx_unlock(&z->sp->mutex);
            return LR_BUSY;
        }
        if (account) {
            n->excess = excess;
            if (ms || n->last == 0)
                n->last = now;
            pt_shmtx_unlock(&z->sp->mutex);
            return LR_OK;
        }
        n->count++;
        *ref = n;
        pt_shmtx_unlock(&z->sp->mutex);
        return LR_HELD;
    }

    *ep = 0;
    size_t size = sizeof(lr_node_t) + key->len;
    n = pt_slab_alloc_locked(z->sp, size);
    if (n == NULL) {
        lr_expire(z, 1);
        n = pt_slab_alloc_locked(z->sp, size);
        if (n == NULL) {
            pt_shmtx_unlock(&z->sp->mutex);
            pt_log_error(PT_LOG_ALERT, NULL, 0, "could not allocate node%s", z->sp->log_ctx);
            return LR_NOMEM;
        }
    }
    n->hash = hash;
    n->len = (uint16_t) key->len;
    n->excess = 0;
    if (key->len)
        memcpy(n->data, key->data, key->len);
    lr_node_t **b = lr_bucket(z->sh, hash);
    n->hnext = *b;
    *b = n;
    lr_list_push(&z->sh->lru, &n->lru);
    z->sh->nodes++;

    if (account) {
        n->last = now;
        n->count = 0;
        pt_shmtx_unlock(&z->sp->mutex);
        return LR_OK;
    }
    n->last = 0;            /* new: accounted with an empty bucket */
    n->count = 1;
    *ref = n;
    pt_shmtx_unlock(&z->sp->mutex);
    return LR_HELD;
}

static int64_t shm_account(limit_req_zone_t *z, void *ref)
{
    lr_node_t *n = ref;
    int64_t now = pt_current_msec, excess;

    pt_shmtx_lock(&z->sp->mutex);
    if (n->last == 0) {
        excess = 0;
        n->last = now;
    } else {
        int64_t ms = lr_elapsed(now, n->last);
        excess = lr_excess(n->excess, z->rate, ms);
        if (ms)
            n->last = now;
    }
    n->excess = excess;
    if (n->count)
        n->count--;
    pt_shmtx_unlock(&z->sp->mutex);
    return excess;
}

static void shm_release(limit_req_zone_t *z, void *ref)
{
    lr_node_t *n = ref;
    pt_shmtx_lock(&z->sp->mutex);
    if (n->count)
        n->count--;
    pt_shmtx_unlock(&z->sp->mutex);
}

static const limit_req_backend_t limit_req_shm_backend = {
    "shm", shm_check, shm_account, shm_release
};

/* Sets up the shared context in a freshly mapped zone. Returns 0 or -1. */
static int lr_shctx_create(limit_req_zone_t *z, pt_slab_pool_t *sp)
{
    /* about one bucket per 512 bytes of zone (a node with a 16-byte key
     * takes 64..128 bytes): short chains, ~2% of the zone */
    uint32_t n = 16;
    while (n < (1u << 24) && (size_t) n * 512 < sp->size)
        n <<= 1;
    lr_shctx_t *sh = pt_slab_calloc(sp, sizeof(*sh));
    if (sh == NULL)
        return -1;
    sh->buckets = pt_slab_calloc(sp, (size_t) n * sizeof(lr_node_t *));
    if (sh->buckets == NULL)
        return -1;
    sh->mask = n - 1;
    sh->lru.next = sh->lru.prev = &sh->lru;
    sp->data = sh;
    z->sh = sh;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

typedef struct {
    pt_shm_zone_t *shm;     /* ->data: limit_req_zone_t once declared */
    uint64_t       burst;   /* milli-requests */
    uint64_t       delay;   /* milli-requests */
} limit_req_limit_t;

typedef struct {
    pt_array_t limits;          /* limit_req_limit_t; elts NULL: none here */
    unsigned   log_level;       /* limit_req_log_level (error) */
    unsigned   delay_log_level; /* one less severe, info at most */
    int64_t    status;          /* limit_req_status (503) */
    int        dry_run;         /* limit_req_dry_run (off) */
} limit_req_conf_t;

/* limit_req_redis (http main conf). */
typedef struct {
    pt_redis_conf_t rc;
    unsigned        configured:1;
    pt_redis_t     *client;     /* per worker, created at init_worker */
} lr_main_conf_t;

/* Per-request state: a wait for Redis, then perhaps a delay. */
enum { LRC_NONE = 0, LRC_WAIT, LRC_REPLY, LRC_FAILED };

typedef struct {
    pt_event_t         ev;          /* the delay timer */
    pt_http_request_t *r;
    pt_http_event_cb   saved_read;
    pt_http_event_cb   saved_write;
    int                state;       /* LRC_* (Redis) */
    pt_redis_cmd_t    *cmd;         /* pending Redis command */
    limit_req_limit_t *limits;      /* the location's limits */
    void             **refs;        /* local limits held while Redis decides */
    size_t             n;           /* entries of refs (the location's limits) */
    size_t             nremote;     /* keys sent to Redis */
    size_t            *remote;      /* the limit index of each key sent */
    int64_t           *excess;      /* reply: the excess each key sees */
    size_t             rejected;    /* reply: 1 + the key over its burst; 0: none */
} lr_ctx_t;

static int zone_init(pt_shm_zone_t *shm, void *old_data)
{
    limit_req_zone_t *z = shm->data, *oz = old_data;
    pt_slab_pool_t *sp = shm->addr;

    z->sp = sp;
    /* a full zone is normal: the least recently used key makes room */
    sp->log_nomem = 0;
    if (oz != NULL) {
        if (!pt_str_eq(&z->key.source, &oz->key.source)) {
            pt_cycle_t *c = z->cycle;
            pt_log_t *log = c->old_cycle ? c->old_cycle->log : c->log;
            pt_log_error(PT_LOG_EMERG, log, 0,
                         "limit_req \"%.*s\" uses the \"%.*s\" key "
                         "while previously it used the \"%.*s\" key",
                         (int) shm->name.len, shm->name.data,
                         (int) z->key.source.len, z->key.source.data,
                         (int) oz->key.source.len, oz->key.source.data);
            return -1;
        }
        /* kept across the reload: the buckets go on */
        z->sh = sp->data;
        if (z->sh != NULL)
            return 0;
    }
    snprintf(sp->log_ctx, sizeof(sp->log_ctx), " in limit_req zone \"%.*s\"",
             (int) shm->name.len, shm->name.data);
    return lr_shctx_create(z, sp);
}

/* limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m [sync] */
static const char *limit_req_zone_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    pt_str_t name = pt_null_string;
    int64_t size = 0;
    uint64_t rate = 1000;
    int sync = 0;

    for (size_t i = 2; i < cf->args->nelts; i++) {
        pt_str_t *v = &value[i];
        if (v->len > 5 && strncmp(v->data, "zone=", 5) == 0) {
            char *colon = memchr(v->data + 5, ':', v->len - 5);
            if (colon == NULL || colon == v->data + 5) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid zone size \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
            name.data = v->data + 5;
            name.len = (size_t) (colon - name.data);
            pt_str_t s = { (size_t) (v->data + v->len - colon - 1), colon + 1 };
            size = pt_conf_parse_size(&s);
            if (size < 0 || s.len == 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid zone size \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
            if (size < LR_MIN_PAGES * 4096) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "zone \"%s\" is too small", v->data);
                return PT_CONF_ERROR;
            }
            continue;
        }
        if (v->len > 5 && strncmp(v->data, "rate=", 5) == 0) {
            rate = lr_parse_rate(v->data + 5, v->len - 5);
            if (rate == 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid rate \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
            continue;
        }
        if (pt_str_eq_lit(v, "sync")) {
            sync = 1;
            continue;
        }
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", v->data);
        return PT_CONF_ERROR;
    }
    if (name.len == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" must have \"zone\" parameter", cmd->name);
        return PT_CONF_ERROR;
    }

    limit_req_zone_t *z = pt_pcalloc(cf->pool, sizeof(*z));
    if (z == NULL)
        return "failed (out of memory)";
    if (pt_http_cv_compile(cf, &value[1], &z->key) != 0)
        return PT_CONF_ERROR;

    pt_shm_zone_t *shm = pt_shm_zone_add(cf, &name, (size_t) size, &pt_http_limit_req_module);
    if (shm == NULL)
        return PT_CONF_ERROR;
    if (shm->data != NULL) {
        limit_req_zone_t *old = shm->data;
        pt_conf_error(cf, PT_LOG_EMERG, 0, "%s \"%.*s\" is already bound to key \"%.*s\"",
                      cmd->name, (int) name.len, name.data,
                      (int) old->key.source.len, old->key.source.data);
        return PT_CONF_ERROR;
    }
    z->shm = shm;
    z->rate = rate;
    z->sync = (unsigned) sync;
    z->backend = &limit_req_shm_backend;
    z->cycle = cf->cycle;
    shm->data = z;
    shm->init = zone_init;
    return PT_CONF_OK;
}

/* limit_req zone=NAME [burst=N] [nodelay | delay=N] */
static const char *limit_req_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    limit_req_conf_t *lrcf = conf;
    pt_str_t *value = cf->args->elts;
    pt_shm_zone_t *shm = NULL;
    int64_t burst = 0, delay = 0;
    int nodelay = 0;

    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t *v = &value[i];
        if (v->len > 5 && strncmp(v->data, "zone=", 5) == 0) {
            pt_str_t name = { v->len - 5, v->data + 5 };
            shm = pt_shm_zone_add(cf, &name, 0, &pt_http_limit_req_module);
            if (shm == NULL)
                return PT_CONF_ERROR;
            continue;
        }
        if (v->len > 6 && strncmp(v->data, "burst=", 6) == 0) {
            burst = pt_atoi64(v->data + 6, v->len - 6);
            if (burst <= 0 || burst > INT64_MAX / 1000000) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid burst value \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
            continue;
        }
        if (v->len > 6 && strncmp(v->data, "delay=", 6) == 0) {
            delay = pt_atoi64(v->data + 6, v->len - 6);
            if (delay <= 0 || delay > INT64_MAX / 1000000) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid delay value \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
            continue;
        }
        if (pt_str_eq_lit(v, "nodelay")) {
            nodelay = 1;
            continue;
        }
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", v->data);
        return PT_CONF_ERROR;
    }
    if (shm == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" must have \"zone\" parameter", cmd->name);
        return PT_CONF_ERROR;
    }

    if (lrcf->limits.elts == NULL
        && pt_array_init(&lrcf->limits, cf->pool, 1, sizeof(limit_req_limit_t)) != 0)
        return "failed (out of memory)";
    limit_req_limit_t *l = lrcf->limits.elts;
    for (size_t i = 0; i < lrcf->limits.nelts; i++) {
        if (l[i].shm == shm)
            return "is duplicate";
    }
    l = pt_array_push(&lrcf->limits);
    if (l == NULL)
        return "failed (out of memory)";
    l->shm = shm;
    l->burst = (uint64_t) burst * 1000;
    l->delay = nodelay ? (uint64_t) INT64_MAX : (uint64_t) delay * 1000;
    return PT_CONF_OK;
}

/* limit_req_redis ADDRESS[:PORT]|unix:PATH [timeout=T] [prefix=STR]
 *                 [password=STR] [db=N] */
static const char *limit_req_redis_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    lr_main_conf_t *mcf = conf;
    pt_str_t *value = cf->args->elts;
    if (mcf->configured)
        return "is duplicate";
    const char *err = pt_redis_conf_parse(&mcf->rc, &value[1], cf->args->nelts - 1);
    if (err != NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "%s", err);
        return PT_CONF_ERROR;
    }
    mcf->configured = 1;
    return PT_CONF_OK;
}

static void *create_main_conf(pt_conf_t *cf)
{
    return pt_pcalloc(cf->pool, sizeof(lr_main_conf_t));
}

static void *create_loc_conf(pt_conf_t *cf)
{
    limit_req_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->log_level = PT_CONF_UNSET_UINT;
    conf->status = PT_CONF_UNSET;
    conf->dry_run = PT_CONF_UNSET;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    limit_req_conf_t *prev = parent, *conf = child;
    /* limits are inherited only by a level that has none of its own */
    if (conf->limits.elts == NULL)
        conf->limits = prev->limits;
    pt_conf_merge_uint(conf->log_level, prev->log_level, PT_LOG_ERR);
    conf->delay_log_level = conf->log_level == PT_LOG_INFO ? PT_LOG_INFO : conf->log_level + 1;
    pt_conf_merge(conf->status, prev->status, 503);
    pt_conf_merge(conf->dry_run, prev->dry_run, 0);
    return PT_CONF_OK;
}

/* ------------------------------------------------------------------------ */
/* The PREACCESS handler                                                     */

static void release_held(limit_req_limit_t *limits, void **refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (refs[i] == NULL)
            continue;
        limit_req_zone_t *z = limits[i].shm->data;
        z->backend->release(z, refs[i]);
        refs[i] = NULL;
    }
}

/* The request ends (normally or not): nothing of it may stay armed, pending
 * or held. */
static void ctx_cleanup(void *data)
{
    lr_ctx_t *ctx = data;
    if (ctx->ev.timer_set)
        pt_timer_del(&ctx->ev);
    if (ctx->cmd != NULL) {
        pt_redis_cancel(ctx->cmd);
        ctx->cmd = NULL;
    }
    if (ctx->refs != NULL) {
        release_held(ctx->limits, ctx->refs, ctx->n);
        ctx->refs = NULL;
    }
}

static lr_ctx_t *ctx_get(pt_http_request_t *r)
{
    lr_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_limit_req_module);
    if (ctx != NULL)
        return ctx;
    ctx = pt_pcalloc(r->pool, sizeof(*ctx));
    if (ctx == NULL || pt_pool_cleanup_add(r->pool, ctx_cleanup, ctx) != 0)
        return NULL;
    ctx->r = r;
    ctx->ev.handler = NULL;
    ctx->ev.data = ctx;
    ctx->ev.timer_index = SIZE_MAX;
    pt_http_set_ctx(r, ctx, pt_http_limit_req_module);
    return ctx;
}

static void on_delay_timer(pt_event_t *ev)
{
    lr_ctx_t *d = ev->data;
    pt_http_request_t *r = d->r;

    r->read_event_handler = d->saved_read;
    r->write_event_handler = d->saved_write;
    if (r->done)
        return;
    /* the handler runs again and declines: the request was limited once */
    pt_http_core_run_phases(r);
}

/* While delayed or waiting for Redis: a client that goes away ends the
 * request (499). */
static void on_delay_read(pt_http_request_t *r)
{
    lr_ctx_t *d = pt_http_get_module_ctx(r, pt_http_limit_req_module);
    pt_conn_t *c = r->connection;
    int gone = r->aborted;

    if (!gone && c != NULL) {
        if (c->io.read.eof || c->io.read.error) {
            gone = 1;
        } else {
            char ch;
            ssize_t n = recv(c->io.fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                gone = 1;
        }
    }
    if (!gone)
        return;
    if (d != NULL) {
        if (d->ev.timer_set)
            pt_timer_del(&d->ev);
        if (d->cmd != NULL) {
            pt_redis_cancel(d->cmd);
            d->cmd = NULL;
        }
        r->read_event_handler = d->saved_read;
        r->write_event_handler = d->saved_write;
    }
    if (c != NULL)
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client prematurely closed connection");
    pt_http_finalize_request(r, 499);
}

static void on_delay_write(pt_http_request_t *r)
{
    (void) r;   /* nothing to write while waiting */
}

static void suspend(pt_http_request_t *r, lr_ctx_t *ctx)
{
    ctx->saved_read = r->read_event_handler;
    ctx->saved_write = r->write_event_handler;
    r->read_event_handler = on_delay_read;
    r->write_event_handler = on_delay_write;
}

/* A limit rejected the request (holds already released). */
static int reject(pt_http_request_t *r, limit_req_conf_t *conf, limit_req_limit_t *limit,
                  int64_t excess, int rc)
{
    if (rc == LR_BUSY)
        pt_log_error((int) conf->log_level, &r->connection->log, 0,
                     "limiting requests%s, excess: %lld.%03lld by zone \"%.*s\"",
                     conf->dry_run ? ", dry run" : "",
                     (long long) (excess / 1000), (long long) (excess % 1000),
                     (int) limit->shm->name.len, limit->shm->name.data);
    if (conf->dry_run) {
        r->limit_req_status = LR_STATUS_REJECTED_DRY_RUN;
        return PT_DECLINED;
    }
    r->limit_req_status = LR_STATUS_REJECTED;
    return (int) conf->status;
}

/* Every limit passed and was accounted: go on, or wait `delay` ms (the
 * longest wait, of `limit` with `excess`). */
static int pass(pt_http_request_t *r, limit_req_conf_t *conf, limit_req_limit_t *limit,
                int64_t excess, int64_t delay)
{
    if (delay == 0) {
        r->limit_req_status = LR_STATUS_PASSED;
        return PT_DECLINED;
    }

    pt_log_error((int) conf->delay_log_level, &r->connection->log, 0,
                 "delaying request%s, excess: %lld.%03lld, by zone \"%.*s\"",
                 conf->dry_run ? ", dry run" : "",
                 (long long) (excess / 1000), (long long) (excess % 1000),
                 (int) limit->shm->name.len, limit->shm->name.data);
    if (conf->dry_run) {
        r->limit_req_status = LR_STATUS_DELAYED_DRY_RUN;
        return PT_DECLINED;
    }
    r->limit_req_status = LR_STATUS_DELAYED;

    lr_ctx_t *d = ctx_get(r);
    if (d == NULL)
        return 500;
    d->ev.handler = on_delay_timer;
    suspend(r, d);
    pt_timer_add(&d->ev, delay);
    return PT_AGAIN;
}

/* Evaluates a limit's key: 0 with *key set (len 0: the limit does not
 * apply), or -1 (500). */
static int eval_key(pt_http_request_t *r, limit_req_zone_t *z, pt_str_t *key)
{
    if (pt_http_cv_eval(r, &z->key, key) != 0)
        return -1;
    if (key->len > LR_MAX_KEY) {
        pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                     "the value of the \"%.*s\" key is more than %d bytes: \"%.*s...\"",
                     (int) z->key.source.len, z->key.source.data, LR_MAX_KEY,
                     64, key->data);
        key->len = 0;
    }
    return 0;
}

/* Every limit in this worker's shared memory zones (sync zones too: their
 * local zone is the fallback when Redis cannot answer). */
static int local_check(pt_http_request_t *r, limit_req_conf_t *conf)
{
    limit_req_limit_t *limits = conf->limits.elts;
    size_t n = conf->limits.nelts, i, last = 0;
    void **refs = pt_pcalloc(r->pool, n * sizeof(void *));
    if (refs == NULL)
        return 500;

    int rc = -1;
    int64_t excess = 0;
    for (i = 0; i < n; i++) {
        limit_req_zone_t *z = limits[i].shm->data;
        pt_str_t key;
        if (eval_key(r, z, &key) != 0) {
            release_held(limits, refs, i);
            return 500;
        }
        if (key.len == 0)
            continue;
        last = i;
        rc = z->backend->check(z, &key, limits[i].burst, i == n - 1, &refs[i], &excess);
        if (rc != LR_HELD)
            break;
    }
    if (rc == -1)
        return PT_DECLINED;     /* every key empty */

    limit_req_limit_t *limit = &limits[last];
    limit_req_zone_t *lz = limit->shm->data;

    if (rc == LR_BUSY || rc == LR_NOMEM) {
        release_held(limits, refs, last);
        return reject(r, conf, limit, excess, rc);
    }

    /* passed every limit: account the held ones; the longest wait wins */
    if (rc == LR_HELD)
        excess = 0;     /* the last keys were empty: nothing of its own */
    int64_t delay = lr_delay(excess, limit->delay, lz->rate);
    for (i = 0; i < n; i++) {
        if (refs[i] == NULL)
            continue;
        limit_req_zone_t *z = limits[i].shm->data;
        int64_t e = z->backend->account(z, refs[i]);
        refs[i] = NULL;
        int64_t dl = lr_delay(e, limits[i].delay, z->rate);
        if (dl > delay) {
            delay = dl;
            excess = e;
            limit = &limits[i];
        }
    }
    return pass(r, conf, limit, excess, delay);
}

/* ------------------------------------------------------------------------ */
/* Cluster-wide zones (sync + limit_req_redis)                               */

/* The leaky bucket of every sync key of a request, in one atomic step: the
 * same arithmetic as lr_excess (milli-requests, a clock gone back a minute
 * or more counts 1 ms, a smaller step back 0), all keys checked before any
 * is stored, so a request rejected by one key is accounted by none (as the
 * local zones). KEYS: the keys; ARGV: rate (milli-requests/s) and burst
 * (milli-requests) of each key. Returns {0, excess...} when every key
 * passed (and was stored), {i, excess} when key i is over its burst.
 *
 * The clock is Redis's (TIME), not the callers': instances on different
 * machines compare one another's `last` stamps, and their clocks may drift
 * apart; one clock keeps the leak exact whoever accounted last. Each key
 * expires once its bucket has drained (plus a second), when a missing key
 * and the stored one give the same answer. */
static const char LR_SCRIPT[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ex, el = {}, {}\n"
    "for i = 1, #KEYS do\n"
    "  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])\n"
    "  local v = redis.call('HMGET', KEYS[i], 'e', 'l')\n"
    "  local e, ms = 0, -1\n"
    "  if v[1] and v[2] then\n"
    "    ms = now - tonumber(v[2])\n"
    "    if ms < -60000 then ms = 1 elseif ms < 0 then ms = 0 end\n"
    "    local full = math.max(tonumber(v[1]), 0) + 1000\n"
    "    local leaked = math.floor(rate * ms / 1000)\n"
    "    if leaked < full then e = full - leaked end\n"
    "  end\n"
    "  if e > burst then return {i, e} end\n"
    "  ex[i], el[i] = e, ms\n"
    "end\n"
    "local out = {0}\n"
    "for i = 1, #KEYS do\n"
    "  local rate = tonumber(ARGV[2 * i - 1])\n"
    "  if el[i] ~= 0 then\n"
    "    redis.call('HSET', KEYS[i], 'e', ex[i], 'l', now)\n"
    "  else\n"
    "    redis.call('HSET', KEYS[i], 'e', ex[i])\n"
    "  end\n"
    "  redis.call('PEXPIRE', KEYS[i], math.floor((ex[i] + 1000) * 1000 / rate) + 1000)\n"
    "  out[i + 1] = ex[i]\n"
    "end\n"
    "return out\n";

/* Reads the script's reply into ctx. Returns 0, or -1 for an unexpected
 * shape (treated as a failure: local limits). */
static int read_reply(lr_ctx_t *ctx, const pt_redis_reply_t *rep)
{
    if (rep->v.type != PT_REDIS_ARRAY || rep->nkept < 1
        || rep->elem[0].type != PT_REDIS_INTEGER)
        return -1;
    int64_t first = rep->elem[0].integer;
    if (first == 0) {
        if (rep->nelem != ctx->nremote + 1 || rep->nkept != rep->nelem)
            return -1;
        for (size_t k = 0; k < ctx->nremote; k++) {
            if (rep->elem[k + 1].type != PT_REDIS_INTEGER || rep->elem[k + 1].integer < 0)
                return -1;
            ctx->excess[k] = rep->elem[k + 1].integer;
        }
        ctx->rejected = 0;
        return 0;
    }
    if (first < 1 || (uint64_t) first > ctx->nremote || rep->nkept != 2
        || rep->elem[1].type != PT_REDIS_INTEGER)
        return -1;
    ctx->rejected = (size_t) first;
    ctx->excess[first - 1] = rep->elem[1].integer;
    return 0;
}

static void on_redis_reply(void *data, const pt_redis_reply_t *rep)
{
    lr_ctx_t *ctx = data;
    pt_http_request_t *r = ctx->r;

    ctx->cmd = NULL;
    r->read_event_handler = ctx->saved_read;
    r->write_event_handler = ctx->saved_write;
    if (r->done)
        return;     /* the pool cleanup releases the holds */
    if (rep != NULL && read_reply(ctx, rep) == 0) {
        ctx->state = LRC_REPLY;
    } else {
        release_held(ctx->limits, ctx->refs, ctx->n);
        ctx->state = LRC_FAILED;
    }
    /* the handler runs again and decides from ctx */
    pt_http_core_run_phases(r);
}

/* Sends the request's sync keys to Redis after holding its local limits.
 * Returns PT_AGAIN (waiting), a status (a local limit rejected), 500, or
 * PT_DECLINED when Redis is not to be asked (no sync key, Redis known down):
 * the caller then decides locally. */
static int remote_start(pt_http_request_t *r, limit_req_conf_t *conf, pt_redis_t *client,
                        const pt_redis_conf_t *rc)
{
    limit_req_limit_t *limits = conf->limits.elts;
    size_t n = conf->limits.nelts, nremote = 0;
    pt_str_t *keys = pt_palloc(r->pool, n * sizeof(pt_str_t));
    if (keys == NULL)
        return 500;
    for (size_t i = 0; i < n; i++) {
        limit_req_zone_t *z = limits[i].shm->data;
        if (!z->sync)
            continue;
        if (eval_key(r, z, &keys[i]) != 0)
            return 500;
        if (keys[i].len)
            nremote++;
    }
    if (nremote == 0 || nremote >= PT_REDIS_MAX_ELEMS)
        return PT_DECLINED;

    lr_ctx_t *ctx = ctx_get(r);
    if (ctx == NULL)
        return 500;
    ctx->limits = limits;
    ctx->n = n;
    ctx->nremote = nremote;
    ctx->refs = pt_pcalloc(r->pool, n * sizeof(void *));
    ctx->remote = pt_palloc(r->pool, nremote * sizeof(size_t));
    ctx->excess = pt_pcalloc(r->pool, nremote * sizeof(int64_t));
    /* numkeys, the keys, then rate and burst of each */
    pt_str_t *argv = pt_palloc(r->pool, (1 + 3 * nremote) * sizeof(pt_str_t));
    char *nums = pt_palloc(r->pool, (1 + 2 * nremote) * 24);
    if (ctx->refs == NULL || ctx->remote == NULL || ctx->excess == NULL || argv == NULL
        || nums == NULL)
        return 500;

    /* local limits first, held (as the non-last limits of local_check): one
     * over its burst rejects before Redis is asked */
    for (size_t i = 0; i < n; i++) {
        limit_req_zone_t *z = limits[i].shm->data;
        if (z->sync)
            continue;
        pt_str_t key;
        if (eval_key(r, z, &key) != 0) {
            release_held(limits, ctx->refs, n);
            return 500;
        }
        if (key.len == 0)
            continue;
        int64_t excess = 0;
        int lrc = z->backend->check(z, &key, limits[i].burst, 0, &ctx->refs[i], &excess);
        if (lrc == LR_BUSY || lrc == LR_NOMEM) {
            release_held(limits, ctx->refs, n);
            return reject(r, conf, &limits[i], excess, lrc);
        }
    }

    argv[0].data = nums;
    argv[0].len = (size_t) snprintf(nums, 24, "%zu", nremote);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        limit_req_zone_t *z = limits[i].shm->data;
        if (!z->sync || keys[i].len == 0)
            continue;
        /* PREFIX ZONE ":" KEY */
        pt_str_t *zn = &limits[i].shm->name;
        size_t len = rc->prefix.len + zn->len + 1 + keys[i].len;
        char *p = pt_palloc(r->pool, len);
        if (p == NULL) {
            release_held(limits, ctx->refs, n);
            return 500;
        }
        argv[1 + k].data = p;
        argv[1 + k].len = len;
        memcpy(p, rc->prefix.data, rc->prefix.len);
        p += rc->prefix.len;
        memcpy(p, zn->data, zn->len);
        p += zn->len;
        *p++ = ':';
        memcpy(p, keys[i].data, keys[i].len);

        char *num = nums + 24 * (1 + 2 * k);
        pt_str_t *a = &argv[1 + nremote + 2 * k];
        a[0].data = num;
        a[0].len = (size_t) snprintf(num, 24, "%llu", (unsigned long long) z->rate);
        a[1].data = num + 24;
        a[1].len = (size_t) snprintf(num + 24, 24, "%llu", (unsigned long long) limits[i].burst);
        ctx->remote[k++] = i;
    }

    ctx->cmd = pt_redis_eval(client, 1 + 3 * nremote, argv, on_redis_reply, ctx);
    if (ctx->cmd == NULL) {
        release_held(limits, ctx->refs, n);
        return PT_DECLINED;
    }
    ctx->state = LRC_WAIT;
    suspend(r, ctx);
    return PT_AGAIN;
}

/* Redis answered: reject, or account the held local limits and pass. */
static int remote_finish(pt_http_request_t *r, limit_req_conf_t *conf, lr_ctx_t *ctx)
{
    limit_req_limit_t *limits = conf->limits.elts;

    ctx->state = LRC_NONE;
    if (ctx->rejected) {
        release_held(limits, ctx->refs, ctx->n);
        size_t k = ctx->rejected - 1;
        return reject(r, conf, &limits[ctx->remote[k]], ctx->excess[k], LR_BUSY);
    }

    limit_req_limit_t *limit = NULL;
    int64_t delay = 0, excess = 0;
    for (size_t k = 0; k < ctx->nremote; k++) {
        limit_req_limit_t *l = &limits[ctx->remote[k]];
        limit_req_zone_t *z = l->shm->data;
        int64_t dl = lr_delay(ctx->excess[k], l->delay, z->rate);
        if (limit == NULL || dl > delay) {
            limit = l;
            delay = dl;
            excess = ctx->excess[k];
        }
    }
    for (size_t i = 0; i < ctx->n; i++) {
        if (ctx->refs[i] == NULL)
            continue;
        limit_req_zone_t *z = limits[i].shm->data;
        int64_t e = z->backend->account(z, ctx->refs[i]);
        ctx->refs[i] = NULL;
        int64_t dl = lr_delay(e, limits[i].delay, z->rate);
        if (dl > delay) {
            limit = &limits[i];
            delay = dl;
            excess = e;
        }
    }
    return pass(r, conf, limit, excess, delay);
}

static int limit_req_handler(pt_http_request_t *r)
{
    if (r->limit_req_status)
        return PT_DECLINED;
    limit_req_conf_t *conf = pt_http_get_module_loc_conf(r, pt_http_limit_req_module);
    if (conf == NULL || conf->limits.nelts == 0)
        return PT_DECLINED;

    lr_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_limit_req_module);
    if (ctx != NULL && ctx->state != LRC_NONE) {
        switch (ctx->state) {
        case LRC_WAIT:
            return PT_AGAIN;
        case LRC_REPLY:
            return remote_finish(r, conf, ctx);
        default:
            /* Redis could not answer: this request is limited locally */
            ctx->state = LRC_NONE;
            return local_check(r, conf);
        }
    }

    lr_main_conf_t *mcf = pt_http_get_module_main_conf(r, pt_http_limit_req_module);
    if (mcf != NULL && mcf->client != NULL) {
        int rc = remote_start(r, conf, mcf->client, &mcf->rc);
        if (rc != PT_DECLINED || r->limit_req_status)
            return rc;      /* waiting, or decided (a dry run declines) */
    }
    return local_check(r, conf);
}

/* ------------------------------------------------------------------------ */
/* $limit_req_status                                                         */

static int get_status_var(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    static const char *const names[] = {
        "", "PASSED", "DELAYED", "REJECTED", "DELAYED_DRY_RUN", "REJECTED_DRY_RUN"
    };
    (void) data;
    unsigned s = r->limit_req_status;
    v->valid = 1;
    v->no_cacheable = 1;
    if (s == LR_STATUS_NONE || s > LR_STATUS_REJECTED_DRY_RUN) {
        v->not_found = 1;
        v->value.len = 0;
        v->value.data = "";
        return PT_OK;
    }
    v->not_found = 0;
    v->value.data = (char *) names[s];
    v->value.len = strlen(names[s]);
    return PT_OK;
}

static int limit_req_preconf(pt_conf_t *cf)
{
    pt_str_t name = pt_string("limit_req_status");
    pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_status_var;
    v->data = 0;
    return 0;
}

static int limit_req_init(pt_conf_t *cf)
{
    /* a zone used by limit_req but never declared: nginx's message */
    for (pt_shm_zone_t *z = cf->cycle->shm_zones; z; z = z->next) {
        if (z->tag == &pt_http_limit_req_module && z->data == NULL) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0, "zero size shared memory zone \"%.*s\"",
                         (int) z->name.len, z->name.data);
            return -1;
        }
    }
    /* sync without a Redis to share through: the zone limits locally */
    lr_main_conf_t *mcf = pt_http_conf_get_module_main_conf(cf, pt_http_limit_req_module);
    for (pt_shm_zone_t *z = cf->cycle->shm_zones; z; z = z->next) {
        limit_req_zone_t *lz = z->data;
        if (z->tag == &pt_http_limit_req_module && lz->sync && !mcf->configured)
            pt_log_error(PT_LOG_WARN, cf->log, 0,
                         "limit_req zone \"%.*s\" is \"sync\" but there is no "
                         "\"limit_req_redis\": its limits are local to this instance",
                         (int) z->name.len, z->name.data);
    }
    return pt_http_phase_add(cf, PT_HTTP_PREACCESS_PHASE, limit_req_handler);
}

/* Each worker gets its own Redis client (it connects on first use). */
static int limit_req_init_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return 0;
    lr_main_conf_t *mcf = cycle->http_ctx->main_conf[pt_http_limit_req_module.index];
    if (mcf == NULL || !mcf->configured)
        return 0;
    int any = 0;
    for (pt_shm_zone_t *z = cycle->shm_zones; z; z = z->next) {
        limit_req_zone_t *lz = z->data;
        if (z->tag == &pt_http_limit_req_module && lz != NULL && lz->sync)
            any = 1;
    }
    if (!any)
        return 0;
    mcf->client = pt_redis_create(&mcf->rc, LR_SCRIPT, cycle->log);
    if (mcf->client == NULL)
        pt_log_error(PT_LOG_ALERT, cycle->log, 0,
                     "could not create the limit_req Redis client: limits are local");
    return 0;
}

static void limit_req_exit_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return;
    lr_main_conf_t *mcf = cycle->http_ctx->main_conf[pt_http_limit_req_module.index];
    if (mcf == NULL)
        return;
    pt_redis_destroy(mcf->client);
    mcf->client = NULL;
}

static const pt_conf_enum_t log_levels[] = {
    { "info", PT_LOG_INFO }, { "notice", PT_LOG_NOTICE }, { "warn", PT_LOG_WARN },
    { "error", PT_LOG_ERR }, { NULL, 0 }
};

static const pt_conf_bounds_t status_bounds = { 400, 599 };

static const pt_command_t limit_req_commands[] = {
    { "limit_req_zone", PT_CTX_HTTP, 0, 3, 4, limit_req_zone_cmd, PT_CONF_NONE, 0, NULL },
    { "limit_req", PT_CTX_HTTP_ANY, 0, 1, 3, limit_req_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "limit_req_redis", PT_CTX_HTTP, 0, 1, 5, limit_req_redis_cmd, PT_CONF_HTTP_MAIN, 0, NULL },
    { "limit_req_status", PT_CTX_HTTP_ANY, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      offsetof(limit_req_conf_t, status), &status_bounds },
    { "limit_req_log_level", PT_CTX_HTTP_ANY, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC,
      offsetof(limit_req_conf_t, log_level), log_levels },
    { "limit_req_dry_run", PT_CTX_HTTP_ANY, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, offsetof(limit_req_conf_t, dry_run), NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_limit_req_module = {
    .name = "http_limit_req",
    .commands = limit_req_commands,
    .create_main_conf = create_main_conf,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .preconfiguration = limit_req_preconf,
    .postconfiguration = limit_req_init,
    .init_worker = limit_req_init_worker,
    .exit_worker = limit_req_exit_worker,
};
