"""How every bench measures: samples interleaved, their statistics, and one path beside its floor.

A path (ours) is always measured in the same run as its floor (the bare Temporal operation it is
built on) and whatever is shown beside it, one sample of each in turn: latency on a shared
machine shifts in steps during a run, so separate runs would be incomparable.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class After:
    """What an op may return: work to run once its sample is taken, untimed (a cleanup)."""

    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        self.fn = fn


Op = Callable[[int], Awaitable[Any]]


async def sample(op: Op, i: int) -> float:
    """One run of ``op``, in ms (its :class:`After`, if any, runs untimed)."""
    started = time.perf_counter()
    result = await op(i)
    took = (time.perf_counter() - started) * 1000
    if isinstance(result, After):
        await result.fn()
    return took


async def timed(n: int, op: Op, warmup: int = 3) -> list[float]:
    for i in range(warmup):
        await sample(op, -1 - i)
    return [await sample(op, i) for i in range(n)]


async def interleaved(n: int, ops: Sequence[Op], warmup: int = 3) -> list[list[float]]:
    """One sample of each op in turn, the order rotated each round, so every op meets the same
    machine and server moment and none always follows the same neighbour."""
    for op in ops:
        await timed(0, op, warmup)
    samples: list[list[float]] = [[] for _ in ops]
    for i in range(n):
        for k in range(len(ops)):
            j = (i + k) % len(ops)
            samples[j].append(await sample(ops[j], i))
    return samples


def stats(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
    }


def drift(samples: list[float]) -> float:
    """Median of the last half over the median of the first tenth: a floor with a step in it
    (a misconfigured server) shows well over 1."""
    head = samples[: max(3, len(samples) // 10)]
    return round(statistics.median(samples[len(samples) // 2 :]) / statistics.median(head), 2)


class Errors:
    """Non-zero envelope codes per path: a latency of a failed call is no latency."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def check(self, label: str, envelope: dict[str, Any], **meta: Any) -> dict[str, Any]:
        meta_ok = all(envelope["meta"].get(k) == v for k, v in meta.items())
        bad = envelope.get("code") != 0 or not meta_ok
        self.counts[label] = self.counts.get(label, 0) + int(bad)
        return envelope

    def of(self, labels: Sequence[str]) -> int:
        return sum(self.counts.get(label, 0) for label in labels)


@dataclass
class Variant:
    """One more row measured against the same floor, with no target (a no-op tool's path)."""

    path: str
    label: str
    op: Op


@dataclass
class PathSpec:
    """One of our paths beside its floor, and what is measured with them in the same rounds.

    ``direct``: the same work in-process with no Temporal (its overhead is reported);
    ``beside``: more ops whose stats go into the row under their key (``floor_with_plugin``);
    ``parts``: ops timing a piece of the path, reported under ``parts``; ``variants``: more
    rows against this floor; ``labels``: the error counters of the row (default its ``label``).
    """

    path: str
    label: str
    ours: Op
    floor_name: str
    floor: Op
    target: float | None
    direct_name: str | None = None
    direct: Op | None = None
    beside: dict[str, Op] = field(default_factory=dict)
    parts: dict[str, Op] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    labels: tuple[str, ...] = ()
    samples: int | None = None


def compare(
    path: str,
    ours: list[float],
    floor_name: str,
    floor: list[float],
    target: float | None,
    errors: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """A row: ours beside the floor (ratios of p50 and p95, the target met or not)."""
    o, f = stats(ours), stats(floor)
    row: dict[str, Any] = {
        "path": path,
        "ours": o,
        "floor_name": floor_name,
        "floor": f,
        "ratio_p50": round(o["p50_ms"] / f["p50_ms"], 2),
        "ratio_p95": round(o["p95_ms"] / f["p95_ms"], 2),
        "target_p50": target,
        "met": None if target is None else o["p50_ms"] / f["p50_ms"] <= target and errors == 0,
        "errors": errors,
        "floor_drift": drift(floor),
    }
    direct = extra.get("direct")
    if direct is not None:  # the floor's round trips plus the tool's own work, no Temporal
        row["ratio_p50_vs_floor_plus_direct"] = round(
            o["p50_ms"] / (f["p50_ms"] + direct["p50_ms"]), 2
        )
    row.update(extra)
    return row


async def measure(n: int, spec: PathSpec, errors: Errors) -> list[dict[str, Any]]:
    """Measure a path, its floor and everything beside them, interleaved; its row, then a row
    per variant."""
    named: dict[str, Op] = {"floor": spec.floor, "ours": spec.ours}
    if spec.direct is not None:
        named["direct"] = spec.direct
    named |= {f"variant:{v.label}": v.op for v in spec.variants}
    named |= {f"beside:{key}": op for key, op in spec.beside.items()}
    named |= {f"part:{name}": op for name, op in spec.parts.items()}
    taken = dict(
        zip(named, await interleaved(spec.samples or n, list(named.values())), strict=True)
    )
    ours, floor = taken["ours"], taken["floor"]
    extra: dict[str, Any] = {}
    if spec.direct is not None:
        direct = taken["direct"]
        extra["direct"] = stats(direct)
        extra["direct_name"] = spec.direct_name
        extra["temporal_overhead_ms"] = round(
            statistics.median(ours) - statistics.median(direct), 2
        )
    extra |= {key: stats(taken[f"beside:{key}"]) for key in spec.beside}
    if spec.parts:
        extra["parts"] = {name: stats(taken[f"part:{name}"]) for name in spec.parts}
    errs = errors.of(spec.labels or (spec.label,))
    rows = [compare(spec.path, ours, spec.floor_name, floor, spec.target, errs, **extra)]
    for v in spec.variants:
        variant = taken[f"variant:{v.label}"]
        rows.append(compare(v.path, variant, spec.floor_name, floor, None, errors.of((v.label,))))
    return rows
