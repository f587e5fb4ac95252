"""scripts/build_smollm2_demos.py: the brevity expert retrained alone, the other experts reused."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from script_support import load_script

from morl_core.config import RunConfig
from morl_core.jobs.records import RunState
from morl_core.methods import ric


@pytest.fixture(scope="module")
def build():
    return load_script("scripts/build_smollm2_demos.py")


def executor(states: dict[str, RunState], root: Path):
    store = SimpleNamespace(
        status=lambda run: SimpleNamespace(state=states[run]), run_dir=lambda run: root / run
    )
    return SimpleNamespace(store=store)


def fake_queue(states: dict[str, RunState], root: Path):
    """A fake executor over run ``states``: ``submit`` queues a config under a new run id.
    Returns it and the list of the configs submitted."""
    submitted = []

    def submit(config):
        submitted.append(config)
        states[f"run{len(submitted)}"] = RunState.QUEUED
        return f"run{len(submitted)}"

    def status(run):
        return SimpleNamespace(state=states[run], step=0, total_steps=1, message="")

    store = SimpleNamespace(status=status, run_dir=lambda run: root / run)
    return SimpleNamespace(store=store, status=status, submit=submit), submitted


def test_the_guarded_pool_retrains_brevity_only_once_the_experts_succeeded(build, tmp_path):
    ids = {build.EXPERTS: "experts-run"}
    running = executor({"experts-run": RunState.RUNNING}, tmp_path)
    assert build.config_of(build.GUARDED, ids, running) is None
    done = executor({"experts-run": RunState.SUCCEEDED}, tmp_path)
    config = RunConfig.from_dict(build.config_of(build.GUARDED, ids, done), check_files=False)
    experts = str(tmp_path / "experts-run")
    assert config.options == {"retrain": "brevity,sentiment", "experts_from": experts}
    assert (config.kl_coef, config.fluency_guard, config.fluency_penalty) == (0.1, "wordlist", 1.0)
    assert config.objectives == ("formality", "readability", "brevity", "sentiment")
    assert build.DEMOS[build.GUARDED]["options"] == {"retrain": "brevity,sentiment"}  # unchanged
    # the terse pool trains brevity with a 15-word target over the guarded one (beta 0.05),
    # copying the other three experts
    ids[build.GUARDED] = "guarded-run"
    states = {"experts-run": RunState.SUCCEEDED, "guarded-run": RunState.RUNNING}
    assert build.config_of(build.TERSE, ids, executor(states, tmp_path)) is None
    states["guarded-run"] = RunState.SUCCEEDED
    done = executor(states, tmp_path)
    terse = RunConfig.from_dict(build.config_of(build.TERSE, ids, done), check_files=False)
    guarded = str(tmp_path / "guarded-run")
    assert terse.options == {"retrain": "brevity(target_words=15)", "experts_from": guarded}
    assert terse.objectives == (
        "formality",
        "readability",
        "brevity(target_words=15)",
        "sentiment",
    )
    assert (terse.kl_coef, terse.fluency_guard) == (0.05, "wordlist")
    # the lucid pool retrains readability over the terse one, at the same beta
    ids[build.TERSE] = "terse-run"
    states["terse-run"] = RunState.SUCCEEDED
    lucid = RunConfig.from_dict(
        build.config_of(build.LUCID, ids, executor(states, tmp_path)), check_files=False
    )
    assert lucid.options == {"retrain": "readability", "experts_from": str(tmp_path / "terse-run")}
    assert (lucid.objectives, lucid.kl_coef, lucid.fluency_guard) == (
        terse.objectives,
        0.05,
        "wordlist",
    )
    # ...and the formal pool formality over the lucid one
    ids[build.LUCID] = "lucid-run"
    states["lucid-run"] = RunState.SUCCEEDED
    formal = build.config_of(build.FORMAL, ids, executor(states, tmp_path))
    assert formal["options"] == {
        "retrain": "formality",
        "experts_from": str(tmp_path / "lucid-run"),
    }
    assert (formal["kl_coef"], formal["objectives"]) == (0.05, list(terse.objectives))
    # a demo's name is a folder and a link: the objective's settings do not go in it
    assert build.name_of("soups", build.TRIPLE) == "smollm2-soups-formality-readability-brevity15"
    # the pair's demos use the first pool (its formality and readability experts), the
    # triple's and the four-objective soup the formal one (brevity with a 15-word target,
    # readability and formality retrained); no pool is shipped
    pooled = {
        (len(build.DEMOS[name]["objectives"]), build.DEMOS[name]["experts_from"])
        for name in build.EXPORTED
        if "experts_from" in build.DEMOS[name]
    }
    assert pooled == {(2, build.EXPERTS), (3, build.FORMAL), (4, build.FORMAL)}
    assert build.POOLS.isdisjoint(build.EXPORTED)


def test_every_family_has_a_demo_on_a_two_and_a_three_objective_set(build, tmp_path):
    from morl_core.methods import METHODS

    families = {spec.family[0] for spec in METHODS.values()}
    named = {"soups", "mod", "emorl", "metapolicy", "ric", "panacea", "morlhf", "dynaopt"}
    from morl_core.app.catalog import DEMO_FIRST

    assert DEMO_FIRST[0] in build.EXPORTED  # the app lands on a demo this script builds
    done = executor({"pool-run": RunState.SUCCEEDED}, tmp_path)
    ids = {pool: "pool-run" for pool in build.POOLS}
    for objectives in (build.PAIR, build.TRIPLE):
        shipped = [
            build.DEMOS[n] for n in build.EXPORTED if build.DEMOS[n]["objectives"] == objectives
        ]
        assert {METHODS[d["method"]].family[0] for d in shipped} == families
        assert {d["method"] for d in shipped} >= named
        for name in build.EXPORTED:
            if build.DEMOS[name]["objectives"] == objectives:
                config = build.config_of(name, ids, done)
                checked = RunConfig.from_dict(config, check_files=False)  # raises on a bad field
                if checked.method == "panacea":  # its ends, drawn uniformly, did not separate
                    concentration = 0.1 if len(objectives) == 3 else 0.3  # three ends: nearer
                    assert checked.options["preference_concentration"] == concentration, name
                    # on the triple 8 replies a prompt: brevity learns from the few that end
                    assert checked.k_samples == (8 if len(objectives) == 3 else 4), name
                    # ...and on the triple MORLHF's samples (3 policies x 100 steps)
                    assert checked.steps == (300 if len(objectives) == 3 else 100), name
                if checked.method == "dynaopt":  # a ~1 MB adapter in fp16
                    assert checked.lora_target_modules == "q_proj,v_proj", name
                if checked.method == "ric":  # q/v LoRA did not steer; all-linear, 4 steps a
                    # round, memorised its early pool
                    assert checked.lora_target_modules == "all-linear", name
                    assert checked.options["sft_updates"] == 1, name
                    # its rejection reads the guarded rewards: made-up words are not imitated
                    assert (checked.fluency_guard, checked.fluency_penalty) == ("wordlist", 1), name
                    assert checked.top_p == 0.9, name  # it imitates its pool: no tails drawn
                    # SmolLM2 reads requests in words, not <name=value> tags
                    assert checked.options["tags"] == "words", name
                    # and its offline pool is drawn under requests, which the model follows
                    assert checked.options["offline_tags"] == "drawn", name
                    # 50 offline rounds, then 100 online: its steering grew over the online ones
                    assert (checked.steps, ric.offline_steps(checked)) == (150, 50), name
                if checked.method == "emorl":  # mixes before the norm, the paper's search
                    # that keeps a = w unless beaten by 2 standard errors
                    expected = {"search_objective": "reward", "mix_at": "pre_norm"}
                    expected["search_guard"] = 2.0
                    if len(objectives) == 3:  # 3^K candidates a round: two rounds, not five
                        expected["search_rounds"] = 2
                    found = {k: v for k, v in checked.options.items() if k != "experts_from"}
                    assert found == expected, name
                if checked.method == "metapolicy":  # on the triple nearer the corners
                    concentration = 0.3 if len(objectives) == 3 else 1.0
                    assert checked.options["meta_steps"] == 40, name
                    found = METHODS["metapolicy"].option(
                        checked.options, "preference_concentration"
                    )
                    assert found == concentration, name
                if checked.method == "morlhf":  # trained as the experts were, 3 policies
                    assert checked.lora_target_modules == "all-linear", name
                    assert (checked.n_preferences, checked.steps) == (3, 100), name


def test_learning_curves_take_each_expert_from_its_last_trainer(build):
    def records(stage: str, steps, brevity: float) -> list[dict]:
        return [
            {"step": s, "stage": stage, "reward/brevity": brevity, "reward/formality": 0.5}
            for s in steps
        ]

    guarded = records("expert_brevity", [1, 2], 0.6)
    experts = [
        *records("expert_brevity", [1, 2], 0.3),
        *records("expert_sentiment", [3, 4], 0.3),
        *records("expert_formality", [5, 6], 0.3),
    ]
    merged = build.expert_records([guarded, experts], ["sentiment", "brevity"])
    assert [(r["step"], r["stage"], r["reward/brevity"]) for r in merged] == [
        (1, "expert_brevity", 0.6),
        (2, "expert_brevity", 0.6),
        (3, "expert_sentiment", 0.3),
        (4, "expert_sentiment", 0.3),
    ]
    assert all("reward/formality" not in r for r in merged)


def test_demos_are_submitted_in_order_so_the_queue_trains_the_pool_first(
    build, tmp_path, monkeypatch
):
    """A demo that needs no experts (RiC) is not queued ahead of the pool still training."""
    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")  # nothing exported yet
    states = {"experts-run": RunState.RUNNING}
    fake, submitted = fake_queue(states, tmp_path)
    build.write_json_atomic(tmp_path / "demos.json", {build.EXPERTS: "experts-run"})
    first = build.advance(fake, tmp_path, set())
    assert submitted == []
    pair = build.name_of("soups", build.PAIR)
    assert first[build.name_of("ric", build.PAIR)] == f"waiting for {pair}"
    states["experts-run"] = RunState.SUCCEEDED
    states_now = build.advance(fake, tmp_path, set())
    # every family on the pair (the aggregations over the finished pool first), then the
    # guarded pool; nothing behind it
    assert [config["method"] for config in submitted] == [
        *["soups", "mod", "metapolicy", "emorl"],
        *["ric", "panacea", "dynaopt", "morlhf"],
        "soups",
    ]
    assert states_now[build.name_of("ric", build.TRIPLE)].startswith("waiting for")
    # the guarded pool done: the terse one; that done: the lucid one, then the formal one; that
    # done: every family on the triple
    for _ in range(3):
        states[f"run{len(submitted)}"] = RunState.SUCCEEDED
        build.advance(fake, tmp_path, set())
    retrained = [c["options"]["retrain"] for c in submitted[9:]]
    assert retrained == [build.BREVITY, "readability", "formality"]
    states[f"run{len(submitted)}"] = RunState.SUCCEEDED
    build.advance(fake, tmp_path, set())
    after = [(c["method"], len(c["objectives"])) for c in submitted[12:]]
    assert after == [
        *[("soups", 3), ("mod", 3), ("metapolicy", 3), ("emorl", 3), ("soups", 4)],
        *[("ric", 3), ("panacea", 3), ("dynaopt", 3), ("morlhf", 3)],
    ]
    # MORLHF is trained as the experts were (every linear layer, 100 steps), 3 policies
    morlhf_pair = submitted[7]
    assert (morlhf_pair["n_preferences"], morlhf_pair["steps"]) == (3, 100)
    assert morlhf_pair["lora_target_modules"] == "all-linear"
    # ...and on the triple at the experts' beta 0.05 under the word-list guard, as FORMAL's were
    morlhf_triple = submitted[-1]
    assert (morlhf_triple["kl_coef"], morlhf_triple["fluency_guard"]) == (0.05, "wordlist")
    assert (morlhf_pair["kl_coef"], morlhf_pair.get("fluency_guard")) != (0.05, "wordlist")
    # ...with 8 replies a prompt (at 4 its brevity policy walked on the noise)
    assert (morlhf_triple["k_samples"], morlhf_pair["k_samples"]) == (8, 4)


def test_an_export_cut_before_its_lattice_is_finished_not_redone(build, tmp_path, monkeypatch):
    """front.json without lattice.json: the next sitting builds the lattice only."""
    name = build.name_of("soups", build.PAIR)
    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")
    (tmp_path / "demo" / name).mkdir(parents=True)
    (tmp_path / "demo" / name / "front.json").write_text("{}")
    calls = []
    monkeypatch.setattr(build, "export", lambda *a: calls.append("export"))
    monkeypatch.setattr(build, "finish_export", lambda out: calls.append(out.name))

    def status(run):
        state = RunState.SUCCEEDED if run == "soups-run" else RunState.RUNNING
        return SimpleNamespace(state=state, step=0, total_steps=1, message="")

    store = SimpleNamespace(status=status, run_dir=lambda run: tmp_path / run)
    fake = SimpleNamespace(store=store, status=status, submit=lambda config: "other-run")
    ids = {build.EXPERTS: "experts-run", name: "soups-run"}
    build.write_json_atomic(tmp_path / "demos.json", ids)
    states = build.advance(fake, tmp_path, set())
    assert calls == [name] and states[name] == "exported"
    (tmp_path / "demo" / name / build.LATTICE).write_text("{}")
    calls.clear()
    build.advance(fake, tmp_path, set())
    assert calls == []


def shipped_soup(build, root: Path, objectives=None, copied_from=()) -> Path:
    """An exported soup (the pair's unless ``objectives``) under ``root``: config, provenance
    (``copied_from``: the pool runs its experts came from), lattice."""
    objectives = objectives or build.PAIR
    folder = root / build.name_of("soups", objectives)
    folder.mkdir(parents=True)
    build.write_json_atomic(
        folder / "config.json", {"model": "smollm2-135m", "objectives": objectives}
    )
    build.write_json_atomic(
        folder / "trained_on.json",
        {
            "run_id": "old-pool",
            "device": "cpu",
            "host": "vm",
            "train_seconds": 7.0,
            "experts_copied_from": list(copied_from),
        },
    )
    (folder / build.LATTICE).write_text("{}")
    return folder


def test_a_new_store_reuses_the_experts_shipped_in_the_pair_soup(build, tmp_path, monkeypatch):
    """No pool run in the store (a new machine): the pair's aggregations and the guarded pool
    copy the soup's shipped experts, the pool and the shipped soup are not trained again, and
    the provenance names the run that trained them."""
    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")
    soup = shipped_soup(build, tmp_path / "demo")
    fake, submitted = fake_queue({}, tmp_path)
    shown = build.advance(fake, tmp_path, set())
    assert shown[build.EXPERTS].startswith("shipped in")
    assert shown[build.name_of("soups", build.PAIR)] == "exported"
    methods = [(c["method"], len(c["objectives"])) for c in submitted]
    assert methods[:3] == [("mod", 2), ("metapolicy", 2), ("emorl", 2)]
    assert ("soups", 2) not in methods
    pooled = [c for c in submitted if "experts_from" in c.get("options", {})]
    assert {c["options"]["experts_from"] for c in pooled} == {str(soup)}
    guarded = build.config_of(build.GUARDED, build.run_ids(tmp_path), fake)
    assert guarded["options"]["experts_from"] == str(soup)
    pair = set(build.PAIR)
    (trained,) = build.trained_by(build.EXPERTS, build.run_ids(tmp_path), fake, pair)
    assert (trained.run_id, trained.seconds, trained.folder) == ("old-pool", 7.0, soup)
    # a store that has the pool's own run uses that run, not the shipped copy
    assert build.shipped_pool(build.EXPERTS, {build.EXPERTS: "run9"}, pair) is None
    # nor does a demo that needs an expert the soup does not have (the brevity expert)
    assert build.shipped_pool(build.EXPERTS, {}, {*build.PAIR, "brevity"}) is None
    assert build.shipped_pool(build.EXPERTS, {}, pair) == soup


def test_the_triple_aggregations_reuse_the_experts_shipped_in_the_triple_soup(
    build, tmp_path, monkeypatch
):
    """With the triple's soup shipped, EMORL on the triple needs no pool trained (its three
    experts are there) and copies them from that soup, naming the runs that trained them; the
    four-expert soup still needs FORMAL's chain (the sentiment expert is not shipped)."""
    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")
    shipped_soup(build, tmp_path / "demo")
    triple = shipped_soup(build, tmp_path / "demo", build.TRIPLE, ["formal-run", "lucid-run"])
    emorl3 = build.name_of("emorl", build.TRIPLE)
    assert build.needed([emorl3], {}) == [emorl3]
    four = build.name_of("soups", build.FOUR)
    assert build.needed([four], {}) == [build.GUARDED, build.TERSE, build.LUCID, build.FORMAL, four]
    fake, submitted = fake_queue({}, tmp_path)
    states = build.advance(fake, tmp_path, set(), only=[emorl3])
    assert list(states) == [emorl3] and [c["method"] for c in submitted] == ["emorl"]
    assert submitted[0]["options"]["experts_from"] == str(triple)
    trained = build.trained_by(build.FORMAL, {}, fake, set(build.TRIPLE))
    assert [t.run_id for t in trained] == ["old-pool", "formal-run", "lucid-run"]
    assert [t.seconds for t in trained] == [7.0, 0.0, 0.0]  # the soup's total counts them
    # the full build marks the pair's pool shipped and trains FORMAL's chain for the four
    fake, submitted = fake_queue({}, tmp_path)
    shown = build.advance(fake, tmp_path, set())
    assert shown[build.EXPERTS].startswith("shipped in") and build.FORMAL in shown
    assert shown[build.name_of("soups", build.TRIPLE)] == "exported"


