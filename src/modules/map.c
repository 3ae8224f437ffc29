/* The map module: `map $src $dst { ... }` defines $dst, computed on first use
 * in a request from the value of the source (a complex value). Lookup order is
 * nginx's: exact string (case-insensitive, through a hash), then with
 * `hostnames` the longest "*.x" / ".x" wildcard, then the longest "x.*"
 * wildcard, then regexes in config order (their captures are visible to the
 * value), then `default` (empty string when absent). */
#include <string.h>

#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"

extern pt_module_t pt_http_map_module;

typedef struct {
    int64_t hash_max_size;      /* map_hash_max_size, 2048 */
    int64_t hash_bucket_size;   /* map_hash_bucket_size, 64 */
} map_main_conf_t;

typedef struct map_entry_s {
    pt_str_t             key;       /* lowercased; wildcards without "*" */
    uint32_t             hash;
    pt_http_cv_t         value;
    struct map_entry_s  *next;      /* hash chain */
} map_entry_t;

typedef struct {
    pt_http_regex_t regex;
    pt_http_cv_t    value;
} map_regex_t;

typedef struct {
    pt_http_cv_t   source;
    map_entry_t  **buckets;         /* exact keys */
    uint32_t       nbuckets;        /* power of two */
    map_entry_t   *head;            /* "*.x.com" / ".x.com": key ".x.com" */
    unsigned       nhead;
    map_entry_t   *tail;            /* "www.x.*": key "www.x." */
    unsigned       ntail;
    map_regex_t   *regexes;
    unsigned       nregexes;
    pt_http_cv_t  *default_value;   /* NULL: "" */
    unsigned       hostnames:1;
} map_t;

/* Parse-time state of one map block. */
typedef struct {
    map_t       *map;
    pt_array_t   exact;             /* map_entry_t */
    pt_array_t   head, tail;        /* map_entry_t */
    pt_array_t   regexes;           /* map_regex_t */
    pt_http_cv_t *default_value;
    unsigned     hostnames:1;
    unsigned     no_cacheable:1;
} map_ctx_t;

/* ------------------------------------------------------------------------ */
/* Lookup                                                                    */

