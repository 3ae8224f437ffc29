/* The autoindex module: `autoindex on;` lists the directory of a request
 * whose uri ends with '/' when the index module found no index file (it runs
 * after it in the content phase). Formats: html (nginx's layout: names padded
 * to 50 columns, dd-Mon-yyyy hh:mm, size or "-"), json, xml; jsonp uses the
 * `callback` argument and falls back to json without one.
 * autoindex_exact_size off rounds sizes to K/M/G; autoindex_localtime on
 * prints local times. Directories come first, then files, each by name;
 * names starting with '.' are not listed.
 *
 * The listing is read with opendir/readdir in the worker: it is bounded by
 * the directory's size, like nginx's. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/log.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "static.h"

extern pt_module_t pt_http_autoindex_module;

enum { FMT_HTML = 0, FMT_XML, FMT_JSON, FMT_JSONP };

typedef struct {
    int      enable;        /* autoindex */
    int      exact_size;    /* autoindex_exact_size (on) */
    unsigned format;        /* autoindex_format (html) */
    int      localtime;     /* autoindex_localtime (off) */
} autoindex_conf_t;

typedef struct {
    char    *name;
    size_t   len;
    int      dir;
    time_t   mtime;
    int64_t  size;
} entry_t;

static pt_log_t *req_log(pt_http_request_t *r)
{
    return r->connection ? &r->connection->log : NULL;
}

static int cmp_entries(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    if (x->dir != y->dir)
        return x->dir ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* A growing output string in the request pool. */
typedef struct {
    pt_pool_t *pool;
    char      *data;
    size_t     len, cap;
    int        failed;
} out_t;

static void put(out_t *o, const char *p, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (cap < o->len + n)
            cap *= 2;
        char *d = pt_pnalloc(o->pool, cap);
        if (d == NULL) {
            o->failed = 1;
            return;
        }
        if (o->len)
            memcpy(d, o->data, o->len);
        pt_pfree(o->pool, o->data);
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, p, n);
    o->len += n;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

/* HTML text (or XML) escaping. */
static void put_html(out_t *o, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (p[i]) {
        case '<': puts_(o, "&lt;"); break;
        case '>': puts_(o, "&gt;"); break;
        case '&': puts_(o, "&amp;"); break;
        case '"': puts_(o, "&quot;"); break;
        default: put(o, &p[i], 1); break;
        }
    }
}

/* A path segment in a URI (href). */
static void put_uri(out_t *o, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '#' || ch == '%' || ch == '?'
            || ch == '<' || ch == '>' || ch == '\'' || ch == '&' || ch == ':') {
            char e[3] = { '%', hex[ch >> 4], hex[ch & 0xf] };
            put(o, e, 3);
        } else {
            put(o, (const char *) &ch, 1);
        }
    }
}

static void put_json(out_t *o, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = { '\\', (char) ch };
            put(o, e, 2);
        } else if (ch < 0x20) {
            char e[8];
            int k = snprintf(e, sizeof(e), "\\u%04x", ch);
            put(o, e, (size_t) k);
        } else {
            put(o, (const char *) &ch, 1);
        }
    }
}

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static void html_entry(out_t *o, const entry_t *e, const autoindex_conf_t *conf)
{
    char buf[64];
    size_t shown = e->len + (e->dir ? 1 : 0);

    puts_(o, "<a href=\"");
    put_uri(o, e->name, e->len);
    if (e->dir)
        puts_(o, "/");
    puts_(o, "\">");
    if (shown > 50) {
        put_html(o, e->name, 47);
        puts_(o, "..&gt;</a>");
        shown = 50;
    } else {
        put_html(o, e->name, e->len);
        if (e->dir)
            puts_(o, "/");
        puts_(o, "</a>");
    }
    for (size_t i = shown; i < 51; i++)
        put(o, " ", 1);

    struct tm tm;
    if (conf->localtime)
        localtime_r(&e->mtime, &tm);
    else
        gmtime_r(&e->mtime, &tm);
    int n = snprintf(buf, sizeof(buf), "%02d-%s-%d %02d:%02d ", tm.tm_mday,
                     months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min);
    put(o, buf, (size_t) n);

    if (conf->exact_size) {
        if (e->dir)
            n = snprintf(buf, sizeof(buf), "%19s", "-");
        else
            n = snprintf(buf, sizeof(buf), "%19lld", (long long) e->size);
    } else if (e->dir) {
        n = snprintf(buf, sizeof(buf), "%7s", "-");
    } else {
        /* a 7-wide column (nginx): the bytes up to 9999, else whole K, M or
         * G rounded half up */
        long long sz = (long long) e->size;
        long long unit = 0;
        char scale = 0;
        if (sz >= 1024LL * 1024 * 1024) {
            unit = 1024LL * 1024 * 1024;
            scale = 'G';
        } else if (sz >= 1024LL * 1024) {
            unit = 1024LL * 1024;
            scale = 'M';
        } else if (sz > 9999) {
            unit = 1024;
            scale = 'K';
        }
        if (scale)
            n = snprintf(buf, sizeof(buf), "%6lld%c", sz / unit + (sz % unit >= unit / 2), scale);
        else
            n = snprintf(buf, sizeof(buf), " %6lld", sz);
    }
    put(o, buf, (size_t) n);
    puts_(o, "\r\n");
}

