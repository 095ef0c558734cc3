"""The printed table of bench/scale.py."""

from __future__ import annotations

from typing import Any


def _load(m: dict[str, Any]) -> str:
    return f"{m['cpus']} cpus, load {m['load'][0]:.2f} {m['load'][1]:.2f} {m['load'][2]:.2f}"


def _memory_lines(memory: dict[str, Any]) -> list[str]:
    lines = ["live sessions per GB (worker tree PSS; marginal per session)"]
    for name, row in memory.items():
        if isinstance(row, str):
            lines.append(f"  {name:16} {row}")
            continue
        lines.append(
            f"  {name:16} {row['sessions']:5} held: {row['per_session_kb']:8.1f} kB each, "
            f"{row['per_gb'] or '-':>7} per GB; tree {row['tree_pss_before_mb']} -> "
            f"{row['tree_pss_after_mb']} MB PSS, {row['processes_before']} -> "
            f"{row['processes_after']} processes"
        )
    return lines


def _creation_lines(c: dict[str, Any]) -> list[str]:
    lines = [f"creations (create, first call, destroy), {c['loops']} loops, {c['seconds_each']} s"]
    for name in ("ours", "floor", "direct"):
        r = c[name]
        lines.append(
            f"  {name:6} {r['per_second']:7.1f}/s  cycle p50 {r['p50_ms']:7.1f} ms "
            f"p95 {r['p95_ms']:7.1f} ms  ({r['cycles']} cycles, {r['errors']} errors)"
        )
    lines.append(f"  ours / floor {c['ratio']}x")
    return lines


def _core_lines(p: dict[str, Any]) -> list[str]:
    lines = [f"calls per core at saturation ({p['sessions']} sessions x {p['calls_each']} calls)"]
    if p.get("failed_creations"):
        lines.append(f"  creations that failed once and were retried: {p['failed_creations']}")
    for name in ("floor", "python", "http"):
        if name not in p:
            continue
        r = p[name]
        cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_call"].items())
        ratio = f"  {r['ratio_to_floor']}x the floor" if "ratio_to_floor" in r else ""
        lines.append(
            f"  {name:6} {r['calls_per_core_second']:7.1f} calls/core-s  "
            f"{r['calls_per_second']:6.1f} calls/s  CPU ms/call {r['stack_cpu_ms_per_call']} "
            f"({cpu}){ratio}"
        )
    return lines


def _growth_lines(g: dict[str, Any]) -> list[str]:
    lines = ["growth per 1,000 calls"]
    for name in ("ours", "floor"):
        r = g[name]
        lines.append(
            f"  {name:6} {r['events_per_1000_calls']:6} events  "
            f"{r['history_kb_per_1000_calls']:8.1f} kB history  {r['db_kb_per_1000_calls']:8.1f} "
            f"kB SQLite pages in use"
        )
    return lines


def _temporary_lines(t: dict[str, Any]) -> list[str]:
    b, c = t["bash:run"], t["code:execute"]
    verdict = "met" if t["met"] else "MISSED"
    return [
        "temporary calls over HTTP, one after another",
        f"  bash:run     p50 {b['p50_ms']:7.1f} ms p95 {b['p95_ms']:7.1f} ms",
        f"  code:execute p50 {c['p50_ms']:7.1f} ms p95 {c['p95_ms']:7.1f} ms  "
        f"{t['ratio_p50']}x bash (target <= {t['target']}x: {verdict}; {t['errors']} errors)",
    ]


