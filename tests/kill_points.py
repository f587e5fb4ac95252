"""Fault injection for workers: SIGKILL the worker at an exact point, once per run.

Load it in workers with ``MORL_PLUGINS=tests.stub_method,tests.kill_points``. A run is killed
only when its folder holds a file ``kill_at`` naming the point (the test writes it before the
run starts); the first worker that reaches the point writes ``killed_at`` and SIGKILLs itself,
so the resumed attempt runs through. Points:

* ``adapter_save``: peft has written ``adapter_config.json`` of the first stage's adapter but
  not its weights (the weights file is removed before the kill to leave exactly that state);
* ``stage_boundary``: the first stage's adapter is saved, its stage-done checkpoint is not;
* ``checkpoint``: a checkpoint's temp file is written and synced, not yet renamed;
* ``startup``: the worker has claimed the run (``running``) and not trained a step.

Nothing here runs unless a test asks for it; it is a fixture, never imported by morl_core.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

POINTS = ("startup", "checkpoint", "stage_boundary", "adapter_save")
REQUEST = "kill_at"
DONE = "killed_at"


def _armed(run_dir: Path, point: str) -> bool:
    request = run_dir / REQUEST
    return (
        request.is_file() and request.read_text().strip() == point and not (run_dir / DONE).exists()
    )


def _die(run_dir: Path, point: str) -> None:
    (run_dir / DONE).write_text(point)
    os.kill(os.getpid(), signal.SIGKILL)


def _install() -> None:
    import morl_core.jobs.checkpoint as checkpoint
    import morl_core.methods.common as common
    from morl_core.jobs import worker

    real_save_adapter = common.save_adapter
    real_save_checkpoint = checkpoint.save_checkpoint
    real_replace = os.replace
    # The worker runs as ``python -m morl_core.jobs.worker``: its classes live in ``__main__``.
    workers = {worker.Worker, getattr(sys.modules.get("__main__"), "Worker", worker.Worker)}

    def save_adapter(policy, folder, adapter_name="default"):
        result = real_save_adapter(policy, folder, adapter_name=adapter_name)
        run_dir = Path(folder).parent.parent
        if _armed(run_dir, "adapter_save"):
            for weights in Path(folder).glob("adapter_model.*"):
                weights.unlink()  # the state between peft's two writes
            _die(run_dir, "adapter_save")
        return result

    def save_checkpoint(run_dir, step, tensors, state=None, **kwargs):
        if (state or {}).get("trainer", "") is None and _armed(Path(run_dir), "stage_boundary"):
            _die(Path(run_dir), "stage_boundary")
        return real_save_checkpoint(run_dir, step, tensors, state, **kwargs)

    def replace(src, dst, *args, **kwargs):
        src_path = Path(src)
        if src_path.parent.name == checkpoint.CHECKPOINTS and src_path.name.endswith(".tmp"):
            run_dir = src_path.parent.parent
            if _armed(run_dir, "checkpoint"):
                _die(run_dir, "checkpoint")
        return real_replace(src, dst, *args, **kwargs)

    common.save_adapter = save_adapter
    checkpoint.save_checkpoint = save_checkpoint
    os.replace = replace
    for cls in workers:
        if hasattr(cls, "claim"):
            real = cls.claim

            def patched(self, real=real):
                taken = real(self)
                if taken and _armed(self.run_dir, "startup"):
                    _die(self.run_dir, "startup")
                return taken

            cls.claim = patched


_install()
