/* Unit tests for src/proxy/cache_store.c: key hashing, levels and file
 * names, the shared index in a real shm zone (fill lock, commit, expiry,
 * lock age, another process seeing the lock), the manager (inactive,
 * max_size), the manager lease and the loader. */
#include "../../../src/proxy/cache_store.c"

#include <stdlib.h>
#include <sys/wait.h>

#include "tap.h"

static void test_hash_and_names(void)
{
    unsigned char md5[PT_CACHE_KEY_LEN];
    char hex[33], name[256];
    size_t dir_len = 0;

    pt_cache_key_hash("abc", 3, md5);
    pt_cache_key_hex(md5, hex);
    is_str(hex, "900150983cd24fb0d6963f7d28e17f72", "md5 of abc");
    pt_cache_key_hash("", 0, md5);
    pt_cache_key_hex(md5, hex);
    is_str(hex, "d41d8cd98f00b204e9800998ecf8427e", "md5 of the empty key");

    pt_cache_t c;
    memset(&c, 0, sizeof(c));
    pt_str_set(&c.path, "/var/cache/x");
    pt_cache_key_hash("abc", 3, md5);

    ok(pt_cache_file_name(&c, md5, name, sizeof(name), &dir_len) > 0, "no levels");
    is_str(name, "/var/cache/x/900150983cd24fb0d6963f7d28e17f72", "file name without levels");
    is_int((int) dir_len, 12, "directory part");

    ok(pt_cache_parse_levels("1:2", 3, c.levels, &c.nlevels) == 0, "levels=1:2");
    is_int((int) c.nlevels, 2, "two levels");
    pt_cache_file_name(&c, md5, name, sizeof(name), &dir_len);
    is_str(name, "/var/cache/x/2/f7/900150983cd24fb0d6963f7d28e17f72",
           "levels=1:2: last character, then the two before it (as nginx: .../c/29/...5029c)");
    is_int((int) dir_len, (int) strlen("/var/cache/x/2/f7"), "directory of 1:2");

    ok(pt_cache_parse_levels("2:2:2", 5, c.levels, &c.nlevels) == 0, "levels=2:2:2");
    pt_cache_file_name(&c, md5, name, sizeof(name), NULL);
    is_str(name, "/var/cache/x/72/7f/e1/900150983cd24fb0d6963f7d28e17f72", "levels=2:2:2");

    ok(pt_cache_parse_levels("2", 1, c.levels, &c.nlevels) == 0, "levels=2");
    pt_cache_file_name(&c, md5, name, sizeof(name), NULL);
    is_str(name, "/var/cache/x/72/900150983cd24fb0d6963f7d28e17f72", "levels=2");

    static const char *const bad[] = { "", "3", "0", "1:", ":1", "1:2:1:1", "12", "1;2", "a" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned lv[3], n;
        ok(pt_cache_parse_levels(bad[i], strlen(bad[i]), lv, &n) != 0,
           "levels \"%s\" refused", bad[i]);
    }
    ok(pt_cache_file_name(&c, md5, name, 20, NULL) == 0, "too small a buffer: 0");
}

static pt_shm_zone_t zone;
static pt_cache_t cache;

static void setup_cache(const char *path)
{
    memset(&zone, 0, sizeof(zone));
    pt_str_set(&zone.name, "unit");
    zone.size = 256 * 1024;
    if (pt_shm_alloc(&zone) != 0) {
        ok(0, "shm");
        exit(1);
    }
    memset(&cache, 0, sizeof(cache));
    cache.path.data = (char *) path;
    cache.path.len = strlen(path);
    pt_cache_parse_levels("1:2", 3, cache.levels, &cache.nlevels);
    cache.inactive = 60;
    cache.shm = &zone;
    ok(pt_cache_zone_init(&cache, zone.addr, NULL) == 0, "zone init");
}