def test_the_queue_is_filled_before_the_long_exports(build, tmp_path, monkeypatch):
    """A finished demo is exported after the demos behind it are submitted, so the worker
    trains while the export evaluates."""
    events = []
    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")
    monkeypatch.setattr(build, "export", lambda name, *a: events.append(f"export {name}"))
    states = {"experts-run": RunState.SUCCEEDED, "soups-run": RunState.SUCCEEDED}

    def submit(config):
        events.append(f"submit {config['method']}")
        states[f"run{len(events)}"] = RunState.QUEUED
        return f"run{len(events)}"

    def status(run):
        return SimpleNamespace(
            state=states[run],
            step=0,
            total_steps=1,
            message="",
            run_id=run,
            device="cpu",
            host="vm",
            started=1.0,
            finished=2.0,
        )

    store = SimpleNamespace(status=status, run_dir=lambda run: tmp_path / run)
    fake = SimpleNamespace(store=store, status=status, submit=submit)
    soups = build.name_of("soups", build.PAIR)
    build.write_json_atomic(
        tmp_path / "demos.json", {build.EXPERTS: "experts-run", soups: "soups-run"}
    )
    build.advance(fake, tmp_path, set())
    assert events[-1] == f"export {soups}" and "submit ric" in events[:-1]


def test_an_export_names_its_own_run_and_the_runs_it_copied_experts_from(
    build, tmp_path, monkeypatch
):
    """A pooled demo's provenance starts at its own run (the meta-policy's upper level) and adds
    the run that trained its experts, with both runs' seconds; the experts' curves of its own
    objectives are added to the run's own."""
    import morl_core.train_cli as train_cli

    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")
    monkeypatch.setattr(train_cli, "evaluate_run", lambda out, device: None)
    monkeypatch.setattr(build, "finish_export", lambda out: out)

    def run(name: str, stages: list[str]) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        lines = [json.dumps({"step": i, "stage": stage}) for i, stage in enumerate(stages, 1)]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        return folder

    own = run("meta-run", ["meta-policy"])
    pool = run("pool-run", ["expert_sentiment", "expert_formality", "expert_readability"])
    trained = [
        build.Trainer("meta-run", "cpu", "vm", 10.0, own),
        build.Trainer("pool-run", "cpu", "vm", 100.0, pool),
    ]
    out = build.export(build.name_of("metapolicy", build.PAIR), own, trained)
    provenance = json.loads((out / "trained_on.json").read_text())
    assert provenance["run_id"] == "meta-run"
    assert provenance["experts_copied_from"] == ["pool-run"]
    assert provenance["train_seconds"] == 110.0
    stages = [
        json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert stages == ["meta-policy", "expert_formality", "expert_readability"]


def test_an_export_halves_adapters_and_keeps_the_settings_saved_beside_them(
    build, tmp_path, monkeypatch
):
    """Panacea saves its rank and seed in its safetensors metadata: the fp16 copy keeps them,
    or the exported demo cannot be loaded."""
    import torch

    import morl_core.train_cli as train_cli
    from morl_core.runfolder import read_safetensors, write_safetensors_atomic

    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")
    monkeypatch.setattr(train_cli, "evaluate_run", lambda out, device: None)
    monkeypatch.setattr(build, "finish_export", lambda out: out)
    run = tmp_path / "panacea-run"
    (run / "adapters" / "panacea").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "stage": "panacea policy"}) + "\n")
    weights = {"layer.sigma": torch.linspace(0, 1, 8, dtype=torch.float32)}
    settings = {"panacea": json.dumps({"r": 8, "k": 2, "alpha": 16.0, "seed": 3})}
    write_safetensors_atomic(run / "adapters/panacea/adapter_model.safetensors", weights, settings)
    trained = [build.Trainer("panacea-run", "cpu", "vm", 10.0, run)]

    out = build.export(build.name_of("panacea", build.PAIR), run, trained)
    tensors, metadata = read_safetensors(out / "adapters/panacea/adapter_model.safetensors")
    assert metadata == settings
    assert tensors["layer.sigma"].dtype == torch.float16
    assert torch.allclose(tensors["layer.sigma"].float(), weights["layer.sigma"], atol=1e-3)


def test_only_builds_the_named_demos_and_the_pools_they_need(build, tmp_path, monkeypatch):
    """--only: a demo trained from the base model is submitted alone, the others not touched;
    a triple aggregation brings its pool chain back to the shipped experts, and an unknown name
    is refused naming the demos there are."""
    monkeypatch.setattr(build, "DEMO_DIR", tmp_path / "demo")
    shipped_soup(build, tmp_path / "demo")
    fake, submitted = fake_queue({}, tmp_path)
    ric = build.name_of("ric", build.PAIR)
    states = build.advance(fake, tmp_path, set(), only=[ric])
    assert list(states) == [ric] and [c["method"] for c in submitted] == ["ric"]
    emorl3 = build.name_of("emorl", build.TRIPLE)
    chain = build.needed([emorl3], build.run_ids(tmp_path))
    assert chain == [build.GUARDED, build.TERSE, build.LUCID, build.FORMAL, emorl3]
    with pytest.raises(ValueError, match="no demo named smollm2-nope.*the demos: smollm2-"):
        build.needed(["smollm2-nope"], {})
    with pytest.raises(SystemExit):
        build.main(["--only", "smollm2-nope", "--status"])
