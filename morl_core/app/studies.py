"""The Relations, Benchmark and Learn pages' library calls.

* relation studies: sample generations, score them, correlate objectives (with bootstrap CIs),
  label pairs and fit the dependency graph; gradient conflict computed on demand;
* benchmark records (written by ``morl bench``) and a table of evaluated runs;
* the taxonomy from the method registry, each method's real source, and the scalarisation
  tour (why linear scalarisation misses the non-convex part of a front).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morl_core.app.fronts import front_indicators
from morl_core.app.serving import (
    STEER_DECODING,
    ArtifactInfo,
    Progress,
    SharedSteerable,
    noop,
    score_texts,
    ui_threads,
)

# --- Relations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelationSamples:
    """Generations on a prompt set and their per-sample rewards (the input of every relation)."""

    objectives: tuple[str, ...]
    prompts: list[str]
    texts: list[str]
    rewards: np.ndarray  # (N, K)
    source: str


def relation_samples(
    shared: SharedSteerable,
    objective_names: Sequence[str],
    *,
    prompt_set: str = "default",
    n_prompts: int = 16,
    samples: int = 4,
    seed: int = 0,
    progress: Progress | None = None,
) -> RelationSamples:
    """Sample generations and score them on every objective.

    Generations come from ``shared``: the base model, or a trained artifact, whose samples are
    then spread over preferences so its whole front is represented.

    Raises:
        ValueError: fewer than two objectives, or an unknown prompt set.
    """
    from morl_core.methods.evaluate import preference_grid
    from morl_core.prompts import load_prompts

    progress = progress or noop
    names = list(objective_names)
    if len(names) < 2:
        raise ValueError("objectives: pick at least two")
    prompts = load_prompts(prompt_set, "eval")[:n_prompts]
    k_art = len(shared.objectives)
    prefs = preference_grid(k_art, max(samples, k_art)) if k_art >= 2 else np.zeros((1, 0))
    texts, asked = [], []
    for s in range(samples):
        progress(f"generating sample {s + 1} of {samples} for {len(prompts)} prompts", s / samples)
        w = prefs[s % len(prefs)].tolist()
        out, _ = shared.generate(prompts, w, seed=seed + s, **STEER_DECODING)
        texts += out
        asked += prompts
    progress("scoring every objective", 0.9)
    rewards = score_texts(names, asked, texts)  # (N, K)
    progress("done", 1.0)
    source = "base model" if shared.run_dir is None else f"{shared.method} ({shared.run_dir.name})"
    return RelationSamples(tuple(names), asked, texts, rewards, source)


@dataclass(frozen=True)
class Relations:
    """Correlations with bootstrap intervals, labelled pairs and the dependency graph."""

    correlations: Any  # relations.CorrelationResult
    pairs: list  # relations.PairRelation
    edges: list  # relations.Edge
    graph_note: str

    def pair_rows(self) -> list[dict[str, Any]]:
        """One row per pair: names, coefficient, interval, label and why."""
        return [
            {
                "pair": f"{p.first} - {p.second}",
                "relation": p.label,
                "rho": round(p.coefficient, 3),
                "CI": f"[{p.lower:.2f}, {p.upper:.2f}]",
                "why": p.reason,
            }
            for p in self.pairs
        ]


def whose_samples_note(source: str) -> str:
    """Why the same pair can be "independent" here and "conflicting" elsewhere."""
    return (
        f"These relations are measured on samples from **{source}**. They describe those "
        "samples, not the objectives in general: a trained policy moves its samples along the "
        "trade-off, so a pair that looks independent on the base model's replies can conflict "
        "on a trained model's (and the README's classes are measured on the base model). "
        "Pick another source above to compare."
    )


def relate(
    data: RelationSamples, method: str = "spearman", seed: int = 0, n_boot: int = 500
) -> Relations:
    """Correlate the objectives of ``data`` (Pearson or Spearman), label pairs, fit the graph.

    Raises:
        ValueError: an objective is constant over the samples (its correlation is undefined).
    """
    from morl_core.relations import classify_relations, dependency_graph

    flat = [n for n, col in zip(data.objectives, data.rewards.T, strict=True) if np.ptp(col) == 0]
    if flat:
        raise ValueError(
            f"{', '.join(flat)} scored the same on every sample, so its correlation is undefined;"
            " use more prompts or samples, or drop it"
        )
    rng = np.random.default_rng(seed)
    result, pairs = classify_relations(
        data.rewards, rng, list(data.objectives), method=method, n_boot=n_boot
    )
    try:
        edges, note = dependency_graph(data.rewards, list(data.objectives)), ""
    except ValueError as exc:
        edges, note = [], f"no dependency graph: {exc}"
    return Relations(result, pairs, edges, note)


def gradient_conflict_study(
    objective_names: Sequence[str],
    *,
    prompt_set: str = "default",
    batches: int = 3,
    batch_prompts: int = 4,
    k_samples: int = 4,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine matrix of per-objective policy gradients at the base model, averaged over batches.

    A fresh LoRA adapter (rank 8, all linear layers) sits on the embedded model; for each batch
    one rollout is scored on every objective and the REINFORCE gradient of each objective alone
    (RLOO baseline, as in training) is taken with respect to the adapter. Cheap on the embedded
    model: one rollout and K backward passes per batch.

    Returns:
        ``(cosine (K, K), mean gradient norms (K,))``.
    """
    import torch

    from morl_core.policy import attach_lora, load_policy, set_threads
    from morl_core.prompts import load_prompts
    from morl_core.relations import gradient_conflict
    from morl_core.rl.losses import group_advantages, token_logprobs

    progress = progress or noop
    names = list(objective_names)
    set_threads(ui_threads())
    torch.manual_seed(seed)
    policy = attach_lora(load_policy("embedded", device="cpu"), r=8, alpha=32)
    params = [p for n, p in policy.model.named_parameters() if p.requires_grad]
    prompts = load_prompts(prompt_set, "train")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    cosines, norms = [], []
    for b in range(batches):
        progress(f"batch {b + 1} of {batches}: rollout and {len(names)} gradients", b / batches)
        batch = list(rng.choice(prompts, size=batch_prompts, replace=False))
        rollout = policy.rollout(
            batch, n=k_samples, max_new_tokens=24, temperature=1.0, generator=generator
        )
        texts = policy.decode(rollout.completion_ids, rollout.completion_mask)
        rewards = score_texts(names, [p for p in batch for _ in range(k_samples)], texts)
        n_tok = rollout.completion_mask.shape[1]
        grads = []
        for i in range(len(names)):
            adv = group_advantages(torch.as_tensor(rewards[:, i], dtype=torch.float32), k_samples)
            logp, _ = token_logprobs(policy.model, rollout.input_ids, rollout.attention_mask, n_tok)
            mask = rollout.completion_mask.float()
            loss = -(adv * (logp * mask).sum(-1)).mean()
            policy.model.zero_grad(set_to_none=True)
            loss.backward()
            grads.append(
                torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                           for p in params]).numpy()
            )  # fmt: skip
        g = np.stack(grads)  # (K, D)
        cosines.append(gradient_conflict(g))
        norms.append(np.linalg.norm(g, axis=1))
    progress("done", 1.0)
    return np.nanmean(np.stack(cosines), axis=0), np.mean(np.stack(norms), axis=0)


