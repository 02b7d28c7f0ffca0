"""search.layout: the names of what a search writes, the one `best` rule, atomic writes, and the
promise that the light modules stay light."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from search import layout
from simvp_core import atomic, metrics
from simvp_core.config import FIELD_TYPES

REPO = Path(__file__).resolve().parents[2]


def trials(*rows: tuple) -> pd.DataFrame:
    """(trial_id, status, config_key, val_mse, val_ssim) rows as results.parquet columns."""
    return pd.DataFrame(rows, columns=["trial_id", "status", "config_key", "val_mse", "val_ssim"])


def test_best_ranks_completed_configurations_by_their_mean_best_repeat_first() -> None:
    df = trials(("t0", "completed", "a", 40.0, 0.90), ("t1", "completed", "a", 44.0, 0.91),
                ("t2", "completed", "b", 41.0, 0.80), ("t3", "completed", "b", 42.0, 0.80),
                ("t4", "stopped", "c", 10.0, 0.99),  # lower, but a low-fidelity value: never ranked
                ("t5", "completed", "d", math.nan, math.nan), ("t6", "diverged", "e", math.inf, 0.0))
    top = layout.best(df, "val_mse", "min")
    assert list(top["trial_id"]) == ["t2", "t3"]  # b: mean 41.5 beats a: mean 42
    assert list(layout.best(df, "val_ssim", "max")["trial_id"]) == ["t1", "t0"]
    assert layout.best(df[df["status"] != "completed"], "val_mse", "min") is None


def test_best_breaks_ties_by_the_smaller_key_and_then_trial_id() -> None:
    df = trials(("t2", "completed", "b", 40.0, 0.9), ("t1", "completed", "a", 40.0, 0.9),
                ("t0", "completed", "a", 40.0, 0.9))
    assert list(layout.best(df, "val_mse", "min")["trial_id"]) == ["t0", "t1"]


def test_metric_names_and_directions_are_the_trainers_metrics() -> None:
    assert layout.METRICS == metrics.KEYS
    assert layout.SEARCH_METRICS == {"val_mse": "min", "val_mae": "min", "val_ssim": "max",
                                     "val_psnr": "max"}
    assert [layout.direction(m) for m in ("mse", "val_ssim", "test_psnr", "best_val_mse")] == [
        "min", "max", "max", "min"]


def test_results_columns_are_the_trial_every_config_field_then_the_outcome() -> None:
    columns = layout.columns()
    assert len(set(columns)) == len(columns)
    assert columns == (*layout.TRIAL_COLUMNS, *FIELD_TYPES, *layout.OUTCOME_COLUMNS)
    assert {f"{kind}_{m}" for kind in ("val", "test") for m in layout.METRICS} <= set(columns)


def test_experiment_json_round_trips_and_predictions_have_one_place(tmp_path: Path) -> None:
    info = {"experiment": "x", "searched": ["lr"], "finished": None, "wall_seconds": 1.5}
    layout.write_experiment(tmp_path / "x", info)
    assert layout.read_experiment(tmp_path / "x") == info
    assert layout.predictions_path(tmp_path / "x", "t1") == tmp_path / "x" / "predictions" / "t1.npz"
    assert layout.timestamp()[:2] == "20" and layout.timestamp().endswith("+00:00")


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "results.parquet"
    layout.atomic_write(path, b"old")
    layout.atomic_write(path, "néw")
    assert path.read_bytes() == "néw".encode()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        layout.atomic_write(path, b"new")
    assert path.read_bytes() == "néw".encode() and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_atomic_file_leaves_nothing_when_its_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "checkpoint.pt"
    with pytest.raises(RuntimeError):
        with atomic.atomic_file(path) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert list(path.parent.iterdir()) == []
    assert layout.atomic_write is atomic.atomic_write  # one implementation, the trainer's too


@pytest.mark.parametrize("module, heavy", [
    ("search.layout", ("pandas", "pyarrow", "ray", "torch")),
    ("search.results", ("ray", "torch")),
    ("search.run", ("ray", "torch")),
])
def test_light_modules_import_no_heavy_library(module: str, heavy: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(sorted(set({heavy!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
