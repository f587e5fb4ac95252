"""Train the SmolLM2-135M demo artifacts through the job system, resumably, across sittings.

Each demo is a run in a job store that outlives the session (``$MORL_DATA_DIR``, e.g.
``/root/morl-smollm2``); ``demos.json`` there maps demo names to run ids. Running the script
again picks up where the last sitting stopped::

    MORL_DATA_DIR=/root/morl-smollm2 python scripts/build_smollm2_demos.py    # submit, wait, export
    MORL_DATA_DIR=/root/morl-smollm2 python scripts/build_smollm2_demos.py --status
    MORL_DATA_DIR=/root/morl-smollm2 python scripts/build_smollm2_demos.py --only NAME[,NAME]

A demo not yet submitted is submitted once the demo it reuses experts from has succeeded; a
failed, cancelled or lost one is resumed from its last checkpoint (``morl resume``); a queued or
running one is left to its worker (a separate process: stopping this script does not stop it).
A succeeded demo is exported once: the files the app needs (``KEPT_RUN_FILES``) go to
``assets/demo/<name>/`` with the adapters in fp16, where it was trained goes to
``trained_on.json``, the folder is evaluated under the evaluation protocol (``front.json``) and
its Steer replies are precomputed (``lattice.json``, see :mod:`morl_core.app.lattice`).

Five expert pools: ``EXPERTS`` trained all four objectives; ``GUARDED`` retrains brevity and
sentiment (KL coefficient 0.1, the word-list fluency guard; option ``retrain``; ``EXPERTS``'
brevity and sentiment experts barely moved at beta 0.15) and copies formality and readability;
``TERSE`` trains brevity with a 15-word target (``BREVITY``) at KL coefficient 0.05 and copies
the rest; ``LUCID`` retrains readability at 0.05 and ``FORMAL`` then formality, each copying
the rest. A store without a pool's run (a new machine) reuses the experts that ship inside a soup
(``SHIPPED_POOLS``: ``EXPERTS``' in the pair's, ``FORMAL``'s in the triple's) instead of
retraining them (hours on a CPU), for the demos that need only the experts that soup has; a
demo already exported to ``assets/demo`` is not trained again.

The demos: every family on a 2-objective set (formality vs readability, over ``EXPERTS``) and a
3-objective one (plus ``BREVITY``, over ``FORMAL``), and the soup of all four experts,
submitted in ``DEMOS`` order (one worker: every family on the pair first, the aggregations over a
pool before the policies trained from the base model, then the same for the triple). On 2 CPU
cores that is many sittings; a sitting with a GPU does them in one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core.app.catalog import DEMO_DIR, KEPT_RUN_FILES  # noqa: E402
from morl_core.app.lattice import LATTICE  # noqa: E402
from morl_core.jobs.executors import LocalExecutor  # noqa: E402
from morl_core.jobs.files import locked  # noqa: E402
from morl_core.jobs.records import RunState  # noqa: E402
from morl_core.runfolder import read_json, write_json_atomic  # noqa: E402

COMMON = {
    "model": "smollm2-135m",
    "prompt_set": "assistant",
    "seed": 0,
    "device": "auto",  # CUDA where a sitting has one; trained_on.json records which
    "threads": 1,
    # 16 replies of 32 tokens per step: 25 s on a quiet core, 40-50 s niced beside other work
    "batch_prompts": 4,
    "k_samples": 4,
    "max_new_tokens": 32,
    "lora_r": 8,
    "lora_alpha": 32,
    # SmolLM2 finds exploits (brevity alone, no KL: empty replies by step 22): at lr 3e-4 and
    # beta 0.05 the brevity expert went from 0.31 to 0.89 in 55 steps (32 -> 12 tokens, KL 7
    # nats) with half its replies made-up words ("Zomhool!"); beta 0.15 prices those replies
    # out, but brevity barely moved (0.35 -> 0.37 in 100 steps). At lr 1e-4 brevity barely
    # moved in 22 steps. GUARDED retrains brevity at 0.1 with made-up words penalised instead.
    "lr": 3e-4,
    "kl_coef": 0.15,
    "fluency_penalty": 1.0,
    "steps": 100,
    "n_preferences": 5,
    "eval_every": 0,  # learning curves come from the per-step metrics
    "eval_prompts": 8,
    "checkpoint_every": 5,
}
EXPERTS = "smollm2-experts"
GUARDED = "smollm2-experts-guarded-brevity"
TERSE = "smollm2-experts-terse"
LUCID = "smollm2-experts-lucid"
FORMAL = "smollm2-experts-formal"
POOL_OBJECTIVES = ["brevity", "sentiment", "formality", "readability"]
# Held-out check of EXPERTS (its front.jsonl, one point per expert, 8 prompts): the formality
# expert scores formality 0.677 against 0.585-0.613 for the others, the readability expert
# readability 0.675 against 0.574-0.648; the sentiment expert did not move sentiment (0.648,
# below the readability expert's 0.672) nor brevity's its objective (0.432 vs 0.416-0.432).
# So the 2-objective demos pair the two experts that work, formality vs readability (the
# benchmark's conflicting pair), from EXPERTS; the 3-objective ones add a brevity expert.
PAIR = ["formality", "readability"]
GUARDED_OBJECTIVES = [*PAIR, "brevity", "sentiment"]
# Brevity's default target (8 words: the embedded model's scale) is no target for an assistant:
# SmolLM2's 32-token replies have ~24 words, so a whole answer of 15 scores 0.53 and the reward
# only pays for terse fragments. Retrained from GUARDED at beta 0.05 (run
# 20261206-083749-b5f5ccdf, word-list guard on), brevity rose from 0.36 to 0.79 in 100 steps
# (means of the first and last 10: 31 -> 16 tokens, KL 5.1 nats a reply) by answering in
# non-answers that the word list passes: "Honesty." and "Proud of yourself." to a damaged order,
# "No, Mr. Smith." to why the sky is blue. At 15 words a one-sentence answer scores 1 as a
# fragment does, so the reward no longer pays more for the fragment; whether an expert trained on
# it answers in short sentences is what its replies show (read them before shipping anything
# built on it).
BREVITY = "brevity(target_words=15)"
TRIPLE = [*PAIR, BREVITY]
FOUR = [*TRIPLE, "sentiment"]  # every expert of the terse, lucid and formal pools
SLUGS = {BREVITY: "brevity15"}  # in demo names (folders, links)
# Aggregations over a pool train nothing (soups, MOD) or little (EMORL's search, the
# meta-policy's upper level); the single policies and MORLHF train a LoRA of their own from the
# base model, so they come last.
AGGREGATIONS: dict[str, dict] = {
    "soups": {},
    "mod": {},
    "metapolicy": {"options": {"meta_steps": 40}},  # the headline method first
    # EMORL mixes the experts' residual streams before the final norm (mix_at="pre_norm"), where
    # only the direction of a matters, and searches as the paper does (w . r less the fluency
    # penalty): the search picks the mixture but cannot buy a temperature. On the pair the other
    # settings failed: a search that prices KL (the default) kept to the middle, because the
    # experts are not at the optimum of their own KL-regularised objective (the 50/50 mixture
    # beats the readability expert on it); the paper's search at the final hidden state (run
    # 20261206-111648-fb606cf9) spread the front but sharpened the mixture (temperature 0.64 at
    # the middle, 0.26 nats/token of KL) into loops. Before the norm (run
    # 20261206-143006-74ec5345) it spread the front without sharpening (held-out HV 0.5640, EU
    # 0.6372, KL 0.006-0.020 nats/token), but its lattice's ends were 1.8 standard errors apart
    # on formality and 2 of 176 replies failed the fluency guard: not shipped (docs/findings.md).
    # With common random numbers in the search (run 20261206-233510-25be8f25) the readability
    # end drew a = (0.5, 0.75) and the lattice's ends were 0.6 standard errors apart.
    # On its search's replies that end (0.583) beat the readability expert alone (0.581) by far
    # less than the noise: the grid's maximum over noisy means is a lucky draw. So the search
    # keeps a = w (the mixture the soup serves) unless its best candidate beats it by 2
    # standard errors of their paired difference (search_guard): run 20261207-023450-109f2004
    # kept a = w at 4 of 5 preferences, its ends are the experts, and it ships.
    # The word-list guard's penalty is priced in every search (under the lexical guard alone it
    # picked a mixture that wrote made-up words at w_formality 0.6).
    "emorl": {
        "fluency_guard": "wordlist",
        "options": {"search_objective": "reward", "mix_at": "pre_norm", "search_guard": 2.0},
    },
}
# DynaOpt's adapter wraps q_proj and v_proj only (about 1 MB in fp16, where the
# experts' all-linear ones are 4.9 MB). Panacea's SVD adapter needs every linear layer. Panacea
# learns its preference part slowly (one random preference per step, one singular value per
# objective): on the pair, drawing its preferences uniformly, its lattice's ends were 1.9
# standard errors apart on formality after 100 steps and 0.9 after 200 (the demo bar asks for
# 2). Drawn from Dirichlet(0.3) the preference columns get 1.9 times the contrast (see
# morl_core/methods/panacea.py): run 20261206-112913-c64bed7d (100 steps) follows the preference
# held out, but its lattice's ends were still 1.7 and 1.2 standard errors apart, and 3 of its 176
# replies failed the word-list guard. So it trains as the experts that separated did (FORMAL's):
# KL coefficient 0.05, made-up words penalised by the word-list guard.
# MORLHF was first trained on the pair with 5 q/v policies x 60 steps (run
# 20261205-223332-6346b2d9): its held-out points followed the preference, but its LoRAs moved
# less than the experts' (KL 0.002-0.015 nats/token) and its Steer lattice could not tell the
# ends apart (0.4-0.5 standard errors). So it trains its policies as the experts were trained,
# LoRA on every linear layer, 100 steps each, and only 3 of them (4.9 MB each in fp16): both
# ends and the middle on the pair, the three vertices on the triple (the Steer page serves the
# nearest policy).
# RiC with one supervised step per round (run 20261205-213541-430def1c, 100 rounds) moved away
# from the base model (KL 0.065 nats/token) without learning to read its tags: over its online
# rounds the slope of training formality on the drawn w_formality was 0.024, and its lattice's
# ends were 0.4 standard errors apart on formality and 0.0 on readability. On the known-answer
# problem at the same rate one step per round did not separate the ends either, four did
# (tests/test_known_answers.py): it takes 4. On SmolLM2 four did not help (run
# 20261206-202251-24513026: 0.36 nats/token from the base, online slope -0.005, its lattice's
# ends the wrong way round). Its pool never had the ends' tags (min-max labels; 0.2 % and 0.1 %
# of its kept replies, benchmarks/ric_tag_reading.py); RiC now labels between the pool's 10th
# and 90th percentiles (11.7 % and 8.1 % of the same pool). Retrained with that (run
# 20261206-234616-00f09337) its pool had the ends' tags but it still did not read them (+0.15
# within a prompt, the base model +0.12). Trained afresh on that run's pool with LoRA on every
# linear layer, 100 supervised steps read the ends' tags at +0.35 within a prompt (an offline
# probe, benchmarks/ric_tag_reading.py's measure): RiC trains its LoRA as the experts do. With
# 4 supervised steps a round that LoRA learnt the early, small pool by heart (run
# 20261207-050833-d663c8d0, cancelled at round 19: SFT loss 1.44 and KL 1.16 nats/token on its
# minibatches at round 18, where the q/v run had 2.24 and 0.28), so it takes one a round: 100
# steps in all, as many as the probe's. So trained (run 20261207-053302-703e736a) it did not
# steer either (lattice ends +0.027 formality at a standard error of 0.052): not shipped. The
# probe's +0.35 was measured on prompts it had trained on: with a quarter of the prompts held out
# of its pool (benchmarks/ric_sft_probe.py) the trained ones read +0.37 after 200 steps and the
# held-out ones +0.15, the base model's +0.15 (docs/findings.md). Base SmolLM2 does read a
# request in words: on 16 held-out prompts x 4 replies "Make your reply very formal." against
# "Make your reply very simple." put the replies +0.15 formality and -0.20 readability apart
# (4.9 and 5.8 standard errors), where the ends' tags put them +0.02 and +0.05 apart. So RiC
# writes its targets (and its pool's labels) in words (option tags="words"; ric.py).
# So trained (run 20261207-114525-687f6a34) it followed them no more: its ends +0.013
# formality and -0.004 readability apart in words (its base model +0.151 / -0.198;
# benchmarks/ric_tag_wording.py --run), its lattice's ends the wrong way: not shipped. Its
# offline pool was drawn without a request, so the supervised step pulls each request's replies
# towards the unasked ones (docs/findings.md), so its offline rounds now draw them under the
# round's drawn request (option offline_tags="drawn"). So trained (run 20261207-132211-ba549d4f)
# it followed them somewhat (online rounds: formality +0.068 and readability -0.142 from
# w_formality 0 to 1; held out, its ends in words +0.028 (SE 0.039) and -0.070 (0.049) apart)
# but it wrote made-up and foreign words ("Ja, de onzeel van hyderakies"; 12.5 % of its
# lattice's replies fail the word-list guard, up to 19 % at its mixtures, 1 of 16 at its
# formality end) and its formality end was not told apart from its readability end (+0.027, SE
# 0.058): not shipped. RiC's pool had ignored the fluency guard; its rejection sampling now
# reads the guarded rewards (ric.py), under the word-list guard. So trained (run
# 20261207-145706-90ceff73, its tags then read the guarded rewards too; they no longer do)
# its ends are 2.1 and 3.3 standard errors apart in its lattice and +0.142 (SE 0.031) / -0.090
# (0.047) in words (its base model +0.151 / -0.198), but 4.5 % of its lattice's replies fail
# the word-list guard (links, tables, Latin; one at its formality end): not shipped. Its pool was
# drawn at top-p 1, where base SmolLM2's replies average 0.884 on the guard (its offline rounds;
# 1 = fluent; at the Steer page's top-p 0.9 1 reply in 384 fails it), and RiC imitates its pool,
# tails and all (a supervised step needs no unbiased sample, as a policy gradient does): it draws
# at top-p 0.9. So trained (run 20261207-163754-c76f6fb8) 1.1 % of its lattice's replies fail
# the guard, its held-out ends are 4-5 standard errors apart, but its lattice's ends 1.4 and 1.6:
# not shipped. Its online rounds were still learning (the slope of training formality on the
# drawn w_formality 0.043 in their first half, 0.139 in their second; guard 0.954 -> 0.975), so
# it trains 100 online rounds after the same 50 offline ones (option offline_share). So trained
# (run 20261207-180440-e3da74c7) its lattice's ends are 2.4 and 2.5 standard errors apart: shipped.
# On the triple the same settings (run 20261207-225930-eaa6562a) do not steer: no end of its
# lattice is told apart from another on its own objective (at most 1.8 standard errors), and its
# steering faded as it trained (docs/findings.md): not shipped. Held out it still reads "very
# formal" against "very simple" (3.8 and 3.4 standard errors), but the brevity end's request,
# "very short" alone, labels 2 of the 1,699 replies its pool kept (benchmarks/ric_tag_reading.py).
QV = {"lora_target_modules": "q_proj,v_proj"}
SINGLE: dict[str, dict] = {
    "ric": {
        "lora_target_modules": "all-linear",
        "fluency_guard": "wordlist",
        "top_p": 0.9,
        "steps": 150,
        "options": {
            "sft_updates": 1,
            "tags": "words",
            "offline_tags": "drawn",
            "offline_share": 1 / 3,
        },
    },
    "panacea": {
        "kl_coef": 0.05,
        "fluency_guard": "wordlist",
        "options": {"preference_concentration": 0.3},
    },
    "dynaopt": QV,
    "morlhf": {"n_preferences": 3, "lora_target_modules": "all-linear", "steps": 100},
}
# On the triple every expert had to be retrained at beta 0.05 under the word-list guard before
# its end could be told apart (GUARDED -> TERSE -> LUCID -> FORMAL, below); MORLHF's policies,
# trained as the experts were, are trained as those were. So trained (run
# 20261207-022459-994fbe3f) its formality and readability ends separated but its brevity
# policy barely moved brevity (0.830 held out against 0.801 at the readability vertex; TERSE's
# expert: 0.860): not shipped. Its brevity policy's objective and settings were TERSE's expert's
# (which rose 0.651 -> 0.834 in training), its seed another: means of 10 steps went 0.688 ->
# 0.754 (steps 50-60) -> 0.694 with every gradient clipped (norm 4-7 against 2), a walk on the
# noise of 4 replies a prompt (RLOO's baseline is the other 3). Brevity's real signal is rare:
# 1 base reply in 20 ends inside the 32 tokens (benchmarks/brevity_truncation.py), so a prompt's
# 4 replies hold one 19 % of the time, its 8 34 %. So on the triple MORLHF draws 8 replies a
# prompt: twice the samples a step, each advantage's baseline the mean of 7 replies, not 3.
# So trained (run 20261207-081535-9dd025f9) its brevity policy learnt (0.630 -> 0.748 in
# training) and its lattice's ends are 2.7-6.3 standard errors apart: shipped.
# Panacea on the triple (run 20261206-213130-1ad1ded4, 4 replies a prompt) never moved brevity
# (training means of its first and last 10 steps 0.639 -> 0.617, 31.6 -> 31.5 tokens) and its
# lattice's brevity end led the others by 1.94 and 1.51 standard errors: it draws 8 as well.
# With 8 (run 20261207-102014-0226cfaf) its brevity did not move either (0.629 -> 0.632; its
# lattice's brevity end 1.1 and 0.3 standard errors ahead): not shipped. It trained one policy for
# the whole simplex on a third of MORLHF's samples (100 steps against 3 x 100), and it was
# learning: over its last 50 steps a step's formality rose with the step's formality weight
# (correlation 0.69, against 0.27 over its first 50), its brevity barely (0.32 against 0.12:
# +0.035 brevity from weight 0 to 1). So it trains 300 steps, MORLHF's samples.
# So trained (run 20261207-145706-d0ff953a) its held-out vertices are in order (HV 0.6408) but
# its lattice's readability end leads the brevity end on readability by 1.6 standard errors:
# not shipped.
# So it draws its training preferences from Dirichlet(0.1) on the triple (below).
# The meta-policy over the triple's experts (run 20261206-174614-c7ecf5b5, preferences drawn
# uniformly) pulled its vertices towards the middle (formality 0.510 at the brevity vertex where
# the soup has 0.456) and its lattice's formality end led the brevity end by 1.98 of the 2
# standard errors asked. Uniform on three objectives, few training preferences are near a
# vertex; drawn from Dirichlet(0.3), as Panacea's are, the upper level trains where the ends are.
# So trained (run 20261207-054549-a17b832f) its lattice's ends are 2.2-6.1 standard errors
# apart: shipped.
# EMORL's search grows as 3^K candidates a round: on the triple the pair's 5 rounds ask for about
# 570 distinct directions over the 10 preferences (at ~75 s each beside another run, 12 h); run
# 20261207-043449-8c34bb15 had scored 324 of them when its machine was replaced and the run with
# it. Two rounds (a 0.25 grid around each preference's best 3^3 cell) ask for about 60, and the
# search guard keeps a = w unless a candidate beats it by 2 standard errors anyway (4 of 5
# preferences on the pair). So searched (run 20261207-230322-21010dc0: 68 candidates, a = w kept
# at 6 of 10 preferences) its lattice's ends are 2.0-6.5 standard errors apart: shipped.
TRIPLE_AGGREGATIONS = {
    **AGGREGATIONS,
    "metapolicy": {
        "options": {**AGGREGATIONS["metapolicy"]["options"], "preference_concentration": 0.3}
    },
    "emorl": {
        **AGGREGATIONS["emorl"],
        "options": {**AGGREGATIONS["emorl"]["options"], "search_rounds": 2},
    },
}
TRIPLE_SINGLE = {
    **SINGLE,
    "morlhf": {**SINGLE["morlhf"], "kl_coef": 0.05, "fluency_guard": "wordlist", "k_samples": 8},
    # Dirichlet(0.1): more of its steps near the vertices, where the ends must separate (run
    # 20261208-020845-ea943051, with threads 2 for speed, in progress on 2026-12-08)
    "panacea": {
        **SINGLE["panacea"],
        "k_samples": 8,
        "steps": 300,
        "options": {"preference_concentration": 0.1},
    },
}


def demo(method: str, objectives: list[str], spec: dict, pool: str | None = None) -> dict:
    preferences = 5 if len(objectives) == 2 else 10
    found = {"method": method, "objectives": objectives, "n_preferences": preferences, **spec}
    return {**found, "experts_from": pool} if pool else found


def retrained(objective: str, pool: str) -> dict:
    """A pool of ``FOUR``'s experts that retrains ``objective``'s at beta 0.05 under the word-list
    guard (the one setting under which SmolLM2's experts moved without made-up words) and copies
    the others from ``pool``."""
    return {
        "method": "soups",
        "objectives": FOUR,
        "kl_coef": 0.05,
        "fluency_guard": "wordlist",
        "options": {"retrain": objective},
        "experts_from": pool,
    }


def name_of(method: str, objectives: list[str]) -> str:
    return f"smollm2-{method}-{'-'.join(SLUGS.get(o, o) for o in objectives)}"


# name -> config overrides, in submission order; "experts_from" names the demo whose experts a
# demo reuses
DEMOS: dict[str, dict] = {
    # one LoRA expert per objective (brevity: at most 8 words scores 1; SmolLM2 replies ~25)
    EXPERTS: {"method": "soups", "objectives": POOL_OBJECTIVES},
    **{name_of(m, PAIR): demo(m, PAIR, spec, EXPERTS) for m, spec in AGGREGATIONS.items()},
    # every family on the pair (the app's landing set) before the 3-objective work
    **{name_of(m, PAIR): demo(m, PAIR, spec) for m, spec in SINGLE.items()},
    # the same pool with brevity and sentiment retrained: beta 0.1, and replies in made-up words
    # ("Zomhool!") cost the fluency penalty too (a share of words outside an English word list
    # above 0.25). Base SmolLM2's replies score sentiment 0.68 on 8 training prompts x 4 (within
    # a prompt's 4 replies the std is 0.14: "Great question!" openers score 0.9 and more)
    GUARDED: {
        "method": "soups",
        "objectives": GUARDED_OBJECTIVES,
        "kl_coef": 0.1,
        "fluency_guard": "wordlist",
        "options": {"retrain": "brevity,sentiment"},
        "experts_from": EXPERTS,
    },
    # GUARDED's brevity expert barely moved either: training brevity 0.359 -> 0.381 over its
    # 100 steps (quarter means); held out (its front.jsonl, 8 prompts) it scores brevity 0.432
    # against 0.416-0.419 for the formality and readability experts, well inside one standard
    # error (0.016), so no brevity end could be told apart. CONCISE (run
    # 20261206-092236-7516a49d) retrained brevity with a target an answer can meet (BREVITY,
    # above) at beta 0.1 and did not move either: training brevity 0.641 -> 0.692 and 31.6 ->
    # 30.8 tokens (means of its first and last 10 steps). Base replies rarely end inside 32
    # tokens, so the few that do are all the reward can learn from. TERSE keeps the 15-word
    # target and goes back to BRIEF's beta 0.05, the one setting under which brevity moved; it
    # copies GUARDED's other three experts.
    TERSE: retrained(BREVITY, GUARDED),
    # Over TERSE the triple's readability end could not be told apart from its brevity end: the
    # brevity expert's replies are as readable as the readability expert's (8 lattice prompts x 4
    # replies at each vertex of the soup: readability 0.709 at the brevity vertex, 0.682 at its
    # own; the triple's soup failed the demo bar on it, and the meta-policy's held-out front had
    # readability 0.719 at its readability vertex and 0.688 at its brevity vertex). The
    # readability expert is EXPERTS' (beta 0.15); LUCID retrains it at beta 0.05, as TERSE did
    # brevity.
    LUCID: retrained("readability", TERSE),
    # Over LUCID the soup's readability end separated (2.5 standard errors in its lattice) but
    # not its formality end from its brevity end (+0.056 formality, standard error 0.053, on the
    # lattice's 8 prompts; 0.144 held out): FORMAL retrains formality at beta 0.05 as well.
    FORMAL: retrained("formality", LUCID),
    **{
        name_of(m, TRIPLE): demo(m, TRIPLE, spec, FORMAL) for m, spec in TRIPLE_AGGREGATIONS.items()
    },
    name_of("soups", FOUR): demo("soups", FOUR, {}, FORMAL),  # the four experts, shipped
    **{name_of(m, TRIPLE): demo(m, TRIPLE, spec) for m, spec in TRIPLE_SINGLE.items()},
}
POOLS = {EXPERTS, GUARDED, TERSE, LUCID, FORMAL}  # expert pools are not shipped
# ...but their experts ship inside the soups (fp16 copies): a pool missing from the store is
# taken from its soup for a demo that needs only the experts that soup has (the pair's or the
# triple's; the four-expert soup needs FORMAL's sentiment expert, so FORMAL's chain is trained)
SHIPPED_POOLS = {EXPERTS: name_of("soups", PAIR), FORMAL: name_of("soups", TRIPLE)}
EXPORTED = set(DEMOS) - POOLS
POLL_S = 60.0


def store_dir() -> Path:
    from morl_core.jobs.paths import resolve_data_dir

    return resolve_data_dir()


def run_ids(data: Path) -> dict[str, str]:
    return read_json(data / "demos.json") or {}


def exported(name: str) -> bool:
    """Whether demo ``name`` is fully exported to ``assets/demo`` (its lattice is written last)."""
    return (DEMO_DIR / name / LATTICE).exists()


def copied(name: str) -> set[str]:
    """The objectives whose experts demo ``name`` takes from its pool (a pool that retrains some
    copies the rest)."""
    spec = DEMOS[name]
    retrained = spec.get("options", {}).get("retrain", "")
    return set(spec["objectives"]) - set(filter(None, retrained.split(",")))


def shipped_pool(pool: str, ids: dict[str, str], objectives: set[str]) -> Path | None:
    """The shipped demo folder whose experts stand in for pool ``pool`` for a demo that needs
    the experts of ``objectives``: when the store has no run of that pool, and the demo is
    exported with every one of those experts; else None."""
    if pool in ids or pool not in SHIPPED_POOLS or not exported(SHIPPED_POOLS[pool]):
        return None
    folder = DEMO_DIR / SHIPPED_POOLS[pool]
    has = set((read_json(folder / "config.json") or {}).get("objectives", []))
    return folder if objectives <= has else None


def config_of(name: str, ids: dict[str, str], executor: LocalExecutor) -> dict | None:
    """The run config of demo ``name``, or None while the demo it reuses has not succeeded."""
    spec = dict(DEMOS[name])
    source = spec.pop("experts_from", None)
    if source is None:
        return {**COMMON, **spec}
    folder, run = shipped_pool(source, ids, copied(name)), ids.get(source)
    if folder is None:
        if run is None or executor.store.status(run).state != RunState.SUCCEEDED:
            return None
        folder = executor.store.run_dir(run)
    options = {**spec.pop("options", {}), "experts_from": str(folder)}
    return {**COMMON, **spec, "options": options}


def needed(names: list[str], ids: dict[str, str]) -> list[str]:
    """``names`` and the expert pools they copy from, transitively, in ``DEMOS`` order (a pool
    shipped with the experts a demo needs ends the chain: they are not trained again; a demo
    already exported needs no pool)."""
    unknown = sorted(set(names) - set(DEMOS))
    if unknown:
        known = ", ".join(DEMOS)
        raise ValueError(f"--only: no demo named {', '.join(unknown)}; the demos: {known}")
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        wanted.add(name)
        source = DEMOS[name].get("experts_from")
        if not source or source in wanted or (name not in ids and exported(name)):
            continue
        if shipped_pool(source, ids, copied(name)) is None:
            todo.append(source)
    return [name for name in DEMOS if name in wanted]


def advance(
    executor: LocalExecutor, data: Path, resumed: set[str], only: list[str] | None = None
) -> dict[str, str]:
    """Submit what is ready, in ``DEMOS`` order (the worker queue runs them in that order),
    resume what stopped (once a sitting), then export what finished (exports take long: the
    queue is filled first so the worker trains meanwhile). ``only``: these demos and the pools
    they need, the others left alone (not submitted, not waited for).

    Returns ``name -> state`` (with the step of a run in progress).
    """
    ids = run_ids(data)
    states, finished = {}, []
    waiting = None  # the first demo not yet submitted: the ones after it wait their turn
    wanted = needed([n for n in DEMOS if n in EXPORTED] if only is None else only, ids)
    for name in DEMOS if only is None else wanted:
        run = ids.get(name)
        if run is None and name in EXPORTED and exported(name):  # shipped from an earlier store
            states[name] = "exported"
            continue
        if name not in wanted:  # a pool no demo left to build needs trained
            shipped = SHIPPED_POOLS.get(name)
            states[name] = f"shipped in {shipped}" if shipped else "not needed"
            continue
        if run is None:
            config = None if waiting else config_of(name, ids, executor)
            if config is None:
                states[name] = f"waiting for {waiting}" if waiting else "waiting for its experts"
                waiting = waiting or name
                continue
            ids[name] = run = executor.submit(config)
            write_json_atomic(data / "demos.json", ids)
            print(f"{name}: submitted as {run}", flush=True)
        status = executor.status(run)
        stopped = status.state in (RunState.FAILED, RunState.CANCELLED, RunState.LOST)
        if stopped and name not in resumed:  # a run that fails again waits for a person
            print(f"{name}: {status.state} ({status.message}); resuming", flush=True)
            resumed.add(name)
            status = executor.resume(run)
        states[name] = f"{status.state} {status.step}/{status.total_steps}"
        if status.state == RunState.SUCCEEDED and name in EXPORTED:
            finished.append((name, run))
    for name, run in finished:
        out = DEMO_DIR / name
        if not (out / "front.json").exists():
            pool = DEMOS[name].get("experts_from")
            experts = trained_by(pool, ids, executor, copied(name)) if pool else []
            trained = [trainer(executor, run), *experts]
            export(name, executor.store.run_dir(run), trained)
        elif not (out / LATTICE).exists():  # a sitting stopped between the two
            finish_export(out)
        states[name] = "exported"
    return states


class Trainer(NamedTuple):
    """A run that trained adapters a demo uses, in this store or shipped with a demo."""

    run_id: str
    device: str
    host: str
    seconds: float
    folder: Path  # where its per-step metrics are


def trainer(executor: LocalExecutor, run: str) -> Trainer:
    """The store's run ``run`` as a :class:`Trainer`."""
    s = executor.status(run)
    seconds = (s.finished or 0) - (s.started or 0)
    return Trainer(s.run_id, s.device, s.host, seconds, executor.store.run_dir(run))


def trained_by(
    pool: str, ids: dict[str, str], executor: LocalExecutor, objectives: set[str]
) -> list[Trainer]:
    """The runs that trained the experts of ``objectives`` in expert pool ``pool``: its own run
    first, then, for the experts it copied, the runs of the pool it copied them from (a shipped
    pool: the run its demo's ``trained_on.json`` names, then the runs that one copied from)."""
    folder = shipped_pool(pool, ids, objectives)
    if folder is not None:
        shipped = read_json(folder / "trained_on.json")
        seconds = shipped["train_seconds"]  # theirs included
        first = Trainer(shipped["run_id"], shipped["device"], shipped["host"], seconds, folder)
        earlier = shipped.get("experts_copied_from", [])
        return [first, *(Trainer(r, first.device, first.host, 0.0, folder) for r in earlier)]
    source = DEMOS[pool].get("experts_from")
    own = trainer(executor, ids[pool])
    if not source:
        return [own]
    return [own, *trained_by(source, ids, executor, copied(pool) & objectives)]


def expert_records(runs: list[list[dict]], objectives: list[str]) -> list[dict]:
    """The per-step records of the experts of ``objectives``, each expert's stage from the first
    of ``runs`` (metrics records, the last trainer first) that has it, in step order; the
    other objectives' columns left out."""
    from morl_core.methods.experts import expert_names

    others = set(DEMOS[EXPERTS]["objectives"]) - set(objectives)
    wanted, records = set(expert_names(objectives)), []
    for run in runs:
        stages = {r.get("stage") for r in run} & wanted
        wanted -= stages
        records += [
            {k: v for k, v in r.items() if k.rsplit("/", 1)[-1] not in others}
            for r in run
            if r.get("stage") in stages
        ]
    return sorted(records, key=lambda r: r.get("step", 0))


def export(name: str, run_dir: Path, trained: list) -> Path:
    """Copy a finished run's kept files into ``assets/demo/name`` (fp16 adapters), evaluate it.

    ``trained``: the demo's own run, then the runs that trained the experts it copied, the last
    trainer of an expert first (:func:`trained_by`). The experts' learning curves are added to
    the run's own (a meta-policy's upper level, say), each stage from the first of those runs
    that trained it; the provenance names the run and the runs it copied from, and the seconds
    of them all.
    """
    from morl_core.jobs.records import git_hash, package_versions
    from morl_core.runfolder import (
        METRICS,
        append_jsonl,
        read_metrics,
        read_safetensors,
        write_safetensors_atomic,
    )
    from morl_core.train_cli import evaluate_run

    out = DEMO_DIR / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for item in run_dir.iterdir():
        if item.name in KEPT_RUN_FILES:
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    if len(trained) > 1:
        runs = [read_metrics(t.folder)[0] for t in trained[1:]]
        append_jsonl(out / METRICS, expert_records(runs, DEMOS[name]["objectives"]))
    for weights in out.glob("adapters/*/adapter_model.safetensors"):
        tensors, metadata = read_safetensors(weights)  # Panacea keeps its settings there
        write_safetensors_atomic(weights, {k: v.half() for k, v in tensors.items()}, metadata)
    for readme in out.glob("adapters/*/README.md"):
        readme.unlink()  # peft's model-card template: boilerplate, not provenance
    for adapter in out.glob("adapters/*/adapter_config.json"):
        config = json.loads(adapter.read_text())
        config["base_model_name_or_path"] = COMMON["model"]  # not this machine's cache path
        adapter.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    import torch

    last = trained[0]
    write_json_atomic(
        out / "trained_on.json",
        {
            "device": last.device,
            "gpu": torch.cuda.get_device_name() if last.device == "cuda" else None,
            "host": last.host,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "run_id": last.run_id,
            "experts_copied_from": [s.run_id for s in trained[1:]],
            "train_seconds": sum(t.seconds for t in trained),
            "adapters": "fp16 copies of the fp32 adapters trained",
            "git": git_hash(),
            "versions": package_versions(),
        },
    )
    evaluate_run(out, device="auto")  # front.json, written last by the evaluation
    return finish_export(out)


def finish_export(out: Path) -> Path:
    """Precompute an exported, evaluated demo's Steer replies (``lattice.json``, written last:
    an export is complete once it exists)."""
    from morl_core.app.lattice import build_lattice

    build_lattice(out, device="auto")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"exported {out.name} to {out} ({size / 1e6:.1f} MB), evaluated", flush=True)
    return out


