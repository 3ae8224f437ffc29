/* TLS termination (module "http_ssl") and TLS to upstreams.
 *
 * One SSL_CTX per server { } that has certificates (or ssl_reject_handshake),
 * made by the master at config time and inherited by the workers, so
 * everything derived from it at creation (default ticket keys) is the same in
 * every worker. A TLS listener's connections start in pt_tls_init_connection:
 * it peeks the first byte (plain HTTP gets nginx's 400), drives the
 * nonblocking handshake on the event loop (SNI picks the server's context,
 * ALPN picks h2 or http/1.1), then replaces c->recv/send/writev with TLS
 * versions and hands the connection to HTTP/1.1 or HTTP/2.
 *
 * Owner: tls (tls.c, session.c, ocsp.c). */
#ifndef PT_TLS_H
#define PT_TLS_H

#include <stdint.h>
#include "../config/conf.h"
#include "../core/shm.h"
#include "../net/conn.h"

typedef struct ssl_ctx_st pt_ssl_ctx_t;   /* SSL_CTX, without including OpenSSL */

/* Protocol bits (ssl_protocols). */
#define PT_TLS_SSLv2   0x0002
#define PT_TLS_SSLv3   0x0004
#define PT_TLS_TLSv1   0x0008
#define PT_TLS_TLSv1_1 0x0010
#define PT_TLS_TLSv1_2 0x0020
#define PT_TLS_TLSv1_3 0x0040

enum { PT_TLS_VERIFY_OFF = 0, PT_TLS_VERIFY_ON, PT_TLS_VERIFY_OPTIONAL,
       PT_TLS_VERIFY_OPTIONAL_NO_CA };

/* ssl_session_cache */
enum { PT_TLS_CACHE_NONE = 0, PT_TLS_CACHE_OFF };

/* A ticket key (ssl_session_ticket_key file): 48 bytes = AES-128 + 16-byte
 * HMAC key, 80 bytes = AES-256 + 32-byte HMAC key (nginx's file format). */
typedef struct {
    unsigned char name[16];
    unsigned char aes_key[32];
    unsigned char hmac_key[32];
    size_t        size;          /* 48 or 80 */
} pt_tls_ticket_key_t;

/* Per server (also http level, merged down). */
typedef struct {
    pt_ssl_ctx_t *ctx;               /* NULL: this server has no TLS */
    pt_array_t   *certificates;      /* pt_str_t paths (UNSET_PTR until merged) */
    pt_array_t   *certificate_keys;  /* pt_str_t paths (may be "data:..." not supported) */
    pt_array_t   *passwords;         /* pt_str_t from ssl_password_file */
    pt_array_t   *conf_commands;     /* pt_str_t pairs */
    unsigned      protocols;         /* PT_TLS_* bits */
    pt_str_t      ciphers;
    pt_str_t      ecdh_curve;
    pt_str_t      dhparam;
    void         *dh_pkey;           /* EVP_PKEY of ssl_dhparam (UNSET_PTR, NULL) */
    int           prefer_server_ciphers;
    int           session_cache;     /* PT_TLS_CACHE_* or builtin */
    int64_t       builtin_size;      /* -1: no builtin cache; 0: default size */
    pt_shm_zone_t *shm_zone;         /* shared:NAME:SIZE */
    int64_t       session_timeout;   /* seconds, 300 */
    int           session_tickets;   /* on */
    pt_array_t   *ticket_key_files;  /* pt_str_t */
    pt_array_t   *ticket_keys;       /* pt_tls_ticket_key_t, [0] encrypts */
    int           verify;            /* PT_TLS_VERIFY_* */
    int64_t       verify_depth;      /* 1 */
    pt_str_t      client_certificate;
    pt_str_t      trusted_certificate;
    pt_str_t      crl;
    int           stapling;
    pt_str_t      stapling_file;
    int           stapling_verify;
    void         *stapling_resp;     /* DER OCSP response (ocsp.c), cycle pool */
    size_t        stapling_resp_len;
    int           reject_handshake;
    int64_t       handshake_timeout; /* client_header_timeout of the server */
    int           http2;             /* server's "http2 on" */
    /* where things were set, for file:line in messages */
    const char   *cert_file;   unsigned cert_line;
    const char   *cmd_file;    unsigned cmd_line;
    const char   *cache_file;  unsigned cache_line;
    unsigned char sid_ctx[32];
    void         *srv;               /* pt_http_core_srv_conf_t */
    unsigned      listen_ssl:1;      /* the server has a "listen ... ssl" */
} pt_tls_srv_conf_t;

extern pt_module_t pt_http_ssl_module;

/* The listening handler of TLS listeners (http_core sets it for listen ...
 * ssl). Takes over an accepted connection: handshake, then HTTP/1.1 or
 * HTTP/2 by ALPN. */
void pt_tls_init_connection(pt_conn_t *c);

