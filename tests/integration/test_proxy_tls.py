"""TLS to upstreams: proxy_pass https://... and the proxy_ssl_* directives.

The backend (HttpsBackend) is Python's ssl + http.server on a free port. It
answers every request with JSON describing what it saw (Host header, path,
body length, TLS version and cipher, the SNI name, whether the TLS session
was resumed, the client certificate's subject) and counts connections,
handshakes and resumed sessions."""

import hashlib
import http.server
import json
import os
import socket
import ssl
import threading
import time

import pytest

from conftest import free_port, http_get, raw_request


class HttpsBackend:
    def __init__(self, tls_files, require_client_cert=False, cert=None, key=None,
                 tls_max=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert or tls_files.cert_path, key or tls_files.key_path)
        if tls_max:
            self.ctx.maximum_version = tls_max
        if require_client_cert:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(tls_files.ca_path)
        self.lock = threading.Lock()
        self.connections = 0          # TCP connections accepted
        self.handshakes = 0           # TLS handshakes completed
        self.reused = 0               # of them, resumed sessions
        self.failures = []            # handshake errors
        self.snis = []                # SNI name of each handshake (None: none sent)
        self.requests = []            # dicts as answered
        self.ctx.sni_callback = self._on_sni
        self._sni_local = threading.local()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                sock = self.request
                with backend.lock:
                    backend.connections += 1
                backend._sni_local.name = None
                try:
                    sock.settimeout(10)
                    self.request = backend.ctx.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with backend.lock:
                        backend.failures.append(str(e))
                    sock.close()
                    raise
                self.tls_info = {
                    "sni": backend._sni_local.name,
                    "reused": self.request.session_reused,
                    "version": self.request.version(),
                    "cipher": self.request.cipher()[0],
                    "peer": [v for k, v in (self.request.getpeercert() or {})
                             .get("subjectAltName", ()) if k == "DNS"][:1] or None,
                }
                with backend.lock:
                    backend.handshakes += 1
                    backend.reused += 1 if self.request.session_reused else 0
                    backend.snis.append(backend._sni_local.name)
                self.conn_id = backend.handshakes
                super().setup()

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if self.path.startswith("/big"):
                    payload = b"x" * (1024 * 1024)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                info = dict(self.tls_info, host=self.headers.get("Host"), path=self.path,
                            method=self.command, conn=self.conn_id, body_len=len(body),
                            body_sha=hashlib.sha256(body).hexdigest())
                with backend.lock:
                    backend.requests.append(info)
                payload = json.dumps(info).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.addr = "127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _on_sni(self, sslobj, name, ctx):
        self._sni_local.name = name

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def https_backend(tls_files):
    made = []

    def make(**kw):
        b = HttpsBackend(tls_files, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def get_json(p, path="/", **kw):
    r = http_get(p.url(path=path), **kw)
    assert r.status == 200, (r.status, r.body[:300])
    return json.loads(r.body)


def conf(loc, upstreams=""):
    return """
        http {
            %s
            server {
                listen 127.0.0.1:@PORT@;
                %s
            }
        }""" % (upstreams, loc)


# --------------------------------------------------------------------------

def test_https_basic(portico, https_backend):
    b = https_backend()
    p = portico(conf("location / { proxy_pass https://%s; }" % b.addr))
    j = get_json(p, "/hello?x=1")
    assert j["path"] == "/hello?x=1"
    assert j["host"] == b.addr                 # $proxy_host keeps a non-default port
    assert j["sni"] is None                    # proxy_ssl_server_name is off by default
    assert j["version"] in ("TLSv1.2", "TLSv1.3")
    r = http_get(p.url(path="/big"))
    assert r.status == 200 and r.body == b"x" * (1024 * 1024)
    assert "[error]" not in p.error_log()


def test_https_uri_part_and_default_port_host(portico, https_backend):
    b = https_backend()
    p = portico(conf("""
        location /a/ { proxy_pass https://secure/b/; }
        location /c/ { proxy_pass https://secure; proxy_set_header Host "h.test"; }
        """, "upstream secure { server %s; }" % b.addr))
    j = get_json(p, "/a/x")
    assert j["path"] == "/b/x"
    assert j["host"] == "secure"
    assert get_json(p, "/c/")["host"] == "h.test"


def test_verify_ok_and_mismatch(portico, https_backend, tls_files):
    b = https_backend()
    p = portico(conf("""
        proxy_ssl_trusted_certificate %s;
        proxy_ssl_verify on;
        location /ip/ { proxy_pass https://%s; }
        location /name/ { proxy_pass https://%s; proxy_ssl_name localhost; }
        location /short/ { proxy_pass https://%s; proxy_ssl_name test; }
        location /bad/ { proxy_pass https://%s; proxy_ssl_name wrong.example; }
        location /badwild/ { proxy_pass https://%s; proxy_ssl_name a.b.test; }
        """ % ((tls_files.ca_path,) + (b.addr,) * 5)))
    assert get_json(p, "/ip/")["path"] == "/ip/"
    assert get_json(p, "/name/")["path"] == "/name/"
    assert get_json(p, "/short/")["path"] == "/short/"
    n = len(b.requests)
    for path in ("/bad/", "/badwild/"):
        r = http_get(p.url(path=path))
        assert r.status == 502
    assert len(b.requests) == n                # nothing reached the backend
    log = p.error_log()
    assert "upstream ssl certificate verify error: (62:hostname mismatch)" in log.lower()


def test_verify_untrusted_ca(portico, https_backend, tmp_path):
    import trustme
    other = trustme.CA()
    other_ca = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_ca))
    b = https_backend()
    p = portico(conf("""
        location / { proxy_pass https://%s; proxy_ssl_verify on;
                     proxy_ssl_trusted_certificate %s; }
        """ % (b.addr, other_ca)))
    r = http_get(p.url())
    assert r.status == 502
    assert "upstream SSL certificate verify error: (" in p.error_log()
    assert b.requests == []


