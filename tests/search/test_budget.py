"""search.budget: a space bounds the parameters and GMACs per sequence of what it trains. A grid's
configurations over budget are set aside when the plan is made (and listed); an optuna or random
searcher costs each suggestion, tells the study the ones over budget (PRUNED, constraint > 0) and
asks again, so Tune never starts them. The searchers are driven as Tune drives them; no Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from ray.tune.search import Searcher

from search import budget
from search.run import driver, main, searchers
from search.run.plan import make_plan
from simvp_core.config import TrainConfig

State = optuna.trial.TrialState
LARGE = budget.costs(TrainConfig(preset="simvpv2-l"))
SMALL = budget.costs(TrainConfig(preset="simvpv2"))
PRESETS = {"preset": {"choice": ["simvpv2", "simvpv2-l"]}, "lr": {"loguniform": [1e-4, 1e-2]}}


def space_file(folder: Path, name: str, search: dict[str, Any], space: dict[str, Any] = PRESETS,
               **top: Any) -> Path:
    """A space over the presets at their own sizes (the tests' tiny base would make them equal)."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"experiment": name, "base": {"epochs": 3, "device": "cpu"},
                                    "space": space, "search": search, **top}, sort_keys=False))
    return path


def test_costs_are_the_models_and_only_model_settings_change_them():
    assert SMALL["params_m"] < 10 < LARGE["params_m"]  # the paper's 6.5M and 46.8M
    assert budget.costs(TrainConfig(preset="simvpv2", lr=0.1, batch_size=4)) == SMALL
    wider = budget.costs(TrainConfig(preset="simvpv2", c_t=512))
    assert wider["params_m"] > SMALL["params_m"] and wider["gmacs"] > SMALL["gmacs"]
    bound = budget.Budget((("params_m", 10.0), ("gmacs", 5.0)), TrainConfig())
    assert bound.reason(SMALL) == "" and max(bound.excess(SMALL).values()) <= 0
    assert bound.reason(LARGE) == (f"params {LARGE['params_m']:.4g}M > 10M; GMACs {LARGE['gmacs']:.4g} > 5")
    assert bound.excess(LARGE)["params_m"] == pytest.approx(LARGE["params_m"] / 10 - 1)


def test_a_budget_below_the_larger_preset_never_trains_it_on_a_grid(tmp_path: Path, capsys):
    space = space_file(tmp_path, "grid", {"algorithm": "grid"}, repeats=2, budget={"params_m": 10},
                       space={"preset": {"grid": ["simvpv2", "simvpv2-l"]}, "lr": {"grid": [0.01, 0.001]}})
    argv = [str(space), "--storage", str(tmp_path / "runs"), "--dry-run"]
    spec = make_plan(argv).spec
    assert [(p["preset"], p["lr"], p["seed"]) for p in spec.grid_points()] == [
        ("simvpv2", 0.01, 42), ("simvpv2", 0.001, 42), ("simvpv2", 0.01, 43), ("simvpv2", 0.001, 43)]
    assert spec.total_trials() == spec.num_samples == 4
    why = f"params {LARGE['params_m']:.4g}M > 10M"
    assert spec.over_budget == (({"preset": "simvpv2-l", "lr": 0.01}, why), ({"preset": "simvpv2-l", "lr": 0.001}, why))
    assert main(argv) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.lstrip()[:2] in ("1.", "2.", "3.", "4.", "5.")]
    assert "search: grid, 4 trial(s)" in out and [line.split(". ")[1] for line in listed] == [
        "preset=simvpv2 lr=0.01 seed=42", "preset=simvpv2 lr=0.001 seed=42",
        "preset=simvpv2 lr=0.01 seed=43", "preset=simvpv2 lr=0.001 seed=43"]
    assert f"    skipped: preset=simvpv2-l lr=0.001 ({why})" in out.splitlines()


def test_a_budget_below_the_larger_preset_never_trains_it_under_tpe(tmp_path: Path):
    space = space_file(tmp_path, "tpe", {"algorithm": "optuna", "num_samples": 16, "seed": 0},
                       budget={"params_m": 10})
    plan = make_plan([str(space), "--storage", str(tmp_path / "runs"), "--dry-run"])
    plan.run_dir.mkdir(parents=True)
    s = driver.searcher(plan)
    started = []
    for i in range(16):  # as Tune's controller: a suggestion, its epochs, its end
        started.append(s.suggest(f"t{i}"))
        s.on_trial_result(f"t{i}", {"epoch": 1, "val_mse": 200.0 - i})
        s.on_trial_complete(f"t{i}", {"epoch": 3, "val_mse": 100.0 - i})
    assert {c["preset"] for c in started} == {"simvpv2"}
    trials = optuna.load_study(study_name="tpe", storage=f"sqlite:///{plan.run_dir / 'optuna.db'}").trials
    over = [t for t in trials if budget.OVER_BUDGET in t.user_attrs]
    assert over and {(t.state, t.params["preset"]) for t in over} == {(State.PRUNED, "simvpv2-l")}
    assert {t.user_attrs[budget.OVER_BUDGET] for t in over} == {f"params {LARGE['params_m']:.4g}M > 10M"}
    assert all(t.constraints["params_m"] > 0 and not t.intermediate_values for t in over)
    trained = [t for t in trials if t not in over]
    assert len(trained) == 16 and {t.state for t in trained} == {State.COMPLETE}
    assert all(t.constraints["params_m"] <= 0 for t in trained)
    # TPE reads the constraints: past its 10 random start-up trials it rarely proposes the large preset
    startup_end = trained[9].number
    assert sum(t.number > startup_end for t in over) < sum(t.number < startup_end for t in over)


def test_nothing_within_budget_is_one_line_on_a_grid_and_an_end_of_asking_under_a_sampler(
        tmp_path: Path, monkeypatch, capsys):
    tight = {"params_m": 1}
    grid = space_file(tmp_path, "tightgrid", {"algorithm": "grid"}, budget=tight,
                      space={"preset": {"grid": ["simvpv2", "simvpv2-l"]}})
    assert main([str(grid), "--storage", str(tmp_path / "runs"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "budget: all 2 grid configurations are over params <= 1M" in err[0]
    assert "raise the budget" in err[0] and len(err[0]) <= 300

    monkeypatch.setattr(searchers, "MAX_OVER_BUDGET", 3)
    space = space_file(tmp_path, "tightrandom", {"algorithm": "random", "num_samples": 2}, budget=tight)
    plan = make_plan([str(space), "--storage", str(tmp_path / "runs"), "--dry-run"])
    plan.run_dir.mkdir(parents=True)
    assert driver.searcher(plan).suggest("t0") == Searcher.FINISHED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("budget: 3 configurations in a row were over params <= 1M")
