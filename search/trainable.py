"""The Ray Tune function trainable: one trial drives one `Trainer.fit`, one report per epoch.

Every report carries a checkpoint (trainer state + `history.json`), so a failed trial resumes
from its last epoch. The final report adds the test metrics and `predictions.npz`; the driver
collects those from the checkpoint, whatever the storage. A diverged trial (NaN/inf loss)
reports `diverged=1` with the metric as NaN and returns normally: Tune ends it TERMINATED (so
FailureConfig does not retry it), ASHA ignores NaN when computing cutoffs, and Optuna records
the trial as FAIL.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray import tune
from torch import Tensor

from search import runfolder
from simvp_core.trainer import DivergedError, EpochEnd, Trainer

if TYPE_CHECKING:
    from search.space import SearchSpec

N_PREDICTIONS = 4
# report(metrics, checkpoint folder or None): the folder exists only during the call
Report = Callable[[dict[str, Any], "Path | None"], None]


def train_trial(config: dict[str, Any], spec: SearchSpec, train_digits: Tensor, test_digits: Tensor | None,
                data_dir: str | None = None) -> None:
    """Train the trial's configuration (`spec.trial_config(config)`), continuing from Tune's
    checkpoint of it when there is one."""
    trainer = Trainer(spec.trial_config(config), train_digits, test_digits, data_dir)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            trainer.load_checkpoint(Path(d) / runfolder.CHECKPOINT_FILE)
    fit_reporting(trainer, spec.metric, _tune_report, {"node_id": ray.get_runtime_context().get_node_id()})


def _tune_report(metrics: dict[str, Any], folder: Path | None) -> None:
    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)


def fit_reporting(trainer: Trainer, metric: str, report: Report, info: dict[str, Any]) -> None:
    """`trainer.fit`, reporting each epoch with `info` and a checkpoint folder; a diverged epoch is
    reported without one, as `diverged=1` with the metric NaN, and the trial returns."""
    info = {"n_params": trainer.n_params, "test_set": trainer.test_set_source, "precision": trainer.precision,
            **info}
    try:
        trainer.fit(lambda end: _report(trainer, end, info, report))
    except DivergedError as e:
        report({**info, "epoch": trainer.epoch + 1, metric: math.nan, "diverged": 1.0,
                "error": str(e)}, None)


def _report(trainer: Trainer, end: EpochEnd, info: dict[str, Any], report: Report) -> None:
    """Report the epoch's row with a checkpoint; the last epoch adds test metrics and predictions."""
    metrics = {**end.row, **info}
    with tempfile.TemporaryDirectory() as d:
        trainer.save_checkpoint(Path(d) / runfolder.CHECKPOINT_FILE)
        (Path(d) / runfolder.HISTORY_FILE).write_text(json.dumps(trainer.history))
        if end.last:
            start = time.perf_counter()
            metrics.update({f"test_{k}": float(v) for k, v in trainer.evaluate("test").items()})
            metrics["test_seconds"] = time.perf_counter() - start
            inputs, targets, preds = trainer.predict(N_PREDICTIONS)
            np.savez_compressed(Path(d) / runfolder.PREDICTIONS_FILE, inputs=inputs.numpy(),
                                targets=targets.numpy(), preds=preds.numpy())
        report(metrics, Path(d))


__all__ = ["train_trial", "fit_reporting", "Report"]
