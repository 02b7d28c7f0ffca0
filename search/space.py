"""Search space files: a YAML file validated, all of it, into a frozen SearchSpec before anything runs.

The format is documented in spaces/README.md. Every field name and value type comes from TrainConfig
(FIELD_TYPES, coerce and its own validation), so there is one source of truth for what a trial accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from simvp_core.config import FIELD_TYPES, TrainConfig, coerce
from simvp_core.models import resolve_model_config

if TYPE_CHECKING:
    import optuna

KINDS = ("grid", "choice", "uniform", "loguniform", "int")
RANGE_KINDS = ("uniform", "loguniform", "int")
ALGORITHMS = ("grid", "optuna", "random")
SCHEDULERS = ("none", "asha")
METRICS = {"val_mse": "min", "val_mae": "min", "val_ssim": "max", "val_psnr": "max"}
PUBLISHED_VALUES = ("mse", "mae", "ssim", "psnr", "params_m")
TOP_KEYS = ("experiment", "description", "base", "space", "search", "scheduler", "metric", "repeats",
            "resources", "max_failures", "blocks", "published", "sample_fallback")
SEARCH_KEYS = ("algorithm", "num_samples", "seed", "points_to_evaluate")
SCHEDULER_KEYS = ("type", "grace_period", "reduction_factor", "max_epochs")
# smoke(): every trial scaled to CPU minutes; values above a cap become the cap.
SMOKE_CAPS = {"train_size": 32, "val_size": 16, "test_size": 16, "batch_size": 8, "epochs": 2,
              "eval_batch_size": 16, "c_s": 8, "c_t": 16, "n_t": 2}
SMOKE_TRIALS = 4
_ALWAYS_SHOWN = ("preset", "act", "augment", "epochs", "batch_size", "lr", "lambda_gdl", "lambda_ddr")
_UNSET = object()


class SpaceError(ValueError):
    """A bad space file: '<file>: <key.path>: <what is wrong>; expected <what>'."""


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
        return all(params.get(name, _UNSET) in _as_tuple(allowed) for name, allowed in self.when)

    def contains(self, value: Any) -> bool:
        """Whether `value` (already coerced to the field's type) is one this param can take."""
        if self.kind in ("grid", "choice"):
            return value in self.values
        if not self.low <= value <= self.high:
            return False
        return self.step is None or _on_step(value, self.low, self.step)


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

    @property
    def names(self) -> tuple[str, ...]:
        """The searched parameter names, in file order."""
        return tuple(p.name for p in self.space)

    def trial_config(self, params: dict[str, Any]) -> TrainConfig:
        """Base plus one trial's values; None means 'not applied' (a condition failed) and is dropped."""
        changes = {}
        for name, value in params.items():
            if value is None:
                continue
            if name not in FIELD_TYPES:
                raise ValueError(f"{name!r} is not a TrainConfig field; searched: {', '.join(self.names)}")
            changes[name] = coerce(name, value)
        return self.base.replace(**changes)

    def grid_points(self) -> list[dict[str, Any]]:
        """Grid: every configuration (the product, or the listed points) times repeats; else the listed points."""
        configs = list(self.points_to_evaluate)
        if self.algorithm == "grid" and not configs:
            configs = _expand(self.space)
        if self.repeats == 1:
            return [dict(c) for c in configs]
        return [{**c, "seed": self.base.seed + r} for r in range(self.repeats) for c in configs]

    def total_trials(self) -> int:
        return len(self.grid_points()) if self.algorithm == "grid" else self.num_samples

    def worst_case_epochs(self) -> int:
        """Trial-epochs if no trial is stopped early: what the search costs at most."""
        if self.algorithm == "grid":
            return sum(self.trial_config(p).epochs for p in self.grid_points())
        return self.num_samples * self.max_epochs

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
            "space": {p.name: _param_dict(p) for p in self.space},
            "search": search, "scheduler": scheduler, "metric": self.metric, "repeats": self.repeats,
            "resources": {"cpu": self.cpu, "gpu": self.gpu}, "max_failures": self.max_failures,
            "blocks": list(self.blocks),
            "published": [{**row, "match": dict(row["match"])} for row in self.published],
            "sample_fallback": self.sample_fallback,
        }

    def smoke(self) -> "SearchSpec":
        """A copy that runs on a 2-core CPU in minutes: SMOKE_CAPS on every trial, <= 4 trials, 1 CPU.

        The paper's published values are dropped: a 2-epoch toy model is no comparison for them.
        """
        data = _smoke_dict(self.to_dict())
        spec = parse_space(data, self.path)
        points = spec.grid_points()
        if spec.algorithm == "grid" and len(points) > SMOKE_TRIALS:
            data["search"]["points_to_evaluate"] = _spread(points, SMOKE_TRIALS)
            spec = parse_space(data, self.path)
        return spec


