"""The one evaluation protocol: a trained policy -> its front, indicators with intervals, KL.

Every number that compares fronts (``morl front``'s ``front.json``, the app's Fronts page, a
``morl bench`` record, the scripts under ``benchmarks/``) comes from :func:`evaluate_run` or
:func:`evaluate_base` under one declared :class:`EvalProtocol`, and carries it (with its
``protocol_version``), so a number on any page means the same thing.

What the protocol fixes:

* **Prompts**: every prompt of the run's prompt set's held-out (``eval``) split.
* **Samples**: ``samples`` completions per prompt (>= 4 by default), decoded with the
  protocol's temperature, top-p and length.
* **Common random numbers**: sample ``s`` of every prompt is drawn with the seed
  ``seed + s`` (one batch over all prompts per sample index); the seed never depends on the
  preference or the method, so two preferences of one policy, or two methods, face the same
  prompts with the same random stream. Rows of a batch share one generator, so a prompt's
  stream is fixed by its sample index and the (fixed) prompt list.
* **Points**: at each preference the mean score of every objective over all replies (a score
  that does not apply, ``None`` from a reward function, is left out, not counted as 0).
* **Indicators** (:mod:`morl_core.pareto`): hypervolume of the *mean* points (never the
  envelope of noisy per-seed points), with the reference point of :func:`reference_point`;
  expected utility over a fixed simplex lattice (:meth:`EvalProtocol.eu_preferences`), not over
  the front's own preferences; IGD / IGD+ where the true front is known. A percentile bootstrap
  over prompts gives each of HV and EU a ``level`` interval.
* **KL to the base model**: a Monte-Carlo estimate of KL(policy || base) on the sampled replies,
  per token and per sequence, at every preference, for servers that run one model per
  preference (an adapter or a soup); decoding-time mixtures report None.
* **Base model**: :func:`evaluate_base` evaluates the untrained model (no adapter) the same way,
  the reference row of a comparison.

Maximisation convention throughout.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morl_core import objectives as objective_registry
from morl_core.methods import get
from morl_core.objectives import OBJECTIVES, front_bounds
from morl_core.objectives import true_front as analytic
from morl_core.pareto import hypervolume, prompt_bootstrap, reference_point_from_bounds, summary
from morl_core.policy import load_policy
from morl_core.prompts import load_prompt_columns, load_prompts
from morl_core.runfolder import read_config, read_metrics
from morl_core.weights import check_weights, simplex_lattice

PROTOCOL_VERSION = "eval-2"
# Expected utility is averaged over a simplex lattice with this many divisions per objective
# count (21, 45, 56, 70 preferences); more objectives get 3 divisions, a bounded lattice.
EU_DIVISIONS = ((2, 20), (3, 8), (4, 5), (5, 4))
EU_DIVISIONS_ABOVE = 3
MAX_SAMPLES = 64
MAX_PROMPTS = 1024
MAX_BOOTSTRAP = 2000
KL_BATCH = 16  # replies per forward pass of the KL estimate (bounds the logits' memory)


@dataclasses.dataclass(frozen=True)
class EvalProtocol:
    """How every front is evaluated; recorded (``to_dict``) next to every result.

    Attributes:
        version: Changes whenever a rule below changes meaning; results of different versions
            are not compared.
        samples: Completions per prompt, in [1, 64] (4 by default; the in-training snapshots
            use 1).
        max_prompts: Use only the first ``max_prompts`` held-out prompts, in [0, 1024];
            0 = all of them (the default).
        max_new_tokens: Tokens decoded per reply.
        temperature: Sampling temperature (> 0; the protocol samples, it never decodes greedily).
        top_p: Nucleus mass in (0, 1].
        seed: Base seed: sample ``s`` of every prompt uses ``seed + s`` at every preference.
        reference_margin: The reference point sits this fraction of each objective's range
            below its low end (see :func:`reference_point`).
        eu_divisions: ``(k, divisions)`` pairs: the simplex lattice expected utility averages
            over for k objectives (k above the table: ``EU_DIVISIONS_ABOVE``).
        bootstrap: Resamples of the prompts for the HV / EU intervals, in [0, 2000]; 0 = none.
        level: Coverage of those intervals, in (0, 1).
        kl: Estimate KL to the base model at every preference.
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
        ints = {
            "samples": (1, MAX_SAMPLES),
            "max_prompts": (0, MAX_PROMPTS),
            "max_new_tokens": (1, 512),
            "seed": (0, 2**31 - 1),
            "bootstrap": (0, MAX_BOOTSTRAP),
        }
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors.append(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
        floats = {
            "temperature": (0.0, 10.0),
            "top_p": (0.0, 1.0),
            "reference_margin": (0.0, 1.0),
            "level": (0.0, 1.0),
        }
        for name, (low, high) in floats.items():
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, int | float)
            if bad or not np.isfinite(value) or not low <= value <= high:
                errors.append(f"{name}: expected a number in [{low}, {high}], got {value!r}")
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
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }

    def eu_preferences(self, k: int) -> np.ndarray:
        """The fixed preference set (M, k) that expected utility averages over."""
        divisions = dict(self.eu_divisions).get(k, EU_DIVISIONS_ABOVE)
        return simplex_lattice(k, divisions)

    def prompts(self, prompt_set: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """The held-out prompts of ``prompt_set`` this protocol evaluates, and their columns."""
        prompts = load_prompts(prompt_set, "eval")
        if self.max_prompts:
            prompts = prompts[: self.max_prompts]
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

    Built-in objectives live in [0, 1]; an imported one (a TRL reward) on its given or declared
    range, or the range a run learned (its metric ``records``), by
    :func:`morl_core.objectives.front_bounds`. A bare count ``k`` means k objectives in [0, 1].
    An imported objective this process may not import gets the [0, 1] map.
    """
    margin = DEFAULT_PROTOCOL.reference_margin if margin is None else margin
    if isinstance(objectives, int):
        low, high = np.zeros(objectives), np.ones(objectives)
    else:
        names = list(objectives)
        try:
            low, high = front_bounds(names, records, allow_import=allow_import)
        except ValueError:
            low, high = np.zeros(len(names)), np.ones(len(names))
    return reference_point_from_bounds(low, high, margin)


def true_front(objectives: Sequence[str]) -> np.ndarray | None:
    """The analytic front of a pair of synthetic word-class objectives, else None."""
    names = list(objectives)
    if len(names) != 2 or not all(
        OBJECTIVES.get(n) is not None and OBJECTIVES[n].kind == "synthetic" for n in names
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
    """HV, EU, sparsity, cardinality, IGD/IGD+ of a front dict, with bootstrap intervals.

    The one place a front's indicators are computed. ``front`` holds ``objectives`` and
    ``points`` (P, K); when it also holds the per-prompt ``prompt_sums`` / ``prompt_counts`` of
    :func:`evaluate_front`, the HV and EU get ``protocol.level`` intervals in ``intervals``.

    Args:
        front: A front dict.
        ref: The reference point; default :func:`reference_point` of the front's objectives.
        protocol: The protocol (EU preferences, bootstrap); default :func:`default_protocol`.

    Returns:
        :meth:`morl_core.pareto.FrontSummary.to_dict` plus ``intervals`` (possibly empty),
        ``eu_preferences`` (how many) and ``protocol_version``.
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
        rng = np.random.default_rng(protocol.seed)
        found = prompt_bootstrap(
            front["prompt_sums"],
            front["prompt_counts"],
            ref,
            weights,
            draws=protocol.bootstrap,
            level=protocol.level,
            rng=rng,
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

    Snapshots are evaluated on fewer prompts with one sample, so their HV traces one run's
    progress; compare runs with :func:`evaluate_run`'s indicators instead.
    """
    return hypervolume(points, reference_point(objectives))


# --- KL to the base model --------------------------------------------------------------------


def kl_to_base(
    steerable, prompts: Sequence[str], texts: Sequence[str], weights
) -> tuple[np.ndarray, np.ndarray] | None:
    """Monte-Carlo KL(policy || base) of each sampled reply: (sum over its tokens, tokens).

    ``sum_t log pi(y_t | ...) - log pi_base(y_t | ...)`` on the reply's tokens (re-tokenised
    from the text), so its mean over replies sampled from the policy estimates the
    per-sequence KL, and the pooled ratio the per-token KL. The replies were sampled with top-p,
    so this is an estimate of the KL of the untruncated policy on its nucleus samples.

    Cheap for servers that run one model per preference (an adapter or a soup, a steerable with
    ``policy`` and ``choose``: one forward pass with the adapter and one without). Decoding-time
    mixtures (MOD: K models per token), prompt-conditioned and meta policies return None.

    Returns:
        ``(kl (n,), tokens (n,))`` or None when not cheap or nothing was generated.
    """
    policy = getattr(steerable, "policy", None)
    if policy is None or not hasattr(steerable, "choose") or not texts:
        return None
    import torch  # heavy: only evaluations that measure KL load it

    from morl_core.rl.losses import token_logprobs

    tok = policy.tokenizer
    rows = []
    for prompt, text in zip(prompts, texts, strict=True):
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(" " + text, add_special_tokens=False)["input_ids"] if text else []
        rows.append((p_ids, c_ids))
    w = check_weights(weights, k=len(steerable.objectives))
    model = policy.model
    model.set_adapter(steerable.choose(w))
    kl, tokens = np.zeros(len(rows)), np.zeros(len(rows))
    for start in range(0, len(rows), KL_BATCH):
        chunk = rows[start : start + KL_BATCH]
        width = max(len(c) for _, c in chunk)
        if width == 0:
            continue
        total = max(len(p) for p, _ in chunk) + width
        ids, mask, cmask = [], [], []
        for p_ids, c_ids in chunk:  # left-pad the prompt, right-pad the completion
            body = p_ids + c_ids + [policy.pad_id] * (width - len(c_ids))
            pad = total - len(body)
            ids.append([policy.pad_id] * pad + body)
            mask.append([0] * pad + [1] * (len(p_ids) + len(c_ids)) + [0] * (width - len(c_ids)))
            cmask.append([1] * len(c_ids) + [0] * (width - len(c_ids)))
        input_ids = torch.tensor(ids, device=policy.device)
        attention = torch.tensor(mask, device=policy.device)
        completion = torch.tensor(cmask, dtype=torch.float32, device=policy.device)  # (b, T)
        with torch.no_grad():
            logp, _ = token_logprobs(model, input_ids, attention, width)  # (b, T)
            with model.disable_adapter():
                ref, _ = token_logprobs(model, input_ids, attention, width)
        end = start + len(chunk)
        kl[start:end] = ((logp - ref) * completion).sum(-1).double().cpu().numpy()
        tokens[start:end] = completion.sum(-1).double().cpu().numpy()
    if tokens.sum() == 0:
        return None
    return kl, tokens


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
    samples: int | None = None,
    max_new_tokens: int | None = None,
    base: bool = False,
) -> dict[str, Any]:
    """Front points of ``steerable`` at each preference, on ``prompts``, under ``protocol``.

    ``seed`` / ``samples`` / ``max_new_tokens`` override the protocol (the in-training
    snapshots use one sample and no KL: pass them without a protocol). ``base`` marks the base
    model, whose KL to itself is 0 without measuring.

    Returns:
        {"objectives", "preferences" (P, K), "points" (P, K) mean rewards, "stderr" (P, K),
        "prompt_sums" / "prompt_counts" (P, N, K) per-prompt sums and counts of scored samples
        (the bootstrap's input), "kl_per_token" / "kl_per_sequence" (P,) or None each,
        "examples": one (prompt, completion) per preference, "distinct1" / "distinct2" (P,)}.
    """
    from morl_core.rl.trainer import distinct_n  # imports torch; reading fronts stays light

    if protocol is None:
        protocol = dataclasses.replace(
            EvalProtocol(kl=False, bootstrap=0),
            **{
                key: value
                for key, value in (
                    ("seed", seed),
                    ("samples", samples),
                    ("max_new_tokens", max_new_tokens),
                )
                if value is not None
            },
        )
    preferences = np.atleast_2d(np.asarray(preferences, dtype=float))
    prompts = list(prompts)
    n, k = len(prompts), len(objectives)
    points, errors, examples, distinct1, distinct2 = [], [], [], [], []
    sums, counts, kl_token, kl_sequence = [], [], [], []
    for w in preferences:
        check_weights(w, k=k)
        texts, asked = [], []
        for s in range(protocol.samples):  # common random numbers: the seed ignores w
            texts += steerable.generate(
                prompts, list(w), seed=protocol.seed + s, **protocol.decoding()
            )
            asked += prompts
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
        if base:
            kl_token.append(0.0)
            kl_sequence.append(0.0)
            continue
        kl = kl_to_base(steerable, asked, texts, w) if protocol.kl else None
        kl_token.append(None if kl is None else float(kl[0].sum() / kl[1].sum()))
        kl_sequence.append(None if kl is None else float(kl[0].mean()))
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
        ``protocol`` (:meth:`EvalProtocol.to_dict`), ``protocol_version`` and
        ``eval_seconds`` (wall seconds of generating and scoring).
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
    front["indicators"] = front_indicators(front, ref, protocol)
    front["protocol"] = protocol.to_dict()
    front["protocol_version"] = protocol.version
    front["eval_seconds"] = seconds
    front["replies"] = len(preferences) * len(prompts) * protocol.samples
    return front


def evaluate_run(
    run_dir: Path,
    method: str | None = None,
    device: str = "auto",
    protocol: EvalProtocol | None = None,
) -> dict[str, Any]:
    """Evaluate a finished run folder, served by ``method`` (default: its own), under the protocol.

    Reads the run's ``config.json`` (objectives, prompt set, preferences) and ``metrics.jsonl``
    (learned ranges for the reference point); writes nothing.

    Returns:
        The :func:`evaluate_steerable` dict plus ``method``.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    steerable = get(method or config.method).load(run_dir, device=device)
    front = evaluate_steerable(
        steerable,
        config.objectives,
        config.prompt_set,
        config.n_preferences,
        protocol=protocol,
        records=read_metrics(run_dir)[0],
    )
    front["method"] = method or config.method
    front["passes_per_token"] = int(getattr(steerable, "passes_per_token", 1))
    front["models_kept"] = int(getattr(steerable, "models_kept", 1))
    return front


def evaluate_base(
    objectives: Sequence[str],
    model: str = "embedded",
    prompt_set: str = "default",
    n_preferences: int = 5,
    device: str = "auto",
    protocol: EvalProtocol | None = None,
) -> dict[str, Any]:
    """The base model (no adapter) under the same protocol: the reference row of a comparison.

    Its KL to itself is 0; its points are the same at every preference (common random numbers).
    """
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
