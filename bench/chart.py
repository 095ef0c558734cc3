"""Draw a bench run: p50/p95 of each path beside its floor, and throughput beside its floors.

.venv/bin/python -m bench.chart bench/results/bench-<time>.json [docs/bench.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.throughput import THROUGHPUT_KINDS

OURS, FLOOR, PLUGIN, DIRECT = "#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c"


def draw(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["latency"]
    fig, (lat, thr) = plt.subplots(
        1, 2, figsize=(14, 1.1 * len(rows) + 2.6), gridspec_kw={"width_ratios": [3, 1.25]}
    )
    _latency(lat, rows)
    _throughput(thr, results["throughput"])
    m = results["machine"]
    fig.suptitle(
        f"python -m bench.run, {results['started']}, embedded dev server, "
        f"{m['cpus']}-core shared machine",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _latency(lat: Any, rows: list[dict[str, Any]]) -> None:
    """Each path's bars: ours, its floor, and what was measured beside them."""
    labels: list[str] = []
    ticks: list[float] = []
    y = 0.0
    for row in reversed(rows):
        bars = [("ours", row["ours"], OURS), (row["floor_name"], row["floor"], FLOOR)]
        if "floor_with_plugin" in row:
            bars.append(
                ("the same floor, worker with our SessionsPlugin", row["floor_with_plugin"], PLUGIN)
            )
        if "direct" in row:
            bars.append((f"direct, no Temporal ({row['direct_name']})", row["direct"], DIRECT))
        if "direct_with_snapshot" in row:
            bars.append(("direct: run + snapshot", row["direct_with_snapshot"], DIRECT))
        top = y + 0.28 * (len(bars) - 1)
        for k, (name, stats, color) in enumerate(bars):
            at = top - 0.28 * k
            lat.barh(at, stats["p95_ms"], height=0.24, color=color, alpha=0.3)
            lat.barh(at, stats["p50_ms"], height=0.24, color=color)
            lat.text(
                stats["p95_ms"] + 1,
                at,
                f"{name}: {stats['p50_ms']:.1f} / {stats['p95_ms']:.1f}",
                va="center",
                fontsize=7,
            )
        target = row["target_p50"]
        verdict = (
            f"{row['ratio_p50']:.2f}x (target <= {target}x, {'met' if row['met'] else 'missed'})"
            if target
            else f"{row['ratio_p50']:.2f}x"
        )
        labels.append(f"{row['path']}\n{verdict}")
        ticks.append((y + top) / 2)
        y = top + 0.6
    lat.set_yticks(ticks, labels, fontsize=8)
    lat.set_xlabel("ms per call: p50 (solid), p95 (light); label: p50 / p95")
    lat.set_xlim(0, _xmax(rows) * 1.45)
    lat.set_title("latency: each path beside its bare-Temporal floor", fontsize=10)


def _throughput(thr: Any, t: dict[str, Any]) -> None:
    """Calls per second of ours beside the floors (the direct figure in the title)."""
    names = [n for n in THROUGHPUT_KINDS if n in t and not n.startswith("direct")]
    rates = [t[n]["calls_per_second"] for n in names]
    colors = [OURS if n.startswith("ours") else FLOOR for n in names]
    thr.bar(range(len(names)), rates, color=colors)
    for i, rate in enumerate(rates):
        thr.text(i, rate, f"{rate:.0f}", ha="center", va="bottom", fontsize=8)
    short = {
        "floor: no-op update": "floor:\nno-op\nupdate",
        "floor: update + local activity": "floor:\nupdate +\nlocal act.",
        "ours: bash:run echo": "ours:\nbash:run\necho",
        "direct: BashBackend.run in-process": "direct:\nno Temporal",
    }
    thr.set_xticks(range(len(names)), [short.get(n, n) for n in names], fontsize=8)
    thr.set_ylabel("calls per second")
    verdict = "met" if t["met"] else "missed"
    thr.set_title(
        f"throughput, {t['sessions']} sessions x {t['calls_each']} calls\n"
        f"ours / update + LA = {t['ratio']:.2f}x\n(target >= {t['target']}x, {verdict})"
        + "".join(
            f"\n{n.split(':')[0]}, no Temporal: {t[n]['calls_per_second']:.0f} calls/s"
            for n in THROUGHPUT_KINDS
            if n in t and n.startswith("direct")
        ),
        fontsize=10,
    )


def _xmax(rows: list[dict[str, Any]]) -> float:
    return max(max(r["ours"]["p95_ms"], r["floor"]["p95_ms"]) for r in rows)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/bench.png")
    draw(json.loads(source.read_text()), target)
    print(f"wrote {target}")
