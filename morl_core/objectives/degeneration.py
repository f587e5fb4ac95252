"""The degeneration guard: per-completion signs that a policy games its scorers instead of writing.

At small budgets RL finds exploits: punctuation runs scored as "brief", one repeated word as
"positive". The real objectives already multiply their value by the lexical fluency gate of
:mod:`morl_core.objectives.lexical`; this module reports the measurements behind it, plus
perplexity under the base model, for every completion, so that they can sit next to every score
and serve as a constraint or a penalty:

==================  ===========================================================================
key                 meaning (one value per completion)
==================  ===========================================================================
``words``           number of words
``distinct1``       distinct words / words (1.0 for fewer than 1 word)
``distinct2``       distinct word bigrams / bigrams (1.0 for fewer than 2 words)
``repetition``      max(adjacent repeated words, 1 - distinct2) in [0, 1]
``nonword_ratio``   share of non-space characters in non-word tokens (1.0 for empty text)
``unknown_words``   share of the alphabetic words not in the English word list (0.0 without
                    one): made-up words such as "Zomhool" or "itineradul"
``lexical_gate``    ``fluency_gate``: ramp(nonword_ratio) * ramp(repetition), in [0, 1]
``perplexity``      exp(mean NLL per token) of the completion given its prompt under the
                    embedded base model (NaN for an empty completion); only when asked for
``fluency``         the gate of the chosen ``guard`` (``lexical_gate``, or ``wordlist_gate``
                    below), or 0 where perplexity exceeds ``max_perplexity`` when one is given;
                    in [0, 1], 1 = fluent
==================  ===========================================================================

**Made-up words** pass the lexical gate: a letter string with vowels is a word token to it. A
brevity expert trained on SmolLM2-135M-Instruct at a small KL coefficient answered in them
("Zomhool!", "hikal, the itineradul"). The ``"wordlist"`` guard (``GUARDS``) adds
``ramp(unknown_words; UNKNOWN_WORD_RAMP)`` to the lexical gate, checking each alphabetic word
against an English word list (``english_words``): the Brill tagger lexicon and Norvig's
spelling list that TextBlob ships, inflections and compounds of their words, and a few words
newer than both. Names a list lacks ("Kubernetes") count as unknown, so the ramp starts above
the share ordinary replies reach; it is a guard for English replies (other languages fail it).

``fluency`` is also a TRL-style objective (``fluency(prompts, completions)``, lexical only, no
model), and ``degeneration_penalty`` is ``1 - fluency``: subtract ``lam * penalty`` from a
reward, or require ``penalty <= threshold`` as a constraint.

**Perplexity** is measured by the embedded model of ``assets/embedded-model`` (6.9 M parameters,
loaded on first use, once per process, on the CPU). It says how far a policy's text has drifted
from what the base would write, and is reported beside the scores; it is *not* part of the
gate, because this small model does not separate exploits from plain English. Measured after
the prompt "The hotel was": the model's own samples have median perplexity 1.5 (99th
percentile 101), but "I would not recommend it to anyone." scores 9, "Thank you, this is
wonderful!" 2,492, "Yes." 152,390, while "!!!!!!!!!!!!!!!!" scores 1,141 and "great great
great ..." 520,738. A capable base model (or a domain where its perplexity is trustworthy) can
use it as a constraint through ``max_perplexity``.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morl_core.array_checks import check_int
from morl_core.objectives.lexical import (
    distinct_n,
    fluency_gate,
    nonword_ratio,
    ramp,
    repetition,
    word_set,
    words_of,
)
from morl_core.objectives.registry import LazyResource, Objective, as_text
from morl_core.policy.model import embedded_model_path

MAX_BATCH_SIZE = 256
KEYS = (
    "words",
    "distinct1",
    "distinct2",
    "repetition",
    "nonword_ratio",
    "unknown_words",
    "lexical_gate",
    "perplexity",
    "fluency",
)

# --- made-up words: the English word list ---

# The word lists TextBlob ships in its wheel (a dependency): Brill's tagger lexicon (Brown corpus,
# Penn Treebank, Twitter part-of-speech data: inflected forms and names) and Norvig's spelling
# list (Project Gutenberg, Wiktionary, BNC). Read once, lower-cased: about 72,000 words, 0.3 s.
WORD_LIST_FILES = ("en-lexicon.txt", "en-spelling.txt")
LIST_ENTRY_PATTERN = re.compile(r"^([a-z]+) ", re.MULTILINE)
# Common words newer than both lists (their compounds and inflections are found from these).
RECENT_WORDS = word_set(
    "app apps blog blogger chatbot cyber email emoji internet laptop online podcast selfie "
    "smartphone startup username website webpage wifi"
)
# (suffix, what replaces it) for inflected and derived forms: "itineraries" -> "itinerary".
SUFFIXES = tuple(
    (rule.partition(">")[0], rule.partition(">")[2])
    for rule in sorted(
        word_set(
            "ies>y ied>y ier>y iest>y ily>y iness>y s es ed ed>e ing ing>e er er>e est ly ness "
            "ment ful less able ably ish ist ism ize ise ization isation"
        )
    )
)
PREFIXES = word_set(
    "un re non pre over under mis dis out self co anti multi micro mini super semi inter trans "
    "ultra mega eco bio geo auto cyber tele"
)
# A word whose inflection is listed though it is not ("immerse" for "immersed", "purr" for
# "purring"): the lists are counts of running text, where a base form can be missing.
ENDINGS = ("s", "es", "ed", "d", "ing", "ion", "ation")
MIN_STEM_LETTERS = 3  # "is" -> "i" and similar stems are no evidence of a word
# A compound counts when both halves are words of 4+ letters ("smartwatch", "craftsman"):
# shorter halves are mostly abbreviations in the lexicon, which would admit made-up words.
MIN_COMPOUND_PART = 4
MAX_ACRONYM_LETTERS = 4  # "SMS", "DIY": capitals this short are acronyms, not counted
# Share of a reply's alphabetic words outside the list -> the ramp of the "wordlist" guard: 1 up
# to 0.25, 0 from 0.5. Ordinary replies stay below the start. Measured on replies to the
# assistant prompts at the training decoding (temperature 1, 80 per set, seed 0):
# SmolLM2-135M-Instruct's own have median 0, 90th percentile 0.05 and no ordinary reply above
# 0.14 (names, rare words); its three above 0.25 are gibberish it writes at temperature 1
# ("Dio faisybri asfiari not controllato"). Its brevity expert at beta 0.05 (step 59) has 11%
# of replies above 0.25 ("Bouncerman rats.", "TenGeez."). The embedded model's demo replies
# reach 0.13. One name in a reply of four words is 0.25: still gate 1.
UNKNOWN_WORD_RAMP = (0.25, 0.5)
GUARDS = ("lexical", "wordlist")  # RunConfig.fluency_guard: the lexical gate, or it x the list


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The English word list (lower case, letters only), read once from TextBlob's data."""
    spec = importlib.util.find_spec("textblob")  # the data files only: no NLTK import
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the English word list comes with textblob: pip install textblob")
    folder = Path(next(iter(spec.submodule_search_locations))) / "en"
    words = set(RECENT_WORDS)
    for name in WORD_LIST_FILES:
        words.update(LIST_ENTRY_PATTERN.findall((folder / name).read_text("utf-8").lower()))
    return frozenset(words)


