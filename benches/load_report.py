#!/usr/bin/env python3
"""Turns benches/results/<run>/runs.txt (written by benches/load.sh) into markdown.

Each line of runs.txt is smtp-load's `RESULT key=value ...` line with the script's own
fields appended (round, scenario, server, rc, srv_cpu_s, srv_hwm_kb, ...). With several
rounds every figure is the median over rounds; a ratio to smtp-sink is taken within a
round, then the median of the ratios is shown.

Usage: load_report.py RESULTS_DIR
"""
import os
import statistics
import sys
from collections import defaultdict

LOAD = ["lock1", "c50", "pipe50", "churn50", "c500", "mib16"]
LABEL = {
    "lock1": "1 session, {n} x 1 KiB, lock-step",
    "c50": "50 sessions, {n} x 1 KiB",
    "pipe50": "50 sessions, {n} x 1 KiB, pipelined",
    "churn50": "50 sessions, {n} x 1 KiB, 1 msg/connection",
    "c500": "500 sessions, {n} x 1 KiB",
    "mib16": "16 sessions, {n} x 1 MiB",
    "burst500": "500 simultaneous connects, 1 msg each",
}
CPU_TARGET = 0.8          # at most this times smtp-sink's CPU per message
BANDWIDTH_TARGET = 1536   # MiB/s (1.5 GiB/s) with 1 MiB bodies
IDLE_TARGET = 16 * 1024   # bytes of RSS per idle connection


def parse(path):
    runs = []
    for line in open(path):
        if not line.startswith("RESULT "):
            continue
        kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        runs.append(kv)
    return runs


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def error_classes(rs):
    """`class:count,...` of the RESULT lines, summed over runs."""
    total = defaultdict(int)
    for r in rs:
        for item in r.get("error_classes", "none").split(","):
            name, _, n = item.rpartition(":")
            if name and n.isdigit():
                total[name.replace("_", " ")] += int(n)
    return ", ".join(f"{k}: {v}" for k, v in sorted(total.items()))


def cpu_per_10k(r):
    cpu, done = num(r.get("srv_cpu_s")), num(r.get("delivered"))
    return cpu / done * 1e4 if cpu is not None and done else None


