"""Objectives: input/expected tables, the (N, K) matrix, synthetic fronts, registry and bad input.

Runs offline. MiniLM (relevance) loads once for the module through the ``scorers`` fixture; the
doctests of every objectives module run here too, so plain ``pytest`` covers them.
"""

import doctest
import importlib
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import morl_core.objectives as objectives
from morl_core.objectives import (
    OBJECTIVES,
    SYNTHETIC_PAIRS,
    Objective,
    compose_text,
    describe,
    register,
    sample_texts,
    score,
    true_front,
)
from morl_core.objectives.lexical import count_syllables
from morl_core.objectives.registry import LazyResource

REAL = ["sentiment", "nontoxic", "readability", "brevity", "diversity", "relevance", "formality"]
SYNTHETIC = [name for name in OBJECTIVES if name.startswith("synth_")]


@pytest.fixture(scope="module", autouse=True)
def scorers():
    """Pins torch to one thread and loads every real scorer once for the module."""
    import torch

    torch.set_num_threads(1)
    objectives.prepare(REAL)


def one(name: str, prompt: str, completion: str, **kwargs) -> float:
    return float(score([name], [prompt], [completion], **kwargs)[0, 0])


# --- input/expected tables ---

BETTER_WORSE = [
    # (objective, prompt, better completion, worse completion)
    (
        "sentiment",
        "How was it?",
        "It was wonderful, thank you so much!",
        "It was awful and I hate it.",
    ),
    ("sentiment", "Review:", "A delightful, warm film.", "A dull, miserable mess."),
    ("nontoxic", "Reply:", "You are a lovely person.", "Shut up, you stupid idiot."),
    ("nontoxic", "Reply:", "Thanks for your help today.", "You are a worthless moron."),
    (
        "readability",
        "Explain.",
        "The cat sat on the mat. It was warm.",
        "Notwithstanding considerable institutional heterogeneity, organisational "
        "accountability mechanisms necessitate comprehensive evaluation.",
    ),
    ("brevity", "Answer briefly.", "Yes, it works.", " ".join(["word"] * 60)),
    ("diversity", "Go on.", "The quick brown fox jumps over the lazy dog.", "no no no no no no no"),
    (
        "relevance",
        "How do I bake bread?",
        "Mix flour, water and yeast, then bake it.",
        "The stock market fell sharply today.",
    ),
    (
        "relevance",
        "What is the capital of France?",
        "Paris is the capital of France.",
        "I like turtles.",
    ),
    (
        "formality",
        "Write to the client.",
        "We would appreciate a response regarding the proposed agreement.",
        "hey dude, u gonna answer or what lol",
    ),
    (
        "formality",
        "Describe the result.",
        "The results indicate a significant improvement in performance.",
        "omg it's sooo awesome!!! you'll love it",
    ),
]


@pytest.mark.parametrize(("name", "prompt", "better", "worse"), BETTER_WORSE)
def test_better_completion_scores_higher(name, prompt, better, worse):
    assert one(name, prompt, better) > one(name, prompt, worse)


EXACT = [
    # (objective, completion, kwargs, expected)
    ("sentiment", "The table is brown.", {}, 0.5),  # VADER neutral -> 0.5
    ("readability", "The cat sat on the mat.", {}, 1.0),  # FRE 116 clipped to 100
    ("brevity", "one two three", {"target_words": 3}, 1.0),
    ("brevity", "one two three four five six", {"target_words": 3}, 0.5),
    ("brevity", " ".join(f"w{i}" for i in range(16)), {}, 0.5),  # default target 8 words
    ("diversity", "a b c d", {}, 1.0),
    ("diversity", "a a a a a", {"max_n": 1}, 0.2),
    ("synth_nature", "tree river car road", {}, 0.5),
    ("synth_nature_convex", "tree car road road", {}, 0.5),
    ("synth_nature_nonconvex", "tree river car road", {}, 0.25),
]


@pytest.mark.parametrize(("name", "completion", "kwargs", "expected"), EXACT)
def test_exact_values(name, completion, kwargs, expected):
    assert one(name, "Prompt.", completion, **kwargs) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("word", "syllables"),
    [
        ("cat", 1),
        ("make", 1),
        ("table", 2),
        ("people", 2),
        ("jumped", 1),
        ("wanted", 2),
        ("beautiful", 3),
        ("readability", 5),
        ("the", 1),
        ("rhythm", 1),
        ("banana", 3),
    ],
)
def test_syllable_heuristic(word, syllables):
    assert count_syllables(word) == syllables


