"""Which server and which location answer: server_name precedence (exact,
*.x, x.*, regex in order, default server, empty name), location precedence
(= / ^~ / regex in order / longest prefix), nested and named locations.
Every block answers `return 200 "<name>"`, so the body names the block."""

import pytest

from conftest import http_get, raw_request, parse_responses


def body(p, path="/", host=None, port=None):
    headers = {"Host": host} if host is not None else {}
    r = http_get(p.url(port=port, path=path), headers=headers)
    return r.status, r.body.decode()


def http10_no_host(port, path="/"):
    raw = raw_request(port, ("GET %s HTTP/1.0\r\n\r\n" % path).encode())
    rs = parse_responses(raw)
    assert rs, raw
    return rs[0].status, rs[0].body.decode()


# --------------------------------------------------------------------------
# server_name
# --------------------------------------------------------------------------

SERVERS = r'''
http {
    server {
        listen 127.0.0.1:@PORT@;
        server_name first.test;
        return 200 "first";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~^app\d+\.regex\.test$;
        return 200 "regex1";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~^app;
        return 200 "regex2";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name www.example.*;
        return 200 "wild-end";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name *.example.com;
        return 200 "wild-start";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name *.sub.example.com;
        return 200 "wild-start-longer";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name www.example.com alias.example.net;
        return 200 "exact";
    }
    server {
        listen 127.0.0.1:@PORT@ default_server;
        server_name catchall.test;
        return 200 "default";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name .dot.test;
        return 200 "dot";
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~^(?<user>[a-z]+)\.cap\.test$;
        return 200 "cap:$user";
    }
}
'''


@pytest.fixture
def servers(portico):
    return portico(SERVERS)


@pytest.mark.parametrize("host,expect", [
    ("www.example.com", "exact"),              # exact beats *.example.com and www.example.*
    ("alias.example.net", "exact"),            # second name of the same server
    ("WWW.Example.COM", "exact"),              # names are case-insensitive
    ("www.example.com:8080", "exact"),         # port is not part of the name
    ("www.example.com.", "exact"),             # trailing dot is dropped
    ("foo.example.com", "wild-start"),         # *.example.com beats www.example.* (not matching)
    ("a.b.example.com", "wild-start"),         # * covers several labels
    ("x.sub.example.com", "wild-start-longer"),  # longest leading wildcard wins
    ("www.example.org", "wild-end"),           # trailing wildcard
    ("app7.regex.test", "regex1"),             # first matching regex, in config order
    ("application.test", "regex2"),
    ("dot.test", "dot"),                       # .dot.test = dot.test and *.dot.test
    ("deep.dot.test", "dot"),
    ("alice.cap.test", "cap:alice"),           # named capture becomes a variable
    ("nobody.invalid", "default"),             # unknown name -> default_server, not first
    ("first.test", "first"),
    ("127.0.0.1", "default"),
])
def test_server_name_precedence(servers, host, expect):
    status, text = body(servers, host=host)
    assert (status, text) == (200, expect), host


def test_wildcard_start_beats_wildcard_end(portico):
    p = portico('''
    http {
        server { listen 127.0.0.1:@PORT@; server_name www.both.*; return 200 "end"; }
        server { listen 127.0.0.1:@PORT@; server_name *.both.test; return 200 "start"; }
    }''')
    assert body(p, host="www.both.test") == (200, "start")
    assert body(p, host="www.both.org") == (200, "end")


def test_wildcard_end_beats_regex(portico):
    p = portico(r'''
    http {
        server { listen 127.0.0.1:@PORT@; server_name ~^mail\.; return 200 "regex"; }
        server { listen 127.0.0.1:@PORT@; server_name mail.*; return 200 "end"; }
    }''')
    assert body(p, host="mail.example.org") == (200, "end")


def test_no_host_http10_goes_to_default_server(servers):
    assert http10_no_host(servers.port) == (200, "default")


def test_default_is_first_server_without_default_server(portico):
    p = portico('''
    http {
        server { listen 127.0.0.1:@PORT@; server_name a.test; return 200 "a"; }
        server { listen 127.0.0.1:@PORT@; server_name b.test; return 200 "b"; }
    }''')
    assert body(p, host="zzz.test") == (200, "a")
    assert body(p, host="b.test") == (200, "b")
    assert http10_no_host(p.port) == (200, "a")


def test_empty_server_name_catches_requests_without_host(portico):
    """A server without server_name has the empty name: it, not the default
    server, answers a request without Host (nginx docs, server names)."""
    p = portico('''
    http {
        server { listen 127.0.0.1:@PORT@ default_server; server_name d.test; return 200 "default"; }
        server { listen 127.0.0.1:@PORT@; return 200 "unnamed"; }
        server { listen 127.0.0.1:@PORT@; server_name x.test ""; return 200 "explicit-empty"; }
    }''')
    status, text = http10_no_host(p.port)
    assert status == 200 and text in ("unnamed", "explicit-empty"), text
    assert body(p, host="other.test") == (200, "default")


