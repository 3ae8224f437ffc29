/* Cached time and HTTP dates.
 *
 * pt_time_update() reads the two clocks once per loop iteration; the date
 * strings are rebuilt only when the wall-clock second changes, so the cost per
 * request is a few loads. Calendar arithmetic is done here (days <-> civil
 * date) instead of gmtime_r(), which is both slower and locale/tz aware. */
#include "time.h"

#include <stdio.h>
#include <string.h>

volatile int64_t pt_current_msec;
volatile int64_t pt_time_msec;
volatile time_t  pt_time_sec;

pt_str_t pt_cached_http_time;
pt_str_t pt_cached_err_log_time;
pt_str_t pt_cached_http_log_time;
pt_str_t pt_cached_iso8601;

static char http_time_buf[32];
static char err_log_time_buf[32];
static char http_log_time_buf[40];
static char iso8601_buf[40];
static time_t cached_sec = -1;

static const char wday_names[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char month_names[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Days since 1970-01-01 for a proleptic Gregorian date (month 1..12). The
 * year is shifted to start in March so that the leap day ends the year. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                  /* [0, 399] */
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *yp, int *mp, int *dp)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp0 = (5 * doy + 2) / 153;
    *dp = (int) (doy - (153 * mp0 + 2) / 5 + 1);
    *mp = (int) (mp0 < 10 ? mp0 + 3 : mp0 - 9);
    *yp = yoe + era * 400 + (*mp <= 2);
}

typedef struct {
    int64_t year;
    int     mon;    /* 1..12 */
    int     mday;
    int     hour, min, sec;
    int     wday;   /* 0 = Sunday */
} civil_t;

static void civil_from_time(int64_t t, civil_t *c)
{
    int64_t days = t / 86400, rem = t % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    civil_from_days(days, &c->year, &c->mon, &c->mday);
    c->hour = (int) (rem / 3600);
    c->min = (int) (rem / 60 % 60);
    c->sec = (int) (rem % 60);
    c->wday = (int) ((days % 7 + 11) % 7);   /* 1970-01-01 was a Thursday */
}

static char *put2(char *p, int v)
{
    p[0] = (char) ('0' + v / 10);
    p[1] = (char) ('0' + v % 10);
    return p + 2;
}

static char *put4(char *p, int64_t v)
{
    if (v < 0 || v > 9999)
        v = 0;   /* out of range for HTTP dates; never happens for real clocks */
    p[0] = (char) ('0' + v / 1000);
    p[1] = (char) ('0' + v / 100 % 10);
    p[2] = (char) ('0' + v / 10 % 10);
    p[3] = (char) ('0' + v % 10);
    return p + 4;
}

size_t pt_http_time(char *buf, time_t t)
{
    civil_t c;
    civil_from_time((int64_t) t, &c);
    char *p = buf;
    memcpy(p, wday_names[c.wday], 3);
    p[3] = ',';
    p[4] = ' ';
    p = put2(p + 5, c.mday);
    *p++ = ' ';
    memcpy(p, month_names[c.mon - 1], 3);
    p[3] = ' ';
    p = put4(p + 4, c.year);
    *p++ = ' ';
    p = put2(p, c.hour);
    *p++ = ':';
    p = put2(p, c.min);
    *p++ = ':';
    p = put2(p, c.sec);
    memcpy(p, " GMT", 5);   /* with the NUL */
    return (size_t) (p + 4 - buf);
}

/* Local time as civil fields plus the UTC offset in seconds. */
static void local_civil(time_t t, civil_t *c, long *gmtoff)
{
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL) {
        civil_from_time((int64_t) t, c);
        *gmtoff = 0;
        return;
    }
    c->year = (int64_t) tm.tm_year + 1900;
    c->mon = tm.tm_mon + 1;
    c->mday = tm.tm_mday;
    c->hour = tm.tm_hour;
    c->min = tm.tm_min;
    c->sec = tm.tm_sec;
    c->wday = tm.tm_wday;
    *gmtoff = tm.tm_gmtoff;
}

static void refresh_strings(time_t sec)
{
    civil_t c;
    long off;
    char *p;

    pt_cached_http_time.len = pt_http_time(http_time_buf, sec);
    pt_cached_http_time.data = http_time_buf;

    local_civil(sec, &c, &off);
    char sign = off < 0 ? '-' : '+';
    long aoff = off < 0 ? -off : off;
    int oh = (int) (aoff / 3600), om = (int) (aoff / 60 % 60);

    /* 2026/11/22 20:21:43 */
    p = put4(err_log_time_buf, c.year);
    *p++ = '/';
    p = put2(p, c.mon);
    *p++ = '/';
    p = put2(p, c.mday);
    *p++ = ' ';
    p = put2(p, c.hour);
    *p++ = ':';
    p = put2(p, c.min);
    *p++ = ':';
    p = put2(p, c.sec);
    *p = '\0';
    pt_cached_err_log_time.data = err_log_time_buf;
    pt_cached_err_log_time.len = (size_t) (p - err_log_time_buf);

    /* 22/Nov/2026:20:21:43 +0000 */
    p = put2(http_log_time_buf, c.mday);
    *p++ = '/';
    memcpy(p, month_names[c.mon - 1], 3);
    p += 3;
    *p++ = '/';
    p = put4(p, c.year);
    *p++ = ':';
    p = put2(p, c.hour);
    *p++ = ':';
    p = put2(p, c.min);
    *p++ = ':';
    p = put2(p, c.sec);
    *p++ = ' ';
    *p++ = sign;
    p = put2(p, oh % 100);
    p = put2(p, om);
    *p = '\0';
    pt_cached_http_log_time.data = http_log_time_buf;
    pt_cached_http_log_time.len = (size_t) (p - http_log_time_buf);

    /* 2026-11-22T20:21:43+00:00 */
    p = put4(iso8601_buf, c.year);
    *p++ = '-';
    p = put2(p, c.mon);
    *p++ = '-';
    p = put2(p, c.mday);
    *p++ = 'T';
    p = put2(p, c.hour);
    *p++ = ':';
    p = put2(p, c.min);
    *p++ = ':';
    p = put2(p, c.sec);
    *p++ = sign;
    p = put2(p, oh % 100);
    *p++ = ':';
    p = put2(p, om);
    *p = '\0';
    pt_cached_iso8601.data = iso8601_buf;
    pt_cached_iso8601.len = (size_t) (p - iso8601_buf);
}