def matches(match: dict[str, Any], config: TrainConfig) -> bool:
    """Whether a trial's resolved config has every value of a published row's `match`."""
    return all(_same(getattr(config, k), v) for k, v in match.items())


# ---------------------------------------------------------------- reading and validating


def load_space(path: str | Path) -> SearchSpec:
    """Read and validate a space file; any problem raises SpaceError naming file, key and expectation."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        _fail(file, "(file)", "no such file", "the path of a space file, e.g. spaces/smoke.yaml")
    except (OSError, UnicodeDecodeError) as e:
        _fail(file, "(file)", f"cannot be read ({e})", "a readable UTF-8 YAML file")
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        expected = "each key once per mapping" if "duplicate key" in str(e.problem) else "valid YAML"
        _fail(file, where, str(e.problem or e.context).replace("\n", " "), expected)
    except yaml.YAMLError as e:
        _fail(file, "(yaml)", str(e).replace("\n", " "), "valid YAML")
    return parse_space(data, file)


def parse_space(data: Any, file: str) -> SearchSpec:
    """Validate the parsed YAML (a dict) into a SearchSpec; `file` only labels the errors."""
    v = _Validator(file)
    if data is None:
        v.fail("(top level)", "the file is empty", "a mapping with at least a `search` section")
    if not isinstance(data, dict):
        v.fail("(top level)", f"got {_show(data)}", f"a mapping of keys {', '.join(TOP_KEYS)}")
    for key in data:
        if key not in TOP_KEYS:
            v.fail(str(key), "unknown key" + _did_you_mean(key, TOP_KEYS), f"one of {', '.join(TOP_KEYS)}")
    if "search" not in data:
        v.fail("search", "missing", "a `search` section with at least `algorithm`")

    experiment = v.text(data.get("experiment", Path(file).stem), "experiment")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", experiment):
        v.fail("experiment", f"got {experiment!r}", "letters, digits, '_', '.', '-' (it names runs/<name>)")
    description = v.text(data.get("description", ""), "description")
    base = v.base(data.get("base", {}))
    search = v.mapping(data["search"], "search")
    v.unknown_keys(search, SEARCH_KEYS, "search")
    algorithm = v.choice(search.get("algorithm"), ALGORITHMS, "search.algorithm")
    space = v.space(data.get("space", {}), base, set(data.get("base", {})), algorithm)
    repeats = v.integer(data.get("repeats", 1), "repeats", minimum=1)
    v.repeats(repeats, algorithm, space)
    points = v.points(search.get("points_to_evaluate", []), space, base, algorithm)
    if algorithm == "grid":
        if "num_samples" in search:
            v.fail("search.num_samples", "a grid runs every grid point",
                   "no num_samples with algorithm grid (the grid's size is the number of trials)")
        num_samples = 0  # set below from grid_points()
    else:
        if not space:
            v.fail("space", f"nothing to search with {algorithm}",
                   "at least one param (or algorithm grid to run the base configuration)")
        num_samples = v.integer(search.get("num_samples"), "search.num_samples", minimum=max(1, len(points)))
    seed = v.integer(search.get("seed", 0), "search.seed", minimum=0)
    scheduler = v.scheduler(data.get("scheduler", {"type": "none"}), base, space)
    metric = v.metric(data.get("metric", "val_mse"))
    resources = v.mapping(data.get("resources", {}), "resources")
    v.unknown_keys(resources, ("cpu", "gpu"), "resources")
    cpu = v.number(resources.get("cpu", 1), "resources.cpu", "a number of CPUs > 0")
    if cpu <= 0:
        v.fail("resources.cpu", f"must be > 0, got {cpu:g}", "a number of CPUs per trial > 0, e.g. 1 or 2")
    gpu = v.number(resources.get("gpu", 0), "resources.gpu", "a number of GPUs >= 0")
    if gpu < 0 or (gpu > 1 and not float(gpu).is_integer()):
        v.fail("resources.gpu", f"got {gpu:g}",
               "0, a fraction in (0, 1] (0.25 packs 4 trials per GPU) or a whole number")
    max_failures = v.integer(data.get("max_failures", 1), "max_failures", minimum=0)
    blocks = v.blocks(data.get("blocks", []), space)
    sample_fallback = v.boolean(data.get("sample_fallback", False), "sample_fallback")

    spec = SearchSpec(
        path=file, experiment=experiment, description=description, base=base, space=space,
        algorithm=algorithm, num_samples=num_samples, seed=seed, points_to_evaluate=points,
        scheduler=scheduler[0], grace_period=scheduler[1], reduction_factor=scheduler[2],
        max_epochs=scheduler[3], metric=metric, mode=METRICS[metric], repeats=repeats, cpu=float(cpu),
        gpu=float(gpu), max_failures=max_failures, blocks=blocks, published=(),
        sample_fallback=sample_fallback)
    if algorithm == "grid":
        v.check_configs(spec, points, "search.points_to_evaluate" if points else "space")
        spec = dataclasses.replace(spec, num_samples=len(spec.grid_points()))
    return dataclasses.replace(spec, published=v.published(data.get("published", []), spec))


class _Validator:
    """Type and range checks that raise SpaceError with the file and key path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, what: str, expected: str) -> NoReturn:
        _fail(self.file, key, what, expected)

    # ---- plain values

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"got {_show(value)}", "a mapping (key: value)")
        return value

    def sequence(self, value: Any, key: str, what: str) -> list:
        if not isinstance(value, list):
            self.fail(key, f"got {_show(value)}", f"a list of {what}")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"got {_show(value)}", "a string")
        return value

    def number(self, value: Any, key: str, expected: str = "a number") -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"got {_show(value)}", expected)
        return value

    def integer(self, value: Any, key: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"got {_show(value)}", f"an integer >= {minimum}")
        if value < minimum:
            self.fail(key, f"must be >= {minimum}, got {value}", f"an integer >= {minimum}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"got {_show(value)}", "true or false")
        return value

    def choice(self, value: Any, choices: tuple[str, ...], key: str) -> str:
        if value not in choices:
            self.fail(key, f"got {_show(value)}" + _did_you_mean(value, choices), f"one of {', '.join(choices)}")
        return value

    def unknown_keys(self, mapping: dict, allowed: tuple[str, ...], key: str) -> None:
        for k in mapping:
            if k not in allowed:
                self.fail(f"{key}.{k}", "unknown key" + _did_you_mean(k, allowed), f"one of {', '.join(allowed)}")

    def field(self, name: Any, key: str) -> str:
        """A TrainConfig field name."""
        if name not in FIELD_TYPES:
            self.fail(key, f"unknown TrainConfig field {name!r}" + _did_you_mean(name, FIELD_TYPES),
                      f"one of {', '.join(FIELD_TYPES)}")
        return name

    def value(self, name: str, value: Any, key: str, base: TrainConfig, context: dict | None = None) -> Any:
        """One value for field `name`: right type (coerce), and accepted by TrainConfig over `base`."""
        if value is None:
            self.fail(key, "got null (null means 'not applied')",
                      f"{_type_name(name)} (leave {name} out of the file to keep its default)")
        try:
            coerced = coerce(name, value)
        except ValueError:
            self.fail(key, f"got {_show(value)}", f"{_type_name(name)} (the type of TrainConfig.{name})")
        try:
            base.replace(**(context or {}), **{name: coerced})
        except ValueError as e:
            self.fail(key, str(e), f"a value TrainConfig accepts for {name}")
        return coerced

    # ---- sections

    def base(self, raw: Any) -> TrainConfig:
        values = {}
        for name, value in self.mapping(raw, "base").items():
            self.field(name, f"base.{name}")
            values[name] = self.value(name, value, f"base.{name}", TrainConfig())
        try:
            base = TrainConfig(**values)
        except ValueError as e:
            self.fail("base", str(e), "values TrainConfig accepts together")
        self.model(base, "base")
        return base

    def model(self, cfg: TrainConfig, key: str, label: str = "") -> None:
        """The configuration builds a model (e.g. incepu needs n_t >= 2)."""
        try:
            resolve_model_config(cfg.preset, **cfg.model_overrides())
        except (ValueError, TypeError) as e:
            self.fail(key, f"{label}{e}", "a model configuration build_model accepts")

    def space(self, raw: Any, base: TrainConfig, fixed: set[str], algorithm: str) -> tuple[Param, ...]:
        params: dict[str, Param] = {}
        for name, body in self.mapping(raw, "space").items():
            key = f"space.{name}"
            self.field(name, key)
            if name in fixed:
                self.fail(key, f"{name} is also fixed in base", f"{name} either in base or in space, not both")
            params[name] = self.param(name, body, key, base, params, algorithm)
        return tuple(params.values())

    def param(self, name: str, body: Any, key: str, base: TrainConfig, earlier: dict[str, Param],
              algorithm: str) -> Param:
        body = self.mapping(body, key)
        kinds = [k for k in body if k in KINDS]
        for k in body:
            if k not in KINDS and k not in ("step", "when"):
                self.fail(f"{key}.{k}", "unknown param kind or option" + _did_you_mean(k, KINDS),
                          f"one of the kinds {', '.join(KINDS)} (plus optional step, when)")
        if len(kinds) != 1:
            self.fail(key, "no kind given" if not kinds else f"two kinds given ({', '.join(kinds)})",
                      f"exactly one of {', '.join(KINDS)}, e.g. {{uniform: [0.0, 1.0]}}")
        kind = kinds[0]
        if kind == "grid" and algorithm != "grid":
            self.fail(key, f"kind grid only exists for algorithm grid (this search uses {algorithm})",
                      "choice: [...] for optuna/random")
        if kind in RANGE_KINDS and algorithm == "grid":
            self.fail(key, f"a {kind} range cannot be enumerated by algorithm grid",
                      "grid: [...] values, or search.algorithm optuna/random")
        when = self.when(body.get("when", {}), f"{key}.when", earlier)
        context = _context(when, earlier)
        if kind in ("grid", "choice"):
            if "step" in body:
                self.fail(f"{key}.step", f"step does not apply to {kind}", "step only with uniform or int")
            values = self.sequence(body[kind], f"{key}.{kind}", "values")
            if not values:
                self.fail(f"{key}.{kind}", "empty list", "at least one value")
            coerced = []
            for i, item in enumerate(values):
                c = self.value(name, item, f"{key}.{kind}[{i}]", base, context)
                if c in coerced:
                    self.fail(f"{key}.{kind}[{i}]", f"duplicate value {item!r}", "each value once")
                coerced.append(c)
            return Param(name, kind, values=tuple(coerced), when=when)
        return self.range_param(name, kind, body, key, base, context, when)

    def range_param(self, name: str, kind: str, body: dict, key: str, base: TrainConfig, context: dict,
                    when: tuple) -> Param:
        field_type = FIELD_TYPES[name][0]
        if kind == "int" and field_type is not int:
            self.fail(key, f"int samples integers but {name} holds {_plural(field_type)}",
                      "uniform/loguniform for float fields, choice for others")
        if kind != "int" and field_type is not float:
            self.fail(key, f"{kind} samples floats but {name} holds {_plural(field_type)}",
                      "int: [low, high] or choice: [...]" if field_type is int else "choice: [...]")
        bounds = self.sequence(body[kind], f"{key}.{kind}", "two numbers [low, high]")
        if len(bounds) != 2:
            self.fail(f"{key}.{kind}", f"got {len(bounds)} values", "exactly two: [low, high]")
        low, high = (self.bound(b, f"{key}.{end}", kind) for b, end in zip(bounds, ("low", "high")))
        if low >= high:
            self.fail(key, f"low {low} >= high {high}", "low < high (for a single value use choice: [v])")
        if kind == "loguniform" and low <= 0:
            self.fail(f"{key}.low", f"loguniform needs low > 0, got {low}", "a positive low bound (or uniform)")
        step = body.get("step")
        if step is not None:
            if kind == "loguniform":
                self.fail(f"{key}.step", "loguniform takes no step", "no step (or uniform with a step)")
            step = self.integer(step, f"{key}.step", 1) if kind == "int" else self.number(step, f"{key}.step")
            if step <= 0 or not (_on_step(low, 0, step) and _on_step(high, 0, step)):
                self.fail(f"{key}.step", f"low {low} and high {high} are not multiples of step {step}",
                          "a step > 0 that divides both bounds (Optuna and Tune quantise differently otherwise)")
        low = self.value(name, low, f"{key}.low", base, context)
        high = self.value(name, high, f"{key}.high", base, context)
        return Param(name, kind, low=low, high=high, step=step, when=when)

    def bound(self, value: Any, key: str, kind: str) -> float | int:
        number = self.number(value, key, "an integer" if kind == "int" else "a number")
        if kind == "int" and not isinstance(number, int):
            self.fail(key, f"got {_show(value)}", "an integer")
        return number

    def when(self, raw: Any, key: str, earlier: dict[str, Param]) -> tuple[tuple[str, Any], ...]:
        out = []
        for ref, allowed in self.mapping(raw, key).items():
            if ref not in earlier:
                self.fail(f"{key}.{ref}", f"{ref!r} is not a param declared above in space",
                          f"a grid/choice param listed before this one ({', '.join(earlier) or 'none yet'})")
            param = earlier[ref]
            if param.kind not in ("grid", "choice"):
                self.fail(f"{key}.{ref}", f"{ref} is a {param.kind} param (equality on it is meaningless)",
                          "a condition on a grid or choice param")
            items = allowed if isinstance(allowed, list) else [allowed]
            if not items:
                self.fail(f"{key}.{ref}", "empty list", f"one or more of {list(param.values)}")
            coerced = []
            for item in items:
                try:
                    c = coerce(ref, item)
                except ValueError:
                    c = _UNSET
                if c not in param.values:
                    self.fail(f"{key}.{ref}", f"{ref} never takes {item!r}",
                              f"one or more of {list(param.values)}")
                coerced.append(c)
            out.append((ref, tuple(coerced) if isinstance(allowed, list) else coerced[0]))
        return tuple(out)

    def repeats(self, repeats: int, algorithm: str, space: tuple[Param, ...]) -> None:
        if repeats == 1:
            return
        if algorithm == "optuna":
            self.fail("repeats", f"repeats {repeats} with optuna: each seed would reach the sampler as a "
                      "separate, noisy trial of the same configuration and ASHA would race seeds, not configurations",
                      "repeats: 1 with optuna; to measure seed noise, rerun the chosen configurations "
                      "as a grid space with repeats > 1")
        if algorithm == "random":
            self.fail("repeats", f"repeats {repeats} with random: Tune resamples every trial, so a sampled "
                      "configuration cannot be rerun with another seed",
                      "repeats: 1 with random; for seed repeats use algorithm grid")
        if any(p.name == "seed" for p in space):
            self.fail("repeats", "seed is searched and repeated at once",
                      "either seed in space or repeats > 1 (repeats use base.seed, base.seed + 1, ...)")

    def points(self, raw: Any, space: tuple[Param, ...], base: TrainConfig, algorithm: str) -> tuple[dict, ...]:
        by_name = {p.name: p for p in space}
        points: list[dict] = []
        for i, point in enumerate(self.sequence(raw, "search.points_to_evaluate", "mappings {param: value}")):
            key = f"search.points_to_evaluate[{i}]"
            point = self.mapping(point, key)
            if not point:
                self.fail(key, "empty point", "a mapping {param: value}")
            clean = {}
            for name, value in point.items():
                if name not in by_name:
                    self.fail(f"{key}.{name}", "not a searched param" + _did_you_mean(name, by_name),
                              f"one of the space's params: {', '.join(by_name) or '(space is empty)'}")
                clean[name] = self.param_value(by_name[name], value, f"{key}.{name}")
            for param in space:  # file order, conditions checked against the point's own values
                if param.name in clean and not param.applies(clean):
                    self.fail(f"{key}.{param.name}", f"{param.name} applies only when {_show_when(param.when)}",
                              f"{param.name} left out of this point, or the point's values meeting its condition")
                if algorithm == "grid" and param.name not in clean and param.applies(clean):
                    self.fail(key, f"missing {param.name}",
                              "a value for every searched param that applies (grid points are exact)")
            ordered = {p.name: clean[p.name] for p in space if p.name in clean}
            if ordered in points:
                self.fail(key, f"duplicate of point {points.index(ordered)}", "each point once")
            try:
                cfg = base.replace(**ordered)
            except ValueError as e:
                self.fail(key, str(e), "values TrainConfig accepts together")
            self.model(cfg, key)
            points.append(ordered)
        return tuple(points)

    def param_value(self, param: Param, value: Any, key: str) -> Any:
        """A value this param can take: one of its values, or inside its range (on its step)."""
        if param.kind in ("grid", "choice"):
            expected = f"one of {list(param.values)}"
        else:
            expected = f"a value in [{param.low}, {param.high}]" + (f" on step {param.step}" if param.step else "")
        try:
            coerced = coerce(param.name, value) if value is not None else _UNSET
        except ValueError:
            coerced = _UNSET
        if coerced is _UNSET or not param.contains(coerced):
            self.fail(key, f"got {_show(value)}, outside the space of {param.name}", expected)
        return coerced

    def check_configs(self, spec: SearchSpec, points: tuple[dict, ...], key: str) -> None:
        """Every grid configuration builds a model (the listed points were checked one by one already)."""
        if points:
            return
        for point in _expand(spec.space):
            try:
                cfg = spec.trial_config(point)
            except ValueError as e:
                self.fail(key, f"grid point {point}: {e}", "values TrainConfig accepts together")
            self.model(cfg, key, f"grid point {point}: ")

    def scheduler(self, raw: Any, base: TrainConfig, space: tuple[Param, ...]) -> tuple[str, int, int, int]:
        raw = self.mapping(raw, "scheduler")
        self.unknown_keys(raw, SCHEDULER_KEYS, "scheduler")
        kind = self.choice(raw.get("type"), SCHEDULERS, "scheduler.type")
        epochs = next((p for p in space if p.name == "epochs"), None)
        if kind == "none":
            for k in ("grace_period", "reduction_factor", "max_epochs"):
                if k in raw:
                    self.fail(f"scheduler.{k}", "only used by type asha", f"no {k} with type none (or type asha)")
            longest = base.epochs if epochs is None else int(max(epochs.values or (epochs.high,)))
            return "none", longest, 1, longest
        if epochs is not None:
            self.fail("scheduler.type", "asha stops trials by epoch, but epochs is searched (each value has "
                      "its own OneCycle schedule, so early epochs are not comparable)",
                      "type none, or epochs fixed in base as ASHA's budget")
        max_epochs = self.integer(raw.get("max_epochs", base.epochs), "scheduler.max_epochs", minimum=1)
        if max_epochs != base.epochs:
            self.fail("scheduler.max_epochs", f"{max_epochs} differs from base.epochs {base.epochs} "
                      "(the OneCycle schedule is set by epochs)", f"max_epochs: {base.epochs} or left out")
        grace = self.integer(raw.get("grace_period", max(1, max_epochs // 10)), "scheduler.grace_period", 1)
        if grace > max_epochs:
            self.fail("scheduler.grace_period", f"{grace} > max_epochs {max_epochs}",
                      f"an integer in [1, {max_epochs}]")
        factor = self.integer(raw.get("reduction_factor", 3), "scheduler.reduction_factor", minimum=2)
        return "asha", grace, factor, max_epochs

    def metric(self, raw: Any) -> str:
        metric = self.text(raw, "metric")
        if metric.startswith("test_"):
            self.fail("metric", f"{metric} is a test-set metric: never select on the test set "
                      "(the reported test numbers would no longer be held out)",
                      f"a validation metric: {', '.join(METRICS)}")
        return self.choice(metric, tuple(METRICS), "metric")

    def blocks(self, raw: Any, space: tuple[Param, ...]) -> tuple[str, ...]:
        names = [p.name for p in space]
        blocks = self.sequence(raw, "blocks", "searched param names")
        for i, name in enumerate(blocks):
            if name not in names:
                self.fail(f"blocks[{i}]", f"{name!r} is not a searched param" + _did_you_mean(name, names),
                          f"one of {', '.join(names) or '(space is empty)'}")
            if name in blocks[:i]:
                self.fail(f"blocks[{i}]", f"duplicate {name!r}", "each param once")
        return tuple(blocks)

    def published(self, raw: Any, spec: SearchSpec) -> tuple[dict, ...]:
        rows = []
        by_name = {p.name: p for p in spec.space}
        trials = spec.grid_points() if spec.algorithm == "grid" else list(spec.points_to_evaluate)
        for i, row in enumerate(self.sequence(raw, "published", "rows {match: {...}, mse: .., source: ..}")):
            key = f"published[{i}]"
            row = self.mapping(row, key)
            self.unknown_keys(row, ("match", "source") + PUBLISHED_VALUES, key)
            if "match" not in row or "source" not in row:
                self.fail(key, f"missing {'match' if 'match' not in row else 'source'}",
                          "match: {param: value}, source: 'Table N', and at least one of mse, mae, ssim, psnr")
            clean: dict[str, Any] = {"match": {}, "source": self.text(row["source"], f"{key}.source")}
            for name in PUBLISHED_VALUES:
                if name in row:
                    clean[name] = float(self.number(row[name], f"{key}.{name}"))
            if not any(m in clean for m in ("mse", "mae", "ssim", "psnr")):
                self.fail(key, "no published value", "at least one of mse, mae, ssim, psnr")
            match = self.mapping(row["match"], f"{key}.match")
            if not match:
                self.fail(f"{key}.match", "empty match", "a mapping {param: value} naming the paper's row")
            for name, value in match.items():
                mkey = f"{key}.match.{name}"
                self.field(name, mkey)
                if name in by_name:
                    clean["match"][name] = self.param_value(by_name[name], value, mkey)
                    continue
                coerced = self.value(name, value, mkey, spec.base)
                if not _same(coerced, getattr(spec.base, name)):
                    self.fail(mkey, f"{name} is fixed at {getattr(spec.base, name)!r} in base, "
                              f"so no trial has {value!r}", "base's value or a searched param")
                clean["match"][name] = coerced
            if not any(_point_matches(clean["match"], t, spec) for t in trials):
                self.fail(f"{key}.match", "no trial of this search has this configuration",
                          "a match equal to a grid point (grid) or to an entry of search.points_to_evaluate")
            rows.append(clean)
        return tuple(rows)


# ---------------------------------------------------------------- converters for the runner


@dataclass(frozen=True)
class OptunaSpace:
    """Define-by-run Optuna space: suggests each param in file order, conditional ones only when they
    apply. A module-level class, not a closure, so Ray can pickle the searcher for resume."""

    space: tuple[Param, ...]

    def __call__(self, trial: "optuna.Trial") -> dict | None:
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


def optuna_space(spec: SearchSpec) -> Callable[["optuna.Trial"], dict | None]:
    """The define-by-run function for OptunaSearch (picklable)."""
    return OptunaSpace(spec.space)


def tune_param_space(spec: SearchSpec) -> dict[str, Any]:
    """Tune domains for algorithm random; a conditional param samples to None ('not applied') when its
    condition fails. Each conditional param draws from its own generator seeded by spec.seed."""
    import numpy as np
    from ray import tune

    space: dict[str, Any] = {}
    for i, p in enumerate(spec.space):
        domain = _tune_domain(p, tune)
        if not p.when:
            space[p.name] = domain
            continue
        rng = np.random.default_rng([spec.seed, i])

        def conditional(config: Any, p: Param = p, domain: Any = domain, rng: Any = rng) -> Any:
            chosen = {name: _sampled(config, name) for name, _ in p.when}
            return domain.sample(random_state=rng) if p.applies(chosen) else None

        space[p.name] = tune.sample_from(conditional)
    return space


def _sampled(config: dict, name: str) -> Any:
    """A value already drawn for this trial, from what Tune hands a sample_from function: a plain dict
    (a Tuner resolves functions last, in file order, so referents above are set), or a guarded dict,
    maybe the whole trial spec, whose attribute access makes Tune resolve `name` first."""
    if type(config) is dict:
        return config[name]
    if "config" in config:
        config = config.config
    return getattr(config, name)


def describe(spec: SearchSpec) -> str:
    """The plan, for --dry-run: what runs, how it is chosen and stopped, and what it costs at most."""
    default = TrainConfig()
    fixed = {k: v for k, v in spec.base.to_dict().items()
             if k not in spec.names and (k in _ALWAYS_SHOWN or getattr(default, k) != v)}
    lines = [f"experiment: {spec.experiment}  ({spec.path})"]
    if spec.description:
        lines.append(f"  {spec.description}")
    lines.append("base: " + " ".join(f"{k}={v}" for k, v in fixed.items())
                 + "  (other fields: TrainConfig defaults)")
    lines.append(f"space: {len(spec.space)} param(s)")
    width = max((len(p.name) for p in spec.space), default=0)
    for p in spec.space:
        cond = f"  when {_show_when(p.when)}" if p.when else ""
        lines.append(f"  {p.name:<{width}}  {_show_param(p)}{cond}")
    trials = spec.grid_points()
    if spec.algorithm == "grid":
        lines.append(f"search: grid, {len(trials)} trial(s)")
    else:
        lines.append(f"search: {spec.algorithm}, {spec.num_samples} samples, seed {spec.seed}, "
                     f"{len(trials)} listed point(s) first")
    for n, point in enumerate(trials, 1):
        lines.append(f"  {n:>3}. " + (" ".join(f"{k}={v}" for k, v in point.items()) or "(base configuration)"))
    if spec.scheduler == "asha":
        lines.append(f"scheduler: asha (grace_period {spec.grace_period}, reduction_factor "
                     f"{spec.reduction_factor}, max_epochs {spec.max_epochs})")
    else:
        lines.append("scheduler: none (every trial runs all its epochs)")
    lines.append(f"metric: {spec.metric} ({spec.mode})")
    lines.append(f"repeats: {spec.repeats}" + (f" (seeds {spec.base.seed}..{spec.base.seed + spec.repeats - 1})"
                                               if spec.repeats > 1 else ""))
    lines.append(f"resources per trial: cpu {spec.cpu:g}, gpu {spec.gpu:g}; max_failures {spec.max_failures}")
    if spec.blocks:
        lines.append(f"blocks: {', '.join(spec.blocks)}")
    sources = sorted({row["source"] for row in spec.published})
    lines.append(f"published: {len(spec.published)} row(s)" + (f" ({', '.join(sources)})" if sources else ""))
    lines.append(f"total: {spec.total_trials()} trial(s), at most {spec.worst_case_epochs()} trial-epochs")
    return "\n".join(lines)


# ---------------------------------------------------------------- helpers


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads 1e-3 as a float (YAML 1.2), not a string."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _fail(file: str, key: str, what: str, expected: str) -> NoReturn:
    raise SpaceError(f"{file}: {key}: {what}; expected {expected}")


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})" if value is not None else "null"


def _type_name(name: str) -> str:
    kind = FIELD_TYPES[name][0].__name__
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}.get(kind, kind)


def _plural(field_type: type) -> str:
    names = {int: "integers", float: "floats", str: "strings", bool: "booleans"}
    return names.get(field_type, field_type.__name__)


def _did_you_mean(name: Any, options: Any) -> str:
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _show_when(when: tuple[tuple[str, Any], ...]) -> str:
    return " and ".join(f"{n} in {list(v)}" if isinstance(v, tuple) else f"{n}={v}" for n, v in when)


def _show_param(p: Param) -> str:
    if p.kind in ("grid", "choice"):
        return f"{p.kind} {list(p.values)}"
    return f"{p.kind} [{p.low}, {p.high}]" + (f" step {p.step}" if p.step is not None else "")


def _on_step(value: float, origin: float, step: float) -> bool:
    k = (value - origin) / step
    return math.isclose(k, round(k), abs_tol=1e-9)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-12)
    return a == b


