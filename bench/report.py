"""Turn bench/run.sh's raw lines into the results table with gateway/nginx ratios."""
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

from scenarios import names

path, commit, duration, rounds = sys.argv[1:]
runs = defaultdict(list)
memory = {}
for line in open(path):
    parts = line.split()
    if parts[0] == "memory":
        memory[parts[1]] = (int(parts[2]) / 1024, int(parts[3]) / 1024)
    else:
        runs[(parts[0], parts[1])].append(parts[2:])


def med(values, i):
    nums = [float(v[i]) for v in values if v[i] != "-"]
    return statistics.median(nums) if nums else None


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
print(f"machine: {cpu}, {platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; "
      f"date {time.strftime('%Y-%m-%d')}; commit {commit}; {rounds} rounds x {duration} s per proxy")
print()
print("| scenario | gateway req/s | nginx req/s | gateway p50 / p99 ms | nginx p50 / p99 ms | gateway req/CPU-s | nginx req/CPU-s (no plugins) | ratio req/CPU-s (range over rounds) |")
print("|---|---|---|---|---|---|---|---|")
for key, name in names.items():
    g, n = runs.get((key, "gateway"), []), runs.get((key, "nginx"), [])
    if not g or not n:
        continue
    g_eff, n_eff = med(g, 3), med(n, 3)
    ratio = g_eff / n_eff if g_eff and n_eff else None
    # Each round's own ratio (gateway round i against nginx round i, run back to back): their
    # range is how far this machine's noise moves the figure.
    rounds_ratios = [float(a[3]) / float(b[3]) for a, b in zip(g, n) if float(b[3])]
    spread = (f" ({min(rounds_ratios):.2f}–{max(rounds_ratios):.2f})"
              if len(rounds_ratios) > 1 else "")
    print(f"| {name} | {fmt(med(g, 0))} | {fmt(med(n, 0))} | {fmt(med(g, 1), 2)} / {fmt(med(g, 2), 2)} "
          f"| {fmt(med(n, 1), 2)} / {fmt(med(n, 2), 2)} | {fmt(g_eff)} | {fmt(n_eff)} | {fmt(ratio, 2)}x{spread} |")
if memory:
    print()
    print("| memory | idle RSS MB | RSS with 1,000 idle keep-alive conns MB | added MB |")
    print("|---|---|---|---|")
    for run, (idle, held) in memory.items():
        proxy, _, tls = run.partition(":")
        label = f"{proxy} (HTTPS)" if tls else proxy
        print(f"| {label} | {idle:.1f} | {held:.1f} | {held - idle:.1f} |")
