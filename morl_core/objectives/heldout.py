"""Held-out scorers: a second, independent measure per objective, to show over-optimisation.

Train on one scorer, report both: a policy that improves the trained scorer while its held-out
twin stays flat or falls has learned the scorer's quirks, not the objective (Goodhart). Each
held-out scorer measures the same quality by a different method or resource, and is multiplied
by the same fluency gate as the trained one (:mod:`morl_core.objectives.lexical`), so the
obvious exploits score 0 on both.

======================  ===========  ===========================================================
name                    twin of      measure, map to [0, 1]
======================  ===========  ===========================================================
sentiment_heldout       sentiment    Pattern's adjective lexicon (TextBlob ``PatternAnalyzer``,
                                     De Smedt & Daelemans 2012) instead of VADER: polarity p in
                                     [-1, 1] -> (p + 1) / 2
readability_heldout     readability  Coleman-Liau grade (letters and sentences per 100 words,
                                     no syllables) instead of Flesch: clip(1 - grade / 16, 0, 1)
brevity_heldout         brevity      tokens of the embedded model's BPE instead of words:
                                     min(1, target_tokens / n), target_tokens 10 (about 8 words)
formality_heldout       formality    Heylighen & Dewaele's F-score from part-of-speech tags
                                     (Pattern's tagger) instead of hand-weighted word lists:
                                     clip((F - 30) / 50, 0, 1)
======================  ===========  ===========================================================

``nontoxic``, ``relevance`` and ``diversity`` have no twin (no second offline classifier or
encoder ships; diversity is a definition, not an estimate). TextBlob ships Pattern's lexicon and
tagger in its wheel, so these run offline; importing it takes a few seconds, on first use.
"""

from __future__ import annotations

import threading
from typing import Any

from morl_core.array_checks import check_int
from morl_core.objectives.lexical import (
    SENTENCE_BREAK_PATTERN,
    fluency_gate,
    words_of,
)
from morl_core.objectives.registry import LazyResource, Objective, ProgressCallback, as_text
from morl_core.policy.model import embedded_model_path

# --- Pattern's lexicon and tagger (TextBlob) ---


def _load_pattern(step) -> tuple[Any, Any]:
    from textblob.en.sentiments import PatternAnalyzer  # imports NLTK: the slow part
    from textblob.en.taggers import PatternTagger

    step("imported")
    analyzer, tagger = PatternAnalyzer(), PatternTagger()
    tagger.tag("Warm up the tagger.")  # the first call reads the lexicon files
    analyzer.analyze("Warm up the lexicon.")
    step("lexicon")
    return analyzer, tagger


PATTERN = LazyResource("Pattern lexicon and tagger", _load_pattern, steps=2)


def prepare_pattern(progress: ProgressCallback | None = None) -> None:
    """Loads TextBlob's Pattern lexicon and tagger now instead of on first use."""
    PATTERN.get(progress)


def sentiment_heldout(prompts: list, completions: list, **kwargs) -> list[float]:
    """Positive sentiment from Pattern's lexicon (TextBlob), the held-out twin of VADER.

    Map: ``(polarity + 1) / 2 * fluency_gate``; 1 = very positive, 0.5 = neutral or no
    sentiment words, 0 = very negative; empty text and degenerate output score 0.

    Example:
        >>> warm, cold = sentiment_heldout(["", ""], ["What a lovely, kind host.", "A dull mess."])
        >>> warm > 0.5 > cold
        True
    """
    analyzer, _ = PATTERN.get()
    scores = []
    for completion in completions:
        text = as_text(completion)
        gate = fluency_gate(text)
        if gate == 0.0:
            scores.append(0.0)
            continue
        polarity = analyzer.analyze(text).polarity
        scores.append(min(max((polarity + 1.0) / 2.0, 0.0), 1.0) * gate)
    return scores


