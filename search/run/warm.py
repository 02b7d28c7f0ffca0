"""Warm start: the completed trials of earlier searches seed a new TPE study, so it starts from what
is known. Chosen when the plan is made (the plan and --dry-run list them), told to the study when
the searcher is built, and recorded in experiment.json for the report.

An earlier trial seeds the study only when the new space would have run exactly its configuration:
every searched value inside the new space, every other setting equal to the new base (execution
settings and the seed aside: they do not change what is learned), within budget, and a finite value
of the new metric. The rest are listed with why. Earlier run folders are read through search.runfolder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import budget, runfolder
from search.metric import finite
from search.runfolder import results
from search.space.spec import plain, same
from simvp_core.config import FIELD_TYPES, fields_in
from simvp_core.oneline import short_path

if TYPE_CHECKING:
    import optuna

    from search.space import SearchSpec

NOT_COMPARED = (*fields_in("execution"), "seed")  # settings a seed may differ in
SOURCE_ATTR = "warm_start"  # the study trial's user attr naming the earlier search it came from
LISTED = 8  # ignored trials a plan shows per earlier search (experiment.json keeps them all)


class WarmStartError(ValueError):
    """An earlier search that cannot be read: one line naming it and the fix."""


@dataclass(frozen=True)
class Seed:
    """One completed earlier trial, as the new study is told it."""

    trial_id: str
    params: dict[str, Any]  # the new space's searched values
    value: float  # the new metric at its last epoch (what the study is told of a completed trial)
    curve: dict[int, float]  # the metric per epoch (the study's intermediate values)


@dataclass(frozen=True)
class Source:
    """One earlier search: its completed trials that seed the study, the others and why."""

    run: str  # as named in the space file or on the command line
    path: str  # its run folder
    seeds: tuple[Seed, ...]
    ignored: tuple[tuple[str, str], ...]  # (trial_id, why) of completed trials that do not fit
    not_completed: int  # its trials that did not complete: never seeds

    def record(self) -> dict[str, Any]:
        """What experiment.json keeps of it, for the report."""
        return {"run": self.run, "path": self.path, "seeded": len(self.seeds),
                "ignored": [{"trial_id": t, "why": why} for t, why in self.ignored],
                "not_completed": self.not_completed}


def select(spec: SearchSpec, names: list[str], run_dir: Path) -> tuple[Source, ...]:
    """The earlier searches `names` (run folders, or names beside run_dir) read and matched."""
    sources = []
    for name in names:
        path = folder(name, run_dir)
        if path.resolve() == Path(run_dir).resolve():
            raise WarmStartError(f"warm start {name!r} is this search's own run folder; name an earlier search")
        sources.append(match(spec, read_rows(name, path), name, path))
    return tuple(sources)


def folder(name: str, run_dir: Path) -> Path:
    """A name with a '/' is a run folder's path; a plain name, a search in the same storage."""
    return Path(name) if "/" in name else Path(run_dir).parent / name


def read_rows(name: str, path: Path) -> list[dict[str, Any]]:
    """The earlier search's results rows; WarmStartError when it is not a finished search's folder."""
    try:
        runfolder.read_experiment(path)
        df = results.read(path)
    except runfolder.RunFolderError as e:
        raise WarmStartError(f"warm start {name!r}: {e}") from None
    return df.to_dict("records")


def match(spec: SearchSpec, rows: list[dict[str, Any]], run: str, path: Path) -> Source:
    """Which completed rows seed `spec`'s study, and why the others do not."""
    bound = budget.of(spec)
    seeds, ignored = [], []
    completed = [r for r in rows if r.get("status") == "completed"]
    for row in completed:
        params, why = fit(spec, row)
        if not why and bound is not None:
            why = bound.reason(bound.cost(params))
            why = f"over the budget: {why}" if why else ""
        value = cell(row, spec.metric)
        if not why and not finite(value):
            why = f"no finite {spec.metric}"
        if why:
            ignored.append((str(row["trial_id"]), why))
            continue
        seeds.append(Seed(str(row["trial_id"]), params, float(value), curve(row, spec.metric)))
    return Source(run, str(path), tuple(seeds), tuple(ignored), len(rows) - len(completed))


def fit(spec: SearchSpec, row: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the new space's values for the row, '' or why the new space would not run its configuration)."""
    params: dict[str, Any] = {}
    for p in spec.space:
        if not p.applies(params):
            continue
        value = cell(row, p.name)
        if value is None or not p.contains(value):
            return params, f"{p.name}={value} is outside this space"
        params[p.name] = value
    cfg = spec.trial_config(params)
    differ = [f"{name} {cell(row, name)} (here {getattr(cfg, name)})" for name in FIELD_TYPES
              if name not in NOT_COMPARED and not same(cell(row, name), getattr(cfg, name))]
    return params, (f"fixed settings differ: {', '.join(differ[:3])}" + (", ..." if len(differ) > 3 else "")
                    if differ else "")


def cell(row: dict[str, Any], name: str) -> Any:
    """A results value as the setting it stands for: NaN (parquet's missing) is None, ints are ints."""
    value = plain(row.get(name))
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is not None and FIELD_TYPES.get(name, (None,))[0] is int and float(value).is_integer():
        return int(value)
    return value


def curve(row: dict[str, Any], metric: str) -> dict[int, float]:
    """The metric at each epoch of the row's history (finite values only)."""
    return {int(h["epoch"]): float(h[metric]) for h in results.history_rows(row.get("history"))
            if "epoch" in h and finite(h.get(metric))}


def trials(spec: SearchSpec, sources: tuple[Source, ...]) -> list[optuna.trial.FrozenTrial]:
    """The seeds as finished Optuna trials over the distributions the new space samples from."""
    import optuna

    from search.space.sampling import distribution

    by_name = {p.name: p for p in spec.space}
    return [optuna.trial.create_trial(
        params=s.params, distributions={n: distribution(by_name[n]) for n in s.params}, value=s.value,
        intermediate_values=s.curve, user_attrs={SOURCE_ATTR: source.run, "source_trial": s.trial_id})
        for source in sources for s in source.seeds]


def describe(sources: tuple[Source, ...]) -> list[str]:
    """The plan's lines: per earlier search, how many trials seed the study and why others do not."""
    lines = []
    for s in sources:
        lines.append(f"warm start: {len(s.seeds)} trial(s) of {s.run} ({short_path(s.path)}) seed the "
                     f"study; {len(s.ignored)} completed ignored, {s.not_completed} not completed")
        lines += [f"    ignored {trial_id}: {why}" for trial_id, why in s.ignored[:LISTED]]
        if len(s.ignored) > LISTED:
            lines.append(f"    ... and {len(s.ignored) - LISTED} more (experiment.json lists them all)")
    return lines
