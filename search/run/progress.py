"""What Tune shows while a search runs, through search.run.console: the live progress line
(search.run.counts' words), one line per trial's end (and per retry), and Tune's own status table,
which goes to search.log unless -v.

Tune pickles both objects into its tuner.pkl and a --resume gets them back from there, so they
keep no stream or setting of their own: each call asks the console of the session running now.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune import Callback

from search.run import console
from search.run.counts import FAILED, PERIOD_S, Counts, outcome, period, progress_line, tally, time_left, trial_line
from search.run.rows import error_message, finished

if TYPE_CHECKING:
    from search.space import SearchSpec

REDRAW_S = 1.0  # how often the line on a terminal is redrawn


class ProgressLine(Callback):
    """Tune callback: the progress line (redrawn in place on a terminal; otherwise printed every
    counts.period of the time elapsed) and a line at each trial's end. A resumed search counts
    the epochs of earlier sessions as spent and estimates from this session's rate."""

    def __init__(self, total: int, max_epochs: int, epochs: int, metric: str, mode: str, asha: bool,
                 period: float = PERIOD_S) -> None:
        self.total, self.max_epochs, self.epochs, self.asha, self.period = total, max_epochs, epochs, asha, period
        self.metric, self.mode = metric, mode
        self.setup()

    @classmethod
    def of(cls, spec: SearchSpec) -> ProgressLine:
        return cls(spec.total_trials(), spec.worst_case_epochs(), spec.base.epochs, spec.metric, spec.mode,
                   spec.scheduler == "asha")

    def setup(self, **info: Any) -> None:
        """Each fit (a new search or a resumed one) starts its own clock."""
        self._start, self._shown, self._first_epochs = time.monotonic(), -math.inf, None
        self._ended: set[str] = set()  # trials whose end Tune announced in this fit
        self._before: set[str] = set()  # trials finished before it (a resumed search)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._shown >= (REDRAW_S if console.live() else period(now - self._start, self.period)):
            self.show(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended.add(trial.trial_id)  # Tune marks it TERMINATED only once its actor stopped
        counts = self.counts(trials)
        result = outcome(trial, self.epochs, ended=True)
        detail = (str((trial.last_result or {}).get("error", "loss became NaN or infinite")) if result == "diverged"
                  else error_message(trial) if result == "errored" else "")
        console.say(trial_line(trial, result, counts.done, self.total, self.metric, self.mode, detail))
        if console.live():
            self.show(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.on_trial_complete(iteration, trials, trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = int((trial.last_result or {}).get("epoch", 0) or 0)
        console.say(f"trial {trial.trial_id} failed after epoch {epoch} ({error_message(trial)[:200]}); "
                    f"retrying from its last checkpoint (failure {trial.num_failures})")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """The last progress line, once every trial's end was announced; after an interruption
        Tune has stopped the others without a word, and the summary says what is left."""
        if all(t.trial_id in self._ended | self._before for t in trials if finished(t)):
            console.say(progress_line(self.counts(trials)))

    def show(self, trials: list) -> None:
        console.show(progress_line(self.counts(trials)))
        self._shown = time.monotonic()

    def counts(self, trials: list) -> Counts:
        """Counts from Tune's trials (status, config, last result, best value per trial)."""
        t = tally(trials, self.epochs, self.metric, self.mode, self._ended)
        if self._first_epochs is None:
            self._first_epochs = t.epochs
            self._before = {tr.trial_id for tr in trials if finished(tr)}
        elapsed = time.monotonic() - self._start
        left = None if t.done >= self.total else time_left(t.epochs, self.max_epochs, t.epochs - self._first_epochs,
                                                           elapsed)
        return Counts(self.total, t.done, t.outcomes["stopped"], sum(t.outcomes[o] for o in FAILED),
                      t.outcomes["running"], t.epochs, self.max_epochs, self.metric, t.best, t.best_trial, elapsed,
                      left, self.asha and t.done < self.total)


class StatusTable(tune.CLIReporter):
    """Tune's `== Status ==` table (the searched parameters and metrics of every trial), written
    to search.log, and on the console only with -v. CLIReporter prints through `_print`."""

    def _print(self, msg: str) -> None:
        console.library_text(msg)


__all__ = ["ProgressLine", "StatusTable", "REDRAW_S"]
