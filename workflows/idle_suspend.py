"""Idle suspend: a session quiet for ``idle_suspend_seconds`` snapshots, releases its instance
and turns PAUSED with its deadline kept; the next call resumes it (``ExecutePath``).

A session whose background processes (``bash:start``) still run is not idle: suspending would
end them. It is looked at again after another quiet period (docs/fork-and-suspend.md).
"""

from __future__ import annotations

from workflows.core import SessionCore
from workflows.phase import Phase


def suspend_in(core: SessionCore) -> float | None:
    """Seconds until an idle session is suspended; None when it will not be (no
    ``idle_suspend_seconds``, no instance to release)."""
    if core.state.instance is None or core.phase not in (Phase.ACTIVE, Phase.IDLE):
        return None
    return core.clock.quiet_for(core.input.idle_suspend_seconds)


async def suspend(core: SessionCore) -> None:
    """Suspend the session if it is (still) due: call with the lock held, so a call that came
    meanwhile has made it not idle."""
    due = suspend_in(core)
    if due is None or due > 0:
        return
    await core.fresh_snapshot()
    processes = (core.state.snapshot or {}).get("processes") or []
    running = [p for p in processes if isinstance(p, dict) and p.get("status") == "running"]
    if running:
        core.clock.touch()  # quiet again from now: looked at after another idle period
        core.record("suspend", message=f"not now: {len(running)} background process(es) run")
        return
    await core.release_instance()
    core.move(Phase.PAUSED)
    core.state.suspended = True
    core.record("suspend", message=f"idle {core.input.idle_suspend_seconds:g} s")
    core.show_details()
