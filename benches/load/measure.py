#!/usr/bin/env python3
"""Measurement helpers for benches/load/run (Python 3 standard library only).

    measure.py cpu PID                 CPU seconds (utime + stime) of PID and
                                       all its descendants, e.g. 12.34
    measure.py rss PID OUT SECONDS     sample every 100 ms the sum of VmRSS of
                                       PID and its descendants, for at most
                                       SECONDS or until SIGTERM; write
                                       {"peak_kib", "first_kib", "samples"}
                                       to OUT
    measure.py probe URL OUT SECONDS [RATE]
                                       GET URL on a new connection RATE times
                                       a second (default 10) for SECONDS;
                                       write latencies (p50, p99, max, ms)
                                       and non-200 counts to OUT
    measure.py fallbacks LOG START END count the `reason=` of
                                       $smart_imaging_result in the access log
                                       lines between byte offsets START and
                                       END that are image requests (/img/)
    measure.py report RESULTS_DIR ROW...
                                       print the Markdown table rows
"""

import http.client
import json
import os
import re
import signal
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def processes():
    """{pid: ppid} of every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces: split after ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(name)] = int(fields[1])
    return table


def tree(root):
    """root and all its descendants."""
    table = processes()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table or pid == root:
            found.append(pid)
            todo.extend(p for p, pp in table.items() if pp == pid)
    return found


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmd_cpu(pid):
    print(f"{sum(cpu_seconds(p) for p in tree(int(pid))):.3f}")


def cmd_rss(pid, out, seconds):
    pid, deadline = int(pid), time.monotonic() + float(seconds)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    peak, first, samples = 0, None, 0
    while not stop and time.monotonic() < deadline:
        total = sum(rss_kib(p) for p in tree(pid))
        first = total if first is None else first
        peak, samples = max(peak, total), samples + 1
        time.sleep(0.1)
    with open(out, "w") as f:
        json.dump({"peak_kib": peak, "first_kib": first, "samples": samples}, f)


def percentile(values, p):
    """Nearest-rank percentile of a list (None if empty)."""
    if not values:
        return None
    values = sorted(values)
    rank = max(1, -(-len(values) * p // 100))  # ceil(n * p / 100)
    return values[int(rank) - 1]


def cmd_probe(url, out, seconds, rate="10"):
    m = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    interval, start = 1.0 / float(rate), time.monotonic()
    deadline = start + float(seconds)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    latencies, statuses, errors, n = [], {}, 0, 0
    while not stop:
        # A fixed schedule: request n starts at start + n * interval, or at
        # once when the previous one took longer than that.
        due = start + n * interval
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        if stop or time.monotonic() >= deadline:
            break
        n += 1
        t0 = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            latencies.append((time.monotonic() - t0) * 1000)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        except (OSError, http.client.HTTPException):
            errors += 1
    with open(out, "w") as f:
        json.dump({
            "requests": len(latencies) + errors,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies) if latencies else None,
            "statuses": statuses,
            "errors": errors,
        }, f)


def cmd_fallbacks(log, start, end):
    reasons, converted, lines = {}, 0, 0
    with open(log, "rb") as f:
        f.seek(int(start))
        text = f.read(int(end) - int(start)).decode("utf-8", "replace")
    for line in text.splitlines():
        if '"/img/' not in line:
            continue  # the probe
        lines += 1
        m = re.search(r"\breason=(\S+)", line)
        if m:
            reason = m.group(1).rstrip('"')
            reasons[reason] = reasons.get(reason, 0) + 1
        elif '"converted ' in line:
            converted += 1
    print(json.dumps({"logged": lines, "converted": converted, "original": reasons}))


def fmt_ms(v):
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def cmd_report(results, *rows):
    for row in rows:
        try:
            with open(os.path.join(results, f"{row}.json")) as f:
                r = json.load(f)
        except (OSError, ValueError):
            print(f"| {row} | failed: see target/load/results/{row}.log | | | | | | | |")
            continue
        w = r["wrk"]
        done = w["responses"]
        rps = done / (w["duration_us"] / 1e6) if w["duration_us"] else 0
        rps = f"{rps:.0f}" if rps >= 100 else f"{rps:.1f}" if rps >= 10 else f"{rps:.2f}"
        cpu = (r["cpu_after"] - r["cpu_before"]) * 1000 / done if done else None
        probe = r["probe"]
        in_bytes = w["in_bytes"]
        ratio = f"{w['body_bytes'] / in_bytes:.3f}" if in_bytes > 0 else "–"
        fb = r.get("fallbacks")
        if fb is None:
            fallbacks = "n/a"
        else:
            o = fb["original"]
            fallbacks = f"timeout {o.get('timeout', 0)}, busy {o.get('busy', 0)}"
            if o.get("deferred"):
                fallbacks += f", deferred {o['deferred']}"
        errors = sum(w["errors"][k] for k in ("connect", "read", "write", "timeout"))
        non200 = f"{w['non200']}" + (f" (+{errors} socket errors)" if errors else "")
        probe_name = " (/healthcheck)" if r.get("probe_is_healthcheck") else ""
        print(f"| {r['label']} | {rps} ({done}) | {fmt_ms(cpu)} "
              f"| {fmt_ms(w['p50_us'] / 1000)} / {fmt_ms(w['p99_us'] / 1000)} "
              f"| {fmt_ms(probe['p50_ms'])} / {fmt_ms(probe['p99_ms'])}{probe_name} "
              f"| {r['rss']['peak_kib'] / 1024:.0f} | {ratio} | {fallbacks} | {non200} |")


if __name__ == "__main__":
    commands = {"cpu": cmd_cpu, "rss": cmd_rss, "probe": cmd_probe,
                "fallbacks": cmd_fallbacks, "report": cmd_report}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
