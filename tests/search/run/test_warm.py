"""search.run.warm: earlier searches' completed trials seed a new TPE study. Chosen when the plan is
made (only trials the new space would have run, the rest listed with why), told to the study when
the searcher is built, recorded in experiment.json. Real run folders, real Optuna storage; no Ray."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest

from search import budget, runfolder
from search.run import driver, main, warm
from search.run.plan import make_plan
from search.runfolder import results
from search.space import parse_space
from simvp_core.config import TrainConfig
from tests.search.conftest import TINY_BASE

State = optuna.trial.TrialState
NEW_SPACE = {"lr": {"loguniform": [1e-4, 1e-2]}}


def row(trial_id: str, lr: float, value: float = 50.0, status: str = "completed", **settings: Any) -> dict:
    """One results.parquet row of an earlier search over lr on the tiny base, 3 epochs."""
    cfg = TrainConfig(**{**TINY_BASE, "epochs": 3, "lr": lr, **settings})
    epochs = cfg.epochs if status == "completed" else 1
    history = [{"epoch": e, "val_mse": value + 10.0 * (epochs - e)} for e in range(1, epochs + 1)]
    return {**dict.fromkeys(results.columns()), **cfg.to_dict(), "trial_id": trial_id, "status": status,
            "status_detail": "", "epochs_run": epochs, "searched": '["lr"]', "repeat": 0,
            "val_mse": value, "history": json.dumps(history)}


def earlier(storage: Path, name: str, rows: list[dict]) -> Path:
    """runs/<name>/ as a finished search leaves it (experiment.json, results.parquet)."""
    run_dir = storage / name
    run_dir.mkdir(parents=True)
    runfolder.write_experiment(run_dir, {"experiment": name, "algorithm": "optuna"})
    results.write(rows, run_dir)
    return run_dir


@pytest.fixture
def searches(tmp_path: Path, write_space) -> dict[str, Any]:
    """Two earlier searches beside the new one: 'first' (named in the space file) and 'second'
    (given by its path with --warm-start)."""
    storage = tmp_path / "runs"
    earlier(storage, "first", [
        row("f0", 0.001, 40.0),
        row("f1", 0.05, 30.0),  # outside the new range
        row("f2", 0.002, 45.0, epochs=5),  # trained for another number of epochs
        row("f3", 0.003, 90.0, status="stopped"),
        row("f4", 0.004, 42.0, seed=43, device="cuda", eval_batch_size=4),  # seed and execution may differ
        row("f5", 0.005, math.nan)])
    second = earlier(storage, "second", [row("s0", 0.0002, 60.0)])
    space = write_space(tmp_path, "new", NEW_SPACE, {"algorithm": "optuna", "num_samples": 12, "seed": 0},
                        base={"epochs": 3}, warm_start=["first"])
    return {"storage": storage, "space": space, "second": second,
            "argv": [str(space), "--storage", str(storage), "--warm-start", str(second), "--dry-run"]}


def test_only_completed_trials_the_new_space_would_run_seed_it_the_rest_listed_with_why(searches):
    plan = make_plan(searches["argv"])
    first, second = plan.warm
    assert (first.run, second.run, second.path) == ("first", str(searches["second"]), str(searches["second"]))
    assert [s.trial_id for s in first.seeds] == ["f0", "f4"] and [s.trial_id for s in second.seeds] == ["s0"]
    assert first.seeds[0].params == {"lr": 0.001} and first.seeds[0].value == 40.0
    assert first.seeds[0].curve == {1: 60.0, 2: 50.0, 3: 40.0}
    assert dict(first.ignored) == {"f1": "lr=0.05 is outside this space",
                                   "f2": "fixed settings differ: epochs 5 (here 3)",
                                   "f5": "no finite val_mse"}
    assert first.not_completed == 1 and second.ignored == () and second.not_completed == 0


def test_the_dry_run_lists_the_seeds_and_the_searcher_tells_them_to_the_study(searches, capsys):
    assert main(searches["argv"]) == 0
    out = capsys.readouterr().out.splitlines()
    told = [line for line in out if line.startswith("warm start: ")]
    assert len(told) == 2 and told[0].startswith("warm start: 2 trial(s) of first (")
    assert told[0].endswith("seed the study; 3 completed ignored, 1 not completed")
    assert "    ignored f2: fixed settings differ: epochs 5 (here 3)" in out

    plan = make_plan(searches["argv"])
    plan.run_dir.mkdir(parents=True)
    s = driver.searcher(plan)
    config = s.suggest("t0")  # TPE samples beside the seeds: their distributions are the space's
    assert 1e-4 <= config["lr"] <= 1e-2
    study = optuna.load_study(study_name="new", storage=runfolder.optuna_url(plan.run_dir))
    seeded = [t for t in study.trials if warm.SOURCE_ATTR in t.user_attrs]
    assert [(t.state, t.params, t.value, t.user_attrs) for t in seeded] == [
        (State.COMPLETE, {"lr": 0.001}, 40.0, {"warm_start": "first", "source_trial": "f0"}),
        (State.COMPLETE, {"lr": 0.004}, 42.0, {"warm_start": "first", "source_trial": "f4"}),
        (State.COMPLETE, {"lr": 0.0002}, 60.0, {"warm_start": str(searches["second"]), "source_trial": "s0"})]
    assert seeded[0].intermediate_values == {1: 60.0, 2: 50.0, 3: 40.0}
    tracker = SimpleNamespace(parent_run_id=None, experiment_id=None)
    info = driver.experiment_info(dataclasses.replace(plan, data_dir="sample"), tracker)
    assert [(w["run"], w["seeded"], len(w["ignored"]), w["not_completed"]) for w in info["warm_start"]] == [
        ("first", 2, 3, 1), (str(searches["second"]), 1, 0, 0)]


def test_a_seed_over_the_new_budget_is_ignored(tmp_path):
    spec = parse_space({"base": {"epochs": 3}, "space": {"preset": {"choice": ["simvpv2", "simvpv2-l"]}},
                        "search": {"algorithm": "optuna", "num_samples": 4}, "budget": {"params_m": 10}}, "x")
    rows = [{**TrainConfig(epochs=3, preset=p).to_dict(), "trial_id": p, "status": "completed", "val_mse": 1.0}
            for p in ("simvpv2", "simvpv2-l")]
    large = budget.costs(TrainConfig(preset="simvpv2-l"))["params_m"]
    source = warm.match(spec, rows, "earlier", tmp_path)
    assert [s.trial_id for s in source.seeds] == ["simvpv2"]
    assert source.ignored == (("simvpv2-l", f"over the budget: params {large:.4g}M > 10M"),)


def test_what_cannot_be_warm_started_is_one_line_and_exit_2(searches, tmp_path, write_space, capsys):
    storage, second = searches["storage"], str(searches["second"])
    grid = write_space(tmp_path, "grid", {"lr": {"grid": [0.01]}})
    cases = {
        "grid": ([str(grid), "--warm-start", second], "algorithm grid learns nothing"),
        "absent": ([str(searches["space"]), "--warm-start", "nowhere"], "warm start 'nowhere': "),
        "itself": ([str(searches["space"]), "--warm-start", "new"], "this search's own run folder"),
        "resume": ([str(searches["space"]), "--warm-start", second, "--resume"], "--warm-start with --resume"),
    }
    (storage / "new").mkdir()
    (storage / "new" / "experiment.json").write_text("{}")  # only for 'resume'
    for case, (argv, words) in cases.items():
        if case != "resume":
            (storage / "new" / "experiment.json").unlink(missing_ok=True)
        assert main([*argv, "--storage", str(storage), "--dry-run"]) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and len(err[0]) <= 300, (case, err)
