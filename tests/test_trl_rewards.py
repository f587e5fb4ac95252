"""TRL reward functions as objectives, and our objectives as TRL reward functions, both real.

Uses the real ``trl`` (requirements-dev.txt): its own ``think_format_reward``,
``get_repetition_penalty_reward`` factory and ``accuracy_reward`` (math-verify) are scored and
trained on; every built-in objective is called exactly as ``GRPOTrainer._calculate_rewards``
calls reward functions, and put through one real ``GRPOTrainer`` step (a few seconds).
"""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

trl_rewards = pytest.importorskip("trl.rewards")

from morl_core import settings  # noqa: E402
from morl_core.cli import main as morl_main  # noqa: E402
from morl_core.config import ConfigError, RunConfig  # noqa: E402
from morl_core.objectives import (  # noqa: E402
    OBJECTIVES,
    ObjectiveError,
    RewardNormalizer,
    TrainerState,
    parse_spec,
    resolve,
    score,
    split_specs,
)
from morl_core.objectives.scoring import EMBEDDED_TOKENIZER  # noqa: E402
from morl_core.scalarize import scalarize_available  # noqa: E402

THINK = "trl.rewards:think_format_reward"
REPEAT = "trl.rewards:get_repetition_penalty_reward(ngram_size=3,max_penalty=-1.0)"
ACCURACY = "trl.rewards:accuracy_reward"


# --- specs: parsed without evaluating anything ---


def test_factory_spec_settings_and_range_are_literals():
    spec = parse_spec("trl.rewards:get_repetition_penalty_reward(2, max_penalty=-0.5)@[-0.5, 0]")
    assert (spec.module, spec.attribute, spec.call) == (
        "trl.rewards",
        "get_repetition_penalty_reward",
        True,
    )
    assert spec.args == (2,) and spec.kwargs == (("max_penalty", -0.5),)
    assert spec.value_range == (-0.5, 0.0)
    assert parse_spec("pkg.mod.fn").call is False and parse_spec("pkg.mod.fn").path == "pkg.mod:fn"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trl.rewards:f(x=__import__('os'))", "is not a literal"),
        ("trl.rewards:f(x=os.system)", "is not a literal"),
        ("trl.rewards:f(**{'a': 1})", "'\\*\\*' is not allowed"),
        ("trl.rewards:f(a=1, a=2)", "given twice"),
        ("trl.rewards:f(a=1", "is not a dotted path"),
        ("trl.rewards:f@[1, 0]", "low < high"),
        ("trl.rewards:f@[0, inf]", "two finite numbers"),
        ("trl.rewards:f(x=1e999)", "finite real number"),
    ],
)
def test_bad_specs_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_a_comma_list_keeps_commas_inside_settings():
    assert split_specs(f"{REPEAT}@[-1,0], sentiment") == [f"{REPEAT}@[-1,0]", "sentiment"]
    config = RunConfig.from_dict({"objectives": f"{REPEAT},sentiment"})
    assert config.objectives == (REPEAT, "sentiment")
    assert RunConfig.from_dict(config.to_dict()).objectives == config.objectives  # resumable
    with pytest.raises(ConfigError, match="objectives: .*is not a literal"):
        RunConfig.from_dict({"objectives": "trl.rewards:f(x=os.system),sentiment"})


def test_factory_settings_are_validated_by_the_factory():
    with pytest.raises(ValueError, match="rejected its settings: ValueError: max_penalty 1"):
        score(["trl.rewards:get_repetition_penalty_reward(max_penalty=1)"], ["p"], ["a b"])
    with pytest.raises(ValueError, match="rejected its settings: TypeError"):
        score(["trl.rewards:get_repetition_penalty_reward(size=3)"], ["p"], ["a b"])


