"""Automatic HTTPS (acme_issuer / acme_certificate) against a real ACME
server: Debian's `pebble`.

Each test runs its own pebble on free loopback ports. Pebble's HTTP-01
validation connects to the name being validated on its "httpPort", which is
Portico's plain HTTP port of the test; the names resolve to 127.0.0.1
through a tiny DNS server in this file (pebble -dnsserver). Pebble's own
HTTPS certificate comes from trustme; Portico trusts it with the issuer's
ssl_trusted_certificate. The certificates Pebble issues chain to a root that
is fetched from Pebble's management port."""

import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import conf_test, free_port, http_get

PEBBLE = shutil.which("pebble")
NO_PEBBLE = "pebble is not installed (Debian package `pebble`, scripts/deps.sh)"
pytestmark = [
    # issuance is a dozen signed round trips plus a reload: room for a loaded
    # machine and the ASan build; every wait below is on a condition
    pytest.mark.timeout(180),
]

NAME = "site.test"


# ---------------------------------------------------------------- DNS
class TinyDns:
    """Answers every A query with 127.0.0.1 and every other type with an
    empty NOERROR, over UDP on loopback."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), addr)
            except Exception:
                pass

    def _answer(self, q):
        qid = q[:2]
        # question: name labels, then type and class
        i = 12
        labels = []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
            i += 1 + q[i]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        self.queries.append((".".join(labels), qtype))
        if qtype == 1:
            head = qid + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
            ans = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
            return head + question + ans
        return qid + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + question

    def close(self):
        self._stop = True
        self.sock.close()
        self.t.join(2)


# ---------------------------------------------------------------- pebble
class Pebble:
    def __init__(self, d, http_port, dns_port, port=None):
        import trustme
        self.dir = d
        self.http_port = http_port
        self.port = port or free_port()
        self.mgmt = free_port()
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = os.path.join(d, "pebble-wfe-ca.pem")
        cert = os.path.join(d, "pebble-wfe.crt")
        key = os.path.join(d, "pebble-wfe.key")
        ca.cert_pem.write_to_path(self.ca_path)
        leaf.private_key_pem.write_to_path(key)
        for i, blob in enumerate(leaf.cert_chain_pems):
            blob.write_to_path(cert, append=i > 0)
        self.conf = os.path.join(d, "pebble.json")
        with open(self.conf, "w") as f:
            json.dump({"pebble": {
                "listenAddress": "127.0.0.1:%d" % self.port,
                "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
                "certificate": cert, "privateKey": key,
                "httpPort": http_port, "tlsPort": free_port(),
                "ocspResponderURL": "", "externalAccountBindingRequired": False}}, f)
        self.dns_port = dns_port
        self.proc = None
        self.log_path = os.path.join(d, "pebble.log")

    @property
    def uri(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def _ctx(self):
        ctx = ssl.create_default_context(cafile=self.ca_path)
        return ctx

    def start(self):
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="0")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PEBBLE, "-config", self.conf,
                                      "-dnsserver", "127.0.0.1:%d" % self.dns_port],
                                     stdout=self._log, stderr=self._log, env=env, cwd=self.dir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "pebble exited:\n" + self.log()
            try:
                urllib.request.urlopen(self.uri, context=self._ctx(), timeout=2).read()
                return self
            except OSError:
                time.sleep(0.1)
        pytest.fail("pebble did not start:\n" + self.log())

    def root_pem(self):
        return urllib.request.urlopen("https://127.0.0.1:%d/roots/0" % self.mgmt,
                                      context=self._ctx(), timeout=5).read().decode()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def dns():
    d = TinyDns()
    yield d
    d.close()


@pytest.fixture
def pebble_factory(tmp_path, dns):
    """Every test that talks to an ACME server uses this: skipped with a
    reason when pebble is not installed (the configuration tests still run)."""
    if PEBBLE is None:
        pytest.skip(NO_PEBBLE)
    made = []

    def make(http_port, start=True, port=None):
        d = tmp_path / ("pebble%d" % len(made))
        d.mkdir()
        p = Pebble(str(d), http_port, dns.port, port=port)
        made.append(p)
        if start:
            p.start()
        return p

    yield make
    for p in made:
        p.stop()


CONF = """
http {
    acme_issuer pebble {
        uri @URI@;
        contact admin@example.test;
        state_path @STATE@;
        accept_terms_of_service;
        ssl_trusted_certificate @CA@;
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name _;
        location / { return 200 "plain\\n"; }
    }
    server {
        listen 127.0.0.1:@PORT_TLS@ ssl;
        server_name site.test;
        acme_certificate pebble;
        ssl_certificate $acme_certificate;
        ssl_certificate_key $acme_certificate_key;
        location / { return 200 "secure\\n"; }
    }
}
"""


def subst(pebble, state):
    return {"URI": pebble.uri, "STATE": state, "CA": pebble.ca_path}


def peer_cert(port, cafile=None, name=NAME):
    """The certificate the TLS port presents for SNI `name`: (verified, dict
    or DER). With cafile: verified against it (raises on failure)."""
    if cafile:
        ctx = ssl.create_default_context(cadata=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            return t.getpeercert(), t.getpeercert(binary_form=True)


def wait_for_verified(port, root, timeout=90.0, p=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            return peer_cert(port, cafile=root)
        except (ssl.SSLError, OSError) as e:
            last = e
            time.sleep(0.2)
    pytest.fail("no certificate from pebble's CA on the TLS port: %r%s" %
                (last, p.diagnostics() if p else ""))


def wait_log(p, pattern, timeout=60.0, count=1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(pattern, p.error_log())
        if len(found) >= count:
            return found
        time.sleep(0.1)
    pytest.fail("%d x %r not in the error log%s" % (count, pattern, p.diagnostics()))


def https_get(port, root, path="/"):
    ctx = ssl.create_default_context(cadata=root)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=NAME) as t:
            t.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, NAME)).encode())
            data = b""
            while True:
                b = t.recv(65536)
                if not b:
                    break
                data += b
    return data


# ---------------------------------------------------------------- tests

def test_certificate_obtained_and_served(portico, pebble_factory, tmp_path):
    port = free_port()
    pb = pebble_factory(port)
    state = str(tmp_path / "state")
    p = portico(CONF.replace("@PORT@", str(port)), subst=subst(pb, state), workers=2)

    root = pb.root_pem()
    info, der = wait_for_verified(p.ports["PORT_TLS"], root, p=p)
    sans = [v for k, v in info.get("subjectAltName", ()) if k == "DNS"]
    assert sans == [NAME]
    # the files the next start uses
    assert os.path.exists(os.path.join(state, NAME + ".crt"))
    assert os.stat(os.path.join(state, NAME + ".key")).st_mode & 0o077 == 0
    assert os.stat(os.path.join(state, "account.key")).st_mode & 0o077 == 0
    # served through the new certificate, and plain HTTP still answers
    assert https_get(p.ports["PORT_TLS"], root).endswith(b"secure\n")
    assert http_get("http://127.0.0.1:%d/" % port).body == b"plain\n"
    log = p.error_log()
    assert "acme: ordering a certificate for \"site.test\"" in log
    assert "acme: certificate for \"site.test\" stored" in log


class Spy:
    """Pebble's httpPort: relays each validation request to Portico's port
    and records what Portico answered."""

    def __init__(self, target_port):
        self.target = target_port
        self.seen = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        with c:
            c.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                b = c.recv(4096)
                if not b:
                    return
                data += b
            line = data.split(b"\r\n", 1)[0].decode()
            host = re.search(rb"(?im)^host:\s*([^\r\n]+)", data)
            path = line.split(" ")[1]
            r = http_get("http://127.0.0.1:%d%s" % (self.target, path),
                         headers={"Host": host.group(1).decode() if host else NAME})
            self.seen.append((path, r.status, r.body, host.group(1) if host else None))
            c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                      % (r.status, len(r.body)) + r.body)

    def close(self):
        self.sock.close()


def jwk_thumbprint(account_key_path):
    import base64
    import hashlib
    from cryptography.hazmat.primitives import serialization
    with open(account_key_path, "rb") as f:
        k = serialization.load_pem_private_key(f.read(), None)
    nums = k.public_key().public_numbers()

    def b64(n):
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()
    jwk = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (b64(nums.x), b64(nums.y))
    return base64.urlsafe_b64encode(hashlib.sha256(jwk.encode()).digest()).rstrip(b"=").decode()


def test_challenge_path_serves_key_authorization(portico, pebble_factory, tmp_path):
    """The port-80 server redirects everything at server level (the usual
    "to https" server): the challenge is answered before that rewrite."""
    port = free_port()
    spy = Spy(port)
    try:
        pb = pebble_factory(spy.port)
        state = str(tmp_path / "state")
        conf = CONF.replace("@PORT@", str(port)).replace(
            'server_name _;', 'server_name _;\n        return 301 https://$host$request_uri;')
        p = portico(conf, subst=subst(pb, state))
        wait_for_verified(p.ports["PORT_TLS"], pb.root_pem(), p=p)
        assert spy.seen, "pebble never fetched the challenge"
        thumb = jwk_thumbprint(os.path.join(state, "account.key"))
        for path, status, body, host in spy.seen:
            m = re.fullmatch(r"/\.well-known/acme-challenge/([A-Za-z0-9_-]+)", path)
            assert m, path
            assert status == 200
            assert body.decode() == "%s.%s" % (m.group(1), thumb)
            assert host.split(b":")[0] == NAME.encode()
        # once the order is over the token is withdrawn: the request goes
        # through the configuration again (the server's redirect)
        path = spy.seen[-1][0]
        r = http_get("http://127.0.0.1:%d%s" % (port, path), headers={"Host": NAME})
        assert r.status == 301
        # an unknown token is not answered by the responder either
        r = http_get("http://127.0.0.1:%d/.well-known/acme-challenge/nope" % port,
                     headers={"Host": NAME})
        assert r.status == 301
    finally:
        spy.close()


def test_issuer_down_retries_and_plain_http_works(portico, pebble_factory, tmp_path):
    port = free_port()
    pb = pebble_factory(port, start=False)      # configured, not running
    state = str(tmp_path / "state")
    p = portico(CONF.replace("@PORT@", str(port)), subst=subst(pb, state))

    wait_log(p, r"acme: cannot connect to \"127\.0\.0\.1:%d\"" % pb.port)
    wait_log(p, r"could not obtain a certificate for \"site\.test\", next attempt in \d+ s",
             count=2)
    # plain HTTP unaffected; the TLS port answers with the placeholder
    assert http_get("http://127.0.0.1:%d/" % port).body == b"plain\n"
    from cryptography import x509
    _, der = peer_cert(p.ports["PORT_TLS"])
    cert = x509.load_der_x509_certificate(der)
    assert cert.issuer == cert.subject, "not the self-signed placeholder"
    assert NAME in cert.subject.rfc4514_string()
    with pytest.raises(ssl.SSLError):
        peer_cert(p.ports["PORT_TLS"], cafile=open(pb.ca_path).read())   # not trusted
    # the issuer comes back: the next attempt succeeds
    pb.start()
    wait_for_verified(p.ports["PORT_TLS"], pb.root_pem(), timeout=120, p=p)
    assert http_get("http://127.0.0.1:%d/" % port).body == b"plain\n"


def _proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_state_survives_restart(portico, pebble_factory, tmp_path):
    port = free_port()
    pb = pebble_factory(port)
    state = str(tmp_path / "state")
    conf = CONF.replace("@PORT@", str(port))
    p = portico(conf, subst=subst(pb, state))
    root = pb.root_pem()
    _, der1 = wait_for_verified(p.ports["PORT_TLS"], root, p=p)
    tls_port = p.ports["PORT_TLS"]
    helpers = [int(x) for x in re.findall(r"start acme helper process (\d+)", p.error_log())]
    assert len(helpers) == 2, "one helper per configuration (start, then the reload)"
    p.stop()
    # no helper outlives the master
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists("/proc/%d" % h) and
                                              "Z" not in _proc_state(h) for h in helpers):
        time.sleep(0.05)
    assert not [h for h in helpers if os.path.exists("/proc/%d" % h) and "Z" not in _proc_state(h)]

    conf2 = conf.replace("@PORT_TLS@", str(tls_port))
    p2 = portico(conf2, subst=subst(pb, state))
    # the stored certificate is used from the first handshake on
    _, der2 = peer_cert(tls_port, cafile=root)
    assert der2 == der1
    wait_log(p2, r"acme: certificate for \"site\.test\" is valid until")
    assert "ordering a certificate" not in p2.error_log()
    assert "placeholder" not in p2.error_log()


def _self_signed(d, name, days_left, lifetime=90):
    """A self-signed P-256 certificate for name, issued `lifetime` days
    ago minus days_left (so it expires in days_left days)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=lifetime) + datetime.timedelta(days=days_left))
            .not_valid_after(now + datetime.timedelta(days=days_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    kp = os.path.join(d, name + ".key")
    with open(kp, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(kp, 0o600)
    with open(os.path.join(d, name + ".crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert.public_bytes(serialization.Encoding.DER)


def test_expiring_certificate_is_renewed(portico, pebble_factory, tmp_path):
    port = free_port()
    pb = pebble_factory(port)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    old = _self_signed(str(state), NAME, 10)      # inside the 30-day window
    p = portico(CONF.replace("@PORT@", str(port)), subst=subst(pb, str(state)))
    root = pb.root_pem()
    # served from the start (until the new one is there)
    try:
        assert peer_cert(p.ports["PORT_TLS"])[1] in (old, ), "not the stored certificate"
    except AssertionError:
        if "acme: certificate for \"site.test\" stored" not in p.error_log():
            raise
    _, der = wait_for_verified(p.ports["PORT_TLS"], root, p=p)
    assert der != old
    log = p.error_log()
    assert "placeholder" not in log, "the stored certificate should be served until renewed"
    assert "acme: ordering a certificate for \"site.test\"" in log


def test_certificate_outside_the_window_is_kept(portico, pebble_factory, tmp_path):
    port = free_port()
    pb = pebble_factory(port)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    old = _self_signed(str(state), NAME, 40)      # 30-day window not reached
    p = portico(CONF.replace("@PORT@", str(port)), subst=subst(pb, str(state)))
    wait_log(p, r"acme: certificate for \"site\.test\" is valid until its renewal time")
    assert peer_cert(p.ports["PORT_TLS"])[1] == old
    assert "ordering" not in p.error_log()


def test_renewal_time_reached_while_running(portico, pebble_factory, tmp_path):
    """The stored certificate enters its renewal window a few seconds after
    start: the sleeping helper wakes up, renews, and the new certificate goes
    into service."""
    port = free_port()
    pb = pebble_factory(port)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    old = _self_signed(str(state), NAME, 30 + 8 / 86400)    # due in 8 s
    p = portico(CONF.replace("@PORT@", str(port)), subst=subst(pb, str(state)))
    wait_log(p, r"acme: certificate for \"site\.test\" is valid until its renewal time")
    # served meanwhile (unless a very slow machine already got past the renewal)
    served = peer_cert(p.ports["PORT_TLS"])[1]
    assert served == old or "acme: certificate for \"site.test\" stored" in p.error_log()
    _, der = wait_for_verified(p.ports["PORT_TLS"], pb.root_pem(), p=p)
    assert der != old
    log = p.error_log()
    assert log.index("is valid until its renewal time") < log.index("ordering a certificate")


def test_identifiers_and_dot_server_name(portico, pebble_factory, tmp_path):
    """`server_name .site.test` asks for site.test; explicit identifiers
    on acme_certificate give a certificate with every name."""
    port = free_port()
    pb = pebble_factory(port)
    state = str(tmp_path / "state")
    conf = CONF.replace("@PORT@", str(port)).replace(
        "server_name site.test;", "server_name .site.test;").replace(
        "acme_certificate pebble;", "acme_certificate pebble site.test www.site.test;").replace(
        "ssl_trusted_certificate @CA@;", "ssl_verify off;")     # and no CA given
    p = portico(conf, subst=subst(pb, state))
    root = pb.root_pem()
    info, _ = wait_for_verified(p.ports["PORT_TLS"], root, p=p)
    assert sorted(v for k, v in info["subjectAltName"] if k == "DNS") == [
        "site.test", "www.site.test"]
    info, _ = peer_cert(p.ports["PORT_TLS"], cafile=root, name="www.site.test")
    assert ("DNS", "www.site.test") in info["subjectAltName"]


BAD = [
    ("acme_issuer a { contact x@y.test; }", r'"uri" is missing in acme_issuer "a"'),
    ("acme_issuer a { uri ftp://x/; }", r'invalid "uri" "ftp://x/"'),
    ("acme_issuer a { uri https://x/; state_path off; }", r'"state_path off" is not supported'),
    ("acme_issuer a { uri https://x/; challenge tls-alpn-01; }", r'only http-01'),
    ("acme_issuer a { uri https://x/; account_key rsa:2048; }", r'only ecdsa:256'),
    ("acme_issuer a { uri https://x/; profile tlsserver; }", r'"profile" is not supported'),
    ("acme_issuer a { uri https://x/; bogus 1; }", r'unknown directive "bogus" in "acme_issuer"'),
    ("acme_issuer a { uri https://x/; } acme_issuer a { uri https://y/; }", r'is duplicate'),
    ("acme_issuer a { uri https://x/; } server { listen 127.0.0.1:1 ssl; server_name s.test; "
     "acme_certificate b; ssl_certificate $acme_certificate; "
     "ssl_certificate_key $acme_certificate_key; }", r'acme issuer "b" is not defined'),
    ("acme_issuer a { uri https://x/; } server { listen 127.0.0.1:1 ssl; server_name s.test; "
     "ssl_certificate $acme_certificate; ssl_certificate_key $acme_certificate_key; }",
     r'needs "acme_certificate" in the server'),
    ("acme_issuer a { uri https://x/; } server { listen 127.0.0.1:1 ssl; server_name *.s.test; "
     "acme_certificate a; ssl_certificate $acme_certificate; "
     "ssl_certificate_key $acme_certificate_key; }", r'no identifiers for "acme_certificate"'),
    ("acme_issuer a { uri https://x/; } server { listen 127.0.0.1:1; "
     "acme_certificate a *.s.test; }", r'wildcards need the dns-01 challenge'),
    ("acme_shared_zone zone=z:1k;", r'zone "z" is too small'),
    ("acme_issuer a { uri https://x/; ssl_trusted_certificate /nonexistent/ca.pem; }",
     r'cannot read "ssl_trusted_certificate" "/nonexistent/ca.pem"'),
    ("acme_issuer a { uri https://x/; account_key /nonexistent/k.pem; }",
     r'cannot read "account_key" "/nonexistent/k.pem"'),
]


@pytest.mark.parametrize("http_body,message", BAD)
def test_config_errors(tmp_path, http_body, message):
    rc, out, err, _ = conf_test(tmp_path, "events {}\nhttp { %s }\n" % http_body)
    assert rc != 0, err
    assert re.search(message, err), err


def test_config_ok_and_placeholder_without_issuer_running(tmp_path):
    conf = CONF.replace("@URI@", "https://127.0.0.1:9/dir").replace(
        "@STATE@", "@PREFIX@/st").replace("ssl_trusted_certificate @CA@;", "ssl_verify off;")
    conf = conf.replace("@PORT@", "1").replace("@PORT_TLS@", "2")
    rc, out, err, _ = conf_test(tmp_path, "events {}\n" + conf)
    assert rc == 0, err
    assert "test is successful" in err


def test_failed_validation_is_logged_with_the_problem(portico, pebble_factory, tmp_path):
    """Pebble validates on a port where nothing answers: the authorization
    ends invalid, the log names the ACME problem, the next attempt waits
    (failed validations count against a CA's limits), plain HTTP and the
    placeholder keep working."""
    port = free_port()
    pb = pebble_factory(free_port())        # nobody listens there
    state = str(tmp_path / "state")
    p = portico(CONF.replace("@PORT@", str(port)), subst=subst(pb, state))
    line = wait_log(p, r"acme: authorization for \"site\.test\" is \"invalid\", problem "
                       r"urn:ietf:params:acme:error:\w+: [^\n]+")[0]
    assert "urn:ietf:params:acme:error:" in line
    wait_log(p, r"could not obtain a certificate for \"site\.test\", next attempt in 300 s")
    assert http_get("http://127.0.0.1:%d/" % port).body == b"plain\n"
    assert peer_cert(p.ports["PORT_TLS"])[1]


def test_issuer_http_error_is_logged(portico, pebble_factory, tmp_path):
    port = free_port()
    pb = pebble_factory(port)
    state = str(tmp_path / "state")
    sub = subst(pb, state)
    sub["URI"] = pb.uri.replace("/dir", "/no-such-directory")
    p = portico(CONF.replace("@PORT@", str(port)), subst=sub)
    wait_log(p, r"acme: reading the directory failed: \"https://127\.0\.0\.1:%d/no-such-directory\" "
                r"answered HTTP 404" % pb.port)
    wait_log(p, r"could not obtain a certificate for \"site\.test\", next attempt in \d+ s")
    assert http_get("http://127.0.0.1:%d/" % port).body == b"plain\n"


def test_request_in_flight_survives_the_switch(portico, pebble_factory, backends, tmp_path):
    """A request that started on the placeholder certificate completes after
    the new certificate went into service (graceful reload, no drop)."""
    from conftest import http_response
    release = threading.Event()
    entered = threading.Event()

    def held(req, c, b):
        entered.set()
        release.wait(60)
        return http_response(200, b"held to the end")
    be = backends(held)

    port = free_port()
    pb = pebble_factory(port, start=False)
    state = str(tmp_path / "state")
    conf = CONF.replace("@PORT@", str(port)).replace(
        'location / { return 200 "secure\\n"; }',
        'location / { return 200 "secure\\n"; }\n        location /held { proxy_pass %s; }' % be.url)
    p = portico(conf, subst=subst(pb, state))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.create_connection(("127.0.0.1", p.ports["PORT_TLS"]), timeout=60)
    t = ctx.wrap_socket(s, server_hostname=NAME)
    try:
        t.sendall(b"GET /held HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        assert entered.wait(30), "the request did not reach the backend"
        pb.start()
        wait_for_verified(p.ports["PORT_TLS"], pb.root_pem(), timeout=120, p=p)
        wait_log(p, r"gracefully shutting down")
        release.set()
        data = b""
        while True:
            b = t.recv(65536)
            if not b:
                break
            data += b
    finally:
        release.set()
        t.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert data.endswith(b"held to the end")


def test_untrusted_issuer_certificate_is_refused(portico, pebble_factory, tmp_path):
    """ssl_verify is on by default: without pebble's CA in
    ssl_trusted_certificate the handshake with the issuer fails, logged."""
    port = free_port()
    pb = pebble_factory(port)
    state = str(tmp_path / "state")
    conf = CONF.replace("@PORT@", str(port)).replace("ssl_trusted_certificate @CA@;", "")
    p = portico(conf, subst=subst(pb, state))
    wait_log(p, r"acme: TLS handshake with \"127\.0\.0\.1:%d\" failed: [^\n]*certificate verify "
                r"failed" % pb.port)
    wait_log(p, r"could not obtain a certificate for \"site\.test\"")
    assert not os.path.exists(os.path.join(state, NAME + ".crt"))


def test_reload_keeps_the_certificate(portico, pebble_factory, tmp_path):
    """A reload by the operator loads the stored certificate again and the
    new helper orders nothing; an explicit acme_shared_zone works."""
    port = free_port()
    pb = pebble_factory(port)
    state = str(tmp_path / "state")
    conf = CONF.replace("@PORT@", str(port)).replace(
        "http {\n", "http {\n    acme_shared_zone zone=acme_test:128k;\n", 1)
    assert "acme_shared_zone" in conf
    p = portico(conf, subst=subst(pb, state))
    root = pb.root_pem()
    _, der = wait_for_verified(p.ports["PORT_TLS"], root, p=p)
    wait_log(p, r"acme: certificate for \"site\.test\" is valid until its renewal time")
    p.reload(conf.replace("@PORT_TLS@", str(p.ports["PORT_TLS"])))
    wait_log(p, r"acme: certificate for \"site\.test\" is valid until its renewal time", count=2)
    assert peer_cert(p.ports["PORT_TLS"], cafile=root)[1] == der
    log = p.error_log()
    assert log.count("acme: ordering a certificate") == 1
    assert len(re.findall(r"start acme helper process \d+", log)) == 3


def test_nginx_module_shaped_config_loads(tmp_path):
    """A configuration in the shape nginx's acme module documents (resolver,
    acme_shared_zone, a ".name" server_name, ssl_certificate_cache) passes -t."""
    conf = """
events {}
http {
    resolver 127.0.0.1:53;
    acme_issuer staging {
        uri         https://ca.example.net/directory;
        contact     ops@example.net;
        contact     mailto:security@example.net;
        state_path  @PREFIX@/acme-staging;
        account_key ecdsa:256;
        challenge   http-01;
        accept_terms_of_service;
    }
    acme_shared_zone zone=acme_zone:512k;
    server {
        listen 127.0.0.1:1 ssl;
        server_name .shop.example.net;
        acme_certificate staging key=ecdsa:256;
        ssl_certificate       $acme_certificate;
        ssl_certificate_key   $acme_certificate_key;
        ssl_certificate_cache max=4;
    }
    server {
        listen 127.0.0.1:2;
        location / { return 404; }
    }
}
"""
    rc, out, err, _ = conf_test(tmp_path, conf)
    assert rc == 0, err


def test_master_process_off_warns_and_serves_the_placeholder(portico, tmp_path):
    port = free_port()
    conf = "master_process off;\n" + CONF.replace("@PORT@", str(port)).replace(
        "ssl_trusted_certificate @CA@;", "ssl_verify off;")
    p = portico(conf, subst={"URI": "https://127.0.0.1:9/dir", "STATE": str(tmp_path / "st")})
    wait_log(p, r"\[warn\] .*acme: with \"master_process off\" no certificate is obtained")
    assert "acme helper" not in p.error_log()
    assert http_get("http://127.0.0.1:%d/" % port).body == b"plain\n"
    from cryptography import x509
    cert = x509.load_der_x509_certificate(peer_cert(p.ports["PORT_TLS"])[1])
    assert cert.issuer == cert.subject
