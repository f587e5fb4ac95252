"""Checkpoints for methods: safetensors files with a JSON state, written temp-then-rename.

One checkpoint is one file, ``checkpoints/step-000000123.safetensors``: the tensors, plus the
JSON-serialisable ``state`` (optimiser step counts, RNG states, sample counters, ...) stored in
the safetensors metadata. Because it is one file renamed into place, a crash leaves either the
previous checkpoint or the new one, never a torn pair. Nothing here unpickles anything.

How a method uses it (see ``tests/stub_method.py`` for a complete example)::

    from morl_core.jobs.checkpoint import load_latest_checkpoint, save_checkpoint

    start = 0
    found = load_latest_checkpoint(run_dir)
    if found is not None:
        start, tensors, state = found   # continue with step start + 1
        ...restore parameters, optimiser tensors, rng from tensors/state...
    for step in range(start + 1, config.steps + 1):
        ...one update...
        keep_going = callback(StepInfo(step=step, ...))
        if step % config.checkpoint_every == 0 or step == config.steps or not keep_going:
            save_checkpoint(run_dir, step, {"lora.A": A, ...}, {"rng": rng.bit_generator.state})
        if not keep_going:
            return
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from morl_core.jobs.files import SymlinkRefused, open_fd

CHECKPOINTS = "checkpoints"
_STATE_KEY = "morl_state"
_NAME = re.compile(r"^step-(\d{9})\.safetensors$")


class Checkpoint(NamedTuple):
    """A loaded checkpoint; unpacks as ``step, tensors, state``."""

    step: int
    tensors: dict[str, Any]  # name -> torch.Tensor (on CPU unless asked otherwise)
    state: dict[str, Any]


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir/checkpoints``."""
    return Path(run_dir) / CHECKPOINTS


def list_checkpoints(run_dir: str | os.PathLike) -> list[int]:
    """Steps that have a complete checkpoint, ascending."""
    folder = _own_folder(run_dir)
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(steps)


def _own_folder(run_dir: str | os.PathLike) -> Path:
    """``run_dir/checkpoints``, refusing a symlink (it would write or read outside the run)."""
    folder = checkpoint_dir(run_dir)
    if folder.is_symlink():
        raise SymlinkRefused(
            errno.ELOOP, "refusing to follow a symlink in a run folder", str(folder)
        )
    return folder


def _path(run_dir: str | os.PathLike, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:09d}.safetensors"


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    tensors: dict[str, Any],
    state: dict[str, Any] | None = None,
    *,
    keep: int = 2,
) -> Path:
    """Save ``tensors`` and JSON ``state`` as the checkpoint of ``step``; keep the last ``keep``.

    Args:
        run_dir: the run folder (the ``run_dir`` a method's ``train`` receives).
        step: steps completed (the run resumes at ``step + 1``); an int >= 0.
        tensors: name -> ``torch.Tensor``; copied to CPU and made contiguous.
        state: anything ``json.dumps`` accepts (numpy RNG states included; big ints are fine).
        keep: how many newest checkpoints to keep (>= 1).

    Returns:
        The checkpoint file's path.

    Raises:
        ValueError: bad step, non-tensor values, or a state that is not JSON-serialisable.
        OSError: the disk is full or not writable (the previous checkpoint stays intact).
    """
    import torch
    from safetensors.torch import save as save_bytes

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
    # clone(): safetensors refuses tensors that share storage (tied weights, views).
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = save_bytes(cpu, metadata={_STATE_KEY: state_json, "step": str(step)})

    folder = _own_folder(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):  # left by a save that was killed
        with contextlib.suppress(OSError):
            stale.unlink()
    final = _path(run_dir, step)
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    try:
        with os.fdopen(open_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    for old in list_checkpoints(run_dir)[:-keep]:
        with contextlib.suppress(OSError):
            _path(run_dir, old).unlink()
    return final


def load_checkpoint(run_dir: str | os.PathLike, step: int, device: str = "cpu") -> Checkpoint:
    """Load the checkpoint of ``step`` (``FileNotFoundError`` when there is none)."""
    from safetensors import safe_open

    path = _path(run_dir, step)
    with safe_open(str(path), framework="pt", device=device) as handle:
        meta = handle.metadata() or {}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return Checkpoint(step, tensors, json.loads(meta.get(_STATE_KEY, "{}")))


def load_latest_checkpoint(run_dir: str | os.PathLike, device: str = "cpu") -> Checkpoint | None:
    """The newest readable checkpoint as ``(step, tensors, state)``, or ``None`` when none exists.

    An unreadable newest file (which temp-then-rename should make impossible) is skipped in
    favour of the one before it.
    """
    for step in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(run_dir, step, device)
        except Exception:  # noqa: BLE001 (safetensors raises its own error type)
            continue
    return None
