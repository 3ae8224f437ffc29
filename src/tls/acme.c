/* Automatic HTTPS: the "http_acme" module.
 *
 * Configuration (the shape of nginx's ngx_http_acme_module):
 *   http {
 *       acme_issuer NAME { uri URL; contact MAILTO; state_path DIR;
 *                          accept_terms_of_service; ssl_trusted_certificate FILE;
 *                          ssl_verify on|off; }
 *       acme_shared_zone zone=NAME:SIZE;
 *       server { acme_certificate NAME [identifiers...];
 *                ssl_certificate $acme_certificate;
 *                ssl_certificate_key $acme_certificate_key; }
 *   }
 *
 * How it runs:
 *  - At configuration time (pt_acme_use_cert, called by the TLS module for
 *    each server using $acme_certificate) the certificate and key kept in the
 *    issuer's state_path are loaded into the server's SSL_CTX; when there are
 *    none (or they do not load), a self-signed placeholder for the first
 *    identifier is used, so the TLS port answers handshakes from the start.
 *  - After each committed cycle the master forks one helper process
 *    (init_master). It runs the ACME client blocking, with its own HTTPS
 *    connections (OpenSSL BIO/SSL), for every certificate that is missing,
 *    does not cover its identifiers, or expires within the renewal window.
 *    HTTP-01 key authorizations go into a shared-memory table that every
 *    worker reads: a POST_READ handler answers
 *    /.well-known/acme-challenge/TOKEN in any server.
 *  - When it stored a new certificate, the helper sends SIGHUP to the master:
 *    a graceful reload loads it (no connection is dropped) and the new cycle
 *    gets a new helper, which finds the certificate valid and sleeps until the
 *    renewal time. Failures are logged (HTTP status and the ACME problem
 *    document) and retried with exponential back-off; workers never wait on
 *    the helper.
 */
#include "acme.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../config/cycle.h"
#include "../core/time.h"
#include "../http/request.h"
#include "acme_util.h"

extern pt_module_t pt_http_acme_module;
extern pt_module_t pt_core_module;           /* its conf: pt_core_conf_t (cycle.h) */

#define CHALLENGE_PREFIX   "/.well-known/acme-challenge/"
#define SLOTS              64
#define TOKEN_MAX          128
#define KEYAUTH_MAX        256
#define DEFAULT_ZONE_SIZE  (256 * 1024)
#define RENEW_BEFORE       (30 * 86400)
#define RETRY_MIN          2          /* seconds */
#define RETRY_MAX          3600
#define VALIDATION_RETRY   300        /* after a failed validation */
#define IO_TIMEOUT         30         /* seconds, each network operation */
#define POLL_TRIES         60         /* authorization / order polling, 1 s apart */
#define RESP_MAX           (1 << 20)

/* ---- configuration types -------------------------------------------------- */

typedef struct {
    pt_str_t    name;
    pt_str_t    uri;
    pt_array_t *contacts;         /* pt_str_t, or NULL */
    pt_str_t    account_key;      /* a PEM file; empty: generated in state_path */
    pt_str_t    state_path;
    pt_str_t    trusted;          /* ssl_trusted_certificate */
    int         verify;           /* ssl_verify (on) */
    int         tos;              /* accept_terms_of_service */
    const char *file;
    unsigned    line;
} acme_issuer_t;

typedef struct {
    acme_issuer_t *issuer;
    pt_array_t    *ids;           /* pt_str_t, lowercased */
    pt_str_t       crt_path, key_path;
    /* helper state */
    time_t         next;          /* when to look again */
    time_t         backoff;
} acme_cert_t;

typedef struct {
    pt_array_t     issuers;       /* acme_issuer_t * */
    pt_array_t     certs;         /* acme_cert_t * */
    pt_shm_zone_t *zone;
} acme_main_conf_t;

typedef struct {
    pt_str_t     issuer;          /* empty: no acme_certificate */
    pt_array_t  *ids;             /* given identifiers (pt_str_t) or NULL */
    acme_cert_t *cert;            /* resolved (lazily, at merge time) */
    const char  *file;
    unsigned     line;
} acme_srv_conf_t;

/* The shared table of pending HTTP-01 challenges. Helpers write (two may
 * overlap for a moment around a reload), workers read. A helper claims a
 * free slot (state 0 -> 2 by CAS), bumps gen, fills it and publishes it
 * (state 1, release); it frees it again (1 -> 0). A reader copies a
 * published slot and keeps the copy only if gen and state did not change
 * meanwhile (a seqlock), so it never pairs a token with another token's key
 * authorization. */
enum { SLOT_FREE = 0, SLOT_PUBLISHED = 1, SLOT_WRITING = 2 };

typedef struct {
    _Atomic unsigned state;
    _Atomic unsigned gen;
    pid_t owner;                  /* the helper that published it */
    char token[TOKEN_MAX];
    char keyauth[KEYAUTH_MAX];
} acme_slot_t;

typedef struct {
    acme_slot_t slots[SLOTS];
} acme_shm_t;

/* ---- directives --------------------------------------------------------------- */

static pt_str_t *arg(pt_conf_t *cf, size_t i)
{
    return &((pt_str_t *) cf->args->elts)[i];
}

static const char *issuer_line(pt_conf_t *cf, void *data)
{
    acme_issuer_t *is = data;
    pt_str_t *a = cf->args->elts;
    size_t n = cf->args->nelts;
    const char *name = a[0].data;

#define NARGS(k) do { if (n != (k) + 1) { \
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of arguments in \"%s\" directive", name); \
        return PT_CONF_ERROR; } } while (0)

    if (strcmp(name, "uri") == 0) {
        NARGS(1);
        if (strncmp(a[1].data, "https://", 8) != 0 && strncmp(a[1].data, "http://", 7) != 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid \"uri\" \"%s\": https:// expected", a[1].data);
            return PT_CONF_ERROR;
        }
        is->uri = a[1];
    } else if (strcmp(name, "contact") == 0) {
        NARGS(1);
        if (is->contacts == NULL) {
            is->contacts = pt_array_create(cf->pool, 2, sizeof(pt_str_t));
            if (is->contacts == NULL)
                return "out of memory";
        }
        pt_str_t *c = pt_array_push(is->contacts);
        if (c == NULL)
            return "out of memory";
        *c = a[1];
    } else if (strcmp(name, "state_path") == 0) {
        NARGS(1);
        if (strcmp(a[1].data, "off") == 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "\"state_path off\" is not supported: the "
                          "certificates are kept in files");
            return PT_CONF_ERROR;
        }
        is->state_path = a[1];
        if (pt_conf_full_name(cf->cycle, &is->state_path, 0) != 0)
            return PT_CONF_ERROR;
    } else if (strcmp(name, "accept_terms_of_service") == 0) {
        NARGS(0);
        is->tos = 1;
    } else if (strcmp(name, "ssl_trusted_certificate") == 0) {
        NARGS(1);
        is->trusted = a[1];
        if (pt_conf_full_name(cf->cycle, &is->trusted, 1) != 0)
            return PT_CONF_ERROR;
        if (access(is->trusted.data, R_OK) != 0) {
            pt_conf_error(cf, PT_LOG_EMERG, errno, "cannot read \"ssl_trusted_certificate\" "
                          "\"%s\"", is->trusted.data);
            return PT_CONF_ERROR;
        }
    } else if (strcmp(name, "ssl_verify") == 0) {
        NARGS(1);
        if (strcmp(a[1].data, "on") == 0)
            is->verify = 1;
        else if (strcmp(a[1].data, "off") == 0)
            is->verify = 0;
        else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\" in \"ssl_verify\" directive, "
                          "it must be \"on\" or \"off\"", a[1].data);
            return PT_CONF_ERROR;
        }
    } else if (strcmp(name, "account_key") == 0) {
        NARGS(1);
        if (strcmp(a[1].data, "ecdsa") == 0 || strcmp(a[1].data, "ecdsa:256") == 0) {
            is->account_key.len = 0;
        } else if (strncmp(a[1].data, "ecdsa:", 6) == 0 || strncmp(a[1].data, "rsa", 3) == 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "\"account_key %s\" is not supported, only "
                          "ecdsa:256 (ES256) keys", a[1].data);
            return PT_CONF_ERROR;
        } else {
            is->account_key = a[1];
            if (pt_conf_full_name(cf->cycle, &is->account_key, 1) != 0)
                return PT_CONF_ERROR;
            if (access(is->account_key.data, R_OK) != 0) {
                pt_conf_error(cf, PT_LOG_EMERG, errno, "cannot read \"account_key\" \"%s\"",
                              is->account_key.data);
                return PT_CONF_ERROR;
            }
        }
    } else if (strcmp(name, "challenge") == 0) {
        NARGS(1);
        if (strcmp(a[1].data, "http-01") != 0 && strcmp(a[1].data, "http") != 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "\"challenge %s\" is not supported, only http-01",
                          a[1].data);
            return PT_CONF_ERROR;
        }
    } else if (strcmp(name, "external_account_key") == 0 || strcmp(name, "preferred_chain") == 0
               || strcmp(name, "profile") == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" is not supported in \"acme_issuer\"", name);
        return PT_CONF_ERROR;
    } else {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "unknown directive \"%s\" in \"acme_issuer\"", name);
        return PT_CONF_ERROR;
    }
