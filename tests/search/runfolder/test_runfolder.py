"""search.runfolder: the one owner of runs/<name>/. Each file is written atomically where it can
be, read back checked, and a file that cannot be used is one line naming it and what to do;
reading never writes."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search import runfolder
from search.runfolder import results
from simvp_core import atomic
from simvp_core.config import FIELD_TYPES


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


def test_results_columns_are_the_trial_every_config_field_then_the_outcome() -> None:
    columns = results.columns()
    assert len(set(columns)) == len(columns)
    assert columns == (*results.TRIAL_COLUMNS, *FIELD_TYPES, *results.OUTCOME_COLUMNS)
    assert {f"{kind}_{m}" for kind in ("val", "best_val", "test") for m in ("mse", "mae", "ssim", "psnr")} \
        <= set(columns)
    assert set(results.REQUIRED) <= set(columns)


def test_experiment_json_round_trips_and_predictions_have_one_place(tmp_path: Path) -> None:
    info = {"experiment": "x", "searched": ["lr"], "finished": None, "wall_seconds": 1.5}
    runfolder.write_experiment(tmp_path / "x", info)
    assert runfolder.read_experiment(tmp_path / "x") == info
    assert runfolder.predictions_path(tmp_path / "x", "t1") == tmp_path / "x" / "predictions" / "t1.npz"
    assert runfolder.timestamp()[:2] == "20" and runfolder.timestamp().endswith("+00:00")
    assert runfolder.optuna_url(tmp_path / "x") == f"sqlite:///{tmp_path / 'x' / 'optuna.db'}"
    assert runfolder.tune_path("s3://bucket/x") == "s3://bucket/x/tune"


@pytest.mark.parametrize("content, words", [
    (None, "experiment.json not found"),
    ("{half", "is not valid JSON"),
    ("[1, 2]", "holds a list, not the search's description"),
    ('{"wall_seconds": "abc"}', "wall_seconds is a string, expected a number"),
    ('{"wall_seconds": 1e300}', "wall_seconds is 1e+300, expected a finite number >= 0"),
    ('{"finished": 5}', "finished is a number, expected a string or null"),
    ('{"searched": [1, 2]}', "searched holds something other than names"),
    ('{"epochs": ' + "9" * 5000 + "}", "is not valid JSON (Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, "is not valid JSON (nested too deeply)"),
    ("FIFO", "a FIFO (named pipe), not a regular experiment.json"),
    ("FOLDER", "a folder, not a regular experiment.json"),
])
def test_an_unusable_experiment_json_is_one_line_naming_it_and_the_fix(tmp_path: Path, content, words) -> None:
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    if content == "FIFO":
        os.mkfifo(run_dir / runfolder.EXPERIMENT_FILE)  # a read would block for ever
    elif content == "FOLDER":
        (run_dir / runfolder.EXPERIMENT_FILE).mkdir()
    elif content is not None:
        (run_dir / runfolder.EXPERIMENT_FILE).write_text(content)
    before = snapshot(tmp_path)
    with pytest.raises(runfolder.RunFolderError) as info:
        runfolder.read_experiment(run_dir)
    message = str(info.value)
    assert words in message and "\n" not in message and "python -m search.run" in message
    assert snapshot(tmp_path) == before


def test_a_failed_write_keeps_the_old_experiment_json(tmp_path: Path, monkeypatch) -> None:
    runfolder.write_experiment(tmp_path, {"finished": None})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        runfolder.write_experiment(tmp_path, {"finished": "now"})
    assert runfolder.read_experiment(tmp_path) == {"finished": None}
    assert [p.name for p in tmp_path.iterdir()] == [runfolder.EXPERIMENT_FILE]


def test_results_written_before_the_best_columns_get_them_from_the_history_on_reading(tmp_path: Path) -> None:
    history = [{"epoch": 1, "val_mse": 50.0, "val_ssim": 0.5}, {"epoch": 2, "val_mse": 60.0, "val_ssim": 0.4}]
    row = {c: 0 for c in results.REQUIRED} | {"trial_id": "t0", "status": "completed", "history": json.dumps(history)}
    pd.DataFrame([row]).to_parquet(results.path(tmp_path), index=False)
    before = snapshot(tmp_path)
    df = results.read(tmp_path)
    assert (df["best_val_ssim"][0], df["best_val_mse"][0]) == (0.5, 0)  # a stored column is kept
    assert math.isnan(df["best_val_psnr"][0])  # never logged
    assert snapshot(tmp_path) == before


def test_predictions_are_read_back_checked(tmp_path: Path) -> None:
    frames = np.zeros((2, 10, 1, 64, 64), dtype=np.float64)
    runfolder.predictions_path(tmp_path, "good").parent.mkdir()
    np.savez(runfolder.predictions_path(tmp_path, "good"), inputs=frames, targets=frames, preds=frames)
    np.savez(runfolder.predictions_path(tmp_path, "small"), inputs=frames[..., :32], targets=frames,
             preds=frames)
    arrays = runfolder.read_predictions(tmp_path, "good")
    assert {k: (a.dtype, a.shape) for k, a in arrays.items()} == {
        k: (np.float32, (2, 10, 1, 64, 64)) for k in runfolder.PREDICTION_ARRAYS}
    with pytest.raises(runfolder.RunFolderError, match="small have an unexpected shape"):
        runfolder.read_predictions(tmp_path, "small")
    with pytest.raises(runfolder.RunFolderError, match="missing unreadable"):
        runfolder.read_predictions(tmp_path, "missing")


def test_the_study_is_found_by_name_or_as_the_only_one(tmp_path: Path) -> None:
    import optuna

    with pytest.raises(runfolder.RunFolderError, match="optuna.db: no such optuna.db"):
        runfolder.read_study(tmp_path, "s")
    storage = runfolder.optuna_storage(tmp_path)
    optuna.create_study(study_name="s", storage=storage)
    assert runfolder.read_study(tmp_path, None).study_name == "s"
    with pytest.raises(runfolder.RunFolderError, match=r"optuna.db holds no study 'other' \(it holds: s\)"):
        runfolder.read_study(tmp_path, "other")
    optuna.create_study(study_name="t", storage=storage)
    with pytest.raises(runfolder.RunFolderError, match=r"holds no study 'None' \(it holds: s, t\)"):
        runfolder.read_study(tmp_path, None)


@pytest.mark.parametrize("damage, words", [
    ("text", "optuna.db is not an SQLite database"),
    ("truncated", "optuna.db cannot be read"),
    ("fifo", "optuna.db: a FIFO (named pipe), not a regular optuna.db"),
])
def test_a_damaged_study_is_one_line_and_left_as_it_is(tmp_path: Path, damage, words) -> None:
    import optuna

    path = tmp_path / runfolder.OPTUNA_DB
    if damage == "text":
        path.write_text("not a database")
    elif damage == "fifo":
        os.mkfifo(path)
    else:  # a real study cut after its header: SQLite's own file, missing its tables' pages
        optuna.create_study(study_name="s", storage=runfolder.optuna_storage(tmp_path))
        path.write_bytes(path.read_bytes()[:1024])
    before = snapshot(tmp_path)
    with pytest.raises(runfolder.RunFolderError, match=re.escape(words)) as info:
        runfolder.read_study(tmp_path, "s")
    assert "\n" not in str(info.value) and "--name NEW" in str(info.value)
    assert snapshot(tmp_path) == before
