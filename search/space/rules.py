"""The rules that span keys, checked once the schema holds: kinds, conditions, points, budgets, models.

Each rule is a small function that raises SpaceError with the key and what would fix it.
"""

from __future__ import annotations

from typing import Any

from search.space.errors import SpaceError
from search.space.index import RowIndex, SameIndex, same
from search.space.limits import brief, cap_hint, grid_size, max_trials
from search.space.schema import (
    BUDGET_KEYS,
    KINDS,
    PUBLISHED_VALUES,
    RANGE_KINDS,
    VALUE_KINDS,
    Budget,
    Published,
    Scheduler,
    Search,
    given_values,
)
from search.space.spec import Param, SearchSpec, expand, on_step, show_when
from simvp_core.config import TrainConfig, did_you_mean
from simvp_core.oneline import clip
from simvp_core.presets import resolve_model_config


def model_builds(cfg: TrainConfig, key: str, label: str = "") -> None:
    """The configuration builds a model (e.g. incepu needs n_t >= 2)."""
    try:
        resolve_model_config(cfg.preset, **cfg.model_overrides())
    except (ValueError, TypeError) as e:
        raise SpaceError(key, f"{label}{e}", "a model configuration build_model accepts") from None


def not_fixed(name: str, fixed: set[str]) -> None:
    """A field is either fixed in base or searched, never both."""
    if name in fixed:
        raise SpaceError(f"space.{name}", f"{name} is also fixed in base",
                         f"{name} either in base or in space, not both")


def one_kind(name: str, body: Any, algorithm: str) -> str:
    """Exactly one kind per param, and one the algorithm can use."""
    key = f"space.{name}"
    kinds = [k for k in KINDS if getattr(body, k, None) is not None]
    if len(kinds) != 1:
        raise SpaceError(key, "no kind given" if not kinds else f"two kinds given ({', '.join(kinds)})",
                         f"exactly one of {', '.join(KINDS)}, e.g. {{uniform: [0.0, 1.0]}}")
    kind = kinds[0]
    if kind == "grid" and algorithm != "grid":
        raise SpaceError(key, f"kind grid only exists for algorithm grid (this search uses {algorithm})",
                         "choice: [...] for optuna/random")
    if kind in RANGE_KINDS and algorithm == "grid":
        raise SpaceError(key, f"a {kind} range cannot be enumerated by algorithm grid",
                         "grid: [...] values, or search.algorithm optuna/random")
    return kind


def distinct(key: str, values: list) -> None:
    """Each value of a grid or choice once, and no more values than a search may have trials;
    indexed (SameIndex), so a long list is checked in linear time."""
    if len(values) > max_trials():
        raise SpaceError(key, f"{len(values):,} values, more than the trial cap", cap_hint())
    index = SameIndex(values)
    for i, value in enumerate(values):
        if index.first(value) != i:
            raise SpaceError(f"{key}[{i}]", f"duplicate value {brief(value)}", "each value once")


def ordered_range(key: str, kind: str, low: float, high: float) -> None:
    """low < high, and low > 0 on a log scale."""
    if low >= high:
        raise SpaceError(key, f"low {low} >= high {high}", "low < high (for a single value use choice: [v])")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{key}.low", f"loguniform needs low > 0, got {low}", "a positive low bound (or uniform)")


def step_fits(key: str, kind: str, step: float | None, low: Any = None, high: Any = None) -> float | int | None:
    """A step only quantises uniform or int ranges, and divides both bounds; an int range's step is whole."""
    if step is None:
        return None
    if kind in VALUE_KINDS or kind == "loguniform":
        raise SpaceError(f"{key}.step", f"step does not apply to {kind}", "step only with uniform or int")
    if kind == "int":
        if not step.is_integer():
            raise SpaceError(f"{key}.step", f"got {step!r}", "an integer >= 1 for an int range")
        step = int(step)
    if not (on_step(low, 0, step) and on_step(high, 0, step)):
        raise SpaceError(f"{key}.step", f"low {low} and high {high} are not multiples of step {step}",
                         "a step > 0 that divides both bounds")
    return step


