/* TLS termination: the "http_ssl" module (ssl_* directives), one SSL_CTX per
 * server, SNI and ALPN callbacks, the nonblocking handshake driver, TLS
 * versions of c->recv/send/writev, the $ssl_* variables and the client
 * certificate check of each request. See tls.h for the overall shape. */
#include "tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../config/cycle.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/h1_conn.h"
#include "../http/h2_conn.h"
#include "../http/proxy_protocol.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "acme.h"

/* Forward-secret AEAD suites only (TLS 1.2; TLS 1.3 suites are all AEAD).
 * DHE suites apply only when ssl_dhparam is given. */
#define DEFAULT_CIPHERS \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_PROTOCOLS (PT_TLS_TLSv1_2 | PT_TLS_TLSv1_3)
#define TLS_RECORD 16384

/* Per connection, in c->pool; SSL app data. */
typedef struct {
    pt_conn_t               *c;
    SSL                     *ssl;
    pt_http_addr_conf_t     *addr;
    pt_http_core_srv_conf_t *srv;     /* by SNI (default server otherwise) */
    pt_buf_t                *plain;   /* plain HTTP on the TLS port: the head */
    /* upstream side */
    pt_tls_done_cb           done;
    pt_tls_upstream_conf_t  *uconf;
    unsigned                 upstream:1;
    unsigned                 failed:1;    /* fatal TLS error: forget the session */
    unsigned                 drained:1;   /* the last read() of the socket came
                                           * back short or would block */
} tls_conn_t;

