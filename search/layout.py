"""What a search keeps on disk, in one place: file names, results columns, statuses, metrics and
their directions, experiment.json, and the one rule that picks the best configuration.

Light on purpose (no pandas, pyarrow, Ray or torch at import), so the command line, the report and
the tests read the same names without paying for the heavy libraries.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simvp_core.atomic import atomic_write

if TYPE_CHECKING:
    import pandas as pd

# runs/<name>/
RESULTS_FILE = "results.parquet"
EXPERIMENT_FILE = "experiment.json"
OPTUNA_DB = "optuna.db"
PREDICTIONS_DIR = "predictions"
TUNE_DIR = "tune"
LOCK_FILE = "search.lock"  # the driver holding the run folder (search.lock)
# beside the run folders: the default MLflow store and its artifacts
MLFLOW_DB = "mlflow.db"
MLARTIFACTS_DIR = "mlartifacts"
# in every checkpoint the trainable reports
CHECKPOINT_FILE = "trainer.pt"
HISTORY_FILE = "history.json"
PREDICTIONS_FILE = "predictions.npz"

STATUSES = ("completed", "stopped", "errored", "diverged")
METRICS = ("mse", "mae", "ssim", "psnr")  # simvp_core.metrics.KEYS, as val_* and test_* columns
MODES = {"mse": "min", "mae": "min", "ssim": "max", "psnr": "max"}
SEARCH_METRICS = {f"val_{m}": MODES[m] for m in METRICS}  # what a space may optimise
OPTUNA_ALGORITHMS = ("optuna", "random")  # searches whose sampler keeps a study in optuna.db

TRIAL_COLUMNS = ("trial_id", "status", "status_detail", "epochs_run")
OUTCOME_COLUMNS = (
    "searched", "config_key", "repeat", *(f"val_{m}" for m in METRICS), "best_val_mse",
    *(f"test_{m}" for m in METRICS), "test_set", "precision", "n_params", "seconds", "ended", "node_id", "retries",
    "history", "mlflow_run_id",
)


@functools.cache
def columns() -> tuple[str, ...]:
    """results.parquet's columns in order: the trial, every TrainConfig field, its outcome."""
    from simvp_core.config import FIELD_TYPES  # pydantic: only for what writes or checks rows

    return (*TRIAL_COLUMNS, *FIELD_TYPES, *OUTCOME_COLUMNS)


def direction(metric: str) -> str:
    """'min' or 'max' for a metric, bare or as a column (mse, val_ssim, best_val_mse)."""
    return MODES[metric.rsplit("_", 1)[-1]]


def predictions_path(run_dir: Path, trial_id: str) -> Path:
    """Where a completed trial's test predictions are kept."""
    return Path(run_dir) / PREDICTIONS_DIR / f"{trial_id}.npz"


def write_experiment(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / EXPERIMENT_FILE, json.dumps(info, indent=2) + "\n")


def read_experiment(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / EXPERIMENT_FILE).read_text())


def timestamp() -> str:
    """Now, as experiment.json records its times: UTC, ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


__all__ = ["atomic_write", "best", "columns", "direction", "predictions_path", "read_experiment",
           "timestamp", "write_experiment", "RESULTS_FILE", "EXPERIMENT_FILE", "OPTUNA_DB", "PREDICTIONS_DIR",
           "TUNE_DIR", "LOCK_FILE", "MLFLOW_DB", "MLARTIFACTS_DIR", "CHECKPOINT_FILE", "HISTORY_FILE",
           "PREDICTIONS_FILE", "STATUSES", "METRICS", "MODES", "SEARCH_METRICS",
           "OPTUNA_ALGORITHMS"]
