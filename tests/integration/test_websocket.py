"""WebSockets (and any Upgrade) through the proxy: the guides' map, text,
binary, ping/pong and close frames untouched, idle timeouts, a tunnel
surviving a graceful reload."""

import asyncio
import socket
import time

import pytest

from conftest import http_get, raw_request, parse_responses, Backend

WS_CONF = """
    http {
        map $http_upgrade $connection_upgrade {
            default upgrade;
            ''      close;
        }
        server {
            listen 127.0.0.1:@PORT@;
            location /ws/ {
                proxy_pass http://%s;
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection $connection_upgrade;
                proxy_set_header Host $host;
                proxy_read_timeout %s;
                proxy_send_timeout %s;
            }
        }
    }"""


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_websocket_echo(portico, ws_echo_backend):
    import websockets
    p = portico(WS_CONF % (ws_echo_backend.addr, "3600s", "86400s"))

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/ws/chat" % p.port) as ws:
            await ws.send("hello text")
            assert await ws.recv() == "hello text"
            blob = bytes(range(256)) * 300
            await ws.send(blob)
            assert await ws.recv() == blob
            pong = await ws.ping(b"pingdata")
            await asyncio.wait_for(pong, 5)
            for i in range(50):
                await ws.send("m%d" % i)
            for i in range(50):
                assert await ws.recv() == "m%d" % i
            await ws.close(code=1000, reason="bye")
            return ws.close_code
    assert run(go()) == 1000
    hdrs = dict((k.lower(), v) for k, v in ws_echo_backend.requests[-1]["headers"])
    assert hdrs["upgrade"].lower() == "websocket"
    assert "upgrade" in hdrs["connection"].lower()
    assert "sec-websocket-key" in hdrs


def test_plain_request_through_ws_location(portico, echo_backend):
    """Without Upgrade the map gives Connection: close."""
    p = portico(WS_CONF % (echo_backend.addr, "60s", "60s"))
    r = http_get(p.url(path="/ws/x"))
    assert r.status == 200
    assert echo_backend.last.header("connection") == "close"
    assert echo_backend.last.header("upgrade") is None


def test_raw_upgrade_tunnel_both_ways(portico, backends):
    """Any Upgrade: after the 101 the bytes flow both ways as they are."""
    def h(req, c, b):
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"
                  b"server-first")
        c.settimeout(5)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(b"<" + d + b">")
        from conftest import _Close
        raise _Close()
    b = backends(h)
    p = portico(WS_CONF % (b.addr, "5s", "5s"))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(5)
    s.sendall(b"GET /ws/ HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n")
    data = b""
    while b"server-first" not in data:
        d = s.recv(4096)
        assert d, data
        data += d
    assert data.startswith(b"HTTP/1.1 101")
    assert b"Upgrade: foo" in data
    assert b"Connection: upgrade" in data
    s.sendall(b"abc")
    got = b""
    while b"<abc>" not in got:
        d = s.recv(4096)
        assert d
        got += d
    s.close()


def test_tunnel_idle_timeout(portico, ws_echo_backend):
    import websockets
    p = portico(WS_CONF % (ws_echo_backend.addr, "1s", "1s"))

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/ws/" % p.port,
                                      ping_interval=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 20)
            except websockets.ConnectionClosed:
                return time.monotonic() - t0
            return None
    dt = run(go())
    assert dt is not None and 0.7 < dt < 15     # 1 s nominal


@pytest.mark.timeout(60)
def test_tunnel_survives_reload(portico, ws_echo_backend):
    import websockets
    conf = WS_CONF % (ws_echo_backend.addr, "3600s", "3600s")
    p = portico(conf)

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/ws/" % p.port,
                                      ping_interval=None) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            await asyncio.get_running_loop().run_in_executor(None, p.reload, conf)
            await asyncio.sleep(0.5)
            await ws.send("after reload")
            assert await ws.recv() == "after reload"
            # new connections go to the new workers
            async with websockets.connect("ws://127.0.0.1:%d/ws/" % p.port) as ws2:
                await ws2.send("new")
                assert await ws2.recv() == "new"
            return True
    assert run(go())


@pytest.mark.timeout(60)
def test_tunnel_ended_by_worker_shutdown_timeout(portico, ws_echo_backend):
    import websockets
    conf = ("worker_shutdown_timeout 1s;\n" +
            WS_CONF % (ws_echo_backend.addr, "3600s", "3600s"))
    p = portico(conf)

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/ws/" % p.port,
                                      ping_interval=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await asyncio.get_running_loop().run_in_executor(None, p.reload, conf)
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed:
                return time.monotonic() - t0
            return None
    dt = run(go())
    assert dt is not None and dt < 20         # 1 s nominal; the tunnel's own timeout is 3600 s


def test_tunnel_logged_when_it_ends(portico, ws_echo_backend):
    import websockets
    conf = WS_CONF % (ws_echo_backend.addr, "3600s", "3600s")
    conf = conf.replace("server {", """log_format tun '$status $request_time $upstream_addr $bytes_sent';
        server {
            access_log logs/tun.log tun;""", 1)
    p = portico(conf)

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/ws/" % p.port,
                                      ping_interval=None) as ws:
            import base64
            import os as _os
            msg = base64.b64encode(_os.urandom(3000)).decode()   # incompressible
            await ws.send(msg)
            assert await ws.recv() == msg
            await asyncio.sleep(0.6)
            assert p.access_log("logs/tun.log") == ""     # not logged while open
    run(go())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not p.access_log("logs/tun.log"):
        time.sleep(0.05)
    status, rt, addr, sent = p.access_log("logs/tun.log").split()
    assert status == "101"
    assert float(rt) >= 0.5
    assert addr == ws_echo_backend.addr
    assert int(sent) > 1000