def test_default_server_is_per_listen_port(portico):
    p = portico('''
    http {
        server { listen 127.0.0.1:@PORT@; listen 127.0.0.1:@PORT2@ default_server;
                 server_name one.test; return 200 "one"; }
        server { listen 127.0.0.1:@PORT@ default_server; listen 127.0.0.1:@PORT2@;
                 server_name two.test; return 200 "two"; }
    }''')
    assert body(p, host="none.test") == (200, "two")
    assert body(p, host="none.test", port="PORT2") == (200, "one")
    assert body(p, host="one.test") == (200, "one")
    assert body(p, host="two.test", port="PORT2") == (200, "two")


def test_servers_on_different_addresses(portico):
    """Names are looked up only among servers of the address the request came in on."""
    p = portico('''
    http {
        server { listen 127.0.0.1:@PORT@; server_name a.test; return 200 "a"; }
        server { listen 127.0.0.2:@PORT@; server_name b.test; return 200 "b"; }
    }''')
    assert body(p, host="b.test") == (200, "a")
    r = http_get("http://127.0.0.2:%d/" % p.port, headers={"Host": "a.test"})
    assert r.body == b"b"


def test_duplicate_default_server_is_an_error(tmp_path):
    from conftest import conf_test
    text = ("events { }\nhttp {\n"
            "    server { listen 127.0.0.1:8080 default_server; }\n"
            "    server { listen 127.0.0.1:8080 default_server; }\n}\n")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    assert ("portico: [emerg] a duplicate default server for 127.0.0.1:8080 in %s:4" % path
            in err.splitlines()), err


def test_conflicting_server_name_is_a_warning(tmp_path):
    from conftest import conf_test
    text = ("events { }\nhttp {\n"
            "    server { listen 127.0.0.1:8080; server_name same.test; }\n"
            "    server { listen 127.0.0.1:8080; server_name same.test; }\n}\n")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 0, err
    assert ('portico: [warn] conflicting server name "same.test" on 127.0.0.1:8080, ignored'
            in err.splitlines()), err


# --------------------------------------------------------------------------
# locations
# --------------------------------------------------------------------------

# nginx's documented example (ngx_http_core_module, "location"): A..E
LOCATIONS = r'''
http {
    server {
        listen 127.0.0.1:@PORT@;
        location = / { return 200 "A"; }
        location / { return 200 "B"; }
        location /documents/ { return 200 "C"; }
        location ^~ /images/ { return 200 "D"; }
        location ~* \.(gif|jpg|jpeg)$ { return 200 "E"; }

        location /regex-order/ { return 200 "prefix"; }
        location ~ ^/regex-order/.*\.txt$ { return 200 "re-first"; }
        location ~ \.txt$ { return 200 "re-second"; }
        location ~ \.CASE$ { return 200 "case-sensitive"; }

        location /long { return 200 "long"; }
        location /longer { return 200 "longer"; }
        location = /exact { return 200 "exact"; }

        location ~ ^/user/(\d+)/(?<tab>[a-z]+)$ { return 200 "user $1 $tab"; }
    }
}
'''


@pytest.fixture
def locs(portico):
    return portico(LOCATIONS)


@pytest.mark.parametrize("path,expect", [
    ("/", "A"),
    ("/?x=1", "A"),                       # the query string is not part of the match
    ("/index.html", "B"),
    ("/documents/document.html", "C"),
    ("/images/1.gif", "D"),               # ^~ stops the regex search
    ("/documents/1.jpg", "E"),            # a regex beats the longest prefix
    ("/documents/1.JPG", "E"),            # ~* is case-insensitive
    ("/regex-order/a.txt", "re-first"),   # regexes in the order they appear
    ("/other/a.txt", "re-second"),
    ("/regex-order/a.md", "prefix"),
    ("/x.CASE", "case-sensitive"),
    ("/x.case", "B"),                     # ~ is case-sensitive
    ("/lon", "B"),
    ("/long", "long"),
    ("/longe", "long"),
    ("/longer/x", "longer"),              # longest prefix wins, not the first
    ("/exact", "exact"),
    ("/exact/", "B"),                     # = matches only the exact URI
    ("/exactly", "B"),
    ("/user/42/posts", "user 42 posts"),  # numbered and named captures
    ("/documents/../images/2.gif", "D"),  # matched against the normalized URI
    ("/documents//x", "C"),               # merge_slashes
    ("/%64ocuments/x", "C"),              # percent-decoded before matching
    ("/documents/./x", "C"),
])
def test_location_precedence(locs, path, expect):
    status, text = body(locs, path=path)
    assert (status, text) == (200, expect), path


def test_exact_match_beats_regex(portico):
    p = portico(r'''
    http { server { listen 127.0.0.1:@PORT@;
        location ~ \.html$ { return 200 "regex"; }
        location = /page.html { return 200 "exact"; }
    } }''')
    assert body(p, path="/page.html") == (200, "exact")
    assert body(p, path="/other.html") == (200, "regex")


