"""Upstream groups: balancers (weighted round robin, least_conn, ip_hash, hash,
consistent hash, random two), backup servers, passive health (max_fails /
fail_timeout), proxy_next_upstream, a POST not replayed, $upstream_addr /
$upstream_status, zone across workers, config errors."""

import collections
import socket
import threading
import time
import http.client

import pytest

from conftest import Backend, conf_test, http_get, http_response, _Close


class Named:
    """A backend answering its name; .mode switches it to slow / fail / close."""

    def __init__(self, backends, name, delay=0.0, held=False):
        self.name = name
        self.delay = delay
        self.mode = "ok"
        self.count = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()    # held=True: answers once set
        if not held:
            self.gate.set()

        def h(req, c, b):
            with self.lock:
                self.count += 1
            self.gate.wait(60)
            if self.delay:
                time.sleep(self.delay)
            if self.mode == "close":
                raise _Close()
            if self.mode == "500":
                return http_response(500, "fail " + self.name)
            return http_response(200, self.name, headers={"X-Backend": self.name})
        self.b = backends(h, name=name)

    @property
    def addr(self):
        return self.b.addr

    def stop(self):
        self.b.close()


def one_by_one_while_held(p, slow, n):
    """n requests, each started once the previous one was answered or is
    being held by `slow` (a Named with held=True): the balancer sees every
    fast request finished and the slow one busy, whatever the machine's
    speed (a fixed delay and stagger left that to the scheduler)."""
    results = []
    ts = []
    for _ in range(n):
        before = slow.count
        t = threading.Thread(target=lambda: results.append(
            http_get(p.url(), timeout=60).body.decode()))
        t.start()
        ts.append(t)
        deadline = time.monotonic() + 20
        while t.is_alive() and slow.count == before and time.monotonic() < deadline:
            time.sleep(0.01)
    slow.gate.set()
    for t in ts:
        t.join(30)
    return collections.Counter(results)


def mk(backends, n, prefix="b"):
    return [Named(backends, "%s%d" % (prefix, i)) for i in range(n)]


def conf(upstream_body, location_extra="", http_extra=""):
    return '''
http {
    %s
    upstream pool {
        %s
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://pool;
            add_header X-UA $upstream_addr always;
            add_header X-US $upstream_status always;
            %s
        }
    }
}''' % (http_extra, upstream_body, location_extra)


class Client:
    """Keep-alive client to Portico (new connection on failure)."""

    def __init__(self, port, source=None):
        self.port = port
        self.source = source
        self.c = None

    def get(self, path="/", method="GET", body=None, headers=None):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=10,
                    source_address=(self.source, 0) if self.source else None)
            try:
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                data = r.read()
                return r.status, data.decode("latin-1"), r
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def names(port, n, path="/"):
    cl = Client(port)
    return [cl.get(path)[1] for _ in range(n)]


def test_weighted_round_robin_exact_and_smooth(portico, backends):
    a, b, c = mk(backends, 3)
    p = portico(conf('''
        server %s weight=3;
        server %s weight=2;
        server %s;''' % (a.addr, b.addr, c.addr)))
    seq = names(p.port, 60)
    cnt = collections.Counter(seq)
    assert cnt == {"b0": 30, "b1": 20, "b2": 10}
    # smooth: the heavy server is interleaved, never three in a row
    assert seq[:6] == ["b0", "b1", "b0", "b2", "b1", "b0"]


def test_weighted_distribution_two_workers_with_zone(portico, backends):
    a, b, c = mk(backends, 3)
    p = portico(conf('''
        zone pool 256k;
        server %s weight=3;
        server %s weight=2;
        server %s;''' % (a.addr, b.addr, c.addr)), workers=2)
    # several connections so that both workers serve
    seq = []
    for i in range(12):
        seq += names(p.port, 10)
    cnt = collections.Counter(seq)
    assert cnt == {"b0": 60, "b1": 40, "b2": 20}, cnt


def test_weighted_distribution_two_workers_without_zone(portico, backends):
    """Without zone each worker balances by itself (as nginx): the totals are
    still close to the weights."""
    a, b = mk(backends, 2)
    p = portico(conf('server %s weight=3; server %s;' % (a.addr, b.addr)), workers=2)
    seq = []
    for i in range(20):
        seq += names(p.port, 8)
    cnt = collections.Counter(seq)
    assert 100 <= cnt["b0"] <= 140 and cnt["b0"] + cnt["b1"] == 160, cnt


