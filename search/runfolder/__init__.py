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
import errno
import json
import math
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from simvp_core import outputs
from simvp_core.atomic import atomic_write
from simvp_core.files import FileError, check_regular, open_regular, read_bytes
from simvp_core.oneline import short_path

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


# the fields experiment.json holds that the platform reads back, and the JSON types each must have
TEXT, NUMBER, LIST, TEXT_OR_NULL = (str,), (int, float), (list,), (str, type(None))
EXPERIMENT_FIELDS: dict[str, tuple[type, ...]] = {
    "experiment": TEXT, "space": TEXT, "space_hash": TEXT_OR_NULL, "description": TEXT, "searched": LIST,
    "blocks": LIST, "published": LIST, "algorithm": TEXT, "num_samples": NUMBER, "scheduler": (str, dict),
    "grace_period": NUMBER, "reduction_factor": NUMBER, "max_epochs": NUMBER, "metric": TEXT, "mode": TEXT,
    "repeats": NUMBER, "resources": (dict,), "max_failures": NUMBER, "optuna_study": TEXT_OR_NULL,
    "command": TEXT, "resume_commands": LIST, "git_commit": TEXT, "data_dir": TEXT_OR_NULL,
    "tune_storage": TEXT, "test_set": TEXT, "started": TEXT_OR_NULL, "finished": TEXT_OR_NULL,
    "wall_seconds": NUMBER, "tracking_uri": TEXT_OR_NULL, "mlflow_parent_run_id": TEXT_OR_NULL,
}
MAX_EXPERIMENT_BYTES = 64_000_000  # published rows of a 1 MB space file fit many times over
EXPERIMENT_FIX = "restore it from a copy, or start the search anew (python -m search.run SPACE --name NEW)"


def read_experiment(run_dir: Path) -> dict[str, Any]:
    """experiment.json of a run folder, checked: a regular file of bounded size holding a JSON object
    whose fields (EXPERIMENT_FIELDS) have their types, lists of names and finite numbers included."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{short_path(run_dir)}: no such run folder; pass runs/<name> of a search "
                             "started with python -m search.run")
    path = run_dir / EXPERIMENT_FILE
    if not os.path.lexists(path):
        raise RunFolderError(f"{short_path(path)} not found: {short_path(run_dir)} is not a search run folder "
                             "(python -m search.run writes it when the search starts)")
    try:
        info = json.loads(read_bytes(path, MAX_EXPERIMENT_BYTES, EXPERIMENT_FILE))
    except FileError as e:
        raise _refused(e, EXPERIMENT_FIX) from None
    except (ValueError, RecursionError) as e:  # invalid JSON, not UTF-8, a 5,000-digit number, deep nesting
        why = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:80]
        raise RunFolderError(f"{short_path(path)} is not valid JSON ({why}); {EXPERIMENT_FIX}") from None
    if not isinstance(info, dict):
        raise RunFolderError(f"{short_path(path)} holds a {type(info).__name__}, not the search's description; "
                             f"{EXPERIMENT_FIX}")
    problem = next((p for p in map(lambda k: _field_problem(k, info[k]), EXPERIMENT_FIELDS.keys() & info) if p),
                   None)
    if problem:
        raise RunFolderError(f"{short_path(path)}: {problem}; {EXPERIMENT_FIX}")
    return info


# -- search.log ------------------------------------------------------------------------------------


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG_FILE


def open_log(run_dir: Path) -> IO[str]:
    """search.log for appending, a line at a time (a resumed search adds to it): what the
    libraries log and the trials print, kept out of the console (search.run.console)."""
    return open(log_path(run_dir), "a", buffering=1, encoding="utf-8", errors="replace")


def _refused(e: FileError, fix: str) -> RunFolderError:
    """A file of the run folder that cannot be read (a FIFO, a folder, too big) and the run folder's fix."""
    return RunFolderError(f"{e.problem}; {fix}" if fix else e.problem)


def _field_problem(key: str, value: Any) -> str | None:
    """What is wrong with one field of experiment.json (None: nothing)."""
    types = EXPERIMENT_FIELDS[key]
    if not isinstance(value, types) or isinstance(value, bool):
        return f"{key} is {_json_type(value)}, expected {' or '.join(_json_type(t()) for t in types)}"
    if isinstance(value, (int, float)) and not (math.isfinite(value) and 0 <= value < 1e15):
        return f"{key} is {str(value)[:24]}, expected a finite number >= 0"
    if key in ("searched", "blocks", "resume_commands") and not all(isinstance(v, str) for v in value):
        return f"{key} holds something other than names"
    if key == "published" and not all(isinstance(v, dict) for v in value):
        return f"{key} holds something other than rows"
    return None


def _json_type(value: Any) -> str:
    return {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object",
            type(None): "null", bool: "a boolean"}.get(type(value), type(value).__name__)


# -- optuna.db -------------------------------------------------------------------------------------


def optuna_url(run_dir: Path) -> str:
    """The study's storage URL (optuna and random searches; a grid has none)."""
    return f"sqlite:///{Path(run_dir) / OPTUNA_DB}"


def optuna_storage(run_dir: Path) -> optuna.storages.RDBStorage:
    """The study's storage, created with the file when new: what the searcher writes to."""
    import optuna

    return optuna.storages.RDBStorage(optuna_url(run_dir))


SQLITE_MAGIC = b"SQLite format 3\x00"


def read_study(run_dir: Path, study_name: str | None) -> optuna.Study:
    """The search's Optuna study, every trial read once (so a corrupt table fails here, not later);
    `study_name` None: the one study optuna.db holds. RunFolderError for a file that is missing, not
    a regular SQLite file, corrupt, or without the study."""
    import optuna

    path = Path(run_dir) / OPTUNA_DB
    fix = "it is corrupt or not the search's: restore it, or start the search anew (--name NEW)"
    try:
        check_regular(path, OPTUNA_DB)
        with open_regular(path, OPTUNA_DB) as f:
            header = f.read(len(SQLITE_MAGIC))
    except FileError as e:
        raise _refused(e, "" if e.errno == errno.ENOENT else fix) from None
    if header != SQLITE_MAGIC:
        raise RunFolderError(f"{short_path(path)} is not an SQLite database; {fix}")
    url = optuna_url(run_dir)
    try:
        names = optuna.study.get_all_study_names(storage=url)
        if study_name is None and len(names) == 1:
            study_name = names[0]
        if study_name not in names:
            known = ", ".join(sorted(str(n)[:40] for n in names)[:5]) or "none"
            raise RunFolderError(f"{short_path(path)} holds no study {str(study_name)[:60]!r} (it holds: "
                                 f"{known}); {fix}")
        study = optuna.load_study(study_name=study_name, storage=url)
        study.get_trials(deepcopy=False)
    except RunFolderError:
        raise
    except Exception as e:  # SQLAlchemy, Optuna and sqlite3 raise many kinds on a damaged file
        raise RunFolderError(f"{short_path(path)} cannot be read ({type(e).__name__}); {fix}") from None
    return study


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
