"""The define-by-run space Optuna samples from (the grid's points are SearchSpec.grid_points).

The same OptunaSpace serves algorithm optuna (TPE) and random (Optuna's RandomSampler), so both
honour `when` conditions and points_to_evaluate alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from search.space.spec import Param, SearchSpec


@dataclass(frozen=True)
class OptunaSpace:
    """Define-by-run Optuna space: suggests each param in file order, conditional ones only when they
    apply. A module-level class, not a closure, so Ray can pickle the searcher for resume."""

    space: tuple[Param, ...]

    def __call__(self, trial: optuna.Trial) -> dict | None:
        chosen: dict[str, Any] = {}
        for p in self.space:
            if not p.applies(chosen):
                continue
            if p.kind in ("grid", "choice"):
                chosen[p.name] = trial.suggest_categorical(p.name, list(p.values))
            elif p.kind == "int":
                chosen[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1))
            else:
                chosen[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step,
                                                     log=p.kind == "loguniform")
        return None


def distribution(p: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution OptunaSpace suggests `p` from: what a trial seeded into the study
    (warm start) must declare for TPE to read it beside the sampled ones."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.kind in ("grid", "choice"):
        return CategoricalDistribution(list(p.values))
    if p.kind == "int":
        return IntDistribution(int(p.low), int(p.high), step=int(p.step or 1))
    return FloatDistribution(p.low, p.high, step=p.step, log=p.kind == "loguniform")


def optuna_space(spec: SearchSpec) -> OptunaSpace:
    """The define-by-run function for OptunaSearch (picklable), for algorithm optuna or random."""
    return OptunaSpace(spec.space)
