/* Shared zones, slab allocator and robust shared mutex: randomized
 * alloc/free against the allocator's invariants, exhaustion, bad frees,
 * sharing with forked children, recovery after a child dies holding the lock. */
#include "core/shm.c"
#include "core/shmtx.c"
#include "core/slab.c"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

static char logpath[] = "/tmp/pt_test_slab_XXXXXX";
static pt_open_file_t logfile;
static pt_log_t filelog;

static size_t log_count(const char *needle)
{
    static char buf[65536];
    int fd = open(logpath, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : 0;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    size_t c = 0;
    for (char *p = buf; (p = strstr(p, needle)) != NULL; p++)
        c++;
    return c;
}

/* Walks every descriptor and list; returns a description of the first
 * broken invariant, or NULL. */
static const char *check(pt_slab_pool_t *pool)
{
    slab_t *st = ST(pool);
    size_t free_pages = 0, small_free = 0;
    for (size_t i = 0; i < st->npages;) {
        slab_page_t *d = &st->desc[i];
        switch (d->type) {
        case PAGE_FREE: {
            size_t n = d->npages;
            if (n == 0 || i + n > st->npages)
                return "free run length";
            if (n > 1 && (d[n - 1].type != PAGE_FREE_TAIL || d[n - 1].npages != n))
                return "free run tail";
            for (size_t k = 1; k + 1 < n; k++)
                if (d[k].type != PAGE_FREE_BODY)
                    return "free run interior";
            if (i + n < st->npages && d[n].type == PAGE_FREE)
                return "two adjacent free runs (not coalesced)";
            int found = 0;
            for (slab_page_t *e = st->buckets[bucket_of(n)]; e; e = e->next)
                found |= e == d;
            if (!found)
                return "free run not in its bucket";
            free_pages += n;
            i += n;
            break;
        }
        case PAGE_RUN: {
            size_t n = d->npages;
            if (n == 0 || i + n > st->npages)
                return "run length";
            for (size_t k = 1; k < n; k++)
                if (d[k].type != PAGE_RUN_BODY)
                    return "run body";
            i += n;
            break;
        }
        case PAGE_SLAB: {
            unsigned shift = d->shift, objs = class_objects(shift);
            uint64_t *m = page_map(st, d);
            unsigned busy = 0;
            for (unsigned w = 0; w < map_words(shift); w++)
                busy += (unsigned) __builtin_popcountll(m[w]);
            if (shift >= MAP_SHIFT && objs < 64)
                busy -= 64 - objs;
            if (busy != d->inuse)
                return "slab inuse != bitmap";
            if (d->inuse == class_reserved(shift))
                return "empty slab page kept";
            int listed = 0;
            for (slab_page_t *e = st->classes[shift - MIN_SHIFT]; e; e = e->next)
                listed |= e == d;
            if (listed != (d->inuse < objs))
                return "slab page list membership";
            small_free += (size_t) (objs - d->inuse) << shift;
            i++;
            break;
        }
        default:
            return "stray page type";
        }
    }
    if (free_pages != st->free_pages)
        return "free page count";
    if (small_free != st->small_free)
        return "small free bytes";
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (slab_page_t *e = st->buckets[b]; e; e = e->next)
            if (e->type != PAGE_FREE || bucket_of(e->npages) != b)
                return "bucket entry";
    return NULL;
}

static pt_shm_zone_t *zone_new(const char *name, size_t size)
{
    static pt_shm_zone_t zones[8];
    static int nz;
    pt_shm_zone_t *z = &zones[nz++];
    memset(z, 0, sizeof(*z));
    z->name.data = (char *) name;
    z->name.len = strlen(name);
    z->size = size;
    return pt_shm_alloc(z) == 0 ? z : NULL;
}

typedef struct {
    unsigned char *p;
    size_t size;
    unsigned char fill;
} live_t;

static void test_random(void)
{
    pt_shm_zone_t *z = zone_new("rand", 1 << 20);
    ok(z && z->addr, "zone mapped");
    pt_slab_pool_t *pool = z->addr;
    is_str(pool->log_ctx, " in zone \"rand\"", "log_ctx");
    size_t total = pt_slab_free_bytes(pool);
    ok(total > (1 << 20) - 64 * 1024, "most of the zone is usable (%zu)", total);

    enum { NLIVE = 2000 };
    static live_t live[NLIVE];
    memset(live, 0, sizeof(live));
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
#define RND() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17, rng)
    const char *bad = NULL;
    int misaligned = 0, clobbered = 0, nulls = 0;
    for (int step = 0; step < 60000 && !bad; step++) {
        unsigned i = (unsigned) (RND() % NLIVE);
        if (live[i].p) {
            for (size_t k = 0; k < live[i].size; k++)
                if (live[i].p[k] != live[i].fill) {
                    clobbered++;
                    break;
                }
            pt_slab_free(pool, live[i].p);
            live[i].p = NULL;
        } else {
            /* mostly small, sometimes pages, rarely big */
            unsigned r = (unsigned) (RND() % 100);
            size_t size = r < 80 ? RND() % 300 : r < 97 ? RND() % 2048 + 1 : RND() % 40000 + 2049;
            unsigned char *p = pt_slab_alloc(pool, size);
            if (p == NULL) {
                nulls++;
                continue;
            }
            size_t align = size > 2048 ? 4096 : 8;
            while (align < size && align < 2048)
                align <<= 1;
            if ((uintptr_t) p % align)
                misaligned++;
            live[i].p = p;
            live[i].size = size;
            live[i].fill = (unsigned char) (RND() | 1);
            memset(p, live[i].fill, size);
        }
        if (step % 97 == 0)
            bad = check(pool);
    }
    ok(bad == NULL, "invariants hold throughout%s%s", bad ? ": " : "", bad ? bad : "");
    is_int(misaligned, 0, "objects aligned to their class, runs to pages");
    is_int(clobbered, 0, "no allocation overlapped another");
    note("%d allocations failed for lack of room", nulls);
    for (unsigned i = 0; i < NLIVE; i++)
        if (live[i].p)
            pt_slab_free(pool, live[i].p);
    bad = check(pool);
    ok(bad == NULL, "invariants after freeing all%s%s", bad ? ": " : "", bad ? bad : "");
    is_int(pt_slab_free_bytes(pool), total, "every byte back");
    slab_t *st = ST(pool);
    ok(st->buckets[NBUCKETS - 1] && st->buckets[NBUCKETS - 1]->npages == st->npages
       && st->buckets[NBUCKETS - 1]->next == NULL, "coalesced into one run");
    pt_shm_free(z);
    ok(z->addr == NULL, "unmapped");
#undef RND
}

static void test_exhaustion(void)
{
    pt_shm_zone_t *z = zone_new("tiny", 64 * 1024);
    pt_slab_pool_t *pool = z->addr;
    size_t before = log_count("no memory in zone \"tiny\"");
    void *v[64];
    int n = 0;
    while (n < 64 && (v[n] = pt_slab_alloc(pool, 4096)) != NULL)
        n++;
    ok(n > 8 && n < 16, "page allocations until full (%d)", n);
    ok(pt_slab_alloc(pool, 4096) == NULL, "exhausted: NULL");
    ok(pt_slab_alloc(pool, 8) == NULL, "small too (no page left for a slab)");
    ok(pt_slab_alloc(pool, 1 << 20) == NULL, "larger than the zone: NULL");
    is_int(log_count("pt_slab_alloc() failed: no memory in zone \"tiny\"") - before, 1,
           "logged once for the shortage");
    pt_slab_free(pool, v[--n]);
    char *p = pt_slab_calloc(pool, 100);
    ok(p && p[0] == 0 && p[99] == 0, "room again after a free; calloc zeroes");
    ok(pt_slab_alloc(pool, 4096) == NULL, "the slab page took the last page");
    is_int(log_count("no memory in zone \"tiny\"") - before, 2, "a new shortage is logged again");
    pool->log_nomem = 0;
    pt_slab_free(pool, p);
    pt_slab_alloc(pool, 8192);
    pt_slab_alloc(pool, 8192);
    is_int(log_count("no memory in zone \"tiny\"") - before, 2, "log_nomem = 0 silences it");
    pt_shm_free(z);

    char small[256];
    ok(pt_slab_init((pt_slab_pool_t *) (void *) small, sizeof(small)) == -1, "too small: -1");
    pt_shm_zone_t zz;
    memset(&zz, 0, sizeof(zz));
    pt_str_set(&zz.name, "zero");
    ok(pt_shm_alloc(&zz) == -1, "zero-size zone refused");
}

static void test_bad_free(void)
{
    pt_shm_zone_t *z = zone_new("bad", 256 * 1024);
    pt_slab_pool_t *pool = z->addr;
    size_t c0 = log_count("in zone \"bad\"");
    char *a = pt_slab_alloc(pool, 100);
    char *a2 = pt_slab_alloc(pool, 100);   /* keeps the slab page alive */
    char *b = pt_slab_alloc(pool, 10000);
    int local;
    pt_slab_free(pool, a);
    pt_slab_free(pool, a);
    pt_slab_free(pool, b + 4096);
    pt_slab_free(pool, b + 1);
    pt_slab_free(pool, &local);
    char *c = pt_slab_alloc(pool, 64);
    pt_slab_free(pool, c + 8);
    pt_slab_free(pool, NULL);
    is_int(log_count("in zone \"bad\"") - c0, 5, "five bad frees logged");
    ok(log_count("chunk is already free in zone \"bad\"") >= 1, "double free named");
    ok(log_count("outside of pool in zone \"bad\"") >= 1, "foreign pointer named");
    const char *bad = check(pool);
    ok(bad == NULL, "allocator intact%s%s", bad ? ": " : "", bad ? bad : "");
    pt_slab_free(pool, b);
    pt_slab_free(pool, c);
    pt_slab_free(pool, a2);
    pt_slab_free(pool, a2);
    ok(log_count("page is already free in zone \"bad\"") == 1, "free into a free page named");
    ok(check(pool) == NULL, "still intact");
    pt_shm_free(z);
}

static void test_fork_share(void)
{
    pt_shm_zone_t *z = zone_new("share", 512 * 1024);
    pt_slab_pool_t *pool = z->addr;
    char *mine = pt_slab_alloc(pool, 3000);
    strcpy(mine, "from parent");
    pid_t pid = fork();
    if (pid == 0) {
        char *s = pt_slab_alloc(pool, 64);
        strcpy(s, "hello from the child");
        pool->data = s;
        int ok_ = strcmp(mine, "from parent") == 0;
        pt_slab_free(pool, mine);   /* a child frees what the parent took */
        _exit(ok_ ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child saw the parent's data");
    ok(pool->data && strcmp(pool->data, "hello from the child") == 0,
       "parent sees the child's allocation");
    ok(check(pool) == NULL, "consistent after the child's work");
    pt_slab_free(pool, pool->data);
    ok(ST(pool)->free_pages == ST(pool)->npages, "all free (child freed the parent's block)");

    /* two children hammering the zone at once, under the mutex */
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            void *v[64] = { 0 };
            uint64_t rng = (uint64_t) getpid() * 2654435761u + 1;
            for (int i = 0; i < 30000; i++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                unsigned j = (unsigned) (rng % 64);
                if (v[j]) {
                    pt_slab_free(pool, v[j]);
                    v[j] = NULL;
                } else {
                    v[j] = pt_slab_alloc(pool, (size_t) (rng >> 20) % 5000 + 1);
                }
            }
            for (int j = 0; j < 64; j++)
                pt_slab_free(pool, v[j]);
            _exit(0);
        }
    }
    int fine = 1;
    for (int k = 0; k < 2; k++) {
        waitpid(kids[k], &st, 0);
        fine &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    ok(fine, "two children allocated concurrently");
    const char *bad = check(pool);
    ok(bad == NULL, "consistent after concurrent use%s%s", bad ? ": " : "", bad ? bad : "");
    ok(ST(pool)->free_pages == ST(pool)->npages, "everything returned");
    pt_shm_free(z);
}

static void test_robust(void)
{
    pt_shm_zone_t *z = zone_new("robust", 128 * 1024);
    pt_slab_pool_t *pool = z->addr;
    size_t c0 = log_count("owner died");
    pid_t pid = fork();
    if (pid == 0) {
        pt_shmtx_lock(&pool->mutex);
        _exit(0);   /* dies holding the lock */
    }
    int st;
    waitpid(pid, &st, 0);
    /* guard against a hang if recovery were broken */
    alarm(10);
    ok(pt_shmtx_trylock(&pool->mutex) == 1, "trylock recovers a lock whose owner died");
    pt_shmtx_unlock(&pool->mutex);
    void *p = pt_slab_alloc(pool, 10);
    ok(p != NULL, "the zone works after recovery");
    pt_slab_free(pool, p);
    is_int(log_count("owner died") - c0, 1, "recovery logged");

    /* blocking lock path too */
    pid = fork();
    if (pid == 0) {
        pt_shmtx_lock(&pool->mutex);
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    waitpid(pid, &st, 0);
    ok(WIFSIGNALED(st), "child killed while holding the lock");
    pt_shmtx_lock(&pool->mutex);
    ok(1, "lock recovers too");
    ok(pt_shmtx_trylock(&pool->mutex) == 0, "held now: trylock fails");
    pt_shmtx_unlock(&pool->mutex);
    ok(pt_shmtx_trylock(&pool->mutex) == 1, "released: trylock succeeds");
    pt_shmtx_unlock(&pool->mutex);
    alarm(0);
    pt_shm_free(z);
}

int main(void)
{
    int fd = mkstemp(logpath);
    if (fd < 0)
        return 1;
    logfile.path = logpath;
    logfile.fd = fd;
    filelog.level = PT_LOG_DEBUG;
    filelog.file = &logfile;
    pt_log_default = &filelog;
    pt_log_use_stderr = 0;
    subtest("random", test_random);
    subtest("exhaustion", test_exhaustion);
    subtest("bad free", test_bad_free);
    subtest("fork", test_fork_share);
    subtest("robust", test_robust);
    unlink(logpath);
    return done_testing();
}
