"""SearchSpec and Param: a validated space file, frozen; what the runner launches and the report reads."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from search.runfolder.checkpoints import DEFAULT_KEEP
from search.space.index import SameIndex, plain, same
from search.space.schema import VALUE_KINDS
from simvp_core.config import FIELD_TYPES, TrainConfig

UNSET = object()  # a value no param takes: 'not in this point'
RESUMABLE = ("keep_checkpoints",)  # what a --resume may change: it does not change what is searched


@dataclass(frozen=True)
class Param:
    """One searched TrainConfig field. A `when` value that is a tuple means 'any of these values'."""

    name: str
    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    when: tuple[tuple[str, Any], ...] = ()

    def applies(self, params: dict[str, Any]) -> bool:
        """Whether this param is used for a trial whose other searched values are `params`."""
        return all(params.get(name, UNSET) in as_tuple(allowed) for name, allowed in self.when)

    @cached_property
    def index(self) -> SameIndex:
        """The positions of `values` by `same`: each lookup O(log n), whatever the list's length."""
        return SameIndex(self.values)

    def contains(self, value: Any) -> bool:
        """Whether `value` (already of the field's type) is one this param can take."""
        if self.kind in VALUE_KINDS:
            return self.index.rows(value) != 0
        if not self.low <= value <= self.high:
            return False
        return self.step is None or on_step(value, self.low, self.step)

    def to_dict(self) -> dict[str, Any]:
        """The param as the space file writes it."""
        body: dict[str, Any] = {self.kind: list(self.values) if self.kind in VALUE_KINDS else [self.low, self.high]}
        if self.step is not None:
            body["step"] = self.step
        if self.when:
            body["when"] = {n: list(v) if isinstance(v, tuple) else v for n, v in self.when}
        return body


@dataclass(frozen=True)
class SearchSpec:
    """A validated space file. grid_points() and trial_config() are what the runner launches."""

    path: str
    experiment: str
    description: str
    base: TrainConfig
    space: tuple[Param, ...]
    algorithm: str
    num_samples: int
    seed: int
    points_to_evaluate: tuple[dict, ...]
    scheduler: str
    grace_period: int
    reduction_factor: int
    max_epochs: int
    metric: str
    mode: str
    repeats: int
    cpu: float
    gpu: float
    max_failures: int
    blocks: tuple[str, ...]
    published: tuple[dict, ...]
    sample_fallback: bool = False  # MNIST cannot be fetched: run on the bundled sample (labelled)
    keep_checkpoints: str = DEFAULT_KEEP  # the trial checkpoints kept when the search finishes
    budget: tuple[tuple[str, float], ...] = ()  # (key, upper bound): params_m, gmacs (search.budget)
    over_budget: tuple[tuple[dict, str], ...] = ()  # grid configurations over it, with why (never trained)
    warm_start: tuple[str, ...] = ()  # earlier searches whose completed trials seed the study

    @property
    def names(self) -> tuple[str, ...]:
        """The searched parameter names, in file order."""
        return tuple(p.name for p in self.space)

    @property
    def searched(self) -> list[str]:
        """The TrainConfig fields the trials vary: the params, and `seed` when configurations repeat."""
        names = list(self.names)
        if self.repeats > 1 and "seed" not in names:
            names.append("seed")
        return names

    def trial_config(self, params: dict[str, Any]) -> TrainConfig:
        """Base plus one trial's values; None means 'not applied' (a condition failed) and is dropped."""
        unknown = [name for name in params if name not in FIELD_TYPES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a TrainConfig field; searched: {', '.join(self.names)}")
        return self.base.replace(**{k: v for k, v in params.items() if v is not None})

    def grid_points(self) -> list[dict[str, Any]]:
        """Grid: every configuration (the product, or the listed points) times repeats; else the listed points."""
        configs = list(self.points_to_evaluate)
        if self.algorithm == "grid" and not configs:
            configs = expand(self.space)
        if self.over_budget:
            configs = [c for c in configs if not any(c == skipped for skipped, _ in self.over_budget)]
        if self.repeats == 1:
            return [dict(c) for c in configs]
        return [{**c, "seed": self.base.seed + r} for r in range(self.repeats) for c in configs]

    def total_trials(self) -> int:
        """Tune trials: the grid's points (repeats included), or num_samples x repeats."""
        return len(self.grid_points()) if self.algorithm == "grid" else self.num_samples * self.repeats

    def worst_case_epochs(self) -> int:
        """Trial-epochs if no trial is stopped early: what the search costs at most."""
        if self.algorithm == "grid":
            return sum(self.trial_config(p).epochs for p in self.grid_points())
        return self.total_trials() * self.max_epochs

    def to_dict(self) -> dict[str, Any]:
        """The space file's content, normalised: parse_space(spec.to_dict(), spec.path) == spec."""
        default = TrainConfig()
        search: dict[str, Any] = {"algorithm": self.algorithm, "seed": self.seed,
                                  "points_to_evaluate": [dict(p) for p in self.points_to_evaluate]}
        if self.algorithm != "grid":
            search["num_samples"] = self.num_samples
        scheduler: dict[str, Any] = {"type": self.scheduler}
        if self.scheduler == "asha":
            scheduler.update(grace_period=self.grace_period, reduction_factor=self.reduction_factor,
                             max_epochs=self.max_epochs)
        return {
            "experiment": self.experiment, "description": self.description,
            "base": {k: v for k, v in self.base.to_dict().items() if getattr(default, k) != v},
            "space": {p.name: p.to_dict() for p in self.space},
            "search": search, "scheduler": scheduler, "metric": self.metric, "repeats": self.repeats,
            "resources": {"cpu": self.cpu, "gpu": self.gpu}, "max_failures": self.max_failures,
            "blocks": list(self.blocks),
            "published": [{**row, "match": dict(row["match"])} for row in self.published],
            "sample_fallback": self.sample_fallback, "keep_checkpoints": self.keep_checkpoints,
            # only when given, so the fingerprint of a space without them is what it always was
            **({"budget": dict(self.budget)} if self.budget else {}),
            **({"warm_start": list(self.warm_start)} if self.warm_start else {}),
        }

    def fingerprint(self) -> str:
        """What the space file asks for, hashed: a resumed search must ask the same (RESUMABLE aside)."""
        asked = {k: v for k, v in self.to_dict().items() if k not in RESUMABLE}
        text = json.dumps(asked, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def matches(match: dict[str, Any], config: Any) -> bool:
    """Whether a configuration (a TrainConfig, or a mapping such as a results row) has every value
    of a published row's `match`: the one rule the space's checks and the report's tables share."""
    get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k))
    return all(same(plain(get(k)), v) for k, v in match.items())


def show_when(when: tuple[tuple[str, Any], ...]) -> str:
    """A condition as the plan and the errors print it: 'preset in [a, b] and act=starrelu'."""
    return " and ".join(f"{n} in {list(v)}" if isinstance(v, tuple) else f"{n}={v}" for n, v in when)


def as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def on_step(value: float, origin: float, step: float) -> bool:
    k = (value - origin) / step
    return math.isclose(k, round(k), abs_tol=1e-9)
