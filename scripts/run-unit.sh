#!/bin/sh
# Runs every unit test binary; prints a closing "N passed, N failed" line and
# leaves the counts for scripts/test-summary.py.  A program that fails is run
# once more (some drive real sockets and timers on a loaded machine); a pass
# on that second run is listed in build/test-results/reruns.txt, so the
# closing line of `make test` still shows it.
pass=0; fail=0
mkdir -p build/test-results
for t in "$@"; do
  if out=$("$t" 2>&1); then
    pass=$((pass + 1)); echo "ok   $t"
  elif out2=$("$t" 2>&1); then
    pass=$((pass + 1)); echo "ok   $t (on a rerun)"
    echo "$out" | grep -v '^ok ' | tail -20 | sed 's/^/    /'
    first=$(echo "$out" | grep -m1 '^not ok' || echo "exit status")
    echo "$t [unit]: $first" >> build/test-results/reruns.txt
  else
    fail=$((fail + 1)); echo "FAIL $t"; echo "$out2" | grep -v '^ok ' | tail -40 | sed 's/^/    /'
  fi
done
echo "$pass $fail" > build/test-results/unit.counts
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
