"""Precomputed lattice replies: the same text a fresh generation gives, found only on the lattice,
and shown by the Steer page without calling the model."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from morl_core.app import catalog, lattice, serving

ROOT = Path(__file__).resolve().parents[1]
DEMO = catalog.DEMO_DIR / "soups-sentiment-brevity"


def fresh_texts(run_dir: Path, prompt: str, weights, samples: int, seed: int) -> list[str]:
    from morl_core.methods.common import load_steerable
    from morl_core.policy import set_threads

    set_threads(1)
    steerable = load_steerable(run_dir, device="cpu")
    return steerable.generate(
        [prompt] * samples, list(weights), **serving.steer_decoding(run_dir), seed=seed
    )


def test_lattice_points_cover_the_grid_and_the_sliders_start():
    two, three = lattice.lattice_points(2), lattice.lattice_points(3)
    assert len(two) == 11 and np.allclose(two.sum(axis=1), 1)
    assert any(np.allclose(p, [0.5, 0.5]) for p in two)
    assert len(three) == 16 and any(np.allclose(p, [1 / 3] * 3) for p in three)


def shipped_lattices() -> list:
    """Every shipped demo with a lattice; those of a larger model than the embedded one load
    it, so they run with the slow tests."""
    found = []
    for path in sorted(catalog.DEMO_DIR.glob(f"*/{lattice.LATTICE}")):
        info = catalog.read_artifact_info(path.parent, path.parent.name, path.parent.name, "demo")
        slow = info is None or not info.embedded
        found.append(pytest.param(path.parent.name, marks=[pytest.mark.slow] if slow else []))
    return found


@pytest.mark.parametrize("demo", shipped_lattices())
def test_shipped_lattice_equals_a_fresh_generation(demo):
    run_dir = catalog.DEMO_DIR / demo
    data = lattice.read_lattice(run_dir)
    method = next(iter(data["methods"]))
    for p, q in [(0, 0), (len(data["prompts"]) - 1, len(data["preferences"]) // 2)]:
        prompt, point = data["prompts"][p], data["preferences"][q]
        shipped = lattice.precomputed(
            run_dir, method, prompt, point, samples=data["samples"], seed=data["seed"]
        )
        fresh = fresh_texts(run_dir, prompt, point, data["samples"], data["seed"])
        assert [g.text for g in shipped.generations] == fresh


def shipped_base_fronts() -> list:
    """One shipped demo per distinct ``base_front.json`` (demos over one objective set share
    it); all on SmolLM2, so slow."""
    found = {}
    for path in sorted(catalog.DEMO_DIR.glob("*/base_front.json")):
        found.setdefault(path.read_bytes(), path.parent.name)
    return [pytest.param(name, marks=pytest.mark.slow) for name in found.values()]


@pytest.mark.parametrize("demo", shipped_base_fronts())
def test_shipped_base_front_equals_a_fresh_evaluation(demo):
    """The Fronts page's base-model row as shipped is what :func:`evaluate_base` gives today
    (the triple's once came from another decode path: formality 0.533 where this gives 0.520)."""
    from morl_core.evaluation import evaluate_base
    from morl_core.methods.common import read_config
    from morl_core.policy import set_threads

    set_threads(1)
    run_dir = catalog.DEMO_DIR / demo
    config = read_config(run_dir)
    shipped = json.loads((run_dir / "base_front.json").read_text())
    fresh = evaluate_base(
        list(config.objectives), config.model, config.prompt_set, config.n_preferences, "cpu"
    )
    np.testing.assert_allclose(fresh["prompt_sums"], shipped["prompt_sums"], atol=1e-9)
    np.testing.assert_allclose(fresh["points"], shipped["points"], atol=1e-9)
    assert fresh["examples"] == shipped["examples"]


def test_build_then_found_only_on_the_lattice_with_the_same_settings(tmp_path):
    run_dir = tmp_path / "demo"
    shutil.copytree(DEMO, run_dir, ignore=shutil.ignore_patterns(lattice.LATTICE))
    prompt = "The coffee was"
    data = lattice.build_lattice(run_dir, prompts=[prompt], samples=2, seed=3)
    assert lattice.read_lattice(run_dir) == data
    hit = lattice.precomputed(run_dir, "soups", prompt, [0.696, 0.304], samples=2, seed=3)
    assert hit is not None and hit.weights == pytest.approx((0.7, 0.3))
    assert [g.text for g in hit.generations] == fresh_texts(run_dir, prompt, (0.7, 0.3), 2, 3)
    assert set(hit.generations[0].scores) == {"sentiment", "brevity"}
    for miss in (
        dict(weights=[0.65, 0.35]),  # between lattice points
        dict(seed=0),
        dict(samples=3),
        dict(prompt="another prompt"),
        dict(method="mod"),
    ):
        args = {"method": "soups", "prompt": prompt, "weights": [0.7, 0.3], "samples": 2, "seed": 3}
        args.update(miss)
        assert lattice.precomputed(run_dir, **args) is None, miss


def test_the_lattice_file_is_read_once_per_version(tmp_path, monkeypatch):
    from morl_core.runfolder import write_json_atomic

    run_dir = tmp_path / "demo"
    shutil.copytree(DEMO, run_dir)
    data = lattice.read_lattice(run_dir)
    prompt, settings = data["prompts"][0], {"samples": data["samples"], "seed": data["seed"]}
    reads = []
    read_json = lattice.read_json
    monkeypatch.setattr(lattice, "read_json", lambda path: reads.append(path) or read_json(path))
    for weights in ([0.5, 0.5], [0.6, 0.4], [0.65, 0.35], [0.5, 0.5]):  # slider moves
        lattice.precomputed(run_dir, "soups", prompt, weights, **settings)
        lattice.prompt_lattice(run_dir, "soups", prompt, **settings)
    hit = lattice.precomputed(run_dir, "soups", prompt, [0.5, 0.5], **settings)
    assert len(reads) == 1
    assert [g.text for g in hit.generations] == [
        t for t, _ in data["methods"]["soups"]["replies"][0][5]
    ]
    # rebuilt (an atomic rewrite, as build_lattice does): the new replies are served at once
    data["methods"]["soups"]["replies"][0][5][0][0] = "a rebuilt reply"
    write_json_atomic(run_dir / lattice.LATTICE, data)
    hit = lattice.precomputed(run_dir, "soups", prompt, [0.5, 0.5], **settings)
    assert hit.generations[0].text == "a rebuilt reply" and len(reads) == 2
    (run_dir / lattice.LATTICE).unlink()
    assert lattice.precomputed(run_dir, "soups", prompt, [0.5, 0.5], **settings) is None


def test_steer_page_shows_the_lattice_reply_without_the_model(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "data"))
    calls = []
    generate = serving.SharedSteerable.generate_cached
    get = serving.ModelPool.get

    def counted_generate(self, *args, **kwargs):
        calls.append("generate")
        return generate(self, *args, **kwargs)

    def counted_get(self, *args, **kwargs):
        calls.append("load")
        return get(self, *args, **kwargs)

    monkeypatch.setattr(serving.SharedSteerable, "generate_cached", counted_generate)
    monkeypatch.setattr(serving.ModelPool, "get", counted_get)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    assert not at.exception, [e.message for e in at.exception]
    shown = [m.value for m in at.markdown if 'class="gen-text"' in m.value]
    data = lattice.read_lattice(DEMO)
    prompt = at.text_area(key="prompt").value
    expected = data["methods"]["soups"]["replies"][data["prompts"].index(prompt)][5]  # (0.5, 0.5)
    assert len(shown) == 2 and all(
        html.escape(t) in m for (t, _), m in zip(expected, shown, strict=True)
    )
    assert calls == []
    assert any("precomputed at this lattice point" in c.value for c in at.caption)
    at.slider[0].set_value(0.95).run()  # off the lattice: generated live, as before
    assert not at.exception
    assert "generate" in calls
