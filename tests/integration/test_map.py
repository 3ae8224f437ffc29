"""The map module: the guides' $connection_upgrade map, exact keys (case
insensitive), regexes with captures, hostnames, include, volatile, default,
and configuration errors."""

from conftest import conf_test, http_get


def test_connection_upgrade_map(portico):
    p = portico('''
http {
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "$connection_upgrade"; }
    }
}''')
    assert http_get(p.url(), headers={"Upgrade": "websocket"}).body == b"upgrade"
    assert http_get(p.url()).body == b"close"


def test_exact_regex_default_and_captures(portico):
    p = portico('''
http {
    map $uri $kind {
        default                     "other";
        /Exact                      "exact";
        ~^/api/(?<ver>v\\d+)/(.*)$  "api:$ver:$2";
        ~*\\.JPG$                   "image";
    }
    map $arg_k $special {
        default   "default-value";
        \\default  "escaped";
        \\volatile "escaped too";
    }
    map $kind $kind_upper {
        exact EXACT;
        default $kind;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "$kind|$kind_upper"; }
        location = /special { return 200 "$special"; }
    }
}''')
    assert http_get(p.url(path="/exact")).body == b"exact|EXACT"
    assert http_get(p.url(path="/api/v2/users/7")).body == b"api:v2:users/7|api:v2:users/7"
    assert http_get(p.url(path="/x/pic.jpg")).body == b"image|image"
    assert http_get(p.url(path="/API/v2/x")).body == b"other|other"
    assert http_get(p.url(path="/special?k=default")).body == b"escaped"
    assert http_get(p.url(path="/special?k=volatile")).body == b"escaped too"
    assert http_get(p.url(path="/special?k=x")).body == b"default-value"


def test_no_default_is_empty(portico):
    p = portico('''
http {
    map $arg_k $v { a 1; }
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "[$v]"; }
    }
}''')
    assert http_get(p.url(path="/?k=a")).body == b"[1]"
    assert http_get(p.url(path="/?k=b")).body == b"[]"


def test_hostnames(portico):
    p = portico('''
http {
    map $http_host $name {
        hostnames;
        default       0;
        example.com   1;
        *.example.com 2;
        .example.net  3;
        wap.*         4;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "$name"; }
    }
}''')
    cases = {"example.com": b"1", "www.example.com": b"2", "example.net": b"3",
             "a.b.example.net": b"3", "wap.example.org": b"4", "other.org": b"0"}
    for host, want in cases.items():
        assert http_get(p.url(), headers={"Host": host}).body == want, host


def test_include_file(portico):
    p = portico('''
http {
    map $arg_c $country {
        default unknown;
        include countries.map;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "$country"; }
    }
}''', files={"conf/countries.map": "fr France;\nde Germany;\n"})
    assert http_get(p.url(path="/?c=fr")).body == b"France"
    assert http_get(p.url(path="/?c=DE")).body == b"Germany"
    assert http_get(p.url(path="/?c=xx")).body == b"unknown"


def test_cached_vs_volatile(portico):
    """A map value is computed once per request; volatile maps every time."""
    p = portico('''
http {
    map $args $cached { default $args; }
    map $args $fresh { volatile; default $args; }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            set $a $cached;
            set $b $fresh;
            set $args "changed";
            return 200 "$a $cached $b $fresh";
        }
    }
}''')
    assert http_get(p.url(path="/?orig")).body == b"orig orig orig changed"


def test_map_used_in_headers_and_logs(portico):
    p = portico('''
http {
    map $status $loggable { ~^2 0; default 1; }
    log_format m '$uri $loggable';
    server {
        listen 127.0.0.1:@PORT@;
        access_log logs/errors.log m if=$loggable;
        location / { return 200 "ok"; }
        location /missing { return 404; }
    }
}''')
    http_get(p.url(path="/fine"))
    http_get(p.url(path="/missing"))
    import time
    for _ in range(50):
        if "/missing" in p.access_log("logs/errors.log"):
            break
        time.sleep(0.05)
    text = p.access_log("logs/errors.log")
    assert "/missing 1" in text and "/fine" not in text


def test_config_errors(tmp_path):
    def check(body, message):
        rc, out, err, _ = conf_test(tmp_path, '''
events { }
http { %s server { listen 127.0.0.1:1; } }''' % body)
        assert rc != 0, err
        assert message in err, err

    check('map $uri $x { default a; default b; }', 'duplicate default map parameter')
    check('map $uri $x { a 1; A 2; }', 'conflicting parameter "A"')
    check('map $uri $x { a 1 2; }', 'invalid number of the map parameters')
    check('map $uri $x { ~( 1; }', 'pcre2_compile() failed')
    check('map $uri x { a 1; }', 'invalid variable name "x"')
    check('map $uri $host { a 1; }', 'the duplicate "host" variable')
    check('map $nope $x { a 1; }', 'unknown "nope" variable')
    check('server { map $uri $x { } }', '"map" directive is not allowed here')
