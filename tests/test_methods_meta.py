"""Preference-conditioned methods, EMORL and the meta-policy (issue 8) on the embedded model.

Each of ``ric``, ``panacea``, ``emorl`` and ``metapolicy`` trains two steps on a tiny config; we
check that its own trainable parameters moved, that it serves three preferences and refuses bad
ones, and that the same seed gives the same first-step metrics. Method-specific checks: RiC's
prompt tags and map, Panacea's SVD-LoRA on GPT-2's transposed Conv1D and its safetensors round
trip, the hierarchical grid search on known smooth functions, EMORL's interpolated coefficients
and recorded search cost, and the meta-policy at one-hot preferences after training on a dense
synthetic suite (two word-class objectives whose experts really differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from morl_core import objectives as objective_registry
from morl_core import runfolder
from morl_core.config import RunConfig
from morl_core.methods import StepInfo, get
from morl_core.methods.common import ARTIFACT
from morl_core.methods.experts import expert_names
from morl_core.methods.metapolicy import FILE as META_FILE
from morl_core.methods.metapolicy import MetaMixer
from morl_core.methods.panacea import FILE as PANACEA_FILE
from morl_core.methods.panacea import SV_GAIN, PanaceaLayer
from morl_core.methods.ric import prefixed, rejection_keep
from morl_core.methods.ric_tags import prefix, relabel, tag_text, targets
from morl_core.policy import load_policy, set_threads
from morl_core.prompts import load_prompts
from morl_core.search import hierarchical_grid_search

set_threads(1)

METHODS = ("ric", "panacea", "emorl", "metapolicy")
OBJECTIVES = ("sentiment", "formality")  # continuous on 8-token replies: non-zero advantages
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
    "lr": 0.01,
}
FAST_OPTIONS = {"emorl": {"search_rounds": 2, "search_prompts": 2, "search_replies": 2}}
PREFERENCES = ([1.0, 0.0], [0.5, 0.5], [0.0, 1.0])


def train(method: str, run_dir: Path, stop_after: int | None = None, **changes) -> list[StepInfo]:
    data = {**TINY, "method": method, "options": FAST_OPTIONS.get(method, {}), **changes}
    config = RunConfig.from_dict(data)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    infos: list[StepInfo] = []

    def callback(info: StepInfo) -> bool:
        infos.append(info)
        return stop_after is None or len(infos) < stop_after

    get(method).train(config, run_dir, callback)
    return infos


def without_times(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, list[StepInfo]]]:
    out = {}
    for method in METHODS:
        run_dir = tmp_path_factory.mktemp(method)
        out[method] = (run_dir, train(method, run_dir))
    return out


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return load_prompts("default", "eval")[:3]


# --- every method ---


def trained_tensors(method: str, run_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors the method trained, as saved in the run folder."""
    adapters = run_dir / "adapters"
    if method == "panacea":
        return load_file(adapters / "panacea" / PANACEA_FILE)
    if method == "metapolicy":
        return load_file(adapters / "metapolicy" / META_FILE)
    names = ["ric"] if method == "ric" else expert_names(OBJECTIVES)
    return {
        f"{n}/{k}": v
        for n in names
        for k, v in load_file(adapters / n / "adapter_model.safetensors").items()
    }


@pytest.mark.parametrize("method", METHODS)
def test_trains_two_steps_and_its_trainable_parameters_change(method, runs):
    run_dir, infos = runs[method]
    assert [i.step for i in infos] == list(range(1, infos[0].total_steps + 1))
    assert json.loads((run_dir / ARTIFACT).read_text())["method"] == method
    assert infos[-1].front is not None  # the final front is reported through the callback
    tensors = trained_tensors(method, run_dir)
    # each of these starts at exactly zero, so non-zero means trained
    started_at_zero = {
        "ric": "lora_B",
        "emorl": "lora_B",
        "panacea": "lora_B",
        "metapolicy": "query.weight",
    }[method]
    moved = [k for k, v in tensors.items() if started_at_zero in k]
    assert moved and all(tensors[k].abs().sum() > 0 for k in moved)
    if method == "panacea":  # the singular values and preference scales left their start too
        for suffix in ("lora_diag", "pref_scaling"):
            values = [v for k, v in tensors.items() if k.endswith(suffix)]
            assert values and all((v != 1.0 / SV_GAIN).any() for v in values), suffix
    if method == "metapolicy":  # and it is not the freshly initialised network
        fresh = MetaMixer(256, 2, seed=0).state_dict()
        assert not torch.equal(tensors["key.weight"], fresh["key.weight"])


