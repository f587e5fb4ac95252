"""Does a trained RiC policy read its target-reward tags? Two measurements on a RiC run folder.

Usage::

    python benchmarks/ric_tag_reading.py RUN_DIR [--probe 96] [--out FILE]

RiC (:mod:`morl_core.methods.ric`) conditions one policy on tags such as
``<readability=0.3>`` and steers by writing the tags of a preference's target rewards. A run
whose front does not follow the preference either never learned what the tags mean, or is asked
at inference for tags it never saw in training. This tells the two apart, from the run's last
checkpoint (its pool of scored replies) and adapter:

1. **Coverage**: the training pool as RiC trains on it (the replies rejection sampling keeps,
   relabelled by each rule of :func:`morl_core.methods.ric_tags.relabel`; the run's own is the
   one it recorded, min-max for runs without one), and how often its tags look like the ones
   inference writes: an objective without a tag stands for 1.0, the pool's best, so the middle
   of the front (every target at 1.0) writes no tag at all and each end writes one.
2. **Reading**: for ``--probe`` replies the base model sampled (the offline rounds' pool), the
   log-likelihood of the reply under two contrasting tag sets, A = the first objective high and
   the second low (``<o1=0.9><o2=0.2>``) and B = the swap; and under the tags inference writes at
   the two ends. A policy that reads its tags makes a reply that scores high on the first
   objective more likely under A than under B: the correlation between the gap log p(y | A) -
   log p(y | B) and the reply's own normalised reward difference is positive, and stays
   positive within a prompt (both demeaned per prompt). The same is measured with the adapter
   off (the base model wearing the tags) as the baseline.

Prints a table and saves the figures to ``--out`` (default
``benchmarks/results/ric_tag_reading.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core.config import RunConfig  # noqa: E402
from morl_core.methods import ric, ric_tags  # noqa: E402
from morl_core.prompts import load_prompts  # noqa: E402
from morl_core.runfolder import load_latest_checkpoint, read_json, write_json_atomic  # noqa: E402

CONTRAST = (0.9, 0.2)  # the first two objectives' tag values in A (B swaps them)


def load_pool(run_dir: Path) -> tuple[list[int], list[list[int]], np.ndarray, np.ndarray]:
    """The run's pool from its last checkpoint: prompt index, reply ids, normalised rewards and
    the fluency guard's score of each reply (pools saved before the guard read as fluent)."""
    found = load_latest_checkpoint(run_dir)
    if found is None or "pool/ids" not in found.tensors:
        raise SystemExit(f"{run_dir}: no RiC checkpoint with a pool")
    ids = [[t for t in row if t >= 0] for row in found.tensors["pool/ids"].tolist()]
    norm = found.tensors["pool/norm"].numpy().astype(float)
    fluency = found.tensors.get("pool/fluency")
    fluency = np.ones(len(ids)) if fluency is None else fluency.numpy().astype(float)
    return found.tensors["pool/prompt"].tolist(), ids, norm, fluency


def coverage(
    norm: np.ndarray,
    objectives: tuple[str, ...],
    rule: str = "quantiles",
    style: str = "relaxed",
    guarded: np.ndarray | None = None,
) -> dict[str, float]:
    """Shares of the kept pool (kept by ``guarded``, the rewards less the fluency penalty, when
    given), relabelled by ``rule`` (:func:`morl_core.methods.ric_tags.relabel`): each
    objective's tag left out (label 1.0), every tag left out (what the middle of the front
    writes), and each end's exact tags, written in ``style``."""
    labels = ric_tags.relabel(norm, rule)[ric.rejection_keep(norm if guarded is None else guarded)]
    texts = [ric_tags.tag_text(objectives, row, style) for row in labels]
    k = len(objectives)
    out = {f"untagged/{o}": float((labels[:, i] >= 1.0).mean()) for i, o in enumerate(objectives)}
    out["untagged/all"] = float((labels >= 1.0).all(1).mean())
    for i, o in enumerate(objectives):
        end = ric_tags.prefix(objectives, np.eye(k)[i], style)
        out[f"end/{o}"] = float(np.mean([t == end for t in texts]))
    return {"kept": int(len(labels)), **out}


def reply_logprobs(policy, prompts: list[str], replies: list[list[int]], tags: str) -> np.ndarray:
    """log p(reply | tags + prompt) summed over each reply's tokens (n,)."""
    import torch

    from morl_core.rl.losses import token_logprobs

    out = []
    for start in range(0, len(replies), 16):
        chunk = replies[start : start + 16]
        ids, mask = policy.encode(prompts[start : start + 16], 0, tags)
        width, n = ids.shape[1], max(map(len, chunk))
        full = torch.full((len(chunk), width + n), policy.pad_id, dtype=torch.long)
        full_mask = torch.zeros_like(full)
        full[:, :width], full_mask[:, :width] = ids, mask
        for r, reply in enumerate(chunk):
            full[r, width : width + len(reply)] = torch.tensor(reply)
            full_mask[r, width : width + len(reply)] = 1
        with torch.no_grad():
            logp, _ = token_logprobs(policy.model, full, full_mask, n)
        out += (logp * full_mask[:, width:]).sum(1).tolist()
    return np.asarray(out)