def _forms(word: str):
    """``word``, then it less one known suffix or prefix (a doubled final consonant undone too),
    then it with one of ``ENDINGS`` (a final "e" dropped before a vowel)."""
    yield word
    for suffix, replacement in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM_LETTERS:
            stem = word[: -len(suffix)]
            yield stem + replacement
            if not replacement and len(stem) > MIN_STEM_LETTERS and stem[-1] == stem[-2]:
                yield stem[:-1]  # "running" -> "runn" -> "run"
    for prefix in PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= MIN_STEM_LETTERS:
            yield word[len(prefix) :]
    if len(word) >= MIN_STEM_LETTERS:
        for ending in ENDINGS:
            yield word + ending
            if word.endswith("e") and ending[0] in "aeiou":
                yield word[:-1] + ending


@functools.lru_cache(maxsize=65536)
def is_english_word(word: str) -> bool:
    """Whether a word of letters is in the English word list, up to case, accents, one
    contraction ("shouldn't"), one suffix, prefix or ending (``_forms``) or as a compound of
    two listed words of ``MIN_COMPOUND_PART``+ letters.

    Example:
        >>> [is_english_word(w) for w in ["Itineraries", "café", "shouldn't", "smartwatch",
        ...                               "Zomhool", "itineradul", "hikal"]]
        [True, True, True, True, False, False, False]
    """
    words = english_words()
    plain = unicodedata.normalize("NFKD", word.lower().replace("’", "'"))
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    head, _, clitic = plain.partition("'")
    candidates = [head] + ([head[:-1]] if clitic == "t" and head.endswith("n") else [])
    for candidate in candidates:
        if any(form in words for form in _forms(candidate)):
            return True
        parts = range(MIN_COMPOUND_PART, len(candidate) - MIN_COMPOUND_PART + 1)
        if any(candidate[:i] in words and candidate[i:] in words for i in parts):
            return True
    return False


