"""Where a search's trials came from and what it never trained: the earlier searches whose trials
seeded its study (warm start) and the configurations over its budget, from experiment.json and,
for optuna and random searches, the Optuna study (whose over-budget trials say why)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from search import runfolder
from search.budget import OVER_BUDGET, words

if TYPE_CHECKING:
    from pathlib import Path

LISTED = 20  # ignored warm-start trials listed per earlier search (experiment.json has them all)


def skipped(exp: dict[str, Any], run_dir: Path) -> list[tuple[str, str]]:
    """(configuration, why) of every configuration over budget: a grid's from experiment.json, a
    sampler's from its study (PRUNED trials with user attr over_budget)."""
    if not exp.get("budget"):
        return []
    if exp.get("algorithm") not in runfolder.OPTUNA_ALGORITHMS:
        return [(_values(o.get("config", {})), str(o.get("reason", ""))) for o in exp.get("over_budget") or []]
    try:
        study = runfolder.read_study(run_dir, exp.get("optuna_study"))
    except runfolder.RunFolderError:
        return []
    return [(_values(t.params), str(t.user_attrs[OVER_BUDGET])) for t in study.get_trials(deepcopy=False)
            if OVER_BUDGET in t.user_attrs]


def facts(exp: dict[str, Any], over: list[tuple[str, str]]) -> list[list[str]]:
    """The header's rows: the budget and what it skipped, the warm start and what it seeded."""
    rows = []
    if exp.get("budget"):
        rows.append(["budget", f"{words(exp['budget'].items())}: {len(over)} configuration(s) over it "
                               "skipped, never trained"])
    sources = exp.get("warm_start") or []
    if sources:
        seeded = sum(int(s.get("seeded", 0)) for s in sources)
        ignored = sum(len(s.get("ignored", [])) for s in sources)
        rows.append(["warm start", f"{seeded} trial(s) seeded the study: " + ", ".join(
            f"{s.get('seeded', 0)} from {s.get('run')}" for s in sources) + f"; {ignored} ignored"])
    return rows


def section(exp: dict[str, Any], over: list[tuple[str, str]]) -> str | None:
    """The details: each skipped configuration (a sampler's grouped by why), each ignored earlier trial."""
    parts = []
    if over:
        parts.append(f"Over the budget ({words(exp['budget'].items())}), never trained:")
        if exp.get("algorithm") in runfolder.OPTUNA_ALGORITHMS:
            by_reason = Counter(why for _, why in over)
            parts.append("\n".join(f"- {n} sampled configuration(s): {why}" for why, n in sorted(by_reason.items())))
        else:
            parts.append("\n".join(f"- {config}: {why}" for config, why in over))
    for source in exp.get("warm_start") or []:
        ignored = source.get("ignored") or []
        parts.append(f"Warm start from `{source.get('run')}` (`{source.get('path')}`): "
                     f"{source.get('seeded', 0)} completed trial(s) seeded the study, {len(ignored)} ignored, "
                     f"{source.get('not_completed', 0)} not completed (never used)" + (":" if ignored else "."))
        if ignored:
            lines = [f"- {i.get('trial_id')}: {i.get('why')}" for i in ignored[:LISTED]]
            if len(ignored) > LISTED:
                lines.append(f"- ... and {len(ignored) - LISTED} more (experiment.json lists them all)")
            parts.append("\n".join(lines))
    return "\n\n".join(["### Budget and warm start", *parts]) if parts else None


def _values(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items()) or "(base configuration)"
