/* The statistics zone (see stats.h): registration at config time, slot
 * assignment in the master when the zone is mapped, and the per-worker view.
 * Also the small text buffer the status outputs are written into. */
#include "stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../config/cycle.h"
#include "../core/log.h"
#include "../core/shm.h"
#include "../core/time.h"
#include "../proxy/balancer.h"
#include "../proxy/upstream.h"

/* Fixed, so that a reload finds a zone of the same size and keeps it. */
#define STATS_ZONE_SIZE ((sizeof(pt_stats_root_t) + 65535) / 4096 * 4096 + 32768)

const char *const pt_stats_cache_names[PT_STATS_CACHE_N] = {
    "MISS", "BYPASS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED", "HIT"
};

pt_stats_root_t *pt_stats;
pt_stats_conf_t *pt_stats_cf;

static char stats_tag;   /* the zone's owner tag */

static int name_is(const pt_stats_slot_t *s, const pt_str_t *name)
{
    return strlen(s->name) == name->len && memcmp(s->name, name->data, name->len) == 0;
}

static int name_in_conf(const pt_stats_conf_t *sc, const char *name)
{
    size_t len = strlen(name);
    for (unsigned i = 0; i < sc->n; i++) {
        if (sc->names[i].len == len && memcmp(sc->names[i].data, name, len) == 0)
            return 1;
    }
    return 0;
}

static void slot_take(pt_stats_slot_t *s, const pt_str_t *name)
{
    memset(&s->c, 0, sizeof(s->c));
    memcpy(s->name, name->data, name->len);
    s->name[name->len] = '\0';
}

/* Applies what zone_init planned: the slots taken by new names are renamed
 * (their counters start at zero) and the load is counted. */
static void zone_commit(pt_shm_zone_t *zone)
{
    pt_stats_conf_t *sc = zone->data;
    if (sc == NULL || sc->root == NULL)
        return;
    for (unsigned i = 0; i < sc->n; i++) {
        if (sc->take[i] && sc->slots[i] != NULL)
            slot_take(sc->slots[i], &sc->names[i]);
        sc->take[i] = 0;
    }
    atomic_store(&sc->root->load_time, (int64_t) time(NULL));
    atomic_fetch_add(&sc->root->generation, 1);
}

/* Master, after mapping: the root (kept or new), then each configured name
 * gets its slot: the one of the same name (counters go on), else a free one,
 * else one no longer named by this configuration (reset). Two-phase: with a
 * kept zone (old_data) the running workers still count into these slots and
 * the new cycle may yet fail, so this only plans; zone_commit renames. */
static int zone_init(pt_shm_zone_t *zone, void *old_data)
{
    pt_stats_conf_t *sc = zone->data;
    pt_slab_pool_t *sp = zone->addr;
    pt_stats_root_t *root = (old_data != NULL) ? sp->data : NULL;
    unsigned char claimed[PT_STATS_ZONES_MAX];

    if (root == NULL) {
        root = pt_slab_calloc(sp, sizeof(*root));
        if (root == NULL)
            return -1;
        root->start_time = (int64_t) time(NULL);
        sp->data = root;
        old_data = NULL;       /* a fresh root: nobody else sees it */
    }
    sc->root = root;
    memset(claimed, 0, sizeof(claimed));

    for (unsigned i = 0; i < sc->n; i++) {
        sc->slots[i] = NULL;
        sc->take[i] = 0;
        for (unsigned k = 0; k < PT_STATS_ZONES_MAX; k++) {
            if (root->slots[k].name[0] != '\0' && name_is(&root->slots[k], &sc->names[i])) {
                sc->slots[i] = &root->slots[k];
                claimed[k] = 1;
                break;
            }
        }
    }
    for (unsigned i = 0; i < sc->n; i++) {
        if (sc->slots[i] != NULL)
            continue;
        int s = -1;
        for (unsigned k = 0; k < PT_STATS_ZONES_MAX && s < 0; k++) {
            if (!claimed[k] && root->slots[k].name[0] == '\0')
                s = (int) k;
        }
        for (unsigned k = 0; k < PT_STATS_ZONES_MAX && s < 0; k++) {
            if (!claimed[k] && !name_in_conf(sc, root->slots[k].name))
                s = (int) k;
        }
        if (s < 0)           /* cannot happen: n <= PT_STATS_ZONES_MAX */
            return -1;
        claimed[s] = 1;
        sc->slots[i] = &root->slots[s];
        sc->take[i] = 1;
    }
    if (old_data == NULL)
        zone_commit(zone);
    return 0;
}

static pt_shm_zone_t *find_zone(pt_cycle_t *cycle)
{
    for (pt_shm_zone_t *z = cycle->shm_zones; z; z = z->next) {
        if (z->tag == &stats_tag)
            return z;
    }
    return NULL;
}

pt_stats_conf_t *pt_stats_conf(pt_conf_t *cf)
{
    pt_shm_zone_t *z = find_zone(cf->cycle);
    if (z != NULL)
        return z->data;

    pt_str_t name = pt_string(PT_STATS_ZONE_NAME);
    z = pt_shm_zone_add(cf, &name, STATS_ZONE_SIZE, &stats_tag);
    if (z == NULL)
        return NULL;
    pt_stats_conf_t *sc = pt_pcalloc(cf->pool, sizeof(*sc));
    if (sc == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory");
        return NULL;
    }
    z->data = sc;
    z->init = zone_init;
    z->commit = zone_commit;
    return sc;
}

