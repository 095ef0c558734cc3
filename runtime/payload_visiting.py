"""The SDK's payload passes over a workflow task, without the work that cannot change a payload.

Before a workflow task runs and after it completes, temporalio 1.35 walks every payload of the
activation (and of the completion) three times: codec, external storage, storage references.
For each payload sequence it meets, each pass first asks the workflow which serialization
context the payload belongs to, and with the sandboxed runner that question enters the sandbox
(an ``exec`` of a small source string, a restricted-import context): six sandbox entries per
payload per task, whether or not the pass can do anything to it. A profile of the throughput
bench put this at about a fifth of our worker's Python CPU per call (bench/README.md, "Scale").

:func:`install` makes each pass answer its payloads unchanged, without asking for the context,
when it cannot change them: no codec (the codec passes), no payload at or over the external
storage's threshold (the store pass), no storage reference among them (the retrieve and reference
passes). Without a codec it also skips the walks of the codec and reference passes altogether
(four of the six walks per task): with no codec they change nothing, and the storage reference
marker they would check is never written by this SDK (``_ENCODE_STORAGE_REFERENCES`` is off).
What a pass does when it can change a payload is the SDK's own code, untouched. The upstream
change would be the same tests inside ``_CommandAwareDataConverter`` and ``encode_completion`` /
``decode_activation``; until then this applies only to the pinned SDK version, and not at all to
any other (the SDK's behaviour stays).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import temporalio
import temporalio.bridge.worker as bridge_worker
from temporalio.api.common.v1 import Payload
from temporalio.converter import _data_converter, _extstore
from temporalio.worker import _workflow
from temporalio.worker._command_aware_visitor import CommandAwarePayloadVisitor

log = logging.getLogger(__name__)

#: The SDK version whose private ``_CommandAwareDataConverter`` this was written against.
SDK_VERSION = "1.35.0"
#: ``0`` turns this module's shortcuts and the shared type adapters off (the SDK as it ships):
#: an escape hatch, and the "before" of bench/shortcuts.py.
SHORTCUTS_ENV = "DURABLE_SESSIONS_SDK_SHORTCUTS"


def enabled() -> bool:
    return os.environ.get(SHORTCUTS_ENV, "1") != "0"


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


async def decode_activation(
    activation: Any, data_converter: Any, decode_headers: bool, storage_concurrency_limit: int
) -> Any:
    """The SDK's three passes over an activation; without a codec only the one that can change
    a payload (external storage retrieve): the other two would walk every payload for nothing."""
    if data_converter.payload_codec is not None or _extstore._ENCODE_STORAGE_REFERENCES:
        return await _ORIGINAL["decode_activation"](
            activation, data_converter, decode_headers, storage_concurrency_limit
        )
    metrics = _extstore.StorageOperationMetrics()
    with metrics.track():
        await CommandAwarePayloadVisitor(
            skip_search_attributes=True,
            skip_headers=not decode_headers,
            concurrency_limit=storage_concurrency_limit,
        ).visit(
            bridge_worker._Visitor(data_converter._external_retrieve_payload_sequence), activation
        )
    return metrics


async def encode_completion(
    completion: Any, data_converter: Any, encode_headers: bool, storage_concurrency_limit: int
) -> Any:
    """The SDK's three passes over a completion; without a codec only external storage's."""
    if data_converter.payload_codec is not None or _extstore._ENCODE_STORAGE_REFERENCES:
        return await _ORIGINAL["encode_completion"](
            completion, data_converter, encode_headers, storage_concurrency_limit
        )
    metrics = _extstore.StorageOperationMetrics()
    with metrics.track():
        await CommandAwarePayloadVisitor(
            skip_search_attributes=True,
            skip_headers=not encode_headers,
            concurrency_limit=storage_concurrency_limit,
        ).visit(bridge_worker._Visitor(data_converter._external_store_payload_sequence), completion)
    return metrics


_ORIGINAL: dict[str, Any] = {}


def install() -> bool:
    """Apply the shortcuts once per process; False (and nothing changed) on another SDK."""
    global _installed
    if _installed:
        return True
    if not enabled():
        return False
    version = getattr(temporalio, "__version__", None)
    target = getattr(_workflow, "_CommandAwareDataConverter", None)
    if version != SDK_VERSION or target is None:
        log.info("temporalio %s: payload passes left as they are", version)
        return False
    for name, may_change in _MAY_CHANGE.items():
        setattr(target, name, _shortcut(getattr(target, name), may_change))
    for name, replacement in (
        ("decode_activation", decode_activation),
        ("encode_completion", encode_completion),
    ):
        _ORIGINAL[name] = getattr(bridge_worker, name)
        setattr(bridge_worker, name, replacement)
    _installed = True
    return True
