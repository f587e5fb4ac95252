"""Learning curves of benchmark runs: the training reward per step, and whether it had flattened.

A record's ``learning_curve`` (written by the runner, or rebuilt from the run folder's
``metrics.jsonl`` for records written before curves were stored)::

    {"metric": "reward/scalarized",
     "stages": {STAGE: {"step": [1, ...], "reward": [...]}},   # at most MAX_POINTS per stage
     "plateau": {STAGE: {"steps", "gain", "noise", "last_quarter_share", "flattened"}}}

A stage is one trained policy: MORLHF's ``pref00``..., an ``expert_<objective>``, the
meta-policy's upper level, or the single policy of other methods. Steps count within the stage
from 1. The plateau is computed on every step, before downsampling.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CURVE_METRIC = "reward/scalarized"  # the training reward each stage maximises
MAX_POINTS = 60  # per stage in a record
FLAT_SHARE = 0.1  # below this share of the gain made late, a curve has flattened
MIN_STEPS = 8  # shorter stages are not judged
SINGLE_STAGE = "training"  # the stage name of rows without one
EXPERT_PREFIX = "expert"


def plateau(reward: Sequence[float]) -> dict[str, Any]:
    """Whether a training curve had flattened by its last step.

    Rule: cut the ``n`` steps into quarters of ``q = n // 4`` steps and average each (a moving
    average over a quarter of the steps: single steps score a batch of 16 replies, and a
    5-step window still swings by a third of a typical gain). ``gain`` = last quarter's mean
    minus first quarter's mean; ``late`` = last quarter's mean minus third quarter's mean, the
    part of the gain made in the last quarter (a straight rise makes a third of it there).
    ``noise`` is two standard errors of ``gain``: ``2 sigma sqrt(2 / q)``, the per-step noise
    ``sigma`` estimated from successive differences (``std(diff) / sqrt(2)``, insensitive to
    a slow trend).

    ``flattened`` = ``gain <= noise`` (no gain to speak of) or ``late / gain < FLAT_SHARE``
    (less than 10 % of the gain was made in the last quarter). ``last_quarter_share`` is
    ``late / gain`` (None when there is no gain above noise). Stages shorter than ``MIN_STEPS``
    are not judged (``flattened`` None)."""
    r = np.asarray(reward, dtype=float)  # (n,)
    n = r.size
    out: dict[str, Any] = {"steps": n, "gain": None, "noise": None}
    out |= {"last_quarter_share": None, "flattened": None}
    if n < MIN_STEPS:
        return out
    q = n // 4
    first, third, last = r[:q].mean(), r[n - 2 * q : n - q].mean(), r[n - q :].mean()
    gain, late = float(last - first), float(last - third)
    noise = float(2 * np.std(np.diff(r), ddof=1) / np.sqrt(q))  # 2 sigma sqrt(2 / q)
    share = late / gain if gain > noise else None
    out |= {"gain": round(gain, 6), "noise": round(noise, 6)}
    out["last_quarter_share"] = None if share is None else round(share, 4)
    out["flattened"] = bool(share is None or share < FLAT_SHARE)
    return out


def downsample(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """At most ``max_points`` evenly spread indices into ``range(n)``, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))


def learning_curve(
    rows: Iterable[dict[str, Any]], keep_stage: str | None = None
) -> dict[str, Any] | None:
    """The compact curve of a run's ``metrics.jsonl`` rows (None when none has a reward).

    Stages keep the order they were trained in; a step logged twice (a resumed attempt)
    counts once, the last logged. ``keep_stage``: only stages whose name starts with it."""
    by_stage: dict[str, dict[int, float]] = {}
    for row in rows:
        value = row.get(CURVE_METRIC)
        if value is None or not np.isfinite(value) or "step" not in row:
            continue
        stage = str(row.get("stage") or SINGLE_STAGE)
        if keep_stage is None or stage.startswith(keep_stage):
            by_stage.setdefault(stage, {})[int(row["step"])] = float(value)
    if not by_stage:
        return None
    stages, plateaus = {}, {}
    for stage, steps in by_stage.items():
        reward = np.array([steps[s] for s in sorted(steps)])  # (n,) in training order
        keep = downsample(reward.size)
        stages[stage] = {
            "step": (keep + 1).tolist(),
            "reward": [round(float(x), 5) for x in reward[keep]],
        }
        plateaus[stage] = plateau(reward)
    return {"metric": CURVE_METRIC, "stages": stages, "plateau": plateaus}


