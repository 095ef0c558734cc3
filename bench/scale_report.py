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
