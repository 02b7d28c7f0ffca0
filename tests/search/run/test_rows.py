"""search.run.rows without Ray: results rows from stand-ins for Tune's Trial (its status, last
result, failures and a checkpoint on the local filesystem)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow.fs
import pytest

from search import runfolder
from search.run import rows
from search.runfolder import results
from search.space import load_space

HISTORY = [{"epoch": 1, "val_mse": 60.0, "val_mae": 120.0, "val_ssim": 0.5, "val_psnr": 15.0,
            "seconds": 1.0, "epoch_seconds": 1.5},
           {"epoch": 2, "val_mse": 50.0, "val_mae": 110.0, "val_ssim": 0.6, "val_psnr": 16.0,
            "seconds": 1.0, "epoch_seconds": 2.5}]
FINAL = {"test_mse": 55.0, "test_mae": 115.0, "test_ssim": 0.55, "test_psnr": 15.5,
         "test_seconds": 0.5, "test_set": "generated stand-in", "n_params": 1234, "node_id": "n1",
         "timestamp": 1796212800, "precision": "bf16 autocast, contiguous (auto: H100 has native bf16)"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory, write_space) -> Any:
    folder = tmp_path_factory.mktemp("space")
    return load_space(write_space(folder, "rows", {"lr": {"grid": [0.01, 0.02]}}, repeats=2,
                                  scheduler={"type": "asha", "grace_period": 1,
                                             "reduction_factor": 2, "max_epochs": 2}))


def trial(folder: Path, trial_id: str, status: str, history: list[dict], last: dict,
          failures: int = 0, predictions: bool = False, **config: Any) -> SimpleNamespace:
    """A finished Tune trial as results reads it: a checkpoint folder with history.json (and
    predictions.npz), an error.txt for an errored one."""
    checkpoint = folder / trial_id / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / runfolder.HISTORY_FILE).write_text(json.dumps(history))
    if predictions:
        np.savez(checkpoint / runfolder.PREDICTIONS_FILE, preds=np.zeros((1, 10, 1, 64, 64), np.float32))
    if status == "ERROR":
        (folder / trial_id / "error.txt").write_text("Traceback ...\n  raise\nRuntimeError: out of memory\n")
    return SimpleNamespace(
        trial_id=trial_id, status=status, config={"lr": 0.01, "seed": 42, **config},
        last_result=last, num_failures=failures, path=str(folder / trial_id),
        checkpoint=SimpleNamespace(filesystem=pyarrow.fs.LocalFileSystem(), path=str(checkpoint)))


def test_a_completed_trial_has_its_test_metrics_and_predictions(tmp_path: Path, spec) -> None:
    t = trial(tmp_path / "tune", "t0", "TERMINATED", HISTORY, {**HISTORY[-1], **FINAL}, predictions=True)
    row = rows.trial_row(t, spec, tmp_path / "run")
    assert (row["status"], row["status_detail"], row["epochs_run"], row["retries"]) == ("completed", "", 2, 0)
    assert (row["val_mse"], row["best_val_mse"], row["test_mse"], row["test_ssim"]) == (50.0, 50.0, 55.0, 0.55)
    # each validation metric's best epoch, in its own direction: SSIM and PSNR grow, MSE and MAE fall
    assert [row[f"best_val_{m}"] for m in ("mae", "ssim", "psnr")] == [110.0, 0.6, 16.0]
    assert row["seconds"] == pytest.approx(1.5 + 2.5 + 0.5)  # epoch wall times plus the test
    assert (row["n_params"], row["node_id"], row["test_set"]) == (1234, "n1", "generated stand-in")
    assert row["precision"] == FINAL["precision"]  # what the trial ran, as it reported it
    assert row["ended"] == 1796212800  # Tune's timestamp of the last result: the trials' end order
    assert row["lr"] == 0.01 and row["epochs"] == 2 and row["repeat"] == 0
    assert json.loads(row["searched"]) == ["lr", "seed"] and row["config_key"] == '{"lr": 0.01}'
    assert runfolder.predictions_path(tmp_path / "run", "t0").is_file()


@pytest.mark.parametrize("status, history, last, failures, expected", [
    ("TERMINATED", HISTORY[:1], HISTORY[0], 0, ("stopped", "stopped early by ASHA at epoch 1")),
    ("ERROR", HISTORY[:1], HISTORY[0], 3, ("errored", "RuntimeError: out of memory (after 1 retries)")),
    ("TERMINATED", HISTORY[:1], {"epoch": 2, "diverged": 1.0, "error": "loss became nan in epoch 2"},
     0, ("diverged", "loss became nan in epoch 2")),
    ("RUNNING", HISTORY[:1], HISTORY[0], 0,
     ("stopped", "interrupted at epoch 1 (Tune status RUNNING); continue with --resume")),
])
def test_a_trial_that_did_not_complete_says_why_and_has_no_test_numbers(
        tmp_path: Path, spec, status: str, history: list, last: dict, failures: int,
        expected: tuple[str, str]) -> None:
    row = rows.trial_row(trial(tmp_path / "tune", "t1", status, history, last, failures,
                                  seed=43), spec, tmp_path / "run")
    assert (row["status"], row["status_detail"]) == expected
    assert row["epochs_run"] == 1 and row["retries"] == min(failures, spec.max_failures)
    assert row["repeat"] == 1 and math.isnan(row["test_mse"]) and row["best_val_mse"] == 60.0
    assert not (tmp_path / "run" / runfolder.PREDICTIONS_DIR).exists()


def test_rows_are_written_in_column_order_sorted_by_trial_and_read_back(tmp_path: Path, spec) -> None:
    built = [rows.trial_row(trial(tmp_path / "tune", t, "TERMINATED", HISTORY, {**HISTORY[-1], **FINAL}),
                            spec, tmp_path)
             for t in ("t2", "t0", "t1")]
    assert results.write(built, tmp_path) == tmp_path / runfolder.RESULTS_FILE
    df = results.read(tmp_path)
    assert list(df.columns) == list(results.columns()) and list(df["trial_id"]) == ["t0", "t1", "t2"]
    results.write([], tmp_path)  # a search with no trial still writes a readable file
    assert results.read(tmp_path).empty


def test_the_config_key_is_the_searched_values_without_the_seed() -> None:
    assert rows.config_key({"lr": 0.1, "seed": 43, "act": "gelu"}) == '{"act": "gelu", "lr": 0.1}'


class _ShutDownTrial(SimpleNamespace):
    """A Tune trial read after ray.shutdown(): its error_file property asserts, as Ray's does."""

    @property
    def error_file(self) -> str:
        raise AssertionError("Ray must be initialized to get the session dir.")


def test_an_errored_trial_is_read_after_ray_shut_down(tmp_path: Path, spec) -> None:
    t = trial(tmp_path / "tune", "t0", "ERROR", HISTORY[:1], HISTORY[0])
    after = _ShutDownTrial(**vars(t))
    row = rows.trial_row(after, spec, tmp_path / "run")
    assert (row["status"], row["status_detail"]) == ("errored", "RuntimeError: out of memory (after 0 retries)")
    (tmp_path / "tune" / "t0" / "error.txt").unlink()
    row = rows.trial_row(_ShutDownTrial(**{**vars(t), "path": None}), spec, tmp_path / "run")
    assert row["status_detail"].startswith("the trial raised an error (no error.txt found)")