def run_curve(run_dir: Path, keep_stage: str | None = None) -> dict[str, Any] | None:
    """:func:`learning_curve` of a run folder (None when it has no metrics)."""
    from morl_core.runfolder import read_metrics

    return learning_curve(read_metrics(Path(run_dir))[0], keep_stage)


def record_curve(
    record: dict[str, Any], data_dirs: Sequence[Path] = (), prior_method: str = ""
) -> dict[str, Any] | None:
    """A record's stored curve, else its run's curve from the first of ``data_dirs`` whose
    ``runs/RUN_ID`` exists, else None. ``prior_method`` records (experts of a meta-policy mixed
    untrained) keep their run's expert stages only."""
    keep = EXPERT_PREFIX if prior_method and record.get("method") == prior_method else None
    stored = record.get("learning_curve")
    if stored:
        if keep is None:
            return stored
        names = [s for s in stored["stages"] if s.startswith(keep)]
        return stored | {
            "stages": {s: stored["stages"][s] for s in names},
            "plateau": {s: stored["plateau"][s] for s in names},
        }
    run_id = record.get("run_id")
    for data_dir in data_dirs if run_id else ():
        run_dir = Path(data_dir) / "runs" / run_id
        if run_dir.is_dir():
            return run_curve(run_dir, keep)
    return None


def stage_means(curves: Iterable[dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Per stage, the mean over seeds (records) at each stored step: ``step``, ``reward``,
    ``seeds`` (how many curves had the stage) and ``steps`` (the stage's length in steps)."""
    sums: dict[str, dict[int, list[float]]] = {}
    seeds: dict[str, int] = {}
    lengths: dict[str, int] = {}
    for curve in curves:
        for stage, points in (curve or {}).get("stages", {}).items():
            for step, reward in zip(points["step"], points["reward"], strict=True):
                sums.setdefault(stage, {}).setdefault(int(step), []).append(float(reward))
            seeds[stage] = seeds.get(stage, 0) + 1
            length = (curve.get("plateau") or {}).get(stage, {}).get("steps") or points["step"][-1]
            lengths[stage] = max(lengths.get(stage, 0), int(length))
    return {
        stage: {
            "step": sorted(by_step),
            "reward": [float(np.mean(by_step[s])) for s in sorted(by_step)],
            "seeds": seeds[stage],
            "steps": lengths[stage],
        }
        for stage, by_step in sums.items()
    }


def flattened_summary(curves: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Whether a method's training reward had flattened, from its records' curves.

    Each stage is judged by :func:`plateau` on its mean curve over seeds (single seeds are
    noisy: a batch of 16 replies per step); a downsampled stage's points are evenly spread, so
    its quarters are the same. The cell reads ``yes``, ``yes: no gain above noise`` (no stage
    gained: flat from the start or falling, not converged), ``no: 34 % of the gain in the last
    quarter (2 of 5 stages)`` (the median share over the stages still rising) or ``no curve``. Also
    returned: ``curve_stages`` (judged), ``rising_stages``, ``rising_last_quarter_share`` and
    the per-seed counts (``seed_curves``: every judged (seed, stage) curve,
    ``seed_curves_rising``: those not flattened)."""
    curves = [c for c in curves if c]
    per_seed = [p for c in curves for p in c["plateau"].values() if p.get("flattened") is not None]
    stages = {}
    for stage, mean in stage_means(curves).items():
        stages[stage] = plateau(mean["reward"])  # quarters of the stored (even) points
    judged = [p for p in stages.values() if p["flattened"] is not None]
    rising = [p["last_quarter_share"] for p in judged if not p["flattened"]]
    median = float(np.median(rising)) if rising else None
    if not judged:
        cell = short = "no curve"
    elif not rising:
        gained = any(p["last_quarter_share"] is not None for p in judged)
        cell = "yes" if gained else "yes: no gain above noise"  # flat, not converged
        short = "flattened" if gained else "flat: no gain above noise"
    else:
        count = f"{len(rising)} of {len(judged)} stage{'s' if len(judged) > 1 else ''}"
        cell = f"no: {median:.0%} of the gain in the last quarter ({count})".replace("%", " %")
        short = f"still rising ({count})" if len(judged) > 1 else "still rising"
    return {
        "flattened": cell,
        "flattened_short": short,
        "curve_stages": len(judged),
        "rising_stages": len(rising),
        "rising_last_quarter_share": median,
        "seed_curves": len(per_seed),
        "seed_curves_rising": sum(not p["flattened"] for p in per_seed),
    }