def unknown_word_ratio(text: str) -> float:
    """Share of the alphabetic words of ``text`` (``words_of`` without digits or acronyms of
    at most ``MAX_ACRONYM_LETTERS`` capitals) that are not English words
    (``is_english_word``); 0.0 for a text without one.

    Example:
        >>> unknown_word_ratio("Zomhool! the itineradul hikal"), unknown_word_ratio("Pack a map.")
        (0.75, 0.0)
    """
    words = [
        w
        for w in words_of(text)
        if w.replace("'", "").replace("’", "").isalpha()
        and not (w.isupper() and len(w) <= MAX_ACRONYM_LETTERS)
    ]
    if not words:
        return 0.0
    return sum(not is_english_word(w) for w in words) / len(words)


def wordlist_gate(text: str) -> float:
    """The lexical gate times ``ramp(unknown_word_ratio; UNKNOWN_WORD_RAMP)``, in [0, 1].

    Example:
        >>> wordlist_gate("Pack water and a map."), wordlist_gate("Zomhool! the itineradul hikal")
        (1.0, 0.0)
    """
    gate = fluency_gate(text)
    return gate * ramp(unknown_word_ratio(text), *UNKNOWN_WORD_RAMP) if gate > 0.0 else 0.0


def guarded_fluency(texts: Sequence[str], guard: str = "lexical") -> np.ndarray:  # (N,)
    """Fluency in [0, 1] of each text under ``guard`` (one of ``GUARDS``): ``fluency_gate``
    ("lexical") or ``wordlist_gate`` ("wordlist"); what the trainer's fluency penalty uses."""
    if guard not in GUARDS:
        raise ValueError(f"guard must be one of {', '.join(GUARDS)}, got {guard!r}")
    gate = fluency_gate if guard == "lexical" else wordlist_gate
    return np.array([gate(text) for text in texts], dtype=np.float64)


# --- the base model, loaded once ---


def _load_base_model(step) -> tuple[Any, Any]:
    import torch  # heavy: torch and transformers load on the first perplexity only
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    step("tokenizer")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    step("weights")
    return tokenizer, model


BASE_MODEL = LazyResource("base model (perplexity)", _load_base_model, steps=2, show_bar=False)
# The fast tokenizer and the model are shared by every thread of a server; one at a time.
BASE_MODEL_LOCK = threading.Lock()


