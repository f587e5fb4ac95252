"""The run folder: the one owner of its file names, record formats and crash-safe writes.

Layout (everything a run needs; the UI rebuilds its views from these files alone)::

    config.json      the RunConfig (input; RunConfig.to_dict())
    status.json      the job system's mutable record (jobs/records.py changes it)
    metrics.jsonl    one record per step: METRIC_META keys + one key per metric
    front.jsonl      one record per front snapshot: the snapshot's keys + FRONT_META
    checkpoints/     step-000000123.safetensors: tensors + JSON state, one file per checkpoint
    adapters/NAME/   trained adapters and a method's own files
    artifact.json    what a method's ``load`` needs
    result.json      status enum, schema version, versions, git hash (written at the end)
    worker.log, cancel_requested

How it is written:

* files are replaced atomically (temp file beside it, fsync, ``os.replace``; a folder is written
  beside its place and renamed into it): a reader sees the old or the new one, never half;
* JSON Lines are append-only, one ``write`` per batch on ``O_APPEND``; readers stop at the last
  newline and a writer that starts again cuts a torn tail off;
* every open uses ``O_NOFOLLOW``: a symlinked file raises :class:`SymlinkRefused` instead of
  reaching outside the store.

``morl train`` and the job worker write steps through the same :class:`RecordWriter`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from safetensors import safe_open

from morl_core.config import RunConfig
from morl_core.methods.base import StepInfo

SCHEMA_VERSION = 1
CONFIG = "config.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
FRONTS = "front.jsonl"
RESULT = "result.json"
LOG = "worker.log"
CANCEL = "cancel_requested"  # marker file: a cancel request that any process can make
ARTIFACT = "artifact.json"
CHECKPOINTS = "checkpoints"
ADAPTERS = "adapters"
# A metrics.jsonl record is flat: these keys plus one key per metric of the step.
METRIC_META = ("step", "total_steps", "samples", "stage", "time", "attempt")
# A front.jsonl record: the snapshot's own keys (objectives, preferences, points, ...) plus these.
FRONT_META = ("step", "samples", "stage", "time")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class SymlinkRefused(OSError):
    """A run folder's file is a symlink; it is neither read nor written."""


def _refuse(path: Path) -> SymlinkRefused:
    return SymlinkRefused(errno.ELOOP, "refusing to follow a symlink in a run folder", str(path))


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symlink at ``path`` with :class:`SymlinkRefused`."""
    try:
        return os.open(path, flags | _NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path) from None
        raise


def _open(path: Path, mode: str, encoding: str | None = None):
    """Open a run-folder file without following a symlink (modes ``r``, ``rb``, ``r+b``)."""
    flags = {"r": os.O_RDONLY, "rb": os.O_RDONLY, "r+b": os.O_RDWR}[mode]
    return os.fdopen(open_fd(path, flags), mode, encoding=encoding)


# --- atomic writes ---
def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` via a temp file beside it and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with os.fdopen(open_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_json_atomic(path: Path, data: Any, *, fsync: bool = True) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(
        path, json.dumps(data, indent=1, sort_keys=True).encode(), fsync=fsync
    )


def write_safetensors_atomic(
    path: Path, tensors: Mapping[str, Any], metadata: dict[str, str] | None = None
) -> Path:
    """Save ``tensors`` (name -> torch.Tensor, copied to CPU) as one safetensors file, atomically."""
    from safetensors.torch import save  # imports torch: the job CLI reads run folders without it

    # clone(): safetensors refuses tensors that share storage (tied weights, views).
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    folder = Path(path).parent
    if folder.is_symlink():
        raise _refuse(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, save(cpu, metadata=metadata))


def write_folder_atomic(folder: Path, write: Callable[[Path], Any]) -> Path:
    """Let ``write(tmp)`` fill a temp folder beside ``folder``, then rename it into place.

    peft writes ``adapter_config.json`` before the weights, so a folder written in place can
    look finished while it holds no weights; a renamed folder is complete or absent.
    """
    folder = Path(folder)
    parent = folder.parent
    if parent.is_symlink() or folder.is_symlink():
        raise _refuse(folder)
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{folder.name}.*.tmp"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = parent / f".{folder.name}.{os.getpid()}.tmp"
    try:
        write(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# --- reading and appending ---
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
            size = keep = handle.seek(0, os.SEEK_END)
            while keep > 0:  # walk back to the last newline in blocks (files can be large)
                start = max(0, keep - 65536)
                handle.seek(start)
                found = handle.read(keep - start).rfind(b"\n")
                if found >= 0:
                    keep = start + found + 1
                    break
                keep = start
            if keep < size:
                handle.truncate(keep)
            return size - keep
    except FileNotFoundError:
        return 0


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


# --- the record format: one StepInfo -> metrics.jsonl / front.jsonl ---
def _jsonable(value: Any) -> Any:
    """Arrays and numpy scalars to lists and floats, recursively."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def metric_values(record: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of one ``metrics.jsonl`` record, without its bookkeeping keys."""
    return {k: v for k, v in record.items() if k not in METRIC_META}


