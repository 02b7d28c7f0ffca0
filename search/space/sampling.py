"""From the params to trials: the grid's points, and the define-by-run space Optuna samples from.

The same OptunaSpace serves algorithm optuna (TPE) and random (Optuna's RandomSampler), so both
honour `when` conditions and points_to_evaluate alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from search.space.spec import Param, SearchSpec


def expand(space: tuple[Param, ...]) -> list[dict[str, Any]]:
    """The cartesian product in file order (first param slowest); a param whose condition fails is left out."""
    points: list[dict[str, Any]] = [{}]
    for p in space:
        points = [new for pt in points
                  for new in ([{**pt, p.name: v} for v in p.values] if p.applies(pt) else [pt])]
    return unique(points)


def unique(items: list) -> list:
    """The items in order, each once (values may be dicts); hashed where possible, so linear."""
    seen: set = set()
    out: list = []
    for x in items:
        try:
            key = frozenset(x.items()) if isinstance(x, dict) else x
            if key in seen:
                continue
            seen.add(key)
        except TypeError:  # unhashable: compared with the ones kept so far
            if x in out:
                continue
        out.append(x)
    return out


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


def optuna_space(spec: SearchSpec) -> OptunaSpace:
    """The define-by-run function for OptunaSearch (picklable), for algorithm optuna or random."""
    return OptunaSpace(spec.space)
