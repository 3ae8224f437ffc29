#!/usr/bin/python3
"""Regenerates seedN_partM.conf and README.md from the five guides in
../../../../shared/seeds/*.txt (or $SEEDS_DIR).

Each snippet is cut from its guide by line range, then placed where nginx's
include context would put it (a server block inside http { }, location
blocks inside a server, directives inside a location...), with host paths
rewritten into the test prefix (@PREFIX@ is replaced by test_seeds.py).
Where a snippet only makes sense with something defined elsewhere in the same
guide (an upstream, a zone, a certificate), that context is added and marked
`# context added:`. Run: /usr/bin/python3 tests/integration/seeds/extract.py
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS_DIR = os.environ.get("SEEDS_DIR") or os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "..", "shared", "seeds"))

GUIDES = {
    0: "000_9ff133ca527790a4.txt",
    1: "001_ac7aa466008b6cb9.txt",
    2: "002_64b59830e3aa3c08.txt",
    3: "003_97588aec12a140a2.txt",
    4: "004_fec65c54a981e446.txt",
}

# (guide, part, section, [line ranges], wrap, context-before, uncomment)
# wrap: "main" (snippet already has http {}), "http", "server", "location",
#       "mixed" (ranges is a list of (range, wrap) pairs)
# context: list of (guide, (a, b), wrap, why) added around the snippet
SPEC = [
    (0, 1, "Part 1: Basic Reverse Proxy — Single Backend (sites-available/myapp)", [(26, 49)], "http", []),
    (0, 2, "Part 2: SSL Termination, manual configuration (sites-available/myapp-ssl)", [(115, 154)], "http", []),
    (0, 3, "Part 3: Load Balancing with Upstream Blocks (sites-available/loadbalanced-app)", [(168, 195)], "http", []),
    (0, 4, "Part 4: WebSocket Proxying (location block)", [(230, 243)], "server", []),
    (0, 5, "Part 5: Rate Limiting (conf.d/rate-limiting.conf)", [(248, 255)], "http", []),
    (0, 6, "Part 5: Rate Limiting (locations appended to sites-available/myapp)", [(259, 279)], "server",
     [(0, (253, 255), "http", "zones from conf.d/rate-limiting.conf of the same part")]),
    (0, 7, "Part 6: Proxy Caching (conf.d/proxy-cache.conf)", [(295, 305)], "http", []),
    (0, 8, "Part 6: Proxy Caching (location appended to sites-available/myapp)", [(311, 323)], "server",
     [(0, (300, 305), "http", "proxy_cache_path from conf.d/proxy-cache.conf of the same part")]),
    (0, 9, "Part 7: Complete Production Config (sites-available/production-proxy)", [(337, 409)], "http", []),
    (0, 10, "Troubleshooting: 413 Request Entity Too Large (server or location)", [(426, 426)], "server", []),
    (0, 11, "Troubleshooting: application sees 127.0.0.1 (location block lines)", [(430, 432)], "location", []),

    (1, 1, "Basic Reverse Proxy Configuration: Single Backend Proxy (conf.d/app.conf)", [(82, 93)], "http", []),
    (1, 2, "Multiple Domains on One Server (conf.d/api.conf)", [(116, 128)], "http", []),
    (1, 3, "Multiple Domains on One Server (conf.d/blog.conf)", [(130, 142)], "http", []),
    (1, 4, "Path-Based Routing", [(150, 172)], "http", []),
    (1, 5, "SSL Termination with Let's Encrypt (the config Certbot produces)", [(191, 215)], "http", []),
    (1, 6, "Load Balancing Across Multiple Backends", [(225, 242)], "http", []),
    (1, 7, "WebSocket Proxying (map + server)", [(255, 272)], "http", []),
    (1, 8, "Verifying Your Proxy Is Working, step 6: conf.d/status.conf (commented out in the guide)",
     [(303, 311)], "http-uncomment", []),
    (1, 9, "Production Hardening: Security Headers", [(350, 353)], "server", []),
    (1, 10, "Production Hardening: Rate Limiting (http part + location part)",
     [((359, 360), "http"), ((362, 366), "server")], "mixed",
     [(1, (225, 230), "http", "upstream \"backend\" from Load Balancing (proxy_pass http://backend)")]),
    (1, 11, "Production Hardening: Hide Nginx Version", [(374, 375)], "http", []),
    (1, 12, "Troubleshooting: upstream sent too big header", [(389, 394)], "server", []),
    (1, 13, "Troubleshooting: WebSocket Connections Dropping After 60 Seconds", [(404, 405)], "location", []),
    (1, 14, "Troubleshooting: Redirect Loop After Enabling HTTPS", [(415, 416)], "location", []),

    (2, 1, "Configure Basic Reverse Proxy", [(45, 59)], "http", []),
    (2, 2, "Round-Robin Load Balancing", [(133, 155)], "http", []),
    (2, 3, "Least Connections Method", [(167, 173)], "http", []),
    (2, 4, "IP Hash for Session Persistence", [(179, 185)], "http", []),
    (2, 5, "Weighted Load Balancing", [(193, 200)], "http", []),
    (2, 6, "Complete SSL Reverse Proxy Configuration", [(235, 275)], "http", []),
    (2, 7, "Redirect HTTP to HTTPS", [(285, 292)], "http", []),
    (2, 8, "Configure WebSocket Proxy", [(310, 339)], "http", []),
    (2, 9, "Prevent Open Proxy Misconfiguration (the DANGEROUS example)", [(374, 377)], "server", []),
    (2, 10, "Implement Rate Limiting", [(385, 403)], "http",
     [(2, (133, 137), "http", "upstream backend_servers from Round-Robin Load Balancing")]),
    (2, 11, "Troubleshooting: 504 Gateway Timeout Error", [(432, 445)], "server",
     [(2, (133, 137), "http", "upstream backend_servers from Round-Robin Load Balancing")]),
    (2, 12, "Troubleshooting: Backend Receives Wrong Hostname", [(455, 455)], "location", []),

    (3, 1, "Part 1 — Basic Reverse Proxy Setup (sites-available/myapp)", [(83, 104)], "http", []),
    (3, 2, "Part 2 — Domain-Based Routing (api.myapp.com)", [(114, 122)], "http", []),
    (3, 3, "Part 2 — Domain-Based Routing (dashboard.myapp.com)", [(125, 133)], "http", []),
    (3, 4, "Part 2 — the shared proxy_params file (its content in a location)", [(138, 146)], "location", []),
    (3, 5, "Part 3 — Path-Based Routing", [(155, 185)], "http", []),
    (3, 6, "Part 4 — Load Balancing Across Multiple Backends", [(194, 209)], "http", []),
    (3, 7, "Part 4 — Load balancing algorithms: least_conn", [(213, 219)], "http", []),
    (3, 8, "Part 4 — Load balancing algorithms: ip_hash", [(220, 226)], "http", []),
    (3, 9, "Part 4 — Marking a backend as backup", [(230, 234)], "http", []),
    (3, 10, "Part 5 — WebSocket Support", [(240, 259)], "http", []),
    (3, 11, "Part 6 — Proxy Caching: cache zone in nginx.conf's http block", [(270, 271)], "http", []),
    (3, 12, "Part 6 — Proxy Caching: server config", [(275, 302)], "http",
     [(3, (270, 271), "http", "proxy_cache_path from the same part")]),
    (3, 13, "Part 7 — Rate limiting (http part + server part)",
     [((315, 316), "http"), ((318, 322), "server")], "mixed", []),
    (3, 14, "Part 7 — Security headers", [(328, 337)], "http", []),
    (3, 15, "Part 8 — HTTPS Termination", [(343, 362)], "http", []),
    (3, 16, "The Gotcha: X-Forwarded-For and Real IP (log_format main)", [(385, 387)], "http", []),
    (3, 17, "Proxy Configuration Reference (location template)", [(391, 420)], "server", []),

    (4, 1, "Reverse Proxy Basics", [(14, 28)], "http", []),
    (4, 2, "Reverse Proxy Basics: reasonable timeouts", [(31, 36)], "http", []),
    (4, 3, "SSL Termination with Let's Encrypt (after Certbot runs)", [(47, 66)], "http", []),
    (4, 4, "Load Balancing Algorithms (upstream app_cluster + server)", [(70, 84)], "http",
     [(4, (50, 51), "server:app.example.com",
       "certificate from the Certbot server block: nginx refuses \"listen ... ssl\" without one")]),
    (4, 5, "Round-Robin (Default) with weights", [(87, 91)], "http", []),
    (4, 6, "Least Connections (least_conn)", [(95, 100)], "http", []),
    (4, 7, "IP Hash (ip_hash)", [(103, 108)], "http", []),
    (4, 8, "Random (random two least_conn)", [(111, 116)], "http", []),
    (4, 9, "Upstream Health Checks", [(120, 125)], "http", []),
    (4, 10, "WebSocket Proxying (location)", [(130, 140)], "server",
     [(4, (70, 74), "http", "upstream app_cluster from Load Balancing Algorithms")]),
    (4, 11, "Caching with proxy_cache: cache zone (http block as written)", [(145, 152)], "main", []),
    (4, 12, "Caching with proxy_cache: location", [(154, 161)], "server",
     [(4, (146, 151), "http", "proxy_cache_path from the same section"),
      (4, (70, 74), "http", "upstream app_cluster from Load Balancing Algorithms")]),
    (4, 13, "Caching with proxy_cache: bypass for authenticated requests", [(164, 165)], "location", []),
    (4, 14, "Rate Limiting: zone (http block as written)", [(168, 170)], "main", []),
    (4, 15, "Rate Limiting: location", [(172, 176)], "server",
     [(4, (169, 169), "http", "zone api_limit from the same section"),
      (4, (70, 74), "http", "upstream app_cluster from Load Balancing Algorithms")]),
    (4, 16, "Rate Limiting: login zone (http block as written)", [(179, 181)], "main", []),
    (4, 17, "Rate Limiting: login location", [(182, 186)], "server",
     [(4, (180, 180), "http", "zone login_limit from the same section"),
      (4, (70, 74), "http", "upstream app_cluster from Load Balancing Algorithms")]),
    (4, 18, "Security Headers (server block)", [(189, 206)], "http", []),
    (4, 19, "HTTP/2: listen directive", [(211, 211)], "server",
     [(4, (50, 51), "server:app.example.com",
       "certificate from the Certbot server block: nginx refuses \"listen ... ssl\" without one")]),
    (4, 20, "HTTP/3 (QUIC)", [(217, 223)], "http", []),
    (4, 21, "Monitoring with stub_status", [(227, 234)], "http", []),
    (4, 22, "Real-World Scenario, Step 1: upstream node_api", [(263, 268)], "http", []),
    (4, 23, "Real-World Scenario, Step 2: zones and server blocks", [(270, 320)], "http",
     [(4, (263, 268), "http", "upstream node_api from Step 1")]),
    (4, 24, "Gotchas: X-Forwarded-For spoofing (realip)", [(335, 336)], "http", []),
]

REWRITES = [
    ("/etc/letsencrypt/", "@PREFIX@/letsencrypt/"),
    ("/etc/nginx/proxy_params", "@PREFIX@/conf/proxy_params"),
    ("/var/log/nginx/", "@PREFIX@/logs/"),
    ("/var/cache/nginx", "@PREFIX@/cache/nginx"),
    ("/var/www/", "@PREFIX@/www/"),
    ("/opt/myapp/", "@PREFIX@/opt/myapp/"),
    # nginx resolves upstream host names at configuration time; this
    # machine has no DNS, so the guide's example hosts become loopback addresses
    ("app1.example.com:3000", "127.0.0.2:3000"),
    ("app2.example.com:3000", "127.0.0.3:3000"),
]


def guide_lines(g):
    with open(os.path.join(SEEDS_DIR, GUIDES[g]), encoding="utf-8") as f:
        return f.read().split("\n")


def cut(g, a, b):
    ls = guide_lines(g)[a - 1:b]
    text = "\n".join(ls)
    for old, new in REWRITES:
        text = text.replace(old, new)
    return text


def indent(text, n):
    pad = " " * n
    return "\n".join(pad + ln if ln.strip() else ln for ln in text.split("\n"))


def wrap(text, how):
    if how == "main":
        return text
    if how == "http":
        return "http {\n%s\n}" % indent(text, 4)
    if how == "server":
        listen = "" if re.search(r"^\s*listen\s", text, re.M) else "        listen 80;\n"
        return "http {\n    server {\n%s%s\n    }\n}" % (listen, indent(text, 8))
    if how == "location":
        return ("http {\n    server {\n        listen 80;\n        location / {\n%s\n"
                "        }\n    }\n}" % indent(text, 12))
    raise ValueError(how)


def uncomment(text):
    out = []
    for ln in text.split("\n"):
        if re.match(r"^#\s*(server|listen|location|stub_status|allow|deny|\})", ln):
            out.append(re.sub(r"^# ?", "", ln))
        else:
            out.append(ln)
    return "\n".join(out)


def build(entry):
    g, part, section, ranges, how, context = entry
    http_ctx, server_ctx = [], []
    for cg, (a, b), where, why in context:
        block = "# context added: %s (%s lines %d-%d)\n%s" % (why, GUIDES[cg], a, b, cut(cg, a, b))
        if where == "http":
            http_ctx.append(block)
        else:
            server_ctx.append((where.split(":", 1)[1], block))
    if how == "mixed":
        http_parts = [cut(g, a, b) for (a, b), w in ranges if w == "http"]
        server_parts = [cut(g, a, b) for (a, b), w in ranges if w == "server"]
        body = "http {\n%s\n    server {\n        listen 80;\n%s\n    }\n}" % (
            indent("\n".join(http_ctx + http_parts), 4), indent("\n".join(server_parts), 8))
        lines = ", ".join("%d-%d" % r for r, _ in ranges)
    else:
        text = "\n".join(cut(g, a, b) for a, b in ranges)
        if how == "http-uncomment":
            text, how = uncomment(text), "http"
        # certificates added into the snippet's own ssl server blocks
        for name, block in server_ctx:
            text = re.sub(r"(listen[^;\n]*\bssl\b[^;\n]*;)", lambda m: m.group(1) + "\n"
                          + indent(block, 0), text, count=1)
        if how == "main":
            body = text
        else:
            body = wrap(text, how)
        if http_ctx:
            # put the context at the start of the http block
            ctx = indent("\n".join(http_ctx), 4)
            body = body.replace("http {\n", "http {\n" + ctx + "\n", 1)
        lines = ", ".join("%d-%d" % r for r in ranges)
    header = ("# Seed snippet: %s, section \"%s\", lines %s.\n"
              "# Placed in context: %s. Generated by extract.py; @PREFIX@ is the test prefix.\n"
              % (GUIDES[g], section, lines, how))
    return header + "events { }\n" + body + "\n", lines


def main():
    rows = []
    for entry in SPEC:
        g, part = entry[0], entry[1]
        name = "seed%d_part%d.conf" % (g, part)
        text, lines = build(entry)
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            f.write(text)
        ctx = "; ".join("+ %s" % c[3] for c in entry[5])
        rows.append("| %s | %s | %s | %s | %s |" % (name, GUIDES[g], entry[2], lines,
                                                   entry[4] + (" " + ctx if ctx else "")))
    with open(os.path.join(HERE, "README.md"), "w", encoding="utf-8") as f:
        f.write(README_HEAD + "\n".join(rows) + "\n")
    print("wrote %d snippets" % len(SPEC))


README_HEAD = """# Seed configurations

