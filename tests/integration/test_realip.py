"""The realip module: X-Real-IP (default), X-Forwarded-For with and without
recursion, custom headers, ports, untrusted peers, $realip_remote_addr, the
access module and logs seeing the real address, and the original address
coming back for the next request on a keep-alive connection."""

import http.client
import time

from conftest import http_get


def conf(server_body, http_extra=""):
    return '''
http {
    %s
    server {
        listen 127.0.0.1:@PORT@;
        %s
        location / { return 200 "$remote_addr|$remote_port|$realip_remote_addr"; }
        location /loc {
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Loc;
            stub_status;
            deny 9.9.9.9;
        }
    }
}''' % (http_extra, server_body)


def addr(p, headers, path="/"):
    return http_get(p.url(path=path), headers=headers).body.decode().split("|")


def test_x_real_ip_default(portico):
    p = portico(conf('set_real_ip_from 127.0.0.1;'))
    a = addr(p, {"X-Real-IP": "203.0.113.7"})
    assert a[0] == "203.0.113.7" and a[1] == "" and a[2] == "127.0.0.1"
    a = addr(p, {})
    assert a[0] == "127.0.0.1" and a[1] != ""


def test_x_forwarded_for_last_address(portico):
    p = portico(conf('set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;'))
    assert addr(p, {"X-Forwarded-For": "1.1.1.1, 2.2.2.2"})[0] == "2.2.2.2"
    assert addr(p, {"X-Forwarded-For": "garbage"})[0] == "127.0.0.1"


def test_x_forwarded_for_recursive(portico):
    p = portico(conf('''
        set_real_ip_from 127.0.0.1;
        set_real_ip_from 2.2.2.0/24;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;'''))
    assert addr(p, {"X-Forwarded-For": "1.1.1.1, 2.2.2.2"})[0] == "1.1.1.1"
    assert addr(p, {"X-Forwarded-For": "5.5.5.5, 1.1.1.1, 2.2.2.9"})[0] == "1.1.1.1"
    # every address trusted: the leftmost
    assert addr(p, {"X-Forwarded-For": "2.2.2.3, 2.2.2.2"})[0] == "2.2.2.3"


def test_untrusted_peer_unchanged(portico):
    p = portico(conf('set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For;'))
    assert addr(p, {"X-Forwarded-For": "1.1.1.1"})[0] == "127.0.0.1"


def test_port_and_ipv6_in_header(portico):
    p = portico(conf('set_real_ip_from 127.0.0.1;'))
    a = addr(p, {"X-Real-IP": "198.51.100.1:5555"})
    assert a[0] == "198.51.100.1" and a[1] == "5555"
    a = addr(p, {"X-Real-IP": "[2001:db8::1]:8080"})
    assert a[0] == "2001:db8::1" and a[1] == "8080"
    a = addr(p, {"X-Real-IP": "2001:db8::2"})
    assert a[0] == "2001:db8::2"


def test_custom_header_in_location_and_access(portico):
    p = portico(conf(''))
    assert http_get(p.url(path="/loc"), headers={"X-Loc": "9.9.9.9"}).status == 403
    assert http_get(p.url(path="/loc"), headers={"X-Loc": "8.8.8.8"}).status == 200
    assert http_get(p.url(path="/loc")).status == 200


def test_logs_and_keepalive(portico):
    p = portico(conf('set_real_ip_from 127.0.0.1;',
                     "log_format ip '$remote_addr $realip_remote_addr $uri';"
                     " access_log logs/ip.log ip;"))
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        c.request("GET", "/first", headers={"X-Real-IP": "192.0.2.5"})
        assert c.getresponse().read().startswith(b"192.0.2.5|")
        c.request("GET", "/second")
        assert c.getresponse().read().startswith(b"127.0.0.1|")
    finally:
        c.close()
    for _ in range(50):
        if "/second" in p.access_log("logs/ip.log"):
            break
        time.sleep(0.05)
    lines = p.access_log("logs/ip.log").splitlines()
    assert lines == ["192.0.2.5 127.0.0.1 /first", "127.0.0.1 127.0.0.1 /second"], lines
