/* Location matching, nginx's rules:
 *
 *  1. "= /x" equal to the uri wins at once.
 *  2. Otherwise the longest matching prefix ("/x", "^~ /x") is remembered;
 *     its nested locations are searched the same way first.
 *  3. Unless that prefix is "^~", regex locations of the level are tried in
 *     configuration order; the first match wins (and its nested locations are
 *     searched in turn).
 *  4. Else the remembered prefix.
 *  A prefix location ending with "/" whose auto_redirect is set (proxy_pass)
 *  answers a uri equal to its name without the slash with a 301.
 *
 * Per level, the exact and prefix names are one array sorted by name, built
 * once at config time. Each entry knows its "parent": the longest prefix
 * location of the same level whose name is a proper prefix of the entry's.
 * A lookup is a binary search for the greatest name <= uri followed by a walk
 * up the parents until a name that prefixes the uri: every name between the
 * longest matching prefix and the uri in sort order starts with that prefix,
 * so the walk cannot miss it. No allocation per request. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    pt_str_t                 name;
    pt_http_core_loc_conf_t *exact;       /* "= name" */
    pt_http_core_loc_conf_t *inclusive;   /* "name" or "^~ name" */
    int                      parent;      /* index, -1 none */
    unsigned                 auto_redirect:1;
} loc_entry_t;

typedef struct {
    loc_entry_t *e;
    int          n;
    unsigned     has_auto_redirect:1;
} loc_static_t;

enum { LOC_DECLINED, LOC_EXACT, LOC_PREFIX, LOC_REDIRECT, LOC_ERROR };

static pt_http_core_loc_conf_t *core_loc(void **loc_conf)
{
    return loc_conf[pt_http_core_module.index];
}

/* Byte order, a proper prefix sorts first. b may have one extra byte `tail`
 * appended (tail >= 0), to look up "uri/" without building it. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen, int tail)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    if (tail >= 0) {
        if (alen == blen)
            return -1;   /* a is a proper prefix of b + tail */
        if (alen > blen) {
            c = (unsigned char) a[blen] - tail;
            if (c)
                return c;
            return alen == blen + 1 ? 0 : 1;
        }
        return -1;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int is_prefix(const pt_str_t *p, const pt_str_t *s)
{
    return p->len <= s->len && memcmp(p->data, s->data, p->len) == 0;
}

/* ------------------------------------------------------------------------ */
/* Config time. */

typedef struct {
    pt_http_core_loc_conf_t *clcf;
    size_t                   order;
} sort_item_t;

static int cmp_items(const void *x, const void *y)
{
    const sort_item_t *a = x, *b = y;
    int c = name_cmp(a->clcf->name.data, a->clcf->name.len, b->clcf->name.data,
                     b->clcf->name.len, -1);
    if (c)
        return c;
    return a->order < b->order ? -1 : a->order > b->order;
}

static void dup_error(pt_conf_t *cf, const pt_http_core_loc_conf_t *clcf)
{
    pt_log_error(PT_LOG_EMERG, cf->log, 0, "duplicate location \"%.*s\" in %s:%u",
                 (int) clcf->name.len, clcf->name.data, clcf->file ? clcf->file : "-",
                 clcf->line);
}

static int init_level(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf,
                      pt_http_core_loc_conf_t *pclcf, int server_level)
{
    pt_array_t *locs = pclcf->locations;
    if (locs == NULL)
        return 0;

    pt_http_core_loc_conf_t **lp = locs->elts;
    size_t n = locs->nelts, nstatic = 0, nregex = 0, nnamed = 0;
    for (size_t i = 0; i < n; i++) {
        if (lp[i]->noname)
            continue;
        if (lp[i]->named)
            nnamed++;
        else if (lp[i]->regex)
            nregex++;
        else
            nstatic++;
    }

    if (nregex) {
        pt_http_core_loc_conf_t **re = pt_pcalloc(cf->pool, sizeof(*re) * (nregex + 1));
        if (re == NULL)
            return -1;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (!lp[i]->noname && !lp[i]->named && lp[i]->regex)
                re[k++] = lp[i];
        }
        pclcf->regex_locations = re;
    }

    if (nnamed && server_level) {
        sort_item_t *items = pt_palloc(cf->pool, sizeof(*items) * nnamed);
        pt_http_core_loc_conf_t **named = pt_pcalloc(cf->pool, sizeof(*named) * (nnamed + 1));
        if (items == NULL || named == NULL)
            return -1;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (!lp[i]->noname && lp[i]->named) {
                items[k].clcf = lp[i];
                items[k].order = k;
                k++;
            }
        }
        qsort(items, nnamed, sizeof(*items), cmp_items);
        for (size_t i = 0; i < nnamed; i++)
            named[i] = items[i].clcf;
        cscf->named_locations = named;
    }

    if (nstatic) {
        sort_item_t *items = pt_palloc(cf->pool, sizeof(*items) * nstatic);
        loc_static_t *st = pt_pcalloc(cf->pool, sizeof(*st));
        loc_entry_t *e = pt_pcalloc(cf->pool, sizeof(*e) * nstatic);
        if (items == NULL || st == NULL || e == NULL)
            return -1;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (!lp[i]->noname && !lp[i]->named && !lp[i]->regex) {
                items[k].clcf = lp[i];
                items[k].order = k;
                k++;
            }
        }
        qsort(items, nstatic, sizeof(*items), cmp_items);

        int m = 0;
        for (size_t i = 0; i < nstatic; i++) {
            pt_http_core_loc_conf_t *c = items[i].clcf;
            loc_entry_t *cur = m ? &e[m - 1] : NULL;
            if (cur == NULL || !pt_str_eq(&cur->name, &c->name)) {
                cur = &e[m++];
                cur->name = c->name;
                cur->parent = -1;
            }
            if (c->exact_match) {
                if (cur->exact) {
                    dup_error(cf, c);
                    return -1;
                }
                cur->exact = c;
            } else {
                if (cur->inclusive) {
                    dup_error(cf, c);
                    return -1;
                }
                cur->inclusive = c;
            }
            if (c->auto_redirect) {
                cur->auto_redirect = 1;
                st->has_auto_redirect = 1;
            }
        }

        /* parents: the chain from the previous entry visits every prefix
         * location that prefixes it, longest first */
        for (int i = 1; i < m; i++) {
            int j = i - 1;
            while (j >= 0 && !(e[j].inclusive && is_prefix(&e[j].name, &e[i].name)))
                j = e[j].parent;
            e[i].parent = j;
        }
        st->e = e;
        st->n = m;
        pclcf->static_tree = st;
    }

    for (size_t i = 0; i < n; i++) {
        if (lp[i]->noname || lp[i]->named)
            continue;
        if (init_level(cf, cscf, lp[i], 0) != 0)
            return -1;
    }
    return 0;
}

