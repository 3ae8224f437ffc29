"""HTTP/2: ALPN h2 over TLS, h2c prior knowledge, streams through the same
phases as HTTP/1.1, flow control, GOAWAY, and hostile clients."""

import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import h2.config
import h2.connection
import h2.events
import h2.settings

from conftest import raw_request

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("h2cert"))
    c, k = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", k, "-out", c, "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return c, k


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("h2www"))
    with open(os.path.join(d, "big.bin"), "wb") as f:
        f.write(os.urandom(8 * 1024 * 1024))
    with open(os.path.join(d, "small.txt"), "w") as f:
        f.write("small\n")
    return d


CONF = """
http {
    server {
        listen 127.0.0.1:@PORT@ ssl;
        listen 127.0.0.1:@PORT2@ http2;
        http2 on;
        %(extra)s
        server_name localhost;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        location /files/ { alias %(www)s/; }
        location /redir { return 302 /elsewhere; }
        location / {
            return 200 "proto=$server_protocol scheme=$scheme alpn=$ssl_alpn_protocol host=$host uri=$uri args=$args\\n";
        }
    }
}
"""


def conf(cert, files, extra=""):
    return CONF % {"cert": cert[0], "key": cert[1], "www": files, "extra": extra}


def curl(*args):
    r = subprocess.run(["curl", "-sS"] + list(args), capture_output=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def tls_h2_sock(port, alpn=("h2",)):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(list(alpn))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return c.wrap_socket(s, server_hostname="localhost")


class H2Client:
    def __init__(self, sock, window=None):
        self.sock = sock
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.data = {}
        self.headers = {}
        self.ended = set()
        self.reset = {}
        self.goaway = None
        self.closed = False
        self.max_frame = 0

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, path, method="GET", body=None, headers=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "https"),
                (":authority", "localhost")] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=(body is None and end))
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        try:
            self.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.closed = True
        return sid

    def _receive(self, b):
        """Feeds python-h2 one frame at a time: it treats any GOAWAY as the
        end of the connection and raises on a DATA frame that followed a
        graceful one in the same read (pump reopens it after the event)."""
        self.inbuf = getattr(self, "inbuf", b"") + b
        while len(self.inbuf) >= 9:
            n = 9 + int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < n:
                break
            frame, self.inbuf = self.inbuf[:n], self.inbuf[n:]
            for ev in self.conn.receive_data(frame):
                if isinstance(ev, h2.events.ConnectionTerminated) and ev.error_code == 0:
                    self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
                yield ev

    def pump(self, until, timeout=30, ack=True):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline and not self.closed:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                self.closed = True
                break
            if not b:
                self.closed = True
                break
            for ev in self._receive(b):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.headers[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.data.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                    self.max_frame = max(self.max_frame, len(ev.data))
                    if ack:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    self.reset[ev.stream_id] = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = (ev.error_code, ev.last_stream_id)
                    if ev.error_code == 0:
                        # a graceful GOAWAY: streams up to last_stream_id go
                        # on (python-h2 would treat the connection as closed)
                        self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
            try:
                self.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                self.closed = True
        return until()


def test_curl_http2_over_tls_and_alpn_fallback(portico, cert, files):
    p = portico(conf(cert, files))
    rc, out, err = curl("-k", "--http2", "-w", "|%{http_version}", p.url().replace("http:", "https:") + "a?b=1")
    assert rc == 0, err
    assert out == b"proto=HTTP/2.0 scheme=https alpn=h2 host=127.0.0.1 uri=/a args=b=1\n|2"
    rc, out, err = curl("-k", "--http1.1", "-w", "|%{http_version}", p.url().replace("http:", "https:"))
    assert out.startswith(b"proto=HTTP/1.1 scheme=https alpn=http/1.1") and out.endswith(b"|1.1")
    # redirect made absolute, status and headers as in HTTP/1.1
    rc, out, err = curl("-k", "--http2", "-D", "-", "-o", "/dev/null",
                        "https://localhost:%d/redir" % p.port, "--resolve",
                        "localhost:%d:127.0.0.1" % p.port)
    assert out.startswith(b"HTTP/2 302")
    assert b"location: https://localhost:%d/elsewhere" % p.port in out


def test_http2_off_offers_only_http11(portico, cert, files):
    c = conf(cert, files).replace("http2 on;", "http2 off;").replace(
        "listen 127.0.0.1:@PORT2@ http2;", "")
    p = portico(c)
    s = tls_h2_sock(p.port, alpn=("h2", "http/1.1"))
    assert s.selected_alpn_protocol() == "http/1.1"
    s.close()


def test_old_listen_ssl_http2(portico, cert, files):
    c = conf(cert, files).replace("listen 127.0.0.1:@PORT@ ssl;", "listen 127.0.0.1:@PORT@ ssl http2;")
    c = c.replace("http2 on;", "")
    p = portico(c)
    rc, out, err = curl("-k", "--http2", "-w", "|%{http_version}", "https://127.0.0.1:%d/" % p.port)
    assert out.endswith(b"|2")


def test_h2c_prior_knowledge_and_h1_on_same_port(portico, cert, files):
    p = portico(conf(cert, files))
    port = p.ports["PORT2"]
    rc, out, err = curl("--http2-prior-knowledge", "-w", "|%{http_version}", "http://127.0.0.1:%d/x" % port)
    assert out.startswith(b"proto=HTTP/2.0 scheme=http") and out.endswith(b"|2")
    rc, out, err = curl("-w", "|%{http_version}", "http://127.0.0.1:%d/x" % port)
    assert out.startswith(b"proto=HTTP/1.1") and out.endswith(b"|1.1")


def test_nghttp_client(portico, cert, files):
    p = portico(conf(cert, files))
    r = subprocess.run(["nghttp", "-ns", "https://127.0.0.1:%d/files/small.txt" % p.port,
                        "https://127.0.0.1:%d/" % p.port, "https://127.0.0.1:%d/files/big.bin" % p.port],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b"/files/") == 2
    r = subprocess.run(["nghttp", "https://127.0.0.1:%d/files/small.txt" % p.port],
                       capture_output=True, timeout=30)
    assert r.stdout == b"small\n"


@pytest.mark.parametrize("tls", [True, False])
def test_h2load_no_failures(portico, cert, files, tls):
    p = portico(conf(cert, files), workers=2)
    url = ("https://127.0.0.1:%d/" % p.port) if tls else ("http://127.0.0.1:%d/" % p.ports["PORT2"])
    r = subprocess.run(["h2load", "-n", "2000", "-c", "10", "-m", "10", url],
                       capture_output=True, timeout=60)
    out = r.stdout.decode()
    assert "2000 succeeded, 0 failed, 0 errored, 0 timeout" in out, out
    assert "2000 2xx" in out


def test_large_download_streams_bodies_intact(portico, cert, files):
    p = portico(conf(cert, files))
    r = subprocess.run(["h2load", "-n", "40", "-c", "2", "-m", "4",
                        "https://127.0.0.1:%d/files/big.bin" % p.port], capture_output=True, timeout=60)
    assert "40 succeeded, 0 failed" in r.stdout.decode(), r.stdout
    out = subprocess.run(["curl", "-sk", "--http2", "https://127.0.0.1:%d/files/big.bin" % p.port],
                         capture_output=True, timeout=30).stdout
    assert out == open(os.path.join(files, "big.bin"), "rb").read()


def test_slow_reader_stalls_only_its_stream(portico, cert, files):
    p = portico(conf(cert, files, extra="http2_chunk_size 16k;"))
    cl = H2Client(tls_h2_sock(p.port))
    # a big connection window; stream windows stay at 64k
    cl.conn.increment_flow_control_window(64 * 1024 * 1024)
    cl.flush()
    big = cl.request("/files/big.bin")
    # read the big one without acknowledging: its window (64k) closes
    cl.pump(lambda: len(cl.data.get(big, b"")) >= 65535, ack=False)
    got = len(cl.data.get(big, b""))
    assert 0 < got <= 65535
    small = cl.request("/files/small.txt")
    assert cl.pump(lambda: small in cl.ended, ack=False)
    assert bytes(cl.data[small]) == b"small\n"
    assert big not in cl.ended
    # memory stays bounded on the server while the big stream waits
    time.sleep(0.3)
    cl.pump(lambda: False, timeout=0.3, ack=False)
    assert len(cl.data.get(big, b"")) <= 65535
    # now read it all
    cl.conn.acknowledge_received_data(got, big)
    cl.conn.increment_flow_control_window(16 * 1024 * 1024)
    cl.conn.increment_flow_control_window(16 * 1024 * 1024, big)
    cl.flush()
    assert cl.pump(lambda: big in cl.ended, timeout=30)
    assert bytes(cl.data[big]) == open(os.path.join(files, "big.bin"), "rb").read()
    cl.sock.close()


def test_frames_larger_than_the_output_buffer(portico, cert, files):
    # DATA frames are written straight from the stream's queue into the
    # connection's output buffer (64 KiB); a frame larger than that takes a
    # bigger buffer, interleaved with small streams on the same connection
    p = portico(conf(cert, files, extra="http2_chunk_size 1m;"))
    cl = H2Client(tls_h2_sock(p.port), window=16 * 1024 * 1024)
    cl.conn.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 4 * 1024 * 1024})
    cl.conn.increment_flow_control_window(256 * 1024 * 1024)
    cl.flush()
    big = [cl.request("/files/big.bin") for _ in range(3)]
    small = [cl.request("/files/small.txt") for _ in range(20)]
    assert cl.pump(lambda: all(x in cl.ended for x in big + small), timeout=60)
    want = open(os.path.join(files, "big.bin"), "rb").read()
    assert all(bytes(cl.data[x]) == want for x in big)
    assert all(bytes(cl.data[x]) == b"small\n" for x in small)
    assert not cl.reset
    assert cl.max_frame > 64 * 1024, cl.max_frame
    cl.sock.close()


