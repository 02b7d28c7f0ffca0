"""What the Optuna study (optuna.db) holds when the platform's searcher is driven as Tune drives
it: each epoch's value once at step `epoch`, COMPLETE / PRUNED / FAIL (with its reason) at the end,
exact across a driver killed after Tune's last snapshot; seed repeats told as their mean.
Real OptunaSearch, Repeater and RDB storage; no Ray cluster (the real searches are in test_run.py)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import optuna
import pytest
from ray.tune.experiment import Trial

from search import runfolder
from search.run import driver, resume
from search.run.plan import Plan, make_plan
from search.run.searchers import SeedRepeater

State = optuna.trial.TrialState


def plan_for(tmp_path: Path, write_space, search: dict, **top) -> Plan:
    space = write_space(tmp_path, "study", {"lr": {"loguniform": [1e-4, 1e-2]}}, search,
                        base={"epochs": 3}, **top)
    plan = make_plan([str(space), "--storage", str(tmp_path / "runs"), "--dry-run"])
    plan.run_dir.mkdir(parents=True)
    return plan


def study_of(plan: Plan) -> dict[int, optuna.trial.FrozenTrial]:
    """The stored study, read afresh: trial number -> trial."""
    study = optuna.load_study(study_name=plan.name, storage=runfolder.optuna_url(plan.run_dir))
    return {t.number: t for t in study.trials}


def epochs(searcher, trial_id: str, values: list[float], first: int = 1) -> None:
    for epoch, value in enumerate(values, first):
        searcher.on_trial_result(trial_id, {"epoch": epoch, "val_mse": value})


def test_each_epoch_is_an_intermediate_value_once_and_each_end_has_its_state(tmp_path, write_space):
    plan = plan_for(tmp_path, write_space, {"algorithm": "optuna", "num_samples": 4, "seed": 0},
                    scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    s = driver.searcher(plan)
    for i in range(4):
        s.suggest(f"t{i}")
    epochs(s, "t0", [9.0, 7.0, 5.0])
    s.on_trial_complete("t0", {"epoch": 3, "val_mse": 5.0})
    epochs(s, "t1", [8.0])
    epochs(s, "t1", [8.5])  # epoch 1 again: the first value stays
    s.on_trial_complete("t1", {"epoch": 1, "val_mse": 8.5})  # ASHA stopped it
    epochs(s, "t2", [9.5])
    nan = {"epoch": 2, "val_mse": math.nan, "diverged": 1.0, "error": "loss became nan in epoch 2"}
    s.on_trial_result("t2", nan)
    s.on_trial_complete("t2", nan)
    epochs(s, "t3", [9.9])
    s.on_trial_complete("t3", None, error=True)
    s.on_trial_complete("t0", {"epoch": 3, "val_mse": 1.0})  # told twice: the first stays
    study = study_of(plan)
    assert [study[n].state for n in range(4)] == [State.COMPLETE, State.PRUNED, State.FAIL, State.FAIL]
    assert study[0].value == 5.0 and study[0].intermediate_values == {1: 9.0, 2: 7.0, 3: 5.0}
    assert study[1].value == 8.0 and study[1].intermediate_values == {1: 8.0}  # a pruned trial's value: its last
    assert study[2].intermediate_values == {1: 9.5}
    assert study[2].user_attrs["fail_reason"] == "loss became nan in epoch 2"
    assert "raised an error" in study[3].user_attrs["fail_reason"] and study[3].intermediate_values == {1: 9.9}
    assert "fail_reason" not in study[0].user_attrs | study[1].user_attrs


def test_a_searcher_restored_from_an_older_snapshot_keeps_the_study_exact(tmp_path, write_space):
    """Tune unpickles the searcher (tuner.pkl) and restores its last snapshot; the study is ahead."""
    plan = plan_for(tmp_path, write_space, {"algorithm": "random", "num_samples": 3, "seed": 1})
    s = driver.searcher(plan)
    created = pickle.dumps(s)
    for i in range(2):
        s.suggest(f"t{i}")
    epochs(s, "t0", [9.0])
    s.save(tmp_path / "snapshot.pkl")  # Tune's last snapshot before the kill
    epochs(s, "t0", [7.0, 5.0], first=2)
    s.on_trial_complete("t0", {"epoch": 3, "val_mse": 5.0})
    epochs(s, "t1", [6.0])
    s.suggest("t2")  # asked for after the snapshot: no Tune trial will ever report on it

    tune_trials = []
    for trial_id, status in (("t0", "RUNNING"), ("t1", "RUNNING")):  # as the snapshot has them
        trial = Trial("fn", config=s._ot_trials[trial_id].params, stub=True, trial_id=trial_id)
        trial.set_status(status)
        tune_trials.append(trial)
    resume.release_orphan_optuna_trials(plan, resume.live_configs(tune_trials, 1))
    restored = pickle.loads(created)
    restored.restore(tmp_path / "snapshot.pkl")
    epochs(restored, "t0", [7.1, 5.1], first=2)  # re-run from its epoch-1 checkpoint
    restored.on_trial_complete("t0", {"epoch": 3, "val_mse": 5.1})
    epochs(restored, "t1", [6.0, 4.0, 3.0])
    restored.on_trial_complete("t1", {"epoch": 3, "val_mse": 3.0})
    study = study_of(plan)
    assert len(study) == 3 and State.RUNNING not in {t.state for t in study.values()}
    assert (study[0].state, study[0].value) == (State.COMPLETE, 5.0)
    assert sorted(study[0].intermediate_values) == [1, 2, 3]  # each epoch once
    assert (study[1].state, study[1].value, study[1].intermediate_values) == (
        State.COMPLETE, 3.0, {1: 6.0, 2: 4.0, 3: 3.0})
    assert study[2].state == State.FAIL and study[2].user_attrs["fail_reason"] == resume.ORPHAN_REASON


def test_repeats_run_each_suggestion_per_seed_and_tell_the_study_their_mean(tmp_path, write_space):
    plan = plan_for(tmp_path, write_space, {"algorithm": "random", "num_samples": 2, "seed": 2},
                    repeats=2)
    r = driver.searcher(plan)
    assert isinstance(r, SeedRepeater)
    configs = [r.suggest(f"t{i}") for i in range(4)]
    assert [c["seed"] for c in configs] == [42, 43, 42, 43]
    assert configs[0]["lr"] == configs[1]["lr"] != configs[2]["lr"] == configs[3]["lr"]
    epochs(r, "t0", [10.0, 8.0, 6.0])
    state = pickle.dumps(r.get_state())  # Tune's snapshot of the wrapper, mid-group
    fresh = SeedRepeater(r.searcher, 2, 42)
    fresh.set_state(pickle.loads(state))
    fresh.on_trial_complete("t0", {"epoch": 3, "val_mse": 6.0})
    epochs(fresh, "t1", [20.0, 12.0, 10.0])
    fresh.on_trial_complete("t1", {"epoch": 3, "val_mse": 10.0})
    epochs(fresh, "t2", [10.0])
    fresh.on_trial_complete("t2", {"epoch": 1, "val_mse": math.nan, "diverged": 1.0, "error": "loss became inf"})
    epochs(fresh, "t3", [9.0, 9.0, 9.0])
    fresh.on_trial_complete("t3", {"epoch": 3, "val_mse": 9.0})
    study = study_of(plan)
    assert len(study) == 2  # one study trial per configuration
    assert (study[0].state, study[0].value) == (State.COMPLETE, 8.0)
    assert study[0].intermediate_values == {1: 15.0, 2: 10.0, 3: 8.0}
    assert study[1].state == State.FAIL and study[1].user_attrs["fail_reason"] == "seed 42: loss became inf"


def test_live_configs_keep_a_repeated_configuration_until_its_last_seed(tmp_path):
    def trial(lr: float, seed: int, status: str) -> Trial:
        t = Trial("fn", config={"lr": lr, "seed": seed}, stub=True)
        t.set_status(status)
        return t

    trials = [trial(0.1, 42, "TERMINATED"),  # its seed 43 not created yet when the driver died
              trial(0.2, 42, "TERMINATED"), trial(0.2, 43, "RUNNING"),
              trial(0.3, 42, "TERMINATED"), trial(0.3, 43, "ERROR")]
    assert resume.live_configs(trials, 2) == [{"lr": 0.1}, {"lr": 0.2}]
    assert resume.live_configs(trials, 1) == [{"lr": 0.2, "seed": 43}]


@pytest.mark.parametrize("algorithm", ["optuna", "random"])
def test_the_searcher_is_told_the_max_epochs(tmp_path, write_space, algorithm):
    plan = plan_for(tmp_path, write_space, {"algorithm": algorithm, "num_samples": 1})
    s = driver.searcher(plan)
    s.suggest("t0")
    assert s.outcome({"epoch": 2, "val_mse": 1.0}, False, {})[0] == State.PRUNED
    assert s.outcome({"epoch": 3, "val_mse": 1.0}, False, {}) == (State.COMPLETE, 1.0, "")
    assert s.outcome({"epoch": 2, "val_mse": 1.0}, False, {"epochs": 2})[0] == State.COMPLETE  # searched epochs
