/* Virtual servers: which server { } of a listening address a Host belongs to.
 *
 * nginx's order: the exact name; the longest wildcard starting with "*"
 * ("*.example.com", and ".example.com" which also covers example.com
 * itself); the longest wildcard ending with "*" ("www.example.*"); the first
 * regex (configuration order); else the address's default server.
 *
 * Built once per address at config time: three open-addressing hash tables
 * keyed by the name without its wildcard part, and the regexes in order.
 * Lookups hash the host's suffixes (after each dot, leftmost first, so the
 * first hit is the longest) and prefixes (before each dot, rightmost first);
 * nothing is allocated per request. */
#include "core.h"

#include <string.h>

typedef struct {
    pt_str_t                 key;       /* data == NULL: empty slot */
    uint32_t                 hash;
    unsigned                 dot:1;     /* head table: ".x" form, matches "x" too;
                                         * exact table: reserved by a ".x" form
                                         * (conflicts only, never matched) */
    pt_http_core_srv_conf_t *server;
    const pt_str_t          *name;      /* as written (messages) */
} slot_t;

typedef struct {
    slot_t  *s;
    size_t   mask;       /* size - 1; size 0 when never used */
    size_t   n;
} table_t;

struct pt_http_virtual_names_s {
    table_t                  exact;
    table_t                  head;      /* "*.x" and ".x": key "x" */
    table_t                  tail;      /* "x.*": key "x" */
    pt_http_server_name_t  **regex;     /* NULL-terminated, config order; or NULL */
};

/* ------------------------------------------------------------------------ */

static slot_t *table_find(const table_t *t, const char *p, size_t len, uint32_t h)
{
    if (t->s == NULL)
        return NULL;
    for (size_t k = h & t->mask;; k = (k + 1) & t->mask) {
        slot_t *s = &t->s[k];
        if (s->key.data == NULL)
            return NULL;
        if (s->hash == h && s->key.len == len && (len == 0 || memcmp(s->key.data, p, len) == 0))
            return s;
    }
}

static int table_grow(pt_pool_t *pool, table_t *t)
{
    size_t size = t->s ? (t->mask + 1) * 2 : 16;
    slot_t *ns = pt_pcalloc(pool, sizeof(*ns) * size);
    if (ns == NULL)
        return -1;
    if (t->s) {
        for (size_t i = 0; i <= t->mask; i++) {
            if (t->s[i].key.data == NULL)
                continue;
            size_t k = t->s[i].hash & (size - 1);
            while (ns[k].key.data)
                k = (k + 1) & (size - 1);
            ns[k] = t->s[i];
        }
    }
    t->s = ns;
    t->mask = size - 1;
    return 0;
}

/* Inserts key; the caller has checked it is absent. */
static slot_t *table_add(pt_pool_t *pool, table_t *t, const pt_str_t *key)
{
    if ((t->n + 1) * 2 > (t->s ? t->mask + 1 : 0) && table_grow(pool, t) != 0)
        return NULL;
    uint32_t h = pt_hash(key->data, key->len);
    size_t k = h & t->mask;
    while (t->s[k].key.data)
        k = (k + 1) & t->mask;
    t->s[k].key = *key;
    t->s[k].hash = h;
    t->n++;
    return &t->s[k];
}

static slot_t *table_get(const table_t *t, const pt_str_t *key)
{
    return table_find(t, key->data, key->len, pt_hash(key->data, key->len));
}

/* ------------------------------------------------------------------------ */
/* Config time. */

enum { NAME_EXACT, NAME_HEAD, NAME_HEAD_DOT, NAME_TAIL, NAME_INVALID };

/* Classifies a (non-regex) name and gives its key. */
static int classify(const pt_str_t *name, pt_str_t *key)
{
    const char *d = name->data;
    size_t len = name->len, stars = 0;

    for (size_t i = 0; i < len; i++) {
        if (d[i] == '*' && ++stars > 1)
            return NAME_INVALID;
        if (d[i] == '.' && i + 1 < len && d[i + 1] == '.')
            return NAME_INVALID;
        if (d[i] == '\0')
            return NAME_INVALID;
    }
    if (len > 1 && d[0] == '.') {
        if (stars)
            return NAME_INVALID;
        key->data = (char *) d + 1;
        key->len = len - 1;
        return NAME_HEAD_DOT;
    }
    if (len > 2 && d[0] == '*' && d[1] == '.') {
        key->data = (char *) d + 2;
        key->len = len - 2;
        return NAME_HEAD;
    }
    if (len > 2 && d[len - 2] == '.' && d[len - 1] == '*') {
        key->data = (char *) d;
        key->len = len - 2;
        return NAME_TAIL;
    }
    if (stars)
        return NAME_INVALID;
    *key = *name;
    return NAME_EXACT;
}

static void conflict(pt_conf_t *cf, const pt_str_t *name, const char *addr_text)
{
    pt_log_error(PT_LOG_WARN, cf->log, 0, "conflicting server name \"%.*s\" on %s, ignored",
                 (int) name->len, name->data, addr_text);
}

