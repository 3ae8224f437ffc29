"""health_check in a location (as nginx Plus writes it): the probes go to the
group the location's proxy_pass names, with that location's proxy settings:
TLS with its proxy_ssl_* when the proxy_pass is https://, the Host header of
a fixed proxy_set_header Host. One prober per group across workers."""

import collections
import http.server
import re
import ssl
import threading
import time

import pytest

from conftest import conf_test
from test_health_check import HcBackend, wait_for
from test_upstream import Client


class HttpsHcBackend:
    """HTTPS backend answering its name; /health answers per .health
    ('ok', '500'); records the Host header and SNI name of each probe."""

    def __init__(self, tls_files, name):
        self.name = name
        self.health = "ok"
        self.lock = threading.Lock()
        self.checks = 0
        self.requests = 0
        self.probe_hosts = []
        self.probe_snis = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tls_files.cert_path, tls_files.key_path)
        self._sni = threading.local()
        self.ctx.sni_callback = lambda sslobj, sni, ctx: setattr(self._sni, "name", sni)
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                backend._sni.name = None
                self.request.settimeout(10)
                self.request = backend.ctx.wrap_socket(self.request, server_side=True)
                self.sni = backend._sni.name
                super().setup()

            def do_GET(self):
                if self.path == "/health":
                    with backend.lock:
                        backend.checks += 1
                        backend.probe_hosts.append(self.headers.get("Host"))
                        backend.probe_snis.append(self.sni)
                    status, body = (200, b"healthy") if backend.health == "ok" else (500, b"sick")
                else:
                    with backend.lock:
                        backend.requests += 1
                    status, body = 200, backend.name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Status", "up")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.addr = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def https_hc(tls_files):
    made = []

    def mk(name):
        b = HttpsHcBackend(tls_files, name)
        made.append(b)
        return b
    yield mk
    for b in made:
        b.close()


def served(p, n=12):
    cl = Client(p.port)
    return collections.Counter(cl.get()[1] for _ in range(n))


def test_https_backend_out_and_back(portico, https_hc, tls_files):
    bs = [https_hc("b%d" % i) for i in range(2)]
    p = portico('''
http {
    upstream pool {
        zone pool 256k;
        %s
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass https://pool;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %s;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_set_header Host app.test;
            health_check interval=300ms fails=2 passes=2 uri=/health;
        }
    }
}''' % ("".join("server %s; " % b.addr for b in bs), tls_files.ca_path), workers=2)
    assert wait_for(lambda: all(b.checks >= 2 for b in bs), timeout=10)
    for b in bs:
        assert set(b.probe_hosts) == {"app.test"}, b.probe_hosts
        assert set(b.probe_snis) == {"localhost"}, b.probe_snis
    assert "unhealthy" not in p.error_log()
    assert set(served(p)) == {"b0", "b1"}

    bs[1].health = "500"
    assert wait_for(lambda: "is unhealthy" in p.error_log(), timeout=10)
    assert re.search(r"peer %s in upstream \"pool\" is unhealthy" % re.escape(bs[1].addr),
                     p.error_log())
    before = bs[1].requests
    assert set(served(p, 20)) == {"b0"}
    assert bs[1].requests == before

    bs[1].health = "ok"
    assert wait_for(lambda: "is healthy again" in p.error_log(), timeout=10)
    assert wait_for(lambda: "b1" in served(p, 10), timeout=10)
    owners = set(re.findall(r"worker (\d+) probes upstream \"pool\"", p.error_log()))
    assert len(owners) == 1, owners


def test_https_probe_fails_certificate_verification(portico, https_hc, tls_files):
    b = https_hc("b0")
    p = portico('''
http {
    upstream pool { zone pool 256k; server %s; }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass https://pool;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %s;
            proxy_ssl_name not-in-the-certificate.example;
            health_check interval=300ms uri=/health;
        }
    }
}''' % (b.addr, tls_files.ca_path))
    assert wait_for(lambda: "is unhealthy" in p.error_log(), timeout=10)
    assert "TLS handshake failed" in p.error_log()
    assert b.checks == 0
    p.allowed_lines.update(ln for ln in p.error_log().splitlines() if "[error]" in ln)


def test_location_health_check_like_upstream(portico, backends):
    bs = [HcBackend(backends, "b%d" % i) for i in range(3)]
    p = portico('''
http {
    upstream pool {
        zone pool 256k;
        %s
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://pool;
            health_check interval=300ms fails=2 passes=2 uri=/health;
        }
        location /other/ { proxy_pass http://pool; }
    }
}''' % "".join("server %s; " % b.addr for b in bs), workers=2)
    assert wait_for(lambda: all(b.checks >= 1 for b in bs))
    assert set(served(p)) == {"b0", "b1", "b2"}
    bs[2].health = "500"
    assert wait_for(lambda: "is unhealthy" in p.error_log())
    got = served(p, 30)
    assert set(got) == {"b0", "b1"}, got
    # the group is shared: a location without health_check avoids it too
    cl = Client(p.port)
    assert {cl.get("/other/x")[1] for _ in range(12)} == {"b0", "b1"}
    bs[2].health = "ok"
    assert wait_for(lambda: "is healthy again" in p.error_log())
    assert wait_for(lambda: "b2" in served(p, 12))
    owners = set(re.findall(r"worker (\d+) probes upstream \"pool\"", p.error_log()))
    assert len(owners) == 1, owners


