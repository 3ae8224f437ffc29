"""listen ... proxy_protocol: the PROXY protocol header (v1 text, v2 binary)
is read before anything else on the connection -- before HTTP/1.1 heads,
the TLS handshake and the HTTP/2 preface -- and gives $proxy_protocol_*
and, with `real_ip_header proxy_protocol`, $remote_addr. A broken or
missing header closes the connection ("broken header" in the error log).

Clients are raw sockets that write the header themselves, as a load
balancer (HAProxy send-proxy, AWS NLB) does."""

import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events

from conftest import parse_responses

SIG = b"\r\n\r\n\x00\r\nQUIT\n"

VARS = ("a=$proxy_protocol_addr p=$proxy_protocol_port sa=$proxy_protocol_server_addr "
        "sp=$proxy_protocol_server_port r=$remote_addr rp=$remote_port rr=$realip_remote_addr")


def v1(src="192.0.2.10", dst="198.51.100.7", sport=56324, dport=443, proto="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src="203.0.113.9", dst="10.1.2.3", sport=40000, dport=8443, cmd=0x21, tlvs=b""):
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    body = (socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
            + struct.pack("!HH", sport, dport) + tlvs)
    return SIG + bytes([cmd, 0x11 if fam == socket.AF_INET else 0x21]) \
        + struct.pack("!H", len(body)) + body


def v2_local():
    return SIG + bytes([0x20, 0x00, 0, 0])


def fields(body):
    out = {}
    for kv in body.decode().split():
        k, _, v = kv.partition("=")
        out[k] = v
    return out


def exchange(port, data, timeout=10.0):
    """Sends data, reads until the server closes (Connection: close)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b""                  # refused before all of it was sent
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


GET = b"GET /v HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def conf(extra_listen="", server_extra="", realip=True):
    rip = ("set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;" if realip else "")
    return """
    http {
        access_log off;
        server {
            listen 127.0.0.1:@PORT@ proxy_protocol %s;
            client_header_timeout 2s;
            %s
            %s
            location /v { return 200 "%s"; }
        }
    }""" % (extra_listen, rip, server_extra, VARS)


def one(data):
    rs = parse_responses(data)
    assert len(rs) == 1, data
    return rs[0]


def wait_log(p, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in p.error_log():
            return True
        time.sleep(0.05)
    return False


def test_v1_tcp4_sets_variables_and_remote_addr(portico):
    p = portico(conf())
    r = one(exchange(p.port, v1() + GET))
    assert r.status == 200
    f = fields(r.body)
    assert f == {"a": "192.0.2.10", "p": "56324", "sa": "198.51.100.7", "sp": "443",
                 "r": "192.0.2.10", "rp": "56324", "rr": "127.0.0.1"}


def test_v1_tcp6_and_unknown(portico):
    p = portico(conf())
    f = fields(one(exchange(p.port, v1("2001:db8::1", "2001:db8::2", 1, 80, "TCP6") + GET)).body)
    assert f["a"] == "2001:db8::1" and f["sa"] == "2001:db8::2" and f["r"] == "2001:db8::1"
    assert f["p"] == "1" and f["sp"] == "80"
    # UNKNOWN: accepted, the socket's addresses stay
    f = fields(one(exchange(p.port, b"PROXY UNKNOWN\r\n" + GET)).body)
    assert f["a"] == "" and f["p"] == "" and f["r"] == "127.0.0.1"


def test_without_realip_remote_addr_is_the_balancer(portico):
    p = portico(conf(realip=False))
    f = fields(one(exchange(p.port, v1() + GET)).body)
    assert f["a"] == "192.0.2.10" and f["r"] == "127.0.0.1"


def test_untrusted_balancer_keeps_remote_addr(portico):
    p = portico(conf(realip=False, server_extra="set_real_ip_from 10.0.0.0/8; "
                                                 "real_ip_header proxy_protocol;"))
    f = fields(one(exchange(p.port, v1() + GET)).body)
    assert f["a"] == "192.0.2.10" and f["r"] == "127.0.0.1"


def test_v2_inet_with_tlvs_and_inet6(portico):
    p = portico(conf())
    tlvs = b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.com" + b"\x04\x00\x03\x00\x00\x00"
    f = fields(one(exchange(p.port, v2(tlvs=tlvs) + GET)).body)
    assert f == {"a": "203.0.113.9", "p": "40000", "sa": "10.1.2.3", "sp": "8443",
                 "r": "203.0.113.9", "rp": "40000", "rr": "127.0.0.1"}
    f = fields(one(exchange(p.port, v2("2001:db8::9", "::1", 5, 6) + GET)).body)
    assert f["a"] == "2001:db8::9" and f["p"] == "5" and f["r"] == "2001:db8::9"


def test_v2_local_keeps_addresses(portico):
    p = portico(conf())
    f = fields(one(exchange(p.port, v2_local() + GET)).body)
    assert f["a"] == "" and f["r"] == "127.0.0.1"


def test_header_once_then_keepalive_requests(portico):
    p = portico(conf())
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        # the header comes in pieces: the server waits for the rest
        h = v1()
        s.sendall(h[:9])
        time.sleep(0.2)
        s.sendall(h[9:])
        time.sleep(0.1)
        s.sendall(b"GET /v HTTP/1.1\r\nHost: x\r\n\r\n")
        s.sendall(b"GET /v HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    rs = parse_responses(data)
    assert [r.status for r in rs] == [200, 200]
    for r in rs:
        assert fields(r.body)["r"] == "192.0.2.10"


def test_broken_header_closes_connection(portico):
    p = portico(conf())
    # no header at all: a plain request
    assert exchange(p.port, GET) == b""
    assert wait_log(p, "broken header")
    # malformed v1 lines and a bad v2 version
    for bad in (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n", b"PROXY TCP4 1.2.3\r\n",
                b"PROXY " + b"x" * 120, SIG + bytes([0x11, 0x11, 0, 12]) + b"\0" * 12):
        assert exchange(p.port, bad + GET) == b"", bad
    # the server still serves good clients
    assert one(exchange(p.port, v1() + GET)).status == 200


def test_incomplete_header_times_out(portico):
    p = portico(conf())
    s = socket.create_connection(("127.0.0.1", p.port), timeout=15)
    try:
        s.sendall(b"PROXY TCP4 1.2.3.4 ")
        start = time.monotonic()
        assert s.recv(100) == b""          # closed by client_header_timeout (2s)
        assert time.monotonic() - start < 12
    except ConnectionResetError:
        pass
    finally:
        s.close()
    assert wait_log(p, "while reading PROXY protocol")


def test_half_closed_incomplete_header(portico):
    p = portico(conf())
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        s.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 1")
        s.shutdown(socket.SHUT_WR)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        s.close()
    assert wait_log(p, "broken header")


def test_tls_after_header(portico, tls_files):
    p = portico(conf(extra_listen="ssl", server_extra="ssl_certificate %s; ssl_certificate_key %s;"
                     % (tls_files.cert_path, tls_files.key_path)))
    ctx = tls_files.client_context()
    for header, want in ((v1(), "192.0.2.10"), (v2(), "203.0.113.9"), (v2_local(), "127.0.0.1")):
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        raw.sendall(header)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        try:
            s.sendall(GET)
            data = b""
            while True:
                try:
                    b = s.recv(65536)
                except (ssl.SSLEOFError, ConnectionResetError):
                    break
                if not b:
                    break
                data += b
        finally:
            s.close()
        f = fields(one(data).body)
        assert f["r"] == want and f["rr"] == "127.0.0.1", (header, f)
    # a TLS ClientHello without the header is a broken header: closed
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.close()
        assert False, "handshake without a PROXY header succeeded"
    except (ssl.SSLError, ConnectionResetError, OSError):
        pass
    finally:
        raw.close()
    assert wait_log(p, "broken header")


def h2c_get(port, header, path="/v"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(header)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=cfg)
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                (":authority", "x")], end_stream=True)
        s.sendall(conn.data_to_send())
        status, body, ended = None, b"", False
        deadline = time.monotonic() + 10
        while not ended and time.monotonic() < deadline:
            b = s.recv(65536)
            if not b:
                break
            for ev in conn.receive_data(b):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
            out = conn.data_to_send()
            if out:
                s.sendall(out)
        return status, body
    finally:
        s.close()


def test_h2c_after_header(portico):
    p = portico(conf(server_extra="http2 on;"))
    status, body = h2c_get(p.port, v2())
    assert status == "200"
    f = fields(body)
    assert f["a"] == "203.0.113.9" and f["r"] == "203.0.113.9"
    status, body = h2c_get(p.port, v1("192.0.2.77"))
    assert status == "200" and fields(body)["r"] == "192.0.2.77"
    # HTTP/1.1 still works on the same socket after a header
    assert fields(one(exchange(p.port, v1() + GET)).body)["r"] == "192.0.2.10"
