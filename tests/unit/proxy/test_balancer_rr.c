/* balancer_rr.c: the smooth weighted round robin sequence (3:2:1 gives
 * a b a c b a and repeats), passive health (max_fails / fail_timeout),
 * backups, tries. */
#include "../../../src/proxy/balancer_rr.c"

#include <stdio.h>
#include "tap.h"

static pt_pool_t *pool;

static pt_upstream_group_t *mk_group(const int *w, unsigned n, unsigned nbackup)
{
    pt_upstream_group_t *g = pt_pcalloc(pool, sizeof(*g));
    pt_upstream_peers_t *ps = pt_pcalloc(pool, sizeof(*ps));
    ps->peer = pt_pcalloc(pool, n * sizeof(pt_upstream_peer_t));
    ps->number = n;
    for (unsigned i = 0; i < n; i++) {
        ps->peer[i].weight = w[i];
        ps->peer[i].max_fails = 1;
        ps->peer[i].fail_timeout = 10000;
        ps->peer[i].name.data = pt_psprintf(pool, "%c", 'a' + i);
        ps->peer[i].name.len = 1;
    }
    if (nbackup) {
        pt_upstream_peers_t *b = pt_pcalloc(pool, sizeof(*b));
        b->peer = pt_pcalloc(pool, nbackup * sizeof(pt_upstream_peer_t));
        b->number = nbackup;
        for (unsigned i = 0; i < nbackup; i++) {
            b->peer[i].weight = 1;
            b->peer[i].max_fails = 1;
            b->peer[i].fail_timeout = 10000;
            b->peer[i].name.data = "z";
            b->peer[i].name.len = 1;
        }
        ps->next = b;
    }
    ps->single = n == 1 && nbackup == 0;
    g->peers = ps;
    g->balancer = &pt_upstream_balancer_rr;
    rr_init_group(NULL, g);
    return g;
}

static pt_http_request_t req;

/* One request's pick; state is OK. Returns the peer's letter. */
static char pick_one(pt_upstream_group_t *g, int fail)
{
    pt_upstream_t u;
    memset(&u, 0, sizeof(u));
    u.group = g;
    if (rr_init_peer(&req, &u) != PT_OK)
        return '?';
    if (rr_get_peer(&u) != PT_OK)
        return '-';
    char c = u.peer->name.data[0];
    rr_free_peer(&u, fail ? PT_UPSTREAM_PEER_FAILED : PT_UPSTREAM_PEER_OK);
    return c;
}

static void test_sequence(void)
{
    int w[] = { 3, 2, 1 };
    pt_upstream_group_t *g = mk_group(w, 3, 0);
    char seq[19] = { 0 };
    for (int i = 0; i < 18; i++)
        seq[i] = pick_one(g, 0);
    is_str(seq, "abacbaabacbaabacba", "3:2:1 is a b a c b a, repeating");

    int w2[] = { 1, 1, 1 };
    g = mk_group(w2, 3, 0);
    char s2[7] = { 0 };
    for (int i = 0; i < 6; i++)
        s2[i] = pick_one(g, 0);
    is_str(s2, "abcabc", "equal weights: plain round robin");

    int w3[] = { 5, 1, 1 };
    g = mk_group(w3, 3, 0);
    char s3[8] = { 0 };
    for (int i = 0; i < 7; i++)
        s3[i] = pick_one(g, 0);
    is_str(s3, "aabacaa", "5:1:1 spreads the heavy peer");
}

static void test_passive_health(void)
{
    int w[] = { 1, 1 };
    pt_upstream_group_t *g = mk_group(w, 2, 0);
    pt_current_msec = 1000000;
    is_int(pick_one(g, 1), 'a', "a picked and fails");
    char s[5] = { 0 };
    for (int i = 0; i < 4; i++)
        s[i] = pick_one(g, 0);
    is_str(s, "bbbb", "a is out for fail_timeout");
    pt_current_msec += 10001;
    int seen_a = 0;
    for (int i = 0; i < 4; i++)
        seen_a |= pick_one(g, 0) == 'a';
    ok(seen_a, "a comes back after fail_timeout");
}

static void test_tries_and_backup(void)
{
    int w[] = { 1, 1 };
    pt_upstream_group_t *g = mk_group(w, 2, 1);
    pt_upstream_t u;
    memset(&u, 0, sizeof(u));
    u.group = g;
    rr_init_peer(&req, &u);
    is_int(u.tries, 3, "tries = primary + backup peers (nginx)");
    char got[4] = { 0 };
    for (int i = 0; i < 3; i++) {
        if (rr_get_peer(&u) != PT_OK) {
            got[i] = '-';
            break;
        }
        got[i] = u.peer->name.data[0];
        rr_free_peer(&u, PT_UPSTREAM_PEER_FAILED);
    }
    ok(got[0] != got[1] && got[0] != 'z' && got[1] != 'z', "both primaries tried once (%s)", got);
    is_int(got[2], 'z', "then the backup");
    is_int(rr_get_peer(&u), PT_BUSY, "then no live upstreams");

    int w1[] = { 1 };
    g = mk_group(w1, 1, 0);
    pt_current_msec += 1;
    is_int(pick_one(g, 1), 'a', "single peer fails");
    is_int(pick_one(g, 0), 'a', "single peer is never marked down");
}

int main(void)
{
    pool = pt_pool_create(4096);
    req.pool = pool;
    pt_current_msec = 1000;
    subtest("sequence", test_sequence);
    subtest("passive health", test_passive_health);
    subtest("tries and backup", test_tries_and_backup);
    pt_pool_destroy(pool);
    return done_testing();
}