def print_status(executor: LocalExecutor, data: Path) -> None:
    """One line per demo: run id, state, step, export; then its last step's main metrics."""
    from morl_core.runfolder import read_metrics

    ids = run_ids(data)
    for name in DEMOS:
        run = ids.get(name)
        if run is None:
            print(f"{name:42s} not submitted")
            continue
        s = executor.status(run)
        exported = " exported" if (DEMO_DIR / name / LATTICE).exists() else ""
        print(f"{name:42s} {run} {s.state} step {s.step}/{s.total_steps}{exported} {s.message}")
        records = read_metrics(executor.store.run_dir(run))[0]
        if records:
            last = records[-1]
            keys = [f"reward/{o}" for o in DEMOS[name]["objectives"]] + ["kl", "length", "fluency"]
            shown = " ".join(f"{k.split('/')[-1]}={last[k]:.3g}" for k in keys if k in last)
            print(f"{'':42s} last step {last.get('step')} ({last.get('stage')}): {shown}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", action="store_true", help="print each demo's progress")
    parser.add_argument("--no-wait", action="store_true", help="submit/resume, then return")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated demo names: build these (and the expert pools they need) only",
    )
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if only is not None:
        try:
            needed(only, {})
        except ValueError as error:
            parser.error(str(error))
    data = store_dir()
    # a niced worker beside other work can go quiet for a while: do not call it lost too soon
    executor = LocalExecutor(data, max_workers=1, heartbeat_timeout=600)
    if args.status:
        print(f"store: {data}")
        print_status(executor, data)
        return 0
    print(f"store: {data}", flush=True)
    resumed: set[str] = set()
    with locked(data / "build_demos.lock", blocking=False) as alone:
        if not alone:  # two builders would export the same folder at once
            print("another build_smollm2_demos.py is running on this store", file=sys.stderr)
            return 1
        while True:
            states = advance(executor, data, resumed, only)
            line = ", ".join(f"{n}: {s}" for n, s in states.items())
            if args.no_wait or all(s == "exported" for n, s in states.items() if n in EXPORTED):
                print(line, flush=True)
                return 0
            print(f"{time.strftime('%H:%M')} {line}", flush=True)
            time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())