static map_entry_t *find_exact(const map_t *map, const char *low, size_t len)
{
    if (map->nbuckets == 0)
        return NULL;
    uint32_t h = pt_hash(low, len);
    for (map_entry_t *e = map->buckets[h & (map->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && e->key.len == len && memcmp(e->key.data, low, len) == 0)
            return e;
    return NULL;
}

/* Longest "*.x" / ".x" entry: key ".x" matches names ending with ".x"; a
 * ".x" form (flag in hash == 1) also matches "x" itself. */
static map_entry_t *find_head(const map_t *map, const char *low, size_t len)
{
    map_entry_t *best = NULL;
    for (unsigned i = 0; i < map->nhead; i++) {
        map_entry_t *e = &map->head[i];
        size_t kl = e->key.len;
        int m = 0;
        if (len > kl && memcmp(low + len - kl, e->key.data, kl) == 0)
            m = 1;
        else if (e->hash == 1 && len == kl - 1 && memcmp(low, e->key.data + 1, len) == 0)
            m = 1;
        if (m && (best == NULL || kl > best->key.len))
            best = e;
    }
    return best;
}

static map_entry_t *find_tail(const map_t *map, const char *low, size_t len)
{
    map_entry_t *best = NULL;
    for (unsigned i = 0; i < map->ntail; i++) {
        map_entry_t *e = &map->tail[i];
        size_t kl = e->key.len;
        if (len > kl && memcmp(low, e->key.data, kl) == 0
            && (best == NULL || kl > best->key.len))
            best = e;
    }
    return best;
}

/* Finds the value for src; NULL when nothing matched and there is no
 * default. May store regex captures in r. *err on failure. */
static const pt_http_cv_t *map_find(pt_http_request_t *r, const map_t *map, const pt_str_t *src,
                                    int *err)
{
    *err = 0;
    size_t len = src->len;
    if (map->hostnames && len && src->data[len - 1] == '.')
        len--;

    char stack[256];
    char *low = stack;
    if (len > sizeof(stack)) {
        low = pt_pnalloc(r->pool, len);
        if (low == NULL) {
            *err = 1;
            return NULL;
        }
    }
    pt_strlow(low, src->data, len);

    map_entry_t *e = find_exact(map, low, len);
    if (e)
        return &e->value;
    if (map->hostnames) {
        if ((e = find_head(map, low, len)) != NULL)
            return &e->value;
        if ((e = find_tail(map, low, len)) != NULL)
            return &e->value;
    }
    for (unsigned i = 0; i < map->nregexes; i++) {
        int rc = pt_http_regex_exec(r, &map->regexes[i].regex, src);
        if (rc < 0) {
            *err = 1;
            return NULL;
        }
        if (rc > 0)
            return &map->regexes[i].value;
    }
    return map->default_value;
}

static int map_get(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const map_t *map = (const map_t *) data;
    pt_str_t src;
    if (pt_http_cv_eval(r, &map->source, &src) != 0)
        return PT_ERROR;
    int err;
    const pt_http_cv_t *val = map_find(r, map, &src, &err);
    if (err)
        return PT_ERROR;
    if (val == NULL) {
        v->value.len = 0;
        v->value.data = (char *) "";
        return PT_OK;
    }
    if (pt_http_cv_eval(r, val, &v->value) != 0)
        return PT_ERROR;
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* Config time                                                               */

static const char *map_line(pt_conf_t *cf, void *data)
{
    map_ctx_t *ctx = data;
    pt_str_t *value = cf->args->elts;
    size_t n = cf->args->nelts;

    if (n == 1 && pt_str_eq_lit(&value[0], "hostnames")) {
        ctx->hostnames = 1;
        return PT_CONF_OK;
    }
    if (n == 1 && pt_str_eq_lit(&value[0], "volatile")) {
        ctx->no_cacheable = 1;
        return PT_CONF_OK;
    }
    if (n != 2) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of the map parameters");
        return PT_CONF_ERROR;
    }

    pt_http_cv_t *cv = pt_palloc(cf->pool, sizeof(*cv));
    if (cv == NULL || pt_http_cv_compile(cf, &value[1], cv) != 0)
        return PT_CONF_ERROR;

    pt_str_t key = value[0];
    if (pt_str_eq_lit(&key, "default")) {
        if (ctx->default_value) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate default map parameter");
            return PT_CONF_ERROR;
        }
        ctx->default_value = cv;
        return PT_CONF_OK;
    }

    if (key.len && key.data[0] == '~') {
        int caseless = 0;
        pt_str_t pat = { key.len - 1, key.data + 1 };
        if (pat.len && pat.data[0] == '*') {
            caseless = 1;
            pat.len--;
            pat.data++;
        }
        map_regex_t *mr = pt_array_push(&ctx->regexes);
        if (mr == NULL)
            return "failed (out of memory)";
        if (pt_http_regex_compile(cf, &mr->regex, &pat, caseless) != 0)
            return PT_CONF_ERROR;
        mr->value = *cv;
        return PT_CONF_OK;
    }

    if (key.len && key.data[0] == '\\') {
        key.len--;
        key.data++;
    }

    char *low = pt_pnalloc(cf->pool, key.len + 1);
    if (low == NULL)
        return "failed (out of memory)";
    pt_strlow(low, key.data, key.len);
    low[key.len] = '\0';

    pt_array_t *list = &ctx->exact;
    pt_str_t k = { key.len, low };
    uint32_t flag = 0;
    if (ctx->hostnames) {
        if (k.len > 2 && k.data[0] == '*' && k.data[1] == '.') {
            list = &ctx->head;
            k.data++;
            k.len--;
        } else if (k.len > 1 && k.data[0] == '.') {
            list = &ctx->head;
            flag = 1;
        } else if (k.len > 2 && k.data[k.len - 1] == '*' && k.data[k.len - 2] == '.') {
            list = &ctx->tail;
            k.len--;
        } else if (memchr(k.data, '*', k.len)) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid hostname or wildcard \"%.*s\"",
                          (int) key.len, key.data);
            return PT_CONF_ERROR;
        }
    }

    map_entry_t *e = list->elts;
    for (size_t i = 0; i < list->nelts; i++) {
        if (pt_str_eq(&e[i].key, &k) && (list != &ctx->head || e[i].hash == flag)) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "conflicting parameter \"%.*s\"",
                          (int) key.len, key.data);
            return PT_CONF_ERROR;
        }
    }
    map_entry_t *ne = pt_array_push(list);
    if (ne == NULL)
        return "failed (out of memory)";
    ne->key = k;
    ne->value = *cv;
    /* the hash field of wildcard entries holds the ".x" flag */
    ne->hash = list == &ctx->exact ? pt_hash(k.data, k.len) : flag;
    return PT_CONF_OK;
}

