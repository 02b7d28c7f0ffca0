"""Reading a space file: YAML -> the schema (pydantic) -> the cross-field rules -> a frozen SearchSpec.

Any problem, from an unreadable file to an unreachable published row, is one SpaceError.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from search.space import rules
from search.space.errors import SpaceError, from_validation
from search.space.limits import MAX_FILE_BYTES, brief
from search.space.schema import METRICS, VALUE_KINDS, SpaceFile
from search.space.spec import Param, SearchSpec
from simvp_core.config import TrainConfig


def load_space(path: str | Path) -> SearchSpec:
    """Read and validate a space file; any problem raises SpaceError naming file, key and expectation."""
    return parse_space(read_yaml(path), str(path))


def read_yaml(path: str | Path) -> Any:
    """The file's YAML as plain data, read as YAML 1.2 reads numbers; duplicate keys, anchors and
    aliases (`&x` / `*x`: a few lines of them expand to gigabytes) and files over 1 MB are refused."""
    file = str(path)
    try:
        with open(path, "rb") as f:  # at most one byte past the limit, whatever the file is
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise SpaceError("(file)", f"over {MAX_FILE_BYTES:,} bytes, refused unread",
                             "a space file of at most 1 MB (a search is a few kB of YAML: list values, "
                             "not generated data)", file)
        text = raw.decode()
    except FileNotFoundError:
        raise SpaceError("(file)", "no such file", "the path of a space file, e.g. spaces/smoke.yaml", file) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError("(file)", f"cannot be read ({e})", "a readable UTF-8 YAML file", file) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except _AliasError as e:
        raise SpaceError(f"line {e.mark.line + 1}, column {e.mark.column + 1}", e.what,
                         "no YAML anchors or aliases: write each value out where it is used", file) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        expected = "each key once per mapping" if "duplicate key" in str(e.problem) else "valid YAML"
        raise SpaceError(where, str(e.problem or e.context).replace("\n", " "), expected, file) from None
    except yaml.YAMLError as e:
        raise SpaceError("(yaml)", str(e).replace("\n", " "), "valid YAML", file) from None
    return data


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


class _AliasError(Exception):
    """An anchor or alias in a space file: refused before it is expanded."""

    def __init__(self, what: str, mark: Any) -> None:
        super().__init__(what)
        self.what, self.mark = what, mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, anchors and aliases, and reads 1e-3 as a float
    (YAML 1.2), not a string."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _AliasError(f"YAML alias *{brief(event.anchor)[1:-1]}", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _AliasError(f"YAML anchor &{brief(event.anchor)[1:-1]}", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {brief(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))