def test_least_conn_avoids_slow_backend(portico, backends):
    slow = Named(backends, "slow", held=True)
    fast = Named(backends, "fast")
    p = portico(conf('least_conn; server %s; server %s;' % (slow.addr, fast.addr)))
    cnt = one_by_one_while_held(p, slow, 12)
    # at most the first request (a tie at 0) goes to slow; it stays busy
    assert cnt["slow"] <= 1 and cnt["fast"] >= 11, cnt


def test_round_robin_does_not_avoid_slow_backend(portico, backends):
    """Contrast for the least_conn test: plain round robin alternates."""
    slow = Named(backends, "slow", delay=0.3)
    fast = Named(backends, "fast")
    p = portico(conf('server %s; server %s;' % (slow.addr, fast.addr)))
    cnt = collections.Counter(names(p.port, 6))
    assert cnt == {"slow": 3, "fast": 3}


def test_ip_hash_sticky(portico, backends):
    bs = mk(backends, 3)
    p = portico(conf('ip_hash;' + "".join(' server %s;' % b.addr for b in bs)))
    seen = {}
    for net in range(1, 25):
        src = "127.0.%d.1" % net
        cl = Client(p.port, source=src)
        got = {cl.get()[1] for _ in range(5)}
        assert len(got) == 1, (src, got)
        # another host of the same /24: the same backend
        cl2 = Client(p.port, source="127.0.%d.77" % net)
        assert cl2.get()[1] in got
        seen[src] = got.pop()
    assert len(set(seen.values())) == 3, seen


def test_ip_hash_down_server_keeps_others(portico, backends):
    bs = mk(backends, 3)
    p = portico(conf('ip_hash; server %s; server %s; server %s down;'
                     % (bs[0].addr, bs[1].addr, bs[2].addr)))
    for net in range(1, 20):
        assert Client(p.port, source="127.0.%d.1" % net).get()[1] in ("b0", "b1")


def test_hash_key_sticky(portico, backends):
    bs = mk(backends, 4)
    p = portico(conf('hash $arg_user;' + "".join(' server %s;' % b.addr for b in bs)))
    cl = Client(p.port)
    owners = {}
    for u in range(40):
        got = {cl.get("/?user=u%d" % u)[1] for _ in range(3)}
        assert len(got) == 1
        owners[u] = got.pop()
    assert len(set(owners.values())) >= 3


def test_consistent_hash_remap_ratio(portico, backends):
    """The same keys over 4 servers and over the same 4 + 1: about 1/5 of the
    keys move, and only to the new server."""
    bs = mk(backends, 5)
    p = portico('''
http {
    upstream four { hash $arg_k consistent; %s }
    upstream five { hash $arg_k consistent; %s }
    server {
        listen 127.0.0.1:@PORT@;
        location /4 { proxy_pass http://four; }
        location /5 { proxy_pass http://five; }
    }
}''' % ("".join(' server %s;' % b.addr for b in bs[:4]),
       "".join(' server %s;' % b.addr for b in bs)))
    cl = Client(p.port)
    before = {k: cl.get("/4?k=key%d" % k)[1] for k in range(1000)}
    after = {k: cl.get("/5?k=key%d" % k)[1] for k in range(1000)}
    moved = [k for k in before if before[k] != after[k]]
    assert all(after[k] == "b4" for k in moved), "keys only move to the new server"
    ratio = len(moved) / 1000.0
    assert 0.12 < ratio < 0.28, ratio
    assert len(set(before.values())) == 4


def test_random_two_least_conn(portico, backends):
    slow = Named(backends, "slow", held=True)
    f1 = Named(backends, "f1")
    f2 = Named(backends, "f2")
    p = portico(conf('random two least_conn; server %s; server %s; server %s;'
                     % (slow.addr, f1.addr, f2.addr)))
    cnt = one_by_one_while_held(p, slow, 15)
    # slow can win only while it has no request: once, at most
    assert cnt["slow"] <= 1, cnt
    assert cnt["f1"] + cnt["f2"] >= 14, cnt


def test_backup_takeover_and_return(portico, backends):
    a, b = mk(backends, 2)
    bk = Named(backends, "backup")
    p = portico(conf('server %s max_fails=1 fail_timeout=1s; server %s max_fails=1 fail_timeout=1s;'
                     ' server %s backup;' % (a.addr, b.addr, bk.addr)))
    assert set(names(p.port, 4)) == {"b0", "b1"}
    assert bk.count == 0
    a.mode = b.mode = "close"
    got = names(p.port, 6)
    assert got == ["backup"] * 6
    a.mode = b.mode = "ok"
    time.sleep(1.2)
    got = names(p.port, 6)
    assert "backup" not in got[2:], got
    assert set(got[2:]) == {"b0", "b1"}


