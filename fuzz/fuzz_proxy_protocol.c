/* libFuzzer target: the PROXY protocol v1/v2 header parser.
 *
 * Input: 2 control bytes (where to cut the input for the split check), then
 * the bytes a client sends first.
 * Checks: the result is AGAIN, ERROR or a length within the input; v1
 * headers are at most 107 bytes and end with CRLF, v2 ones at most 4096 and
 * their length matches the preamble; a prefix of the input answers AGAIN
 * before the header's end and the same result after it; bytes after the
 * header change nothing; addresses of an accepted header are well formed
 * (their text parses back to the same address). Buffers are exact-size heap
 * copies so ASan catches any read past the end. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/proxy_protocol.h"

static void check_addr(const pt_sockaddr_t *sa, socklen_t len, const char *text, uint16_t port)
{
    unsigned char bin[16];
    if (sa->sa.sa_family == AF_INET) {
        if (len != sizeof(struct sockaddr_in) || ntohs(sa->sin.sin_port) != port
            || inet_pton(AF_INET, text, bin) != 1 || memcmp(bin, &sa->sin.sin_addr, 4) != 0)
            abort();
    } else if (sa->sa.sa_family == AF_INET6) {
        if (len != sizeof(struct sockaddr_in6) || ntohs(sa->sin6.sin6_port) != port
            || inet_pton(AF_INET6, text, bin) != 1 || memcmp(bin, &sa->sin6.sin6_addr, 16) != 0)
            abort();
    } else {
        abort();
    }
}

static int same(const pt_proxy_protocol_t *a, const pt_proxy_protocol_t *b)
{
    return a->version == b->version && a->has_addr == b->has_addr
           && (!a->has_addr
               || (strcmp(a->src_text, b->src_text) == 0 && strcmp(a->dst_text, b->dst_text) == 0
                   && a->src_port == b->src_port && a->dst_port == b->dst_port));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_proxy_protocol_t a, b;
    size_t len, cut;
    char *full, *part;
    ssize_t rc, rc2;

    if (size < 2)
        return 0;
    len = size - 2;
    cut = len ? ((size_t) data[0] << 8 | data[1]) % (len + 1) : 0;
    full = malloc(len ? len : 1);
    memcpy(full, data + 2, len);
    part = malloc(cut ? cut : 1);
    memcpy(part, data + 2, cut);

    rc = pt_proxy_protocol_parse(full, len, &a);
    if (rc != PT_PROXY_PROTOCOL_AGAIN && rc != PT_PROXY_PROTOCOL_ERROR && (rc <= 0 || (size_t) rc > len))
        abort();
    rc2 = pt_proxy_protocol_parse(part, cut, &b);

    if (rc > 0) {
        if (a.version == 1) {
            if (rc > PT_PROXY_PROTOCOL_V1_MAX || full[rc - 2] != '\r' || full[rc - 1] != '\n')
                abort();
        } else if (a.version == 2) {
            size_t plen = ((size_t) (unsigned char) full[14] << 8) | (unsigned char) full[15];
            if ((size_t) rc != 16 + plen || rc > PT_PROXY_PROTOCOL_MAX)
                abort();
        } else {
            abort();
        }
        if (a.has_addr) {
            check_addr(&a.src, a.srclen, a.src_text, a.src_port);
            check_addr(&a.dst, a.dstlen, a.dst_text, a.dst_port);
        }
        /* a prefix: AGAIN before the end of the header, the same after */
        if ((ssize_t) cut < rc) {
            if (rc2 != PT_PROXY_PROTOCOL_AGAIN)
                abort();
        } else if (rc2 != rc || !same(&a, &b)) {
            abort();
        }
    } else if (rc == PT_PROXY_PROTOCOL_AGAIN) {
        /* a prefix of a prefix is still a prefix */
        if (rc2 != PT_PROXY_PROTOCOL_AGAIN)
            abort();
    } else if (rc2 > 0) {
        abort();                 /* refused whole, accepted in part */
    }
    free(full);
    free(part);
    return 0;
}