# Heylighen & Dewaele (1999): F = (noun + adjective + preposition + article - pronoun - verb
# - adverb - interjection + 100) / 2, frequencies in percent of the words. Penn tags by class.
F_SCORE_FORMAL = ("NN", "NNS", "NNP", "NNPS", "JJ", "JJR", "JJS", "IN")
F_SCORE_DEICTIC = (
    "PRP",
    "PRP$",
    "WP",
    "WP$",
    "VB",
    "VBD",
    "VBG",
    "VBN",
    "VBP",
    "VBZ",
    "MD",
    "RB",
    "RBR",
    "RBS",
    "WRB",
    "UH",
)
ARTICLES = frozenset({"a", "an", "the"})
F_SCORE_RANGE = (30.0, 80.0)  # chat sits near 30-40, informational prose near 60-80 (H&D)


def f_score(tagged: list[tuple[str, str]]) -> float | None:
    """Heylighen & Dewaele's F-score of tagged words, in [0, 100]; None without words.

    Example:
        >>> f_score([("The", "DT"), ("plan", "NN"), ("works", "VBZ")])
        66.66666666666667
    """
    words = [(word, tag) for word, tag in tagged if any(ch.isalnum() for ch in word)]
    if not words:
        return None
    formal = sum(
        tag in F_SCORE_FORMAL or (tag == "DT" and word.lower() in ARTICLES) for word, tag in words
    )
    deictic = sum(tag in F_SCORE_DEICTIC for _, tag in words)
    return (100.0 * (formal - deictic) / len(words) + 100.0) / 2.0


def formality_heldout(prompts: list, completions: list, **kwargs) -> list[float]:
    """Formality from part-of-speech tags (Heylighen & Dewaele's F-score), twin of ``formality``.

    Map: ``clip((F - 30) / 50, 0, 1) * fluency_gate``; nouns, adjectives, prepositions and
    articles raise F, pronouns, verbs, adverbs and interjections lower it.

    Example:
        >>> formal, chat = formality_heldout(["", ""], [
        ...     "The committee will consider the application in accordance with the regulations.",
        ...     "hey, u gonna answer or what lol"])
        >>> formal > 0.6 > 0.3 > chat
        True
    """
    _, tagger = PATTERN.get()
    low, high = F_SCORE_RANGE
    scores = []
    for completion in completions:
        text = as_text(completion)
        gate = fluency_gate(text)
        value = f_score(tagger.tag(text)) if gate > 0.0 else None
        scores.append(
            0.0 if value is None else min(max((value - low) / (high - low), 0.0), 1.0) * gate
        )
    return scores


# --- readability: Coleman-Liau ---

COLEMAN_LIAU_MAX_GRADE = 16.0  # a college graduate's text scores 0


def coleman_liau_grade(text: str) -> float | None:
    """Coleman-Liau index (Coleman & Liau 1975): a US school grade from letters and sentences.

    ``0.0588 * L - 0.296 * S - 15.8`` with L letters and S sentences per 100 words; None for
    a text without words.

    Example:
        >>> round(coleman_liau_grade("The cat sat on the mat."), 1)
        -4.1
    """
    words = words_of(text)
    if not words:
        return None
    letters = sum(ch.isalpha() for word in words for ch in word)
    sentences = max(sum(1 for part in SENTENCE_BREAK_PATTERN.split(text) if words_of(part)), 1)
    per_100 = 100.0 / len(words)
    return 0.0588 * letters * per_100 - 0.296 * sentences * per_100 - 15.8


def readability_heldout(prompts: list, completions: list, **kwargs) -> list[float]:
    """Ease of reading by the Coleman-Liau grade, the held-out twin of Flesch ``readability``.

    Map: ``clip(1 - grade / 16, 0, 1) * fluency_gate``; 1 = first grade or easier,
    0 = grade 16 (college graduate) or harder.

    Example:
        >>> readability_heldout(["Explain."] * 2, ["The cat sat on the mat.", "...."])
        [1.0, 0.0]
    """
    scores = []
    for completion in completions:
        text = as_text(completion)
        gate = fluency_gate(text)
        grade = coleman_liau_grade(text) if gate > 0.0 else None
        ease = 0.0 if grade is None else 1.0 - grade / COLEMAN_LIAU_MAX_GRADE
        scores.append(min(max(ease, 0.0), 1.0) * gate)
    return scores


# --- brevity: base-model tokens ---

