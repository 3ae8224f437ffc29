"""proxy_cache: the guides' MISS then HIT, keys, proxy_cache_valid per status,
EXPIRED, Cache-Control / Expires / X-Accel-Expires / Set-Cookie, bypass and
no_cache, use_stale (error, http_5xx, updating), the cache lock, revalidation,
reload, large bodies, two workers sharing the keys zone, the manager
(inactive) and the loader (entries found on disk at start)."""

import concurrent.futures
import glob
import os
import threading
import time

import pytest

from conftest import http_get, http_response, raw_request


class Counting:
    """A backend whose answer a test can change; counts requests per path."""

    def __init__(self, backends, status=200, body=b"hello", headers=None, delay=0.0):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.delay = delay
        self.hits = 0
        self.lock = threading.Lock()
        self.b = backends(self.handle)

    def handle(self, req, c, b):
        with self.lock:
            self.hits += 1
            n = self.hits
        if self.delay:
            time.sleep(self.delay)
        body = self.body(req, n) if callable(self.body) else self.body
        hdrs = dict(self.headers)
        hdrs["X-Hit"] = str(n)
        return http_response(self.status, body, headers=hdrs)

    @property
    def addr(self):
        return self.b.addr


def conf(backend, loc_extra="", http_extra="", path_extra="", valid="proxy_cache_valid 200 5m;",
         always=" always"):
    return """
        http {
            proxy_cache_path @PREFIX@/cache levels=1:2 keys_zone=myapp_cache:10m max_size=1g
                             inactive=60m use_temp_path=off %s;
            %s
            server {
                listen 127.0.0.1:@PORT@;
                location /api/public/ {
                    proxy_cache myapp_cache;
                    proxy_cache_key "$scheme$request_method$host$request_uri";
                    %s
                    %s
                    add_header X-Cache-Status $upstream_cache_status%s;
                    proxy_pass http://%s;
                }
                location /nocache/ {
                    proxy_pass http://%s;
                    add_header X-Cache-Status "[$upstream_cache_status]";
                }
            }
        }""" % (path_extra, http_extra, valid, loc_extra, always, backend.addr, backend.addr)


def get(p, path="/api/public/x", **kw):
    return http_get(p.url(path=path), **kw)


def status_of(r):
    return r.headers.get("X-Cache-Status")


def test_guide_miss_then_hit(portico, backends):
    be = Counting(backends, body=b"guide body", headers={"ETag": '"v1"'})
    p = portico(conf(be, "proxy_cache_valid 404 1m; proxy_cache_lock on;"
                         " proxy_cache_use_stale error timeout updating http_500 http_502 http_503;",
                     always=""))
    r1 = get(p)
    assert r1.status == 200 and r1.body == b"guide body"
    assert status_of(r1) == "MISS"
    r2 = get(p)
    assert r2.status == 200 and r2.body == b"guide body"
    assert status_of(r2) == "HIT"
    assert r2.headers.get("X-Hit") == "1"
    assert r2.headers.get("ETag") == '"v1"'
    assert r2.headers.get("Content-Type") == "text/plain"
    assert r2.headers.get("Content-Length") == str(len(b"guide body"))
    assert be.hits == 1
    # a HEAD is answered from the cache too, without a body
    r3 = get(p, method="HEAD")
    assert r3.status == 200 and r3.body == b""
    # the file is where levels=1:2 puts it
    files = [f for f in glob.glob(p.prefix + "/cache/*/*/*") if not os.path.basename(f).startswith(".")]
    assert len(files) >= 1
    name = os.path.basename(files[0])
    assert len(name) == 32
    assert files[0].endswith("/%s/%s/%s" % (name[-1], name[-3:-1], name))
    # a location without proxy_cache has no status
    r4 = get(p, path="/nocache/y")
    assert r4.headers.get("X-Cache-Status") == "[]"


