"""The trials' checkpoints in Tune's folder, the bulk of a run folder: which keep their model state
when a search ends (`keep_checkpoints`, declared here once), that state read or deleted, and sizes.

Only CHECKPOINT_FILE (the trainer's model and optimizer state) and PREDICTIONS_FILE (once copied to
predictions/) are ever deleted: HISTORY_FILE stays, because the results rows are rebuilt from it on
every --resume, and Tune's own state is never touched. Works on any storage Tune writes to (a checkpoint's pyarrow
filesystem). Light: pyarrow only inside the functions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from search.runfolder import CHECKPOINT_FILE, PREDICTIONS_FILE

if TYPE_CHECKING:
    from ray.tune import Checkpoint

# the policies, what each keeps of the trials that will not run again (errored trials keep theirs
# under every policy: --resume retries them from it)
KEEP_CHECKPOINTS = {
    "best": "the best completed trial's model state only",
    "all": "every trial's last checkpoint",
    "none": "no trial's model state (the best model is in MLflow when tracking is on)",
}
DEFAULT_KEEP = "best"
KEEP_HELP = ("trial checkpoints kept when the search finishes: best (the best trial's model state), "
             "all, or none; trial histories and predictions stay, and so does what --resume needs")
FINISHED_FOR_GOOD = "TERMINATED"  # Tune's status of a trial it never runs again (ERROR ones it retries)
# what may go from a finished trial's checkpoint: its model state, and its predictions once the run
# folder has their copy; never HISTORY_FILE, from which the results rows are rebuilt
DELETABLE = (CHECKPOINT_FILE, PREDICTIONS_FILE)


def to_delete(trials: list, keep: str, best_trial: str | None) -> list:
    """The Tune trials whose model state goes under `keep`: those Tune never runs again, but the
    best one under 'best'; none under 'all'."""
    if keep == "all":
        return []
    return [t for t in trials if t.status == FINISHED_FOR_GOOD
            and not (keep == "best" and t.trial_id == best_trial)]


def _state_path(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.path}/{CHECKPOINT_FILE}"


def has_model_state(checkpoint: Checkpoint | None) -> bool:
    """Whether a trial's checkpoint still holds CHECKPOINT_FILE."""
    if checkpoint is None:
        return False
    from pyarrow.fs import FileType

    return checkpoint.filesystem.get_file_info(_state_path(checkpoint)).type == FileType.File


def delete_files(checkpoint: Checkpoint | None, names: tuple[str, ...] = (CHECKPOINT_FILE,)) -> int:
    """Delete these files (of DELETABLE) from a trial's checkpoint; the bytes freed (0 for files
    gone already)."""
    if checkpoint is None:
        return 0
    from pyarrow.fs import FileType

    freed = 0
    for name in names:
        if name not in DELETABLE:
            raise ValueError(f"{name} is not deletable from a trial checkpoint (only {', '.join(DELETABLE)})")
        info = checkpoint.filesystem.get_file_info(f"{checkpoint.path}/{name}")
        if info.type == FileType.File:
            checkpoint.filesystem.delete_file(info.path)
            freed += int(info.size or 0)
    return freed


@contextlib.contextmanager
def model_state(checkpoint: Checkpoint | None) -> Iterator[Path]:
    """A local path to the checkpoint's CHECKPOINT_FILE while the block runs (copied out of remote
    storage); FileNotFoundError when it was deleted."""
    from pyarrow.fs import LocalFileSystem

    if checkpoint is None:
        raise FileNotFoundError("the trial reported no checkpoint")
    if not has_model_state(checkpoint):
        raise FileNotFoundError(f"{CHECKPOINT_FILE} of trial checkpoint {checkpoint.path} was deleted "
                                "(keep_checkpoints)")
    if isinstance(checkpoint.filesystem, LocalFileSystem):
        yield Path(_state_path(checkpoint))
        return
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / CHECKPOINT_FILE
        with checkpoint.filesystem.open_input_stream(_state_path(checkpoint)) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield local


def size(location: str | Path) -> int:
    """Bytes in the files under a folder, local or a storage URI (s3://...); 0 when it is absent."""
    text = str(location)
    if "://" in text:
        from pyarrow.fs import FileSelector, FileSystem

        fs, path = FileSystem.from_uri(text)
        infos = fs.get_file_info(FileSelector(path, recursive=True, allow_not_found=True))
        return sum(int(i.size or 0) for i in infos if i.is_file)
    total = 0
    for folder, _, files in os.walk(text):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while walking
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


__all__ = ["KEEP_CHECKPOINTS", "DEFAULT_KEEP", "KEEP_HELP", "DELETABLE", "to_delete", "has_model_state",
           "delete_files", "model_state", "size"]
