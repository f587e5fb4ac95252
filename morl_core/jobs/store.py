"""The run store: one folder per run (the truth) and an SQLite index of runs (for listing).

Layout: ``DATA/index.sqlite`` (WAL; rebuildable from the folders) and ``DATA/runs/<run id>/``
(files: :mod:`morl_core.runfolder`). Workers write only their folder, so remote (Ray) workers
need only a shared file system; executors write the index (:mod:`morl_core.jobs.index`).

A store that cannot be written (read-only mount, permissions, full disk) still reads: the index
opens ``mode=ro`` or is rebuilt in memory, and writes fail with one line saying why. A folder
that cannot be trusted (a symlink, an unparsable ``status.json``, no ``config.json``) is listed
as *broken* with the reason, and executors skip it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from morl_core.config import RunConfig
from morl_core.jobs import paths
from morl_core.jobs.index import (
    Index,
    broken_row,
    describe_sqlite_error,
    index_row,
    row_objectives,
)
from morl_core.jobs.records import TERMINAL, RunState, RunStatus, read_status, update_status
from morl_core.runfolder import (
    CANCEL,
    CONFIG,
    FRONTS,
    LOG,
    METRICS,
    RESULT,
    SCHEMA_VERSION,
    STATUS,
    describe_os_error,
    open_fd,
    read_json,
    read_jsonl,
    write_json_atomic,
)


class StoreError(RuntimeError):
    """The store cannot do what was asked (unknown run, unwritable data directory, ...)."""


class ReadOnlyStore(StoreError):
    """The store can be read but not written (read-only file system, permissions, full disk)."""


class BrokenRun(StoreError):
    """A run folder the job system cannot trust; the message says why."""


class RunNotFound(StoreError, KeyError):
    """No run with this id in the data directory."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "run not found"


def _read_or_broken(path: Path) -> Any:
    """``read_json(path)``, with a read or parse failure raised as :class:`BrokenRun`."""
    try:
        return read_json(path)
    except OSError as exc:
        raise BrokenRun(f"{path.name} cannot be read: {describe_os_error(exc)}") from exc
    except ValueError as exc:
        raise BrokenRun(f"{path.name} does not parse: {exc}") from exc