int pt_http_locations_init(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf,
                           pt_http_core_loc_conf_t *clcf)
{
    return init_level(cf, cscf, clcf, 1);
}

/* ------------------------------------------------------------------------ */
/* Request time. */

/* Searches one level's exact/prefix names. */
static int static_find(const loc_static_t *st, const pt_str_t *uri,
                       pt_http_core_loc_conf_t **found)
{
    const loc_entry_t *e = st->e;
    int lo = 0, hi = st->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (name_cmp(e[mid].name.data, e[mid].name.len, uri->data, uri->len, -1) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    int idx = lo - 1;

    if (idx >= 0 && pt_str_eq(&e[idx].name, uri)) {
        if (e[idx].exact) {
            *found = e[idx].exact;
            return LOC_EXACT;
        }
        *found = e[idx].inclusive;
        return LOC_PREFIX;
    }

    /* "/dir" with an auto-redirecting "/dir/" location */
    if (st->has_auto_redirect) {
        lo = idx + 1;
        hi = st->n;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            int c = name_cmp(e[mid].name.data, e[mid].name.len, uri->data, uri->len, '/');
            if (c == 0) {
                if (e[mid].auto_redirect) {
                    *found = e[mid].exact ? e[mid].exact : e[mid].inclusive;
                    return LOC_REDIRECT;
                }
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }

    int j = idx;
    while (j >= 0 && !(e[j].inclusive && is_prefix(&e[j].name, uri)))
        j = e[j].parent;
    if (j < 0)
        return LOC_DECLINED;
    *found = e[j].inclusive;
    return LOC_PREFIX;
}

/* One level (the server, or the location found at the level above).
 * Sets r->loc_conf to what it finds. */
static int find_level(pt_http_request_t *r, pt_http_core_loc_conf_t *pclcf)
{
    int rc = LOC_DECLINED, noregex = 0;

    if (pclcf->static_tree) {
        pt_http_core_loc_conf_t *clcf = NULL;
        rc = static_find(pclcf->static_tree, &r->uri, &clcf);
        if (rc != LOC_DECLINED)
            r->loc_conf = clcf->loc_conf;
        if (rc == LOC_EXACT || rc == LOC_REDIRECT)
            return rc;
        if (rc == LOC_PREFIX) {
            noregex = clcf->noregex;
            /* nested locations first */
            int nrc = find_level(r, clcf);
            if (nrc == LOC_EXACT || nrc == LOC_REDIRECT || nrc == LOC_ERROR)
                return nrc;
        }
    }

    if (!noregex && pclcf->regex_locations) {
        for (pt_http_core_loc_conf_t **re = pclcf->regex_locations; *re; re++) {
            int m = pt_http_regex_exec(r, (*re)->regex, &r->uri);
            if (m < 0)
                return LOC_ERROR;
            if (m == 0)
                continue;
            r->loc_conf = (*re)->loc_conf;
            int nrc = find_level(r, *re);
            return nrc == LOC_ERROR ? LOC_ERROR : LOC_EXACT;
        }
    }
    return rc;
}

int pt_http_find_location(pt_http_request_t *r)
{
    pt_http_core_srv_conf_t *cscf = r->srv_conf[pt_http_core_module.index];
    r->loc_conf = cscf->ctx->loc_conf;
    int rc = find_level(r, core_loc(r->loc_conf));
    if (rc == LOC_ERROR)
        return PT_ERROR;
    if (rc == LOC_REDIRECT)
        return 301;
    return PT_OK;
}

pt_http_core_loc_conf_t *pt_http_find_named_location(pt_http_core_srv_conf_t *cscf,
                                                     const pt_str_t *name)
{
    if (cscf->named_locations == NULL)
        return NULL;
    /* sorted by name, config order among equals: the first one wins */
    for (pt_http_core_loc_conf_t **p = cscf->named_locations; *p; p++) {
        int c = name_cmp((*p)->name.data, (*p)->name.len, name->data, name->len, -1);
        if (c == 0)
            return *p;
        if (c > 0)
            break;
    }
    return NULL;
}
