/* Cached time and HTTP dates. */
#include "core/time.c"

#include <stdlib.h>

#include "tap.h"

static void test_format(void)
{
    char buf[64];
    size_t n = pt_http_time(buf, 784111777);
    is_strn(buf, n, "Sun, 06 Nov 1994 08:49:37 GMT", "RFC 9110 example");
    ok(buf[n] == '\0', "NUL-terminated");
    n = pt_http_time(buf, 0);
    is_strn(buf, n, "Thu, 01 Jan 1970 00:00:00 GMT", "epoch");
    n = pt_http_time(buf, 951782400);
    is_strn(buf, n, "Tue, 29 Feb 2000 00:00:00 GMT", "leap day 2000");
    n = pt_http_time(buf, 4133980799);
    is_strn(buf, n, "Fri, 31 Dec 2100 23:59:59 GMT", "end of 2100");
    n = pt_http_time(buf, 1795378903);
    is_strn(buf, n, "Sun, 22 Nov 2026 20:21:43 GMT", "header example");

    /* against gmtime_r + strftime over many instants */
    int bad = 0;
    srand(7);
    for (int i = 0; i < 200000; i++) {
        time_t t = (time_t) (((uint64_t) rand() << 16 ^ (uint64_t) rand()) % 8000000000ULL);
        struct tm tm;
        char want[64];
        gmtime_r(&t, &tm);
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        n = pt_http_time(buf, t);
        if (strlen(want) != n || memcmp(want, buf, n) != 0) {
            if (bad++ < 3)
                note("t=%lld got %.*s want %s", (long long) t, (int) n, buf, want);
        }
        if (pt_http_time_parse(buf, n) != t)
            bad++;
    }
    ok(bad == 0, "200000 random instants match strftime and round-trip");
}

static void test_parse(void)
{
#define P(s) pt_http_time_parse(s, sizeof(s) - 1)
    is_int(P("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777, "IMF-fixdate");
    is_int(P("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777, "RFC 850");
    is_int(P("Sun Nov  6 08:49:37 1994"), 784111777, "asctime, one-digit day");
    is_int(P("Sun Nov 16 08:49:37 1994"), 784111777 + 10 * 86400, "asctime, two-digit day");
    is_int(P("Thursday, 01-Jan-70 00:00:00 GMT"), 0, "RFC 850 year 70 -> 1970");
    is_int(P("Saturday, 01-Jan-00 00:00:00 GMT"), 946684800, "RFC 850 year 00 -> 2000");
    is_int(P("  Sun, 06 Nov 1994 08:49:37 GMT  "), 784111777, "surrounding spaces");
    is_int(P("sun, 06 nov 1994 08:49:37 GMT"), 784111777, "case-insensitive names");
    is_int(P("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400, "leap day");
    is_int(P("Mon, 29 Feb 2100 00:00:00 GMT"), -1, "no leap day in 2100");
    is_int(P("Sun, 31 Nov 1994 08:49:37 GMT"), -1, "31 November");
    is_int(P("Sun, 06 Nov 1994 24:49:37 GMT"), -1, "hour 24");
    is_int(P("Sun, 06 Nov 1994 08:60:37 GMT"), -1, "minute 60");
    is_int(P("Sun, 06 Nov 1994 08:49:37 UTC"), -1, "not GMT");
    is_int(P("Sun, 06 Nov 1994 08:49:37"), -1, "truncated");
    is_int(P("Sun, 6 Nov 1994 08:49:37 GMT"), -1, "one-digit day in IMF");
    is_int(P("Xyz, 06 Nov 1994 08:49:37 GMT"), -1, "bad weekday");
    is_int(P("Sun, 06 Nox 1994 08:49:37 GMT"), -1, "bad month");
    is_int(P("Sun, 06 Nov 1969 08:49:37 GMT"), -1, "before 1970");
    is_int(P("Sun, 06 Nov 19a4 08:49:37 GMT"), -1, "non-digit year");
    is_int(P("Sun Nov  6 08:49:37 1994 GMT"), -1, "asctime with zone");
    is_int(P("Sunday, 06-Nov-1994 08:49:37 GMT"), -1, "RFC 850 with 4-digit year");
    is_int(P(""), -1, "empty");
    is_int(P("Sun"), -1, "weekday only");
    is_int(P("Sun,"), -1, "weekday and comma");
    is_int(P("1994"), -1, "number");
    is_int(pt_http_time_parse("Sun, 06 Nov 1994 08:49:37 GMTXXXX", 29), 784111777,
           "length bounds the input");
#undef P
}

static void test_cache(void)
{
    setenv("TZ", "UTC", 1);
    pt_time_init();
    ok(pt_current_msec > 0, "monotonic msec set");
    ok(pt_time_sec > 1600000000, "wall clock set");
    ok(pt_time_msec / 1000 == (int64_t) pt_time_sec, "msec and sec agree");
    is_int(pt_cached_http_time.len, 29, "http time length");
    is_int(pt_cached_err_log_time.len, 19, "err log time length");
    is_int(pt_cached_http_log_time.len, 26, "http log time length");
    is_int(pt_cached_iso8601.len, 25, "iso8601 length");
    is_int(pt_http_time_parse(pt_cached_http_time.data, pt_cached_http_time.len),
           pt_time_sec, "cached http time parses back");

    struct tm tm;
    time_t t = pt_time_sec;
    char want[64];
    localtime_r(&t, &tm);
    strftime(want, sizeof(want), "%Y/%m/%d %H:%M:%S", &tm);
    is_strn(pt_cached_err_log_time.data, pt_cached_err_log_time.len, want, "err log time");
    strftime(want, sizeof(want), "%d/%b/%Y:%H:%M:%S +0000", &tm);
    is_strn(pt_cached_http_log_time.data, pt_cached_http_log_time.len, want, "http log time");
    strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
    is_strn(pt_cached_iso8601.data, pt_cached_iso8601.len, want, "iso8601");

    /* a zone with a negative, non-whole-hour offset */
    refresh_strings(784111777);
    setenv("TZ", "XST+03:30", 1);
    tzset();
    refresh_strings(784111777);
    is_strn(pt_cached_http_log_time.data, pt_cached_http_log_time.len,
            "06/Nov/1994:05:19:37 -0330", "http log time with offset");
    is_strn(pt_cached_iso8601.data, pt_cached_iso8601.len,
            "1994-11-06T05:19:37-03:30", "iso8601 with offset");
    is_strn(pt_cached_err_log_time.data, pt_cached_err_log_time.len,
            "1994/11/06 05:19:37", "err log time is local");
    is_strn(pt_cached_http_time.data, pt_cached_http_time.len,
            "Sun, 06 Nov 1994 08:49:37 GMT", "http time stays GMT");
    setenv("TZ", "UTC", 1);
    tzset();

    int64_t m0 = pt_current_msec;
    struct timespec ts = { 0, 20 * 1000000 };
    nanosleep(&ts, NULL);
    pt_time_update();
    ok(pt_current_msec - m0 >= 19, "monotonic time advances");
}

int main(void)
{
    subtest("format", test_format);
    subtest("parse", test_parse);
    subtest("cache", test_cache);
    return done_testing();
}
