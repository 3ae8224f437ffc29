/* The proxy cache's store: key hashing, file names, the shared-memory index
 * (hash table + use queue in the keys_zone), the manager (inactive and
 * max_size) and the loader (indexes the files found at start). See cache.h
 * for the layout and the locking rule. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cache.h"
#include "../config/cycle.h"
#include "../core/log.h"
#include "../core/time.h"

/* ------------------------------------------------------------------------ */
/* Keys and names */

void pt_cache_key_hash(const char *key, size_t len, unsigned char md5[PT_CACHE_KEY_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(key, len, md5, &n, EVP_md5(), NULL) != 1 || n != PT_CACHE_KEY_LEN)
        memset(md5, 0, PT_CACHE_KEY_LEN);
}

void pt_cache_key_hex(const unsigned char md5[PT_CACHE_KEY_LEN], char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < PT_CACHE_KEY_LEN; i++) {
        out[2 * i] = hex[md5[i] >> 4];
        out[2 * i + 1] = hex[md5[i] & 0xf];
    }
    out[32] = '\0';
}

int pt_cache_parse_levels(const char *s, size_t len, unsigned *levels, unsigned *n)
{
    unsigned k = 0;
    size_t i = 0;

    if (len == 0)
        return -1;
    while (i < len) {
        if (k == PT_CACHE_MAX_LEVELS)
            return -1;
        if (s[i] != '1' && s[i] != '2')
            return -1;
        levels[k++] = (unsigned) (s[i] - '0');
        i++;
        if (i == len)
            break;
        if (s[i] != ':' || i + 1 == len)
            return -1;
        i++;
    }
    *n = k;
    return 0;
}

size_t pt_cache_file_name(const pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                          char *buf, size_t size, size_t *dir_len)
{
    char hex[33];
    size_t need = c->path.len + 1 + 32 + 1;

    for (unsigned i = 0; i < c->nlevels; i++)
        need += c->levels[i] + 1;
    if (need > size)
        return 0;

    pt_cache_key_hex(md5, hex);
    char *p = buf;
    memcpy(p, c->path.data, c->path.len);
    p += c->path.len;
    size_t from = 32;                   /* directory names come from the end */
    for (unsigned i = 0; i < c->nlevels; i++) {
        from -= c->levels[i];
        *p++ = '/';
        memcpy(p, hex + from, c->levels[i]);
        p += c->levels[i];
    }
    if (dir_len)
        *dir_len = (size_t) (p - buf);
    *p++ = '/';
    memcpy(p, hex, 32);
    p += 32;
    *p = '\0';
    return (size_t) (p - buf);
}

int pt_cache_mkdirs(const char *path, size_t len)
{
    char buf[4096];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, path, len);
    buf[len] = '\0';
    if (mkdir(buf, 0700) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && buf[i] != '/')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        if (i < len)
            buf[i] = '/';
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The index */

static size_t bucket_of(const pt_cache_sh_t *sh, const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t) (h & (sh->nbuckets - 1));
}

static void queue_remove(pt_cache_node_t *n)
{
    n->qprev->qnext = n->qnext;
    n->qnext->qprev = n->qprev;
    n->qprev = n->qnext = n;
}

static void queue_front(pt_cache_sh_t *sh, pt_cache_node_t *n)
{
    n->qnext = sh->queue.qnext;
    n->qprev = &sh->queue;
    sh->queue.qnext->qprev = n;
    sh->queue.qnext = n;
}

static pt_cache_node_t *find_locked(pt_cache_sh_t *sh, const unsigned char *key)
{
    for (pt_cache_node_t *n = sh->buckets[bucket_of(sh, key)]; n; n = n->hnext)
        if (memcmp(n->key, key, PT_CACHE_KEY_LEN) == 0)
            return n;
    return NULL;
}

static void unhash_locked(pt_cache_sh_t *sh, pt_cache_node_t *n)
{
    pt_cache_node_t **pp = &sh->buckets[bucket_of(sh, n->key)];
    while (*pp && *pp != n)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = n->hnext;
}

static void free_node_locked(pt_cache_t *c, pt_cache_node_t *n)
{
    pt_cache_sh_t *sh = c->sh;
    unhash_locked(sh, n);
    queue_remove(n);
    sh->size -= n->fs_size;
    sh->count--;
    pt_slab_free_locked(c->sp, n);
}

static void unlink_entry(pt_cache_t *c, const unsigned char *key)
{
    char name[4096];
    if (pt_cache_file_name(c, key, name, sizeof(name), NULL) == 0)
        return;
    if (unlink(name) != 0 && errno != ENOENT)
        pt_log_error(PT_LOG_CRIT, c->cycle ? c->cycle->log : NULL, errno,
                     "unlink() \"%s\" failed", name);
}

