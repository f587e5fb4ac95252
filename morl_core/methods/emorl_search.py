"""EMORL's coefficient search: a*(w) for each preference, scored on sampled replies.

The search of :mod:`morl_core.methods.emorl` (its docstring states the objective): a
hierarchical grid search (:func:`morl_core.search.hierarchical_grid_search`) over coefficient
vectors a, each candidate decoded on the same rows with the same seeds (common random numbers)
and scored by the run's objectives, KL to the base model and fluency guard. Every scored
candidate is saved as it is scored, so a search cut short resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from morl_core import objectives as objective_registry
from morl_core.config import RunConfig
from morl_core.evaluation import EVAL_DECODING
from morl_core.kl import generate_with_kl
from morl_core.methods import METHODS
from morl_core.methods.base import check_stop
from morl_core.objectives.degeneration import guarded_fluency
from morl_core.runfolder import read_json, write_json_atomic
from morl_core.search import hierarchical_grid_search

SEARCH_SEED = 4242  # fixed: the search is reproducible (common random numbers across candidates)
# rows decoded at once by the search: a batch's key-value caches are K models' (on SmolLM2 about
# 4 MB per row and model), and one batch of a round's 27 candidates x 128 replies on the triple
# held 21 GB and was killed by the kernel
SEARCH_ROWS = 256


def sample_replies(
    steerable: Any,  # an Emorl (methods/emorl.py imports this module)
    prompts: list[str],
    coefficients: np.ndarray,
    decoding: dict[str, Any],
    with_kl: bool,
) -> tuple[list[str], np.ndarray | None]:
    """The search's replies for coefficient rows (len(prompts), K), and with ``with_kl`` each
    reply's KL_seq to the base model (n,), from the log-probs recorded while sampling.

    Decoded ``SEARCH_ROWS`` rows at a time (memory stays bounded however many replies a
    candidate asks for), the i-th batch seeded ``SEARCH_SEED + i``: the replies depend on the
    rows alone, not on what was decoded before them.
    """
    texts, kls = [], []
    for i, start in enumerate(range(0, len(prompts), SEARCH_ROWS)):
        rows = slice(start, start + SEARCH_ROWS)
        gen = {"seed": SEARCH_SEED + i, **decoding}
        if not with_kl:
            texts += steerable.decode(prompts[rows], coefficients[rows], **gen)
            continue
        # generate_with_kl asks for generate(prompts, weights): here "weights" are rows of a
        fixed = SimpleNamespace(policy=steerable.policy, generate=steerable.decode)
        batch, measured = generate_with_kl(fixed, prompts[rows], coefficients[rows], **gen)
        if measured is None:  # EMORL samples through Policy.rollout at a positive temperature
            raise RuntimeError(
                "the EMORL search could not measure the replies' KL to the base model"
            )
        texts += batch
        kls.append(measured[0])
    return texts, (np.concatenate(kls) if with_kl else None)


def search_table(
    steerable: Any,  # an Emorl (methods/emorl.py imports this module)
    config: RunConfig,
    preferences: np.ndarray,
    prompts: list[str],
    rounds: int,
    objective: str = "reward_kl",
    replies: int | None = None,
    saved: Path | None = None,
    guard: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Hierarchical grid search of a*(w) for each preference; returns the table and its cost.

    ``objective`` (option ``search_objective``): ``"reward_kl"`` scores a candidate a by the mean
    of w . r - kl_coef * KL_seq over its replies, ``"reward"`` by the mean of w . r alone; both
    less the run's fluency penalty (``fluency_penalty`` x the share of replies its
    ``fluency_guard`` fails), as in training: without it, a mixture writing made-up words that a
    scorer likes ("Zomhool!" is short) can win a preference the experts were trained away from.
    ``"reward"`` samples as the evaluation does, ``"reward_kl"`` as the experts were trained
    (the run's ``max_new_tokens``, ``temperature`` and ``top_p``): that objective is defined on
    the untruncated policy, with ``kl_coef`` in nats per completion of the run's length. On the
    known-answer problem (one-token replies) the evaluation's 24-token replies priced
    continuations the experts were never trained on, and its top-p 0.9 truncation hid the tail
    the KL is about; both moved the search off a = w. Both decode each candidate on its own with
    the same seed (common random numbers: row j draws the same uniforms for every a), so that
    nearby candidates are compared on coupled replies, ``SEARCH_ROWS`` rows at a time (the
    paper's search once decoded a round's candidates in one batch, which on SmolLM2's triple
    outgrew the machine's memory).

    ``replies`` (option ``search_replies``; None: its default) replies are sampled per prompt
    and candidate, prompt-major, each its own draw. Coupling alone did not stop the winner's
    curse: on ~8 replies per candidate the grid's maximum is a lucky draw. On the known-answer
    benchmark's experts (60 steps, 5 rounds, search seeds 4242, 1, 2, 3) the exact rate error
    of the chosen a at w = (1, 0), (0.5, 0.5), (0, 1) averaged 0.10, 0.13, 0.19 with 1 reply,
    0.04, 0.10, 0.03 with 8 and 0.02, 0.04, 0.03 with 16 (a = w: 0.01, 0.02, 0.02); each
    reply is a scored sample, so the search's cost grows in proportion. Each table row records
    the chosen candidate's mean objective vector and, when measured, its mean KL_seq.

    ``guard`` (option ``search_guard``; 0: off, the paper's search) keeps a = w, the mixture
    soups and MOD serve, unless the best candidate beats it by ``guard`` standard errors of the
    paired per-reply difference of their scores (the replies are coupled, so the pair is tight):
    a grid's maximum over noisy means is biased upwards, and on SmolLM2's pair the paper's
    search served the readability end with a = (0.5, 0.75) because it scored 0.002 above the
    readability expert alone (0.583 vs 0.581 on 128 replies), which made the ends of its front
    hard to tell apart. a = w is scored (and counted) like any candidate; the table records the
    best's gain over it, the gain's standard error and whether a = w was kept.

    ``saved`` (a JSON file): every scored candidate is written there as soon as it is scored
    (one candidate at a time, each reply's scores), with the search's settings
    and its seconds so far. A search cut short and called again with the same settings scores
    only the candidates missing; as a candidate's replies do not depend on what was scored
    before it, the table and cost come out as an uninterrupted search's (seconds included, up
    to the lost candidate). On SmolLM2 a 16-reply search takes hours; without this a session's end
    restarted it from nothing.
    """
    options = METHODS["emorl"].options
    choices = options["search_objective"].choices
    if objective not in choices:
        raise ValueError(f"objective must be one of {', '.join(choices)}, got {objective!r}")
    replies = options["search_replies"].default if replies is None else replies
    problem = options["search_replies"].error(replies)
    if problem:
        raise ValueError(f"replies (option search_replies) {problem}")
    problem = options["search_guard"].error(guard)
    if problem:
        raise ValueError(f"guard (option search_guard) {problem}")
    with_kl = objective == "reward_kl"
    beta = config.kl_coef if with_kl else 0.0
    decoding = {key: getattr(config, key) for key in EVAL_DECODING} if with_kl else EVAL_DECODING
    k = len(config.objectives)
    mix_at = getattr(steerable, "mix_at", "final")
    repeated = [q for q in prompts for _ in range(replies)]  # each prompt ``replies`` times
    settings = json.loads(  # what a saved candidate's scores depend on (JSON, to compare)
        json.dumps(
            dict(
                objectives=list(config.objectives),
                objective=objective,
                kl_coef=beta,
                fluency_penalty=config.fluency_penalty,
                fluency_guard=config.fluency_guard,
                decoding=dict(decoding),
                prompts=list(prompts),
                replies=replies,
                seed=SEARCH_SEED,
                rows=SEARCH_ROWS,  # one seed per batch of rows
                scores="per reply",  # files of mean scores (before the guard) are not resumed
                mix_at=mix_at,  # before the norm a candidate stands for its direction
            )
        )
    )
    # a -> each reply's (r (R, K), KL_seq (R,), fluency guard's gate (R,))
    cache, seconds_before = load_candidates(saved, settings)
    start = time.perf_counter() - seconds_before

    def save() -> None:
        if saved is not None:
            rows = [
                {"a": list(a), "rewards": r.tolist(), "kl": kl.tolist(), "fluent": fluent.tolist()}
                for a, (r, kl, fluent) in cache.items()
            ]
            elapsed = time.perf_counter() - start
            # atomic without fsync: after a crash the file is whole or one candidate behind
            data = {"settings": settings, "seconds": elapsed, "rows": rows}
            write_json_atomic(saved, data, fsync=False)

    def scored(a: tuple[float, ...], texts: list[str], kl: np.ndarray | None) -> None:
        """Score candidate ``a``'s replies (one per row of ``repeated``), cache and save it."""
        rewards = objective_registry.score(list(config.objectives), repeated, texts)  # (R, K)
        kl = np.zeros(len(texts)) if kl is None else np.asarray(kl, dtype=float)
        fluent = np.asarray(guarded_fluency(texts, config.fluency_guard), dtype=float)
        cache[a] = (np.asarray(rewards, dtype=float), kl, fluent)
        save()

    def key(a) -> tuple[float, ...]:
        """The candidate decoded for ``a``: before the final norm only a's direction matters,
        so there a is scaled to a largest coefficient of 1 (a = 0 stays 0) and each direction
        is scored once (on SmolLM2's pair 63 of the 88 candidates the grid asked for)."""
        a = np.asarray(a, dtype=float)
        if mix_at == "pre_norm" and a.max() > 0:
            a = a / a.max()
        return tuple(np.round(a, 9).tolist())

    def measured(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, K) candidates -> their mean rewards (n, K), mean KL (n,), fluent share (n,)."""
        # common random numbers: row j draws the same uniforms for every a
        for p in map(key, points):  # one candidate at a time, each saved once scored
            if p in cache:
                continue
            check_stop()  # a cancelled or preempted run stops here; it resumes from `saved`
            rows = np.tile(p, (len(repeated), 1))
            scored(p, *sample_replies(steerable, repeated, rows, decoding, with_kl))
        found = [means(p) for p in map(key, points)]
        rewards, kls, fluent = zip(*found, strict=True)
        return np.stack(rewards), np.asarray(kls), np.asarray(fluent)

    def means(a: tuple[float, ...]) -> tuple[np.ndarray, float, float]:
        rewards, kl, fluent = cache[a]
        return rewards.mean(0), float(kl.mean()), float(fluent.mean())

    def objective_of(rewards: np.ndarray, kl: np.ndarray, fluent: np.ndarray, w: np.ndarray):
        """w . r - penalty (1 - fluency) - beta KL_seq, row by row: of each reply or mean."""
        return rewards @ w - config.fluency_penalty * (1.0 - fluent) - beta * kl

    def score(points: np.ndarray, w: np.ndarray) -> np.ndarray:  # (n, K) -> (n,)
        return objective_of(*measured(points), w)  # the mean over a candidate's replies

    def per_reply(a: tuple[float, ...], w: np.ndarray) -> np.ndarray:  # (R,) scores of a
        return objective_of(*cache[a], w)

    table, requested = [], 0
    for w in preferences:
        result = hierarchical_grid_search(lambda pts, w=w: score(pts, w), k, rounds=rounds)
        requested += result.evaluations
        best, value, guarded = key(result.best), result.value, {}
        if guard > 0:
            at_w = key(w)
            value_at_w = float(score(np.asarray([at_w]), w)[0])  # scored if the grid missed it
            requested += at_w not in set(map(key, result.points))
            gain = per_reply(best, w) - per_reply(at_w, w)  # paired: the same rows
            se = float(gain.std(ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else np.inf
            kept = not gain.mean() > guard * se
            guarded = {"gain_over_w": float(gain.mean()), "gain_se": se, "kept_w": kept}
            if kept:
                best, value = at_w, value_at_w
        rewards, kl, fluent = means(best)
        row = dict(preference=w.tolist(), coefficients=list(best), value=value)
        row |= {"objectives": rewards.tolist(), "fluency": fluent, **guarded}
        table.append({**row, **({"kl": kl} if with_kl else {})})
    cost = {
        "objective": objective,
        "kl_coef": beta,  # 0: the KL term is not part of the score
        "fluency_penalty": config.fluency_penalty,
        "fluency_guard": config.fluency_guard,
        "decoding": dict(decoding),
        "seconds": time.perf_counter() - start,
        "evaluations": len(cache),  # distinct coefficient vectors decoded and scored
        "evaluations_requested": requested,  # without sharing between preferences
        "samples": len(cache) * len(repeated),  # prompt-completion pairs scored by the search
        "prompts": len(prompts),
        "replies": replies,  # per prompt and candidate
        "rounds": rounds,
        "guard": guard,  # standard errors the best must beat a = w by (0: the best is taken)
    }
    return table, cost


def load_candidates(
    saved: Path | None, settings: dict[str, Any]
) -> tuple[dict[tuple[float, ...], tuple[np.ndarray, np.ndarray, np.ndarray]], float]:
    """The candidates a search with ``settings`` already scored into ``saved`` (a -> each
    reply's (r, KL_seq, fluency gate)) and its seconds so far; nothing from a missing or
    unreadable file, or one written under other settings."""
    try:
        data = read_json(saved) if saved is not None else None
    except (OSError, ValueError):  # unreadable: score every candidate again
        data = None
    if not isinstance(data, dict) or data.get("settings") != settings:
        return {}, 0.0
    try:
        cache = {
            tuple(float(x) for x in row["a"]): (
                np.asarray(row["rewards"], dtype=float),
                np.asarray(row["kl"], dtype=float),
                np.asarray(row["fluent"], dtype=float),
            )
            for row in data["rows"]
        }
        return cache, float(data["seconds"])
    except (KeyError, TypeError, ValueError):
        return {}, 0.0


def search_metrics(cost: dict[str, Any]) -> dict[str, float]:
    """The search's cost as step metrics (flat name -> float)."""
    return {
        "search/samples": float(cost["samples"]),
        "search/evaluations": float(cost["evaluations"]),
    }
