"""What the app can serve: demo folders and finished runs, the models and objectives it offers.

Artifacts are demo run folders (``assets/demo``) and finished runs of the job store;
:func:`discover_artifacts` lists them (the landing demo first) as :class:`ArtifactInfo`; the
pages' pickers and :mod:`morl_core.app.serving`, which loads and steers them, read this list.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morl_core import objectives, settings
from morl_core.jobs import RunStore, StoreError
from morl_core.jobs.paths import default_data_dir, resolve_data_dir
from morl_core.methods import METHODS
from morl_core.objectives.specs import import_allowed, parse_spec
from morl_core.policy.model import ASSETS
from morl_core.policy.registry import EMBEDDED, MODELS, wheel_file
from morl_core.prompts import load_prompts

DEMO_DIR = ASSETS / "demo"
KEPT_RUN_FILES = frozenset(
    {"config.json", "artifact.json", "metrics.jsonl", "front.jsonl", "front.json", "adapters"}
    | {"lattice.json", "trained_on.json"}  # precomputed Steer replies; where it was trained
    | {"base_front.json"}  # the base model's front, where a demo ships it
)
# The landing artifacts, in order: the first whose model is here opens Steer and Fronts (the
# SmolLM2 demos once they ship; the embedded model's, the fast classroom mode, otherwise).
DEMO_FIRST = ("smollm2-soups-formality-readability", "soups-sentiment-brevity")


def data_dir() -> Path:
    """The job store's data directory (``$MORL_DATA_DIR`` or the per-user default)."""
    return resolve_data_dir()


def app_data_dir() -> Path:
    """Writable folder for the app's own caches (``DATA/app``); demo folders stay read-only."""
    return default_data_dir() / "app"


def allowed_models() -> tuple[str, ...]:
    """Models the web UI offers for training: ``$MORL_UI_MODELS`` (comma list) or embedded."""
    return settings.ui_models()


def ui_allows_imports() -> bool:
    """Whether the operator switched on dotted-path objectives in the UI (off by default)."""
    return settings.ui_allows_imports()


# TRL's own reward functions offered in the Train form when trl is installed (allow-listed by
# default); an operator lists others, or none, in $MORL_UI_IMPORTED_OBJECTIVES (";"-separated).
DEFAULT_UI_IMPORTED = (
    "trl.rewards:think_format_reward",
    "trl.rewards:get_repetition_penalty_reward(ngram_size=3,max_penalty=-1.0)",
)


def ui_objectives() -> list[str]:
    """Objectives the web UI offers: the registered ones, then the imported specs above whose
    module is on the import allow-list (``$MORL_ALLOWED_IMPORTS``)."""
    specs = settings.ui_imported_objectives()
    if specs is None:
        specs = list(DEFAULT_UI_IMPORTED) if importlib.util.find_spec("trl") else []
    offered = []
    for spec in specs:
        try:
            module = parse_spec(spec).module
        except ValueError:
            continue  # a bad operator entry is not offered; the CLI reports it by name
        if import_allowed(module, ui_allows_imports()):
            offered.append(spec)
    return [*objectives.OBJECTIVES, *offered]


def example_prompts(n: int = 8, prompt_set: str = "default") -> list[str]:
    """A few held-out prompts of ``prompt_set`` (an artifact's own), for the prompt picker."""
    return load_prompts(prompt_set, "eval")[:n]


@dataclass(frozen=True)
class ArtifactInfo:
    """A trained run folder the app can steer.

    Attributes:
        key: Stable id, ``demo/<name>`` or ``run/<run id>``.
        label: What the pickers show.
        run_dir: The run folder (read-only for demos).
        method: The method it was trained with.
        objectives: Objective names, in order.
        steer_methods: Methods that can serve it: its own, plus every registered method built
            from per-objective experts when the artifact holds experts (soups <-> mod, ...).
        source: ``demo`` or ``run``.
        prompt_set: The prompt set it was trained on (its example prompts come from there).
        tags: RiC's tag style (its artifact's ``tags``; ``all`` for older RiC artifacts), empty
            for other methods.
    """

    key: str
    label: str
    run_dir: Path
    method: str
    objectives: tuple[str, ...]
    steer_methods: tuple[str, ...]
    source: str
    prompt_set: str = "default"
    model: str = EMBEDDED
    tags: str = ""

    @property
    def embedded(self) -> bool:
        """Served by the embedded model (fast enough for a classroom on a laptop CPU)."""
        return self.model == EMBEDDED


