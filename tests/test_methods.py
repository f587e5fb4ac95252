"""Registry smoke tests on the embedded model, and the non-convex-front case on the RL core.

Every registered method (the loop is over ``METHODS``, so methods added later are covered) trains
two steps per policy on a tiny config, and we check that its trainable parameters changed, that
the same seed gives the same metrics, that a run stopped by the callback and resumed ends exactly
like an uninterrupted one, and that its Steerable serves three preferences. Soups and MOD get
oracle tests (the expert itself, the weighted sum of LoRA deltas, a cache-free MOD decoder).

Objectives here are ``sentiment`` and ``formality``: both are continuous on 8-token replies, so
every group of samples has a non-zero advantage (``brevity`` would be 1 for every 8-token reply
and its expert would get no gradient at all).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from morl_core import objectives as objective_registry
from morl_core.config import RunConfig
from morl_core.methods import METHODS, StepInfo, get
from morl_core.methods.common import ARTIFACT
from morl_core.methods.experts import expert_names
from morl_core.methods.mod import Mod
from morl_core.methods.soups import SOUP
from morl_core.objectives.synthetic import compose_text, true_front
from morl_core.policy import load_adapter, load_policy, set_threads
from morl_core.prompts import load_prompts
from morl_core.rl.losses import group_advantages, policy_loss
from morl_core.rl.trainer import TCHEBYCHEFF_UTOPIA, RewardNormalizer
from morl_core.scalarize import scalarize

set_threads(1)

OBJECTIVES = ("sentiment", "formality")
TINY = {
    "objectives": list(OBJECTIVES),
    "steps": 2,
    "batch_prompts": 2,
    "k_samples": 2,
    "max_new_tokens": 8,
    "eval_prompts": 2,
    "n_preferences": 2,
    "eval_every": 0,
    "device": "cpu",
    "threads": 1,
    "lr": 0.01,  # large enough that two steps visibly move the tiny model's greedy replies
}
# Methods shipped in morl_core (test fixtures such as the jobs' ``stub`` register themselves
# too when their test module is imported, and cannot generate).
SHIPPED = sorted(name for name, spec in METHODS.items() if spec.module.startswith("morl_core."))
THREE_PREFERENCES = ([1.0, 0.0], [0.5, 0.5], [0.0, 1.0])
GREEDY = {"greedy": True, "max_new_tokens": 10}


# Method options that scale a method's extra work, shrunk wherever a method declares them.
TINY_OPTIONS = {"search_rounds": 1, "search_prompts": 2}


def tiny_config(method: str, **changes) -> RunConfig:
    declared = METHODS[method].options
    options = {k: v for k, v in TINY_OPTIONS.items() if k in declared}
    options.update(changes.pop("options", {}))
    return RunConfig.from_dict({**TINY, "method": method, "options": options, **changes})


def without_times(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


class OptimizerWatch:
    """Sees every torch optimiser step in the process: which tensors it owns and how they moved."""

    def __enter__(self) -> OptimizerWatch:
        self.initial: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (param, copy)
        self.steps = 0
        self._handles = [
            register_optimizer_step_pre_hook(self._before_step),
            register_optimizer_step_post_hook(self._after_step),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _before_step(self, optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            for param in group["params"]:
                if id(param) not in self.initial:
                    self.initial[id(param)] = (param, param.detach().clone())

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1

    def unchanged(self) -> int:
        return sum(torch.equal(p.detach(), p0) for p, p0 in self.initial.values())


@dataclass
class Run:
    run_dir: Path
    infos: list[StepInfo] = field(default_factory=list)
    optimizer_steps: int = 0
    optimized_tensors: int = 0
    unchanged_tensors: int = 0


def train(method: str, run_dir: Path, stop_after: int | None = None, **changes) -> Run:
    """Train ``method`` into ``run_dir``; the callback stops after step ``stop_after``."""
    run = Run(Path(run_dir))
    config = tiny_config(method, **changes)

    def callback(info: StepInfo) -> bool:
        run.infos.append(info)
        return stop_after is None or info.step < stop_after

    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    with OptimizerWatch() as watch:
        get(method).train(config, run.run_dir, callback)
    run.optimizer_steps = watch.steps
    run.optimized_tensors = len(watch.initial)
    run.unchanged_tensors = watch.unchanged()
    return run


def adapter_tensors(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Adapter folder name -> its saved tensors."""
    return {
        path.parent.name: load_file(path)
        for path in sorted((Path(run_dir) / "adapters").glob("*/adapter_model.safetensors"))
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(method)``: one uninterrupted tiny run per method, trained on first use."""
    cache: dict[str, Run] = {}

    def get_run(method: str) -> Run:
        if method not in cache:
            cache[method] = train(method, tmp_path_factory.mktemp(f"{method}-full"))
        return cache[method]

    return get_run


@pytest.fixture(scope="module")
def eval_prompts() -> list[str]:
    return load_prompts("default", "eval")[:3]


# --- every method: trains, changes its parameters, same seed -> same metrics ---


@pytest.mark.parametrize("method", SHIPPED)
def test_method_trains_two_steps_and_its_trainable_parameters_change(method, trained):
    run = trained(method)
    assert run.infos, "no step reported"
    total = run.infos[0].total_steps
    assert [i.step for i in run.infos] == list(range(1, total + 1))
    assert total % TINY["steps"] == 0  # whole policies of two steps each
    batch = TINY["batch_prompts"] * TINY["k_samples"]
    # EMORL's grid search is training cost: its scored completions join the last step's count
    searched = json.loads((run.run_dir / ARTIFACT).read_text()).get("search", {}).get("samples", 0)
    extra = [searched if i.step == total else 0 for i in run.infos]
    assert [i.samples for i in run.infos] == [
        batch * i.step + e for i, e in zip(run.infos, extra, strict=True)
    ]
    for info in run.infos:
        for name in OBJECTIVES:
            assert 0.0 <= info.metrics[f"reward/{name}"] <= 1.0
        assert math.isfinite(info.metrics["kl"]) and info.metrics["kl"] >= 0.0

    assert run.optimizer_steps > 0
    assert run.optimized_tensors > 0
    assert run.unchanged_tensors == 0, (
        f"{run.unchanged_tensors} of {run.optimized_tensors} optimised tensors never changed"
    )
    saved = adapter_tensors(run.run_dir)
    assert saved, "no adapter saved under adapters/"
    for name, tensors in saved.items():
        lora_b = {k: v for k, v in tensors.items() if "lora_B" in k}
        assert lora_b, f"{name} has no LoRA B matrices"
        zero = [k for k, v in lora_b.items() if not v.abs().sum() > 0]
        assert not zero, f"{name}: LoRA B still zero (untrained) in {zero[:3]}"
    artifact = json.loads((run.run_dir / ARTIFACT).read_text())
    assert artifact["method"] == method
    assert artifact["objectives"] == list(OBJECTIVES)


@pytest.mark.parametrize("method", SHIPPED)
def test_same_seed_gives_the_same_first_step_metrics(method, trained, tmp_path):
    first = trained(method).infos[0].metrics
    again = train(method, tmp_path / "again", stop_after=1).infos
    assert len(again) == 1
    assert without_times(again[0].metrics) == without_times(first)
    other_seed = train(method, tmp_path / "seed1", stop_after=1, seed=1).infos[0].metrics
    assert without_times(other_seed) != without_times(first)  # the comparison can fail


# --- the resume contract the job system relies on ---


@pytest.mark.parametrize("stop_after", [1, 2], ids=["mid-stage", "stage-end"])
@pytest.mark.parametrize("method", SHIPPED)
def test_stopped_then_resumed_run_equals_an_uninterrupted_run(
    method, stop_after, trained, tmp_path
):
    full = trained(method)
    stopped = train(method, tmp_path, stop_after=stop_after)
    assert [i.step for i in stopped.infos] == list(range(1, stop_after + 1))
    assert not (tmp_path / ARTIFACT).exists()  # stopped runs are not finished artifacts
    resumed = train(method, tmp_path)
    infos = stopped.infos + resumed.infos
    assert [i.step for i in infos] == [i.step for i in full.infos]
    assert [without_times(i.metrics) for i in infos] == [
        without_times(i.metrics) for i in full.infos
    ]
    assert [i.stage for i in infos] == [i.stage for i in full.infos]
    fronts = [(i.step, i.front) for i in infos if i.front is not None]
    assert fronts == [(i.step, i.front) for i in full.infos if i.front is not None]
    mine, theirs = adapter_tensors(tmp_path), adapter_tensors(full.run_dir)
    assert sorted(mine) == sorted(theirs)
    for name in theirs:
        assert sorted(mine[name]) == sorted(theirs[name])
        for key, value in theirs[name].items():
            assert torch.equal(mine[name][key], value), f"{name}/{key} differs after resume"
    assert (tmp_path / ARTIFACT).read_text() == (full.run_dir / ARTIFACT).read_text()


# --- every steerable serves any preference ---


@pytest.mark.parametrize("method", SHIPPED)
def test_every_steerable_generates_for_three_preferences(method, trained, eval_prompts):
    steerable = get(method).load(trained(method).run_dir, device="cpu")
    assert steerable.objectives == OBJECTIVES
    assert steerable.models_kept >= 1 and steerable.passes_per_token >= 1
    for weights in THREE_PREFERENCES:
        texts = steerable.generate(eval_prompts, weights, seed=5, max_new_tokens=8)
        assert len(texts) == len(eval_prompts)
        assert all(isinstance(t, str) for t in texts)
        assert sum(len(t) for t in texts) > 0
        # seeded sampling: the same call gives the same texts
        assert steerable.generate(eval_prompts, weights, seed=5, max_new_tokens=8) == texts
    with pytest.raises(ValueError, match="weights"):
        steerable.generate(eval_prompts, [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="weights"):
        steerable.generate(eval_prompts, [0.7, 0.7])


# --- soups and MOD against oracles ---


def expert_greedy(run_dir: Path, objective: str, prompts: list[str]) -> list[str]:
    """Greedy replies of one expert adapter loaded alone on a fresh base model."""
    policy = load_policy("embedded", device="cpu")
    name = expert_names([objective])[0]
    load_adapter(policy, Path(run_dir) / "adapters" / name, adapter_name=name)
    return policy.generate(prompts, **GREEDY)


def test_soups_at_one_hot_preferences_reproduce_each_experts_greedy_generations(
    trained, eval_prompts
):
    run_dir = trained("soups").run_dir
    base = load_policy("embedded", device="cpu").generate(eval_prompts, **GREEDY)
    first = expert_greedy(run_dir, OBJECTIVES[0], eval_prompts)
    second = expert_greedy(run_dir, OBJECTIVES[1], eval_prompts)
    assert first != base  # training moved the expert, so reproducing it is not trivial
    soup = get("soups").load(run_dir, device="cpu")
    assert soup.models_kept == 1 and soup.passes_per_token == 1
    assert soup.generate(eval_prompts, [1.0, 0.0], **GREEDY) == first
    assert soup.generate(eval_prompts, [0.0, 1.0], **GREEDY) == second


def test_soup_adapter_is_the_weighted_sum_of_the_expert_deltas(trained, eval_prompts):
    from peft.tuners.lora import LoraLayer

    soup = get("soups").load(trained("soups").run_dir, device="cpu")
    weights = (0.3, 0.7)
    soup.generate(eval_prompts[:1], list(weights), **GREEDY)  # sets the soup to these weights
    name = soup.choose(np.asarray(weights))  # the one soup adapter, now holding this mixture
    assert soup.choose(np.asarray(weights)) == name
    first, second = expert_names(OBJECTIVES)
    checked = 0
    for module in soup.policy.model.modules():
        if isinstance(module, LoraLayer) and name in module.lora_A:
            expected = weights[0] * module.get_delta_weight(first) + weights[
                1
            ] * module.get_delta_weight(second)
            torch.testing.assert_close(module.get_delta_weight(name), expected)
            assert expected.abs().max() > 0
            checked += 1
    assert checked > 0


def test_soup_switches_adapters_only_when_the_preference_needs_another(
    trained, eval_prompts, monkeypatch
):
    soup = get("soups").load(trained("soups").run_dir, device="cpu")
    model = soup.policy.model
    switches = []
    original = model.set_adapter
    monkeypatch.setattr(model, "set_adapter", lambda name: (switches.append(name), original(name)))
    prompts = eval_prompts[:1]
    first, second = expert_names(OBJECTIVES)
    expected = [first, SOUP, second, first]  # a repeated expert or mixture switches nothing
    if model.active_adapter == first:
        expected = expected[1:]
    walk = [(1.0, 0.0), (1.0, 0.0), (0.3, 0.7), (0.6, 0.4), (0.0, 1.0), (1.0, 0.0)]
    texts = [soup.generate(prompts, list(w), **GREEDY) for w in walk]
    assert switches == expected
    assert texts[0] == texts[1] == texts[5]  # back at expert 1: its own text again
    fresh = get("soups").load(trained("soups").run_dir, device="cpu")
    assert texts[3] == fresh.generate(prompts, [0.6, 0.4], **GREEDY)  # the mixture was rewritten


def mod_oracle(policy, experts: list[str], weights: list[float], prompt: str, n_tokens: int):
    """Greedy MOD without a KV cache: full forward passes, argmax of sum_i w_i log pi_i."""
    ids = policy.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for _ in range(n_tokens):
        mixed = 0.0
        for name, w in zip(experts, weights, strict=True):
            policy.model.set_adapter(name)
            with torch.no_grad():
                logits = policy.model(input_ids=torch.tensor([ids + out])).logits[0, -1].float()
            mixed = mixed + w * torch.log_softmax(logits, -1)
        token = int(torch.argmax(mixed))
        out.append(token)
        if token == policy.eos_id:
            break
    return policy.decode(torch.tensor([out]), torch.ones(1, len(out), dtype=torch.long))[0]


def test_mod_loads_soups_experts_and_matches_a_cache_free_oracle(trained, eval_prompts):
    run_dir = trained("soups").run_dir
    mod = get("mod").load(run_dir, device="cpu")  # soups' run folder, aggregated by MOD
    assert isinstance(mod, Mod)
    assert mod.models_kept == 2 and mod.passes_per_token == 2
    assert mod.experts == expert_names(OBJECTIVES)
    # a one-hot preference is the expert itself
    assert mod.generate(eval_prompts, [1.0, 0.0], **GREEDY) == expert_greedy(
        run_dir, OBJECTIVES[0], eval_prompts
    )
    mixed = mod.generate(eval_prompts, [0.5, 0.5], **GREEDY)
    oracle = [
        mod_oracle(mod.policy, mod.experts, [0.5, 0.5], p, GREEDY["max_new_tokens"])
        for p in eval_prompts
    ]
    assert mixed == oracle


def test_experts_from_copies_the_experts_and_trains_nothing(trained, tmp_path, eval_prompts):
    source = trained("soups").run_dir
    run = train("mod", tmp_path, options={"experts_from": str(source)})
    assert run.infos == [] and run.optimizer_steps == 0
    for name in expert_names(OBJECTIVES):
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            copied = (tmp_path / "adapters" / name / file).read_bytes()
            assert copied == (source / "adapters" / name / file).read_bytes()
    artifact = json.loads((tmp_path / ARTIFACT).read_text())
    assert artifact["method"] == "mod" and artifact["experts"] == expert_names(OBJECTIVES)
    mod = get("mod").load(tmp_path, device="cpu")
    assert mod.generate(eval_prompts, [1.0, 0.0], **GREEDY) == expert_greedy(
        source, OBJECTIVES[0], eval_prompts
    )


def test_experts_from_a_folder_without_experts_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        train("soups", tmp_path / "run", options={"experts_from": str(empty)})


# --- a known non-convex front: linear scalarisation misses its interior, Tchebycheff does not ---

NONCONVEX = ("synth_nature_nonconvex", "synth_city_nonconvex")
WORDS = 10  # candidate t has t nature words and WORDS - t city words: (t/10)^2, (1 - t/10)^2


def front_candidates() -> list[str]:
    rng = np.random.default_rng(0)
    return [compose_text([("nature", t), ("city", WORDS - t)], rng) for t in range(WORDS + 1)]


def train_categorical_policy(kind: str, steps: int = 300, seed: int = 0) -> np.ndarray:
    """REINFORCE on a softmax over the candidate texts with the trainer's own pieces.

    Each step samples ``groups x k`` texts, scores them with the registered objectives,
    normalises, scalarises at w = (0.5, 0.5) with ``kind``, takes RLOO advantages within each
    group and minimises ``policy_loss`` (one "token" per text). The KL coefficient is 0: the
    reference here would be the uniform start policy, whose pull keeps a floor of mass on every
    candidate; the claim under test is where the scalarised reward alone drives the policy.
    Returns the final probabilities over the candidates.
    """
    texts = front_candidates()
    groups, k = 4, 4
    theta = torch.zeros(len(texts), requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    generator = torch.Generator().manual_seed(seed)
    normalizer = RewardNormalizer("fixed", len(NONCONVEX))
    weights = np.array([0.5, 0.5])
    options = {"utopia": np.full(2, TCHEBYCHEFF_UTOPIA)} if kind == "tchebycheff" else {}
    for _ in range(steps):
        probs = torch.softmax(theta.detach(), -1)
        index = torch.multinomial(probs, groups * k, replacement=True, generator=generator)
        chosen = [texts[i] for i in index.tolist()]
        raw = objective_registry.score(NONCONVEX, [""] * len(chosen), chosen)  # (B, 2)
        scalar = scalarize(normalizer(raw), weights, kind, **options)  # (B,)
        advantages = group_advantages(torch.as_tensor(scalar, dtype=torch.float32), k, "rloo")
        logp = torch.log_softmax(theta, -1)[index][:, None]  # (B, 1)
        loss = policy_loss(logp, advantages, torch.ones_like(logp))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.softmax(theta.detach(), -1).numpy()


def test_candidates_lie_on_the_analytic_non_convex_front():
    points = objective_registry.score(NONCONVEX, [""] * (WORDS + 1), front_candidates())
    np.testing.assert_allclose(points, true_front(*NONCONVEX, n=WORDS + 1))
    # non-convex: the middle point lies strictly below the chord between the two extremes
    assert points[WORDS // 2].sum() < 1.0


def test_linear_scalarisation_misses_the_interior_and_tchebycheff_finds_it():
    points = objective_registry.score(NONCONVEX, [""] * (WORDS + 1), front_candidates())
    interior = slice(2, WORDS - 1)  # t = 2..8: away from both extremes

    for seed in (0, 1):
        # linear: both extremes score 0.5 > 0.25 in the middle, so the policy ends on the two
        # ends (in a seed-dependent mix) and never produces an interior text
        linear = train_categorical_policy("linear", seed=seed)
        assert linear[[0, WORDS]].sum() > 0.99
        assert linear[interior].sum() < 0.005

        # Tchebycheff with utopia (1, 1): the balanced middle point t = 5 is its maximiser
        tcheb = train_categorical_policy("tchebycheff", seed=seed)
        assert int(np.argmax(tcheb)) == WORDS // 2
        assert tcheb[WORDS // 2] > 0.95
        x, y = tcheb @ points  # expected objective vector: the front's point (0.25, 0.25)
        assert abs(x - 0.25) < 0.02 and abs(y - 0.25) < 0.02
