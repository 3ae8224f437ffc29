"""proxy_pass: URI rules, the rebuilt request, headers both ways,
proxy_redirect, proxy_intercept_errors, variables, the guides' examples."""

import json
import socket
import time

import pytest

from conftest import (http_get, raw_request, parse_responses, http_response, Backend,
                      make_echo_backend)


def echo_json(r):
    assert r.status == 200, r
    return json.loads(r.body)


def test_guide_headers_echo(portico, echo_backend):
    """Guide part 1: Host, X-Real-Ip, X-Forwarded-For, X-Forwarded-Proto."""
    p = portico("""
        http {
            server {
                listen 127.0.0.1:@PORT@;
                server_name myapp.example.com;
                location / {
                    proxy_pass http://%s;
                    proxy_set_header Host $host;
                    proxy_set_header X-Real-IP $remote_addr;
                    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    proxy_set_header X-Forwarded-Proto $scheme;
                    proxy_connect_timeout 10s;
                    proxy_send_timeout 60s;
                    proxy_read_timeout 60s;
                    proxy_buffer_size 16k;
                    proxy_buffers 8 16k;
                    proxy_busy_buffers_size 32k;
                }
            }
        }""" % echo_backend.addr)
    j = echo_json(http_get(p.url(), headers={"Host": "localhost"}))
    h = j["headers"]
    assert h["Host"] == "localhost"
    assert h["X-Real-IP"] == "127.0.0.1"
    assert h["X-Forwarded-For"] == "127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http"
    # appended to a client-sent one
    j = echo_json(http_get(p.url(), headers={"X-Forwarded-For": "203.0.113.7"}))
    assert j["headers"]["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"


def test_default_headers_and_version(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % echo_backend.addr)
    j = echo_json(http_get(p.url(path="/a/b?x=1&y=2"), headers={"X-Custom": "v"}))
    assert j["version"] == "HTTP/1.0"
    assert j["target"] == "/a/b?x=1&y=2"
    h = j["headers"]
    assert h["Host"] == echo_backend.addr           # $proxy_host
    assert h["Connection"] == "close"
    assert h["X-Custom"] == "v"
    raw = echo_backend.last.raw.decode("latin-1")
    # Host and Connection come once each
    assert raw.lower().count("\r\nhost:") == 1
    assert raw.lower().count("\r\nconnection:") == 1


def test_hop_by_hop_not_forwarded(portico, backends):
    def h(req, c, b):
        return http_response(200, echo_payload_min(req), headers=[
            ("Keep-Alive", "timeout=5"), ("X-Gone", "1"), ("Connection", "X-Gone"),
            ("Proxy-Connection", "keep-alive"), ("Trailer", "X-T"), ("X-Kept", "yes")])
    b = backends(h)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; proxy_http_version 1.1; } } }""" % b.addr)
    data = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Secret, close\r\n"
                               b"X-Secret: s\r\nKeep-Alive: 300\r\nTE: trailers\r\n"
                               b"Proxy-Connection: keep-alive\r\nUpgrade: foo\r\nX-Ok: 1\r\n\r\n")
    r = parse_responses(data)[0]
    assert r.status == 200
    names = [k.lower() for k, _ in b.last.headers]
    for n in ("x-secret", "keep-alive", "te", "proxy-connection", "upgrade"):
        assert n not in names, names
    assert b.last.header("x-ok") == "1"
    assert b.last.header("connection") == "close"
    rn = [k.lower() for k, _ in r.headers]
    assert "keep-alive" not in rn and "proxy-connection" not in rn and "trailer" not in rn
    assert "x-gone" not in rn
    assert r.header("x-kept") == "yes"


def echo_payload_min(req):
    return json.dumps({"target": req.target}).encode()


@pytest.mark.parametrize("loc,passto,req,expect", [
    ("/api/", "/", "/api/login", "/login"),
    ("/api/", "/", "/api/login?a=1", "/login?a=1"),
    ("/api/", "", "/api/login?a=1", "/api/login?a=1"),
    ("/api", "", "/api/x", "/api/x"),
    ("/app/", "/v2/", "/app/page", "/v2/page"),
    ("/app/", "/v2", "/app/page", "/v2page"),
    ("/app", "/v2", "/app/page", "/v2/page"),
    ("/", "/base/", "/x%20y", "/base/x%20y"),
    ("/", "", "/x%20y/../z", "/x%20y/../z"),          # unchanged as sent
    ("/", "/", "/a/%2e%2e/b", "/b"),                   # normalised then escaped
])
def test_uri_rules(portico, echo_backend, loc, passto, req, expect):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location %s { proxy_pass http://%s%s; } } }""" % (loc, echo_backend.addr, passto))
    data = raw_request(p.port, ("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % req).encode())
    r = parse_responses(data)[0]
    assert r.status == 200, data
    assert json.loads(r.body)["target"] == expect


def test_uri_regex_and_rewrite(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location ~ ^/re/ { proxy_pass http://%(a)s; }
            location /name/ {
                rewrite ^/name/([^/]+) /users?name=$1 break;
                proxy_pass http://%(a)s;
            }
            location /int/ { rewrite ^ /moved/ last; }
            location /moved/ { proxy_pass http://%(a)s; }
        } }""" % {"a": echo_backend.addr})
    assert echo_json(http_get(p.url(path="/re/x?q=1")))["target"] == "/re/x?q=1"
    assert echo_json(http_get(p.url(path="/name/bob")))["target"] == "/users?name=bob"
    assert echo_json(http_get(p.url(path="/int/a?z=2")))["target"] == "/moved/?z=2"


def test_uri_part_in_regex_location_is_an_error(portico, tmp_path):
    from conftest import conf_test
    rc, out, err, _ = conf_test(tmp_path, """
        events {} http { server { listen 127.0.0.1:1;
            location ~ /x { proxy_pass http://127.0.0.1:9/y; } } }""")
    assert rc != 0
    assert "cannot have URI part" in err


def test_trailing_slash_auto_redirect(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location /app/ { proxy_pass http://%s/; } } }""" % echo_backend.addr)
    r = http_get(p.url(path="/app"))
    assert r.status == 301
    assert r.headers["Location"].endswith("/app/")
    assert echo_json(http_get(p.url(path="/app/")))["target"] == "/"


def test_two_apps_by_domain(portico, backends):
    a = make_echo_backend(name="app1")
    b = make_echo_backend(name="app2")
    backends.track(a)
    backends.track(b)
    p = portico("""
        http {
            server { listen 127.0.0.1:@PORT@; server_name app1.example.com;
                     location / { proxy_pass http://%s; proxy_set_header Host $host; } }
            server { listen 127.0.0.1:@PORT@; server_name app2.example.com;
                     location / { proxy_pass http://%s; proxy_set_header Host $host; } }
        }""" % (a.addr, b.addr))
    j1 = echo_json(http_get(p.url(), headers={"Host": "app1.example.com"}))
    j2 = echo_json(http_get(p.url(), headers={"Host": "app2.example.com"}))
    assert j1["backend"] == "app1" and j1["headers"]["Host"] == "app1.example.com"
    assert j2["backend"] == "app2" and j2["headers"]["Host"] == "app2.example.com"


def test_api_and_app_path_routing(portico, backends):
    api = make_echo_backend(name="api")
    app = make_echo_backend(name="app")
    backends.track(api)
    backends.track(app)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location /api/ { proxy_pass http://%s/; }
            location /app/ { proxy_pass http://%s; }
        } }""" % (api.addr, app.addr))
    j = echo_json(http_get(p.url(path="/api/users/1")))
    assert j["backend"] == "api" and j["target"] == "/users/1"
    j = echo_json(http_get(p.url(path="/app/page")))
    assert j["backend"] == "app" and j["target"] == "/app/page"


def test_set_header_empty_removes_and_inheritance(portico, echo_backend):
    p = portico("""
        http {
            proxy_set_header X-From-Http yes;
            server { listen 127.0.0.1:@PORT@;
                location /inh/ { proxy_pass http://%(a)s; }
                location /own/ { proxy_pass http://%(a)s; proxy_set_header X-Own 1;
                                 proxy_set_header User-Agent ""; }
                location /nohdr/ { proxy_pass http://%(a)s; proxy_pass_request_headers off; }
            } }""" % {"a": echo_backend.addr})
    h = echo_json(http_get(p.url(path="/inh/"), headers={"User-Agent": "ua"}))["headers"]
    assert h["X-From-Http"] == "yes" and h["User-Agent"] == "ua"
    h = echo_json(http_get(p.url(path="/own/"), headers={"User-Agent": "ua"}))["headers"]
    assert "X-From-Http" not in h and h["X-Own"] == "1" and "User-Agent" not in h
    h = echo_json(http_get(p.url(path="/nohdr/"), headers={"X-A": "1"}))["headers"]
    assert "X-A" not in h and "Host" in h


def test_hide_and_pass_header(portico, backends):
    b = backends(lambda req, c, b: http_response(200, "x", headers=[
        ("Server", "backend/1"), ("X-Secret", "s"), ("X-Pad", "p"), ("X-Accel-Foo", "f"),
        ("X-Public", "ok")]))
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location /a/ { proxy_pass http://%(b)s; proxy_hide_header X-Secret; }
            location /b/ { proxy_pass http://%(b)s; proxy_pass_header Server; }
        } }""" % {"b": b.addr})
    r = http_get(p.url(path="/a/"))
    assert r.headers["X-Public"] == "ok"
    assert r.headers.get("X-Secret") is None and r.headers.get("X-Pad") is None
    assert r.headers["Server"].startswith("portico")
    r = http_get(p.url(path="/b/"))
    assert r.headers["Server"] == "backend/1"
    assert r.headers["X-Secret"] == "s"


def test_proxy_redirect(portico, backends):
    holder = {}

    def h(req, c, b):
        return http_response(302, "", headers=[("Location", holder["loc"] + "x"),
                                               ("Refresh", "5; url=" + holder["loc"] + "r")])
    b = backends(h)
    holder["loc"] = "http://%s/two/" % b.addr
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@; server_name localhost;
            location /one/ { proxy_pass http://%(b)s/two/; }
            location /off/ { proxy_pass http://%(b)s/two/; proxy_redirect off; }
            location /custom/ { proxy_pass http://%(b)s/two/;
                                proxy_redirect http://%(b)s/two/ http://front.example/c/; }
        } }""" % {"b": b.addr})
    r = http_get(p.url(path="/one/a"))
    assert r.status == 302
    assert r.headers["Location"] == "http://127.0.0.1:%d/one/x" % p.port
    assert r.headers["Refresh"] == "5; url=/one/r"
    r = http_get(p.url(path="/off/a"))
    assert r.headers["Location"] == holder["loc"] + "x"
    r = http_get(p.url(path="/custom/a"))
    assert r.headers["Location"] == "http://front.example/c/x"


def test_intercept_errors(portico, status_backend):
    b = status_backend(404, body="backend 404")
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            error_page 404 /err.html;
            location = /err.html { return 200 "our page"; }
            location /i/ { proxy_pass http://%(b)s; proxy_intercept_errors on; }
            location /n/ { proxy_pass http://%(b)s; }
        } }""" % {"b": b.addr})
    r = http_get(p.url(path="/i/x"))
    assert r.status == 404 and r.body == b"our page"
    r = http_get(p.url(path="/n/x"))
    assert r.status == 404 and r.body == b"backend 404"


def test_upstream_variables_in_log(portico, echo_backend):
    p = portico("""
        http {
            log_format up '$status|$upstream_addr|$upstream_status|$upstream_response_time|'
                          '$upstream_connect_time|$upstream_header_time|$upstream_http_content_type|'
                          '$proxy_host|$proxy_port';
            server { listen 127.0.0.1:@PORT@;
                access_log logs/up.log up;
                location / { proxy_pass http://%s; }
            } }""" % echo_backend.addr)
    assert http_get(p.url(path="/")).status == 200
    line = p.access_lines(1, "logs/up.log")[-1]
    f = line.split("|")
    assert f[0] == "200"
    assert f[1] == echo_backend.addr
    assert f[2] == "200"
    for t in f[3:6]:
        assert float(t) >= 0
    assert f[6] == "application/json"
    assert f[7] == echo_backend.addr
    assert f[8] == str(echo_backend.port)


def test_unix_socket_backend(portico, unix_echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://unix:%s:/u/; } } }""" % unix_echo_backend.path)
    j = echo_json(http_get(p.url(path="/x")))
    assert j["target"] == "/u/x"
    assert j["headers"]["Host"] == "localhost"


def test_head_and_204_and_chunked_and_close_delimited(portico, backends, chunked_backend):
    def h(req, c, b):
        if req.path == "/204":
            return b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
        if req.path == "/close":
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close body")
            from conftest import _Close
            raise _Close()
        return http_response(200, "0123456789")
    b = backends(h)
    ch = chunked_backend()
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; }
            location /ch/ { proxy_pass http://%s; }
        } }""" % (b.addr, ch.addr))
    r = http_get(p.url(path="/x"), method="HEAD")
    assert r.status == 200 and r.body == b"" and r.headers["Content-Length"] == "10"
    assert http_get(p.url(path="/204")).status == 204
    r = http_get(p.url(path="/close"))
    assert r.body == b"until close body"
    r = http_get(p.url(path="/ch/"))
    assert r.body == b"hello chunked world"
    # HTTP/1.0 client gets the chunked response as a close-delimited one
    data = raw_request(p.port, b"GET /ch/ HTTP/1.0\r\n\r\n")
    assert data.endswith(b"\r\n\r\nhello chunked world")


def test_proxy_pass_with_variables(portico, backends):
    a = make_echo_backend(name="va")
    backends.track(a)
    p = portico("""
        http {
            upstream pool_v { server %s; }
            server { listen 127.0.0.1:@PORT@;
                location / { set $u pool_v; proxy_pass http://$u; }
                location /w/ { proxy_pass http://pool_v/fixed$is_args$args; }
            } }""" % a.addr)
    j = echo_json(http_get(p.url(path="/some/path?k=v")))
    assert j["target"] == "/some/path?k=v"
    j = echo_json(http_get(p.url(path="/w/abc?k=v")))
    assert j["target"] == "/fixed?k=v"


def test_malformed_backend_response_502(portico, backends):
    replies = {
        "/garbage": b"NOT HTTP AT ALL\r\n\r\n",
        "/clte": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "/twocl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "/te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        "/badcl": b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
    }
    b = backends(lambda req, c, bb: replies[req.path])
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % b.addr)
    for path in replies:
        r = http_get(p.url(path=path))
        assert r.status == 502, (path, r)
    log = p.error_log()
    assert "upstream sent invalid header" in log
    assert "at the same time" in log
    assert "duplicate header line" in log
    assert "unknown \"Transfer-Encoding\"" in log
    assert "invalid \"Content-Length\"" in log


def test_too_big_header_502(portico, backends):
    b = backends(lambda req, c, bb: http_response(200, "x", headers=[("X-Big", "a" * 6000)]))
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location /small/ { proxy_pass http://%(b)s; proxy_buffer_size 4k; }
            location /big/ { proxy_pass http://%(b)s; proxy_buffer_size 16k;
                             proxy_busy_buffers_size 16k; }
        } }""" % {"b": b.addr})
    assert http_get(p.url(path="/small/")).status == 502
    assert "upstream sent too big header" in p.error_log()
    assert http_get(p.url(path="/big/")).status == 200


def test_interim_100_skipped(portico, backends):
    def h(req, c, b):
        c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return http_response(200, "final")
    b = backends(h)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % b.addr)
    r = http_get(p.url(path="/"))
    assert r.status == 200 and r.body == b"final"


def test_proxy_pass_variables_address_literal(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location /lit/ { set $b %s; proxy_pass http://$b$request_uri; }
            location /name/ { set $h nosuchhost.invalid; proxy_pass http://$h; }
        } }""" % echo_backend.addr)
    j = echo_json(http_get(p.url(path="/lit/x?y=1")))
    assert j["target"] == "/lit/x?y=1"
    assert j["headers"]["Host"] == echo_backend.addr
    assert http_get(p.url(path="/name/")).status == 502
    assert "no resolver defined to resolve" in p.error_log()
