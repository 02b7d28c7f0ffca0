"""The report's figures as matplotlib objects: one colour per configuration, legends naming the
searched values, plain parameter ticks in M."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from search.report import figures

NAMES = ["batch_size", "lambda_ddr"]


def row(trial_id: str, status: str = "completed", epochs: int = 3, val_mse: float = 50.0,
        test_mse: float = np.nan, n_params: int = 1_234_567, **searched) -> dict:
    """The columns of one results row that the figures read."""
    history = [{"epoch": e + 1, "val_mse": val_mse + 10.0 * (epochs - e - 1)} for e in range(epochs)]
    return {"trial_id": trial_id, "status": status, "history": json.dumps(history),
            "config_key": json.dumps(searched, sort_keys=True), **searched,
            "best_val_mse": val_mse, "test_mse": test_mse, "n_params": n_params,
            "seconds": 10.0 * epochs}


def table4() -> pd.DataFrame:
    """Two batch sizes; (16, 0.0) and (16, 0.1) repeated; one trial of each way of ending."""
    def config(batch_size: int, lambda_ddr: float) -> dict:
        return {"batch_size": batch_size, "lambda_ddr": lambda_ddr}
    return pd.DataFrame([
        row("t00", **config(32, 0.0)), row("t01", **config(32, 0.1)),
        row("t02", "stopped", epochs=1, val_mse=30.0, **config(32, 0.5)),
        row("t03", "errored", epochs=2, val_mse=70.0, **config(32, 1.0)),
        row("t04", "diverged", epochs=2, val_mse=90.0, **config(32, 2.0)),
        row("t05", **config(16, 0.0)), row("t06", val_mse=51.0, **config(16, 0.0)),
        row("t07", **config(16, 0.1)), row("t08", val_mse=52.0, **config(16, 0.1)),
    ])


def curve_colours(fig) -> dict[str, str]:
    """trial_id -> colour of its learning curve."""
    return {line.get_gid(): to_hex(line.get_color()) for line in fig.axes[0].get_lines()
            if line.get_gid()}


def config_legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_one_colour_per_configuration_and_repeats_share_it():
    df = table4()
    colours = curve_colours(figures.learning_curves(df, NAMES, "val_mse", "min"))
    assert set(colours) == set(df["trial_id"])
    by_config = df.groupby("config_key")["trial_id"].apply(list)
    for trials in by_config:
        assert len({colours[t] for t in trials}) == 1
    assert len({colours[t[0]] for t in by_config}) == len(by_config)
    assert colours["t05"] == colours["t06"] and colours["t05"] != colours["t00"]


def test_legend_names_each_configuration_by_its_searched_values():
    fig = figures.learning_curves(table4(), NAMES, "val_mse", "min")
    assert config_legend(fig) == ["batch_size=16 lambda_ddr=0", "batch_size=16 lambda_ddr=0.1",
                                  "batch_size=32 lambda_ddr=0", "batch_size=32 lambda_ddr=0.1",
                                  "batch_size=32 lambda_ddr=0.5", "batch_size=32 lambda_ddr=1",
                                  "batch_size=32 lambda_ddr=2"]
    legend_colours = [to_hex(h.get_color()) for h in fig.legends[0].legend_handles]
    colours = curve_colours(fig)
    assert legend_colours == [colours[t] for t in ("t05", "t07", "t00", "t01", "t02", "t03", "t04")]
    statuses = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert statuses == ["completed", "stopped early", "errored", "diverged"]


def test_trials_that_did_not_complete_are_drawn_differently():
    fig = figures.learning_curves(table4(), NAMES, "val_mse", "min")
    styles = {line.get_gid(): line.get_linestyle() for line in fig.axes[0].get_lines()
              if line.get_gid()}
    assert styles["t00"] == "-"
    assert styles["t02"] == "--"  # stopped
    assert styles["t03"] == ":" and styles["t04"] == ":"  # errored, diverged


def test_beyond_the_limit_only_the_best_are_labelled_and_the_legend_fits():
    rows = [row(f"c{i:02d}", val_mse=100.0 - i, batch_size=16, lambda_ddr=i / 100)
            for i in range(figures.MAX_LABELLED + 5)]
    fig = figures.learning_curves(pd.DataFrame(rows), NAMES, "val_mse", "min")
    legend = config_legend(fig)
    assert len(legend) == figures.MAX_LABELLED + 1
    assert legend[-1] == "5 other configuration(s), not labelled"
    assert f"the {figures.MAX_LABELLED} of {len(rows)}" in fig.legends[0].get_title().get_text()
    colours = curve_colours(fig)
    assert len({colours[f"c{i:02d}"] for i in range(5, len(rows))}) == figures.MAX_LABELLED
    assert {colours[f"c{i:02d}"] for i in range(5)} == {figures.UNLABELLED_COLOUR}
    fig.draw_without_rendering()
    box = fig.legends[0].get_window_extent()
    assert box.y0 >= 0 and box.y1 <= fig.bbox.height and box.x1 <= fig.bbox.width


def test_the_curves_are_of_the_search_metric_and_label_its_best_configurations():
    """On val_ssim (max), the labelled configurations are those with the highest values."""
    rows = [row(f"c{i:02d}", batch_size=16, lambda_ddr=i / 100) for i in range(figures.MAX_LABELLED + 2)]
    for i, r in enumerate(rows):  # val_ssim grows with i; val_mse (flat) would not tell them apart
        r["history"] = json.dumps([{"epoch": 1, "val_mse": 50.0, "val_ssim": 0.5 + i / 100}])
    fig = figures.learning_curves(pd.DataFrame(rows), NAMES, "val_ssim", "max")
    colours = curve_colours(fig)
    assert {colours["c00"], colours["c01"]} == {figures.UNLABELLED_COLOUR} != colours["c02"]
    assert fig.axes[0].get_ylabel().startswith("validation SSIM")
    assert "with the highest validation SSIM" in fig.legends[0].get_title().get_text()
    assert [line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_gid() == "c03"] == [0.53]


def test_long_labels_make_the_figure_taller_not_cut_off():
    names = [f"p{i}" for i in range(9)]
    rows = [row(f"t{i:02d}", **{n: f"value-{i}-{n}" for n in names})
            for i in range(figures.MAX_LABELLED)]
    fig = figures.learning_curves(pd.DataFrame(rows), names, "val_mse", "min")
    assert all("\n" in label for label in config_legend(fig))  # wrapped
    assert fig.get_figheight() > figures.CURVES_SIZE[1]
    fig.draw_without_rendering()
    box = fig.legends[0].get_window_extent()
    assert box.y0 >= 0 and box.y1 <= fig.bbox.height


@pytest.mark.parametrize("n_params", [[160_385, 160_393, 160_393], [5_000_000, 5_400_000, 7_400_000]])
def test_cost_axes_are_plain_numbers_with_parameters_in_millions(n_params):
    rows = [row(f"t{i}", test_mse=40.0 + i, n_params=n, lambda_ddr=i / 10)
            for i, n in enumerate(n_params)]
    rows.append(row("t9", "stopped", epochs=1, n_params=n_params[0], lambda_ddr=0.9))
    fig = figures.cost_figure(pd.DataFrame(rows))
    fig.draw_without_rendering()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            assert axis.get_offset_text().get_text() == ""
            assert all("e" not in t.get_text() for t in axis.get_ticklabels())
    params = fig.axes[0]
    assert params.get_xlabel() == "parameters (M)"
    ticks = [float(t.get_text().replace("−", "-")) for t in params.get_xticklabels() if t.get_text()]
    assert len(ticks) >= 3
    low, high = min(n_params) / 1e6, max(n_params) / 1e6
    assert min(ticks) <= high and max(ticks) >= low  # the ticks cover the points, in M
    assert max(ticks) - min(ticks) >= 0.05 * low  # nearly equal sizes: a readable window


def test_saving_twice_gives_the_same_bytes(tmp_path):
    df = table4()
    for i in range(2):
        figures.save(figures.learning_curves(df, NAMES, "val_mse", "min"), tmp_path / f"curves{i}.png")
        figures.save(figures.cost_figure(df), tmp_path / f"cost{i}.png")
    assert (tmp_path / "curves0.png").read_bytes() == (tmp_path / "curves1.png").read_bytes()
    assert (tmp_path / "cost0.png").read_bytes() == (tmp_path / "cost1.png").read_bytes()
    assert b"Software" not in (tmp_path / "curves0.png").read_bytes()


def test_prediction_strip_has_one_labelled_row_per_entry():
    frames = np.zeros((figures.FRAMES, 1, 64, 64), dtype=np.float32)
    fig = figures.prediction_strip([("input", frames), ("pred, act=gelu", frames + 2)], "title")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["input", "pred, act=gelu"]
    assert fig.axes[0].get_images()[0].get_array().max() == 1.0  # clipped
    assert tuple(fig.get_size_inches()) == figures.strip_size(2)
    assert fig.get_suptitle() == "title"


# -- the study's pictures: parallel coordinates and the efficiency curve ---------------------------


def study(n: int = 6) -> pd.DataFrame:
    """n trials over lr (log-spread), act and lambda_gdl, ended in reverse id order; one stopped,
    one errored, one without a metric."""
    rng = np.random.default_rng(0)
    rows = [row(f"t{i:02d}", val_mse=40.0 + i, lr=10 ** rng.uniform(-4, -1), act=["gelu", "starrelu"][i % 2],
                lambda_gdl=float(i) / n) for i in range(n)]
    df = pd.DataFrame(rows).assign(val_mse=lambda d: d["best_val_mse"], epochs_run=3,
                                   ended=[100.0 - i for i in range(n)])
    df.loc[1, ["status", "epochs_run", "val_mse"]] = ["stopped", 1, 80.0]
    df.loc[2, "status"] = "errored"
    df.loc[3, "val_mse"] = np.nan
    return df


def test_parallel_axes_keep_each_parameters_scale() -> None:
    lr = pd.Series([1e-4, 1e-3, 1e-2])
    heights, _, labels = figures._axis_positions(lr)
    assert heights == pytest.approx([0.0, 0.5, 1.0])  # log axis: a decade per half
    linear, _, _ = figures._axis_positions(pd.Series([1.0, 2.0, 4.0]))
    assert linear == pytest.approx([0.0, 1 / 3, 1.0])
    uniform = pd.Series(np.linspace(0.004, 1.0, 50))  # spans 250x but is spread evenly: linear
    assert figures._axis_positions(uniform)[0] == pytest.approx((uniform - 0.004) / 0.996)
    cats, ticks, names = figures._axis_positions(pd.Series(["starrelu", "gelu", "gelu"]))
    assert names == ["gelu", "starrelu"] and list(cats) == [1.0, 0.0, 0.0] and ticks == [0.0, 1.0]
    gap, _, _ = figures._axis_positions(pd.Series([0.1, None, 0.3]))
    assert np.isnan(gap[1]) and figures._axis_positions(pd.Series([5, 5]))[0] == pytest.approx([0.5, 0.5])


def test_parallel_coordinates_draw_completed_in_colour_and_stopped_apart() -> None:
    df = study()
    fig = figures.parallel_coordinates(df, ["lr", "act", "lambda_gdl"], "val_mse", "min")
    ax = fig.axes[0]
    trial_lines = [ln for ln in ax.get_lines() if ln.get_gid() == "trial"]
    dashed = [ln for ln in trial_lines if ln.get_linestyle() == "--"]
    assert len(trial_lines) == 4 and len(dashed) == 1  # 3 completed + 1 stopped; errored and NaN out
    assert "2 errored, diverged or without val_mse not shown" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr", "act", "lambda_gdl", "val_mse"]
    texts = {t.get_text() for t in ax.texts}
    assert {"gelu", "starrelu"} <= texts
    solid = sorted((ln for ln in trial_lines if ln.get_linestyle() == "-"), key=lambda ln: ln.get_ydata()[-1])
    assert to_hex(solid[0].get_color()) == to_hex(figures.colormaps["viridis_r"](0.0))  # best: brightest


def test_parallel_coordinates_draw_one_trial_and_one_parameter() -> None:
    fig = figures.parallel_coordinates(study().iloc[[0]], ["act"], "val_mse", "max")
    assert [len(ln.get_xdata()) for ln in fig.axes[0].get_lines() if ln.get_gid() == "trial"] == [2]


def test_the_efficiency_curve_is_the_best_completed_value_so_far_in_end_order() -> None:
    df = study()
    ordered, known = figures.end_order(df)
    assert known and list(ordered["trial_id"]) == [f"t{i:02d}" for i in reversed(range(6))]
    ax = figures.efficiency_curve(df, "val_mse", "min").axes[0]
    best = next(ln for ln in ax.get_lines() if ln.get_label() == "best completed so far")
    x, y = best.get_xdata(), best.get_ydata()
    assert list(x) == [3, 6, 9, 12, 13, 16]  # every trial's epochs, the stopped one's 1 included
    assert list(y) == [45.0, 44.0, 44.0, 44.0, 44.0, 40.0]  # monotone; ends at the best completed
    assert "trial-epochs spent" == ax.get_xlabel()
    unordered = figures.efficiency_curve(df.drop(columns="ended"), "val_mse", "min").axes[0]
    assert "id order" in unordered.get_xlabel()
    never_reported = df.assign(ended=[np.nan] + list(df["ended"][1:]))
    ordered, known = figures.end_order(never_reported)
    assert known and list(ordered["trial_id"])[-1] == "t00"  # no end time: last, not id order


def test_the_efficiency_curve_of_a_search_without_a_completed_trial_says_so() -> None:
    df = study().assign(status="stopped")
    ax = figures.efficiency_curve(df, "val_mse", "min").axes[0]
    assert ax.get_title().endswith("no trial completed")
