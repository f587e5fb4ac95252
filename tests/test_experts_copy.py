"""Reusing another run's experts never reads through a link, nor lists that run's folder."""

from __future__ import annotations

import json

import pytest

from morl_core.config import RunConfig
from morl_core.methods.experts import copy_experts


def fake_run(folder, objectives=("sentiment", "brevity")):
    config = RunConfig.from_dict({"method": "soups", "objectives": list(objectives)})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    return config


def test_a_symlinked_file_in_an_expert_is_refused_and_nothing_is_copied(tmp_path):
    config = fake_run(tmp_path / "source")
    outside = tmp_path / "secret.txt"
    outside.write_text("not an adapter")
    for name in ("expert_sentiment", "expert_brevity"):
        expert = tmp_path / "source" / "adapters" / name
        expert.mkdir(parents=True)
        (expert / "adapter_model.safetensors").write_bytes(b"x")
        (expert / "adapter_config.json").symlink_to(outside)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ValueError, match="symbolic links"):
        copy_experts(config, target, tmp_path / "source")
    assert not (target / "adapters").exists()


def test_a_missing_expert_names_the_objectives_not_the_folder_contents(tmp_path):
    config = fake_run(tmp_path / "source")
    (tmp_path / "source" / "adapters" / "private-notes").mkdir(parents=True)
    with pytest.raises(ValueError, match="no finished expert") as error:
        copy_experts(config, tmp_path / "target", tmp_path / "source")
    assert "private-notes" not in str(error.value)
