"""The one evaluation protocol: a trained policy -> its front, indicators with intervals, KL.

Every number that compares fronts (``morl front``'s ``front.json``, the app's Fronts page, a
``morl bench`` record, the scripts under ``benchmarks/``) comes from :func:`evaluate_run` or
:func:`evaluate_base` under one declared :class:`EvalProtocol` and carries it (with its
``protocol_version``), so a number on any page means the same thing. The protocol fixes:

* **Prompts**: every prompt of the run's prompt set's held-out (``eval``) split.
* **Samples**: ``samples`` completions per prompt, decoded with the protocol's temperature,
  top-p and length.
* **Common random numbers**: sample ``s`` of every prompt is drawn with the seed ``seed + s``
  (one batch over all prompts per sample index), never depending on the preference or the
  method, so two preferences of one policy, or two methods, face the same prompts with the
  same random stream.
* **Points**: at each preference the mean score of every objective over all replies (a score
  that does not apply, ``None`` from a reward function, is left out, not counted as 0).
* **Indicators** (:mod:`morl_core.pareto`): hypervolume of the *mean* points with the fixed
  :func:`reference_point`; expected utility over a fixed simplex lattice
  (:meth:`EvalProtocol.eu_preferences`), not the front's own preferences; IGD / IGD+ where the
  true front is known. A percentile bootstrap over prompts gives HV and EU ``level`` intervals.
* **KL to the base model**: a Monte-Carlo estimate of KL(policy || base) on the sampled
  replies, per token and per sequence, at every preference, for every method: the sampler
  reports the log-probability of each token it draws under the policy's actual next-token
  distribution (a mixture, a fusion, a conditioned prompt and all), one teacher-forced pass of
  the base model on the user's plain prompt gives the base's
  (:func:`morl_core.kl.generate_with_kl`).
* **Base model**: :func:`evaluate_base` evaluates the untrained model the same way, the
  reference row of a comparison.

Maximisation convention throughout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morl_core import objectives as objective_registry
from morl_core.kl import generate_with_kl
from morl_core.methods import get
from morl_core.objectives import OBJECTIVES, front_bounds
from morl_core.objectives import true_front as analytic
from morl_core.pareto import hypervolume, prompt_bootstrap, reference_point_from_bounds, summary
from morl_core.policy import load_policy
from morl_core.prompts import load_prompt_columns, load_prompts
from morl_core.runfolder import read_config, read_metrics
from morl_core.weights import check_weights, simplex_lattice

PROTOCOL_VERSION = "eval-3"
# Expected utility is averaged over a simplex lattice with this many divisions per objective
# count (21, 45, 56, 70 preferences); more objectives get 3 divisions, a bounded lattice.
EU_DIVISIONS = ((2, 20), (3, 8), (4, 5), (5, 4))
EU_DIVISIONS_ABOVE = 3
MAX_SAMPLES = 64
MAX_PROMPTS = 1024
MAX_BOOTSTRAP = 2000
INTEGER_RANGES = {
    "samples": (1, MAX_SAMPLES),
    "max_prompts": (0, MAX_PROMPTS),
    "max_new_tokens": (1, 512),
    "seed": (0, 2**31 - 1),
    "bootstrap": (0, MAX_BOOTSTRAP),
}
NUMBER_RANGES = {
    "temperature": (0.0, 10.0),
    "top_p": (0.0, 1.0),
    "reference_margin": (0.0, 1.0),
    "level": (0.0, 1.0),
}


@dataclasses.dataclass(frozen=True)
class EvalProtocol:
    """How every front is evaluated; recorded (``to_dict``) next to every result.

    Attributes:
        version: Changes whenever a rule changes meaning; versions are never compared.
        samples: Completions per prompt.
        max_prompts: Use only the first ``max_prompts`` held-out prompts; 0 = all of them.
        max_new_tokens: Tokens decoded per reply.
        temperature: Sampling temperature (> 0: the protocol never decodes greedily).
        top_p: Nucleus mass in (0, 1].
        seed: Base seed: sample ``s`` of every prompt uses ``seed + s`` at every preference.
        reference_margin: See :func:`reference_point`.
        eu_divisions: ``(k, divisions)``: the simplex lattice expected utility averages over
            for k objectives (k above the table: ``EU_DIVISIONS_ABOVE``).
        bootstrap: Resamples of the prompts for the HV / EU intervals; 0 = none.
        level: Coverage of those intervals, in (0, 1).
        kl: Estimate KL to the base model at every preference.

    Ranges: ``INTEGER_RANGES`` and ``NUMBER_RANGES``.
    """

    version: str = PROTOCOL_VERSION
    samples: int = 4
    max_prompts: int = 0
    max_new_tokens: int = 24
    temperature: float = 1.0
    top_p: float = 0.9
    seed: int = 0
    reference_margin: float = 0.1
    eu_divisions: tuple[tuple[int, int], ...] = EU_DIVISIONS
    bootstrap: int = 200
    level: float = 0.95
    kl: bool = True

    def __post_init__(self) -> None:
        errors = []
        for name, (low, high) in {**INTEGER_RANGES, **NUMBER_RANGES}.items():
            value, integer = getattr(self, name), name in INTEGER_RANGES
            kind = int if integer else int | float  # NaN and inf fail the range check
            if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
                expected = "an integer" if integer else "a number"
                errors.append(f"{name}: expected {expected} in [{low}, {high}], got {value!r}")
        if not errors and (self.temperature == 0 or self.top_p == 0 or self.level in (0, 1)):
            errors.append("temperature, top_p and level must be > 0 (and level < 1)")
        if any(not (2 <= k <= 64 and 1 <= d <= 100) for k, d in self.eu_divisions):
            errors.append(f"eu_divisions: expected (k, divisions) pairs, got {self.eu_divisions}")
        if errors:
            raise ValueError("EvalProtocol: " + "; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        """The protocol as recorded in results: ``protocol_version`` plus every rule."""
        data = dataclasses.asdict(self)
        data["eu_divisions"] = {str(k): d for k, d in self.eu_divisions}
        return {"protocol_version": data.pop("version"), **data}

    def decoding(self) -> dict[str, Any]:
        """The generation settings every reply is decoded with (the seed is per sample)."""
        return {key: getattr(self, key) for key in ("max_new_tokens", "temperature", "top_p")}

    def eu_preferences(self, k: int) -> np.ndarray:
        """The fixed preference set (M, k) that expected utility averages over."""
        divisions = dict(self.eu_divisions).get(k, EU_DIVISIONS_ABOVE)
        return simplex_lattice(k, divisions)

    def prompts(self, prompt_set: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """The held-out prompts of ``prompt_set`` this protocol evaluates, and their columns."""
        prompts = load_prompts(prompt_set, "eval")[: self.max_prompts or None]  # 0: all
        return prompts, load_prompt_columns(prompt_set, "eval")


DEFAULT_PROTOCOL = EvalProtocol()


def default_protocol() -> EvalProtocol:
    """The protocol every entry point uses unless given one (read at call time)."""
    return DEFAULT_PROTOCOL


# --- the rules that do not depend on a policy ------------------------------------------------


def preference_grid(k: int, n: int) -> np.ndarray:
    """About ``n`` preferences on the k-simplex: n evenly spaced points for k=2, a lattice above.

    These are the preferences a front is evaluated at (a run's ``n_preferences``); expected
    utility uses :meth:`EvalProtocol.eu_preferences` instead, the same set for every front.
    """
    if k == 2:
        t = np.linspace(0.0, 1.0, n)
        return np.stack([t, 1.0 - t], axis=1)[::-1]
    divisions = 1
    while len(simplex_lattice(k, divisions + 1)) <= n:
        divisions += 1
    return simplex_lattice(k, divisions)


def reference_point(
    objectives: int | Sequence[str],
    records: Sequence[Mapping[str, Any]] = (),
    margin: float | None = None,
    allow_import: bool = False,
) -> np.ndarray:
    """The fixed per-task reference point: ``margin`` of each objective's range below its low end.

    Ranges by :func:`morl_core.objectives.front_bounds` (built-in objectives [0, 1]; an
    imported one its declared range or the one a run learned, in its metric ``records``); a
    bare count ``k``, or objectives this process may not import, get [0, 1].
    """
    margin = DEFAULT_PROTOCOL.reference_margin if margin is None else margin
    k = objectives if isinstance(objectives, int) else len(objectives)
    low, high = np.zeros(k), np.ones(k)
    if not isinstance(objectives, int):
        with contextlib.suppress(ValueError):  # an objective this process may not import
            low, high = front_bounds(list(objectives), records, allow_import=allow_import)
    return reference_point_from_bounds(low, high, margin)


def true_front(objectives: Sequence[str]) -> np.ndarray | None:
    """The analytic front of a pair of synthetic word-class objectives, else None."""
    names = list(objectives)
    if len(names) != 2 or any(
        getattr(OBJECTIVES.get(n), "kind", None) != "synthetic" for n in names
    ):
        return None
    try:
        return analytic(names[0], names[1], n=201)
    except ValueError:
        return None


def front_indicators(
    front: Mapping[str, Any],
    ref: Sequence[float] | np.ndarray | None = None,
    protocol: EvalProtocol | None = None,
) -> dict[str, Any]:
    """HV, EU, sparsity, cardinality, IGD/IGD+ of a front dict: the one place they are computed.

    ``front`` holds ``objectives`` and ``points`` (P, K); with the per-prompt ``prompt_sums`` /
    ``prompt_counts`` of :func:`evaluate_front` too, HV and EU get bootstrap ``intervals``.
    ``ref`` defaults to :func:`reference_point`, ``protocol`` to :func:`default_protocol`.

    Returns:
        :meth:`morl_core.pareto.FrontSummary.to_dict` plus ``intervals`` (possibly empty),
        ``level``, ``eu_preferences`` (how many) and ``protocol_version``.
    """
    protocol = protocol or default_protocol()
    points = np.asarray(front["points"], dtype=float)  # (P, K)
    names = list(front.get("objectives") or [])
    k = points.shape[1]
    ref = np.asarray(reference_point(names or k) if ref is None else ref, dtype=float)
    weights = protocol.eu_preferences(k)
    out = summary(
        points, ref, weights=weights, true_front=true_front(names), nan_policy="omit"
    ).to_dict()
    intervals: dict[str, Any] = {}
    if protocol.bootstrap and front.get("prompt_sums") is not None:
        found = prompt_bootstrap(
            front["prompt_sums"],
            front["prompt_counts"],
            ref,
            weights,
            draws=protocol.bootstrap,
            level=protocol.level,
            rng=np.random.default_rng(protocol.seed),
        )
        intervals = {key: list(value) for key, value in found.items()}
    return {
        **out,
        "intervals": intervals,
        "level": protocol.level,
        "eu_preferences": int(len(weights)),
        "protocol_version": protocol.version,
    }


def snapshot_hypervolume(
    points: Sequence[Sequence[float]], objectives: int | Sequence[str]
) -> float:
    """HV of an in-training front snapshot, with the protocol's reference point.

    Snapshots use fewer prompts, so their HV traces one run's progress; compare runs with
    :func:`evaluate_run`'s indicators instead.
    """
    return hypervolume(points, reference_point(objectives))


# --- evaluating a steerable ------------------------------------------------------------------


def evaluate_front(
    steerable,
    prompts: Sequence[str],
    preferences: np.ndarray,
    objectives: Sequence[str],
    *,
    protocol: EvalProtocol | None = None,
    prompt_columns: dict[str, dict[str, Any]] | None = None,
    seed: int | None = None,
    base: bool = False,
) -> dict[str, Any]:
    """Front points of ``steerable`` at each preference, on ``prompts``, under ``protocol``.

    Without a protocol (the in-training snapshots): the default rules with ``seed``, no KL and
    no bootstrap. ``base`` marks the base model, whose KL to itself is 0 without measuring and
    which ignores the preference: it is evaluated at the first one and that row stands for all.

    Returns:
        {"objectives", "preferences" (P, K), "points" (P, K) mean rewards, "stderr" (P, K),
        "prompt_sums" / "prompt_counts" (P, N, K) per-prompt sums and counts of scored samples
        (the bootstrap's input), "kl_per_token" / "kl_per_sequence" (P,) or None each,
        "examples": one (prompt, completion) per preference, "distinct1" / "distinct2" (P,)}.
    """
    from morl_core.rl.trainer import distinct_n  # imports torch; reading fronts stays light

    protocol = protocol or EvalProtocol(seed=seed or 0, kl=False, bootstrap=0)
    preferences = np.atleast_2d(np.asarray(preferences, dtype=float))
    prompts, decoding = list(prompts), protocol.decoding()
    n, k = len(prompts), len(objectives)
    if base and len(preferences) > 1:  # the base model ignores w: one row stands for every w
        for w in preferences:
            check_weights(w, k=k)
        row = evaluate_front(
            steerable,
            prompts,
            preferences[:1],
            objectives,
            protocol=protocol,
            prompt_columns=prompt_columns,
            base=True,
        )
        tiled = {key: value * len(preferences) for key, value in row.items()}
        return {**tiled, "objectives": list(objectives), "preferences": preferences.tolist()}
    points, errors, examples, distinct1, distinct2 = [], [], [], [], []
    sums, counts, kl_token, kl_sequence = [], [], [], []
    measure = protocol.kl and not base
    for w in preferences:
        check_weights(w, k=k)
        texts, measured = [], []
        for s in range(protocol.samples):  # common random numbers: the seed ignores w
            seed_s = protocol.seed + s
            if measure:
                replies, found = generate_with_kl(
                    steerable, prompts, list(w), seed=seed_s, **decoding
                )
                measured.append(found)
            else:
                replies = steerable.generate(prompts, list(w), seed=seed_s, **decoding)
            texts += replies
        asked = prompts * protocol.samples
        rewards = objective_registry.score(
            list(objectives), asked, texts, prompt_columns=prompt_columns
        )  # (S * N, K), sample-major; NaN = not applicable
        points.append(objective_registry.mean_applicable_columns(rewards))
        errors.append(objective_registry.stderr_applicable_columns(rewards))
        by_prompt = np.asarray(rewards, dtype=float).reshape(protocol.samples, n, k)
        sums.append(np.nansum(by_prompt, axis=0))  # (N, K)
        counts.append((~np.isnan(by_prompt)).sum(axis=0))  # (N, K)
        examples.append([asked[0], texts[0]])
        distinct1.append(distinct_n(texts, 1))
        distinct2.append(distinct_n(texts, 2))
        kl = None
        if measure and measured and all(m is not None for m in measured):
            kl = tuple(np.concatenate(parts) for parts in zip(*measured, strict=True))
            kl = kl if kl[1].sum() > 0 else None
        zero = 0.0 if base else None
        kl_token.append(zero if kl is None else float(kl[0].sum() / kl[1].sum()))
        kl_sequence.append(zero if kl is None else float(kl[0].mean()))
    return {
        "objectives": list(objectives),
        "preferences": preferences.tolist(),
        "points": np.asarray(points).tolist(),
        "stderr": np.asarray(errors).tolist(),
        "prompt_sums": np.asarray(sums).tolist(),
        "prompt_counts": np.asarray(counts).tolist(),
        "kl_per_token": kl_token,
        "kl_per_sequence": kl_sequence,
        "examples": examples,
        "distinct1": distinct1,
        "distinct2": distinct2,
    }


class BasePolicy:
    """The untrained base model as a Steerable: it ignores the preference (the reference row)."""

    models_kept = 1
    passes_per_token = 1

    def __init__(self, policy, objectives: Sequence[str]):
        self.policy, self.objectives = policy, tuple(objectives)

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        """One completion per prompt from the base model; ``weights`` is checked, then unused."""
        check_weights(weights, k=len(self.objectives))
        return self.policy.generate(list(prompts), **gen)


def evaluate_steerable(
    steerable,
    objectives: Sequence[str],
    prompt_set: str,
    n_preferences: int,
    *,
    protocol: EvalProtocol | None = None,
    records: Sequence[Mapping[str, Any]] = (),
    base: bool = False,
) -> dict[str, Any]:
    """Evaluate ``steerable`` under the protocol: front, indicators (with intervals), KL.

    Returns:
        The :func:`evaluate_front` dict plus ``indicators`` (:func:`front_indicators`),
        ``protocol`` (:meth:`EvalProtocol.to_dict`), ``protocol_version``, ``eval_seconds``
        (wall seconds of generating and scoring) and ``replies``.
    """
    protocol = protocol or default_protocol()
    prompts, columns = protocol.prompts(prompt_set)
    preferences = preference_grid(len(objectives), n_preferences)
    start = time.perf_counter()
    front = evaluate_front(
        steerable,
        prompts,
        preferences,
        objectives,
        protocol=protocol,
        prompt_columns=columns,
        base=base,
    )
    seconds = time.perf_counter() - start
    ref = reference_point(objectives, records, protocol.reference_margin, allow_import=True)
    return {
        **front,
        "indicators": front_indicators(front, ref, protocol),
        "protocol": protocol.to_dict(),
        "protocol_version": protocol.version,
        "eval_seconds": seconds,
        "replies": len(preferences) * len(prompts) * protocol.samples,
    }


def evaluate_run(
    run_dir: Path,
    method: str | None = None,
    device: str = "auto",
    protocol: EvalProtocol | None = None,
    prior: bool = False,
) -> dict[str, Any]:
    """Evaluate a finished run folder, served by ``method`` (default: its own); writes nothing.

    ``prior``: a meta-policy served by its prior alone (its experts mixed by the untrained
    mixer), the ablation that says what its trained upper level adds.

    Returns:
        The :func:`evaluate_steerable` dict plus ``method``, ``passes_per_token`` and
        ``models_kept``.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    steerable = get(method or config.method).load(run_dir, device=device)
    if prior:
        if not hasattr(steerable, "mixer"):
            raise ValueError(
                f"prior: only a meta-policy has a prior to evaluate, not {method or config.method}"
            )
        steerable.mixer.adjust = False  # alpha = softmax(log(w + eps)): no trained adjustment
    front = evaluate_steerable(
        steerable,
        config.objectives,
        config.prompt_set,
        config.n_preferences,
        protocol=protocol,
        records=read_metrics(run_dir)[0],
    )
    return {
        **front,
        "method": method or config.method,
        "passes_per_token": int(getattr(steerable, "passes_per_token", 1)),
        "models_kept": int(getattr(steerable, "models_kept", 1)),
    }


def evaluate_base(
    objectives: Sequence[str],
    model: str = "embedded",
    prompt_set: str = "default",
    n_preferences: int = 5,
    device: str = "auto",
    protocol: EvalProtocol | None = None,
) -> dict[str, Any]:
    """The base model (no adapter) under the same protocol: the reference row of a comparison.

    Its KL is 0; its points are the same at every preference (common random numbers)."""
    steerable = BasePolicy(load_policy(model, device=device), objectives)
    front = evaluate_steerable(
        steerable, objectives, prompt_set, n_preferences, protocol=protocol, base=True
    )
    front["method"] = "base"
    front["passes_per_token"] = front["models_kept"] = 1
    return front


# --- reading results back --------------------------------------------------------------------


def is_current(front: Mapping[str, Any]) -> bool:
    """Whether ``front`` was evaluated under the current protocol version."""
    return front.get("protocol_version") == default_protocol().version


def read_front(path: Path) -> dict[str, Any] | None:
    """A saved front (``front.json``), or None when missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# The protocol's decoding, for code that samples outside an evaluation (EMORL's search).
EVAL_DECODING = DEFAULT_PROTOCOL.decoding()
