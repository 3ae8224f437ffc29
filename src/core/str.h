/* Counted strings: the unit of text everywhere in Portico. Not NUL-terminated
 * unless a function says so. */
#ifndef PT_STR_H
#define PT_STR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

typedef struct {
    size_t len;
    char  *data;
} pt_str_t;

#define pt_string(s)     { sizeof(s) - 1, (char *) (s) }
#define pt_null_string   { 0, NULL }
#define pt_str_set(str, text) \
    do { (str)->len = sizeof(text) - 1; (str)->data = (char *) (text); } while (0)

static inline int pt_str_eq(const pt_str_t *a, const pt_str_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static inline int pt_str_eq_lit(const pt_str_t *a, const char *lit)
{
    size_t n = strlen(lit);
    /* n == 0 first: data may be NULL, and memcmp(NULL, .., 0) is undefined */
    return a->len == n && (n == 0 || memcmp(a->data, lit, n) == 0);
}

static inline unsigned char pt_tolower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char) (c | 0x20) : c;
}

/* ASCII case-insensitive comparisons (HTTP header names, host names). */
int  pt_str_caseeq(const pt_str_t *a, const pt_str_t *b);
/* Inline: with a string literal the length is a compile-time constant, so a
 * name of another length costs one compare (header loops call this often). */
static inline int pt_str_caseeq_lit(const pt_str_t *a, const char *lit)
{
    size_t n = strlen(lit);
    if (a->len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pt_tolower((unsigned char) a->data[i]) != pt_tolower((unsigned char) lit[i]))
            return 0;
    return 1;
}
int  pt_strncasecmp(const char *a, const char *b, size_t n);
void pt_strlow(char *dst, const char *src, size_t n);

/* Parses a non-negative decimal integer; returns -1 on any non-digit, empty
 * input or overflow past INT64_MAX. */
int64_t pt_atoi64(const char *p, size_t len);
/* Same for hexadecimal (chunk sizes). */
int64_t pt_hextoi64(const char *p, size_t len);

/* Finds needle in haystack; NULL if absent. */
char *pt_strnstr(const char *hay, size_t hlen, const char *needle, size_t nlen);

/* FNV-1a over bytes, case-folded variant for header names. */
uint32_t pt_hash(const char *p, size_t len);
uint32_t pt_hash_lower(const char *p, size_t len);

#endif