int pt_cache_zone_init(pt_cache_t *c, pt_slab_pool_t *sp, void *old_root)
{
    c->sp = sp;
    if (old_root != NULL) {
        c->sh = old_root;
        return 0;
    }
    pt_cache_sh_t *sh = pt_slab_calloc(sp, sizeof(*sh));
    if (sh == NULL)
        return -1;
    /* about one bucket per 512 bytes of zone: chains stay short */
    size_t nb = 64;
    while (nb < sp->size / 512 && nb < ((size_t) 1 << 22))
        nb <<= 1;
    sh->buckets = pt_slab_calloc(sp, nb * sizeof(pt_cache_node_t *));
    if (sh->buckets == NULL) {
        pt_slab_free(sp, sh);
        return -1;
    }
    sh->nbuckets = nb;
    sh->queue.qnext = sh->queue.qprev = &sh->queue;
    sp->data = sh;
    c->sh = sh;
    return 0;
}

/* Forgets the least recently used nodes that no request is filling (their
 * files too) to make room in the zone. Called locked; the unlinks wait
 * until the caller unlocks (keys returned in `victims`). */
static unsigned forget_lru_locked(pt_cache_t *c, unsigned want,
                                  unsigned char victims[][PT_CACHE_KEY_LEN], unsigned max)
{
    pt_cache_sh_t *sh = c->sh;
    unsigned done = 0, nv = 0;
    pt_cache_node_t *n = sh->queue.qprev;

    while (n != &sh->queue && done < want) {
        pt_cache_node_t *prev = n->qprev;
        if (n->lock_pid == 0 && (!n->exists || nv < max)) {
            if (n->exists)
                memcpy(victims[nv++], n->key, PT_CACHE_KEY_LEN);
            free_node_locked(c, n);
            done++;
        }
        n = prev;
    }
    return nv;
}

int pt_cache_lookup(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], int64_t now_ms,
                    int want_lock, int64_t lock_age_ms, unsigned min_uses,
                    pt_cache_lookup_t *out)
{
    static uint32_t next_id;
    pt_cache_sh_t *sh = c->sh;
    unsigned char victims[8][PT_CACHE_KEY_LEN];
    unsigned nv = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = find_locked(sh, md5);
    if (n == NULL) {
        n = pt_slab_calloc_locked(c->sp, sizeof(*n));
        if (n == NULL) {
            nv = forget_lru_locked(c, 8, victims, 8);
            n = pt_slab_calloc_locked(c->sp, sizeof(*n));
        }
        if (n == NULL) {
            rc = -1;
            goto done;
        }
        memcpy(n->key, md5, PT_CACHE_KEY_LEN);
        size_t b = bucket_of(sh, md5);
        n->hnext = sh->buckets[b];
        sh->buckets[b] = n;
        n->qprev = n->qnext = n;
        sh->count++;
    } else {
        queue_remove(n);
    }
    queue_front(sh, n);
    if (n->uses < UINT32_MAX)
        n->uses++;
    n->expire = now_ms / 1000 + c->inactive;

    out->exists = n->exists;
    out->fresh = n->exists && n->valid_sec > now_ms / 1000;
    out->fs_size = n->fs_size;
    out->min_uses_ok = n->uses >= min_uses;
    out->stale_updating = n->exists && now_ms / 1000 < n->valid_sec + n->updating_sec;
    out->stale_error = n->exists && now_ms / 1000 < n->valid_sec + n->error_sec;
    if (n->lock_pid != 0 && now_ms - n->lock_time >= lock_age_ms)
        n->lock_pid = 0;                /* the filler is too slow or gone */
    if (n->lock_pid != 0 && kill(n->lock_pid, 0) != 0 && errno == ESRCH)
        n->lock_pid = 0;
    out->others_fill = n->lock_pid != 0;
    if (want_lock && !out->fresh && !out->others_fill && out->min_uses_ok) {
        n->lock_pid = getpid();
        n->lock_time = now_ms;
        n->lock_id = ++next_id ? next_id : ++next_id;
        out->locked = 1;
        out->lock_id = n->lock_id;
    }
done:
    pt_shmtx_unlock(&c->sp->mutex);
    for (unsigned i = 0; i < nv; i++)
        unlink_entry(c, victims[i]);
    return rc;
}

int pt_cache_is_filling(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                        int64_t now_ms, int64_t lock_age_ms)
{
    int filling = 0;
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = find_locked(c->sh, md5);
    if (n && n->lock_pid != 0 && now_ms - n->lock_time < lock_age_ms)
        filling = !(n->exists && n->valid_sec > now_ms / 1000);
    pt_shmtx_unlock(&c->sp->mutex);
    return filling;
}

