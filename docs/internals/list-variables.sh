#!/bin/sh
# Prints every built-in variable the sources register, read from the code
# (no build needed):
#   - the core tables of src/http/variables.c (builtin_vars, builtin_prefixes);
#   - each other file's registrations: the names used by functions that call
#     pt_http_var_add() (pt_string("name") or { "name", ... } entries).
# Output, tab-separated: $name  file  kind ("var" or "prefix" for a family
# such as $http_NAME). Names registered by configuration (map, set) are not
# listed: they are whatever the configuration defines.
cd "$(dirname "$0")/../.." || exit 1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" - "$@" <<'PYEOF'
import os, re

def strip_comments(s):
    s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
    return re.sub(r"//[^\n]*", " ", s)

rows = []
core = strip_comments(open("src/http/variables.c").read())
for table, kind in (("builtin_vars", "var"), ("builtin_prefixes", "prefix")):
    m = re.search(table + r"\[\]\s*=\s*\{(.*?)\n\};", core, flags=re.S)
    if m:
        for name in re.findall(r"\{\s*\"([a-z0-9_]+)\"", m.group(1)):
            rows.append((name, "src/http/variables.c", kind))

for root, _, files in os.walk("src"):
    for fn in sorted(files):
        path = os.path.join(root, fn)
        if not fn.endswith(".c") or path == "src/http/variables.c":
            continue
        src = strip_comments(open(path).read())
        if "pt_http_var_add" not in src:
            continue
        # function bodies at file level: "name(...)\n{ ... \n}"
        for body in re.findall(r"\)\s*\n\{(.*?)\n\}", src, flags=re.S):
            if "pt_http_var_add" not in body:
                continue
            prefix_names = set(re.findall(r"pt_string\(\"([a-z0-9_]+)\"\)\s*;[^;]*?PT_VAR_PREFIX", body, flags=re.S))
            names = re.findall(r"pt_string\(\"([a-z0-9_]+)\"\)", body)
            names += re.findall(r"\{\s*\"([a-z0-9_]+)\"\s*,", body)
            arr = re.search(r"names\[\]\s*=\s*\{(.*?)\}", body, flags=re.S)
            if arr:
                names += re.findall(r"\"([a-z0-9_]+)\"", arr.group(1))
            for n in names:
                kind = "prefix" if n.endswith("_") else "var"
                rows.append((n, path, kind))

seen = set()
for name, path, kind in rows:
    if (name, path) in seen:
        continue
    seen.add((name, path))
    shown = "$" + name + ("NAME" if kind == "prefix" else "")
    print("\t".join((shown, path, kind)))
PYEOF
