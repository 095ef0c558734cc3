"""Which workflow changes a run takes: ``workflow.patched``, with one marker for a new run.

Each change to the session workflow since its first release is behind a patch id, so that runs
started by older code replay. The SDK records a marker, and upserts ``TemporalChangeVersion``,
for each patch a run takes: up to three in a new session's first workflow task and its first
call. A run started by this code records ``SESSIONS_V2`` alone and takes every change listed in
``IN_V2``; a run without that marker (started earlier, replayed from its history) asks for each
patch as before, and is answered as before.
"""

from __future__ import annotations

from temporalio import workflow

#: Patch id: one marker for every change below (added with it, for sessions started since).
SESSIONS_V2 = "sessions-v2"
#: Sessions keep SessionDeadline and SessionName up to date.
UI_ATTRIBUTES = "ui-attributes"
#: Initialize runs as a local activity.
INITIALIZE_LOCALLY = "initialize-locally"
#: A call runs as a local activity when the worker running the workflow task holds the instance
#: (it usually does: sticky execution, and initialize ran there), else on the pinned queue.
CALL_LOCALLY = "call-locally"
#: After a local try found the instance on another worker, later calls go straight to its pinned
#: queue (a local try that misses costs a round of its own), trying here again now and then.
REMEMBER_ELSEWHERE = "remember-elsewhere"
#: A temporary session's one call runs as a local activity (one round trip).
TEMPORARY_LOCALLY = "temporary-locally"
#: A call with ``stream`` runs as a regular activity and publishes its output (a history
#: recorded before it ran such a call locally).
LIVE_OUTPUT = "live-output"
#: A call not started on its worker within ``PROBE_AFTER`` asks the worker whether it is alive
#: before it is declared lost (a history recorded before waited ``SCHEDULE_TO_START``).
PROBE_WORKER = "probe-worker"
#: A session bounds its waiting output polls (how many, and how long each waits).
BOUNDED_POLLS = "bounded-polls"

IN_V2 = frozenset(
    {
        UI_ATTRIBUTES,
        INITIALIZE_LOCALLY,
        CALL_LOCALLY,
        REMEMBER_ELSEWHERE,
        TEMPORARY_LOCALLY,
        LIVE_OUTPUT,
    }
)


def patched(patch_id: str) -> bool:
    """``workflow.patched(patch_id)``, answered by the ``SESSIONS_V2`` marker when the run has
    it (or is new). The SDK keeps a patch's first answer for the whole run, so a run replayed
    without the marker asks for each patch, in the same places, every time."""
    if patch_id in IN_V2 and workflow.patched(SESSIONS_V2):
        return True
    return workflow.patched(patch_id)
