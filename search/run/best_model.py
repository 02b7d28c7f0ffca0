"""What a finished search leaves: its best completed trial's model registered in MLflow (logged to
the parent run with its animated predictions, alias `best`), then the trial checkpoints that
`keep_checkpoints` does not keep deleted. Each step is one line of the closing summary; neither
fails the search (its results are written already).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import runfolder
from search.metric import best
from search.runfolder import checkpoints
from search.tracking import models
from search.tracking.store import error_line
from simvp_core.oneline import short_path, size

if TYPE_CHECKING:
    import pandas as pd

    from search.run.plan import Plan
    from search.tracking import Tracker

EXAMPLE_SEQUENCES = 2  # the logged input example: a batch of 2 keeps the exported batch size free


def conclude(plan: Plan, trials: list, df: pd.DataFrame, tracker: Tracker) -> list[str]:
    """Register the best completed trial's model, then apply keep_checkpoints; the summary's lines."""
    spec = plan.spec
    top = best(df, spec.metric, spec.mode)
    row = None if top is None else top.iloc[0]
    trial = None if row is None else next((t for t in trials if t.trial_id == row["trial_id"]), None)
    line, registered = register(plan, tracker, row, trial)
    # the best trial's model state stays under 'none' too when MLflow does not hold the model
    keep = row["trial_id"] if row is not None and (spec.keep_checkpoints == "best" or not registered) else None
    return [line, prune(plan, trials, keep)]


def register(plan: Plan, tracker: Tracker, row: pd.Series | None, trial: Any) -> tuple[str, bool]:
    """(the summary's line, whether MLflow holds the model): the best trial's model registered as
    a version of the search's name, or the version that a previous pass registered."""
    if row is None:
        return "model:   no trial completed, so no model was registered", False
    if not tracker.enabled or not tracker.parent_run_id:
        return f"model:   not registered (MLflow is off); trial {row['trial_id']} is the best", False
    name, metric = plan.name, plan.spec.metric
    load = f"mlflow.pytorch.load_model('models:/{name}@{models.ALIAS}')"
    try:
        version = models.registered(tracker.uri, name, tracker.parent_run_id, row["trial_id"])
        if version is not None:
            models.point_alias(tracker.uri, name, version)
            return f"model:   {name} version {version} (alias {models.ALIAS}), trial {row['trial_id']}, " \
                   f"registered before; load it with {load}", True
        with checkpoints.model_state(trial.checkpoint) as state, tempfile.TemporaryDirectory() as d:
            version = _log(plan, tracker, row, state, Path(d))
    except Exception as e:  # MLflow, a deleted or unreadable checkpoint: the results stand without it
        return f"model:   not registered ({error_line(e)[:200]})", False
    return (f"model:   registered {name} version {version} (alias {models.ALIAS}): trial {row['trial_id']}, "
            f"{metric} {row[metric]:.5g}; load it with {load}"), True


def _log(plan: Plan, tracker: Tracker, row: pd.Series, state: Path, folder: Path) -> str:
    """Log and register the model of the trainer checkpoint `state`; attach its animation."""
    import numpy as np

    from search.report import animation
    from simvp_core.convert import load_model, save_model_file

    model, preset, overrides = load_model(state)
    model_file = folder / models.MODEL_FILE
    save_model_file(model_file, preset, overrides, model.state_dict())
    try:
        arrays = runfolder.read_predictions(plan.run_dir, row["trial_id"])
    except runfolder.RunFolderError:
        arrays = None  # the model is registered all the same, with a blank example and no animation
    example = (arrays["inputs"][:EXAMPLE_SEQUENCES] if arrays is not None and len(arrays["inputs"]) > 1
               else np.zeros((EXAMPLE_SEQUENCES, *model.cfg.in_shape), dtype=np.float32))
    metric = plan.spec.metric
    tags = models.model_tags(plan.name, row["trial_id"], metric, float(row[metric]),
                             {"test_mse": float(row["test_mse"]), "test_set": row["test_set"],
                              "precision": row.get("precision") or "unknown"})
    description = (f"Best of search {plan.name} by {metric} ({plan.spec.mode}): trial {row['trial_id']}, "
                   f"{metric} {row[metric]:.5g}, test MSE {row['test_mse']:.5g} ({row['test_set']}; "
                   f"computed in {row.get('precision') or 'an unrecorded precision'}).")
    version = models.register_best(tracker.uri, tracker.parent_run_id, plan.name, model, example, model_file,
                                   {"preset": preset, **{k: str(v) for k, v in overrides.items()}},
                                   tags, description)
    if arrays is not None:
        gif = animation.write_gif(animation.columns_of(arrays), folder / "predictions.gif")
        models.attach_animation(tracker.uri, tracker.parent_run_id, gif)
    return version


def prune(plan: Plan, trials: list, keep: str | None) -> str:
    """Delete the model state of the finished trials keep_checkpoints does not keep (the trial
    `keep` aside); the summary's line, with the run folder's size before and after."""
    policy = plan.spec.keep_checkpoints
    where = [str(plan.run_dir)] + ([plan.tune_path] if "://" in plan.tune_path else [])
    before = sum(checkpoints.size(w) for w in where)
    doomed = checkpoints.to_delete(trials, policy, keep)
    try:
        deleted = sum(checkpoints.delete_files(t.checkpoint, _deletable(plan, t.trial_id)) > 0 for t in doomed)
    except OSError as e:
        return f"disk:    deleting trial checkpoints failed ({error_line(e)[:200]}); nothing else is affected"
    after = sum(checkpoints.size(w) for w in where)
    kept = f"; trial {keep}'s kept" if keep and policy != "all" else ""
    what = f"model state deleted from {deleted} finished trial(s){kept}" if policy != "all" else \
        "every trial checkpoint kept"
    return (f"disk:    {short_path(plan.run_dir, 60)}: {size(before)} -> {size(after)} "
            f"(keep_checkpoints {policy}: {what})")


def _deletable(plan: Plan, trial_id: str) -> tuple[str, ...]:
    """A finished trial's model state, and its predictions when predictions/ has their copy."""
    copied = runfolder.predictions_path(plan.run_dir, trial_id).is_file()
    return (runfolder.CHECKPOINT_FILE, *((runfolder.PREDICTIONS_FILE,) if copied else ()))


__all__ = ["conclude", "register", "prune", "EXAMPLE_SEQUENCES"]