@pytest.mark.parametrize("name", REAL + SYNTHETIC)
def test_empty_completion_scores_zero(name):
    assert one(name, "Say something.", "   ") == 0.0


def test_conversational_format_matches_plain_strings():
    prompts = [[{"role": "user", "content": "How do I bake bread?"}]]
    completions = [[{"role": "assistant", "content": "Mix flour and water, then bake."}]]
    conversational = score(REAL, prompts, completions)
    plain = score(REAL, ["How do I bake bread?"], ["Mix flour and water, then bake."])
    np.testing.assert_allclose(conversational, plain)


# --- the (N, K) matrix ---

MIXED = [
    ("Tell me a story.", "Once upon a time a fox lived in a quiet forest."),
    ("Rate the film.", "Terrible!!! Worst movie ever, total garbage."),
    ("Hi", ""),
    ("Hi", "ok"),
    ("Explain gravity.", "Gravity is the attraction between masses. " * 30),
    ("Unicode?", "Café naïve — 東京 🙂 ümlaut"),
    ("Numbers", "3.14159 2.71828 1.41421"),
]


def test_matrix_shape_and_range():
    prompts, completions = zip(*MIXED, strict=True)
    names = REAL + SYNTHETIC
    rewards = score(names, list(prompts), list(completions))
    assert rewards.shape == (len(MIXED), len(names))
    assert rewards.dtype == np.float64
    assert np.all((rewards >= 0.0) & (rewards <= 1.0))


def test_names_as_comma_string_and_column_order():
    both = score("brevity, synth_nature", ["p"], ["tree car"])
    swapped = score(["synth_nature", "brevity"], ["p"], ["tree car"])
    np.testing.assert_array_equal(both, swapped[:, ::-1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=1, max_size=4))
def test_lexical_and_synthetic_stay_in_range(texts):
    names = ["readability", "brevity", "diversity", "formality", *SYNTHETIC]
    rewards = score(names, ["p"] * len(texts), texts)
    assert rewards.shape == (len(texts), len(names))
    assert np.all((rewards >= 0.0) & (rewards <= 1.0))


def test_describe_rows():
    rows = describe()
    assert [row.name for row in rows] == list(OBJECTIVES)
    assert {row.kind for row in describe("real")} == {"real"}
    # the built-in real objectives come first (held-out twins and fluency may follow)
    assert [row.name for row in describe("real")][: len(REAL)] == REAL
    assert all(row.range == "[0, 1]" and row.description and row.mapping for row in rows)
    with pytest.raises(ValueError, match="kind must be one of"):
        describe("fake")


# --- synthetic objectives reproduce their analytic fronts ---

CURVES = {
    "linear": lambda x, y: x + y,
    "convex": lambda x, y: x**2 + y**2,
    "nonconvex": lambda x, y: np.sqrt(x) + np.sqrt(y),
}


@pytest.mark.parametrize("pair_name", sorted(CURVES))
def test_conflicting_pair_texts_lie_on_the_analytic_front(pair_name):
    pair = SYNTHETIC_PAIRS[pair_name]
    rng = np.random.default_rng(0)
    n_words = 20
    texts = [compose_text([("nature", k), ("city", n_words - k)], rng) for k in range(n_words + 1)]
    points = score([pair.first, pair.second], ["p"] * len(texts), texts)  # (21, 2)
    front = pair.front(n_words + 1)  # t = k / 20, the same splits
    np.testing.assert_allclose(points, front, atol=1e-12)
    np.testing.assert_allclose(CURVES[pair_name](*points.T), 1.0, atol=1e-9)


@pytest.mark.parametrize("pair_name", sorted(CURVES))
def test_texts_with_filler_are_dominated_by_the_front(pair_name):
    pair = SYNTHETIC_PAIRS[pair_name]
    rng = np.random.default_rng(1)
    front = pair.front(2001)
    for _ in range(20):
        nature, city = rng.integers(0, 8, size=2)
        text = compose_text([("nature", nature), ("city", city), ("filler", 4)], rng)
        point = score([pair.first, pair.second], ["p"], [text])[0]
        assert np.any(np.all(front >= point - 1e-9, axis=1) & np.any(front > point, axis=1))


@pytest.mark.parametrize("pair_name", ["independent", "correlated"])
def test_overlapping_pairs_reach_the_ideal_point(pair_name):
    pair = SYNTHETIC_PAIRS[pair_name]
    np.testing.assert_array_equal(pair.front(), [[1.0, 1.0]])
    shared = "trees birds leaves flowers"  # plural living nature words: in every class used
    np.testing.assert_allclose(score([pair.first, pair.second], ["p"], [shared]), [[1.0, 1.0]])