#undef NARGS
    return PT_CONF_OK;
}

static const char *acme_issuer_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    acme_main_conf_t *amcf = conf;
    pt_str_t name = *arg(cf, 1);
    acme_issuer_t **all = amcf->issuers.elts;

    for (size_t i = 0; i < amcf->issuers.nelts; i++) {
        if (pt_str_eq(&all[i]->name, &name))
            return "is duplicate";
    }
    acme_issuer_t *is = pt_pcalloc(cf->pool, sizeof(*is));
    acme_issuer_t **slot = pt_array_push(&amcf->issuers);
    if (is == NULL || slot == NULL)
        return "out of memory";
    *slot = is;
    is->name = name;
    is->verify = 1;
    is->file = cf->file;
    is->line = cf->line;

    pt_conf_handler_cb saved_handler = cf->handler;
    void *saved_data = cf->handler_data;
    cf->handler = issuer_line;
    cf->handler_data = is;
    const char *rv = pt_conf_parse_block(cf);
    cf->handler = saved_handler;
    cf->handler_data = saved_data;
    if (rv != PT_CONF_OK)
        return rv;

    if (is->uri.len == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"uri\" is missing in acme_issuer \"%s\"", name.data);
        return PT_CONF_ERROR;
    }
    if (is->state_path.len == 0) {
        char buf[300];
        snprintf(buf, sizeof(buf), "acme_%s", name.data);
        pt_str_t p = { strlen(buf), buf };
        if (pt_pstrdup(cf->pool, &is->state_path, &p) != 0)
            return "out of memory";
        if (pt_conf_full_name(cf->cycle, &is->state_path, 0) != 0)
            return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static const char *acme_shared_zone_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    acme_main_conf_t *amcf = conf;
    pt_str_t *v = arg(cf, 1);

    if (amcf->zone)
        return "is duplicate";
    if (v->len <= 5 || strncmp(v->data, "zone=", 5) != 0)
        goto invalid;
    char *colon = strchr(v->data + 5, ':');
    if (colon == NULL || colon == v->data + 5)
        goto invalid;
    pt_str_t name = { (size_t) (colon - v->data - 5), v->data + 5 };
    pt_str_t sz = { strlen(colon + 1), colon + 1 };
    int64_t size = pt_conf_parse_size(&sz);
    if (size < (int64_t) (sizeof(acme_shm_t) + 16384)) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "zone \"%.*s\" is too small", (int) name.len, name.data);
        return PT_CONF_ERROR;
    }
    amcf->zone = pt_shm_zone_add(cf, &name, (size_t) size, &pt_http_acme_module);
    return amcf->zone ? PT_CONF_OK : PT_CONF_ERROR;

invalid:
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", v->data);
    return PT_CONF_ERROR;
}

static const char *acme_certificate_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    acme_srv_conf_t *ascf = conf;
    if (ascf->issuer.len)
        return "is duplicate";
    ascf->issuer = *arg(cf, 1);
    ascf->file = cf->file;
    ascf->line = cf->line;
    for (size_t i = 2; i < cf->args->nelts; i++) {
        pt_str_t *id = arg(cf, i);
        if (strncmp(id->data, "key=", 4) == 0) {
            if (strcmp(id->data, "key=ecdsa") == 0 || strcmp(id->data, "key=ecdsa:256") == 0)
                continue;
            pt_conf_error(cf, PT_LOG_EMERG, 0, "unsupported \"%s\" in \"acme_certificate\" "
                          "(only key=ecdsa:256)", id->data);
            return PT_CONF_ERROR;
        }
        if (memchr(id->data, '*', id->len) || id->data[0] == '~' || memchr(id->data, '/', id->len)) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid identifier \"%s\" in \"acme_certificate\" "
                          "(wildcards need the dns-01 challenge, not supported)", id->data);
            return PT_CONF_ERROR;
        }
        if (ascf->ids == NULL) {
            ascf->ids = pt_array_create(cf->pool, 4, sizeof(pt_str_t));
            if (ascf->ids == NULL)
                return "out of memory";
        }
        pt_str_t *p = pt_array_push(ascf->ids);
        if (p == NULL)
            return "out of memory";
        *p = *id;
        for (size_t k = 0; k < p->len; k++)
            if (p->data[k] >= 'A' && p->data[k] <= 'Z')
                p->data[k] = (char) (p->data[k] + 32);
    }
    return PT_CONF_OK;
}

static const pt_command_t acme_commands[] = {
    { "acme_issuer", PT_CTX_HTTP, PT_CONF_BLOCK, 1, 1, acme_issuer_block, PT_CONF_HTTP_MAIN, 0, NULL },
    { "acme_shared_zone", PT_CTX_HTTP, 0, 1, 1, acme_shared_zone_cmd, PT_CONF_HTTP_MAIN, 0, NULL },
    { "acme_certificate", PT_CTX_SRV, 0, 1, PT_ARGS_ANY, acme_certificate_cmd, PT_CONF_HTTP_SRV,
      0, NULL },
    PT_COMMAND_END
};

static void *create_main_conf(pt_conf_t *cf)
{
    acme_main_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c == NULL || pt_array_init(&c->issuers, cf->pool, 2, sizeof(acme_issuer_t *)) != 0
        || pt_array_init(&c->certs, cf->pool, 4, sizeof(acme_cert_t *)) != 0)
        return NULL;
    return c;
}

static int zone_init(pt_shm_zone_t *zone, void *old_data)
{
    if (old_data) {
        zone->data = old_data;
        return 0;
    }
    acme_shm_t *t = pt_slab_calloc(zone->addr, sizeof(acme_shm_t));
    if (t == NULL)
        return -1;
    zone->data = t;
    return 0;
}

static const char *init_main_conf(pt_conf_t *cf, void *conf)
{
    acme_main_conf_t *amcf = conf;
    if (amcf->issuers.nelts == 0)
        return PT_CONF_OK;
    if (amcf->zone == NULL) {
        pt_str_t name = pt_string("acme_shared");
        amcf->zone = pt_shm_zone_add(cf, &name, DEFAULT_ZONE_SIZE, &pt_http_acme_module);
        if (amcf->zone == NULL)
            return PT_CONF_ERROR;
    }
    amcf->zone->init = zone_init;
    return PT_CONF_OK;
}

