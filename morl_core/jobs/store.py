"""The run store: one folder per run (the truth) and an SQLite index of runs (for listing).

Layout under the data directory (see :mod:`morl_core.jobs.paths`)::

    DATA/index.sqlite            WAL mode; rebuildable from the folders at any time
    DATA/runs/<run id>/
        config.json              the validated RunConfig (input)
        status.json              RunStatus, replaced atomically (see records.update_status)
        metrics.jsonl            one record per step, append-only
        front.jsonl              front snapshots, append-only
        checkpoints/             safetensors, temp file + rename (see checkpoint.py)
        result.json              final record: status, schema version, versions, git hash
        worker.log               the worker's stdout/stderr

Workers only write their run folder, never the index, so the folder protocol also works on a
shared file system for remote (Ray) workers. The index is written by executors (through one
write connection per process, ``BEGIN IMMEDIATE`` + busy timeout); reading it never writes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from morl_core.config import RunConfig
from morl_core.jobs import paths
from morl_core.jobs.files import describe_os_error, read_json, read_jsonl, write_json_atomic
from morl_core.jobs.records import (
    CANCEL,
    CONFIG,
    FRONTS,
    LOG,
    METRICS,
    RESULT,
    SCHEMA_VERSION,
    TERMINAL,
    RunState,
    RunStatus,
    read_status,
    update_status,
)

_BUSY_MS = 30_000
_COLUMNS = (
    "id",
    "method",
    "objectives",
    "executor",
    "state",
    "step",
    "total_steps",
    "attempt",
    "created",
    "started",
    "finished",
    "message",
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, method TEXT, objectives TEXT, executor TEXT, state TEXT,
    step INTEGER, total_steps INTEGER, attempt INTEGER,
    created REAL, started REAL, finished REAL, message TEXT);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
"""


class StoreError(RuntimeError):
    """The store cannot do what was asked (unknown run, unwritable data directory, ...)."""


class RunNotFound(StoreError, KeyError):
    """No run with this id in the data directory."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "run not found"


class Index:
    """The SQLite index: one guarded write connection, one read connection per thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._writer = self._connect()
        # Opening an existing index only reads: many processes may open it at once.
        exists = self._writer.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not exists:
            with self._write_lock:
                if self._writer.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._writer.execute("PRAGMA journal_mode=WAL")
                self._writer.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.row_factory = sqlite3.Row
        return conn

    def _reader(self) -> sqlite3.Connection:
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
        rows = self._reader().execute(sql + " ORDER BY created DESC, id DESC", args).fetchall()
        return [dict(r) for r in rows]


def _row(status: dict[str, Any]) -> dict[str, Any]:
    row = {c: status.get(c) for c in _COLUMNS}
    row["id"] = status["run_id"]
    row["objectives"] = json.dumps(list(status.get("objectives") or []))
    return row