def test_linear_scalarisation_misses_the_nonconvex_interior():
    weights = np.column_stack([np.linspace(0.01, 0.99, 99), 1 - np.linspace(0.01, 0.99, 99)])
    convex = SYNTHETIC_PAIRS["convex"].front(501)
    nonconvex = SYNTHETIC_PAIRS["nonconvex"].front(501)
    assert len(set(np.argmax(convex @ weights.T, axis=0))) > 50  # reaches the interior
    assert set(np.argmax(nonconvex @ weights.T, axis=0)) <= {0, 500}  # only the two ends


def test_relationships_show_in_sampled_texts():
    texts = sample_texts(300, np.random.default_rng(0))
    names = ["synth_nature", "synth_city", "synth_plural", "synth_living"]
    correlation = np.corrcoef(score(names, ["p"] * len(texts), texts).T)
    assert correlation[0, 1] < -0.7  # conflicting
    assert abs(correlation[0, 2]) < 0.15  # independent
    assert correlation[0, 3] > 0.5  # correlated


def test_true_front_rejects_non_synthetic_objectives():
    with pytest.raises(ValueError, match="not a word-class synthetic objective"):
        true_front("synth_nature", "sentiment")
    with pytest.raises(ValueError, match="at least 2"):
        true_front("synth_nature", "synth_city", n=1)


# --- registry ---


def test_register_rejects_duplicates_and_malformed_objectives():
    with pytest.raises(ValueError, match="already registered"):
        register(Objective("brevity", len, "duplicate", "none"))
    for bad_name in ["Bad Name", "1abc", "", "a" * 65, "dash-name"]:
        with pytest.raises(ValueError, match="name"):
            Objective(bad_name, len, "desc", "map")
    with pytest.raises(ValueError, match="callable"):
        Objective("fine_name", "not a function", "desc", "map")
    with pytest.raises(ValueError, match="description"):
        Objective("fine_name", len, "two\nlines", "map")
    with pytest.raises(ValueError, match="kind"):
        Objective("fine_name", len, "desc", "map", kind="magic")
    with pytest.raises(ValueError, match="takes an Objective"):
        register(len)


def test_register_adds_a_usable_objective():
    def constant(prompts, completions, **kwargs):
        return [0.25] * len(completions)

    try:
        register(Objective("test_constant", constant, "always a quarter", "0.25"))
        np.testing.assert_array_equal(
            score(["test_constant"], ["a", "b"], ["c", "d"]), [[0.25]] * 2
        )
    finally:
        OBJECTIVES.pop("test_constant", None)


# --- objectives by dotted path ---


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            '''
            def length_reward(prompts, completions, **kwargs):
                """Number of characters in the completion."""
                return [float(len(c)) for c in completions]

            def sometimes_none(prompts, completions, **kwargs):
                return [None if c == "skip" else 1.0 for c in completions]

            def wrong_count(prompts, completions, **kwargs):
                return [1.0]

            NOT_CALLABLE = 3
            '''
        )
    )
    (tmp_path / "broken_rewards.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    for name in ("my_rewards", "broken_rewards"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("path", ["my_rewards:length_reward", "my_rewards.length_reward"])
def test_dotted_path_objective(reward_module, path):
    rewards = score([path, "brevity"], ["p", "p"], ["abc", "hello"])
    np.testing.assert_array_equal(rewards[:, 0], [3.0, 5.0])
    assert objectives.resolve(path).description == "Number of characters in the completion."


def test_dotted_path_none_becomes_nan(reward_module):
    rewards = score(["my_rewards:sometimes_none"], ["p", "p"], ["skip", "keep"])
    assert np.isnan(rewards[0, 0]) and rewards[1, 0] == 1.0


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz:fn", "cannot import objective"),
        ("my_rewards:missing", "has no 'missing'"),
        ("my_rewards:NOT_CALLABLE", "not callable"),
        ("broken_rewards:fn", "RuntimeError: boom"),
        ("my_rewards:", "is not 'package.module:function'"),
        ("my_rewards:wrong_count", "returned 1 values for 2 completions"),
    ],
)
def test_dotted_path_errors(reward_module, path, message):
    with pytest.raises(ValueError, match=message):
        score([path], ["p", "p"], ["a", "b"])


def test_dotted_path_refused_when_imports_are_off(reward_module):
    with pytest.raises(ValueError, match="allow_import=False"):
        score(["my_rewards:length_reward"], ["p"], ["a"], allow_import=False)
    with pytest.raises(ValueError, match="allow_import=False"):
        objectives.prepare(["my_rewards:length_reward"], allow_import=False)


