/* Sizes and time intervals in nginx's notation. Every parser here is total:
 * it accepts exactly the documented syntax and answers -1 for anything else,
 * including values that would overflow int64_t. */
#include "conf.h"

#include <stdint.h>

/* Multiplies and adds without overflow: *acc = *acc * mul + add.
 * Returns 0, or -1 past INT64_MAX. */
static int mul_add(int64_t *acc, int64_t mul, int64_t add)
{
    if (*acc > (INT64_MAX - add) / mul)
        return -1;
    *acc = *acc * mul + add;
    return 0;
}

int64_t pt_conf_parse_size(const pt_str_t *s)
{
    int64_t scale = 1;
    size_t len = s->len;

    if (len == 0)
        return -1;
    switch (s->data[len - 1]) {
    case 'k':
    case 'K':
        scale = 1024;
        len--;
        break;
    case 'm':
    case 'M':
        scale = 1024 * 1024;
        len--;
        break;
    case 'g':
    case 'G':
        scale = 1024 * 1024 * 1024;
        len--;
        break;
    default:
        break;
    }
    int64_t v = pt_atoi64(s->data, len);   /* -1 for empty or non-digits */
    if (v < 0 || v > INT64_MAX / scale)
        return -1;
    return v * scale;
}

/* Units in the order they must appear, most significant first. In
 * milliseconds mode "y" and "M" are refused, as nginx does. A blank right
 * after a number (nginx's quirk: "30 ", "1h 30 ") ends the value like "s"
 * would, after which only a bare number may follow: U_END. */
enum { U_NONE, U_YEAR, U_MONTH, U_WEEK, U_DAY, U_HOUR, U_MIN, U_SEC, U_MSEC, U_END };

/* Parses "1h 30m", "1h30m", "500ms", "30" (a bare number is seconds). Returns
 * milliseconds (is_sec = 0) or seconds (is_sec = 1), -1 when invalid. */
static int64_t parse_time(const pt_str_t *s, int is_sec)
{
    const char *p = s->data, *end = s->data + s->len;
    int64_t total = 0, value = 0;
    int step = is_sec ? U_NONE : U_MONTH;   /* units must come after `step` */
    int digits = 0, any = 0;

    while (p < end) {
        if (*p >= '0' && *p <= '9') {
            if (mul_add(&value, 10, *p - '0') != 0)
                return -1;
            p++;
            digits = 1;
            any = 1;
            continue;
        }

        int unit;
        int64_t sec_scale;   /* seconds per unit; 0 for ms */
        switch (*p++) {
        case 'y': unit = U_YEAR;  sec_scale = 365 * 86400; break;
        case 'M': unit = U_MONTH; sec_scale = 30 * 86400;  break;
        case 'w': unit = U_WEEK;  sec_scale = 7 * 86400;   break;
        case 'd': unit = U_DAY;   sec_scale = 86400;       break;
        case 'h': unit = U_HOUR;  sec_scale = 3600;        break;
        case 'm':
            if (p < end && *p == 's') {
                if (is_sec)
                    return -1;
                p++;
                unit = U_MSEC;
                sec_scale = 0;
            } else {
                unit = U_MIN;
                sec_scale = 60;
            }
            break;
        case 's': unit = U_SEC;   sec_scale = 1;           break;
        case ' ':
            if (step >= U_SEC)
                return -1;
            unit = U_END;
            sec_scale = 1;
            break;
        default:
            return -1;
        }
        if (unit <= step)
            return -1;
        step = unit;

        int64_t scale = sec_scale == 0 ? 1 : is_sec ? sec_scale : sec_scale * 1000;
        if (value > INT64_MAX / scale)
            return -1;
        value *= scale;
        if (total > INT64_MAX - value)
            return -1;
        total += value;
        value = 0;
        digits = 0;
        while (p < end && *p == ' ')
            p++;
    }
    if (!any)
        return -1;

    /* a trailing number without a unit counts as seconds */
    if (digits) {
        if (!is_sec) {
            if (value > INT64_MAX / 1000)
                return -1;
            value *= 1000;
        }
        if (total > INT64_MAX - value)
            return -1;
        total += value;
    }
    return total;
}

int64_t pt_conf_parse_msec(const pt_str_t *s)
{
    return parse_time(s, 0);
}

int64_t pt_conf_parse_sec(const pt_str_t *s)
{
    return parse_time(s, 1);
}
