/* Unit tests for src/modules/stats.c: the statistics zone's slot assignment
 * (fresh, kept across a reload, reused when full), the counters' status
 * classes, the worker view moving pt_conn_stats into the zone, and the text
 * buffer with its escaping. */
#include "../../../src/modules/stats.c"

#include "tap.h"

static pt_shm_zone_t zone;

static void set_names(pt_stats_conf_t *sc, const char *const *names, unsigned n)
{
    memset(sc, 0, sizeof(*sc));
    for (unsigned i = 0; i < n; i++) {
        sc->names[i].data = (char *) names[i];
        sc->names[i].len = strlen(names[i]);
    }
    sc->n = n;
}

static void test_slots(void)
{
    static pt_stats_conf_t sc1, sc2, sc3;
    static const char *const first[] = { "api", "site" };
    static const char *const second[] = { "site", "new" };

    zone.name.data = (char *) PT_STATS_ZONE_NAME;
    zone.name.len = strlen(PT_STATS_ZONE_NAME);
    zone.size = STATS_ZONE_SIZE;
    zone.tag = &stats_tag;
    ok(pt_shm_alloc(&zone) == 0, "zone mapped (%zu bytes)", zone.size);

    set_names(&sc1, first, 2);
    zone.data = &sc1;
    ok(zone_init(&zone, NULL) == 0, "fresh zone initialised");
    ok(sc1.root != NULL && sc1.slots[0] && sc1.slots[1] && sc1.slots[0] != sc1.slots[1],
       "each name has its own slot");
    is_str(sc1.slots[1]->name, "site", "slot carries its name");
    is_int(sc1.root->generation, 1, "first load");
    int64_t start = sc1.root->start_time;
    ok(start > 0, "start time set");
    ok(((uintptr_t) &sc1.root->conn & 63) == 0, "connection counters on their own cache line");

    pt_stats_count(&sc1.slots[1]->c, 200, 100, 1000);
    pt_stats_count(&sc1.slots[1]->c, 404, 50, 10);
    pt_stats_count(&sc1.slots[0]->c, 503, 0, 0);

    /* reload: same zone kept, "site" goes on, "api" dropped, "new" fresh */
    set_names(&sc2, second, 2);
    zone.data = &sc2;
    ok(zone_init(&zone, &sc1) == 0, "kept zone initialised");
    is_int(sc1.root->generation, 1, "nothing counted before the commit");
    zone_commit(&zone);
    ok(sc2.root == sc1.root, "same root");
    ok(sc2.slots[0] == sc1.slots[1], "\"site\" keeps its slot");
    is_int(sc2.slots[0]->c.requests, 2, "and its counters");
    is_int(sc2.slots[0]->c.responses[2], 1, "2xx");
    is_int(sc2.slots[0]->c.responses[4], 1, "4xx");
    is_int(sc2.slots[0]->c.received, 150, "bytes received");
    is_int(sc2.slots[0]->c.sent, 1010, "bytes sent");
    ok(sc2.slots[1] != sc1.slots[0], "\"new\" takes a free slot, not the dropped one");
    is_int(sc2.slots[1]->c.requests, 0, "fresh counters");
    is_int(sc2.root->generation, 2, "second load");
    is_int(sc2.root->start_time, start, "start time kept");

    /* every slot taken: a new name reuses one no longer configured */
    for (unsigned k = 0; k < PT_STATS_ZONES_MAX; k++) {
        if (sc2.root->slots[k].name[0] == '\0')
            snprintf(sc2.root->slots[k].name, PT_STATS_NAME_MAX, "old%u", k);
    }
    static const char *const third[] = { "site", "latest" };
    set_names(&sc3, third, 2);
    zone.data = &sc3;
    /* a reload that fails after the zone init renames nothing */
    static pt_stats_conf_t scf;
    static const char *const failed[] = { "site", "doomed" };
    set_names(&scf, failed, 2);
    zone.data = &scf;
    char before[PT_STATS_ZONES_MAX][PT_STATS_NAME_MAX];
    for (unsigned k = 0; k < PT_STATS_ZONES_MAX; k++)
        memcpy(before[k], sc2.root->slots[k].name, PT_STATS_NAME_MAX);
    pt_stats_count(&sc2.slots[1]->c, 200, 1, 1);
    ok(zone_init(&zone, &sc2) == 0, "full zone initialised for a reload that will fail");
    int same = 1;
    for (unsigned k = 0; k < PT_STATS_ZONES_MAX; k++)
        same &= memcmp(before[k], sc2.root->slots[k].name, PT_STATS_NAME_MAX) == 0;
    ok(same, "no slot renamed before the commit");
    is_int(sc2.slots[1]->c.requests, 1, "running counters untouched");
    is_int(sc2.root->generation, 2, "load not counted");

    zone.data = &sc3;
    ok(zone_init(&zone, &sc2) == 0, "full zone initialised");
    zone_commit(&zone);
    ok(sc3.slots[0] == sc2.slots[0], "\"site\" still kept");
    ok(sc3.slots[1] != NULL && strcmp(sc3.slots[1]->name, "latest") == 0, "\"latest\" got a slot");
    is_int(sc3.slots[1]->c.requests, 0, "reused slot starts at zero");
}