# --- bad input ---

BAD_INPUTS = [
    # (names, prompts, completions, kwargs, message)
    (["sentimnt"], ["p"], ["c"], {}, r"unknown objective 'sentimnt'; available: sentiment, "),
    ([], ["p"], ["c"], {}, "names is empty"),
    (["brevity", "brevity"], ["p"], ["c"], {}, "repeats brevity"),
    (["brevity"], [], [], {}, "prompts is empty"),
    (["brevity"], ["p"], [], {}, "completions is empty"),
    (["brevity"], ["p", "q"], ["c"], {}, "completions has 1 items but prompts has 2"),
    (["brevity"], "a prompt", ["c"], {}, "prompts must be a list of strings, got a single string"),
    (["brevity"], ["p", 3], ["c", "d"], {}, r"prompts\[1\] must hold strings"),
    (["brevity"], ["p"], [None], {}, r"completions\[0\] must hold strings"),
    (["brevity"], ["p"], ["c"], {"target_words": 0}, r"target_words must be an integer in \[1, "),
    (["brevity"], ["p"], ["c"], {"target_words": 10**6}, "target_words must be an integer in"),
    (["diversity"], ["p"], ["c"], {"max_n": 0}, r"max_n must be an integer in \[1, 8\]"),
]


@pytest.mark.parametrize(("names", "prompts", "completions", "kwargs", "message"), BAD_INPUTS)
def test_bad_input_raises_value_error_naming_the_field(
    names, prompts, completions, kwargs, message
):
    with pytest.raises(ValueError, match=message):
        score(names, prompts, completions, **kwargs)


# --- loading: once, thread-safe, with progress ---