static void *create_srv_conf(pt_conf_t *cf);
static const char *merge_srv_conf(pt_conf_t *cf, void *prev, void *conf);
static int preconfiguration(pt_conf_t *cf);
static int postconfiguration(pt_conf_t *cf);
static const char *set_cert(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_password_file(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_ciphers(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_curve(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_conf_command(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_session_cache(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_ticket_key(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_dhparam(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *set_early_data(pt_conf_t *cf, const pt_command_t *cmd, void *conf);

const pt_conf_enum_t pt_tls_protocols[] = {
    { "SSLv2", PT_TLS_SSLv2 }, { "SSLv3", PT_TLS_SSLv3 }, { "TLSv1", PT_TLS_TLSv1 },
    { "TLSv1.1", PT_TLS_TLSv1_1 }, { "TLSv1.2", PT_TLS_TLSv1_2 },
    { "TLSv1.3", PT_TLS_TLSv1_3 }, { NULL, 0 }
};

static const pt_conf_enum_t verify_modes[] = {
    { "off", PT_TLS_VERIFY_OFF }, { "on", PT_TLS_VERIFY_ON },
    { "optional", PT_TLS_VERIFY_OPTIONAL }, { "optional_no_ca", PT_TLS_VERIFY_OPTIONAL_NO_CA },
    { NULL, 0 }
};

static const pt_conf_bounds_t depth_bounds = { 0, 100 };

#define CTX_HS (PT_CTX_HTTP | PT_CTX_SRV)
#define OFF(f) offsetof(pt_tls_srv_conf_t, f)

static const pt_command_t commands[] = {
    { "ssl_certificate", CTX_HS, 0, 1, 1, set_cert, PT_CONF_HTTP_SRV, OFF(certificates), NULL },
    { "ssl_certificate_key", CTX_HS, 0, 1, 1, set_cert, PT_CONF_HTTP_SRV, OFF(certificate_keys), NULL },
    { "ssl_password_file", CTX_HS, 0, 1, 1, set_password_file, PT_CONF_HTTP_SRV, 0, NULL },
    { "ssl_protocols", CTX_HS, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_HTTP_SRV,
      OFF(protocols), pt_tls_protocols },
    { "ssl_ciphers", CTX_HS, 0, 1, 1, set_ciphers, PT_CONF_HTTP_SRV, OFF(ciphers), NULL },
    { "ssl_prefer_server_ciphers", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      OFF(prefer_server_ciphers), NULL },
    { "ssl_ecdh_curve", CTX_HS, 0, 1, 1, set_curve, PT_CONF_HTTP_SRV, OFF(ecdh_curve), NULL },
    { "ssl_dhparam", CTX_HS, 0, 1, 1, set_dhparam, PT_CONF_HTTP_SRV, OFF(dhparam), NULL },
    { "ssl_conf_command", CTX_HS, 0, 2, 2, set_conf_command, PT_CONF_HTTP_SRV, 0, NULL },
    { "ssl_session_cache", CTX_HS, 0, 1, 2, set_session_cache, PT_CONF_HTTP_SRV, 0, NULL },
    { "ssl_session_timeout", CTX_HS, 0, 1, 1, pt_conf_set_sec, PT_CONF_HTTP_SRV,
      OFF(session_timeout), NULL },
    { "ssl_session_tickets", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      OFF(session_tickets), NULL },
    { "ssl_session_ticket_key", CTX_HS, 0, 1, 1, set_ticket_key, PT_CONF_HTTP_SRV, 0, NULL },
    { "ssl_verify_client", CTX_HS, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_SRV, OFF(verify),
      verify_modes },
    { "ssl_verify_depth", CTX_HS, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_SRV, OFF(verify_depth),
      &depth_bounds },
    { "ssl_client_certificate", CTX_HS, 0, 1, 1, pt_conf_set_path, PT_CONF_HTTP_SRV,
      OFF(client_certificate), NULL },
    { "ssl_trusted_certificate", CTX_HS, 0, 1, 1, pt_conf_set_path, PT_CONF_HTTP_SRV,
      OFF(trusted_certificate), NULL },
    { "ssl_crl", CTX_HS, 0, 1, 1, pt_conf_set_path, PT_CONF_HTTP_SRV, OFF(crl), NULL },
    { "ssl_stapling", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      OFF(stapling), NULL },
    { "ssl_stapling_file", CTX_HS, 0, 1, 1, pt_conf_set_path, PT_CONF_HTTP_SRV,
      OFF(stapling_file), NULL },
    { "ssl_stapling_verify", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      OFF(stapling_verify), NULL },
    { "ssl_stapling_responder", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "ssl_reject_handshake", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      OFF(reject_handshake), NULL },
    { "ssl_buffer_size", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "ssl_early_data", CTX_HS, PT_CONF_FLAG, 1, 1, set_early_data, PT_CONF_NONE, 0, NULL },
    { "ssl_ocsp", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "ssl_ocsp_cache", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "ssl_ocsp_responder", CTX_HS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    /* certificates are loaded once per configuration: nothing to cache */
    { "ssl_certificate_cache", CTX_HS, 0, 1, 3, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_ssl_module = {
    .name = "http_ssl",
    .commands = commands,
    .create_srv_conf = create_srv_conf,
    .merge_srv_conf = merge_srv_conf,
    .preconfiguration = preconfiguration,
    .postconfiguration = postconfiguration,
};

static int ctx_conf_index = -1;     /* SSL_CTX ex_data: pt_tls_srv_conf_t * */

/* ------------------------------------------------------------------------ */
/* Errors */

static size_t ssl_errors(char *buf, size_t size)
{
    size_t len = 0;
    unsigned long e;
    const char *sep = " (SSL:";

    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        if (len + 1 < size) {
            int n = snprintf(buf + len, size - len, "%s %s", sep, one);
            if (n > 0)
                len = (size_t) n + len < size ? len + (size_t) n : size - 1;
        }
        sep = "";
    }
    if (len && len + 1 < size) {
        buf[len++] = ')';
        buf[len] = '\0';
    }
    return len;
}

void pt__tls_conf_error(pt_conf_t *cf, const char *file, unsigned line, const char *fmt, ...)
{
    char msg[1024], errs[1024];
    va_list ap;
    const char *sf = cf->file;
    unsigned sl = cf->line;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ssl_errors(errs, sizeof(errs));
    if (file) {
        cf->file = file;
        cf->line = line;
    }
    pt_conf_error(cf, PT_LOG_EMERG, 0, "%s%s", msg, errs);
    cf->file = sf;
    cf->line = sl;
}

void pt__tls_error(int level, pt_log_t *log, const char *fmt, ...)
{
    char msg[512], errs[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ssl_errors(errs, sizeof(errs));
    pt_log_error(level, log, 0, "%s%s", msg, errs);
}

/* ------------------------------------------------------------------------ */
/* Configuration */

static void *create_srv_conf(pt_conf_t *cf)
{
    pt_tls_srv_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->certificates = PT_CONF_UNSET_PTR;
    c->certificate_keys = PT_CONF_UNSET_PTR;
    c->passwords = PT_CONF_UNSET_PTR;
    c->conf_commands = PT_CONF_UNSET_PTR;
    c->ticket_keys = PT_CONF_UNSET_PTR;
    c->protocols = PT_CONF_UNSET_UINT;
    c->prefer_server_ciphers = PT_CONF_UNSET;
    c->session_cache = PT_CONF_UNSET;
    c->builtin_size = PT_CONF_UNSET;
    c->shm_zone = PT_CONF_UNSET_PTR;
    c->session_timeout = PT_CONF_UNSET;
    c->session_tickets = PT_CONF_UNSET;
    c->verify = PT_CONF_UNSET;
    c->verify_depth = PT_CONF_UNSET;
    c->stapling = PT_CONF_UNSET;
    c->stapling_verify = PT_CONF_UNSET;
    c->reject_handshake = PT_CONF_UNSET;
    c->dh_pkey = PT_CONF_UNSET_PTR;
    return c;
}

static pt_str_t *arg(pt_conf_t *cf, size_t i)
{
    return &((pt_str_t *) cf->args->elts)[i];
}

/* ssl_certificate / ssl_certificate_key: one path per directive, several
 * directives pair up in order (RSA and ECDSA on one server). */
static const char *set_cert(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_tls_srv_conf_t *sscf = conf;
    pt_array_t **ap = (pt_array_t **) ((char *) conf + cmd->offset);
    pt_str_t path = *arg(cf, 1);

    if (*ap == PT_CONF_UNSET_PTR) {
        *ap = pt_array_create(cf->pool, 2, sizeof(pt_str_t));
        if (*ap == NULL)
            return "out of memory";
    }
    if (pt_acme_is_cert_var(&path) || pt_acme_is_key_var(&path)) {
        /* the acme_certificate of the server (acme.c) */
        pt_str_t *p = pt_array_push(*ap);
        if (p == NULL)
            return "out of memory";
        *p = path;
        sscf->cert_file = cf->file;
        sscf->cert_line = cf->line;
        return PT_CONF_OK;
    }
    if (memchr(path.data, '$', path.len))
        return "with variables is not supported";
    if (path.len > 5 && memcmp(path.data, "data:", 5) == 0)
        return "with \"data:\" is not supported";
    if (pt_conf_full_name(cf->cycle, &path, 1) != 0)
        return PT_CONF_ERROR;
    pt_str_t *p = pt_array_push(*ap);
    if (p == NULL)
        return "out of memory";
    *p = path;
    sscf->cert_file = cf->file;
    sscf->cert_line = cf->line;
    return PT_CONF_OK;
}

static const char *set_password_file(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_command_t c2 = *cmd;
    c2.offset = offsetof(pt_tls_srv_conf_t, passwords);
    return pt_tls_conf_set_password_file(cf, &c2, conf);
}

const char *pt_tls_conf_set_password_file(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_array_t **pp = (pt_array_t **) ((char *) conf + cmd->offset);
    struct { pt_array_t *passwords; } st = { *pp }, *sscf = &st;
    pt_str_t path = *arg(cf, 1);
    char line[1024];
    FILE *f;

    if (sscf->passwords != PT_CONF_UNSET_PTR)
        return "is duplicate";
    if (pt_conf_full_name(cf->cycle, &path, 1) != 0)
        return PT_CONF_ERROR;
    f = fopen(path.data, "r");
    if (f == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "open() \"%s\" failed", path.data);
        return PT_CONF_ERROR;
    }
    sscf->passwords = pt_array_create(cf->pool, 2, sizeof(pt_str_t));
    if (sscf->passwords == NULL) {
        fclose(f);
        return "out of memory";
    }
    while (fgets(line, sizeof(line), f)) {
        size_t n = strcspn(line, "\r\n");
        pt_str_t *p;
        if (n == 0)
            continue;
        p = pt_array_push(sscf->passwords);
        if (p == NULL || (p->data = pt_pstrndup(cf->pool, line, n)) == NULL) {
            fclose(f);
            return "out of memory";
        }
        p->len = n;
    }
    fclose(f);
    OPENSSL_cleanse(line, sizeof(line));
    if (sscf->passwords->nelts == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "empty file \"%s\"", path.data);
        return PT_CONF_ERROR;
    }
    *pp = sscf->passwords;
    return PT_CONF_OK;
}

static SSL_CTX *scratch_ctx(void)
{
    static SSL_CTX *ctx;
    if (ctx == NULL)
        ctx = SSL_CTX_new(TLS_server_method());
    return ctx;
}

static const char *set_ciphers(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_tls_srv_conf_t *sscf = conf;
    pt_str_t *v = arg(cf, 1);
    SSL_CTX *ctx = scratch_ctx();

    if (sscf->ciphers.data)
        return "is duplicate";
    ERR_clear_error();
    if (ctx == NULL || SSL_CTX_set_cipher_list(ctx, v->data) != 1) {
        pt__tls_conf_error(cf, NULL, 0, "SSL_CTX_set_cipher_list(\"%s\") failed", v->data);
        return PT_CONF_ERROR;
    }
    sscf->ciphers = *v;
    return PT_CONF_OK;
}

static const char *set_curve(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_tls_srv_conf_t *sscf = conf;
    pt_str_t *v = arg(cf, 1);
    SSL_CTX *ctx = scratch_ctx();

    if (sscf->ecdh_curve.data)
        return "is duplicate";
    ERR_clear_error();
    if (!pt_str_eq_lit(v, "auto") && (ctx == NULL || SSL_CTX_set1_groups_list(ctx, v->data) != 1)) {
        pt__tls_conf_error(cf, NULL, 0, "SSL_CTX_set1_curves_list(\"%s\") failed", v->data);
        return PT_CONF_ERROR;
    }
    sscf->ecdh_curve = *v;
    return PT_CONF_OK;
}

static void free_pkey(void *p)
{
    EVP_PKEY_free(p);
}

static const char *set_dhparam(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_tls_srv_conf_t *sscf = conf;
    pt_str_t path = *arg(cf, 1);
    BIO *b;
    EVP_PKEY *pk;

    if (sscf->dh_pkey != PT_CONF_UNSET_PTR)
        return "is duplicate";
    if (pt_conf_full_name(cf->cycle, &path, 1) != 0)
        return PT_CONF_ERROR;
    ERR_clear_error();
    b = BIO_new_file(path.data, "r");
    if (b == NULL) {
        pt__tls_conf_error(cf, NULL, 0, "BIO_new_file(\"%s\") failed", path.data);
        return PT_CONF_ERROR;
    }
    pk = PEM_read_bio_Parameters(b, NULL);
    BIO_free(b);
    if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_DH) {
        EVP_PKEY_free(pk);
        pt__tls_conf_error(cf, NULL, 0, "PEM_read_bio_Parameters(\"%s\") failed", path.data);
        return PT_CONF_ERROR;
    }
    if (pt_pool_cleanup_add(cf->pool, free_pkey, pk) != 0) {
        EVP_PKEY_free(pk);
        return "out of memory";
    }
    sscf->dh_pkey = pk;
    sscf->dhparam = path;
    return PT_CONF_OK;
}

static const char *set_conf_command(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_tls_srv_conf_t *sscf = conf;

    if (sscf->conf_commands == PT_CONF_UNSET_PTR) {
        sscf->conf_commands = pt_array_create(cf->pool, 4, sizeof(pt_str_t));
        if (sscf->conf_commands == NULL)
            return "out of memory";
    }
    pt_str_t *p = pt_array_push_n(sscf->conf_commands, 2);
    if (p == NULL)
        return "out of memory";
    p[0] = *arg(cf, 1);
    p[1] = *arg(cf, 2);
    sscf->cmd_file = cf->file;
    sscf->cmd_line = cf->line;
    return PT_CONF_OK;
}

static const char *set_session_cache(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    return pt__tls_session_cache_set(cf, conf);
}

static const char *set_ticket_key(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_tls_srv_conf_t *sscf = conf;
    pt_str_t path = *arg(cf, 1);
    unsigned char buf[81];
    FILE *f;
    size_t n;

    if (pt_conf_full_name(cf->cycle, &path, 1) != 0)
        return PT_CONF_ERROR;
    f = fopen(path.data, "rb");
    if (f == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "open() \"%s\" failed", path.data);
        return PT_CONF_ERROR;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n != 48 && n != 80) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" must be 48 or 80 bytes", path.data);
        return PT_CONF_ERROR;
    }
    if (sscf->ticket_keys == PT_CONF_UNSET_PTR) {
        sscf->ticket_keys = pt_array_create(cf->pool, 2, sizeof(pt_tls_ticket_key_t));
        if (sscf->ticket_keys == NULL)
            return "out of memory";
    }
    pt_tls_ticket_key_t *k = pt_array_push(sscf->ticket_keys);
    if (k == NULL)
        return "out of memory";
    memset(k, 0, sizeof(*k));
    k->size = n;
    memcpy(k->name, buf, 16);
    if (n == 48) {
        memcpy(k->aes_key, buf + 16, 16);
        memcpy(k->hmac_key, buf + 32, 16);
    } else {
        memcpy(k->hmac_key, buf + 16, 32);
        memcpy(k->aes_key, buf + 48, 32);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return PT_CONF_OK;
}

static const char *set_early_data(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    if (pt_str_eq_lit(arg(cf, 1), "on"))
        pt_conf_error(cf, PT_LOG_WARN, 0, "\"ssl_early_data\" is not supported, ignored");
    return PT_CONF_OK;
}

/* ---- building a context --------------------------------------------------- */

static int pw_none(char *buf, int size, int rw, void *u)
{
    return 0;   /* never prompt on a terminal */
}

static int pw_one(char *buf, int size, int rw, void *u)
{
    const pt_str_t *pw = u;
    if (pw->len > (size_t) size)
        return 0;
    memcpy(buf, pw->data, pw->len);
    return (int) pw->len;
}

static EVP_PKEY *load_key(const char *path, pt_array_t *passwords)
{
    pt_str_t *pw = passwords && passwords != PT_CONF_UNSET_PTR ? passwords->elts : NULL;
    size_t npw = pw ? passwords->nelts : 0;
    size_t tries = npw ? npw : 1;
    EVP_PKEY *pk = NULL;

    for (size_t i = 0; i < tries && pk == NULL; i++) {
        BIO *b = BIO_new_file(path, "r");
        if (b == NULL)
            return NULL;
        if (i + 1 < tries)
            ERR_set_mark();
        pk = PEM_read_bio_PrivateKey(b, NULL, npw ? pw_one : pw_none, npw ? &pw[i] : NULL);
        if (i + 1 < tries)
            ERR_pop_to_mark();
        BIO_free(b);
    }
    return pk;
}

/* Loads one certificate (with its chain) and its key into ctx. */
static int load_pair(pt_conf_t *cf, pt_tls_srv_conf_t *sscf, SSL_CTX *ctx,
                     const pt_str_t *cert, const pt_str_t *key)
{
    BIO *b;
    X509 *x;
    EVP_PKEY *pk;
    int ok = 0;

    ERR_clear_error();
    b = BIO_new_file(cert->data, "r");
    if (b == NULL) {
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                           "cannot load certificate \"%s\": BIO_new_file() failed", cert->data);
        return -1;
    }
    x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (x == NULL) {
        BIO_free(b);
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                           "cannot load certificate \"%s\": PEM_read_bio_X509_AUX() failed",
                           cert->data);
        return -1;
    }
    if (SSL_CTX_use_certificate(ctx, x) != 1) {
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                           "SSL_CTX_use_certificate(\"%s\") failed", cert->data);
        goto done_x;
    }
    /* the rest of the file is the chain of this certificate */
    SSL_CTX_clear_chain_certs(ctx);
    for (;;) {
        X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (ca == NULL) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                break;
            }
            pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                               "cannot load certificate \"%s\": PEM_read_bio_X509() failed",
                               cert->data);
            goto done_x;
        }
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                               "SSL_CTX_add0_chain_cert(\"%s\") failed", cert->data);
            goto done_x;
        }
    }

    pk = load_key(key->data, sscf->passwords);
    if (pk == NULL) {
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                           "cannot load certificate key \"%s\": PEM_read_bio_PrivateKey() failed",
                           key->data);
        goto done_x;
    }
    if (X509_check_private_key(x, pk) != 1 || SSL_CTX_use_PrivateKey(ctx, pk) != 1) {
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                           "SSL_CTX_use_PrivateKey(\"%s\") failed", key->data);
        EVP_PKEY_free(pk);
        goto done_x;
    }
    EVP_PKEY_free(pk);
    ok = 1;

