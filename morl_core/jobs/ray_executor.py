"""The Ray executor: each run's worker is a Ray job (Jobs API) on an existing cluster.

Install the extra (``pip install 'morl-studio[ray]'``) and point ``RAY_ADDRESS`` at the
cluster's dashboard, e.g. ``http://head-node:8265``. The worker command is the same as the local
one and speaks the same run-folder protocol, so **the data directory must be on storage that
every Ray node mounts at the same path** (NFS, a shared volume, or a single-node cluster), and
the nodes need this package installed (or its path in ``PYTHONPATH``, which is passed on).
A run with ``device='cuda'`` asks Ray for one GPU; others ask for ``config.threads`` CPUs.
Ray queues jobs by resources, so there is no worker limit here.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path
from typing import Any

from morl_core.jobs.executors import Executor
from morl_core.jobs.plugins import PLUGINS_ENV
from morl_core.jobs.worker import HEARTBEAT_ENV

_PASS_ENV = (
    "PYTHONPATH",
    PLUGINS_ENV,
    HEARTBEAT_ENV,
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)


def _job_client(address: str):
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise ImportError(
            "the ray executor needs the optional extra: pip install 'morl-studio[ray]'"
        ) from exc
    return JobSubmissionClient(address)


class RayExecutor(Executor):
    """Runs workers as Ray jobs.

    Args:
        data_dir: data directory (shared storage, same path on every node).
        address: Ray dashboard address (default ``$RAY_ADDRESS``).
        python: interpreter on the cluster nodes (default: this one, right for a local cluster).
        **kwargs: see :class:`~morl_core.jobs.executors.Executor`.
    """

    name = "ray"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        address: str | None = None,
        python: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(data_dir, **kwargs)
        self.address = address or os.environ.get("RAY_ADDRESS")
        if not self.address:
            raise ValueError(
                "the ray executor needs RAY_ADDRESS (the Ray dashboard, e.g. http://127.0.0.1:8265)"
            )
        self.python = python or os.environ.get("MORL_RAY_PYTHON") or __import__("sys").executable
        self._client = None

    @property
    def client(self):
        """The Jobs API client (created on first use)."""
        if self._client is None:
            self._client = _job_client(self.address)
        return self._client

    def _launch(
        self, run_id: str, run_dir: Path, attempt: int, config: dict[str, Any]
    ) -> dict[str, Any]:
        env = self.worker_env(config)
        env.update({k: os.environ[k] for k in _PASS_ENV if os.environ.get(k)})
        gpus = 1 if config.get("device") == "cuda" else 0
        job_id = self.client.submit_job(
            entrypoint=shlex.join(self.worker_command(self.python, run_dir, attempt)),
            submission_id=f"morl-{run_id}-a{attempt}",
            runtime_env={"env_vars": env},
            entrypoint_num_cpus=int(config.get("threads") or 1),
            entrypoint_num_gpus=gpus,
            metadata={"morl_run_id": run_id, "attempt": str(attempt)},
        )
        return {"external_id": job_id}

    def _alive(self, data: dict[str, Any]) -> bool | None:
        job_id = data.get("external_id")
        if not job_id:
            return None
        try:
            status = self.client.get_job_status(job_id)
        except Exception:  # noqa: BLE001 -- cluster unreachable: fall back to heartbeats
            return None
        return not status.is_terminal()

    def _kill(self, data: dict[str, Any]) -> None:
        job_id = data.get("external_id")
        if job_id:
            with contextlib.suppress(Exception):  # already gone: the heartbeat decides
                self.client.stop_job(job_id)

    def ray_logs(self, run_id: str) -> str:
        """Ray's own log of the run's current job (the worker also writes ``worker.log``)."""
        job_id = self.store.status(run_id).external_id
        return self.client.get_job_logs(job_id) if job_id else ""