static void test_index(void)
{
    unsigned char k[PT_CACHE_KEY_LEN];
    pt_cache_lookup_t lk;
    int64_t now = 1700000000000LL;

    setup_cache("/nonexistent-cache");
    pt_cache_key_hash("k1", 2, k);

    ok(pt_cache_lookup(&cache, k, now, 1, 5000, 1, &lk) == 0, "lookup");
    ok(!lk.exists && !lk.fresh && lk.locked && !lk.others_fill, "miss: we fill");
    uint32_t id = lk.lock_id;

    ok(pt_cache_lookup(&cache, k, now + 10, 1, 5000, 1, &lk) == 0 && !lk.locked
       && lk.others_fill, "second lookup: someone else fills");
    ok(pt_cache_is_filling(&cache, k, now + 10, 5000), "is filling");

    /* another process sees the same lock */
    pid_t pid = fork();
    if (pid == 0) {
        pt_cache_lookup_t l2;
        int rc = pt_cache_lookup(&cache, k, now + 20, 1, 5000, 1, &l2);
        _exit(rc == 0 && l2.others_fill && !l2.locked ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a child process sees the fill lock");

    ok(pt_cache_commit(&cache, k, id, now / 1000 + 5, 1000) == 0, "commit");
    ok(!pt_cache_is_filling(&cache, k, now + 30, 5000), "lock released by commit");
    ok(pt_cache_lookup(&cache, k, now + 40, 1, 5000, 1, &lk) == 0 && lk.exists && lk.fresh
       && !lk.locked, "fresh after commit");
    is_int((int) cache.sh->size, 1000, "size accounted");

    ok(pt_cache_lookup(&cache, k, now + 6000, 1, 5000, 1, &lk) == 0 && lk.exists && !lk.fresh
       && lk.locked, "expired: the first one refreshes");
    id = lk.lock_id;
    ok(pt_cache_lookup(&cache, k, now + 6100, 1, 5000, 1, &lk) == 0 && lk.exists
       && lk.others_fill, "expired: others see it updating");
    pt_cache_refresh(&cache, k, id, now / 1000 + 100);
    ok(pt_cache_lookup(&cache, k, now + 6200, 1, 5000, 1, &lk) == 0 && lk.fresh,
       "fresh again after a revalidation");

    /* a filler that never finishes: its lock ages out */
    unsigned char k2[PT_CACHE_KEY_LEN];
    pt_cache_key_hash("k2", 2, k2);
    pt_cache_lookup(&cache, k2, now, 1, 5000, 1, &lk);
    ok(lk.locked, "k2 locked");
    ok(pt_cache_lookup(&cache, k2, now + 4999, 1, 5000, 1, &lk) == 0 && lk.others_fill,
       "before lock_age: still locked");
    ok(pt_cache_lookup(&cache, k2, now + 5000, 1, 5000, 1, &lk) == 0 && lk.locked,
       "after lock_age: a new filler");
    uint32_t old = lk.lock_id;
    pt_cache_unlock(&cache, k2, old + 1);
    ok(pt_cache_is_filling(&cache, k2, now + 5001, 5000), "unlock with a wrong token: kept");
    pt_cache_unlock(&cache, k2, old);
    ok(!pt_cache_is_filling(&cache, k2, now + 5001, 5000), "unlock");

    /* min_uses */
    unsigned char k3[PT_CACHE_KEY_LEN];
    pt_cache_key_hash("k3", 2, k3);
    pt_cache_lookup(&cache, k3, now, 1, 5000, 3, &lk);
    ok(!lk.min_uses_ok && !lk.locked, "min_uses 3: first use does not fill");
    pt_cache_lookup(&cache, k3, now, 1, 5000, 3, &lk);
    pt_cache_lookup(&cache, k3, now, 1, 5000, 3, &lk);
    ok(lk.min_uses_ok && lk.locked, "third use fills");
    pt_cache_unlock(&cache, k3, lk.lock_id);

    /* Cache-Control stale extensions: within N seconds after valid_sec */
    pt_cache_set_stale(&cache, k, 10, 20);
    ok(pt_cache_lookup(&cache, k, now + 100 * 1000 + 5000, 0, 5000, 1, &lk) == 0
       && !lk.fresh && lk.stale_updating && lk.stale_error, "stale-while-revalidate and -if-error");
    ok(pt_cache_lookup(&cache, k, now + 100 * 1000 + 15000, 0, 5000, 1, &lk) == 0
       && !lk.stale_updating && lk.stale_error, "past stale-while-revalidate");
    ok(pt_cache_lookup(&cache, k, now + 100 * 1000 + 25000, 0, 5000, 1, &lk) == 0
       && !lk.stale_updating && !lk.stale_error, "past both");

    pt_cache_invalidate(&cache, k);
    ok(pt_cache_lookup(&cache, k, now + 7000, 0, 5000, 1, &lk) == 0 && !lk.exists,
       "invalidated");
    pt_shm_free(&zone);
}

static void test_manager(void)
{
    char dir[] = "/tmp/pt-cache-unit-XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir");
    setup_cache(dir);
    cache.inactive = 10;
    int64_t now = 1700000000000LL;
    unsigned char k[5][PT_CACHE_KEY_LEN];
    char name[512];
    size_t dl;

    for (int i = 0; i < 5; i++) {
        char key[8];
        pt_cache_lookup_t lk;
        snprintf(key, sizeof(key), "m%d", i);
        pt_cache_key_hash(key, strlen(key), k[i]);
        pt_cache_lookup(&cache, k[i], now + i * 1000, 1, 5000, 1, &lk);
        pt_cache_file_name(&cache, k[i], name, sizeof(name), &dl);
        ok(pt_cache_mkdirs(name, dl) == 0, "mkdirs %d", i);
        /* a valid file, for the loader below */
        pt_cache_file_header_t h;
        memset(&h, 0, sizeof(h));
        memcpy(h.magic, PT_CACHE_MAGIC, 8);
        h.key_len = (uint32_t) strlen(key);
        h.head_len = 0;
        h.body_len = 100;
        h.valid_sec = now / 1000 + 3600;
        memcpy(h.md5, k[i], PT_CACHE_KEY_LEN);
        FILE *f = fopen(name, "w");
        fwrite(&h, sizeof(h), 1, f);
        fwrite(key, strlen(key), 1, f);
        for (int j = 0; j < 100; j++)
            fputc('x', f);
        fclose(f);
        pt_cache_commit(&cache, k[i], lk.lock_id, h.valid_sec,
                        (int64_t) sizeof(h) + (int64_t) strlen(key) + 100);
    }
    int64_t one = (int64_t) sizeof(pt_cache_file_header_t) + 2 + 100;
    is_int((int) cache.sh->size, (int) (5 * one), "five entries");
    is_int((int) pt_cache_manage(&cache, now + 5000, 100), 0, "nothing inactive yet");

    /* m0 and m1 last used at +0s and +1s: inactive after 10s */
    is_int((int) pt_cache_manage(&cache, now + 11500, 100), 2, "two inactive entries removed");
    pt_cache_file_name(&cache, k[0], name, sizeof(name), NULL);
    ok(access(name, F_OK) != 0, "their file is gone");
    pt_cache_file_name(&cache, k[2], name, sizeof(name), NULL);
    ok(access(name, F_OK) == 0, "others stay");

    /* max_size: the least recently used go first */
    cache.max_size = 2 * one;
    is_int((int) pt_cache_manage(&cache, now + 11500, 100), 1, "one over max_size removed");
    ok(access(name, F_OK) != 0, "the oldest (m2) went");
    is_int((int) cache.sh->size, (int) (2 * one), "at max_size");
    cache.max_size = 0;

    /* lease */
    ok(pt_cache_take_lease(&cache, now, 1000, 0), "lease taken");
    ok(pt_cache_take_lease(&cache, now + 100, 1000, 0), "renewed by its owner");
    pt_cache_take_lease(&cache, now, 1000, 1);
    ok(cache.sh->mgr_pid == 0, "released");

    /* the loader in a fresh zone finds the two files left, drops a bad one */
    pt_shm_free(&zone);
    pt_cache_key_hash("bad", 3, k[0]);
    pt_cache_file_name(&cache, k[0], name, sizeof(name), &dl);
    pt_cache_mkdirs(name, dl);
    FILE *f = fopen(name, "w");
    fputs("garbage", f);
    fclose(f);
    setup_cache(dir);
    is_int((int) pt_cache_load(&cache, now), 2, "loader indexed two entries");
    ok(access(name, F_OK) != 0, "an invalid file is removed");
    pt_cache_lookup_t lk;
    pt_cache_lookup(&cache, k[4], now, 0, 5000, 1, &lk);
    ok(lk.exists && lk.fresh, "a loaded entry is fresh");
    is_int((int) cache.sh->size, (int) (2 * one), "loaded sizes");
    pt_shm_free(&zone);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ok(system(cmd) == 0, "cleanup");
}

int main(void)
{
    subtest("hash_and_names", test_hash_and_names);
    subtest("index", test_index);
    subtest("manager", test_manager);
    return done_testing();
}