def test_caret_tilde_only_when_longest(portico):
    """^~ stops the regex search only when it is the longest matching prefix."""
    p = portico(r'''
    http { server { listen 127.0.0.1:@PORT@;
        location ^~ /static/ { return 200 "static"; }
        location /static/dynamic/ { return 200 "dynamic-prefix"; }
        location ~ \.php$ { return 200 "php"; }
    } }''')
    assert body(p, path="/static/x.php") == (200, "static")
    assert body(p, path="/static/dynamic/x.php") == (200, "php")
    assert body(p, path="/static/dynamic/x") == (200, "dynamic-prefix")


NESTED = r'''
http { server { listen 127.0.0.1:@PORT@;
    location / { return 200 "root"; }
    location /app/ {
        location /app/admin/ {
            location ~ \.json$ { return 200 "admin-json"; }
            return 200 "admin";
        }
        location ~ \.png$ { return 200 "app-png"; }
        location = /app/exact { return 200 "app-exact"; }
        return 200 "app";
    }
    location ~ \.png$ { return 200 "top-png"; }
} }
'''


@pytest.mark.parametrize("path,expect", [
    ("/", "root"),
    ("/app/", "app"),
    ("/app/x", "app"),
    ("/app/x.png", "app-png"),            # regex nested in the prefix first
    ("/app/admin/", "admin"),
    ("/app/admin/a.json", "admin-json"),
    ("/app/exact", "app-exact"),
    ("/img/x.png", "top-png"),
])
def test_nested_locations(portico, path, expect):
    p = portico(NESTED)
    assert body(p, path=path) == (200, expect)


def test_nested_location_outside_parent_is_an_error(tmp_path):
    from conftest import conf_test
    text = ("events { }\nhttp { server { listen 127.0.0.1:8080;\n"
            "    location /a/ {\n"
            "        location /b/ { }\n"
            "    }\n} }\n")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    assert ('portico: [emerg] location "/b/" is outside location "/a/" in %s:4' % path
            in err.splitlines()), err


def test_duplicate_location_is_an_error(tmp_path):
    from conftest import conf_test
    text = ("events { }\nhttp { server { listen 127.0.0.1:8080;\n"
            "    location /a/ { }\n"
            "    location /a/ { }\n} }\n")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    assert ('portico: [emerg] duplicate location "/a/" in %s:4' % path
            in err.splitlines()), err


NAMED = r'''
http { server { listen 127.0.0.1:@PORT@;
    location / { return 200 "root"; }
    location /missing {
        error_page 404 = @fallback;
        return 404;
    }
    location /keep404 {
        error_page 404 /custom404;
        return 404;
    }
    location = /custom404 { return 200 "custom page"; }
    location /to302 {
        error_page 404 =302 http://other.test/elsewhere;
        return 404;
    }
    location @fallback { return 200 "fallback"; }
} }
'''


def test_named_location_via_error_page(portico):
    p = portico(NAMED)
    assert body(p, path="/missing/x") == (200, "fallback")


def test_named_location_not_reachable_directly(portico):
    p = portico(NAMED)
    assert body(p, path="/@fallback") == (200, "root")


def test_error_page_uri_keeps_status(portico):
    p = portico(NAMED)
    assert body(p, path="/keep404") == (404, "custom page")


def test_error_page_changes_status_to_redirect(portico):
    p = portico(NAMED)
    r = http_get(p.url(path="/to302"), headers={"Host": "h.test"})
    assert r.status == 302
    assert r.headers["Location"] == "http://other.test/elsewhere"


def test_absolute_uri_selects_server_by_its_host(portico):
    """An absolute-form request target selects the server by its host."""
    p = portico('''
    http {
        server { listen 127.0.0.1:@PORT@; server_name a.test; return 200 "a"; }
        server { listen 127.0.0.1:@PORT@; server_name b.test; return 200 "b"; }
    }''')
    raw = raw_request(p.port, b"GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\n"
                              b"Connection: close\r\n\r\n")
    r = parse_responses(raw)[0]
    assert (r.status, r.body) == (200, b"b")


# --------------------------------------------------------------------------
# listen forms
# --------------------------------------------------------------------------

def test_listen_ipv6_unix_and_port_only(short_tmp, portico):
    # short_tmp first: it must outlive portico (teardown is in reverse order)
    import os
    import socket
    sock_path = os.path.join(short_tmp, "p.sock")
    p = portico('''
    http {
        server {
            listen [::1]:@PORT@;
            listen unix:%s;
            listen 127.0.0.1:@PORT2@;
            return 200 "$server_port";
        }
    }''' % sock_path)
    r = http_get("http://[::1]:%d/" % p.port)
    assert (r.status, r.body) == (200, str(p.port).encode())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(b"GET / HTTP/1.0\r\nHost: u\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert parse_responses(data)[0].status == 200, data
    assert http_get("http://127.0.0.1:%d/" % p.ports["PORT2"]).body == str(p.ports["PORT2"]).encode()


def test_listen_wildcard_ipv6(portico):
    """[::]:port accepts on ::1 (ipv6only=on by default, as nginx)."""
    p = portico('http { server { listen [::]:@PORT@; return 200 "v6"; } }')
    assert http_get("http://[::1]:%d/" % p.port).body == b"v6"