def test_request_body_through_proxy(portico, cert, files, echo_backend):
    c = conf(cert, files).replace("location /redir", "location /up { proxy_pass %s; }\n        location /redir"
                                  % echo_backend.url.rstrip("/"))
    p = portico(c)
    body = os.urandom(300 * 1024)
    path = os.path.join(files, "post.bin")
    with open(path, "wb") as f:
        f.write(body)
    rc, out, err = curl("-k", "--http2", "--data-binary", "@" + path, "-o", "/dev/null", "-w",
                        "%{http_code}", "https://127.0.0.1:%d/up/post" % p.port)
    if out == b"404" or out == b"500":
        pytest.skip("proxy_pass not available in this build")
    assert out == b"200", err
    req = echo_backend.requests[-1]
    assert req.method == "POST" and req.body == body


def test_goaway_on_reload_no_failed_streams(portico, cert, files):
    p = portico(conf(cert, files), workers=2)
    url = "https://127.0.0.1:%d/" % p.port
    result = {}

    def load():
        r = subprocess.run(["h2load", "-n", "6000", "-c", "6", "-m", "4", url],
                           capture_output=True, timeout=60)
        result["out"] = r.stdout.decode()

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.2)
    p.reload(conf(cert, files))
    t.join()
    out = result["out"]
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", out)
    assert m, out
    # h2load does not reconnect after GOAWAY: requests it never started count
    # as failed, and requests it had queued but not yet sent when the GOAWAY
    # arrived fail inside its nghttp2 (at most -c x -m of them). The server
    # answers everything it received: no 4xx/5xx, nothing reset (checked
    # exactly with the client below)
    started, done, ok = int(m.group(2)), int(m.group(3)), int(m.group(4))
    assert ok > 0 and started - ok <= 6 * 4, out
    assert re.search(r"status codes: \d+ 2xx, 0 3xx, 0 4xx, 0 5xx", out), out
    # in-flight streams on one connection all finish across a reload
    cl = H2Client(tls_h2_sock(p.port))
    cl.conn.increment_flow_control_window(64 * 1024 * 1024)
    sids = [cl.request("/files/big.bin") for _ in range(6)]
    cl.pump(lambda: sum(len(cl.data.get(x, b"")) for x in sids) > 1024 * 1024)
    p.reload(conf(cert, files))
    assert cl.pump(lambda: all(x in cl.ended for x in sids), timeout=30)
    want = open(os.path.join(files, "big.bin"), "rb").read()
    assert all(bytes(cl.data[x]) == want for x in sids)
    assert not cl.reset
    cl.pump(lambda: cl.goaway is not None and cl.goaway[1] >= max(sids), timeout=20)
    assert cl.goaway is not None and cl.goaway[0] == 0 and cl.goaway[1] >= max(sids), cl.goaway
    cl.sock.close()
    # an idle connection gets GOAWAY (NO_ERROR) when its worker stops
    cl = H2Client(tls_h2_sock(p.port))
    sid = cl.request("/")
    assert cl.pump(lambda: sid in cl.ended)
    p.reload(conf(cert, files))
    assert cl.pump(lambda: cl.goaway is not None or cl.closed, timeout=10)
    assert cl.goaway is not None and cl.goaway[0] == 0, cl.goaway


