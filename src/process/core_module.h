/* The core module's full configuration: the public pt_core_conf_t (cycle.h)
 * first, then what only the process layer reads (privileges, affinity,
 * limits). cycle->core_conf[pt_core_module.index] points at one of these. */
#ifndef PT_PROCESS_CORE_MODULE_H
#define PT_PROCESS_CORE_MODULE_H

#include <sched.h>
#include <sys/types.h>

#include "../config/conf.h"
#include "../config/cycle.h"

extern pt_module_t pt_core_module;

#define PT_MAX_WORKERS 1024

typedef struct {
    pt_core_conf_t core;            /* must stay first */

    int            worker_processes_set;
    int64_t        priority;        /* worker_priority; UNSET = leave alone */
    int64_t        rlimit_core;     /* worker_rlimit_core, bytes; UNSET */
    int            cpu_affinity_auto;
    cpu_set_t      cpu_affinity_auto_mask;  /* CPUs "auto" may use */
    cpu_set_t     *cpu_affinity;    /* masks, one per worker (cycled) */
    unsigned       cpu_affinity_n;
    pt_array_t    *env;             /* pt_str_t "NAME" or "NAME=value" */
    int            pcre_jit;
    int64_t        timer_resolution;
    int            accept_mutex;
    int64_t        accept_mutex_delay;
    int            events;          /* events { } seen */
    int            user_set;        /* user directive given (as root) */
    uid_t          uid;             /* valid when running as root */
    gid_t          gid;
} pt_core_conf_full_t;

static inline pt_core_conf_full_t *pt_core_conf_full(pt_cycle_t *cycle)
{
    return (pt_core_conf_full_t *) cycle->core_conf[pt_core_module.index];
}

static inline pt_core_conf_t *pt_core_conf(pt_cycle_t *cycle)
{
    return (pt_core_conf_t *) cycle->core_conf[pt_core_module.index];
}

/* Number of CPUs this process may run on (at least 1). */
int pt_cpu_count(void);

#endif
