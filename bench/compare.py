#!/usr/bin/env python3
"""The measuring and reporting half of bench/compare.sh.

compare.sh starts the peers and runs the clients; this file reads /proc,
samples a proxy during a slow-client test, parses wrk's and the slow
clients' output, and turns results.csv into the table and the plots.
Subcommands (each prints plain values for the shell):

  cpu PID...                 utime+stime in seconds of the process trees
  rss PID...                 VmRSS in KiB of the process trees
  sample PID... --stop-file  idle and peak RSS (and sluice's held bytes)
  wrk FILE                   rps p50_ms p99_ms errors requests
  slow FILE                  clients ok min_mb median_mb max_mb errors eof
                             unserved
  report --csv F --out DIR   table.md and the PNG plots from results.csv

Performance is never asserted: this only measures and writes.
"""
import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def children(pid):
    """Direct children of pid, from /proc (all tasks' children files)."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def tree(roots):
    """Every process under the roots, the roots included (bounded)."""
    seen, todo = [], list(roots)
    while todo and len(seen) < 4096:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def sluice_metrics(url):
    """The gauges and counters of sluice's /metrics this bench reads."""
    out = {}
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            for line in r.read().decode().splitlines():
                m = re.match(r"sluice_(memory_buffered_bytes|"
                             r"memory_limit_hits_total|connections) (\d+)$",
                             line)
                if m:
                    out[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    return out


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def cmd_sample(a):
    """Sample every interval until --stop-file exists or --max-seconds pass.

    Prints: idle_rss_kib peak_rss_kib peak_held_bytes aborted.  The first
    sample is the idle one (taken before --ready-file is written, and so
    before the clients start).  aborted is 1 when the RSS cap, low
    MemAvailable or low disk space (nginx's temp files) made this stop the
    clients (SIGTERM to the PID in --kill-file), to protect the machine.
    """
    pids = tree(a.pid)
    idle = rss_kib(pids)
    with open(a.ready_file, "w") as f:
        f.write("ready\n")
    peak, held_peak, aborted = idle, 0, 0
    end = time.monotonic() + a.max_seconds
    while not os.path.exists(a.stop_file) and time.monotonic() < end:
        peak = max(peak, rss_kib(pids))
        if a.metrics:
            held_peak = max(held_peak, sluice_metrics(a.metrics).get(
                "memory_buffered_bytes", 0))
        disk = os.statvfs(a.disk_dir)
        if (peak > a.rss_cap_kib or mem_available_kib() < a.min_avail_kib
                or disk.f_bavail * disk.f_frsize < a.min_disk_kib * 1024):
            aborted = 1
            victim = read_pid(a.kill_file)
            if victim:
                try:
                    os.kill(victim, 15)
                except OSError:
                    pass
            break
        time.sleep(a.interval)
    print(idle, peak, held_peak, aborted)


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return v * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]


def cmd_wrk(a):
    text = open(a.file).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    req = re.search(r"(\d+) requests in", text)
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), "
                     r"write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    if not (rps and p50 and p99 and req):
        print("nan nan nan nan 0")
        return
    print(rps.group(1), to_ms(p50.group(1)), to_ms(p99.group(1)), errors,
          req.group(1))


def cmd_slow(a):
    """errors: refused, reset or answered other than 200; unserved: still
    waiting for a first byte when the time was up."""
    got, errors, eof, unserved = [], 0, 0, 0
    for line in open(a.file):
        parts = line.split()
        if len(parts) != 3:
            continue
        n, state, status = int(parts[0]), parts[1], int(parts[2])
        if state in ("error", "refused") or status not in (0, 200):
            errors += 1
        elif n == 0:
            unserved += 1
        if state == "eof":
            eof += 1
        got.append(n / 1e6)
    if not got:
        print("0 0 nan nan nan 0 0 0")
        return
    print(len(got), len(got) - errors, f"{min(got):.3f}",
          f"{statistics.median(got):.3f}", f"{max(got):.3f}", errors, eof,
          unserved)


# ---- the report ---------------------------------------------------------

def load(path):
    """results.csv rows -> {(test, target, metric): {round: value}}."""
    data = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            try:
                v = float(row["value"])
            except ValueError:
                continue
            key = (row["test"], row["target"], row["metric"])
            data.setdefault(key, {})[int(row["round"])] = v
    return data


