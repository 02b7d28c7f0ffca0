"""search.runfolder.tune_state: Tune's newest experiment-state snapshot read without Ray, as Tune
itself writes it (Trial.get_json_state), so that search.status counts what the progress line counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search import runfolder
from search.run.counts import tally
from search.runfolder import tune_state
from tests.search.run.test_counts import curve, trial


def write_snapshot(folder: Path, trials: list, session: str = "2026-12-06_10-00-00") -> Path:
    """A snapshot as Tune's controller writes it: one (trial, runtime metadata) JSON pair per trial."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"experiment_state-{session}.json"
    path.write_text(json.dumps({"trial_data": [list(t.get_json_state()) for t in trials], "runner_data": {},
                                "stats": {"start_time": 0.0}}))
    return path


def real_trials() -> list:
    return [trial("a1", "TERMINATED", curve(9.0, 6.0, 5.0), lr=0.01, act="gelu"),
            trial("a2", "ERROR", curve(8.0), failures=2, lr=0.5, act="gelu"),
            trial("a3", "RUNNING", curve(7.0, 4.5), lr=0.002, act="starrelu"),
            trial("a4", "PENDING", [], lr=1e-05, act="starrelu")]


def test_the_snapshot_reads_as_tunes_trials_and_counts_the_same(tmp_path: Path) -> None:
    trials = real_trials()
    write_snapshot(tmp_path / "tune", trials)
    read = tune_state.read(str(tmp_path / "tune"))
    assert [(t.trial_id, t.status, t.config, t.num_failures) for t in read] == [
        (t.trial_id, t.status, t.config, t.run_metadata.num_failures) for t in trials]
    assert [t.last_result.get("epoch") for t in read] == [3, 1, 2, None]
    assert tally(read, 3, "val_mse", "min") == tally(trials, 3, "val_mse", "min")


def test_the_newest_snapshot_wins_and_none_before_the_first(tmp_path: Path) -> None:
    assert tune_state.read(str(tmp_path / "tune")) is None
    (tmp_path / "tune").mkdir()
    assert tune_state.read(str(tmp_path / "tune")) is None
    write_snapshot(tmp_path / "tune", real_trials()[:1], "2026-12-06_10-00-00")
    write_snapshot(tmp_path / "tune", real_trials(), "2026-12-06_11-30-00")  # a resumed session's
    assert len(tune_state.read(str(tmp_path / "tune"))) == 4


def test_a_uri_is_read_through_pyarrow(tmp_path: Path) -> None:
    write_snapshot(tmp_path / "tune", real_trials())
    assert tune_state.read((tmp_path / "tune").as_uri()) == tune_state.read(str(tmp_path / "tune"))


def test_the_folder_is_the_run_folders_own_unless_tune_wrote_to_a_uri(tmp_path: Path) -> None:
    assert tune_state.folder(tmp_path / "x", "/elsewhere/x") == str(tmp_path / "x" / "tune")  # copied folders read
    assert tune_state.folder(tmp_path / "x", "s3://bucket/runs/x") == "s3://bucket/runs/x/tune"


@pytest.mark.parametrize("content, words", [
    ('{"trial_data": [["{\\"trial_id\\": ', "is not valid JSON"),
    ('{"trial_data": 3}', "not what this version of Ray writes"),
    ('{"trial_data": [["{}", "{}"]]}', "not what this version of Ray writes"),
])
def test_an_unusable_snapshot_is_one_line(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "experiment_state-x.json").write_text(content)
    with pytest.raises(runfolder.RunFolderError, match=words) as e:
        tune_state.read(str(tmp_path), tries=2)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
