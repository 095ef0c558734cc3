"""The workspace archive inside a session's jail: a gzipped tar of it (``pack``), and
unpacking one into it (``unpack``), every member confined to the workspace.

Loaded with :mod:`backends.jail_files` by :mod:`backends.jail_init` (``Supervisor.files_module``,
which registers both by name, so ``from jail_files import ...`` finds the module loaded first);
never by the worker. Standard library only, any Python 3.8+, as :mod:`backends.jail_files`.
"""

from __future__ import annotations

import io
import os
import stat
import time
from typing import Any

from jail_files import OpError, locate, open_regular, scan, walk, write_all

#: Names of skipped files an archive header lists (the count is always given).
LISTED_SKIPS = 20


class _Exactly(io.RawIOBase):
    """A file's bytes, exactly ``size`` of them: cut if it grew, padded if it shrank meanwhile."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.left)
        if want <= 0:
            return 0
        data = os.read(self.fd, want) or b"\0" * want
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def op_pack(root: str, req: dict) -> tuple[dict, bytes]:
    """The workspace as a gzipped tar: directories, symlinks and regular files in path order,
    skipping files once ``budget`` bytes of file content are taken (they are listed instead)."""
    import gzip
    import tarfile

    budget = int(req.get("budget", 0))
    level = int(req.get("level", 1))
    started = time.perf_counter()
    digest = scan(root)["digest"]  # before anything is read: a change meanwhile shows next time
    out = io.BytesIO()
    files = taken = 0
    skipped: list[str] = []
    skipped_count = skipped_bytes = 0
    # Nested, not parenthesized: this module runs on any Python 3.8+.
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0) as gz:  # noqa: SIM117
        with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel, st in walk(root):
                full = os.path.join(root, rel)
                info = tarfile.TarInfo(rel)
                info.mode = stat.S_IMODE(st.st_mode)
                info.mtime = st.st_mtime
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif stat.S_ISLNK(st.st_mode):
                    try:
                        info.linkname = os.readlink(full)
                    except OSError:
                        continue
                    info.type = tarfile.SYMTYPE
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    if taken + st.st_size > budget:
                        skipped_count += 1
                        skipped_bytes += st.st_size
                        if len(skipped) < LISTED_SKIPS:
                            skipped.append(rel)
                        continue
                    try:
                        fd = open_regular(full, rel, os.O_RDONLY)
                    except (OpError, OSError):
                        continue
                    try:
                        info.size = os.fstat(fd).st_size
                        if taken + info.size > budget:
                            skipped_count += 1
                            skipped_bytes += info.size
                            if len(skipped) < LISTED_SKIPS:
                                skipped.append(rel)
                            continue
                        tar.addfile(info, io.BufferedReader(_Exactly(fd, info.size), 1 << 20))
                    finally:
                        os.close(fd)
                    files += 1
                    taken += info.size
    data = out.getvalue()
    header = {
        "digest": digest,
        "files": files,
        "raw_bytes": taken,
        "bytes": len(data),
        "skipped": skipped,
        "skipped_count": skipped_count,
        "skipped_bytes": skipped_bytes,
        "pack_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    return header, data


def op_unpack(root: str, req: dict, data: bytes) -> dict:
    """Unpack an archive made by :func:`op_pack` into the workspace; every member confined."""
    import tarfile

    files = 0
    later = []  # directories get their mode once their content is in
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            name = os.path.normpath(member.name)
            if name.startswith("/") or name == ".." or name.startswith("../"):
                continue
            try:
                target = locate(root, name, follow=False)
            except OpError:
                continue
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                later.append((target, member.mode))
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.lexists(target) and not os.path.isdir(target):
                os.unlink(target)
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.isreg():
                source = tar.extractfile(member)
                if source is None:
                    continue
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                try:
                    while True:
                        chunk = source.read(1 << 20)
                        if not chunk:
                            break
                        write_all(fd, chunk)
                    os.fchmod(fd, member.mode & 0o7777)
                finally:
                    os.close(fd)
                os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
                files += 1
    for target, mode in reversed(later):
        try:
            os.chmod(target, mode & 0o7777)
        except OSError:
            pass
    return {"files": files}
