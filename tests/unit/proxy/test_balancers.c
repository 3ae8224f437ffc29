/* Unit tests for the balancers: smooth weighted round robin (balancer_rr.c
 * and the fallback pick of balancer_util.c), least_conn, ip_hash, hash,
 * consistent hash remapping and random two. Groups are built by hand the way
 * upstream_conf.c builds them; requests are fake (a pool and a connection). */
#include "../../../src/proxy/balancer_util.c"
#include "../../../src/proxy/balancer_lc.c"
#include "../../../src/proxy/balancer_hash.c"
#include "../../../src/proxy/balancer_random.c"

#include <arpa/inet.h>
#include <stdio.h>

#include "../../../src/core/time.h"
#include "tap.h"

static pt_pool_t *pool;

/* A group of n primary peers (+ nb backups) with the given weights. */
static pt_upstream_group_t *group(const int *weights, unsigned n, unsigned nb,
                                  const pt_upstream_balancer_t *b, void *bconf)
{
    pt_upstream_group_t *g = pt_pcalloc(pool, sizeof(*g));
    pt_upstream_peers_t *ps = pt_pcalloc(pool, sizeof(*ps));
    ps->peer = pt_pcalloc(pool, n * sizeof(pt_upstream_peer_t));
    ps->number = n;
    for (unsigned i = 0; i < n; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        char *name = pt_palloc(pool, 32);
        int len = snprintf(name, 32, "10.0.0.%u:80", i + 1);
        p->name.data = name;
        p->name.len = (size_t) len;
        p->weight = weights ? weights[i] : 1;
        p->max_fails = 1;
        p->fail_timeout = 10000;
        p->sockaddr.sin.sin_family = AF_INET;
    }
    if (nb) {
        pt_upstream_peers_t *bs = pt_pcalloc(pool, sizeof(*bs));
        bs->peer = pt_pcalloc(pool, nb * sizeof(pt_upstream_peer_t));
        bs->number = nb;
        for (unsigned i = 0; i < nb; i++) {
            bs->peer[i].weight = 1;
            bs->peer[i].max_fails = 1;
            bs->peer[i].fail_timeout = 10000;
            bs->peer[i].name.data = "backup";
            bs->peer[i].name.len = 6;
        }
        ps->next = bs;
    }
    ps->single = n == 1 && nb == 0;
    g->peers = ps;
    g->name.data = "g";
    g->name.len = 1;
    g->balancer = b;
    g->balancer_conf = bconf;
    b->init_group(NULL, g);
    return g;
}

static pt_conn_t conn;
static pt_http_request_t req;

static void client(const char *ip)
{
    memset(&conn.sockaddr, 0, sizeof(conn.sockaddr));
    if (strchr(ip, ':')) {
        conn.sockaddr.sin6.sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &conn.sockaddr.sin6.sin6_addr);
    } else {
        conn.sockaddr.sin.sin_family = AF_INET;
        inet_pton(AF_INET, ip, &conn.sockaddr.sin.sin_addr);
    }
}

/* One request: init, get (returns the peer index or -1), then free with state. */
static pt_upstream_t ups;
static int start(pt_upstream_group_t *g)
{
    memset(&ups, 0, sizeof(ups));
    req.pool = pool;
    req.connection = &conn;
    ups.r = &req;
    ups.group = g;
    if (g->balancer->init_peer(&req, &ups) != PT_OK)
        return -2;
    if (g->balancer->get_peer(&ups) != PT_OK)
        return -1;
    pt_upstream_peers_t *ps = g->peers;
    for (pt_upstream_peers_t *s = ps; s; s = s->next)
        if (ups.peer >= s->peer && ups.peer < s->peer + s->number)
            return (int) (ups.peer - s->peer) + (s == ps ? 0 : 100);
    return -3;
}

static int pick(pt_upstream_group_t *g)
{
    int i = start(g);
    if (i >= 0)
        g->balancer->free_peer(&ups, PT_UPSTREAM_PEER_OK);
    return i;
}

static void test_rr(void)
{
    int w[] = { 3, 2, 1 };
    pt_upstream_group_t *g = group(w, 3, 0, &pt_upstream_balancer_rr, NULL);
    char seq[64] = "";
    for (int i = 0; i < 12; i++) {
        int k = pick(g);
        seq[i] = (char) ('a' + k);
    }
    /* smooth: a b a c b a, repeated */
    is_str(seq, "abacbaabacba", "smooth WRR 3:2:1 interleaves as a b a c b a");
    int cnt[3] = { 0, 0, 0 };
    for (int i = 0; i < 600; i++)
        cnt[pick(g)]++;
    ok(cnt[0] == 300 && cnt[1] == 200 && cnt[2] == 100, "600 picks give exactly 300/200/100 (%d/%d/%d)",
       cnt[0], cnt[1], cnt[2]);

    /* the fallback WRR of balancer_util.c gives the same sequence */
    pt_upstream_group_t *g2 = group(w, 3, 0, &pt_upstream_balancer_lc, NULL);
    pt_lb_state_t s;
    char seq2[16] = "";
    for (int i = 0; i < 6; i++) {
        memset(&s, 0, sizeof(s));
        seq2[i] = (char) ('a' + pt__lb_pick_wrr(&s, g2->peers, 0));
    }
    is_str(seq2, "abacba", "util WRR pick: a b a c b a");
}

