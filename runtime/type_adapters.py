"""The pydantic payload converter with one cache of type adapters per process.

temporalio's ``PydanticJSONPlainPayloadConverter`` caches a ``TypeAdapter`` per type hint, but
the cache belongs to the converter, and a worker makes a new payload converter for every workflow
it starts (inside the workflow sandbox). So every new session built the adapters of its input,
its update arguments and its activities' results again, inside the sandbox, where building one
costs milliseconds (pydantic resolves the caller's namespace through the sandbox's module
proxies): a profile of sustained creations (bench/creations.py) put 12 ms of the worker's CPU per
new session there, three quarters of its workflow code's time.

With this converter every workflow shares one cache: the worker runs its workflows with every
module passed through the sandbox (``worker.workflow_worker_options``), so a hint is the same
class object in every workflow, and an adapter is a pure function of its hint. A runner that
re-imports modules per workflow would only fill the cache with its own classes (bounded, LRU).
The payloads are the same bytes: only where the adapter comes from changes.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

#: Type adapters by type hint, shared by every converter of the process.
SHARED: functools._lru_cache_wrapper[TypeAdapter[Any]] = functools.lru_cache(maxsize=1024)(
    TypeAdapter
)


def _shared_json() -> PydanticJSONPlainPayloadConverter:
    converter = PydanticJSONPlainPayloadConverter()
    converter._type_adapter = SHARED
    return converter


#: One JSON converter for the process: it holds nothing but its serializer and the adapters, and
#: building one (its serializer's schema) cost ~2% of the HTTP API's CPU a call, since the SDK
#: makes a payload converter for every call's serialization context.
_JSON = _shared_json()


class SharedAdaptersPayloadConverter(PydanticPayloadConverter):
    """``PydanticPayloadConverter`` whose JSON converter is the process's one, with its adapters
    from :data:`SHARED`."""

    def __init__(self) -> None:
        CompositePayloadConverter.__init__(
            self,
            *(
                _JSON if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            ),
        )