int pt_http_server_names_build(pt_conf_t *cf, pt_http_core_srv_conf_t **servers,
                               unsigned nservers, const char *addr_text,
                               pt_http_virtual_names_t **out)
{
    pt_http_virtual_names_t *vn = pt_pcalloc(cf->pool, sizeof(*vn));
    if (vn == NULL)
        return -1;

    size_t nregex = 0;
    for (unsigned s = 0; s < nservers; s++) {
        pt_http_server_name_t *sn = servers[s]->server_names.elts;
        for (size_t i = 0; i < servers[s]->server_names.nelts; i++) {
            if (sn[i].regex)
                nregex++;
        }
    }
    if (nregex) {
        vn->regex = pt_pcalloc(cf->pool, sizeof(*vn->regex) * (nregex + 1));
        if (vn->regex == NULL)
            return -1;
    }

    size_t r = 0;
    for (unsigned s = 0; s < nservers; s++) {
        pt_http_core_srv_conf_t *cscf = servers[s];
        pt_http_server_name_t *sn = cscf->server_names.elts;

        for (size_t i = 0; i < cscf->server_names.nelts; i++) {
            const pt_str_t *name = &sn[i].name;
            if (sn[i].regex) {
                vn->regex[r++] = &sn[i];
                continue;
            }

            pt_str_t key;
            int kind = classify(name, &key);
            slot_t *slot;
            switch (kind) {
            case NAME_INVALID:
                pt_log_error(PT_LOG_EMERG, cf->log, 0,
                             "invalid server name or wildcard \"%.*s\" on %s",
                             (int) name->len, name->data, addr_text);
                return -1;

            case NAME_EXACT:
                if (table_get(&vn->exact, &key)) {
                    conflict(cf, name, addr_text);
                    continue;
                }
                if ((slot = table_add(cf->pool, &vn->exact, &key)) == NULL)
                    return -1;
                slot->server = cscf;
                slot->name = name;
                break;

            case NAME_HEAD_DOT:
                /* ".x" claims the exact name "x" and the wildcard "*.x" */
                if (table_get(&vn->exact, &key) || table_get(&vn->head, &key)) {
                    conflict(cf, name, addr_text);
                    continue;
                }
                if ((slot = table_add(cf->pool, &vn->exact, &key)) == NULL)
                    return -1;
                slot->server = cscf;
                slot->name = name;
                slot->dot = 1;
                if ((slot = table_add(cf->pool, &vn->head, &key)) == NULL)
                    return -1;
                slot->server = cscf;
                slot->name = name;
                slot->dot = 1;
                break;

            case NAME_HEAD:
            case NAME_TAIL: {
                table_t *t = kind == NAME_HEAD ? &vn->head : &vn->tail;
                if (table_get(t, &key)) {
                    conflict(cf, name, addr_text);
                    continue;
                }
                if ((slot = table_add(cf->pool, t, &key)) == NULL)
                    return -1;
                slot->server = cscf;
                slot->name = name;
                break;
            }
            }
        }
    }

    *out = vn;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Request time. */

static pt_http_core_srv_conf_t *find_names(const pt_http_virtual_names_t *vn,
                                           const pt_str_t *host, pt_http_request_t *r)
{
    const char *h = host->data;
    size_t len = host->len;
    slot_t *s;

    s = table_find(&vn->exact, h, len, pt_hash(h, len));
    if (s && !s->dot)
        return s->server;

    if (vn->head.n) {
        /* ".x" on the host itself is the longest head wildcard */
        s = table_find(&vn->head, h, len, pt_hash(h, len));
        if (s && s->dot)
            return s->server;
        for (size_t i = 0; i < len; i++) {
            if (h[i] != '.')
                continue;
            s = table_find(&vn->head, h + i + 1, len - i - 1, pt_hash(h + i + 1, len - i - 1));
            if (s)
                return s->server;
        }
    }

    if (vn->tail.n) {
        for (size_t i = len; i > 0; i--) {
            if (h[i - 1] != '.')
                continue;
            s = table_find(&vn->tail, h, i - 1, pt_hash(h, i - 1));
            if (s)
                return s->server;
        }
    }

    if (vn->regex) {
        for (pt_http_server_name_t **sn = vn->regex; *sn; sn++) {
            int rc = pt_http_regex_exec(r, (*sn)->regex, host);
            if (rc == 1)
                return (*sn)->server;
            /* an error (-1) is logged by the matcher; try the next one */
        }
    }
    return NULL;
}

pt_http_core_srv_conf_t *pt_http_find_server(const pt_http_addr_conf_t *addr,
                                             const pt_str_t *host, pt_http_request_t *r)
{
    if (addr->names && host) {
        pt_http_core_srv_conf_t *cscf = find_names(addr->names, host, r);
        if (cscf)
            return cscf;
    }
    return addr->default_server;
}
