"""search.run.counts: each trial's outcome, the counts over Tune's trials, and their words (the
progress line, a trial's end line, how often the line is printed)."""

from __future__ import annotations

import math

import pytest
from ray.tune.experiment import Trial

from search.run import counts
from search.run.counts import Counts, outcome, progress_line, tally, trial_line


def line_counts(**changes) -> Counts:
    base = dict(total=8, done=3, stopped=1, failed=0, running=2, epochs=41, max_epochs=112, metric="val_mse",
                best=134.123, best_trial="a1_00002", elapsed=112.0, left=160.0, at_most=True)
    return Counts(**{**base, **changes})


def trial(trial_id: str, status: str, results: list[dict], failures: int = 0, **config) -> Trial:
    """A real Tune Trial (a stub: no trainable behind it) with these results and status."""
    t = Trial("fn", config=config, stub=True, trial_id=trial_id)
    for r in results:
        t.update_last_result(r)
    t.set_status(status)
    t.run_metadata.num_failures = failures
    return t


def curve(*values: float) -> list[dict]:
    return [{"epoch": e, "val_mse": v} for e, v in enumerate(values, 1)]


def test_the_line_says_done_running_epochs_best_elapsed_and_left() -> None:
    assert progress_line(line_counts()) == (
        "progress: 3/8 trials done (1 stopped early), 2 running, 41/112 trial-epochs, best val_mse 134.1 "
        "(trial a1_00002), 1 min 52 s elapsed, at most ~2 min 40 s left")
    assert progress_line(line_counts(stopped=0, failed=2, at_most=False, left=3 * 3600 + 59)).endswith(
        "trials done (2 failed), 2 running, 41/112 trial-epochs, best val_mse 134.1 (trial a1_00002), "
        "1 min 52 s elapsed, ~3 h 00 min 59 s left")
    assert progress_line(line_counts(done=0, stopped=0, best=None, left=None, elapsed=4.4)) == (
        "progress: 0/8 trials done, 2 running, 41/112 trial-epochs, no val_mse yet, 4 s elapsed")


def test_time_left_uses_this_sessions_rate() -> None:
    assert counts.time_left(epochs=30, max_epochs=40, session_epochs=5, session_seconds=50.0) == 100.0
    assert counts.time_left(30, 40, 0, 50.0) is None  # a resumed search before its first epoch
    assert counts.time_left(45, 40, 5, 50.0) == 0.0


def test_outcomes_are_the_results_statuses_once_a_trial_ended() -> None:
    assert outcome(trial("a", "TERMINATED", curve(9, 6, 5)), epochs=3) == "completed"
    assert outcome(trial("b", "TERMINATED", curve(9)), epochs=3) == "stopped"
    assert outcome(trial("c", "TERMINATED", curve(9), epochs=1), epochs=3) == "completed"  # searched epochs
    assert outcome(trial("d", "TERMINATED", [*curve(9), {"epoch": 2, "val_mse": math.nan, "diverged": 1}]),
                   epochs=3) == "diverged"
    assert outcome(trial("e", "ERROR", curve(9), failures=2), epochs=3) == "errored"
    assert outcome(trial("f", "RUNNING", curve(9)), epochs=3) == "running"
    assert outcome(trial("f", "RUNNING", curve(9, 6, 5)), epochs=3, ended=True) == "completed"  # said ended
    assert outcome(trial("g", "PENDING", []), epochs=3) == "pending"
    assert outcome(trial("h", "PAUSED", curve(9)), epochs=3) == "pending"


def test_tally_counts_outcomes_epochs_and_the_best_value_in_the_metrics_direction() -> None:
    trials = [trial("done", "TERMINATED", curve(9, 6, 5)), trial("asha", "TERMINATED", curve(4)),
              trial("run", "RUNNING", curve(8, 7)), trial("wait", "PENDING", [])]
    t = tally(trials, epochs=3, metric="val_mse", mode="min")
    assert dict(t.outcomes) == {"completed": 1, "stopped": 1, "running": 1, "pending": 1}
    assert (t.done, t.epochs, t.best, t.best_trial) == (2, 6, 4.0, "asha")
    assert tally(trials, 3, "val_mse", "max").best_trial == "done"  # its first epoch, 9
    assert tally([], 3, "val_mse", "min").best is None


def test_a_trials_end_line_says_its_outcome_value_and_configuration() -> None:
    done = trial("t1", "TERMINATED", curve(9.0, 5.123456, 6.0), lr=0.01, act="gelu", skipped=None)
    assert trial_line(done, "completed", 1, 4, "val_mse", "min") == (
        "trial t1 completed (1/4 done): 3 epochs, val_mse 6 (best 5.1235), lr=0.01 act=gelu")
    stopped = trial("t2", "TERMINATED", curve(9.5), lr=1e-6)
    assert trial_line(stopped, "stopped", 2, 4, "val_mse", "min") == (
        "trial t2 stopped early at epoch 1 (2/4 done): val_mse 9.5, lr=1e-06")
    failed = trial("t3", "ERROR", curve(9.5), failures=2, lr=0.5)
    assert trial_line(failed, "errored", 3, 4, "val_mse", "min", "RuntimeError:\n  boom") == (
        "trial t3 errored after epoch 1 and 1 retries (3/4 done): RuntimeError: boom")
    wide = trial("t4", "TERMINATED", curve(1.0), **{f"p{i}": "x" * 20 for i in range(20)})
    assert len(trial_line(wide, "stopped", 4, 4, "val_mse", "min")) < 250


@pytest.mark.parametrize("elapsed, expected", [(0, 10.0), (40, 10.0), (100, 20.0), (600, 120.0), (5000, 300.0)])
def test_lines_not_on_a_terminal_come_every_10_s_then_a_fifth_of_the_time_elapsed(elapsed, expected) -> None:
    assert counts.period(elapsed) == expected


def test_an_hours_search_prints_about_30_progress_lines_not_360() -> None:
    shown, t = 0, 0.0
    while t < 3600:
        t += counts.period(t)
        shown += 1
    assert 25 <= shown <= 35
