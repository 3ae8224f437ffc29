/* Address/CIDR parsing and matching shared by the access and realip modules
 * (header only: two small users, no object of its own). */
#ifndef PT_MODULES_CIDR_H
#define PT_MODULES_CIDR_H

#include <arpa/inet.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include "../core/str.h"
#include "../net/listen.h"

typedef struct {
    int     family;          /* AF_INET, AF_INET6, AF_UNIX, or 0 for "all" */
    uint8_t addr[16];
    uint8_t mask[16];
} pt_cidr_t;

/* Parses "a.b.c.d[/n]" or an IPv6 address "[/n]" (no brackets). Returns 0,
 * 1 when the address had bits set below the mask (they are cleared; nginx
 * warns "low address bits of ... are meaningless"), or -1 when invalid. */
static inline int pt_cidr_parse(const pt_str_t *text, pt_cidr_t *c)
{
    char buf[64];
    memset(c, 0, sizeof(*c));
    if (text->len == 0 || text->len >= sizeof(buf))
        return -1;
    memcpy(buf, text->data, text->len);
    buf[text->len] = '\0';

    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        if (slash[1] == '\0')
            return -1;
        bits = strtol(slash + 1, &end, 10);
        if (*end != '\0' || bits < 0)
            return -1;
    }
    size_t alen;
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        alen = 4;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        alen = 16;
    } else {
        return -1;
    }
    if (bits < 0)
        bits = (long) alen * 8;
    if (bits > (long) alen * 8)
        return -1;
    for (size_t i = 0; i < alen; i++) {
        long b = bits - (long) i * 8;
        c->mask[i] = b >= 8 ? 0xff : b <= 0 ? 0 : (uint8_t) (0xff << (8 - b));
    }
    int low = 0;
    for (size_t i = 0; i < alen; i++) {
        if (c->addr[i] & (uint8_t) ~c->mask[i])
            low = 1;
        c->addr[i] &= c->mask[i];
    }
    return low;
}

/* Does sa match c? An IPv4-mapped IPv6 peer matches IPv4 rules. */
static inline int pt_cidr_match(const pt_cidr_t *c, const struct sockaddr *sa)
{
    if (c->family == 0)
        return 1;
    const uint8_t *a;
    size_t alen;
    int family = sa->sa_family;
    if (family == AF_INET) {
        a = (const uint8_t *) &((const struct sockaddr_in *) sa)->sin_addr;
        alen = 4;
    } else if (family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;
        a = (const uint8_t *) in6;
        alen = 16;
        if (c->family == AF_INET && IN6_IS_ADDR_V4MAPPED(in6)) {
            a += 12;
            alen = 4;
            family = AF_INET;
        }
    } else {
        return c->family == AF_UNIX && family == AF_UNIX;
    }
    if (family != c->family)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if ((a[i] & c->mask[i]) != c->addr[i])
            return 0;
    return 1;
}

#endif