DEFAULT_TARGET_TOKENS = 10  # the embedded model's BPE spends about 1.2 tokens per word
MAX_TARGET_TOKENS = 1000


def _load_tokenizer(step) -> Any:
    from tokenizers import Tokenizer  # lazy: only brevity_heldout needs it (no torch, ~0.1 s)

    tokenizer = Tokenizer.from_file(str(embedded_model_path() / "tokenizer.json"))
    step("tokenizer")
    return tokenizer


TOKENIZER = LazyResource("embedded tokenizer", _load_tokenizer, steps=1, show_bar=False)


def prepare_tokenizer(progress: ProgressCallback | None = None) -> None:
    """Loads the embedded model's tokenizer now instead of on first use."""
    TOKENIZER.get(progress)


# A shared fast tokenizer raises "Already borrowed" when two threads use it at once.
TOKENIZER_LOCK = threading.Lock()


def brevity_heldout(
    prompts: list, completions: list, target_tokens: int = DEFAULT_TARGET_TOKENS, **kwargs
) -> list[float]:
    """Brevity in tokens of the embedded model's BPE, the held-out twin of word-count brevity.

    Map: ``min(1, target_tokens / n) * fluency_gate`` for n tokens; punctuation counts as
    tokens here, so a reply padded with marks is long on this count even where the word count
    says short. ``target_tokens`` (default 10, at most ``MAX_TARGET_TOKENS``) is a keyword.

    Example:
        >>> brevity_heldout(["Hi"] * 3, ["Hello there.", "....", ""])
        [1.0, 0.0, 0.0]
    """
    check_int(target_tokens, "target_tokens", 1, MAX_TARGET_TOKENS)
    tokenizer = TOKENIZER.get()
    scores = []
    for completion in completions:
        text = as_text(completion)
        gate = fluency_gate(text)
        if gate == 0.0:
            scores.append(0.0)
            continue
        with TOKENIZER_LOCK:
            count = len(tokenizer.encode(" " + text.strip()).ids)
        scores.append(min(1.0, target_tokens / count) * gate)
    return scores


# --- the table ---

HELDOUT: dict[str, str] = {
    "sentiment": "sentiment_heldout",
    "readability": "readability_heldout",
    "brevity": "brevity_heldout",
    "formality": "formality_heldout",
}


def heldout_objectives() -> list[Objective]:
    """The held-out objectives, in ``HELDOUT`` order, for ``register``."""
    return [
        Objective(
            "sentiment_heldout",
            sentiment_heldout,
            "positive sentiment by a second lexicon (Pattern / TextBlob): held-out twin of sentiment",
            "Pattern polarity p in [-1, 1] -> (p + 1) / 2, x fluency gate",
            prepare=prepare_pattern,
        ),
        Objective(
            "readability_heldout",
            readability_heldout,
            "easy to read by letters per word (Coleman-Liau): held-out twin of readability",
            "clip(1 - Coleman-Liau grade / 16, 0, 1), x fluency gate",
        ),
        Objective(
            "brevity_heldout",
            brevity_heldout,
            "short replies counted in base-model tokens: held-out twin of brevity",
            "min(1, target_tokens (10) / tokens), x fluency gate; 0 if empty",
            prepare=prepare_tokenizer,
        ),
        Objective(
            "formality_heldout",
            formality_heldout,
            "formal register by part-of-speech F-score (Heylighen & Dewaele): twin of formality",
            "clip((F - 30) / 50, 0, 1) with F in [0, 100], x fluency gate",
            prepare=prepare_pattern,
        ),
    ]


def heldout_scorer(name: str) -> Objective:
    """The held-out twin of objective ``name`` as an (unregistered) ``Objective``.

    Raises:
        ValueError: When ``name`` has no held-out twin (the message lists those that do).

    Example:
        >>> heldout_scorer("readability").name
        'readability_heldout'
    """
    if name not in HELDOUT:
        raise ValueError(
            f"objective {name!r} has no held-out scorer; these do: {', '.join(HELDOUT)}"
        )
    return next(o for o in heldout_objectives() if o.name == HELDOUT[name])
