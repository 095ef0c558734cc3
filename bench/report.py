"""The bench's table: each path beside its floor, throughput, load, and the machine."""

from __future__ import annotations

from typing import Any

from bench.throughput import THROUGHPUT_KINDS


def _verdict(met: bool | None, target: str) -> str:
    if met is None:
        return ""
    return f"{target} {'met' if met else 'MISSED'}"


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{'path':50} {'p50':>7} {'p95':>7}  {'floor':42} {'p50':>7} {'p95':>7} "
        f"{'x p50':>6} {'x p95':>6}  target"
    ]
    for row in results["latency"]:
        lines += _latency_lines(row)
    if "throughput" not in results:  # --latency-only
        return "\n".join(lines)
    lines += ["", *_throughput_lines(results["throughput"])]
    lines += ["", *_load_lines(results["load"])]
    m = results["machine"]
    lines.append("")
    lines.append(
        f"{m['cpus']} cpus; 1-minute load average before {m['load_before'][0]:.2f}, "
        + ", ".join(f"after {k} {v[0]:.2f}" for k, v in m.get("load_by_section", {}).items())
    )
    return "\n".join(lines)


def _latency_lines(row: dict[str, Any]) -> list[str]:
    """A path beside its floor, then what was measured beside them."""
    o, f = row["ours"], row["floor"]
    target = _verdict(row["met"], f"<= {row['target_p50']}x") if row["target_p50"] else ""
    lines = [
        f"{row['path']:50} {o['p50_ms']:7.1f} {o['p95_ms']:7.1f}  {row['floor_name']:42} "
        f"{f['p50_ms']:7.1f} {f['p95_ms']:7.1f} {row['ratio_p50']:5.2f}x "
        f"{row['ratio_p95']:5.2f}x  {target}"
        + (f" ({row['errors']} errors)" if row["errors"] else "")
    ]
    if "direct" in row:
        d = row["direct"]
        lines.append(
            f"{'  direct: ' + row['direct_name']:50} {d['p50_ms']:7.1f} {d['p95_ms']:7.1f}"
            f"  Temporal overhead (p50 ours - direct): {row['temporal_overhead_ms']:.1f} ms;"
            f" ours / (floor + direct): {row['ratio_p50_vs_floor_plus_direct']:.2f}x"
        )
    if "direct_with_snapshot" in row:
        d = row["direct_with_snapshot"]
        lines.append(
            f"{'  direct: run + snapshot (the worker does both)':50} "
            f"{d['p50_ms']:7.1f} {d['p95_ms']:7.1f}"
        )
    if "floor_with_plugin" in row:
        f = row["floor_with_plugin"]
        lines.append(
            f"{'  floor on a worker with our SessionsPlugin':50} "
            f"{f['p50_ms']:7.1f} {f['p95_ms']:7.1f}  ours / it: "
            f"{row['ours']['p50_ms'] / f['p50_ms']:.2f}x"
        )
    for name, part in row.get("parts", {}).items():
        lines.append(f"{'  part: ' + name:50} {part['p50_ms']:7.1f} {part['p95_ms']:7.1f}")
    for who, spans in row.get("history", {}).items():
        lines.append(f"  history ({who}): " + ", ".join(f"{k}={v}" for k, v in spans.items()))
    return lines


def _throughput_lines(t: dict[str, Any]) -> list[str]:
    lines = [
        f"throughput, {t['sessions']} sessions x {t['calls_each']} calls at once "
        f"(median of {t['rounds']} interleaved rounds):"
    ]
    for name in THROUGHPUT_KINDS:
        r = t[name]
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_ms_per_call"].items())
        lines.append(
            f"  {name:34} {r['calls_per_second']:7.1f} calls/s  p50 {r.get('p50_ms', 0):6.1f} "
            f"p95 {r.get('p95_ms', 0):6.1f} ms  errors {r['errors']}  CPU ms per call: {cpu}"
        )
    lines.append(
        f"  ours / update + local activity: {t['ratio']:.2f}x  "
        + _verdict(t["met"], f">= {t['target']}x")
    )
    return lines


def _load_lines(load: dict[str, Any]) -> list[str]:
    lines = []
    for key in ("creations_floor", "creations_ours"):
        c = load[key]
        lines.append(
            f"{c['what']:62} {c['wall_ms']:7.0f} ms vs one {c['one_ms']:6.0f} ms: "
            f"{c['ratio']:.2f}x  " + _verdict(c.get("met"), "<= 1.3x")
        )
    for key in ("held", "held_evicted"):
        h = load.get(key)
        if h:
            lines.append(
                f"{h['sessions']} idle sessions held, worker cache {h['worker_cache']}: RSS "
                f"{h['worker_rss_before_mb']} -> {h['worker_rss_after_mb']} MB "
                f"({h['per_session_kb']} KB each)  " + _verdict(h.get("met"), "<= 400 MB")
            )
    return lines