def perplexity(
    prompts: Sequence, completions: Sequence, batch_size: int = 32
) -> np.ndarray:  # (N,)
    """Perplexity of each completion given its prompt under the embedded base model.

    The completion is scored as the model would have written it after the prompt: joined by one
    space unless the prompt ends in white space (byte-level BPE puts the space in the first
    token). When prompt and completion exceed the context (256 tokens), the prompt loses its
    first tokens, then the completion its last. Returns (N,) exp(mean NLL per completion
    token), NaN for an empty completion; ``batch_size`` is 1..``MAX_BATCH_SIZE``.
    """
    prompt_texts, completion_texts = _texts(prompts, completions)
    check_int(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    import torch

    tokenizer, model = BASE_MODEL.get()
    context = int(model.config.n_positions)
    result = np.full(len(completion_texts), math.nan)
    rows: list[tuple[int, list[int], int]] = []  # (index, ids, completion length)
    with BASE_MODEL_LOCK:
        for i, (prompt, completion) in enumerate(zip(prompt_texts, completion_texts, strict=True)):
            if not completion.strip():
                continue
            joiner = "" if not prompt or prompt[-1].isspace() else " "
            head = tokenizer(prompt, add_special_tokens=False)["input_ids"] or [
                tokenizer.eos_token_id
            ]
            tail = tokenizer(joiner + completion.lstrip(), add_special_tokens=False)["input_ids"]
            tail = tail[: context - 1]
            head = head[-(context - len(tail)) :]
            rows.append((i, head + tail, len(tail)))
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                width = max(len(ids) for _, ids, _ in batch)
                ids = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for b, (_, row, _) in enumerate(batch):
                    ids[b, : len(row)] = torch.tensor(row)
                    mask[b, : len(row)] = 1
                # the LM head (8,192 outputs) only where a completion token is predicted,
                # not at prompt and padding positions
                hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
                scored = torch.zeros((len(batch), width), dtype=torch.bool)  # predicts t+1
                for b, (_, row, n_tail) in enumerate(batch):
                    scored[b, len(row) - n_tail - 1 : len(row) - 1] = True
                logits = model.get_output_embeddings()(hidden[scored]).float()  # (M, V)
                targets = ids[:, 1:][scored[:, :-1]]  # (M,) the token each position predicts
                token_logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
                start_of = 0
                for i, _, n_tail in batch:
                    nll = -token_logp[start_of : start_of + n_tail].mean()
                    result[i] = math.exp(float(nll))
                    start_of += n_tail
    return result


# --- the report ---


def degeneration(
    prompts: Sequence,
    completions: Sequence,
    *,
    with_perplexity: bool = True,
    max_perplexity: float | None = None,
    batch_size: int = 32,
    guard: str = "lexical",
) -> dict[str, np.ndarray]:
    """Per-completion degeneration measurements (module docstring lists the keys).

    Args:
        prompts: N prompts (strings or TRL message lists); used for perplexity only.
        completions: N completions, one per prompt.
        with_perplexity: Whether to load the base model and measure perplexity (else the
            ``perplexity`` key is absent).
        max_perplexity: When given (> 1), ``fluency`` is 0 where perplexity exceeds it; when
            None, ``fluency`` is the ``guard``'s gate.
        batch_size: Completions per forward pass of the base model.
        guard: Which gate ``fluency`` starts from, one of ``GUARDS``: ``"lexical"``
            (``lexical_gate``) or ``"wordlist"`` (``wordlist_gate``: made-up words fail too).

    Returns:
        A dict of float arrays of shape (N,), keys in the order of ``KEYS``.

    Example:
        >>> report = degeneration(["Hi", "Hi"], ["Hello, how are you?", "....."],
        ...                       with_perplexity=False)
        >>> report["nonword_ratio"].tolist(), report["fluency"].tolist()
        ([0.0, 1.0], [1.0, 0.0])
    """
    _, texts = _texts(prompts, completions)
    if max_perplexity is not None:
        if isinstance(max_perplexity, bool) or not isinstance(max_perplexity, int | float):
            raise ValueError(f"max_perplexity must be a number > 1 or None, got {max_perplexity!r}")
        if not 1.0 < max_perplexity < math.inf:
            raise ValueError(f"max_perplexity must be a finite number > 1, got {max_perplexity!r}")
        with_perplexity = True
    report: dict[str, np.ndarray] = {}
    words = [[word.lower() for word in words_of(text)] for text in texts]
    report["words"] = np.array([len(w) for w in words], dtype=np.float64)
    for n in (1, 2):
        report[f"distinct{n}"] = np.array(
            [value if (value := distinct_n(w, n)) is not None else 1.0 for w in words]
        )
    report["repetition"] = np.array([repetition(text) for text in texts])
    report["nonword_ratio"] = np.array([nonword_ratio(text) for text in texts])
    report["unknown_words"] = np.array([unknown_word_ratio(text) for text in texts])
    report["lexical_gate"] = np.array([fluency_gate(text) for text in texts])
    fluency_values = guarded_fluency(texts, guard)
    if with_perplexity:
        report["perplexity"] = perplexity(prompts, completions, batch_size=batch_size)
    if max_perplexity is not None:
        # NaN (empty completion) compares False: its gate is 0 already
        fluency_values[report["perplexity"] > max_perplexity] = 0.0
    report["fluency"] = fluency_values
    return report


def degeneration_penalty(
    prompts: Sequence,
    completions: Sequence,
    *,
    max_perplexity: float | None = None,
    guard: str = "lexical",
) -> np.ndarray:  # (N,)
    """``1 - fluency`` per completion, in [0, 1]: 0 for fluent text, 1 for degenerate text.

    Use as a penalty (``reward - lam * penalty``) or a constraint (``penalty <= 0.5``). Loads
    the base model only when ``max_perplexity`` is given; ``guard`` as in ``degeneration``.

    Example:
        >>> degeneration_penalty(["Hi"] * 3, ["Hello there.", "ok ok ok ok", "Fine ......."]).tolist()
        [0.0, 1.0, 1.0]
    """
    report = degeneration(
        prompts,
        completions,
        with_perplexity=max_perplexity is not None,
        max_perplexity=max_perplexity,
        guard=guard,
    )
    return 1.0 - report["fluency"]


def fluency(prompts: list, completions: list, **kwargs) -> list[float]:
    """Fluency of the completion: the lexical fluency gate (no model, microseconds per reply).

    Map: ``ramp(nonword_ratio; 0.1 -> 0.4) * ramp(repetition; 0.3 -> 0.6)`` in [0, 1];
    1 = ordinary sentences, 0 = empty, punctuation runs or one repeated word.

    Example:
        >>> fluency(["Hi"] * 3, ["Hello, how are you?", "so good so good so good", ""])
        [1.0, 0.0, 0.0]
    """
    return [fluency_gate(text) for text in _texts(prompts, completions)[1]]


def fluency_objective() -> Objective:
    """The ``fluency`` objective (the degeneration guard as a reward), for ``register``."""
    return Objective(
        "fluency",
        fluency,
        "fluent text: no punctuation runs, non-words or loops (degeneration guard)",
        "ramp(non-word share; 0.1 -> 0.4) x ramp(repetition; 0.3 -> 0.6); 0 if empty",
    )


def _texts(prompts: Sequence, completions: Sequence) -> tuple[list[str], list[str]]:
    for field, values in (("prompts", prompts), ("completions", completions)):
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise ValueError(f"{field} must be a list of strings, got {type(values).__name__}")
    if len(prompts) != len(completions):
        raise ValueError(
            f"completions has {len(completions)} items but prompts has {len(prompts)}; "
            "pass one completion per prompt"
        )
    prompt_texts = [as_text(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
    completion_texts = [as_text(c, f"completions[{i}]") for i, c in enumerate(completions)]
    return prompt_texts, completion_texts