def _context(when: tuple[tuple[str, Any], ...], earlier: dict[str, Param]) -> dict[str, Any]:
    """Values under which a conditional param applies (its referents' own conditions included)."""
    out: dict[str, Any] = {}
    for name, allowed in when:
        out.update(_context(earlier[name].when, earlier))
        out[name] = _as_tuple(allowed)[0]
    return out


def _expand(space: tuple[Param, ...]) -> list[dict[str, Any]]:
    """The cartesian product in file order (first param slowest), skipping params whose condition fails."""
    points: list[dict[str, Any]] = [{}]
    for p in space:
        points = [{**pt, p.name: v} for pt in points for v in (p.values if p.applies(pt) else (_UNSET,))]
        points = [{k: v for k, v in pt.items() if v is not _UNSET} for pt in points]
    unique: list[dict[str, Any]] = []
    for pt in points:
        if pt not in unique:
            unique.append(pt)
    return unique


def _point_matches(match: dict[str, Any], point: dict[str, Any], spec: SearchSpec) -> bool:
    """A published match is reached by a point when every searched key of it is fixed by the point."""
    if any(name in spec.names and name not in point for name in match):
        return False
    return matches(match, spec.trial_config({k: v for k, v in point.items() if k != "seed"}))


def _param_dict(p: Param) -> dict[str, Any]:
    body: dict[str, Any] = {p.kind: list(p.values) if p.kind in ("grid", "choice") else [p.low, p.high]}
    if p.step is not None:
        body["step"] = p.step
    if p.when:
        body["when"] = {n: list(v) if isinstance(v, tuple) else v for n, v in p.when}
    return body


