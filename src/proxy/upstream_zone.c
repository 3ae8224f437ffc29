/* Module "http_upstream_zone": `zone NAME [SIZE]` in an upstream block puts
 * the group's peers (their connection counts, failures, weights, health
 * state and the servers added at runtime) in a shared memory zone, so every
 * worker balances and fails over as one. Without a zone, state is per worker
 * (as nginx).
 *
 * The zone's init callback runs in the master after the zone is mapped and
 * before the workers fork: it copies each group's peer sets into the zone
 * (strings included, so nothing points into a config pool) and points
 * group->peers at the copies; every worker inherits that pointer. Each set
 * has spare slots for peers added at runtime (API, resolver). Slots are never
 * reused for a different address (keep-alive pools are keyed by peer), so a
 * removed peer stays as a tombstone marked down and removed.
 *
 * Across a reload a zone of the same name and size is kept: a group whose
 * server list did not change gets its old shared state back (failures,
 * health, runtime changes and servers added by the API survive); otherwise it
 * gets fresh state built from the configuration, into which the health and
 * failure state of the configured peers that remain is carried (servers added
 * at runtime are dropped). The old state is left to the old workers and not
 * freed, a bounded leak per reload that changed a group.
 *
 * A reload is two-phase: the init of a kept zone writes nothing the running
 * workers see. New states are built on the root's pending list; only the
 * commit callback (pt_cycle_commit, once the new cycle cannot fail any more)
 * makes them the ones the next reload finds. A reload that fails after the
 * zone was initialised (a later zone, the pid file) leaves the pending states
 * behind, and the next init frees them.
 *
 * Every write to shared peers takes the group's mutex (pt__upstream_lock). */
#include <stdio.h>
#include <string.h>

#include "balancer.h"
#include "../config/cycle.h"
#include "../core/time.h"

#define ZONE_SPARE_PRIMARY 64
#define ZONE_SPARE_BACKUP  16

pt_module_t pt_http_upstream_zone_module;

/* The zone's root object: the groups placed in it. An entry on `pending`
 * was made by the init of a reload that has not committed (yet): its state
 * is invisible to the running workers; commit moves it to `entries`, and the
 * next init frees what a failed reload left there. */
typedef struct zone_entry_s {
    char                 name[128];
    uint32_t             signature;   /* of the server list as configured */
    unsigned             capacity, backup_capacity;
    pt_upstream_shared_t *shared;
    struct zone_entry_s *next;
} zone_entry_t;

typedef struct {
    zone_entry_t *entries;
    zone_entry_t *pending;
} zone_root_t;

/* Config-side data of a zone: the groups that use it. */
typedef struct {
    pt_array_t groups;      /* pt_upstream_group_t * */
} zone_conf_t;