static void *create_srv_conf(pt_conf_t *cf)
{
    return pt_pcalloc(cf->pool, sizeof(acme_srv_conf_t));
}

/* A server_name usable as an identifier: ".x.test" counts as "x.test";
 * wildcards and regular expressions do not (http-01 cannot prove them). */
static int plain_name(const pt_str_t *n)
{
    if (n->len == 0 || n->data[0] == '~' || memchr(n->data, '*', n->len)
        || (n->data[0] == '.' && n->len == 1))
        return 0;
    if (n->len == 1 && n->data[0] == '_')
        return 0;
    return 1;
}

/* The acme_cert_t of a server: made once, shared by servers that ask for the
 * same identifiers from the same issuer. NULL when the server has no
 * acme_certificate; (acme_cert_t *) -1 after an error (logged). */
static acme_cert_t *server_cert(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf)
{
    acme_srv_conf_t *ascf = cscf->ctx->srv_conf[pt_http_acme_module.index];
    acme_main_conf_t *amcf = cscf->ctx->main_conf[pt_http_acme_module.index];
    acme_cert_t *bad = (acme_cert_t *) -1;

    if (ascf->cert)
        return ascf->cert;
    if (ascf->issuer.len == 0)
        return NULL;

    acme_issuer_t *is = NULL, **iss = amcf->issuers.elts;
    for (size_t i = 0; i < amcf->issuers.nelts; i++) {
        if (pt_str_eq(&iss[i]->name, &ascf->issuer))
            is = iss[i];
    }
    if (is == NULL) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "acme issuer \"%s\" is not defined in %s:%u",
                     ascf->issuer.data, ascf->file, ascf->line);
        return bad;
    }

    pt_array_t *ids = ascf->ids;
    if (ids == NULL) {
        pt_http_server_name_t *sn = cscf->server_names.elts;
        ids = pt_array_create(cf->pool, 4, sizeof(pt_str_t));
        if (ids == NULL)
            return bad;
        for (size_t i = 0; i < cscf->server_names.nelts; i++) {
            if (!plain_name(&sn[i].name))
                continue;
            pt_str_t *p = pt_array_push(ids);
            if (p == NULL)
                return bad;
            *p = sn[i].name;
            if (p->data[0] == '.') {
                p->data++;
                p->len--;
            }
            for (size_t k = 0; k + 1 < ids->nelts; k++) {
                if (pt_str_eq(&((pt_str_t *) ids->elts)[k], p)) {
                    ids->nelts--;     /* "x.test .x.test" */
                    break;
                }
            }
        }
    }
    for (size_t i = 0; i < ids->nelts; i++) {
        pt_str_t *n = &((pt_str_t *) ids->elts)[i];
        if (n->len == 0 || n->len > 253 || n->data[0] == '.' || memchr(n->data, '/', n->len)
            || memchr(n->data, '\\', n->len) || memchr(n->data, ':', n->len)) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0, "invalid identifier \"%.*s\" for "
                         "\"acme_certificate\" in %s:%u", (int) n->len, n->data, ascf->file,
                         ascf->line);
            return bad;
        }
    }
    if (ids->nelts == 0) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "no identifiers for \"acme_certificate\" in %s:%u "
                     "(give them, or a server_name without wildcards)", ascf->file, ascf->line);
        return bad;
    }
    pt_str_t *idv = ids->elts;

    /* the same certificate asked for by another server? */
    acme_cert_t **all = amcf->certs.elts;
    for (size_t i = 0; i < amcf->certs.nelts; i++) {
        pt_str_t *o = all[i]->ids->elts;
        if (all[i]->issuer != is || all[i]->ids->nelts != ids->nelts)
            continue;
        size_t k = 0;
        while (k < ids->nelts && pt_str_eq(&o[k], &idv[k]))
            k++;
        if (k == ids->nelts)
            return ascf->cert = all[i];
        if (pt_str_eq(&o[0], &idv[0])) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0, "\"acme_certificate\" in %s:%u names \"%s\" "
                         "first, as another one with other identifiers", ascf->file, ascf->line,
                         idv[0].data);
            return bad;
        }
    }

    acme_cert_t *ac = pt_pcalloc(cf->pool, sizeof(*ac));
    acme_cert_t **slot = pt_array_push(&amcf->certs);
    if (ac == NULL || slot == NULL)
        return bad;
    *slot = ac;
    ac->issuer = is;
    ac->ids = ids;
    size_t n = is->state_path.len + idv[0].len + 8;
    ac->crt_path.data = pt_pnalloc(cf->pool, n);
    ac->key_path.data = pt_pnalloc(cf->pool, n);
    if (ac->crt_path.data == NULL || ac->key_path.data == NULL)
        return bad;
    ac->crt_path.len = (size_t) snprintf(ac->crt_path.data, n, "%s/%s.crt",
                                         is->state_path.data, idv[0].data);
    ac->key_path.len = (size_t) snprintf(ac->key_path.data, n, "%s/%s.key",
                                         is->state_path.data, idv[0].data);
    return ascf->cert = ac;
}

static const char *merge_srv_conf(pt_conf_t *cf, void *prev, void *conf)
{
    pt_http_core_srv_conf_t *cscf = cf->http_ctx->srv_conf[pt_http_core_module.index];
    acme_srv_conf_t *ascf = conf;
    (void) prev;
    if (ascf->issuer.len == 0)
        return PT_CONF_OK;
    return server_cert(cf, cscf) == (acme_cert_t *) -1 ? PT_CONF_ERROR : PT_CONF_OK;
}

/* ---- certificates on disk ------------------------------------------------------- */

int pt_acme_is_cert_var(const pt_str_t *path)
{
    return pt_str_eq_lit(path, "$acme_certificate");
}

