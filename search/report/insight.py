"""What the search learned and what it cost: the best configuration, Optuna importances, cost table."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from search.budget import OVER_BUDGET
from search.metric import best
from search.report.tables import markdown_table, name_values
from search.run.warm import SOURCE_ATTR
from simvp_core.oneline import duration

if TYPE_CHECKING:
    import optuna

MIN_IMPORTANCE_TRIALS = 2  # Optuna's evaluator needs at least this many finished trials


def best_lines(completed: pd.DataFrame, metric: str, mode: str, searched: list[str]) -> list[str]:
    """A bullet naming the best configuration by the search metric, its test MSE beside it."""
    if completed.empty:
        return ["- No trial completed, so there is no best configuration."]
    top = best(completed, metric, mode)
    if top is None:
        return [f"- Best by {metric} ({mode}): no completed trial has this value."]
    return [f"- Best by {metric} ({mode}): {name_values(top.iloc[0], searched)} — {metric} "
            f"{top[metric].mean():.4g}, test MSE {format_mse(top['test_mse'].mean())} "
            f"(mean of {len(top)} completed run(s))."]


def format_mse(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"


def importance_lines(study: optuna.Study) -> list[str]:
    """Parameter importances of the Optuna study (Optuna's default evaluator) as a table, from its
    COMPLETE trials only: trials ASHA stopped are PRUNED there (a low-fidelity value), failed ones FAIL."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    too_few = (f"Parameter importances: too few finished trials ({len(finished)}) for Optuna to "
               "tell the parameters apart; run more trials.")
    if len(finished) < MIN_IMPORTANCE_TRIALS:
        return [too_few]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importances = optuna.importance.get_param_importances(study)
    if not importances or any("will be equal" in str(w.message) for w in caught):
        return [too_few]
    ranked = sorted(importances.items(), key=lambda kv: (-kv[1], kv[0]))
    table = markdown_table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in ranked],
                           [False, True])
    seeded = sum(SOURCE_ATTR in t.user_attrs for t in finished)
    return [f"Parameter importances of study `{study.study_name}`, from its {len(finished)} completed trials only"
            + (f" ({seeded} of them seeded from earlier searches)" if seeded else "")
            + f" (left out: {_left_out(study)}):", table]


def _left_out(study) -> str:
    """The study's trials importances ignore, by state: e.g. '3 pruned (stopped early by ASHA), 1 failed'."""
    import optuna

    state = optuna.trial.TrialState
    pruned = study.get_trials(deepcopy=False, states=(state.PRUNED,))
    over = sum(OVER_BUDGET in t.user_attrs for t in pruned)
    failed = len(study.get_trials(deepcopy=False, states=(state.FAIL,)))
    return (f"{len(pruned) - over} pruned (stopped early by ASHA), "
            + (f"{over} over budget (never trained), " if over else "")
            + f"{failed} failed (errored or diverged)")


def cost_table(trials: pd.DataFrame, wall_seconds: float | None, gpu_per_trial: float) -> str:
    """Trials, trial-epochs run against a search without early stopping, wall time, GPU-hours."""
    run = int(trials["epochs_run"].sum())
    full = int(trials["epochs"].sum())
    saving = f"{100 * (1 - run / full):.1f} %" if full else "n/a"
    gpu_hours = float(trials["seconds"].fillna(0).sum()) * gpu_per_trial / 3600
    rows = [
        ["trials", str(len(trials))],
        ["trial-epochs run", str(run)],
        ["trial-epochs without early stopping", str(full)],
        ["saving", saving],
        ["wall time", duration(wall_seconds, "long")],
        ["GPU-hours", f"{gpu_hours:.3f}" + ("" if gpu_per_trial else " (CPU-only trials)")],
    ]
    return markdown_table(["cost", "value"], rows, [False, True])


def stop_summary(trials: pd.DataFrame) -> str | None:
    """How many trials ended before their last epoch, by status and epoch."""
    others = trials[trials["status"] != "completed"]
    if others.empty:
        return None
    parts = []
    for status, group in others.groupby("status", sort=True):
        counts = group["epochs_run"].astype(int).value_counts().sort_index()
        at = ", ".join(f"{n} after {e} epoch(s)" for e, n in counts.items())
        parts.append(f"{status}: {len(group)} ({at})")
    return "Trials that did not complete — " + "; ".join(parts) + "."
