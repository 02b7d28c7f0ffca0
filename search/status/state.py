"""Where a search stands, from its run folder alone: read through search.runfolder, never written,
so it works from any shell or machine that sees the folder (on a cluster, the head through the
shared storage) while the driver runs, after it stopped, or after it was killed.

The run folder's lock says whether a driver runs it (search.runfolder.lock); experiment.json
what was planned and where things go; Tune's newest snapshot (search.runfolder.tune_state) how
far the trials got, counted as the progress line counts them (search.run.counts); results.parquet
the best configuration once no driver runs, as the summary and the report pick it.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from search import metric, runfolder, tracking
from search.run import counts
from search.runfolder import lock, results, tune_state

STATES = ("running", "starting", "finished", "interrupted")


def status(run_dir: Path) -> dict[str, Any]:
    """The search in run_dir as plain data (what --json prints); RunFolderError when it is not a
    search's run folder or a file in it cannot be read."""
    run_dir = Path(run_dir)
    holder = lock.read(run_dir)
    alive = lock.alive(holder) if holder else None
    running = holder is not None and alive is not False  # alive, on another host, or unreadable
    try:
        info = runfolder.read_experiment(run_dir)
    except runfolder.RunFolderError:
        if running and run_dir.is_dir():  # between taking the lock and writing experiment.json
            return {"name": run_dir.name, "run_dir": str(run_dir.resolve()), "state": "starting",
                    "driver": _driver(holder, alive)}
        raise
    trials = tune_state.read(tune_state.folder(run_dir, info.get("tune_storage")))
    state = "running" if running else "finished" if info.get("finished") else "interrupted"
    name, mode = info.get("metric", metric.DEFAULT), info.get("mode", "min")
    found = None if running else _best_found(run_dir, name, mode, info)
    return {
        "name": info.get("experiment", run_dir.name), "run_dir": str(run_dir.resolve()), "state": state,
        "driver": _driver(holder, alive) if holder is not None else None,
        "started": info.get("started"), "finished": info.get("finished"),
        "resumable": state == "interrupted" and trials is not None,  # Tune recorded something to restore
        "resume_command": (f"{info['command']} --resume" if state == "interrupted" and trials is not None
                           and info.get("command") else None),
        "metric": name, "mode": mode,
        **_progress(info, trials or [], state, holder),
        "best": found or _best_so_far(trials or [], name, mode, info),
        **_where(run_dir, info),
    }


def _driver(holder: dict[str, Any], alive: bool | None) -> dict[str, Any]:
    """The lock's holder, and whether it runs: True / False on this host, None elsewhere."""
    return {"pid": holder.get("pid"), "host": holder.get("host"), "since": holder.get("since"), "alive": alive}


def _progress(info: dict[str, Any], trials: list, state: str, holder: dict[str, Any] | None) -> dict[str, Any]:
    """Trials by outcome, trial-epochs spent of planned, elapsed and the time left at the rate so far."""
    t = counts.tally(trials, int(info.get("max_epochs") or 0), info.get("metric", metric.DEFAULT),
                     info.get("mode", "min"))
    outcomes = {o: t.outcomes[o] for o in counts.ENDED}
    running = t.outcomes["running"] if state == "running" else 0
    planned = info.get("planned_trials")
    created = sum(t.outcomes.values())
    outcomes.update(running=running, pending=max(created, planned or 0) - t.done - running)
    elapsed = float(info.get("wall_seconds") or 0.0)
    if state == "running" and holder:
        elapsed += max(0.0, time.time() - _epoch_seconds(holder.get("since")))
    planned_epochs = info.get("planned_trial_epochs")
    left = (counts.time_left(t.epochs, planned_epochs, t.epochs, elapsed)
            if planned_epochs and state in ("running", "interrupted") else None)
    return {"trials": {"planned": planned, **outcomes},
            "trial_epochs": {"spent": t.epochs, "planned": planned_epochs},
            "elapsed_s": round(elapsed, 1), "left_s": None if left is None else round(left, 1),
            "left_at_most": bool(left) and info.get("scheduler") == "asha"}


def _epoch_seconds(since: Any) -> float:
    """A lock's `since` (ISO 8601, UTC) as seconds since the epoch; now when unreadable."""
    try:
        return datetime.datetime.fromisoformat(str(since)).timestamp()
    except ValueError:
        return time.time()


def _best_so_far(trials: list, name: str, mode: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """The best value any trial reported at any epoch (the progress line's): while the search
    runs, or before any configuration completed."""
    t = counts.tally(trials, int(info.get("max_epochs") or 0), name, mode)
    if t.best is None:
        return None
    config = next(tr.config for tr in trials if tr.trial_id == t.best_trial)
    return {"trial_id": t.best_trial, "value": t.best, "config": {k: v for k, v in config.items() if v is not None},
            "of": "any epoch of any trial so far", "repeats": 1}


def _best_found(run_dir: Path, name: str, mode: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """Once no driver runs: the best completed configuration of results.parquet (metric.best, the
    summary's and the report's pick); None before the results are written."""
    if not results.path(run_dir).is_file():
        return None
    top = metric.best(results.read(run_dir), name, mode)
    if top is None:
        return None
    first = top.iloc[0]
    config = {k: _plain(first[k]) for k in info.get("searched", []) if k in first and _plain(first[k]) is not None}
    return {"trial_id": str(first["trial_id"]), "value": float(top[name].mean()), "config": config,
            "of": "the completed configurations", "repeats": len(top)}


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as plain Python (JSON); NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def _where(run_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Where its files, report and MLflow runs are, and whether each exists yet."""
    report = info.get("report")
    uri, experiment_id = info.get("tracking_uri"), info.get("mlflow_experiment_id")
    files = {"results": results.path(run_dir), "log": runfolder.log_path(run_dir)}
    return {
        **{k: str(p) if p.is_file() else None for k, p in files.items()},
        "report": report if report and Path(report).is_file() else None,
        "report_planned": report,
        "mlflow": ({"tracking_uri": uri, "parent_run_id": info.get("mlflow_parent_run_id"),
                    "experiment_id": experiment_id, "view": tracking.ui_command(uri, experiment_id)}
                   if uri and info.get("mlflow_parent_run_id") else None),
    }


__all__ = ["status", "STATES"]