static int autoindex_handler(pt_http_request_t *r)
{
    autoindex_conf_t *conf = pt_http_get_module_loc_conf(r, pt_http_autoindex_module);
    pt_str_t path;
    DIR *dir;

    if (r->uri.len == 0 || r->uri.data[r->uri.len - 1] != '/')
        return PT_DECLINED;
    if (conf == NULL || !conf->enable)
        return PT_DECLINED;
    if (!(r->method & (PT_HTTP_GET | PT_HTTP_HEAD)))
        return PT_DECLINED;

    int rc = pt_http_static_map_uri(r, &r->uri, &path, 0);
    if (rc == PT_ERROR)
        return 500;
    if (rc == PT_DECLINED)
        return 404;

    dir = opendir(path.data);
    if (dir == NULL)
        return pt_http_static_file_error(r, "opendir", path.data, errno);

    pt_array_t entries;
    if (pt_array_init(&entries, r->pool, 32, sizeof(entry_t)) != 0) {
        closedir(dir);
        return 500;
    }
    int dfd = dirfd(dir);
    struct dirent *de;
    for (;;) {
        errno = 0;
        de = readdir(dir);
        if (de == NULL)
            break;
        if (de->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, 0) != 0) {
            if (errno != ENOENT && errno != ELOOP)
                pt_log_error(PT_LOG_CRIT, req_log(r), errno, "stat() \"%s%s\" failed",
                             path.data, de->d_name);
            continue;
        }
        entry_t *e = pt_array_push(&entries);
        if (e == NULL)
            break;
        e->len = strlen(de->d_name);
        e->name = pt_pstrndup(r->pool, de->d_name, e->len);
        if (e->name == NULL) {
            entries.nelts--;
            break;
        }
        e->dir = S_ISDIR(st.st_mode);
        e->mtime = st.st_mtime;
        e->size = (int64_t) st.st_size;
    }
    int err = errno;
    closedir(dir);
    if (de == NULL && err != 0) {
        pt_log_error(PT_LOG_CRIT, req_log(r), err, "readdir() \"%s\" failed", path.data);
        return 500;
    }
    if (entries.nelts > 1)
        qsort(entries.elts, entries.nelts, sizeof(entry_t), cmp_entries);

    rc = pt_http_discard_request_body(r);
    if (rc != PT_OK)
        return rc;

    out_t o = { r->pool, NULL, 0, 0, 0 };
    entry_t *e = entries.elts;
    unsigned format = conf->format;
    pt_str_t callback = pt_null_string;
    const char *ctype = "text/html";

    if (format == FMT_JSONP) {
        pt_str_t name = pt_string("arg_callback");
        pt_http_var_value_t *v = pt_http_var_get_by_name(r, &name);
        if (v && !v->not_found && v->value.len)
            callback = v->value;
        else
            format = FMT_JSON;
    }

    if (format == FMT_HTML) {
        puts_(&o, "<html>\r\n<head><title>Index of ");
        put_html(&o, r->uri.data, r->uri.len);
        puts_(&o, "</title></head>\r\n<body>\r\n<h1>Index of ");
        put_html(&o, r->uri.data, r->uri.len);
        puts_(&o, "</h1><hr><pre><a href=\"../\">../</a>\r\n");
        for (size_t i = 0; i < entries.nelts; i++)
            html_entry(&o, &e[i], conf);
        puts_(&o, "</pre><hr></body>\r\n</html>\r\n");
    } else if (format == FMT_XML) {
        ctype = "text/xml";
        puts_(&o, "<?xml version=\"1.0\"?>\r\n<list>\r\n");
        for (size_t i = 0; i < entries.nelts; i++) {
            char buf[96], date[40];
            struct tm tm;
            gmtime_r(&e[i].mtime, &tm);
            strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
            puts_(&o, e[i].dir ? "<directory" : "<file");
            int n = snprintf(buf, sizeof(buf), " mtime=\"%s\"", date);
            put(&o, buf, (size_t) n);
            if (!e[i].dir) {
                n = snprintf(buf, sizeof(buf), " size=\"%lld\"", (long long) e[i].size);
                put(&o, buf, (size_t) n);
            }
            puts_(&o, ">");
            put_html(&o, e[i].name, e[i].len);
            puts_(&o, e[i].dir ? "</directory>\r\n" : "</file>\r\n");
        }
        puts_(&o, "</list>\r\n");
    } else {
        ctype = format == FMT_JSONP ? "application/javascript" : "application/json";
        if (format == FMT_JSONP) {
            put_json(&o, callback.data, callback.len);
            puts_(&o, "(");
        }
        puts_(&o, "[\r\n");
        for (size_t i = 0; i < entries.nelts; i++) {
            char buf[96], date[40];
            size_t dl = pt_http_time(date, e[i].mtime);
            puts_(&o, "{ \"name\":\"");
            put_json(&o, e[i].name, e[i].len);
            puts_(&o, e[i].dir ? "\", \"type\":\"directory\", \"mtime\":\""
                               : "\", \"type\":\"file\", \"mtime\":\"");
            put(&o, date, dl);
            puts_(&o, "\"");
            if (!e[i].dir) {
                int n = snprintf(buf, sizeof(buf), ", \"size\":%lld", (long long) e[i].size);
                put(&o, buf, (size_t) n);
            }
            puts_(&o, i + 1 < entries.nelts ? " },\r\n" : " }\r\n");
        }
        puts_(&o, format == FMT_JSONP ? "]);\r\n" : "]\r\n");
    }
    if (o.failed)
        return 500;

    r->headers_out.status = 200;
    r->headers_out.content_length_n = (int64_t) o.len;
    r->headers_out.content_type.data = (char *) ctype;
    r->headers_out.content_type.len = strlen(ctype);
    if (pt_http_send_header(r) == PT_ERROR)
        return PT_ERROR;
    pt_buf_t *b = pt_buf_ref(r->header_only ? "" : o.data, r->header_only ? 0 : o.len);
    if (b == NULL)
        return PT_ERROR;
    b->last_buf = 1;
    return pt_http_output(r, b) == PT_ERROR ? PT_ERROR : PT_OK;
}

