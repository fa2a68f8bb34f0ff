"""Check a `bench/run.sh` report: a throughput row with a gateway/nginx ratio for each scenario
named, and the memory rows. Used by `make bench-check`; exits 1 saying what is missing."""
import re
import sys

from scenarios import names

path, *scenarios = sys.argv[1:]
text = open(path).read()
missing = []
for scenario in scenarios:
    row = re.search(rf"^\| {re.escape(names[scenario])} \|.*\| (\d+\.\d\d)x", text, re.M)
    if not row or float(row.group(1)) <= 0:
        missing.append(f"scenario {scenario}: no row with a ratio")
for proxy in ("gateway", "nginx"):
    if not re.search(rf"^\| {proxy} \| \d+\.\d \| \d+\.\d \|", text, re.M):
        missing.append(f"memory row for {proxy}")
if missing:
    sys.exit("bench report incomplete: " + "; ".join(missing))
print(f"bench report complete: {', '.join(scenarios)} and memory")
