"""The MLflow store as a whole: whether it answers, how to look at it, and what is logged to a
search's parent run from outside the driver's Tracker (the report; the runs a killed driver left
RUNNING, ended by the watchdog)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from simvp_core.oneline import clip_middle, printable

PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # no progress bars on the console
# The experiment's kind for the MLflow UI: training runs, not a GenAI app (the UI's own constants).
# MLflow 3 UIs before its workflow-based navigation open an experiment by this tag; 3.17 ignores it
# and opens the GenAI pages unless the URL says `workflowType` (or the browser remembers the
# sidebar's "Model training"), so the links printed to an experiment carry RUNS_VIEW.
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
RUNS_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default


def experiment_url(ui: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's table of runs."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}?{RUNS_VIEW}"


def ui_command(uri: str, experiment_id: str | None = None) -> str:
    """How to look at the runs: an SQLite store needs `mlflow ui`, a server is its own UI; with
    an experiment id, the page of its runs to open."""
    if uri.startswith(("http://", "https://")):
        return f"open {experiment_url(uri, experiment_id) if experiment_id else uri}"
    command = f"mlflow ui --backend-store-uri {uri}"
    return f"{command}, then open {experiment_url(LOCAL_UI, experiment_id)}" if experiment_id else command


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """These environment variables set for the block, the old values back afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def error_line(e: BaseException) -> str:
    """An exception in one short line (at most 160 characters, its middle cut: the exception's kind
    and the end of the message stay)."""
    return clip_middle(printable(f"{type(e).__name__}: {' '.join(str(e).split())}"), 160)


def probe(uri: str) -> str | None:
    """None when the tracking store answers; otherwise why not (no retries, short timeout)."""
    from mlflow.tracking import MlflowClient

    with environment(PROBE_ENV):
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as e:  # any failure means: do not log to this store
            return error_line(e)
    return None


def attach_report(uri: str | None, run_id: str | None, md_path: Path) -> bool:
    """Log a report and its figures (the folder beside it of the same name) to the search's parent
    run; False when there is none or the store fails (said in one line: the report is on disk)."""
    if not uri or not run_id:
        return False
    md_path = Path(md_path)
    fig_dir = md_path.parent / md_path.stem
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        client.log_artifact(run_id, str(md_path), artifact_path="report")
        if fig_dir.is_dir():
            client.log_artifacts(run_id, str(fig_dir), artifact_path=f"report/{md_path.stem}")
    except Exception as e:  # best effort: the report is on disk whatever the tracking server says
        why = " ".join(str(e).split())[:200]
        print(f"report: not attached to MLflow run {run_id} at {uri}: {type(e).__name__}: {why}")
        return False
    return True


def end_killed_runs(uri: str, parent_run_id: str) -> None:
    """End a search's RUNNING runs (its parent and their children) as KILLED: what a driver
    killed with SIGKILL leaves."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(parent_run_id)
    children = client.search_runs(
        [run.info.experiment_id], max_results=50_000,
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'")
    for run_id in [r.info.run_id for r in children] + ([parent_run_id] if run.info.status == "RUNNING" else []):
        client.set_terminated(run_id, "KILLED")


__all__ = ["probe", "ui_command", "experiment_url", "attach_report", "end_killed_runs", "error_line",
           "environment", "PROBE_ENV", "QUIET_ENV", "KIND_TAG", "TRAINING_KIND", "RUNS_VIEW"]
