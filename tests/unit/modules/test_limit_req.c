/* Unit tests for src/modules/limit_req.c: the leaky-bucket arithmetic (rate
 * parsing, leak, excess, delay) and the shared-memory backend (burst
 * figures, held/accounted/released keys, idle expiry, LRU eviction in a full
 * zone, state kept by a reload), with the clock driven by hand. */
#include "../../../src/modules/limit_req.c"

#include "tap.h"

static limit_req_zone_t *make_zone(const char *name, size_t size, uint64_t rate)
{
    static pt_shm_zone_t shms[8];
    static limit_req_zone_t zones[8];
    static int used;
    pt_shm_zone_t *shm = &shms[used];
    limit_req_zone_t *z = &zones[used];
    used++;
    shm->name.data = (char *) name;
    shm->name.len = strlen(name);
    shm->size = size;
    shm->data = z;
    z->shm = shm;
    z->rate = rate;
    z->backend = &limit_req_shm_backend;
    pt_str_set(&z->key.source, "$binary_remote_addr");
    if (pt_shm_alloc(shm) != 0 || zone_init(shm, NULL) != 0)
        return NULL;
    return z;
}

static int check(limit_req_zone_t *z, const char *key, uint64_t burst, int64_t *excess)
{
    pt_str_t k = { strlen(key), (char *) key };
    void *ref = NULL;
    return z->backend->check(z, &k, burst * 1000, 1, &ref, excess);
}

static void test_rate(void)
{
    is_int(lr_parse_rate("10r/s", 5), 10000, "10r/s");
    is_int(lr_parse_rate("5r/m", 4), 83, "5r/m (integer milli-requests, as nginx)");
    is_int(lr_parse_rate("30r/m", 5), 500, "30r/m");
    is_int(lr_parse_rate("1r/m", 4), 16, "1r/m");
    is_int(lr_parse_rate("10r/h", 5), 0, "r/h refused");
    is_int(lr_parse_rate("r/s", 3), 0, "no number");
    is_int(lr_parse_rate("0r/s", 4), 0, "zero");
    is_int(lr_parse_rate("-1r/s", 5), 0, "negative");
    is_int(lr_parse_rate("10", 2), 0, "no unit");
}

static void test_arithmetic(void)
{
    is_int(lr_elapsed(5000, 4000), 1000, "elapsed");
    is_int(lr_elapsed(4000, 5000), 0, "small step back counts 0");
    is_int(lr_elapsed(0, 100000), 1, "a minute back or more counts 1");

    is_int(lr_excess(0, 10000, 0), 1000, "a request at once adds 1000");
    is_int(lr_excess(20000, 10000, 0), 21000, "burst + 1");
    is_int(lr_excess(0, 10000, 50), 500, "half an interval later");
    is_int(lr_excess(0, 10000, 100), 0, "one interval later: empty again");
    is_int(lr_excess(5000, 2000, 2500), 1000, "leaked 5000 of 6000");
    is_int(lr_excess(1000, 1000000000ull, INT64_MAX / 2), 0, "no overflow");
    is_int(lr_leaked(83, 12048), 999, "5r/m leaks 999 milli in 12.048 s");
    is_int(lr_leaked(83, 12049), 1000, "and a whole request in 12.049 s");

    is_int(lr_delay(1000, 0, 2000), 500, "2r/s: excess 1 waits 0.5 s");
    is_int(lr_delay(2000, 0, 2000), 1000, "2r/s: excess 2 waits 1 s");
    is_int(lr_delay(3000, 2000, 2000), 500, "delay=2: excess 3 waits 0.5 s");
    is_int(lr_delay(2000, 2000, 2000), 0, "delay=2: excess 2 passes");
    is_int(lr_delay(50000, (uint64_t) INT64_MAX, 2000), 0, "nodelay");
    is_int(lr_delay(0, 0, 2000), 0, "no excess");
}

static void test_burst(void)
{
    limit_req_zone_t *z = make_zone("burst", 1 << 20, 10000);
    ok(z != NULL, "zone mapped");
    if (z == NULL)
        return;
    int64_t excess = -1;
    int passed = 0, rejected = 0;
    pt_current_msec = 1000000;
    /* rate=10r/s burst=20, 25 requests in the same millisecond */
    for (int i = 0; i < 25; i++) {
        int rc = check(z, "\x7f\0\0\x01", 20, &excess);
        if (rc == LR_OK)
            passed++;
        else if (rc == LR_BUSY)
            rejected++;
    }
    is_int(passed, 21, "1 + burst pass");
    is_int(rejected, 4, "the rest is rejected");
    is_int(excess, 21000, "the rejected ones see 21.000");
    /* a rejection does not fill the bucket: 100 ms later one more fits */
    pt_current_msec += 100;
    is_int(check(z, "\x7f\0\0\x01", 20, &excess), LR_OK, "100 ms later: one passes");
    is_int(excess, 20000, "at excess 20.000");
    is_int(check(z, "\x7f\0\0\x01", 20, &excess), LR_BUSY, "and the next is rejected");
    is_int(check(z, "other", 20, &excess), LR_OK, "another key has its own bucket");
    is_int(excess, 0, "a new key starts empty");
    /* 2.1 s later the bucket has drained completely */
    pt_current_msec += 2100;
    is_int(check(z, "\x7f\0\0\x01", 20, &excess), LR_OK, "drained");
    is_int(excess, 0, "excess 0 again");
}