int pt_acme_is_key_var(const pt_str_t *path)
{
    return pt_str_eq_lit(path, "$acme_certificate_key");
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

/* Reads the certificate file: leaf (returned) and the chain (into *chain if
 * not NULL). */
static X509 *read_chain(const char *path, STACK_OF(X509) **chain)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x;
    if (b == NULL)
        return NULL;
    x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (x && chain) {
        *chain = sk_X509_new_null();
        X509 *ca;
        while (*chain && (ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (sk_X509_push(*chain, ca) <= 0)
                X509_free(ca);
        }
    }
    ERR_clear_error();
    BIO_free(b);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return k;
}

/* 0: the stored certificate covers every identifier and is not due for
 * renewal (*due = when it is); 1: present but due (expiring, other names);
 * -1: missing or unreadable. */
static int cert_state(acme_cert_t *ac, time_t now, time_t *due)
{
    X509 *x = read_chain(ac->crt_path.data, NULL);
    EVP_PKEY *k = read_key(ac->key_path.data);
    int rc = -1;

    if (x && k && X509_check_private_key(x, k) == 1) {
        time_t nb = asn1_time(X509_get0_notBefore(x)), na = asn1_time(X509_get0_notAfter(x));
        time_t window = RENEW_BEFORE;
        if (na > nb && (na - nb) / 3 < window)
            window = (na - nb) / 3;     /* short-lived certificates: at 2/3 of the life */
        *due = na - window;
        rc = now < *due ? 0 : 1;
        pt_str_t *id = ac->ids->elts;
        for (size_t i = 0; i < ac->ids->nelts; i++) {
            if (X509_check_host(x, id[i].data, id[i].len, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1)
                rc = 1;
        }
    }
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

static int placeholder(SSL_CTX *ctx, const char *name)
{
    EVP_PKEY *k = pt_acme_key_generate();
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    unsigned char serial[8];
    int ok = 0;

    if (k && x && n && RAND_bytes(serial, sizeof(serial)) == 1) {
        BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
        BN_set_negative(bn, 0);
        ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL
             && X509_set_version(x, 2) == 1
             && X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *) name,
                                           -1, -1, 0) == 1
             && X509_set_subject_name(x, n) == 1 && X509_set_issuer_name(x, n) == 1
             && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL
             && X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) != NULL
             && X509_set_pubkey(x, k) == 1 && X509_sign(x, k, EVP_sha256()) > 0
             && SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_use_PrivateKey(ctx, k) == 1;
        BN_free(bn);
    }
    X509_NAME_free(n);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

int pt_acme_use_cert(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf, pt_ssl_ctx_t *sctx)
{
    SSL_CTX *ctx = sctx;
    acme_cert_t *ac = server_cert(cf, cscf);

    if (ac == (acme_cert_t *) -1)
        return -1;
    if (ac == NULL) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "\"ssl_certificate $acme_certificate\" needs "
                     "\"acme_certificate\" in the server in %s:%u", cscf->file, cscf->line);
        return -1;
    }

    STACK_OF(X509) *chain = NULL;
    X509 *x = read_chain(ac->crt_path.data, &chain);
    EVP_PKEY *k = x ? read_key(ac->key_path.data) : NULL;
    int ok = x && k && X509_check_private_key(x, k) == 1
             && SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_use_PrivateKey(ctx, k) == 1;
    if (ok) {
        SSL_CTX_clear_chain_certs(ctx);
        for (int i = 0; chain && i < sk_X509_num(chain); i++) {
            X509 *ca = sk_X509_value(chain, i);
            if (SSL_CTX_add1_chain_cert(ctx, ca) != 1)
                ok = 0;
        }
    }
    sk_X509_pop_free(chain, X509_free);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    if (ok)
        return 0;

    pt_str_t *id = ac->ids->elts;
    if (!cf->cycle->test_only)
        pt_log_error(PT_LOG_INFO, cf->log, 0, "acme: no certificate for \"%s\" in \"%s\" yet, "
                     "using a self-signed placeholder", id[0].data, ac->issuer->state_path.data);
    if (placeholder(ctx, id[0].data) != 0) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "acme: cannot make a placeholder certificate");
        return -1;
    }
    return 0;
}

/* ---- the challenge responder (workers) ------------------------------------------ */

static int challenge_handler(pt_http_request_t *r)
{
    acme_main_conf_t *amcf = pt_http_get_module_main_conf(r, pt_http_acme_module);
    size_t plen = sizeof(CHALLENGE_PREFIX) - 1;

    if (r->uri.len <= plen || memcmp(r->uri.data, CHALLENGE_PREFIX, plen) != 0
        || amcf->zone == NULL || amcf->zone->data == NULL)
        return PT_DECLINED;
    const char *token = r->uri.data + plen;
    size_t tlen = r->uri.len - plen;
    if (tlen >= TOKEN_MAX)
        return PT_DECLINED;

    acme_shm_t *t = amcf->zone->data;
    for (int i = 0; i < SLOTS; i++) {
        acme_slot_t *s = &t->slots[i];
        char tk[TOKEN_MAX], ka[KEYAUTH_MAX];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_PUBLISHED)
            continue;
        unsigned gen = atomic_load_explicit(&s->gen, memory_order_acquire);
        memcpy(tk, s->token, sizeof(tk));
        memcpy(ka, s->keyauth, sizeof(ka));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->gen, memory_order_relaxed) != gen
            || atomic_load_explicit(&s->state, memory_order_relaxed) != SLOT_PUBLISHED)
            continue;   /* changed while we copied */
        tk[TOKEN_MAX - 1] = ka[KEYAUTH_MAX - 1] = '\0';
        if (strncmp(tk, token, tlen) != 0 || tk[tlen] != '\0')
            continue;
        if (!(r->method & (PT_HTTP_GET | PT_HTTP_HEAD)))
            return 405;
        int rc = pt_http_discard_request_body(r);
        if (rc != PT_OK)
            return rc;
        pt_str_t body = { strlen(ka), ka };
        pt_str_t ctype = pt_string("application/octet-stream");
        /* POST_READ would carry on after PT_OK: finalize here */
        pt_http_finalize_request(r, pt_http_send_response(r, 200, &ctype, &body));
        return PT_DONE;
    }
    return PT_DECLINED;
}

/* ---- the helper process: a blocking HTTPS client ---------------------------------- */

typedef struct {
    int    status;
    char   location[1024];
    char   nonce[256];
    long   retry_after;          /* Retry-After in seconds, 0 when absent */
    char  *body;                 /* malloc'd, NUL-terminated */
    size_t len;
} resp_t;

typedef struct {
    acme_issuer_t *is;
    pt_log_t      *log;
    SSL_CTX       *ssl;
    EVP_PKEY      *key;          /* account key */
    char           thumb[44];
    char           new_nonce[1024], new_account[1024], new_order[1024];
    char           kid[1024];
    char           nonce[256];
    int            ready;        /* directory read, account registered */
    long           not_before;   /* the CA asked for a pause (Retry-After, failed
                                  * validation): seconds, for the next back-off */
} client_t;

