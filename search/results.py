"""`runs/<name>/results.parquet`: one row per trial, written atomically (names in search.layout).

The rows come from Tune's own record of each trial (status, failures, last reported result) and
the trial's latest checkpoint (the trainer history and, for completed trials, the predictions),
so they are the same whether the search ran straight through or was resumed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from search import layout

if TYPE_CHECKING:
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

    from search.space import SearchSpec


def searched_names(spec: SearchSpec) -> list[str]:
    """The searched TrainConfig fields of a space; `seed` too when configurations are repeated."""
    names = [p.name for p in spec.space]
    if spec.repeats > 1 and "seed" not in names:
        names.append("seed")
    return names


def config_key(params: dict[str, Any]) -> str:
    """The searched values without the seed: the same for every repeat of one configuration."""
    return json.dumps({k: params[k] for k in sorted(params) if k != "seed"}, sort_keys=True)


def trial_row(trial: Trial, spec: SearchSpec, run_dir: Path) -> dict[str, Any]:
    """One results row from a Tune `Trial`; copies a completed trial's predictions to run_dir."""
    params = {k: v for k, v in trial.config.items() if v is not None}  # None: 'not applied'
    cfg = spec.trial_config(params)
    last = trial.last_result or {}
    history = _checkpoint_json(trial.checkpoint, layout.HISTORY_FILE) or []
    epochs_run = len(history)
    retries = min(trial.num_failures, spec.max_failures)
    status, detail = _status(trial, last, epochs_run, cfg.epochs, spec, retries)
    completed = status == "completed"
    if completed:
        _copy_predictions(trial.checkpoint, layout.predictions_path(run_dir, trial.trial_id))
    val = history[-1] if history else {}
    seconds = sum(r.get("epoch_seconds", r.get("seconds", 0.0)) for r in history)
    return {
        "trial_id": trial.trial_id,
        "status": status,
        "status_detail": detail,
        "epochs_run": epochs_run,
        **cfg.to_dict(),
        "searched": json.dumps(searched_names(spec)),
        "config_key": config_key(params),
        "repeat": int(params["seed"]) - spec.base.seed if "seed" in params else 0,
        **{f"val_{m}": _float(val.get(f"val_{m}")) for m in layout.METRICS},
        "best_val_mse": min((_float(r.get("val_mse")) for r in history), default=math.nan),
        **{f"test_{m}": _float(last.get(f"test_{m}")) if completed else math.nan for m in layout.METRICS},
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
        return "errored", f"{_error_message(trial)} (after {retries} retries)"
    if trial.status == "TERMINATED":
        if epochs_run >= epochs and "test_mse" in last:
            return "completed", ""
        by = "by ASHA " if spec.scheduler == "asha" else ""
        return "stopped", f"stopped early {by}at epoch {epochs_run}"
    return "stopped", (f"interrupted at epoch {epochs_run} (Tune status {trial.status}); "
                       "continue with --resume")


def _error_message(trial: Trial) -> str:
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


def _checkpoint_json(checkpoint: Checkpoint | None, name: str) -> Any:
    """A small JSON file from a Tune checkpoint on any storage, without downloading the rest."""
    if checkpoint is None:
        return None
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{name}") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _copy_predictions(checkpoint: Checkpoint | None, dest: Path) -> None:
    if checkpoint is None or dest.is_file():
        return
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{layout.PREDICTIONS_FILE}") as f:
            layout.atomic_write(dest, f.read())
    except OSError:
        pass  # a completed trial always writes them; a missing file only loses the figure


def save_results(rows: list[dict[str, Any]], run_dir: Path) -> Path:
    """Write rows to results.parquet atomically, in schema column order, sorted by trial_id."""
    columns = layout.columns()
    ordered = [{c: r[c] for c in columns} for r in sorted(rows, key=lambda r: r["trial_id"])]
    table = pa.Table.from_pylist(ordered) if ordered else pa.table({c: [] for c in columns})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = Path(run_dir) / layout.RESULTS_FILE
    layout.atomic_write(path, sink.getvalue().to_pybytes())
    return path


def write_results(trials: Iterable[Trial], spec: SearchSpec, run_dir: Path) -> list[dict[str, Any]]:
    """Build one row per Tune trial and write results.parquet; returns the rows as written."""
    rows = [trial_row(t, spec, run_dir) for t in trials]
    save_results(rows, run_dir)
    return rows


def read_results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(Path(run_dir) / layout.RESULTS_FILE)


__all__ = ["write_results", "read_results", "save_results", "trial_row", "config_key",
           "searched_names"]