def model_here(name: str) -> bool:
    """Whether base model ``name`` loads offline here: the embedded one always, a wheel model
    once its package is installed; other names (folders, hub names) are not checked."""
    spec = MODELS.get(name)
    if spec is None or spec.source == "embedded":
        return True
    return wheel_file(spec) is not None


def steer_methods_for(method: str, artifact: Mapping[str, Any]) -> tuple[str, ...]:
    """Registered methods that can serve an artifact (its own first).

    Only aggregation methods (family D, with an ``experts_from`` option) combine experts with
    nothing trained on top, so only they re-serve another method's experts; a meta-policy
    (family E) needs its own trained upper level.
    """
    found = [method]
    if artifact.get("experts"):
        found += [
            name
            for name, spec in METHODS.items()
            if name != method and "experts_from" in spec.options and spec.family.startswith("D")
        ]
    return tuple(found)


def one_policy_note(method: str) -> str | None:
    """What the Steer card says under a method that trains one policy for every preference
    (DynaOpt), so that identical-looking replies at both ends are not read as a broken slider;
    None for a method the sliders steer."""
    if METHODS[method].steers:
        return None
    return (
        f"{method} trains one policy: its objective weights were moved during training, so the "
        "sliders do not change its replies (compare it with a steerable method)."
    )


def conditioning_note(info: ArtifactInfo, method: str, weights) -> str | None:
    """What a method that steers through its prompt (RiC) writes before the prompt at
    ``weights``, for the Steer card: the sliders' effect in the model's own words. None for a
    method that steers otherwise, or an artifact it does not hold."""
    if method != "ric" or info.method != "ric":
        return None
    from morl_core.methods import ric_tags

    try:
        written = ric_tags.prefix(info.objectives, np.asarray(weights, dtype=float), info.tags)
    except (ValueError, TypeError):
        return None
    if not written.strip():
        return "RiC writes nothing before the prompt here: every objective asked at its best."
    return f"RiC writes before the prompt: “{written.strip()}”"


def read_artifact_info(run_dir: Path, key: str, label: str, source: str) -> ArtifactInfo | None:
    """The :class:`ArtifactInfo` of a finished run folder, or None if it holds no artifact."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        artifact = json.loads((run_dir / "artifact.json").read_text())
    except (OSError, ValueError):
        return None
    method = str(artifact.get("method") or config.get("method"))
    return ArtifactInfo(
        key=key,
        label=label,
        run_dir=run_dir,
        method=method,
        objectives=tuple(artifact.get("objectives") or config.get("objectives") or ()),
        steer_methods=steer_methods_for(method, artifact),
        source=source,
        prompt_set=str(config.get("prompt_set") or "default"),
        model=str(config.get("model") or EMBEDDED),
        tags=str(artifact.get("tags", "all")) if method == "ric" else "",
    )


def discover_artifacts(data_dir: Path | str | None = None, runs: bool = True) -> list[ArtifactInfo]:
    """Demo artifacts first, then finished runs of the job store (newest first)."""
    found = []
    folders = sorted(DEMO_DIR.glob("*")) if DEMO_DIR.is_dir() else []
    demos = [
        info
        for folder in folders
        if (
            info := read_artifact_info(
                folder, f"demo/{folder.name}", f"demo: {folder.name}", "demo"
            )
        )
    ]
    # the landing artifact first (two objectives, served by more than one method); demos whose
    # model is not installed last
    listed = settings.ui_demo_models()
    demos = [a for a in demos if listed is None or a.model in listed]
    first = {name: i for i, name in enumerate(DEMO_FIRST)}
    demos.sort(key=lambda a: (not model_here(a.model), first.get(a.run_dir.name, len(first))))
    found += demos
    if runs:
        try:
            store = RunStore(data_dir)
            statuses = store.list({"succeeded"})
        except (StoreError, OSError):
            statuses, store = [], None
        for status in statuses:
            label = f"run {status.run_id}: {status.method} on {', '.join(status.objectives)}"
            info = read_artifact_info(
                store.runs_dir / status.run_id, f"run/{status.run_id}", label, "run"
            )
            if info is not None:
                found.append(info)
    return found


def slug(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-60:] + "-" + digest
