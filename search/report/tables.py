"""The report's tables in the paper's form: one per block, one row per configuration.

Repeats of a configuration are aggregated (mean +- std, n); only completed trials enter the
aggregate and the best-value marking, the others get their own table so that a low-fidelity
number from a trial ASHA stopped is never compared with a finished one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from search.metric import METRICS, MODES, best_column, label
from search.space.index import RowIndex, lowest
from simvp_core.oneline import printable

DECIMALS = {"mse": 2, "mae": 2, "ssim": 4, "psnr": 2}  # OpenSTL's convention, kept everywhere
HEADERS = {"mse": "MSE ↓", "mae": "MAE ↓", "ssim": "SSIM ↑", "psnr": "PSNR ↑"}
NOISE_ALPHA = 0.05
NOISE_MARK = "†"
NOISE_FOOTNOTE = (
    f"{NOISE_MARK} the best value is not separable from the runner-up: Welch's t-test over their "
    f"repeats gives two-sided p >= {NOISE_ALPHA} (tested only where both have >= 2 repeats; a "
    "single run carries no noise estimate). Bold marks the best completed value of each block.")
STATUS_LABELS = {"stopped": "stopped early", "errored": "errored", "diverged": "diverged"}
MISSING = "–"


@dataclass(frozen=True)
class Stat:
    """One metric of one configuration over its completed repeats."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan

    def format(self, metric: str) -> str:
        if not self.values:
            return MISSING
        d = DECIMALS[metric]
        return f"{self.mean:.{d}f}" + (f" ± {self.std:.{d}f}" if self.n >= 2 else "")


@dataclass(frozen=True)
class ConfigSummary:
    """One table row: a configuration (config_key) and its completed repeats."""

    key: str
    config: dict[str, Any]  # the resolved TrainConfig values of its first repeat
    n: int
    n_params: float
    epochs_run: str
    stats: dict[str, Stat]  # metric -> test values