def test_key_has_method_host_uri(portico, backends):
    be = Counting(backends, body=lambda req, n: ("%s %s" % (req.method, req.target)).encode())
    p = portico(conf(be))
    assert get(p, path="/api/public/a").body == b"GET /api/public/a"
    assert get(p, path="/api/public/a?x=1").body == b"GET /api/public/a?x=1"
    assert get(p, path="/api/public/a", headers={"Host": "other.example"}).body == \
        b"GET /api/public/a"
    assert be.hits == 3
    assert status_of(get(p, path="/api/public/a")) == "HIT"
    assert status_of(get(p, path="/api/public/a?x=1")) == "HIT"
    assert status_of(get(p, path="/api/public/a", headers={"Host": "other.example"})) == "HIT"
    # HEAD has its own key (the method is in it); the backend sees a GET
    r = get(p, path="/api/public/a", method="HEAD")
    assert status_of(r) == "MISS" and r.body == b""
    assert be.b.last.method == "GET"
    assert be.hits == 4


def test_valid_per_status_and_expired(portico, backends):
    be = Counting(backends, status=404, body=b"nope")
    p = portico(conf(be, valid="proxy_cache_valid 200 3s; proxy_cache_valid 404 1s;"))
    assert status_of(get(p)) == "MISS"
    r = get(p)
    assert r.status == 404 and status_of(r) == "HIT"
    time.sleep(1.3)
    r = get(p)
    assert r.status == 404 and status_of(r) == "EXPIRED"
    assert be.hits == 2
    be.status = 200
    be.body = b"yes"
    time.sleep(1.3)
    r = get(p)
    assert r.status == 200 and status_of(r) == "EXPIRED" and r.body == b"yes"
    time.sleep(1.3)
    assert status_of(get(p)) == "HIT"          # 200 is valid for 3s
    # a status without a validity is not stored
    be.status = 500
    r = get(p, path="/api/public/other")
    assert r.status == 500 and status_of(r) == "MISS"
    assert status_of(get(p, path="/api/public/other")) == "MISS"


def test_valid_codes_and_any(portico, backends):
    be = Counting(backends, status=302, headers={"Location": "http://x.example/"})
    p = portico(conf(be, valid="proxy_cache_valid 200 302 10m; proxy_cache_valid any 1m;"))
    assert status_of(get(p)) == "MISS"
    r = get(p)
    assert r.status == 302 and status_of(r) == "HIT"
    assert r.headers.get("Location") == "http://x.example/"
    be.status = 410
    assert status_of(get(p, path="/api/public/gone")) == "MISS"
    assert status_of(get(p, path="/api/public/gone")) == "HIT"


@pytest.mark.parametrize("hdr,cached", [
    ({"Cache-Control": "max-age=3"}, "short"),
    ({"Cache-Control": "no-store"}, False),
    ({"Cache-Control": "private, max-age=60"}, False),
    ({"Cache-Control": "no-cache"}, False),
    ({"Cache-Control": "public, s-maxage=60, max-age=0"}, True),
    ({"Set-Cookie": "sid=1"}, False),
    ({"Vary": "*"}, False),
    ({"X-Accel-Expires": "0", "Cache-Control": "max-age=60"}, False),
    ({"X-Accel-Expires": "3"}, "short"),
    ({"Expires": "Thu, 01 Jan 1970 00:00:01 GMT"}, False),
])
def test_response_headers_decide(portico, backends, hdr, cached):
    be = Counting(backends, headers=hdr)
    p = portico(conf(be))                      # proxy_cache_valid 200 5m
    assert status_of(get(p)) == "MISS"
    second = status_of(get(p))
    if cached is False:
        assert second == "MISS"
        assert be.hits == 2
        return
    assert second == "HIT"
    if cached == "short":
        # 3 s of validity: wide enough that the second request above cannot
        # cross a second boundary into expiry on a loaded machine
        time.sleep(3.6)
        assert status_of(get(p)) == "EXPIRED"
    else:
        time.sleep(1.5)
        assert status_of(get(p)) == "HIT"


def test_max_age_without_valid(portico, backends):
    be = Counting(backends, headers={"Cache-Control": "max-age=60"})
    p = portico(conf(be, valid=""))
    assert status_of(get(p)) == "MISS"
    assert status_of(get(p)) == "HIT"
    be.headers = {}
    assert status_of(get(p, path="/api/public/plain")) == "MISS"
    assert status_of(get(p, path="/api/public/plain")) == "MISS"


