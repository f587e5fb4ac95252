"""Replies precomputed on a lattice of preferences, so the Steer page shows text at once.

For an artifact, its example prompts (the first held-out prompts of its prompt set) and the
preferences of :func:`lattice_points`, :func:`build_lattice` runs exactly what the Steer page
runs (:func:`morl_core.app.serving.steer`: the artifact's own decoding
(:func:`~morl_core.app.serving.steer_decoding`), fixed seed, same samples) and saves
the replies with their scores in ``lattice.json`` beside the artifact. When the sliders sit on
a lattice point (within half a slider step), :func:`precomputed` answers from that file, with no
model loaded; anywhere else the page generates live. :func:`prompt_lattice` hands every point's
replies for one prompt to the page's browser-side view (:mod:`morl_core.app.lattice_view`).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morl_core.app import serving
from morl_core.runfolder import read_json, write_json_atomic
from morl_core.weights import simplex_lattice

LATTICE = "lattice.json"
VERSION = 1
DIVISIONS = {2: 10, 3: 4}  # 11 points for two objectives (a 0.1 grid), 15 (+ centre) for three
DIVISIONS_ABOVE = 2
TOLERANCE = 0.005  # half a step of the page's 0.01 sliders
EXAMPLES = 8


def lattice_points(k: int) -> np.ndarray:
    """The lattice (M, k): a simplex lattice plus its centre, where the sliders start."""
    grid = simplex_lattice(k, DIVISIONS.get(k, DIVISIONS_ABOVE))
    centre = np.full((1, k), 1.0 / k)
    return grid if np.abs(grid - centre).max(axis=1).min() < 1e-9 else np.vstack([grid, centre])


def build_lattice(
    run_dir: Path,
    methods: Sequence[str] | None = None,
    *,
    prompts: Sequence[str] | None = None,
    samples: int = 2,
    seed: int = 0,
    device: str = "cpu",
    progress: serving.Progress = serving.noop,
) -> dict[str, Any]:
    """Generate and save the lattice replies of ``run_dir`` served by ``methods`` (default: its own).

    ``prompts`` default to the first :data:`EXAMPLES` held-out prompts of the run's prompt set.
    """
    from morl_core.prompts import load_prompts
    from morl_core.runfolder import read_config

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    prompts = list(prompts or load_prompts(config.prompt_set, "eval")[:EXAMPLES])
    points = lattice_points(len(config.objectives))
    pool = serving.ModelPool(device=device, threads=1, replicas=1)
    data: dict[str, Any] = {
        "version": VERSION,
        "objectives": list(config.objectives),
        "prompts": prompts,
        "preferences": points.tolist(),
        "samples": samples,
        "seed": seed,
        "decoding": serving.steer_decoding(run_dir),  # what serving.steer decodes with
        "methods": {},
    }
    for method in methods or [config.method]:
        shared = pool.get(run_dir, method)
        start, replies = time.perf_counter(), []
        for i, prompt in enumerate(prompts):
            progress(f"{method}: prompt {i + 1} of {len(prompts)}", i / len(prompts))
            row = [serving.steer(shared, prompt, w, samples=samples, seed=seed) for w in points]
            replies.append(
                [[[g.text, list(g.scores.values())] for g in r.generations] for r in row]
            )
        data["methods"][method] = {
            "passes_per_token": shared.passes_per_token,
            "models_kept": shared.models_kept,
            "seconds": time.perf_counter() - start,
            "replies": replies,  # [prompt][preference][sample] = [text, scores (K,)]
        }
    write_json_atomic(run_dir / LATTICE, data)
    return data


def read_lattice(run_dir: Path) -> dict[str, Any] | None:
    """The saved lattice of ``run_dir`` (a few tens of kB: read in a millisecond), or None."""
    data = read_json(Path(run_dir) / LATTICE)
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def _file_version(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another: (inode, size, mtime in ns); None if absent.
    An atomic rewrite (a new file renamed over the old one) changes the inode."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class PromptLattice:
    """Every lattice reply of one method for one prompt: what the browser-side view needs."""

    method: str
    prompt: str
    objectives: tuple[str, ...]
    preferences: np.ndarray  # (M, K) the lattice points
    replies: list[list[serving.Generation]]  # [point][sample]
    passes_per_token: int
    models_kept: int


def prompt_lattice(
    run_dir: Path, method: str, prompt: str, *, samples: int, seed: int
) -> PromptLattice | None:
    """The lattice replies of ``method`` for ``prompt`` at every lattice point, or None.

    It applies under the same conditions as :func:`precomputed`, the preference aside: the
    lattice holds ``method`` and ``prompt`` with the same samples, seed and Steer decoding.
    The file is parsed once per version (the Steer page asks on every slider move); the
    decoding is checked against the artifact's config on every call.
    """
    path = Path(run_dir) / LATTICE
    version = _file_version(path)
    if version is None:
        return None
    decoding = serving.steer_decoding(run_dir)
    key = tuple(sorted(decoding.items()))
    return _prompt_lattice(str(path), version, method, prompt, samples, seed, key)


@functools.lru_cache(maxsize=64)
def _prompt_lattice(
    path: str,
    version: tuple[int, int, int],
    method: str,
    prompt: str,
    samples: int,
    seed: int,
    decoding: tuple[tuple[str, Any], ...],
) -> PromptLattice | None:
    """:func:`prompt_lattice` for one version of the file (``version`` is the cache key only).
    The result is shared between callers: read it, do not change it."""
    data = read_lattice(Path(path).parent)
    if (
        data is None
        or method not in data["methods"]
        or prompt not in data["prompts"]
        or (data["samples"], data["seed"], data["decoding"]) != (samples, seed, dict(decoding))
    ):
        return None
    entry, objectives = data["methods"][method], tuple(data["objectives"])
    row = entry["replies"][data["prompts"].index(prompt)]  # [point][sample] = [text, scores]
    replies = [
        [
            serving.Generation(prompt, text, dict(zip(objectives, scores, strict=True)))
            for text, scores in point
        ]
        for point in row
    ]
    preferences = np.asarray(data["preferences"], dtype=float)
    preferences.flags.writeable = False  # shared by every session
    return PromptLattice(
        method=method,
        prompt=prompt,
        objectives=objectives,
        preferences=preferences,
        replies=replies,
        passes_per_token=entry["passes_per_token"],
        models_kept=entry["models_kept"],
    )


def nearest_point(preferences: np.ndarray, weights: Sequence[float]) -> tuple[int, float]:
    """The index of the lattice point nearest ``weights`` (max-norm) and its distance."""
    distance = np.abs(np.asarray(preferences) - np.asarray(weights, dtype=float)).max(axis=1)
    return int(distance.argmin()), float(distance.min())


def precomputed(
    run_dir: Path, method: str, prompt: str, weights: Sequence[float], *, samples: int, seed: int
) -> serving.SteerResult | None:
    """The lattice's :class:`~morl_core.app.serving.SteerResult` for these settings, or None.

    It applies when the lattice holds ``method`` and ``prompt`` with the same samples, seed and
    decoding (the artifact's Steer decoding: a lattice built before it changed is not used),
    and ``weights`` lie within :data:`TOLERANCE` of a lattice point (the result carries that
    point's weights).
    """
    start = time.perf_counter()
    found = prompt_lattice(run_dir, method, prompt, samples=samples, seed=seed)
    if found is None or len(weights) != len(found.objectives):
        return None
    point, distance = nearest_point(found.preferences, weights)
    if distance > TOLERANCE:
        return None
    return serving.SteerResult(
        method=method,
        weights=tuple(found.preferences[point].tolist()),
        generations=found.replies[point],
        seconds=time.perf_counter() - start,
        cached=True,
        passes_per_token=found.passes_per_token,
        models_kept=found.models_kept,
        precomputed=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m morl_core.app.lattice FOLDER...``: build the lattice of each artifact folder."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split(": ", 1)[1])
    parser.add_argument("folders", nargs="+", type=Path, help="artifact (run) folders")
    parser.add_argument("--method", action="append", help="serve with this method (repeatable)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    args = parser.parse_args(argv)
    for folder in args.folders:
        data = build_lattice(folder, args.method, device=args.device)
        seconds = sum(m["seconds"] for m in data["methods"].values())
        shape = f"{len(data['preferences'])} preferences x {len(data['prompts'])} prompts"
        print(f"{folder}: {shape} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
