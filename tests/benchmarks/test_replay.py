"""The search replay on the committed learning curves: what a replayed trial reports, the grid's
full budget, what each Optuna searcher tells its study, and the command's table."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from benchmarks import replay
from benchmarks.record_curves import GRID, MAX_EPOCHS, SEEDS, read_curves
from search.run import driver, searchers

State = optuna.trial.TrialState


@pytest.fixture(scope="module")
def curves():
    return replay.Curves.read()


class Recording:
    """A searcher wrapped to keep every result Tune's controller would hand it."""

    def __init__(self, searcher):
        self.searcher, self.configs, self.results = searcher, {}, {}

    def suggest(self, trial_id):
        self.configs[trial_id] = self.searcher.suggest(trial_id)
        return self.configs[trial_id]

    def on_trial_result(self, trial_id, result):
        self.results.setdefault(trial_id, []).append(result)
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if result["epoch"] not in [r["epoch"] for r in self.results.get(trial_id, [])]:
            self.results.setdefault(trial_id, []).append(result)
        self.searcher.on_trial_complete(trial_id, result, error)


def test_curves_file_holds_the_whole_grid_and_the_command_that_regenerates_it():
    frame, meta = read_curves(replay.CURVES)
    assert meta["command"].startswith("python -m benchmarks.record_curves")
    assert meta["grid"] == {k: list(v) for k, v in GRID.items()} and meta["max_epochs"] == MAX_EPOCHS
    runs = frame.groupby([*GRID, "seed"])["epoch"].apply(sorted)
    assert len(runs) == np.prod([len(v) for v in GRID.values()]) * len(SEEDS)
    assert all(epochs == list(range(1, MAX_EPOCHS + 1)) for epochs in runs)
    assert not frame["diverged"].any() and np.isfinite(frame["val_mse"]).all()


def test_a_replayed_trial_reports_one_recorded_run_epoch_by_epoch(curves):
    method = replay.Method("recorded TPE", lambda c, spec, rng: Recording(
        replay.optuna_searcher(spec, "optuna", searchers.ResumableOptunaSearch)))
    outcome = replay.replay(curves, method, seed=3)
    assert len(outcome.searcher.results) == outcome.trials == 32
    for trial_id, results in outcome.searcher.results.items():
        key = curves.key(outcome.searcher.configs[trial_id])
        reported = [r["val_mse"] for r in results]
        assert [r["epoch"] for r in results] == list(range(1, MAX_EPOCHS + 1))
        assert any(np.array_equal(reported, curves.runs[(key, s)][0]) for s in curves.seeds)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_grid_over_its_budget_runs_every_configuration_and_picks_the_best_observed(curves, seed):
    outcome = replay.replay(curves, replay.METHODS[0], seed)
    assert (outcome.trials, outcome.stopped, outcome.spent) == (32, 0, replay.BUDGET)
    assert sorted(key for _, key, _ in outcome.completed) == sorted(curves.score)
    best_observed = min((value, key) for _, key, value in outcome.completed)[1]
    assert replay.regret(curves, outcome, replay.BUDGET) == pytest.approx(
        curves.score[best_observed] / curves.best - 1)
    assert replay.to_target(curves, outcome, 0.02) <= replay.BUDGET


def recorded(told):
    """TPE + ASHA with searcher class `told`, wrapped to keep what the controller handed it."""
    return replay.Method(told.__name__, lambda c, spec, rng: Recording(
        replay.optuna_searcher(spec, "optuna", told)), replay.ASHA)


def test_asha_after_tells_the_study_pruned_trials_with_their_epochs_before_tells_complete(curves):
    after = replay.replay(curves, recorded(searchers.ResumableOptunaSearch), seed=0)
    before = replay.replay(curves, recorded(OptunaSearch), seed=0)
    for outcome in (after, before):
        assert outcome.stopped > 0 and outcome.spent <= replay.BUDGET
        study = outcome.searcher.searcher._ot_study
        assert len(study.trials) == outcome.trials
        last = {trial_id: results[-1] for trial_id, results in outcome.searcher.results.items()}
        assert sum(r["epoch"] < MAX_EPOCHS for r in last.values()) == outcome.stopped
    told = after.searcher.searcher._ot_study.trials
    pruned = [t for t in told if t.state == State.PRUNED]
    assert len(pruned) == after.stopped
    assert all(0 < max(t.intermediate_values) < MAX_EPOCHS for t in pruned)
    for t in (t for t in told if t.state == State.COMPLETE):
        assert sorted(t.intermediate_values) == list(range(1, MAX_EPOCHS + 1))
        assert t.value == t.intermediate_values[MAX_EPOCHS]
    told = before.searcher.searcher._ot_study.trials
    assert {t.state for t in told} == {State.COMPLETE}  # stopped ones too, with their last low-epoch value
    lasts = [results[-1]["val_mse"] for results in before.searcher.results.values()]
    assert sorted(t.value for t in told) == sorted(lasts)


@pytest.mark.parametrize("algorithm", ["optuna", "random"])
def test_the_replays_searchers_suggest_what_the_platforms_do(curves, algorithm, tmp_path):
    spec = curves.spec(7, (1, 3))
    spec = dataclasses.replace(spec, algorithm=algorithm)
    plan = SimpleNamespace(spec=spec, name="replay", run_dir=tmp_path,
                           max_concurrent=None, warm=())
    platform = driver.searcher(plan)
    ours = replay.optuna_searcher(spec, algorithm, searchers.ResumableOptunaSearch)
    assert type(ours) is type(platform) and type(ours._sampler) is type(platform._sampler)
    for i in range(12):  # past TPE's 10 random start-up trials
        trial_id = f"t{i}"
        assert ours.suggest(trial_id) == platform.suggest(trial_id)
        result = {"epoch": MAX_EPOCHS, "training_iteration": MAX_EPOCHS, "val_mse": 130.0 + i}
        ours.on_trial_complete(trial_id, result)
        platform.on_trial_complete(trial_id, result)


def test_the_command_prints_one_row_per_method_with_numbers_in_range(capsys):
    assert replay.main(["--seeds", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ")][2:]
    assert [r[0].strip("| ") for r in rows] == [m.name for m in replay.METHODS]
    for cells in rows:
        assert 0 < float(cells[3]) <= replay.BUDGET  # trial-epochs spent
        assert cells[5] in ("0/2", "1/2", "2/2")
        regrets = [float(c.strip(" |")) for c in cells[-len(replay.CHECKPOINTS):] if c.strip(" |") != "-"]
        assert all(0 <= r < 20 for r in regrets)
