/* Unit tests for src/proxy/upstream_zone.c: peers copied into a real shared
 * memory zone, runtime additions and removals (tombstones, capacity), state
 * kept across a "reload" when the server list is unchanged, and the round
 * robin balancer running on the shared peers. */
#include "../../../src/proxy/upstream_zone.c"

#include <arpa/inet.h>

#include "tap.h"

static pt_pool_t *pool;

static pt_upstream_group_t *group(const char *name, unsigned n, unsigned first_port)
{
    pt_upstream_group_t *g = pt_pcalloc(pool, sizeof(*g));
    pt_upstream_peers_t *ps = pt_pcalloc(pool, sizeof(*ps));
    ps->peer = pt_pcalloc(pool, n * sizeof(pt_upstream_peer_t));
    ps->number = n;
    for (unsigned i = 0; i < n; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        p->sockaddr.sin.sin_family = AF_INET;
        p->sockaddr.sin.sin_port = htons((in_port_t) (first_port + i));
        p->sockaddr.sin.sin_addr.s_addr = htonl(0x7f000001);
        p->socklen = sizeof(struct sockaddr_in);
        char *t = pt_palloc(pool, 32);
        p->name.len = (size_t) snprintf(t, 32, "127.0.0.1:%u", first_port + i);
        p->name.data = t;
        p->server = p->name;
        p->weight = 1;
        p->effective_weight = 1;
        p->max_fails = 1;
        p->fail_timeout = 10000;
    }
    g->peers = ps;
    g->name.data = (char *) name;
    g->name.len = strlen(name);
    g->balancer = &pt_upstream_balancer_rr;
    g->ext = pt_pcalloc(pool, sizeof(pt_upstream_ext_t));
    return g;
}

static pt_shm_zone_t *zone_for(pt_upstream_group_t **gs, unsigned n, pt_shm_zone_t *reuse)
{
    pt_shm_zone_t *z = pt_pcalloc(pool, sizeof(*z));
    z->name.data = "z";
    z->name.len = 1;
    z->size = 256 * 1024;
    if (reuse)
        z->addr = reuse->addr;
    else if (pt_shm_alloc(z) != 0)
        return NULL;
    zone_conf_t *zc = pt_pcalloc(pool, sizeof(*zc));
    pt_array_init(&zc->groups, pool, 2, sizeof(pt_upstream_group_t *));
    for (unsigned i = 0; i < n; i++) {
        *(pt_upstream_group_t **) pt_array_push(&zc->groups) = gs[i];
        gs[i]->ext->zone = z;
        gs[i]->ext->zone_name = z->name;
    }
    z->data = zc;
    z->init = zone_init;
    z->commit = zone_commit;
    return z;
}

static int in_zone(const pt_shm_zone_t *z, const void *p)
{
    return (const char *) p >= (const char *) z->addr
           && (const char *) p < (const char *) z->addr + z->size;
}

static void test_copy_and_add(void)
{
    pt_upstream_group_t *g = group("app", 2, 9001);
    pt_shm_zone_t *z = zone_for(&g, 1, NULL);
    ok(z != NULL, "zone mapped");
    is_int(z->init(z, NULL), 0, "zone init");
    ok(in_zone(z, g->peers) && in_zone(z, g->peers->peer), "peers moved into the zone");
    ok(in_zone(z, g->peers->peer[0].name.data), "names copied into the zone");
    is_strn(g->peers->peer[1].name.data, g->peers->peer[1].name.len, "127.0.0.1:9002", "name kept");
    ok(g->ext->mutex != NULL && g->ext->shared->peers == g->peers, "shared state and lock");
    ok(g->peers->next != NULL && g->peers->next->number == 0, "an empty backup set for additions");
    ok(g->peers->peer[0].id != g->peers->peer[1].id, "distinct ids");

    pt_sockaddr_t sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin.sin_family = AF_INET;
    sa.sin.sin_port = htons(9100);
    sa.sin.sin_addr.s_addr = htonl(0x7f000001);
    pt_str_t srv = pt_string("127.0.0.1:9100");
    unsigned gen = g->ext->shared->generation;
    pt_upstream_peer_t *p = pt__upstream_peer_add(g, 0, &sa, sizeof(sa.sin), &srv);
    ok(p != NULL && g->peers->number == 3, "added a third peer");
    pt__upstream_zone_changed(g);
    ok(g->ext->shared->generation != gen, "generation moved");
    is_int(g->peers->total_weight, 3, "total weight");
    is_strn(p->name.data, p->name.len, "127.0.0.1:9100", "name of the added peer");

    unsigned old_id = p->id;
    pt__upstream_peer_remove(g, p);
    pt__upstream_zone_changed(g);
    ok(p->removed && p->down, "removed: tombstone marked down");
    is_int(g->peers->total_weight, 2, "total weight without it");
    pt_upstream_peer_t *q = pt__upstream_peer_add(g, 0, &sa, sizeof(sa.sin), &srv);
    ok(q == p && !q->removed && !q->down, "the same address reuses its tombstone");
    ok(q->id != old_id, "with a new id");

    /* capacity */
    unsigned added = 0;
    for (unsigned i = 0; i < 200; i++) {
        sa.sin.sin_port = htons((in_port_t) (10000 + i));
        if (pt__upstream_peer_add(g, 0, &sa, sizeof(sa.sin), &srv))
            added++;
    }
    is_int(g->peers->number, g->ext->capacity, "additions stop at the capacity");
    ok(added < 200, "then NULL (%u added)", added);
    sa.sin.sin_port = htons(20000);
    ok(pt__upstream_peer_add(g, 1, &sa, sizeof(sa.sin), &srv) != NULL, "backup set has room");
}

