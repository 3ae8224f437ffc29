/* TLS sessions: ssl_session_cache (off | none | builtin[:size] |
 * shared:NAME:SIZE), ssl_session_timeout, ssl_session_tickets and
 * ssl_session_ticket_key files.
 *
 * The shared cache lives in a shm zone (slab allocator): a hash table of
 * sessions keyed by session id plus an expiry queue, oldest first. Any worker
 * stores and finds sessions there, so a client resumes wherever its next
 * connection lands. When the zone is full the oldest sessions go first.
 *
 * Ticket keys: the first key of the server encrypts new tickets, every key
 * decrypts; a ticket made with a key other than the first is renewed (the
 * rotation order of nginx: put the new key first, keep the old ones after it
 * until their tickets have expired). Machines sharing the files accept each
 * other's tickets. */
#include "tls.h"

#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "../config/cycle.h"
#include "../core/time.h"
#include "../http/core.h"

#define MAX_DER 4096

typedef struct sess_node_s sess_node_t;
struct sess_node_s {
    sess_node_t   *hnext;
    sess_node_t   *prev, *next;      /* expiry queue */
    time_t         expire;
    unsigned       id_len;
    unsigned       der_len;
    unsigned char  id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    unsigned char  der[];
};

typedef struct {
    sess_node_t  **buckets;
    unsigned       nbuckets;
    uint64_t       stored, evicted;
    sess_node_t    queue;            /* sentinel: next = oldest (last: sess_node_t
                                      * ends with a flexible array, which clang
                                      * accepts only at the end of a struct) */
} sess_cache_t;

static int tag;                       /* zone owner tag */

/* ---- config ---------------------------------------------------------------- */

const char *pt__tls_session_cache_set(pt_conf_t *cf, pt_tls_srv_conf_t *sscf)
{
    pt_str_t *a = cf->args->elts;

    if (sscf->session_cache != PT_CONF_UNSET)
        return "is duplicate";
    sscf->builtin_size = -1;
    sscf->shm_zone = NULL;
    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t *v = &a[i];
        if (pt_str_eq_lit(v, "off")) {
            sscf->session_cache = PT_TLS_CACHE_OFF;
            continue;
        }
        if (pt_str_eq_lit(v, "none")) {
            sscf->session_cache = PT_TLS_CACHE_NONE;
            continue;
        }
        if (pt_str_eq_lit(v, "builtin")) {
            sscf->builtin_size = 0;
            continue;
        }
        if (v->len > 8 && memcmp(v->data, "builtin:", 8) == 0) {
            int64_t n = pt_atoi64(v->data + 8, v->len - 8);
            if (n <= 0)
                goto invalid;
            sscf->builtin_size = n;
            continue;
        }
        if (v->len > 7 && memcmp(v->data, "shared:", 7) == 0) {
            char *name = v->data + 7;
            char *colon = memchr(name, ':', v->len - 7);
            if (colon == NULL || colon == name)
                goto invalid;
            pt_str_t zn = { (size_t) (colon - name), name };
            pt_str_t sz = { v->len - 7 - zn.len - 1, colon + 1 };
            int64_t size = pt_conf_parse_size(&sz);
            if (size < 0)
                goto invalid;
            if (size < 8 * 4096) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "session cache \"%s\" is too small", v->data);
                return PT_CONF_ERROR;
            }
            sscf->shm_zone = pt_shm_zone_add(cf, &zn, (size_t) size, &tag);
            if (sscf->shm_zone == NULL)
                return PT_CONF_ERROR;
            continue;
        }
        goto invalid;
    }
    if (sscf->shm_zone || sscf->builtin_size >= 0)
        sscf->session_cache = PT_TLS_CACHE_NONE + 2;   /* a real cache */
    else if (sscf->session_cache == PT_CONF_UNSET)
        goto invalid;
    if (sscf->session_cache == PT_TLS_CACHE_OFF && cf->args->nelts > 2)
        goto invalid;
    sscf->cache_file = cf->file;
    sscf->cache_line = cf->line;
    return PT_CONF_OK;

invalid:
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid session cache \"%s\"", a[cf->args->nelts - 1].data);
    return PT_CONF_ERROR;
}

/* ---- shm cache ------------------------------------------------------------- */

static int zone_init(pt_shm_zone_t *zone, void *old_data)
{
    pt_slab_pool_t *pool = zone->addr;
    sess_cache_t *sc;

    pool->log_nomem = 0;             /* a full cache evicts: not an error */
    if (pool->data) {                /* kept across a reload */
        zone->data = pool->data;
        return 0;
    }
    sc = pt_slab_calloc(pool, sizeof(*sc));
    if (sc == NULL)
        return -1;
    sc->nbuckets = (unsigned) (zone->size / 2048);
    if (sc->nbuckets < 64)
        sc->nbuckets = 64;
    sc->buckets = pt_slab_calloc(pool, sizeof(sess_node_t *) * sc->nbuckets);
    if (sc->buckets == NULL)
        return -1;
    sc->queue.next = sc->queue.prev = &sc->queue;
    pool->data = sc;
    zone->data = sc;
    return 0;
}

