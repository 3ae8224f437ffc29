/* I/O buffers: size classes, freelist reuse and caps, references, custom
 * free callbacks, accounting. */
#include "core/buf.c"

#include "tap.h"

static void test_classes(void)
{
    struct { size_t ask, room; } cases[] = {
        { 0, 4096 }, { 1, 4096 }, { 4096, 4096 }, { 4097, 8192 }, { 8192, 8192 },
        { 10000, 16384 }, { 32768, 32768 }, { 40000, 65536 }, { 65536, 65536 },
        { 65537, 131072 }, { 200000, 262144 }, { 262144, 262144 },
        { 262145, 266240 }, { 1000000, 1003520 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pt_buf_t *b = pt_buf_get(cases[i].ask);
        ok(b && pt_buf_room(b) == cases[i].room && pt_buf_size(b) == 0 && b->pos == b->start
           && b->last == b->start && !b->ref && !b->next && !b->free && !b->last_buf,
           "get(%zu): room %zu", cases[i].ask, b ? pt_buf_room(b) : 0);
        ok(((uintptr_t) b->start & 15) == 0, "storage 16-byte aligned");
        memset(b->start, 0xab, pt_buf_room(b));   /* ASan: whole storage is ours */
        pt_buf_put(b);
    }
    pt_buf_freelist_drain();
    is_int(pt_buf_allocated(), 0, "all returned after drain");
}

static void test_reuse(void)
{
    pt_buf_t *a = pt_buf_get(100);
    size_t one = pt_buf_allocated();
    ok(one >= 4096 && one < 4096 + 256, "accounting: storage + header (%zu)", one);
    a->last += 10;
    a->last_buf = 1;
    a->tag = (void *) 1;
    pt_buf_put(a);
    is_int(pt_buf_allocated(), one, "cached buffers still count");
    pt_buf_t *b = pt_buf_get(4000);
    ok(b == a, "LIFO reuse of the same class");
    ok(b->pos == b->last && b->pos == b->start && !b->last_buf && !b->tag, "reset on reuse");
    pt_buf_t *c = pt_buf_get(4000);
    ok(c != b, "a second buffer is distinct");
    is_int(pt_buf_allocated(), 2 * one, "two allocated");
    pt_buf_put(b);
    pt_buf_put(c);
    pt_buf_put(NULL);
    pt_buf_freelist_drain();
    is_int(pt_buf_allocated(), 0, "drained");
}

static void test_caps(void)
{
    enum { N = 600 };
    static pt_buf_t *v[N];
    for (int i = 0; i < N; i++)
        v[i] = pt_buf_get(4096);
    size_t all = pt_buf_allocated();
    for (int i = 0; i < N; i++)
        pt_buf_put(v[i]);
    is_int(lists[0].count, CACHE_MAX_COUNT, "freelist capped by count");
    ok(pt_buf_allocated() < all, "surplus went back to malloc");
    is_int(pt_buf_allocated(), cached_bytes, "only cached bytes remain");
    pt_buf_freelist_drain();

    /* the byte cap across classes */
    static pt_buf_t *w[N];
    for (int i = 0; i < 200; i++)
        w[i] = pt_buf_get(65536);
    for (int i = 0; i < 200; i++)
        pt_buf_put(w[i]);
    ok(cached_bytes <= CACHE_MAX_BYTES, "byte cap holds (%zu cached)", cached_bytes);
    ok(lists[4].count < 200 && lists[4].count >= 100, "64k list partly kept (%zu)",
       lists[4].count);
    pt_buf_freelist_drain();
    is_int(pt_buf_allocated(), 0, "drained");
}

static void test_ref_and_chain(void)
{
    static const char text[] = "hello, world";
    pt_buf_t *r = pt_buf_ref(text, 5);
    ok(r && r->ref && r->pos == text && r->last == text + 5 && pt_buf_size(r) == 5
       && pt_buf_room(r) == 0, "reference buffer");
    pt_buf_t *a = pt_buf_get(10), *b = pt_buf_get(20000);
    a->next = r;
    r->next = b;
    pt_buf_put_chain(a);
    ok(lists[0].count == 1 && lists[3].count == 1 && lists[CLASS_REF].count == 1,
       "chain returned to three freelists");
    pt_buf_t *r2 = pt_buf_ref(text + 7, 5);
    ok(r2 == r && r2->pos == text + 7 && r2->ref, "reference header reused");
    pt_buf_put(r2);
    pt_buf_freelist_drain();
    is_int(pt_buf_allocated(), 0, "drained");
}

static int custom_calls;
static void custom_free(pt_buf_t *b)
{
    custom_calls++;
    ok(b->free_data == (void *) 42, "free callback sees free_data");
    b->free = NULL;        /* the owner hands it back to the freelist itself */
    pt_buf_put(b);
}

static void test_custom_free(void)
{
    pt_buf_t *b = pt_buf_get(1);
    b->free = custom_free;
    b->free_data = (void *) 42;
    pt_buf_put(b);
    is_int(custom_calls, 1, "custom free called");
    is_int(lists[0].count, 1, "and the buffer reached the freelist");
    pt_buf_put(b);   /* a double put is refused, not corrupting the list */
    is_int(lists[0].count, 1, "double put ignored");
    pt_buf_freelist_drain();
}

#if defined(__SANITIZE_ADDRESS__)
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
static void test_poison(void)
{
    pt_buf_t *b = pt_buf_get(100);
    char *p = b->start;
    pt_buf_put(b);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        *(volatile char *) p = 'x';   /* use after put */
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ok(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "ASan catches a write to a cached buffer");
    pt_buf_freelist_drain();
}
#endif

int main(void)
{
    pt_log_use_stderr = 0;
    pt_log_default->level = PT_LOG_STDERR - 1;   /* silence the double-put alert */
    subtest("classes", test_classes);
    subtest("reuse", test_reuse);
    subtest("caps", test_caps);
    subtest("ref and chain", test_ref_and_chain);
    subtest("custom free", test_custom_free);
#if defined(__SANITIZE_ADDRESS__)
    subtest("poison", test_poison);
#endif
    return done_testing();
}