done_x:
    X509_free(x);
    BIO_free(b);
    return ok ? 0 : -1;
}

static int on_servername(SSL *ssl, int *ad, void *arg);
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg);
static int on_verify(int ok, X509_STORE_CTX *store);

static void free_ctx(void *p)
{
    SSL_CTX_free(p);
}

static int set_protocols(SSL_CTX *ctx, unsigned p)
{
    int min = 0, max = 0;
    long opts = 0;
    struct { unsigned bit; int ver; long no; } v[] = {
        { PT_TLS_SSLv3, SSL3_VERSION, SSL_OP_NO_SSLv3 },
        { PT_TLS_TLSv1, TLS1_VERSION, SSL_OP_NO_TLSv1 },
        { PT_TLS_TLSv1_1, TLS1_1_VERSION, SSL_OP_NO_TLSv1_1 },
        { PT_TLS_TLSv1_2, TLS1_2_VERSION, SSL_OP_NO_TLSv1_2 },
        { PT_TLS_TLSv1_3, TLS1_3_VERSION, SSL_OP_NO_TLSv1_3 },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (p & v[i].bit) {
            if (min == 0)
                min = v[i].ver;
            max = v[i].ver;
        } else {
            opts |= v[i].no;
        }
    }
    if (min == 0)
        return -1;
    /* holes ("TLSv1 TLSv1.2") through the NO_ options, range through min/max */
    SSL_CTX_set_options(ctx, (uint64_t) opts);
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_max_proto_version(ctx, max);
    if (min < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0);   /* as configured: old clients allowed */
    return 0;
}