def test_server_allow_list(monkeypatch, tmp_path):
    (tmp_path / "my_trl_like.py").write_text(
        "def one(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("MORL_ALLOWED_IMPORTS", raising=False)
    # trl.rewards is on the default allow-list; other modules need the operator's say-so
    assert score([THINK], ["p"], ["<think>a</think>b"], allow_import=False)[0, 0] == 1.0
    with pytest.raises(ValueError, match="not allowed here .*allowed module prefixes: trl.rewards"):
        score(["my_trl_like:one"], ["p"], ["a"], allow_import=False)
    monkeypatch.setenv("MORL_ALLOWED_IMPORTS", "my_trl_like")
    assert score(["my_trl_like:one"], ["p"], ["a"], allow_import=False)[0, 0] == 1.0
    with pytest.raises(ValueError, match="not allowed here"):
        score([THINK], ["p"], ["a"], allow_import=False)
    sys.modules.pop("my_trl_like", None)


# --- TRL's own functions, scored ---


def test_think_format_reward_scores_plain_text():
    rewards = score([THINK, "brevity"], ["", ""], ["<think>ok</think> Fine.", "Go away."])
    np.testing.assert_array_equal(rewards[:, 0], [1.0, 0.0])


def test_repetition_penalty_factory_matches_trl_on_the_same_token_ids():
    ids = [[1, 2, 3, 4], [5, 5, 5, 5, 5], [7, 8]]
    reference = trl_rewards.get_repetition_penalty_reward(ngram_size=2, max_penalty=-1.0)(ids)
    spec = "trl.rewards:get_repetition_penalty_reward(ngram_size=2, max_penalty=-1.0)"
    rewards = score([spec], ["p"] * 3, ["a", "b", "c"], completion_ids=ids)
    np.testing.assert_allclose(rewards[:, 0], reference)
    assert reference == [0.0, -0.75, 0.0]
    # without ids, the completions are tokenised (embedded model's tokenizer)
    repeated = score([spec], ["p", "p"], ["the cat " * 8, "one two three four five"])
    assert repeated[0, 0] < -0.5 and repeated[1, 0] == 0.0


def test_accuracy_reward_reads_the_solution_column_and_none_is_not_applicable():
    columns = {"q1": {"solution": "$\\frac{1}{3}$"}, "q2": {"solution": "not maths at all"}}
    rewards = score(
        [ACCURACY, "brevity"],
        ["q1", "q1", "q2"],
        ["The answer is $\\boxed{\\frac{1}{3}}$", "The answer is $\\boxed{\\frac{1}{2}}$", "4"],
        prompt_columns=columns,
    )
    assert rewards[0, 0] == 1.0 and rewards[1, 0] == 0.0
    assert np.isnan(rewards[2, 0]) and np.isfinite(rewards[:, 1]).all()  # None -> NaN, never 0


def test_ranges_of_trl_functions_are_declared_and_a_given_range_wins(capsys):
    assert resolve(THINK).bounds == (0.0, 1.0) and resolve(THINK).bounds_source == "declared"
    assert resolve(REPEAT).bounds == (-1.0, 0.0)
    penalty = resolve("trl.rewards:get_repetition_penalty_reward(max_penalty=-2.0)")
    assert penalty.bounds == (-2.0, 0.0)
    given = resolve(REPEAT + "@[-0.5, 0]")
    assert given.bounds == (-0.5, 0.0) and given.bounds_source == "given"
    assert "declared" in resolve(REPEAT).value_range
    RewardNormalizer("fixed", ["trl.rewards:get_repetition_penalty_reward(max_penalty=-3.0)"])
    assert "range [-3, 0] -> [0, 1] (declared by the function" in capsys.readouterr().err


# --- the calling convention, observed from inside a reward function ---


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    (tmp_path / "probe_rewards.py").write_text(
        textwrap.dedent(
            '''
            import asyncio

            CALLS = []

            def keywords_only(*, prompts, completions, completion_ids, **kwargs):
                """Records how it was called."""
                CALLS.append(dict(kwargs, prompts=prompts, completions=completions,
                                  completion_ids=completion_ids))
                return [None if c == "skip" else float(len(i)) for c, i in
                        zip(completions, completion_ids)]

            async def later(prompts, completions, **kwargs):
                await asyncio.sleep(0)
                return [0.5] * len(completions)

            def explodes(prompts, completions, **kwargs):
                raise KeyError("content")

            def too_few(prompts, completions, **kwargs):
                return [1.0]

            def words(prompts, completions, **kwargs):
                return [float(len(c.split())) for c in completions]
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_rewards

    probe_rewards.CALLS.clear()
    yield probe_rewards
    sys.modules.pop("probe_rewards", None)


def test_imported_functions_get_trls_keywords_and_columns(probe_module):
    state = TrainerState(global_step=3, max_steps=10)
    rewards = score(
        ["probe_rewards:keywords_only"],
        ["q1", "q2"],
        ["abc", "skip"],
        completion_ids=[[1, 2, 3], [4]],
        prompt_columns={"q1": {"solution": "7", "level": 2}},
        trainer_state=state,
    )
    call = probe_module.CALLS[-1]
    assert call["prompts"] == ["q1", "q2"] and call["completions"] == ["abc", "skip"]
    assert call["completion_ids"] == [[1, 2, 3], [4]]
    assert call["solution"] == ["7", None] and call["level"] == [2, None]  # per sample
    assert call["trainer_state"] is state and callable(call["log_metric"])
    assert rewards[0, 0] == 3.0 and np.isnan(rewards[1, 0])


def test_conversational_prompts_get_conversational_completions(probe_module):
    chat = [[{"role": "user", "content": "Hi"}]]
    score(["probe_rewards:keywords_only"], chat, ["Hello."], completion_ids=[[1]])
    call = probe_module.CALLS[-1]
    assert call["prompts"] == chat
    assert call["completions"] == [[{"role": "assistant", "content": "Hello."}]]


def test_async_reward_functions_are_awaited(probe_module):
    assert score(["probe_rewards:later"], ["p", "p"], ["a", "b"]).tolist() == [[0.5], [0.5]]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "probe_rewards:explodes",
            r"^objective 'probe_rewards:explodes' failed: explodes\(\) "
            r"raised KeyError: 'content'$",
        ),
        (
            "probe_rewards:too_few",
            r"^objective 'probe_rewards:too_few' returned 1 values for 2 "
            r"completions .*\[1\.0\]$",
        ),
    ],
)
def test_a_failing_reward_is_one_line_naming_it(probe_module, spec, message):
    with pytest.raises(ObjectiveError, match=message) as caught:
        score([spec, "brevity"], ["p", "p"], ["a", "b"])
    assert "\n" not in str(caught.value) and caught.value.objective == spec


def test_cli_score_prints_the_matrix_and_failures_as_one_line(probe_module, capsys):
    code = morl_main(
        [
            "score",
            "--objectives",
            f"{THINK},probe_rewards:keywords_only",
            "<think>ok</think> Fine.",
            "skip",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and THINK in out
    tokenizer = EMBEDDED_TOKENIZER.get()  # the CLI has no ids: it tokenises the texts
    n_tokens = len(tokenizer("<think>ok</think> Fine.", add_special_tokens=False)["input_ids"])
    assert out.splitlines()[2].split()[-2:] == ["1.000", f"{n_tokens:.3f}"]
    assert out.splitlines()[3].split()[-2:] == ["0.000", "n/a"]  # None shown as n/a
    code = morl_main(["score", "--objectives", "probe_rewards:explodes", "a"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "probe_rewards:explodes" in err and "KeyError" in err


# --- not applicable, scalarised ---


def test_not_applicable_is_left_out_of_the_sample_scalarisation():
    rewards = np.array([[0.8, np.nan], [0.8, 0.2], [np.nan, np.nan], [0.4, 0.6]])
    scalar = scalarize_available(rewards, [0.5, 0.5], "linear", group_size=2)
    # row 0: only objective 0 applies, weight renormalised to 1 -> 0.8 (a 0 would give 0.4)
    np.testing.assert_allclose(scalar[:2], [0.8, 0.5])
    assert scalar[2] == pytest.approx(0.5)  # nothing applies: its group's mean, advantage ~ 0
    logsum = scalarize_available(rewards[:2], [0.5, 0.5], "logsum")
    assert logsum[0] == pytest.approx(np.log(0.8))


def test_a_learned_range_comes_from_the_first_batch_and_survives_a_checkpoint(probe_module, capsys):
    normalizer = RewardNormalizer("fixed", ["probe_rewards:words", "brevity"])
    assert normalizer.bounds[0] is None  # no range given or declared: learn it
    first = normalizer(np.array([[2.0, 0.5], [6.0, 1.0], [np.nan, 0.0]]))
    assert normalizer.bounds[0] == (1.0, 7.0)  # [2, 6] widened by 25% of the spread
    np.testing.assert_allclose(first[:2, 0], [1 / 6, 5 / 6])
    assert np.isnan(first[2, 0]) and first[2, 1] == 0.0
    assert "learned from 2 base-model samples" in capsys.readouterr().err
    later = normalizer(np.array([[100.0, 0.5]]))
    assert later[0, 0] == 1.0 and normalizer.bounds[0] == (1.0, 7.0)  # learned once, then kept
    restored = RewardNormalizer("fixed", ["probe_rewards:words", "brevity"])
    restored.load(json.loads(json.dumps(normalizer.state())))
    assert restored.bounds[0] == (1.0, 7.0)
    assert normalizer.metrics() == {
        "range_low/probe_rewards:words": 1.0,
        "range_high/probe_rewards:words": 7.0,
    }


# --- training on TRL's own rewards ---


@pytest.fixture(scope="module")
def maths_prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "maths.jsonl"
    rows = [
        {"text": "What is 1 + 1? Answer:", "solution": "$2$"},
        {"text": "What is 2 + 2? Answer:", "solution": "$4$"},
        {"text": "Think, then say a word:", "solution": "no answer to check"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_training_steps_on_trls_rewards_with_a_solution_column(maths_prompts):
    import torch

    from morl_core.policy import attach_lora, load_policy
    from morl_core.rl.trainer import RLTrainer

    config = RunConfig.from_dict(
        {
            "objectives": [THINK, REPEAT, ACCURACY, "sentiment"],
            "prompt_set": str(maths_prompts),
            "steps": 2,
            "batch_prompts": 2,
            "k_samples": 2,
            "max_new_tokens": 4,
            "device": "cpu",
        }
    )
    policy = attach_lora(load_policy("embedded", device="cpu", threads=1))
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    trainer = RLTrainer(policy, config, ["What is 1 + 1? Answer:", "Think, then say a word:"], 0)
    for _ in range(2):
        metrics, raw = trainer.step([0.25] * 4)
        assert raw.shape == (4, 4) and np.isfinite(metrics["reward/scalarized"])
        assert set(np.unique(raw[:, 0])) <= {0.0, 1.0} and (raw[:, 1] <= 0).all()
        # the solution column reached accuracy_reward: the unparseable one is n/a, not 0
        assert np.isnan(raw[:, 2]).sum() == 2 and set(raw[~np.isnan(raw[:, 2]), 2]) <= {0.0, 1.0}
        assert np.isfinite(metrics[f"reward/{ACCURACY}"])
    assert metrics[f"range_low/{REPEAT}"] == -1.0 and metrics[f"range_high/{REPEAT}"] == 0.0
    changed = any(
        not torch.equal(p, before[n]) for n, p in policy.model.named_parameters() if p.requires_grad
    )
    assert changed


def test_cli_train_on_a_factory_shows_the_penalty_on_its_own_scale(maths_prompts, tmp_path):
    out = tmp_path / "run"
    code = morl_main(
        [
            "train", "--method", "morlhf", "--objectives", f"{REPEAT},{ACCURACY}",
            "--prompt-set", str(maths_prompts), "--steps", "1", "--batch-prompts", "2",
            "--k-samples", "2", "--max-new-tokens", "4", "--n-preferences", "2",
            "--eval-prompts", "2", "--device", "cpu", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["objectives"] == [REPEAT, ACCURACY]  # a resume rebuilds the same factory
    front = [json.loads(line) for line in (out / "front.jsonl").read_text().splitlines()][-1]
    points = np.array(front["points"])  # raw scale: the penalty in [-1, 0], not mapped to [0, 1]
    assert ((points[:, 0] <= 0) & (points[:, 0] >= -1)).all()


# --- our objectives as TRL reward functions ---


def test_every_builtin_objective_takes_grpo_trainers_call():
    prompts = ["Describe the park.", "Say something."] * 2
    texts = ["A quiet green park with tall trees.", "Hello there, friend!"] * 2
    chat_prompts = [[{"role": "user", "content": p}] for p in prompts]
    chat_completions = [[{"role": "assistant", "content": t}] for t in texts]
    extra = {
        "trainer_state": TrainerState(1, 2),
        "log_extra": lambda *a: None,
        "log_metric": lambda *a: None,
        "solution": ["1"] * 4,  # a data set column
    }
    for name, objective in OBJECTIVES.items():
        plain = objective.fn(
            prompts=prompts, completions=texts, completion_ids=[[1, 2]] * 4, **extra
        )
        chat = objective.fn(
            prompts=chat_prompts, completions=chat_completions, completion_ids=[[1, 2]] * 4, **extra
        )
        assert len(plain) == 4 and all(isinstance(v, float) for v in plain), name
        assert chat == plain, name  # the same text in TRL's conversational format
        assert all(0.0 <= v <= 1.0 for v in plain), name


def test_builtin_objectives_train_one_step_of_trls_grpo_trainer(tmp_path):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from morl_core.policy import embedded_model_path

    hf_logging.set_verbosity_error()
    path = str(embedded_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    names = [n for n, o in OBJECTIVES.items() if o.kind in ("real", "synthetic")]
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[OBJECTIVES[name].fn for name in names],
        args=GRPOConfig(
            output_dir=str(tmp_path),
            num_generations=2,
            per_device_train_batch_size=2,
            max_completion_length=4,
            max_steps=1,
            use_cpu=True,
            bf16=False,  # fp32 on CPU, as the embedded model is loaded
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1,
        ),
        train_dataset=Dataset.from_dict({"prompt": ["Tell me about the sea.", "Hello,"]}),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
            fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2",
        ),
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    for name in names:
        key = f"rewards/{OBJECTIVES[name].fn.__name__}/mean"
        assert key in logged and 0.0 <= logged[key] <= 1.0, key


def test_a_failing_reward_fails_a_job_with_one_line_in_status_and_log(tmp_path, monkeypatch):
    from morl_core.jobs import LocalExecutor, RunState
    from tests.jobs_support import stop_all, wait_for, worker_env

    (tmp_path / "job_rewards.py").write_text(
        "def broken(prompts, completions, **kwargs):\n    raise KeyError('content')\n"
    )
    worker_env(monkeypatch)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{__import__('os').environ['PYTHONPATH']}")
    executor = LocalExecutor(tmp_path / "data", heartbeat_timeout=30, max_retries=0)
    try:
        config = RunConfig.from_dict(
            {
                "objectives": ["job_rewards:broken", "sentiment"],
                "steps": 1,
                "n_preferences": 2,
                "batch_prompts": 1,
                "k_samples": 2,
                "max_new_tokens": 2,
                "device": "cpu",
            }
        )
        run_id = executor.submit(config)
        status = wait_for(lambda: (s := executor.status(run_id)).done and s, 120)
        line = "objective 'job_rewards:broken' failed: broken() raised KeyError: 'content'"
        assert status.state == RunState.FAILED and status.message == line
        log, _ = executor.logs(run_id)
        assert line in log and "Traceback" not in log
    finally:
        stop_all(executor)


def test_the_train_form_offers_trl_rewards_behind_the_allow_list(monkeypatch):
    from morl_core.app import catalog, runs

    class Recorder:  # stands in for the job system: keeps what would be submitted
        def submit(self, config):
            self.config = config
            return "run-1"

    monkeypatch.delenv("MORL_ALLOWED_IMPORTS", raising=False)
    monkeypatch.delenv(settings.UI_ALLOW_IMPORT, raising=False)
    monkeypatch.delenv(settings.UI_IMPORTED_OBJECTIVES, raising=False)
    assert REPEAT in catalog.ui_objectives() and "sentiment" in catalog.ui_objectives()
    recorder = Recorder()
    runs.submit_run({"objectives": [REPEAT, "sentiment"]}, executor=recorder)
    assert recorder.config.objectives == (REPEAT, "sentiment")
    runs.submit_run({"objectives": f"{ACCURACY},sentiment"}, executor=recorder)  # typed, allowed
    with pytest.raises(ConfigError, match="objectives: not offered here: \\['os:system'\\]"):
        runs.submit_run({"objectives": ["os:system", "sentiment"]}, executor=recorder)
    monkeypatch.setenv("MORL_ALLOWED_IMPORTS", "")  # the operator allows no imports at all
    assert REPEAT not in catalog.ui_objectives()
    with pytest.raises(ConfigError, match="not offered here"):
        runs.submit_run({"objectives": [REPEAT, "sentiment"]}, executor=recorder)


def test_front_bounds_put_each_objective_on_its_own_scale(probe_module):
    from morl_core.objectives import front_bounds

    words = "probe_rewards:words"
    records = [
        {f"range_low/{words}": 1.0, f"range_high/{words}": 7.0},
        {f"range_low/{words}": 0.5, f"range_high/{words}": 6.0},  # a later stage learned its own
        {"reward/sentiment": 0.5},
    ]
    low, high = front_bounds([REPEAT, "sentiment", words], records)
    assert low.tolist() == [-1.0, 0.0, 0.5] and high.tolist() == [0.0, 1.0, 7.0]
    assert front_bounds([words])[0].tolist() == [0.0]  # nothing learned yet: [0, 1]
