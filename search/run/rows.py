"""Tune's trials as results rows: one row per trial, from Tune's own record of it (status,
failures, last reported result) and its latest checkpoint (the trainer history and, for a completed
trial, the predictions), so the rows are the same whether the search ran straight through or was
resumed. The file they go to is search.runfolder.results.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import runfolder
from search.metric import METRICS, best_column, best_of, direction

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from search.space import SearchSpec

FINISHED_STATES = ("TERMINATED", "ERROR")  # Tune trial states that will not run again


def finished(trial: Trial) -> bool:
    """Whether Tune will not run the trial again."""
    return trial.status in FINISHED_STATES


def config_key(params: dict[str, Any]) -> str:
    """The searched values without the seed: the same for every repeat of one configuration."""
    return json.dumps({k: params[k] for k in sorted(params) if k != "seed"}, sort_keys=True)


def trial_rows(trials: list[Trial], spec: SearchSpec, run_dir: Path) -> list[dict[str, Any]]:
    """One row per Tune trial; completed trials' predictions copied into the run folder."""
    return [trial_row(t, spec, run_dir) for t in trials]


def trial_row(trial: Trial, spec: SearchSpec, run_dir: Path) -> dict[str, Any]:
    """One results row from a Tune `Trial`; copies a completed trial's predictions to run_dir."""
    params = {k: v for k, v in trial.config.items() if v is not None}  # None: 'not applied'
    cfg = spec.trial_config(params)
    last = trial.last_result or {}
    history = runfolder.checkpoint_history(trial.checkpoint) or []
    epochs_run = len(history)
    retries = min(trial.num_failures, spec.max_failures)
    status, detail = _status(trial, last, epochs_run, cfg.epochs, spec, retries)
    completed = status == "completed"
    if completed:
        runfolder.copy_predictions(trial.checkpoint, run_dir, trial.trial_id)
    val = history[-1] if history else {}
    seconds = sum(r.get("epoch_seconds", r.get("seconds", 0.0)) for r in history)
    return {
        "trial_id": trial.trial_id,
        "status": status,
        "status_detail": detail,
        "epochs_run": epochs_run,
        **cfg.to_dict(),
        "searched": json.dumps(spec.searched),
        "config_key": config_key(params),
        "repeat": int(params["seed"]) - spec.base.seed if "seed" in params else 0,
        **{f"val_{m}": _float(val.get(f"val_{m}")) for m in METRICS},
        **{best_column(f"val_{m}"): best_of([r.get(f"val_{m}") for r in history], direction(m))
           for m in METRICS},
        **{f"test_{m}": _float(last.get(f"test_{m}")) if completed else math.nan for m in METRICS},
        "test_set": str(last.get("test_set", "")),
        "precision": str(last.get("precision", "")),  # what ran: bf16 or fp32, memory format, compile
        "n_params": int(last["n_params"]) if "n_params" in last else None,
        "seconds": seconds + (_float(last.get("test_seconds")) if completed else 0.0),
        "ended": _float(last.get("timestamp")),  # Tune's time of the last result: the end order
        "node_id": str(last.get("node_id", "")),
        "retries": retries,
        "history": json.dumps(history),
        "mlflow_run_id": "",
    }


def _status(trial: Trial, last: dict, epochs_run: int, epochs: int, spec: SearchSpec,
            retries: int) -> tuple[str, str]:
    """(status, status_detail) of a finished trial; see ARCHITECTURE.md for the four statuses."""
    if last.get("diverged"):
        return "diverged", str(last.get("error", "loss became NaN or infinite"))
    if trial.status == "ERROR":
        return "errored", f"{error_message(trial)} (after {retries} retries)"
    if trial.status == "TERMINATED":
        if epochs_run >= epochs and "test_mse" in last:
            return "completed", ""
        by = "by ASHA " if spec.scheduler == "asha" else ""
        return "stopped", f"stopped early {by}at epoch {epochs_run}"
    return "stopped", (f"interrupted at epoch {epochs_run} (Tune status {trial.status}); "
                       "continue with --resume")


def error_message(trial: Trial) -> str:
    """The last line of the trial's error.txt (the exception), or a placeholder."""
    for path in _error_files(trial):
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except OSError:
            continue
        if lines:
            return lines[-1][:2000]
    return "the trial raised an error (no error.txt found)"


def _error_files(trial: Trial) -> Iterator[Path]:
    """Where the trial's error.txt may be: its folder, then Tune's `error_file`, asked only when
    needed: once Ray is shut down (as when the results are written) that property asserts."""
    if trial.path:
        yield Path(trial.path) / "error.txt"
    try:
        error_file = getattr(trial, "error_file", None)
    except (AssertionError, RuntimeError):
        return
    if error_file:
        yield Path(error_file)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


__all__ = ["trial_rows", "trial_row", "config_key", "finished", "error_message", "FINISHED_STATES"]