static void test_held(void)
{
    limit_req_zone_t *z = make_zone("held", 1 << 20, 1000);
    if (z == NULL)
        return;
    pt_str_t k = pt_string("k");
    void *ref = NULL;
    int64_t excess;
    pt_current_msec = 2000000;
    /* a key checked first (not the last limit) is held, not accounted */
    is_int(z->backend->check(z, &k, 5000, 0, &ref, &excess), LR_HELD, "new key held");
    ok(ref != NULL, "ref");
    lr_node_t *n = ref;
    is_int(n->count, 1, "count 1 while held");
    z->backend->release(z, ref);
    is_int(n->count, 0, "released");
    is_int(n->excess, 0, "a release accounts nothing");
    /* held again then accounted: the new key is charged as empty */
    ref = NULL;
    is_int(z->backend->check(z, &k, 5000, 0, &ref, &excess), LR_HELD, "held again");
    is_int(excess, 0, "never accounted: sees an empty bucket");
    is_int(z->backend->account(z, ref), 0, "accounted at 0");
    is_int(n->last, 2000000, "last set");
    ref = NULL;
    is_int(z->backend->check(z, &k, 5000, 0, &ref, &excess), LR_HELD, "held a third time");
    is_int(excess, 1000, "sees 1.000");
    is_int(z->backend->account(z, ref), 1000, "accounted at 1.000");
    is_int(n->count, 0, "no hold left");
}

static void test_expire_and_lru(void)
{
    /* the smallest zone: 8 pages */
    limit_req_zone_t *z = make_zone("small", 8 * 4096, 1000);
    if (z == NULL)
        return;
    int64_t excess;
    char key[32];
    pt_current_msec = 3000000;
    /* far more keys than fit: the least recently used ones make room */
    int nomem = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "key-%06d", i);
        if (check(z, key, 0, &excess) != LR_OK)
            nomem++;
    }
    is_int(nomem, 0, "a full zone evicts instead of failing");
    ok(z->sh->nodes > 10 && z->sh->nodes < 2000, "bounded node count (%u)", z->sh->nodes);
    is_int(check(z, "key-001999", 0, &excess), LR_BUSY, "a recent key is still limited");
    is_int(check(z, "key-000000", 0, &excess), LR_OK, "the oldest key was evicted");

    /* idle a minute with an empty bucket: dropped on later lookups */
    uint32_t before = z->sh->nodes;
    pt_current_msec += 61000;
    check(z, "fresh", 0, &excess);
    ok(z->sh->nodes <= before, "idle nodes expired (%u -> %u)", before, z->sh->nodes);
}

static void test_reload_keeps_state(void)
{
    limit_req_zone_t *z = make_zone("reload", 1 << 20, 1000);
    if (z == NULL)
        return;
    int64_t excess;
    pt_current_msec = 4000000;
    is_int(check(z, "k", 0, &excess), LR_OK, "first passes");
    is_int(check(z, "k", 0, &excess), LR_BUSY, "second rejected");

    /* the next cycle's zone of the same name and size maps the same memory */
    static pt_cycle_t cycle;
    cycle.log = NULL;
    limit_req_zone_t nz = *z;
    pt_shm_zone_t nshm = *z->shm;
    nz.sh = NULL;
    nz.cycle = &cycle;
    nshm.data = &nz;
    is_int(zone_init(&nshm, z), 0, "init with old data");
    ok(nz.sh == z->sh, "state kept");
    is_int(check(&nz, "k", 0, &excess), LR_BUSY, "still limited after the reload");

    limit_req_zone_t kz = nz;
    pt_str_set(&kz.key.source, "$remote_addr");
    nshm.data = &kz;
    is_int(zone_init(&nshm, z), -1, "another key refuses the old state");
}

int main(void)
{
    pt_time_init();
    subtest("rate", test_rate);
    subtest("arithmetic", test_arithmetic);
    subtest("burst", test_burst);
    subtest("held", test_held);
    subtest("expire and lru", test_expire_and_lru);
    subtest("reload", test_reload_keeps_state);
    return done_testing();
}
