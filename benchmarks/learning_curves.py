"""Learning curves and training budgets: how many steps each method needs to reach a plateau.

Usage::

    nice -n 10 python benchmarks/learning_curves.py [--steps 200] [--methods morlhf,experts,...]
        [--window 20] [--tolerance 0.02] [--work morl_data/learning_curves]
        [--out benchmarks/results/learning_curves]

Each method is trained on the default objectives (sentiment, brevity) on the embedded model, on
CPU with one thread, for ``--steps`` RL steps per trained policy, and every step's training
metrics are recorded: the scalarised reward at that step's preference and KL(pi || ref) per
completion, against samples scored. Multi-policy methods give one curve per policy:

- ``morlhf``: one policy per preference, at w1 = 1, 0.5, 0 (``--preferences 3``);
- ``experts``: the per-objective experts that soups, MOD, EMORL and pmix share (w one-hot);
- ``metapolicy``: its upper level only, over the ``experts`` run's experts;
- ``ric``, ``panacea``: one preference-conditioned policy, w ~ Dirichlet(1) per step (the curve
  is the expected utility over preferences);
- ``dynaopt``: one policy on Exp3's moving weights.

**Plateau.** A centred moving average of ``--window`` steps smooths each curve; its total gain is
the last average minus the first. The plateau step is the first step after which the moving
average gains less than ``--tolerance`` (2 %) of the total gain, i.e. the first step whose
average is within 2 % of the total gain of the final average. A method's recommended default
``steps`` is its largest plateau step over its curves (every policy it trains must get there).

**Resumable.** Runs are ordinary run folders under ``--work`` (checkpoints every 10 steps); the
per-step metrics go to ``--out/METHOD.jsonl`` as they come. A cut run continues from its last
checkpoint (steps recorded after it are recorded again and the later record wins); a method
whose run holds a finished artifact is not retrained. Prints a table and writes
``--out/learning_curves.json``, ``learning_curves.html`` (plotly) and, when plotly can export
images here, ``learning_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core.config import RunConfig  # noqa: E402
from morl_core.jobs.records import git_hash  # noqa: E402
from morl_core.methods import METHODS  # noqa: E402
from morl_core.policy import set_threads  # noqa: E402

CURVES = ("morlhf", "experts", "metapolicy", "ric", "panacea", "dynaopt")
# the method each curve trains (``experts`` is the soups run: its experts serve D1-D3)
TRAINS = {"experts": "soups"}
MAX_STEPS = 5000


# --- the numbers: pure functions ------------------------------------------------------------


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average (same length; the ends average over what they have)."""
    values = np.asarray(values, float)
    if window <= 1 or len(values) == 0:
        return values.copy()
    kernel = np.ones(window)
    total = np.convolve(values, kernel, mode="same")
    count = np.convolve(np.ones_like(values), kernel, mode="same")
    return total / count


def plateau(values: np.ndarray, window: int, tolerance: float) -> dict:
    """Where a curve stops improving.

    Args:
        values: the curve, one value per step (step i + 1 at index i).
        window: moving-average width in steps.
        tolerance: fraction of the total gain that counts as "still improving".

    Returns:
        ``{"step", "start", "end", "gain"}``: ``step`` is the first step (1-based) after which
        the moving average gains less than ``tolerance`` of its total gain ``end - start``
        (None when the curve did not improve at all).
    """
    smooth = moving_average(values, window)
    if len(smooth) == 0:
        return {"step": None, "start": None, "end": None, "gain": 0.0}
    start, end = float(smooth[0]), float(smooth[-1])
    gain = end - start
    if gain <= 0:
        return {"step": None, "start": start, "end": end, "gain": gain}
    reached = np.nonzero(end - smooth < tolerance * gain)[0]
    return {"step": int(reached[0]) + 1, "start": start, "end": end, "gain": gain}


# --- training with a recorded curve ---------------------------------------------------------


