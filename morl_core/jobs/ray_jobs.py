"""Workers as Ray jobs on an existing cluster (``pip install 'morl-studio[ray]'``)."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.jobs.lifecycle import Executor


def _job_client(address: str):
    # ray is an optional extra, imported only when a Ray run is started or checked
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise ImportError(
            "the ray executor needs the optional extra: pip install 'morl-studio[ray]'"
        ) from exc
    return JobSubmissionClient(address)


class RayExecutor(Executor):
    """Workers as Ray jobs (Jobs API) on an existing cluster (``pip install 'morl-studio[ray]'``).

    ``address`` defaults to ``$RAY_ADDRESS`` (the dashboard, e.g. ``http://head-node:8265``),
    ``python`` on the nodes to ``$MORL_RAY_PYTHON``. Workers speak the same run-folder protocol,
    so **the data directory must be mounted at the same path on every node**, and the nodes
    need this package (``PYTHONPATH`` is passed on). A ``device='cuda'`` run asks for one GPU,
    others for ``config.threads`` CPUs; Ray queues by resources (no worker limit here).
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
        self.address = address or settings.ray_address()
        if not self.address:
            raise ValueError(
                "the ray executor needs RAY_ADDRESS (the Ray dashboard, e.g. http://127.0.0.1:8265)"
            )
        self.python = python or settings.ray_python()
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
        env = {**self.worker_env(config), **settings.worker_env()}
        job_id = self.client.submit_job(
            entrypoint=shlex.join(self.worker_command(self.python, run_dir, attempt)),
            submission_id=f"morl-{run_id}-a{attempt}",
            runtime_env={"env_vars": env},
            entrypoint_num_cpus=int(config.get("threads") or 1),
            entrypoint_num_gpus=1 if config.get("device") == "cuda" else 0,
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