def is_missing(value: Any) -> bool:
    """None, or the NaN pandas stores for None in a numeric column (a size left to the preset)."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def format_value(value: Any) -> str:
    """A parameter value as a short, stable string (missing: the preset's default)."""
    if is_missing(value):
        return "default"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def sort_key(value: Any) -> tuple:
    """Orders mixed parameter values: numbers, then strings, then defaults."""
    if is_missing(value):
        return (2, 0.0, "")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def name_values(config: dict[str, Any], names: list[str]) -> str:
    """`name=value, ...` of the given parameters, for headings and labels."""
    return ", ".join(f"{n}={format_value(config[n])}" for n in names) or "(fixed configuration)"


def split_blocks(df: pd.DataFrame, blocks: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The trials grouped by the values of the block parameters, in a stable order."""
    if not blocks:
        return [({}, df)]
    groups: dict[tuple, list[int]] = {}
    for i, row in df.iterrows():  # missing values as None: NaN keys would never compare equal
        groups.setdefault(tuple(None if is_missing(row[b]) else row[b] for b in blocks), []).append(i)
    ordered = sorted(groups, key=lambda values: [sort_key(v) for v in values])
    return [(dict(zip(blocks, values)), df.loc[groups[values]]) for values in ordered]


def summarise(completed: pd.DataFrame, varied: list[str]) -> list[ConfigSummary]:
    """One summary per configuration of the completed trials, sorted by the varied values."""
    out = []
    for key, group in completed.groupby("config_key", sort=True):
        group = group.sort_values("trial_id")
        first = group.iloc[0].to_dict()
        epochs = sorted({int(e) for e in group["epochs_run"]})
        stats_ = {m: Stat(tuple(float(v) for v in group[f"test_{m}"] if np.isfinite(v)))
                  for m in METRICS}
        out.append(ConfigSummary(
            key=str(key), config=first, n=len(group), n_params=float(group["n_params"].mean()),
            epochs_run=str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}",
            stats=stats_))
    return sorted(out, key=lambda s: ([sort_key(s.config[n]) for n in varied], s.key))


def best_marks(rows: list[ConfigSummary]) -> dict[str, tuple[set[str], bool]]:
    """metric -> (keys of the best rows, whether the best is within noise of the runner-up)."""
    marks = {}
    for m in METRICS:
        scored = [r for r in rows if r.stats[m].n]
        if not scored:
            continue
        sign = 1.0 if MODES[m] == "min" else -1.0
        scored.sort(key=lambda r: (sign * r.stats[m].mean, r.key))
        best = scored[0].stats[m].mean
        keys = {r.key for r in scored if r.stats[m].mean == best}
        runner_up = next((r for r in scored if r.key not in keys), None)
        noisy = runner_up is not None and within_noise(scored[0].stats[m], runner_up.stats[m])
        marks[m] = (keys, noisy)
    return marks


def within_noise(a: Stat, b: Stat) -> bool:
    """Welch's t-test between two configurations' repeats; False when either has one run."""
    if a.n < 2 or b.n < 2:
        return False
    if a.std == 0 and b.std == 0:
        return a.mean == b.mean
    p = stats.ttest_ind(a.values, b.values, equal_var=False).pvalue
    return bool(p >= NOISE_ALPHA)


class PublishedRows:
    """The paper's rows of a report, indexed by their `match` (search.space.index.RowIndex): which
    one a configuration matches, in time linear in the configurations however many rows there are."""

    def __init__(self, published: list[dict]) -> None:
        self.entries = [e for e in published if isinstance(e, dict) and isinstance(e.get("match"), dict)
                        and e["match"]]
        self.index = RowIndex([e["match"] for e in self.entries])

    def match(self, config: dict[str, Any]) -> dict | None:
        """The first published entry whose every `match` key equals the configuration's value (by `same`)."""
        first = lowest(self.index.matching(config))
        return None if first is None else self.entries[first]


def match_published(config: dict[str, Any], published: list[dict] | PublishedRows) -> dict | None:
    """The first published entry whose every `match` key equals the configuration's value."""
    rows = published if isinstance(published, PublishedRows) else PublishedRows(published)
    return rows.match(config)


def markdown_table(header: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    """A GitHub pipe table; cells must already be strings (control characters are escaped here, so
    no value read back from a run folder can break a row)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(printable(c).replace("|", "\\|") for c in cells) + " |"
    rule = "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def block_table(rows: list[ConfigSummary], varied: list[str], published: list[dict] | PublishedRows) -> str:
    """The completed configurations of one block, best values bold, paper values beside ours."""
    marks = best_marks(rows)
    published = published if isinstance(published, PublishedRows) else PublishedRows(published)
    paper = {r.key: published.match(r.config) or {} for r in rows}
    paper_metrics = [m for m in METRICS if any(m in e for e in paper.values())]
    header = [*varied, "n", "params (M)", "epochs", *(HEADERS[m] for m in METRICS)]
    for m in paper_metrics:
        header += [f"paper {m.upper()}", f"Δ {m.upper()}"]
    body = []
    for r in rows:
        cells = [format_value(r.config[v]) for v in varied]
        cells += [str(r.n), _fmt(r.n_params / 1e6, 3), r.epochs_run]
        for m in METRICS:
            text = r.stats[m].format(m)
            keys, noisy = marks.get(m, (set(), False))
            if r.key in keys:
                text = f"**{text}**" + (NOISE_MARK if noisy else "")
            cells.append(text)
        for m in paper_metrics:
            cells += _paper_cells(r.stats[m], paper[r.key].get(m), DECIMALS[m])
        body.append(cells)
    return markdown_table(header, body, [False] * len(varied) + [True] * (len(header) - len(varied)))


def _paper_cells(ours: Stat, theirs: float | None, decimals: int) -> list[str]:
    """The published value and ours minus it."""
    if theirs is None:
        return [MISSING, MISSING]
    diff = f"{ours.mean - theirs:+.{decimals}f}" if ours.n else MISSING
    return [f"{theirs:.{decimals}f}", diff]


def not_completed_table(trials: pd.DataFrame, varied: list[str], metric: str) -> str:
    """Trials that did not finish (stopped early, errored, diverged): one row each with their last
    and best value of the search metric, never ranked."""
    ordered = sorted((row for _, row in trials.iterrows()),
                     key=lambda r: ([sort_key(r[v]) for v in varied], str(r["trial_id"])))
    decimals = DECIMALS[metric.rsplit("_", 1)[-1]]
    header = [*varied, "repeat", "trial", "status", "epochs run", f"last {label(metric)}",
              f"best {label(metric)}", "detail"]
    body = [[*(format_value(r[v]) for v in varied), str(int(r["repeat"])), str(r["trial_id"]),
             STATUS_LABELS.get(str(r["status"]), str(r["status"])), str(int(r["epochs_run"])),
             _fmt(r[metric], decimals), _fmt(r[best_column(metric)], decimals),
             _one_line(r["status_detail"])]
            for r in ordered]
    return markdown_table(header, body, [False] * (len(varied) + 3) + [True] * 3 + [False])


def _fmt(value: Any, decimals: int) -> str:
    return f"{float(value):.{decimals}f}" if value is not None and np.isfinite(value) else MISSING


def _one_line(text: Any, limit: int = 140) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
