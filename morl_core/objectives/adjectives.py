"""The known-answer pair of objectives: the class of a reply's first word at an adjective slot.

``warm_word`` rewards a warm adjective ("lovely", "friendly"), ``cold_word`` a cold one ("rude",
"noisy"); anything else scores 0 on both. On one-token completions their KL-regularised optimum
is exact (see :mod:`morl_core.known_answers`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from morl_core.objectives.lexical import word_set
from morl_core.objectives.registry import as_text

# Single-word adjectives. The embedded model puts most of its mass at these slots on a few dozen
# adjectives (probed at "The hotel was", "The room was", ...); the rest of the vocabulary is
# "neutral" (neither class), which keeps the problem a genuine three-way trade-off.
WARM_WORDS = word_set(
    "lovely charming cosy cozy superb wonderful friendly fantastic excellent perfect "
    "delightful great kind polite warm pleasant beautiful nice good welcoming cheerful "
    "amazing gorgeous brilliant comfortable splendid sweet gentle happy"
)
COLD_WORDS = word_set(
    "unpleasant boring poor noisy cold dreadful rude awful terrible horrible bad dirty dull "
    "grim careless nasty miserable gloomy cramped shabby bleak harsh unfriendly "
    "disappointing"
)
_FIRST_WORD = re.compile(r"[A-Za-z]+")


def first_word(text: str) -> str:
    """The completion's first word, lower case, without punctuation ('' when there is none)."""
    text = text.strip()
    if not text or not text[0].isalpha():
        return ""
    match = _FIRST_WORD.match(text)
    return match.group(0).lower() if match else ""


def warm_word(prompts: Sequence, completions: Sequence, **_: object) -> list[float]:
    """1.0 when the completion's first word is a warm adjective, else 0.0 (TRL reward contract)."""
    return [float(first_word(as_text(c)) in WARM_WORDS) for c in completions]


def cold_word(prompts: Sequence, completions: Sequence, **_: object) -> list[float]:
    """1.0 when the completion's first word is a cold adjective, else 0.0 (TRL reward contract)."""
    return [float(first_word(as_text(c)) in COLD_WORDS) for c in completions]