@pytest.mark.parametrize("method", METHODS)
def test_generates_for_three_preferences_and_refuses_bad_ones(method, runs, prompts):
    steerable = get(method).load(runs[method][0], device="cpu")
    expected = {"ric": (1, 1), "panacea": (1, 1), "emorl": (2, 2), "metapolicy": (3, 2)}
    assert (steerable.models_kept, steerable.passes_per_token) == expected[method]
    outputs = []
    for weights in PREFERENCES:
        texts = steerable.generate(prompts, weights, seed=3, max_new_tokens=8)
        assert len(texts) == len(prompts) and all(isinstance(t, str) for t in texts)
        assert steerable.generate(prompts, weights, seed=3, max_new_tokens=8) == texts
        outputs.append(texts)
    for bad, why in [
        ([0.2, 0.3, 0.5], "k=2"),
        ([0.7, 0.7], "sum to 1"),
        ([1.5, -0.5], "non-negative"),
        ([float("nan"), 1.0], "finite"),
    ]:
        with pytest.raises(ValueError, match=why):
            steerable.generate(prompts, bad)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_first_step_metrics(method, runs, tmp_path):
    first = runs[method][1][0]
    again = train(method, tmp_path, stop_after=1)
    assert len(again) == 1 and again[0].stage == first.stage
    assert without_times(again[0].metrics) == without_times(first.metrics)


def test_metapolicy_first_upper_level_step_is_reproducible(runs, tmp_path):
    source, infos = runs["metapolicy"]
    first_meta = next(i for i in infos if i.stage == "meta-policy")
    again = train("metapolicy", tmp_path, stop_after=1, options={"experts_from": str(source)})
    assert again[0].stage == "meta-policy"
    assert without_times(again[0].metrics) == without_times(first_meta.metrics)


def test_metapolicy_preference_concentration_draws_its_training_preferences(runs, tmp_path):
    """Below 1 the upper level trains on preferences near the corners (the front's ends)."""
    source, _ = runs["metapolicy"]

    def corner_share(concentration: float) -> float:  # mean largest weight of the steps' w
        options = {"experts_from": str(source), "preference_concentration": concentration}
        infos = train("metapolicy", tmp_path / str(concentration), steps=6, options=options)
        drawn = [[i.metrics[f"weight/{o}"] for o in OBJECTIVES] for i in infos]
        assert all(abs(sum(w) - 1) < 1e-6 for w in drawn)
        return float(np.mean(np.max(drawn, axis=1)))

    near_corners, near_middle = corner_share(0.05), corner_share(100.0)
    assert near_corners > 0.8 and near_middle < 0.6, (near_corners, near_middle)


# --- RiC ---


def test_ric_map_and_prompt_tags():
    assert targets(np.array([0.7, 0.3])).tolist() == [1.0, 0.6]
    assert targets(np.array([0.2, 0.3, 0.5])).tolist() == [0.6, 0.9, 1.0]
    assert prefix(OBJECTIVES, np.array([0.5, 0.5])) == "\n"  # both at their maximum: no tag
    assert prefix(OBJECTIVES, np.array([0.7, 0.3])) == "<formality=0.6>\n"
    assert prefix(OBJECTIVES, np.array([0.5, 0.5]), "all") == "<sentiment=1.0><formality=1.0>\n"
    policy = prefixed(load_policy("embedded", device="cpu"))
    policy.prefix = prefix(OBJECTIVES, np.array([0.0, 1.0]))
    ids, mask = policy.encode(["The hotel was"])
    text = policy.tokenizer.decode(ids[0][mask[0].bool()])
    assert text == "<sentiment=0.0>\nThe hotel was"
    pieces = policy.tokenizer.tokenize("=0.6>")
    assert len(pieces) == 5  # '=', '0', '.', '6', '>': no merges, no new tokens needed