static void test_lc(void)
{
    pt_upstream_group_t *g = group(NULL, 3, 0, &pt_upstream_balancer_lc, NULL);
    /* idle group: round robin among the ties */
    char seq[8] = "";
    for (int i = 0; i < 6; i++)
        seq[i] = (char) ('a' + pick(g));
    is_str(seq, "abcabc", "idle least_conn is round robin");

    /* a busy peer is avoided */
    g->peers->peer[0].conns = 5;
    g->peers->peer[1].conns = 1;
    g->peers->peer[2].conns = 0;
    is_int(pick(g), 2, "the idle peer wins");
    g->peers->peer[2].conns = 2;
    is_int(pick(g), 1, "then the least loaded");

    /* weighted: 4 conns on weight 4 beats 2 conns on weight 1 */
    int w[] = { 4, 1 };
    pt_upstream_group_t *g2 = group(w, 2, 0, &pt_upstream_balancer_lc, NULL);
    g2->peers->peer[0].conns = 4;
    g2->peers->peer[1].conns = 2;
    is_int(pick(g2), 0, "weighted least_conn (4/4 < 2/1)");

    /* held connections: conns grow while requests are open */
    pt_upstream_group_t *g3 = group(NULL, 3, 0, &pt_upstream_balancer_lc, NULL);
    int seen[3] = { 0, 0, 0 };
    pt_upstream_t held[3];
    for (int i = 0; i < 3; i++) {
        seen[start(g3)]++;
        held[i] = ups;
    }
    ok(seen[0] == 1 && seen[1] == 1 && seen[2] == 1, "three open requests spread over three peers");
    for (int i = 0; i < 3; i++)
        g3->balancer->free_peer(&held[i], PT_UPSTREAM_PEER_OK);
    ok(g3->peers->peer[0].conns == 0 && g3->peers->peer[2].conns == 0, "conns back to 0");

    /* backup only when every primary is down */
    pt_upstream_group_t *g4 = group(NULL, 2, 1, &pt_upstream_balancer_lc, NULL);
    is_int(pick(g4), 0, "primary first");
    g4->peers->peer[0].down = 1;
    is_int(pick(g4), 1, "other primary");
    g4->peers->peer[1].down = 1;
    is_int(pick(g4), 100, "backup when all primaries are down");
    g4->peers->peer[1].down = 0;
    is_int(pick(g4), 1, "primary again when it returns");
}

static void test_passive(void)
{
    pt_upstream_group_t *g = group(NULL, 2, 0, &pt_upstream_balancer_lc, NULL);
    pt_current_msec = 100000;
    g->peers->peer[0].max_fails = 2;
    g->peers->peer[0].fail_timeout = 5000;
    int i = start(g);
    is_int(i, 0, "first try a");
    g->balancer->free_peer(&ups, PT_UPSTREAM_PEER_FAILED);
    is_int(g->balancer->get_peer(&ups), PT_OK, "next peer for the same request");
    is_int((int) (ups.peer - g->peers->peer), 1, "next is b");
    g->balancer->free_peer(&ups, PT_UPSTREAM_PEER_OK);
    ok(pt__upstream_peer_is_usable(&g->peers->peer[0], pt_current_msec), "1 fail < max_fails=2");
    start(g);
    /* force a to be picked again */
    if (ups.peer != &g->peers->peer[0]) {
        g->balancer->free_peer(&ups, PT_UPSTREAM_PEER_OK);
        start(g);
    }
    is_int((int) (ups.peer - g->peers->peer), 0, "a picked");
    g->balancer->free_peer(&ups, PT_UPSTREAM_PEER_FAILED);
    ok(!pt__upstream_peer_is_usable(&g->peers->peer[0], pt_current_msec), "2 fails: a unavailable");
    int only_b = 1;
    for (int k = 0; k < 10; k++)
        only_b &= pick(g) == 1;
    ok(only_b, "within fail_timeout only b is used");
    pt_current_msec += 5001;
    int first = -1, second = -1;
    /* after fail_timeout: exactly one probe goes to a; while it is in flight
     * a is not chosen again */
    for (int k = 0; k < 4 && first != 0; k++) {
        first = start(g);
        if (first != 0)
            g->balancer->free_peer(&ups, PT_UPSTREAM_PEER_OK);
    }
    is_int(first, 0, "probe request goes to a after fail_timeout");
    pt_upstream_t probe = ups;
    int again = 0;
    for (int k = 0; k < 6; k++)
        again |= pick(g) == 0;
    ok(!again, "no second request to a while the probe is out");
    (void) second;
    g->balancer->free_peer(&probe, PT_UPSTREAM_PEER_OK);
    ok(g->peers->peer[0].fails == 0, "successful probe resets fails");
    int seen_a = 0;
    for (int k = 0; k < 4; k++)
        seen_a |= pick(g) == 0;
    ok(seen_a, "a back in rotation");

    /* every peer down: PT_BUSY and the failures are forgotten */
    pt_upstream_group_t *g2 = group(NULL, 2, 0, &pt_upstream_balancer_lc, NULL);
    g2->peers->peer[0].fails = 1;
    g2->peers->peer[0].checked = pt_current_msec;
    g2->peers->peer[1].fails = 1;
    g2->peers->peer[1].checked = pt_current_msec;
    is_int(start(g2), -1, "no live upstreams");
    ok(g2->peers->peer[0].fails == 0, "failures forgotten for the next request");
}