def test_verify_other_name_cert(portico, https_backend, tls_files, tmp_path):
    # a certificate issued for another name only
    cert = tls_files.ca.issue_cert("other.example")
    cp, kp = tmp_path / "o.crt", tmp_path / "o.key"
    cert.private_key_pem.write_to_path(str(kp))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(cp), append=i > 0)
    b = https_backend(cert=str(cp), key=str(kp))
    p = portico(conf("""
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate %s;
        location /ip/ { proxy_pass https://%s; }
        location /ok/ { proxy_pass https://%s; proxy_ssl_name other.example; }
        """ % (tls_files.ca_path, b.addr, b.addr)))
    assert http_get(p.url(path="/ip/")).status == 502
    assert ("upstream ssl certificate verify error: (64:ip address mismatch)"
            in p.error_log().lower())
    assert get_json(p, "/ok/")["path"] == "/ok/"


def test_verify_needs_trusted_certificate(portico, https_backend, tmp_path):
    from conftest import conf_test
    rc, out, err, _ = conf_test(tmp_path, """
        events { }
        http { server { listen 127.0.0.1:%d;
            location / { proxy_pass https://127.0.0.1:1; proxy_ssl_verify on; } } }
        """ % free_port())
    assert rc != 0
    assert "proxy_ssl_trusted_certificate" in err


def test_server_name(portico, https_backend):
    b = https_backend()
    p = portico(conf("""
        location /on/ { proxy_pass https://secure; proxy_ssl_server_name on; }
        location /named/ { proxy_pass https://secure; proxy_ssl_server_name on;
                           proxy_ssl_name backend.test; }
        location /off/ { proxy_pass https://secure; }
        location /ip/ { proxy_pass https://%s; proxy_ssl_server_name on; }
        """ % b.addr, "upstream secure { server %s; }" % b.addr))
    assert get_json(p, "/on/")["sni"] == "secure"
    j = get_json(p, "/named/")
    assert j["sni"] == "backend.test" and j["host"] == "secure"
    assert get_json(p, "/off/")["sni"] is None
    assert get_json(p, "/ip/")["sni"] is None   # no SNI for an address literal


