"""Lexical objectives computed from the text alone: readability, brevity, diversity, formality.

No model is loaded; every function is a pure function of the completion (the prompt is
ignored). All share one tokenisation: a *word* is a run of letters or digits, optionally joined by
apostrophes (``don't`` is one word). An empty or whitespace-only completion scores 0 on every
objective here, so that an RL policy cannot win by saying nothing, and neither do punctuation
runs or one repeated word (the fluency gate below).

Readability uses the Flesch reading ease formula (Flesch 1948) computed here, not by
``textstat`` (whose 0.7.13 release downloads data at run time)::

    FRE = 206.835 - 1.015 * (words / sentences) - 84.6 * (syllables / words)

Syllables are counted by a documented heuristic (``count_syllables``), sentences by terminal
punctuation (``.``, ``!``, ``?``) and line breaks.

**The fluency gate.** An RL policy games a text scorer with output that is not language: a
punctuation run scores as "short" and "easy to read", one repeated word ("great great great")
as "positive" or "formal". Every real objective is therefore multiplied by
``fluency_gate(text)`` in [0, 1], a product of two ramps that are 1 on ordinary sentences::

    gate = ramp(nonword_ratio; 0.1 -> 0.4) * ramp(repetition; 0.3 -> 0.6)

where ``ramp(x; a -> b)`` is 1 for x <= a, 0 for x >= b and linear between (a slope the
policy can climb back along). ``nonword_ratio`` is the share of the non-space characters that sit
in tokens which are not words (``is_word_token``: punctuation runs, 4+ repeated letters, 25+
letter strings, long strings without a vowel); ``repetition`` is the larger of the share of
adjacent repeated words and 1 - distinct-2 of the words. An empty text has gate 0. The gate
reads the text only (no model), so it costs microseconds; perplexity under the base model is
reported separately by :mod:`morl_core.objectives.degeneration`.
"""

from __future__ import annotations

import math
import re

from morl_core.array_checks import check_int
from morl_core.objectives.registry import as_text

WORD_PATTERN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
SENTENCE_BREAK_PATTERN = re.compile(r"[.!?]+|\n+")
VOWEL_GROUP_PATTERN = re.compile(r"[aeiouy]+")


def words_of(text: str) -> list[str]:
    """Words: runs of letters/digits, apostrophes kept inside a word.

    Example:
        >>> words_of("Don't panic: it's 42!")
        ["Don't", 'panic', "it's", '42']
    """
    return WORD_PATTERN.findall(text)


# --- the fluency gate: non-words and repetition ---

# Marks allowed around a word ("(yes),", "end...", "'quoted'", "$3", "5%"): at most this many.
EDGE_PUNCTUATION = "\"'“”‘’«»()[]{}<>*_.,;:!?…-–—$€£%#&+"
MAX_EDGE_MARKS = 3
# A word token's core: words joined by hyphens, apostrophes, slashes, dots or colons
# (well-known, don't, and/or, 3.14, 10:30).
WORD_CORE_PATTERN = re.compile(r"^[^\W_]+(?:[-'’/.,:][^\W_]+)*$")
REPEATED_LETTER_PATTERN = re.compile(r"([^\W\d_])\1{3}")  # "soooo", "aaaah"
NO_VOWEL_PATTERN = re.compile(r"^[b-df-hj-np-tv-xz]{5,}$")  # ASCII letters only, lower case
# "antidisestablishmentarianism" has 28 letters; real replies almost never hold a word this
# long, degenerate ones often do ("aaaaaaaa...", glued tokens).
MAX_WORD_LETTERS = 24
# Ramps of the gate (see the module docstring); chosen so that the embedded model's own samples
# and ordinary English pass with gate 1 (tests/test_scorer_exploits.py checks both sides).
NONWORD_RAMP = (0.1, 0.4)
REPETITION_RAMP = (0.3, 0.6)