static pt_cache_node_t *ours_locked(pt_cache_t *c, const unsigned char *md5, uint32_t lock_id)
{
    pt_cache_node_t *n = find_locked(c->sh, md5);
    if (n && n->lock_pid == getpid() && n->lock_id == lock_id)
        return n;
    return NULL;
}

void pt_cache_unlock(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], uint32_t lock_id)
{
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = ours_locked(c, md5, lock_id);
    if (n)
        n->lock_pid = 0;
    pt_shmtx_unlock(&c->sp->mutex);
}

int pt_cache_commit(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], uint32_t lock_id,
                    int64_t valid_sec, int64_t fs_size)
{
    int rc = 0;
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = find_locked(c->sh, md5);
    if (n == NULL) {
        /* forgotten meanwhile (zone full): index it again */
        n = pt_slab_calloc_locked(c->sp, sizeof(*n));
        if (n == NULL) {
            rc = -1;
            goto done;
        }
        memcpy(n->key, md5, PT_CACHE_KEY_LEN);
        size_t b = bucket_of(c->sh, md5);
        n->hnext = c->sh->buckets[b];
        c->sh->buckets[b] = n;
        n->qprev = n->qnext = n;
        queue_front(c->sh, n);
        c->sh->count++;
        n->uses = 1;
        n->expire = pt_time_sec + c->inactive;
    }
    c->sh->size += fs_size - n->fs_size;
    n->fs_size = fs_size;
    n->valid_sec = valid_sec;
    n->exists = 1;
    if (n->lock_pid == getpid() && n->lock_id == lock_id)
        n->lock_pid = 0;
done:
    pt_shmtx_unlock(&c->sp->mutex);
    return rc;
}

void pt_cache_set_stale(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                        uint32_t updating_sec, uint32_t error_sec)
{
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = find_locked(c->sh, md5);
    if (n) {
        n->updating_sec = updating_sec;
        n->error_sec = error_sec;
    }
    pt_shmtx_unlock(&c->sp->mutex);
}

void pt_cache_refresh(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN], uint32_t lock_id,
                      int64_t valid_sec)
{
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = find_locked(c->sh, md5);
    if (n) {
        if (n->exists)
            n->valid_sec = valid_sec;
        if (n->lock_pid == getpid() && n->lock_id == lock_id)
            n->lock_pid = 0;
    }
    pt_shmtx_unlock(&c->sp->mutex);
}

void pt_cache_invalidate(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN])
{
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = find_locked(c->sh, md5);
    if (n) {
        c->sh->size -= n->fs_size;
        n->fs_size = 0;
        n->exists = 0;
        n->valid_sec = 0;
    }
    pt_shmtx_unlock(&c->sp->mutex);
}

int pt_cache_add_loaded(pt_cache_t *c, const unsigned char md5[PT_CACHE_KEY_LEN],
                        int64_t valid_sec, int64_t fs_size, int64_t now_sec)
{
    int rc = 0;
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_node_t *n = find_locked(c->sh, md5);
    if (n != NULL) {
        rc = 1;                         /* requests got there first */
        goto done;
    }
    n = pt_slab_calloc_locked(c->sp, sizeof(*n));
    if (n == NULL) {
        rc = -1;
        goto done;
    }
    memcpy(n->key, md5, PT_CACHE_KEY_LEN);
    size_t b = bucket_of(c->sh, md5);
    n->hnext = c->sh->buckets[b];
    c->sh->buckets[b] = n;
    n->qprev = n->qnext = n;
    /* found files are the least recent of all */
    n->qprev = c->sh->queue.qprev;
    n->qnext = &c->sh->queue;
    c->sh->queue.qprev->qnext = n;
    c->sh->queue.qprev = n;
    c->sh->count++;
    n->valid_sec = valid_sec;
    n->fs_size = fs_size;
    n->exists = 1;
    n->expire = now_sec + c->inactive;
    c->sh->size += fs_size;
done:
    pt_shmtx_unlock(&c->sp->mutex);
    return rc;
}

unsigned pt_cache_manage(pt_cache_t *c, int64_t now_ms, unsigned max_files)
{
    unsigned char victims[64][PT_CACHE_KEY_LEN];
    unsigned nv = 0, removed = 0;
    int64_t now = now_ms / 1000;

    if (max_files > 64)
        max_files = 64;
    pt_shmtx_lock(&c->sp->mutex);
    pt_cache_sh_t *sh = c->sh;
    pt_cache_node_t *n = sh->queue.qprev;
    while (n != &sh->queue && nv < max_files) {
        pt_cache_node_t *prev = n->qprev;
        int old = n->expire <= now;
        int big = c->max_size > 0 && sh->size > c->max_size;
        if (!old && !big)
            break;                      /* the queue is in use order */
        if (n->lock_pid == 0) {
            if (n->exists)
                memcpy(victims[nv++], n->key, PT_CACHE_KEY_LEN);
            free_node_locked(c, n);
        }
        n = prev;
    }
    pt_shmtx_unlock(&c->sp->mutex);
    for (unsigned i = 0; i < nv; i++) {
        unlink_entry(c, victims[i]);
        removed++;
    }
    return removed;
}