def test_ssl_name_with_variables(portico, https_backend, tls_files):
    b = https_backend()
    p = portico(conf("""
        proxy_ssl_server_name on;
        proxy_ssl_name $http_x_name;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate %s;
        location / { proxy_pass https://%s; }
        location /lit/ { proxy_pass https://%s; proxy_ssl_name localhost; }
        """ % (tls_files.ca_path, b.addr, b.addr)))
    j = get_json(p, "/", headers={"X-Name": "test"})
    assert j["sni"] == "test" and j["host"] == b.addr
    assert http_get(p.url(), headers={"X-Name": "wrong.example"}).status == 502
    assert "(62:hostname mismatch)" in p.error_log().lower()
    assert get_json(p, "/lit/", headers={"X-Name": "wrong.example"})["sni"] == "localhost"
    # a per-request name is checked on every connection (no session resumed
    # across names), the literal one resumes
    for name, status in (("test", 200), ("wrong.example", 502), ("localhost", 200)):
        assert http_get(p.url(), headers={"X-Name": name}).status == status
    assert not any(r["reused"] for r in b.requests if r["path"] == "/")
    assert get_json(p, "/lit/")["reused"]


def test_client_certificate(portico, https_backend, tls_files, tmp_path):
    cert = tls_files.ca.issue_cert("client.test")
    cp, kp = tmp_path / "client.crt", tmp_path / "client.key"
    cert.private_key_pem.write_to_path(str(kp))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(cp), append=i > 0)
    b = https_backend(require_client_cert=True)
    p = portico(conf("""
        location /cert/ { proxy_pass https://%s; proxy_ssl_certificate %s;
                          proxy_ssl_certificate_key %s; }
        location /none/ { proxy_pass https://%s; }
        """ % (b.addr, cp, kp, b.addr)))
    assert get_json(p, "/cert/")["peer"] == ["client.test"]
    r = http_get(p.url(path="/none/"))
    assert r.status == 502
    assert "[error]" in p.error_log()


def test_client_certificate_encrypted_key(portico, https_backend, tls_files, tmp_path):
    from cryptography.hazmat.primitives import serialization
    cert = tls_files.ca.issue_cert("enc.test")
    cp, kp, pw = tmp_path / "c.crt", tmp_path / "c.key", tmp_path / "pw"
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(cp), append=i > 0)
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.BestAvailableEncryption(b"s3cret")))
    pw.write_text("wrong\ns3cret\n")
    b = https_backend(require_client_cert=True)
    p = portico(conf("""
        location / { proxy_pass https://%s; proxy_ssl_certificate %s;
                     proxy_ssl_certificate_key %s; proxy_ssl_password_file %s; }
        """ % (b.addr, cp, kp, pw)))
    assert get_json(p)["peer"] == ["enc.test"]


def test_keepalive_reuses_tls_connection(portico, https_backend):
    b = https_backend()
    p = portico(conf("""
        location / { proxy_pass https://secure; proxy_http_version 1.1;
                     proxy_set_header Connection ""; }
        """, "upstream secure { server %s; keepalive 4; }" % b.addr))
    js = [get_json(p, "/k%d" % i) for i in range(5)]
    assert [j["path"] for j in js] == ["/k%d" % i for i in range(5)]
    assert b.connections == 1 and b.handshakes == 1
    assert len({j["conn"] for j in js}) == 1
    # POST bodies on the pooled connection too
    r = http_get(p.url(path="/post"), method="POST", body=b"a" * 1000)
    assert r.status == 200 and json.loads(r.body)["body_len"] == 1000
    assert b.connections == 1


@pytest.mark.parametrize("proto", ["TLSv1.2", "TLSv1.3"])
def test_session_reuse(portico, https_backend, proto):
    b = https_backend()
    p = portico(conf("""
        proxy_ssl_protocols %s;
        location / { proxy_pass https://%s; }
        location /noreuse/ { proxy_pass https://%s; proxy_ssl_session_reuse off; }
        """ % (proto, b.addr, b.addr)))
    js = [get_json(p, "/r%d" % i) for i in range(4)]
    assert all(j["version"] == proto for j in js)
    assert b.connections == 4                   # Connection: close each time
    assert [j["reused"] for j in js] == [False, True, True, True]
    js = [get_json(p, "/noreuse/%d" % i) for i in range(3)]
    assert not any(j["reused"] for j in js)


