"""The SQLite index of runs: what ``morl runs`` and the app list, rebuildable from the folders.

One write connection per process (``BEGIN IMMEDIATE`` + busy timeout, WAL) and one read
connection per thread; :func:`index_row` turns a run's ``status.json`` into a row and refuses a
value SQLite cannot hold, so one bad folder cannot break the listing of the others.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from morl_core.jobs import paths
from morl_core.jobs.records import RunState
from morl_core.runfolder import SCHEMA_VERSION, STATUS, describe_os_error

_BUSY_MS = 30_000
_INT_COLUMNS = ("step", "total_steps", "attempt")
_TIME_COLUMNS = ("created", "started", "finished")
_TEXT_COLUMNS = ("method", "objectives", "executor", "state")
_COLUMNS = ("id", *_TEXT_COLUMNS, *_INT_COLUMNS, *_TIME_COLUMNS, "message")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, method TEXT, objectives TEXT, executor TEXT, state TEXT,
    step INTEGER, total_steps INTEGER, attempt INTEGER,
    created REAL, started REAL, finished REAL, message TEXT);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
"""
_INT64 = (-(2**63), 2**63 - 1)


def describe_sqlite_error(exc: sqlite3.Error, data_dir: Path) -> str:
    """A one-line reason for an index error: "disk full" when it is, not "I/O error" (WAL mode
    often reports a full disk as ``SQLITE_IOERR``; the free space tells)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    full = name == "SQLITE_FULL"
    if not full and (name.startswith("SQLITE_IOERR") or "disk" in str(exc)):
        with contextlib.suppress(OSError):
            stats = os.statvfs(data_dir)
            full = stats.f_bavail * stats.f_frsize < (1 << 20) or (
                stats.f_files > 0 and stats.f_favail == 0
            )
    if full:
        return describe_os_error(OSError(errno.ENOSPC, "disk full", str(data_dir)))
    if name in ("SQLITE_READONLY", "SQLITE_CANTOPEN") or "readonly" in str(exc):
        return f"storage error: the run index in {data_dir} cannot be written ({exc})"
    return f"storage error: run index in {data_dir}: {exc}"


class Index:
    """The SQLite index: one guarded write connection, one read connection per thread
    (``read_only``: opened ``mode=ro``, never created or written)."""

    def __init__(self, path: Path | str, read_only: bool = False):
        self.path = Path(path) if path != ":memory:" else path
        self.read_only = read_only
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._writer = self._connect()
        # Opening an existing index only reads: many processes may open it at once.
        exists = self._writer.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not exists:
            if read_only:
                raise sqlite3.OperationalError("the run index does not exist yet")
            with self._write_lock:
                journal = self._writer.execute("PRAGMA journal_mode").fetchone()[0]
                if self.path != ":memory:" and journal != "wal":
                    self._writer.execute("PRAGMA journal_mode=WAL")
                self._writer.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            # One shared in-memory database (a fallback index rebuilt from the folders).
            if getattr(self, "_memory", None) is None:
                self._memory = sqlite3.connect(":memory:", check_same_thread=False)
                self._memory.row_factory = sqlite3.Row
                self._memory.isolation_level = None
            return self._memory
        target = f"file:{self.path}?mode=ro" if self.read_only else self.path
        conn = sqlite3.connect(
            target,
            uri=self.read_only,
            timeout=_BUSY_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        if not self.read_only:
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.row_factory = sqlite3.Row
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            return self._writer
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace index rows (one transaction)."""
        if not rows:
            return
        sql = (
            f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
            "ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS[1:])
        )
        values = [tuple(row.get(c) for c in _COLUMNS) for row in rows]
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._writer.executemany(sql, values)
                self._writer.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._writer.execute("ROLLBACK")
                raise

    def delete(self, run_ids: list[str]) -> None:
        """Remove rows whose run folders are gone."""
        with self._write_lock:
            self._writer.executemany("DELETE FROM runs WHERE id = ?", [(r,) for r in run_ids])

    def rows(self, states: set[str] | None = None) -> list[dict[str, Any]]:
        """Index rows, newest first, optionally only in ``states``."""
        sql = "SELECT * FROM runs"
        args: list[str] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' * len(states))})"
            args = sorted(states)
        with self._write_lock if self.path == ":memory:" else contextlib.nullcontext():
            rows = self._reader().execute(sql + " ORDER BY created DESC, id DESC", args).fetchall()
        return [dict(r) for r in rows]


def index_row(status: dict[str, Any]) -> dict[str, Any]:
    """The index row of a status; a value SQLite cannot hold raises ``ValueError``."""
    if not isinstance(status, dict):
        raise ValueError(f"{STATUS} holds {type(status).__name__}, not an object")
    row = {c: status.get(c) for c in _COLUMNS}
    row["id"] = paths.check_run_id(status.get("run_id"))
    try:
        row["state"] = str(RunState(status.get("state")))
    except ValueError:
        raise ValueError(f"unknown state {status.get('state')!r} in {STATUS}") from None
    for column in _INT_COLUMNS:
        value = row[column]
        if value is not None and (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not _INT64[0] <= value <= _INT64[1]
        ):
            raise ValueError(f"{column} in {STATUS} is not an integer within int64: {value!r}")
    for column in _TIME_COLUMNS:
        if row[column] is not None and not isinstance(row[column], int | float):
            raise ValueError(f"{column} in {STATUS} is not a time: {row[column]!r}")
    objectives = status.get("objectives") or []
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        raise ValueError(f"objectives in {STATUS} is not a list of names")
    row["objectives"] = json.dumps(objectives)
    for column in ("method", "executor", "message"):
        if row[column] is not None:
            row[column] = str(row[column])
    return row


def broken_row(run_id: str, reason: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The index row of a run that cannot be trusted, keeping what ``previous`` knew of it."""
    row = dict(previous or {})
    row.update(id=run_id, state=str(RunState.BROKEN), message=reason)
    for column in ("method", "executor"):
        row[column] = row.get(column) or ""
    row["objectives"] = row.get("objectives") or "[]"
    row["created"] = row.get("created") or created_from_id(run_id)
    return row


def row_objectives(row: dict[str, Any]) -> list[str]:
    """The objective names an index row holds (JSON text), or none if it does not parse."""
    with contextlib.suppress(ValueError, TypeError):
        names = json.loads(row.get("objectives") or "[]")
        if isinstance(names, list):
            return [str(n) for n in names]
    return []


def created_from_id(run_id: str) -> float | None:
    """The creation time a run id starts with (``YYYYmmdd-HHMMSS-...``), or None."""
    with contextlib.suppress(ValueError):
        return float(time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S")))
    return None
