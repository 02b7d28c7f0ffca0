"""The searchers of optuna and random searches, as Tune drives them: Ray's OptunaSearch that tells
the study (optuna.db) what Tune saw, safe to resume; and seed repeats, each suggestion run
`repeats` times with seeds base.seed, base.seed + 1, ... (as a grid's repeats), the searcher
hearing one trial, the mean of its repeats."""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any

import optuna
from ray.tune.search import Repeater, Searcher
from ray.tune.search.optuna import OptunaSearch

from search.budget import OVER_BUDGET, Budget
from search.metric import finite

MAX_OVER_BUDGET = 100  # configurations over budget in a row before the searcher gives up asking


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that tells the study what Tune saw: each epoch's metric as an intermediate
    value at step `epoch`, and the end as COMPLETE (all the trial's epochs), PRUNED (stopped early,
    by ASHA) or FAIL (errored or diverged, with user attr `fail_reason`). Safe to resume: the study
    (optuna.db) is ahead of Tune's snapshot after a killed driver, so an epoch told again keeps
    one value per step and an outcome told again is skipped.

    With a budget, each configuration is costed before Tune sees it: its relative excess over each
    bound is the trial's Optuna constraint (feasible <= 0, what TPE reads), and one over budget is
    told PRUNED with user attr `over_budget` (why), never trained, and the study asked again."""

    def __init__(self, *args: Any, max_epochs: int, budget: Budget | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs  # a trial's epochs unless it searches `epochs` itself
        self._steps: dict[str, set[int]] = {}  # the epochs told per trial (saved with the searcher)
        self._budget = budget

    def seed(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        """Finished trials of earlier searches into the study (warm start), before the first suggestion."""
        self._ot_study.add_trials(trials)

    def suggest(self, trial_id: str) -> dict | str | None:
        """The study's next configuration within budget; FINISHED (said once) after MAX_OVER_BUDGET
        over-budget ones in a row, when the space has next to nothing inside its budget."""
        for _ in range(MAX_OVER_BUDGET):
            config = super().suggest(trial_id)
            if self._budget is None or not isinstance(config, dict) or self._within_budget(trial_id, config):
                return config
        print(f"budget: {MAX_OVER_BUDGET} configurations in a row were over {self._budget.words()}; "
              "the search asks for no more trials (raise the budget or narrow the space)", file=sys.stderr)
        return Searcher.FINISHED

    def _within_budget(self, trial_id: str, config: dict) -> bool:
        """Cost the configuration and tell the study; one over budget is told PRUNED and dropped."""
        trial = self._ot_trials[trial_id]
        cost = self._budget.cost(config)
        for key, value in cost.items():
            trial.set_user_attr(key, value)
        for key, excess in self._budget.excess(cost).items():
            trial.set_constraint(key, excess)
        reason = self._budget.reason(cost)
        if not reason:
            return True
        trial.set_user_attr(OVER_BUDGET, reason)
        self._ot_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        del self._ot_trials[trial_id]
        return False

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