def _frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def _read_goaway(s, timeout=5):
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (socket.timeout, ConnectionResetError):
        pass
    i = 0
    while i + 9 <= len(data):
        ln = int.from_bytes(data[i:i + 3], "big")
        ftype = data[i + 3]
        if ftype == 7:
            return int.from_bytes(data[i + 13:i + 17], "big")
        i += 9 + ln
    return None


@pytest.mark.parametrize("name,frames,code", [
    ("data_on_stream_0", [_frame(0, 1, 0, b"xx")], 1),                     # PROTOCOL_ERROR
    ("window_update_zero", [_frame(8, 0, 0, b"\0\0\0\0")], 1),
    ("settings_bad_length", [_frame(4, 0, 0, b"\0\0\0")], 6),              # FRAME_SIZE_ERROR
    ("ping_bad_length", [_frame(6, 0, 0, b"1234")], 6),
    ("headers_garbage_hpack", [_frame(1, 5, 1, b"\xff\xff\xff\xff\xff")], 9),  # COMPRESSION_ERROR
    ("continuation_without_headers", [_frame(9, 4, 1, b"\x82")], 1),
])
def test_malformed_frames_end_connection(portico, cert, files, name, frames, code):
    p = portico(conf(cert, files))
    port = p.ports["PORT2"]
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(PREFACE + _frame(4, 0, 0, b"") + b"".join(frames))
    got = _read_goaway(s)
    s.close()
    assert got == code, (name, got)
    rc, out, err = curl("--http2-prior-knowledge", "http://127.0.0.1:%d/ok" % port)
    assert out.startswith(b"proto=HTTP/2.0")