def conditions(name: str, raw: dict[str, Any] | None, earlier: dict[str, Param]) -> tuple[tuple[str, Any], ...]:
    """`when` refers to grid/choice params declared above, by values they take."""
    out = []
    for ref, allowed in (raw or {}).items():
        key = f"space.{name}.when.{ref}"
        if ref not in earlier:
            raise SpaceError(key, f"{ref!r} is not a param declared above in space",
                             f"a grid/choice param listed before this one ({', '.join(earlier) or 'none yet'})")
        param = earlier[ref]
        if param.kind not in VALUE_KINDS:
            raise SpaceError(key, f"{ref} is a {param.kind} param (equality on it is meaningless)",
                             "a condition on a grid or choice param")
        items = allowed if isinstance(allowed, list) else [allowed]
        if not items:
            raise SpaceError(key, "empty list", f"one or more of {clip(list(param.values), 120)}")
        taken = []
        for item in items:
            position = param.index.first(item)
            if position is None:
                raise SpaceError(key, f"{ref} never takes {brief(item)}",
                                 f"one or more of {clip(list(param.values), 120)}")
            taken.append(param.values[position])
        out.append((ref, tuple(taken) if isinstance(allowed, list) else taken[0]))
    return tuple(out)


def repeats_fit(repeats: int, algorithm: str, scheduler: str, space: tuple[Param, ...]) -> None:
    """Seed repeats with any algorithm, never with seed searched too, nor with ASHA under a sampler
    (it would stop some seeds of a configuration and not others: the study's mean would be unfair)."""
    if repeats == 1:
        return
    if any(p.name == "seed" for p in space):
        raise SpaceError("repeats", "seed is searched and repeated at once",
                         "either seed in space or repeats > 1 (repeats use base.seed, base.seed + 1, ...)")
    if scheduler == "asha" and algorithm != "grid":
        raise SpaceError("repeats", f"repeats {repeats} with asha and {algorithm}: ASHA would stop some "
                         "seeds of a configuration and not others, so the study would get no fair mean",
                         "repeats: 1 with asha, or scheduler type none with repeats")


def trial_budget(search: Search, repeats: int, space: tuple[Param, ...]) -> None:
    """At most max_trials() trials, counted without building the grid: its points (the product, or
    the listed ones) times repeats, or num_samples times repeats and the listed points for optuna / random."""
    cap, listed = max_trials(), len(search.points_to_evaluate)
    if search.algorithm != "grid":
        if search.num_samples is not None and search.num_samples * repeats > cap:
            times = f" x repeats {repeats} = {search.num_samples * repeats:,} trials" if repeats > 1 else ""
            raise SpaceError("search.num_samples",
                             f"{search.num_samples:,} samples{times} is over the trial cap", cap_hint())
        if listed > cap:
            raise SpaceError("search.points_to_evaluate", f"{listed:,} points is over the trial cap", cap_hint())
        return
    if listed:
        size, exact, what = listed, True, f"{listed:,} listed points"
        key = "search.points_to_evaluate"
    else:
        size, exact = grid_size(space)
        what = f"a grid of {'' if exact else 'at most '}{size:,} points ({len(space)} params)"
        key = "space"
    total = size * repeats
    if total > cap:
        times = f" x repeats {repeats} = {'' if exact else 'at most '}{total:,} trials" if repeats > 1 else ""
        raise SpaceError(key, f"{what}{times} is over the trial cap", cap_hint())


