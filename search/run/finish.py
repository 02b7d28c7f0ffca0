"""The end of a search session: results.parquet first (so they survive any tracking trouble), then
MLflow, experiment.json, a few lines of summary and the report."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import runfolder, tracking
from search.metric import METRICS, best
from search.run import best_model, resume
from search.run.rows import trial_rows
from search.runfolder import results
from search.runfolder.results import STATUSES
from simvp_core.oneline import duration, print_error, printable

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from search.run.plan import Plan
    from search.tracking import Tracker


def finish(plan: Plan, trials: list, tracker: Tracker, info: dict[str, Any], start: float,
           interrupted: int | None = None) -> int:
    """Write everything the session's Tune trials say; returns the exit code: 0; 128 + the signal
    when `interrupted` by one (SIGINT 130, SIGTERM 143; trials left for --resume); 1 when trials
    did not finish without a signal, or when every trial errored."""
    spec = plan.spec
    rows = trial_rows(trials, spec, plan.run_dir)
    results.write(rows, plan.run_dir)
    ids = tracker.sync(rows, lambda row: trial_figures(plan.run_dir, row))
    resume.delete_lost_runs(tracker, set(ids))
    if ids and tracker.enabled:
        for row in rows:
            row["mlflow_run_id"] = ids.get(row["trial_id"], "")
        results.write(rows, plan.run_dir)
    df = results.read(plan.run_dir)
    seconds = time.time() - start
    sets = sorted({s for s in df["test_set"] if s})
    unfinished = resume.unfinished(trials)
    info.update(finished=None if interrupted or unfinished else runfolder.timestamp(),
                wall_seconds=info["wall_seconds"] + seconds, test_set="; ".join(sets),
                mlflow_parent_run_id=tracker.parent_run_id)
    runfolder.write_experiment(plan.run_dir, info)
    top = best(df, spec.metric, spec.mode)
    counts = df["status"].value_counts()
    all_errored = len(df) > 0 and int(counts.get("errored", 0)) == len(df)
    status = ("KILLED" if interrupted or unfinished else "FAILED" if all_errored else "FINISHED")
    # a finished search's answer: its best model registered, then the checkpoints it no longer needs gone
    outcome = [] if interrupted or unfinished else best_model.conclude(plan, trials, df, tracker)
    tracker.finish_search({**{f"trials_{s}": float(counts.get(s, 0)) for s in STATUSES},
                           **({f"best_{spec.metric}": float(top[spec.metric].mean()),
                               "best_test_mse": float(top["test_mse"].mean())} if top is not None else {})},
                          status=status)
    if interrupted or unfinished:
        print_summary(plan, df, tracker, seconds, headline="interrupted")
        print(f"{len(unfinished)} trial(s) did not finish")
        print("interrupted; continue with --resume", flush=True)
        return 128 + interrupted if interrupted else 1
    if spec.algorithm in runfolder.OPTUNA_ALGORITHMS:
        resume.release_orphan_optuna_trials(plan, [])
    print_summary(plan, df, tracker, seconds, outcome=outcome)
    write_report(plan, tracker)
    if all_errored:
        first = str(df["status_detail"].iloc[0]).splitlines()[0][:160] if len(df) else ""
        print_error(f"all {len(df)} trials errored (first: {first}); results in {results.path(plan.run_dir)}")
        return 1
    return 0


def print_summary(plan: Plan, df: pd.DataFrame, tracker: Tracker, seconds: float,
                  headline: str = "finished", outcome: Sequence[str] = ()) -> None:
    """The end of a search in a few lines: counts, the best configuration, where things are, and
    the `outcome` lines (the registered model, the run folder's size)."""
    spec = plan.spec
    counts = df["status"].value_counts()
    by_status = ", ".join(f"{int(counts[s])} {s}" for s in STATUSES if s in counts)
    print(f"\n== search {plan.name} {headline}: {len(df)} trials ({by_status or 'none'}) "
          f"in {duration(seconds, 'long')} ==")
    top = best(df, spec.metric, spec.mode)
    if top is None:
        print("best: no trial completed")
    else:
        first = top.iloc[0]
        names = [n for n in spec.searched if first.get(n) is not None]
        params = " ".join(f"{n}={_fmt(first[n])}" for n in names) or "(base configuration)"
        print(f"best ({spec.metric}, {spec.mode}): trial {first['trial_id']}: {params}")
        print("  val  " + "  ".join(f"{m} {_fmt(first[f'val_{m}'])}" for m in METRICS))
        print("  test " + "  ".join(f"{m} {_fmt(first[f'test_{m}'])}" for m in METRICS)
              + f"  ({first['test_set']})")
    print(f"results: {printable(results.path(plan.run_dir))}")  # a path may hold control characters
    if tracker.enabled:
        print(f"MLflow:  {plan.tracking_uri} (parent run {tracker.parent_run_id}); "
              f"view with: {tracking.ui_command(plan.tracking_uri, tracker.experiment_id)}")
    else:
        print(f"MLflow:  off ({tracker.off_reason})")
    for line in outcome:
        print(line)


def write_report(plan: Plan, tracker: Tracker) -> None:
    """reports/<name>.md, attached to the MLflow parent run; a failure is said, not raised: the
    search itself succeeded and the report can be rebuilt from its results."""
    try:
        from search.report import build_report

        md = build_report(plan.run_dir, plan.reports_dir)
        print(f"report:  {printable(md)}")
        if tracker.enabled:
            tracking.attach_report(tracker.uri, tracker.parent_run_id, md)
    except Exception as e:
        print(f"report:  FAILED ({type(e).__name__}: {printable(' '.join(str(e).split()))[:160]}); the search "
              f"results are complete; retry with python -m search.report {plan.run_dir}")


def trial_figures(run_dir: Path, row: dict[str, Any]) -> dict[str, Figure]:
    """What a trial's MLflow run shows besides its metrics: a completed trial's predictions."""
    if row["status"] != "completed":
        return {}
    from search.report import figures

    try:
        arrays = runfolder.read_predictions(run_dir, row["trial_id"])
    except runfolder.RunFolderError:
        return {}
    return {"predictions.png": figures.trial_predictions(arrays, f"Test predictions of {row['trial_id']}")}


def _fmt(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, float) and not math.isnan(v) else str(v)


__all__ = ["finish", "print_summary", "write_report", "trial_figures"]
