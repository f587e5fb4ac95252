"""Objectives: TRL-style reward functions with a documented map to [0, 1], higher is better.

Every objective is ``fn(prompts, completions, **kwargs) -> list[float]`` (TRL's reward
contract; prompts and completions may be strings or conversational message lists), registered
in the plain dict ``OBJECTIVES`` with a one-line description and its [0, 1] map.

=================  =========  ======================================================
name               kind       map to [0, 1]
=================  =========  ======================================================
sentiment          real       VADER compound c in [-1, 1] -> (c + 1) / 2, x gate
nontoxic           real       1 - p(offensive) from alt-profanity-check, x gate
readability        real       clip(Flesch reading ease, 0, 100) / 100, x gate
brevity            real       1 up to ``target_words`` (8) words, then target / n, x gate
diversity          real       mean distinct-1..distinct-``max_n`` (2), x non-word gate
relevance          real       cosine(MiniLM(prompt), MiniLM(completion)) in [0, 1], x gate
formality          real       sigmoid of a weighted lexical / part-of-speech heuristic, x gate
fluency            real       the gate itself: 0 for punctuation runs, loops, empty text
*_heldout          real       a second, independent scorer of sentiment, readability,
                              brevity and formality (train on one, report both)
synth_*            synthetic  (word-class rate) ** p, p in {0.5, 1, 2}; fronts known exactly
warm_word          synthetic  1 if the first word is a warm adjective (known answers)
cold_word          synthetic  1 if the first word is a cold adjective (known answers)
=================  =========  ======================================================

"gate" is the lexical fluency gate of :mod:`~morl_core.objectives.lexical`: punctuation runs,
non-words or one repeated word score 0 on every real objective, so no scorer is maximised by an
exploit. Empty completions score 0 on every built-in objective.

**Settings of a built-in** go in its name wherever a name is accepted (configs, ``--objectives``,
``score``): ``"brevity(target_words=20)"`` is brevity with a 20-word target, a name of its own in
results (literal keyword settings only; see ``registry.with_settings``).

**Your own objective, or TRL's**: pass a spec anywhere a name is accepted, e.g.
``"mypkg.rewards:my_reward"`` or ``"trl.rewards:get_repetition_penalty_reward(ngram_size=3)@[-1,
0]"`` (see ``specs``). It is called as TRL's ``GRPOTrainer`` calls reward functions (see
``scoring``). Importing runs the module's code, so the web UI imports only modules under
``$MORL_ALLOWED_IMPORTS`` (default ``trl.rewards``) unless its operator switches imports on.

Importing this package is cheap: torch, sentence-transformers, scikit-learn and VADER load
inside the scorers, once per process, on first use (thread-safe).
"""

from morl_core.objectives import adjectives, degeneration, heldout, lexical, models, synthetic
from morl_core.objectives.normalize import RewardNormalizer, front_bounds, learn_range
from morl_core.objectives.registry import (
    OBJECTIVES,
    Objective,
    ProgressCallback,
    RewardFunction,
    as_text,
    declared_range,
    import_objective,
    register,
    resolve,
)
from morl_core.objectives.scoring import (
    ObjectiveError,
    ObjectiveRow,
    TrainerState,
    describe,
    mean_applicable_columns,
    prepare,
    score,
    stderr_applicable_columns,
)
from morl_core.objectives.specs import ObjectiveSpec, parse_spec, split_specs
from morl_core.objectives.synthetic import (
    SYNTHETIC_PAIRS,
    SyntheticPair,
    compose_text,
    sample_texts,
    true_front,
    word_class_objective,
)

__all__ = [
    "OBJECTIVES",
    "SYNTHETIC_PAIRS",
    "Objective",
    "ObjectiveError",
    "ObjectiveRow",
    "ObjectiveSpec",
    "ProgressCallback",
    "RewardFunction",
    "RewardNormalizer",
    "SyntheticPair",
    "TrainerState",
    "as_text",
    "compose_text",
    "declared_range",
    "describe",
    "front_bounds",
    "import_objective",
    "learn_range",
    "mean_applicable_columns",
    "parse_spec",
    "prepare",
    "register",
    "resolve",
    "sample_texts",
    "score",
    "split_specs",
    "stderr_applicable_columns",
    "true_front",
    "word_class_objective",
]

# --- built-in objectives, in table order ---

register(
    Objective(
        "sentiment",
        models.sentiment,
        "positive sentiment of the reply (VADER)",
        "VADER compound c in [-1, 1] -> (c + 1) / 2; 0.5 = neutral",
        prepare=models.prepare_vader,
        adjective="positive",
    )
)
register(
    Objective(
        "nontoxic",
        models.nontoxic,
        "non-offensive language (alt-profanity-check classifier)",
        "1 - p(offensive); 1 = clean",
        prepare=models.prepare_profanity,
        adjective="polite",
    )
)
register(
    Objective(
        "readability",
        lexical.readability,
        "easy to read: short words and sentences (Flesch reading ease)",
        "clip(Flesch reading ease, 0, 100) / 100",
        adjective="simple",
    )
)
register(
    Objective(
        "brevity",
        lexical.brevity,
        "short replies: at most target_words words (default 8)",
        "1 for 1..target words, target / n beyond, 0 if empty",
        adjective="short",
    )
)
register(
    Objective(
        "diversity",
        lexical.diversity,
        "lexical diversity of the reply: little repetition (distinct-1/2)",
        "mean of distinct-1 and distinct-2 ratios of the words",
        adjective="varied",
    )
)
register(
    Objective(
        "relevance",
        models.relevance,
        "on topic: reply close in meaning to the prompt (MiniLM embeddings)",
        "cosine of all-MiniLM-L6-v2 embeddings, clipped to [0, 1]",
        prepare=models.prepare_minilm,
        adjective="on topic",
    )
)
register(
    Objective(
        "formality",
        lexical.formality,
        "formal register: no slang, contractions, I/you or exclamations",
        "sigmoid of weighted lexical / part-of-speech style features",
        adjective="formal",
    )
)
for _objective in synthetic.builtin_synthetic_objectives():
    register(_objective)
del _objective

# The known-answer pair (first word's class at an adjective slot; see morl_core.known_answers).
register(
    Objective(
        "warm_word",
        adjectives.warm_word,
        "the reply's first word is a warm adjective (lovely, friendly, ...)",
        "1 if the first word is in the warm list, else 0",
        kind="synthetic",
        adjective="warm",
    )
)
register(
    Objective(
        "cold_word",
        adjectives.cold_word,
        "the reply's first word is a cold adjective (rude, noisy, ...)",
        "1 if the first word is in the cold list, else 0",
        kind="synthetic",
        adjective="cold",
    )
)

# The fluency guard and the held-out twins (a second, independent scorer per objective).
for _objective in (degeneration.fluency_objective(), *heldout.heldout_objectives()):
    register(_objective)
del _objective
