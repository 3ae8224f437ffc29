#!/usr/bin/python3
"""Prints one closing line for `make test`: every unit check, integration test
(plain and sanitizer builds) and fuzz target, as "N passed, N failed"."""
import glob
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sorted(glob.glob("build/test-results/*.xml")):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        tests = int(s.get("tests", 0))
        bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
        skip = int(s.get("skipped", 0))
        passed += tests - bad - skip
        failed += bad
        skipped += skip
for path in sorted(glob.glob("build/test-results/*.counts")):
    with open(path) as f:
        p, fl = f.read().split()
        passed += int(p)
        failed += int(fl)
reruns = []
try:
    with open("build/test-results/reruns.txt") as f:
        reruns = [line.rstrip("\n") for line in f if line.strip()]
except FileNotFoundError:
    pass
for line in reruns:
    print(f"rerun: {line}")
note = f" ({len(reruns)} rerun(s): a flaky test, listed above)" if reruns else ""
print(f"portico: {passed} passed, {failed} failed, {skipped} skipped{note}")
sys.exit(1 if failed else 0)
