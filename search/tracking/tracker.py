"""MLflow from the search driver: one parent run per search, one nested child run per trial.

Trials never talk to the tracking server. The driver logs each epoch live through a Tune
callback and, at the end, each trial's final state from its results row. Child runs are found
again by their `trial_id` tag, so a resumed search adds to the same runs instead of duplicating
them. Any tracking failure turns logging off with one printed line; the search goes on.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from search.metric import DEFAULT as DEFAULT_METRIC
from search.metric import METRICS, best_column
from search.tracking.store import KIND_TAG, TRAINING_KIND, error_line
from simvp_core.config import FIELD_TYPES
from simvp_core.oneline import MAX_LINE, clip_middle, printable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from search.space import SearchSpec

NOT_LOGGED = {"done", "trial_id", "should_checkpoint", "epoch", "diverged", "n_params", "test_seconds"}
FINAL_STATES = {"completed": "FINISHED", "stopped": "FINISHED", "errored": "FAILED",
                "diverged": "FAILED"}
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


class Tracker:
    """The MLflow side of one search; every method is a no-op once logging is off."""

    def __init__(self, uri: str | None, experiment: str, spec: SearchSpec | None,
                 parent_run_id: str | None = None, artifact_location: str | None = None):
        self.uri = uri
        self.experiment = experiment
        self.spec = spec
        self.metric = spec.metric if spec is not None else DEFAULT_METRIC  # logged at every epoch
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
            print(clip_middle(f"MLflow logging is off: {reason} (tracking URI {printable(self.uri)}); "
                              "results.parquet and the report are unaffected", MAX_LINE))

    def _guard(self, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        try:
            return fn()
        except Exception as e:  # tracking must never stop the search
            self.turn_off(error_line(e))
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
                history = self.client.get_metric_history(run_id, self.metric)
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
        """One reported epoch (the trainable's report, less Tune's own keys) as metrics at
        step=epoch; epochs already logged are skipped."""
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

    def sync(self, rows: list[dict[str, Any]],
             figures: Callable[[dict[str, Any]], Mapping[str, Figure]] = lambda row: {}) -> dict[str, str]:
        """Bring every trial's child run up to date with its results row, with the figures
        `figures(row)` draws for it (artifact file name -> matplotlib Figure); trial_id -> run id."""
        ids: dict[str, str] = {}
        for row in rows:
            run_id = self.child(row["trial_id"], partial(_row_config, row))
            if run_id is None:
                break
            self._guard(partial(self._sync_trial, run_id, row, figures))
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

    def _sync_trial(self, run_id: str, row: dict[str, Any],
                    figures: Callable[[dict[str, Any]], Mapping[str, Figure]]) -> None:
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
        final = {k: row[k] for k in (*(f"test_{m}" for m in METRICS), best_column(self.metric),
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
        for name, figure in figures(row).items():
            self.client.log_figure(run_id, figure, name)
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


__all__ = ["Tracker"]
