/* The proxy cache's store (cache_store.c), shared with the request side
 * (cache.c) and the unit tests.
 *
 * A cache is one proxy_cache_path: a directory of files and a keys_zone, a
 * shared-memory index of every entry (one node per md5 of a key) that all
 * workers see. A file holds one response:
 *
 *   pt_cache_file_header_t | key bytes | head (our record format) | body
 *
 * written to a temporary name in the entry's own directory and renamed over
 * the final name when the response is complete, so a reader never sees a
 * partial file and a reader that already opened the old file keeps it.
 *
 * The index node says whether a usable file exists, until when it is fresh,
 * its size (max_size accounting), when it was last used (inactive), how many
 * times it was asked for (min_uses) and whether a request is filling it now
 * (proxy_cache_lock, use_stale updating): the filler's pid and start time.
 * Every node access takes the zone's slab mutex; nothing under it does I/O
 * except the manager's unlink of evicted files, done after unlocking.
 *
 * Owner: proxy cache (cache.c, cache_store.c, cache.h). */
#ifndef PT_PROXY_CACHE_H
#define PT_PROXY_CACHE_H

#include <stdint.h>
#include <sys/types.h>
#include "../config/conf.h"
#include "../core/shm.h"
#include "../core/str.h"

#define PT_CACHE_MAX_LEVELS 3
#define PT_CACHE_KEY_LEN    16          /* md5 */
#define PT_CACHE_MAGIC      "PTCACHE1"

/* One index entry in the zone. */
typedef struct pt_cache_node_s pt_cache_node_t;
struct pt_cache_node_s {
    pt_cache_node_t *hnext;             /* hash chain */
    pt_cache_node_t *qprev, *qnext;     /* use queue: most recent first */
    unsigned char    key[PT_CACHE_KEY_LEN];
    int64_t          valid_sec;         /* fresh until (wall seconds) */
    int64_t          expire;            /* forgotten after (last use + inactive) */
    int64_t          fs_size;           /* bytes of the file on disk, 0 none */
    int64_t          lock_time;         /* when the filler started (wall ms) */
    pid_t            lock_pid;          /* filler, 0 none */
    uint32_t         lock_id;           /* filler's token (pid may fill twice) */
    uint32_t         uses;
    uint32_t         updating_sec;      /* Cache-Control stale-while-revalidate */
    uint32_t         error_sec;         /* Cache-Control stale-if-error */
    unsigned         exists:1;          /* a complete file is on disk */
};

/* The zone's root object (sp->data). Survives a reload of the same zone. */
typedef struct {
    pt_cache_node_t **buckets;
    size_t            nbuckets;         /* power of two */
    pt_cache_node_t   queue;            /* sentinel of the use queue */
    int64_t           size;             /* sum of fs_size */
    uint64_t          count;            /* nodes */
    pid_t             mgr_pid;          /* manager lease (one worker) */
    int64_t           mgr_lease;        /* wall ms */
    unsigned          loaded:1;         /* the loader walked the directory */
    unsigned          loading:1;
} pt_cache_sh_t;

/* One proxy_cache_path (config memory; zone->data). */
typedef struct {
    pt_str_t        path;               /* no trailing '/' */
    unsigned        levels[PT_CACHE_MAX_LEVELS];
    unsigned        nlevels;
    int64_t         inactive;           /* seconds, 10m */
    int64_t         max_size;           /* bytes, 0: no limit */
    int64_t         min_free;           /* bytes, 0 (accepted) */
    int64_t         manager_sleep;      /* ms between manager passes */
    unsigned        manager_files;      /* evictions per pass */
    pt_shm_zone_t  *shm;
    pt_slab_pool_t *sp;                 /* set when the zone is mapped */
    pt_cache_sh_t  *sh;
    pt_cycle_t     *cycle;
    const char     *file;               /* where it was declared */
    unsigned        line;
} pt_cache_t;

/* The fixed part at the start of every file (host byte order: files are
 * this machine's own). */
typedef struct {
    char          magic[8];             /* PT_CACHE_MAGIC */
    uint32_t      key_len;
    uint32_t      head_len;
    int64_t       valid_sec;            /* fresh until */
    int64_t       date;                 /* stored at */
    int64_t       body_len;
    int32_t       status;
    uint32_t      updating_sec;         /* stale-while-revalidate=N */
    uint32_t      error_sec;            /* stale-if-error=N */
    uint32_t      reserved;
    unsigned char md5[PT_CACHE_KEY_LEN];
} pt_cache_file_header_t;

