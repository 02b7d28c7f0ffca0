"""The search metric: what a space may optimise, which way is better, and the one rule that picks
the best configuration by it (the summary, the report and the MLflow parent run all ask here).

Light on purpose (pandas only for type hints), so the space file's validation and the command line
read the same names without loading the heavy libraries.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("mse", "mae", "ssim", "psnr")  # simvp_core.metrics.KEYS, as val_* and test_* columns
MODES = {"mse": "min", "mae": "min", "ssim": "max", "psnr": "max"}
SEARCH_METRICS = {f"val_{m}": MODES[m] for m in METRICS}  # what a space may optimise
DEFAULT = "val_mse"
LABELS = {"mse": "MSE", "mae": "MAE", "ssim": "SSIM", "psnr": "PSNR"}
SPLITS = {"val": "validation", "test": "test"}
UNITS = {"mse": "per frame, sum over pixels", "mae": "per frame, sum over pixels",
         "ssim": "data range 2.0", "psnr": "dB"}  # simvp_core.metrics' conventions


def direction(metric: str) -> str:
    """'min' or 'max' for a metric, bare or as a column (mse, val_ssim, best_val_mse)."""
    return MODES[metric.rsplit("_", 1)[-1]]


def best_column(metric: str) -> str:
    """The results column holding a trial's best value of `metric` over its epochs."""
    return f"best_{metric}"


def label(metric: str) -> str:
    """A column name in words for tables and axes: val_mse -> 'val MSE', test_ssim -> 'test SSIM'."""
    split, _, name = metric.rpartition("_")
    return f"{split} {LABELS[name]}" if split else LABELS[name]


def long_label(metric: str) -> str:
    """The same in full words: val_mse -> 'validation MSE'."""
    split, _, name = metric.rpartition("_")
    return f"{SPLITS.get(split, split)} {LABELS[name]}" if split else LABELS[name]


def finite(value: Any) -> bool:
    """A number that is neither NaN nor infinite (None and text are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def best_of(values: list[Any], mode: str) -> float:
    """The best finite value in `mode`'s direction; NaN when there is none."""
    kept = [float(v) for v in values if finite(v)]
    if not kept:
        return math.nan
    return min(kept) if mode == "min" else max(kept)


def best(df: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame | None:
    """The best configuration's completed trials, best repeat first; None if none has the metric.

    Only completed trials count (a trial stopped early has a low-fidelity value), and repeats of a
    configuration (one config_key) are ranked by their mean; ties go to the smaller key.
    """
    values = df[metric].astype(float)
    done = df[(df["status"] == "completed") & values.notna() & (values.abs() != math.inf)]
    if done.empty:
        return None
    sign = 1.0 if mode == "min" else -1.0
    means = done.groupby("config_key")[metric].mean()
    key = min(means.index, key=lambda k: (sign * means[k], k))
    return done[done["config_key"] == key].sort_values([metric, "trial_id"],
                                                        ascending=[mode == "min", True])