def test_continuation_flood(portico, cert, files):
    p = portico(conf(cert, files))
    s = socket.create_connection(("127.0.0.1", p.ports["PORT2"]))
    hdr = b"\x82\x84\x86" + b"\x41\x09localhost"   # GET / http, :authority
    data = PREFACE + _frame(4, 0, 0, b"") + _frame(1, 0, 1, hdr)
    data += b"".join(_frame(9, 0, 1, b"") for _ in range(5000))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = _read_goaway(s)
    s.close()
    assert got is not None and got != 0
    rc, out, err = curl("--http2-prior-knowledge", "http://127.0.0.1:%d/ok" % p.ports["PORT2"])
    assert out.startswith(b"proto=HTTP/2.0")


def test_rapid_reset(portico, cert, files):
    p = portico(conf(cert, files))
    cl = H2Client(socket.create_connection(("127.0.0.1", p.ports["PORT2"])))
    for _ in range(2000):
        if cl.closed:
            break
        sid = cl.request("/")
        cl.conn.reset_stream(sid)
        try:
            cl.flush()
        except (BrokenPipeError, ConnectionResetError):
            break
        if cl.conn.open_outbound_streams > 50:
            break
    cl.pump(lambda: cl.goaway is not None or cl.closed, timeout=20)
    assert cl.goaway is not None or cl.closed
    if cl.goaway:
        assert cl.goaway[0] in (2, 11)     # nghttp2's reset limit / ours (ENHANCE_YOUR_CALM)
    rc, out, err = curl("--http2-prior-knowledge", "http://127.0.0.1:%d/ok" % p.ports["PORT2"])
    assert out.startswith(b"proto=HTTP/2.0")