void pt_time_init(void)
{
    tzset();
    cached_sec = -1;
    pt_time_update();
}

void pt_time_update(void)
{
    struct timespec mono, real;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &real);
    pt_current_msec = (int64_t) mono.tv_sec * 1000 + mono.tv_nsec / 1000000;
    pt_time_msec = (int64_t) real.tv_sec * 1000 + real.tv_nsec / 1000000;
    pt_time_sec = real.tv_sec;
    if (real.tv_sec != cached_sec) {
        cached_sec = real.tv_sec;
        refresh_strings(real.tv_sec);
    }
}

/* ---- parsing ---------------------------------------------------------- */

static int parse_digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int parse_month(const char *p)
{
    for (int i = 0; i < 12; i++) {
        /* month names are case-sensitive in the grammar; accept any case as
         * user agents and caches do */
        if (pt_strncasecmp(p, month_names[i], 3) == 0)
            return i + 1;
    }
    return -1;
}

static int parse_wday(const char *p, size_t len)
{
    static const char *const full[7] = { "Sunday", "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday" };
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(full[i]);
        if ((len == 3 && pt_strncasecmp(p, full[i], 3) == 0)
            || (len == n && pt_strncasecmp(p, full[i], n) == 0))
            return i;
    }
    return -1;
}

/* "HH:MM:SS" at p (8 bytes). */
static int parse_hms(const char *p, int *h, int *m, int *s)
{
    if (p[2] != ':' || p[5] != ':')
        return -1;
    *h = parse_digits(p, 2);
    *m = parse_digits(p + 3, 2);
    *s = parse_digits(p + 6, 2);
    if (*h < 0 || *m < 0 || *s < 0 || *h > 23 || *m > 59 || *s > 60)
        return -1;
    return 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

time_t pt_http_time_parse(const char *p, size_t len)
{
    int64_t year;
    int mon, mday, hour, min, sec;

    while (len && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;

    size_t i = 0;
    while (i < len && ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z'))
        i++;
    if (parse_wday(p, i) < 0 || i >= len)
        return -1;

    if (p[i] == ',' && i == 3) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        const char *s = p + 4;
        if (len != 29 || s[0] != ' ' || s[3] != ' ' || s[7] != ' ' || s[12] != ' '
            || s[21] != ' ' || memcmp(s + 22, "GMT", 3) != 0)
            return -1;
        mday = parse_digits(s + 1, 2);
        mon = parse_month(s + 4);
        year = parse_digits(s + 8, 4);
        if (parse_hms(s + 13, &hour, &min, &sec) != 0)
            return -1;
    } else if (p[i] == ',') {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        const char *s = p + i + 1;
        if (len - i - 1 != 23 || s[0] != ' ' || s[3] != '-' || s[7] != '-' || s[10] != ' '
            || s[19] != ' ' || memcmp(s + 20, "GMT", 3) != 0)
            return -1;
        mday = parse_digits(s + 1, 2);
        mon = parse_month(s + 4);
        year = parse_digits(s + 8, 2);
        if (year < 0)
            return -1;
        year += year < 70 ? 2000 : 1900;
        if (parse_hms(s + 11, &hour, &min, &sec) != 0)
            return -1;
    } else if (p[i] == ' ' && i == 3) {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        const char *s = p + 3;
        if (len != 24 || s[0] != ' ' || s[4] != ' ' || s[7] != ' ' || s[16] != ' ')
            return -1;
        mon = parse_month(s + 1);
        mday = s[5] == ' ' ? parse_digits(s + 6, 1) : parse_digits(s + 5, 2);
        if (parse_hms(s + 8, &hour, &min, &sec) != 0)
            return -1;
        year = parse_digits(s + 17, 4);
    } else {
        return -1;
    }

    if (mon < 0 || mday < 1 || year < 1970 || mday > days_in_month(year, mon))
        return -1;
    if (sec == 60)
        sec = 59;   /* a leap second maps onto the last second of the minute */
    int64_t t = days_from_civil(year, mon, mday) * 86400 + hour * 3600 + min * 60 + sec;
    if ((int64_t) (time_t) t != t)
        return -1;
    return (time_t) t;
}
