"""The report's figures: prediction strip (paper Table 6), learning curves, cost vs quality, the
study's parallel coordinates and its efficiency curve (best so far against trial-epochs spent).

Each figure function builds a matplotlib `Figure` (no pyplot state) and `save` writes it at a fixed
DPI without a software tag in the PNG, so regenerating a report from the same results gives the
same files.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import cm, colormaps, colors
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, ScalarFormatter

from search.metric import UNITS, long_label
from search.report import tables
from search.runfolder.results import history_rows

DPI = 100
FRAMES = 10
STRIP_FRAME_INCHES = 1.0  # one 64x64 frame per inch
STRIP_LABEL_INCHES = 1.8  # left margin for the row labels
STRIP_TITLE_INCHES = 0.5
STRIP_MARGIN_INCHES = 0.1  # right and bottom
STRIP_GAP_PIXELS = 2  # white between frames, in frame pixels
CURVES_SIZE = (12.0, 6.5)
COST_SIZE = (12.0, 5.0)
PARALLEL_SIZE = (12.0, 5.5)
EFFICIENCY_SIZE = (10.0, 5.0)
LOG_SPAN = 10.0  # positive numeric values spanning at least this ratio get a log axis
STATUS_STYLE = {  # linestyle, end marker
    "completed": ("-", None),
    "stopped": ("--", "x"),
    "errored": (":", "s"),
    "diverged": (":", "v"),
}
MAX_LABELLED = 20  # configurations with their own colour and legend entry; the rest are grey
TAB20 = colormaps["tab20"].colors
PALETTE = [c for c in TAB20[0::2] + TAB20[1::2] if c not in TAB20[14:16]]  # greys left out
PALETTE += [colormaps["tab20b"].colors[i] for i in (0, 4)]  # navy, olive: 20 in all
UNLABELLED_COLOUR = "#b0b0b0"
LABEL_CHARS = 56  # legend lines are wrapped at this width
LEGEND_PAD_INCHES = 0.3  # above and below a legend taller than CURVES_SIZE allows
NARROW = 0.02  # x values spanning less than this fraction of their size are widened


def save(fig: Figure, path: Path) -> None:
    """Write a figure as PNG at DPI, without the software tag (same input, same bytes)."""
    fig.savefig(path, dpi=DPI, metadata={"Software": None})


def strip_size(n_rows: int) -> tuple[float, float]:
    """Figure size in inches of a prediction strip with n_rows rows of 10 frames."""
    return (STRIP_LABEL_INCHES + FRAMES * STRIP_FRAME_INCHES + STRIP_MARGIN_INCHES,
            STRIP_TITLE_INCHES + n_rows * STRIP_FRAME_INCHES + STRIP_MARGIN_INCHES)


def prediction_strip(rows: list[tuple[str, np.ndarray]], title: str) -> Figure:
    """One row of 10 frames per (label, frames (10, 1, 64, 64)); values clipped to [0, 1]."""
    size = rows[0][1].shape[-1]
    step = size + STRIP_GAP_PIXELS
    mosaic = np.ones((len(rows) * step - STRIP_GAP_PIXELS, FRAMES * step - STRIP_GAP_PIXELS),
                     dtype=np.float32)  # white gaps between frames
    for i, (_, frames) in enumerate(rows):
        for t in range(FRAMES):
            mosaic[i * step:i * step + size, t * step:t * step + size] = np.clip(frames[t, 0], 0, 1)
    width, height = strip_size(len(rows))
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((STRIP_LABEL_INCHES / width, STRIP_MARGIN_INCHES / height,
                       FRAMES * STRIP_FRAME_INCHES / width, len(rows) * STRIP_FRAME_INCHES / height))
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([i * step + size / 2 for i in range(len(rows))],
                  labels=[textwrap.fill(label, 24) for label, _ in rows], fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(title, fontsize=10, y=1 - 0.2 * STRIP_TITLE_INCHES / height)
    return fig


def trial_predictions(arrays: dict[str, np.ndarray], title: str, samples: int = 2) -> Figure:
    """One trial's predictions: per test sequence, its input, target and prediction rows."""
    rows = [(f"{label} {s + 1}", arrays[key][s])
            for s in range(min(samples, len(arrays["preds"])))
            for key, label in (("inputs", "input"), ("targets", "target"), ("preds", "pred"))]
    return prediction_strip(rows, title)


