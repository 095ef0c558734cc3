"""The embedded dev server every benchmark measures on."""

from __future__ import annotations

from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from contract import SEARCH_ATTRIBUTES
from runtime.embedded import dynamic_config_args, sqlite_pragma_args, temporal_binary


async def start_embedded(
    db_file: Path | None, data_converter: DataConverter = pydantic_data_converter
) -> WorkflowEnvironment:
    """A dev server with the search attributes registered; with ``db_file``, persistent the way
    the main command runs it, otherwise in memory."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_database_filename=str(db_file) if db_file else None,
        dev_server_extra_args=[*(sqlite_pragma_args() if db_file else []), *dynamic_config_args()],
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter,
        dev_server_log_level="error",
    )
