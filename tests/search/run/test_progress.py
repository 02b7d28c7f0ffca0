"""search.run.progress: the line from counts, and the callback counting real Tune Trial objects."""

from __future__ import annotations

import math

from ray.tune.experiment import Trial

from search.run import progress
from search.run.progress import Counts, ProgressLine, progress_line


def counts(**changes) -> Counts:
    base = dict(total=8, done=3, stopped=1, failed=0, running=2, epochs=41, max_epochs=112, metric="val_mse",
                best=134.123, best_trial="a1_00002", elapsed=112.0, left=160.0, at_most=True)
    return Counts(**{**base, **changes})


def test_the_line_says_done_running_epochs_best_elapsed_and_left() -> None:
    assert progress_line(counts()) == (
        "progress: 3/8 trials done (1 stopped early), 2 running, 41/112 trial-epochs, best val_mse 134.1 "
        "(trial a1_00002), 1 min 52 s elapsed, at most ~2 min 40 s left")
    assert progress_line(counts(stopped=0, failed=2, at_most=False, left=3 * 3600 + 59)).endswith(
        "trials done (2 failed), 2 running, 41/112 trial-epochs, best val_mse 134.1 (trial a1_00002), "
        "1 min 52 s elapsed, ~3 h 00 min 59 s left")
    assert progress_line(counts(done=0, stopped=0, best=None, left=None, elapsed=4.4)) == (
        "progress: 0/8 trials done, 2 running, 41/112 trial-epochs, no val_mse yet, 4 s elapsed")


def test_time_left_uses_this_sessions_rate() -> None:
    assert progress.time_left(epochs=30, max_epochs=40, session_epochs=5, session_seconds=50.0) == 100.0
    assert progress.time_left(30, 40, 0, 50.0) is None  # a resumed search before its first epoch
    assert progress.time_left(45, 40, 5, 50.0) == 0.0


def trial(trial_id: str, status: str, results: list[dict], **config) -> Trial:
    t = Trial("fn", config=config, stub=True, trial_id=trial_id)
    for r in results:
        t.update_last_result(r)
    t.set_status(status)
    return t


def test_the_callback_counts_tunes_trials(capsys) -> None:
    line = ProgressLine(total=5, max_epochs=15, epochs=3, metric="val_mse", mode="min", asha=True, period=3600)
    trials = [trial("done", "TERMINATED", [{"epoch": e, "val_mse": v} for e, v in ((1, 9.0), (2, 6.0), (3, 5.0))]),
              trial("asha", "TERMINATED", [{"epoch": 1, "val_mse": 4.0}]),
              trial("nan", "TERMINATED", [{"epoch": 1, "val_mse": 7.0},
                                          {"epoch": 2, "val_mse": math.nan, "diverged": 1.0}]),
              trial("short", "RUNNING", [{"epoch": 2, "val_mse": 8.0}], epochs=2),
              trial("wait", "PENDING", [])]
    line.on_step_end(0, trials)
    line.on_trial_complete(1, trials, trials[3])  # its actor not stopped yet: still RUNNING in Tune
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("progress: 3/5 trials done (1 stopped early, 1 failed), 1 running, "
                             "8/15 trial-epochs, best val_mse 4 (trial asha), ")
    assert out[1].startswith("progress: 4/5 trials done (1 stopped early, 1 failed), 0 running, 8/15")
    line.on_step_end(2, trials)  # within the period: nothing printed
    assert capsys.readouterr().out == ""
