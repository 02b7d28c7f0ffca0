"""One progress line on stdout while a search runs: trials done, stopped early and running,
trial-epochs spent of the plan's maximum, the best value so far, elapsed time and what remains.

`progress_line` formats it from counts (pure); `ProgressLine` is the Tune callback that counts
Tune's trials and prints it at most every PERIOD_S seconds and at each trial's end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from search.metric import finite
from search.run.rows import finished
from simvp_core.oneline import duration

if TYPE_CHECKING:
    from search.space import SearchSpec

PERIOD_S = 10.0


@dataclass(frozen=True)
class Counts:
    """What the line says; best is None until a trial reports a finite metric."""

    total: int
    done: int
    stopped: int
    failed: int
    running: int
    epochs: int
    max_epochs: int
    metric: str
    best: float | None
    best_trial: str
    elapsed: float
    left: float | None  # seconds; None until this session has trained an epoch
    at_most: bool  # ASHA: the estimate counts every trial running to its last epoch


def progress_line(c: Counts) -> str:
    """e.g. `progress: 3/8 trials done (1 stopped early), 2 running, 41/112 trial-epochs, best
    val_mse 134.1 (trial 2f3a_00002), 1 min 52 s elapsed, ~2 min 40 s left`."""
    ended = [f"{n} {what}" for n, what in ((c.stopped, "stopped early"), (c.failed, "failed")) if n]
    best = f"best {c.metric} {c.best:.4g} (trial {c.best_trial})" if c.best is not None else f"no {c.metric} yet"
    left = "" if c.left is None else f", {'at most ' if c.at_most else ''}~{duration(c.left, 'long')} left"
    return (f"progress: {c.done}/{c.total} trials done" + (f" ({', '.join(ended)})" if ended else "")
            + f", {c.running} running, {c.epochs}/{c.max_epochs} trial-epochs, {best}, "
            f"{duration(c.elapsed, 'long')} elapsed{left}")


def time_left(epochs: int, max_epochs: int, session_epochs: int, session_seconds: float) -> float | None:
    """Seconds for the trial-epochs left at this session's rate (None before its first epoch)."""
    if session_epochs <= 0 or session_seconds <= 0:
        return None
    return max(0, max_epochs - epochs) * session_seconds / session_epochs


class ProgressLine(Callback):
    """Tune callback printing progress_line; a resumed search counts the epochs of earlier sessions
    as spent and estimates from this session's rate."""

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
        self._ended: set[str] = set()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._shown >= self.period:
            self.show(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended.add(trial.trial_id)  # Tune marks it TERMINATED only once its actor stopped
        self.show(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.on_trial_complete(iteration, trials, trial)

    def show(self, trials: list) -> None:
        print(progress_line(self.counts(trials)), flush=True)
        self._shown = time.monotonic()

    def counts(self, trials: list) -> Counts:
        """Counts from Tune's trials (status, config, last result, best value per trial)."""
        done = stopped = failed = running = epochs = 0
        best, best_trial = None, ""
        for t in trials:
            last = t.last_result or {}
            epochs += int(last.get("epoch", 0) or 0)
            if finished(t) or t.trial_id in self._ended:
                done += 1
                if t.status == "ERROR" or last.get("diverged"):
                    failed += 1
                elif int(last.get("epoch", 0) or 0) < int(t.config.get("epochs") or self.epochs):
                    stopped += 1
            elif t.status == "RUNNING":
                running += 1
            value = (t.metric_analysis.get(self.metric) or {}).get(self.mode)
            if finite(value) and (best is None or (value < best if self.mode == "min" else value > best)):
                best, best_trial = float(value), t.trial_id
        if self._first_epochs is None:
            self._first_epochs = epochs
        elapsed = time.monotonic() - self._start
        left = 0.0 if done >= self.total else time_left(epochs, self.max_epochs, epochs - self._first_epochs,
                                                        elapsed)
        return Counts(self.total, done, stopped, failed, running, epochs, self.max_epochs, self.metric, best,
                      best_trial, elapsed, left, self.asha and done < self.total)


__all__ = ["ProgressLine", "progress_line", "Counts", "time_left", "PERIOD_S"]