def _workers_lines(w: dict[str, Any]) -> list[str]:
    lines = ["worker processes on this machine"]
    for n, step in w["steps"].items():
        t, c = step["throughput"], step["creations"]
        lines.append(
            f"  {n} worker(s): {t['calls_per_second']:6.1f} calls/s "
            f"({step['throughput_vs_first']}x), creations {c['ours']['per_second']:5.1f}/s "
            f"({step['creations_vs_first']}x; floor {c['floor']['per_second']:5.1f}/s), "
            f"{t['errors']} + {c['ours']['errors']} errors"
        )
    return lines


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    if "memory" in results:
        lines += _memory_lines(results["memory"])
    if "creations" in results:
        lines += _creation_lines(results["creations"])
    if "per_core" in results:
        lines += _core_lines(results["per_core"])
    if "growth" in results:
        lines += _growth_lines(results["growth"])
    if "temporary_http" in results:
        lines += _temporary_lines(results["temporary_http"])
    if "workers" in results:
        lines += _workers_lines(results["workers"])
    m = results["machine"]
    lines.append(
        f"machine before: {_load(m['before'])}; after: {_load(m.get('after', m['before']))}"
    )
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    """The figures of a results file as bench/README.md shows them."""
    m, c, p, g, t = r["memory"], r["creations"], r["per_core"], r["growth"], r["temporary_http"]
    rows = [
        "| measure | ours | floor (bare Temporal) | ours / floor |",
        "| --- | --- | --- | --- |",
    ]
    f = m["floor"]
    for name, what in (("bash", "bash"), ("code", "code"), ("bash_suspended", "bash, suspended")):
        row = m[name]
        if isinstance(row, str):
            rows.append(f"| live {what} sessions per GB | {row} | | |")
            continue
        per = f"{row['per_gb']:,}" if row["per_gb"] else "below resolution"
        rows.append(
            f"| live {what} sessions per GB (worker tree PSS, {row['sessions']} held) | {per} "
            f"({row['per_session_kb'] / 1024:.2f} MB each; tree {row['tree_pss_before_mb']:.0f} "
            f"-> {row['tree_pss_after_mb']:.0f} MB, {row['processes_after']} processes) | "
            f"{f['per_gb']:,} workflows ({f['per_session_kb']:.0f} kB each) | |"
        )
    o, fl, d = c["ours"], c["floor"], c["direct"]
    rows.append(
        f"| creations a second, {c['loops']} loops x {c['seconds_each']:g} s (create, first call, "
        f"destroy); cycle p50 / p95 | {o['per_second']} ({o['p50_ms']:.0f} / {o['p95_ms']:.0f} "
        f"ms, {o['errors']} errors) | {fl['per_second']} ({fl['p50_ms']:.0f} / "
        f"{fl['p95_ms']:.0f} ms); jails alone in-process: {d['per_second']} | {c['ratio']}x |"
    )
    for name, what in (("python", "Python client"), ("http", "HTTP API")):
        row, fr = p[name], p["floor"]
        cpu = ", ".join(f"{k} {v}" for k, v in row["cpu_ms_per_call"].items())
        fcpu = ", ".join(f"{k} {v}" for k, v in fr["cpu_ms_per_call"].items())
        rows.append(
            f"| calls per core-second, {what}, {p['sessions']} sessions x {p['calls_each']} "
            f"calls (CPU ms a call) | {row['calls_per_core_second']} ({cpu}); "
            f"{row['calls_per_second']} calls/s | {fr['calls_per_core_second']} ({fcpu}); "
            f"{fr['calls_per_second']} calls/s | {row['ratio_to_floor']}x per core, "
            f"{row['calls_per_second'] / fr['calls_per_second']:.2f}x calls/s |"
        )
    go, gf = g["ours"], g["floor"]
    rows.append(
        f"| growth per 1,000 calls: events, history, SQLite pages in use | "
        f"{go['events_per_1000_calls']:,}, {go['history_kb_per_1000_calls']:,.0f} kB, "
        f"{go['db_kb_per_1000_calls']:,.0f} kB | {gf['events_per_1000_calls']:,}, "
        f"{gf['history_kb_per_1000_calls']:,.0f} kB, {gf['db_kb_per_1000_calls']:,.0f} kB | "
        f"{g['ratio_history_kb_per_1000_calls']}x history |"
    )
    tb, tc = t["bash:run"], t["code:execute"]
    rows.append(
        f"| temporary `code:execute` over HTTP beside temporary `bash:run`, p50 / p95 | "
        f"{tc['p50_ms']:.1f} / {tc['p95_ms']:.1f} ms | `bash:run` {tb['p50_ms']:.1f} / "
        f"{tb['p95_ms']:.1f} ms | {t['ratio_p50']}x (target <= 2x) |"
    )
    return "\n".join(rows)


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
