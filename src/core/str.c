/* Counted-string helpers. */
#include "str.h"

#include <stdint.h>

int pt_strncasecmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = pt_tolower((unsigned char) a[i]);
        unsigned char cb = pt_tolower((unsigned char) b[i]);
        if (ca != cb)
            return ca - cb;
    }
    return 0;
}

int pt_str_caseeq(const pt_str_t *a, const pt_str_t *b)
{
    return a->len == b->len && pt_strncasecmp(a->data, b->data, a->len) == 0;
}

void pt_strlow(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char) pt_tolower((unsigned char) src[i]);
}

int64_t pt_atoi64(const char *p, size_t len)
{
    int64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v > (INT64_MAX - (p[i] - '0')) / 10)
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int64_t pt_hextoi64(const char *p, size_t len)
{
    int64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int d;
        char ch = p[i];
        if (ch >= '0' && ch <= '9')
            d = ch - '0';
        else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
            d = (ch | 0x20) - 'a' + 10;
        else
            return -1;
        if (v > (INT64_MAX - d) / 16)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

char *pt_strnstr(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0)
        return (char *) hay;
    if (hlen < nlen)
        return NULL;
    for (size_t i = 0; i + nlen <= hlen; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
            return (char *) hay + i;
    }
    return NULL;
}

uint32_t pt_hash(const char *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char) p[i];
        h *= 16777619u;
    }
    return h;
}

uint32_t pt_hash_lower(const char *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= pt_tolower((unsigned char) p[i]);
        h *= 16777619u;
    }
    return h;
}