class RecordWriter:
    """Appends each step of a run to ``metrics.jsonl`` and its front snapshots to ``front.jsonl``.

    Opening it cuts torn tails and finds where the files end; steps already on disk are not
    written again, so a resumed run continues without duplicates. ``attempt`` (recorded per
    step) defaults to one more than the last attempt on disk.
    """

    def __init__(self, run_dir: Path, attempt: int | None = None):
        self.run_dir = Path(run_dir)
        self.repaired = {n: repair_torn_tail(self.run_dir / n) for n in (METRICS, FRONTS)}
        records, _ = read_jsonl(self.run_dir / METRICS)
        last = max(records, key=lambda r: r.get("step", 0), default={})
        self.last_step = int(last.get("step", 0))
        self.samples = int(last.get("samples", 0))
        self.last_metrics = metric_values(last)
        fronts, _ = read_jsonl(self.run_dir / FRONTS)
        self.front_steps = {int(f.get("step", 0)) for f in fronts}
        previous = max((int(r.get("attempt") or 0) for r in records), default=0)
        self.attempt = previous + 1 if attempt is None else attempt

    def write(self, info: StepInfo) -> None:
        """Record ``info`` (a :class:`~morl_core.methods.base.StepInfo`) unless already on disk."""
        now = time.time()
        if info.step > self.last_step:
            self.last_metrics = {str(k): float(v) for k, v in info.metrics.items()}
            meta = dict(step=int(info.step), total_steps=int(info.total_steps), stage=info.stage)
            meta.update(samples=int(info.samples), time=now, attempt=self.attempt)
            append_jsonl(self.run_dir / METRICS, [{**self.last_metrics, **meta}])
            self.last_step, self.samples = int(info.step), int(info.samples)
        if info.front is not None and info.step not in self.front_steps:
            meta = {"step": int(info.step), "samples": int(info.samples), "stage": info.stage}
            append_jsonl(self.run_dir / FRONTS, [{**_jsonable(info.front), **meta, "time": now}])
            self.front_steps.add(int(info.step))


