"""TLS 1.3 session tickets: one NewSessionTicket per handshake (OpenSSL's
default is two; tickets are stateless and reusable, the second one only cost
CPU), and resumption from it works, on a full handshake and on a resumed one,
with stateless tickets and with ssl_session_tickets off (the ticket is then a
session id in the shared cache)."""

import re
import subprocess

import pytest

CONF = """
http {
    %s
    server {
        listen 127.0.0.1:@PORT@ ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location / { return 200 "r=$ssl_session_reused p=$ssl_protocol\\n"; }
    }
}"""


def s_client(port, *args):
    """One HTTP/1.0 request; reads until the server closes, so the tickets
    sent after the handshake have arrived. -msg shows each handshake message."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3", "-msg",
           "-ign_eof", "-servername", "localhost"] + list(args)
    r = subprocess.run(cmd, input=b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", capture_output=True,
                       timeout=20)
    return r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")


def tickets(out):
    return len(re.findall(r"<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], NewSessionTicket", out))


@pytest.mark.parametrize("http", [
    "ssl_session_cache shared:SSL:1m;",
    "ssl_session_cache shared:SSL:1m; ssl_session_tickets off;",
    "",
])
def test_one_ticket_and_resumption(portico, tls_files, tmp_path, http):
    p = portico(CONF % (http, tls_files.cert_path, tls_files.key_path))
    sess = str(tmp_path / "sess")
    out = s_client(p.port, "-sess_out", sess)
    assert "r=. p=TLSv1.3" in out, out[-2000:]
    assert tickets(out) == 1, out[-3000:]
    for _ in range(3):
        out = s_client(p.port, "-sess_in", sess, "-sess_out", sess)
        assert re.search(r"(?m)^Reused,", out), out[-2000:]
        assert "r=r p=TLSv1.3" in out, out[-2000:]
        assert tickets(out) == 1, out[-3000:]
