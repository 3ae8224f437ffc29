/* HTTP/1.x connections: reading request heads, building the request object,
 * the h1 proto ops (response serialisation, body reading), keep-alive,
 * pipelining and lingering close.
 *
 * Memory per connection: while a connection waits for its first bytes (or
 * idles between keep-alive requests) it holds only its pt_conn_t record and a
 * small pt_h1_conn_t (no pool, no buffer). A header buffer is taken when bytes
 * arrive, a request pool when a request starts; both are given back when the
 * request ends. */
#ifndef PT_H1_CONN_H
#define PT_H1_CONN_H

#include "../net/conn.h"
#include "request.h"

/* The listening handler for HTTP listeners: takes over an accepted
 * connection (c->listening->servers is the http core's per-address data).
 * Never fails visibly: on allocation failure the connection is closed. */
void pt_http_init_connection(pt_conn_t *c);

/* The HTTP/1.x proto ops (exported for tests and for the upgrade path). */
extern const pt_http_proto_t pt_h1_proto;

/* Serialises an integer in decimal at p; returns the end (no NUL). */
char *pt_http_format_int(char *p, int64_t v);

#endif
