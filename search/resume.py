"""Continuing a search whose driver was killed: what may be resumed, Tune's restored state, and
the Optuna trials and MLflow runs that the kill left behind.

Ray and Optuna are imported only inside the functions that need them: the planner checks a
resume through this module before anything starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from search import layout

if TYPE_CHECKING:
    from search.plan import Plan
    from search.space import SearchSpec
    from search.tracking import Tracker

DONE_STATES = ("TERMINATED", "ERROR")  # Tune trial states that will not run again


def space_hash(spec: SearchSpec) -> str:
    """A fingerprint of what the space file asks for: a resumed search must ask the same."""
    text = json.dumps(spec.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def previous_search(run_dir: Path, tune_path: str) -> dict[str, Any] | None:
    """experiment.json of the search to resume; None when there is nothing to resume (no
    experiment.json, or no Tune state at tune_path)."""
    from ray import tune

    if not (run_dir / layout.EXPERIMENT_FILE).is_file() or not tune.Tuner.can_restore(tune_path):
        return None
    return layout.read_experiment(run_dir)


def same_space(previous: dict[str, Any], spec: SearchSpec) -> bool:
    """Whether the space asks for what the previous session was started with."""
    return previous.get("space_hash") in (None, space_hash(spec))


def tune_trials(plan: Plan) -> list:
    """Tune's record of every trial (status, failures, last result, latest checkpoint)."""
    from ray import tune

    analysis = tune.ExperimentAnalysis(plan.tune_path, default_metric=plan.spec.metric,
                                       default_mode=plan.spec.mode)
    return list(analysis.trials)


def unfinished(trials: list) -> list:
    """The trials a resumed search would still run."""
    return [t for t in trials if t.status not in DONE_STATES]


def restore_tuner(plan: Plan, trainable: Callable, param_space: dict[str, Any]) -> Any:
    """The interrupted Tuner, searcher and scheduler state included; the Optuna study first
    loses the trials that no Tune trial will report on."""
    from ray import tune

    if plan.spec.algorithm in layout.OPTUNA_ALGORITHMS:
        release_orphan_optuna_trials(plan, [t.config for t in unfinished(tune_trials(plan))])
    return tune.Tuner.restore(plan.tune_path, trainable, resume_errored=True, param_space=param_space)


def release_orphan_optuna_trials(plan: Plan, live_configs: list[dict[str, Any]]) -> None:
    """Optuna trials asked for after Tune's last state snapshot (a killed driver) belong to no
    Tune trial and would stay RUNNING for ever: mark them FAIL, and queue a listed point among
    them again so it is still evaluated. live_configs: the configs of Tune's unfinished trials."""
    import optuna

    running = optuna.trial.TrialState.RUNNING
    study = optuna.load_study(study_name=plan.name, storage=plan.optuna_url)
    live = list(live_configs)
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        if trial.params in live:
            live.remove(trial.params)
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if live_configs and "fixed_params" in trial.system_attrs:
            study.enqueue_trial(trial.system_attrs["fixed_params"])


def delete_lost_runs(tracker: Tracker, kept: set[str]) -> None:
    """MLflow child runs of trials Tune no longer knows: started just before the driver was
    killed, after Tune's last state snapshot (their configurations ran again as new trials)."""
    for trial_id in sorted(set(tracker.children()) - kept):
        tracker.delete_child(trial_id, "lost: the driver was killed before Tune recorded this trial")


__all__ = ["space_hash", "previous_search", "same_space", "tune_trials", "unfinished", "restore_tuner",
           "release_orphan_optuna_trials", "delete_lost_runs", "DONE_STATES"]