static void test_ip_hash(void)
{
    pt_upstream_group_t *g = group(NULL, 3, 0, &pt_upstream_balancer_ip_hash, NULL);
    client("192.168.7.10");
    int a = pick(g);
    int same = 1;
    for (int i = 0; i < 20; i++)
        same &= pick(g) == a;
    ok(same, "same client, same peer");
    client("192.168.7.200");
    is_int(pick(g), a, "same /24, same peer (first three octets)");
    int spread[3] = { 0, 0, 0 };
    for (int i = 0; i < 300; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 7, i % 211);
        client(ip);
        spread[pick(g)]++;
    }
    ok(spread[0] > 50 && spread[1] > 50 && spread[2] > 50, "clients spread %d/%d/%d",
       spread[0], spread[1], spread[2]);
    client("2001:db8::1");
    int v6 = pick(g);
    ok(v6 >= 0 && pick(g) == v6, "IPv6 client sticks");
    client("::ffff:192.168.7.99");
    is_int(pick(g), a, "IPv4-mapped IPv6 hashes as its IPv4 /24");
    /* the sticky peer is down: another one, always the same */
    client("192.168.7.10");
    g->peers->peer[a].down = 1;
    int b = pick(g);
    ok(b >= 0 && b != a && pick(g) == b, "down peer: a stable replacement");
    g->peers->peer[a].down = 0;
    is_int(pick(g), a, "back to the original peer");
}

static void test_hash(void)
{
    pt_lb_hash_conf_t *hc = pt_pcalloc(pool, sizeof(*hc));
    hc->key.is_literal = 1;
    hc->key.source.data = "user42";
    hc->key.source.len = 6;
    pt_upstream_group_t *g = group(NULL, 4, 0, &pt_upstream_balancer_hash, hc);
    int a = pick(g);
    int same = 1;
    for (int i = 0; i < 10; i++)
        same &= pick(g) == a;
    ok(a >= 0 && same, "hash key sticks");

    pt_lb_hash_conf_t *cc = pt_pcalloc(pool, sizeof(*cc));
    *cc = *hc;
    cc->consistent = 1;
    pt_upstream_group_t *gc = group(NULL, 4, 0, &pt_upstream_balancer_hash, cc);
    is_int(cc->ring.number, 4 * 160, "160 points per weight unit");
    int c = pick(gc);
    ok(c >= 0 && pick(gc) == c, "consistent key sticks");

    /* remapping: 10,000 keys over N=4, then N=5 */
    pt_upstream_group_t *g5 = group(NULL, 5, 0, &pt_upstream_balancer_hash, NULL);
    pt_lb_ring_t r4 = { 0 }, r5 = { 0 };
    pt__lb_ring_build(&r4, gc->peers);
    pt__lb_ring_build(&r5, g5->peers);
    int moved = 0, moved_to_new = 0, count5[5] = { 0 };
    for (int i = 0; i < 10000; i++) {
        char key[32];
        int len = snprintf(key, sizeof(key), "/item/%d", i);
        uint32_t h = pt__lb_ring_key(key, (size_t) len);
        unsigned p4 = r4.points[pt__lb_ring_find(&r4, h)].peer;
        unsigned p5 = r5.points[pt__lb_ring_find(&r5, h)].peer;
        count5[p5]++;
        if (p4 != p5) {
            moved++;
            moved_to_new += p5 == 4;
        }
    }
    double ratio = moved / 10000.0;
    ok(ratio > 0.13 && ratio < 0.27, "adding a 5th server moves %.3f of the keys (1/5 = 0.2)", ratio);
    is_int(moved, moved_to_new, "every moved key moved to the new server");
    ok(count5[0] > 1400 && count5[4] > 1400, "balanced: %d %d %d %d %d", count5[0], count5[1],
       count5[2], count5[3], count5[4]);

    /* non-consistent hash for comparison remaps most keys */
    int moved_plain = 0;
    for (int i = 0; i < 10000; i++) {
        char key[32];
        int len = snprintf(key, sizeof(key), "/item/%d", i);
        uint32_t h = pt__lb_hash_key(key, (size_t) len);
        moved_plain += (h % 4) != (h % 5);
    }
    ok(moved_plain > 5000, "plain hash moves %d of 10000", moved_plain);

    /* consistent: a down peer's keys go to the next point, others stay */
    int before[200];
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        cc->key.source.data = pt_pstrndup(pool, key, strlen(key));
        cc->key.source.len = strlen(key);
        before[i] = pick(gc);
    }
    gc->peers->peer[1].down = 1;
    int stayed = 1, avoided = 1;
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        cc->key.source.data = pt_pstrndup(pool, key, strlen(key));
        cc->key.source.len = strlen(key);
        int now = pick(gc);
        avoided &= now != 1;
        if (before[i] != 1)
            stayed &= now == before[i];
    }
    ok(avoided && stayed, "down peer: only its keys move");
    free(r4.points);
    free(r5.points);
}

