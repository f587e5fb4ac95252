"""The word-list guard: replies in made-up words fail it, ordinary replies pass.

The lexical fluency gate takes any letter string with vowels for a word, so a SmolLM2 brevity
expert trained at a small KL coefficient answered in made-up words ("Zomhool!") at gate 1. The
``"wordlist"`` guard checks words against an English word list; these tests keep it on both
sides of that line, on real model replies.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.objectives import degeneration as guard
from morl_core.objectives.degeneration import (
    UNKNOWN_WORD_RAMP,
    guarded_fluency,
    is_english_word,
    unknown_word_ratio,
    wordlist_gate,
)
from morl_core.objectives.lexical import fluency_gate
from morl_core.objectives.models import relevance
from morl_core.policy import attach_lora, load_policy
from morl_core.rl import trainer as trainer_module

EXPLOIT = "Zomhool! the itineradul hikal"
PLAIN = "Pack water, a map and warm clothes for a weekend of hiking."
QUESTION = "What should I pack for a weekend hike?"
FRAGMENT = "Proud of yourself."  # real words, no answer: a brevity expert at beta 0.05 wrote it
DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"

# SmolLM2-135M-Instruct's own replies to assistant prompts at the training decoding
# (temperature 1, 32 tokens): names and rare words ("Duolingo", "fleam", "krine") included.
SMOLLM2_REPLIES = [
    "4 to 7 days of sleep is just about 3 to 4 hours per night. So, in ideal conditions, an "
    "adult needs about 3.",
    "The changing of leaves in autumn is not just a mere little fleam; it's a natural phenomenon "
    "that is tied to the cyclical life cycle of a leaf.",
    "Learning new words in a foreign language requires patience, dedication, and language "
    "learning apps such as Duolingo or Babbel. However, immersing yourself in the language",
    "I'm sorry for any mistake. It seems you encountered a phone error pop-up via SMS. Don't "
    "worry, I'll have you back as soon as",
    "The simple, seemingly overused answer. Cats purr (krine!) to emit a consistent, even sound "
    "when in need. Puppies and kittens purr",
    'The "getting your hands dirty" idiom originated in the Philippines, where melon is a fruit '
    "that grows on the vine Musa at a molecular level. Chewing",
    "The sea is home to an enormous variety of creatures and is home to an enormous variety of "
    "mantis.\n\nThe UK marine ecosystem, home to nearly",
    "Bread goes stale because of the way the bread is baked. Bread is made with flour, water, "
    "salt, yeast, and a starter, which is",
    "As a services-focused AI, I'm committed to providing online support and optimizing the "
    "seamless travel experience. Here's a few tricks to help you sleep better when",
]
# Its brevity expert at KL coefficient 0.05 (step 59): short replies in made-up words.
SMOLLM2_EXPLOITS = [
    "TenGeez.",
    "Bouncerman rats.",
    "Adventure Anecdeth",
    "Namiko, dispával!",
    "PwhichdeyMesh (Hijboja)\ncheckamALLSmollcron",
]


def test_made_up_words_are_flagged_and_a_plain_sentence_is_not():
    assert fluency_gate(EXPLOIT) == 1.0  # what the lexical gate alone let through
    assert unknown_word_ratio(EXPLOIT) == 0.75
    assert wordlist_gate(EXPLOIT) == 0.0
    assert unknown_word_ratio(PLAIN) == 0.0
    assert wordlist_gate(PLAIN) == 1.0


def test_real_smollm2_replies_pass_and_its_exploits_fail():
    for reply in SMOLLM2_REPLIES:
        assert unknown_word_ratio(reply) <= UNKNOWN_WORD_RAMP[0] / 2, reply
        assert wordlist_gate(reply) == fluency_gate(reply) == 1.0, reply
    for reply in SMOLLM2_EXPLOITS:
        assert fluency_gate(reply) == 1.0, reply
        assert unknown_word_ratio(reply) >= UNKNOWN_WORD_RAMP[1], reply
        assert wordlist_gate(reply) == 0.0, reply


def shipped_lattices(embedded: bool) -> list[Path]:
    """The shipped demos' precomputed Steer replies, of the embedded model's demos or the others."""
    return [
        path
        for path in sorted(DEMO_DIR.glob("*/lattice.json"))
        if (json.loads((path.parent / "config.json").read_text()).get("model") == "embedded")
        == embedded
    ]


def texts(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list | dict):
        for item in node.values() if isinstance(node, dict) else node:
            yield from texts(item)


def test_the_embedded_models_demo_replies_pass():
    replies = {
        text
        for lattice in shipped_lattices(embedded=True)
        for text in texts(json.loads(lattice.read_text())["methods"])
        if any(c.isalpha() for c in text)
    }
    assert len(replies) > 100
    gates = guarded_fluency(sorted(replies), "wordlist")
    np.testing.assert_array_equal(gates, guarded_fluency(sorted(replies), "lexical"))


@pytest.mark.parametrize(
    ("word", "known"),
    [
        ("Itineraries", True),  # plural of a listed word
        ("immerse", True),  # only "immersed" and "immersion" are listed
        ("running", True),  # doubled consonant
        ("shouldn't", True),
        ("café", True),  # accent
        ("smartwatch", True),  # compound of two listed words
        ("unpackable", True),  # prefix and suffix
        ("Zomhool", False),
        ("itineradul", False),
        ("hikal", False),
        ("snickerdosh", False),
        ("Bouncerman", False),  # no compound: "bouncer" + "man" has a 3-letter half
    ],
)
def test_word_forms(word, known):
    assert is_english_word(word) is known


def test_the_ramp_and_what_is_not_counted():
    assert unknown_word_ratio("Ask Zomhool about the map.") == 0.2  # one name in five words
    assert wordlist_gate("Ask Zomhool about the map.") == 1.0
    assert wordlist_gate("Ask Zomhool kindly.") == pytest.approx((0.5 - 1 / 3) / 0.25)
    assert wordlist_gate("Ask Zomhool.") == 0.0
    # digits and short acronyms are not words to check; a text without words scores 0 unknown
    assert unknown_word_ratio("Call 911 or text SMS to 4242.") == 0.0
    assert unknown_word_ratio("42") == 0.0
    assert wordlist_gate("") == 0.0  # the lexical gate's verdicts stand


def test_the_report_and_the_penalty_follow_the_guard():
    texts = [PLAIN, EXPLOIT, "....."]
    report = guard.degeneration(["Hi"] * 3, texts, with_perplexity=False)
    np.testing.assert_allclose(report["unknown_words"], [0.0, 0.75, 0.0])
    np.testing.assert_allclose(report["fluency"], [1.0, 1.0, 0.0])  # lexical by default
    strict = guard.degeneration(["Hi"] * 3, texts, with_perplexity=False, guard="wordlist")
    np.testing.assert_allclose(strict["fluency"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(
        guard.degeneration_penalty(["Hi"] * 3, texts, guard="wordlist"), [0.0, 1.0, 1.0]
    )
    with pytest.raises(ValueError, match="guard must be one of lexical, wordlist, got 'words'"):
        guard.degeneration(["Hi"], [PLAIN], with_perplexity=False, guard="words")


@pytest.mark.parametrize(("fluency_guard", "fluency"), [("lexical", 1.0), ("wordlist", 0.0)])
def test_the_trainer_penalises_made_up_words_under_the_wordlist_guard(
    monkeypatch, fluency_guard, fluency
):
    config = RunConfig.from_dict(
        {
            "objectives": ["brevity", "sentiment"],
            "batch_prompts": 1,
            "k_samples": 2,
            "max_new_tokens": 4,
            "fluency_penalty": 1.0,
            "fluency_guard": fluency_guard,
            "device": "cpu",
        }
    )
    policy = load_policy("embedded", device="cpu", threads=1)
    torch.manual_seed(0)
    attach_lora(policy, r=2, alpha=4)
    rewards_seen = []

    def made_up_replies(policy, rollout, prompts, k, objectives, columns, state):
        return [EXPLOIT] * k, None, np.full((k, len(objectives)), 0.5)

    def seen(rewards, *args):
        rewards_seen.append(rewards.tolist())
        return shaped(rewards, *args)

    shaped = trainer_module.kl_shaped_rewards
    monkeypatch.setattr(trainer_module, "score_rollout", made_up_replies)
    monkeypatch.setattr(trainer_module, "kl_shaped_rewards", seen)
    rl = trainer_module.RLTrainer(policy, config, ["The hotel was"], seed=0)
    metrics, _ = rl.step([1.0, 0.0])
    assert metrics["fluency"] == fluency
    # the scalarised reward 0.5, less fluency_penalty * (1 - fluency)
    assert rewards_seen == [[0.5 - (1.0 - fluency)] * 2]


# Base SmolLM2 at the Steer decoding (temperature 1, top-p 0.9, 32 tokens) writes a made-up word
# now and then: 1 of 384 of its replies to the 8 example prompts failed the word-list guard
# ("Lindenakeskold-FoulshinT_...", seeds 100-111, 2026-12-05). So a demo is held to every reply
# at the ends of its front (what a reader compares) and, elsewhere, to a share an exploit far
# exceeds (it makes made-up words the rule) but one such draw in a 176-reply lattice does not.
MAX_UNFLUENT_SHARE = 0.01
# "A reader can tell which objective was favoured": at the end of objective i its mean score is
# above its mean at every other end by more than this many standard errors of the difference
# (16 lattice replies per point; 2 is about a one-sided 2.5 % chance from noise alone).
MIN_END_SEPARATION = 2.0
# "None of them is an exploit": a reply that does not answer passes the word-list guard (a
# SmolLM2 brevity expert at beta 0.05 wrote "Honesty." and "Proud of yourself." to a damaged
# order: 7 of 12 replies such fragments), so the bar also reads relevance to the question
# (MiniLM cosine). 6 of those 7 fragments score 0.0-0.11, its other 5 replies 0.26-0.81.
# SmolLM2 wanders off a question now and then at this decoding: every shipped demo has 0-3 of
# its 176 lattice replies below the floor, at most 1 of the 16 at an end. An end fails when more
# than a quarter of its replies fall below the floor.
RELEVANCE_FLOOR = 0.15
MAX_OFF_TOPIC_SHARE_AT_AN_END = 0.25


def lattice_problems(data: dict) -> list[str]:
    """Why a lattice's replies fail the demo bar (empty when they pass): an empty reply, a reply
    at an end of the front that fails the word-list guard, more than ``MAX_UNFLUENT_SHARE`` of
    all replies failing it, an end where more than ``MAX_OFF_TOPIC_SHARE_AT_AN_END`` of the
    replies do not answer the question (relevance below ``RELEVANCE_FLOOR``), or, for a method
    the sliders steer, an end where its favoured objective does not score higher than at each
    other end by ``MIN_END_SEPARATION`` standard errors."""
    k, problems = len(data["objectives"]), []
    ends = [next(q for q, w in enumerate(data["preferences"]) if w[i] == 1.0) for i in range(k)]
    for method, found in data["methods"].items():
        replies = found["replies"]  # [prompt][preference][sample] = [text, scores]
        flat = [r for per_prompt in replies for per_point in per_prompt for r in per_point]
        problems += [
            f"{method}: empty reply" for text, _ in flat if not any(map(str.isalpha, text))
        ]
        at_ends = [r[0] for per_prompt in replies for q in ends for r in per_prompt[q]]
        problems += [
            f"{method}: made-up words at an end: {text!r}"
            for text, gate in zip(at_ends, guarded_fluency(at_ends, "wordlist"), strict=True)
            if gate < 1
        ]
        share = float((guarded_fluency([t for t, _ in flat], "wordlist") < 1).mean())
        if share > MAX_UNFLUENT_SHARE:
            problems.append(f"{method}: {share:.1%} of the replies fail the word-list guard")
        for i, q in enumerate(ends):
            asked = [
                data["prompts"][p] for p, per_prompt in enumerate(replies) for _ in per_prompt[q]
            ]
            said = [r[0] for per_prompt in replies for r in per_prompt[q]]
            off = [
                t for t, v in zip(said, relevance(asked, said), strict=True) if v < RELEVANCE_FLOOR
            ]
            if len(off) > MAX_OFF_TOPIC_SHARE_AT_AN_END * len(said):
                problems.append(
                    f"{method}: {len(off)} of {len(said)} replies at the {data['objectives'][i]} "
                    f"end do not answer the question (relevance < {RELEVANCE_FLOOR}): {off[0]!r}"
                )
        if not METHODS[method].steers:
            continue  # one policy for every preference (DynaOpt): its ends are alike by design
        scores = [np.array([r[1] for per_prompt in replies for r in per_prompt[q]]) for q in ends]
        for i in range(k):  # scores[e]: (replies, objective) at the end of objective e
            for j in sorted(set(range(k)) - {i}):
                mine, other = scores[i][:, i], scores[j][:, i]
                gap = mine.mean() - other.mean()
                se = np.sqrt(mine.var(ddof=1) / mine.size + other.var(ddof=1) / other.size)
                if not gap > MIN_END_SEPARATION * se:
                    problems.append(
                        f"{method}: {data['objectives'][i]} at its end is not told apart from "
                        f"the {data['objectives'][j]} end ({gap:+.3f}, standard error {se:.3f})"
                    )
    return problems


@pytest.mark.parametrize("lattice", shipped_lattices(embedded=False), ids=lambda p: p.parent.name)
def test_a_larger_models_demo_replies_are_sentences_that_favour_the_chosen_objective(lattice):
    """No reply at an end of a shipped SmolLM2 demo's front is an exploit (made-up words,
    empty), made-up words stay as rare as the base model's, at most a quarter of an end's
    replies miss the question, and at each end the favoured objective scores higher than at
    the other ends by two standard errors."""
    assert lattice_problems(json.loads(lattice.read_text())) == []


def test_the_demo_bar_refuses_exploits_and_ends_a_reader_cannot_tell_apart():
    """The bar of the test above on a made lattice: a clean one passes; ends closer than the
    noise fail; one made-up reply at an end fails; one in the middle passes; made-up words in
    2.5 % of the replies fail; fragments that do not answer fail at an end when more than a
    quarter of its replies are such, not when a few are. A method that trains one policy
    (DynaOpt) has alike ends by design: only its replies are held to the bar."""
    objectives, preferences = ["formality", "readability"], [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    prompts = 40  # x 3 preferences: 120 replies
    noise = np.random.default_rng(0).normal(0.0, 0.05, (prompts, 3, 2))

    def lattice(
        bad: set[tuple[int, int]],
        gap: float = 0.2,
        method: str = "soups",
        terse: set[tuple[int, int]] = frozenset(),
    ) -> dict:
        """Each end favours its objective by ``gap``; ``bad``: (prompt, preference) made up;
        ``terse``: (prompt, preference) a fragment that does not answer."""
        favoured = np.array([[gap, 0.0], [0.0, 0.0], [0.0, gap]])
        text = {True: EXPLOIT, False: PLAIN}
        replies = [
            [
                [
                    [
                        FRAGMENT if (p, q) in terse else text[(p, q) in bad],
                        (0.5 + favoured[q] + noise[p, q]).tolist(),
                    ]
                ]
                for q in range(3)
            ]
            for p in range(prompts)
        ]
        return {"objectives": objectives, "preferences": preferences,
                "prompts": [QUESTION] * prompts,
                "methods": {method: {"replies": replies}}}  # fmt: skip

    assert lattice_problems(lattice(set())) == []
    close = lattice_problems(lattice(set(), gap=0.005))  # 0.005 apart under noise of 0.05
    assert len(close) == 2 and all("not told apart" in problem for problem in close)
    assert lattice_problems(lattice({(0, 1)})) == []  # 1 of 120, in the middle
    (problem,) = lattice_problems(lattice({(0, 0)}))
    assert "made-up words at an end" in problem
    (problem,) = lattice_problems(lattice({(p, 1) for p in range(3)}))
    assert "2.5% of the replies" in problem
    assert lattice_problems(lattice(set(), gap=0.0, method="dynaopt")) == []
    (problem,) = lattice_problems(lattice({(0, 0)}, gap=0.0, method="dynaopt"))
    assert "made-up words at an end" in problem
    assert lattice_problems(lattice(set(), terse={(p, 2) for p in range(10)})) == []  # 10 of 40
    (problem,) = lattice_problems(lattice(set(), terse={(p, 2) for p in range(11)}))
    assert "11 of 40 replies at the readability end do not answer" in problem