static void test_classes(void)
{
    pt_stats_counters_t c;
    memset(&c, 0, sizeof(c));
    pt_stats_count(&c, 0, -1, 0);
    pt_stats_count(&c, 99, 0, 0);
    pt_stats_count(&c, 101, 0, 0);
    pt_stats_count(&c, 204, 0, 0);
    pt_stats_count(&c, 599, 0, 0);
    pt_stats_count(&c, 600, 0, 0);
    pt_stats_count(NULL, 200, 0, 0);
    is_int(c.requests, 6, "six requests");
    is_int(c.responses[0], 3, "0, 99 and 600: no class");
    is_int(c.responses[1], 1, "1xx");
    is_int(c.responses[2], 1, "2xx");
    is_int(c.responses[5], 1, "5xx");
    is_int(c.received, 0, "negative length ignored");
}

static void test_worker_view(void)
{
    pt_cycle_t cycle;
    memset(&cycle, 0, sizeof(cycle));
    ok(pt_stats_worker_init(&cycle) == 0 && pt_stats == NULL, "no zone: nothing moves");
    ok(pt_conn_stats_ptr != NULL, "process-local counters meanwhile");
    pt_conn_stats.requests++;

    cycle.shm_zones = &zone;
    ok(pt_stats_worker_init(&cycle) == 0, "worker init");
    pt_stats_conf_t *sc = zone.data;
    ok(pt_stats == sc->root && pt_stats_cf == sc, "worker view set");
    ok(pt_conn_stats_ptr == &sc->root->conn, "pt_conn_stats now in the zone");
    uint64_t before = sc->root->conn.requests;
    pt_conn_stats.requests++;
    pt_conn_stats.active++;
    pt_conn_stats.active--;
    is_int(sc->root->conn.requests, before + 1, "counted in shared memory");
    is_int(sc->root->conn.active, 0, "gauge back to zero");
}

static void test_buffer(void)
{
    pt_pool_t *pool = pt_pool_create(1024);
    pt_stats_buf_t b;
    pt_stats_buf_init(&b, pool, 16);
    for (int i = 0; i < 200; i++)
        pt_stats_buf_printf(&b, "%d,", i);
    ok(!b.failed && b.len > 600 && b.data[b.len] == '\0', "grows past its first size");
    ok(strncmp(b.data, "0,1,2,", 6) == 0 && strstr(b.data, "199,") != NULL, "content kept");

    pt_stats_buf_init(&b, pool, 0);
    pt_stats_buf_json_str(&b, "a\"b\\c\nd\x01", 8);
    is_str(b.data, "a\\\"b\\\\c\\nd\\u0001", "JSON string escaping");
    pt_stats_buf_init(&b, pool, 0);
    pt_stats_buf_label(&b, "x\"y\\z\n", 6);
    is_str(b.data, "x\\\"y\\\\z\\n", "Prometheus label escaping");
    pt_pool_destroy(pool);
}

int main(void)
{
    pt_time_init();
    subtest("slots", test_slots);
    subtest("classes", test_classes);
    subtest("worker view", test_worker_view);
    subtest("buffer", test_buffer);
    pt_shm_free(&zone);
    return done_testing();
}
