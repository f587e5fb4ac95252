"""Crash-safe file primitives for run folders.

* JSON records are replaced atomically (temp file in the same folder, fsync, ``os.replace``), so
  a reader sees the old or the new file, never half of one.
* JSON Lines files are append-only; each record goes out in one ``write`` on an ``O_APPEND`` file.
  Readers stop at the last newline, so a line torn by a crash is never parsed; a writer that
  starts again first cuts such a torn tail off.
* ``locked`` is an advisory ``flock`` for read-modify-write of one file across processes.
* A run folder's own files are never symlinks: every open here uses ``O_NOFOLLOW``, so a
  symlinked ``worker.log`` or ``metrics.jsonl`` fails with :class:`SymlinkRefused` instead of
  reading or appending to a file outside the store (temp files are created ``O_EXCL`` too).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class SymlinkRefused(OSError):
    """A run folder's file is a symlink; it is neither read nor written."""


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symlink at ``path`` with :class:`SymlinkRefused`."""
    try:
        return os.open(path, flags | _NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkRefused(
                errno.ELOOP, "refusing to follow a symlink in a run folder", str(path)
            ) from None
        raise


def _open(path: Path, mode: str, encoding: str | None = None):
    """Open a run-folder file without following a symlink (modes ``r``, ``rb``, ``r+b``)."""
    flags = {"r": os.O_RDONLY, "rb": os.O_RDONLY, "r+b": os.O_RDWR}[mode]
    return os.fdopen(open_fd(path, flags), mode, encoding=encoding)


def write_json_atomic(path: Path, data: Any, *, fsync: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` via a temp file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = open_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_json(path: Path) -> Any | None:
    """The parsed JSON at ``path``, or ``None`` when the file does not exist."""
    try:
        with _open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def append_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Append records as JSON lines with one ``write`` call (flushed, not fsynced)."""
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    if not data:
        return
    fd = open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        written = os.write(fd, data)
        if written != len(data):  # only on a full disk, in practice
            raise OSError(errno.ENOSPC, "short write (disk full?)", str(path))
    finally:
        os.close(fd)


def read_jsonl(path: Path, offset: int = 0) -> tuple[list[Any], int]:
    """Complete records from byte ``offset`` on, and the offset to read from next time.

    A torn last line (no newline yet) is left for the next call; a line that does not parse
    (which only a foreign writer can produce) is skipped.
    """
    try:
        with _open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    records = []
    for line in data[: end + 1].splitlines():
        if line.strip():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records, offset + end + 1


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line (a crash mid-append) off ``path``; returns the bytes removed."""
    try:
        with _open(path, "r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            handle.seek(max(0, size - 1))
            if handle.read(1) == b"\n":
                return 0
            # Walk back to the last newline in blocks (files can be large).
            pos = size
            keep = 0
            while pos > 0:
                start = max(0, pos - 65536)
                handle.seek(start)
                block = handle.read(pos - start)
                found = block.rfind(b"\n")
                if found >= 0:
                    keep = start + found + 1
                    break
                pos = start
            handle.truncate(keep)
            return size - keep
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing); yields whether it was taken."""
    fd = open_fd(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def describe_os_error(exc: OSError) -> str:
    """A one-line, user-facing reason for a storage error (disk full, permission, ...)."""
    where = f" ({exc.filename})" if exc.filename else ""
    reasons = {
        errno.ENOSPC: "disk full: no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ELOOP: "refusing to follow a symlink in a run folder",
    }
    reason = reasons.get(exc.errno, exc.strerror or str(exc))
    return f"storage error: {reason}{where}"