def test_protocols_and_ciphers(portico, https_backend, tls_files):
    b = https_backend()
    p = portico(conf("""
        location /v12/ { proxy_pass https://%s; proxy_ssl_protocols TLSv1.2;
                         proxy_ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384; }
        location /v13/ { proxy_pass https://%s; proxy_ssl_protocols TLSv1.3; }
        """ % (b.addr, b.addr)))
    j = get_json(p, "/v12/")
    assert j["version"] == "TLSv1.2" and "AES256-GCM-SHA384" in j["cipher"]
    assert get_json(p, "/v13/")["version"] == "TLSv1.3"
    # a backend that only speaks TLS 1.2 and a proxy that insists on 1.3: 502
    b12 = https_backend(tls_max=ssl.TLSVersion.TLSv1_2)
    p2 = portico(conf("location / { proxy_pass https://%s; proxy_ssl_protocols TLSv1.3; }"
                      % b12.addr))
    assert http_get(p2.url()).status == 502
    assert "SSL_do_handshake() failed" in p2.error_log()


def test_request_bodies(portico, https_backend):
    b = https_backend()
    p = portico(conf("""
        client_max_body_size 10m;
        location / { proxy_pass https://%s; }
        location /stream/ { proxy_pass https://%s; proxy_request_buffering off;
                            proxy_http_version 1.1; }
        """ % (b.addr, b.addr)))
    for path, size in (("/small", 100), ("/file", 3 * 1024 * 1024 + 7),
                       ("/stream/x", 2 * 1024 * 1024 + 3)):
        body = os.urandom(size)
        r = http_get(p.url(path=path), method="POST", body=body, timeout=20)
        assert r.status == 200, (path, r.status)
        j = json.loads(r.body)
        assert j["body_len"] == size and j["body_sha"] == hashlib.sha256(body).hexdigest()


def test_handshake_timeout(portico):
    # accepts TCP, never answers the ClientHello
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    port = ls.getsockname()[1]
    try:
        p = portico(conf("location / { proxy_pass https://127.0.0.1:%d; "
                         "proxy_connect_timeout 1s; }" % port))
        t0 = time.monotonic()
        r = http_get(p.url(), timeout=30)
        took = time.monotonic() - t0
        assert r.status == 504
        assert 0.8 < took < 20     # 1 s nominal, late on a loaded machine
        assert "timed out" in p.error_log() and "SSL handshaking" in p.error_log()
    finally:
        ls.close()


def test_plain_backend_on_https(portico):
    # a plain HTTP server: answers the ClientHello with a 400 and closes
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    port = ls.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            c.recv(4096)
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        p = portico(conf("location / { proxy_pass https://127.0.0.1:%d; }" % port))
        assert http_get(p.url()).status == 502
        assert "SSL_do_handshake() failed" in p.error_log()
    finally:
        ls.close()


def test_next_upstream_after_tls_failure(portico, https_backend, tls_files, tmp_path):
    bad_cert = tls_files.ca.issue_cert("other.example")
    cp, kp = tmp_path / "o.crt", tmp_path / "o.key"
    bad_cert.private_key_pem.write_to_path(str(kp))
    for i, blob in enumerate(bad_cert.cert_chain_pems):
        blob.write_to_path(str(cp), append=i > 0)
    bad = https_backend(cert=str(cp), key=str(kp))
    good = https_backend()
    p = portico(conf("""
        location / { proxy_pass https://pair; proxy_ssl_verify on;
                     proxy_ssl_trusted_certificate %s; proxy_ssl_name localhost; }
        """ % tls_files.ca_path,
                     "upstream pair { server %s; server %s; }" % (bad.addr, good.addr)))
    for i in range(4):
        assert get_json(p, "/n%d" % i)["path"] == "/n%d" % i
    assert len(good.requests) == 4 and bad.requests == []


def test_variables_https(portico, https_backend):
    b = https_backend()
    p = portico(conf("""
        location / { set $up %s; proxy_pass https://$up; }
        location /scheme/ { set $s https; proxy_pass $s://%s; }
        """ % (b.addr, b.addr)))
    assert get_json(p, "/v")["path"] == "/v"
    assert get_json(p, "/scheme/")["path"] == "/scheme/"


def test_upstream_connect_time_and_addr(portico, https_backend):
    b = https_backend()
    p = portico("""
        http {
            log_format t "$upstream_addr $upstream_status $proxy_host";
            server {
                listen 127.0.0.1:@PORT@;
                access_log logs/t.log t;
                location / { proxy_pass https://%s; }
            }
        }""" % b.addr)
    get_json(p)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not p.access_log("logs/t.log").strip():
        time.sleep(0.05)
    assert p.access_log("logs/t.log").split("\n")[0] == "%s 200 %s" % (b.addr, b.addr)