static uint32_t signature(const pt_upstream_group_t *g)
{
    uint32_t h = 2166136261u;
    for (const pt_upstream_peers_t *ps = g->peers; ps; ps = ps->next) {
        for (unsigned i = 0; i < ps->number; i++) {
            const pt_upstream_peer_t *p = &ps->peer[i];
            for (size_t k = 0; k < p->name.len; k++)
                h = (h ^ (unsigned char) p->name.data[k]) * 16777619u;
            h = (h ^ (uint32_t) p->weight) * 16777619u;
            h = (h ^ (uint32_t) p->max_fails) * 16777619u;
            h = (h ^ p->down) * 16777619u;
        }
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

static int copy_str(pt_slab_pool_t *sp, pt_str_t *s)
{
    if (s->len == 0) {
        s->data = "";
        return 0;
    }
    char *d = pt_slab_alloc(sp, s->len + 1);
    if (d == NULL)
        return -1;
    memcpy(d, s->data, s->len);
    d[s->len] = '\0';
    s->data = d;
    return 0;
}

static void free_set(pt_slab_pool_t *sp, pt_upstream_peers_t *ps)
{
    if (ps == NULL)
        return;
    if (ps->peer != NULL) {
        for (unsigned i = 0; i < ps->number; i++) {
            pt_upstream_peer_t *p = &ps->peer[i];
            if (p->name.len && p->name.data)
                pt_slab_free(sp, p->name.data);
            if (p->server.len && p->server.data)
                pt_slab_free(sp, p->server.data);
        }
        pt_slab_free(sp, ps->peer);
    }
    pt_slab_free(sp, ps);
}

/* Frees a group's shared state that no worker ever saw. */
static void free_shared(pt_slab_pool_t *sp, pt_upstream_shared_t *sh)
{
    if (sh == NULL)
        return;
    if (sh->peers != NULL) {
        free_set(sp, sh->peers->next);
        free_set(sp, sh->peers);
    }
    pt_slab_free(sp, sh);
}

static pt_upstream_peers_t *copy_set(pt_slab_pool_t *sp, const pt_upstream_peers_t *src,
                                     unsigned spare, unsigned *next_id)
{
    pt_upstream_peers_t *ps = pt_slab_calloc(sp, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    unsigned n = src ? src->number : 0;
    ps->peer = pt_slab_calloc(sp, (n + spare) * sizeof(pt_upstream_peer_t));
    if (ps->peer == NULL) {
        pt_slab_free(sp, ps);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        *p = src->peer[i];
        p->next = NULL;
        p->id = (*next_id)++;
        ps->number = i + 1;     /* so that free_set sees what was copied */
        pt_str_t name = p->name, server = p->server;
        p->name.len = p->server.len = 0;
        if (copy_str(sp, &name) != 0)
            goto failed;
        p->name = name;
        if (copy_str(sp, &server) != 0)
            goto failed;
        p->server = server;
    }
    ps->number = n;
    if (src) {
        ps->total_weight = src->total_weight;
        ps->weighted = src->weighted;
        ps->single = src->single;
    }
    return ps;

failed:
    free_set(sp, ps);
    return NULL;
}

/* A changed group starts from its configuration; what a configured peer
 * learnt at runtime (health check verdict, passive failures) follows it when
 * the same address is still in the same set. Servers added at runtime (API,
 * resolver) are not carried over: the configuration is the source of truth. */
static void carry_state(pt_upstream_peers_t *to, pt_upstream_peers_t *from, unsigned hc)
{
    int has_hc = hc != 0;
    /* health_check mandatory: every peer waits for its first verdict, except
     * (persistent) one that was healthy before the reload */
    if (to != NULL && (hc & PT_HC_MANDATORY)) {
        for (unsigned i = 0; i < to->number; i++)
            to->peer[i].unhealthy = to->peer[i].checking = 1;
        if (!(hc & PT_HC_PERSISTENT))
            has_hc = 0;
    }
    if (to == NULL || from == NULL)
        return;
    for (unsigned i = 0; i < to->number; i++) {
        pt_upstream_peer_t *p = &to->peer[i];
        for (unsigned k = 0; k < from->number; k++) {
            const pt_upstream_peer_t *q = &from->peer[k];
            if (q->removed || q->name.len != p->name.len
                || memcmp(q->name.data, p->name.data, p->name.len) != 0)
                continue;
            if (has_hc) {
                p->checking = q->checking;
                p->unhealthy = q->unhealthy;
                p->hc_fails = q->hc_fails;
                p->hc_passes = q->hc_passes;
            }
            p->fails = q->fails;
            p->accessed = q->accessed;
            p->checked = q->checked;
            p->requests = q->requests;
            p->failures = q->failures;
            break;
        }
    }
}

static zone_entry_t *find_entry(zone_entry_t *list, const pt_str_t *name)
{
    for (zone_entry_t *it = list; it; it = it->next) {
        if (strlen(it->name) == name->len && memcmp(it->name, name->data, name->len) == 0)
            return it;
    }
    return NULL;
}

/* Points a group of the new cycle at a shared state (the new cycle's
 * private view; the zone itself is not written). */
static void attach(pt_upstream_group_t *g, const zone_entry_t *e)
{
    pt_upstream_ext_t *ext = g->ext;
    ext->shared = e->shared;
    ext->mutex = &e->shared->mutex;
    ext->capacity = e->capacity;
    ext->backup_capacity = e->backup_capacity;
    g->peers = e->shared->peers;
}

/* Moves the pending entries to the live list: from now on the next reload
 * finds them (the replaced states stay with the old workers that still use
 * them, and are not freed: a bounded leak per reload that changed a group). */
static void zone_commit_root(pt_slab_pool_t *sp, zone_root_t *root)
{
    while (root->pending != NULL) {
        zone_entry_t *ne = root->pending;
        root->pending = ne->next;
        zone_entry_t *e = find_entry(root->entries,
                                     &(pt_str_t) { strlen(ne->name), ne->name });
        if (e != NULL) {
            e->signature = ne->signature;
            e->shared = ne->shared;
            e->capacity = ne->capacity;
            e->backup_capacity = ne->backup_capacity;
            pt_slab_free(sp, ne);
        } else {
            ne->next = root->entries;
            root->entries = ne;
        }
    }
}

static void zone_commit(pt_shm_zone_t *z)
{
    pt_slab_pool_t *sp = z->addr;
    if (sp != NULL && sp->data != NULL)
        zone_commit_root(sp, sp->data);
}

/* Frees what the init of a reload that never committed left behind. */
static void drop_pending(pt_slab_pool_t *sp, zone_root_t *root)
{
    while (root->pending != NULL) {
        zone_entry_t *e = root->pending;
        root->pending = e->next;
        free_shared(sp, e->shared);
        pt_slab_free(sp, e);
    }
}

static int zone_init(pt_shm_zone_t *z, void *old_data)
{
    pt_slab_pool_t *sp = z->addr;
    zone_conf_t *zc = z->data;
    zone_root_t *root = old_data ? sp->data : NULL;
    int live = root != NULL;    /* running workers use this zone: stage only */

    if (root == NULL) {
        root = pt_slab_calloc(sp, sizeof(*root));
        if (root == NULL)
            return -1;
        sp->data = root;
    }
    z->data = zc;   /* keep: the next reload gets root through sp->data */
    drop_pending(sp, root);

    pt_upstream_group_t **gs = zc->groups.elts;
    for (size_t i = 0; i < zc->groups.nelts; i++) {
        pt_upstream_group_t *g = gs[i];
        uint32_t sig = signature(g);

        zone_entry_t *e = find_entry(root->entries, &g->name);
        if (e && e->signature == sig && e->shared) {
            /* unchanged group: the state survives the reload */
            attach(g, e);
            continue;
        }
        /* a group declared twice in one zone is refused by the parser, so
         * at most one pending entry per name */
        zone_entry_t *ne = pt_slab_calloc(sp, sizeof(*ne));
        pt_upstream_shared_t *sh = ne ? pt_slab_calloc(sp, sizeof(*sh)) : NULL;
        if (sh == NULL || pt_shmtx_init(&sh->mutex) != 0) {
            if (ne)
                pt_slab_free(sp, ne);
            if (sh)
                pt_slab_free(sp, sh);
            return -1;
        }
        snprintf(ne->name, sizeof(ne->name), "%.*s", (int) g->name.len, g->name.data);
        ne->signature = sig;
        ne->shared = sh;
        /* on the pending list at once, so a failure below frees it next time */
        ne->next = root->pending;
        root->pending = ne;

        pt_upstream_peers_t *prim = copy_set(sp, g->peers, ZONE_SPARE_PRIMARY, &sh->next_id);
        pt_upstream_peers_t *back = prim ? copy_set(sp, g->peers->next, ZONE_SPARE_BACKUP,
                                                    &sh->next_id) : NULL;
        if (prim == NULL || back == NULL) {
            free_set(sp, prim);
            return -1;     /* the cycle logs that the zone could not be initialized */
        }
        prim->next = back;
        sh->peers = prim;
        ne->capacity = prim->number + ZONE_SPARE_PRIMARY;
        ne->backup_capacity = back->number + ZONE_SPARE_BACKUP;
        unsigned hc = g->ext->hc ? (pt__upstream_hc_flags(g) | 4) : 0;
        if (e && e->shared) {
            pt_shmtx_lock(&e->shared->mutex);
            carry_state(prim, e->shared->peers, hc);
            carry_state(back, e->shared->peers ? e->shared->peers->next : NULL, hc);
            pt_shmtx_unlock(&e->shared->mutex);
        } else {
            carry_state(prim, NULL, hc);
            carry_state(back, NULL, hc);
        }
        attach(g, ne);
        pt__upstream_zone_changed(g);
    }
    if (!live)
        zone_commit_root(sp, root);
    return 0;
}

/* Recomputes what depends on the peer list (call with the lock held). */
void pt__upstream_zone_changed(pt_upstream_group_t *g)
{
    for (pt_upstream_peers_t *ps = g->peers; ps; ps = ps->next) {
        int total = 0;
        unsigned live = 0;
        for (unsigned i = 0; i < ps->number; i++) {
            if (ps->peer[i].removed)
                continue;
            total += ps->peer[i].weight;
            live++;
            if (ps->peer[i].weight != 1)
                ps->weighted = 1;
        }
        ps->total_weight = total;
        if (ps == g->peers)
            ps->single = live == 1 && ps->number == 1
                         && (ps->next == NULL || ps->next->number == 0);
    }
    if (g->ext && g->ext->shared)
        g->ext->shared->generation++;
}

pt_upstream_peer_t *pt__upstream_peer_add(pt_upstream_group_t *g, int backup,
                                          const pt_sockaddr_t *sa, socklen_t len,
                                          const pt_str_t *server)
{
    pt_upstream_ext_t *ext = g->ext;
    if (ext == NULL || ext->shared == NULL)
        return NULL;
    pt_slab_pool_t *sp = ext->zone->addr;
    pt_upstream_peers_t *ps = backup ? g->peers->next : g->peers;
    if (ps == NULL)
        return NULL;

    pt_upstream_peer_t *p = NULL;
    /* a tombstone of the same address comes back to life */
    for (unsigned i = 0; i < ps->number; i++) {
        pt_upstream_peer_t *q = &ps->peer[i];
        if (q->removed && q->conns == 0 && q->socklen == len && memcmp(&q->sockaddr, sa, len) == 0) {
            p = q;
            break;
        }
    }
    if (p == NULL) {
        unsigned cap = backup ? ext->backup_capacity : ext->capacity;
        if (ps->number >= cap)
            return NULL;
        p = &ps->peer[ps->number];
        memset(p, 0, sizeof(*p));
        char text[160];
        size_t tl = pt_sockaddr_text(&sa->sa, len, text, sizeof(text), 1);
        char *name = pt_slab_alloc(sp, tl + 1);
        char *srv = pt_slab_alloc(sp, server->len + 1);
        if (name == NULL || srv == NULL) {
            if (name)
                pt_slab_free(sp, name);
            if (srv)
                pt_slab_free(sp, srv);
            return NULL;
        }
        memcpy(name, text, tl);
        name[tl] = '\0';
        memcpy(srv, server->data, server->len);
        srv[server->len] = '\0';
        p->name.data = name;
        p->name.len = tl;
        p->server.data = srv;
        p->server.len = server->len;
        p->sockaddr = *sa;
        p->socklen = len;
        ps->number++;
    }
    p->id = ext->shared->next_id++;
    p->removed = 0;
    p->down = 0;
    p->drain = 0;
    p->unhealthy = p->checking = (pt__upstream_hc_flags(g) & PT_HC_MANDATORY) ? 1 : 0;
    p->fails = 0;
    p->hc_fails = p->hc_passes = 0;
    p->weight = 1;
    p->effective_weight = 1;
    p->current_weight = 0;
    p->max_fails = 1;
    p->fail_timeout = 10000;
    p->start_time = pt_current_msec;
    return p;
}

void pt__upstream_peer_remove(pt_upstream_group_t *g, pt_upstream_peer_t *p)
{
    (void) g;
    p->removed = 1;
    p->down = 1;     /* the round robin balancer knows only "down" */
}

/* ------------------------------------------------------------------------ */
/* Directive */

static const char *zone_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_upstream_group_t *g = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;

    pt_upstream_ext_t *ext = pt__upstream_ext(cf, g);
    if (ext == NULL)
        return "failed (out of memory)";
    if (ext->zone)
        return "is duplicate";
    int64_t size = 0;
    if (cf->args->nelts == 3) {
        size = pt_conf_parse_size(&value[2]);
        if (size < 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid zone size \"%s\"", value[2].data);
            return PT_CONF_ERROR;
        }
        if (size < 64 * 1024) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "zone \"%s\" is too small", value[1].data);
            return PT_CONF_ERROR;
        }
    }
    pt_shm_zone_t *z = pt_shm_zone_add(cf, &value[1], (size_t) size, &pt_http_upstream_zone_module);
    if (z == NULL)
        return PT_CONF_ERROR;
    zone_conf_t *zc = z->data;
    if (zc == NULL) {
        zc = pt_pcalloc(cf->pool, sizeof(*zc));
        if (zc == NULL || pt_array_init(&zc->groups, cf->pool, 2, sizeof(pt_upstream_group_t *)) != 0)
            return "failed (out of memory)";
        z->data = zc;
        z->init = zone_init;
        z->commit = zone_commit;
    }
    pt_upstream_group_t **slot = pt_array_push(&zc->groups);
    if (slot == NULL)
        return "failed (out of memory)";
    *slot = g;
    ext->zone = z;
    ext->zone_name = z->name;
    ext->zone_size = size;
    return PT_CONF_OK;
}

static const pt_command_t zone_commands[] = {
    { "zone", PT_CTX_UPS, 0, 1, 2, zone_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_upstream_zone_module = {
    .name = "http_upstream_zone",
    .commands = zone_commands,
};
