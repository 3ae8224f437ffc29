/* Module "http_limit_conn": limit_conn_zone, limit_conn, limit_conn_status,
 * limit_conn_log_level, limit_conn_dry_run and $limit_conn_status, with
 * nginx's semantics.
 *
 * A zone counts, per evaluated key, the requests being processed (for
 * HTTP/2 each stream is one). The PREACCESS handler takes one count per
 * limit_conn of the location; a key already at its limit rejects the request
 * (limit_conn_status, 503 by default; what this request took is given back).
 * The counts are released by a cleanup of r->pool, i.e. when the request
 * ends. An empty key is not counted; keys longer than 255 bytes are logged
 * and not counted.
 *
 * Counts live in a shared memory zone (a hash table of nodes, a node freed
 * when its count drops to 0), so every worker limits as one. A zone of the
 * same name and size is kept across a reload: requests of the old workers
 * still release their counts into it. Its key must not change (nginx). */
#include <stdio.h>
#include <string.h>

#include "../config/cycle.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"

extern pt_module_t pt_http_limit_conn_module;

/* r->limit_conn_status values ($limit_conn_status). */
enum {
    LC_STATUS_NONE = 0,
    LC_STATUS_PASSED,
    LC_STATUS_REJECTED,
    LC_STATUS_REJECTED_DRY_RUN
};

#define LC_MAX_KEY      255
#define LC_MAX_CONN     65535
#define LC_MIN_PAGES    8

typedef struct lc_node_s lc_node_t;
struct lc_node_s {
    lc_node_t     *hnext;
    uint32_t       hash;
    uint16_t       len;
    uint16_t       conn;
    unsigned char  data[];
};

typedef struct {
    lc_node_t **buckets;
    uint32_t    mask;
    uint32_t    nodes;
} lc_shctx_t;

typedef struct {
    pt_shm_zone_t  *shm;
    pt_http_cv_t    key;
    pt_slab_pool_t *sp;
    lc_shctx_t     *sh;
    pt_cycle_t     *cycle;
} limit_conn_zone_t;

typedef struct {
    pt_shm_zone_t *shm;     /* ->data: limit_conn_zone_t once declared */
    unsigned       conn;
} limit_conn_limit_t;

typedef struct {
    pt_array_t limits;      /* limit_conn_limit_t; elts NULL: none here */
    unsigned   log_level;   /* limit_conn_log_level (error) */
    int64_t    status;      /* limit_conn_status (503) */
    int        dry_run;     /* limit_conn_dry_run (off) */
} limit_conn_conf_t;

/* What a request holds, released by its pool cleanup. */
typedef struct {
    limit_conn_zone_t *zone;
    lc_node_t         *node;
} lc_hold_t;

typedef struct {
    lc_hold_t *holds;
    size_t     n;
} lc_holds_t;

/* ------------------------------------------------------------------------ */
/* Shared state                                                              */

static lc_node_t **lc_bucket(lc_shctx_t *sh, uint32_t hash)
{
    return &sh->buckets[hash & sh->mask];
}

/* Takes one count for key unless it is at max. Returns the node, or NULL
 * with *full = 1 (at the limit) or 0 (no memory). */
static lc_node_t *lc_acquire(limit_conn_zone_t *z, const pt_str_t *key, unsigned max, int *full)
{
    uint32_t hash = pt_hash(key->data, key->len);
    lc_node_t *n;

    *full = 0;
    pt_shmtx_lock(&z->sp->mutex);
    for (n = *lc_bucket(z->sh, hash); n; n = n->hnext) {
        if (n->hash == hash && n->len == key->len && memcmp(n->data, key->data, key->len) == 0)
            break;
    }
    if (n != NULL) {
        if (n->conn >= max) {
            pt_shmtx_unlock(&z->sp->mutex);
            *full = 1;
            return NULL;
        }
        n->conn++;
        pt_shmtx_unlock(&z->sp->mutex);
        return n;
    }
    n = pt_slab_alloc_locked(z->sp, sizeof(lc_node_t) + key->len);
    if (n == NULL) {
        pt_shmtx_unlock(&z->sp->mutex);
        return NULL;
    }
    n->hash = hash;
    n->len = (uint16_t) key->len;
    n->conn = 1;
    memcpy(n->data, key->data, key->len);
    lc_node_t **b = lc_bucket(z->sh, hash);
    n->hnext = *b;
    *b = n;
    z->sh->nodes++;
    pt_shmtx_unlock(&z->sp->mutex);
    return n;
}

static void lc_release(limit_conn_zone_t *z, lc_node_t *n)
{
    pt_shmtx_lock(&z->sp->mutex);
    if (n->conn)
        n->conn--;
    if (n->conn == 0) {
        lc_node_t **pp = lc_bucket(z->sh, n->hash);
        while (*pp && *pp != n)
            pp = &(*pp)->hnext;
        if (*pp)
            *pp = n->hnext;
        z->sh->nodes--;
        pt_slab_free_locked(z->sp, n);
    }
    pt_shmtx_unlock(&z->sp->mutex);
}

