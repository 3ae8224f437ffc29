/* Arenas: alignment, small/large split, cleanups order, reset, pfree. */
#include "core/pool.c"

#include "tap.h"

static char order[16];
static int norder;
static void cleanup_a(void *d) { order[norder++] = *(char *) d; }

static pt_pool_t *nested_pool;
static void cleanup_adds(void *d)
{
    order[norder++] = 'N';
    pt_pool_cleanup_add(nested_pool, cleanup_a, d);   /* registered while running */
}

static void test_alloc(void)
{
    pt_pool_t *p = pt_pool_create(100);
    ok(p != NULL, "created (block size rounded up to 256)");
    is_int(pt_pool_size(p), 256, "size is one block");
    int misaligned = 0;
    for (int i = 1; i < 200; i++) {
        char *m = pt_palloc(p, (size_t) (i % 37) + 1);
        if ((uintptr_t) m % 16)
            misaligned++;
        memset(m, 0xee, (size_t) (i % 37) + 1);
    }
    is_int(misaligned, 0, "pt_palloc is 16-byte aligned");
    char *s1 = pt_pnalloc(p, 3), *s2 = pt_pnalloc(p, 3);
    ok(s2 == s1 + 3, "pt_pnalloc packs strings");
    unsigned char *z = pt_pcalloc(p, 50);
    int zero = 1;
    for (int i = 0; i < 50; i++)
        zero &= z[i] == 0;
    ok(zero, "pt_pcalloc zeroes");

    size_t before = pt_pool_size(p);
    char *big = pt_palloc(p, 5000);
    ok(big && (uintptr_t) big % 16 == 0, "large allocation aligned");
    memset(big, 1, 5000);
    ok(pt_pool_size(p) >= before + 5000, "large counted");
    pt_pfree(p, big);
    is_int(pt_pool_size(p), before, "pt_pfree releases a large block early");
    pt_pfree(p, s1);   /* small: no-op */
    ok(pt_palloc(p, 0) != NULL, "zero-size allocation gives a pointer");
    pt_pool_destroy(p);
    pt_pool_destroy(NULL);
}

static void test_strings(void)
{
    pt_pool_t *p = pt_pool_create(512);
    char *d = pt_pstrndup(p, "hello world", 5);
    is_str(d, "hello", "pstrndup copies and terminates");
    pt_str_t src = pt_string("abc"), dst;
    ok(pt_pstrdup(p, &dst, &src) == 0 && dst.len == 3 && dst.data[3] == '\0'
       && dst.data != src.data, "pstrdup");
    pt_str_t empty = pt_null_string;
    ok(pt_pstrdup(p, &dst, &empty) == 0 && dst.len == 0 && dst.data[0] == '\0',
       "pstrdup of a null string");
    is_str(pt_psprintf(p, "%s-%d", "x", 42), "x-42", "psprintf short");
    char longs[600];
    memset(longs, 'y', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    char *l = pt_psprintf(p, "<%s>", longs);
    ok(l && strlen(l) == 601 && l[0] == '<' && l[600] == '>', "psprintf longer than its stack buffer");
    pt_pool_destroy(p);
}

static void test_cleanups(void)
{
    pt_pool_t *p = pt_pool_create(256);
    static char a = 'a', b = 'b', c = 'c', x = 'x';
    pt_pool_cleanup_add(p, cleanup_a, &a);
    pt_pool_cleanup_add(p, cleanup_a, &b);
    pt_pool_cleanup_add(p, cleanup_a, &c);
    nested_pool = p;
    pt_pool_cleanup_add(p, cleanup_adds, &x);
    norder = 0;
    pt_pool_reset(p);
    order[norder] = '\0';
    is_str(order, "Ncbax", "reset runs cleanups in reverse order, including ones added meanwhile");
    is_int(pt_pool_size(p), 256, "reset keeps one block");
    norder = 0;
    pt_pool_reset(p);
    is_int(norder, 0, "cleanups run once");

    /* reset after growth: first block is reusable, others freed */
    for (int i = 0; i < 100; i++)
        pt_palloc(p, 100);
    pt_palloc(p, 10000);
    ok(pt_pool_size(p) > 10000, "grew");
    pt_pool_reset(p);
    is_int(pt_pool_size(p), 256, "back to one block");
    char *m = pt_palloc(p, 64);
    ok(m != NULL, "usable after reset");
    pt_pool_cleanup_add(p, cleanup_a, &a);
    norder = 0;
    pt_pool_destroy(p);
    is_int(norder, 1, "destroy runs cleanups");
}

static void test_many_blocks(void)
{
    pt_pool_t *p = pt_pool_create(1024);
    /* allocations that leave odd tails force the "failed" skipping */
    char *prev = NULL;
    int overlap = 0;
    for (int i = 0; i < 5000; i++) {
        size_t n = (size_t) (i * 7919 % 400) + 1;   /* all small */
        char *m = pt_palloc(p, n);
        memset(m, i & 0xff, n);
        if (prev && m == prev)
            overlap++;
        prev = m;
    }
    is_int(overlap, 0, "distinct allocations");
    pt_pool_block_t *b;
    size_t blocks = 0;
    for (b = p->first; b; b = b->next)
        blocks++;
    ok(p->current != p->first, "current advanced past full blocks");
    is_int(pt_pool_size(p), blocks * 1024, "size = blocks");
    pt_pool_destroy(p);
}

static int cleanup_runs;
static void count_cleanup(void *data)
{
    (void) data;
    cleanup_runs++;
}

static void test_request_pools(void)
{
    pt_pool_t *a = pt_pool_get(4096);
    ok(a != NULL, "a pool for a request");
    ok(pt_palloc(a, 100) != NULL, "usable");
    pt_pool_cleanup_add(a, count_cleanup, NULL);
    pt_palloc(a, 3000);          /* a large block: freed by the put */
    cleanup_runs = 0;
    pt_pool_put(a, 4096);
    is_int(cleanup_runs, 1, "put runs the request's cleanups");
    pt_pool_t *b = pt_pool_get(8192);
    ok(b != NULL && pt_pool_size(b) == 8192, "another size: its own pool");
    pt_pool_t *c = pt_pool_get(4096);
    ok(c != NULL && pt_pool_size(c) == 4096, "same size: a pool with only its first block");
#if !defined(__SANITIZE_ADDRESS__)
    ok(c == a, "the kept pool is handed out again");
#endif
    pt_pool_put(b, 8192);
    pt_pool_put(c, 4096);
    /* more than the cache keeps: the rest are destroyed (ASan/LSan would
     * report a leak) */
    pt_pool_t *many[40];
    for (int i = 0; i < 40; i++)
        many[i] = pt_pool_get(1024);
    for (int i = 0; i < 40; i++)
        pt_pool_put(many[i], 1024);
    ok(1, "40 pools put back");
}

int main(void)
{
    subtest("alloc", test_alloc);
    subtest("strings", test_strings);
    subtest("cleanups", test_cleanups);
    subtest("many blocks", test_many_blocks);
    subtest("request pools", test_request_pools);
    return done_testing();
}