def test_ric_selection_and_labels_on_binary_and_continuous_rewards():
    # a 0/1 reward most samples miss: the 0.7-quantile is 0, yet only its 1s are kept
    norm = np.array([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0.0]])
    assert rejection_keep(norm).tolist() == [True, True] + [False] * 7
    # once most samples reach the top, the top is still kept (its quantile is the maximum)
    norm = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 0.0]])
    assert rejection_keep(norm).tolist() == [True] * 5 + [False]
    # continuous: above the 0.7-quantile on either objective
    norm = np.column_stack([np.linspace(0, 1, 11), np.linspace(1, 0, 11)])
    assert np.flatnonzero(rejection_keep(norm)).tolist() == [0, 1, 2, 3, 7, 8, 9, 10]
    # tags (runs before the quantiles): each objective rescaled to the pool's range; NaN (not
    # applicable) -> pool mean
    labels = relabel(np.array([[0.2, 0.5], [0.6, np.nan], [0.4, 0.7]]), "minmax")
    np.testing.assert_allclose(labels, [[0.0, 0.0], [1.0, 0.5], [0.5, 1.0]])
    with pytest.raises(ValueError, match="one of quantiles, minmax"):
        relabel(norm, "ranks")


def test_ric_tags_rescale_between_the_pool_quantiles_so_the_ends_tags_occur():
    """From the 10th to the 90th percentile, clipped: one outlier (a reply of emoji at 0) no
    longer squeezes every other sample into the middle tags, so the top and bottom tenth carry
    the tags of the front's ends (1.0: no tag; 0.0); a 0/1 reward fewer than a tenth of the pool
    reaches keeps its 0s and 1s (the quantiles meet: minimum and maximum instead)."""
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.4, 0.9, size=(99, 1))
    norm = np.vstack([[[0.0]], spread])  # one outlier at the bottom
    minmax, quantiles = relabel(norm, "minmax")[:, 0], relabel(norm)[:, 0]
    assert minmax[1:].min() >= 0.4  # min-max: no sample but the outlier at the bottom end
    assert 0.08 <= (quantiles <= 0.0).mean() <= 0.2 and 0.08 <= (quantiles >= 1.0).mean() <= 0.2
    assert np.corrcoef(quantiles[1:], spread[:, 0])[0, 1] > 0.95  # the order is kept
    rare = np.zeros((40, 1))
    rare[:2] = 1.0  # 5 % reach the reward
    np.testing.assert_array_equal(relabel(rare)[:, 0], rare[:, 0])


def test_ric_offline_share_sets_how_many_rounds_the_base_model_samples(tmp_path):
    # each round reports its stage from the same split that picks its sampler (base or policy)
    default = train("ric", tmp_path / "half", steps=3)
    assert [i.stage for i in default] == ["ric offline"] * 2 + ["ric online"]
    options = {**FAST_OPTIONS.get("ric", {}), "offline_share": 1 / 3}
    third = train("ric", tmp_path / "third", steps=3, options=options)
    assert [i.stage for i in third] == ["ric offline"] + ["ric online"] * 2
    training = json.loads((tmp_path / "third" / ARTIFACT).read_text())["training"]
    assert (training["offline_steps"], training["online_steps"]) == (1, 2)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="offline_share"):
            RunConfig.from_dict({**TINY, "method": "ric", "options": {"offline_share": bad}})


def test_ric_reports_every_sample_drawn_and_refuses_an_old_checkpoint(runs, tmp_path):
    run_dir, infos = runs["ric"]
    batch = TINY["batch_prompts"] * TINY["k_samples"]
    assert [i.samples for i in infos] == [batch * i.step for i in infos]
    assert [i.stage for i in infos] == ["ric offline", "ric online"]
    training = json.loads((run_dir / ARTIFACT).read_text())["training"]
    assert training["samples"] == batch * TINY["steps"]
    assert (training["offline_steps"], training["online_steps"]) == (1, 1)
    # a checkpoint of the RL-phase RiC cannot be continued: one clear line, not a KeyError
    runfolder.save_checkpoint(tmp_path, 1, {"stage_done": torch.zeros(1)}, {"stage": 0})
    with pytest.raises(ValueError, match="older RiC"):
        train("ric", tmp_path)


