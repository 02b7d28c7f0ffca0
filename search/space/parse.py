"""Reading a space file: YAML -> the schema (pydantic) -> the cross-field rules -> a frozen SearchSpec.

Any problem, from an unreadable file to an unreachable published row, is one SpaceError.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from search import safe_yaml
from search.space import rules
from search.space.errors import SpaceError, from_validation
from search.space.limits import MAX_FILE_BYTES
from search.space.schema import METRICS, VALUE_KINDS, SpaceFile
from search.space.spec import Param, SearchSpec
from simvp_core.config import TrainConfig


def load_space(path: str | Path) -> SearchSpec:
    """Read and validate a space file; any problem raises SpaceError naming file, key and expectation."""
    return parse_space(read_yaml(path), str(path))


def read_yaml(path: str | Path) -> Any:
    """The file's YAML as plain data (search.safe_yaml: the platform's one safe reader): duplicate
    keys, anchors and aliases, non-string keys, deep nesting, long integers, files over 1 MB and
    anything but a regular file are refused, as a SpaceError naming the place."""
    try:
        return safe_yaml.load_file(path, MAX_FILE_BYTES, "space file")
    except safe_yaml.YamlError as e:
        expected = ("the path of a space file, e.g. spaces/smoke.yaml" if e.what == "no such space file" else
                    "a space file of at most 1 MB (a search is a few kB of YAML: list values, not generated "
                    "data)" if e.what.startswith("over ") else e.expected)
        raise SpaceError(e.where, e.what, expected, str(path)) from None


def parse_space(data: Any, file: str) -> SearchSpec:
    """Validate the parsed YAML (a dict) into a SearchSpec; `file` only labels the errors."""
    try:
        return _spec(data, file)
    except SpaceError as e:
        raise e.in_file(file) from None


def _spec(data: Any, file: str) -> SearchSpec:
    """The schema first (one key at a time), then the rules across keys, in the file's order."""
    if data is None:
        raise SpaceError("(top level)", "the file is empty", "a mapping with at least a `search` section")
    try:
        raw = SpaceFile.model_validate(data)
    except ValidationError as e:
        raise from_validation(e) from None
    base = TrainConfig(**raw.base.model_dump())
    rules.model_builds(base, "base")
    algorithm = raw.search.algorithm
    space = _params(raw, list(data.get("space") or {}), raw.base.model_fields_set)
    rules.repeats_fit(raw.repeats, algorithm, raw.scheduler.type, space)
    rules.trial_budget(raw.search, raw.repeats, space)  # before anything expands the grid
    points = rules.points(raw.search, space, base)
    num_samples = rules.samples(raw.search, space, points)
    scheduler, grace, factor, max_epochs = rules.schedule(raw.scheduler, base, space)
    rules.gpu_share(raw.resources.gpu)
    spec = SearchSpec(
        path=file, experiment=raw.experiment or Path(file).stem, description=raw.description, base=base,
        space=space, algorithm=algorithm, num_samples=num_samples, seed=raw.search.seed,
        points_to_evaluate=points, scheduler=scheduler, grace_period=grace, reduction_factor=factor,
        max_epochs=max_epochs, metric=raw.metric, mode=METRICS[raw.metric], repeats=raw.repeats,
        cpu=float(raw.resources.cpu), gpu=float(raw.resources.gpu), max_failures=raw.max_failures,
        blocks=rules.blocks(raw.blocks, space), published=(), sample_fallback=raw.sample_fallback,
        keep_checkpoints=raw.keep_checkpoints, budget=rules.budget(raw.budget),
        warm_start=rules.warm_start(raw.warm_start, algorithm))
    rules.grid_builds(spec)
    if algorithm == "grid":
        spec = dataclasses.replace(spec, num_samples=len(spec.grid_points()))
    return dataclasses.replace(spec, published=rules.published(raw.published, spec))


def _params(raw: SpaceFile, order: list[str], fixed: set[str]) -> tuple[Param, ...]:
    """The searched params in file order, each checked against the ones above it."""
    params: dict[str, Param] = {}
    for name in order:
        body = getattr(raw.space, name)
        key = f"space.{name}"
        rules.not_fixed(name, fixed)
        kind = rules.one_kind(name, body, raw.search.algorithm)
        when = rules.conditions(name, body.when, params)
        items = getattr(body, kind)
        if kind in VALUE_KINDS:
            rules.step_fits(key, kind, getattr(body, "step", None))
            rules.distinct(f"{key}.{kind}", items)
            params[name] = Param(name, kind, values=tuple(items), when=when)
            continue
        low, high = items
        rules.ordered_range(key, kind, low, high)
        step = rules.step_fits(key, kind, body.step, low, high)
        params[name] = Param(name, kind, low=low, high=high, step=step, when=when)
    return tuple(params.values())
