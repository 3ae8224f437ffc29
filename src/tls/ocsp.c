/* OCSP stapling from a file: ssl_stapling on + ssl_stapling_file. The DER
 * response is read once at config time and sent to every client that asks
 * for the certificate status. Fetching responses from the responder named in
 * the certificate is not done (it needs a resolver and outbound requests from
 * the workers): without a file, ssl_stapling is ignored with a warning, as
 * nginx does when it cannot find a responder. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ocsp.h>
#include <openssl/ssl.h>

static int on_status(SSL *ssl, void *arg)
{
    pt_tls_srv_conf_t *sscf = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    unsigned char *copy;

    if (sscf == NULL || sscf->stapling_resp == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    copy = OPENSSL_malloc(sscf->stapling_resp_len);
    if (copy == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    memcpy(copy, sscf->stapling_resp, sscf->stapling_resp_len);
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long) sscf->stapling_resp_len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

int pt__tls_stapling_init(pt_conf_t *cf, pt_tls_srv_conf_t *sscf)
{
    FILE *f;
    long len;
    unsigned char *buf;
    const unsigned char *p;
    OCSP_RESPONSE *resp;

    if (!sscf->stapling)
        return 0;
    if (sscf->stapling_file.len == 0) {
        pt_conf_error(cf, PT_LOG_WARN, 0, "\"ssl_stapling\" ignored, no \"ssl_stapling_file\" "
                      "(fetching OCSP responses is not supported)");
        return 0;
    }
    f = fopen(sscf->stapling_file.data, "rb");
    if (f == NULL) {
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line, "cannot open \"%s\": %s",
                           sscf->stapling_file.data, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) <= 0 || len > 1024 * 1024
        || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line, "bad OCSP response file \"%s\"",
                           sscf->stapling_file.data);
        return -1;
    }
    buf = pt_palloc(cf->pool, (size_t) len);
    if (buf == NULL || fread(buf, 1, (size_t) len, f) != (size_t) len) {
        fclose(f);
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line, "cannot read \"%s\"",
                           sscf->stapling_file.data);
        return -1;
    }
    fclose(f);
    p = buf;
    resp = d2i_OCSP_RESPONSE(NULL, &p, len);
    if (resp == NULL) {
        pt__tls_conf_error(cf, sscf->cert_file, sscf->cert_line,
                           "d2i_OCSP_RESPONSE(\"%s\") failed", sscf->stapling_file.data);
        return -1;
    }
    OCSP_RESPONSE_free(resp);
    sscf->stapling_resp = buf;
    sscf->stapling_resp_len = (size_t) len;
    SSL_CTX_set_tlsext_status_cb(sscf->ctx, on_status);
    SSL_CTX_set_tlsext_status_arg(sscf->ctx, sscf);
    return 0;
}