/* TLS I/O once the handshake is done (same contract as pt_conn_recv etc.:
 * bytes, 0 at EOF, -1 error, PT_IO_AGAIN with ev->ready cleared). */
ssize_t pt_tls_recv(pt_conn_t *c, char *buf, size_t size);
ssize_t pt_tls_send(pt_conn_t *c, const char *buf, size_t size);
ssize_t pt_tls_writev(pt_conn_t *c, struct iovec *iov, int n);

/* The ALPN protocol negotiated on c ("h2", "http/1.1") or an empty string. */
const char *pt_tls_alpn(pt_conn_t *c);
/* Sends close_notify (best effort, nonblocking) before a close. */
void pt_tls_shutdown(pt_conn_t *c);

/* ------------------------------------------------------------------------ */
/* TLS to upstreams (proxy_ssl_*). The proxy keeps one pt_tls_upstream_conf_t
 * per location (config time) and, once the TCP connect of an upstream
 * connection has succeeded, calls pt_tls_upstream_connect(); done(c, rc) is
 * called once (possibly from inside the call) with rc 0 when the handshake
 * is done and c->recv/send/writev are TLS, -1 when it failed (logged; the
 * proxy treats it as a connect error: next upstream / 502). */
typedef struct {
    pt_ssl_ctx_t *ctx;               /* built by pt_tls_upstream_conf_init */
    pt_str_t      name;              /* proxy_ssl_name (literal); empty: host of proxy_pass */
    int           server_name;       /* proxy_ssl_server_name: send SNI (off) */
    int           verify;            /* proxy_ssl_verify (off) */
    int64_t       verify_depth;      /* proxy_ssl_verify_depth (1) */
    pt_str_t      trusted_certificate;
    pt_str_t      certificate, certificate_key;
    pt_array_t   *passwords;
    unsigned      protocols;
    pt_str_t      ciphers;
    int           session_reuse;     /* proxy_ssl_session_reuse (on) */
    void         *session;           /* SSL_SESSION * to resume (per worker) */
} pt_tls_upstream_conf_t;

typedef void (*pt_tls_done_cb)(pt_conn_t *c, int rc);

/* Config time: sets every field UNSET (create) / merges (merge) / builds the
 * SSL_CTX (init, after merge; logs errors with file:line of cf). Return 0 or
 * -1. */
void pt_tls_upstream_conf_create(pt_tls_upstream_conf_t *uc);
void pt_tls_upstream_conf_merge(pt_tls_upstream_conf_t *uc, const pt_tls_upstream_conf_t *prev);
int  pt_tls_upstream_conf_init(pt_conf_t *cf, pt_tls_upstream_conf_t *uc);
/* Starts the client handshake on a connected upstream connection. host: the
 * name for SNI and verification when uc->name is empty. The callback owns c
 * afterwards; c->io handlers are changed during the handshake and left to
 * the caller afterwards. */
void pt_tls_upstream_connect(pt_conn_t *c, pt_tls_upstream_conf_t *uc, const pt_str_t *host,
                             pt_tls_done_cb done);
/* For the proxy's directive table (offset = where the field sits in the
 * proxy's loc conf, i.e. offsetof(conf, ssl) + offsetof(pt_tls_upstream_conf_t, f)):
 *   proxy_ssl_server_name, proxy_ssl_verify, proxy_ssl_session_reuse: pt_conf_set_flag
 *   proxy_ssl_verify_depth: pt_conf_set_num     proxy_ssl_name, proxy_ssl_ciphers: pt_conf_set_str
 *   proxy_ssl_trusted_certificate, proxy_ssl_certificate(_key): pt_conf_set_path
 *   proxy_ssl_protocols: pt_conf_set_bitmask with post = pt_tls_protocols
 *   proxy_ssl_password_file: pt_tls_conf_set_password_file (field: pt_array_t *) */
extern const pt_conf_enum_t pt_tls_protocols[];
const char *pt_tls_conf_set_password_file(pt_conf_t *cf, const pt_command_t *cmd, void *conf);

/* ------------------------------------------------------------------------ */
/* Internal (tls.c, session.c, ocsp.c). */
/* The conf of the context an accepted SSL was created with (the default
 * server of its address): OpenSSL takes session and ticket callbacks from it. */
pt_tls_srv_conf_t *pt__tls_session_conf(void *ssl);
int  pt__tls_session_cache_init(pt_conf_t *cf, pt_tls_srv_conf_t *sscf);
const char *pt__tls_session_cache_set(pt_conf_t *cf, pt_tls_srv_conf_t *sscf);
int  pt__tls_ticket_keys_load(pt_conf_t *cf, pt_tls_srv_conf_t *sscf);
int  pt__tls_stapling_init(pt_conf_t *cf, pt_tls_srv_conf_t *sscf);
/* Logs OpenSSL's error queue after msg (emerg at config time). */
void pt__tls_conf_error(pt_conf_t *cf, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pt__tls_error(int level, pt_log_t *log, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