/* Lookup outcome (pt_cache_lookup). */
typedef struct {
    unsigned exists:1;                  /* a file is there (fresh or not) */
    unsigned fresh:1;                   /* and still valid */
    unsigned others_fill:1;             /* another request is filling it */
    unsigned locked:1;                  /* we took the fill lock */
    unsigned min_uses_ok:1;             /* asked for at least min_uses times */
    unsigned stale_updating:1;          /* within stale-while-revalidate */
    unsigned stale_error:1;             /* within stale-if-error */
    uint32_t lock_id;                   /* our token when locked */
    int64_t  fs_size;
} pt_cache_lookup_t;

/* md5 of the key text. */
void   pt_cache_key_hash(const char *key, size_t len, unsigned char md5[PT_CACHE_KEY_LEN]);
/* Lower-case hex of md5 into out (33 bytes with the NUL). */
void   pt_cache_key_hex(const unsigned char md5[PT_CACHE_KEY_LEN], char out[33]);
/* "levels=1:2" value: 1..3 levels of 1 or 2 characters. 0 or -1. */
int    pt_cache_parse_levels(const char *s, size_t len, unsigned *levels, unsigned *n);
/* The entry's file name: PATH/c/29/b7f54b2df7773722d382f4809d65029c for
 * levels=1:2 (the last hex characters name the directories, from the end).
 * Returns the length written (NUL-terminated), 0 when size is too small.
 * dir_len, when not NULL, gets the length of the directory part (without the
 * last '/'). */
size_t pt_cache_file_name(const pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                          char *buf, size_t size, size_t *dir_len);
/* mkdir -p of the directory part of path (the first `len` bytes). 0 or -1. */
int    pt_cache_mkdirs(const char *path, size_t len);

/* Zone side (all take the zone mutex). now_ms is wall-clock milliseconds. */
int    pt_cache_zone_init(pt_cache_t *c, pt_slab_pool_t *sp, void *old_root);
/* Finds or adds the node of md5, counts a use, refreshes its inactive time,
 * and says what is there. When want_lock and nobody is filling (or the
 * filler's lock is older than lock_age_ms), takes the fill lock. min_uses: a
 * node asked for fewer times says min_uses_ok = 0 (and takes no lock).
 * Returns 0, or -1 when the zone is out of memory even after forgetting old
 * entries (the request goes on uncached). */
int    pt_cache_lookup(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], int64_t now_ms,
                       int want_lock, int64_t lock_age_ms, unsigned min_uses,
                       pt_cache_lookup_t *out);
/* The fill lock is still held by another live filler? (for waiters) */
int    pt_cache_is_filling(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                           int64_t now_ms, int64_t lock_age_ms);
/* Releases our fill lock (no-op when it is not ours any more). */
void   pt_cache_unlock(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], uint32_t lock_id);
/* Records a complete file (after the rename): exists, valid_sec, size;
 * releases our lock. Returns 0, -1 when the node is gone (out of memory). */
int    pt_cache_commit(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], uint32_t lock_id,
                       int64_t valid_sec, int64_t fs_size);
/* The Cache-Control stale-while-revalidate / stale-if-error seconds of an
 * entry (after commit, refresh or load). */
void   pt_cache_set_stale(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                          uint32_t updating_sec, uint32_t error_sec);
/* Revalidated: new valid_sec for the existing file; releases our lock. */
void   pt_cache_refresh(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], uint32_t lock_id,
                        int64_t valid_sec);
/* The file is unusable (bad header, vanished): forget it. */
void   pt_cache_invalidate(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN]);
/* Indexes a file found on disk by the loader (not when the key is known). */
int    pt_cache_add_loaded(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                           int64_t valid_sec, int64_t fs_size, int64_t now_sec);
/* One manager pass: forgets entries unused for `inactive` (and their
 * files), then the least recently used ones while the cache is above
 * max_size; at most `max_files` files. Returns the number of files removed. */
unsigned pt_cache_manage(pt_cache_t *c, int64_t now_ms, unsigned max_files);
/* Walks the cache directory and indexes the files (the loader). Removes
 * stale temporary files. Returns the number of entries indexed. */
unsigned pt_cache_load(pt_cache_t *c, int64_t now_ms);
/* Manager lease: 1 when this process runs the manager and the loader. */
int    pt_cache_take_lease(pt_cache_t *c, int64_t now_ms, int64_t period_ms, int release);

#endif
