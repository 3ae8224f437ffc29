"""Regressions found in code review (lifetime on error paths)."""
import socket
import time

import h2.config
import h2.connection

from conftest import http_get


def _h2_open_stream(port, path="/"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "http"),
                          (":authority", "localhost")], end_stream=True)
    s.sendall(conn.data_to_send())
    return s


def test_h2_client_closes_while_proxying(portico, slow_backend):
    """An HTTP/2 connection closed while a stream waits for its backend: the
    upstream side (connection, timers, peer) must end with the request, not
    fire later on the freed request pool."""
    b = slow_backend(1.0)
    p = portico('''
        http {
            server {
                listen 127.0.0.1:@PORT@ http2;
                location / { proxy_pass http://127.0.0.1:@BPORT@; proxy_read_timeout 3s; }
            }
        }''', subst={"BPORT": b.port})
    for _ in range(3):
        s = _h2_open_stream(p.port)
        time.sleep(0.2)          # the stream is waiting for the backend
        s.close()
    time.sleep(1.5)              # the backend answers on the orphaned connections
    s = _h2_open_stream(p.port)
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()                    # reset: EOF with an error
    time.sleep(3.5)              # past proxy_read_timeout
    r = http_get(p.url())
    assert r.status == 200
    log = p.error_log()
    assert "AddressSanitizer" not in log and "AddressSanitizer" not in p.stderr_text()