static void *autoindex_create_loc_conf(pt_conf_t *cf)
{
    autoindex_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf) {
        conf->enable = PT_CONF_UNSET;
        conf->exact_size = PT_CONF_UNSET;
        conf->format = PT_CONF_UNSET_UINT;
        conf->localtime = PT_CONF_UNSET;
    }
    return conf;
}

static const char *autoindex_merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    autoindex_conf_t *prev = parent, *conf = child;
    pt_conf_merge(conf->enable, prev->enable, 0);
    pt_conf_merge(conf->exact_size, prev->exact_size, 1);
    pt_conf_merge_uint(conf->format, prev->format, FMT_HTML);
    pt_conf_merge(conf->localtime, prev->localtime, 0);
    return PT_CONF_OK;
}

static int autoindex_init(pt_conf_t *cf)
{
    return pt_http_phase_add(cf, PT_HTTP_CONTENT_PHASE, autoindex_handler);
}

static const pt_conf_enum_t formats[] = {
    { "html", FMT_HTML }, { "xml", FMT_XML }, { "json", FMT_JSON }, { "jsonp", FMT_JSONP },
    { NULL, 0 }
};

#define AI(f) offsetof(autoindex_conf_t, f)

static const pt_command_t autoindex_commands[] = {
    { "autoindex", PT_CTX_HTTP_ANY, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      AI(enable), NULL },
    { "autoindex_exact_size", PT_CTX_HTTP_ANY, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, AI(exact_size), NULL },
    { "autoindex_format", PT_CTX_HTTP_ANY, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC,
      AI(format), formats },
    { "autoindex_localtime", PT_CTX_HTTP_ANY, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, AI(localtime), NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_autoindex_module = {
    .name = "http_autoindex",
    .commands = autoindex_commands,
    .create_loc_conf = autoindex_create_loc_conf,
    .merge_loc_conf = autoindex_merge_loc_conf,
    .postconfiguration = autoindex_init,
};