def test_bypass_and_no_cache(portico, backends):
    be = Counting(backends, body=lambda req, n: b"n=%d" % n)
    p = portico(conf(be, "proxy_cache_bypass $http_authorization $http_upgrade;"
                         " proxy_no_cache $http_authorization;"))
    assert get(p).body == b"n=1"
    assert status_of(get(p)) == "HIT"
    r = get(p, headers={"Authorization": "Bearer x"})
    assert status_of(r) == "BYPASS" and r.body == b"n=2"
    # not stored (no_cache), so the cached one is still the first
    r = get(p)
    assert status_of(r) == "HIT" and r.body == b"n=1"
    # bypass without no_cache: the fresh response replaces the entry
    r = get(p, headers={"Upgrade": "websocket"})
    assert status_of(r) == "BYPASS" and r.body == b"n=3"
    r = get(p)
    assert status_of(r) == "HIT" and r.body == b"n=3"


def test_guide_user_location_never_cached(portico, backends):
    be = Counting(backends)
    p = portico("""
        http {
            proxy_cache_path @PREFIX@/cache levels=1:2 keys_zone=my_cache:10m max_size=100m
                             inactive=60m use_temp_path=off;
            server {
                listen 127.0.0.1:@PORT@;
                proxy_cache my_cache;
                proxy_cache_valid 200 302 10m;
                add_header X-Cache-Status $upstream_cache_status;
                location /api/user/ {
                    proxy_pass http://%s;
                    proxy_no_cache 1;
                    proxy_cache_bypass 1;
                }
                location / { proxy_pass http://%s; }
            }
        }""" % (be.addr, be.addr))
    for _ in range(3):
        assert status_of(get(p, path="/api/user/me")) == "BYPASS"
    assert be.hits == 3
    assert status_of(get(p, path="/x")) == "MISS"
    assert status_of(get(p, path="/x")) == "HIT"


def test_use_stale_error(portico, backends):
    be = Counting(backends, body=b"still here")
    p = portico(conf(be, "proxy_cache_use_stale error timeout http_500 http_502 http_503;",
                     valid="proxy_cache_valid 200 1s;"))
    assert status_of(get(p)) == "MISS"
    be.b.close()                                # the backend is gone
    time.sleep(1.3)
    r = get(p)
    assert r.status == 200 and r.body == b"still here"
    assert status_of(r) == "STALE"
    # nothing stale for another key: the error goes through
    r = get(p, path="/api/public/never")
    assert r.status == 502


def test_use_stale_http_500(portico, backends):
    be = Counting(backends, body=b"good")
    p = portico(conf(be, "proxy_cache_use_stale http_500;", valid="proxy_cache_valid 200 1s;"))
    assert status_of(get(p)) == "MISS"
    time.sleep(1.3)
    be.status, be.body = 500, b"broken"
    r = get(p)
    assert r.status == 200 and r.body == b"good" and status_of(r) == "STALE"
    # without http_503 listed a 503 goes through
    be.status = 503
    r = get(p)
    assert r.status == 503 and status_of(r) == "EXPIRED"


def test_no_stale_without_use_stale(portico, backends):
    be = Counting(backends, body=b"v1")
    p = portico(conf(be, valid="proxy_cache_valid 200 1s;"))
    get(p)
    be.b.close()
    time.sleep(1.3)
    assert get(p).status == 502


def test_use_stale_updating(portico, backends):
    be = Counting(backends, body=lambda req, n: b"v%d" % n)
    p = portico(conf(be, "proxy_cache_use_stale updating; proxy_cache_lock on;",
                     valid="proxy_cache_valid 200 1s;"))
    assert get(p).body == b"v1"
    time.sleep(1.3)
    be.delay = 1.5
    out = {}

    def slow():
        out["r"] = get(p)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)
    r = get(p)                                  # while the first one refreshes
    assert status_of(r) == "UPDATING" and r.body == b"v1"
    t.join()
    assert status_of(out["r"]) == "EXPIRED" and out["r"].body == b"v2"
    assert be.hits == 2
    r = get(p)
    assert status_of(r) == "HIT" and r.body == b"v2"


