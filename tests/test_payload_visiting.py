"""runtime/payload_visiting.py: the SDK's payload passes skip the sandbox only where they cannot
change a payload; a payload over the threshold is still stored outside history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, WorkflowSerializationContext
from temporalio.worker._workflow import _CommandAwareDataConverter

from runtime import payload_visiting
from runtime.payload_store import data_converter


class _CountingInstance:
    """Stands for the sandboxed workflow: counts how often a pass asks for its context."""

    def __init__(self) -> None:
        self.asked = 0

    def get_serialization_context(self, _: Any) -> Any:
        self.asked += 1
        return None

    def get_external_store_context(self, _: Any) -> Any:
        from temporalio.converter import StorageDriverStoreContext

        self.asked += 1
        return StorageDriverStoreContext(target=None)


def _converter(tmp_path: Path, instance: _CountingInstance) -> Any:
    plain = data_converter(str(tmp_path), threshold=1000, codec=None)
    context = WorkflowSerializationContext(namespace="default", workflow_id="w")
    return _CommandAwareDataConverter.create(
        instance=instance,  # type: ignore[arg-type]
        context_free_dc=plain,
        workflow_context_dc=plain.with_context(context),
        workflow_context=context,
    )


async def test_small_payloads_pass_unchanged_without_entering_the_workflow(
    tmp_path: Path,
) -> None:
    assert payload_visiting.install()
    instance = _CountingInstance()
    dc = _converter(tmp_path, instance)
    small = [Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"')]
    for name in payload_visiting._MAY_CHANGE:
        answer = await getattr(dc, name)(small)
        assert answer[0] is small[0], name
    assert instance.asked == 0


async def test_a_large_payload_is_still_stored_and_read_back(tmp_path: Path) -> None:
    assert payload_visiting.install()
    instance = _CountingInstance()
    dc = _converter(tmp_path, instance)
    large = Payload(metadata={"encoding": b"json/plain"}, data=b"x" * 5000)
    [reference] = await dc._external_store_payload_sequence([large])
    assert reference.ByteSize() < 1000 and instance.asked > 0
    assert any(p.is_file() for p in tmp_path.rglob("*"))
    [back] = await dc._external_retrieve_payload_sequence([reference])
    assert back.data == large.data


def test_every_workflow_s_payload_converter_shares_one_cache_of_type_adapters() -> None:
    # A worker makes a payload converter per workflow; the adapters built for one serve all.
    from contract import ToolOutcome
    from runtime.plugin import SessionsPlugin
    from runtime.type_adapters import SHARED

    plugin = SessionsPlugin(codec=None)
    assert isinstance(plugin.data_converter, DataConverter)
    converter_class = plugin.data_converter.payload_converter_class
    first, second = converter_class(), converter_class()
    outcome = ToolOutcome(code=0, message="ok")
    [payload] = first.to_payloads([outcome])
    SHARED.cache_clear()
    assert first.from_payloads([payload], [ToolOutcome]) == [outcome]
    assert SHARED.cache_info().misses == 1  # built once, in the process-wide cache
    assert second.from_payloads([payload], [ToolOutcome]) == [outcome]
    assert SHARED.cache_info().misses == 1  # the second converter built nothing
    assert SHARED.cache_info().hits == 1