static int make_ctx(pt_conf_t *cf, pt_tls_srv_conf_t *sscf, pt_http_core_srv_conf_t *cscf)
{
    SSL_CTX *ctx;
    const char *f = sscf->cert_file ? sscf->cert_file : cscf->file;
    unsigned l = sscf->cert_file ? sscf->cert_line : cscf->line;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || pt_pool_cleanup_add(cf->pool, free_ctx, ctx) != 0) {
        SSL_CTX_free(ctx);
        pt__tls_conf_error(cf, f, l, "SSL_CTX_new() failed");
        return -1;
    }
    sscf->ctx = ctx;
    SSL_CTX_set_ex_data(ctx, ctx_conf_index, sscf);

    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                             | SSL_OP_IGNORE_UNEXPECTED_EOF
                             | SSL_OP_SINGLE_DH_USE | SSL_OP_SINGLE_ECDH_USE
                             | SSL_OP_NO_SSLv2);
    if (sscf->prefer_server_ciphers)
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_read_ahead(ctx, 0);
    if (set_protocols(ctx, sscf->protocols) != 0) {
        pt__tls_conf_error(cf, f, l, "no usable protocol in \"ssl_protocols\"");
        return -1;
    }
    if (SSL_CTX_set_cipher_list(ctx, sscf->ciphers.data) != 1) {
        pt__tls_conf_error(cf, f, l, "SSL_CTX_set_cipher_list(\"%s\") failed", sscf->ciphers.data);
        return -1;
    }
    if (!pt_str_eq_lit(&sscf->ecdh_curve, "auto")
        && SSL_CTX_set1_groups_list(ctx, sscf->ecdh_curve.data) != 1) {
        pt__tls_conf_error(cf, f, l, "SSL_CTX_set1_curves_list(\"%s\") failed",
                           sscf->ecdh_curve.data);
        return -1;
    }
    if (sscf->dh_pkey) {
        EVP_PKEY *dh = sscf->dh_pkey;
        if (!EVP_PKEY_up_ref(dh) || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
            pt__tls_conf_error(cf, f, l, "SSL_CTX_set0_tmp_dh_pkey(\"%s\") failed",
                               sscf->dhparam.data);
            return -1;
        }
    }

    if (sscf->certificates) {
        pt_str_t *certs = sscf->certificates->elts, *keys = sscf->certificate_keys->elts;
        for (size_t i = 0; i < sscf->certificates->nelts; i++) {
            int acert = pt_acme_is_cert_var(&certs[i]), akey = pt_acme_is_key_var(&keys[i]);
            if (acert != akey) {
                pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                                   "\"$acme_certificate\" and \"$acme_certificate_key\" go "
                                   "together in \"ssl_certificate\" and \"ssl_certificate_key\"");
                return -1;
            }
            if (acert) {
                if (pt_acme_use_cert(cf, cscf, ctx) != 0)
                    return -1;
                continue;
            }
            if (load_pair(cf, sscf, ctx, &certs[i], &keys[i]) != 0)
                return -1;
        }
    }

    /* session id context: the same for the same certificates and client
     * verification, so sessions resume across workers and reloads but never
     * across servers with other verification settings */
    {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned int n = 0;
        if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
            EVP_MD_CTX_free(md);
            return -1;
        }
        EVP_DigestUpdate(md, cscf->server_name.data ? cscf->server_name.data : "", cscf->server_name.len);
        if (sscf->certificates) {
            pt_str_t *certs = sscf->certificates->elts;
            for (size_t i = 0; i < sscf->certificates->nelts; i++)
                EVP_DigestUpdate(md, certs[i].data, certs[i].len);
        }
        EVP_DigestUpdate(md, &sscf->verify, sizeof(sscf->verify));
        if (sscf->client_certificate.len)
            EVP_DigestUpdate(md, sscf->client_certificate.data, sscf->client_certificate.len);
        EVP_DigestFinal_ex(md, sscf->sid_ctx, &n);
        EVP_MD_CTX_free(md);
        SSL_CTX_set_session_id_context(ctx, sscf->sid_ctx, 32);
    }

    /* client certificates */
    if (sscf->verify != PT_TLS_VERIFY_OFF) {
        if (sscf->client_certificate.len == 0 && sscf->trusted_certificate.len == 0
            && sscf->verify != PT_TLS_VERIFY_OPTIONAL_NO_CA) {
            pt__tls_conf_error(cf, cscf->file, cscf->line,
                               "no ssl_client_certificate or ssl_trusted_certificate for "
                               "ssl_verify_client");
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
        SSL_CTX_set_verify_depth(ctx, (int) sscf->verify_depth);
    }
    if (sscf->client_certificate.len) {
        STACK_OF(X509_NAME) *names;
        if (SSL_CTX_load_verify_locations(ctx, sscf->client_certificate.data, NULL) != 1) {
            pt__tls_conf_error(cf, f, l, "SSL_CTX_load_verify_locations(\"%s\") failed",
                               sscf->client_certificate.data);
            return -1;
        }
        names = SSL_load_client_CA_file(sscf->client_certificate.data);
        if (names == NULL) {
            pt__tls_conf_error(cf, f, l, "SSL_load_client_CA_file(\"%s\") failed",
                               sscf->client_certificate.data);
            return -1;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (sscf->trusted_certificate.len
        && SSL_CTX_load_verify_locations(ctx, sscf->trusted_certificate.data, NULL) != 1) {
        pt__tls_conf_error(cf, f, l, "SSL_CTX_load_verify_locations(\"%s\") failed",
                           sscf->trusted_certificate.data);
        return -1;
    }
    if (sscf->crl.len) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lk = X509_STORE_add_lookup(st, X509_LOOKUP_file());
        if (lk == NULL || X509_load_crl_file(lk, sscf->crl.data, X509_FILETYPE_PEM) <= 0) {
            pt__tls_conf_error(cf, f, l, "X509_load_crl_file(\"%s\") failed", sscf->crl.data);
            return -1;
        }
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }

    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_timeout(ctx, (long) sscf->session_timeout);

    if (pt__tls_session_cache_init(cf, sscf) != 0)
        return -1;
    if (pt__tls_ticket_keys_load(cf, sscf) != 0)
        return -1;
    if (pt__tls_stapling_init(cf, sscf) != 0)
        return -1;

    if (sscf->conf_commands) {
        SSL_CONF_CTX *cc = SSL_CONF_CTX_new();
        pt_str_t *a = sscf->conf_commands->elts;
        if (cc == NULL)
            return -1;
        SSL_CONF_CTX_set_flags(cc, SSL_CONF_FLAG_FILE | SSL_CONF_FLAG_SERVER
                                   | SSL_CONF_FLAG_CERTIFICATE | SSL_CONF_FLAG_SHOW_ERRORS);
        SSL_CONF_CTX_set_ssl_ctx(cc, ctx);
        for (size_t i = 0; i + 1 < sscf->conf_commands->nelts; i += 2) {
            if (SSL_CONF_cmd(cc, a[i].data, a[i + 1].data) <= 0) {
                SSL_CONF_CTX_free(cc);
                pt__tls_conf_error(cf, sscf->cmd_file, sscf->cmd_line,
                                   "SSL_CONF_cmd(\"%s\", \"%s\") failed", a[i].data, a[i + 1].data);
                return -1;
            }
        }
        if (SSL_CONF_CTX_finish(cc) != 1) {
            SSL_CONF_CTX_free(cc);
            pt__tls_conf_error(cf, sscf->cmd_file, sscf->cmd_line, "SSL_CONF_finish() failed");
            return -1;
        }
        SSL_CONF_CTX_free(cc);
    }
    return 0;
}

static const char *merge_srv_conf(pt_conf_t *cf, void *parent, void *child)
{
    pt_tls_srv_conf_t *prev = parent, *conf = child;
    pt_http_core_srv_conf_t *cscf = cf->http_ctx->srv_conf[pt_http_core_module.index];
    pt_http_listen_opt_t *lo = cscf->listens.elts;

    if (conf->certificates == PT_CONF_UNSET_PTR) {
        conf->certificates = prev->certificates == PT_CONF_UNSET_PTR ? NULL : prev->certificates;
        conf->certificate_keys = prev->certificate_keys;
        conf->cert_file = prev->cert_file;
        conf->cert_line = prev->cert_line;
    }
    if (conf->certificate_keys == PT_CONF_UNSET_PTR)
        conf->certificate_keys = NULL;
    pt_conf_merge_ptr(conf->passwords, prev->passwords, NULL);
    if (conf->conf_commands == PT_CONF_UNSET_PTR) {
        conf->conf_commands = prev->conf_commands == PT_CONF_UNSET_PTR ? NULL : prev->conf_commands;
        conf->cmd_file = prev->cmd_file;
        conf->cmd_line = prev->cmd_line;
    }
    pt_conf_merge_uint(conf->protocols, prev->protocols, DEFAULT_PROTOCOLS);
    if (conf->protocols == 0)
        conf->protocols = prev->protocols && prev->protocols != PT_CONF_UNSET_UINT
                          ? prev->protocols : DEFAULT_PROTOCOLS;
    pt_conf_merge_str(conf->ciphers, prev->ciphers, DEFAULT_CIPHERS);
    pt_conf_merge_str(conf->ecdh_curve, prev->ecdh_curve, "auto");
    pt_conf_merge_ptr(conf->dh_pkey, prev->dh_pkey, NULL);
    if (conf->dhparam.data == NULL)
        conf->dhparam = prev->dhparam;
    pt_conf_merge(conf->prefer_server_ciphers, prev->prefer_server_ciphers, 0);
    if (conf->session_cache == PT_CONF_UNSET) {
        conf->session_cache = prev->session_cache == PT_CONF_UNSET ? PT_TLS_CACHE_NONE
                                                                   : prev->session_cache;
        conf->builtin_size = prev->builtin_size;
        conf->shm_zone = prev->shm_zone;
    }
    if (conf->builtin_size == PT_CONF_UNSET)
        conf->builtin_size = -1;
    pt_conf_merge_ptr(conf->shm_zone, prev->shm_zone, NULL);
    pt_conf_merge(conf->session_timeout, prev->session_timeout, 300);
    pt_conf_merge(conf->session_tickets, prev->session_tickets, 1);
    pt_conf_merge_ptr(conf->ticket_keys, prev->ticket_keys, NULL);
    pt_conf_merge(conf->verify, prev->verify, PT_TLS_VERIFY_OFF);
    pt_conf_merge(conf->verify_depth, prev->verify_depth, 1);
    if (conf->client_certificate.data == NULL)
        conf->client_certificate = prev->client_certificate;
    if (conf->trusted_certificate.data == NULL)
        conf->trusted_certificate = prev->trusted_certificate;
    if (conf->crl.data == NULL)
        conf->crl = prev->crl;
    pt_conf_merge(conf->stapling, prev->stapling, 0);
    pt_conf_merge(conf->stapling_verify, prev->stapling_verify, 0);
    if (conf->stapling_file.data == NULL)
        conf->stapling_file = prev->stapling_file;
    pt_conf_merge(conf->reject_handshake, prev->reject_handshake, 0);

    conf->srv = cscf;
    conf->handshake_timeout = cscf->client_header_timeout;
    conf->http2 = cscf->http2;
    for (size_t i = 0; i < cscf->listens.nelts; i++) {
        if (lo[i].ssl)
            conf->listen_ssl = 1;
    }

    if (conf->certificates == NULL) {
        if (conf->reject_handshake)
            return make_ctx(cf, conf, cscf) == 0 ? PT_CONF_OK : PT_CONF_ERROR;
        if (conf->listen_ssl) {
            pt__tls_conf_error(cf, cscf->file, cscf->line,
                               "no \"ssl_certificate\" is defined for the \"listen ... ssl\" "
                               "directive in %s:%u", cscf->file, cscf->line);
            return PT_CONF_ERROR;
        }
        return PT_CONF_OK;
    }
    if (conf->certificate_keys == NULL
        || conf->certificate_keys->nelts < conf->certificates->nelts) {
        pt_str_t *certs = conf->certificates->elts;
        size_t k = conf->certificate_keys ? conf->certificate_keys->nelts : 0;
        pt__tls_conf_error(cf, conf->cert_file, conf->cert_line,
                           "no \"ssl_certificate_key\" is defined for certificate \"%s\"",
                           certs[k].data);
        return PT_CONF_ERROR;
    }
    return make_ctx(cf, conf, cscf) == 0 ? PT_CONF_OK : PT_CONF_ERROR;
}

/* ------------------------------------------------------------------------ */
/* SNI, ALPN, client certificates */

static pt_tls_srv_conf_t *srv_tls(pt_http_core_srv_conf_t *cscf)
{
    return cscf->ctx->srv_conf[pt_http_ssl_module.index];
}

static int on_servername(SSL *ssl, int *ad, void *arg)
{
    tls_conn_t *tc = SSL_get_app_data(ssl);
    const char *name;
    pt_http_core_srv_conf_t *cscf;
    pt_tls_srv_conf_t *sscf;

    if (tc == NULL || tc->upstream)
        return SSL_TLSEXT_ERR_OK;
    cscf = tc->addr->default_server;
    name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name && *name) {
        char low[256];
        size_t n = strlen(name);
        if (n >= sizeof(low)) {
            *ad = SSL_AD_UNRECOGNIZED_NAME;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        pt_strlow(low, name, n);
        if (n && low[n - 1] == '.')
            n--;
        pt_str_t host = { n, low };
        cscf = pt_http_find_server(tc->addr, &host, NULL);
    }
    sscf = srv_tls(cscf);
    tc->srv = cscf;
    if (sscf->reject_handshake) {
        *ad = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (sscf->ctx && sscf->ctx != SSL_get_SSL_CTX(ssl)) {
        SSL_CTX *ctx = sscf->ctx;
        SSL_set_SSL_CTX(ssl, ctx);
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
        SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
        SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
        SSL_set_options(ssl, SSL_CTX_get_options(ctx));
    }
    return SSL_TLSEXT_ERR_OK;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char with_h2[] = "\x02h2\x08http/1.1";
    static const unsigned char h1_only[] = "\x08http/1.1";
    tls_conn_t *tc = SSL_get_app_data(ssl);
    int h2 = 0;
    unsigned char *sel;

    if (tc && tc->addr) {
        pt_http_core_srv_conf_t *cscf = tc->srv ? tc->srv : tc->addr->default_server;
        h2 = tc->addr->http2 || cscf->http2;
    }
    if (SSL_select_next_proto(&sel, outlen, h2 ? with_h2 : h1_only,
                              h2 ? sizeof(with_h2) - 1 : sizeof(h1_only) - 1,
                              in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The handshake never fails on the client certificate: as nginx, the request
 * is answered 400 (495/496) instead, so the client sees why. */
static int on_verify(int ok, X509_STORE_CTX *store)
{
    return 1;
}

/* POST_READ: ssl_verify_client of the request's server. */
static int verify_handler(pt_http_request_t *r)
{
    pt_conn_t *c = r->connection;
    pt_tls_srv_conf_t *sscf;
    SSL *ssl;
    long rc;
    X509 *cert;

    if (c == NULL || c->ssl == NULL || r->internal)
        return PT_DECLINED;
    sscf = r->srv_conf[pt_http_ssl_module.index];
    if (sscf->verify == PT_TLS_VERIFY_OFF)
        return PT_DECLINED;
    ssl = c->ssl;
    {
        /* the client certificate was checked against the server SNI named;
         * a request for another server that verifies clients must not ride
         * on it (nginx's 421) */
        tls_conn_t *tc = SSL_get_app_data(ssl);
        if (tc && !tc->upstream && tc->srv
            && tc->srv->ctx->srv_conf != r->srv_conf
            && SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) != NULL) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client attempted to request the server name "
                         "different from the one that was negotiated");
            return 421;
        }
    }
    rc = SSL_get_verify_result(ssl);
    if (rc != X509_V_OK
        && (sscf->verify != PT_TLS_VERIFY_OPTIONAL_NO_CA
            || !(rc == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
                 || rc == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
                 || rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
                 || rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                 || rc == X509_V_ERR_CERT_UNTRUSTED
                 || rc == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE))) {
        pt_log_error(PT_LOG_INFO, &c->log, 0, "client SSL certificate verify error: (%ld:%s)",
                     rc, X509_verify_cert_error_string(rc));
        return 495;
    }
    if (sscf->verify == PT_TLS_VERIFY_ON) {
        cert = SSL_get1_peer_certificate(ssl);
        if (cert == NULL) {
            pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent no required SSL certificate");
            return 496;
        }
        X509_free(cert);
    }
    return PT_DECLINED;
}

/* ------------------------------------------------------------------------ */
/* Variables */

enum { V_PROTOCOL, V_CIPHER, V_SERVER_NAME, V_REUSED, V_CLIENT_VERIFY, V_S_DN, V_I_DN,
       V_SERIAL, V_FINGERPRINT, V_ALPN, V_CURVE, V_SESSION_ID, V_CIPHERS, V_EARLY };

static int var_set(pt_http_request_t *r, pt_http_var_value_t *v, const char *s, size_t n)
{
    v->value.data = pt_pnalloc(r->pool, n + 1);
    if (v->value.data == NULL)
        return PT_ERROR;
    memcpy(v->value.data, s, n);
    v->value.data[n] = '\0';
    v->value.len = n;
    v->valid = 1;
    v->not_found = 0;
    return PT_OK;
}

static int name_text(pt_http_request_t *r, pt_http_var_value_t *v, X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n;
    int rc;
    if (b == NULL)
        return PT_ERROR;
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
    n = BIO_get_mem_data(b, &p);
    rc = var_set(r, v, p, n > 0 ? (size_t) n : 0);
    BIO_free(b);
    return rc;
}

static int get_ssl_var(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_conn_t *c = r->connection;
    SSL *ssl = c ? c->ssl : NULL;
    char buf[256];

    if (ssl == NULL) {
        v->not_found = 1;
        v->valid = 1;
        v->value.len = 0;
        v->value.data = (char *) "";
        return PT_OK;
    }
    switch (data) {
    case V_PROTOCOL: {
        const char *s = SSL_get_version(ssl);
        return var_set(r, v, s, strlen(s));
    }
    case V_CIPHER: {
        const char *s = SSL_get_cipher_name(ssl);
        return var_set(r, v, s, strlen(s));
    }
    case V_CIPHERS: {
        STACK_OF(SSL_CIPHER) *sk = SSL_get_client_ciphers(ssl);
        size_t len = 0;
        buf[0] = '\0';
        for (int i = 0; sk && i < sk_SSL_CIPHER_num(sk); i++) {
            const char *s = SSL_CIPHER_get_name(sk_SSL_CIPHER_value(sk, i));
            int n = snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? ":" : "", s);
            if (n < 0 || (size_t) n >= sizeof(buf) - len)
                break;
            len += (size_t) n;
        }
        return var_set(r, v, buf, len);
    }
    case V_SERVER_NAME: {
        const char *s = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        if (s == NULL) {
            v->not_found = 1;
            v->valid = 1;
            v->value.len = 0;
            v->value.data = (char *) "";
            return PT_OK;
        }
        return var_set(r, v, s, strlen(s));
    }
    case V_REUSED:
        return var_set(r, v, SSL_session_reused(ssl) ? "r" : ".", 1);
    case V_SESSION_ID: {
        SSL_SESSION *s = SSL_get0_session(ssl);
        unsigned int n = 0;
        const unsigned char *id = s ? SSL_SESSION_get_id(s, &n) : NULL;
        size_t len = 0;
        for (unsigned i = 0; id && i < n && len + 2 < sizeof(buf); i++)
            len += (size_t) snprintf(buf + len, sizeof(buf) - len, "%02x", id[i]);
        return var_set(r, v, buf, len);
    }
    case V_CLIENT_VERIFY: {
        X509 *x = SSL_get1_peer_certificate(ssl);
        long rc;
        if (x == NULL)
            return var_set(r, v, "NONE", 4);
        X509_free(x);
        rc = SSL_get_verify_result(ssl);
        if (rc == X509_V_OK)
            return var_set(r, v, "SUCCESS", 7);
        int n = snprintf(buf, sizeof(buf), "FAILED:%s", X509_verify_cert_error_string(rc));
        return var_set(r, v, buf, n > 0 ? (size_t) n : 0);
    }
    case V_S_DN: case V_I_DN: case V_SERIAL: case V_FINGERPRINT: {
        X509 *x = SSL_get1_peer_certificate(ssl);
        int rc = PT_OK;
        if (x == NULL)
            return var_set(r, v, "", 0);
        if (data == V_S_DN) {
            rc = name_text(r, v, X509_get_subject_name(x));
        } else if (data == V_I_DN) {
            rc = name_text(r, v, X509_get_issuer_name(x));
        } else if (data == V_SERIAL) {
            BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
            char *hex = bn ? BN_bn2hex(bn) : NULL;
            rc = var_set(r, v, hex ? hex : "", hex ? strlen(hex) : 0);
            OPENSSL_free(hex);
            BN_free(bn);
        } else {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int n = 0;
            size_t len = 0;
            X509_digest(x, EVP_sha1(), md, &n);
            for (unsigned i = 0; i < n; i++)
                len += (size_t) snprintf(buf + len, sizeof(buf) - len, "%02x", md[i]);
            rc = var_set(r, v, buf, len);
        }
        X509_free(x);
        return rc;
    }
    case V_ALPN: {
        const unsigned char *p;
        unsigned int n = 0;
        SSL_get0_alpn_selected(ssl, &p, &n);
        return var_set(r, v, n ? (const char *) p : "", n);
    }
    case V_CURVE: {
        int nid = SSL_get_negotiated_group(ssl);
        const char *s = nid ? OBJ_nid2sn(nid) : "";
        if (nid && (nid & TLSEXT_nid_unknown)) {
            snprintf(buf, sizeof(buf), "0x%04x", nid & 0xffff);
            s = buf;
        }
        return var_set(r, v, s ? s : "", s ? strlen(s) : 0);
    }
    case V_EARLY:
        return var_set(r, v, "", 0);
    }
    return PT_ERROR;
}

static int preconfiguration(pt_conf_t *cf)
{
    static const struct { const char *name; int id; } vars[] = {
        { "ssl_protocol", V_PROTOCOL }, { "ssl_cipher", V_CIPHER }, { "ssl_ciphers", V_CIPHERS },
        { "ssl_server_name", V_SERVER_NAME }, { "ssl_session_reused", V_REUSED },
        { "ssl_session_id", V_SESSION_ID }, { "ssl_client_verify", V_CLIENT_VERIFY },
        { "ssl_client_s_dn", V_S_DN }, { "ssl_client_i_dn", V_I_DN },
        { "ssl_client_serial", V_SERIAL }, { "ssl_client_fingerprint", V_FINGERPRINT },
        { "ssl_alpn_protocol", V_ALPN }, { "ssl_curve", V_CURVE }, { "ssl_early_data", V_EARLY },
    };
    if (ctx_conf_index < 0) {
        ctx_conf_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        if (ctx_conf_index < 0)
            return -1;
    }
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        pt_str_t name = { strlen(vars[i].name), (char *) vars[i].name };
        pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
        if (v == NULL)
            return -1;
        v->get = get_ssl_var;
        v->data = (uintptr_t) vars[i].id;
    }
    return 0;
}

