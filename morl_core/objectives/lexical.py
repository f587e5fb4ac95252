"""Lexical objectives computed from the text alone: readability, brevity, diversity, formality.

No model is loaded; every function is a pure function of the completion (the prompt is
ignored). All share one tokenisation: a *word* is a run of letters or digits, optionally joined by
apostrophes (``don't`` is one word). An empty or whitespace-only completion scores 0 on every
objective here, so that an RL policy cannot win by saying nothing.

Readability uses the Flesch reading ease formula (Flesch 1948) computed here, not by
``textstat`` (whose 0.7.13 release downloads data at run time)::

    FRE = 206.835 - 1.015 * (words / sentences) - 84.6 * (syllables / words)

Syllables are counted by a documented heuristic (``count_syllables``), sentences by terminal
punctuation (``.``, ``!``, ``?``) and line breaks.
"""

from __future__ import annotations

import math
import re

from morl_core.objectives.registry import as_text

WORD_PATTERN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
SENTENCE_BREAK_PATTERN = re.compile(r"[.!?]+|\n+")
VOWEL_GROUP_PATTERN = re.compile(r"[aeiouy]+")


def words_of(text: str) -> list[str]:
    """Splits text into words (letters/digits, apostrophes kept inside a word).

    Example:
        >>> words_of("Don't panic: it's 42!")
        ["Don't", 'panic', "it's", '42']
    """
    return WORD_PATTERN.findall(text)


# --- readability ---


def count_syllables(word: str) -> int:
    """Counts the syllables of an English word with a vowel-group heuristic.

    Rules, in order: lower-case and keep letters; count groups of consecutive vowels
    (``aeiouy``); drop one for a silent final ``e`` (``make``) unless the word ends in
    consonant + ``le`` (``table``); drop one for ``ed`` after a letter other than ``t``/``d``
    (``jumped`` but not ``wanted``); never fewer than 1. Exact for most common words; off by
    one on some (``science`` counts 1).

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
    """Flesch reading ease of a text (unclipped; about 0-100 for ordinary prose).

    Returns 0.0 for a text without words.

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
    """Flesch reading ease of the completion, clipped to [0, 100] and divided by 100.

    Map: ``clip(FRE, 0, 100) / 100``; 1 = very easy (short words, short sentences),
    0 = very hard (FRE <= 0, e.g. long sentences of long words); empty text scores 0.

    Example:
        >>> readability(["Explain."], ["The cat sat on the mat.", ""])
        [1.0, 0.0]
    """
    scores = []
    for completion in completions:
        text = as_text(completion)
        fre = flesch_reading_ease(text) if text.strip() else 0.0
        scores.append(min(max(fre, 0.0), 100.0) / 100.0)
    return scores


# --- brevity ---

# 8 words: the embedded model replies in 10-30 words, so the reward keeps a slope there.
DEFAULT_TARGET_WORDS = 8


def brevity(
    prompts: list, completions: list, target_words: int = DEFAULT_TARGET_WORDS, **kwargs
) -> list[float]:
    """Rewards completions that stay within a target number of words.

    Map: 1.0 for 1..``target_words`` words, ``target_words / n`` for n words beyond it
    (half marks at twice the target), 0.0 for an empty completion. ``target_words`` is a
    keyword argument (default 8), e.g. ``score(["brevity"], ..., target_words=10)``.

    Example:
        >>> brevity(["Hi"], ["Hello there.", "one two three four"], target_words=2)
        [1.0, 0.5]
    """
    if not isinstance(target_words, int) or isinstance(target_words, bool) or target_words < 1:
        raise ValueError(f"target_words must be a positive integer, got {target_words!r}")
    scores = []
    for completion in completions:
        count = len(words_of(as_text(completion)))
        scores.append(0.0 if count == 0 else min(1.0, target_words / count))
    return scores


# --- diversity ---


def distinct_n(words: list[str], n: int) -> float | None:
    """Fraction of the word n-grams that are distinct; None when there is no n-gram."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def diversity(prompts: list, completions: list, max_n: int = 2, **kwargs) -> list[float]:
    """Lexical diversity of the completion: mean distinct-1..distinct-``max_n`` over its words.

    Map: the mean, over n = 1..``max_n`` (default 2), of distinct n-grams / total n-grams of the
    lower-cased words; orders with no n-gram (text shorter than n words) are left out; 1.0 =
    no repetition, near 0 = one word repeated; empty text scores 0.

    Example:
        >>> diversity([""], ["the cat sat on the mat", "no no no no"])
        [0.9166666666666667, 0.29166666666666663]
    """
    if not isinstance(max_n, int) or isinstance(max_n, bool) or max_n < 1:
        raise ValueError(f"max_n must be a positive integer, got {max_n!r}")
    scores = []
    for completion in completions:
        words = [word.lower() for word in words_of(as_text(completion))]
        values = [v for n in range(1, max_n + 1) if (v := distinct_n(words, n)) is not None]
        scores.append(sum(values) / len(values) if values else 0.0)
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
    """Measures the style features that ``formality`` weighs (rates are per word).

    Features: ``article_preposition_rate`` (a, the, of, with, ...), ``nominal_rate`` (words of
    6+ letters with a noun suffix: -tion, -ment, -ness, -ity, -ance, ...),
    ``connective_rate`` (therefore, however, moreover, ...), ``word_length`` (mean letters per
    word minus 4.5, clipped to [-2, 2]), ``first_second_person_rate`` (I, you, we, ...),
    ``slang_rate`` (gonna, lol, yeah, cool, ... and a lower-case ``i``),
    ``contraction_rate`` (don't, we're, it's, ...), ``exclamation_rate`` (``!`` per
    sentence, at most 2), ``emphasis_rate`` (``sooo``, ``!!``, ``:)``, words in capitals; per
    word, at most 1).
    """
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
    """Formal register of the completion, from a weighted lexical / part-of-speech heuristic.

    Map: ``sigmoid(sum(weight * feature))`` with the features of
    ``formality_features`` and the weights in ``FORMALITY_WEIGHTS``; near 1 = formal (articles,
    prepositions, nominalisations, connectives, long words), near 0 = informal (I/you,
    slang, contractions, exclamations); empty text scores 0.

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
        if not words_of(text):
            scores.append(0.0)
            continue
        features = formality_features(text)
        logit = sum(FORMALITY_WEIGHTS[k] * features[k] for k in FORMALITY_WEIGHTS)
        # stable sigmoid: exp() of a large positive number would overflow
        scores.append(
            1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else 1.0 - 1.0 / (1.0 + math.exp(logit))
        )
    return scores