int pt_stats_zone_index(pt_conf_t *cf, const pt_str_t *name)
{
    pt_stats_conf_t *sc = pt_stats_conf(cf);
    if (sc == NULL)
        return -1;
    if (name->len == 0 || name->len >= PT_STATS_NAME_MAX) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid status zone name \"%.*s\"",
                      (int) name->len, name->data);
        return -1;
    }
    for (unsigned i = 0; i < sc->n; i++) {
        if (pt_str_eq(&sc->names[i], name))
            return (int) i;
    }
    if (sc->n == PT_STATS_ZONES_MAX) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "too many status zones (at most %d)",
                      PT_STATS_ZONES_MAX);
        return -1;
    }
    if (pt_pstrdup(cf->pool, &sc->names[sc->n], name) != 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory");
        return -1;
    }
    return (int) sc->n++;
}

int pt_stats_worker_init(pt_cycle_t *cycle)
{
    pt_shm_zone_t *z = find_zone(cycle);
    if (z == NULL || z->data == NULL)
        return 0;
    pt_stats_conf_t *sc = z->data;
    if (sc->root == NULL)
        return 0;
    pt_stats_cf = sc;
    pt_stats = sc->root;
    pt_conn_stats_ptr = &sc->root->conn;
    return 0;
}

/* ---- upstream peers ------------------------------------------------------ */

static const char *peer_state(const pt_upstream_peer_t *p)
{
    if (p->down)
        return "down";
    if (p->drain)
        return "draining";
    if (p->checking)
        return "checking";
    if (p->unhealthy)
        return "unhealthy";
    if (p->max_fails && p->fails >= p->max_fails
        && pt_current_msec - p->accessed <= p->fail_timeout)
        return "unavail";
    return "up";
}

void pt_stats_each_peer(void **main_conf, pt_stats_peer_cb cb, void *arg)
{
    if (main_conf == NULL || pt_http_upstream_module.index < 0)
        return;
    pt_upstream_main_conf_t *umcf = main_conf[pt_http_upstream_module.index];
    if (umcf == NULL)
        return;
    pt_upstream_group_t **groups = umcf->groups.elts;
    for (size_t i = 0; i < umcf->groups.nelts; i++) {
        pt_upstream_group_t *g = groups[i];
        pt_stats_peer_t out;
        memset(&out, 0, sizeof(out));
        out.group = &g->name;
        out.shared = g->ext != NULL && g->ext->shared != NULL;
        out.first = 1;
        pt__upstream_lock(g);
        unsigned set = 0;
        for (pt_upstream_peers_t *ps = g->peers; ps; ps = ps->next, set++) {
            for (unsigned k = 0; k < ps->number; k++) {
                const pt_upstream_peer_t *p = &ps->peer[k];
                if (p->removed)
                    continue;
                out.peer = &p->name;
                out.server = &p->server;
                out.state = peer_state(p);
                out.requests = p->requests;
                out.fails_total = p->failures;
                out.active = p->conns;
                out.fails = p->fails;
                out.max_fails = p->max_fails;
                out.weight = p->weight > 0 ? (unsigned) p->weight : 0;
                out.backup = set > 0;
                cb(&out, arg);
                out.first = 0;
            }
        }
        pt__upstream_unlock(g);
    }
}

/* ---- text buffer --------------------------------------------------------- */

static int buf_reserve(pt_stats_buf_t *b, size_t more)
{
    if (b->failed)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = pt_pnalloc(b->pool, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    if (b->len)
        memcpy(p, b->data, b->len);
    b->data = p;
    b->cap = cap;
    return 0;
}

void pt_stats_buf_init(pt_stats_buf_t *b, pt_pool_t *pool, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->pool = pool;
    buf_reserve(b, cap);
}

void pt_stats_buf_add(pt_stats_buf_t *b, const char *s, size_t len)
{
    if (buf_reserve(b, len) != 0)
        return;
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void pt_stats_buf_printf(pt_stats_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (int round = 0; round < 2; round++) {
        if (b->failed)
            return;
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->data + b->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t) n < room) {
            b->len += (size_t) n;
            return;
        }
        if (buf_reserve(b, (size_t) n) != 0)
            return;
    }
}

static void buf_escaped(pt_stats_buf_t *b, const char *s, size_t len, int json)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) s[i];
        if (ch == '\\' || ch == '"') {
            char e[2] = { '\\', (char) ch };
            pt_stats_buf_add(b, e, 2);
        } else if (ch == '\n') {
            pt_stats_buf_add(b, "\\n", 2);
        } else if (json && ch < 0x20) {
            pt_stats_buf_printf(b, "\\u%04x", ch);
        } else {
            pt_stats_buf_add(b, (const char *) &s[i], 1);
        }
    }
}

void pt_stats_buf_json_str(pt_stats_buf_t *b, const char *s, size_t len)
{
    buf_escaped(b, s, len, 1);
}

void pt_stats_buf_label(pt_stats_buf_t *b, const char *s, size_t len)
{
    buf_escaped(b, s, len, 0);
}
