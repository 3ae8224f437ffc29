/* HTTP/2 connections (module "http_v2", libnghttp2 for framing and HPACK).
 * Every stream is one pt_http_request_t that goes through the same phases
 * as an HTTP/1.1 request; the h2 proto ops put its response into HEADERS and
 * DATA frames under flow control, so a slow reader stalls only its stream's
 * producer. */
#ifndef PT_H2_CONN_H
#define PT_H2_CONN_H

#include "../config/conf.h"
#include "../net/conn.h"

extern pt_module_t pt_http_v2_module;

/* Takes over a connection that negotiated "h2" by ALPN (TLS done). */
void pt_http2_init_connection(pt_conn_t *c);
/* Plain listeners with "listen ... http2" / "http2 on": looks at the first
 * bytes; the HTTP/2 connection preface starts HTTP/2 (prior knowledge),
 * anything else goes to HTTP/1.1. */
void pt_http2_detect_connection(pt_conn_t *c);

#endif
