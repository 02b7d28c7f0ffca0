"""`runs/<name>/`, a search's folder: the one place that names, writes and reads what is in it.

    experiment.json          write_experiment / read_experiment
    results.parquet          search.runfolder.results (write / read)
    optuna.db                optuna_url, optuna_storage (the searcher's study), read_study
    search.lock              search.runfolder.lock (one search per name)
    search.log               open_log: Ray's, Tune's, MLflow's and Optuna's logs and the trials' output
    predictions/<trial>.npz  copy_predictions (from the trial's last checkpoint) / read_predictions
    tune/                    Ray Tune's own folder, at tune_path(tune_storage); each trial's
                             checkpoints hold CHECKPOINT_FILE, HISTORY_FILE, PREDICTIONS_FILE;
                             its experiment state read by search.runfolder.tune_state
    ../mlflow.db, ../mlartifacts/   the default MLflow store beside the run folders

A read never writes, and a file that cannot be used is a RunFolderError: one line naming the file
and what to do. Light on purpose: no pandas, pyarrow, Ray or torch at import.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from simvp_core import outputs
from simvp_core.atomic import atomic_write

if TYPE_CHECKING:
    import numpy as np
    import optuna
    from ray.tune import Checkpoint

RESULTS_FILE = "results.parquet"
EXPERIMENT_FILE = "experiment.json"
OPTUNA_DB = "optuna.db"
PREDICTIONS_DIR = "predictions"
TUNE_DIR = "tune"
LOCK_FILE = "search.lock"
LOG_FILE = "search.log"
# beside the run folders: the default MLflow store and its artifacts
MLFLOW_DB = "mlflow.db"
MLARTIFACTS_DIR = "mlartifacts"
# in every checkpoint a trial reports (written by search.trainable)
CHECKPOINT_FILE = outputs.CHECKPOINT_FILE  # the trainer's own name for its checkpoint
HISTORY_FILE = "history.json"
PREDICTIONS_FILE = "predictions.npz"
PREDICTION_ARRAYS = ("inputs", "targets", "preds")  # float32 (n, 10, 1, 64, 64) each
OPTUNA_ALGORITHMS = ("optuna", "random")  # searches whose sampler keeps a study in optuna.db


class RunFolderError(ValueError):
    """A run folder, or a file in it, that cannot be used: one line naming it and the fix."""


def timestamp() -> str:
    """Now, as experiment.json records its times: UTC, ISO 8601, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- experiment.json -------------------------------------------------------------------------------


def write_experiment(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / EXPERIMENT_FILE, json.dumps(info, indent=2) + "\n")


def read_experiment(run_dir: Path) -> dict[str, Any]:
    """experiment.json of a run folder, checked to be a JSON object."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder; pass runs/<name> of a search "
                             "started with python -m search.run")
    path = run_dir / EXPERIMENT_FILE
    if not path.is_file():
        raise RunFolderError(f"{path} not found: {run_dir} is not a search run folder "
                             "(python -m search.run writes it when the search starts)")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path} is not valid JSON ({e}); rewrite it by resuming the search "
                             "(python -m search.run SPACE --resume)") from e
    if not isinstance(info, dict):
        raise RunFolderError(f"{path} holds {type(info).__name__}, not the search's description; "
                             "rewrite it by resuming the search (python -m search.run SPACE --resume)")
    return info


# -- search.log ------------------------------------------------------------------------------------


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG_FILE


def open_log(run_dir: Path) -> IO[str]:
    """search.log for appending, a line at a time (a resumed search adds to it): what the
    libraries log and the trials print, kept out of the console (search.run.console)."""
    return open(log_path(run_dir), "a", buffering=1, encoding="utf-8", errors="replace")


# -- optuna.db -------------------------------------------------------------------------------------


def optuna_url(run_dir: Path) -> str:
    """The study's storage URL (optuna and random searches; a grid has none)."""
    return f"sqlite:///{Path(run_dir) / OPTUNA_DB}"


