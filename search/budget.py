"""Budgets: upper bounds on what a configuration costs, known before it trains (parameters, GMACs per
sequence, from simvp_core.zoo's counters), so that a configuration over them is never trained.

Torch-free to import; counting builds the model on the meta device (simvp_core.zoo imports torch),
so torch is loaded only when a space declares a budget. Counts are cached per model configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search.space.spec import SearchSpec
    from simvp_core.config import TrainConfig

OVER_BUDGET = "over_budget"  # the study trial's user attr saying why it was never trained
# budget key -> (what it counts, in words; its unit as printed)
MEASURES = {"params_m": ("params", "M"), "gmacs": ("GMACs", "")}


class BudgetError(ValueError):
    """A budget nothing fits: one line naming the bound and the fix."""


def costs(cfg: TrainConfig) -> dict[str, float]:
    """What a configuration's model costs, by budget key: parameters in millions, GMACs per sequence."""
    from simvp_core.presets import resolve_model_config
    from simvp_core.zoo import model_cost

    params, gmacs = model_cost(resolve_model_config(cfg.preset, **cfg.model_overrides()))
    return {"params_m": params / 1e6, "gmacs": gmacs}


@dataclass(frozen=True)
class Budget:
    """A space's bounds, (key, upper bound) pairs, and the base its trials' values go over;
    picklable, so the searcher holding it resumes."""

    limits: tuple[tuple[str, float], ...]
    base: TrainConfig

    def cost(self, params: dict) -> dict[str, float]:
        """What the configuration of a trial's searched values costs (None: not applied)."""
        return costs(self.base.replace(**{k: v for k, v in params.items() if v is not None}))

    def excess(self, cost: dict[str, float]) -> dict[str, float]:
        """Each bound's relative excess, cost / bound - 1: > 0 over it, <= 0 within (Optuna's constraints)."""
        return {key: cost[key] / limit - 1 for key, limit in self.limits}

    def reason(self, cost: dict[str, float]) -> str:
        """Why a configuration is over budget ('params 46.77M > 10M'), or '' when it is within."""
        return "; ".join(f"{show(key, cost[key])} > {limit:.4g}{MEASURES[key][1]}"
                         for key, limit in self.limits if cost[key] > limit)

    def words(self) -> str:
        return words(self.limits)


def words(limits: Iterable[tuple[str, float]]) -> str:
    """Bounds as the plan and the report say them: 'params <= 10M, GMACs <= 5 per sequence'."""
    return ", ".join(f"{show(key, limit, '<=')}{' per sequence' if key == 'gmacs' else ''}"
                     for key, limit in limits)


def show(key: str, value: float, relation: str = "") -> str:
    """'params 46.77M', 'GMACs 16.47' (with `relation`: 'params <= 10M')."""
    name, unit = MEASURES[key]
    return f"{name} {relation + ' ' if relation else ''}{value:.4g}{unit}"


def of(spec: SearchSpec) -> Budget | None:
    """The space's budget, or None when it declares none."""
    return Budget(spec.budget, spec.base) if spec.budget else None


def filter_grid(spec: SearchSpec) -> SearchSpec:
    """A grid without its configurations over budget (kept in spec.over_budget with why, for the plan,
    experiment.json and the report); BudgetError when none is left. Other algorithms: unchanged."""
    from search.space.spec import expand

    budget = of(spec)
    if budget is None or spec.algorithm != "grid":
        return spec
    configs = list(spec.points_to_evaluate) or expand(spec.space)
    over = tuple((c, why) for c in configs if (why := budget.reason(budget.cost(c))))
    if len(over) == len(configs):
        raise BudgetError(f"{spec.path}: budget: all {len(configs)} grid configurations are over "
                          f"{budget.words()} (the first: {over[0][1]}); raise the budget or add smaller "
                          "configurations")
    kept = dataclasses.replace(spec, over_budget=over)
    return dataclasses.replace(kept, num_samples=len(kept.grid_points()))