def test_cache_lock_one_backend_request(portico, backends):
    be = Counting(backends, body=b"locked", delay=0.6)
    p = portico(conf(be, "proxy_cache_lock on;"))
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        res = list(ex.map(lambda i: get(p, timeout=10), range(10)))
    assert all(r.status == 200 and r.body == b"locked" for r in res)
    assert be.hits == 1
    sts = sorted(status_of(r) for r in res)
    assert sts.count("MISS") == 1 and sts.count("HIT") == 9


def test_cache_lock_timeout(portico, backends):
    be = Counting(backends, body=b"slow", delay=1.2)
    p = portico(conf(be, "proxy_cache_lock on; proxy_cache_lock_timeout 300ms;"))
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        res = list(ex.map(lambda i: (time.sleep(0.1 * i), get(p, timeout=10))[1], range(3)))
    assert all(r.status == 200 for r in res)
    # the waiters gave up after 300ms and went to the backend themselves
    assert be.hits == 3


def test_revalidate(portico, backends):
    def body(req, n):
        return b"rev"
    be = Counting(backends, body=body, headers={"ETag": '"e1"',
                                                "Last-Modified": "Mon, 02 Jan 2023 00:00:00 GMT"})
    orig = be.handle

    def handle(req, c, b):
        if req.header("if-none-match") == '"e1"':
            with be.lock:
                be.hits += 1
            return http_response(304, b"", headers={"ETag": '"e1"'})
        return orig(req, c, b)
    be.b.handler = handle
    p = portico(conf(be, "proxy_cache_revalidate on;", valid="proxy_cache_valid 200 1s;"))
    assert status_of(get(p)) == "MISS"
    time.sleep(1.3)
    r = get(p)
    assert r.status == 200 and r.body == b"rev" and status_of(r) == "REVALIDATED"
    assert be.b.last.header("if-modified-since") == "Mon, 02 Jan 2023 00:00:00 GMT"
    r = get(p)
    assert status_of(r) == "HIT"
    assert be.hits == 2


def test_client_conditionals_not_sent_upstream(portico, backends):
    be = Counting(backends, headers={"ETag": '"abc"'})
    p = portico(conf(be))
    r = get(p, headers={"If-None-Match": '"abc"', "Range": "bytes=0-1"})
    assert r.status == 200 and r.body == b"hello"
    assert be.b.last.header("if-none-match") is None
    assert be.b.last.header("range") is None
    # from the cache: a matching If-None-Match gets a 304
    r = get(p, headers={"If-None-Match": '"abc"'})
    assert r.status == 304 and status_of(r) == "HIT"


def test_large_body_intact(portico, backends):
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    be = Counting(backends, body=big)
    p = portico(conf(be))
    r = get(p, timeout=20)
    assert r.status == 200 and status_of(r) == "MISS" and r.body == big
    r = get(p, timeout=20)
    assert r.status == 200 and status_of(r) == "HIT" and r.body == big
    assert be.hits == 1


