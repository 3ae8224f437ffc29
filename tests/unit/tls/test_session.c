/* The shared TLS session cache (src/tls/session.c): sessions stored by one
 * process are found by another, expired ones are dropped, a full zone evicts
 * the oldest first, removal works, and the ticket-key callback encrypts with
 * the first key and accepts every listed key (renewing old ones). */
#include "tls/session.c"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

static SSL_CTX *ctx;
static SSL *ssl;
static pt_tls_srv_conf_t sscf;
static pt_shm_zone_t zone;

static SSL_SESSION *make_session(unsigned i, long timeout, long t)
{
    unsigned char id[32], key[48];
    SSL_SESSION *s = SSL_SESSION_new();
    memset(id, 0, sizeof(id));
    memcpy(id, &i, sizeof(i));
    id[31] = 0x5a;
    memset(key, (int) (i & 0xff), sizeof(key));
    SSL_SESSION_set1_id(s, id, sizeof(id));
    SSL_SESSION_set1_master_key(s, key, sizeof(key));
    SSL_SESSION_set_protocol_version(s, TLS1_2_VERSION);
    SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, (const unsigned char *) "\xc0\x2f"));
    SSL_SESSION_set_time(s, t);
    SSL_SESSION_set_timeout(s, timeout);
    return s;
}

static SSL_SESSION *lookup(unsigned i)
{
    unsigned char id[32];
    int copy = 1;
    memset(id, 0, sizeof(id));
    memcpy(id, &i, sizeof(i));
    id[31] = 0x5a;
    return on_get_session(ssl, id, sizeof(id), &copy);
}

static int key_byte(SSL_SESSION *s)
{
    unsigned char key[48];
    size_t n = SSL_SESSION_get_master_key(s, key, sizeof(key));
    return n == 48 ? key[0] : -1;
}

static void test_store_get(void)
{
    for (unsigned i = 1; i <= 50; i++) {
        SSL_SESSION *s = make_session(i, 300, (long) time(NULL));
        on_new_session(ssl, s);
        SSL_SESSION_free(s);
    }
    SSL_SESSION *g = lookup(7);
    ok(g != NULL, "stored session found");
    if (g) {
        is_int(key_byte(g), 7, "with its master key");
        SSL_SESSION_free(g);
    }
    ok(lookup(999) == NULL, "unknown id: miss");
}

static void test_expiry(void)
{
    SSL_SESSION *s = make_session(1000, 10, (long) time(NULL) - 100);
    on_new_session(ssl, s);
    SSL_SESSION_free(s);
    ok(lookup(1000) == NULL, "expired session is not returned");
}

static void test_remove(void)
{
    SSL_SESSION *s = make_session(2000, 300, (long) time(NULL));
    on_new_session(ssl, s);
    SSL_SESSION *g = lookup(2000);
    ok(g != NULL, "present before removal");
    SSL_SESSION_free(g);
    on_remove_session(ctx, s);
    ok(lookup(2000) == NULL, "gone after removal");
    SSL_SESSION_free(s);
}

static void test_eviction(void)
{
    unsigned n = 20000;
    for (unsigned i = 10000; i < 10000 + n; i++) {
        SSL_SESSION *s = make_session(i, 300, (long) time(NULL));
        on_new_session(ssl, s);
        SSL_SESSION_free(s);
    }
    sess_cache_t *sc = zone.data;
    ok(sc->evicted > 0, "a full zone evicts (%llu evicted)", (unsigned long long) sc->evicted);
    SSL_SESSION *g = lookup(10000 + n - 1);
    ok(g != NULL, "the newest session is there");
    SSL_SESSION_free(g);
    ok(lookup(10000) == NULL, "the oldest one went first");
    ok(pt_slab_free_bytes(zone.addr) < zone.size, "zone accounting sane");
}

static void test_other_process(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        SSL_SESSION *s = make_session(42424, 300, (long) time(NULL));
        on_new_session(ssl, s);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    SSL_SESSION *g = lookup(42424);
    ok(g != NULL, "a session stored by another process is found");
    if (g) {
        is_int(key_byte(g), 42424 & 0xff, "intact");
        SSL_SESSION_free(g);
    }
}

