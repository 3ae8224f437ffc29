/* Pool-backed arrays. */
#include "core/array.c"

#include "tap.h"

typedef struct {
    int  a;
    char b[13];
} elt_t;

static void test_push(void)
{
    pt_pool_t *p = pt_pool_create(1024);
    pt_array_t *a = pt_array_create(p, 2, sizeof(elt_t));
    ok(a && a->nelts == 0 && a->nalloc == 2 && a->size == sizeof(elt_t), "created");
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        elt_t *e = pt_array_push(a);
        if (e == NULL || e->a != 0 || e->b[12] != 0) {
            bad++;
            continue;
        }
        e->a = i;
        memset(e->b, 'x', sizeof(e->b));
    }
    is_int(bad, 0, "1000 zeroed elements pushed");
    is_int(a->nelts, 1000, "count");
    int wrong = 0;
    for (int i = 0; i < 1000; i++)
        wrong += pt_array_at(a, elt_t, i).a != i;
    is_int(wrong, 0, "contents survive growth");

    elt_t *many = pt_array_push_n(a, 5000);
    ok(many && a->nelts == 6000 && a->nalloc >= 6000, "push_n beyond doubling");
    ok(many[4999].a == 0, "push_n zeroes");
    ok(pt_array_at(a, elt_t, 999).a == 999, "old contents kept");

    pt_array_t b;
    ok(pt_array_init(&b, p, 0, sizeof(int)) == 0 && b.nalloc == 1, "init with 0 gets 1");
    *(int *) pt_array_push(&b) = 7;
    *(int *) pt_array_push(&b) = 8;
    ok(pt_array_at(&b, int, 0) == 7 && pt_array_at(&b, int, 1) == 8, "int array");

    pt_array_t c;
    ok(pt_array_init(&c, p, SIZE_MAX / 4, 8) == -1, "init overflow refused");
    ok(pt_array_push_n(&b, SIZE_MAX) == NULL, "push_n overflow refused");
    ok(pt_array_push_n(&b, SIZE_MAX / 2) == NULL, "push_n too large refused");
    is_int(b.nelts, 2, "unchanged after refusals");
    pt_pool_destroy(p);
}

int main(void)
{
    subtest("push", test_push);
    return done_testing();
}
