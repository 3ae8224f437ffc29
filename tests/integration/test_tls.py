"""TLS termination: ssl_* directives, SNI, ALPN, sessions, mTLS, bad input.

Certificates are made at test time with the openssl CLI (a root CA, an
intermediate, RSA and ECDSA leaves, client certificates)."""

import os
import re
import socket
import ssl
import subprocess

import pytest

from conftest import conf_test, raw_request

OPENSSL = "openssl"


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


def _key(path, kind="rsa", password=None):
    if kind == "rsa":
        cmd = [OPENSSL, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    else:
        cmd = [OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    if password:
        cmd += ["-aes-128-cbc", "-pass", "pass:" + password]
    sh(*cmd, "-out", path)


def _sign(d, name, key, ca, ca_key, sans=None, ca_cert=False, client=False, days=3, passin=None):
    csr = os.path.join(d, name + ".csr")
    ext = os.path.join(d, name + ".ext")
    lines = []
    if ca_cert:
        lines.append("basicConstraints=critical,CA:TRUE")
        lines.append("keyUsage=critical,keyCertSign,cRLSign")
    else:
        lines.append("basicConstraints=CA:FALSE")
        lines.append("extendedKeyUsage=%s" % ("clientAuth" if client else "serverAuth"))
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    with open(ext, "w") as f:
        f.write("\n".join(lines) + "\n")
    sh(OPENSSL, "req", "-new", "-key", key, "-subj", "/CN=" + name, "-out", csr,
       *(["-passin", "pass:" + passin] if passin else []))
    out = os.path.join(d, name + ".crt")
    sh(OPENSSL, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
       "-days", str(days), "-extfile", ext, "-out", out)
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    p = {"dir": d}
    root_key = os.path.join(d, "root.key")
    _key(root_key)
    root = os.path.join(d, "root.crt")
    sh(OPENSSL, "req", "-x509", "-new", "-key", root_key, "-subj", "/CN=Portico Test Root",
       "-days", "3", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", root)
    inter_key = os.path.join(d, "inter.key")
    _key(inter_key)
    inter = _sign(d, "inter", inter_key, root, root_key, ca_cert=True)
    for name, kind in (("a-rsa", "rsa"), ("a-ec", "ec")):
        k = os.path.join(d, name + ".key")
        _key(k, kind)
        c = _sign(d, name, k, inter, inter_key, sans=["DNS:a.test", "DNS:localhost"])
        with open(os.path.join(d, name + ".chain"), "w") as f:
            f.write(open(c).read() + open(inter).read())
        p[name] = (os.path.join(d, name + ".chain"), k)
    k = os.path.join(d, "b.key")
    _key(k)
    c = _sign(d, "b", k, inter, inter_key, sans=["DNS:b.test"])
    with open(os.path.join(d, "b.chain"), "w") as f:
        f.write(open(c).read() + open(inter).read())
    p["b"] = (os.path.join(d, "b.chain"), k)
    # encrypted key
    k = os.path.join(d, "enc.key")
    _key(k, password="s3cret")
    c = _sign(d, "enc", k, inter, inter_key, sans=["DNS:a.test"], passin="s3cret")
    with open(os.path.join(d, "enc.chain"), "w") as f:
        f.write(open(c).read() + open(inter).read())
    p["enc"] = (os.path.join(d, "enc.chain"), k)
    with open(os.path.join(d, "pw.txt"), "w") as f:
        f.write("wrong\ns3cret\n")
    p["pw"] = os.path.join(d, "pw.txt")
    # client certificates: one from the root, one self-signed
    k = os.path.join(d, "client.key")
    _key(k)
    p["client"] = (_sign(d, "client", k, root, root_key, client=True), k)
    k = os.path.join(d, "rogue.key")
    _key(k)
    rogue = os.path.join(d, "rogue.crt")
    sh(OPENSSL, "req", "-x509", "-new", "-key", k, "-subj", "/CN=rogue", "-days", "3",
       "-out", rogue)
    p["rogue"] = (rogue, k)
    p["root"] = root
    p["inter"] = inter
    # ticket keys
    for n, size in (("tk1", 80), ("tk2", 80), ("tk48", 48)):
        with open(os.path.join(d, n + ".key"), "wb") as f:
            f.write(os.urandom(size))
        p[n] = os.path.join(d, n + ".key")
    return p


def ctx(pki, minv=None, maxv=None, alpn=None, client=None, verify=True):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        c.load_verify_locations(pki["root"])
    else:
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
    if minv:
        c.minimum_version = minv
    if maxv:
        c.maximum_version = maxv
    if alpn:
        c.set_alpn_protocols(alpn)
    if client:
        c.load_cert_chain(*client)
    return c


def tls_get(port, pki, host="a.test", path="/", sni=None, **kw):
    """One HTTP/1.1 request over TLS; returns (status, headers text, body, sslobj info)."""
    c = ctx(pki, **kw)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    ss = c.wrap_socket(s, server_hostname=sni if sni is not None else host)
    info = {"version": ss.version(), "cipher": ss.cipher()[0], "alpn": ss.selected_alpn_protocol(),
            "cert": ss.getpeercert()}
    ss.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
    data = b""
    while True:
        try:
            b = ss.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            break
        if not b:
            break
        data += b
    ss.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode(), body, info


def s_client(port, *args, input=None, servername="a.test"):
    """openssl s_client; by default sends one HTTP/1.0 request and reads until
    the server closes (so TLS 1.3 tickets sent after the handshake arrive)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port]
    if input is None:
        input = b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n"
        cmd.append("-ign_eof")
    if servername:
        cmd += ["-servername", servername]
    r = subprocess.run(cmd + list(args), input=input, capture_output=True, timeout=15)
    return r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")


BASIC = """
http {
    %(http)s
    server {
        listen 127.0.0.1:@PORT@ ssl;
        server_name a.test localhost;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        %(srv)s
        location / {
            return 200 "s=$scheme p=$ssl_protocol c=$ssl_cipher n=$ssl_server_name r=$ssl_session_reused v=$ssl_client_verify https=$https\\n";
        }
    }
}
"""


def basic(pki, http="", srv="", which="a-rsa"):
    return BASIC % {"http": http, "srv": srv, "cert": pki[which][0], "key": pki[which][1]}


def test_tls12_and_13_python(portico, pki):
    p = portico(basic(pki))
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        st, head, body, info = tls_get(p.port, pki, minv=v, maxv=v)
        assert st == 200
        assert info["version"] == ("TLSv1.2" if v == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
        txt = body.decode()
        assert "s=https" in txt and "https=on" in txt
        assert "p=" + info["version"] in txt
        assert "c=" + info["cipher"] in txt
        assert "n=a.test" in txt and "r=." in txt and "v=NONE" in txt


def test_curl_full_chain(portico, pki):
    p = portico(basic(pki))
    r = subprocess.run(["curl", "-sS", "--cacert", pki["root"], "--resolve",
                        "a.test:%d:127.0.0.1" % p.port, "https://a.test:%d/" % p.port],
                       capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert b"s=https" in r.stdout


def test_old_protocols_refused(portico, pki):
    p = portico(basic(pki))
    out = s_client(p.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert "Cipher is (NONE)" in out or "alert" in out or "no protocols available" in out
    out = s_client(p.port, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert "Cipher is (NONE)" in out or "alert" in out or "no protocols available" in out
    with pytest.raises(ssl.SSLError):
        tls_get(p.port, pki, minv=ssl.TLSVersion.TLSv1_2, maxv=ssl.TLSVersion.TLSv1_2,
                **{}) if False else _weak_client(p.port)


def _weak_client(port):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256")   # no forward secrecy
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        c.wrap_socket(s, server_hostname="a.test")
    finally:
        s.close()


def test_plain_http_to_tls_port(portico, pki):
    p = portico(basic(pki))
    data = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"The plain HTTP request was sent to HTTPS port" in data
    assert b"<title>400 The plain HTTP request was sent to HTTPS port</title>" in data
    # the worker keeps serving TLS
    assert tls_get(p.port, pki)[0] == 200


def test_sni_two_certificates_and_default(portico, pki):
    conf = """
http {
    server {
        listen 127.0.0.1:@PORT@ ssl;
        server_name a.test;
        ssl_certificate %s; ssl_certificate_key %s;
        location / { return 200 "A $ssl_server_name\\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@ ssl;
        server_name b.test;
        ssl_certificate %s; ssl_certificate_key %s;
        location / { return 200 "B $ssl_server_name\\n"; }
    }
}
""" % (pki["a-rsa"] + pki["b"])
    p = portico(conf)
    st, _, body, info = tls_get(p.port, pki, host="a.test")
    assert body == b"A a.test\n"
    st, _, body, info = tls_get(p.port, pki, host="b.test")
    assert body == b"B b.test\n"
    assert dict(x[0] for x in info["cert"]["subject"])["commonName"] == "b"
    # unknown name: the default server's certificate
    st, _, body, info = tls_get(p.port, pki, host="zzz.test", verify=False)
    out = s_client(p.port, servername="zzz.test")
    assert "CN = a-rsa" in out or "CN=a-rsa" in out
    out = s_client(p.port, servername="b.test")
    assert "CN = b" in out or "CN=b\n" in out


def test_reject_handshake(portico, pki):
    conf = """
http {
    server {
        listen 127.0.0.1:@PORT@ ssl default_server;
        ssl_reject_handshake on;
    }
    server {
        listen 127.0.0.1:@PORT@ ssl;
        server_name a.test;
        ssl_certificate %s; ssl_certificate_key %s;
        location / { return 200 "A\\n"; }
    }
}
""" % pki["a-rsa"]
    p = portico(conf)
    assert tls_get(p.port, pki, host="a.test")[2] == b"A\n"
    with pytest.raises(ssl.SSLError) as ei:
        tls_get(p.port, pki, host="other.test", verify=False)
    assert "UNRECOGNIZED_NAME" in str(ei.value).upper()
    out = s_client(p.port, servername=None)
    assert "alert unrecognized name" in out or "unrecognized name" in out.lower()


def test_rsa_and_ecdsa_on_one_server(portico, pki):
    conf = basic(pki, srv="ssl_certificate %s; ssl_certificate_key %s;" % pki["a-ec"])
    p = portico(conf)
    out = s_client(p.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "CN = a-ec" in out and "ECDHE-ECDSA-AES128-GCM-SHA256" in out
    out = s_client(p.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert "CN = a-rsa" in out and "ECDHE-RSA-AES128-GCM-SHA256" in out
    out = s_client(p.port, "-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256")
    assert "CN = a-ec" in out


@pytest.mark.parametrize("tickets", ["on", "off"])
def test_session_resumed_across_workers(portico, pki, tmp_path, tickets):
    p = portico(basic(pki, http="ssl_session_cache shared:SSL:1m; ssl_session_tickets %s;" % tickets),
                workers=2)
    for ver in ("-tls1_2", "-tls1_3"):
        sess = str(tmp_path / ("sess%s" % ver))
        out = s_client(p.port, ver, "-sess_out", sess)
        assert "New," in out
        reused = 0
        for _ in range(10):
            out = s_client(p.port, ver, "-sess_in", sess)
            if re.search(r"(?m)^Reused,", out):
                reused += 1
        assert reused == 10, (ver, tickets, reused)


def test_session_cache_off_no_resume(portico, pki, tmp_path):
    p = portico(basic(pki, http="ssl_session_cache off; ssl_session_tickets off;"))
    sess = str(tmp_path / "s")
    out = s_client(p.port, "-tls1_2", "-sess_out", sess)
    assert "r=." in out
    if os.path.exists(sess):       # s_client saves nothing without a session id
        out = s_client(p.port, "-tls1_2", "-sess_in", sess)
        assert re.search(r"(?m)^New,", out)


def test_ticket_keys_shared_between_instances(portico, pki, tmp_path):
    http = "ssl_session_ticket_key %s; ssl_session_ticket_key %s;" % (pki["tk1"], pki["tk2"])
    p1 = portico(basic(pki, http=http))
    p2 = portico(basic(pki, http=http))
    sess = str(tmp_path / "s")
    s_client(p1.port, "-tls1_2", "-sess_out", sess)
    out = s_client(p2.port, "-tls1_2", "-sess_in", sess)
    assert re.search(r"(?m)^Reused,", out)
    # rotation: a machine with a new first key still accepts the old key's tickets
    http2 = "ssl_session_ticket_key %s; ssl_session_ticket_key %s;" % (pki["tk48"], pki["tk1"])
    p3 = portico(basic(pki, http=http2))
    out = s_client(p3.port, "-tls1_2", "-sess_in", sess)
    assert re.search(r"(?m)^Reused,", out)
    # a machine without the key does not
    p4 = portico(basic(pki, http="ssl_session_ticket_key %s;" % pki["tk2"]))
    out = s_client(p4.port, "-tls1_2", "-sess_in", sess)
    assert re.search(r"(?m)^New,", out)


def test_protocols_ciphers_curves_settings(portico, pki):
    p = portico(basic(pki, http="ssl_protocols TLSv1.3; ssl_ecdh_curve X25519;"))
    with pytest.raises(ssl.SSLError):
        tls_get(p.port, pki, maxv=ssl.TLSVersion.TLSv1_2)
    assert tls_get(p.port, pki)[3]["version"] == "TLSv1.3"
    out = s_client(p.port, "-groups", "X25519")
    assert "X25519" in out
    p2 = portico(basic(pki, http="ssl_protocols TLSv1.2; ssl_prefer_server_ciphers on;"
                                 "ssl_ciphers ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256;"))
    out = s_client(p2.port, "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    assert "ECDHE-RSA-AES256-GCM-SHA384" in out
    p3 = portico(basic(pki, http="ssl_conf_command Options -ServerPreference;"
                                 "ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;"))
    out = s_client(p3.port, "-tls1_3")
    assert "TLS_CHACHA20_POLY1305_SHA256" in out


def test_defaults_are_safe(portico, pki):
    p = portico(basic(pki))
    # no CBC, no RSA key exchange, no compression, no renegotiation
    for cipher in ("AES128-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"):
        out = s_client(p.port, "-tls1_2", "-cipher", cipher)
        assert "Cipher is (NONE)" in out or "handshake failure" in out, cipher
    out = s_client(p.port, "-tls1_2")
    assert "Compression: NONE" in out
    assert "Secure Renegotiation IS supported" in out
    out = s_client(p.port, "-tls1_2", input=b"R\n")
    # renegotiation refused: no second handshake
    assert "RENEGOTIATING" not in out or "alert" in out.lower() or "no renegotiation" in out.lower()


def test_password_file_and_dhparam(portico, pki):
    dh = os.path.join(pki["dir"], "dh.pem")
    if not os.path.exists(dh):
        sh(OPENSSL, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "dh_param:ffdhe2048",
           "-out", dh)   # small: test speed only
    p = portico(BASIC % {"http": "ssl_password_file %s; ssl_dhparam %s;" % (pki["pw"], dh),
                         "srv": "", "cert": pki["enc"][0], "key": pki["enc"][1]})
    st, _, body, _ = tls_get(p.port, pki)
    assert st == 200
    out = s_client(p.port, "-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256")
    assert "DHE-RSA-AES128-GCM-SHA256" in out


def test_mtls(portico, pki):
    conf = basic(pki, srv="ssl_client_certificate %s; ssl_verify_client on; ssl_verify_depth 2;"
                 % pki["root"])
    p = portico(conf)
    st, _, body, _ = tls_get(p.port, pki, client=pki["client"])
    assert st == 200 and b"v=SUCCESS" in body
    st, _, body, _ = tls_get(p.port, pki)
    assert st == 400 and b"No required SSL certificate was sent" in body
    st, _, body, _ = tls_get(p.port, pki, client=pki["rogue"])
    assert st == 400 and b"The SSL certificate error" in body
    out = s_client(p.port)
    assert "Acceptable client certificate CA names" in out and "Portico Test Root" in out


def test_mtls_optional(portico, pki):
    conf = basic(pki, srv="ssl_client_certificate %s; ssl_verify_client optional;" % pki["root"])
    p = portico(conf)
    st, _, body, _ = tls_get(p.port, pki)
    assert st == 200 and b"v=NONE" in body
    st, _, body, _ = tls_get(p.port, pki, client=pki["client"])
    assert st == 200 and b"v=SUCCESS" in body
    st, _, body, _ = tls_get(p.port, pki, client=pki["rogue"])
    assert st == 400


def test_stapling_file(portico, pki):
    d = pki["dir"]
    leaf = os.path.join(d, "a-rsa.crt")
    idx = os.path.join(d, "index.txt")
    open(idx, "w").close()
    # an OCSP response signed by the issuer itself
    req = os.path.join(d, "ocsp.req")
    resp = os.path.join(d, "ocsp.der")
    sh(OPENSSL, "ocsp", "-issuer", pki["inter"], "-cert", leaf, "-reqout", req, "-no_nonce")
    sh(OPENSSL, "ocsp", "-index", idx, "-rsigner", pki["inter"], "-rkey",
       os.path.join(d, "inter.key"), "-CA", pki["inter"], "-reqin", req, "-respout", resp,
       "-ndays", "1")
    p = portico(basic(pki, srv="ssl_stapling on; ssl_stapling_file %s;" % resp))
    out = s_client(p.port, "-status")
    assert "OCSP Response Status: successful" in out


@pytest.mark.parametrize("bad,expect", [
    ("mismatch", "key values mismatch"),
    ("unreadable", "cannot load certificate key"),
    ("protocol", 'invalid value "TLSv1.4"'),
    ("cipher", 'SSL_CTX_set_cipher_list("NOPE-CIPHER") failed'),
    ("nocert", 'no "ssl_certificate" is defined'),
])
def test_config_errors_with_file_line(tmp_path, pki, bad, expect):
    cert, key = pki["a-rsa"]
    extra = ""
    if bad == "mismatch":
        key = pki["b"][1]
    elif bad == "unreadable":
        key = str(tmp_path / "missing.key")
    elif bad == "protocol":
        extra = "ssl_protocols TLSv1.2 TLSv1.4;"
    elif bad == "cipher":
        extra = "ssl_ciphers NOPE-CIPHER;"
    body = "ssl_certificate %s;\n        ssl_certificate_key %s;" % (cert, key)
    if bad == "nocert":
        body = ""
    text = """events { }
http {
    server {
        listen 127.0.0.1:1 ssl;
        %s
        %s
    }
}
""" % (extra, body)
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc != 0
    assert expect in err, err
    assert re.search(re.escape(path) + r":\d+", err), err


def test_certbot_style_server(portico, pki):
    """The guides' block: redirect server, HTTP/2, HSTS and security headers."""
    cert, key = pki["a-rsa"]
    conf = """
http {
    server {
        listen 127.0.0.1:@PORT2@;
        server_name a.test;
        return 301 https://$host$request_uri;
    }
    server {
        listen 127.0.0.1:@PORT@ ssl;
        http2 on;
        server_name a.test;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_session_timeout 1d;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets off;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_prefer_server_ciphers off;
        add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
        add_header X-Frame-Options "SAMEORIGIN" always;
        add_header X-Content-Type-Options "nosniff" always;
        add_header Referrer-Policy "strict-origin-when-cross-origin" always;
        add_header Alt-Svc 'h3=":443"; ma=86400';
        location / { return 200 "ok $scheme\\n"; }
        location /missing { return 404; }
    }
}
""" % (cert, key)
    p = portico(conf)
    data = raw_request(p.ports["PORT2"], b"GET /x?y=1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
                       until_close=False)
    assert data.startswith(b"HTTP/1.1 301")
    assert b"\r\nLocation: https://a.test/x?y=1\r\n" in data
    st, head, body, info = tls_get(p.port, pki)
    assert st == 200 and body == b"ok https\n"
    assert "Strict-Transport-Security: max-age=31536000; includeSubDomains" in head
    assert "X-Frame-Options: SAMEORIGIN" in head
    assert "Alt-Svc: h3=\":443\"; ma=86400" in head
    st, head, body, info = tls_get(p.port, pki, path="/missing")
    assert st == 404 and "Strict-Transport-Security" in head
    # ALPN: h2 offered and chosen, http/1.1 still works
    st, head, body, info = tls_get(p.port, pki, alpn=["http/1.1"])
    assert info["alpn"] == "http/1.1" and st == 200
    r = subprocess.run(["curl", "-sS", "--http2", "--cacert", pki["root"], "-o", "/dev/null",
                        "-w", "%{http_version} %{http_code}", "--resolve",
                        "a.test:%d:127.0.0.1" % p.port, "https://a.test:%d/" % p.port],
                       capture_output=True, timeout=10)
    assert r.stdout == b"2 200", r.stderr


def test_handshake_timeout_and_garbage(portico, pki):
    p = portico(basic(pki, srv="client_header_timeout 1s;"))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"\x16\x03\x01\x00\x05hello")   # a broken ClientHello
    s.settimeout(5)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    s.close()
    assert not data.startswith(b"HTTP")
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(5)
    assert s.recv(10) == b""        # closed at client_header_timeout
    s.close()
    assert tls_get(p.port, pki)[0] == 200


def test_close_notify_before_close(portico, pki):
    """A response delimited by the close ends with TLS close_notify, so an
    OpenSSL 3 client does not see "unexpected eof" (lingering close too)."""
    p = portico(basic(pki, srv="lingering_close always;"))
    out = s_client(p.port, "-tls1_3")
    assert "s=https" in out
    assert "unexpected eof" not in out
    p2 = portico(basic(pki))
    out = s_client(p2.port, "-tls1_2")
    assert "s=https" in out and "unexpected eof" not in out


def test_misdirected_request_421(portico, pki):
    conf = """
http {
    server {
        listen 127.0.0.1:@PORT@ ssl;
        server_name a.test;
        ssl_certificate %s; ssl_certificate_key %s;
        ssl_client_certificate %s; ssl_verify_client on;
        location / { return 200 "A\\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@ ssl;
        server_name b.test;
        ssl_certificate %s; ssl_certificate_key %s;
        location / { return 200 "B\\n"; }
    }
}
""" % (pki["a-rsa"] + (pki["root"],) + pki["b"])
    p = portico(conf)
    # negotiated for b.test (no client certificate), then asks for a.test
    st, head, body, info = tls_get(p.port, pki, host="a.test", sni="b.test", verify=False)
    assert st == 421
    st, _, body, _ = tls_get(p.port, pki, host="a.test", client=pki["client"])
    assert st == 200 and body == b"A\n"
    st, _, body, _ = tls_get(p.port, pki, host="b.test")
    assert st == 200 and body == b"B\n"