# --- Benchmark -------------------------------------------------------------------------------

BENCH_OUT_ENV = "MORL_BENCH_OUT"
BENCH_HOWTO = (
    "Records come from `morl bench SUITE` (suite x methods x seeds through the job system, one "
    "record per run, written under the data folder's `bench/SUITE/records/`, or "
    "`$MORL_BENCH_OUT`). Start one below or on the command line, then "
    "`morl leaderboard` writes the same table as CSV/Markdown."
)


def bench_available() -> bool:
    """Whether ``morl_core.bench`` (the suite runner) is installed."""
    return importlib.util.find_spec("morl_core.bench") is not None


def bench_out() -> Path:
    """Where benchmark records go: ``$MORL_BENCH_OUT`` or the data folder's ``bench`` (the app
    never writes into the repository)."""
    from morl_core.app.serving import data_dir

    return Path(os.environ.get(BENCH_OUT_ENV) or data_dir() / "bench")


PUBLISHED = Path(__file__).resolve().parents[2] / "assets" / "leaderboard" / "findings.json"
DEFAULT_RUN_SECONDS = 90.0  # per run, when the published table has no time for a method
SUITE_TITLES = {"conflicting": "Conflicting pair", "independent": "Independent pair",
                "correlated": "Correlated pair"}  # fmt: skip


