"""search.report.insight: the best configuration by the search metric, what the search cost, why
trials ended early, and the Optuna importances' refusal when a study cannot tell anything."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd

from search import runfolder
from search.report import insight


def trials(*rows: tuple) -> pd.DataFrame:
    """(trial_id, status, lambda_ddr, val_ssim, test_mse, epochs_run, seconds) rows; 3 epochs each."""
    return pd.DataFrame([{"trial_id": t, "status": s, "lambda_ddr": ddr, "val_ssim": ssim,
                          "config_key": json.dumps({"lambda_ddr": ddr}), "test_mse": mse,
                          "epochs_run": run, "epochs": 3, "seconds": sec}
                         for t, s, ddr, ssim, mse, run, sec in rows])


def test_best_lines_name_the_best_mean_configuration_by_the_search_metric_alone() -> None:
    df = trials(("t0", "completed", 0.1, 0.90, 41.0, 3, 30.0), ("t1", "completed", 0.1, 0.80, 41.0, 3, 30.0),
                ("t2", "completed", 0.5, 0.86, 40.0, 3, 30.0))
    lines = insight.best_lines(df, "val_ssim", "max", ["lambda_ddr"])
    assert lines == [
        "- Best by val_ssim (max): lambda_ddr=0.5 — val_ssim 0.86, test MSE 40.00 (mean of 1 completed run(s)).",
    ]
    df.loc[2, "val_ssim"] = 0.84  # now the two repeats of 0.1 (mean 0.85) win, though 0.5 tests better
    assert insight.best_lines(df, "val_ssim", "max", ["lambda_ddr"]) == [
        "- Best by val_ssim (max): lambda_ddr=0.1 — val_ssim 0.85, test MSE 41.00 (mean of 2 completed run(s))."]
    assert insight.best_lines(df.iloc[:0], "val_ssim", "max", []) == [
        "- No trial completed, so there is no best configuration."]


def test_cost_counts_the_epochs_early_stopping_saved_and_gpu_hours() -> None:
    df = trials(("t0", "completed", 0.1, 0.9, 41.0, 3, 1800.0), ("t1", "stopped", 0.5, 0.5, float("nan"), 1, 600.0))
    table = insight.cost_table(df, 3725.0, gpu_per_trial=0.5)
    assert "| trial-epochs run | 4 |" in table and "| trial-epochs without early stopping | 6 |" in table
    assert "| saving | 33.3 % |" in table and "| wall time | 1 h 02 min 05 s |" in table
    assert "| GPU-hours | 0.333 |" in table
    assert "(CPU-only trials)" in insight.cost_table(df, None, 0)
    assert insight.stop_summary(df) == "Trials that did not complete — stopped: 1 (1 after 1 epoch(s))."
    assert insight.stop_summary(df.iloc[:1]) is None


def test_importances_say_why_there_are_none(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="a", storage=runfolder.optuna_storage(tmp_path))
    assert "too few finished trials (0)" in insight.importance_lines(study)[0]


def test_importances_come_from_completed_trials_only_and_say_so(tmp_path: Path) -> None:
    """Pruned trials (values at a low fidelity) would make y look important; x decides completed ones."""
    study = optuna.create_study(study_name="s", storage=runfolder.optuna_storage(tmp_path))
    dist = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in ("x", "y")}
    for i in range(12):
        x, y = i / 11, (i * 7 % 12) / 11
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, distributions=dist, value=10 * x))
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, distributions=dist, value=100 * y,
                                                  state=optuna.trial.TrialState.PRUNED,
                                                  intermediate_values={1: 100 * y}))
    lines = insight.importance_lines(runfolder.read_study(tmp_path, "s"))
    assert lines[0] == ("Parameter importances of study `s`, from its 12 completed trials only (left out: "
                        "12 pruned (stopped early by ASHA), 0 failed (errored or diverged)):")
    assert lines[1].splitlines()[2].startswith("| x ")  # the most important first
