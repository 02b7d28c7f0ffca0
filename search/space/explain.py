"""The plan of a search in words, for --dry-run: what runs, how it is chosen and stopped, what it costs."""

from __future__ import annotations

from search.budget import Budget
from search.runfolder.checkpoints import KEEP_CHECKPOINTS
from search.space.schema import VALUE_KINDS
from search.space.spec import Param, SearchSpec, show_when
from simvp_core.config import TrainConfig, declared
from simvp_core.oneline import printable

HEADLINE = tuple(declared("headline"))  # the settings every plan shows, default or not


def explain(spec: SearchSpec) -> str:
    """The plan: base, params, trials, scheduler, metric, resources, published rows, total cost."""
    default = TrainConfig()
    fixed = {k: v for k, v in spec.base.to_dict().items()
             if k not in spec.names and (k in HEADLINE or getattr(default, k) != v)}
    lines = [f"experiment: {spec.experiment}  ({printable(spec.path)})"]  # control characters escaped
    if spec.description:
        lines.append(f"  {printable(spec.description.strip())}")
    lines.append("base: " + " ".join(f"{k}={v}" for k, v in fixed.items())
                 + "  (other fields: TrainConfig defaults)")
    lines.append(f"space: {len(spec.space)} param(s)")
    width = max((len(p.name) for p in spec.space), default=0)
    for p in spec.space:
        cond = f"  when {show_when(p.when)}" if p.when else ""
        lines.append(f"  {p.name:<{width}}  {_show_param(p)}{cond}")
    trials = spec.grid_points()
    if spec.algorithm == "grid":
        lines.append(f"search: grid, {len(trials)} trial(s)")
    else:
        lines.append(f"search: {spec.algorithm}, {spec.num_samples} samples, seed {spec.seed}, "
                     f"{len(trials)} listed point(s) first")
    for n, point in enumerate(trials, 1):
        lines.append(f"  {n:>3}. " + (" ".join(f"{k}={v}" for k, v in point.items()) or "(base configuration)"))
    if spec.budget:
        lines.append(f"budget: {Budget(spec.budget, spec.base).words()}; configurations over it are never trained"
                     + (f", {len(spec.over_budget)} of the grid's" + ":" * bool(spec.over_budget)
                        if spec.algorithm == "grid" else
                        " (each sampled one is counted first; skipped ones are told to the study)"))
    for point, why in spec.over_budget:
        lines.append("    skipped: " + " ".join(f"{k}={v}" for k, v in point.items()) + f" ({why})")
    if spec.scheduler == "asha":
        lines.append(f"scheduler: asha (grace_period {spec.grace_period}, reduction_factor "
                     f"{spec.reduction_factor}, max_epochs {spec.max_epochs})")
    else:
        lines.append("scheduler: none (every trial runs all its epochs)")
    lines.append(f"metric: {spec.metric} ({spec.mode})")
    seeds = f" (seeds {spec.base.seed}..{spec.base.seed + spec.repeats - 1})" if spec.repeats > 1 else ""
    lines.append(f"repeats: {spec.repeats}{seeds}")
    lines.append(f"resources per trial: cpu {spec.cpu:g}, gpu {spec.gpu:g}; max_failures {spec.max_failures}")
    lines.append(f"checkpoints kept when the search finishes: {KEEP_CHECKPOINTS[spec.keep_checkpoints]} "
                 f"(keep_checkpoints {spec.keep_checkpoints})")
    if spec.blocks:
        lines.append(f"blocks: {', '.join(spec.blocks)}")
    sources = sorted({printable(row["source"])[:60] for row in spec.published})
    more = f", +{len(sources) - 5} more" if len(sources) > 5 else ""
    lines.append(f"published: {len(spec.published)} row(s)" + (f" ({', '.join(sources[:5])}{more})" if sources else ""))
    lines.append(f"total: {spec.total_trials()} trial(s), at most {spec.worst_case_epochs()} trial-epochs")
    return "\n".join(lines)


def _show_param(p: Param) -> str:
    if p.kind in VALUE_KINDS:  # a long list: its start and its length (a line stays readable)
        shown = str(list(p.values))
        return f"{p.kind} {shown}" if len(shown) <= 100 else f"{p.kind} {shown[:90]}, ...] ({len(p.values):,} values)"
    return f"{p.kind} [{p.low}, {p.high}]" + (f" step {p.step}" if p.step is not None else "")
