/* Internal to the event loop: the timer heap's side the loop drives. Users
 * call pt_timer_add()/pt_timer_del() from loop.h. */
#ifndef PT_TIMER_H
#define PT_TIMER_H

#include <stddef.h>
#include <stdint.h>
#include "loop.h"

/* Sizes the heap for `hint` timers (it grows beyond on demand); drops every
 * armed timer. Returns 0 or -1. */
int     pt__timer_init(size_t hint);
void    pt__timer_done(void);
/* Milliseconds until the nearest deadline from pt_current_msec (0 if one is
 * due), or -1 when no timer is armed. */
int64_t pt__timer_wait(void);
/* Fires every timer whose deadline is <= pt_current_msec: clears timer_set,
 * sets timedout, calls the handler. A timer re-armed as already due from a
 * handler fires in the next iteration, never in a loop here. */
void    pt__timer_expire(void);

#endif
