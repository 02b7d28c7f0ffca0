"""The Ray Tune function trainable: one trial drives one `Trainer`, one `tune.report` per epoch.

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
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray import tune
from torch import Tensor

from simvp_core.trainer import DivergedError, Trainer

if TYPE_CHECKING:
    from search.space import SearchSpec

CHECKPOINT_FILE = "trainer.pt"
HISTORY_FILE = "history.json"
PREDICTIONS_FILE = "predictions.npz"
N_PREDICTIONS = 4
FAULT_ENV = "SIMVP_FAULT_INJECT"
FAULT_ACTIONS = ("raise_once_at_epoch", "raise_at_epoch", "nan_at_epoch", "sleep_per_epoch")


@dataclass(frozen=True)
class Fault:
    """A test hook: `action=value[@param=value]`, applied to trials whose param matches."""

    action: str
    value: float
    match: tuple[str, str] | None = None

    def applies(self, params: dict[str, Any]) -> bool:
        return self.match is None or str(params.get(self.match[0])) == self.match[1]


def parse_faults(text: str) -> tuple[Fault, ...]:
    """Parse $SIMVP_FAULT_INJECT, e.g. "raise_once_at_epoch=2@seed=43,sleep_per_epoch=0.5".

    Test hook only: raise_once_at_epoch=E raises RuntimeError once per trial before epoch E;
    raise_at_epoch=E raises there on every attempt; nan_at_epoch=E sets the weights to NaN before
    epoch E (the trainer then diverges); sleep_per_epoch=S sleeps S seconds before every epoch.
    """
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        spec, _, match = item.partition("@")
        action, _, value = spec.partition("=")
        key, _, wanted = match.partition("=")
        if action not in FAULT_ACTIONS or not value or (match and not wanted):
            raise ValueError(f"{FAULT_ENV}: cannot parse {item!r}; expected ACTION=VALUE[@PARAM=VALUE] "
                             f"with ACTION one of {', '.join(FAULT_ACTIONS)}")
        faults.append(Fault(action, float(value), (key, wanted) if match else None))
    return tuple(faults)


def _inject(faults: tuple[Fault, ...], params: dict[str, Any], trainer: Trainer) -> None:
    """Apply the test-hook faults due before the trainer's next epoch."""
    epoch = trainer.epoch + 1
    for fault in (f for f in faults if f.applies(params)):
        if fault.action == "sleep_per_epoch":
            time.sleep(fault.value)
        elif fault.action == "nan_at_epoch" and epoch == fault.value:
            for p in trainer.model.parameters():
                p.data.fill_(math.nan)
        elif fault.action.startswith("raise") and epoch == fault.value:
            marker = Path(tune.get_context().get_trial_dir()) / "fault_raised"
            if fault.action == "raise_at_epoch" or not marker.exists():
                marker.touch()
                raise RuntimeError(f"injected fault before epoch {epoch} ({FAULT_ENV})")


def train_trial(config: dict[str, Any], spec: SearchSpec, train_digits: Tensor, test_digits: Tensor | None,
                data_dir: str | None = None, faults: tuple[Fault, ...] = ()) -> None:
    """Train the trial's configuration (`spec.trial_config(config)`) epoch by epoch."""
    cfg = spec.trial_config(config)
    trainer = Trainer(cfg, train_digits, test_digits, data_dir)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            trainer.load_checkpoint(Path(d) / CHECKPOINT_FILE)
    info = {"n_params": trainer.n_params, "test_set": trainer.test_set_source,
            "node_id": ray.get_runtime_context().get_node_id()}
    if trainer.epoch >= cfg.epochs:  # restored after its last epoch: only the final report is due
        _report(trainer, trainer.history[-1], info, final=True)
        return
    while trainer.epoch < cfg.epochs:
        _inject(faults, config, trainer)
        try:
            row = trainer.train_epoch()
        except DivergedError as e:
            tune.report({**info, "epoch": trainer.epoch + 1, spec.metric: math.nan,
                         "diverged": 1.0, "error": str(e)})
            return
        _report(trainer, row, info, final=trainer.epoch >= cfg.epochs)


def _report(trainer: Trainer, row: dict[str, Any], info: dict[str, Any], final: bool) -> None:
    """tune.report the epoch's row with a checkpoint; the last epoch adds test metrics."""
    metrics = {**row, **info}
    with tempfile.TemporaryDirectory() as d:
        trainer.save_checkpoint(Path(d) / CHECKPOINT_FILE)
        (Path(d) / HISTORY_FILE).write_text(json.dumps(trainer.history))
        if final:
            start = time.perf_counter()
            metrics.update({f"test_{k}": float(v) for k, v in trainer.evaluate("test").items()})
            metrics["test_seconds"] = time.perf_counter() - start
            inputs, targets, preds = trainer.predict(N_PREDICTIONS)
            np.savez_compressed(Path(d) / PREDICTIONS_FILE, inputs=inputs.numpy(),
                                targets=targets.numpy(), preds=preds.numpy())
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def faults_from_env() -> tuple[Fault, ...]:
    """The test hook as the driver's environment sets it (trials get it as a parameter)."""
    return parse_faults(os.environ.get(FAULT_ENV, ""))


__all__ = ["train_trial", "parse_faults", "faults_from_env", "Fault", "FAULT_ENV",
           "CHECKPOINT_FILE", "HISTORY_FILE", "PREDICTIONS_FILE"]
