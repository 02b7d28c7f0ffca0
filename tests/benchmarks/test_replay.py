"""The search replay on the committed learning curves: what a replayed trial reports, the grid's
full budget, what each Optuna searcher tells its study, and the command's table."""

import dataclasses
from pathlib import Path
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
def test_the_grid_over_its_budget_runs_every_configuration_once_with_a_recorded_final(curves, seed):
    outcome = replay.replay(curves, replay.METHODS[0], seed)
    assert (outcome.trials, outcome.stopped, outcome.spent) == (32, 0, replay.BUDGET)
    assert sorted(key for _, key, _ in outcome.completed) == sorted(curves.score)
    assert all(value in [curves.runs[(key, s)][0][-1] for s in curves.seeds] for _, key, value in outcome.completed)
    assert [at for at, *_ in outcome.completed][-1] == replay.BUDGET  # the last epoch spent ends a trial
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


RESULTS = (Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md").read_text()
SECTION = RESULTS[RESULTS.index("## Search replay on real curves"):RESULTS.index("## Warm start on the replay")]
RECOMPUTED = 4  # replay seeds of every method recomputed here: the whole table costs 6-7 CPU-seconds
WHOLE = ("grid, random order", "random")  # rows cheap enough to recompute over all 20 seeds (0.4 s)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def published() -> tuple[dict[str, str], dict[str, list[str]]]:
    """RESULTS.md's replay table (row lines by search) and its per-seed "to 0.5%" values."""
    names = [m.name for m in replay.METHODS]
    lines = [line for line in SECTION.splitlines() if line.startswith("| ") and cells(line)[0] in names]
    table = {cells(line)[0]: line for line in lines if len(cells(line)) == 12}
    seeds = {cells(line)[0]: cells(line)[1:] for line in lines if len(cells(line)) == 21}
    assert list(table) == list(seeds) == names
    return table, seeds


def test_the_command_prints_the_per_seed_values_results_md_publishes(capsys):
    """The replay is deterministic: its first seeds, run by the command, give RESULTS.md's values."""
    assert replay.main(["--seeds", str(RECOMPUTED)]) == 0
    out = capsys.readouterr().out
    rows = [cells(line) for line in out.splitlines() if line.startswith("| ")]
    summary, per_seed = rows[2:2 + len(replay.METHODS)], rows[2 + len(replay.METHODS) + 2:]
    assert [r[0] for r in summary] == [r[0] for r in per_seed] == [m.name for m in replay.METHODS]
    stored = published()[1]
    for name, *values in per_seed:
        assert values == stored[name][:RECOMPUTED], name


def test_results_md_rows_are_what_the_replay_gives(curves):
    """The rows cheap to recompute are RESULTS.md's to the last digit; every row's 0.5 % cells are
    the median, 10-90 % spread and count of its published per-seed values."""
    table, per_seed = published()
    seeds = list(range(len(next(iter(per_seed.values())))))
    assert seeds == list(range(20))
    for method in (m for m in replay.METHODS if m.name in WHOLE):
        row = {"search": method.name, **replay.summary(curves, [replay.replay(curves, method, s) for s in seeds])}
        assert replay.markdown([row]).splitlines()[-1] == table[method.name]
    for name, values in per_seed.items():
        reach = np.array([float("inf") if v == "never" else float(v) for v in values])
        low, high = np.percentile(reach, (10, 90), method="nearest")
        spread = f"{replay.number(np.median(reach))} ({replay.number(low)}-{replay.number(high)})"
        assert cells(table[name])[6:8] == [spread, f"{int(np.isfinite(reach).sum())}/{len(reach)}"], name