def points(search: Search, space: tuple[Param, ...], base: TrainConfig) -> tuple[dict, ...]:
    """points_to_evaluate: inside the space, conditions met, complete on a grid, distinct, buildable."""
    by_name = {p.name: p for p in space}
    out: list[dict] = []
    seen: dict[frozenset, int] = {}  # a point's items -> its index (dict equality, hashed)
    for i, point in enumerate(search.points_to_evaluate):
        key = f"search.points_to_evaluate[{i}]"
        given = given_values(point)
        if not given:
            raise SpaceError(key, "empty point", "a mapping {param: value}")
        for name, value in given.items():
            if name not in by_name:
                raise SpaceError(f"{key}.{name}", "not a searched param" + did_you_mean(name, by_name),
                                 f"one of the space's params: {', '.join(by_name) or '(space is empty)'}")
            in_space(by_name[name], value, f"{key}.{name}")
        for param in space:  # file order, conditions checked against the point's own values
            if param.name in given and not param.applies(given):
                raise SpaceError(f"{key}.{param.name}", f"{param.name} applies only when {show_when(param.when)}",
                                 f"{param.name} left out of this point, or the point's values meeting its condition")
            if search.algorithm == "grid" and param.name not in given and param.applies(given):
                raise SpaceError(key, f"missing {param.name}",
                                 "a value for every searched param that applies (grid points are exact)")
        ordered = {p.name: given[p.name] for p in space if p.name in given}
        seen_key = frozenset(ordered.items())
        if seen_key in seen:
            raise SpaceError(key, f"duplicate of point {seen[seen_key]}", "each point once")
        model_builds(base.replace(**ordered), key)
        seen[seen_key] = len(out)
        out.append(ordered)
    return tuple(out)


def in_space(param: Param, value: Any, key: str) -> None:
    """A value this param can take: one of its values, or inside its range (on its step)."""
    if not param.contains(value):
        expected = (f"one of {clip(list(param.values), 120)}" if param.kind in VALUE_KINDS else
                    f"a value in [{param.low}, {param.high}]" + (f" on step {param.step}" if param.step else ""))
        raise SpaceError(key, f"got {brief(value)}, outside the space of {param.name}", expected)


def samples(search: Search, space: tuple[Param, ...], points: tuple[dict, ...]) -> int:
    """num_samples: none on a grid (its size is its points); else at least the listed points."""
    if search.algorithm == "grid":
        if search.num_samples is not None:
            raise SpaceError("search.num_samples", "a grid runs every grid point",
                             "no num_samples with algorithm grid (the grid's size is the number of trials)")
        return 0
    if not space:
        raise SpaceError("space", f"nothing to search with {search.algorithm}",
                         "at least one param (or algorithm grid to run the base configuration)")
    least = max(1, len(points))
    if search.num_samples is None or search.num_samples < least:
        got = "missing" if search.num_samples is None else f"must be >= {least}, got {search.num_samples}"
        raise SpaceError("search.num_samples", got, f"an integer >= {least} (the listed points count towards it)")
    return search.num_samples


