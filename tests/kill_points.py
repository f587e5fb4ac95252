"""Fault injection for workers: SIGKILL the worker at an exact point, once per run.

Load it in workers with ``MORL_PLUGINS=tests.stub_method,tests.kill_points``. A run is killed
only when its folder holds a file ``kill_at`` naming the point (the test writes it before the
run starts); the first worker that reaches the point writes ``killed_at`` and SIGKILLs itself,
so the resumed attempt runs through. Points:

* ``adapter_save``: peft has written ``adapter_config.json`` of the first stage's adapter but
  not its weights (the weights file is removed before the kill to leave exactly that state);
* ``stage_boundary`` (or ``stage_boundary:N``): the first (N-th) stage's adapter is saved, its
  stage-done checkpoint is not;
* ``checkpoint``: a checkpoint's temp file is written and synced, not yet renamed;
* ``startup``: the worker has claimed the run (``running``) and not trained a step;
* ``emorl_search``: EMORL's experts are trained and its coefficient search has begun;
* ``meta_training``: the meta-policy has trained a step, its checkpoint is not written.

Nothing here runs unless a test asks for it; it is a fixture, never imported by morl_core.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

POINTS = (
    "startup",
    "checkpoint",
    "stage_boundary",
    "adapter_save",
    "emorl_search",
    "meta_training",
)
REQUEST = "kill_at"
DONE = "killed_at"


def _armed(run_dir: Path, point: str, stage: int | None = None) -> bool:
    """Whether ``run_dir`` asks for a kill at ``point`` and has not had it yet.

    ``stage_boundary:N`` asks for the boundary after stage N (1-based); plain
    ``stage_boundary`` means the first one.
    """
    request = run_dir / REQUEST
    if not request.is_file() or (run_dir / DONE).exists():
        return False
    name, _, number = request.read_text().strip().partition(":")
    if name != point:
        return False
    return stage is None or stage == int(number or 1)


def _die(run_dir: Path, point: str) -> None:
    (run_dir / DONE).write_text(point)
    os.kill(os.getpid(), signal.SIGKILL)


def _install() -> None:
    import morl_core.methods.common as common
    import morl_core.runfolder as checkpoint
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
        state = state or {}
        stage_done = state.get("trainer", "") is None and state.get("conditioned") is None
        if stage_done and _armed(Path(run_dir), "stage_boundary", int(state.get("stage", 1))):
            _die(Path(run_dir), "stage_boundary")
        if state.get("conditioned") is not None and _armed(Path(run_dir), "meta_training"):
            _die(Path(run_dir), "meta_training")
        return real_save_checkpoint(run_dir, step, tensors, state, **kwargs)

    import morl_core.methods.emorl as emorl

    real_search_table = emorl.search_table

    def search_table(*args, **kwargs):
        # The worker's command line is ``python -m morl_core.jobs.worker RUN_DIR ...``.
        run_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
        if run_dir is not None and _armed(run_dir, "emorl_search"):
            _die(run_dir, "emorl_search")
        return real_search_table(*args, **kwargs)

    emorl.search_table = search_table

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
