"""The SDK's payload passes over a workflow task, without the work that cannot change a payload.

Before a workflow task runs and after it completes, temporalio 1.35 walks every payload of the
activation (and of the completion) three times: codec, external storage, storage references.
For each payload sequence it meets, each pass first asks the workflow which serialization
context the payload belongs to, and with the sandboxed runner that question enters the sandbox
(an ``exec`` of a small source string, a restricted-import context): six sandbox entries per
payload per task, whether or not the pass can do anything to it. A profile of the throughput
bench put this at about a fifth of our worker's Python CPU per call (bench/README.md, "Calls per
core").

:func:`install` makes each pass answer its payloads unchanged, without asking for the context,
when it cannot change them: no codec (the codec passes), no payload at or over the external
storage's threshold (the store pass), no storage reference among them (the retrieve and reference
passes). What a pass does when it can change a payload is the SDK's own code, untouched. The
upstream change would be the same test inside ``_CommandAwareDataConverter``; until then it is
applied only to the pinned SDK version, and not at all to any other (the SDK's behaviour stays).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import temporalio
from temporalio.api.common.v1 import Payload
from temporalio.converter import _data_converter, _extstore
from temporalio.worker import _workflow

log = logging.getLogger(__name__)

#: The SDK version whose private ``_CommandAwareDataConverter`` this was written against.
SDK_VERSION = "1.35.0"

Pass = Callable[[Any, Sequence[Payload]], Awaitable[list[Payload]]]

_installed = False


def _unchanged(payloads: Sequence[Payload]) -> list[Payload]:
    # The very sequence: the SDK's visitor then leaves the message as it is (no copy).
    return payloads  # type: ignore[return-value]


def _any_reference(payloads: Sequence[Payload]) -> bool:
    return any(_data_converter._is_reference_payload(p) for p in payloads)


def _any_marked(payloads: Sequence[Payload]) -> bool:
    return any(_data_converter._has_reference_marker(p) for p in payloads)


def _any_large(converter: Any, payloads: Sequence[Payload]) -> bool:
    storage = converter.external_storage
    if storage is None:
        return False
    threshold = storage.payload_size_threshold
    return any(p.ByteSize() >= threshold for p in payloads)


#: Per pass: when it may change the payloads (else they are answered unchanged).
_MAY_CHANGE: dict[str, Callable[[Any, Sequence[Payload]], bool]] = {
    "_encode_payload_sequence": lambda dc, p: dc.payload_codec is not None,
    "_decode_payload_sequence": lambda dc, p: dc.payload_codec is not None,
    "_external_store_payload_sequence": _any_large,
    "_external_retrieve_payload_sequence": lambda dc, p: _any_reference(p),
    "_encode_reference_payload_sequence": lambda dc, p: (
        dc.payload_codec is not None and _extstore._ENCODE_STORAGE_REFERENCES and _any_reference(p)
    ),
    "_decode_reference_payload_sequence": lambda dc, p: _any_marked(p),
}


def _shortcut(original: Pass, may_change: Callable[[Any, Sequence[Payload]], bool]) -> Pass:
    async def visit(self: Any, payloads: Sequence[Payload]) -> list[Payload]:
        if not may_change(self, payloads):
            return _unchanged(payloads)
        return await original(self, payloads)

    visit.__name__ = original.__name__
    visit.__doc__ = original.__doc__
    return visit


def install() -> bool:
    """Apply the shortcuts once per process; False (and nothing changed) on another SDK."""
    global _installed
    if _installed:
        return True
    version = getattr(temporalio, "__version__", None)
    target = getattr(_workflow, "_CommandAwareDataConverter", None)
    if version != SDK_VERSION or target is None:
        log.info("temporalio %s: payload passes left as they are", version)
        return False
    for name, may_change in _MAY_CHANGE.items():
        setattr(target, name, _shortcut(getattr(target, name), may_change))
    _installed = True
    return True
