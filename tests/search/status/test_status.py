"""python -m search.status on what is not a finished search: an absent or corrupt folder is one
line and exit 2; a search whose driver took the lock but has not written experiment.json yet is
starting. Running, interrupted and finished searches: tests/search/run/test_run.py, on the
searches it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from search import runfolder
from search.runfolder import lock
from search.status.cli import main, run_folder

REPO = Path(__file__).resolve().parents[3]

def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= 300, lines
    return lines[0]

def test_an_absent_or_unreadable_run_folder_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in one_line(capsys.readouterr().err)
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "experiment.json not found" in one_line(capsys.readouterr().err)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / runfolder.EXPERIMENT_FILE).write_text('{"experiment": ')
    assert main([str(tmp_path / "corrupt"), "--json"]) == 2
    assert "is not valid JSON" in one_line(capsys.readouterr().err)
    runfolder.write_experiment(tmp_path / "bad_tune", {"experiment": "bad_tune", "tune_storage": "x"})
    (tmp_path / "bad_tune" / "tune").mkdir()
    (tmp_path / "bad_tune" / "tune" / "experiment_state-2026.json").write_text("[1, 2")
    assert main([str(tmp_path / "bad_tune")]) == 2
    assert "Tune's experiment state" in one_line(capsys.readouterr().err)
    assert main(["--storage", str(tmp_path / "nothing")]) == 2
    assert "--storage" in one_line(capsys.readouterr().err)

def test_a_name_is_looked_up_in_the_storage_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "runs" / "smoke").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert run_folder("smoke", Path("runs")) == Path("runs") / "smoke"
    assert run_folder("runs/smoke", Path("elsewhere")) == Path("runs/smoke")
    assert run_folder("other", Path("runs")) == Path("other")  # said to be absent by the reading

def test_a_driver_that_holds_the_lock_before_experiment_json_is_starting(tmp_path: Path, capsys) -> None:
    with lock.acquire(tmp_path, log=lambda _: None):
        assert main([str(tmp_path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["state"] == "starting"
    assert (found["driver"]["pid"], found["driver"]["alive"]) == (os.getpid(), True)

def test_a_usage_error_is_one_line() -> None:
    bad = subprocess.run([sys.executable, "-m", "search.status", "--nope"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