def test_ric_takes_sft_updates_steps_a_round_and_measures_kl_once(tmp_path, monkeypatch):
    """Option ``sft_updates``: that many supervised steps per round on the pool (one batch
    drawn), and only the last one's KL to the base model is measured (a second forward each)."""
    from morl_core.methods import ric

    forwards, optimizer_steps = [], []
    real = ric.token_logprobs
    monkeypatch.setattr(
        ric, "token_logprobs", lambda model, *a: forwards.append(1) or real(model, *a)
    )
    step = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, *a: optimizer_steps.append(1) or step(self, *a)
    )
    infos = train("ric", tmp_path, steps=2, options={"sft_updates": 3})
    assert len(optimizer_steps) == 2 * 3 and len(forwards) == 2 * (3 + 1)
    assert all(np.isfinite(i.metrics["kl"]) for i in infos)
    training = json.loads((tmp_path / ARTIFACT).read_text())["training"]
    assert (training["samples"], training["supervised_steps"]) == (2 * 4, 2 * 3)


@pytest.mark.parametrize("offline_tags", ["none", "drawn"])
def test_ric_offline_rounds_ask_the_base_model_only_with_offline_tags_drawn(
    tmp_path, monkeypatch, offline_tags
):
    """Offline rounds sample the base model on the plain prompt (the paper), or, with
    ``offline_tags="drawn"``, under the tags of the round's drawn preference; online rounds
    always write them. Two rounds: one offline, one online."""
    from morl_core.methods import ric

    written, real = [], ric.SupervisedRounds.rollout
    monkeypatch.setattr(
        ric.SupervisedRounds,
        "rollout",
        lambda self, batch: written.append(self.policy.prefix) or real(self, batch),
    )
    options = {"tags": "words", "offline_tags": offline_tags}
    infos = train(
        "ric", tmp_path, steps=2, objectives=["formality", "readability"], options=options
    )
    asked = [
        prefix(("formality", "readability"), np.array([w, 1 - w]), "words")
        for w in (i.metrics["weight/formality"] for i in infos)
    ]
    assert all(text.startswith("Make your reply") for text in asked)
    assert written == [asked[0] if offline_tags == "drawn" else "", asked[1]]


@pytest.mark.parametrize("penalty", [0.0, 1.0])
def test_ric_never_imitates_a_reply_its_fluency_guard_fails_when_the_run_penalises_them(
    tmp_path, monkeypatch, penalty
):
    """Rejection sampling reads the rewards the RL methods train on, each less
    ``fluency_penalty * (1 - fluency)``: with the penalty, no supervised minibatch holds a reply
    the guard failed (here every other reply, whatever it scores); without it some do. The tags
    stay what each reply achieved: the guard does not move the pool's quantiles."""
    from morl_core.methods import ric

    monkeypatch.setattr(ric, "guarded_fluency", lambda texts, guard: np.arange(len(texts)) % 2.0)
    imitated, real = [], ric.SupervisedRounds.supervised_batch
    monkeypatch.setattr(
        ric.SupervisedRounds,
        "supervised_batch",
        lambda self, labels, chosen: (
            imitated.extend(self.pool_fluency[chosen])
            or tagged.append(np.array_equal(labels, relabel(self.pool_norm)))
            or real(self, labels, chosen)
        ),
    )
    tagged: list[bool] = []
    train("ric", tmp_path, steps=4, fluency_penalty=penalty)
    assert len(imitated) == 4 * TINY["batch_prompts"] * TINY["k_samples"]
    assert (min(imitated) == 1.0) == (penalty > 0)
    assert tagged == [True] * 4


def test_ric_tags_in_words_grade_each_target_and_need_adjectives():
    """``tags="words"``: a degree word per target (0.9+ very, 0.6+ fairly, 0.3+ a little, below
    that not asked) before the objective's adjective; a run whose objectives lack one is
    refused with the field, the objectives that have one and the other style."""
    objectives = ("formality", "readability", "brevity(target_words=15)")
    assert prefix(objectives, np.array([1.0, 0.0, 0.0]), "words") == (
        "Make your reply very formal.\n"
    )
    written = {
        tuple(t): tag_text(objectives, t, "words")
        for t in ([1.0, 0.7, 0.3], [0.9, 0.6, 0.2], [0.2, 0.1, 0.0])
    }
    assert list(written.values()) == [
        "Make your reply very formal, fairly simple and a little short.\n",
        "Make your reply very formal and fairly simple.\n",
        "",
    ]
    assert tag_text(objectives, [0.8, 0.5, 0.2], "words") == (  # below each degree's edge
        "Make your reply fairly formal and a little simple.\n"
    )
    assert prefix(objectives[:2], np.array([0.5, 0.5]), "words") == (
        "Make your reply very formal and very simple.\n"
    )
    words = {"method": "ric", "options": {"tags": "words"}}
    problem = RunConfig(objectives=["formality", "synth_city"], **words).errors()["options.tags"]
    assert "'synth_city' has none" in problem and "formality" in problem and "'relaxed'" in problem
    assert RunConfig(objectives=list(objectives), **words).errors() == {}


