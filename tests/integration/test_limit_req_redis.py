"""limit_req zones shared through Redis (`limit_req_zone ... sync` with
`limit_req_redis`, src/modules/limit_req.c and limit_req_redis.c).

Every test starts its own redis-server (no persistence), on a Unix socket in
the test's directory or on a free loopback port, and stops it by PID. Two
Portico instances are separate masters with separate shared memory: only
Redis can make them share a budget.

Rates are 1r/m (a request leaks out of the bucket after 60 s), so nothing
leaks during a test however slow the machine; the Redis timeout is large for
the same reason, except in the test that wants it to fire. limit_req_status
is 429, so a 5xx would be a fault, never a limit."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import free_port, http_get

HTML = {"html/index.html": "ok\n"}

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


def resp_command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Redis:
    """One redis-server process; `call` speaks RESP over a fresh socket."""

    def __init__(self, tmp_path, unix=True, port=None, extra=()):
        self.dir = str(tmp_path)
        self.unix = unix
        self.sock = os.path.join(self.dir, "redis.sock") if unix else None
        self.port = port or (None if unix else free_port())
        self.extra = list(extra)
        self.proc = None
        self.password = None
        if "--requirepass" in self.extra:
            self.password = self.extra[self.extra.index("--requirepass") + 1]

    @property
    def address(self):
        return "unix:%s" % self.sock if self.unix else "127.0.0.1:%d" % self.port

    def start(self):
        args = [REDIS, "--save", "", "--appendonly", "no", "--dir", self.dir]
        if self.unix:
            args += ["--port", "0", "--unixsocket", self.sock]
        else:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.call("PING") == "PONG":
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s" % self.proc.returncode)
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def _connect(self):
        if self.unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(self.sock)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return s

    def call(self, *args, db=0):
        s = self._connect()
        try:
            pre = b""
            n = 0
            if self.password:
                pre += resp_command("AUTH", self.password)
                n += 1
            if db:
                pre += resp_command("SELECT", db)
                n += 1
            s.sendall(pre + resp_command(*args))
            f = s.makefile("rb")
            for _ in range(n):
                _read_reply(f)
            return _read_reply(f)
        finally:
            s.close()


def _read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        return RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise OSError("bad reply %r" % line)


@pytest.fixture
def redis(tmp_path):
    servers = []

    def start(**kw):
        d = tmp_path / ("redis%d" % len(servers))
        d.mkdir()
        r = Redis(d, **kw).start()
        servers.append(r)
        return r

    yield start
    for r in servers:
        r.stop()


def conf(address, params="timeout=10s", zone_args="", limit_args="", extra=""):
    return """
        http {
            log_format st '$arg_k $status $limit_req_status';
            access_log logs/access.log st;
            limit_req_redis %s %s;
            limit_req_zone $arg_k zone=shared:1m rate=1r/m sync;
            %s
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                limit_req_status 429;
                location / { limit_req zone=shared %s; %s }
            }
        }""" % (address, params, zone_args, limit_args, extra)


def get(p, key):
    return http_get(p.url(path="/?k=" + key), timeout=30).status


def wait_log(p, pattern, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, p.error_log())
        if m:
            return m
        time.sleep(0.05)
    return None


def test_two_instances_share_one_budget(portico, redis):
    r = redis()
    a = portico(conf(r.address), workers=2, files=HTML)
    b = portico(conf(r.address), workers=2, files=HTML)
    # burst 0: the first request of a key passes, wherever it lands; the
    # others are over the budget on both instances (each has two workers, so
    # four connections to Redis share the key)
    got = [get(a, "k1"), get(b, "k1"), get(a, "k1"), get(b, "k1"), get(b, "k1"), get(a, "k1")]
    assert got == [200, 429, 429, 429, 429, 429], got
    # keys are separate: a new key passes once, first on b this time
    assert [get(b, "k2"), get(a, "k2"), get(b, "k2")] == [200, 429, 429]
    # the buckets live in Redis, under the default prefix and the zone name
    e, last = r.call("HMGET", "portico:limit_req:shared:k1", "e", "l")
    assert e == "0" and int(last) > 0
    ttl = r.call("PTTL", "portico:limit_req:shared:k1")
    assert 0 < ttl <= 63500, ttl       # drained after (0 + 1000) / 16 s, plus 1 s
    # the local zones never saw k1 pass twice: their own shm would have
    # let the first request on each instance through
    assert re.search(r'limiting requests, excess: (0\.9\d\d|1\.000) by zone "shared"', b.error_log())
    assert "redis" not in a.error_log() and "redis" not in b.error_log()


def test_burst_nodelay_across_instances(portico, redis):
    r = redis(unix=False)
    a = portico(conf(r.address, limit_args="burst=2 nodelay"), files=HTML)
    b = portico(conf(r.address, limit_args="burst=2 nodelay"), files=HTML)
    got = [get(p, "x") for p in (a, b, a, b, a, b)]
    # 1 + burst requests pass across the two instances, then all are over
    assert got == [200, 200, 200, 429, 429, 429], got


def test_delay_from_redis_excess(portico, redis):
    # no nodelay: the second request waits (excess 1000 at 2r/s: 0.5 s);
    # only a lower bound is asserted (a loaded machine is slower, never faster)
    r = redis()
    text = conf(r.address, limit_args="burst=5").replace("rate=1r/m", "rate=2r/s")
    a = portico(text, files=HTML)
    b = portico(text, files=HTML)
    assert get(a, "d") == 200
    t0 = time.monotonic()
    assert get(b, "d") == 200
    assert time.monotonic() - t0 >= 0.3
    assert wait_log(b, r'delaying request, excess: 0\.\d{3}, by zone "shared"')
    deadline = time.monotonic() + 10
    while "d 200 DELAYED" not in b.access_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "d 200 DELAYED" in b.access_log(), b.access_log()


def test_redis_killed_then_restarted(portico, redis):
    r = redis(unix=False)
    p = portico(conf(r.address), files=HTML)
    assert [get(p, "before"), get(p, "before")] == [200, 429]

    r.stop()
    # Redis is gone: requests are still answered, limited by the local zone
    # (burst 0: the first of a key passes, the next is over), never a 5xx
    got = [get(p, "down") for _ in range(4)]
    assert got == [200, 429, 429, 429], got
    assert get(p, "down2") == 200
    m = wait_log(p, r"\[error\] .*redis 127\.0\.0\.1:%d .*use local limits" % r.port)
    assert m, p.error_log()[-2000:]
    # once per change of state, not per request
    assert len(re.findall(r"redis 127\.0\.0\.1:\d+ .*use local limits", p.error_log())) == 1

    # back on the same port: after the reconnection back-off (at most 2 s)
    # a request reconnects, and the keys are shared again
    r.start()
    deadline = time.monotonic() + 20
    n = 0
    while time.monotonic() < deadline:
        assert get(p, "probe%d" % n) in (200, 429)
        if r.call("EXISTS", "portico:limit_req:shared:probe%d" % n) == 1:
            break
        n += 1
        time.sleep(0.2)
    else:
        pytest.fail("Redis never used again:\n" + p.error_log()[-2000:])
    assert wait_log(p, r"\[notice\] .*redis 127\.0\.0\.1:%d answers again" % r.port)
    # state set in Redis by someone else is honoured: the bucket of "other" is
    # full (excess 0 stamped now), so its first request here is already over
    now_ms = int(r.call("TIME")[0]) * 1000
    r.call("HSET", "portico:limit_req:shared:other", "e", "0", "l", str(now_ms))
    assert get(p, "other") == 429


def test_redis_stalled_times_out_to_local(portico, redis):
    r = redis()
    p = portico(conf(r.address, params="timeout=300ms"), files=HTML)
    assert get(p, "s") == 200
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        # the command waits 300 ms, then the request is limited locally
        assert get(p, "stall") == 200
        assert get(p, "stall") == 429
        m = wait_log(p, r"\[error\] .*redis unix:\S+ (connection )?timed out; .*use local limits")
        assert m, p.error_log()[-2000:]
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 20
    n = 0
    while not wait_log(p, r"answers again", timeout=0.2) and time.monotonic() < deadline:
        get(p, "after%d" % n)
        n += 1
    assert wait_log(p, r"answers again", timeout=0.1), p.error_log()[-2000:]


def test_script_flushed_is_sent_again(portico, redis):
    r = redis()
    p = portico(conf(r.address), files=HTML)
    assert get(p, "f") == 200
    assert r.call("SCRIPT", "FLUSH") == "OK"
    # EVALSHA answers NOSCRIPT: the script itself goes (EVAL), the bucket is
    # still the one in Redis
    assert get(p, "f") == 429
    stats = r.call("INFO", "commandstats")
    assert re.search(r"cmdstat_eval:calls=[1-9]", stats), stats
    assert "redis" not in p.error_log()


def test_password_db_and_prefix(portico, redis):
    r = redis(extra=["--requirepass", "s3cret"])
    p = portico(conf(r.address, params="timeout=10s password=s3cret db=3 prefix=t1:"),
                files=HTML)
    assert [get(p, "pw"), get(p, "pw")] == [200, 429]
    assert r.call("EXISTS", "t1:shared:pw", db=3) == 1
    assert r.call("EXISTS", "t1:shared:pw") == 0


def test_wrong_password_is_local_and_logged_once(portico, redis):
    r = redis(extra=["--requirepass", "s3cret"])
    p = portico(conf(r.address, params="timeout=10s password=hunter2x"), files=HTML)
    assert [get(p, "w"), get(p, "w"), get(p, "w2")] == [200, 429, 200]
    assert wait_log(p, r"\[error\] .*redis unix:\S+ refused AUTH: WRONGPASS")
    assert len(re.findall(r"refused AUTH", p.error_log())) == 1
    assert "hunter2x" not in p.error_log()


def test_local_and_sync_limits_together(portico, redis):
    # a local zone (burst 1) and the sync zone (burst 5) on one location: the
    # local one rejects the third request, and Redis does not account it
    r = redis()
    p = portico(conf(r.address, limit_args="burst=5 nodelay",
                     zone_args="limit_req_zone $arg_k zone=local:1m rate=1r/m;",
                     extra="limit_req zone=local burst=1 nodelay;"), files=HTML)
    assert [get(p, "m") for _ in range(4)] == [200, 200, 429, 429]
    e = int(r.call("HGET", "portico:limit_req:shared:m", "e"))
    assert 1000 - 100 <= e <= 1000, e     # two requests accounted: excess ~1.000


def test_config(tmp_path):
    from conftest import conf_test
    cases = [
        ("limit_req_redis 127.0.0.1:notaport;", "invalid port"),
        ("limit_req_redis 127.0.0.1 timeout=0;", 'invalid parameter "timeout=0"'),
        ("limit_req_redis 127.0.0.1 bogus=1;", 'invalid parameter "bogus=1"'),
        ("limit_req_redis 127.0.0.1 db=x;", 'invalid parameter "db=x"'),
        ("limit_req_redis 127.0.0.1; limit_req_redis 127.0.0.2;",
         '"limit_req_redis" directive is duplicate'),
        ("server { limit_req_redis 127.0.0.1; }", '"limit_req_redis" directive is not allowed'),
    ]
    for i, (body, msg) in enumerate(cases):
        d = tmp_path / ("c%d" % i)
        rc, out, err, _ = conf_test(d, "events {} http { %s }" % body)
        assert rc != 0 and msg in err, (body, err)
    # a password is never echoed back in a message
    rc, out, err, _ = conf_test(tmp_path / "pw", "events {} http { limit_req_redis "
                                "127.0.0.1 password= ; }")
    assert rc != 0 and 'invalid parameter "password=' in err
    # sync with no Redis: accepted, limits stay local, and -t says so
    rc, out, err, _ = conf_test(tmp_path / "w", """events {} http {
        limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s sync; }""")
    assert rc == 0 and 'limit_req zone "one" is "sync" but there is no "limit_req_redis"' in err
    rc, out, err, _ = conf_test(tmp_path / "ok", """events {} http {
        limit_req_redis unix:/run/redis.sock timeout=50ms prefix=x: password=p db=2;
        limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s sync; }""")
    assert rc == 0 and "limit_req_redis" not in err, err


def test_client_leaves_while_redis_decides(portico, redis):
    # Redis stalled with a long timeout: the request waits suspended; the
    # client goes away (499 in the access log), then Redis answers late and
    # the reply is dropped; the worker goes on serving
    r = redis()
    p = portico(conf(r.address, params="timeout=30s"), files=HTML)
    assert get(p, "warm") == 200
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"GET /?k=gone HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        s.close()
        deadline = time.monotonic() + 20
        while "gone 499" not in p.access_log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "gone 499" in p.access_log(), p.access_log()
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    # the late reply (accounting "gone" in Redis) reaches nobody
    assert [get(p, "next"), get(p, "next")] == [200, 429]
    assert r.call("EXISTS", "portico:limit_req:shared:gone") == 1
    assert "redis" not in p.error_log()


def test_reload_keeps_sharing(portico, redis):
    # new workers after a reload open their own connections; the buckets are
    # in Redis, so a key limited before the reload is still limited after it
    r = redis()
    p = portico(conf(r.address), workers=2, files=HTML)
    assert [get(p, "rl"), get(p, "rl")] == [200, 429]
    old = set(p.workers())
    p.reload(conf(r.address, limit_args="burst=1 nodelay"))
    # old workers may accept for a moment after the new ones are up: wait
    # until they are gone, so every request below sees the new burst
    deadline = time.monotonic() + 30
    while old & set(p.workers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not old & set(p.workers())
    # burst 1 now: the bucket still holds the request from before the reload
    # (a request sees excess ~1.000, within the burst), then it is full
    assert [get(p, "rl"), get(p, "rl")] == [200, 429]


def test_http2_streams_share_the_redis_bucket(portico, redis):
    # over HTTP/2 each stream is a request waiting for Redis on its own; four
    # streams of one key on one connection, plus one on another instance:
    # exactly one of the five passes
    if shutil.which("nghttp") is None:
        pytest.skip("nghttp is not installed")
    r = redis()
    text = conf(r.address).replace("listen 127.0.0.1:@PORT@;",
                                   "listen 127.0.0.1:@PORT@; http2 on;")
    a = portico(text, files=HTML)
    b = portico(text, files=HTML)
    cp = subprocess.run(["nghttp", "-nv"] + [a.url(path="/?k=h2&i=%d" % i) for i in range(4)],
                        capture_output=True, timeout=30)
    out = cp.stdout.decode("latin-1")
    statuses = sorted(re.findall(r":status: (\d+)", out))
    assert statuses == ["200", "429", "429", "429"], out[-2000:]
    assert get(b, "h2") == 429
