"""search.report.tables on small frames: aggregation of repeats, the best marks in each metric's
direction, the noise test, matching published rows and the markdown itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from search.report import tables
from search.report.tables import Stat


def completed(*rows: tuple) -> pd.DataFrame:
    """(trial_id, lambda_ddr, test_mse, test_ssim, epochs_run) rows of completed trials."""
    return pd.DataFrame([{"trial_id": t, "lambda_ddr": ddr, "config_key": json.dumps({"lambda_ddr": ddr}),
                          "test_mse": mse, "test_mae": 2 * mse, "test_ssim": ssim, "test_psnr": 20.0,
                          "epochs_run": epochs, "n_params": 2_000_000}
                         for t, ddr, mse, ssim, epochs in rows])


def test_repeats_are_aggregated_per_configuration_sorted_by_the_varied_values() -> None:
    rows = tables.summarise(completed(("t0", 0.5, 41.0, 0.90, 3), ("t1", 0.1, 40.0, 0.91, 3),
                                      ("t2", 0.1, 42.0, 0.89, 2)), ["lambda_ddr"])
    assert [(r.config["lambda_ddr"], r.n, r.epochs_run) for r in rows] == [(0.1, 2, "2-3"), (0.5, 1, "3")]
    assert rows[0].stats["mse"].format("mse") == "41.00 ± 1.41"
    assert rows[1].stats["ssim"].format("ssim") == "0.9000" and Stat(()).format("mse") == tables.MISSING


def test_the_best_is_marked_in_each_metrics_direction_ties_included() -> None:
    rows = tables.summarise(completed(("t0", 0.0, 41.0, 0.90, 3), ("t1", 0.1, 40.0, 0.80, 3),
                                      ("t2", 0.2, 40.0, 0.85, 3)), ["lambda_ddr"])
    marks = tables.best_marks(rows)
    assert marks["mse"] == ({rows[1].key, rows[2].key}, False)  # lower is better, a tie
    assert marks["ssim"] == ({rows[0].key}, False)  # higher is better
    table = tables.block_table(rows, ["lambda_ddr"], [])
    assert "| 0.1 | 1 | 2.000 | 3 | **40.00** |" in table and "**0.9000**" in table


def test_welchs_test_needs_two_repeats_on_each_side() -> None:
    assert not tables.within_noise(Stat((40.0,)), Stat((40.1, 40.2)))
    assert tables.within_noise(Stat((40.0, 40.4)), Stat((40.1, 40.5)))
    assert not tables.within_noise(Stat((40.0, 40.01)), Stat((45.0, 45.01)))
    assert tables.within_noise(Stat((1.0, 1.0)), Stat((1.0, 1.0)))


def test_published_rows_match_by_value_with_float_tolerance_and_strict_booleans() -> None:
    published = [{"match": {"compile": True}, "mse": 1.0}, {"match": {"lambda_ddr": 0.1}, "mse": 2.0}]
    assert tables.match_published({"lambda_ddr": 0.1 + 1e-12, "compile": False}, published)["mse"] == 2.0
    assert tables.match_published({"lambda_ddr": 0.1, "compile": 1}, published)["mse"] == 2.0
    assert tables.match_published({"lambda_ddr": 0.2}, published) is None


def test_values_print_short_and_sort_numbers_then_strings_then_defaults() -> None:
    assert [tables.format_value(v) for v in (None, math.nan, np.True_, 0.123456, "gelu")] == [
        "default", "default", "true", "0.1235", "gelu"]
    assert sorted([None, "b", 2, 1.5], key=tables.sort_key) == [1.5, 2, "b", None]
    df = pd.DataFrame({"preset": ["tau", "gsta", "tau"], "c_t": [None, 8.0, math.nan]})
    assert [(v, list(g.index)) for v, g in tables.split_blocks(df, ["preset", "c_t"])] == [
        ({"preset": "gsta", "c_t": 8.0}, [1]), ({"preset": "tau", "c_t": None}, [0, 2])]


def test_markdown_cells_escape_pipes_and_unfinished_trials_get_their_own_table() -> None:
    assert tables.markdown_table(["a"], [["x|y"]], [True]) == "| a |\n| ---: |\n| x\\|y |"
    others = pd.DataFrame([{"lambda_ddr": 0.5, "repeat": 0, "trial_id": "t3", "status": "stopped",
                            "epochs_run": 1, "val_mse": 60.0, "best_val_mse": 55.0,
                            "status_detail": "stopped early by ASHA at epoch 1"}])
    table = tables.not_completed_table(others, ["lambda_ddr"], "val_mse")
    assert table.splitlines()[0].startswith("| lambda_ddr | repeat | trial | status | epochs run | last val MSE |")
    assert table.splitlines()[-1] == ("| 0.5 | 0 | t3 | stopped early | 1 | 60.00 | 55.00 | "
                                      "stopped early by ASHA at epoch 1 |")
    others = others.assign(val_ssim=0.61234, best_val_ssim=0.7)  # the search metric, at its precision
    assert "| 1 | 0.6123 | 0.7000 |" in tables.not_completed_table(others, ["lambda_ddr"], "val_ssim")