static void resp_free(resp_t *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* A blocking TCP connection with I/O timeouts, or -1 (logged). */
static int dial(client_t *c, const pt_acme_url_t *u, const char *url)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    int fd = -1, err = 0;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0) {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: cannot resolve \"%s\" for \"%s\": %s",
                     u->host, url, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = { IO_TIMEOUT, 0 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        pt_log_error(PT_LOG_ERR, c->log, err, "acme: cannot connect to \"%s:%s\" for \"%s\"",
                     u->host, u->port, url);
    return fd;
}

static void copy_header(const char *head, size_t hlen, const char *name, char *out, size_t size)
{
    size_t n;
    const char *v = pt_acme_header(head, hlen, name, &n);
    if (v == NULL || n >= size)
        return;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* One request on a new connection ("Connection: close"). Returns 0 with
 * r filled (any status), -1 on a transport error (logged). */
static int http_request(client_t *c, const char *method, const char *url, const char *ctype,
                        const char *body, resp_t *r)
{
    pt_acme_url_t u;
    SSL *ssl = NULL;
    int fd = -1, rc = -1;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    size_t blen = body ? strlen(body) : 0;

    memset(r, 0, sizeof(*r));
    pt_time_update();     /* the log's clock: this process has no event loop */
    if (pt_acme_parse_url(url, &u) != 0) {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: invalid URL \"%s\"", url);
        return -1;
    }
    fd = dial(c, &u, url);
    if (fd < 0)
        return -1;
    if (u.tls) {
        ssl = SSL_new(c->ssl);
        if (ssl == NULL)
            goto done;
        struct in6_addr a6;
        struct in_addr a4;
        int ip = inet_pton(AF_INET, u.host, &a4) == 1 || inet_pton(AF_INET6, u.host, &a6) == 1;
        if (!ip)
            SSL_set_tlsext_host_name(ssl, u.host);
        if (c->is->verify) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
            if (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, u.host) != 1
                   : SSL_set1_host(ssl, u.host) != 1)
                goto done;
        }
        SSL_set_fd(ssl, fd);
        ERR_clear_error();
        if (SSL_connect(ssl) != 1) {
            long v = SSL_get_verify_result(ssl);
            unsigned long e = ERR_get_error();
            char eb[256];
            ERR_error_string_n(e, eb, sizeof(eb));
            pt_log_error(PT_LOG_ERR, c->log, 0, "acme: TLS handshake with \"%s:%s\" failed: %s%s%s",
                         u.host, u.port, e ? eb : "connection closed",
                         v != X509_V_OK ? ", certificate: " : "",
                         v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
            goto done;
        }
    }

    char head[2048];
    int hn = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUser-Agent: portico-acme\r\n"
                      "Accept: */*\r\nConnection: close\r\n",
                      method, u.path, strchr(u.host, ':') ? "[" : "", u.host,
                      strchr(u.host, ':') ? "]" : "", strcmp(u.port, u.tls ? "443" : "80") ? ":" : "",
                      strcmp(u.port, u.tls ? "443" : "80") ? u.port : "");
    if (hn > 0 && hn < 1900 && body)
        hn += snprintf(head + hn, sizeof(head) - (size_t) hn,
                       "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, blen);
    if (hn > 0 && hn < 2000)
        hn += snprintf(head + hn, sizeof(head) - (size_t) hn, "\r\n");
    if (hn <= 0 || hn >= 2000) {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: URL \"%s\" is too long", url);
        goto done;
    }

    const char *parts[2] = { head, body };
    size_t plen[2] = { (size_t) hn, blen };
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < plen[i]) {
            int w = ssl ? SSL_write(ssl, parts[i] + off, (int) (plen[i] - off))
                        : (int) send(fd, parts[i] + off, plen[i] - off, MSG_NOSIGNAL);
            if (w <= 0) {
                pt_log_error(PT_LOG_ERR, c->log, errno, "acme: sending to \"%s\" failed", url);
                goto done;
            }
            off += (size_t) w;
        }
    }

    for (;;) {
        if (cap - len < 4096) {
            if (cap >= RESP_MAX) {
                pt_log_error(PT_LOG_ERR, c->log, 0, "acme: response of \"%s\" is too large", url);
                goto done;
            }
            cap = cap ? cap * 2 : 16384;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                goto done;
            buf = nb;
        }
        int n = ssl ? SSL_read(ssl, buf + len, (int) (cap - len - 1))
                    : (int) recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t) n;
    }
    if (buf == NULL || len == 0) {
        pt_log_error(PT_LOG_ERR, c->log, errno, "acme: no response from \"%s\"", url);
        goto done;
    }
    buf[len] = '\0';
    char *hend = strstr(buf, "\r\n\r\n");
    if (hend == NULL || strncmp(buf, "HTTP/1.", 7) != 0 || len < 12) {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: malformed response from \"%s\"", url);
        goto done;
    }
    r->status = atoi(buf + 9);
    size_t hlen = (size_t) (hend - buf) + 2;
    copy_header(buf, hlen, "Location", r->location, sizeof(r->location));
    copy_header(buf, hlen, "Replay-Nonce", r->nonce, sizeof(r->nonce));
    char ra[32] = "";
    copy_header(buf, hlen, "Retry-After", ra, sizeof(ra));
    r->retry_after = ra[0] >= '0' && ra[0] <= '9' ? atol(ra) : 0;
    char *b = hend + 4;
    size_t bl = len - (size_t) (b - buf);
    size_t vn;
    const char *te = pt_acme_header(buf, hlen, "Transfer-Encoding", &vn);
    if (te && vn >= 7 && strncasecmp(te, "chunked", 7) == 0) {
        long d = pt_acme_dechunk(b, bl);
        if (d < 0) {
            pt_log_error(PT_LOG_ERR, c->log, 0, "acme: malformed chunked body from \"%s\"", url);
            goto done;
        }
        bl = (size_t) d;
    }
    r->body = malloc(bl + 1);
    if (r->body == NULL)
        goto done;
    memcpy(r->body, b, bl);
    r->body[bl] = '\0';
    r->len = bl;
    rc = 0;

done:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    ERR_clear_error();
    return rc;
}

/* ---- the ACME protocol ------------------------------------------------------------- */

static pt_json_t body_json(const resp_t *r)
{
    pt_json_t v = { r->body, r->body ? r->len : 0 };
    return v;
}

static void jstr(pt_json_t v, const char *key, char *out, size_t size)
{
    out[0] = '\0';
    if (pt_json_str(pt_json_get(v, key), out, size) < 0)
        out[0] = '\0';
}

/* Logs a failed step with the HTTP status and the problem document. */
static void fail(client_t *c, const char *what, const char *url, const resp_t *r)
{
    char type[256], detail[1024];
    jstr(body_json(r), "type", type, sizeof(type));
    jstr(body_json(r), "detail", detail, sizeof(detail));
    if (r->retry_after > c->not_before)
        c->not_before = r->retry_after;
    pt_log_error(PT_LOG_ERR, c->log, 0, "acme: %s failed: \"%s\" answered HTTP %d%s%s%s%s "
                 "(issuer \"%s\")", what, url, r->status, type[0] ? ", problem " : "", type,
                 detail[0] ? ": " : "", detail, c->is->name.data);
}

static int get_nonce(client_t *c)
{
    resp_t r;
    if (http_request(c, "HEAD", c->new_nonce, NULL, NULL, &r) != 0)
        return -1;
    if (r.nonce[0] == '\0') {
        fail(c, "newNonce", c->new_nonce, &r);
        resp_free(&r);
        return -1;
    }
    strcpy(c->nonce, r.nonce);
    resp_free(&r);
    return 0;
}

/* A signed POST (payload NULL: POST-as-GET). Retries a badNonce twice.
 * Returns 0 with r filled (any status) or -1. */
static int post(client_t *c, const char *url, const char *payload, resp_t *r)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        if (c->nonce[0] == '\0' && get_nonce(c) != 0)
            return -1;
        char *jws = pt_acme_jws(c->key, c->kid[0] ? c->kid : NULL, c->nonce, url, payload);
        c->nonce[0] = '\0';
        if (jws == NULL) {
            pt_log_error(PT_LOG_ERR, c->log, 0, "acme: cannot sign a request for \"%s\"", url);
            return -1;
        }
        int rc = http_request(c, "POST", url, "application/jose+json", jws, r);
        free(jws);
        if (rc != 0)
            return -1;
        if (r->nonce[0])
            strcpy(c->nonce, r->nonce);
        char type[128];
        jstr(body_json(r), "type", type, sizeof(type));
        if (r->status == 400 && strstr(type, ":badNonce") && attempt < 2) {
            resp_free(r);
            continue;
        }
        return 0;
    }
    return -1;
}

static int write_file(client_t *c, const char *path, const char *data, size_t n, mode_t mode)
{
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        pt_log_error(PT_LOG_ERR, c->log, errno, "acme: open(\"%s\") failed", tmp);
        return -1;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) {
            pt_log_error(PT_LOG_ERR, c->log, errno, "acme: write(\"%s\") failed", tmp);
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t) w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        pt_log_error(PT_LOG_ERR, c->log, errno, "acme: storing \"%s\" failed", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

static char *key_pem(EVP_PKEY *k, size_t *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL, *p;
    long len;
    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1
        && (len = BIO_get_mem_data(b, &p)) > 0 && (out = malloc((size_t) len + 1)) != NULL) {
        memcpy(out, p, (size_t) len);
        out[len] = '\0';
        *n = (size_t) len;
    }
    BIO_free(b);
    return out;
}

/* mkdir -p, 0700 for what it makes. */
static int mkdir_p(client_t *c, const char *path)
{
    char buf[1024];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            pt_log_error(PT_LOG_ERR, c->log, errno, "acme: mkdir(\"%s\") failed", buf);
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            return 0;
    }
}

