"""proxy_ignore_headers reaches the proxy cache: an ignored Cache-Control,
Expires, Set-Cookie, X-Accel-Expires or Vary no longer decides whether a
response is stored or for how long (proxy_cache_valid does), while the
headers that are not ignored still do; the setting is inherited like the
other proxy_* directives."""

import threading

import pytest

from conftest import http_get, http_response


class Counting:
    """A backend answering with the headers a test sets; counts requests."""

    def __init__(self, backends, headers):
        self.headers = dict(headers)
        self.hits = 0
        self.lock = threading.Lock()
        self.b = backends(self.handle)

    def handle(self, req, c, b):
        with self.lock:
            self.hits += 1
            n = self.hits
        hdrs = dict(self.headers)
        hdrs["X-Hit"] = str(n)
        return http_response(200, b"body %d" % n, headers=hdrs)


def conf(be, ignore, http_extra=""):
    """/c/ caches with `ignore` in the location; /plain/ caches without it
    (it inherits http_extra only)."""
    return """
        http {
            proxy_cache_path @PREFIX@/cache levels=1:2 keys_zone=z:10m;
            %s
            server {
                listen 127.0.0.1:@PORT@;
                location /c/ {
                    proxy_cache z;
                    proxy_cache_valid 200 5m;
                    %s
                    add_header X-Cache-Status $upstream_cache_status always;
                    proxy_pass http://%s;
                }
                location /plain/ {
                    proxy_cache z;
                    proxy_cache_valid 200 5m;
                    add_header X-Cache-Status $upstream_cache_status always;
                    proxy_pass http://%s;
                }
            }
        }""" % (http_extra, ignore, be.b.addr, be.b.addr)


def status(p, path):
    r = http_get(p.url(path=path))
    assert r.status == 200
    return r.headers.get("X-Cache-Status"), r


# (headers the backend sends, the proxy_ignore_headers line that makes them
# irrelevant): without the line the response is never stored
NOT_STORED = [
    ({"Cache-Control": "no-cache"}, "proxy_ignore_headers Cache-Control;"),
    ({"Cache-Control": "private, max-age=60"}, "proxy_ignore_headers Cache-Control;"),
    ({"Cache-Control": "no-store"}, "proxy_ignore_headers Cache-Control;"),
    ({"Expires": "Thu, 01 Jan 1970 00:00:01 GMT"}, "proxy_ignore_headers Expires;"),
    ({"Set-Cookie": "sid=1; Path=/"}, "proxy_ignore_headers Set-Cookie;"),
    ({"X-Accel-Expires": "0"}, "proxy_ignore_headers X-Accel-Expires;"),
    ({"Vary": "*"}, "proxy_ignore_headers Vary;"),
]


@pytest.mark.parametrize("hdrs,ignore", NOT_STORED)
def test_ignored_header_no_longer_prevents_storing(portico, backends, hdrs, ignore):
    be = Counting(backends, hdrs)
    p = portico(conf(be, ignore))
    # the control: without the directive the header keeps it out of the cache
    assert status(p, "/plain/a")[0] == "MISS"
    assert status(p, "/plain/a")[0] == "MISS"
    assert be.hits == 2
    # with it, proxy_cache_valid decides: stored, then a HIT
    assert status(p, "/c/a")[0] == "MISS"
    st, r = status(p, "/c/a")
    assert st == "HIT"
    assert r.body == b"body 3" and r.headers.get("X-Hit") == "3"
    assert be.hits == 3


def test_set_cookie_is_kept_in_the_stored_response(portico, backends):
    be = Counting(backends, {"Set-Cookie": "sid=42; Path=/"})
    p = portico(conf(be, "proxy_ignore_headers Set-Cookie;"))
    assert status(p, "/c/s")[0] == "MISS"
    st, r = status(p, "/c/s")
    assert st == "HIT"
    assert r.headers.get("Set-Cookie") == "sid=42; Path=/"


def test_ignored_cache_control_lets_valid_decide_the_lifetime(portico, backends):
    """max-age=0 would store nothing and s-maxage=1 a second of freshness:
    ignored, the entry lives for proxy_cache_valid (5m)."""
    be = Counting(backends, {"Cache-Control": "max-age=0"})
    p = portico(conf(be, "proxy_ignore_headers Cache-Control;"))
    assert status(p, "/plain/t")[0] == "MISS"
    assert status(p, "/plain/t")[0] == "MISS"
    assert status(p, "/c/t")[0] == "MISS"
    assert status(p, "/c/t")[0] == "HIT"


def test_ignored_x_accel_expires_falls_back_to_cache_control(portico, backends):
    """X-Accel-Expires wins over Cache-Control; once ignored, Cache-Control
    decides (here: no-store, not stored)."""
    be = Counting(backends, {"X-Accel-Expires": "600", "Cache-Control": "no-store"})
    p = portico(conf(be, "proxy_ignore_headers X-Accel-Expires;"))
    assert status(p, "/plain/x")[0] == "MISS"
    assert status(p, "/plain/x")[0] == "HIT"        # X-Accel-Expires: 600 stores it
    assert status(p, "/c/x")[0] == "MISS"
    assert status(p, "/c/x")[0] == "MISS"           # Cache-Control: no-store decides
    assert be.hits == 3


def test_only_the_named_headers_are_ignored(portico, backends):
    """Ignoring Cache-Control leaves Set-Cookie in force."""
    be = Counting(backends, {"Cache-Control": "no-cache", "Set-Cookie": "a=b"})
    p = portico(conf(be, "proxy_ignore_headers Cache-Control;"))
    assert status(p, "/c/o")[0] == "MISS"
    assert status(p, "/c/o")[0] == "MISS"
    assert be.hits == 2


def test_all_four_from_the_docs(portico, backends):
    be = Counting(backends, {"Cache-Control": "private, no-store", "Set-Cookie": "s=1",
                             "Expires": "Thu, 01 Jan 1970 00:00:01 GMT",
                             "X-Accel-Expires": "0"})
    p = portico(conf(be, "proxy_ignore_headers Cache-Control Expires Set-Cookie X-Accel-Expires;"))
    assert status(p, "/c/all")[0] == "MISS"
    st, r = status(p, "/c/all")
    assert st == "HIT" and r.headers.get("X-Hit") == "1"
    # any one of them left out keeps the response out of the cache
    assert status(p, "/plain/all")[0] == "MISS"
    assert status(p, "/plain/all")[0] == "MISS"


def test_inherited_from_http_level(portico, backends):
    be = Counting(backends, {"Cache-Control": "no-cache"})
    p = portico(conf(be, "", http_extra="proxy_ignore_headers Cache-Control;"))
    for path in ("/c/i", "/plain/i"):
        assert status(p, path)[0] == "MISS"
        assert status(p, path)[0] == "HIT"
    assert be.hits == 2
