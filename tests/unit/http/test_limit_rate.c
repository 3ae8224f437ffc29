/* Unit tests for src/http/limit_rate.c: the budget the response writers ask
 * before each write (limit_rate_after, pace, head start, minimum slice,
 * delays) and the iovec trimming. The clock is pt_current_msec, set here. */
#include <string.h>

#include "core/time.h"
#include "http/limit_rate.h"
#include "tap.h"

static pt_http_request_t req(int64_t rate, int64_t after)
{
    pt_http_request_t r;
    memset(&r, 0, sizeof(r));
    r.limit_rate = rate;
    r.limit_rate_set = 1;
    r.limit_rate_after = after;
    r.limit_rate_after_set = 1;
    return r;
}

static void test_budget(void)
{
    int64_t delay = -1;
    pt_http_request_t r = req(0, 0);
    pt_current_msec = 1000000;

    ok(!pt_http_limit_rate_active(&r), "rate 0: writers skip the check");
    is_int(pt_http_limit_rate_allow(&r, 5000, &delay), 5000, "rate 0: everything");

    r = req(1000, 0);
    ok(pt_http_limit_rate_active(&r), "rate set: writers ask");
    /* head start 100 ms = 100 bytes; the slice is 512 bytes: wait */
    is_int(pt_http_limit_rate_allow(&r, 4000, &delay), 0, "1000 B/s: nothing yet");
    is_int(delay, 413, "waits until 512 bytes may go");
    pt_current_msec += 412;
    is_int(pt_http_limit_rate_allow(&r, 4000, &delay), 512, "after the wait: one slice");
    r.bytes_sent = 512;
    is_int(pt_http_limit_rate_allow(&r, 4000, &delay), 0, "then nothing");
    ok(delay >= 500 && delay <= 520, "next slice in ~half a second (%lld)", (long long) delay);
    pt_current_msec += 10000;
    is_int(pt_http_limit_rate_allow(&r, 4000, &delay), 4000, "a stall lets the writes catch up");
    is_int(pt_http_limit_rate_allow(&r, 100, &delay), 100, "less than a slice when that is all");

    /* limit_rate_after: free bytes first, then the pace */
    r = req(1 << 20, 512 * 1024);
    pt_current_msec = 2000000;
    is_int(pt_http_limit_rate_allow(&r, 300 * 1024, &delay), 300 * 1024, "below limit_rate_after");
    r.bytes_sent = 512 * 1024;
    size_t a = pt_http_limit_rate_allow(&r, 1 << 20, &delay);
    ok(a == (size_t) ((1 << 20) / 10), "after it: the 100 ms head start (%zu)", a);
    r.bytes_sent += (int64_t) a;
    is_int(pt_http_limit_rate_allow(&r, 1 << 20, &delay), 0, "then pace");
    ok(delay >= 10 && delay <= 12, "1 MiB/s: a 10 ms slice (%lld)", (long long) delay);
    pt_current_msec += 500;
    a = pt_http_limit_rate_allow(&r, 1 << 20, &delay);
    ok(a >= 520000 && a <= 530000, "500 ms later: half a MiB (%zu)", a);

    /* tiny rates: one second's worth at a time */
    r = req(100, 0);
    pt_current_msec = 3000000;
    is_int(pt_http_limit_rate_allow(&r, 1000, &delay), 0, "100 B/s: wait");
    ok(delay >= 900 && delay <= 1000, "for a second's worth (%lld)", (long long) delay);

    /* `set $limit_rate` arrives before the first write: not re-read */
    r = req(0, 0);
    r.limit_rate_set = 0;
    r.limit_rate = 7;          /* unset: the first call evaluates the conf */
    is_int(pt_http_limit_rate_allow(&r, 10, &delay), 10, "no location: unlimited");
    ok(r.limit_rate_set && r.limit_rate == 0, "evaluated once");
}

static void test_iov(void)
{
    char a[600], b[600], c[600];
    struct iovec iov[3] = { { a, 600 }, { b, 600 }, { c, 600 } };
    int n = 3;
    int64_t delay;
    pt_http_request_t r = req(10000, 0);  /* head start: 1000 bytes */
    pt_current_msec = 4000000;
    is_int(pt_http_limit_rate_iov(&r, iov, &n, 1800, &delay), 1000, "iov: 1000 of 1800 bytes");
    ok(n == 2 && iov[0].iov_len == 600 && iov[1].iov_len == 400, "iov trimmed to 600 + 400");
    n = 3;
    iov[1].iov_len = 600;
    r.bytes_sent = 1000;
    is_int(pt_http_limit_rate_iov(&r, iov, &n, 1800, &delay), 0, "iov: wait");
    ok(n == 3 && iov[2].iov_len == 600, "iov left alone when waiting");
}

int main(void)
{
    subtest("budget", test_budget);
    subtest("iov", test_iov);
    return done_testing();
}