def main(d):
    runs = parse(os.path.join(d, "runs.txt"))
    by = defaultdict(list)
    servers = []
    for r in runs:
        by[(r["scenario"], r["server"])].append(r)
        if r["server"] not in servers:
            servers.append(r["server"])
    # ours first, smtp-sink second, the rest after
    order = {"ours": 0, "ours-quiet": 1, "ours-1t": 2, "smtp-sink": 3}
    servers.sort(key=lambda s: order.get(s, 4))
    ours = next((s for s in ("ours", "ours-quiet") if s in servers), None)
    sink = {(r["round"], r["scenario"]): r for r in runs if r["server"] == "smtp-sink"}

    def vs_sink(rs, f):
        """Median over rounds of f(run) / f(smtp-sink's run in the same round)."""
        out = []
        for r in rs:
            s = sink.get((r["round"], r["scenario"]))
            a, b = f(r), (f(s) if s else None)
            if a is not None and b:
                out.append(a / b)
        return med(out)

    out = []
    busy = [r for r in runs if (num(r.get("other_cpu_pct")) or 0) >= 10]
    env = os.path.join(d, "env.txt")
    if os.path.exists(env):
        out += ["```", open(env).read().strip(), "```", ""]

    if busy:
        out.append(f"**Note:** in {len(busy)} of {len(runs)} runs other processes used 10 % or more of "
                   "the CPUs; those figures are less reliable (flagged in the notes).")
        out.append("")

    # ---------------------------------------------------------------- load table
    out.append("### Load scenarios")
    out.append("")
    meters = sorted({r.get("cpu_meter", "ticks") for r in runs})
    how = {"cgroup2": "to the microsecond, from a cgroup v2 of its own",
           "cgroup1": "to the nanosecond, from a cgroup v1 (cpuacct) of its own",
           "ticks": "in ticks of 1/CLK_TCK s, from /proc/PID/stat"}
    out.append(f"CPU = server CPU seconds, all threads ({'; '.join(how.get(m, m) for m in meters)}) "
               "per 10,000 delivered messages; "
               "**CPU ÷ sink** = that over smtp-sink's (lower is better). Latency: per message, "
               "MAIL to the 250 after the dot. gen CPU = the load generator's own CPU.")
    out.append("")
    out.append("| scenario | server | msgs/s | MiB/s | p50 ms | p99 ms | srv CPU s/10k | **CPU ÷ sink** "
               "| msgs/s ÷ sink | peak RSS MiB | gen CPU s/10k | notes |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for sc in LOAD + ["burst500"]:
        for sv in servers:
            rs = by.get((sc, sv))
            if not rs:
                continue
            label = LABEL[sc].format(n=f"{int(num(rs[0].get('requested')) or 0):,}")
            mps = med([num(r.get("msgs_per_s")) for r in rs])
            mib = med([num(r.get("mib_per_s")) for r in rs])
            p50 = med([num(r.get("p50_ms")) for r in rs])
            p99 = med([num(r.get("p99_ms")) for r in rs])
            cpu = med([cpu_per_10k(r) for r in rs])
            cpux = vs_sink(rs, cpu_per_10k)
            mpsx = vs_sink(rs, lambda r: num(r.get("msgs_per_s")))
            hwm = med([num(r.get("srv_hwm_kb")) / 1024 for r in rs if num(r.get("srv_hwm_kb"))])
            gen = med([num(r.get("client_cpu_s")) / num(r.get("delivered")) * 1e4
                       for r in rs if num(r.get("delivered")) and num(r.get("client_cpu_s")) is not None])
            notes = []
            if any(r.get("mode") == "none" for r in rs):
                notes.append("no result (generator rc=%s)" % ",".join(sorted({r["rc"] for r in rs})))
            if any(r.get("timed_out") == "1" for r in rs):
                notes.append("hit the time bound")
            errs = sum(int(num(r.get("errors")) or 0) for r in rs)
            if errs:
                notes.append(f"{errs} errors in {len(rs)} runs ({error_classes(rs)})")
            short = [r for r in rs if r.get("delivered") != r.get("requested")]
            if short:
                notes.append(f"delivered {short[0].get('delivered')}/{short[0].get('requested')}")
            if sc == "pipe50" and all(r.get("pipelined") == "0" for r in rs):
                notes.append("no PIPELINING advertised: lock-step")
            slow = sum(int(num(r.get("slow_connects")) or 0) for r in rs)
            if slow:
                notes.append(f"{slow} connections waited > 0.9 s for the greeting")
            bg = med([num(r.get("other_cpu_pct")) for r in rs])
            if bg is not None and bg >= 10:
                notes.append(f"other processes used {bg:.0f}% of the CPUs")
            if any(r.get("srv_alive") == "0" for r in rs):
                notes.append("server died")
            if len(rs) > 1:
                notes.append(f"n={len(rs)}")
            name = f"**{sv}**" if sv == ours else sv
            out.append(f"| {label} | {name} | {fmt(mps, ',.0f')} | {fmt(mib, ',.1f')} | {fmt(p50, '.3f')} | "
                       f"{fmt(p99, '.3f')} | {fmt(cpu, '.3f')} | **{fmt(cpux, '.2f')}** | {fmt(mpsx, '.2f')} | "
                       f"{fmt(hwm, '.1f')} | {fmt(gen, '.3f')} | {'; '.join(notes)} |")
    out.append("")

    # ---------------------------------------------------------------- connections table
    idle_rows = [(sv, by.get(("idle", sv))) for sv in servers if by.get(("idle", sv))]
    burst_rows = {sv: by.get(("burst500", sv)) for sv in servers}
    if idle_rows or any(burst_rows.values()):
        out.append("### Connections")
        out.append("")
        out.append("Medians over rounds (slowest greeting: the worst of all rounds). Idle: connections that "
                   "completed EHLO and stay open; RSS per idle conn = server VmRSS delta / connections.")
        out.append("")
        out.append("| server | idle conns open / alive | RSS before → after MiB | **RSS per idle conn** "
                   "| 500 simultaneous connects: served | errors | greeted after > 0.9 s | slowest greeting ms |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for sv in servers:
            ir, br = by.get(("idle", sv)), burst_rows.get(sv)
            if not ir and not br:
                continue
            if ir:
                opened = (f"{med([num(r.get('open')) for r in ir]):.0f} / {med([num(r.get('alive')) for r in ir]):.0f}"
                          f" of {ir[0].get('requested')}")
                b = med([num(r.get("rss_before_kb")) for r in ir])
                a = med([num(r.get("rss_after_kb")) for r in ir])
                pc = med([num(r.get("rss_per_conn_bytes")) for r in ir])
                rss = f"{fmt(b and b / 1024, '.1f')} → {fmt(a and a / 1024, '.1f')}"
                per = "–" if pc is None else f"{pc / 1024:.1f} KiB"
            else:
                opened, rss, per = "–", "–", "–"
            if br:
                served = f"{med([num(r.get('delivered')) for r in br]):.0f} / {med([num(r.get('requested')) for r in br]):.0f}"
                errs = f"{med([num(r.get('errors')) for r in br]):.0f}"
                slow = f"{med([num(r.get('slow_connects')) for r in br]):.0f}"
                mx = fmt(max(num(r.get("connect_max_ms")) or 0 for r in br), ",.1f")
            else:
                served = errs = slow = mx = "–"
            name = f"**{sv}**" if sv == ours else sv
            out.append(f"| {name} | {opened} | {rss} | **{per}** | {served} | {errs} | {slow} | {mx} |")
        out.append("")

    # ---------------------------------------------------------------- targets
    if ours:
        out.append(f"### Targets ({ours})")
        out.append("")
        out.append("| target | measured | met |")
        out.append("|---|---|:-:|")
        for sc in LOAD:
            rs = by.get((sc, ours))
            if not rs:
                continue
            x = vs_sink(rs, cpu_per_10k)
            # CPU counted in ticks (no cgroup): 28 / 35 is 0.8, not the 0.8000000000000002 of floats.
            ok = x is not None and round(x, 9) <= CPU_TARGET
            label = LABEL[sc].format(n=f"{int(num(rs[0].get('requested')) or 0):,}")
            out.append(f"| CPU per message ≤ {CPU_TARGET}x smtp-sink: {label} | {fmt(x, '.2f')}x | {'yes' if ok else '**no**'} |")
        rs = by.get(("mib16", ours))
        if rs:
            mib = med([num(r.get("mib_per_s")) for r in rs])
            ok = mib is not None and mib >= BANDWIDTH_TARGET
            out.append(f"| 1 MiB bodies at ≥ 1.5 GiB/s | {fmt(mib and mib / 1024, '.2f')} GiB/s ({fmt(mib, ',.0f')} MiB/s) "
                       f"| {'yes' if ok else '**no**'} |")
        rs = by.get(("idle", ours))
        if rs:
            pc = med([num(r.get("rss_per_conn_bytes")) for r in rs])
            alive = all(r.get("alive") == r.get("requested") for r in rs)
            ok = pc is not None and pc < IDLE_TARGET and alive
            n = rs[0].get("requested")
            out.append(f"| < 16 KiB RSS per idle connection ({n} open) | {fmt(pc and pc / 1024, '.1f')} KiB"
                       f"{'' if alive else ' (not all alive)'} | {'yes' if ok else '**no**'} |")
        rs = by.get(("burst500", ours))
        if rs:
            ok = all(r.get("delivered") == r.get("requested") and r.get("errors") == "0"
                     and r.get("slow_connects") == "0" for r in rs)
            r = rs[0]
            out.append(f"| 500 simultaneous connects all served | {r.get('delivered')}/{r.get('requested')} served, "
                       f"{r.get('errors')} errors, {r.get('slow_connects')} greeted after > 0.9 s | {'yes' if ok else '**no**'} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