static void test_reload(void)
{
    pt_upstream_group_t *g = group("app", 2, 9001);
    pt_shm_zone_t *z = zone_for(&g, 1, NULL);
    z->init(z, NULL);
    g->peers->peer[0].fails = 7;
    pt_upstream_shared_t *sh = g->ext->shared;

    /* same servers: state survives */
    pt_upstream_group_t *g2 = group("app", 2, 9001);
    pt_shm_zone_t *z2 = zone_for(&g2, 1, z);
    is_int(z2->init(z2, z->data), 0, "reload init");
    ok(g2->ext->shared == sh && g2->peers->peer[0].fails == 7, "unchanged group keeps its state");

    /* other servers: fresh state, staged until the commit */
    pt_upstream_group_t *g3 = group("app", 3, 9001);
    pt_shm_zone_t *z3 = zone_for(&g3, 1, z);
    is_int(z3->init(z3, z2->data), 0, "reload init with a changed group");
    ok(g3->ext->shared != sh && g3->peers->peer[2].fails == 0, "changed group gets new state");
    is_int(g3->peers->peer[0].fails, 7, "a remaining peer carries its failures");
    is_int(g3->peers->number, 3, "with its new peers");
    zone_root_t *root = ((pt_slab_pool_t *) z->addr)->data;
    ok(root->entries->shared == sh && root->pending != NULL, "nothing live changed before commit");
    z3->commit(z3);
    ok(root->entries->shared == g3->ext->shared && root->pending == NULL, "commit makes it live");
}

/* A reload whose cycle fails after the zone init: the running state stays the
 * one the next reload finds, and the staged copy is freed. */
static void test_failed_reload(void)
{
    pt_upstream_group_t *g = group("fr", 2, 9001);
    pt_shm_zone_t *z = zone_for(&g, 1, NULL);
    is_int(z->init(z, NULL), 0, "first init");
    pt_slab_pool_t *sp = z->addr;
    pt_upstream_shared_t *sh = g->ext->shared;
    pt_sockaddr_t sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin.sin_family = AF_INET;
    sa.sin.sin_port = htons(9100);
    sa.sin.sin_addr.s_addr = htonl(0x7f000001);
    pt_str_t srv = pt_string("127.0.0.1:9100");
    ok(pt__upstream_peer_add(g, 0, &sa, sizeof(sa.sin), &srv) != NULL, "runtime addition");
    pt__upstream_zone_changed(g);
    g->peers->peer[1].unhealthy = 1;
    size_t free_before = pt_slab_free_bytes(sp);

    for (int round = 0; round < 20; round++) {
        pt_upstream_group_t *gb = group("fr", 3, 9001);   /* changed, then "fails" */
        pt_shm_zone_t *zb = zone_for(&gb, 1, z);
        if (zb->init(zb, z->data) != 0)
            break;
    }
    pt_upstream_group_t *g2 = group("fr", 2, 9001);       /* the old config again */
    pt_shm_zone_t *z2 = zone_for(&g2, 1, z);
    is_int(z2->init(z2, z->data), 0, "good reload init");
    z2->commit(z2);
    ok(g2->ext->shared == sh, "the running state is found again");
    is_int(g2->peers->number, 3, "with the server added at runtime");
    ok(g2->peers->peer[1].unhealthy, "and its health state");
    ok(pt_slab_free_bytes(sp) + 4096 >= free_before, "failed reloads left nothing behind (%zu -> %zu)",
       free_before, pt_slab_free_bytes(sp));
}

static void test_rr_on_shared_peers(void)
{
    pt_upstream_group_t *g = group("rr", 3, 9001);
    g->peers->peer[0].weight = g->peers->peer[0].effective_weight = 3;
    g->peers->peer[1].weight = g->peers->peer[1].effective_weight = 2;
    pt_shm_zone_t *z = zone_for(&g, 1, NULL);
    z->init(z, NULL);
    pt_http_request_t r;
    memset(&r, 0, sizeof(r));
    r.pool = pool;
    char seq[8] = "";
    for (int i = 0; i < 6; i++) {
        pt_upstream_t u;
        memset(&u, 0, sizeof(u));
        u.r = &r;
        u.group = g;
        g->balancer->init_peer(&r, &u);
        if (g->balancer->get_peer(&u) != PT_OK)
            break;
        seq[i] = (char) ('a' + (u.peer - g->peers->peer));
        g->balancer->free_peer(&u, PT_UPSTREAM_PEER_OK);
    }
    is_str(seq, "abacba", "smooth WRR on shared peers");
    g->peers->peer[0].drain = 1;
    g->peers->peer[1].unhealthy = 1;
    int only_c = 1;
    for (int i = 0; i < 5; i++) {
        pt_upstream_t u;
        memset(&u, 0, sizeof(u));
        u.r = &r;
        u.group = g;
        g->balancer->init_peer(&r, &u);
        only_c &= g->balancer->get_peer(&u) == PT_OK && u.peer == &g->peers->peer[2];
        g->balancer->free_peer(&u, PT_UPSTREAM_PEER_OK);
    }
    ok(only_c, "round robin skips drained and unhealthy peers");
    is_int(g->peers->peer[2].requests, 6, "request counter (1 + 5)");
}

int main(void)
{
    pool = pt_pool_create(4096);
    subtest("copy_and_add", test_copy_and_add);
    subtest("reload", test_reload);
    subtest("failed_reload", test_failed_reload);
    subtest("rr", test_rr_on_shared_peers);
    return done_testing();
}
