"""The headers module: add_header (status filter, always, variables, empty
values, inheritance that replaces the parent's list), expires in its forms."""

import email.utils
import time

from conftest import conf_test, http_get


def conf(server_body, http_extra=""):
    return '''
http {
    %s
    server {
        listen 127.0.0.1:@PORT@;
        %s
    }
}''' % (http_extra, server_body)


def test_add_header_only_on_success_codes_unless_always(portico):
    p = portico(conf('''
        add_header X-Plain plain;
        add_header X-Always always-$status always;
        location / { return 200 "ok"; }
        location /r { return 302 /x; }
        location /nf { return 404; }
        location /err { return 500 "boom"; }'''))
    r = http_get(p.url())
    assert r.headers["X-Plain"] == "plain" and r.headers["X-Always"] == "always-200"
    r = http_get(p.url(path="/r"))
    assert r.headers["X-Plain"] == "plain" and r.headers["X-Always"] == "always-302"
    r = http_get(p.url(path="/nf"))
    assert r.status == 404
    assert r.headers.get("X-Plain") is None and r.headers["X-Always"] == "always-404"
    r = http_get(p.url(path="/err"))
    assert r.headers.get("X-Plain") is None and r.headers["X-Always"] == "always-500"


def test_add_header_inheritance_replaces(portico):
    p = portico(conf('''
        add_header X-Server s;
        add_header X-Server2 s2;
        location / { return 200 "ok"; }
        location /own { add_header X-Loc l; return 200 "ok"; }''',
                     'add_header X-Http h;'))
    r = http_get(p.url())
    assert r.headers["X-Server"] == "s" and r.headers["X-Server2"] == "s2"
    assert r.headers.get("X-Http") is None      # the server level replaced http's
    r = http_get(p.url(path="/own"))
    assert r.headers["X-Loc"] == "l"
    assert r.headers.get("X-Server") is None


def test_add_header_inherited_from_http(portico):
    p = portico(conf('location / { return 200 "ok"; }', 'add_header X-Http h;'))
    assert http_get(p.url()).headers["X-Http"] == "h"


def test_add_header_variables_and_empty(portico):
    p = portico(conf('''
        location / {
            add_header X-Uri $uri;
            add_header X-Empty $arg_nothing;
            add_header X-Multi a;
            add_header X-Multi b;
            return 200 "ok";
        }'''))
    r = http_get(p.url(path="/p"))
    assert r.headers["X-Uri"] == "/p"
    assert r.headers.get("X-Empty") is None
    assert r.headers.get_all("X-Multi") == ["a", "b"]


def test_security_headers_on_errors(portico):
    """The seeds' always headers show up on error pages too."""
    p = portico(conf('''
        add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
        add_header X-Frame-Options "SAMEORIGIN" always;
        location / { return 403; }'''))
    r = http_get(p.url())
    assert r.status == 403
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"


def expires_of(r):
    return email.utils.parsedate_to_datetime(r.headers["Expires"]).timestamp()


def test_expires_forms(portico):
    p = portico(conf('''
        location /h { expires 1h; return 200 "ok"; }
        location /neg { expires -1; return 200 "ok"; }
        location /zero { expires 0; return 200 "ok"; }
        location /epoch { expires epoch; return 200 "ok"; }
        location /max { expires max; return 200 "ok"; }
        location /off { expires off; return 200 "ok"; }
        location /err { expires 1h; return 404; }
        location /var { expires $arg_e; return 200 "ok"; }'''))
    now = time.time()
    r = http_get(p.url(path="/h"))
    assert r.headers["Cache-Control"] == "max-age=3600"
    assert abs(expires_of(r) - (now + 3600)) < 5
    r = http_get(p.url(path="/neg"))
    assert r.headers["Cache-Control"] == "no-cache"
    assert abs(expires_of(r) - (now - 1)) < 5
    r = http_get(p.url(path="/zero"))
    assert r.headers["Cache-Control"] == "max-age=0"
    r = http_get(p.url(path="/epoch"))
    assert r.headers["Expires"] == "Thu, 01 Jan 1970 00:00:01 GMT"
    assert r.headers["Cache-Control"] == "no-cache"
    r = http_get(p.url(path="/max"))
    assert r.headers["Expires"] == "Thu, 31 Dec 2037 23:55:55 GMT"
    assert r.headers["Cache-Control"] == "max-age=315360000"
    r = http_get(p.url(path="/off"))
    assert r.headers.get("Expires") is None and r.headers.get("Cache-Control") is None
    r = http_get(p.url(path="/err"))
    assert r.headers.get("Expires") is None
    r = http_get(p.url(path="/var?e=30s"))
    assert r.headers["Cache-Control"] == "max-age=30"
    r = http_get(p.url(path="/var?e=epoch"))
    assert r.headers["Cache-Control"] == "no-cache"


def test_expires_inherited(portico):
    p = portico(conf('''
        expires 10m;
        location / { return 200 "ok"; }
        location /no { expires off; return 200 "ok"; }'''))
    assert http_get(p.url()).headers["Cache-Control"] == "max-age=600"
    assert http_get(p.url(path="/no")).headers.get("Cache-Control") is None


def test_config_errors(tmp_path):
    def check(body, message):
        rc, out, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; location / { %s } } }''' % body)
        assert rc != 0, err
        assert message in err, err

    check('add_header X a sometimes;', 'invalid parameter "sometimes"')
    check('add_header X;', 'invalid number of arguments in "add_header" directive')
    check('expires 1h; expires 2h;', '"expires" directive is duplicate')
    check('expires soon;', 'invalid value "soon"')
    check('expires modified @10h;', 'daily time cannot be used with "modified" parameter')
    check('expires @25h;', 'daily time value must be less than 24 hours')


def test_config_accepts_trailers_and_daily(tmp_path):
    rc, out, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; location / {
    add_trailer X-T v always; expires @15h30m; } } }''')
    assert rc == 0, err
