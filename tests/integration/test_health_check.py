"""Active health checks: health_check in an upstream block with a zone, match
blocks, one prober per group across workers (with takeover when that worker
dies), peers taken out and brought back, state changes in the error log."""

import collections
import os
import re
import signal
import threading
import time

import pytest

from conftest import conf_test, http_response
from test_upstream import Client


class HcBackend:
    """Answers its name; /health answers per .health ('ok', '500', 'badbody', 'close')."""

    def __init__(self, backends, name):
        self.name = name
        self.health = "ok"
        self.checks = 0
        self.requests = 0
        self.lock = threading.Lock()

        def h(req, c, b):
            if req.path == "/health":
                with self.lock:
                    self.checks += 1
                if self.health == "500":
                    return http_response(500, "sick")
                if self.health == "badbody":
                    return http_response(200, "maintenance", headers={"X-Status": "up"})
                if self.health == "close":
                    from conftest import _Close
                    raise _Close()
                return http_response(200, "healthy " + self.name, headers={"X-Status": "up"})
            with self.lock:
                self.requests += 1
            return http_response(200, self.name)
        self.b = backends(h, name=name)

    @property
    def addr(self):
        return self.b.addr


def conf(servers, hc, method="", extra_http=""):
    return '''
http {
    %s
    upstream pool {
        zone pool 256k;
        %s
        %s
        health_check %s;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_pass http://pool; }
    }
}''' % (extra_http, method, "".join("server %s; " % s for s in servers), hc)


