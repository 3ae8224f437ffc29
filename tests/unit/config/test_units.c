/* Sizes and time intervals: nginx's syntax, and -1 for anything else. */
#include "tap.h"
#include "config/conf.h"

#include <stdint.h>

static int64_t size_of(const char *s)
{
    pt_str_t v = { strlen(s), (char *) s };
    return pt_conf_parse_size(&v);
}

static int64_t msec_of(const char *s)
{
    pt_str_t v = { strlen(s), (char *) s };
    return pt_conf_parse_msec(&v);
}

static int64_t sec_of(const char *s)
{
    pt_str_t v = { strlen(s), (char *) s };
    return pt_conf_parse_sec(&v);
}

static void test_size(void)
{
    static const struct { const char *in; int64_t want; } cases[] = {
        { "0", 0 }, { "1024", 1024 }, { "16k", 16384 }, { "16K", 16384 },
        { "10m", 10485760 }, { "10M", 10485760 }, { "1g", 1073741824 }, { "2G", 2147483648LL },
        { "9223372036854775807", INT64_MAX }, { "8589934591g", 8589934591LL * 1073741824LL },
        { "", -1 }, { "k", -1 }, { "-1", -1 }, { "1.5k", -1 }, { "1kb", -1 }, { " 1", -1 },
        { "1 ", -1 }, { "10t", -1 }, { "9223372036854775808", -1 }, { "8589934592g", -1 },
        { "9007199254740992k", -1 }, { "0x10", -1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "size \"%s\"", cases[i].in);
        is_int(size_of(cases[i].in), cases[i].want, name);
    }
}

static void test_msec(void)
{
    static const struct { const char *in; int64_t want; } cases[] = {
        { "0", 0 }, { "30", 30000 }, { "500ms", 500 }, { "10s", 10000 }, { "1m", 60000 },
        { "1h", 3600000 }, { "1d", 86400000 }, { "1w", 604800000 },
        { "1h 30m", 5400000 }, { "1h30m", 5400000 }, { "90m", 5400000 }, { "5400s", 5400000 },
        { "1h  30", 3630000 }, { "1m 30s 500ms", 90500 }, { "2s500ms", 2500 },
        { "1hms", 3600000 },   /* units without digits add nothing, as nginx */
        { "", -1 }, { "s", -1 }, { "ms", -1 }, { "1M", -1 }, { "1y", -1 }, /* too coarse for ms */
        { "30m 1h", -1 }, { "1s 1s", -1 }, { "1x", -1 }, { "1 s", -1 },
        { "-5s", -1 }, { "1.5s", -1 }, { "1ms 1s", -1 },
        /* a blank after a number ends it as seconds; then only a bare number
         * may follow (checked against nginx 1.22) */
        { "30 ", 30000 }, { " 30", 30000 }, { "1h 30 ", 3630000 }, { "1 1", 2000 },
        { "1  1", 2000 }, { "1s  ", 1000 }, { "1m  1s", 61000 }, { "1m 1", 61000 },
        { "1 1s", -1 }, { "1 500ms", -1 }, { "1 1 1", -1 }, { "1s 5 ", -1 }, { " ", -1 },
        { "  ", -1 }, { "1 h", -1 }, { " 1m", -1 },
        { "9223372036854775807ms", INT64_MAX }, { "9223372036854775808ms", -1 },
        { "9223372036854775s", 9223372036854775000LL }, { "9223372036854776s", -1 }, { "9223372036854775807", -1 },
        { "106751991167d", 9223372036828800000LL }, { "106751991168d", -1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "msec \"%s\"", cases[i].in);
        is_int(msec_of(cases[i].in), cases[i].want, name);
    }
}

static void test_sec(void)
{
    static const struct { const char *in; int64_t want; } cases[] = {
        { "0", 0 }, { "30", 30 }, { "10s", 10 }, { "1m", 60 }, { "1h", 3600 }, { "1d", 86400 },
        { "1w", 604800 }, { "1M", 2592000 }, { "1y", 31536000 }, { "1y 1M 1w 1d 1h 1m 1s",
          31536000 + 2592000 + 604800 + 86400 + 3600 + 60 + 1 },
        { "1h 30", 3630 }, { "2h30m", 9000 }, { "30 ", 30 }, { "1 1", 2 }, { "1 1s", -1 },
        { "500ms", -1 }, { "1s500ms", -1 }, { "", -1 }, { "1M 1y", -1 }, { "abc", -1 },
        { "9223372036854775807", INT64_MAX }, { "9223372036854775808", -1 },
        { "292471208678y", -1 }, { "1y 9223372036854775807", -1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "sec \"%s\"", cases[i].in);
        is_int(sec_of(cases[i].in), cases[i].want, name);
    }
}

int main(void)
{
    subtest("size", test_size);
    subtest("msec", test_msec);
    subtest("sec", test_sec);
    return done_testing();
}