def test_chunked_backend_cached(portico, backends):
    def h(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        return None
    be = backends(h)
    p = portico(conf(be))
    r = get(p)
    assert r.body == b"hello world" and status_of(r) == "MISS"
    r = get(p)
    assert r.body == b"hello world" and status_of(r) == "HIT"
    assert r.headers.get("Content-Length") == "11"


def test_truncated_response_not_cached(portico, backends):
    def h(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
        c.close()
        return None
    be = backends(h)
    p = portico(conf(be))
    raw_request(p.port, b"GET /api/public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                timeout=3)
    time.sleep(0.2)
    left = [f for f in glob.glob(p.prefix + "/cache/**", recursive=True) if os.path.isfile(f)]
    assert left == []


def test_survives_reload(portico, backends):
    be = Counting(backends)
    text = conf(be)
    p = portico(text)
    assert status_of(get(p)) == "MISS"
    assert status_of(get(p)) == "HIT"
    p.reload(text)
    time.sleep(0.3)
    assert status_of(get(p)) == "HIT"
    assert be.hits == 1


def test_two_workers_share_the_zone(portico, backends):
    be = Counting(backends)
    # reuseport: one listening socket per worker and the kernel hashes each
    # new connection to one of them, so new connections reach both workers
    # (200 all on one: 2 * 2^-200). A shared socket (EPOLLEXCLUSIVE) tends
    # to wake the same idle worker every time.
    text = conf(be, "add_header X-Pid $pid always;").replace(
        "listen 127.0.0.1:@PORT@;", "listen 127.0.0.1:@PORT@ reuseport;")
    p = portico(text, workers=2)
    workers = set(p.wait_workers(2))
    first = get(p)
    assert status_of(first) == "MISS"
    # every later request is a hit, whichever worker takes it
    pids = {int(first.headers.get("X-Pid"))}
    hits_by = set()
    for _ in range(200):
        r = get(p)
        assert status_of(r) == "HIT"
        hits_by.add(int(r.headers.get("X-Pid")))
        if hits_by == workers:
            break
    pids |= hits_by
    assert pids == workers
    # both workers answered from the entry only one of them stored
    assert hits_by == workers
    assert be.hits == 1


def test_cache_lock_across_workers(portico, backends):
    be = Counting(backends, body=b"locked", delay=0.8)
    p = portico(conf(be, "proxy_cache_lock on;"), workers=2)
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        res = list(ex.map(lambda i: get(p, timeout=10), range(10)))
    assert all(r.status == 200 and r.body == b"locked" for r in res)
    assert be.hits == 1


def test_use_stale_timeout(portico, backends):
    be = Counting(backends, body=b"before")
    p = portico(conf(be, "proxy_cache_use_stale timeout; proxy_read_timeout 300ms;",
                     valid="proxy_cache_valid 200 1s;"))
    assert get(p).body == b"before"
    time.sleep(1.3)
    be.delay = 1.0
    r = get(p)
    assert r.status == 200 and r.body == b"before" and status_of(r) == "STALE"
    # "error" alone does not cover a timeout
    p2 = portico(conf(be, "proxy_cache_use_stale error; proxy_read_timeout 300ms;",
                      valid="proxy_cache_valid 200 1s;"))
    be.delay = 0
    get(p2)
    time.sleep(1.3)
    be.delay = 1.0
    assert get(p2).status == 504


def test_loader_indexes_files_at_start(portico, backends, tmp_path):
    be = Counting(backends)
    p = portico(conf(be))
    assert status_of(get(p)) == "MISS"
    p.stop()
    # a new server on the same directory finds the entry
    be2 = Counting(backends)
    text = conf(be2).replace("@PREFIX@/cache", p.prefix + "/cache")
    q = portico(text)
    time.sleep(0.5)
    # the key ($host is 127.0.0.1 for both) finds the file of the first run
    r = http_get(q.url(path="/api/public/x"))
    assert r.status == 200 and status_of(r) == "HIT"
    assert be2.hits == 0
    assert "1 entries loaded" in q.error_log()


def test_inactive_removes_entries(portico, backends):
    be = Counting(backends)
    p = portico(conf(be, path_extra="").replace("inactive=60m", "inactive=1s"))
    assert status_of(get(p)) == "MISS"
    files = [f for f in glob.glob(p.prefix + "/cache/*/*/*")]
    assert len(files) == 1
    time.sleep(3.5)
    assert not os.path.exists(files[0])
    assert status_of(get(p)) == "MISS"


def test_conf_errors(portico, tmp_path):
    from conftest import conf_test
    rc, out, err, _ = conf_test(tmp_path, """
        events {}
        http { server { listen 127.0.0.1:8080; location / { proxy_cache nope; proxy_pass http://127.0.0.1:1; } } }""")
    assert rc != 0 and '"proxy_cache" zone "nope" is unknown' in err
    rc, out, err, _ = conf_test(tmp_path, """
        events {}
        http { proxy_cache_path @PREFIX@/c levels=3:2 keys_zone=z:10m; }""")
    assert rc != 0 and 'invalid "levels"' in err
    rc, out, err, _ = conf_test(tmp_path, """
        events {}
        http { proxy_cache_path @PREFIX@/c levels=1:2; }""")
    assert rc != 0 and 'must have "keys_zone" parameter' in err
    rc, out, err, _ = conf_test(tmp_path, """
        events {}
        http { proxy_cache_path @PREFIX@/c keys_zone=z:10m bogus=1; }""")
    assert rc != 0 and 'invalid parameter "bogus=1"' in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start workers as nobody")
def test_workers_as_nobody_can_write(portico, backends):
    import pwd
    import shutil
    import tempfile
    be = Counting(backends)
    top = tempfile.mkdtemp(prefix="ptc-")
    os.chmod(top, 0o755)
    try:
        text = "user nobody;\n" + conf(be).replace("@PREFIX@/cache", top + "/c")
        p = portico(text)
        assert status_of(get(p)) == "MISS"
        assert status_of(get(p)) == "HIT"
        assert os.stat(top + "/c").st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_vary_variants(portico, backends):
    def body(req, n):
        return ("enc=%s" % (req.header("accept-encoding") or "-")).encode()
    be = Counting(backends, body=body, headers={"Vary": "Accept-Encoding"})
    p = portico(conf(be))
    r = get(p, headers={"Accept-Encoding": "gzip"})
    assert r.body == b"enc=gzip" and status_of(r) == "MISS"
    r = get(p, headers={"Accept-Encoding": "gzip"})
    assert r.body == b"enc=gzip" and status_of(r) == "HIT"
    # another variant is never answered with the stored one
    r = get(p)
    assert r.body == b"enc=-" and status_of(r) == "MISS"
    r = get(p)
    assert r.body == b"enc=-" and status_of(r) == "HIT"


def test_unbuffered_not_cached(portico, backends):
    # (X-Accel-Buffering: no should do the same once the proxy honours it:
    # it is among the hidden headers, which process_header skips first)
    p2 = portico(conf(Counting(backends), "proxy_buffering off;"))
    assert status_of(get(p2)) == "MISS"
    assert status_of(get(p2)) == "MISS"


def test_http2_hit_and_lock(portico, backends):
    import subprocess
    big = b"z" * (300 * 1024)
    be = Counting(backends, body=big, delay=0.3)
    text = conf(be, "proxy_cache_lock on;").replace(
        "listen 127.0.0.1:@PORT@;", "listen 127.0.0.1:@PORT@; listen 127.0.0.1:@PORT2@ http2;")
    p = portico(text)
    url = "http://127.0.0.1:%d/api/public/h2" % p.ports["PORT2"]

    def fetch(_):
        # one connection each (several streams on one connection after a large
        # proxied body is a separate HTTP/2 matter)
        out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o",
                              "/dev/null", "-w", "|%{size_download}", url],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.decode()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(fetch, range(4)))
    assert all(o.startswith("HTTP/2 200") and o.endswith("|%d" % len(big)) for o in outs), outs
    sts = sorted(o.lower().split("x-cache-status: ")[1].split()[0] for o in outs)
    assert sts == ["hit", "hit", "hit", "miss"]
    assert be.hits == 1
    o = fetch(0)
    assert "x-cache-status: HIT" in o


def test_ranges_from_the_cache(portico, backends):
    be = Counting(backends, body=b"0123456789", headers={"ETag": '"r1"'})
    p = portico(conf(be))
    r = get(p, headers={"Range": "bytes=2-4"})
    # filled with the whole response (the Range is not sent upstream)
    assert be.b.last.header("range") is None
    r = get(p, headers={"Range": "bytes=2-4"})
    assert r.status == 206 and r.body == b"234" and status_of(r) == "HIT"
    assert r.headers.get("Content-Range") == "bytes 2-4/10"
    r = get(p, headers={"Range": "bytes=-3"})
    assert r.status == 206 and r.body == b"789"
    r = get(p, headers={"Range": "bytes=7-"})
    assert r.status == 206 and r.body == b"789"
    r = get(p, headers={"Range": "bytes=20-30"})
    assert r.status == 416 and r.headers.get("Content-Range") == "bytes */10"
    r = get(p, headers={"Range": "bytes=2-4", "If-Range": '"other"'})
    assert r.status == 200 and r.body == b"0123456789"
    r = get(p, headers={"Range": "bytes=2-4", "If-Range": '"r1"'})
    assert r.status == 206 and r.body == b"234"
    assert be.hits == 1


def test_min_uses_methods_convert_head(portico, backends):
    be = Counting(backends, body=lambda req, n: ("%s %d" % (req.method, n)).encode())
    p = portico(conf(be, "proxy_cache_min_uses 2; proxy_cache_methods POST;"
                         " proxy_cache_convert_head off;"))
    assert status_of(get(p)) == "MISS"
    assert status_of(get(p)) == "MISS"          # the second use stores it
    r = get(p)
    assert status_of(r) == "HIT" and r.body == b"GET 2"
    # POST is cacheable here (its own key: the method is in it)
    for _ in range(2):
        get(p, method="POST", body=b"x")
    r = get(p, method="POST", body=b"x")
    assert status_of(r) == "HIT" and r.body == b"POST 4"
    # convert_head off: the backend sees HEAD and nothing is stored
    r = get(p, method="HEAD")
    assert be.b.last.method == "HEAD"
    get(p, method="HEAD")
    assert status_of(get(p, method="HEAD")) == "MISS"


def test_max_size_evicts_least_recent(portico, backends):
    be = Counting(backends, body=b"b" * 3000)
    p = portico(conf(be).replace("max_size=1g", "max_size=7k"))
    for name in ("a", "b", "c"):
        assert status_of(get(p, path="/api/public/" + name)) == "MISS"
        time.sleep(0.05)
    assert status_of(get(p, path="/api/public/a")) == "HIT"   # a is now the most recent
    time.sleep(2.5)                                             # a manager pass
    files = [f for f in glob.glob(p.prefix + "/cache/*/*/*")]
    assert len(files) == 2
    assert status_of(get(p, path="/api/public/b")) == "MISS"   # b was the least recent
    assert status_of(get(p, path="/api/public/a")) == "HIT"


@pytest.mark.parametrize("intercept", [False, True])
def test_use_stale_before_error_page(portico, backends, intercept):
    """A server-wide error_page for 5xx (common in the guides) does not hide
    the stale entry: nginx uses it before error_page."""
    be = Counting(backends, body=b"cached copy")
    text = conf(be, "proxy_cache_use_stale error timeout http_500;"
                    + (" proxy_intercept_errors on;" if intercept else ""),
                valid="proxy_cache_valid 200 1s;")
    text = text.replace("location /nocache/ {",
                        "error_page 500 502 503 504 /50x.html;\n"
                        "                location = /50x.html { return 200 \"sorry\"; }\n"
                        "                location /nocache/ {")
    p = portico(text)
    assert get(p).body == b"cached copy"
    time.sleep(1.3)
    if intercept:
        be.status, be.body = 500, b"backend error"
    else:
        be.b.close()
    r = get(p)
    assert r.status == 200 and r.body == b"cached copy" and status_of(r) == "STALE"
    # no stale entry: the error page
    r = get(p, path="/api/public/none")
    assert r.status in (500, 502) and r.body == b"sorry"


def test_head_error_page_has_no_body(portico, backends):
    be = Counting(backends)
    text = conf(be).replace("location /nocache/ {",
                            "error_page 502 /50x.html;\n"
                            "                location = /50x.html { return 200 \"sorry\"; }\n"
                            "                location /nocache/ {")
    p = portico(text)
    be.b.close()
    out = raw_request(p.port, b"HEAD /api/public/x HTTP/1.1\r\nHost: a\r\n\r\n"
                              b"GET /nocache/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                      timeout=3)
    # the HEAD answer has no body: the next response starts right after it
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 502")
    assert rest.startswith(b"HTTP/1.1 502")


def test_cache_control_stale_extensions(portico, backends):
    """stale-if-error / stale-while-revalidate of Cache-Control permit stale
    answers without proxy_cache_use_stale (nginx 1.11.10)."""
    be = Counting(backends, body=lambda req, n: b"v%d" % n,
                  headers={"Cache-Control": "max-age=1, stale-while-revalidate=30, stale-if-error=30"})
    p = portico(conf(be, "proxy_cache_lock on;", valid=""))
    assert get(p).body == b"v1"
    time.sleep(1.3)
    be.delay = 1.0
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", get(p)))
    t.start()
    time.sleep(0.3)
    r = get(p)
    assert status_of(r) == "UPDATING" and r.body == b"v1"
    t.join()
    assert out["r"].body == b"v2" and status_of(out["r"]) == "EXPIRED"
    be.delay = 0
    time.sleep(1.3)
    be.b.close()
    r = get(p)
    assert r.status == 200 and r.body == b"v2" and status_of(r) == "STALE"


def test_mixed_load_two_workers(portico, backends):
    """Fills, hits, expiries, lock waits and stale answers interleaved over
    two workers: every answer is the right body for its key."""
    import random

    def body(req, n):
        return (req.path * 50).encode()
    be = Counting(backends, body=body)
    p = portico(conf(be, "proxy_cache_lock on; proxy_cache_use_stale updating;",
                     valid="proxy_cache_valid 200 1s;"), workers=2)
    rnd = random.Random(7)
    paths = ["/api/public/k%d" % rnd.randrange(20) for _ in range(300)]

    def one(path):
        r = get(p, path=path, timeout=10)
        return r.status == 200 and r.body == (path * 50).encode()
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        results = list(ex.map(one, paths))
    assert all(results)
    assert be.hits < 300


def test_client_abort_during_fill_releases_the_lock(portico, backends):
    import socket
    big = b"q" * (4 * 1024 * 1024)
    be = Counting(backends, body=big)
    p = portico(conf(be, "proxy_cache_lock on; proxy_buffers 4 4k;"))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /api/public/x HTTP/1.1\r\nHost: a\r\n\r\n")
    s.recv(1024)
    time.sleep(0.3)
    s.close()                                   # gone before the body is complete
    time.sleep(0.5)
    t0 = time.monotonic()
    r = get(p, timeout=20)
    assert r.status == 200 and r.body == big
    assert time.monotonic() - t0 < 4            # no wait for a dead filler's lock
    assert status_of(r) == "MISS"
    assert status_of(get(p, timeout=20)) == "HIT"
    tmp = [f for f in glob.glob(p.prefix + "/cache/**/.*", recursive=True)]
    assert tmp == []


def test_guide_websocket_location_with_cache(portico, ws_echo_backend):
    """The guide's shared location: server-wide proxy_cache, proxy_cache_bypass
    $http_upgrade: WebSocket upgrades pass (BYPASS, never stored)."""
    import asyncio
    import websockets
    p = portico("""
        http {
            map $http_upgrade $connection_upgrade { default upgrade; '' close; }
            proxy_cache_path @PREFIX@/cache levels=1:2 keys_zone=my_cache:10m max_size=100m
                             inactive=60m use_temp_path=off;
            server {
                listen 127.0.0.1:@PORT@;
                proxy_cache my_cache;
                proxy_cache_valid 200 302 10m;
                location / {
                    proxy_pass http://%s;
                    proxy_http_version 1.1;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection 'upgrade';
                    proxy_cache_bypass $http_upgrade;
                }
            }
        }""" % ws_echo_backend.addr)

    async def go():
        for _ in range(2):
            async with websockets.connect("ws://127.0.0.1:%d/chat" % p.port) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
        return True
    assert asyncio.new_event_loop().run_until_complete(go())
    assert len(ws_echo_backend.requests) == 2


def test_damaged_file_is_a_miss(portico, backends):
    be = Counting(backends, body=lambda req, n: b"n%d" % n)
    p = portico(conf(be))
    assert get(p).body == b"n1"
    files = [f for f in glob.glob(p.prefix + "/cache/*/*/*")]
    assert len(files) == 1
    with open(files[0], "r+b") as f:              # same size, garbage head
        f.seek(60)
        f.write(b"\xff" * 8)
    r = get(p)
    assert r.status == 200 and r.body == b"n2"
    assert status_of(get(p)) == "HIT"
    os.unlink(files[0])                             # vanished file
    r = get(p)
    assert r.status == 200 and r.body == b"n3" and status_of(r) == "MISS"
    p.allowed_lines.update(l for l in p.error_log().splitlines() if "[crit]" in l)
