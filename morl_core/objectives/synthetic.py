"""Synthetic objectives with controllable relationships and analytically known Pareto fronts.

Each synthetic objective is the *rate* of a word class in the completion (words of the class /
all words, lower-cased), raised to a power ``p``: ``value = rate ** p`` in [0, 1]. The words
come from a small grid vocabulary, theme (``nature`` / ``city``) x number (singular / plural),
plus filler words that belong to no class, so that a policy (or a test) controls every rate.

**Fronts.** For two objectives over word classes A and B (maximisation):

* A and B disjoint: the rates satisfy ``a + b <= 1`` and every split is reachable, so the true
  front is ``{(t ** p_A, (1 - t) ** p_B) : t in [0, 1]}``. With ``p = 1`` it is the line
  ``x + y = 1``; with ``p = 0.5`` the quarter circle ``x^2 + y^2 = 1`` (*convex*: the region
  under it is convex, and linear scalarisation reaches every point); with ``p = 2`` the curve
  ``sqrt(x) + sqrt(y) = 1`` (*non-convex*: linear scalarisation reaches only the two ends,
  Tchebycheff reaches all of it; MORL.md calls these the "concave parts" of a front).
* A and B overlap: a text made only of shared words scores 1 on both, so the front is the
  single ideal point ``(1, 1)``.

**Relationships.** Disjoint classes compete for the same word slots: *conflicting*. A class
nested in another (``living`` in ``nature``): *correlated*. Classes on crossing attributes of the
grid (theme ``nature`` vs number ``plural``): *independent* under a policy that picks theme and
number independently (``sample_texts`` does). Build more with ``word_class_objective`` and
``register``; ``true_front`` works for any two of them.

Registered: ``synth_nature``, ``synth_city`` (p = 1), ``synth_nature_convex``,
``synth_city_convex`` (p = 0.5), ``synth_nature_nonconvex``, ``synth_city_nonconvex`` (p = 2),
``synth_plural`` and ``synth_living`` (p = 1); ``SYNTHETIC_PAIRS`` names the five pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from morl_core.objectives.lexical import words_of
from morl_core.objectives.registry import OBJECTIVES, Objective, as_text

# --- vocabulary: theme x number grid, plus fillers in no class ---

NATURE = {
    "tree": "trees",
    "river": "rivers",
    "flower": "flowers",
    "mountain": "mountains",
    "forest": "forests",
    "bird": "birds",
    "cloud": "clouds",
    "stone": "stones",
    "leaf": "leaves",
    "lake": "lakes",
}
CITY = {
    "car": "cars",
    "street": "streets",
    "building": "buildings",
    "train": "trains",
    "office": "offices",
    "bridge": "bridges",
    "road": "roads",
    "shop": "shops",
    "machine": "machines",
    "tower": "towers",
}
LIVING = ("tree", "flower", "bird", "leaf")
FILLER_WORDS = ("and", "then", "with", "near", "the", "a", "was", "is", "very", "quiet")

WORD_CLASSES: dict[str, frozenset[str]] = {
    "nature": frozenset(NATURE) | frozenset(NATURE.values()),
    "city": frozenset(CITY) | frozenset(CITY.values()),
    "plural": frozenset(NATURE.values()) | frozenset(CITY.values()),
    "living": frozenset(LIVING) | frozenset(NATURE[word] for word in LIVING),
}


class WordClassRate:
    """TRL-style reward function ``(rate of words in the class) ** power`` (power > 0, lower-case
    words); ``name`` becomes ``__name__``, by which TRL logs reward functions."""

    def __init__(self, name: str, words: frozenset[str], power: float = 1.0) -> None:
        if not words or not all(isinstance(word, str) and word == word.lower() for word in words):
            raise ValueError(f"{name}: words must be a non-empty set of lower-case strings")
        if not power > 0:
            raise ValueError(f"{name}: power must be positive, got {power!r}")
        self.__name__ = name
        self.words = frozenset(words)
        self.power = float(power)

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        scores = []
        for completion in completions:
            words = [word.lower() for word in words_of(as_text(completion))]
            rate = sum(word in self.words for word in words) / len(words) if words else 0.0
            scores.append(rate**self.power)
        return scores


def word_class_objective(
    name: str, words: frozenset[str], power: float = 1.0, description: str | None = None
) -> Objective:
    """Builds (does not register) a synthetic objective ``rate(words) ** power``.

    Example:
        >>> objective = word_class_objective("synth_demo", frozenset({"tree"}), power=2.0)
        >>> objective.fn([""], ["tree tree car road"])
        [0.25]
    """
    shape = {0.5: "convex", 1.0: "linear", 2.0: "non-convex"}.get(power, f"power {power:g}")
    return Objective(
        name=name,
        fn=WordClassRate(name, words, power),
        description=description or f"synthetic: rate of {len(words)} class words ({shape})",
        mapping=f"(class words / all words) ** {power:g}; empty text scores 0",
        kind="synthetic",
    )


def true_front(first: str, second: str, n: int = 101) -> np.ndarray:
    """The analytic Pareto front (maximisation) of two registered word-class objectives: (n, 2)
    by increasing x (``first``), or ``[[1, 1]]`` when the classes overlap (one text maximises
    both). ``ValueError`` on another objective or n < 2.

    Example:
        >>> true_front("synth_nature", "synth_city", n=3)
        array([[0. , 1. ],
               [0.5, 0.5],
               [1. , 0. ]])
    """
    functions = []
    for name in (first, second):
        objective = OBJECTIVES.get(name)
        if objective is None or not isinstance(objective.fn, WordClassRate):
            synthetic = [k for k, v in OBJECTIVES.items() if isinstance(v.fn, WordClassRate)]
            raise ValueError(
                f"{name!r} is not a word-class synthetic objective; available: "
                + ", ".join(synthetic)
            )
        functions.append(objective.fn)
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    a, b = functions
    if a.words & b.words:
        return np.array([[1.0, 1.0]])
    t = np.linspace(0.0, 1.0, n)  # (n,) share of words in the first class
    return np.column_stack([t**a.power, (1.0 - t) ** b.power])  # (n, 2)


@dataclass(frozen=True)
class SyntheticPair:
    """Two synthetic objectives (x, y) with a known relationship and front."""

    first: str
    second: str
    relationship: str  # conflicting, independent or correlated
    shape: str  # linear, convex, non-convex or point (the ideal is reachable)

    def front(self, n: int = 101) -> np.ndarray:
        """The analytic front, (n, 2) or (1, 2) for ``point``; see ``true_front``."""
        return true_front(self.first, self.second, n)


SYNTHETIC_PAIRS: dict[str, SyntheticPair] = {
    "linear": SyntheticPair("synth_nature", "synth_city", "conflicting", "linear"),
    "convex": SyntheticPair("synth_nature_convex", "synth_city_convex", "conflicting", "convex"),
    "nonconvex": SyntheticPair(
        "synth_nature_nonconvex", "synth_city_nonconvex", "conflicting", "non-convex"
    ),
    "independent": SyntheticPair("synth_nature", "synth_plural", "independent", "point"),
    "correlated": SyntheticPair("synth_nature", "synth_living", "correlated", "point"),
}


def builtin_synthetic_objectives() -> list[Objective]:
    """The synthetic objectives that ``morl_core.objectives`` registers, in table order."""
    nature, city = WORD_CLASSES["nature"], WORD_CLASSES["city"]
    return [
        word_class_objective(
            "synth_nature", nature, 1.0, "synthetic: rate of nature words (tree, river, ...)"
        ),
        word_class_objective(
            "synth_city", city, 1.0, "synthetic: rate of city words; linear front vs synth_nature"
        ),
        word_class_objective(
            "synth_nature_convex", nature, 0.5, "synthetic: square root of the nature-word rate"
        ),
        word_class_objective(
            "synth_city_convex", city, 0.5, "synthetic: sqrt city-word rate; convex front"
        ),
        word_class_objective(
            "synth_nature_nonconvex", nature, 2.0, "synthetic: square of the nature-word rate"
        ),
        word_class_objective(
            "synth_city_nonconvex", city, 2.0, "synthetic: squared city-word rate; non-convex front"
        ),
        word_class_objective(
            "synth_plural",
            WORD_CLASSES["plural"],
            1.0,
            "synthetic: rate of plural grid words; independent of synth_nature",
        ),
        word_class_objective(
            "synth_living",
            WORD_CLASSES["living"],
            1.0,
            "synthetic: rate of living-thing words; correlated with synth_nature",
        ),
    ]


# --- texts with controlled rates, for tests, demos and benchmarks ---


def compose_text(parts: Sequence[tuple[str, int]], rng: np.random.Generator) -> str:
    """A text with exact word counts per class, in random order; ``parts`` are ``(class, count)``
    with classes from ``WORD_CLASSES`` or ``"filler"`` (words in no class).

    Example:
        >>> text = compose_text([("nature", 3), ("filler", 1)], np.random.default_rng(0))
        >>> OBJECTIVES["synth_nature"].fn([""], [text])
        [0.75]
    """
    words: list[str] = []
    for class_name, count in parts:
        pool = FILLER_WORDS if class_name == "filler" else sorted(WORD_CLASSES[class_name])
        words.extend(rng.choice(pool, size=count).tolist())
    rng.shuffle(words)
    return " ".join(words)


def sample_texts(
    n_texts: int, rng: np.random.Generator, n_words: int = 20, filler: float = 0.2
) -> list[str]:
    """Random grid texts in which theme and number are chosen independently.

    Each text draws its own ``P(nature)`` and ``P(plural)`` uniformly from [0, 1]; each word is
    a filler with probability ``filler``, else a grid word of the drawn theme and number. Over
    such texts ``synth_nature`` vs ``synth_city`` correlate negatively, ``synth_nature`` vs
    ``synth_plural`` near zero and ``synth_nature`` vs ``synth_living`` positively.
    """
    cells = {
        (theme, plural): [plural_form if plural else word for word, plural_form in table.items()]
        for theme, table in (("nature", NATURE), ("city", CITY))
        for plural in (False, True)
    }
    texts = []
    for _ in range(n_texts):
        p_nature, p_plural = rng.random(2)
        words = []
        for _ in range(n_words):
            if rng.random() < filler:
                words.append(str(rng.choice(FILLER_WORDS)))
                continue
            theme = "nature" if rng.random() < p_nature else "city"
            words.append(str(rng.choice(cells[theme, bool(rng.random() < p_plural)])))
        texts.append(" ".join(words))
    return texts
