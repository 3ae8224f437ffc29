"""DNS re-resolution: `server NAME resolve` with `resolver` pointing at a tiny
DNS server run by the test on loopback, whose answers change under a running
Portico: peers are added and removed without a reload, a failing resolver
keeps the last addresses (and says so in the error log)."""

import collections
import http.server
import socket
import socketserver
import struct
import threading
import time

import pytest

from conftest import conf_test, free_port
from test_upstream import Client


class DnsServer:
    """A UDP DNS server: .answers[name] = [ip, ...]; .mode = 'ok'|'servfail'|'drop'."""

    def __init__(self, ttl=1):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.answers = {}
        self.ttl = ttl
        self.mode = "ok"
        self.queries = []
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                self._answer(data, addr)
            except Exception:  # noqa: malformed query: ignore
                pass

    def _answer(self, data, addr):
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        off = 12
        labels = []
        while data[off]:
            ln = data[off]
            labels.append(data[off + 1:off + 1 + ln].decode())
            off += 1 + ln
        qname = ".".join(labels).lower()
        qtype, qclass = struct.unpack("!HH", data[off + 1:off + 5])
        question = data[12:off + 5]
        self.queries.append((qname, qtype))
        if self.mode == "drop":
            return
        if self.mode == "servfail":
            self.sock.sendto(struct.pack("!HHHHHH", qid, 0x8182, 1, 0, 0, 0) + question, addr)
            return
        ips = self.answers.get(qname)
        if ips is None:
            self.sock.sendto(struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question, addr)
            return
        rrs = b""
        n = 0
        if qtype == 1:
            for ip in ips:
                rrs += struct.pack("!HHHIH", 0xc00c, 1, 1, self.ttl, 4) + socket.inet_aton(ip)
                n += 1
        self.sock.sendto(struct.pack("!HHHHHH", qid, 0x8180, 1, n, 0, 0) + question + rrs, addr)

    def close(self):
        self._stop.set()
        self.sock.close()
        self.t.join(2)


class IpBackend:
    """An HTTP backend on ip:port answering ip."""

    def __init__(self, ip, port):
        name = ip

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.srv = S((ip, port), H)
        self.t = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.1},
                                  daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def dns():
    d = DnsServer()
    yield d
    d.close()


@pytest.fixture
def ipbackends():
    made = []
    port = free_port("127.0.0.2")

    def mk(ip):
        b = IpBackend(ip, port)
        made.append(b)
        return b
    mk.port = port
    yield mk
    for b in made:
        b.close()


def conf(dns_port, port, valid="valid=1s", extra_server=""):
    return '''
http {
    resolver 127.0.0.1:%d %s ipv6=off;
    resolver_timeout 1s;
    upstream app {
        zone app 256k;
        server app.test:%d resolve;
        %s
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_pass http://app; }
    }
}''' % (dns_port, valid, port, extra_server)


def wait_for(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def served(p, n=12):
    cl = Client(p.port)
    out = collections.Counter()
    for _ in range(n):
        st, body, r = cl.get()
        out[body if st == 200 else st] += 1
    return out


def test_answers_change_under_running_proxy(portico, dns, ipbackends):
    for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        ipbackends(ip)
    dns.answers["app.test"] = ["127.0.0.2", "127.0.0.3"]
    p = portico(conf(dns.port, ipbackends.port), workers=2)
    assert wait_for(lambda: set(served(p, 6)) == {"127.0.0.2", "127.0.0.3"})
    dns.answers["app.test"] = ["127.0.0.3", "127.0.0.4"]
    assert wait_for(lambda: set(served(p, 8)) == {"127.0.0.3", "127.0.0.4"})
    log = p.error_log()
    assert "127.0.0.4:%d added" % ipbackends.port in log
    assert "127.0.0.2:%d removed" % ipbackends.port in log
    # a single worker resolves: queries arrive about once per valid= period
    n0 = len(dns.queries)
    time.sleep(2.0)
    assert len(dns.queries) - n0 <= 4


def test_failure_keeps_last_addresses(portico, dns, ipbackends):
    ipbackends("127.0.0.2")
    dns.answers["app.test"] = ["127.0.0.2"]
    p = portico(conf(dns.port, ipbackends.port))
    assert wait_for(lambda: set(served(p, 3)) == {"127.0.0.2"})
    dns.mode = "servfail"
    assert wait_for(lambda: "could not resolve app.test" in p.error_log())
    assert set(served(p, 6)) == {"127.0.0.2"}
    dns.mode = "drop"
    assert wait_for(lambda: "timed out" in p.error_log())
    assert set(served(p, 6)) == {"127.0.0.2"}
    assert "keeping the last known addresses" in p.error_log()


def test_in_flight_request_survives_removal(portico, dns, ipbackends):
    ipbackends("127.0.0.2")
    ipbackends("127.0.0.3")
    dns.answers["app.test"] = ["127.0.0.2"]
    p = portico(conf(dns.port, ipbackends.port))
    assert wait_for(lambda: set(served(p, 3)) == {"127.0.0.2"})
    dns.answers["app.test"] = ["127.0.0.3"]
    assert wait_for(lambda: set(served(p, 3)) == {"127.0.0.3"})


def test_static_and_resolved_servers(portico, dns, ipbackends):
    ipbackends("127.0.0.2")
    ipbackends("127.0.0.5")
    dns.answers["app.test"] = ["127.0.0.2"]
    p = portico(conf(dns.port, ipbackends.port,
                     extra_server="server 127.0.0.5:%d;" % ipbackends.port))
    assert wait_for(lambda: set(served(p, 6)) == {"127.0.0.2", "127.0.0.5"})


@pytest.mark.parametrize("text,msg", [
    ("resolver 127.0.0.1; upstream u { server app.test:80 resolve; }",
     'requires a "zone"'),
    ("upstream u { zone u 128k; server app.test:80 resolve; }", "no resolver defined"),
    ("upstream u { zone u 128k; server no-such-host.invalid:80; }", "host not found"),
])
def test_config_errors(tmp_path, text, msg):
    rc, out, err, path = conf_test(tmp_path, '''
events { }
http {
    %s
    server { listen 127.0.0.1:1; location / { proxy_pass http://u; } }
}''' % text)
    assert rc != 0
    assert msg in err, err


def test_resolver_in_upstream_block(portico, dns, ipbackends):
    ipbackends("127.0.0.2")
    dns.answers["app.test"] = ["127.0.0.2"]
    p = portico('''
http {
    upstream app {
        zone app 256k;
        resolver 127.0.0.1:%d valid=1s ipv6=off;
        resolver_timeout 1s;
        server app.test:%d resolve;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_pass http://app; }
    }
}''' % (dns.port, ipbackends.port))
    assert wait_for(lambda: set(served(p, 3)) == {"127.0.0.2"})