static int postconfiguration(pt_conf_t *cf)
{
    return pt_http_phase_add(cf, PT_HTTP_POST_READ_PHASE, verify_handler);
}

/* ------------------------------------------------------------------------ */
/* Connections: plain-HTTP detection, handshake */

static void tls_cleanup(void *data)
{
    tls_conn_t *tc = data;
    if (tc->plain) {
        pt_buf_put(tc->plain);
        tc->plain = NULL;
    }
    if (tc->ssl) {
        /* the fd is closed already: no close_notify can go out now. Mark
         * the session as cleanly shut down unless the connection failed, or
         * OpenSSL would drop it from the session cache */
        SSL_set_quiet_shutdown(tc->ssl, 1);
        if (!tc->failed)
            SSL_set_shutdown(tc->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(tc->ssl);
        tc->ssl = NULL;
    }
    if (tc->c && tc->c->ssl)
        tc->c->ssl = NULL;
}

/* pt_conn_close() hook: a close_notify before the fd goes (one nonblocking
 * try; a full socket buffer just loses it). */
static void tls_on_close(pt_conn_t *c)
{
    tls_conn_t *tc = c->ssl ? SSL_get_app_data((SSL *) c->ssl) : NULL;
    if (tc == NULL || tc->failed || c->io.fd < 0)
        return;
    if (SSL_is_init_finished(tc->ssl)) {
        ERR_clear_error();
        if (SSL_shutdown(tc->ssl) < 0)
            ERR_clear_error();
    }
}

/* The socket BIO's callback: after each read() OpenSSL makes, notes whether
 * it drained the socket (fewer bytes than asked for, or none). */
static long bio_read_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                        int ret, size_t *processed)
{
    (void) argp;
    (void) argi;
    (void) argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        tls_conn_t *tc = (tls_conn_t *) BIO_get_callback_arg(b);
        if (tc)
            tc->drained = ret <= 0 || processed == NULL || *processed < len;
    }
    return ret;
}

