"""The known-answer pair's run settings, shared by the tests that train on it."""

from morl_core import known_answers as ka

BETA = 0.3
KNOWN = {
    "objectives": list(ka.KNOWN_OBJECTIVES),
    "prompt_set": ka.PROMPT_SET,
    "max_new_tokens": 1,
    "batch_prompts": 8,
    "k_samples": 4,
    "kl_coef": BETA,
    "lr": 2e-3,
    "eval_prompts": 4,
    "n_preferences": 2,
    "eval_every": 0,
    "checkpoint_every": 1000,
    "device": "cpu",
    "threads": 1,
}