def test_location_match_block(portico, backends):
    bs = [HcBackend(backends, "b%d" % i) for i in range(2)]
    p = portico('''
http {
    match alive { status 200; header X-Status = up; body ~ "^healthy"; }
    upstream pool { zone pool 256k; %s }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://pool;
            health_check interval=300ms uri=/health match=alive;
        }
    }
}''' % "".join("server %s; " % b.addr for b in bs))
    assert wait_for(lambda: all(b.checks >= 2 for b in bs))
    assert "unhealthy" not in p.error_log()
    bs[0].health = "badbody"        # 200 and the header, but not the body
    assert wait_for(lambda: "is unhealthy" in p.error_log())
    assert "body does not match" in p.error_log()
    assert set(served(p, 10)) == {"b1"}
    bs[0].health = "ok"
    assert wait_for(lambda: "is healthy again" in p.error_log())
    bs[1].health = "500"            # status does not match
    assert wait_for(lambda: "status does not match" in p.error_log())
    assert wait_for(lambda: set(served(p, 10)) == {"b0"})


@pytest.mark.parametrize("http_body,msg", [
    ('server { listen 127.0.0.1:1; location / { health_check; return 204; } }',
     '"health_check" requires "proxy_pass" to an upstream group'),
    ('upstream pool { server 127.0.0.1:1; }\n'
     'server { listen 127.0.0.1:1; location / { proxy_pass http://pool; health_check; } }',
     'health check requires a "zone"'),
    ('upstream pool { zone z 128k; server 127.0.0.1:1; health_check; }\n'
     'server { listen 127.0.0.1:1; location / { proxy_pass http://pool; health_check; } }',
     'has a health check already'),
    ('upstream pool { zone z 128k; server 127.0.0.1:1; }\n'
     'server { listen 127.0.0.1:1; location / { proxy_pass http://pool; health_check;'
     ' health_check; } }',
     '"health_check" directive is duplicate'),
    ('upstream pool { zone z 128k; server 127.0.0.1:1; }\n'
     'server { listen 127.0.0.1:1; location / { proxy_pass http://pool;'
     ' health_check match=nope; } }',
     'match "nope" not found'),
])
def test_location_config_errors(tmp_path, http_body, msg):
    rc, out, err, path = conf_test(tmp_path, "events { }\nhttp {\n%s\n}\n" % http_body)
    assert rc != 0
    assert msg in err, err


def test_mandatory_new_servers_wait_for_their_first_check(portico, backends):
    good, sick, added_sick, added_good = [HcBackend(backends, n)
                                          for n in ("good", "sick", "added_sick", "added_good")]
    sick.health = added_sick.health = "500"
    p = portico('''
http {
    upstream pool { zone pool 256k; server %s; server %s; }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://pool;
            health_check interval=300ms uri=/health mandatory;
        }
        location /api/ { api write=on; }
    }
}''' % (good.addr, sick.addr), workers=2)
    from test_upstream_api import call
    # from the very first request on, the sick server (never a passing check)
    # gets nothing; until the first checks answered no server is usable (502)
    first = served(p, 6)
    assert "sick" not in first, first
    assert wait_for(lambda: "peer %s in upstream \"pool\" is healthy after its first health "
                            "check" % good.addr in p.error_log())
    assert wait_for(lambda: "peer %s in upstream \"pool\" is unhealthy after its first health "
                            "check" % sick.addr in p.error_log())
    assert set(served(p, 12)) == {"good"}
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": added_sick.addr})
    assert st == 201 and js["state"] in ("checking", "unhealthy"), js
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": added_good.addr})
    assert st == 201 and js["state"] in ("checking", "up"), js
    got = served(p, 20)
    assert "sick" not in got and "added_sick" not in got, got
    assert wait_for(lambda: "added_good" in served(p, 6))
    assert sick.requests == 0 and added_sick.requests == 0
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    states = {x["server"]: x["state"] for x in js}
    assert states[sick.addr] == "unhealthy" and states[good.addr] == "up", states


def test_persistent_requires_mandatory(tmp_path):
    rc, out, err, path = conf_test(tmp_path, '''events { }
http {
    upstream pool { zone z 128k; server 127.0.0.1:1; health_check persistent; }
    server { listen 127.0.0.1:1; location / { proxy_pass http://pool; } }
}
''')
    assert rc != 0 and '"persistent" requires "mandatory"' in err, err