static int zone_init(pt_shm_zone_t *shm, void *old_data)
{
    limit_conn_zone_t *z = shm->data, *oz = old_data;
    pt_slab_pool_t *sp = shm->addr;

    z->sp = sp;
    if (oz != NULL) {
        if (!pt_str_eq(&z->key.source, &oz->key.source)) {
            pt_cycle_t *c = z->cycle;
            pt_log_t *log = c->old_cycle ? c->old_cycle->log : c->log;
            pt_log_error(PT_LOG_EMERG, log, 0,
                         "limit_conn_zone \"%.*s\" uses the \"%.*s\" key "
                         "while previously it used the \"%.*s\" key",
                         (int) shm->name.len, shm->name.data,
                         (int) z->key.source.len, z->key.source.data,
                         (int) oz->key.source.len, oz->key.source.data);
            return -1;
        }
        z->sh = sp->data;
        if (z->sh != NULL)
            return 0;
    }
    snprintf(sp->log_ctx, sizeof(sp->log_ctx), " in limit_conn_zone \"%.*s\"",
             (int) shm->name.len, shm->name.data);
    uint32_t n = 16;
    while (n < (1u << 24) && (size_t) n * 512 < sp->size)
        n <<= 1;
    lc_shctx_t *sh = pt_slab_calloc(sp, sizeof(*sh));
    if (sh == NULL)
        return -1;
    sh->buckets = pt_slab_calloc(sp, (size_t) n * sizeof(lc_node_t *));
    if (sh->buckets == NULL)
        return -1;
    sh->mask = n - 1;
    sp->data = sh;
    z->sh = sh;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

/* limit_conn_zone KEY zone=NAME:SIZE */
static const char *limit_conn_zone_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    pt_str_t name = pt_null_string;
    int64_t size = 0;

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
            if (size < LC_MIN_PAGES * 4096) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "zone \"%s\" is too small", v->data);
                return PT_CONF_ERROR;
            }
            continue;
        }
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", v->data);
        return PT_CONF_ERROR;
    }
    if (name.len == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" must have \"zone\" parameter", cmd->name);
        return PT_CONF_ERROR;
    }

    limit_conn_zone_t *z = pt_pcalloc(cf->pool, sizeof(*z));
    if (z == NULL)
        return "failed (out of memory)";
    if (pt_http_cv_compile(cf, &value[1], &z->key) != 0)
        return PT_CONF_ERROR;
    pt_shm_zone_t *shm = pt_shm_zone_add(cf, &name, (size_t) size, &pt_http_limit_conn_module);
    if (shm == NULL)
        return PT_CONF_ERROR;
    if (shm->data != NULL) {
        limit_conn_zone_t *old = shm->data;
        pt_conf_error(cf, PT_LOG_EMERG, 0, "%s \"%.*s\" is already bound to key \"%.*s\"",
                      cmd->name, (int) name.len, name.data,
                      (int) old->key.source.len, old->key.source.data);
        return PT_CONF_ERROR;
    }
    z->shm = shm;
    z->cycle = cf->cycle;
    shm->data = z;
    shm->init = zone_init;
    return PT_CONF_OK;
}

/* limit_conn ZONE NUMBER */
static const char *limit_conn_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    limit_conn_conf_t *lccf = conf;
    pt_str_t *value = cf->args->elts;

    pt_shm_zone_t *shm = pt_shm_zone_add(cf, &value[1], 0, &pt_http_limit_conn_module);
    if (shm == NULL)
        return PT_CONF_ERROR;
    if (lccf->limits.elts == NULL
        && pt_array_init(&lccf->limits, cf->pool, 1, sizeof(limit_conn_limit_t)) != 0)
        return "failed (out of memory)";
    limit_conn_limit_t *l = lccf->limits.elts;
    for (size_t i = 0; i < lccf->limits.nelts; i++) {
        if (l[i].shm == shm)
            return "is duplicate";
    }
    int64_t n = pt_atoi64(value[2].data, value[2].len);
    if (n <= 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of connections \"%s\"", value[2].data);
        return PT_CONF_ERROR;
    }
    if (n > LC_MAX_CONN) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "connection limit must be less 65536");
        return PT_CONF_ERROR;
    }
    l = pt_array_push(&lccf->limits);
    if (l == NULL)
        return "failed (out of memory)";
    l->shm = shm;
    l->conn = (unsigned) n;
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    limit_conn_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->log_level = PT_CONF_UNSET_UINT;
    conf->status = PT_CONF_UNSET;
    conf->dry_run = PT_CONF_UNSET;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    limit_conn_conf_t *prev = parent, *conf = child;
    if (conf->limits.elts == NULL)
        conf->limits = prev->limits;
    pt_conf_merge_uint(conf->log_level, prev->log_level, PT_LOG_ERR);
    pt_conf_merge(conf->status, prev->status, 503);
    pt_conf_merge(conf->dry_run, prev->dry_run, 0);
    return PT_CONF_OK;
}

