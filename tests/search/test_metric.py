"""search.metric: the metrics a search may rank by, their directions, and the one `best` rule."""

from __future__ import annotations

import math

import pandas as pd

from search import metric
from simvp_core import metrics


def trials(*rows: tuple) -> pd.DataFrame:
    """(trial_id, status, config_key, val_mse, val_ssim) rows as results.parquet columns."""
    return pd.DataFrame(rows, columns=["trial_id", "status", "config_key", "val_mse", "val_ssim"])


def test_best_ranks_completed_configurations_by_their_mean_best_repeat_first() -> None:
    df = trials(("t0", "completed", "a", 40.0, 0.90), ("t1", "completed", "a", 44.0, 0.91),
                ("t2", "completed", "b", 41.0, 0.80), ("t3", "completed", "b", 42.0, 0.80),
                ("t4", "stopped", "c", 10.0, 0.99),  # lower, but a low-fidelity value: never ranked
                ("t5", "completed", "d", math.nan, math.nan), ("t6", "diverged", "e", math.inf, 0.0))
    top = metric.best(df, "val_mse", "min")
    assert list(top["trial_id"]) == ["t2", "t3"]  # b: mean 41.5 beats a: mean 42
    assert list(metric.best(df, "val_ssim", "max")["trial_id"]) == ["t1", "t0"]
    assert metric.best(df[df["status"] != "completed"], "val_mse", "min") is None


def test_best_breaks_ties_by_the_smaller_key_and_then_trial_id() -> None:
    df = trials(("t2", "completed", "b", 40.0, 0.9), ("t1", "completed", "a", 40.0, 0.9),
                ("t0", "completed", "a", 40.0, 0.9))
    assert list(metric.best(df, "val_mse", "min")["trial_id"]) == ["t0", "t1"]


def test_metric_names_and_directions_are_the_trainers_metrics() -> None:
    assert metric.METRICS == metrics.KEYS
    assert metric.SEARCH_METRICS == {"val_mse": "min", "val_mae": "min", "val_ssim": "max",
                                     "val_psnr": "max"}
    assert [metric.direction(m) for m in ("mse", "val_ssim", "test_psnr", "best_val_mse")] == [
        "min", "max", "max", "min"]
    assert metric.best_column("val_ssim") == "best_val_ssim"
    assert (metric.label("val_mse"), metric.long_label("val_ssim"), metric.long_label("test_psnr")) == (
        "val MSE", "validation SSIM", "test PSNR")


def test_the_best_value_of_a_history_follows_the_direction_and_skips_what_is_not_a_number() -> None:
    values = [0.3, None, math.nan, 0.5, "x", math.inf, 0.4]
    assert (metric.best_of(values, "max"), metric.best_of(values, "min")) == (0.5, 0.3)
    assert math.isnan(metric.best_of([None, math.nan], "min"))
