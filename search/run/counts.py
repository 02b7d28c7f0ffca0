"""A search's progress in counts and words: each trial's outcome, the counts over all trials
(done, stopped early, failed, running, trial-epochs spent of the plan's maximum, the best value so
far), the progress line with elapsed time and what remains, and the line a trial's end prints.

Pure and light (no Ray): the Tune callback that shows these while a search runs is
search.run.progress; search.status computes the same figures from the run folder (Tune's snapshot).
A trial is anything with Tune's Trial attributes: trial_id, status, config, last_result,
metric_analysis, num_failures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from search.metric import finite
from search.run.rows import FINISHED_STATES
from search.runfolder.results import STATUSES
from simvp_core.oneline import clip, duration

PERIOD_S = 10.0
ENDED = STATUSES  # the outcomes of results.parquet
FAILED = ("errored", "diverged")


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
    left: float | None  # seconds; None until this session has trained an epoch, and once all are done
    at_most: bool  # ASHA: the estimate counts every trial running to its last epoch


@dataclass(frozen=True)
class Tally:
    """What the trials say, before time enters: trials by outcome (ENDED, "running", "pending"),
    trial-epochs spent, and the best value so far with its trial."""

    outcomes: Counter
    epochs: int
    best: float | None
    best_trial: str

    @property
    def done(self) -> int:
        return sum(self.outcomes[o] for o in ENDED)


def outcome(trial: Any, epochs: int, ended: bool = False) -> str:
    """completed / stopped / errored / diverged once Tune will not run the trial again (or it is
    known to have `ended`), as results.parquet will say; else running or pending. `epochs`: the
    base configuration's, when the trial's config does not search them."""
    last = trial.last_result or {}
    if not (ended or trial.status in FINISHED_STATES):
        return "running" if trial.status == "RUNNING" else "pending"
    if last.get("diverged"):
        return "diverged"
    if trial.status == "ERROR":
        return "errored"
    return "stopped" if int(last.get("epoch", 0) or 0) < int(trial.config.get("epochs") or epochs) else "completed"


def tally(trials: Iterable[Any], epochs: int, metric: str, mode: str, ended: Collection[str] = ()) -> Tally:
    """Outcomes, trial-epochs and the best value of `trials` (`ended`: ids of trials whose end Tune
    announced before marking them TERMINATED)."""
    outcomes: Counter = Counter()
    spent, best, best_trial = 0, None, ""
    for t in trials:
        outcomes[outcome(t, epochs, t.trial_id in ended)] += 1
        spent += int((t.last_result or {}).get("epoch", 0) or 0)
        value = (t.metric_analysis.get(metric) or {}).get(mode)
        if finite(value) and (best is None or (value < best if mode == "min" else value > best)):
            best, best_trial = float(value), t.trial_id
    return Tally(outcomes, spent, best, best_trial)


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


def period(elapsed: float, first: float = PERIOD_S) -> float:
    """Seconds between progress lines printed one under another (not on a terminal): every
    `first` seconds at first, then a fifth of the time elapsed, at most 5 minutes apart, so that
    an hour's search prints about 30 of them, not 360."""
    return max(first, min(300.0, elapsed / 5))


def trial_line(trial: Any, result: str, done: int, total: int, metric: str, mode: str,
               detail: str = "") -> str:
    """What a trial's end prints, e.g. `trial 2f3a_00002 stopped early at epoch 3 (5/8 done):
    val_mse 141.1 (best 140.2), act=gelu lambda_gdl=0.79`; an error or divergence says its detail."""
    last = trial.last_result or {}
    epoch = int(last.get("epoch", 0) or 0)
    head = {"stopped": f"stopped early at epoch {epoch}",
            "errored": f"errored after epoch {epoch} and {trial.num_failures - 1} retries",
            "diverged": f"diverged in epoch {epoch}"}.get(result, result)
    if result in FAILED:
        return f"trial {trial.trial_id} {head} ({done}/{total} done): {' '.join(detail.split())[:200]}"
    value = last.get(metric)
    best = (trial.metric_analysis.get(metric) or {}).get(mode)
    shown = (f"{epoch} epochs, " if result == "completed" else "") + f"{metric} {_fmt(value)}" + (
        f" (best {_fmt(best)})" if finite(best) and best != value else "")
    return f"trial {trial.trial_id} {head} ({done}/{total} done): {shown}" + _params(trial.config)


def _params(config: dict[str, Any], limit: int = 160) -> str:
    """The trial's searched values, cut short past `limit` characters."""
    text = " ".join(f"{k}={_fmt(v)}" for k, v in config.items() if v is not None)
    return ", " + clip(text, limit) if text else ""


def _fmt(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, float) and not math.isnan(v) else str(v)


__all__ = ["Counts", "Tally", "tally", "outcome", "progress_line", "time_left", "period", "trial_line",
           "PERIOD_S", "ENDED"]
