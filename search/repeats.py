"""Seed repeats for the searchers that suggest configurations (optuna, random): each suggestion
runs `repeats` times, with seeds base.seed, base.seed + 1, ... as a grid's repeats, and the
searcher hears one trial, the mean of its repeats."""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search import Repeater, Searcher


class SeedRepeater(Repeater):
    """Ray's Repeater that sets `seed` (not `__trial_index__`) and tells the wrapped searcher the
    repeats' mean at each epoch all of them reached and at the end; a configuration any repeat of
    which errored or diverged ends as that repeat did. Its state is saved with Tune's snapshot."""

    def __init__(self, searcher: Searcher, repeats: int, base_seed: int) -> None:
        super().__init__(searcher, repeat=repeats, set_index=False)
        self.base_seed = base_seed
        self._curves: dict[str, dict[int, dict[str, float]]] = {}  # primary id -> epoch -> trial -> value
        self._ends: dict[str, dict[str, tuple[dict, bool]]] = {}  # primary id -> trial -> (result, error)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if not isinstance(config, dict):
            return config
        index = list(self._trial_id_to_group[trial_id]._trials).index(trial_id)
        return {**config, "seed": self.base_seed + index}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        group, epoch, value = self._trial_id_to_group[trial_id], result.get("epoch"), result.get(self.metric)
        if epoch is None or not finite(value):
            return
        reached = self._curves.setdefault(group.primary_trial_id, {}).setdefault(int(epoch), {})
        reached[trial_id] = float(value)
        if len(reached) == self.repeat:
            self.searcher.on_trial_result(group.primary_trial_id,
                                          {"epoch": int(epoch), self.metric: _mean(reached.values())})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        group = self._trial_id_to_group[trial_id]
        ends = self._ends.setdefault(group.primary_trial_id, {})
        if trial_id in ends:
            return
        if result:  # the last result reaches the searcher only here (Tune stops on it)
            self.on_trial_result(trial_id, result)
        ends[trial_id] = (dict(result or {}), error)
        if len(ends) == self.repeat:
            merged, failed = self.merge([ends[t] for t in group._trials])
            self.searcher.on_trial_complete(group.primary_trial_id, result=merged, error=failed)

    def merge(self, ends: list[tuple[dict, bool]]) -> tuple[dict, bool]:
        """The configuration's last result (mean metric, fewest epochs) and error flag, from its
        repeats' in seed order: the first that errored or diverged decides, naming its seed."""
        epoch = min(int(r.get("epoch", 0)) for r, _ in ends)
        for i, (result, error) in enumerate(ends):
            if error:
                return {"epoch": epoch}, True
            if result.get("diverged"):
                reason = result.get("error") or "diverged"
                return {"epoch": epoch, "diverged": 1.0, "error": f"seed {self.base_seed + i}: {reason}"}, False
        return {"epoch": epoch, self.metric: _mean(r.get(self.metric) for r, _ in ends)}, False


def finite(value: Any) -> bool:
    """A number that is neither NaN nor infinite (None and text are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _mean(values: Any) -> float:
    values = [float(v) for v in values if finite(v)]
    return sum(values) / len(values) if values else math.nan


__all__ = ["SeedRepeater", "finite"]
