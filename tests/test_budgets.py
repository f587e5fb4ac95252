"""Per-method training budgets: where each learning curve flattened, used by the CLI and the form."""

import argparse
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from morl_core.app import runs
from morl_core.config import PLATEAU_STEPS, RunConfig
from morl_core.config_cli import add_config_options, config_from_args
from morl_core.methods.registry import BUILT_IN

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "benchmarks/results/learning_curves/steps200-prefs3-seed0/learning_curves.json"
# the curve that measured each method's budget (experts: the soups run whose experts D1-E share)
MEASURED_BY = {"soups": "experts", "mod": "experts", "pmix": "experts", "emorl": "experts"}


def test_every_method_has_a_budget_at_or_past_its_measured_plateau():
    recommended = json.loads(CURVES.read_text())["recommended_steps"]
    assert set(PLATEAU_STEPS) == {row[0] for row in BUILT_IN}
    for method, steps in PLATEAU_STEPS.items():
        curves = [MEASURED_BY.get(method, method)] + (["experts"] if method == "metapolicy" else [])
        assert steps >= max(recommended[c] for c in curves), method


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("method", ["morlhf", "panacea", "dynaopt"])
def test_cli_uses_the_methods_budget_unless_steps_is_given(method):
    assert config_from_args(_args("--method", method)).steps == PLATEAU_STEPS[method]
    assert config_from_args(_args("--method", method, "--steps", "7")).steps == 7
    assert RunConfig(method=method).steps == 30  # the library's quick default is unchanged


def test_form_steps_follow_the_chosen_method(tmp_path, monkeypatch):
    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "data"))
    assert runs.form_fields(["steps"], "panacea")[0].default == PLATEAU_STEPS["panacea"]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page("pages/train.py")
    at.run()
    at.selectbox(key="form:method").set_value("panacea").run()
    assert at.number_input(key="form:steps").value == PLATEAU_STEPS["panacea"]
    at.selectbox(key="form:method").set_value("dynaopt").run()
    assert at.number_input(key="form:steps").value == PLATEAU_STEPS["dynaopt"]
    assert not at.exception, [e.message for e in at.exception]