def is_word_token(token: str) -> bool:
    """Whether a whitespace-separated token is a word: after at most ``MAX_EDGE_MARKS`` marks off
    each end, letters or digits joined by ``-'/.,:``, no part over ``MAX_WORD_LETTERS``, no
    letter 4+ times in a row, no ASCII part of 5+ letters without a vowel.

    Example:
        >>> [is_word_token(t) for t in ["Hello,", "(don't)", "3.14", "end...", "....", "is....m",
        ...                             "soooo", "xkcdqwrtz", "a" * 30]]
        [True, True, True, True, False, False, False, False, False]
    """
    core = token.strip(EDGE_PUNCTUATION)
    if not core:
        return False
    lead = len(token) - len(token.lstrip(EDGE_PUNCTUATION))
    trail = len(token) - len(token.rstrip(EDGE_PUNCTUATION))
    if lead > MAX_EDGE_MARKS or trail > MAX_EDGE_MARKS or not WORD_CORE_PATTERN.match(core):
        return False
    if REPEATED_LETTER_PATTERN.search(core):
        return False
    for part in WORD_PATTERN.findall(core):
        if len(part) > MAX_WORD_LETTERS or NO_VOWEL_PATTERN.match(part.lower()):
            return False
    return True


def nonword_ratio(text: str) -> float:
    """Share of the non-space characters in non-word tokens (1.0 for an empty text): one dash is
    harmless, a long punctuation run after a word ("Yes ..........") decisive.

    Example:
        >>> nonword_ratio("The hotel was lovely."), nonword_ratio("....."), nonword_ratio("Yes ......")
        (0.0, 1.0, 0.6666666666666666)
    """
    tokens = text.split()
    total = sum(map(len, tokens))
    if total == 0:
        return 1.0
    return sum(len(token) for token in tokens if not is_word_token(token)) / total


