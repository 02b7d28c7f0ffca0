"""The searchers of optuna and random searches, as Tune drives them: Ray's OptunaSearch that tells
the study (optuna.db) what Tune saw, safe to resume; and seed repeats, each suggestion run
`repeats` times with seeds base.seed, base.seed + 1, ... (as a grid's repeats), the searcher
hearing one trial, the mean of its repeats."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import optuna
from ray.tune.search import Repeater, Searcher
from ray.tune.search.optuna import OptunaSearch

from search.metric import finite


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that tells the study what Tune saw: each epoch's metric as an intermediate
    value at step `epoch`, and the end as COMPLETE (all the trial's epochs), PRUNED (stopped early,
    by ASHA) or FAIL (errored or diverged, with user attr `fail_reason`). Safe to resume: the study
    (optuna.db) is ahead of Tune's snapshot after a killed driver, so an epoch told again keeps
    one value per step and an outcome told again is skipped."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs  # a trial's epochs unless it searches `epochs` itself
        self._steps: dict[str, set[int]] = {}  # the epochs told per trial (saved with the searcher)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value, epoch = result.get(self.metric), result.get("epoch")
        if trial_id in self._completed_trials or epoch is None or not finite(value):
            return  # a diverged epoch's NaN is no evidence; its reason is told at the end
        steps = self._steps.setdefault(trial_id, set())
        if int(epoch) in steps:
            return  # the first value told stays
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self._ot_trials[trial_id].report(float(value), int(epoch))
        steps.add(int(epoch))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            return
        if result:  # the last result reaches the searcher only here (Tune stops on it)
            self.on_trial_result(trial_id, result)
        trial = self._ot_trials[trial_id]
        state, value, reason = self.outcome(result or {}, error, trial.params)
        try:
            if reason:
                trial.set_user_attr("fail_reason", reason)
            self._ot_study.tell(trial, value, state=state, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told before the driver was killed, after Tune's last snapshot
        self._completed_trials.add(trial_id)

    def outcome(self, result: dict, error: bool, params: dict) -> tuple[Any, float | None, str]:
        """(state, value, fail_reason) of a trial that ended with `result` as its last report."""
        state = optuna.trial.TrialState
        epoch, value = int(result.get("epoch", 0)), result.get(self.metric)
        if error:
            return state.FAIL, None, "raised an error past its retries (the exception: the trial's error.txt)"
        if result.get("diverged"):
            return state.FAIL, None, str(result.get("error") or f"diverged in epoch {epoch}")
        if epoch < int(params.get("epochs", self._max_epochs)):
            return state.PRUNED, None, ""  # Optuna keeps the last intermediate value as its value
        if not finite(value):
            return state.FAIL, None, f"no finite {self.metric} at its last epoch {epoch}"
        return state.COMPLETE, float(value), ""



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


def _mean(values: Any) -> float:
    values = [float(v) for v in values if finite(v)]
    return sum(values) / len(values) if values else math.nan


__all__ = ["ResumableOptunaSearch", "SeedRepeater"]
