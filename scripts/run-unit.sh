#!/bin/sh
# Runs every unit test binary; prints a closing "N passed, N failed" line and
# leaves the counts for scripts/test-summary.py.
pass=0; fail=0
for t in "$@"; do
  if out=$("$t" 2>&1); then
    pass=$((pass + 1)); echo "ok   $t"
  else
    fail=$((fail + 1)); echo "FAIL $t"; echo "$out" | grep -v '^ok ' | tail -40 | sed 's/^/    /'
  fi
done
mkdir -p build/test-results
echo "$pass $fail" > build/test-results/unit.counts
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