def distinct_n(words: list[str], n: int) -> float | None:
    """Fraction of the word n-grams that are distinct; None when there is no n-gram."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def repetition(text: str) -> float:
    """Self-repetition in [0, 1]: the larger of the share of adjacent equal words ("great great")
    and 1 - distinct-2 of the lower-cased words ("I love it. I love it."); 0 under two words.

    Example:
        >>> repetition("The staff were kind and helpful."), repetition("friend friend friend")
        (0.0, 1.0)
        >>> round(repetition("so good so good so good"), 2)
        0.6
    """
    words = [word.lower() for word in words_of(text)]
    if len(words) < 2:
        return 0.0
    adjacent = sum(a == b for a, b in zip(words, words[1:], strict=False)) / (len(words) - 1)
    return max(adjacent, 1.0 - (distinct_n(words, 2) or 1.0))


def ramp(value: float, start: float, stop: float) -> float:
    """1 for ``value <= start``, 0 for ``value >= stop``, linear between."""
    return min(max((stop - value) / (stop - start), 0.0), 1.0)


def fluency_gate(text: str) -> float:
    """The factor in [0, 1] every real objective is multiplied by (module docstring): 1 for
    ordinary sentences; 0 for an empty text, punctuation runs and one repeated word.

    Example:
        >>> [fluency_gate(t) for t in ["The staff were kind and helpful.", "", ".......",
        ...                            "great great great great", "Yes ................"]]
        [1.0, 0.0, 0.0, 0.0, 0.0]
    """
    if not text.strip():
        return 0.0
    return ramp(nonword_ratio(text), *NONWORD_RAMP) * ramp(repetition(text), *REPETITION_RAMP)


# --- readability ---


def count_syllables(word: str) -> int:
    """Syllables of an English word: vowel groups (``aeiouy``), one less for a silent final
    ``e`` (not consonant + ``le``) or ``ed`` after other than ``t``/``d``, at least 1. Off by
    one on some words (``science`` counts 1).

    Example:
        >>> [count_syllables(w) for w in ["cat", "make", "table", "jumped", "wanted", "beautiful"]]
        [1, 1, 2, 1, 2, 3]
    """
    letters = re.sub(r"[^a-z]", "", word.lower())
    count = len(VOWEL_GROUP_PATTERN.findall(letters))
    silent_e = letters.endswith("e") and not re.search(r"[^aeiouy]le$", letters)
    silent_ed = re.search(r"[^aeiouytd]ed$", letters) is not None
    if count > 1 and (silent_e or silent_ed):
        count -= 1
    return max(count, 1)


def flesch_reading_ease(text: str) -> float:
    """Flesch reading ease, unclipped (about 0-100 for prose; 0.0 without words).

    Example:
        >>> round(flesch_reading_ease("The cat sat on the mat."), 1)
        116.1
    """
    words = words_of(text)
    if not words:
        return 0.0
    sentences = sum(1 for part in SENTENCE_BREAK_PATTERN.split(text) if words_of(part))
    syllables = sum(count_syllables(word) for word in words)
    return 206.835 - 1.015 * len(words) / max(sentences, 1) - 84.6 * syllables / len(words)


def readability(prompts: list, completions: list, **kwargs) -> list[float]:
    """``clip(FRE, 0, 100) / 100 * fluency_gate``: 1 = very easy (short words and sentences),
    0 = very hard (FRE <= 0), or gated out.

    Example:
        >>> readability(["Explain."], ["The cat sat on the mat.", "", "a a a a a a"])
        [1.0, 0.0, 0.0]
    """
    scores = []
    for completion in completions:
        text = as_text(completion)
        gate = fluency_gate(text)
        fre = flesch_reading_ease(text) if gate > 0.0 else 0.0
        scores.append(min(max(fre, 0.0), 100.0) / 100.0 * gate)
    return scores


# --- brevity ---

# 8 words: the embedded model replies in 10-30 words, so the reward keeps a slope there.
DEFAULT_TARGET_WORDS = 8
MAX_TARGET_WORDS = 1000


def brevity(
    prompts: list, completions: list, target_words: int = DEFAULT_TARGET_WORDS, **kwargs
) -> list[float]:
    """``min(1, target_words / n) * fluency_gate`` for n words: 1 up to the target, half at twice
    it; empty, punctuation-only or one-word-repeated text scores 0, and "Yes ......" is judged
    by its debris. ``target_words`` in [1, MAX_TARGET_WORDS]; a run sets it in the objective's
    name, ``brevity(target_words=20)`` (or ``score(..., target_words=20)`` for one call).

    Example:
        >>> brevity(["Hi"] * 4, ["Hello there.", "one two three four", "....", "Yes ......."],
        ...         target_words=2)
        [1.0, 0.5, 0.0, 0.0]
    """
    check_int(target_words, "target_words", 1, MAX_TARGET_WORDS)
    scores = []
    for completion in completions:
        text = as_text(completion)
        count = len(words_of(text))
        gate = fluency_gate(text)
        scores.append(0.0 if count == 0 else min(1.0, target_words / count) * gate)
    return scores


# --- diversity ---

MAX_NGRAM = 8


def diversity(prompts: list, completions: list, max_n: int = 2, **kwargs) -> list[float]:
    """Mean distinct-1..distinct-``max_n`` of the lower-cased words (orders with no n-gram left
    out; empty text 0). Repetition is what it measures, so only the non-word half of the gate
    applies: distinct non-words ("xkcdqwrtz bvnmqwrt") score 0, not 1.

    Example:
        >>> diversity([""], ["the cat sat on the mat", "no no no no"])
        [0.9166666666666667, 0.29166666666666663]
    """
    check_int(max_n, "max_n", 1, MAX_NGRAM)
    scores = []
    for completion in completions:
        text = as_text(completion)
        words = [word.lower() for word in words_of(text)]
        values = [v for n in range(1, max_n + 1) if (v := distinct_n(words, n)) is not None]
        mean = sum(values) / len(values) if values else 0.0
        scores.append(mean * ramp(nonword_ratio(text), *NONWORD_RAMP) if values else 0.0)
    return scores


# --- formality ---
# A lexical proxy for the Heylighen & Dewaele (1999) F-score, which rises with nouns, articles
# and prepositions and falls with pronouns, interjections and adverbs. Without a tagger we use
# closed word classes and suffixes, plus markers of informal writing.


def word_set(words: str) -> frozenset[str]:
    """The set of space-separated words in a string (keeps long word lists readable)."""
    return frozenset(words.split())


ARTICLES_AND_PREPOSITIONS = word_set(
    "a an the of in on at by for with about against between into through during before after "
    "above below to from over under within without upon among across toward towards regarding "
    "concerning per via despite throughout according"
)
FIRST_AND_SECOND_PERSON = word_set(
    "i me my mine myself we us our ours ourselves you your yours yourself yourselves u ur ya y'all"
)
SLANG_AND_INTERJECTIONS = word_set(
    "oh ooh wow hey yeah yep yup nope nah ok okay lol lmao omg wtf btw gonna wanna gotta kinda "
    "sorta dunno lemme gimme ain't cool awesome dude guys stuff totally literally huh hmm um uh "
    "oops ugh yay haha hahaha cuz coz tho thx pls plz bro yo hi super damn crap"
)
FORMAL_CONNECTIVES = word_set(
    "therefore however moreover furthermore consequently thus hence accordingly nevertheless "
    "nonetheless whereas additionally subsequently notwithstanding respectively approximately "
    "regarding concerning sincerely kindly"
)
NOMINAL_SUFFIX_PATTERN = re.compile(r"(tion|sion|ment|ness|ity|ance|ence|ism|ship|ology)s?$")
CONTRACTION_PATTERN = re.compile(r"(n['’]t|['’](re|ve|ll|m|d))$|^(it|that|what|there|let)['’]s$")
EMPHASIS_PATTERN = re.compile(r"([a-z])\1\1|[!?]{2,}|[:;]-?[()dp]")  # on lower-cased text

# Weight of each feature in the formality logit (features: see formality_features). Positive
# weights mark formal writing, negative informal; hand-set so that plain narrative ("The cat sat
# on the mat.") scores about 0.5, business prose above 0.9 and chat below 0.1.
FORMALITY_WEIGHTS = {
    "article_preposition_rate": 2.0,
    "nominal_rate": 4.0,
    "connective_rate": 6.0,
    "word_length": 0.6,
    "first_second_person_rate": -2.5,
    "slang_rate": -10.0,
    "contraction_rate": -8.0,
    "exclamation_rate": -1.5,
    "emphasis_rate": -2.0,
}


def formality_features(text: str) -> dict[str, float]:
    """The style features ``formality`` weighs, rates per word; ``word_length`` is mean letters
    minus 4.5 in [-2, 2], ``exclamation_rate`` ``!`` per sentence (at most 2), ``emphasis_rate``
    (``sooo``, ``!!``, ``:)``, capitals) at most 1; ``nominal_rate`` counts 6+ letter words
    with a noun suffix; ``slang_rate`` includes a lower-case ``i``."""
    words = words_of(text)
    if not words:
        return dict.fromkeys(FORMALITY_WEIGHTS, 0.0)
    lower = [word.lower().replace("’", "'") for word in words]
    n = len(words)
    sentences = max(sum(1 for part in SENTENCE_BREAK_PATTERN.split(text) if words_of(part)), 1)
    shouting = sum(1 for word in words if len(word) > 1 and word.isupper() and word.isalpha())
    return {
        "article_preposition_rate": sum(w in ARTICLES_AND_PREPOSITIONS for w in lower) / n,
        "nominal_rate": sum(len(w) >= 6 and bool(NOMINAL_SUFFIX_PATTERN.search(w)) for w in lower)
        / n,
        "connective_rate": sum(w in FORMAL_CONNECTIVES for w in lower) / n,
        "word_length": min(max(sum(map(len, lower)) / n - 4.5, -2.0), 2.0),
        "first_second_person_rate": sum(w in FIRST_AND_SECOND_PERSON for w in lower) / n,
        "slang_rate": (sum(w in SLANG_AND_INTERJECTIONS for w in lower) + words.count("i")) / n,
        "contraction_rate": sum(bool(CONTRACTION_PATTERN.search(w)) for w in lower) / n,
        "exclamation_rate": min(text.count("!") / sentences, 2.0),
        "emphasis_rate": min((len(EMPHASIS_PATTERN.findall(text.lower())) + shouting) / n, 1.0),
    }


def formality(prompts: list, completions: list, **kwargs) -> list[float]:
    """``sigmoid(FORMALITY_WEIGHTS . formality_features) * fluency_gate``: near 1 = formal
    (articles, prepositions, nominalisations, connectives, long words), near 0 = informal
    (I/you, slang, contractions, exclamations) or gated out.

    Example:
        >>> formal, slangy = formality(["", ""], [
        ...     "The committee will consider the application in accordance with the regulations.",
        ...     "lol yeah u gonna love it, it's sooo cool!!!"])
        >>> formal > 0.8 > 0.2 > slangy
        True
    """
    scores = []
    for completion in completions:
        text = as_text(completion)
        gate = fluency_gate(text)
        if gate == 0.0 or not words_of(text):
            scores.append(0.0)
            continue
        features = formality_features(text)
        logit = sum(FORMALITY_WEIGHTS[k] * features[k] for k in FORMALITY_WEIGHTS)
        # stable sigmoid: exp() of a large positive number would overflow
        value = (
            1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else 1.0 - 1.0 / (1.0 + math.exp(logit))
        )
        scores.append(value * gate)
    return scores