class RunStore:
    """Run folders plus their index under one data directory.

    Args:
        data_dir: the data directory; default ``$MORL_DATA_DIR`` or ``~/.local/share/morl-studio``.
    """

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = paths.resolve_data_dir(data_dir)
        self.runs_dir = self.data_dir / paths.RUNS
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            self.index = Index(self.data_dir / paths.INDEX)
        except OSError as exc:
            raise StoreError(
                f"cannot use data directory {self.data_dir}: {describe_os_error(exc)}"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the run index in {self.data_dir}: {exc}") from exc

    # --- folders ---
    def run_dir(self, run_id: str) -> Path:
        """The folder of an existing run; bad ids raise ``RunIdError``, unknown ones RunNotFound."""
        path = paths.run_path(self.data_dir, run_id)
        if not (path / "status.json").is_file():
            raise RunNotFound(f"no run {run_id} in {self.data_dir}")
        return path

    def create(self, config: RunConfig, executor: str) -> RunStatus:
        """Record a new queued run: its folder, ``config.json``, ``status.json``, index row."""
        config = config.validated()
        run_id = paths.new_run_id()
        folder = paths.run_path(self.data_dir, run_id)
        status = {
            "run_id": run_id,
            "state": str(RunState.QUEUED),
            "method": config.method,
            "objectives": list(config.objectives),
            "executor": executor,
            "step": 0,
            "total_steps": config.steps,
            "attempt": 0,
            "lost_count": 0,
            "created": time.time(),
            "schema_version": SCHEMA_VERSION,
        }
        try:
            folder.mkdir(parents=False, exist_ok=False)
            write_json_atomic(folder / CONFIG, config.to_dict())
            status = update_status(folder, status, create=True)
            self.index.upsert([_row(status)])
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise StoreError(f"cannot create run folder: {describe_os_error(exc)}") from exc
        return RunStatus.from_dict(status)

    # --- reading (never writes) ---
    def status(self, run_id: str) -> RunStatus:
        """The run's status, read from its folder."""
        data = read_status(self.run_dir(run_id))
        if data is None:
            raise RunNotFound(f"no run {run_id} in {self.data_dir}")
        return self._view(data)

    def _view(self, data: dict[str, Any]) -> RunStatus:
        status = RunStatus.from_dict(data)
        folder = self.runs_dir / status.run_id
        if status.state == RunState.RUNNING and (folder / CANCEL).exists():
            status = RunStatus.from_dict({**data, "state": RunState.CANCEL_REQUESTED})
        return status

    def list(self, states: set[str] | None = None) -> list[RunStatus]:
        """All runs, newest first; live runs are read from their folders, finished ones from the index."""
        result = []
        for row in self.index.rows(states):
            data = None
            if row["state"] not in TERMINAL:
                with contextlib.suppress(OSError, ValueError):
                    data = read_status(self.runs_dir / row["id"])
            if data is None:
                data = {
                    **row,
                    "run_id": row["id"],
                    "objectives": json.loads(row["objectives"] or "[]"),
                }
            result.append(self._view(data))
        return result

    def config(self, run_id: str) -> dict[str, Any]:
        """The run's ``config.json`` as plain data."""
        return read_json(self.run_dir(run_id) / CONFIG)

    def metrics(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Metric records from byte ``offset`` on, and the next offset (for incremental polling).

        Records are flat: ``step, total_steps, samples, stage, time, attempt`` plus one key per
        metric (``records.metric_values`` strips the bookkeeping keys). Steps are unique and
        increasing, also across resumed attempts.
        """
        return read_jsonl(self.run_dir(run_id) / METRICS, offset)

    def fronts(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Front snapshots (StepInfo.front + step, samples, stage, time) from ``offset``, next offset."""
        return read_jsonl(self.run_dir(run_id) / FRONTS, offset)

    def result(self, run_id: str) -> dict[str, Any] | None:
        """``result.json`` once the run has finished, else ``None``."""
        return read_json(self.run_dir(run_id) / RESULT)

    def logs(self, run_id: str, offset: int = 0, max_bytes: int = 1 << 20) -> tuple[str, int]:
        """Worker log text from byte ``offset`` (at most ``max_bytes``), and the next offset."""
        try:
            with open(self.run_dir(run_id) / LOG, "rb") as handle:
                handle.seek(offset)
                data = handle.read(max_bytes)
        except FileNotFoundError:
            return "", offset
        return data.decode("utf-8", errors="replace"), offset + len(data)

    # --- writing ---
    def update(
        self, run_id: str, changes: dict[str, Any], **conditions: Any
    ) -> dict[str, Any] | None:
        """``records.update_status`` on the run's folder, then mirror it into the index."""
        status = update_status(self.run_dir(run_id), changes, **conditions)
        if status is not None:
            self.index.upsert([_row(status)])
        return status

    def request_cancel(self, run_id: str) -> None:
        """Leave the cancel marker that the worker checks every step and every heartbeat."""
        (self.run_dir(run_id) / CANCEL).touch()

    def clear_cancel(self, run_id: str) -> None:
        """Remove the cancel marker (before a resume)."""
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir(run_id) / CANCEL).unlink()

    def sync(self, run_ids: list[str] | None = None) -> None:
        """Copy the folder status of live runs (or ``run_ids``) into the index."""
        if run_ids is None:
            run_ids = [r["id"] for r in self.index.rows() if r["state"] not in TERMINAL]
        rows = []
        for run_id in run_ids:
            with contextlib.suppress(OSError, ValueError):
                data = read_status(self.runs_dir / run_id)
                if data is not None:
                    rows.append(_row(data))
        self.index.upsert(rows)

    def rebuild_index(self) -> int:
        """Re-create every index row from the run folders; returns the number of runs found."""
        found = []
        for folder in sorted(self.runs_dir.iterdir()):
            if not paths.RUN_ID_PATTERN.fullmatch(folder.name) or folder.is_symlink():
                continue
            with contextlib.suppress(OSError, ValueError):
                data = read_status(folder)
                if data is not None and data.get("run_id") == folder.name:
                    found.append(_row(data))
        stale = {r["id"] for r in self.index.rows()} - {r["id"] for r in found}
        self.index.upsert(found)
        self.index.delete(sorted(stale))
        return len(found)
