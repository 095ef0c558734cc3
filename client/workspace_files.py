"""Files in and out of a session's workspace, as chunks of ``write_file`` / ``read_file`` calls.

A chunk's base64 stays under a call's 1 MiB of parameters; chunks over 256 KiB leave history
through external storage. Each chunk names its offset, so a retried one is harmless.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from client.errors import SessionError
from contract import ErrorCode

#: A tool call: ``execute(tool, params)``, answering an envelope dict (``Sandbox.execute``).
Execute = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

UPLOAD_CHUNK_BYTES = 640 * 1024
DOWNLOAD_CHUNK_BYTES = 2 * 1024 * 1024
MAX_DOWNLOAD_CHUNK_BYTES = 4 * 1024 * 1024


async def upload(
    execute: Execute, local: str | os.PathLike[str], remote: str, resource_type: str,
    chunk_bytes: int = UPLOAD_CHUNK_BYTES,
) -> dict[str, Any]:  # fmt: skip
    """Write ``local`` to ``remote`` chunk by chunk; the last call's data (``path``, ``size``).

    Sent as ``<resource_type>:write_file`` calls of ``chunk_bytes`` each (base64; a call's
    parameters are at most 1 MiB), each written at its offset, so a retried chunk is harmless;
    chunks over 256 KiB leave history through external storage. The workspace's snapshot waits
    for the last chunk. Raises :class:`SessionError` with the envelope's code when a call fails.
    """
    if not 0 < chunk_bytes <= UPLOAD_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in 1..{UPLOAD_CHUNK_BYTES}")
    size = os.path.getsize(local)
    offset = 0
    with open(local, "rb") as source:
        while True:
            chunk = await asyncio.to_thread(source.read, chunk_bytes)
            more = offset + len(chunk) < size
            params = {
                "path": remote,
                "content": base64.b64encode(chunk).decode("ascii"),
                "encoding": "base64",
                "offset": offset,
                "more": more,
            }
            data = _data(await execute(f"{resource_type}:write_file", params))
            offset += len(chunk)
            if not more:
                return data


async def download(
    execute: Execute, remote: str, local: str | os.PathLike[str], resource_type: str,
    chunk_bytes: int = DOWNLOAD_CHUNK_BYTES,
) -> dict[str, Any]:  # fmt: skip
    """Read ``remote`` chunk by chunk into ``local`` (replaced once complete); ``path`` and
    ``size``.

    Sent as ``<resource_type>:read_file`` calls of ``chunk_bytes`` each (at most 4 MiB; answers
    over 256 KiB leave history through external storage). Raises :class:`SessionError` when a
    call fails or the file changed size meanwhile."""
    if not 0 < chunk_bytes <= MAX_DOWNLOAD_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in 1..{MAX_DOWNLOAD_CHUNK_BYTES}")
    partial = f"{os.fspath(local)}.partial-{uuid.uuid4().hex[:8]}"
    offset, size, path = 0, None, remote
    try:
        with open(partial, "wb") as target:
            while size is None or offset < size:
                params = {"path": remote, "offset": offset, "length": chunk_bytes,
                          "encoding": "base64"}  # fmt: skip
                data = _data(await execute(f"{resource_type}:read_file", params))
                if size is not None and data["size"] != size:
                    raise SessionError(
                        ErrorCode.INVALID_INPUT,
                        f"{remote} changed size while it was read ({size} -> {data['size']})",
                    )
                size, path = data["size"], data["path"]
                await asyncio.to_thread(target.write, base64.b64decode(data["content"]))
                offset = data["next_offset"]
                if data["eof"]:
                    break
        os.replace(partial, local)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return {"path": path, "size": offset}


def _data(answer: dict[str, Any]) -> dict[str, Any]:
    if answer["code"] != ErrorCode.SUCCESS:
        raise SessionError(answer["code"], answer["message"])
    data: dict[str, Any] = answer["data"]
    return data
