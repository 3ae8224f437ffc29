/* Unit tests for src/http/location.c: nginx's location precedence through
 * configurations parsed by the real parser. */
#include "core_test.h"

#define SRV_OPEN "http {\n server {\n  listen 127.0.0.1:8080;\n"
#define SRV_CLOSE " }\n}\n"

static pt_http_core_srv_conf_t *load_server(const char *text)
{
    int ok;
    const char *err = t_load(text, &ok);
    if (!ok) {
        note("config failed: %s", err);
        return NULL;
    }
    return t_server(0);
}

/* The example of nginx's documentation for the location directive. */
static void test_nginx_doc_example(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location = / { }\n"
        "  location / { }\n"
        "  location /documents/ { }\n"
        "  location ^~ /images/ { }\n"
        "  location ~* \\.(gif|jpg|jpeg)$ { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    int rc;
    is_str(t_match(s, "/", &rc), "= /", "\"/\" -> location = / (A)");
    is_int(rc, PT_OK, "rc OK");
    is_str(t_match(s, "/index.html", NULL), "/", "\"/index.html\" -> location / (B)");
    is_str(t_match(s, "/documents/document.html", NULL), "/documents/",
           "\"/documents/document.html\" -> location /documents/ (C)");
    is_str(t_match(s, "/images/1.gif", NULL), "^~ /images/",
           "\"/images/1.gif\" -> location ^~ /images/ (D)");
    is_str(t_match(s, "/documents/1.jpg", NULL), "~ \\.(gif|jpg|jpeg)$",
           "\"/documents/1.jpg\" -> the regex (E)");
    is_str(t_match(s, "/DOCUMENTS/1.JPG", NULL), "~ \\.(gif|jpg|jpeg)$",
           "~* is caseless");
    is_str(t_match(s, "/documents", NULL), "/", "\"/documents\" (no slash) -> location /");
}

static void test_longest_prefix(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location / { }\n"
        "  location /a { }\n"
        "  location /ab { }\n"
        "  location = /abx { }\n"
        "  location /abc/ { }\n"
        "  location /b { }\n"
        "  location /a- { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    is_str(t_match(s, "/abd", NULL), "/ab", "/abd -> /ab");
    is_str(t_match(s, "/abc/d", NULL), "/abc/", "/abc/d -> /abc/");
    is_str(t_match(s, "/abc", NULL), "/ab", "/abc -> /ab");
    is_str(t_match(s, "/abx", NULL), "= /abx", "/abx -> = /abx");
    is_str(t_match(s, "/abxy", NULL), "/ab", "/abxy -> /ab (exact only matches whole uri)");
    is_str(t_match(s, "/a", NULL), "/a", "/a -> /a");
    is_str(t_match(s, "/a-b", NULL), "/a-", "/a-b -> /a-");
    is_str(t_match(s, "/a.b", NULL), "/a", "/a.b -> /a");
    is_str(t_match(s, "/zzz", NULL), "/", "/zzz -> /");
    is_str(t_match(s, "/", NULL), "/", "/ -> /");
    is_str(t_match(s, "/b/c", NULL), "/b", "/b/c -> /b");
}

static void test_no_match(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location /x/ { }\n"
        "  location = /y { }\n"
        "  location ~ ^/z { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    int rc;
    is_str(t_match(s, "/other", &rc), "", "no location matches: server level");
    is_int(rc, PT_OK, "rc OK");
    is_str(t_match(s, "/x", NULL), "", "/x does not match /x/");
    is_str(t_match(s, "/zebra", NULL), "~ ^/z", "regex without prefix locations");
}

static void test_exact_and_prefix_same_name(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location /x { }\n"
        "  location = /x { }\n"
        "  location ~ x { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    is_str(t_match(s, "/x", NULL), "= /x", "exact wins over prefix and regex");
    is_str(t_match(s, "/xy", NULL), "~ x", "regex wins over a plain prefix");
}

static void test_regex_order(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location / { }\n"
        "  location ~ \\.php$ { }\n"
        "  location ~ ^/admin { }\n"
        "  location ~* \\.PHP$ { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    is_str(t_match(s, "/admin/x.php", NULL), "~ \\.php$", "first regex in config order wins");
    is_str(t_match(s, "/admin/x.PHP", NULL), "~ ^/admin", "second when the first does not match");
    is_str(t_match(s, "/x.PhP", NULL), "~ \\.PHP$", "caseless third");
    is_str(t_match(s, "/x.html", NULL), "/", "no regex: the prefix");
}