class RunStore:
    """Run folders plus their index under one data directory (default: settings.data_dir())."""

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = paths.resolve_data_dir(data_dir)
        self.runs_dir = self.data_dir / paths.RUNS
        self.read_only_reason = ""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            # SQLite may open a file it cannot write without a word and fail at the first
            # write; a read-only mount or directory is known before that (root included).
            if not os.access(self.data_dir, os.W_OK):
                read_only_fs = os.statvfs(self.data_dir).f_flag & os.ST_RDONLY
                code = errno.EROFS if read_only_fs else errno.EACCES
                raise OSError(code, os.strerror(code), str(self.data_dir))
            self.index = Index(self.data_dir / paths.INDEX)
        except (OSError, sqlite3.Error) as exc:
            reason = (
                describe_os_error(exc)
                if isinstance(exc, OSError)
                else describe_sqlite_error(exc, self.data_dir)
            )
            if not self.runs_dir.is_dir():
                raise StoreError(f"cannot use data directory {self.data_dir}: {reason}") from exc
            self.read_only_reason = reason
            self.index = self._read_only_index()

    @property
    def read_only(self) -> bool:
        """True when the store could only be opened for reading (see ``read_only_reason``)."""
        return bool(self.read_only_reason)

    def _read_only_index(self) -> Index:
        """The index opened ``mode=ro``, else an in-memory index rebuilt from the folders."""
        with contextlib.suppress(sqlite3.Error):
            index = Index(self.data_dir / paths.INDEX, read_only=True)
            index.rows()
            return index
        index = Index(":memory:")
        index.upsert(self._scan())
        return index

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore(
                f"the store in {self.data_dir} can only be read: {self.read_only_reason}"
            )

    def _index_write(self, call, *args: Any) -> None:
        """An index write, with "disk full" or "read-only" instead of SQLite's wording."""
        self._writable()
        try:
            call(*args)
        except sqlite3.Error as exc:
            raise StoreError(describe_sqlite_error(exc, self.data_dir)) from exc

    # --- folders ---
    def run_dir(self, run_id: str) -> Path:
        """The folder of an existing run; bad ids raise ``RunIdError``, unknown ones RunNotFound."""
        path = paths.run_path(self.data_dir, run_id)
        if not (path / STATUS).is_file():
            raise RunNotFound(f"no run {run_id} in {self.data_dir}")
        return path

    def inspect(self, run_id: str) -> dict[str, Any]:
        """The status of a run folder reconciling can act on, else :class:`BrokenRun`: a real
        folder, a ``status.json`` that parses and names this run in a known state, a config."""
        folder = self.runs_dir / paths.check_run_id(run_id)
        if folder.is_symlink():
            raise BrokenRun("the run folder is a symlink")
        if not folder.is_dir():
            raise BrokenRun("the run folder is missing")
        data = _read_or_broken(folder / STATUS)
        if data is None:
            raise BrokenRun(f"{STATUS} is missing")
        try:
            index_row(data)
        except ValueError as exc:
            raise BrokenRun(str(exc)) from exc
        if data.get("run_id") != run_id:
            raise BrokenRun(f"{STATUS} names another run ({data.get('run_id')!r})")
        config = _read_or_broken(folder / CONFIG)
        if not isinstance(config, dict):
            raise BrokenRun(
                f"{CONFIG} is missing" if config is None else f"{CONFIG} is not an object"
            )
        return data

    def mark_broken(self, run_id: str, reason: str) -> None:
        """Record in the index (only) that a run folder is broken, with the reason."""
        previous = next((r for r in self.index.rows() if r["id"] == run_id), None)
        if previous and previous["state"] == RunState.BROKEN and previous["message"] == reason:
            return
        self._index_write(self.index.upsert, [broken_row(run_id, reason, previous)])

    def create(self, config: RunConfig, executor: str) -> RunStatus:
        """Record a new queued run: its folder, ``config.json``, ``status.json``, index row."""
        config = config.validated()
        self._writable()
        run_id = paths.new_run_id()
        folder = paths.run_path(self.data_dir, run_id)
        status = dict(run_id=run_id, state=str(RunState.QUEUED), executor=executor, attempt=0)
        status.update(method=config.method, objectives=list(config.objectives), step=0)
        status.update(total_steps=config.steps, lost_count=0, created=time.time())
        status.update(schema_version=SCHEMA_VERSION)
        try:
            row = index_row(status)  # before anything is written: a value the index cannot hold
            folder.mkdir(parents=False, exist_ok=False)
            write_json_atomic(folder / CONFIG, config.to_dict())
            status = update_status(folder, status, create=True)
            self._index_write(self.index.upsert, [row])
        except (OSError, StoreError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot create run folder: {describe_os_error(exc)}") from exc
        return RunStatus.from_dict(status)

    # --- reading (never writes) ---
    def status(self, run_id: str) -> RunStatus:
        """The run's status, read from its folder."""
        folder = self.run_dir(run_id)
        try:
            data = read_status(folder)
        except (OSError, ValueError) as exc:
            raise BrokenRun(f"run {run_id} is broken: {STATUS} cannot be read ({exc})") from exc
        if data is None:
            raise RunNotFound(f"no run {run_id} in {self.data_dir}")
        try:
            return self._view(data)
        except (ValueError, TypeError) as exc:
            raise BrokenRun(f"run {run_id} is broken: {exc}") from exc

    def _view(self, data: dict[str, Any]) -> RunStatus:
        status = RunStatus.from_dict(data)
        folder = self.runs_dir / status.run_id
        if status.state == RunState.RUNNING and (folder / CANCEL).exists():
            status = RunStatus.from_dict({**data, "state": RunState.CANCEL_REQUESTED})
        return status

    def list(self, states: set[str] | None = None) -> list[RunStatus]:
        """All runs, newest first: live ones from their folders, finished ones from the index.

        A folder that cannot be read is listed as ``broken`` with the reason, never dropped.
        """
        try:
            rows = self.index.rows(states)
        except sqlite3.Error:  # an index that cannot be read: the folders are the truth
            rows = [r for r in self._scan() if not states or r["state"] in states]
        result = []
        for row in rows:
            data = None
            if row["state"] not in TERMINAL:
                try:
                    data = self.inspect(row["id"])
                except (BrokenRun, ValueError) as exc:
                    data = broken_row(row["id"], str(exc), row)
                    data = {**data, "run_id": row["id"], "objectives": row_objectives(data)}
            if data is None:
                data = {**row, "run_id": row["id"], "objectives": row_objectives(row)}
            try:
                result.append(self._view(data))
            except (ValueError, TypeError) as exc:
                bad = broken_row(row["id"], f"unreadable status: {exc}", None)
                result.append(RunStatus.from_dict({**bad, "run_id": row["id"], "objectives": []}))
        return result

    def _read(self, call, *args: Any):
        try:
            return call(*args)
        except ValueError as exc:
            raise BrokenRun(f"cannot read {args[0]}: {exc}") from exc
        except OSError as exc:
            raise StoreError(describe_os_error(exc)) from exc

    def config(self, run_id: str) -> dict[str, Any]:
        """The run's ``config.json`` as plain data."""
        return self._read(read_json, self.run_dir(run_id) / CONFIG)

    def metrics(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Metric records from byte ``offset`` on and the next offset (steps unique, increasing)."""
        return self._read(read_jsonl, self.run_dir(run_id) / METRICS, offset)

    def fronts(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Front snapshots (StepInfo.front + step, samples, stage, time) from ``offset``, next offset."""
        return self._read(read_jsonl, self.run_dir(run_id) / FRONTS, offset)

    def result(self, run_id: str) -> dict[str, Any] | None:
        """``result.json`` once the run has finished, else ``None``."""
        return self._read(read_json, self.run_dir(run_id) / RESULT)

    def logs(self, run_id: str, offset: int = 0, max_bytes: int = 1 << 20) -> tuple[str, int]:
        """Worker log text from byte ``offset`` (at most ``max_bytes``), and the next offset."""
        path = self.run_dir(run_id) / LOG
        try:
            fd = open_fd(path, os.O_RDONLY)
        except FileNotFoundError:
            return "", offset
        except OSError as exc:
            raise StoreError(describe_os_error(exc)) from exc
        with os.fdopen(fd, "rb") as handle:
            handle.seek(offset)
            data = handle.read(max_bytes)
        return data.decode("utf-8", errors="replace"), offset + len(data)

    # --- writing ---
    def update(
        self, run_id: str, changes: dict[str, Any], **conditions: Any
    ) -> dict[str, Any] | None:
        """``records.update_status`` on the run's folder, then mirror it into the index."""
        self._writable()
        status = update_status(self.run_dir(run_id), changes, **conditions)
        if status is not None:
            self._index_write(self.index.upsert, [index_row(status)])
        return status

    def request_cancel(self, run_id: str) -> None:
        """Leave the cancel marker that the worker checks every step and every heartbeat."""
        self._writable()
        os.close(open_fd(self.run_dir(run_id) / CANCEL, os.O_WRONLY | os.O_CREAT))

    def clear_cancel(self, run_id: str) -> None:
        """Remove the cancel marker (before a resume)."""
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir(run_id) / CANCEL).unlink()

    def sync(self, run_ids: list[str] | None = None) -> None:
        """Copy the folder status of live runs (or ``run_ids``) into the index."""
        if self.read_only:
            return
        if run_ids is None:
            run_ids = [r["id"] for r in self.index.rows() if r["state"] not in TERMINAL]
        rows = []
        for run_id in run_ids:
            with contextlib.suppress(OSError, ValueError):
                data = read_status(self.runs_dir / run_id)
                if data is not None:
                    rows.append(index_row(data))
        self._index_write(self.index.upsert, rows)

    def _scan(self) -> list[dict[str, Any]]:
        """Index rows read from every run folder (broken ones as ``broken``)."""
        found = []
        for folder in sorted(self.runs_dir.iterdir()):
            if not paths.RUN_ID_PATTERN.fullmatch(folder.name):
                continue
            try:
                found.append(index_row(self.inspect(folder.name)))
            except BrokenRun as exc:
                found.append(broken_row(folder.name, str(exc), None))
        return found

    def rebuild_index(self) -> int:
        """Re-create every index row from the folders (untrusted ones as ``broken``); returns
        the number of runs found."""
        found = self._scan()
        stale = {r["id"] for r in self.index.rows()} - {r["id"] for r in found}
        self._index_write(self.index.upsert, found)
        self._index_write(self.index.delete, sorted(stale))
        return len(found)