def schedule(raw: Scheduler, base: TrainConfig, space: tuple[Param, ...]) -> tuple[str, int, int, int]:
    """(type, grace_period, reduction_factor, max_epochs); ASHA needs epochs fixed and equal to its budget."""
    epochs = next((p for p in space if p.name == "epochs"), None)
    options = {k: getattr(raw, k) for k in ("grace_period", "reduction_factor", "max_epochs")}
    if raw.type == "none":
        for k, v in options.items():
            if v is not None:
                raise SpaceError(f"scheduler.{k}", "only used by type asha", f"no {k} with type none (or type asha)")
        longest = base.epochs if epochs is None else int(max(epochs.values or (epochs.high,)))
        return "none", longest, 1, longest
    if epochs is not None:
        raise SpaceError("scheduler.type", "asha stops trials by epoch, but epochs is searched (each value has "
                         "its own OneCycle schedule, so early epochs are not comparable)",
                         "type none, or epochs fixed in base as ASHA's budget")
    max_epochs = base.epochs if options["max_epochs"] is None else options["max_epochs"]
    if max_epochs != base.epochs:
        raise SpaceError("scheduler.max_epochs", f"{max_epochs} differs from base.epochs {base.epochs} "
                         "(the OneCycle schedule is set by epochs)", f"max_epochs: {base.epochs} or left out")
    grace = max(1, max_epochs // 10) if options["grace_period"] is None else options["grace_period"]
    if grace > max_epochs:
        raise SpaceError("scheduler.grace_period", f"{grace} > max_epochs {max_epochs}",
                         f"an integer in [1, {max_epochs}]")
    return "asha", grace, options["reduction_factor"] or 3, max_epochs


def gpu_share(gpu: float) -> None:
    """A trial's GPUs: a fraction of one, or whole GPUs."""
    if gpu > 1 and not float(gpu).is_integer():
        raise SpaceError("resources.gpu", f"got {gpu:g}",
                         "0, a fraction in (0, 1] (0.25 packs 4 trials per GPU) or a whole number")


def budget(raw: Budget | None) -> tuple[tuple[str, float], ...]:
    """The budget's bounds, at least one when the section is there."""
    if raw is None:
        return ()
    bounds = tuple((k, float(getattr(raw, k))) for k in BUDGET_KEYS if getattr(raw, k) is not None)
    if not bounds:
        raise SpaceError("budget", "no bound given", f"at least one of {', '.join(BUDGET_KEYS)}, e.g. {{params_m: 10}}")
    return bounds


def warm_start(raw: list[str], algorithm: str) -> tuple[str, ...]:
    """Earlier searches seed a TPE study: not a grid (nothing learns) nor random (it ignores history)."""
    if raw and algorithm != "optuna":
        raise SpaceError("warm_start", f"algorithm {algorithm} learns nothing from earlier trials",
                         "warm_start only with search.algorithm optuna (TPE)")
    for i, name in enumerate(raw):
        if not name.strip():
            raise SpaceError(f"warm_start[{i}]", "empty name", "an earlier search: runs/<name>, or its name")
        if name in raw[:i]:
            raise SpaceError(f"warm_start[{i}]", f"duplicate {brief(name)}", "each earlier search once")
    return tuple(raw)


def blocks(raw: list[str], space: tuple[Param, ...]) -> tuple[str, ...]:
    """The report's blocks: searched params, each once."""
    names, seen = [p.name for p in space], set()
    for i, name in enumerate(raw):
        if name not in names:
            raise SpaceError(f"blocks[{i}]", f"{brief(name)} is not a searched param" + did_you_mean(name, names),
                             f"one of {', '.join(names) or '(space is empty)'}")
        if name in seen:
            raise SpaceError(f"blocks[{i}]", f"duplicate {brief(name)}", "each param once")
        seen.add(name)
    return tuple(raw)


def grid_builds(spec: SearchSpec) -> None:
    """Every configuration of a product grid builds a model (listed points were checked one by one)."""
    if spec.algorithm != "grid" or spec.points_to_evaluate:
        return
    for point in expand(spec.space):
        model_builds(spec.trial_config(point), "space", f"grid point {clip(point, 120)}: ")


def published(rows: list[Published], spec: SearchSpec) -> tuple[dict, ...]:
    """The paper's rows: a value each, a match some trial of this search reaches (found through an
    index of the trials by value, so many rows against many trials stay fast)."""
    by_name = {p.name: p for p in spec.space}
    trials = None  # the trials' index, built when the first row needs it
    out = []
    for i, row in enumerate(rows):
        key = f"published[{i}]"
        values = {n: getattr(row, n) for n in PUBLISHED_VALUES if getattr(row, n) is not None}
        if not any(m in values for m in ("mse", "mae", "ssim", "psnr")):
            raise SpaceError(key, "no published value", "at least one of mse, mae, ssim, psnr")
        match = given_values(row.match)
        if not match:
            raise SpaceError(f"{key}.match", "empty match", "a mapping {param: value} naming the paper's row")
        for name, value in match.items():
            mkey = f"{key}.match.{name}"
            if name in by_name:
                in_space(by_name[name], value, mkey)
            elif not same(value, getattr(spec.base, name)):
                raise SpaceError(mkey, f"{name} is fixed at {brief(getattr(spec.base, name))} in base, "
                                 f"so no trial has {brief(value)}", "base's value or a searched param")
        trials = trials or RowIndex(spec.grid_points() if spec.algorithm == "grid" else list(spec.points_to_evaluate))
        if not _reached(match, trials, spec):
            raise SpaceError(f"{key}.match", "no trial of this search has this configuration",
                             "a match equal to a grid point (grid) or to an entry of search.points_to_evaluate")
        out.append({"match": match, "source": row.source, **values})
    return tuple(out)


def _reached(match: dict[str, Any], trials: RowIndex, spec: SearchSpec) -> bool:
    """Some trial sets every searched key of the match to its value (the fixed keys equal base's,
    checked above): what `matches` asks of each trial's config, by index."""
    found = trials.all
    for name, value in match.items():
        if name in spec.names:
            found &= trials.having(name, value)
    return found != 0