static void test_nested(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location / { }\n"
        "  location /a/ {\n"
        "   location ~ \\.php$ { }\n"
        "   location /a/b/ {\n"
        "    location = /a/b/c { }\n"
        "   }\n"
        "   location ^~ /a/static/ { }\n"
        "  }\n"
        "  location ~ \\.(php|gif)$ { }\n"
        "  location ^~ /s/ {\n"
        "   location ~ \\.gif$ { }\n"
        "  }\n"
        "  location ~ ^/r/ {\n"
        "   location ~ \\.txt$ { }\n"
        "  }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    is_str(t_match(s, "/a/x.php", NULL), "~ \\.php$", "nested regex of the prefix first");
    is_str(t_match(s, "/a/x.gif", NULL), "~ \\.(php|gif)$", "then the outer regexes");
    is_str(t_match(s, "/a/x.html", NULL), "/a/", "else the prefix");
    is_str(t_match(s, "/a/b/x", NULL), "/a/b/", "nested prefix");
    is_str(t_match(s, "/a/b/c", NULL), "= /a/b/c", "nested exact");
    is_str(t_match(s, "/a/b/x.php", NULL), "~ \\.php$", "nested prefix, regex of its parent");
    /* nginx: a "^~" nested location stops the regexes of its own level only,
     * the outer level's regexes are still tried */
    is_str(t_match(s, "/a/static/x.html", NULL), "^~ /a/static/", "nested ^~");
    is_str(t_match(s, "/a/static/x.gif", NULL), "~ \\.(php|gif)$",
           "nested ^~ does not stop the outer regexes (as nginx)");
    is_str(t_match(s, "/s/x.gif", NULL), "~ \\.gif$", "regex nested in a ^~ location");
    is_str(t_match(s, "/s/x.php", NULL), "^~ /s/", "^~ skips the server-level regexes");
    is_str(t_match(s, "/r/x.txt", NULL), "~ \\.txt$", "regex nested in a regex location");
    is_str(t_match(s, "/r/x.css", NULL), "~ ^/r/", "regex location itself");
}