def test_max_fails_fail_timeout_probe(portico, backends):
    a, b = mk(backends, 2)
    # fail_timeout 3 s: each batch of requests below must fit in it, even on
    # a loaded machine (the sleeps only ever make the gaps longer)
    p = portico(conf('server %s max_fails=2 fail_timeout=3s; server %s;' % (a.addr, b.addr)))
    a.mode = "close"
    got = names(p.port, 10)
    assert got == ["b1"] * 10               # retried on b, never an error
    tried_a = a.count
    assert tried_a == 2                     # max_fails=2, then skipped
    got = names(p.port, 6)
    assert a.count == tried_a               # within fail_timeout: skipped
    time.sleep(3.1)
    names(p.port, 4)
    assert a.count == tried_a + 1           # one probe after fail_timeout
    a.mode = "ok"
    # back once a probe succeeds (at most one fail_timeout later)
    deadline = time.monotonic() + 20
    back = False
    while not back and time.monotonic() < deadline:
        back = "b0" in names(p.port, 4)
        if not back:
            time.sleep(0.2)
    assert back, "b0 never came back"


def test_next_upstream_http_status_and_upstream_vars(portico, backends):
    a, b = mk(backends, 2)
    a.mode = "500"
    p = portico(conf('server %s; server %s;' % (a.addr, b.addr),
                     'proxy_next_upstream error timeout http_500;'))
    cl = Client(p.port)
    seen = set()
    for _ in range(4):
        st, body, r = cl.get()
        assert st == 200 and body == "b1"
        seen.add((r.getheader("X-UA"), r.getheader("X-US")))
    assert ("%s, %s" % (a.addr, b.addr), "500, 200") in seen


def test_next_upstream_off_gives_backend_status(portico, backends):
    a, b = mk(backends, 2)
    a.mode = "500"
    p = portico(conf('server %s; server %s;' % (a.addr, b.addr), 'proxy_next_upstream off;'))
    got = [Client(p.port).get()[0] for _ in range(4)]
    assert sorted(got) == [200, 200, 500, 500]


def test_post_not_replayed(portico, backends):
    a, b = mk(backends, 2)
    a.mode = "close"
    p = portico(conf('server %s max_fails=0; server %s max_fails=0;' % (a.addr, b.addr)))
    results = []
    for _ in range(4):
        st, body, r = Client(p.port).get(method="POST", body=b"payload",
                                         headers={"Content-Type": "text/plain"})
        results.append(st)
    assert results.count(502) == 2 and results.count(200) == 2, results
    # every POST reached exactly one backend
    assert a.count + b.count == 4
    # GET is retried
    assert {Client(p.port).get()[1] for _ in range(4)} == {"b1"}


def test_post_replayed_with_non_idempotent(portico, backends):
    a, b = mk(backends, 2)
    a.mode = "close"
    p = portico(conf('server %s max_fails=0; server %s max_fails=0;' % (a.addr, b.addr),
                     'proxy_next_upstream error timeout non_idempotent;'))
    for _ in range(4):
        st, body, r = Client(p.port).get(method="POST", body=b"payload")
        assert st == 200 and body == "b1"


def test_next_upstream_tries(portico, backends):
    bs = mk(backends, 3)
    for b in bs:
        b.mode = "500"
    p = portico(conf("".join('server %s; ' % b.addr for b in bs),
                     'proxy_next_upstream http_500; proxy_next_upstream_tries 2;'))
    st, body, r = Client(p.port).get()
    assert st == 500
    assert len(r.getheader("X-US").split(", ")) == 2


def test_all_down_quick_502_and_log(portico, backends):
    a, b = mk(backends, 2)
    a.stop()
    b.stop()
    p = portico(conf('server %s; server %s;' % (a.addr, b.addr)))
    t0 = time.monotonic()
    st, body, r = Client(p.port).get()
    assert st == 502
    assert time.monotonic() - t0 < 10      # refused at once, no timeout
    st, body, r = Client(p.port).get()
    assert st == 502
    log = p.error_log()
    assert "connect() failed" in log or "Connection refused" in log
    assert a.addr in log and b.addr in log
    assert "no live upstreams" in log


def test_zero_errors_while_backend_killed_under_load(portico, backends):
    bs = mk(backends, 3)
    p = portico(conf("".join('server %s max_fails=1 fail_timeout=5s; ' % b.addr for b in bs),
                     'proxy_next_upstream error timeout; proxy_connect_timeout 1s;'), workers=2)
    errors = []
    counts = collections.Counter()
    stop = threading.Event()

    def load():
        cl = Client(p.port)
        while not stop.is_set():
            try:
                st, body, r = cl.get()
                if st != 200:
                    errors.append(st)
                else:
                    counts[body] += 1
            except Exception as ex:  # noqa
                errors.append(repr(ex))
    def served_total():
        return sum(counts.values()) + len(errors)

    def wait_total(n, timeout=30.0):
        deadline = time.monotonic() + timeout
        while served_total() < n and time.monotonic() < deadline:
            time.sleep(0.02)
    ts = [threading.Thread(target=load) for _ in range(4)]
    for t in ts:
        t.start()
    # counted in requests, not seconds: a loaded machine serves fewer
    wait_total(40)
    bs[1].stop()
    wait_total(served_total() + 60)
    stop.set()
    for t in ts:
        t.join()
    assert errors == [], errors[:5]
    assert counts["b0"] > 20 and counts["b2"] > 20, counts