static int map_ctx_init(pt_conf_t *cf, map_ctx_t *ctx, map_t *map)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->map = map;
    if (pt_array_init(&ctx->exact, cf->pool, 16, sizeof(map_entry_t)) != 0
        || pt_array_init(&ctx->head, cf->pool, 4, sizeof(map_entry_t)) != 0
        || pt_array_init(&ctx->tail, cf->pool, 4, sizeof(map_entry_t)) != 0
        || pt_array_init(&ctx->regexes, cf->pool, 4, sizeof(map_regex_t)) != 0)
        return -1;
    return 0;
}

/* Freezes the parsed entries into the lookup structure. */
static int map_finish(pt_conf_t *cf, map_ctx_t *ctx)
{
    map_t *map = ctx->map;
    size_t n = ctx->exact.nelts;
    uint32_t nb = 1;
    while (nb < n * 2)
        nb <<= 1;
    map->buckets = pt_pcalloc(cf->pool, nb * sizeof(map_entry_t *));
    if (map->buckets == NULL)
        return -1;
    map->nbuckets = nb;
    map_entry_t *e = ctx->exact.elts;
    for (size_t i = 0; i < n; i++) {
        map_entry_t **b = &map->buckets[e[i].hash & (nb - 1)];
        e[i].next = *b;
        *b = &e[i];
    }
    map->head = ctx->head.elts;
    map->nhead = (unsigned) ctx->head.nelts;
    map->tail = ctx->tail.elts;
    map->ntail = (unsigned) ctx->tail.nelts;
    map->regexes = ctx->regexes.elts;
    map->nregexes = (unsigned) ctx->regexes.nelts;
    map->default_value = ctx->default_value;
    map->hostnames = ctx->hostnames;
    return 0;
}

static const char *map_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    /* read the arguments before the block reuses cf->args */
    pt_str_t src = value[1], dst = value[2];

    if (dst.len < 2 || dst.data[0] != '$') {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid variable name \"%.*s\"", (int) dst.len, dst.data);
        return PT_CONF_ERROR;
    }
    map_t *map = pt_pcalloc(cf->pool, sizeof(*map));
    if (map == NULL)
        return "failed (out of memory)";
    if (pt_http_cv_compile(cf, &src, &map->source) != 0)
        return PT_CONF_ERROR;

    pt_str_t name = { dst.len - 1, dst.data + 1 };
    pt_http_var_t *var = pt_http_var_add(cf, &name, PT_VAR_CHANGEABLE);
    if (var == NULL)
        return PT_CONF_ERROR;
    var->get = map_get;
    var->data = (uintptr_t) map;
    unsigned index = var->index;

    map_ctx_t *ctx = pt_palloc(cf->temp_pool ? cf->temp_pool : cf->pool, sizeof(*ctx));
    if (ctx == NULL || map_ctx_init(cf, ctx, map) != 0)
        return "failed (out of memory)";

    pt_conf_handler_cb saved_handler = cf->handler;
    void *saved_data = cf->handler_data;
    cf->handler = map_line;
    cf->handler_data = ctx;
    const char *rv = pt_conf_parse_block(cf);
    cf->handler = saved_handler;
    cf->handler_data = saved_data;
    if (rv != PT_CONF_OK)
        return PT_CONF_ERROR;

    if (map_finish(cf, ctx) != 0)
        return "failed (out of memory)";
    if (ctx->no_cacheable) {
        pt_http_core_main_conf_t *cmcf = pt_http_conf_get_module_main_conf(cf, pt_http_core_module);
        ((pt_http_var_t *) cmcf->variables.elts)[index].flags |= PT_VAR_NOCACHEABLE;
    }
    return PT_CONF_OK;
}

static void *create_main_conf(pt_conf_t *cf)
{
    map_main_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->hash_max_size = PT_CONF_UNSET;
    conf->hash_bucket_size = PT_CONF_UNSET;
    return conf;
}

static const char *init_main_conf(pt_conf_t *cf, void *c)
{
    map_main_conf_t *conf = c;
    pt_conf_init(conf->hash_max_size, 2048);
    pt_conf_init(conf->hash_bucket_size, 64);
    return PT_CONF_OK;
}

static const pt_command_t map_commands[] = {
    { "map", PT_CTX_HTTP, PT_CONF_BLOCK, 2, 2, map_block, PT_CONF_HTTP_MAIN, 0, NULL },
    { "map_hash_max_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_MAIN,
      offsetof(map_main_conf_t, hash_max_size), NULL },
    { "map_hash_bucket_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_MAIN,
      offsetof(map_main_conf_t, hash_bucket_size), NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_map_module = {
    .name = "http_map",
    .commands = map_commands,
    .create_main_conf = create_main_conf,
    .init_main_conf = init_main_conf,
};