def optuna_storage(run_dir: Path) -> optuna.storages.RDBStorage:
    """The study's storage, created with the file when new: what the searcher writes to."""
    import optuna

    return optuna.storages.RDBStorage(optuna_url(run_dir))


def read_study(run_dir: Path, study_name: str | None) -> optuna.Study:
    """The search's Optuna study; `study_name` None: the one study optuna.db holds."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    path = Path(run_dir) / OPTUNA_DB
    if not path.is_file():
        raise RunFolderError(f"{OPTUNA_DB} not found in the run folder")
    url = optuna_url(run_dir)
    try:
        names = optuna.study.get_all_study_names(storage=url)
    except (optuna.exceptions.OptunaError, SQLAlchemyError) as e:
        raise RunFolderError(f"{OPTUNA_DB} cannot be read ({type(e).__name__})") from e
    if study_name is None:
        if len(names) != 1:
            raise RunFolderError(f"{OPTUNA_DB} holds {len(names)} studies ({', '.join(sorted(names)) or 'none'}) "
                                 f"and {EXPERIMENT_FILE} names none")
        study_name = names[0]
    if study_name not in names:
        raise RunFolderError(f"study {study_name!r} is not in {OPTUNA_DB}")
    return optuna.load_study(study_name=study_name, storage=url)


# -- Tune's folder and the trials' checkpoints -------------------------------------------------------


def tune_path(tune_storage: str) -> str:
    """Tune's experiment folder (checkpoints and the state --resume restores) in its storage."""
    return f"{tune_storage}/{TUNE_DIR}"


def checkpoint_history(checkpoint: Checkpoint | None) -> list[dict[str, Any]] | None:
    """The trainer history a trial's checkpoint holds, read on any storage without the rest."""
    if checkpoint is None:
        return None
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{HISTORY_FILE}") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


# -- predictions/ ----------------------------------------------------------------------------------


def predictions_path(run_dir: Path, trial_id: str) -> Path:
    """Where a completed trial's test predictions are kept."""
    return Path(run_dir) / PREDICTIONS_DIR / f"{trial_id}.npz"


def copy_predictions(checkpoint: Checkpoint | None, run_dir: Path, trial_id: str) -> None:
    """Keep a completed trial's predictions from its last checkpoint (once)."""
    dest = predictions_path(run_dir, trial_id)
    if checkpoint is None or dest.is_file():
        return
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{PREDICTIONS_FILE}") as f:
            atomic_write(dest, f.read())
    except OSError:
        pass  # a completed trial always writes them; a missing file only loses the figure


def read_predictions(run_dir: Path, trial_id: str) -> dict[str, np.ndarray]:
    """A trial's inputs, targets and predictions, float32 (n, 10, 1, 64, 64) each; RunFolderError
    naming what is wrong when the file is missing, unreadable or of another shape."""
    import numpy as np

    path = predictions_path(run_dir, trial_id)
    try:
        with np.load(path) as npz:
            arrays = {k: np.asarray(npz[k], dtype=np.float32) for k in PREDICTION_ARRAYS}
    except (OSError, ValueError, KeyError) as e:
        raise RunFolderError(f"Predictions of trial {trial_id} unreadable ({type(e).__name__})") from e
    if any(a.ndim != 5 or a.shape[1:] != (10, 1, 64, 64) or not len(a) for a in arrays.values()):
        raise RunFolderError(f"Predictions of trial {trial_id} have an unexpected shape")
    return arrays


# -- beside the run folders ------------------------------------------------------------------------


def default_tracking_uri(storage_root: Path) -> str:
    """The default MLflow store: an SQLite file beside the run folders."""
    return f"sqlite:///{Path(storage_root) / MLFLOW_DB}"


def artifact_location(run_dir: Path) -> str:
    """Where an SQLite store keeps the search's MLflow artifacts: beside the run folders."""
    run_dir = Path(run_dir)
    return (run_dir.parent / MLARTIFACTS_DIR / run_dir.name).as_uri()