int pt_cache_take_lease(pt_cache_t *c, int64_t now_ms, int64_t period_ms, int release)
{
    pid_t me = getpid();
    int mine = 0;
    pt_cache_sh_t *sh = c->sh;

    pt_shmtx_lock(&c->sp->mutex);
    if (release) {
        if (sh->mgr_pid == me) {
            sh->mgr_pid = 0;
            sh->mgr_lease = 0;
        }
    } else if (sh->mgr_pid == me || sh->mgr_pid == 0 || now_ms > sh->mgr_lease
               || (kill(sh->mgr_pid, 0) != 0 && errno == ESRCH)) {
        sh->mgr_pid = me;
        sh->mgr_lease = now_ms + 3 * period_ms + 1000;
        mine = 1;
    }
    pt_shmtx_unlock(&c->sp->mutex);
    return mine;
}

/* ------------------------------------------------------------------------ */
/* The loader */

static int hex_to_md5(const char *name, unsigned char md5[PT_CACHE_KEY_LEN])
{
    for (int i = 0; i < 32; i++) {
        char ch = name[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return -1;
    }
    if (name[32] != '\0')
        return -1;
    for (int i = 0; i < PT_CACHE_KEY_LEN; i++) {
        int hi = name[2 * i] <= '9' ? name[2 * i] - '0' : name[2 * i] - 'a' + 10;
        int lo = name[2 * i + 1] <= '9' ? name[2 * i + 1] - '0' : name[2 * i + 1] - 'a' + 10;
        md5[i] = (unsigned char) (hi << 4 | lo);
    }
    return 0;
}

static unsigned load_file(pt_cache_t *c, const char *path, const char *name, int64_t now_ms)
{
    unsigned char md5[PT_CACHE_KEY_LEN];
    pt_cache_file_header_t h;
    struct stat st;

    if (hex_to_md5(name, md5) != 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    ssize_t n = pread(fd, &h, sizeof(h), 0);
    int ok = n == (ssize_t) sizeof(h) && fstat(fd, &st) == 0
             && memcmp(h.magic, PT_CACHE_MAGIC, 8) == 0
             && memcmp(h.md5, md5, PT_CACHE_KEY_LEN) == 0
             && (int64_t) sizeof(h) + h.key_len + h.head_len + h.body_len == (int64_t) st.st_size;
    close(fd);
    if (!ok) {
        pt_log_error(PT_LOG_WARN, c->cycle ? c->cycle->log : NULL, 0,
                     "cache file \"%s\" is invalid: removed", path);
        (void) unlink(path);
        return 0;
    }
    if (pt_cache_add_loaded(c, md5, h.valid_sec, (int64_t) st.st_size, now_ms / 1000) != 0)
        return 0;
    if (h.updating_sec || h.error_sec)
        pt_cache_set_stale(c, md5, h.updating_sec, h.error_sec);
    return 1;
}

static unsigned load_dir(pt_cache_t *c, char *path, size_t len, unsigned depth, int64_t now_ms)
{
    unsigned count = 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t nl = strlen(nm);
        if (nm[0] == '.' && (nl == 1 || (nl == 2 && nm[1] == '.')))
            continue;
        if (len + 1 + nl + 1 > 4096)
            continue;
        path[len] = '/';
        memcpy(path + len + 1, nm, nl + 1);
        if (depth < c->nlevels) {
            if (nl == c->levels[depth])
                count += load_dir(c, path, len + 1 + nl, depth + 1, now_ms);
        } else if (nm[0] == '.' && strstr(nm, ".tmp") != NULL) {
            /* a fill that never finished (an old one: not one running now) */
            struct stat st;
            if (lstat(path, &st) == 0 && st.st_mtime < now_ms / 1000 - 600)
                (void) unlink(path);
        } else if (nl == 32) {
            count += load_file(c, path, nm, now_ms);
        }
        path[len] = '\0';
    }
    closedir(d);
    return count;
}

unsigned pt_cache_load(pt_cache_t *c, int64_t now_ms)
{
    char path[4096];
    if (c->path.len >= sizeof(path))
        return 0;
    memcpy(path, c->path.data, c->path.len);
    path[c->path.len] = '\0';
    return load_dir(c, path, c->path.len, 0, now_ms);
}