def correlations(gap: np.ndarray, diff: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """corr(gap, diff) over the replies and within prompts (both demeaned per prompt), and the
    mean absolute gap in nats."""

    def demeaned(x: np.ndarray) -> np.ndarray:
        means = {g: x[groups == g].mean() for g in np.unique(groups)}
        return x - np.asarray([means[g] for g in groups])

    within = np.corrcoef(demeaned(gap), demeaned(diff))[0, 1]
    return {
        "corr": float(np.corrcoef(gap, diff)[0, 1]),
        "corr_within_prompt": float(within),
        "mean_abs_gap_nats": float(np.abs(gap).mean()),
    }


def reading(run_dir: Path, probe: int, seed: int = 0, pool=None) -> dict[str, dict[str, float]]:
    """The reading measurements (see the module doc), for the policy and the base model;
    ``pool``: the run's :func:`load_pool` when the caller has it already."""
    steerable = ric.load(run_dir, device="cpu")
    policy, objectives = steerable.policy, steerable.objectives
    policy.prefix = ""
    config = read_json(run_dir / "config.json")
    pool_prompt, pool_ids, norm, _ = pool or load_pool(run_dir)
    offline = ric.offline_steps(RunConfig.from_dict(config, check_files=False))
    base_rows = offline * config["batch_prompts"] * config["k_samples"]
    rows = [i for i in range(min(base_rows, len(pool_ids))) if pool_ids[i]]
    rows = np.random.default_rng(seed).choice(rows, size=min(probe, len(rows)), replace=False)
    prompts = load_prompts(config["prompt_set"], "train")
    asked = [prompts[pool_prompt[i]] for i in rows]
    replies = [pool_ids[i] for i in rows]
    diff, groups = norm[rows, 0] - norm[rows, 1], np.asarray([pool_prompt[i] for i in rows])
    k = len(objectives)
    rest = [1.0] * (k - 2)
    tags = {
        "contrast": (
            ric_tags.tag_text(objectives, [*CONTRAST, *rest], steerable.tags),
            ric_tags.tag_text(objectives, [*CONTRAST[::-1], *rest], steerable.tags),
        ),
        "ends": (
            ric_tags.prefix(objectives, np.eye(k)[0], steerable.tags),
            ric_tags.prefix(objectives, np.eye(k)[1], steerable.tags),
        ),
    }
    out = {}
    for who in ("policy", "base"):
        for name, (a, b) in tags.items():
            off = policy.model.disable_adapter() if who == "base" else contextlib.nullcontext()
            with off:
                gap = reply_logprobs(policy, asked, replies, a)
                gap -= reply_logprobs(policy, asked, replies, b)
            out[f"{who}/{name}"] = {"a": a, "b": b, **correlations(gap, diff, groups)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--probe", type=int, default=96, help="base-model replies measured")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/ric_tag_reading.json"
    )
    args = parser.parse_args(argv)
    if not 2 <= args.probe <= 4096:
        parser.error(f"--probe must be an integer in [2, 4096], got {args.probe}")
    config = read_json(args.run_dir / "config.json") or {}
    if config.get("method") != "ric":
        parser.error(f"{args.run_dir} is not a RiC run folder (its config.json names no RiC run)")
    from morl_core.policy import set_threads

    set_threads(1)
    objectives = tuple(config["objectives"])
    artifact = read_json(args.run_dir / "artifact.json") or {}
    rule = artifact.get("relabel", "minmax")
    # the style it trained on: its artifact's (none there: older runs wrote every tag), or, for a
    # run not finished, its config's
    style = artifact.get("tags", "all") if artifact else config.get("options", {}).get("tags")
    style = style or "relaxed"
    pool = load_pool(args.run_dir)
    # what its rejection sampling read: the rewards less its fluency penalty
    guarded = ric.judged(pool[2], pool[3], float(config.get("fluency_penalty", 0.0)))
    covered = {r: coverage(pool[2], objectives, r, style, guarded) for r in ric_tags.RELABEL_RULES}
    read = reading(args.run_dir, args.probe, pool=pool)
    kept = covered[rule]["kept"]
    print(f"run {args.run_dir}: {kept} kept replies in the pool; it was trained on {rule} tags")
    print(f"  {'share of them':32s} " + " ".join(f"{r:>10s}" for r in covered))
    for key in covered[rule]:
        if key != "kept":
            print(f"  {key:32s} " + " ".join(f"{c[key]:10.1%}" for c in covered.values()))
    print(f"{'tags (A vs B)':16s} {'who':7s} {'corr':>7s} {'within':>7s} {'|gap| nats':>10s}")
    for key, r in read.items():
        who, name = key.split("/")
        print(
            f"{name:16s} {who:7s} {r['corr']:+7.3f} {r['corr_within_prompt']:+7.3f} "
            f"{r['mean_abs_gap_nats']:10.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"run": str(args.run_dir), "relabel": rule, "coverage": covered, "reading": read}
    write_json_atomic(args.out, json.loads(json.dumps(result)))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
