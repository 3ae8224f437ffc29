/* limit_rate, limit_rate_after, $limit_rate and X-Accel-Limit-Rate: the
 * pace of a response to the client (module "http_limit_rate").
 *
 * The directives live in the core location conf (http_core.c parses them);
 * this file decides, per request, how many response bytes the protocol
 * writer may put on the wire now. The writers (h1_conn.c flush, h2_conn.c
 * data provider) ask before each write and, when the budget is spent, stop
 * and come back on a timer.
 *
 * Budget: the first limit_rate_after bytes go at full speed; after that the
 * response may have sent at most
 *     limit_rate_after + limit_rate * (elapsed + 100 ms) / 1 s
 * bytes, elapsed counted from the request's first write (so bytes/s are
 * measured over the response, and a stall lets the next writes catch up, as
 * nginx). Small slivers are not written: the writer waits until about 10 ms
 * worth of bytes (at least 512 bytes or one second's worth) may go. */
#ifndef PT_HTTP_LIMIT_RATE_H
#define PT_HTTP_LIMIT_RATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "request.h"

/* Cheap test for the writers: 0 when r is known to be unlimited. */
#define pt_http_limit_rate_active(r) (!(r)->limit_rate_set || (r)->limit_rate > 0)

/* How many of want response bytes r may write now: want when unlimited,
 * else 0..want; 0 means wait *delay_ms (>= 1) and ask again. The first call
 * evaluates limit_rate / limit_rate_after for the request's location unless
 * $limit_rate or X-Accel-Limit-Rate set the rate before. Counts against
 * r->bytes_sent, which the writer keeps up to date. */
size_t pt_http_limit_rate_allow(pt_http_request_t *r, size_t want, int64_t *delay_ms);

/* The same for a writev: trims iov[0..*n) (total bytes) to what may go
 * now and returns that many bytes (0: wait *delay_ms). */
size_t pt_http_limit_rate_iov(pt_http_request_t *r, struct iovec *iov, int *n, size_t total,
                              int64_t *delay_ms);

/* X-Accel-Limit-Rate from a proxied response (bytes per second, digits; the
 * proxy calls it unless proxy_ignore_headers names the header). A value that
 * is not a number is ignored. */
void pt_http_limit_rate_header(pt_http_request_t *r, const pt_str_t *value);

#endif
