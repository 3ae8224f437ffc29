#!/bin/sh
# Runs every unit test binary; prints a closing "N passed, N failed" line.
pass=0; fail=0
for t in "$@"; do
  if out=$("$t" 2>&1); then
    pass=$((pass + 1)); echo "ok   $t"
  else
    fail=$((fail + 1)); echo "FAIL $t"; echo "$out" | sed 's/^/    /' | tail -40
  fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