static void test_captures(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location ~ ^/u/(\\w+)/(\\d+)$ { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    pt_http_request_t r;
    t_request(&r, s, "/u/bob/42");
    is_int(pt_http_find_location(&r), PT_OK, "regex location matches");
    ok(r.captures != NULL && r.ncaptures >= 3, "captures stored in the request");
    if (r.captures && r.ncaptures >= 3) {
        is_strn(r.uri.data + r.captures[2], (size_t) (r.captures[3] - r.captures[2]), "bob", "$1");
        is_strn(r.uri.data + r.captures[4], (size_t) (r.captures[5] - r.captures[4]), "42", "$2");
    }
}

/* proxy_pass sets auto_redirect after parsing its location; emulate it and
 * rebuild the trees. */
static void set_auto_redirect(pt_http_core_srv_conf_t *s, const char *name)
{
    pt_http_core_loc_conf_t *srv = t_clcf(s->ctx->loc_conf);
    pt_http_core_loc_conf_t **l = srv->locations->elts;
    for (size_t i = 0; i < srv->locations->nelts; i++) {
        if (pt_str_eq_lit(&l[i]->name, name))
            l[i]->auto_redirect = 1;
    }
    pt_http_locations_init(&T.cf, s, srv);
}

static void test_auto_redirect(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location / { }\n"
        "  location /dir/ { }\n"
        "  location /other/ { }\n"
        "  location /ex/ { }\n"
        "  location = /ex { }\n"
        "  location /pre/ { }\n"
        "  location /pre { }\n"
        "  location ~ dir { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    set_auto_redirect(s, "/dir/");
    set_auto_redirect(s, "/ex/");
    set_auto_redirect(s, "/pre/");
    int rc;
    is_str(t_match(s, "/dir", &rc), "/dir/", "/dir -> the /dir/ location");
    is_int(rc, 301, "/dir -> 301 (Location: /dir/)");
    is_str(t_match(s, "/dir/x", &rc), "~ dir", "/dir/x -> the regex (no redirect inside)");
    is_int(rc, PT_OK, "rc OK");
    is_str(t_match(s, "/dir/y", &rc), "~ dir", "auto_redirect does not beat regexes below it");
    is_str(t_match(s, "/other", &rc), "/", "no auto_redirect: no redirect");
    is_int(rc, PT_OK, "rc OK");
    is_str(t_match(s, "/ex", &rc), "= /ex", "an exact location of that name wins");
    is_int(rc, PT_OK, "rc OK");
    is_str(t_match(s, "/pre", &rc), "/pre", "a prefix location of that name wins");
    is_int(rc, PT_OK, "rc OK");
    is_str(t_match(s, "/di", &rc), "/", "shorter uri: no redirect");
    is_int(rc, PT_OK, "rc OK");
}

static void test_named(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  location / { }\n"
        "  location @fallback { }\n"
        "  location @b { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    pt_str_t n = S("@fallback");
    pt_http_core_loc_conf_t *clcf = pt_http_find_named_location(s, &n);
    ok(clcf && pt_str_eq_lit(&clcf->name, "@fallback") && clcf->named, "@fallback found");
    n = S("@b");
    clcf = pt_http_find_named_location(s, &n);
    ok(clcf && pt_str_eq_lit(&clcf->name, "@b"), "@b found");
    n = S("@nope");
    ok(pt_http_find_named_location(s, &n) == NULL, "unknown name");
    is_str(t_match(s, "@fallback", NULL), "", "named locations are not matched by uri");
}

static void test_find_config(void)
{
    pt_http_core_srv_conf_t *s = load_server(SRV_OPEN
        "  client_max_body_size 10;\n"
        "  location /int/ { internal; }\n"
        "  location /big/ { client_max_body_size 0; }\n"
        "  location / { }\n"
        SRV_CLOSE);
    ok(s != NULL, "config loads");
    if (s == NULL)
        return;
    pt_http_request_t r;
    t_request(&r, s, "/int/x");
    is_int(pt_http_core_find_config(&r), 404, "internal location, external request: 404");
    t_request(&r, s, "/int/x");
    r.internal = 1;
    is_int(pt_http_core_find_config(&r), PT_OK, "internal request: ok");
    t_request(&r, s, "/x");
    r.headers_in.content_length_n = 11;
    t_capture_begin();
    is_int(pt_http_core_find_config(&r), 413, "body above client_max_body_size: 413");
    ok(t_contains(t_capture_end(), "client intended to send too large body: 11 bytes"),
       "logged");
    t_request(&r, s, "/x");
    r.headers_in.content_length_n = 10;
    is_int(pt_http_core_find_config(&r), PT_OK, "body at the limit: ok");
    t_request(&r, s, "/big/x");
    r.headers_in.content_length_n = 1000000000;
    is_int(pt_http_core_find_config(&r), PT_OK, "client_max_body_size 0: no limit");
}

static void test_errors(void)
{
    int ok_;
    const char *err;

    err = t_load(SRV_OPEN "  location /x { }\n  location /x { }\n" SRV_CLOSE, &ok_);
    ok(!ok_, "duplicate prefix location fails");
    ok(t_contains(err, "[emerg] duplicate location \"/x\" in ") && t_contains(err, "test.conf:5"),
       "duplicate location message with the second one's line");

    err = t_load(SRV_OPEN "  location /x { }\n  location ^~ /x { }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "duplicate location \"/x\""), "^~ and plain prefix clash");

    err = t_load(SRV_OPEN "  location = /x { }\n  location = /x { }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "duplicate location \"/x\""), "duplicate exact location");

    err = t_load(SRV_OPEN "  location ~ x { }\n  location ~ x { }\n" SRV_CLOSE, &ok_);
    ok(ok_, "identical regex locations are allowed");

    err = t_load(SRV_OPEN "  location = /y { location /y/z { } }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "location \"/y/z\" cannot be inside the exact location \"/y\""),
       "nothing inside an exact location");

    err = t_load(SRV_OPEN "  location @n { location /z { } }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "location \"/z\" cannot be inside the named location \"@n\""),
       "nothing inside a named location");

    err = t_load(SRV_OPEN "  location /a/ { location @n { } }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "named location \"@n\" can be on the server level only"),
       "named location nested");

    err = t_load(SRV_OPEN "  location /a/ { location /b/ { } }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "location \"/b/\" is outside location \"/a/\""),
       "nested prefix outside its parent");

    err = t_load(SRV_OPEN "  location /a/ { location ~ \\.x$ { } }\n" SRV_CLOSE, &ok_);
    ok(ok_, "nested regex needs no common prefix");

    err = t_load(SRV_OPEN "  location !~ /a/ { }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "invalid location modifier \"!~\""), "invalid modifier");

    err = t_load(SRV_OPEN "  location ~ ( { }\n" SRV_CLOSE, &ok_);
    ok(!ok_ && t_contains(err, "pcre2_compile() failed"), "bad regex");

    err = t_load("http {\n location / { }\n}\n", &ok_);
    ok(!ok_ && t_contains(err, "\"location\" directive is not allowed here"),
       "location at http level");
}