def published_leaderboard() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The leaderboard of ``docs/findings.md``, shipped as data: ``(about, display rows)``.

    HV is only compared within a suite (a 2- and a 3-objective hypervolume are different
    quantities), so the rows carry their suite and objectives.
    """
    try:
        data = json.loads(PUBLISHED.read_text())
    except (OSError, ValueError):
        return {}, []
    rows = []
    for r in data.get("rows", []):
        hv = f"{r['hypervolume_mean']:.3f}"
        if r.get("hypervolume_std") is not None:
            hv += f" ± {r['hypervolume_std']:.3f}"
        rows.append({
            "suite": SUITE_TITLES.get(r["suite"], r["suite"]),
            "objectives": " vs ".join(r["objectives"]),
            "method": r["method"], "seeds": r["seeds"], "HV": hv,
            "EU": r.get("expected_utility_mean"), "training samples": r.get("training_samples"),
            "wall s": r.get("wall_seconds"), "models kept": r.get("models_kept"),
        })  # fmt: skip
    about = {k: data.get(k) for k in ("source", "date", "setting")}
    return about, rows


@dataclass(frozen=True)
class SuitePlan:
    """What starting a suite will do: how many runs and roughly how long."""

    suite: str
    runs: int
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    seconds: float

    def describe(self) -> str:
        """``24 runs (8 methods x 3 seeds), about 40 min on this kind of machine``."""
        return (f"{self.runs} runs ({len(self.methods)} methods x {len(self.seeds)} seeds), "
                f"about {self.seconds / 60:.0f} min (from the published runs' wall time)")  # fmt: skip


def plan_suite(suite: str) -> SuitePlan:
    """Count the runs of ``suite`` and estimate their time from the published wall seconds.

    Raises:
        ValueError: unknown suite.
    """
    from morl_core.bench import load_suite

    spec = load_suite(suite)
    _, rows = published_leaderboard()
    wall = {r["method"]: r["wall s"] for r in rows if r.get("wall s")}
    per_seed = sum(wall.get(m, DEFAULT_RUN_SECONDS) for m in spec.methods)
    return SuitePlan(spec.name, len(spec.methods) * len(spec.seeds), tuple(spec.methods),
                     tuple(spec.seeds), per_seed * len(spec.seeds))  # fmt: skip


def stop_suite(pid: int) -> bool:
    """Stop a suite process started by :func:`start_suite` (its runs already queued finish or
    can be cancelled on the Train page); False when it had already ended."""
    import signal

    try:
        os.killpg(int(pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def benchmark_records(out: Path | str | None = None) -> list[dict[str, Any]]:
    """Every benchmark record under ``out`` (default :func:`bench_out`); [] when there are none."""
    if not bench_available():
        return []
    from morl_core.bench import read_records

    try:
        return read_records(Path(out or bench_out()))
    except (OSError, ValueError):
        return []


@dataclass(frozen=True)
class Leaderboard:
    """The benchmark page's content: records, the aggregated table and its figures."""

    records: list[dict[str, Any]]
    table: Any  # pandas DataFrame, one row per (suite, method)
    figures: dict[str, Any]  # name -> plotly Figure

    def display_table(self, metrics: Sequence[str] = ("hypervolume", "expected_utility",
                      "igd_plus", "training_samples", "wall_seconds", "models_kept")):  # fmt: skip
        """``mean ± std`` columns for the shown metrics (the table is per suite and method)."""
        rows = []
        for _, row in self.table.iterrows():
            out = {"suite": row["suite"], "method": row["method"], "seeds": row["seeds"],
                   "failed": row["failed"]}  # fmt: skip
            for m in metrics:
                mean, std = row.get(f"{m}_mean"), row.get(f"{m}_std")
                ok = isinstance(mean, float) and math.isfinite(mean)
                out[m] = f"{mean:.4g} ± {std:.2g}" if ok else "n/a"
            rows.append(out)
        return rows


