"""search.run.console: what the libraries log, Python warnings and the trials' output go to
search.log, not the console (-v: both); a notable library warning is said once, in our words;
what was logged before the run folder was held waits for it, and shows on stderr after a crash."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from search import runfolder
from search.run import console


@pytest.fixture()
def library(capsys) -> Iterator[logging.Logger]:
    """A logger configured as Ray, MLflow and Optuna configure theirs: its own console handler,
    records not passed up (made once capsys holds sys.stderr)."""
    logger = logging.getLogger("tests.fake_library")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)


def test_quiet_the_libraries_logs_and_warnings_go_to_search_log_only(library, tmp_path: Path, capsys) -> None:
    with console.Console() as out:
        library.info("before the run folder is held")
        out.attach(tmp_path, "search x: pid 1")
        library.info("after")
        logging.getLogger("tests.other_library").warning("a propagating warning")
        warnings.warn("a Python warning", UserWarning, stacklevel=1)
        console.say("our line")
    captured = capsys.readouterr()
    assert captured.out == "our line\n" and captured.err == ""
    log = runfolder.log_path(tmp_path).read_text()
    found = [log.index(text) for text in ("== search x: pid 1 ==", "before the run folder is held", "after",
                                          "a propagating warning", "a Python warning")]
    assert found == sorted(found)
    library.info("once the search is over")  # its own handler is back
    assert "once the search is over" in capsys.readouterr().err


def test_verbose_shows_them_here_and_still_keeps_them(library, tmp_path: Path, capsys) -> None:
    with console.Console(verbose=True) as out:
        assert not console.live()
        out.attach(tmp_path, "search x")
        library.info("shown and kept")
    assert "shown and kept" in capsys.readouterr().err
    assert "shown and kept" in runfolder.log_path(tmp_path).read_text()


def test_a_notable_warning_is_said_once_in_our_words(tmp_path: Path, capsys) -> None:
    tune = logging.getLogger("ray.tune.execution.insufficient_resources_manager")
    with console.Console() as out:
        out.attach(tmp_path, "search x")
        for _ in range(2):
            tune.warning("Ignore this message if the cluster is autoscaling. No trial is running...")
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and said[0].startswith("warning: no trial could start for a minute")
    assert str(runfolder.log_path(tmp_path)) in said[0]
    assert runfolder.log_path(tmp_path).read_text().count("Ignore this message") == 2


def test_a_crash_before_the_run_folder_shows_what_was_logged(library, capsys) -> None:
    with console.Console():
        library.info("refused: nothing to show")
    assert capsys.readouterr().err == ""
    with pytest.raises(RuntimeError), console.Console():
        library.info("what led to the crash")
        raise RuntimeError("crash")
    assert "what led to the crash" in capsys.readouterr().err


def test_what_the_trials_print_goes_to_search_log(tmp_path: Path, capsys) -> None:
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    with console.Console() as out:
        out.route_workers()
        out.attach(tmp_path, "search x")
        dispatcher.emit({"pid": 4242, "task_name": "train_trial", "is_err": True, "ip": "127.0.0.1",
                         "lines": ["Checkpoint successfully created", "epoch 2"]})
    assert capsys.readouterr().out == ""
    log = runfolder.log_path(tmp_path).read_text()
    assert "(train_trial pid=4242 stderr) Checkpoint successfully created" in log and "epoch 2" in log
    assert all(name != "simvp_search_log" for name, _ in dispatcher.handlers)  # removed at the end