static void test_random(void)
{
    pt__lb_random_seed(12345);
    pt_lb_random_conf_t plain = { 0 }, two = { .two = 1 };
    int w[] = { 1, 1, 2 };
    pt_upstream_group_t *g = group(w, 3, 0, &pt_upstream_balancer_random, &plain);
    int cnt[3] = { 0 };
    for (int i = 0; i < 4000; i++)
        cnt[pick(g)]++;
    ok(cnt[2] > 1800 && cnt[2] < 2200 && cnt[0] > 800 && cnt[1] > 800, "weighted random %d/%d/%d",
       cnt[0], cnt[1], cnt[2]);

    pt_upstream_group_t *g2 = group(NULL, 3, 0, &pt_upstream_balancer_random, &two);
    g2->peers->peer[0].conns = 10;
    int c0 = 0;
    for (int i = 0; i < 1000; i++)
        c0 += pick(g2) == 0;
    is_int(c0, 0, "random two never picks the busiest of three");
    g2->peers->peer[0].conns = 0;
    g2->peers->peer[1].conns = 3;
    g2->peers->peer[2].conns = 3;
    int c0b = 0;
    for (int i = 0; i < 300; i++)
        c0b += pick(g2) == 0;
    ok(c0b > 150, "random two prefers the idle peer (%d/300)", c0b);
    /* drawn pair is distinct: with two peers, the less loaded always wins */
    pt_upstream_group_t *g3 = group(NULL, 2, 0, &pt_upstream_balancer_random, &two);
    g3->peers->peer[0].conns = 1;
    int c1 = 0;
    for (int i = 0; i < 100; i++)
        c1 += pick(g3) == 1;
    is_int(c1, 100, "random two of two: always the less loaded");
}

static void test_slow_start(void)
{
    pt_upstream_peer_t p = { .weight = 10, .effective_weight = 10, .slow_start = 10000 };
    p.start_time = 1000;
    is_int(pt__upstream_peer_weight(&p, 1000), 1, "slow_start: one unit at the start");
    is_int(pt__upstream_peer_weight(&p, 6000), 5 * PT_LB_WEIGHT_SCALE, "half way: half the weight");
    is_int(pt__upstream_peer_weight(&p, 11000), 10 * PT_LB_WEIGHT_SCALE, "after slow_start: full weight");
    pt_upstream_peer_t q = { .weight = 1, .effective_weight = 1, .slow_start = 10000, .start_time = 1000 };
    ok(pt__upstream_peer_weight(&q, 2000) < PT_LB_WEIGHT_SCALE, "weight 1 ramps too (%d)",
       pt__upstream_peer_weight(&q, 2000));
}

int main(void)
{
    pool = pt_pool_create(4096);
    pt_current_msec = 1000;
    subtest("rr", test_rr);
    subtest("least_conn", test_lc);
    subtest("passive", test_passive);
    subtest("ip_hash", test_ip_hash);
    subtest("hash", test_hash);
    subtest("random", test_random);
    subtest("slow_start", test_slow_start);
    return done_testing();
}