def _tune_domain(p: Param, tune: Any) -> Any:
    if p.kind in ("grid", "choice"):
        return tune.choice(list(p.values))
    if p.kind == "loguniform":
        return tune.loguniform(p.low, p.high)
    if p.kind == "uniform":
        return tune.uniform(p.low, p.high) if p.step is None else tune.quniform(p.low, p.high, p.step)
    if p.step in (None, 1):
        return tune.randint(int(p.low), int(p.high) + 1)  # randint excludes its upper bound
    return tune.qrandint(int(p.low), int(p.high), int(p.step))


def _cap(name: str, value: Any) -> Any:
    cap = SMOKE_CAPS.get(name)
    return value if cap is None or value is None else min(value, cap)


def _unique(values: list) -> list:
    return [v for i, v in enumerate(values) if v not in values[:i]]


def _smoke_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The normalised space with SMOKE_CAPS applied to base, values, bounds, conditions, points, matches."""
    searched = set(data["space"])
    if not data["experiment"].endswith("smoke"):
        data["experiment"] += "-smoke"
    data["description"] = f"[smoke] {data['description']}".strip()
    for name, cap in SMOKE_CAPS.items():
        if name not in searched:
            value = data["base"].get(name, getattr(TrainConfig(), name))
            data["base"][name] = cap if value is None else min(value, cap)
    for name, body in data["space"].items():
        kind = next(k for k in body if k in KINDS)
        if kind in ("grid", "choice"):
            body[kind] = _unique([_cap(name, v) for v in body[kind]])
        else:
            low, high = (_cap(name, b) for b in body[kind])
            if body.get("step") is not None:
                high = low + (high - low) // body["step"] * body["step"]
            if low == high:  # the whole range is above the cap: one value left
                del body[kind]
                body.pop("step", None)
                body["choice"] = [low]
            else:
                body[kind] = [low, high]
        for ref, allowed in body.get("when", {}).items():
            if isinstance(allowed, list):
                body["when"][ref] = _unique([_cap(ref, v) for v in allowed])
            else:
                body["when"][ref] = _cap(ref, allowed)
    search = data["search"]
    search["points_to_evaluate"] = _unique([{k: _cap(k, v) for k, v in p.items()}
                                            for p in search["points_to_evaluate"]])
    if "num_samples" in search:
        search["num_samples"] = min(search["num_samples"], SMOKE_TRIALS)
        search["points_to_evaluate"] = search["points_to_evaluate"][:SMOKE_TRIALS]
    if data["scheduler"]["type"] == "asha":
        data["scheduler"] = {"type": "asha", "grace_period": 1, "reduction_factor": 2,
                             "max_epochs": data["base"]["epochs"]}
    data.update(repeats=1, resources={"cpu": 1, "gpu": 0}, published=[])
    return data


def _spread(points: list[dict], k: int) -> list[dict]:
    """k points evenly spaced over the list, first and last included (a smoke grid still spans its values)."""
    return [points[round(i * (len(points) - 1) / (k - 1))] for i in range(k)]