static unsigned bucket_of(sess_cache_t *sc, const unsigned char *id, unsigned len)
{
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < len; i++)
        h = (h ^ id[i]) * 16777619u;
    return h % sc->nbuckets;
}

static void unlink_node(pt_slab_pool_t *pool, sess_cache_t *sc, sess_node_t *n)
{
    sess_node_t **pp = &sc->buckets[bucket_of(sc, n->id, n->id_len)];
    while (*pp && *pp != n)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = n->hnext;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    pt_slab_free_locked(pool, n);
}

/* Drops expired sessions (at most n when n > 0; all when force). */
static void expire(pt_slab_pool_t *pool, sess_cache_t *sc, unsigned n, int force)
{
    time_t now = time(NULL);
    while (sc->queue.next != &sc->queue) {
        sess_node_t *old = sc->queue.next;
        if (!force && old->expire > now)
            break;
        unlink_node(pool, sc, old);
        if (force) {
            sc->evicted++;
            return;          /* one at a time to make room */
        }
        if (n && --n == 0)
            break;
    }
}

static pt_shm_zone_t *zone_of(SSL *ssl)
{
    pt_tls_srv_conf_t *sscf = pt__tls_session_conf(ssl);
    return sscf ? sscf->shm_zone : NULL;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    pt_shm_zone_t *zone = zone_of(ssl);
    unsigned char buf[MAX_DER], *p = buf;
    const unsigned char *id;
    unsigned int id_len;
    int len;

    if (zone == NULL || zone->data == NULL)
        return 0;
    /* TLS 1.3 with stateless tickets: OpenSSL reports each ticket's session
     * here, but resumption decrypts the ticket and never asks the cache
     * (no early data either), so storing it would only cost an encoding and
     * a locked shared-memory insert per ticket, two per full handshake */
    if (SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION
        && !(SSL_get_options(ssl) & SSL_OP_NO_TICKET))
        return 0;
    len = i2d_SSL_SESSION(sess, NULL);
    if (len <= 0 || len > MAX_DER)
        return 0;
    i2d_SSL_SESSION(sess, &p);
    id = SSL_SESSION_get_id(sess, &id_len);
    if (id_len == 0 || id_len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return 0;

    pt_slab_pool_t *pool = zone->addr;
    sess_cache_t *sc = zone->data;
    sess_node_t *n;

    pt_shmtx_lock(&pool->mutex);
    expire(pool, sc, 2, 0);
    n = pt_slab_alloc_locked(pool, sizeof(*n) + (size_t) len);
    while (n == NULL && sc->queue.next != &sc->queue) {
        expire(pool, sc, 0, 1);
        n = pt_slab_alloc_locked(pool, sizeof(*n) + (size_t) len);
    }
    if (n != NULL) {
        unsigned b = bucket_of(sc, id, id_len);
        n->id_len = id_len;
        memcpy(n->id, id, id_len);
        n->der_len = (unsigned) len;
        memcpy(n->der, buf, (size_t) len);
        n->expire = (time_t) (SSL_SESSION_get_time(sess) + SSL_SESSION_get_timeout(sess));
        n->hnext = sc->buckets[b];
        sc->buckets[b] = n;
        n->prev = sc->queue.prev;
        n->next = &sc->queue;
        sc->queue.prev->next = n;
        sc->queue.prev = n;
        sc->stored++;
    }
    pt_shmtx_unlock(&pool->mutex);
    return 0;
}

static SSL_SESSION *on_get_session(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    pt_shm_zone_t *zone = zone_of(ssl);
    unsigned char buf[MAX_DER];
    unsigned der_len = 0;

    *copy = 0;
    if (zone == NULL || zone->data == NULL || len <= 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return NULL;
    pt_slab_pool_t *pool = zone->addr;
    sess_cache_t *sc = zone->data;
    pt_shmtx_lock(&pool->mutex);
    for (sess_node_t *n = sc->buckets[bucket_of(sc, id, (unsigned) len)]; n; n = n->hnext) {
        if (n->id_len == (unsigned) len && memcmp(n->id, id, (size_t) len) == 0) {
            if (n->expire > time(NULL)) {
                der_len = n->der_len;
                memcpy(buf, n->der, der_len);
            } else {
                unlink_node(pool, sc, n);
            }
            break;
        }
    }
    pt_shmtx_unlock(&pool->mutex);
    if (der_len == 0)
        return NULL;
    const unsigned char *p = buf;
    return d2i_SSL_SESSION(NULL, &p, der_len);
}

static void on_remove_session(SSL_CTX *ctx, SSL_SESSION *sess)
{
    pt_tls_srv_conf_t *sscf = SSL_CTX_get_app_data(ctx);
    pt_shm_zone_t *zone = sscf ? sscf->shm_zone : NULL;
    const unsigned char *id;
    unsigned int len;

    if (zone == NULL || zone->data == NULL)
        return;
    id = SSL_SESSION_get_id(sess, &len);
    pt_slab_pool_t *pool = zone->addr;
    sess_cache_t *sc = zone->data;
    pt_shmtx_lock(&pool->mutex);
    for (sess_node_t *n = sc->buckets[bucket_of(sc, id, len)]; n; n = n->hnext) {
        if (n->id_len == len && memcmp(n->id, id, len) == 0) {
            unlink_node(pool, sc, n);
            break;
        }
    }
    pt_shmtx_unlock(&pool->mutex);
}

/* ---- tickets --------------------------------------------------------------- */

static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    pt_tls_srv_conf_t *sscf = pt__tls_session_conf(ssl);
    pt_tls_ticket_key_t *keys;
    size_t nkeys, i;
    OSSL_PARAM params[2];

    if (sscf == NULL || sscf->ticket_keys == NULL)
        return 0;
    keys = sscf->ticket_keys->elts;
    nkeys = sscf->ticket_keys->nelts;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (enc) {
        pt_tls_ticket_key_t *k = &keys[0];
        const EVP_CIPHER *cipher = k->size == 48 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
        memcpy(name, k->name, 16);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(cipher)) != 1
            || EVP_EncryptInit_ex(ectx, cipher, NULL, k->aes_key, iv) != 1
            || EVP_MAC_init(hctx, k->hmac_key, k->size == 48 ? 16 : 32, params) != 1)
            return -1;
        return 1;
    }
    for (i = 0; i < nkeys; i++) {
        if (memcmp(name, keys[i].name, 16) == 0)
            break;
    }
    if (i == nkeys)
        return 0;        /* unknown key: full handshake */
    pt_tls_ticket_key_t *k = &keys[i];
    const EVP_CIPHER *cipher = k->size == 48 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
    if (EVP_MAC_init(hctx, k->hmac_key, k->size == 48 ? 16 : 32, params) != 1
        || EVP_DecryptInit_ex(ectx, cipher, NULL, k->aes_key, iv) != 1)
        return -1;
    return i == 0 ? 1 : 2;   /* 2: renew with the current key */
}

