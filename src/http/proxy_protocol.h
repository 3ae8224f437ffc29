/* The PROXY protocol (HAProxy's, versions 1 and 2) on `listen ...
 * proxy_protocol` sockets: a load balancer in front (AWS NLB, HAProxy
 * `send-proxy`) sends one header with the client's addresses before any
 * other byte of the connection. It is read before anything else: before the
 * TLS handshake, the HTTP/2 preface and the HTTP/1 request head. A broken or
 * missing header closes the connection ("broken header" in the error log),
 * as nginx.
 *
 * The parser (pt_proxy_protocol_parse) is pure: no allocation, no I/O, and
 * "need more bytes" is a return value, so it is unit-tested and fuzzed on
 * its own. The connection side peeks at the socket (MSG_PEEK) until the
 * whole header is there, then consumes exactly the header's bytes: whatever
 * follows is still in the socket for the next layer. */
#ifndef PT_HTTP_PROXY_PROTOCOL_H
#define PT_HTTP_PROXY_PROTOCOL_H

#include <stdint.h>
#include <sys/types.h>
#include <netinet/in.h>
#include "../net/conn.h"

/* A v1 line is at most 107 bytes with its CRLF (the specification's
 * worst case: "PROXY UNKNOWN" with two IPv6 addresses and ports). */
#define PT_PROXY_PROTOCOL_V1_MAX 107
/* Hard limit for a whole v2 header (16-byte preamble + addresses + TLVs),
 * nginx's; a longer one is refused as broken. */
#define PT_PROXY_PROTOCOL_MAX    4096

#define PT_PROXY_PROTOCOL_AGAIN  (-2)   /* a valid prefix: need more bytes */
#define PT_PROXY_PROTOCOL_ERROR  (-1)   /* not a PROXY header, or malformed */

/* What one header said. has_addr is 0 for v1 UNKNOWN, v2 LOCAL, and v2
 * PROXY with an unspecified / unix family or a non-stream transport: the
 * connection is accepted and its addresses stay those of the socket (nginx). */
typedef struct {
    pt_sockaddr_t src, dst;          /* client and server, ports included */
    socklen_t     srclen, dstlen;
    char          src_text[INET6_ADDRSTRLEN];  /* "1.2.3.4", "2001:db8::1" */
    char          dst_text[INET6_ADDRSTRLEN];
    uint16_t      src_port, dst_port;
    unsigned      version:2;         /* 1 or 2 */
    unsigned      has_addr:1;
} pt_proxy_protocol_t;

/* Parses a header at the start of buf[0..len). Returns the header's length
 * in bytes (> 0, what to consume) with *pp filled, PT_PROXY_PROTOCOL_AGAIN
 * when buf is a proper prefix of a header that may still be valid, or
 * PT_PROXY_PROTOCOL_ERROR. Never reads past buf + len. */
ssize_t pt_proxy_protocol_parse(const char *buf, size_t len, pt_proxy_protocol_t *pp);

/* Hook for the first handler of every HTTP listener (h1, h2c detection,
 * TLS): when the connection's address has `proxy_protocol` and its header
 * was not read yet, takes the connection over (returns 1): reads the header
 * within client_header_timeout, stores it in c->proxy_protocol (when it
 * carries addresses), then calls next(c) again, or closes the connection.
 * Returns 0 when there is nothing to do. addr is a pt_http_addr_conf_t *. */
int pt_proxy_protocol_start(pt_conn_t *c, void *addr, void (*next)(pt_conn_t *c));

#endif
