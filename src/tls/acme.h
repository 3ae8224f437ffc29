/* Automatic HTTPS (ACME, RFC 8555): the "http_acme" module. See acme.c and
 * docs/acme.md. What the TLS module asks of it. Owner: tls (acme). */
#ifndef PT_ACME_H
#define PT_ACME_H

#include "../config/conf.h"
#include "../http/core.h"
#include "tls.h"

/* "$acme_certificate" / "$acme_certificate_key" as ssl_certificate(_key)
 * arguments. */
int pt_acme_is_cert_var(const pt_str_t *path);
int pt_acme_is_key_var(const pt_str_t *path);

/* Puts the certificate of the server's acme_certificate into ctx: the one
 * in state_path when it loads, else a self-signed placeholder for the first
 * identifier until the helper process obtains one. Returns 0, or -1 after
 * logging a configuration error (no acme_certificate in the server). */
int pt_acme_use_cert(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf, pt_ssl_ctx_t *ctx);

#endif