/* ------------------------------------------------------------------------ */
/* The PREACCESS handler                                                     */

static void release_all(lc_holds_t *h)
{
    for (size_t i = 0; i < h->n; i++)
        lc_release(h->holds[i].zone, h->holds[i].node);
    h->n = 0;
}

static void on_cleanup(void *data)
{
    release_all(data);
}

static int limit_conn_handler(pt_http_request_t *r)
{
    if (r->limit_conn_status)
        return PT_DECLINED;
    limit_conn_conf_t *conf = pt_http_get_module_loc_conf(r, pt_http_limit_conn_module);
    if (conf == NULL || conf->limits.nelts == 0)
        return PT_DECLINED;

    limit_conn_limit_t *limits = conf->limits.elts;
    lc_holds_t *h = NULL;

    for (size_t i = 0; i < conf->limits.nelts; i++) {
        limit_conn_zone_t *z = limits[i].shm->data;
        pt_str_t key;
        if (pt_http_cv_eval(r, &z->key, &key) != 0) {
            if (h)
                release_all(h);
            return 500;
        }
        if (key.len == 0)
            continue;
        if (key.len > LC_MAX_KEY) {
            pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                         "the value of the \"%.*s\" key is more than %d bytes: \"%.*s\"",
                         (int) z->key.source.len, z->key.source.data, LC_MAX_KEY,
                         (int) key.len, key.data);
            continue;
        }
        r->limit_conn_status = LC_STATUS_PASSED;

        if (h == NULL) {
            h = pt_pcalloc(r->pool, sizeof(*h));
            if (h != NULL)
                h->holds = pt_palloc(r->pool, conf->limits.nelts * sizeof(lc_hold_t));
            if (h == NULL || h->holds == NULL || pt_pool_cleanup_add(r->pool, on_cleanup, h) != 0)
                return 500;
        }

        int full;
        lc_node_t *n = lc_acquire(z, &key, limits[i].conn, &full);
        if (n == NULL) {
            if (full)
                pt_log_error((int) conf->log_level, &r->connection->log, 0,
                             "limiting connections%s by zone \"%.*s\"",
                             conf->dry_run ? ", dry run," : "",
                             (int) limits[i].shm->name.len, limits[i].shm->name.data);
            release_all(h);
            if (conf->dry_run) {
                r->limit_conn_status = LC_STATUS_REJECTED_DRY_RUN;
                return PT_DECLINED;
            }
            r->limit_conn_status = LC_STATUS_REJECTED;
            return (int) conf->status;
        }
        h->holds[h->n].zone = z;
        h->holds[h->n].node = n;
        h->n++;
    }
    return PT_DECLINED;
}

/* ------------------------------------------------------------------------ */
/* $limit_conn_status                                                        */

static int get_status_var(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    static const char *const names[] = { "", "PASSED", "REJECTED", "REJECTED_DRY_RUN" };
    (void) data;
    unsigned s = r->limit_conn_status;
    v->valid = 1;
    v->no_cacheable = 1;
    if (s == LC_STATUS_NONE) {
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

static int limit_conn_preconf(pt_conf_t *cf)
{
    pt_str_t name = pt_string("limit_conn_status");
    pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_status_var;
    v->data = 0;
    return 0;
}

static int limit_conn_init(pt_conf_t *cf)
{
    for (pt_shm_zone_t *z = cf->cycle->shm_zones; z; z = z->next) {
        if (z->tag == &pt_http_limit_conn_module && z->data == NULL) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0, "zero size shared memory zone \"%.*s\"",
                         (int) z->name.len, z->name.data);
            return -1;
        }
    }
    return pt_http_phase_add(cf, PT_HTTP_PREACCESS_PHASE, limit_conn_handler);
}

static const pt_conf_enum_t log_levels[] = {
    { "info", PT_LOG_INFO }, { "notice", PT_LOG_NOTICE }, { "warn", PT_LOG_WARN },
    { "error", PT_LOG_ERR }, { NULL, 0 }
};

static const pt_conf_bounds_t status_bounds = { 400, 599 };

static const pt_command_t limit_conn_commands[] = {
    { "limit_conn_zone", PT_CTX_HTTP, 0, 2, 2, limit_conn_zone_cmd, PT_CONF_NONE, 0, NULL },
    { "limit_conn", PT_CTX_HTTP_ANY, 0, 2, 2, limit_conn_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "limit_conn_status", PT_CTX_HTTP_ANY, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      offsetof(limit_conn_conf_t, status), &status_bounds },
    { "limit_conn_log_level", PT_CTX_HTTP_ANY, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC,
      offsetof(limit_conn_conf_t, log_level), log_levels },
    { "limit_conn_dry_run", PT_CTX_HTTP_ANY, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, offsetof(limit_conn_conf_t, dry_run), NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_limit_conn_module = {
    .name = "http_limit_conn",
    .commands = limit_conn_commands,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .preconfiguration = limit_conn_preconf,
    .postconfiguration = limit_conn_init,
};