/* Random prefix/exact sets checked against a naive longest-prefix search. */
static void test_random_against_naive(void)
{
    static const char alpha[] = "ab/";
    unsigned seed = 12345;
    int bad = 0, checked = 0;
    for (int round = 0; round < 40 && !bad; round++) {
        char names[24][8];
        int exact[24], n = 0;
        char text[4096];
        size_t off = (size_t) snprintf(text, sizeof(text), SRV_OPEN);
        for (int i = 0; i < 24; i++) {
            seed = seed * 1103515245 + 12345;
            int len = 1 + (int) ((seed >> 16) % 5);
            char nm[8];
            for (int k = 0; k < len; k++) {
                seed = seed * 1103515245 + 12345;
                nm[k] = alpha[(seed >> 16) % 3];
            }
            nm[len] = '\0';
            seed = seed * 1103515245 + 12345;
            int ex = (int) ((seed >> 16) % 4) == 0;
            int dup = 0;
            for (int j = 0; j < n; j++)
                dup |= exact[j] == ex && strcmp(names[j], nm) == 0;
            if (dup)
                continue;
            strcpy(names[n], nm);
            exact[n++] = ex;
            off += (size_t) snprintf(text + off, sizeof(text) - off, "  location %s%s { }\n",
                                     ex ? "= " : "", nm);
        }
        snprintf(text + off, sizeof(text) - off, SRV_CLOSE);
        pt_http_core_srv_conf_t *s = load_server(text);
        if (s == NULL) {
            bad++;
            break;
        }
        for (int u = 0; u < 200; u++) {
            char uri[10];
            seed = seed * 1103515245 + 12345;
            int len = (int) ((seed >> 16) % 7);
            for (int k = 0; k < len; k++) {
                seed = seed * 1103515245 + 12345;
                uri[k] = alpha[(seed >> 16) % 3];
            }
            uri[len] = '\0';
            /* naive: exact equal wins, else the longest prefix location */
            char want[16] = "";
            int best = -1;
            for (int j = 0; j < n; j++) {
                if (exact[j] && strcmp(names[j], uri) == 0) {
                    snprintf(want, sizeof(want), "= %s", names[j]);
                    best = -2;
                    break;
                }
            }
            if (best == -1) {
                for (int j = 0; j < n; j++) {
                    size_t l = strlen(names[j]);
                    if (!exact[j] && strncmp(names[j], uri, l) == 0
                        && (best < 0 || l > strlen(names[best])))
                        best = j;
                }
                if (best >= 0)
                    snprintf(want, sizeof(want), "%s", names[best]);
            }
            const char *got = t_match(s, uri, NULL);
            checked++;
            if (strcmp(got, want) != 0) {
                note("round %d uri \"%s\": got \"%s\", want \"%s\"", round, uri, got, want);
                bad++;
                break;
            }
        }
    }
    ok(bad == 0, "%d random lookups agree with the naive search", checked);
}

int main(void)
{
    t_make_dir();
    subtest("nginx doc example", test_nginx_doc_example);
    subtest("longest prefix", test_longest_prefix);
    subtest("no match", test_no_match);
    subtest("exact and prefix", test_exact_and_prefix_same_name);
    subtest("regex order", test_regex_order);
    subtest("nested", test_nested);
    subtest("captures", test_captures);
    subtest("auto redirect", test_auto_redirect);
    subtest("named", test_named);
    subtest("find config", test_find_config);
    subtest("errors", test_errors);
    subtest("random", test_random_against_naive);
    if (t_loaded)
        t_teardown(&T);
    t_remove_dir();
    return done_testing();
}
