"""MLflow from the search driver: one parent run per search, one nested child run per trial.

Trials never talk to the tracking server. The driver logs each epoch live through a Tune
callback and, at the end, each trial's final state from its results row. Child runs are found
again by their `trial_id` tag, so a resumed search adds to the same runs instead of duplicating
them. Any tracking failure turns logging off with one printed line; the search goes on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from search import layout
from simvp_core.config import FIELD_TYPES

PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
NOT_LOGGED = set(AUTO_RESULT_KEYS) | {"done", "trial_id", "should_checkpoint", "epoch",
                                      "diverged", "n_params", "test_seconds"}
FINAL_STATES = {"completed": "FINISHED", "stopped": "FINISHED", "errored": "FAILED",
                "diverged": "FAILED"}
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
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
def _env(values: dict[str, str]) -> Iterator[None]:
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


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def probe(uri: str) -> str | None:
    """None when the tracking store answers; otherwise why not (no retries, short timeout)."""
    from mlflow.tracking import MlflowClient

    with _env(PROBE_ENV):
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as e:  # any failure means: do not log to this store
            return _reason(e)
    return None


class Tracker:
    """The MLflow side of one search; every method is a no-op once logging is off."""

    def __init__(self, uri: str | None, experiment: str, spec, parent_run_id: str | None = None,
                 artifact_location: str | None = None):
        self.uri = uri
        self.experiment = experiment
        self.spec = spec
        self.parent_run_id = parent_run_id
        self.artifact_location = artifact_location
        self.off_reason: str | None = None if uri else "no tracking URI"
        self._client = None
        self._experiment_id: str | None = None
        self._children: dict[str, str] | None = None  # trial_id -> child run id
        self._last_step: dict[str, int] = {}

    @property
    def experiment_id(self) -> str | None:
        """The search's MLflow experiment, once start_search has found or created it."""
        return self._experiment_id

    @property
    def enabled(self) -> bool:
        return self.off_reason is None

    def turn_off(self, reason: str) -> None:
        """Stop logging for the rest of the search and say so once."""
        if self.enabled:
            self.off_reason = reason
            print(f"MLflow logging is off: {reason} (tracking URI {self.uri}); "
                  "results.parquet and the report are unaffected")

    def _guard(self, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        try:
            return fn()
        except Exception as e:  # tracking must never stop the search
            self.turn_off(_reason(e))
            return None

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.uri)
        return self._client

    # -- the search (parent run) ---------------------------------------------------------------

    def start_search(self, space_path: str, tags: dict[str, str], params: dict[str, Any]) -> str | None:
        """Create the parent run, or mark an existing one (a resumed search) running again."""
        return self._guard(lambda: self._start_search(space_path, tags, params))

    def _start_search(self, space_path: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        client = self.client
        self._experiment_id = self._experiment()
        if self.parent_run_id and _exists(client, self.parent_run_id):
            client.update_run(self.parent_run_id, status="RUNNING")
            return self.parent_run_id
        run = client.create_run(self._experiment_id, run_name=self.experiment,
                                tags={**tags, "search": self.experiment})
        self.parent_run_id = run.info.run_id
        self._log_params(self.parent_run_id, params)
        client.log_artifact(self.parent_run_id, space_path, artifact_path="space")
        return self.parent_run_id

    def _experiment(self) -> str:
        """The search's experiment id, created if new, tagged as training runs unless it already
        has a kind (so an older or resumed store opens on its runs too)."""
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            return self.client.create_experiment(self.experiment, tags={KIND_TAG: TRAINING_KIND},
                                                 artifact_location=self.artifact_location)
        if KIND_TAG not in exp.tags:
            self.client.set_experiment_tag(exp.experiment_id, KIND_TAG, TRAINING_KIND)
        return exp.experiment_id

    def finish_search(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        def finish() -> None:
            self._log_metrics(self.parent_run_id, metrics, step=0)
            self.client.set_terminated(self.parent_run_id, status)
        if self.parent_run_id:
            self._guard(finish)

    # -- trials (child runs) -------------------------------------------------------------------

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ms = int(1000 * time.time())
        items = [Metric(k, float(v), ms, step) for k, v in metrics.items()]
        for i in range(0, len(items), MAX_BATCH):
            self.client.log_batch(run_id, metrics=items[i:i + MAX_BATCH])

    def _find_children(self) -> dict[str, str]:
        """trial_id -> run id of the parent's existing child runs (loaded once per process)."""
        if self._children is None:
            runs = self.client.search_runs(
                [self._experiment_id], max_results=50_000,
                filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'")
            self._children = {r.data.tags["trial_id"]: r.info.run_id
                              for r in runs if "trial_id" in r.data.tags}
            for run_id in self._children.values():
                history = self.client.get_metric_history(run_id, "val_mse")
                self._last_step[run_id] = max((m.step for m in history), default=0)
        return self._children

    def child(self, trial_id: str, config: Callable[[], dict[str, Any]]) -> str | None:
        """The trial's child run id; a new one gets `config()` (the full TrainConfig) as params."""
        def get() -> str:
            children = self._find_children()
            if trial_id not in children:
                run = self.client.create_run(
                    self._experiment_id, run_name=f"trial_{trial_id}",
                    tags={"mlflow.parentRunId": self.parent_run_id, "trial_id": trial_id,
                          "status": "running"})
                self._log_params(run.info.run_id, config())
                children[trial_id] = run.info.run_id
                self._last_step[run.info.run_id] = 0
            return children[trial_id]
        if not self.parent_run_id:
            return None
        return self._guard(get)

    def config_of(self, params: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """The full TrainConfig of a trial's searched values, computed only when needed."""
        return lambda: self.spec.trial_config(params).to_dict()

    def log_epoch(self, trial_id: str, params: dict[str, Any], result: dict[str, Any]) -> None:
        """One reported epoch as metrics at step=epoch; epochs already logged are skipped."""
        if result.get("diverged") or "epoch" not in result:
            return
        run_id = self.child(trial_id, self.config_of(params))
        step = int(result["epoch"])
        if run_id is None or step <= self._last_step.get(run_id, 0):
            return
        metrics = {k: v for k, v in result.items() if k not in NOT_LOGGED
                   and not k.startswith("test_") and _is_number(v)}
        self._guard(lambda: self._log_metrics(run_id, metrics, step))
        self._last_step[run_id] = step

    def sync(self, rows: list[dict[str, Any]], run_dir: Path) -> dict[str, str]:
        """Bring every trial's child run up to date with its results row; trial_id -> run id."""
        ids: dict[str, str] = {}
        for row in rows:
            run_id = self.child(row["trial_id"], partial(_row_config, row))
            if run_id is None:
                break
            self._guard(partial(self._sync_trial, run_id, row, Path(run_dir)))
            ids[row["trial_id"]] = run_id
        return ids if self.enabled else {}

    def children(self) -> dict[str, str]:
        """trial_id -> run id of the search's child runs ({} once logging is off)."""
        if not self.parent_run_id:
            return {}
        return dict(self._guard(self._find_children) or {})

    def delete_child(self, trial_id: str, why: str) -> None:
        """End a trial's child run as KILLED with `why` as its status, and delete it."""
        def delete() -> None:
            run_id = self._find_children().pop(trial_id)
            self.client.set_tag(run_id, "status", why)
            self.client.set_terminated(run_id, "KILLED")
            self.client.delete_run(run_id)
        self._guard(delete)

    def _sync_trial(self, run_id: str, row: dict[str, Any], run_dir: Path) -> None:
        from mlflow.entities import RunTag

        run = self.client.get_run(run_id)
        if run.info.status != "RUNNING" and run.data.tags.get("status") == row["status"]:
            return  # logged in full by an earlier pass
        for epoch_row in json.loads(row["history"]):
            step = int(epoch_row["epoch"])
            if step > self._last_step.get(run_id, 0):
                self._log_metrics(run_id, {k: v for k, v in epoch_row.items()
                                           if k != "epoch" and _is_number(v)}, step)
                self._last_step[run_id] = step
        final = {k: row[k] for k in (*(f"test_{m}" for m in layout.METRICS), "best_val_mse",
                                     "n_params", "seconds", "epochs_run", "retries")
                 if _is_number(row[k])}
        final["wall_seconds"] = final.pop("seconds", 0.0)
        self._log_metrics(run_id, final, step=int(row["epochs_run"]))
        tags = {"status": row["status"], "status_detail": str(row["status_detail"])[:4000],
                "node_id": str(row["node_id"]), "config_key": row["config_key"],
                "precision": str(row["precision"])}
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.log_dict(run_id, {"trial_id": row["trial_id"], "config": _row_config(row),
                                      "searched": json.loads(row["searched"])},
                             "trial_config.json")
        npz = layout.predictions_path(run_dir, row["trial_id"])
        if npz.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                png = Path(tmp) / "predictions.png"
                prediction_strip(npz, png)
                self.client.log_artifact(run_id, str(png))
        interrupted = str(row["status_detail"]).startswith("interrupted")
        self.client.set_terminated(run_id, "KILLED" if interrupted else FINAL_STATES[row["status"]])


def _row_config(row: dict[str, Any]) -> dict[str, Any]:
    """The full TrainConfig of a results row."""
    return {k: row[k] for k in FIELD_TYPES}


def _exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def prediction_strip(npz_path: Path, png_path: Path, samples: int = 2) -> None:
    """A trial's predictions as the report draws them: per sample, input, target and pred rows."""
    import numpy as np

    from search import figures

    with np.load(npz_path) as npz:
        data = {k: npz[k] for k in ("inputs", "targets", "preds")}
    rows = [(f"{label} {s + 1}", data[key][s])
            for s in range(min(samples, len(data["preds"])))
            for key, label in (("inputs", "input"), ("targets", "target"), ("preds", "pred"))]
    figures.save(figures.prediction_strip(rows, f"Test predictions of {Path(npz_path).stem}"),
                 png_path)


_ACTIVE: dict[str, Tracker] = {}


def register(key: str, tracker: Tracker) -> None:
    """Make a tracker reachable from TrialLogger callbacks created with the same key."""
    _ACTIVE[key] = tracker


class TrialLogger(Callback):
    """Tune callback: a child run per trial as it starts, metrics per epoch as they arrive.

    Tune pickles callbacks into its experiment state and, on resume, uses the unpickled copy;
    so the callback holds only a key and finds this process's Tracker through `register`.
    """

    def __init__(self, key: str):
        self.key = key

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        tracker = _ACTIVE.get(self.key)
        if tracker:
            tracker.child(trial.trial_id, tracker.config_of(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        tracker = _ACTIVE.get(self.key)
        if tracker:
            tracker.log_epoch(trial.trial_id, trial.config, result)


__all__ = ["Tracker", "TrialLogger", "register", "probe", "ui_command", "experiment_url",
           "prediction_strip", "KIND_TAG", "TRAINING_KIND", "RUNS_VIEW"]