def leaderboard(records: list[dict[str, Any]]) -> Leaderboard:
    """Aggregate records (mean ± std over seeds) and build the benchmark figures."""
    from morl_core.bench import aggregate
    from morl_core.bench.figures import all_figures

    table = aggregate(records)
    return Leaderboard(records, table, all_figures(records, table))


def bench_suites() -> list[str]:
    """Suite names shipped in ``benchmarks/suites``."""
    from morl_core.bench import available

    return available()


def start_suite(suite: str, out: Path | str | None = None) -> tuple[int, Path]:
    """Start ``morl bench SUITE`` as a detached process (it outlives the page); returns
    ``(pid, log file)``. The runs it submits appear on the Train page as they go.

    Raises:
        ValueError: unknown suite.
    """
    import subprocess
    import sys

    from morl_core.bench import load_suite

    name = load_suite(suite).name
    out = Path(out or bench_out())
    log = out / f"{name}.bench.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "morl_core.cli", "bench", suite, "--out", str(out)],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    return proc.pid, log


def evaluated_runs_table(artifacts: Sequence[ArtifactInfo]) -> list[dict[str, Any]]:
    """One row per artifact whose front was evaluated (``front.json``): method and indicators."""
    rows = []
    for info in artifacts:
        path = info.run_dir / "front.json"
        if not path.exists():
            continue
        front = json.loads(path.read_text())
        ind = front.get("indicators") or front_indicators(front)
        rows.append(
            {
                "artifact": info.label,
                "method": front.get("method", info.method),
                # bars group by method *and* objective set: HVs of 2 and 3 objectives differ
                "front": f"{front.get('method', info.method)} · {', '.join(info.objectives)}",
                "objectives": ", ".join(info.objectives),
                "hypervolume": ind.get("hypervolume"),
                "expected_utility": ind.get("expected_utility"),
                "sparsity": ind.get("sparsity"),
                "cardinality": ind.get("cardinality"),
            }
        )
    return rows


# --- Learn -----------------------------------------------------------------------------------

# From shared/MORL.md's taxonomy: what each family trains and when the preference applies.
FAMILY_FACTS = {
    "A": ("one per preference", "at training"),
    "B": ("one", "at training (weights move)"),
    "C": ("one", "at inference (w is an input)"),
    "D1": ("K experts, served as one", "at inference, 1 pass per token"),
    "D2": ("K experts", "at inference, K passes per token"),
    "D3": ("K experts + shared head", "at inference, weights found by grid search"),
    "E": ("K experts + a meta-policy", "at inference, learned combination"),
}


# One equation per family (LaTeX), after shared/MORL.md; r_i in [0, 1], w on the simplex.
FAMILY_EQUATIONS = {
    "A": r"\max_\theta\; \mathbb{E}_{y\sim\pi_\theta}\big[f_w(r_1,\dots,r_K)\big]"
    r" - \beta\,\mathrm{KL}(\pi_\theta\,\|\,\pi_{\mathrm{ref}}),\quad"
    r" f_w \in \{\textstyle\sum_i w_i r_i,\ \sum_i w_i\log r_i,\ -\max_i w_i|z^*_i - r_i|\}",
    "B": r"w_t \leftarrow \mathrm{Exp3}(w_{t-1},\ \bar r - \bar r_a)\ \text{every few steps},\quad"
    r" \max_\theta \mathbb{E}\big[\textstyle\sum_i w_{t,i} r_i\big]",
    "C": r"\pi_\theta(y \mid x, w):\ \text{one policy, the preference is an input}",
    "D1": r"\theta(w) = \theta_0 + \textstyle\sum_i w_i\,\Delta\theta_i",
    "D2": r"\log \pi_w(y_t\mid x, y_{<t}) = \textstyle\sum_i w_i \log \pi_i(y_t\mid x, y_{<t})"
    r" - \log Z",
    "D3": r"h(w) = \textstyle\sum_i w_i\, h_i(x, y_{<t}),\quad"
    r" \pi_w(y_t) = \mathrm{softmax}(W_{\mathrm{head}}\, h(w))",
    "E": r"\alpha = g_\phi(w, x),\quad \pi_{w}(y\mid x) = \mathrm{combine}_\alpha"
    r"(\pi_1, \dots, \pi_K),\quad \max_\phi \mathbb{E}_w\big[w^\top r\big]",
}