def settings(args) -> dict:
    return {
        "objectives": ["sentiment", "brevity"],
        "model": "embedded",
        "steps": args.steps,
        "n_preferences": args.preferences,
        "eval_every": 0,
        "checkpoint_every": 10,
        "device": "cpu",
        "threads": 1,
        "seed": args.seed,
    }


def read_log(path: Path) -> dict[tuple[str, int], dict]:
    """The recorded steps, keyed (stage, step); a step recorded twice keeps its later record."""
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            records[(row["stage"], row["step"])] = row
    return records


def train_curve(curve: str, base: dict, work: Path, out: Path, experts: Path | None) -> float:
    """Train ``curve``'s method (resuming), appending each step's metrics to ``out/CURVE.jsonl``."""
    run = work / curve
    if (run / "artifact.json").exists():
        return 0.0
    run.mkdir(parents=True, exist_ok=True)
    method = TRAINS.get(curve, curve)
    data = {**base, "method": method}
    if curve == "metapolicy":
        data["options"] = {"experts_from": str(experts)}
    config = RunConfig.from_dict(data)
    (run / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    log = (out / f"{curve}.jsonl").open("a")
    start = time.perf_counter()

    def record(info) -> bool:
        keep = ("reward/scalarized", "kl", "kl_per_token", "fluency", "length")
        row = {
            "stage": info.stage,
            "step": info.step,
            "samples": info.samples,
            **{k: info.metrics[k] for k in keep if k in info.metrics},
            **{k: v for k, v in info.metrics.items() if k.startswith(("weight/", "reward/"))},
        }
        log.write(json.dumps(row) + "\n")
        log.flush()
        if info.step % 25 == 0 or info.step == info.total_steps:
            print(f"  {curve}: step {info.step}/{info.total_steps} ({info.stage})", flush=True)
        return True

    try:
        METHODS[method].train(config, run, record)
    finally:
        log.close()
    return time.perf_counter() - start


def curves_of(curve: str, records: dict, window: int, tolerance: float, steps: int) -> list[dict]:
    """One curve per stage (policy) of a method, with its plateau."""
    stages: dict[str, list[dict]] = {}
    for (stage, _), row in sorted(records.items(), key=lambda kv: kv[0][1]):
        stages.setdefault(stage, []).append(row)
    if curve == "metapolicy":  # its experts are the experts curve's: only the upper level
        stages = {s: rows for s, rows in stages.items() if "meta" in s}
    out = []
    for stage, rows in stages.items():
        reward = np.array([r["reward/scalarized"] for r in rows])
        kl = np.array([r.get("kl", np.nan) for r in rows])
        found = plateau(reward, window, tolerance)
        out.append(
            {
                "stage": stage,
                "steps_recorded": len(rows),
                "complete": len(rows) >= steps,
                "samples": [r["samples"] for r in rows],
                "reward": reward.tolist(),
                "kl": kl.tolist(),
                "plateau": found,
                "kl_at_plateau": (
                    float(moving_average(kl, window)[found["step"] - 1]) if found["step"] else None
                ),
                "kl_at_end": float(moving_average(kl, window)[-1]) if len(kl) else None,
            }
        )
    return out


def figure(results: dict, window: int):
    """Scalarised reward and KL against each policy's own RL step, one colour per curve (plotly);
    a cross marks the plateau step."""
    import plotly.express as px
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles = ("scalarised reward (moving average)", "KL(pi || ref) per reply, nats (log scale)")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
    items = [
        (f"{curve}: {item['stage']}", item) for curve, stages in results.items() for item in stages
    ]
    for (name, item), color in zip(items, px.colors.qualitative.Dark24, strict=False):
        x = np.arange(1, len(item["reward"]) + 1)
        style = {"name": name, "legendgroup": name, "line": {"color": color}}
        for col, key in ((1, "reward"), (2, "kl")):
            y = moving_average(np.array(item[key], float), window)
            fig.add_trace(go.Scatter(x=x, y=y, showlegend=col == 1, **style), row=1, col=col)
        if item["plateau"]["step"]:
            at = item["plateau"]["step"] - 1
            y = moving_average(np.array(item["reward"], float), window)[at]
            marker = {"symbol": "x", "size": 11, "color": color}
            fig.add_trace(
                go.Scatter(
                    x=[at + 1],
                    y=[y],
                    mode="markers",
                    marker=marker,
                    legendgroup=name,
                    showlegend=False,
                    hovertext=f"plateau at step {at + 1}",
                ),
                row=1,
                col=1,
            )
    fig.update_xaxes(title_text="RL step of that policy")
    fig.update_yaxes(type="log", row=1, col=2)
    title = f"Learning curves on sentiment + brevity (x: plateau; moving average of {window} steps)"
    fig.update_layout(title=title, height=600)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="RL steps per trained policy")
    parser.add_argument("--preferences", type=int, default=3, help="MORLHF's policies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=20, help="moving-average width (steps)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="plateau: gain fraction")
    parser.add_argument("--methods", default=",".join(CURVES))
    parser.add_argument("--work", type=Path, default=ROOT / "morl_data" / "learning_curves")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/learning_curves")
    args = parser.parse_args(argv)
    if not 10 <= args.steps <= MAX_STEPS:
        parser.error(f"--steps must be in [10, {MAX_STEPS}]")
    if not 2 <= args.preferences <= 11:
        parser.error("--preferences must be in [2, 11]")
    if not 1 <= args.window <= args.steps:
        parser.error("--window must be in [1, --steps]")
    if not 0 < args.tolerance < 1:
        parser.error("--tolerance must be in (0, 1)")
    curves = [c.strip() for c in args.methods.split(",") if c.strip()]
    unknown = [c for c in curves if c not in CURVES]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; allowed: {', '.join(CURVES)}")
    set_threads(1)
    work = args.work / f"steps{args.steps}-prefs{args.preferences}-seed{args.seed}"
    out = args.out / f"steps{args.steps}-prefs{args.preferences}-seed{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MORL_ALLOWED_PATHS", str(work.resolve()))

    base = settings(args)
    if "metapolicy" in curves and "experts" not in curves:
        curves.insert(curves.index("metapolicy"), "experts")  # the upper level needs experts
    seconds = {}
    for curve in curves:
        print(f"{curve}: training (resumes if cut)", flush=True)
        seconds[curve] = train_curve(curve, base, work, out, work / "experts")

    results = {
        c: curves_of(c, read_log(out / f"{c}.jsonl"), args.window, args.tolerance, args.steps)
        for c in curves
    }
    print(f"\nplateau: first step after which the {args.window}-step moving average gains")
    print(f"< {args.tolerance:.0%} of its total gain ({args.steps} steps per policy)\n")
    print(f"{'curve':>10} {'stage':>28} {'start':>7} {'end':>7} {'plateau':>8} {'KL there':>9}")
    recommended = {}
    for curve, stages in results.items():
        steps_needed = []
        for item in stages:
            p = item["plateau"]
            step = p["step"] if p["step"] else "none"
            kl_there = f"{item['kl_at_plateau']:.3f}" if item["kl_at_plateau"] is not None else "-"
            print(
                f"{curve:>10} {item['stage'][:28]:>28} {p['start'] or 0:7.3f} {p['end'] or 0:7.3f}"
                f" {step!s:>8} {kl_there:>9}"
            )
            if p["step"]:
                steps_needed.append(p["step"])
        recommended[curve] = max(steps_needed) if steps_needed else None
    print("\nrecommended default steps per policy:", json.dumps(recommended))

    record = {
        "benchmark": "learning_curves",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_hash": git_hash(),
        "settings": {**base, "window": args.window, "tolerance": args.tolerance},
        "train_seconds": seconds,
        "recommended_steps": recommended,
        "curves": results,
    }
    (out / "learning_curves.json").write_text(json.dumps(record, indent=2))
    fig = figure(results, args.window)
    fig.write_html(out / "learning_curves.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / "learning_curves.png", width=1400, height=600)
    except Exception as exc:  # noqa: BLE001  (image export needs kaleido + a browser)
        print(f"(no PNG: {type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