/* The directory, the account key (made on first use) and the account. */
static int client_ready(client_t *c)
{
    resp_t r;
    if (c->ready)
        return 0;

    if (mkdir_p(c, c->is->state_path.data) != 0)
        return -1;
    if (c->key == NULL) {
        char path[1100];
        if (c->is->account_key.len) {
            c->key = read_key(c->is->account_key.data);
            if (c->key == NULL || EVP_PKEY_get_bits(c->key) != 256
                || !EVP_PKEY_is_a(c->key, "EC")) {
                pt_log_error(PT_LOG_ERR, c->log, 0, "acme: cannot use \"account_key\" \"%s\": "
                             "a P-256 EC key in PEM is needed", c->is->account_key.data);
                EVP_PKEY_free(c->key);
                c->key = NULL;
                return -1;
            }
        }
        snprintf(path, sizeof(path), "%s/account.key", c->is->state_path.data);
        if (c->key == NULL)
            c->key = read_key(path);
        if (c->key == NULL) {
            size_t n = 0;
            char *pem;
            c->key = pt_acme_key_generate();
            if (c->key == NULL || (pem = key_pem(c->key, &n)) == NULL) {
                pt_log_error(PT_LOG_ERR, c->log, 0, "acme: cannot make an account key");
                EVP_PKEY_free(c->key);
                c->key = NULL;
                return -1;
            }
            int rc = write_file(c, path, pem, n, 0600);
            OPENSSL_cleanse(pem, n);
            free(pem);
            if (rc != 0) {
                EVP_PKEY_free(c->key);
                c->key = NULL;
                return -1;
            }
            pt_log_error(PT_LOG_NOTICE, c->log, 0, "acme: new account key \"%s\"", path);
        }
        if (pt_acme_thumbprint(c->key, c->thumb) != 0)
            return -1;
    }

    if (http_request(c, "GET", c->is->uri.data, NULL, NULL, &r) != 0)
        return -1;
    pt_json_t d = body_json(&r);
    jstr(d, "newNonce", c->new_nonce, sizeof(c->new_nonce));
    jstr(d, "newAccount", c->new_account, sizeof(c->new_account));
    jstr(d, "newOrder", c->new_order, sizeof(c->new_order));
    int tos_needed = pt_json_get(pt_json_get(d, "meta"), "termsOfService").len > 0;
    if (r.status != 200 || !c->new_nonce[0] || !c->new_account[0] || !c->new_order[0]) {
        fail(c, "reading the directory", c->is->uri.data, &r);
        resp_free(&r);
        return -1;
    }
    resp_free(&r);
    if (tos_needed && !c->is->tos)
        pt_log_error(PT_LOG_WARN, c->log, 0, "acme: issuer \"%s\" has terms of service and "
                     "\"accept_terms_of_service\" is not set", c->is->name.data);

    char payload[4096], qc[1100];
    int n = snprintf(payload, sizeof(payload), "{\"termsOfServiceAgreed\":%s",
                     c->is->tos ? "true" : "false");
    pt_str_t *ct = c->is->contacts ? c->is->contacts->elts : NULL;
    for (size_t i = 0; ct && i < c->is->contacts->nelts; i++) {
        char mail[1024];
        snprintf(mail, sizeof(mail), "%s%s", strchr(ct[i].data, ':') ? "" : "mailto:", ct[i].data);
        if (pt_json_quote(qc, sizeof(qc), mail) < 0 || (size_t) n + strlen(qc) + 16 > sizeof(payload))
            return -1;
        n += snprintf(payload + n, sizeof(payload) - (size_t) n, "%s%s", i ? "," : ",\"contact\":[",
                      qc);
    }
    if (ct)
        n += snprintf(payload + n, sizeof(payload) - (size_t) n, "]");
    snprintf(payload + n, sizeof(payload) - (size_t) n, "}");

    c->kid[0] = '\0';
    if (post(c, c->new_account, payload, &r) != 0)
        return -1;
    if ((r.status != 200 && r.status != 201) || r.location[0] == '\0') {
        fail(c, "newAccount", c->new_account, &r);
        resp_free(&r);
        return -1;
    }
    strcpy(c->kid, r.location);
    if (r.status == 201)
        pt_log_error(PT_LOG_NOTICE, c->log, 0, "acme: account \"%s\" created", c->kid);
    resp_free(&r);
    c->ready = 1;
    return 0;
}

/* ---- shared challenge table (helper side) ---- */

static volatile sig_atomic_t helper_stop;   /* SIGTERM: the next helper takes over */

static acme_shm_t *challenges;

static int publish(const char *token, const char *keyauth)
{
    if (challenges == NULL || strlen(token) >= TOKEN_MAX || strlen(keyauth) >= KEYAUTH_MAX)
        return -1;
    for (int i = 0; i < SLOTS; i++) {
        acme_slot_t *s = &challenges->slots[i];
        unsigned expect = SLOT_FREE;
        if (!atomic_compare_exchange_strong_explicit(&s->state, &expect, SLOT_WRITING,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
        atomic_thread_fence(memory_order_release);
        s->owner = getpid();
        strcpy(s->token, token);
        strcpy(s->keyauth, keyauth);
        atomic_store_explicit(&s->state, SLOT_PUBLISHED, memory_order_release);
        return i;
    }
    return -1;
}

/* Withdraws this helper's challenges; with stale != 0, also those of
 * helpers that are gone (killed in the middle of an order). */
static void withdraw(int stale)
{
    pid_t self = getpid();
    for (int i = 0; challenges && i < SLOTS; i++) {
        acme_slot_t *s = &challenges->slots[i];
        unsigned st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == SLOT_FREE)
            continue;
        /* a slot left WRITING or PUBLISHED by a helper that died is freed by
         * the next one */
        if (s->owner == self || (stale && kill(s->owner, 0) != 0 && errno == ESRCH))
            atomic_compare_exchange_strong_explicit(&s->state, &st, SLOT_FREE,
                                                    memory_order_acq_rel, memory_order_relaxed);
    }
}

/* Polls url (POST-as-GET) until its "status" is not one of the pending
 * ones. Returns 0 with r filled, or -1. */
static int poll_status(client_t *c, const char *what, const char *url, resp_t *r)
{
    for (int i = 0; i < POLL_TRIES && !helper_stop; i++) {
        if (post(c, url, NULL, r) != 0)
            return -1;
        if (r->status != 200) {
            fail(c, what, url, r);
            resp_free(r);
            return -1;
        }
        char st[32];
        jstr(body_json(r), "status", st, sizeof(st));
        if (strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0)
            return 0;
        resp_free(r);
        sleep(1);
    }
    pt_log_error(PT_LOG_ERR, c->log, 0, "acme: %s \"%s\": still pending after %d s", what, url,
                 POLL_TRIES);
    return -1;
}

static int authorize(client_t *c, const char *authz_url)
{
    resp_t r;
    char st[32], ident[300], token[TOKEN_MAX], chall_url[1024];

    if (post(c, authz_url, NULL, &r) != 0)
        return -1;
    if (r.status != 200) {
        fail(c, "reading the authorization", authz_url, &r);
        resp_free(&r);
        return -1;
    }
    pt_json_t a = body_json(&r);
    jstr(a, "status", st, sizeof(st));
    jstr(pt_json_get(a, "identifier"), "value", ident, sizeof(ident));
    if (strcmp(st, "valid") == 0) {
        resp_free(&r);
        return 0;
    }
    token[0] = chall_url[0] = '\0';
    pt_json_t list = pt_json_get(a, "challenges"), ch;
    for (size_t i = 0; (ch = pt_json_index(list, i)).len; i++) {
        char type[32];
        jstr(ch, "type", type, sizeof(type));
        if (strcmp(type, "http-01") == 0) {
            jstr(ch, "token", token, sizeof(token));
            jstr(ch, "url", chall_url, sizeof(chall_url));
        }
    }
    resp_free(&r);
    if (strcmp(st, "pending") != 0 || token[0] == '\0' || chall_url[0] == '\0') {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: authorization \"%s\" for \"%s\" is \"%s\"%s",
                     authz_url, ident, st, token[0] ? "" : " and offers no http-01 challenge");
        return -1;
    }
    for (const char *t = token; *t; t++) {
        if (!(( *t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9')
              || *t == '-' || *t == '_')) {
            pt_log_error(PT_LOG_ERR, c->log, 0, "acme: invalid challenge token for \"%s\"", ident);
            return -1;
        }
    }
    char keyauth[KEYAUTH_MAX];
    snprintf(keyauth, sizeof(keyauth), "%s.%s", token, c->thumb);
    if (publish(token, keyauth) < 0) {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: no free challenge slot for \"%s\"", ident);
        return -1;
    }
    pt_log_error(PT_LOG_INFO, c->log, 0, "acme: answering the http-01 challenge for \"%s\"", ident);

    if (post(c, chall_url, "{}", &r) != 0)
        return -1;
    if (r.status != 200) {
        fail(c, "responding to the challenge", chall_url, &r);
        resp_free(&r);
        return -1;
    }
    resp_free(&r);

    if (poll_status(c, "authorization", authz_url, &r) != 0)
        return -1;
    jstr(body_json(&r), "status", st, sizeof(st));
    if (strcmp(st, "valid") != 0) {
        /* the reason is in the challenge's "error" */
        char type[256] = "", detail[1024] = "";
        pt_json_t l = pt_json_get(body_json(&r), "challenges"), x;
        for (size_t i = 0; (x = pt_json_index(l, i)).len; i++) {
            pt_json_t e = pt_json_get(x, "error");
            if (e.len) {
                jstr(e, "type", type, sizeof(type));
                jstr(e, "detail", detail, sizeof(detail));
            }
        }
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: authorization for \"%s\" is \"%s\"%s%s%s%s",
                     ident, st, type[0] ? ", problem " : "", type, detail[0] ? ": " : "", detail);
        /* failed validations count against the CA's limits: pause longer */
        if (c->not_before < VALIDATION_RETRY)
            c->not_before = VALIDATION_RETRY;
        resp_free(&r);
        return -1;
    }
    resp_free(&r);
    return 0;
}