/* ---- per context ----------------------------------------------------------- */

int pt__tls_session_cache_init(pt_conf_t *cf, pt_tls_srv_conf_t *sscf)
{
    SSL_CTX *ctx = sscf->ctx;
    long mode;

    /* app data mirrors the ex_data slot for the callbacks above */
    SSL_CTX_set_app_data(ctx, sscf);

    /* TLS 1.3: one ticket per handshake, not OpenSSL's default two. Tickets
     * are stateless and may be used again (no early data, so no single-use
     * rule), so a client making parallel connections can resume them all
     * from one; the second ticket cost ~6% of a full handshake's
     * instructions (session encoding, encryption, a record of its own) and
     * a write(). With ssl_session_tickets off the "ticket" is a session id
     * stored in the cache: one entry per handshake instead of two. */
    SSL_CTX_set_num_tickets(ctx, 1);
    if (!sscf->session_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        if (sscf->shm_zone == NULL && sscf->builtin_size < 0)
            SSL_CTX_set_num_tickets(ctx, 0);
    }
    if (sscf->session_cache == PT_TLS_CACHE_OFF) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        return 0;
    }
    mode = SSL_SESS_CACHE_SERVER;
    if (sscf->shm_zone && sscf->builtin_size < 0)
        mode |= SSL_SESS_CACHE_NO_INTERNAL;
    if (sscf->session_cache == PT_TLS_CACHE_NONE && sscf->shm_zone == NULL
        && sscf->builtin_size < 0)
        mode |= SSL_SESS_CACHE_NO_INTERNAL;
    SSL_CTX_set_session_cache_mode(ctx, mode | SSL_SESS_CACHE_NO_AUTO_CLEAR);
    if (sscf->builtin_size >= 0)
        SSL_CTX_sess_set_cache_size(ctx, sscf->builtin_size ? sscf->builtin_size : 20480);
    if (sscf->shm_zone) {
        sscf->shm_zone->init = zone_init;
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
        SSL_CTX_sess_set_get_cb(ctx, on_get_session);
        SSL_CTX_sess_set_remove_cb(ctx, on_remove_session);
    }
    return 0;
}

int pt__tls_ticket_keys_load(pt_conf_t *cf, pt_tls_srv_conf_t *sscf)
{
    if (sscf->ticket_keys == NULL || !sscf->session_tickets)
        return 0;
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(sscf->ctx, on_ticket_key) != 1) {
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                           "SSL_CTX_set_tlsext_ticket_key_evp_cb() failed");
        return -1;
    }
    return 0;
}
