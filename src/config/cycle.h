/* A cycle is one loaded configuration and everything made from it: its pool,
 * the modules' configurations, listening sockets, shared-memory zones, open
 * log files. The master builds a new cycle on reload and the old one lives on
 * in old workers until they exit. */
#ifndef PT_CYCLE_H
#define PT_CYCLE_H

#include "../core/array.h"
#include "../core/log.h"
#include "../core/pool.h"
#include "../core/shm.h"
#include "../net/listen.h"
#include "conf.h"

struct pt_cycle_s {
    pt_pool_t       *pool;
    pt_log_t        *log;            /* main error_log (stderr before it is known) */
    pt_log_t         new_log;        /* storage for the main error_log chain head */
    pt_module_t    **modules;
    size_t           nmodules;
    void           **core_conf;      /* per module, PT_CONF_CORE */
    pt_http_conf_ctx_t *http_ctx;    /* NULL when there is no http { } */
    pt_array_t       listening;      /* pt_listening_t */
    pt_shm_zone_t   *shm_zones;
    pt_open_file_t  *open_files;
    pt_str_t         prefix;         /* -p, with trailing '/' */
    pt_str_t         conf_prefix;    /* directory of the config file, trailing '/' */
    pt_str_t         conf_file;      /* absolute */
    pt_str_t         conf_param;     /* -g */
    pt_str_t         error_log_path; /* -e, or the built-in default */
    pt_array_t       config_dump;    /* pt_conf_dump_t, for -T */
    pt_cycle_t      *old_cycle;      /* during reload */
    unsigned         test_only:1;    /* -t / -T */
    unsigned         quiet:1;        /* -q */
    unsigned         builtin_conf:1; /* parsing the compiled-in default config: a
                                      * missing "mime.types" include falls back to
                                      * the compiled-in pt_default_mime_types */
    unsigned         dump_config:1;  /* -T: record every parsed file in config_dump */
};

/* One parsed file for -T (each file once, in the order first parsed). */
typedef struct {
    pt_str_t name;
    pt_str_t text;
} pt_conf_dump_t;

/* The compiled-in texts (build/gen/, from conf/). */
extern const char   pt_default_conf[];
extern const size_t pt_default_conf_len;
extern const char   pt_default_mime_types[];
extern const size_t pt_default_mime_types_len;

/* The main-context core configuration (worker_processes, pid, ...), owned by
 * the process layer's core module but read everywhere. */
typedef struct {
    int       daemon;              /* flag */
    int       master;              /* master_process flag */
    int64_t   worker_processes;    /* -1 = auto */
    int64_t   worker_rlimit_nofile;
    int64_t   worker_shutdown_timeout; /* ms, UNSET = wait forever */
    int64_t   worker_connections;  /* events { } */
    int       multi_accept;        /* events { } */
    int       io_uring_send;       /* events { }: batched sends (net/sendq.c) */
    pt_str_t  pid_path;
    pt_str_t  user, group;
    pt_str_t  working_directory;
} pt_core_conf_t;

/* Register a zone at config time (dedup by name; same name + other tag or
 * size is an error). Returns NULL and logs on conflict. */
pt_shm_zone_t *pt_shm_zone_add(pt_conf_t *cf, const pt_str_t *name, size_t size, void *tag);

#endif
