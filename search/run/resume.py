"""Continuing a search whose driver was killed: Tune's restored state, and the Optuna trials and
MLflow runs that the kill left behind. (Whether a run folder may be resumed at all is the plan's
check, search.run.plan.) Ray and Optuna are imported only inside the functions that need them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from search import runfolder
from search.run.rows import finished

if TYPE_CHECKING:
    from search.run.plan import Plan
    from search.tracking import Tracker

ORPHAN_REASON = "orphaned: the driver was killed before Tune recorded this trial; never trained"


def tune_trials(plan: Plan) -> list:
    """Tune's record of every trial (status, failures, last result, latest checkpoint)."""
    from ray import tune

    analysis = tune.ExperimentAnalysis(plan.tune_path, default_metric=plan.spec.metric,
                                       default_mode=plan.spec.mode)
    return list(analysis.trials)


def unfinished(trials: list) -> list:
    """The trials a resumed search would still run."""
    return [t for t in trials if not finished(t)]


def restore_tuner(plan: Plan, trainable: Callable, param_space: dict[str, Any]) -> Any:
    """The interrupted Tuner, searcher and scheduler state included; then (once Tune's state has
    been read: a damaged one changes nothing) the Optuna study loses the trials that no Tune trial
    will report on."""
    from ray import tune

    tuner = tune.Tuner.restore(plan.tune_path, trainable, resume_errored=True, param_space=param_space)
    if plan.spec.algorithm in runfolder.OPTUNA_ALGORITHMS:
        release_orphan_optuna_trials(plan, live_configs(tune_trials(plan), plan.spec.repeats))
    return tuner


def live_configs(trials: list, repeats: int) -> list[dict[str, Any]]:
    """The study params of each study trial Tune will still tell: one per unfinished trial, or with
    repeats (one study trial per group of `repeats` Tune trials, `seed` not in the study) one per
    group with a repeat left to run or still to be created."""
    if repeats == 1:
        return [t.config for t in unfinished(trials)]
    groups: dict[str, tuple[dict[str, Any], int, int]] = {}  # config key -> (params, trials, done)
    for t in trials:
        params = {k: v for k, v in t.config.items() if k != "seed"}
        key = json.dumps(params, sort_keys=True, default=str)
        _, n, done = groups.get(key, (params, 0, 0))
        groups[key] = (params, n + 1, done + finished(t))
    live = []
    for params, n, done in groups.values():
        left = math.ceil(n / repeats) * repeats - done  # repeats not yet done, created or not
        live += [params] * math.ceil(left / repeats)
    return live


def release_orphan_optuna_trials(plan: Plan, live_configs: list[dict[str, Any]]) -> None:
    """Optuna trials asked for after Tune's last state snapshot (a killed driver) belong to no
    Tune trial and would stay RUNNING for ever: mark them FAIL, and queue a listed point among
    them again so it is still evaluated. live_configs: the configs of Tune's unfinished trials, in
    the study's params (the repeats of one configuration share one study trial)."""
    import optuna

    running = optuna.trial.TrialState.RUNNING
    study = optuna.load_study(study_name=plan.name, storage=runfolder.optuna_url(plan.run_dir))
    live = list(live_configs)
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        if trial.params in live:
            live.remove(trial.params)
            continue
        orphan = optuna.trial.Trial(study, trial._trial_id)  # a RUNNING trial, as ask() returns it
        orphan.set_user_attr("fail_reason", ORPHAN_REASON)
        study.tell(orphan, state=optuna.trial.TrialState.FAIL)
        if live_configs and "fixed_params" in trial.system_attrs:
            study.enqueue_trial(trial.system_attrs["fixed_params"])


def delete_lost_runs(tracker: Tracker, kept: set[str]) -> None:
    """MLflow child runs of trials Tune no longer knows: started just before the driver was
    killed, after Tune's last state snapshot (their configurations ran again as new trials)."""
    for trial_id in sorted(set(tracker.children()) - kept):
        tracker.delete_child(trial_id, "lost: the driver was killed before Tune recorded this trial")


__all__ = ["tune_trials", "unfinished", "live_configs", "restore_tuner", "release_orphan_optuna_trials",
           "delete_lost_runs", "ORPHAN_REASON"]