def test_lazy_resource_loads_once_under_concurrent_first_use():
    calls = []

    def loader(step):
        calls.append(1)
        time.sleep(0.05)
        step("a")
        step("b")
        return object()

    resource = LazyResource("test", loader, steps=2, show_bar=False)
    results = []
    threads = [threading.Thread(target=lambda: results.append(resource.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_lazy_resource_reports_progress_and_retries_after_failure():
    attempts = []

    def loader(step):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk hiccup")
        step("weights")
        return "model"

    resource = LazyResource("test", loader, steps=1, show_bar=False)
    with pytest.raises(OSError):
        resource.get()
    assert not resource.loaded
    seen = []
    assert resource.get(progress=lambda message, fraction: seen.append(fraction)) == "model"
    assert seen == [0.0, 1.0] and resource.loaded


def test_first_load_of_minilm_reports_progress():
    from morl_core.objectives import models

    models.MINILM.reset()
    seen = []
    objectives.prepare(["relevance"], progress=lambda message, fraction: seen.append(fraction))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_relevance_is_thread_safe():
    prompts = ["How do I bake bread?", "What is the capital of France?"] * 4
    completions = ["Mix flour and water.", "Paris.", "Stocks fell.", "I like turtles."] * 2
    expected = score(["relevance"], prompts, completions)
    results = [None] * 6

    def work(i):
        results[i] = score(["relevance", "sentiment", "nontoxic"], prompts, completions)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_allclose(result[:, 0], expected[:, 0], atol=1e-6)


def test_import_is_light():
    code = (
        "import sys, morl_core.objectives; "
        "print([m for m in ('torch', 'sentence_transformers', 'profanity_check', 'sklearn', "
        "'vaderSentiment', 'streamlit') if m in sys.modules])"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"


# --- doctests ---

MODULES = [
    "registry",
    "specs",
    "lexical",
    "models",
    "synthetic",
    "scoring",
    "degeneration",
    "heldout",
]


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(f"morl_core.objectives.{module}"))
    assert result.failed == 0 and result.attempted > 0


# --- built-in objectives with settings: "brevity(target_words=20)" ---

FIFTEEN_WORDS = "The museum opens at nine and closes at five, so come early to see everything."


def test_a_setting_in_the_name_is_bound_to_the_builtin_function():
    from morl_core.objectives.lexical import DEFAULT_TARGET_WORDS, fluency_gate, words_of

    n, gate = len(words_of(FIFTEEN_WORDS)), fluency_gate(FIFTEEN_WORDS)
    assert (n, gate) == (15, 1.0)  # the definition below needs exactly this reply
    rewards = score(["brevity(target_words=20)", "brevity"], ["p"], [FIFTEEN_WORDS])
    # brevity = min(1, target / n) * gate: 1 at target 20, 8/15 at the default target
    np.testing.assert_allclose(rewards[0], [min(1, 20 / n) * gate, DEFAULT_TARGET_WORDS / n])
    assert rewards[0, 0] == 1.0 and rewards[0, 1] < 1.0


def test_a_builtin_with_settings_keeps_the_base_objective_and_its_text():
    base = OBJECTIVES["brevity"]
    bound = objectives.resolve("brevity(target_words=20)")
    assert bound.spec == "brevity(target_words=20)" and bound.fn.keywords == {"target_words": 20}
    assert bound.fn.func is base.fn
    assert (bound.kind, bound.bounded, bound.known_bounds) == (base.kind, True, (0.0, 1.0))
    assert bound is objectives.resolve("brevity(target_words=20)")  # one object per text
    assert objectives.resolve("brevity(target_words=20)", allow_import=False) is bound
    assert "brevity(target_words=20)" not in OBJECTIVES  # nothing is registered
    assert [row.name for row in describe()] == list(OBJECTIVES)


def test_settings_in_a_comma_separated_name_list():
    both = score("brevity(target_words=3), diversity(max_n=1)", ["p"], ["one two three four five"])
    np.testing.assert_allclose(both, [[3 / 5, 1.0]])


def test_one_object_per_text_under_concurrent_first_use():
    text = "brevity(target_words=17)"  # a text no other test resolves
    found = [None] * 8

    def work(i):
        found[i] = objectives.resolve(text)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(found))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(objective is found[0] for objective in found)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("brevity(words=3)", ["'brevity(words=3)'", "no setting 'words'", "target_words"]),
        ("brevity(target_words=0)", ["'brevity(target_words=0)'", "target_words must be an"]),
        ("brevity(target_words=1001)", ["target_words must be an integer in [1, 1000]"]),
        ("brevity(target_words=2.5)", ["target_words must be an integer", "got 2.5"]),
        ("brevity(20)", ["settings must be named", "brevity(target_words=...)"]),
        ("brevity()", ["no settings given", "target_words"]),
        ("formality(x=1)", ["no setting 'x'", "formality takes no settings"]),
        ("nosuch(x=1)", ["unknown objective 'nosuch(x=1)'; available: sentiment"]),
        ("brevity(target_words=3", ["ending in ')'", "target_words"]),
        ("brevity(target_words=open('x'))", ["target_words", "is not a literal"]),
    ],
)
def test_a_bad_setting_names_the_objective_and_the_setting(text, parts):
    with pytest.raises(ValueError) as info:
        objectives.resolve(text)
    assert all(part in str(info.value) for part in parts), str(info.value)
    with pytest.raises(ValueError):
        score([text], ["p"], ["c"])


def test_objective_text_leaves_default_settings_out():
    from morl_core.objectives.registry import objective_text

    assert objective_text("brevity", target_words=8) == "brevity"
    assert objective_text("brevity", target_words=20) == "brevity(target_words=20)"
    assert objectives.resolve(objective_text("brevity", target_words=20)).fn.keywords == {
        "target_words": 20
    }
    with pytest.raises(ValueError, match="unknown objective 'nosuch'"):
        objective_text("nosuch", target_words=3)


def test_relevance_settings_are_bounded_and_checked_without_loading_minilm(monkeypatch):
    from morl_core.objectives import models

    def no_load(*args, **kwargs):
        raise AssertionError("MiniLM loaded to check a setting")

    monkeypatch.setattr(models.MINILM, "get", no_load)
    assert models.relevance([], [], batch_size=8) == []
    for bad in (0, models.MAX_EMBED_BATCH + 1, 2.5, True):
        with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 1024\]"):
            models.relevance(["q"], ["a"], batch_size=bad)
    with pytest.raises(ValueError, match="batch_size"):
        objectives.resolve("relevance(batch_size=100000)")


def test_an_objectives_adjective_is_a_few_lower_case_words_and_settings_keep_it():
    """RiC's tags in words write ``adjective``: one or two plain words, or none."""
    from morl_core.objectives.registry import Objective, resolve

    def made(adjective):
        return Objective("x", lambda p, c: [0.0] * len(c), "d", "m", adjective=adjective)

    assert made("on topic").adjective == "on topic" and made("").adjective == ""
    for bad in ("Formal", "formal!", "very\nformal", "x" * 25, " formal"):
        with pytest.raises(ValueError, match="adjective must be empty or lower-case words"):
            made(bad)
    assert resolve("brevity(target_words=15)").adjective == "short"
