#!/bin/sh
# Prints every directive registered in a module's pt_command_t table, read
# from the sources (no build needed), in modules.c order.
#
#   docs/internals/list-directives.sh          tab-separated:
#       directive  module  file  contexts  args  setter
#   docs/internals/list-directives.sh --md     one Markdown table per module
#   docs/internals/list-directives.sh --names  directive names only, sorted, unique
#
# Contexts: main events http server location upstream if(server) if(location)
# limit_except match. Args: "min-max" after the name ("1-*" = no upper limit),
# "flag" for on|off directives, "block" is appended for directives taking { }.
# A setter of pt_conf_set_ignored (or a module's own *_ignored) marks a
# directive that is accepted and has no effect.
#
# Run from anywhere inside the repository. Needs python3 (any 3.x).
cd "$(dirname "$0")/../.." || exit 1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" - "$@" <<'PYEOF'
import os, re, sys

mode = sys.argv[1] if len(sys.argv) > 1 else "--tsv"
BASE = {
    "PT_CTX_MAIN": 0x1, "PT_CTX_EVENTS": 0x2, "PT_CTX_HTTP": 0x4, "PT_CTX_SRV": 0x8,
    "PT_CTX_LOC": 0x10, "PT_CTX_UPS": 0x20, "PT_CTX_SIF": 0x40, "PT_CTX_LIF": 0x80,
    "PT_CTX_LMT": 0x100, "PT_CTX_MATCH": 0x200,
}
BASE["PT_CTX_HTTP_ANY"] = 0x4 | 0x8 | 0x10
NAMES = [(0x1, "main"), (0x2, "events"), (0x4, "http"), (0x8, "server"), (0x10, "location"),
         (0x20, "upstream"), (0x40, "if(server)"), (0x80, "if(location)"),
         (0x100, "limit_except"), (0x200, "match")]

def strip_comments(s):
    s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
    return re.sub(r"//[^\n]*", " ", s)

def ctx_value(expr, defs):
    v = 0
    for tok in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|0x[0-9a-fA-F]+", expr):
        if tok in BASE:
            v |= BASE[tok]
        elif tok in defs:
            v |= ctx_value(defs[tok], defs)
    return v

def split_top(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip()); cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out

# modules.c order: module variable -> position
order = {}
mc = open("src/modules/modules.c").read()
body = mc[mc.index("pt_modules[] = {"):]
for i, m in enumerate(re.findall(r"&(\w+)", body)):
    order[m] = i

rows = []
for root, _, files in os.walk("src"):
    for fn in sorted(files):
        if not fn.endswith(".c"):
            continue
        path = os.path.join(root, fn)
        src = strip_comments(open(path).read())
        defs = dict(re.findall(r"^\s*#define\s+(\w+)\s+(.+)$", src, flags=re.M))
        tables = {}
        for m in re.finditer(r"pt_command_t\s+(\w+)\s*\[\]\s*=\s*\{(.*?)PT_COMMAND_END", src, flags=re.S):
            tables[m.group(1)] = m.group(2)
        if not tables:
            continue
        # which module uses which table
        mods = {}
        for m in re.finditer(r"pt_module_t\s+(\w+)\s*=\s*\{(.*?)\};", src, flags=re.S):
            name = re.search(r"\.name\s*=\s*\"([^\"]+)\"", m.group(2))
            cmds = re.search(r"\.commands\s*=\s*(\w+)", m.group(2))
            if cmds:
                mods[cmds.group(1)] = (m.group(1), name.group(1) if name else m.group(1))
        for tname, tbody in tables.items():
            var, mname = mods.get(tname, ("?", "?"))
            for ent in re.findall(r"\{\s*(\"[^\"]+\".*?)\}", tbody, flags=re.S):
                f = split_top(ent)
                if len(f) < 7:
                    continue
                name = f[0].strip('"')
                ctx = ctx_value(f[1], defs)
                flags = f[2]
                lo, hi = f[3], f[4]
                setter = f[5]
                hi = "*" if hi == "PT_ARGS_ANY" else hi
                if "PT_CONF_FLAG" in flags:
                    args = "flag"
                else:
                    args = lo if lo == hi else "%s-%s" % (lo, hi)
                if "PT_CONF_BLOCK" in flags:
                    args += " block"
                ctxs = ",".join(n for b, n in NAMES if ctx & b)
                rows.append((order.get(var, 999), name, mname, path, ctxs, args, setter))

rows.sort(key=lambda r: r[0])   # stable: table order within a module
if mode == "--names":
    for n in sorted(set(r[1] for r in rows)):
        print(n)
elif mode == "--md":
    cur = None
    for _, name, mname, path, ctxs, args, setter in rows:
        if mname != cur:
            cur = mname
            print("\n### %s (`%s`)\n" % (mname, path))
            print("| directive | contexts | args | setter |")
            print("|---|---|---|---|")
        print("| `%s` | %s | %s | `%s` |" % (name, ctxs, args, setter))
else:
    for _, name, mname, path, ctxs, args, setter in rows:
        print("\t".join((name, mname, path, ctxs, args, setter)))
PYEOF