static void test_ticket_keys(void)
{
    pt_pool_t *pool = pt_pool_create(4096);
    pt_array_t *keys = pt_array_create(pool, 2, sizeof(pt_tls_ticket_key_t));
    pt_tls_ticket_key_t *k1 = pt_array_push(keys), *k2 = pt_array_push(keys);
    unsigned char name[16], iv[16];
    EVP_CIPHER_CTX *ectx = EVP_CIPHER_CTX_new();
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *hctx = EVP_MAC_CTX_new(mac);

    memset(k1, 0, sizeof(*k1));
    memset(k2, 0, sizeof(*k2));
    RAND_bytes(k1->name, 16);
    RAND_bytes(k2->name, 16);
    k1->size = 80;
    k2->size = 48;
    RAND_bytes(k1->aes_key, 32);
    RAND_bytes(k1->hmac_key, 32);
    RAND_bytes(k2->aes_key, 16);
    RAND_bytes(k2->hmac_key, 16);
    sscf.ticket_keys = keys;

    is_int(on_ticket_key(ssl, name, iv, ectx, hctx, 1), 1, "encrypt: key set up");
    ok(memcmp(name, k1->name, 16) == 0, "encrypt: with the first key");
    memcpy(name, k1->name, 16);
    is_int(on_ticket_key(ssl, name, iv, ectx, hctx, 0), 1, "decrypt with the current key: 1");
    memcpy(name, k2->name, 16);
    is_int(on_ticket_key(ssl, name, iv, ectx, hctx, 0), 2, "decrypt with an old key: renew (2)");
    memset(name, 0xee, 16);
    is_int(on_ticket_key(ssl, name, iv, ectx, hctx, 0), 0, "unknown key name: 0 (full handshake)");

    sscf.ticket_keys = NULL;
    EVP_MAC_CTX_free(hctx);
    EVP_MAC_free(mac);
    EVP_CIPHER_CTX_free(ectx);
    pt_pool_destroy(pool);
}

/* TLS 1.3 with stateless tickets: resumption never asks the cache, so
 * nothing is stored; with ssl_session_tickets off (SSL_OP_NO_TICKET) the
 * ticket is a session id and is stored. */
static void test_tls13_tickets(void)
{
    SSL_SESSION *s = make_session(3000, 300, (long) time(NULL));
    SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION);
    on_new_session(ssl, s);
    SSL_SESSION_free(s);
    ok(lookup(3000) == NULL, "TLS 1.3, stateless tickets: not stored");

    SSL_set_options(ssl, SSL_OP_NO_TICKET);
    s = make_session(3001, 300, (long) time(NULL));
    SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION);
    on_new_session(ssl, s);
    SSL_SESSION_free(s);
    SSL_SESSION *g = lookup(3001);
    ok(g != NULL, "TLS 1.3, tickets off: stored");
    if (g)
        SSL_SESSION_free(g);
    SSL_clear_options(ssl, SSL_OP_NO_TICKET);
}

int main(void)
{
    ctx = SSL_CTX_new(TLS_server_method());
    pt_str_set(&zone.name, "T");
    zone.size = 256 * 1024;
    if (pt_shm_alloc(&zone) != 0 || zone_init(&zone, NULL) != 0) {
        printf("Bail out! zone\n");
        return 1;
    }
    sscf.shm_zone = &zone;
    SSL_CTX_set_app_data(ctx, &sscf);
    ssl = SSL_new(ctx);

    subtest("store and get", test_store_get);
    subtest("expiry", test_expiry);
    subtest("remove", test_remove);
    subtest("eviction", test_eviction);
    subtest("other process", test_other_process);
    subtest("ticket keys", test_ticket_keys);
    subtest("tls 1.3 tickets", test_tls13_tickets);

    SSL_free(ssl);
    SSL_CTX_free(ctx);
    pt_shm_free(&zone);
    return done_testing();
}