# Methods whose maths differs from their family's equation, and what a reader must not miss.
METHOD_EQUATIONS = {
    "pmix": r"\pi_w(y_t\mid x, y_{<t}) = \textstyle\sum_i w_i\, \pi_i(y_t\mid x, y_{<t})",
}
METHOD_NOTES = {
    "emorl": (
        "EMORL's default mixing (after the final layer norm, with the shared bias-free linear "
        "head) is exactly MOD with weights a/sum(a) at temperature 1/sum(a), as in the EMORL "
        "authors' own code: D3 here is D2's geometric mixture up to temperature. The paper's "
        "token-level baseline is the arithmetic mixture sum_i w_i p_i (method `pmix`), and "
        "`mix_at=pre_norm` mixes before the final norm, a genuinely different level."
    ),
    "pmix": (
        "The arithmetic mixture of the experts' next-token probabilities: EMORL's token-level "
        "baseline. MOD (`mod`) is the geometric mixture; the two differ most at middle weights."
    ),
}


def method_equation(name: str, family: str) -> str | None:
    """The LaTeX equation to show for a method: its own, else its family's."""
    return METHOD_EQUATIONS.get(name, FAMILY_EQUATIONS.get(family))


def taxonomy() -> list[dict[str, str]]:
    """One row per registered method (taxonomy order): family, idea, cost, paper."""
    from morl_core.methods import METHODS
    from morl_core.methods.base import FAMILIES

    rows = []
    order = list(FAMILIES)
    specs = sorted(METHODS.items(), key=lambda item: order.index(item[1].family))
    for name, spec in specs:
        trained, applied = FAMILY_FACTS.get(spec.family, ("", ""))
        rows.append(
            {
                "family": f"{spec.family}. {FAMILIES.get(spec.family, '')}",
                "method": name,
                "idea": spec.summary,
                "models trained": trained,
                "preference applied": applied,
                "paper": spec.paper,
            }
        )
    return rows


def method_source(name: str) -> tuple[str, str]:
    """``(module docstring, full source)`` of a method's file, read from the installed module.

    The file is located with ``importlib.util.find_spec`` and read as is (what
    ``inspect.getsource`` returns for the module) without importing it, so the page does not
    load torch just to show code.
    """
    from morl_core.methods import get

    spec = importlib.util.find_spec(get(name).module)
    if spec is None or not spec.origin:
        raise ValueError(f"cannot locate the source of method {name!r}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    return ast.get_docstring(ast.parse(source)) or "", source


@dataclass(frozen=True)
class ScalarisationTour:
    """Which points of a non-convex front each scalarisation can reach."""

    objectives: tuple[str, str]
    front: np.ndarray  # (n, 2) the true front
    weights: np.ndarray  # (m, 2) swept preferences
    linear: np.ndarray  # (m,) index of the front point linear scalarisation picks per weight
    tchebycheff: np.ndarray  # (m,) the same for Tchebycheff


def scalarisation_tour(n_weights: int = 41) -> ScalarisationTour:
    """Sweep preferences over a known non-convex front and record each scalarisation's pick.

    The front is the analytic one of ``synth_nature_nonconvex`` vs ``synth_city_nonconvex``
    (``sqrt(x) + sqrt(y) = 1``). A linear utility ``w . r`` is maximised at a corner for every
    w (its level lines touch a non-convex curve only at the ends); Tchebycheff's
    ``-max_i w_i |z*_i - r_i|`` finds the point where the ray towards the ideal point meets the
    front, so it walks along the whole curve.
    """
    from morl_core.objectives import true_front
    from morl_core.scalarize import scalarize

    names = ("synth_nature_nonconvex", "synth_city_nonconvex")
    front = true_front(*names, n=101)  # (n, 2)
    t = np.linspace(0.0, 1.0, n_weights)
    weights = np.stack([t, 1.0 - t], axis=1)
    linear = np.array([int(np.argmax(scalarize(front, w, "linear"))) for w in weights])
    tcheb = np.array(
        [int(np.argmax(scalarize(front, w, "tchebycheff", utopia=np.ones(2)))) for w in weights]
    )
    return ScalarisationTour(names, front, weights, linear, tcheb)