def test_header_list_too_large_resets_stream(portico, cert, files):
    p = portico(conf(cert, files))
    cl = H2Client(socket.create_connection(("127.0.0.1", p.ports["PORT2"])))
    sid = cl.request("/", headers=[("x-big", "a" * 40000)])
    cl.pump(lambda: sid in cl.reset or sid in cl.ended or cl.goaway is not None)
    assert sid in cl.reset or cl.goaway is not None
    if not cl.closed and cl.goaway is None:
        sid2 = cl.request("/after")
        assert cl.pump(lambda: sid2 in cl.ended)


def test_ping_flood_does_not_hurt_others(portico, cert, files):
    p = portico(conf(cert, files))
    s = socket.create_connection(("127.0.0.1", p.ports["PORT2"]))
    s.settimeout(5)
    data = PREFACE + _frame(4, 0, 0, b"") + _frame(6, 0, 0, b"12345678") * 50000
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    rc, out, err = curl("--http2-prior-knowledge", "http://127.0.0.1:%d/ok" % p.ports["PORT2"])
    assert out.startswith(b"proto=HTTP/2.0")
    assert _read_goaway(s) == 11      # ENHANCE_YOUR_CALM
    s.close()
    s = socket.create_connection(("127.0.0.1", p.ports["PORT2"]))
    try:
        s.sendall(PREFACE + _frame(4, 0, 0, b"") + _frame(4, 0, 0, b"\0\3\0\0\0\x10") * 5000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert _read_goaway(s) == 11      # SETTINGS flood
    s.close()


def test_settings_and_limits_directives(portico, cert, files):
    p = portico(conf(cert, files, extra="http2_max_concurrent_streams 7; http2_body_preread_size 32k; "
                                        "http2_chunk_size 4k;"))
    cl = H2Client(socket.create_connection(("127.0.0.1", p.ports["PORT2"])))
    sid = cl.request("/")
    assert cl.pump(lambda: sid in cl.ended)
    rs = cl.conn.remote_settings
    assert rs.max_concurrent_streams == 7
    assert rs.initial_window_size == 32 * 1024


def test_send_timeout_resets_stalled_stream(portico, cert, files):
    p = portico(conf(cert, files, extra="send_timeout 1s;"))
    cl = H2Client(tls_h2_sock(p.port))
    cl.conn.increment_flow_control_window(64 * 1024 * 1024)
    cl.flush()
    big = cl.request("/files/big.bin")
    # never acknowledge: the stream window stays closed
    assert cl.pump(lambda: big in cl.reset, timeout=8, ack=False)
    small = cl.request("/files/small.txt")
    assert cl.pump(lambda: small in cl.ended, ack=False)
    cl.sock.close()


def test_client_body_timeout(portico, cert, files, echo_backend):
    c = conf(cert, files, extra="client_body_timeout 1s;").replace(
        "location /redir", "location /up { proxy_pass %s; }\n        location /redir"
        % echo_backend.url.rstrip("/"))
    p = portico(c)
    cl = H2Client(tls_h2_sock(p.port))
    sid = cl.request("/up/x", method="POST", headers=[("content-length", "100")], body=b"abc",
                     end=False)
    assert cl.pump(lambda: sid in cl.reset or sid in cl.ended, timeout=8)
    if sid in cl.headers:
        assert cl.headers[sid][":status"] in ("408", "400")
    other = cl.request("/")
    assert cl.pump(lambda: other in cl.ended)
    cl.sock.close()