@pytest.mark.parametrize("body,msg", [
    ("", "no servers are inside upstream"),
    ("least_conn foo; server 127.0.0.1:1;", 'invalid number of arguments in "least_conn"'),
    ("hash $uri ring; server 127.0.0.1:1;", 'invalid parameter "ring"'),
    ("random three; server 127.0.0.1:1;", 'invalid parameter "three"'),
    ("server 127.0.0.1:1 weight=0;", 'invalid parameter "weight=0"'),
    ("server 127.0.0.1:1 bogus=1;", 'invalid parameter "bogus=1"'),
    ("server no-such-host.invalid:80;", "host not found in upstream \"no-such-host.invalid:80\""),
    ("ip_hash; server 127.0.0.1:1; server 127.0.0.1:2 backup;", "backup"),
])
def test_config_errors(tmp_path, body, msg):
    text = '''
events { }
http {
    upstream pool {
        %s
    }
    server { listen 127.0.0.1:1; location / { proxy_pass http://pool; } }
}
''' % body
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc != 0
    assert msg in err, err
    assert "portico.conf:" in err, err


KA_LOC = 'proxy_http_version 1.1; proxy_set_header Connection "";'


def test_keepalive_pool_reuses_connections(portico, backends):
    a, b = mk(backends, 2)
    p = portico(conf('server %s; server %s; keepalive 4;' % (a.addr, b.addr), KA_LOC))
    cl = Client(p.port)
    got = collections.Counter(cl.get()[1] for _ in range(40))
    assert got == {"b0": 20, "b1": 20}
    assert a.b.connections <= 2 and b.b.connections <= 2, (a.b.connections, b.b.connections)


def test_keepalive_backend_closed_idle_connection_post_ok(portico, backends):
    """The backend closes each kept-alive connection shortly after answering:
    the pool notices, and a POST (which may not be retried once sent) never
    goes out on such a connection."""
    def h(req, c, bk):
        c.sendall(http_response(200, "ok:" + req.method))
        time.sleep(0.05)
        raise _Close()
    be = backends(h, name="closer")
    p = portico(conf('server %s; keepalive 8;' % be.addr, KA_LOC))
    cl = Client(p.port)
    for i in range(10):
        st, body, r = cl.get(method="POST" if i % 2 else "GET", body=b"x" * 10)
        assert st == 200, (i, st, body)
        time.sleep(0.15)
    assert "upstream prematurely closed" not in p.error_log()


def test_zone_state_survives_reload(portico, backends):
    a, b, c = mk(backends, 3)
    text = conf('zone pool 256k; server %s; server %s;' % (a.addr, b.addr))
    text = text.replace("location / {", "location /api/ { api write=on; }\n        location / {")
    p = portico(text, workers=2)
    st = http_get(p.url(path="/api/upstreams/pool/servers"), method="POST",
                  body=('{"server": "%s"}' % c.addr).encode()).status
    assert st == 201
    assert set(names(p.port, 9)) == {"b0", "b1", "b2"}
    p.reload(text)
    time.sleep(0.8)
    # same servers in the config: the zone's state (with the added server) is kept
    assert set(names(p.port, 9)) == {"b0", "b1", "b2"}


def test_next_upstream_timeout_bounds_retries(portico, backends):
    bs = [Named(backends, "s%d" % i, delay=6.0) for i in range(4)]
    p = portico(conf("".join('server %s max_fails=0; ' % b.addr for b in bs),
                     'proxy_read_timeout 1s; proxy_next_upstream error timeout;'
                     ' proxy_next_upstream_timeout 1500ms;'))
    t0 = time.monotonic()
    st, body, r = Client(p.port).get()
    took = time.monotonic() - t0
    assert st == 504
    # the first try times out at 1 s, the second one starts before 1.5 s and
    # is the last (it ends at 2 s): two tries, not four (0.5 s margins both
    # ways for a loaded machine)
    assert len(r.getheader("X-US").split(", ")) == 2, r.getheader("X-US")
    assert took < 5.5, took                # not a backend's 6 s answer