def wait_for(pred, timeout=20.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def served(p, n=12):
    cl = Client(p.port)
    return collections.Counter(cl.get()[1] for _ in range(n))


def served_until(p, want, limit=300):
    """Requests until every name in `want` has answered (a random balancer
    may leave one out of any fixed number of requests); at most `limit`."""
    cl = Client(p.port)
    got = collections.Counter()
    for _ in range(limit):
        got[cl.get()[1]] += 1
        if set(want) <= set(got):
            break
    return got


@pytest.mark.parametrize("method", ["", "least_conn;", "random two;"])
def test_unhealthy_peer_out_and_back(portico, backends, method):
    bs = [HcBackend(backends, "b%d" % i) for i in range(3)]
    p = portico(conf([b.addr for b in bs], "interval=300ms fails=2 passes=2 uri=/health", method))
    assert wait_for(lambda: all(b.checks >= 1 for b in bs))
    # every peer serves (with "random two" any fixed count can miss one)
    assert set(served_until(p, {"b0", "b1", "b2"})) == {"b0", "b1", "b2"}
    bs[1].health = "500"
    assert wait_for(lambda: "is unhealthy" in p.error_log())
    log = p.error_log()
    assert re.search(r"\[warn\].*peer %s in upstream \"pool\" is unhealthy" % re.escape(bs[1].addr), log)
    before = bs[1].requests
    got = served(p, 30)
    assert set(got) == {"b0", "b2"}, got
    assert bs[1].requests == before
    bs[1].health = "ok"
    assert wait_for(lambda: "is healthy again" in p.error_log())
    assert re.search(r"\[notice\].*peer %s in upstream \"pool\" is healthy again"
                     % re.escape(bs[1].addr), p.error_log())
    assert "b1" in served_until(p, {"b1"})


def test_match_block(portico, backends):
    bs = [HcBackend(backends, "b%d" % i) for i in range(2)]
    p = portico(conf([b.addr for b in bs], "interval=300ms uri=/health match=alive",
                     extra_http='match alive { status 200; header X-Status = up; '
                                'body ~ "^healthy"; }'))
    assert wait_for(lambda: all(b.checks >= 2 for b in bs))
    assert "unhealthy" not in p.error_log()
    bs[0].health = "badbody"        # 200, but the body does not match
    assert wait_for(lambda: "is unhealthy" in p.error_log())
    assert "body does not match" in p.error_log()
    assert set(served(p, 10)) == {"b1"}


def test_connection_failure_is_unhealthy(portico, backends):
    bs = [HcBackend(backends, "b%d" % i) for i in range(2)]
    p = portico(conf([b.addr for b in bs], "interval=300ms uri=/health"))
    bs[0].health = "close"
    assert wait_for(lambda: "is unhealthy" in p.error_log())
    assert set(served(p, 10)) == {"b1"}


def test_one_prober_across_workers(portico, backends):
    bs = [HcBackend(backends, "b%d" % i) for i in range(2)]
    p = portico(conf([b.addr for b in bs], "interval=250ms uri=/health"), workers=4)
    p.wait_workers(4)
    assert wait_for(lambda: bs[0].checks >= 2)
    c0, t0 = bs[0].checks, time.monotonic()
    time.sleep(2.5)
    probes = bs[0].checks - c0
    elapsed = time.monotonic() - t0
    # one prober: one check per 250 ms at most (fewer when a loaded machine
    # runs its timer late); four probers would make four times as many
    assert 2 <= probes <= elapsed / 0.25 * 1.5 + 2, (probes, elapsed)
    owners = set(re.findall(r"worker (\d+) probes upstream \"pool\"", p.error_log()))
    assert len(owners) == 1, owners


def test_prober_takeover_when_worker_dies(portico, backends):
    bs = [HcBackend(backends, "b%d" % i) for i in range(2)]
    p = portico(conf([b.addr for b in bs], "interval=250ms uri=/health"), workers=2)
    assert wait_for(lambda: re.search(r"worker (\d+) probes upstream", p.error_log()))
    owner = int(re.search(r"worker (\d+) probes upstream", p.error_log()).group(1))
    os.kill(owner, signal.SIGKILL)
    assert wait_for(lambda: len(set(re.findall(r"worker (\d+) probes upstream",
                                               p.error_log()))) >= 2, timeout=10)
    c = bs[0].checks
    assert wait_for(lambda: bs[0].checks - c >= 2)
    p.allow_alert = True


def test_slow_start_after_recovery(portico, backends):
    bs = [HcBackend(backends, "b%d" % i) for i in range(2)]
    p = portico(conf(["%s slow_start=3s" % bs[0].addr, bs[1].addr],
                     "interval=200ms uri=/health", "least_conn;"))
    bs[0].health = "500"
    assert wait_for(lambda: "is unhealthy" in p.error_log())
    bs[0].health = "ok"
    assert wait_for(lambda: "is healthy again" in p.error_log())
    got = served(p, 20)
    # still ramping: the recovered peer gets a small share at first
    assert got["b0"] < got["b1"], got


@pytest.mark.parametrize("body,msg", [
    ("server 127.0.0.1:1; health_check;", 'health check requires a "zone"'),
    ("zone z 128k; server 127.0.0.1:1; health_check bogus=1;", 'invalid parameter "bogus=1"'),
    ("zone z 128k; server 127.0.0.1:1; health_check match=none;", 'match "none" not found'),
    ("zone z 128k; server 127.0.0.1:1; health_check interval=0;", 'invalid parameter "interval=0"'),
])
def test_config_errors(tmp_path, body, msg):
    text = '''
events { }
http {
    upstream pool { %s }
    server { listen 127.0.0.1:1; location / { proxy_pass http://pool; } }
}
''' % body
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc != 0
    assert msg in err, err
    assert "portico.conf:" in err


def test_port_parameter_probes_another_port(portico, backends):
    app = HcBackend(backends, "app")
    side = HcBackend(backends, "side")     # its /health answers for app
    port = side.addr.rsplit(":", 1)[1]
    p = portico(conf([app.addr], "interval=200ms uri=/health port=%s" % port))
    assert wait_for(lambda: side.checks >= 2)
    assert app.checks == 0
    side.health = "500"
    assert wait_for(lambda: "is unhealthy" in p.error_log())
    st, body, r = Client(p.port).get()
    assert st == 502
    assert "no live upstreams" in p.error_log()
