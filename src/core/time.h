/* Cached time. pt_time_update() runs once per event-loop iteration (and on
 * demand); everything else reads the cached values, so a request never calls
 * clock_gettime or formats a date itself. */
#ifndef PT_TIME_H
#define PT_TIME_H

#include <stdint.h>
#include <time.h>
#include "str.h"

extern volatile int64_t pt_current_msec;   /* monotonic milliseconds (timers) */
extern volatile int64_t pt_time_msec;      /* wall clock, ms since the epoch ($msec) */
extern volatile time_t  pt_time_sec;       /* wall clock seconds */

/* Each is refreshed by pt_time_update() only when the second changes. */
extern pt_str_t pt_cached_http_time;       /* "Sun, 22 Nov 2026 20:21:43 GMT" */
extern pt_str_t pt_cached_err_log_time;    /* "2026/11/22 20:21:43" (local time) */
extern pt_str_t pt_cached_http_log_time;   /* "22/Nov/2026:20:21:43 +0000" ($time_local) */
extern pt_str_t pt_cached_iso8601;         /* "2026-11-22T20:21:43+00:00" ($time_iso8601) */

void pt_time_init(void);
void pt_time_update(void);

/* Formats t as an HTTP date into buf (>= 30 bytes); returns the length. */
size_t pt_http_time(char *buf, time_t t);
/* Parses an HTTP date (IMF-fixdate, RFC 850, asctime); -1 if invalid. */
time_t pt_http_time_parse(const char *p, size_t len);

#endif
