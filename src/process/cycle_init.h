/* Building, switching and destroying configuration cycles (process layer).
 *
 * A reload is three steps so that any failure leaves the running cycle
 * untouched:
 *   new = pt_cycle_create(old, NULL)   parse, bind new addresses (unchanged
 *                                      ones reuse old's fd), map zones (kept
 *                                      when name + size + tag match), init_cycle
 *   pt_cycle_commit(new)               new now owns the fds and zones it shares
 *                                      with old (old forgets them); each zone's
 *                                      commit callback applies what its init
 *                                      staged (see pt_shm_zone_commit_cb)
 *   pt_cycle_destroy(old)              closes what only old had
 * On failure after create: pt_cycle_destroy(new) releases only what new made. */
#ifndef PT_PROCESS_CYCLE_INIT_H
#define PT_PROCESS_CYCLE_INIT_H

#include "../config/cycle.h"

typedef struct {
    pt_module_t **modules;
    size_t        nmodules;
    const char   *prefix;        /* absolute, ends with '/' */
    const char   *conf_file;     /* absolute */
    const char   *conf_param;    /* -g text, or NULL */
    const char   *error_log;     /* -e value ("stderr" or a path), or NULL */
    unsigned      conf_default:1;/* no -c: a missing file means the built-in config */
    unsigned      test_only:1;   /* -t / -T: parse and check, bind nothing */
    unsigned      quiet:1;       /* -q */
    unsigned      dump_config:1; /* -T */
    unsigned      signaller:1;   /* -s: parse only, to find the pid file */
} pt_cycle_opts_t;

/* Builds a cycle. opts is required the first time (old == NULL); a reload
 * passes NULL and the first call's options are reused (without test/dump).
 * Errors are logged (to old's log on reload) and NULL is returned. */
pt_cycle_t *pt_cycle_create(pt_cycle_t *old, const pt_cycle_opts_t *opts);
/* Makes new the owner of what it shares with new->old_cycle; clears old_cycle. */
void pt_cycle_commit(pt_cycle_t *cycle);
/* Master side: closes listening sockets the cycle owns, unmaps its zones,
 * closes its files and frees its pool. */
void pt_cycle_destroy(pt_cycle_t *cycle);

/* Binary upgrade (USR2): the old master passes its listening sockets in the
 * environment, PORTICO="fd;fd;...". The new binary calls pt_cycle_inherit()
 * before its first cycle, which then takes over the sockets whose address it
 * still listens on and closes the rest. Returns the number of sockets
 * inherited (0 when the variable is absent), -1 on a malformed value
 * (logged, nothing inherited). */
#define PT_INHERIT_ENV "PORTICO"
int pt_cycle_inherit(pt_log_t *log);

/* Prints "portico: <message>" on stderr (the -t/-T/-s lines, no level). */
void pt_cli_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mkdir -p for the directory part of path (mode 0755); 0 or -1 (errno). */
int pt_mkdir_parents(const char *path);

#endif
