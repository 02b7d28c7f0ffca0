"""The trainable's reports without Ray (search.trainable.fit_reporting with a recording report),
and the fault wrapper the end-to-end tests put around it (tests/search/faults.py)."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from search import runfolder
from search.metric import METRICS
from search.trainable import fit_reporting
from simvp_core.config import TrainConfig
from simvp_core.data import load_mnist
from simvp_core.trainer import Trainer
from tests.search.faults import Fault, parse_faults, with_faults

TINY = dict(preset="simvpv2", c_s=4, c_t=8, n_t=2, train_size=8, val_size=4, test_size=4,
            batch_size=4, eval_batch_size=4, epochs=2, device="cpu")


@pytest.fixture(scope="module")
def make(mnist_dir) -> Callable[[], Trainer]:
    digits = load_mnist("train", mnist_dir)[:2000], load_mnist("test", mnist_dir)[:1000]
    return lambda: Trainer(TrainConfig(**TINY), train_digits=digits[0], test_digits=digits[1])


class Recorder:
    """A report that keeps each call's metrics and the files of its checkpoint folder."""

    def __init__(self, keep: Path | None = None) -> None:
        self.calls: list[tuple[dict[str, Any], list[str]]] = []
        self.keep = keep

    def __call__(self, metrics: dict[str, Any], folder: Path | None) -> None:
        self.calls.append((metrics, sorted(p.name for p in folder.iterdir()) if folder else []))
        if folder and self.keep:
            shutil.copytree(folder, self.keep, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def finished(make, tmp_path_factory: pytest.TempPathFactory) -> tuple[Recorder, Path]:
    """One trial run to its end: the reports, and a copy of its last checkpoint folder."""
    last = tmp_path_factory.mktemp("trial") / "last"
    report = Recorder(keep=last)
    fit_reporting(make(), "val_mse", report, {"node_id": "n1"})
    return report, last


def test_each_epoch_is_reported_with_a_checkpoint_the_last_with_test_metrics(finished, make) -> None:
    report, folder = finished
    (first, first_files), (last, last_files) = report.calls
    assert (first["epoch"], last["epoch"]) == (1, 2)
    assert first_files == sorted([runfolder.CHECKPOINT_FILE, runfolder.HISTORY_FILE])
    assert last_files == sorted([runfolder.CHECKPOINT_FILE, runfolder.HISTORY_FILE, runfolder.PREDICTIONS_FILE])
    assert not {f"test_{m}" for m in METRICS} & set(first) and first["node_id"] == "n1"
    assert {f"test_{m}" for m in METRICS} <= set(last) and last["test_seconds"] > 0
    assert last["n_params"] > 0 and last["test_set"]
    assert first["precision"] == last["precision"] == make().precision  # reaches Tune's results
    history = json.loads((folder / runfolder.HISTORY_FILE).read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    with np.load(folder / runfolder.PREDICTIONS_FILE) as npz:
        assert {k: npz[k].shape for k in npz.files} == {k: (4, 10, 1, 64, 64)
                                                        for k in ("inputs", "targets", "preds")}


def test_a_trainer_restored_after_its_last_epoch_only_makes_the_final_report(make, finished) -> None:
    restored = make()
    restored.load_checkpoint(finished[1] / runfolder.CHECKPOINT_FILE)
    report = Recorder()
    fit_reporting(restored, "val_mse", report, {})
    ((metrics, files),) = report.calls
    assert metrics["epoch"] == 2 and "test_mse" in metrics and runfolder.PREDICTIONS_FILE in files


def test_a_diverged_trial_reports_nan_once_without_a_checkpoint_and_returns(make) -> None:
    trainer = make()
    for p in trainer.model.parameters():
        p.data.fill_(math.nan)
    report = Recorder()
    fit_reporting(trainer, "val_ssim", report, {})
    ((metrics, files),) = report.calls
    assert metrics["diverged"] == 1.0 and metrics["epoch"] == 1 and math.isnan(metrics["val_ssim"])
    assert "loss became nan" in metrics["error"] and files == []


def test_with_faults_applies_them_inside_the_trainable_and_then_takes_them_away(make) -> None:
    report = Recorder()

    def trainable(config: dict[str, Any], scale: int) -> None:
        fit_reporting(make(), "val_mse", report, {"scale": scale})

    faulty = with_faults(trainable, parse_faults("nan_at_epoch=2@lr=0.005"))
    assert faulty.__name__ == "trainable"  # what Tuner.restore matches
    faulty({"lr": 0.005}, scale=3)
    assert [(m["epoch"], m["scale"], bool(m.get("diverged"))) for m, _ in report.calls] == [
        (1, 3, False), (2, 3, True)]
    assert Trainer.train_epoch.__name__ == "train_epoch"  # the next trial trains unharmed


def test_faults_parse_and_reject_typos() -> None:
    assert parse_faults("raise_once_at_epoch=2@lr=0.005, sleep_per_epoch=0.5") == (
        Fault("raise_once_at_epoch", 2.0, ("lr", "0.005")), Fault("sleep_per_epoch", 0.5))
    assert Fault("nan_at_epoch", 1, ("lr", "0.005")).applies({"lr": 0.005})
    assert not Fault("nan_at_epoch", 1, ("lr", "0.005")).applies({"lr": 0.01})
    for bad in ("raise_at=2", "nan_at_epoch", "nan_at_epoch=1@lr"):
        with pytest.raises(ValueError, match="expected ACTION=VALUE"):
            parse_faults(bad)
