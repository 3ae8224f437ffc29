# Generates seeds for fuzz_h2_frames: frames a client sends AFTER the preface
# and its first SETTINGS (the harness sends those). Byte 0 is the harness's
# control byte (bit 0: read everything; bits 1-7: where to split).
import os, sys, h2.connection, h2.config, h2.events
out = sys.argv[1]

def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    c.data_to_send()          # preface + SETTINGS: sent by the harness
    return c

def hdrs(path, method="GET", extra=()):
    return [(":method", method), (":path", path), (":scheme", "http"),
            (":authority", "h2.fuzz")] + list(extra)

def write(name, ctl, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([ctl]) + data)

c = client(); c.send_headers(1, hdrs("/"), end_stream=True)
write("get", 0x01, c.data_to_send())

c = client()
for i in range(1, 12, 2):
    c.send_headers(i, hdrs("/q%d" % i), end_stream=True)
write("multi_get", 0x41, c.data_to_send())

c = client(); c.send_headers(1, hdrs("/echo", "POST", [("content-length", "11")]))
c.send_data(1, b"hello"); c.send_data(1, b" world", end_stream=True)
write("post_echo", 0x81, c.data_to_send())

c = client(); c.send_headers(1, hdrs("/echo", "POST"))
c.send_data(1, b"x" * 100, end_stream=True)
write("post_no_cl", 0x21, c.data_to_send())

c = client(); c.send_headers(1, hdrs("/big"), end_stream=True)
c.increment_flow_control_window(1 << 20); c.increment_flow_control_window(1 << 20, stream_id=1)
write("big_window", 0x01, c.data_to_send())

c = client(); c.send_headers(1, hdrs("/big"), end_stream=True)
write("big_stalled", 0x00, c.data_to_send())

c = client()
for i in range(1, 40, 2):
    c.send_headers(i, hdrs("/q"), end_stream=True); c.reset_stream(i)
write("rapid_reset", 0x11, c.data_to_send())

c = client(); c.send_headers(1, hdrs("/echo", "POST"))
c.reset_stream(1); c.send_headers(3, hdrs("/x", extra=[("cookie", "a=1"), ("cookie", "b=2"), ("x-long", "v" * 3000)]), end_stream=True)
c.ping(b"12345678"); c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
write("reset_cookie_ping_settings", 0x61, c.data_to_send())

c = client(); c.send_headers(1, hdrs("/q"), end_stream=True); c.close_connection()
write("goaway", 0x01, c.data_to_send())

c = client(); c.send_headers(1, hdrs("/q", extra=[("x-a", "1")]), end_stream=True, priority_weight=200, priority_depends_on=0)
write("priority", 0x01, c.data_to_send())
