"""The report's figures: prediction strip (paper Table 6), learning curves, cost vs quality.

Rendered with matplotlib's Agg backend at a fixed size and DPI, without a timestamp or software
tag in the PNG, so regenerating a report from the same results gives the same files.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402

DPI = 100
FRAMES = 10
STRIP_FRAME_INCHES = 1.0  # one 64x64 frame per inch
STRIP_LABEL_INCHES = 1.8  # left margin for the row labels
STRIP_TITLE_INCHES = 0.5
STRIP_MARGIN_INCHES = 0.1  # right and bottom
STRIP_GAP_PIXELS = 2  # white between frames, in frame pixels
CURVES_SIZE = (8.0, 5.0)
COST_SIZE = (12.0, 5.0)
STATUS_STYLE = {  # linestyle, end marker
    "completed": ("-", None),
    "stopped": ("--", "x"),
    "errored": (":", "s"),
    "diverged": (":", "v"),
}
SAVE_KWARGS = {"dpi": DPI, "metadata": {"Software": None}}


def strip_size(n_rows: int) -> tuple[float, float]:
    """Figure size in inches of a prediction strip with n_rows rows of 10 frames."""
    return (STRIP_LABEL_INCHES + FRAMES * STRIP_FRAME_INCHES + STRIP_MARGIN_INCHES,
            STRIP_TITLE_INCHES + n_rows * STRIP_FRAME_INCHES + STRIP_MARGIN_INCHES)


def prediction_strip(rows: list[tuple[str, np.ndarray]], title: str, path: Path) -> None:
    """One row of 10 frames per (label, frames (10, 1, 64, 64)); values clipped to [0, 1]."""
    size = rows[0][1].shape[-1]
    step = size + STRIP_GAP_PIXELS
    mosaic = np.ones((len(rows) * step - STRIP_GAP_PIXELS, FRAMES * step - STRIP_GAP_PIXELS),
                     dtype=np.float32)  # white gaps between frames
    for i, (_, frames) in enumerate(rows):
        for t in range(FRAMES):
            mosaic[i * step:i * step + size, t * step:t * step + size] = np.clip(frames[t, 0], 0, 1)
    width, height = strip_size(len(rows))
    fig = plt.figure(figsize=(width, height))
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
    fig.savefig(path, **SAVE_KWARGS)
    plt.close(fig)


def learning_curves(trials: pd.DataFrame, group_of: dict[str, str], path: Path) -> None:
    """Validation MSE per epoch of every trial; colour = block, line style = how the trial ended."""
    fig, ax = plt.subplots(figsize=CURVES_SIZE)
    groups = sorted(set(group_of.values()))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    lowest, highest = np.inf, -np.inf
    for _, trial in trials.sort_values("trial_id").iterrows():
        epochs, values = history_curve(trial["history"])
        if not epochs:
            continue
        lowest, highest = min(lowest, min(values)), max(highest, max(values))
        style, marker = STATUS_STYLE.get(str(trial["status"]), (":", "o"))
        colour = colours[group_of[trial["trial_id"]]]
        ax.plot(epochs, values, linestyle=style, color=colour, linewidth=1.2, alpha=0.85,
                marker="o" if len(epochs) == 1 else None, markersize=3)
        if marker:
            ax.plot(epochs[-1:], values[-1:], linestyle="none", marker=marker, color=colour,
                    markersize=8)
    if lowest > 0 and highest / lowest > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MSE (per frame, sum over pixels)")
    ax.set_title("Learning curves of every trial")
    handles = [Line2D([], [], linestyle=s, marker=mk, color="black", label=name)
               for name, (s, mk) in STATUS_STYLE.items()]
    handles += [Line2D([], [], color=colours[g], linewidth=3, label=g) for g in groups if g]
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, **SAVE_KWARGS)
    plt.close(fig)


def history_curve(history: object) -> tuple[list[int], list[float]]:
    """(epochs, val_mse) from a trial's `history` JSON; empty when absent or unreadable."""
    try:
        rows = json.loads(history) if isinstance(history, str) else []
    except json.JSONDecodeError:
        return [], []
    if not isinstance(rows, list):
        return [], []
    points = [(int(r.get("epoch", i + 1)), float(r["val_mse"])) for i, r in enumerate(rows)
              if isinstance(r, dict) and r.get("val_mse") is not None
              and np.isfinite(float(r["val_mse"]))]
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


def cost_figure(trials: pd.DataFrame, path: Path) -> None:
    """Test MSE against parameter count and against training time, Pareto fronts marked.

    A completed trial without a test MSE is placed at its best validation MSE (hollow marker);
    trials that did not complete are shown grey and kept out of the front (their cost is partial).
    """
    fig, axes = plt.subplots(1, 2, figsize=COST_SIZE)
    done = trials[trials["status"] == "completed"].sort_values("trial_id")
    other = trials[trials["status"] != "completed"].sort_values("trial_id")
    has_test = np.isfinite(done["test_mse"].to_numpy(dtype=float))
    y_done = np.where(has_test, done["test_mse"], done["best_val_mse"]).astype(float)
    for ax, column, label in ((axes[0], "n_params", "parameters (M)"),
                              (axes[1], "seconds", "training time (s)")):
        scale = 1e6 if column == "n_params" else 1.0
        x_done = done[column].to_numpy(dtype=float) / scale
        ok = np.isfinite(x_done) & np.isfinite(y_done)
        ax.scatter(x_done[ok & has_test], y_done[ok & has_test], color="tab:blue",
                   label="completed (test MSE)", zorder=3)
        if (ok & ~has_test).any():
            ax.scatter(x_done[ok & ~has_test], y_done[ok & ~has_test], facecolors="none",
                       edgecolors="tab:blue", label="completed, no test (best val MSE)", zorder=3)
        if len(other):
            ax.scatter(other[column].to_numpy(dtype=float) / scale,
                       other["best_val_mse"].to_numpy(dtype=float), marker="x", color="grey",
                       label="not completed (best val MSE)", zorder=2)
        idx = np.flatnonzero(ok)
        if len(idx):
            front = idx[pareto_front(x_done[idx], y_done[idx])]
            ax.step(x_done[front], y_done[front], where="post", color="tab:red", zorder=4)
            ax.scatter(x_done[front], y_done[front], s=90, facecolors="none",
                       edgecolors="tab:red", linewidths=1.5, label="Pareto front", zorder=5)
        ax.set_xlabel(label)
        ax.set_ylabel("test MSE")
        ax.set_title(f"test MSE vs {label}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, **SAVE_KWARGS)
    plt.close(fig)