def read_metrics(run_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """``metrics.jsonl`` records from byte ``offset`` on, and the next offset."""
    return read_jsonl(Path(run_dir) / METRICS, offset)


def read_fronts(run_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Front snapshots from byte ``offset`` on (``step``, ``objectives``, ``preferences``,
    ``points``, ``partial`` always present), and the next offset."""
    records, offset = read_jsonl(Path(run_dir) / FRONTS, offset)
    snapshots = [
        {
            **record,
            "step": int(record.get("step", 0)),
            "samples": record.get("samples"),
            "objectives": list(record.get("objectives") or []),
            "preferences": record.get("preferences") or [],
            "points": record.get("points") or [],
            "partial": bool(record.get("partial", False)),
        }
        for record in records
    ]
    return snapshots, offset


def read_config(run_dir: Path) -> RunConfig:
    """The run's ``config.json`` as a RunConfig (``ValueError`` when the folder has none)."""
    data = read_json(Path(run_dir) / CONFIG)
    if data is None:
        raise ValueError(f"{run_dir} is not a run folder (no {CONFIG})")
    # checked when submitted; read back as data (an experts' source may since have gone)
    return RunConfig.from_dict(data, check_files=False)


def read_artifact(run_dir: Path) -> dict[str, Any]:
    """The run's ``artifact.json`` (``ValueError`` when the run has not finished)."""
    data = read_json(Path(run_dir) / ARTIFACT)
    if data is None:
        raise ValueError(
            f"{run_dir} holds no trained artifact (no {ARTIFACT}); has the run finished?"
        )
    return data


def adapter_dir(run_dir: Path, name: str) -> Path:
    """``run_dir/adapters/NAME``: where a trained adapter (or a method's own files) lives."""
    return Path(run_dir) / ADAPTERS / name


# --- checkpoints ---
_STATE_KEY = "morl_state"
_CHECKPOINT = re.compile(r"^step-(\d{9})\.safetensors$")


class Checkpoint(NamedTuple):
    """A loaded checkpoint; unpacks as ``step, tensors, state``."""

    step: int
    tensors: dict[str, Any]  # name -> torch.Tensor (on CPU unless asked otherwise)
    state: dict[str, Any]


def _checkpoints(run_dir: Path) -> Path:
    """``run_dir/checkpoints``, refusing a symlink (it would write or read outside the run)."""
    folder = Path(run_dir) / CHECKPOINTS
    if folder.is_symlink():
        raise _refuse(folder)
    return folder


def _checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:09d}.safetensors"


def list_checkpoints(run_dir: Path) -> list[int]:
    """Steps that have a complete checkpoint, ascending."""
    folder = _checkpoints(run_dir)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)))


def save_checkpoint(
    run_dir: Path,
    step: int,
    tensors: dict[str, Any],
    state: dict[str, Any] | None = None,
    *,
    keep: int = 2,
) -> Path:
    """Save ``tensors`` (name -> torch.Tensor) and JSON ``state`` as the checkpoint of ``step``
    (steps completed: a method resumes at ``step + 1``); keep the newest ``keep``.

    One file, the state in its safetensors metadata, renamed into place: a crash leaves the
    previous checkpoint or the new one, never a torn pair, and nothing is unpickled (example:
    ``tests/stub_method.py``). ValueError for a bad step, non-tensors or a non-JSON state;
    OSError when the disk is full (the previous checkpoint stays).
    """
    import torch  # heavy: run folders are also read by light CLI paths

    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep!r}")
    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"checkpoint values must be torch tensors; not tensors: {bad}")
    try:
        state_json = json.dumps(state or {}, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint state must be JSON-serialisable: {exc}") from None
    folder = _checkpoints(run_dir)
    for stale in folder.glob(".*.tmp"):  # left by a save that was killed
        with contextlib.suppress(OSError):
            stale.unlink()
    metadata = {_STATE_KEY: state_json, "step": str(step)}
    final = write_safetensors_atomic(_checkpoint_path(run_dir, step), tensors, metadata)
    with contextlib.suppress(OSError):  # make the rename durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    for old in list_checkpoints(run_dir)[:-keep]:
        with contextlib.suppress(OSError):
            _checkpoint_path(run_dir, old).unlink()
    return final


def load_latest_checkpoint(run_dir: Path, device: str = "cpu") -> Checkpoint | None:
    """The newest readable checkpoint as ``(step, tensors, state)``, or ``None`` (an unreadable
    newest file is skipped for the one before it)."""
    for step in reversed(list_checkpoints(run_dir)):
        try:
            tensors, metadata = read_safetensors(_checkpoint_path(run_dir, step), device)
            return Checkpoint(step, tensors, json.loads(metadata.get(_STATE_KEY, "{}")))
        except Exception:  # noqa: BLE001 (safetensors raises its own error type)
            continue
    return None


def read_safetensors(path: Path, device: str = "cpu") -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors (name -> torch.Tensor on ``device``) and metadata of a safetensors file."""
    with safe_open(str(path), framework="pt", device=device) as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        return tensors, handle.metadata() or {}