def config_label(row: pd.Series, names: list[str]) -> str:
    """`act=gelu lambda_gdl=0.5`: a configuration by its searched values."""
    return " ".join(f"{n}={tables.format_value(row[n])}" for n in names) or "(fixed configuration)"


def labelled_configurations(drawn: pd.DataFrame, curves: dict[str, tuple[list[int], list[float]]],
                            first: pd.DataFrame, names: list[str], mode: str) -> list[str]:
    """The MAX_LABELLED config_keys with the best values of the curves (in `mode`'s direction),
    in the tables' order of values."""
    sign = 1.0 if mode == "min" else -1.0
    best = {k: min(sign * v for t in g["trial_id"] for v in curves[t][1]) for k, g in drawn.groupby("config_key")}
    chosen = sorted(best, key=lambda k: (best[k], k))[:MAX_LABELLED]
    return sorted(chosen, key=lambda k: ([tables.sort_key(first.loc[k, n]) for n in names], k))


def learning_curves(trials: pd.DataFrame, names: list[str], metric: str, mode: str) -> Figure:
    """The search metric per epoch of every trial: one colour per configuration (`config_key`, so
    repeats share it), labelled by its `names` values; line style = how the trial ended."""
    trials = trials.sort_values("trial_id")
    curves = {t: c for t, c in zip(trials["trial_id"], (history_curve(h, metric) for h in trials["history"]))
              if c[0]}
    drawn = trials[trials["trial_id"].isin(curves)]
    first = drawn.drop_duplicates("config_key").set_index("config_key")
    labelled = labelled_configurations(drawn, curves, first, names, mode)
    colours = dict(zip(labelled, PALETTE))
    fig = Figure(figsize=CURVES_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for _, trial in drawn.iterrows():
        epochs, values = curves[trial["trial_id"]]
        style, marker = STATUS_STYLE.get(trial["status"], (":", "o"))
        colour = colours.get(trial["config_key"], UNLABELLED_COLOUR)
        ax.plot(epochs, values, linestyle=style, color=colour, gid=trial["trial_id"],
                linewidth=1.4 if trial["config_key"] in colours else 0.8,
                zorder=3 if trial["config_key"] in colours else 2,
                marker="o" if len(epochs) == 1 else None, markersize=3)
        if marker:
            ax.plot(epochs[-1:], values[-1:], linestyle="none", marker=marker, color=colour,
                    markersize=8, zorder=4)
    values = [v for _, vs in curves.values() for v in vs]
    if min(values) > 0 and max(values) / min(values) > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{long_label(metric)} ({UNITS[metric.rsplit('_', 1)[-1]]})")
    ax.set_title("Learning curves of every trial")
    ax.grid(True, alpha=0.3)
    ended = [s for s in STATUS_STYLE if s in set(drawn["status"])]
    ax.legend(handles=[Line2D([], [], linestyle=STATUS_STYLE[s][0], marker=STATUS_STYLE[s][1],
                              color="black", label=tables.STATUS_LABELS.get(s, s)) for s in ended],
              fontsize=7, loc="upper right", title="trial", title_fontsize=7)
    handles = [Line2D([], [], color=colours[k], linewidth=2.5,
                      label=textwrap.fill(config_label(first.loc[k], names), LABEL_CHARS))
               for k in labelled]
    title = "configuration (searched values)"
    hidden = len(first) - len(labelled)
    if hidden:
        title += (f"\nlabelled: the {len(labelled)} of {len(first)} with the "
                  f"{'lowest' if mode == 'min' else 'highest'} {long_label(metric)}")
        handles.append(Line2D([], [], color=UNLABELLED_COLOUR, linewidth=2.5,
                              label=f"{hidden} other configuration(s), not labelled"))
    legend = fig.legend(handles=handles, loc="outside right upper", fontsize=7, labelspacing=0.4,
                        title=title, title_fontsize=8)
    fig.draw_without_rendering()  # a tall legend makes the figure taller rather than being cut off
    fig.set_figheight(max(CURVES_SIZE[1], legend.get_window_extent().height / DPI + LEGEND_PAD_INCHES))
    return fig


def history_curve(history: object, metric: str) -> tuple[list[int], list[float]]:
    """(epochs, values of `metric`) from a trial's `history` JSON; empty when absent or unreadable."""
    points = [(int(r.get("epoch", i + 1)), float(r[metric])) for i, r in enumerate(history_rows(history))
              if r.get(metric) is not None and np.isfinite(float(r[metric]))]
    return [p[0] for p in points], [p[1] for p in points]


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both x and y (both minimised), by x."""
    order = np.lexsort((y, x))
    front, best = [], np.inf
    for i in order:
        if y[i] < best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def plain_ticks(axis: Axis) -> None:
    """Tick labels as plain numbers: no offset (`1e-6+1.603e-1`), no exponent."""
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))


def widen_narrow_x(ax, values: np.ndarray) -> None:
    """x values of almost one size (one architecture) get a +-5% window, not a zoom on the noise."""
    values = values[np.isfinite(values)]
    if len(values):
        centre = (values.max() + values.min()) / 2
        if values.max() - values.min() <= NARROW * abs(centre):
            half = 0.05 * abs(centre) or 1.0
            ax.set_xlim(centre - half, centre + half)


def cost_figure(trials: pd.DataFrame) -> Figure:
    """Test MSE against parameter count (M) and against training time, Pareto fronts marked.

    A completed trial without a test MSE is placed at its best validation MSE (hollow marker);
    trials that did not complete are shown grey and kept out of the front (their cost is partial).
    """
    fig = Figure(figsize=COST_SIZE, layout="constrained")
    axes = fig.subplots(1, 2)
    done = trials[trials["status"] == "completed"].sort_values("trial_id")
    other = trials[trials["status"] != "completed"].sort_values("trial_id")
    has_test = np.isfinite(done["test_mse"].to_numpy(dtype=float))
    y_done = np.where(has_test, done["test_mse"], done["best_val_mse"]).astype(float)
    y_other = other["best_val_mse"].to_numpy(dtype=float)
    for ax, column, label in ((axes[0], "n_params", "parameters (M)"),
                              (axes[1], "seconds", "training time (s)")):
        scale = 1e6 if column == "n_params" else 1.0
        x_done = done[column].to_numpy(dtype=float) / scale
        x_other = other[column].to_numpy(dtype=float) / scale
        ok = np.isfinite(x_done) & np.isfinite(y_done)
        ax.scatter(x_done[ok & has_test], y_done[ok & has_test], color="tab:blue",
                   label="completed (test MSE)", zorder=3)
        if (ok & ~has_test).any():
            ax.scatter(x_done[ok & ~has_test], y_done[ok & ~has_test], facecolors="none",
                       edgecolors="tab:blue", label="completed, no test (best val MSE)", zorder=3)
        if len(other):
            ax.scatter(x_other, y_other, marker="x", color="grey",
                       label="not completed (best val MSE)", zorder=2)
        idx = np.flatnonzero(ok)
        if len(idx):
            front = idx[pareto_front(x_done[idx], y_done[idx])]
            ax.step(x_done[front], y_done[front], where="post", color="tab:red", zorder=4)
            ax.scatter(x_done[front], y_done[front], s=90, facecolors="none",
                       edgecolors="tab:red", linewidths=1.5, label="Pareto front", zorder=5)
        widen_narrow_x(ax, np.concatenate([x_done, x_other]))
        plain_ticks(ax.xaxis)
        plain_ticks(ax.yaxis)
        ax.set_xlabel(label)
        ax.set_ylabel("test MSE")
        ax.set_title(f"test MSE vs {label}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _axis_positions(values: pd.Series) -> tuple[np.ndarray, list[float], list[str]]:
    """One parallel axis: each value's height in [0, 1] and the (heights, labels) of its ticks.

    Numbers keep their scale (log when positive and spanning >= LOG_SPAN); anything else is a
    category, evenly spaced in the order of its sorted labels. A missing value is NaN (a gap).
    """
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum() and numeric.notna().any():
        x = numeric.to_numpy(dtype=float)
        finite = x[np.isfinite(x)]
        lo, hi = finite.min(), finite.max()
        log = lo > 0 and hi / lo >= LOG_SPAN and spread_logarithmically(finite)
        f = np.log10 if log else (lambda v: v)
        span = f(hi) - f(lo)
        if span == 0:
            return np.where(np.isfinite(x), 0.5, np.nan), [0.5], [f"{lo:.4g}"]
        ticks = (np.logspace(np.log10(lo), np.log10(hi), 5) if log else np.linspace(lo, hi, 5))
        return ((f(x) - f(lo)) / span, [float((f(t) - f(lo)) / span) for t in ticks],
                distinct_labels(ticks))
    labels = sorted({str(v) for v in values.dropna()})
    step = 1.0 / (len(labels) - 1) if len(labels) > 1 else 0.0
    where = {label: (i * step if len(labels) > 1 else 0.5) for i, label in enumerate(labels)}
    heights = np.array([where[str(v)] if pd.notna(v) else np.nan for v in values], dtype=float)
    return heights, list(where.values()), labels


def spread_logarithmically(x: np.ndarray) -> bool:
    """Whether positive values look log-spread (lr): their median nearer the range's geometric
    than its arithmetic middle; two or fewer distinct values (a short grid) count as log-spread."""
    if len(np.unique(x)) <= 2:
        return True
    lo, hi, median = x.min(), x.max(), np.log(np.median(x))
    return abs(median - np.log(np.sqrt(lo * hi))) <= abs(median - np.log((lo + hi) / 2))


def distinct_labels(ticks: np.ndarray) -> list[str]:
    """The ticks with the fewest significant digits (4 or more) that tell them all apart."""
    for digits in range(4, 9):
        labels = [f"{t:.{digits}g}" for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def parallel_coordinates(trials: pd.DataFrame, names: list[str], metric: str, mode: str) -> Figure:
    """One vertical axis per searched parameter and one for the metric; a line per trial, coloured
    by its metric (brighter is better); trials stopped early thin, grey and dashed, with their last
    value; errored, diverged and metric-less trials left out and counted in the title."""
    fig = Figure(figsize=PARALLEL_SIZE, layout="constrained")
    ax = fig.subplots()
    value = pd.to_numeric(trials[metric], errors="coerce").astype(float)
    shown = trials[trials["status"].isin(["completed", "stopped"]) & np.isfinite(value)]
    left_out = len(trials) - len(shown)
    columns = [*names, metric]
    heights = np.column_stack([_axis_positions(shown[c])[0] for c in columns]) if len(shown) else \
        np.empty((0, len(columns)))
    xs = np.arange(len(columns), dtype=float)
    metric_values = value[shown.index].to_numpy()
    done = (shown["status"] == "completed").to_numpy()
    coloured = metric_values[done] if done.any() else metric_values  # the colours span completed trials
    norm = colors.Normalize(coloured.min(), coloured.max()) if len(coloured) else colors.Normalize(0, 1)
    cmap = colormaps["viridis_r" if mode == "min" else "viridis"]
    for i in np.argsort(-metric_values if mode == "min" else metric_values):  # best drawn last
        if done[i]:
            ax.plot(xs, heights[i], color=cmap(norm(metric_values[i])), linewidth=1.6, alpha=0.9,
                    zorder=3, gid="trial")
        else:
            ax.plot(xs, heights[i], color="grey", linestyle="--", linewidth=0.8, alpha=0.6, zorder=2,
                    gid="trial")
    for x, column in zip(xs, columns):
        ax.axvline(x, color="black", linewidth=0.8, zorder=1)
        _, ticks, labels = _axis_positions(shown[column]) if len(shown) else ([], [], [])
        for tick, label in zip(ticks, labels):
            ax.text(x - 0.02, tick, label, ha="right", va="center", fontsize=7,
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=0.5), zorder=4)
    ax.set_xticks(xs, columns)
    ax.set_xlim(-0.4, len(columns) - 0.8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01,
                 label=f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)")
    handles = [Line2D([], [], color=cmap(0.5), linewidth=1.6,
                      label=f"completed, coloured by {metric} ({int(done.sum())})")]
    if (~done).any():
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.8,
                              label=f"stopped early, last value ({int((~done).sum())})"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.08), ncol=2, fontsize=8,
              frameon=False)
    note = f"; {left_out} errored, diverged or without {metric} not shown" if left_out else ""
    ax.set_title(f"Searched parameters and {metric}, one line per trial{note}", fontsize=10)
    return fig


def end_order(trials: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Trials in the order they ended (results' `ended`; a trial that never reported goes last),
    and whether that order was known; else (results written before `ended`) in trial-id order."""
    ended = pd.to_numeric(trials.get("ended", pd.Series(np.nan, index=trials.index)), errors="coerce")
    known = bool(np.isfinite(ended).any())
    ordered = trials.assign(_ended=ended).sort_values(["_ended", "trial_id"] if known else ["trial_id"],
                                                       na_position="last", kind="stable")
    return ordered.drop(columns="_ended"), known


def efficiency_curve(trials: pd.DataFrame, metric: str, mode: str) -> Figure:
    """The search's own efficiency: best completed value so far against trial-epochs spent (every
    trial's epochs, stopped and failed ones included), each trial's end marked."""
    fig = Figure(figsize=EFFICIENCY_SIZE, layout="constrained")
    ax = fig.subplots()
    ordered, known = end_order(trials)
    spent = pd.to_numeric(ordered["epochs_run"], errors="coerce").fillna(0).cumsum().to_numpy()
    value = pd.to_numeric(ordered[metric], errors="coerce").to_numpy(dtype=float)
    done = (ordered["status"] == "completed").to_numpy() & np.isfinite(value)
    pick = np.fmin if mode == "min" else np.fmax
    best = pick.accumulate(np.where(done, value, np.nan))
    if done.any():
        ax.step(spent, best, where="post", color="tab:blue", linewidth=2, label="best completed so far")
        final = best[-1]
        ax.axhline(final, color="tab:blue", linestyle=":", linewidth=1, label=f"final best {final:.4g}")
        ax.scatter(spent[done], value[done], color="tab:blue", s=25, zorder=3, label="a trial completed")
    stopped = (ordered["status"] == "stopped").to_numpy() & np.isfinite(value)
    if stopped.any():
        ax.scatter(spent[stopped], value[stopped], marker="x", color="grey", zorder=3,
                   label="a trial stopped early (its last value)")
    failed = ordered["status"].isin(["errored", "diverged"]).to_numpy()
    for x in spent[failed]:
        ax.axvline(x, color="tab:red", alpha=0.2, linewidth=0.8)
    if failed.any():
        ax.plot([], [], color="tab:red", alpha=0.4, label="a trial errored or diverged")
    plain_ticks(ax.yaxis)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(left=0)
    ax.set_xlabel("trial-epochs spent" + ("" if known else " (trials in id order: end times not stored)"))
    ax.set_ylabel(metric)
    title = "Best completed trial so far against the epochs the search spent"
    ax.set_title(title if done.any() else title + ": no trial completed", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