/* The write BIO: what OpenSSL writes goes through pt_conn_send(), so with
 * batched sends (src/net/sendq.c) the records of one loop iteration leave in
 * one io_uring_enter() with everything else. */
static BIO_METHOD *conn_bio_method;

static int conn_bio_write(BIO *b, const char *data, size_t len, size_t *written)
{
    pt_conn_t *c = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    *written = 0;
    if (len == 0)
        return 1;
    ssize_t n = pt_conn_send(c, data, len);   /* staged, or a plain send() */
    if (n == PT_IO_AGAIN) {
        BIO_set_retry_write(b);
        return 0;
    }
    if (n < 0)
        return 0;
    *written = (size_t) n;
    return 1;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void) b;
    (void) num;
    (void) ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int conn_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO *conn_bio_new(pt_conn_t *c)
{
    if (conn_bio_method == NULL) {
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                     "portico connection");
        if (m == NULL || !BIO_meth_set_write_ex(m, conn_bio_write)
            || !BIO_meth_set_ctrl(m, conn_bio_ctrl) || !BIO_meth_set_create(m, conn_bio_create)) {
            BIO_meth_free(m);
            return NULL;
        }
        conn_bio_method = m;
    }
    BIO *b = BIO_new(conn_bio_method);
    if (b != NULL)
        BIO_set_data(b, c);
    return b;
}

/* As SSL_set_fd, but with a BIO for reading and another for writing (on
 * the same fd), so that the read BIO's callback is not also called for
 * every write and its flush. */
static int set_socket(SSL *ssl, pt_conn_t *c)
{
    BIO *rb = BIO_new_socket(c->io.fd, BIO_NOCLOSE);
    BIO *wb = rb ? conn_bio_new(c) : NULL;
    if (wb == NULL) {
        BIO_free(rb);
        return -1;
    }
    SSL_set_bio(ssl, rb, wb);
    return 0;
}

/* read_ahead: OpenSSL reads what the socket holds in one read() (not the
 * 5-byte record header, then the record: two per record); the BIO callback
 * tells pt_tls_recv when the socket is drained, so no recv(MSG_PEEK) is
 * needed to clear read.ready after a short read. */
static void setup_io(tls_conn_t *tc)
{
    BIO *rb = SSL_get_rbio(tc->ssl);

    SSL_set_read_ahead(tc->ssl, 1);
    if (rb) {
        BIO_set_callback_arg(rb, (char *) tc);
        BIO_set_callback_ex(rb, bio_read_cb);
    }
}

static void tls_close(tls_conn_t *tc)
{
    pt_conn_close(tc->c);
}

static void handshake(tls_conn_t *tc);
static void plain_http(tls_conn_t *tc);
static void first_byte(tls_conn_t *tc);

static void on_hs_event(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    tls_conn_t *tc = c->data;

    if (ev->timedout) {
        pt_log_error(PT_LOG_INFO, &c->log, ETIMEDOUT, "client timed out while SSL handshaking");
        tls_close(tc);
        return;
    }
    if (c->close) {
        tls_close(tc);
        return;
    }
    if (tc->plain)
        plain_http(tc);
    else if (tc->ssl == NULL)
        first_byte(tc);
    else
        handshake(tc);
}

/* Peeks the first byte: a TLS record (0x16) or an SSLv2-style hello (high
 * bit) starts the handshake; anything else is plain HTTP. */
static void first_byte(tls_conn_t *tc)
{
    pt_conn_t *c = tc->c;
    unsigned char b;
    ssize_t n = recv(c->io.fd, &b, 1, MSG_PEEK);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->io.read.ready = 0;
        return;
    }
    if (n <= 0) {
        if (n < 0)
            pt_log_error(PT_LOG_INFO, &c->log, errno, "recv() failed");
        tls_close(tc);
        return;
    }
    if (b == 0x16 || (b & 0x80)) {
        pt_tls_srv_conf_t *sscf = srv_tls(tc->addr->default_server);
        if (sscf->ctx == NULL) {
            pt_log_error(PT_LOG_ERR, &c->log, 0,
                         "no \"ssl_certificate\" is defined in server listening on SSL port "
                         "while SSL handshaking");
            tls_close(tc);
            return;
        }
        ERR_clear_error();
        tc->ssl = SSL_new(sscf->ctx);
        if (tc->ssl == NULL || set_socket(tc->ssl, c) != 0) {
            pt__tls_error(PT_LOG_ALERT, &c->log, "SSL_new() failed");
            tls_close(tc);
            return;
        }
        SSL_set_app_data(tc->ssl, tc);
        setup_io(tc);
        SSL_set_accept_state(tc->ssl);
        c->ssl = tc->ssl;
        c->on_close = tls_on_close;
        handshake(tc);
        return;
    }
    tc->plain = pt_buf_get(4096);
    if (tc->plain == NULL) {
        tls_close(tc);
        return;
    }
    plain_http(tc);
}

static void dispatch(tls_conn_t *tc)
{
    pt_conn_t *c = tc->c;
    const unsigned char *p;
    unsigned int n = 0;

    pt_timer_del(&c->io.read);
    pt_conn_reusable(c, 0);
    c->recv = pt_tls_recv;
    c->send = pt_tls_send;
    c->writev = pt_tls_writev;
    c->data = NULL;
    /* the client's first request may already sit decrypted inside OpenSSL */
    c->io.read.ready = 1;
    SSL_get0_alpn_selected(tc->ssl, &p, &n);
    if (n == 2 && memcmp(p, "h2", 2) == 0)
        pt_http2_init_connection(c);
    else
        pt_http_init_connection(c);
}

