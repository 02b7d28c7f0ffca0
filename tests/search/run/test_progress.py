"""search.run.progress: the Tune callback over real Tune Trial objects, printing through the
console: a progress line on its schedule, a line per trial's end, the last line at the end; on a
terminal, one line redrawn in place with the trials' lines above it."""

from __future__ import annotations

import io
import math

from search.run import console
from search.run.progress import ProgressLine
from tests.search.run.test_counts import curve, trial


def trials() -> list:
    return [trial("done", "TERMINATED", curve(9.0, 6.0, 5.0)), trial("asha", "TERMINATED", curve(4.0)),
            trial("nan", "TERMINATED", [*curve(7.0), {"epoch": 2, "val_mse": math.nan, "diverged": 1.0,
                                                    "error": "loss became nan in epoch 2"}]),
            trial("short", "RUNNING", curve(8.0, 8.5), epochs=2), trial("wait", "PENDING", [])]


def test_the_callback_counts_tunes_trials_and_says_each_end(capsys) -> None:
    line = ProgressLine(total=5, max_epochs=15, epochs=3, metric="val_mse", mode="min", asha=True, period=3600)
    ts = trials()
    line.on_step_end(0, ts)
    line.on_trial_complete(1, ts, ts[3])  # its actor not stopped yet: still RUNNING in Tune
    line.on_step_end(2, ts)  # within the period: nothing printed
    line.on_trial_complete(3, ts, ts[2])
    line.on_experiment_end(ts)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("progress: 3/5 trials done (1 stopped early, 1 failed), 1 running, "
                             "8/15 trial-epochs, best val_mse 4 (trial asha), ")
    assert out[1] == "trial short completed (4/5 done): 2 epochs, val_mse 8.5 (best 8), epochs=2"
    assert out[2] == "trial nan diverged in epoch 2 (4/5 done): loss became nan in epoch 2"
    assert out[3].startswith("progress: 4/5 trials done (1 stopped early, 1 failed), 0 running, 8/15")
    assert len(out) == 4


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place_under_the_trials_lines(monkeypatch) -> None:
    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setenv("COLUMNS", "200")
    line = ProgressLine(total=5, max_epochs=15, epochs=3, metric="val_mse", mode="min", asha=True)
    ts = trials()
    with console.Console():
        assert console.live()
        line.on_step_end(0, ts)
        line.on_step_end(1, ts)  # within a second: not redrawn
        print("said by someone else")  # erases the line first
        line.on_trial_complete(2, ts, ts[3])
    drawn = screen.getvalue().split(console.CLEAR)
    assert drawn[0] == "" and drawn[1].startswith("progress: 3/5 trials done") and "\n" not in drawn[1]
    assert drawn[2].startswith("said by someone else\ntrial short completed (4/5 done): 2 epochs")
    assert drawn[3].startswith("progress: 4/5 trials done") and drawn[3].endswith(" elapsed\n")  # kept at the end
    assert len(drawn) == 4


def test_on_a_narrow_terminal_the_line_is_cut_to_its_width(monkeypatch) -> None:
    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setenv("COLUMNS", "40")
    with console.Console():
        console.show("progress: " + "x" * 100)
    assert screen.getvalue() == console.CLEAR + "progress: " + "x" * 26 + "...\n"


def test_an_old_pickled_callback_works_after_setup(capsys) -> None:
    """Tune pickles the callback into tuner.pkl; a --resume gets back the object of the session
    that started the search, whose attributes are the constructor's."""
    line = ProgressLine(total=2, max_epochs=6, epochs=3, metric="val_mse", mode="min", asha=False)
    state = {k: v for k, v in vars(line).items() if not k.startswith("_")}
    restored = ProgressLine.__new__(ProgressLine)
    restored.__dict__.update(state)
    restored.setup()
    restored.on_step_end(0, trials()[:2])  # both finished in the session before
    restored.on_experiment_end(trials()[:2])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == out[1] and out[1].startswith("progress: 2/2 trials done (1 stopped early), 0 running, 4/6")


def test_after_an_interruption_no_last_line_claims_the_stopped_trials_done(capsys) -> None:
    """Tune stops the running trials as it ends after a signal, without announcing their end."""
    line = ProgressLine(total=3, max_epochs=9, epochs=3, metric="val_mse", mode="min", asha=False)
    ts = [trial("done", "TERMINATED", curve(9.0, 6.0, 5.0)), trial("cut", "RUNNING", curve(8.0))]
    line.on_step_end(0, ts)
    ts[1].set_status("TERMINATED")  # by Tune's clean-up, not by its end
    line.on_experiment_end(ts)
    assert capsys.readouterr().out.splitlines()[-1].startswith("progress: 1/3 trials done, 1 running")