def median(data, test, target, metric):
    vals = [v for v in data.get((test, target, metric), {}).values()
            if v == v]
    return statistics.median(vals) if vals else None


def ratio(data, test, target, metric):
    """Median over rounds of target / direct in the same round."""
    mine = data.get((test, target, metric), {})
    base = data.get((test, "direct", metric), {})
    vals = [mine[r] / base[r] for r in mine
            if r in base and base[r] > 0 and mine[r] == mine[r]]
    return statistics.median(vals) if vals else None


def per_round(data, test, target, num, den):
    """Median over rounds of metric num / metric den of the same run."""
    a = data.get((test, target, num), {})
    b = data.get((test, target, den), {})
    vals = [a[r] / b[r] for r in a if r in b and b[r] > 0 and a[r] == a[r]]
    return statistics.median(vals) if vals else None


def fmt(v, spec=".2f", none="–"):
    return none if v is None else format(v, spec)


def slow_tests(data):
    return sorted({t for (t, _, _) in data if t.startswith("slow")},
                  key=lambda t: int(t[4:]))


def wrk_tests(data):
    return sorted({t for (t, _, _) in data if t.startswith("wrk")},
                  key=lambda t: int(t[3:]))


def table(data, targets, labels, na):
    wrks, slows = wrk_tests(data), slow_tests(data)
    size = median(data, "download", "direct", "mib")
    head = ["target", f"{fmt(size, '.0f', '?')} MiB download: Gbit/s "
            "(ratio)", "CPU-s per GiB"]
    for w in wrks:
        head += [f"wrk -c{w[3:]}: req/s (ratio)",
                 f"-c{w[3:]} p50 / p99 ms (p99/p50)",
                 f"-c{w[3:]} errors"]
    for s in slows:
        head += [f"{s[4:]} slow: RSS per conn KiB (held)",
                 f"{s[4:]} slow: MB per client min / median / max",
                 f"{s[4:]} slow: errors / unserved"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for t in targets:
        if t in na:
            lines.append(f"| {labels[t]} | {na[t]} |" +
                         " |" * (len(head) - 2))
            continue
        cells = [labels[t]]
        g = median(data, "download", t, "gbps")
        r = ratio(data, "download", t, "gbps")
        cells.append(f"{fmt(g)} ({fmt(r)})" if t != "direct"
                     else f"{fmt(g)} (1)")
        cells.append(fmt(median(data, "download", t, "cpu_s_per_gib"))
                     if t != "direct" else "–")
        for w in wrks:
            rps = median(data, w, t, "rps")
            rr = ratio(data, w, t, "rps") if t != "direct" else 1
            cells.append(f"{fmt(rps, '.0f')} ({fmt(rr)})")
            cells.append(f"{fmt(median(data, w, t, 'p50_ms'), '.1f')} / "
                         f"{fmt(median(data, w, t, 'p99_ms'), '.1f')} ("
                         f"{fmt(per_round(data, w, t, 'p99_ms', 'p50_ms'), '.1f')})")
            cells.append(fmt(median(data, w, t, "errors"), ".0f"))
        for s in slows:
            rss = median(data, s, t, "rss_per_conn_kib")
            held = median(data, s, t, "held_per_conn_kib")
            aborted = median(data, s, t, "aborted")
            if t == "direct":
                cell = "–"
            else:
                cell = fmt(rss, ".1f")
                if held is not None and t.startswith("sluice"):
                    cell += f" ({held:.1f})"
                if aborted:
                    cell += " aborted: RSS cap"
            cells.append(cell)
            cells.append(" / ".join(fmt(median(data, s, t, m))
                                    for m in ("min_mb", "median_mb",
                                              "max_mb")))
            cells.append(fmt(median(data, s, t, "errors"), ".0f") + " / " +
                         fmt(median(data, s, t, "unserved"), ".0f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


GNUPLOT_HEAD = ("set terminal pngcairo size 900,480 noenhanced font "
                "'sans,10'\nset style data histogram\n"
                "set style histogram cluster gap 1\n"
                "set style fill solid 0.8 border -1\nset boxwidth 0.9\n"
                "set xtics rotate by -25 scale 0\nset grid ytics\n"
                "set key top right\nset datafile missing '?'\n")


def plot(out, name, title, ylabel, columns, rows):
    """One clustered bar chart: rows of (label, value per column)."""
    dat = os.path.join(out, f"{name}.dat")
    with open(dat, "w") as f:
        f.write("target " + " ".join(f'"{c}"' for c in columns) + "\n")
        for label, vals in rows:
            f.write(f'"{label}" ' + " ".join(
                "?" if v is None else f"{v:.4f}" for v in vals) + "\n")
    using = ", ".join(
        (f"'{dat}' using {i + 2}:xtic(1) title columnhead"
         if i == 0 else f"'' using {i + 2} title columnhead")
        for i in range(len(columns)))
    script = (GNUPLOT_HEAD + f"set output '{out}/{name}.png'\n"
              f"set title '{title}'\nset ylabel '{ylabel}'\n"
              "set yrange [0:*]\n" + f"plot {using}\n")
    try:
        r = subprocess.run(["gnuplot"], input=script, text=True,
                           capture_output=True, timeout=60)
    except OSError as e:
        sys.stderr.write(f"gnuplot {name}: {e}\n")
        return
    if r.returncode != 0:
        sys.stderr.write(f"gnuplot {name}: {r.stderr}")


def plots(out, data, targets, labels, na):
    live = [t for t in targets if t not in na]
    proxies = [t for t in live if t != "direct"]
    wrks, slows = wrk_tests(data), slow_tests(data)
    size = median(data, "download", "direct", "mib")
    plot(out, "throughput", "Ratio to direct (median of rounds)",
         "ratio to direct", [f"{fmt(size, '.0f', '?')} MiB download"] +
         [f"wrk -c{w[3:]} req/s" for w in wrks],
         [(labels[t], [ratio(data, "download", t, "gbps")] +
           [ratio(data, w, t, "rps") for w in wrks]) for t in proxies])
    plot(out, "wrk", "wrk on a 1 MiB file: requests per second",
         "req/s", [f"-c{w[3:]}" for w in wrks],
         [(labels[t], [median(data, w, t, "rps") for w in wrks])
          for t in live])
    plot(out, "rss", "Slow clients: peak RSS per connection over idle",
         "KiB per connection",
         [f"{s[4:]} clients" + (" (sluice: memory_limit 64M)"
                                if s == slows[-1] else "") for s in slows],
         [(labels[t], [median(data, s, t, "rss_per_conn_kib")
                       for s in slows]) for t in proxies])


def cmd_report(a):
    data = load(a.csv)
    targets = a.targets.split(",")
    labels = dict(x.split("=", 1) for x in a.label)
    na = dict(x.split("=", 1) for x in a.na)
    for t in targets:
        labels.setdefault(t, t)
    text = table(data, targets, labels, na)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    plots(a.out, data, targets, labels, na)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("cpu")
    s.add_argument("pid", type=int, nargs="+")
    s = sub.add_parser("rss")
    s.add_argument("pid", type=int, nargs="+")
    s = sub.add_parser("sample")
    s.add_argument("pid", type=int, nargs="+")
    s.add_argument("--ready-file", required=True)
    s.add_argument("--stop-file", required=True)
    s.add_argument("--kill-file", required=True)
    s.add_argument("--metrics", default="")
    s.add_argument("--interval", type=float, default=0.1)
    s.add_argument("--max-seconds", type=float, default=120)
    s.add_argument("--rss-cap-kib", type=int, default=8 << 20)
    s.add_argument("--min-avail-kib", type=int, default=2 << 20)
    s.add_argument("--disk-dir", default="/tmp")
    s.add_argument("--min-disk-kib", type=int, default=10 << 20)
    s = sub.add_parser("wrk")
    s.add_argument("file")
    s = sub.add_parser("slow")
    s.add_argument("file")
    s = sub.add_parser("report")
    s.add_argument("--csv", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--targets", required=True)
    s.add_argument("--label", action="append", default=[])
    s.add_argument("--na", action="append", default=[])
    a = p.parse_args()
    if a.cmd == "cpu":
        print(f"{cpu_seconds(tree(a.pid)):.2f}")
    elif a.cmd == "rss":
        print(rss_kib(tree(a.pid)))
    elif a.cmd == "sample":
        cmd_sample(a)
    elif a.cmd == "wrk":
        cmd_wrk(a)
    elif a.cmd == "slow":
        cmd_slow(a)
    else:
        cmd_report(a)


if __name__ == "__main__":
    main()