static void handshake(tls_conn_t *tc)
{
    pt_conn_t *c = tc->c;
    int rc, err;

    ERR_clear_error();
    rc = SSL_do_handshake(tc->ssl);
    if (rc == 1) {
        if (tc->upstream) {
            pt_tls_done_cb done = tc->done;
            pt_timer_del(&c->io.write);
            c->recv = pt_tls_recv;
            c->send = pt_tls_send;
            c->writev = pt_tls_writev;
            done(c, 0);
            return;
        }
        dispatch(tc);
        return;
    }
    err = SSL_get_error(tc->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        c->io.read.ready = 0;
        return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        c->io.write.ready = 0;
        pt_conn_want_write(c);
        return;
    }
    tc->failed = 1;
    if (tc->upstream) {
        long vr = SSL_get_verify_result(tc->ssl);
        if (vr != X509_V_OK)
            pt_log_error(PT_LOG_ERR, &c->log, 0, "upstream SSL certificate verify error: (%ld:%s)",
                         vr, X509_verify_cert_error_string(vr));
        else
            pt__tls_error(PT_LOG_ERR, &c->log, "SSL_do_handshake() failed while SSL handshaking "
                          "to upstream");
        tc->done(c, -1);
        return;
    }
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        pt_log_error(PT_LOG_INFO, &c->log, errno, "peer closed connection in SSL handshake");
    else
        pt__tls_error(PT_LOG_INFO, &c->log, "SSL_do_handshake() failed while SSL handshaking");
    tls_close(tc);
}

void pt_tls_init_connection(pt_conn_t *c)
{
    pt_http_addr_conf_t *addr = pt_http_addr_conf_get(c);
    pt_http_core_srv_conf_t *cscf = addr->default_server;
    tls_conn_t *tc;

    /* proxy_protocol hook: the PROXY header comes before the handshake */
    if (pt_proxy_protocol_start(c, addr, pt_tls_init_connection))
        return;
    if (!addr->ssl) {
        /* one socket serving a TLS and a plain address (wildcard + specific) */
        if (addr->http2 || cscf->http2)
            pt_http2_detect_connection(c);
        else
            pt_http_init_connection(c);
        return;
    }
    (void) pt_conn_nodelay(c);   /* handshake records go out at once (accept leaves it) */
    if (c->pool == NULL)
        c->pool = pt_pool_create((size_t) cscf->connection_pool_size);
    tc = c->pool ? pt_pcalloc(c->pool, sizeof(*tc)) : NULL;
    if (tc == NULL || pt_pool_cleanup_add(c->pool, tls_cleanup, tc) != 0) {
        pt_log_error(PT_LOG_ALERT, &c->log, 0, "out of memory for a TLS connection");
        pt_conn_close(c);
        return;
    }
    tc->c = c;
    tc->addr = addr;
    tc->srv = cscf;
    c->data = tc;
    c->io.read.handler = on_hs_event;
    c->io.write.handler = on_hs_event;
    pt_conn_reusable(c, 1);
    pt_timer_add(&c->io.read, cscf->client_header_timeout);
    if (c->io.read.ready)
        first_byte(tc);
}

/* ---- plain HTTP on the TLS port: nginx's 400 page ------------------------- */

#define PLAIN_TEXT "The plain HTTP request was sent to HTTPS port"
#define PLAIN_BODY \
    "<html>\r\n<head><title>400 " PLAIN_TEXT "</title></head>\r\n<body>\r\n" \
    "<center><h1>400 Bad Request</h1></center>\r\n<center>" PLAIN_TEXT "</center>\r\n" \
    "<hr><center>portico/" PT_VERSION "</center>\r\n</body>\r\n</html>\r\n"

static void plain_http(tls_conn_t *tc)
{
    pt_conn_t *c = tc->c;
    pt_buf_t *b = tc->plain;
    char head[512];
    int n;

    if (c->io.read.ready) {
        for (;;) {
            ssize_t r;
            if (pt_buf_room(b) == 0)
                break;
            r = pt_conn_recv(c, b->last, pt_buf_room(b));
            if (r == PT_IO_AGAIN)
                break;
            if (r <= 0) {
                tls_close(tc);
                return;
            }
            b->last += r;
        }
    }
    if (pt_buf_room(b) != 0 && !pt_strnstr(b->pos, pt_buf_size(b), "\r\n\r\n", 4)
        && !pt_strnstr(b->pos, pt_buf_size(b), "\n\n", 2))
        return;   /* wait for the rest of the head */

    pt_log_error(PT_LOG_INFO, &c->log, 0, "client sent plain HTTP request to HTTPS port");
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 400 Bad Request\r\nServer: portico/" PT_VERSION "\r\n"
                 "Date: %.*s\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 (int) pt_cached_http_time.len, pt_cached_http_time.data,
                 sizeof(PLAIN_BODY) - 1);
    struct iovec iov[2] = {
        { head, (size_t) n }, { (void *) PLAIN_BODY, sizeof(PLAIN_BODY) - 1 }
    };
    /* a small answer on a fresh socket: one try, then close */
    (void) pt_conn_writev(c, iov, 2);
    (void) pt_conn_shutdown_wr(c);
    tls_close(tc);
}

/* ------------------------------------------------------------------------ */
/* I/O */

static void mark_failed(pt_conn_t *c)
{
    tls_conn_t *tc = SSL_get_app_data((SSL *) c->ssl);
    if (tc)
        tc->failed = 1;
}

ssize_t pt_tls_recv(pt_conn_t *c, char *buf, size_t size)
{
    SSL *ssl = c->ssl;
    size_t n = 0;
    int rc, err;

    if (size == 0)
        return 0;
    ERR_clear_error();
    rc = SSL_read_ex(ssl, buf, size, &n);
    if (rc == 1) {
        /* as the plain recv: a read that drained both OpenSSL and the
         * socket clears ready (owners decide on it, e.g. lingering); the
         * BIO callback saw whether OpenSSL's last read() drained the
         * socket, so no extra syscall is needed to learn it */
        if (!SSL_has_pending(ssl) && !c->io.read.eof) {
            tls_conn_t *tc = SSL_get_app_data(ssl);
            if (tc) {
                if (tc->drained)
                    c->io.read.ready = 0;
            } else if (n < size) {
                char b;
                ssize_t p = recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
                if (p < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    c->io.read.ready = 0;
            }
        }
        return (ssize_t) n;
    }
    err = SSL_get_error(ssl, rc);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        c->io.read.ready = 0;
        return PT_IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->io.read.ready = 0;
        c->io.write.ready = 0;
        pt_conn_want_write(c);
        return PT_IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        c->io.read.ready = 0;
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0)
            return 0;
        pt_log_error(PT_LOG_INFO, &c->log, errno, "SSL_read() failed");
        ERR_clear_error();
        return -1;
    default:
        pt__tls_error(PT_LOG_INFO, &c->log, "SSL_read() failed");
        mark_failed(c);
        return -1;
    }
}

ssize_t pt_tls_send(pt_conn_t *c, const char *buf, size_t size)
{
    SSL *ssl = c->ssl;
    size_t n = 0;
    int rc, err;

    if (size == 0)
        return 0;
    ERR_clear_error();
    rc = SSL_write_ex(ssl, buf, size, &n);
    if (rc == 1)
        return (ssize_t) n;
    err = SSL_get_error(ssl, rc);
    switch (err) {
    case SSL_ERROR_WANT_WRITE:
    case SSL_ERROR_WANT_READ:
        c->io.write.ready = 0;
        pt_conn_want_write(c);
        return PT_IO_AGAIN;
    case SSL_ERROR_SYSCALL:
        pt_log_error(PT_LOG_INFO, &c->log, errno, "SSL_write() failed");
        ERR_clear_error();
        return -1;
    default:
        pt__tls_error(PT_LOG_INFO, &c->log, "SSL_write() failed");
        mark_failed(c);
        return -1;
    }
}

/* TLS has no scatter write: up to one record's worth is gathered into a
 * buffer per call of SSL_write. A write that blocks is retried by the caller
 * with the same leading bytes (its queue has not moved), which is what
 * OpenSSL requires; SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the new
 * address. */
ssize_t pt_tls_writev(pt_conn_t *c, struct iovec *iov, int niov)
{
    static char gather[TLS_RECORD];
    ssize_t total = 0;
    int i = 0;
    size_t off = 0;

    while (i < niov) {
        size_t fill = 0;
        int j = i;
        size_t o = off;
        ssize_t w;

        if (iov[i].iov_len - off >= TLS_RECORD || (i + 1 == niov)) {
            /* big or single piece: no copy */
            size_t len = iov[i].iov_len - off;
            w = pt_tls_send(c, (const char *) iov[i].iov_base + off, len);
            if (w <= 0)
                return total ? total : w;
            total += w;
            if ((size_t) w < len)
                return total;
            i++;
            off = 0;
            continue;
        }
        while (j < niov && fill < TLS_RECORD) {
            size_t take = iov[j].iov_len - o;
            if (take > TLS_RECORD - fill)
                take = TLS_RECORD - fill;
            memcpy(gather + fill, (const char *) iov[j].iov_base + o, take);
            fill += take;
            o += take;
            if (o == iov[j].iov_len) {
                j++;
                o = 0;
            }
        }
        w = pt_tls_send(c, gather, fill);
        if (w <= 0)
            return total ? total : w;
        total += w;
        if ((size_t) w < fill)
            return total;
        i = j;
        off = o;
    }
    return total;
}

