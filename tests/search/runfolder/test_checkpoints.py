"""search.runfolder.checkpoints: what may go from a trial's Tune checkpoint (its model state and the
copy of its predictions, never its history), read back on any storage, and folder sizes."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from pyarrow.fs import FSSpecHandler, PyFileSystem
from ray.tune import Checkpoint

from search import runfolder
from search.runfolder import checkpoints

FILES = {runfolder.CHECKPOINT_FILE: b"m" * 3000, runfolder.HISTORY_FILE: b"[]",
         runfolder.PREDICTIONS_FILE: b"p" * 500}


def trial_checkpoint(folder: Path) -> Checkpoint:
    folder.mkdir(parents=True)
    for name, content in FILES.items():
        (folder / name).write_bytes(content)
    return Checkpoint.from_directory(folder)


def test_a_finished_trial_loses_its_model_state_and_predictions_but_never_its_history(tmp_path: Path) -> None:
    checkpoint = trial_checkpoint(tmp_path / "checkpoint_000001")
    assert checkpoints.has_model_state(checkpoint)
    with checkpoints.model_state(checkpoint) as path:  # on local storage, the file itself
        assert path == tmp_path / "checkpoint_000001" / runfolder.CHECKPOINT_FILE
    assert checkpoints.delete_files(checkpoint, checkpoints.DELETABLE) == 3500
    assert sorted(p.name for p in (tmp_path / "checkpoint_000001").iterdir()) == [runfolder.HISTORY_FILE]
    assert checkpoints.delete_files(checkpoint, checkpoints.DELETABLE) == 0  # gone already
    assert not checkpoints.has_model_state(checkpoint)
    with pytest.raises(FileNotFoundError, match="deleted \\(keep_checkpoints\\)"), \
            checkpoints.model_state(checkpoint):
        pass
    with pytest.raises(ValueError, match="history.json is not deletable"):
        checkpoints.delete_files(checkpoint, (runfolder.HISTORY_FILE,))
    assert checkpoints.delete_files(None) == 0 and not checkpoints.has_model_state(None)


def test_a_checkpoint_on_remote_storage_is_read_through_a_local_copy() -> None:
    memory = fsspec.filesystem("memory")
    for name, content in FILES.items():
        memory.pipe(f"/bucket/trial/checkpoint_000002/{name}", content)
    checkpoint = Checkpoint("/bucket/trial/checkpoint_000002", filesystem=PyFileSystem(FSSpecHandler(memory)))
    with checkpoints.model_state(checkpoint) as path:
        assert path.read_bytes() == FILES[runfolder.CHECKPOINT_FILE]
    assert not path.exists()  # the copy went with the block
    assert checkpoints.delete_files(checkpoint) == 3000 and not checkpoints.has_model_state(checkpoint)
    assert memory.exists(f"/bucket/trial/checkpoint_000002/{runfolder.HISTORY_FILE}")


def test_a_folder_size_is_its_files_bytes_locally_and_by_uri(tmp_path: Path) -> None:
    trial_checkpoint(tmp_path / "run" / "tune" / "t1")
    (tmp_path / "run" / "results.parquet").write_bytes(b"r" * 100)
    assert checkpoints.size(tmp_path / "run") == 3502 + 100
    assert checkpoints.size((tmp_path / "run").as_uri()) == 3602
    assert checkpoints.size(tmp_path / "absent") == 0 == checkpoints.size((tmp_path / "absent").as_uri())


def test_every_policy_is_declared_once_with_what_it_keeps() -> None:
    from search.run.plan import build_parser
    from search.space.schema import SpaceFile

    field = SpaceFile.model_fields["keep_checkpoints"]
    assert field.default == checkpoints.DEFAULT_KEEP == "best"
    assert field.description == checkpoints.KEEP_HELP
    flag = next(a for a in build_parser()._actions if a.dest == "keep_checkpoints")
    assert tuple(flag.choices) == tuple(checkpoints.KEEP_CHECKPOINTS) == ("best", "all", "none")
