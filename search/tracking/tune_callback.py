"""The Tune callback that logs to MLflow as the search runs: a child run per trial as it starts,
its metrics per epoch as they arrive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

if TYPE_CHECKING:
    from search.tracking.tracker import Tracker

_ACTIVE: dict[str, Tracker] = {}


def register(key: str, tracker: Tracker) -> None:
    """Make a tracker reachable from TrialLogger callbacks created with the same key."""
    _ACTIVE[key] = tracker


class TrialLogger(Callback):
    """Tune pickles callbacks into its experiment state and, on resume, uses the unpickled copy;
    so the callback holds only a key and finds this process's Tracker through `register`."""

    def __init__(self, key: str):
        self.key = key

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tracker = _ACTIVE.get(self.key)
        if tracker:
            tracker.child(trial.trial_id, tracker.config_of(trial.config))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        tracker = _ACTIVE.get(self.key)
        if tracker:  # Tune's own keys (time, host, iteration ...) are not the trainer's metrics
            tracker.log_epoch(trial.trial_id, trial.config,
                              {k: v for k, v in result.items() if k not in AUTO_RESULT_KEYS})


__all__ = ["TrialLogger", "register"]