/* One full issuance. Returns 0 when the new certificate is stored. */
static int obtain(client_t *c, acme_cert_t *ac)
{
    resp_t r;
    pt_str_t *id = ac->ids->elts;
    char order_url[1024], finalize_url[1024], cert_url[1024], st[32];
    int rc = -1;

    if (client_ready(c) != 0)
        return -1;

    /* newOrder */
    size_t cap = 64;
    for (size_t i = 0; i < ac->ids->nelts; i++)
        cap += id[i].len * 6 + 40;
    char *payload = malloc(cap), *q = malloc(cap);
    if (payload == NULL || q == NULL) {
        free(payload);
        free(q);
        return -1;
    }
    size_t n = (size_t) snprintf(payload, cap, "{\"identifiers\":[");
    for (size_t i = 0; i < ac->ids->nelts; i++) {
        pt_json_quote(q, cap, id[i].data);
        n += (size_t) snprintf(payload + n, cap - n, "%s{\"type\":\"dns\",\"value\":%s}",
                               i ? "," : "", q);
    }
    snprintf(payload + n, cap - n, "]}");
    free(q);
    pt_log_error(PT_LOG_NOTICE, c->log, 0, "acme: ordering a certificate for \"%s\" from \"%s\"",
                 id[0].data, c->is->name.data);
    int prc = post(c, c->new_order, payload, &r);
    free(payload);
    if (prc != 0)
        return -1;
    if (r.status != 201 || r.location[0] == '\0') {
        fail(c, "newOrder", c->new_order, &r);
        if (r.status == 400 || r.status == 401 || r.status == 403)
            c->ready = 0;    /* account trouble: register again next time */
        resp_free(&r);
        return -1;
    }
    strcpy(order_url, r.location);
    pt_json_t o = body_json(&r);
    jstr(o, "finalize", finalize_url, sizeof(finalize_url));
    pt_json_t authz = pt_json_get(o, "authorizations"), a;
    char (*urls)[1024] = calloc(64, 1024);
    size_t nurls = 0;
    for (size_t i = 0; urls && i < 64 && (a = pt_json_index(authz, i)).len; i++) {
        if (pt_json_str(a, urls[nurls], 1024) > 0)
            nurls++;
    }
    resp_free(&r);
    if (urls == NULL || finalize_url[0] == '\0') {
        free(urls);
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: order \"%s\" has no finalize URL", order_url);
        return -1;
    }
    for (size_t i = 0; i < nurls; i++) {
        if (authorize(c, urls[i]) != 0) {
            free(urls);
            withdraw(0);
            return -1;
        }
    }
    free(urls);
    withdraw(0);

    /* finalize with a CSR for a new key */
    EVP_PKEY *k = pt_acme_key_generate();
    const char **names = calloc(ac->ids->nelts, sizeof(char *));
    char *csr = NULL;
    if (k && names) {
        for (size_t i = 0; i < ac->ids->nelts; i++)
            names[i] = id[i].data;
        csr = pt_acme_csr(k, names, ac->ids->nelts);
    }
    free(names);
    if (csr == NULL) {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: cannot make a CSR for \"%s\"", id[0].data);
        EVP_PKEY_free(k);
        return -1;
    }
    size_t plen = strlen(csr) + 16;
    payload = malloc(plen);
    if (payload == NULL) {
        free(csr);
        EVP_PKEY_free(k);
        return -1;
    }
    snprintf(payload, plen, "{\"csr\":\"%s\"}", csr);
    free(csr);
    prc = post(c, finalize_url, payload, &r);
    free(payload);
    if (prc != 0)
        goto out;
    if (r.status != 200) {
        fail(c, "finalize", finalize_url, &r);
        resp_free(&r);
        goto out;
    }
    resp_free(&r);
    if (poll_status(c, "order", order_url, &r) != 0)
        goto out;
    jstr(body_json(&r), "status", st, sizeof(st));
    jstr(body_json(&r), "certificate", cert_url, sizeof(cert_url));
    resp_free(&r);
    if (strcmp(st, "valid") != 0 || cert_url[0] == '\0') {
        pt_log_error(PT_LOG_ERR, c->log, 0, "acme: order \"%s\" ended \"%s\"", order_url, st);
        goto out;
    }

    /* download the chain */
    if (post(c, cert_url, NULL, &r) != 0)
        goto out;
    if (r.status != 200 || strstr(r.body, "-----BEGIN CERTIFICATE-----") == NULL) {
        fail(c, "downloading the certificate", cert_url, &r);
        resp_free(&r);
        goto out;
    }
    size_t kn = 0;
    char *kp = key_pem(k, &kn);
    if (kp && write_file(c, ac->key_path.data, kp, kn, 0600) == 0
        && write_file(c, ac->crt_path.data, r.body, r.len, 0644) == 0)
        rc = 0;
    if (kp) {
        OPENSSL_cleanse(kp, kn);
        free(kp);
    }
    resp_free(&r);

out:
    EVP_PKEY_free(k);
    return rc;
}

/* ---- the helper process --------------------------------------------------------- */

static pid_t helper_pid;

static void on_helper_term(int signo)
{
    (void) signo;
    helper_stop = 1;
}

static void sleep_until(time_t t)
{
    while (!helper_stop) {
        time_t now = time(NULL);
        if (now >= t)
            return;
        time_t d = t - now;
        sleep((unsigned) (d > 60 ? 60 : d));
        pt_time_update();
        if (getppid() == 1)
            exit(0);
    }
}