# --- Panacea ---


@pytest.mark.parametrize("kind", ["conv1d", "linear"])
def test_panacea_layer_is_the_svd_lora_update_of_the_base_weight(kind):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    base = Conv1D(6, 4) if kind == "conv1d" else torch.nn.Linear(4, 6)  # in 4, out 6 both
    layer = PanaceaLayer(base, r=3, k=2, alpha=6.0, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer.lora_diag.copy_(torch.tensor([0.1, -0.2, 0.3]))
        layer.pref_scaling.fill_(0.5)
    layer.preference.copy_(torch.tensor([0.25, 0.75]))
    d = SV_GAIN * torch.tensor([0.1, -0.2, 0.3, 0.5 * 0.25, 0.5 * 0.75])
    delta = (6.0 / 3) * layer.lora_B @ torch.diag(d) @ layer.lora_A  # (out, in)
    # Conv1D keeps W as (in, out) and computes x W + b; Linear keeps (out, in) and x W^T + b
    merged = base.weight + (delta.T if kind == "conv1d" else delta)
    x = torch.randn(5, 4)
    expected = x @ merged + base.bias if kind == "conv1d" else x @ merged.T + base.bias
    torch.testing.assert_close(layer(x), expected)
    layer.enabled = False
    torch.testing.assert_close(layer(x), base(x))


def test_panacea_preference_only_moves_its_singular_values(runs, prompts):
    steerable = get("panacea").load(runs["panacea"][0], device="cpu")
    model = steerable.policy.model
    saved = load_file(runs["panacea"][0] / "adapters" / "panacea" / PANACEA_FILE)
    assert {k: v for k, v in model.adapter_state().items()}.keys() == saved.keys()
    for name, value in model.adapter_state().items():
        assert torch.equal(value, saved[name])
    layer = model.layers[0]
    model.set_preference([1.0, 0.0])
    first = layer.singular_values().detach().clone()
    model.set_preference([0.0, 1.0])
    second = layer.singular_values().detach()
    r = layer.lora_diag.numel()
    assert torch.equal(first[:r], second[:r]) and not torch.equal(first[r:], second[r:])


# --- hierarchical grid search (pure) ---


@pytest.mark.parametrize(
    "optimum", [(0.37, 0.81), (0.0, 1.0), (0.62, 0.12, 0.9)], ids=["2d", "corner", "3d"]
)
def test_hierarchical_search_finds_the_optimum_of_a_smooth_function(optimum):
    target = np.asarray(optimum)
    calls = []

    def f(points: np.ndarray) -> np.ndarray:  # smooth, single maximum at ``target``
        calls.append(len(points))
        return np.exp(-4.0 * ((points - target) ** 2).sum(1))

    d = len(target)
    result = hierarchical_grid_search(f, d, rounds=5)
    # the kept box's 2^d corners are never evaluated twice
    assert result.evaluations == sum(calls) <= 3**d + 4 * (3**d - 2**d)
    assert np.abs(result.best - target).max() <= 1 / 32  # the last box is 1/32 wide
    assert result.value == pytest.approx(f(result.best[None])[0])
    assert len(result.boxes) == 5


def test_hierarchical_search_refuses_bad_arguments():
    with pytest.raises(ValueError, match="dim"):
        hierarchical_grid_search(lambda p: p.sum(1), 0)
    with pytest.raises(ValueError, match="rounds"):
        hierarchical_grid_search(lambda p: p.sum(1), 2, rounds=0)
    with pytest.raises(ValueError, match="finite values"):
        hierarchical_grid_search(lambda p: np.full(len(p), np.nan), 2)


# --- EMORL ---


def test_emorl_records_search_cost_and_interpolates_coefficients(runs):
    run_dir = runs["emorl"][0]
    artifact = json.loads((run_dir / ARTIFACT).read_text())
    search = artifact["search"]
    assert 0 < search["evaluations"] <= search["evaluations_requested"]
    assert search["evaluations_requested"] <= 2 * (9 + (9 - 4))  # 2 preferences, 2 rounds
    assert search["replies"] == 2  # per search prompt and candidate
    assert search["samples"] == search["evaluations"] * search["prompts"] * search["replies"]
    assert json.loads((run_dir / search["seconds_in"]).read_text())["seconds"] > 0
    steerable = get("emorl").load(run_dir, device="cpu")
    table = artifact["aggregation"]
    assert [t["preference"] for t in table] == [[1.0, 0.0], [0.0, 1.0]]
    for row in table:  # on the grid: the searched coefficients exactly
        assert steerable.coefficients(row["preference"]).tolist() == row["coefficients"]
        assert all(0.0 <= a <= 1.0 for a in row["coefficients"])
    between = steerable.coefficients([0.5, 0.5])  # equidistant: the mean of the two
    np.testing.assert_allclose(
        between, np.mean([t["coefficients"] for t in table], axis=0), atol=1e-12
    )


# --- meta-policy on a dense synthetic suite ---

ARTICLES = frozenset({"the", "a", "an"})
PRONOUNS = frozenset(
    {"i", "you", "it", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your"}
)
SUITE = ("test_articles", "test_pronouns")  # disjoint classes: conflicting, front x + y = 1


def register_suite() -> None:
    for name, words in zip(SUITE, (ARTICLES, PRONOUNS), strict=True):
        if name not in objective_registry.OBJECTIVES:
            objective_registry.register(objective_registry.word_class_objective(name, words))


def next_token_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over masked positions of KL(p || q) between next-token distributions."""
    logp, logq = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, T)
    return float((kl * mask).sum() / mask.sum())


def test_metapolicy_at_a_one_hot_preference_behaves_like_that_expert(tmp_path):
    register_suite()
    train(
        "metapolicy",
        tmp_path,
        objectives=list(SUITE),
        steps=4,
        max_new_tokens=12,
        lr=0.01,
        options={"meta_steps": 6, "meta_lr": 0.01},
    )
    meta = get("metapolicy").load(tmp_path, device="cpu")
    assert not torch.equal(meta.mixer.query.weight, torch.zeros_like(meta.mixer.query.weight))
    fusion, peft_model = meta.policy.model, meta.policy.model.model
    experts = expert_names(SUITE)
    rollout = meta.policy.rollout(
        load_prompts("default", "eval")[:6], n=2, max_new_tokens=12, seed=0
    )
    ids, attention = rollout.input_ids, rollout.attention_mask
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    n = rollout.completion_ids.shape[1]
    mask = rollout.completion_mask.float()

    def logits_of(model) -> torch.Tensor:  # (B, T, V) predicting the completion tokens
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=attention, position_ids=positions)
        return out.logits[:, -n - 1 : -1].float()

    expert_logits = {}
    for name in experts:
        peft_model.set_adapter(name, inference_mode=True)
        expert_logits[name] = logits_of(peft_model)
    between_experts = next_token_kl(expert_logits[experts[0]], expert_logits[experts[1]], mask)
    assert between_experts > 0.05, "the experts barely differ: the test would prove nothing"
    for i, name in enumerate(experts):
        meta.mixer.set_preference(np.eye(2)[i])
        gap = next_token_kl(expert_logits[name], logits_of(fusion), mask)
        assert gap < 0.1 * between_experts, f"{name}: KL {gap:.4f} vs {between_experts:.4f}"
    mixing = json.loads((tmp_path / ARTIFACT).read_text())["mixing"]
    for row in mixing:
        assert sum(row["mean_alpha"]) == pytest.approx(1.0, abs=1e-5)
        i = int(np.argmax(row["preference"]))
        if max(row["preference"]) == 1.0:  # one-hot: almost all weight on that expert
            assert row["mean_alpha"][i] > 0.9