const char *pt_tls_alpn(pt_conn_t *c)
{
    static char out[32];
    const unsigned char *p;
    unsigned int n = 0;
    if (c->ssl == NULL)
        return "";
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    if (n >= sizeof(out))
        n = sizeof(out) - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

void pt_tls_shutdown(pt_conn_t *c)
{
    if (c->ssl == NULL || c->io.fd < 0)
        return;
    ERR_clear_error();
    if (SSL_is_init_finished((SSL *) c->ssl))
        (void) SSL_shutdown(c->ssl);
    ERR_clear_error();
}

pt_tls_srv_conf_t *pt__tls_session_conf(void *ssl)
{
    tls_conn_t *tc = SSL_get_app_data((SSL *) ssl);
    if (tc == NULL || tc->upstream || tc->addr == NULL)
        return SSL_CTX_get_app_data(SSL_get_SSL_CTX((SSL *) ssl));
    return srv_tls(tc->addr->default_server);
}

/* ------------------------------------------------------------------------ */
/* TLS to upstreams */

void pt_tls_upstream_conf_create(pt_tls_upstream_conf_t *uc)
{
    memset(uc, 0, sizeof(*uc));
    uc->server_name = PT_CONF_UNSET;
    uc->verify = PT_CONF_UNSET;
    uc->verify_depth = PT_CONF_UNSET;
    uc->protocols = PT_CONF_UNSET_UINT;
    uc->session_reuse = PT_CONF_UNSET;
    uc->passwords = PT_CONF_UNSET_PTR;
}

void pt_tls_upstream_conf_merge(pt_tls_upstream_conf_t *uc, const pt_tls_upstream_conf_t *prev)
{
    if (uc->name.data == NULL)
        uc->name = prev->name;
    pt_conf_merge(uc->server_name, prev->server_name, 0);
    pt_conf_merge(uc->verify, prev->verify, 0);
    pt_conf_merge(uc->verify_depth, prev->verify_depth, 1);
    if (uc->trusted_certificate.data == NULL)
        uc->trusted_certificate = prev->trusted_certificate;
    if (uc->certificate.data == NULL)
        uc->certificate = prev->certificate;
    if (uc->certificate_key.data == NULL)
        uc->certificate_key = prev->certificate_key;
    pt_conf_merge_ptr(uc->passwords, prev->passwords, NULL);
    pt_conf_merge_uint(uc->protocols, prev->protocols, DEFAULT_PROTOCOLS);
    pt_conf_merge_str(uc->ciphers, prev->ciphers, "DEFAULT");
    pt_conf_merge(uc->session_reuse, prev->session_reuse, 1);
}

static int on_upstream_session(SSL *ssl, SSL_SESSION *sess)
{
    tls_conn_t *tc = SSL_get_app_data(ssl);
    if (tc == NULL || tc->uconf == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    SSL_SESSION_free(tc->uconf->session);
    tc->uconf->session = sess;
    return 1;     /* we keep the reference */
}

static void free_upstream_session(void *p)
{
    pt_tls_upstream_conf_t *uc = p;
    SSL_SESSION_free(uc->session);
    uc->session = NULL;
}

int pt_tls_upstream_conf_init(pt_conf_t *cf, pt_tls_upstream_conf_t *uc)
{
    SSL_CTX *ctx;

    if (uc->ctx)
        return 0;
    if (pt_pool_cleanup_add(cf->pool, free_upstream_session, uc) != 0)
        return -1;
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || pt_pool_cleanup_add(cf->pool, free_ctx, ctx) != 0) {
        SSL_CTX_free(ctx);
        pt__tls_conf_error(cf, NULL, 0, "SSL_CTX_new() failed");
        return -1;
    }
    uc->ctx = ctx;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                             | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);
    if (set_protocols(ctx, uc->protocols) != 0) {
        pt__tls_conf_error(cf, NULL, 0, "no usable protocol in \"proxy_ssl_protocols\"");
        return -1;
    }
    if (SSL_CTX_set_cipher_list(ctx, uc->ciphers.data) != 1) {
        pt__tls_conf_error(cf, NULL, 0, "SSL_CTX_set_cipher_list(\"%s\") failed", uc->ciphers.data);
        return -1;
    }
    if (uc->verify) {
        if (uc->trusted_certificate.len == 0) {
            pt__tls_conf_error(cf, NULL, 0, "no proxy_ssl_trusted_certificate for proxy_ssl_verify");
            return -1;
        }
        if (SSL_CTX_load_verify_locations(ctx, uc->trusted_certificate.data, NULL) != 1) {
            pt__tls_conf_error(cf, NULL, 0, "SSL_CTX_load_verify_locations(\"%s\") failed",
                               uc->trusted_certificate.data);
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_verify_depth(ctx, (int) uc->verify_depth);
    }
    if (uc->certificate.len) {
        pt_tls_srv_conf_t tmp;
        memset(&tmp, 0, sizeof(tmp));
        tmp.passwords = uc->passwords;
        if (uc->certificate_key.len == 0) {
            pt__tls_conf_error(cf, NULL, 0, "no \"proxy_ssl_certificate_key\" is defined for "
                               "certificate \"%s\"", uc->certificate.data);
            return -1;
        }
        if (load_pair(cf, &tmp, ctx, &uc->certificate, &uc->certificate_key) != 0)
            return -1;
    }
    if (uc->session_reuse) {
        /* the session to resume next time: TLS 1.3 tickets arrive after the
         * handshake, so take them as OpenSSL reports them */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, on_upstream_session);
    }
    return 0;
}

static void on_up_event(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    tls_conn_t *tc = SSL_get_app_data((SSL *) c->ssl);

    if (ev->timedout) {
        pt_log_error(PT_LOG_ERR, &c->log, ETIMEDOUT, "upstream timed out while SSL handshaking");
        tc->done(c, -1);
        return;
    }
    handshake(tc);
}

void pt_tls_upstream_connect(pt_conn_t *c, pt_tls_upstream_conf_t *uc, const pt_str_t *host,
                             pt_tls_done_cb done)
{
    tls_conn_t *tc;
    SSL *ssl;
    char name[256];
    const pt_str_t *h = uc->name.len ? &uc->name : host;
    size_t n = 0;

    if (c->pool == NULL)
        c->pool = pt_pool_create(512);
    tc = c->pool ? pt_pcalloc(c->pool, sizeof(*tc)) : NULL;
    if (tc == NULL || pt_pool_cleanup_add(c->pool, tls_cleanup, tc) != 0) {
        done(c, -1);
        return;
    }
    ERR_clear_error();
    ssl = SSL_new(uc->ctx);
    if (ssl == NULL || set_socket(ssl, c) != 0) {
        SSL_free(ssl);
        pt__tls_error(PT_LOG_ALERT, &c->log, "SSL_new() failed");
        done(c, -1);
        return;
    }
    tc->c = c;
    tc->ssl = ssl;
    tc->upstream = 1;
    tc->uconf = uc;
    tc->done = done;
    c->ssl = ssl;
    c->on_close = tls_on_close;
    SSL_set_app_data(ssl, tc);
    setup_io(tc);
    SSL_set_connect_state(ssl);

    if (h && h->len) {
        /* host[:port] -> host */
        n = h->len;
        if (h->data[0] != '[') {
            const char *colon = memchr(h->data, ':', h->len);
            if (colon)
                n = (size_t) (colon - h->data);
        }
        if (n >= sizeof(name))
            n = sizeof(name) - 1;
        memcpy(name, h->data, n);
        name[n] = '\0';
    }
    if (uc->server_name && n) {
        /* no SNI with an IP address literal (RFC 6066) */
        int is_ip = (name[0] == '[') || strspn(name, "0123456789.") == n;
        if (!is_ip)
            SSL_set_tlsext_host_name(ssl, name);
    }
    if (uc->verify && n) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (name[0] == '[' || strspn(name, "0123456789.") == n) {
            char ip[256];
            size_t il = n;
            const char *s = name;
            if (name[0] == '[' && n > 2) {
                s = name + 1;
                il = n - 2;
            }
            memcpy(ip, s, il);
            ip[il] = '\0';
            X509_VERIFY_PARAM_set1_ip_asc(vp, ip);
        } else {
            X509_VERIFY_PARAM_set1_host(vp, name, n);
        }
    }
    if (uc->session_reuse && uc->session)
        SSL_set_session(ssl, uc->session);

    c->io.read.handler = on_up_event;
    c->io.write.handler = on_up_event;
    c->io.write.ready = 1;
    handshake(tc);
}