static SSL_CTX *client_ctx(acme_issuer_t *is, pt_log_t *log)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (is->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (is->trusted.len ? SSL_CTX_load_verify_locations(ctx, is->trusted.data, NULL) != 1
                            : SSL_CTX_set_default_verify_paths(ctx) != 1)
            pt_log_error(PT_LOG_ERR, log, 0, "acme: cannot load the trusted certificates%s%s "
                         "of issuer \"%s\"", is->trusted.len ? " " : "",
                         is->trusted.len ? is->trusted.data : "", is->name.data);
    }
    return ctx;
}

static void helper_main(pt_cycle_t *cycle, acme_main_conf_t *amcf)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    /* the master's handlers only set its flags: not ours. A stray HUP or
     * USR1 to the process group must not end the helper. */
    sa.sa_handler = SIG_IGN;
    int ign[] = { SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGPIPE };
    for (size_t i = 0; i < sizeof(ign) / sizeof(ign[0]); i++)
        sigaction(ign[i], &sa, NULL);
    sa.sa_handler = SIG_DFL;
    int dfl[] = { SIGCHLD, SIGALRM, SIGIO };
    for (size_t i = 0; i < sizeof(dfl) / sizeof(dfl[0]); i++)
        sigaction(dfl[i], &sa, NULL);
    sa.sa_handler = on_helper_term;     /* no SA_RESTART: blocking I/O ends with EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_NAME, "portico-acme");   /* what ps and top show */

    /* the helper serves nothing: let go of the listening sockets */
    pt_listening_t *ls = cycle->listening.elts;
    for (size_t i = 0; i < cycle->listening.nelts; i++) {
        for (unsigned k = 0; k < ls[i].nworker_fds; k++)
            if (ls[i].worker_fds[k] >= 0 && ls[i].worker_fds[k] != ls[i].fd)
                close(ls[i].worker_fds[k]);
        if (ls[i].fd >= 0)
            close(ls[i].fd);
    }

    pt_log_t *log = cycle->log;
    challenges = amcf->zone ? amcf->zone->data : NULL;
    withdraw(1);
    size_t nis = amcf->issuers.nelts;
    acme_issuer_t **iss = amcf->issuers.elts;
    client_t *clients = calloc(nis, sizeof(client_t));
    if (clients == NULL)
        exit(1);
    for (size_t i = 0; i < nis; i++) {
        clients[i].is = iss[i];
        clients[i].log = log;
        clients[i].ssl = client_ctx(iss[i], log);
    }

    acme_cert_t **certs = amcf->certs.elts;
    while (!helper_stop) {
        pt_time_update();
        time_t now = time(NULL), next = now + 86400;
        int obtained = 0;
        for (size_t i = 0; i < amcf->certs.nelts && !helper_stop; i++) {
            acme_cert_t *ac = certs[i];
            pt_str_t *id = ac->ids->elts;
            time_t due = 0;
            if (ac->next > now) {
                if (ac->next < next)
                    next = ac->next;
                continue;
            }
            int st = cert_state(ac, now, &due);
            if (st == 0) {
                char when[32];
                struct tm tm;
                gmtime_r(&due, &tm);
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
                pt_log_error(PT_LOG_INFO, log, 0, "acme: certificate for \"%s\" is valid until "
                             "its renewal time, %s", id[0].data, when);
                ac->next = due;
                ac->backoff = 0;
                if (due < next)
                    next = due;
                continue;
            }
            client_t *c = NULL;
            for (size_t k = 0; k < nis; k++)
                if (clients[k].is == ac->issuer)
                    c = &clients[k];
            if (c)
                c->not_before = 0;
            if (c == NULL || c->ssl == NULL || obtain(c, ac) != 0) {
                if (helper_stop)
                    break;      /* interrupted by the next cycle's helper taking over */
                ac->backoff = ac->backoff ? ac->backoff * 2 : RETRY_MIN;
                if (ac->backoff > RETRY_MAX)
                    ac->backoff = RETRY_MAX;
                if (c && c->not_before > ac->backoff)
                    ac->backoff = c->not_before > 86400 ? 86400 : c->not_before;
                ac->next = time(NULL) + ac->backoff;
                pt_log_error(PT_LOG_ERR, log, 0, "acme: could not obtain a certificate for \"%s\", "
                             "next attempt in %ld s", id[0].data, (long) ac->backoff);
            } else {
                ac->backoff = 0;
                ac->next = 0;
                obtained = 1;
                pt_log_error(PT_LOG_NOTICE, log, 0, "acme: certificate for \"%s\" stored in \"%s\"",
                             id[0].data, ac->crt_path.data);
            }
            if (ac->next && ac->next < next)
                next = ac->next;
        }
        if (obtained) {
            /* A successful reload replaces this helper (TERM). Still here
             * after a while: the reload failed (the configuration file no
             * longer loads?); ask again, less and less often. */
            time_t wait = 600;
            pt_log_error(PT_LOG_NOTICE, log, 0, "acme: reloading to use the new certificates");
            kill(getppid(), SIGHUP);
            for (;;) {
                sleep_until(time(NULL) + wait);
                if (helper_stop)
                    break;
                pt_log_error(PT_LOG_WARN, log, 0, "acme: the new certificates are not in service "
                             "yet (did the reload fail?), asking for a reload again");
                kill(getppid(), SIGHUP);
                if (wait < 86400)
                    wait *= 2;
            }
            continue;
        }
        sleep_until(next);
    }
    withdraw(0);
    exit(0);
}

static void stop_helper(void)
{
    if (helper_pid > 0) {
        kill(helper_pid, SIGTERM);
        helper_pid = 0;     /* the master reaps it as a stranger */
    }
}

static void init_master(pt_cycle_t *cycle)
{
    stop_helper();
    if (cycle->http_ctx == NULL)
        return;
    acme_main_conf_t *amcf = cycle->http_ctx->main_conf[pt_http_acme_module.index];
    if (amcf == NULL || amcf->certs.nelts == 0)
        return;
    pid_t pid = fork();
    if (pid < 0) {
        pt_log_error(PT_LOG_ALERT, cycle->log, errno, "fork() failed while starting the acme helper");
        return;
    }
    if (pid == 0)
        helper_main(cycle, amcf);    /* never returns */
    helper_pid = pid;
    pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "start acme helper process %ld", (long) pid);
}

static void exit_master(pt_cycle_t *cycle)
{
    (void) cycle;
    stop_helper();
}

/* With master_process off there is no master to fork the helper: say so
 * once (the stored certificate or the placeholder is served as is). */
static int init_worker(pt_cycle_t *cycle)
{
    pt_core_conf_t *ccf = cycle->core_conf[pt_core_module.index];
    if (cycle->http_ctx == NULL || ccf == NULL || ccf->master)
        return 0;
    acme_main_conf_t *amcf = cycle->http_ctx->main_conf[pt_http_acme_module.index];
    if (amcf && amcf->certs.nelts)
        pt_log_error(PT_LOG_WARN, cycle->log, 0, "acme: with \"master_process off\" no "
                     "certificate is obtained or renewed");
    return 0;
}

static int postconfiguration(pt_conf_t *cf)
{
    acme_main_conf_t *amcf = cf->http_ctx->main_conf[pt_http_acme_module.index];
    if (amcf->issuers.nelts == 0)
        return 0;
    return pt_http_phase_add(cf, PT_HTTP_POST_READ_PHASE, challenge_handler);
}

pt_module_t pt_http_acme_module = {
    .name = "http_acme",
    .commands = acme_commands,
    .create_main_conf = create_main_conf,
    .init_main_conf = init_main_conf,
    .create_srv_conf = create_srv_conf,
    .merge_srv_conf = merge_srv_conf,
    .postconfiguration = postconfiguration,
    .init_worker = init_worker,
    .init_master = init_master,
    .exit_master = exit_master,
};