Every nginx configuration snippet of the five guides in `shared/seeds/*.txt`,
one file per snippet, made standalone so `portico -t` can check it
(`tests/integration/test_seeds.py`). Regenerate with
`/usr/bin/python3 tests/integration/seeds/extract.py` (reads `../shared/seeds`
or `$SEEDS_DIR`).

How a snippet is made standalone:
- `events { }` is added; the snippet goes where nginx's include would put it:
  a file of `server`/`upstream`/`map`/zone lines inside `http { }`; location
  blocks inside `http { server { listen 80; ... } }`; bare directives of a
  location inside `location / { }`. Snippets that already are an `http { }`
  block are kept as written (`main`).
- Paths are moved into the test prefix: `/etc/letsencrypt/` ->
  `@PREFIX@/letsencrypt/` (test_seeds.py creates a self-signed
  `fullchain.pem`/`privkey.pem` for every domain, certbot's usual
  `options-ssl-nginx.conf`, and `ssl-dhparams.pem` = the RFC 7919 ffdhe2048
  group, which is what certbot ships), `/etc/nginx/proxy_params` ->
  `@PREFIX@/conf/proxy_params` (the guide's own content, seed3 Part 2),
  `/var/log/nginx/` -> `@PREFIX@/logs/`, `/var/cache/nginx` ->
  `@PREFIX@/cache/nginx` (created, as the guides do with `mkdir -p`),
  `/var/www/` and `/opt/myapp/` -> under `@PREFIX@`.
- Upstream host names `app1/app2.example.com` become 127.0.0.2/127.0.0.3
  (nginx resolves them at configuration time; there is no DNS here).
- Ports are kept as written: `-t` does not bind.
- Where a snippet uses a name defined elsewhere in the same guide (upstream,
  zone, cache zone, certificate), that definition is added and marked
  `# context added:` in the file.
- seed1_part8 is commented out in the guide (`# server { ...`); it is
  uncommented here.

| file | guide | section | lines | context |
|---|---|---|---|---|
"""

if __name__ == "__main__":
    sys.exit(main())
