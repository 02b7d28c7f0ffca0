"""The report of one search: the paper's tables and figures, and what the search learned, ranked by
the search's own metric (test metrics are shown beside it, never used to pick).

The report is a pure function of `runs/<name>/` (results.parquet, experiment.json, predictions/,
optuna.db, all read through search.runfolder): regenerating it gives the same markdown, byte for
byte, so it can live in git.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search import runfolder
from search.metric import DEFAULT, METRICS, best, best_column, direction, long_label
from search.report import animation, figures, insight, provenance, tables
from search.runfolder import results
from simvp_core.oneline import duration, printable

NUMERIC_COLUMNS = ("epochs_run", "repeat", *(f"val_{m}" for m in METRICS),
                   *(best_column(f"val_{m}") for m in METRICS), *(f"test_{m}" for m in METRICS),
                   "n_params", "seconds", "epochs")
STANDARD_TEST_SET = "mnist_test_seq.npy"  # how simvp_core.data labels the standard file
PAPER_TEST_SIZE = 10_000
FIGURE_FILES = ("predictions.png", "predictions.gif", "learning_curves.png", "cost.png",
                "parallel_coordinates.png", "efficiency.png")
GIF_SEQUENCES = 2  # test sequences (rows) in the report's animation
INDEX_MARK = re.compile(r"^<!-- index: (.*) -->$", re.MULTILINE)
INDEX_INTRO = (
    "One report per search, generated from `runs/<name>/` by `python -m search.report "
    "runs/<name>`; the search runner writes one at the end of every search. Each is a pure "
    "function of the stored results: regenerate a report rather than edit it.")


class ReportError(ValueError):
    """The run folder cannot be reported on: missing, unfinished or unreadable results."""


def load_run(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The trials of results.parquet (numeric columns as floats) and experiment.json, as the run
    folder checks them on reading; ReportError when they cannot be reported on."""
    try:
        experiment = runfolder.read_experiment(run_dir)
        df = results.read(run_dir)
    except runfolder.RunFolderError as e:
        raise ReportError(str(e)) from e
    if df.empty:
        raise ReportError(f"{results.path(run_dir)} holds no trials; nothing to report")
    df = df.copy()
    for c in NUMERIC_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in ("trial_id", "status", "config_key", "test_set"):
        df[c] = df[c].astype(str)
    df["status_detail"] = df["status_detail"].fillna("").astype(str)
    return df.sort_values("trial_id").reset_index(drop=True), experiment


def searched_names(df: pd.DataFrame, experiment: dict[str, Any]) -> list[str]:
    """The searched parameters: experiment.json's list, else every row's `searched` in order."""
    if experiment.get("searched"):
        return list(experiment["searched"])
    names: list[str] = []
    for text in df["searched"]:
        for name in json.loads(text) if isinstance(text, str) and text else []:
            if name not in names:
                names.append(name)
    return names


def search_metric(exp: dict[str, Any]) -> tuple[str, str]:
    """(metric, mode) the search ranked its trials by, as experiment.json records them."""
    metric = str(exp.get("metric") or DEFAULT)
    return metric, str(exp.get("mode") or direction(metric))


def build_report(run_dir: Path, reports_dir: Path = Path("reports")) -> Path:
    """Write reports/<name>.md and reports/<name>/*.png for runs/<name>; returns the md path."""
    run_dir, reports_dir = Path(run_dir), Path(reports_dir)
    df, exp = load_run(run_dir)
    name = run_dir.name
    blocks = list(exp.get("blocks") or [])
    varied = [p for p in searched_names(df, exp) if p != "seed" and p not in blocks]
    absent = [p for p in blocks + varied if p not in df.columns]
    if absent:
        raise ReportError(f"{results.path(run_dir)} lacks the searched/block column(s) "
                          f"{', '.join(absent)} named in experiment.json; rerun the search")
    ranked = search_metric(exp)
    if ranked[0] not in df.columns:
        raise ReportError(f"{results.path(run_dir)} lacks the column {ranked[0]}, the search metric "
                          "experiment.json names; rerun the search")
    fig_dir = reports_dir / name
    fig_dir.mkdir(parents=True, exist_ok=True)
    for f in FIGURE_FILES:
        (fig_dir / f).unlink(missing_ok=True)
    over = provenance.skipped(exp, run_dir)
    sections = [
        _header(df, exp, name, ranked, provenance.facts(exp, over)),
        _results(df, exp, blocks, varied, ranked),
        _figures(df, run_dir, fig_dir, name, blocks, varied, ranked),
        _insight(df, exp, run_dir, blocks + varied, ranked),
        *filter(None, [provenance.section(exp, over)]),
        f"---\n\nRegenerate with `python -m search.report runs/{name}` (the report is a pure "
        f"function of `runs/{name}/`).",
    ]
    md_path = reports_dir / f"{name}.md"
    md_path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    write_index(reports_dir)
    return md_path


def _test_set_note(df: pd.DataFrame) -> tuple[str, str]:
    """(a short name for the index, a prominent line saying which test set the numbers are on)."""
    completed = df[df["status"] == "completed"]
    sets = sorted(set(completed["test_set"]) - {"", "None", "nan"})
    if not sets:
        return "no test set", "> **Test set: none** — no trial completed its test evaluation."
    if all(s.startswith(STANDARD_TEST_SET) for s in sets):
        sizes = sorted({int(n) for n in completed.get("test_size", pd.Series(dtype=float)).dropna()})
        size = f" ({', '.join(f'{n:,}' for n in sizes)} sequences)" if sizes else ""
        partial = "" if not sizes or sizes == [PAPER_TEST_SIZE] else (
            f", but only part of it: the paper's numbers are over all {PAPER_TEST_SIZE:,} sequences")
        return "standard test set", (f"> **Test set:** {sets[0]}{size} — the file the paper's "
                                     f"numbers use{partial}.")
    short = ("stand-in test set from the bundled sample (not full MNIST)"
             if any("bundled sample" in s for s in sets) else "generated stand-in test set")
    return short, (
        f"> **Test set: NOT the standard file.** The numbers below come from: {'; '.join(sets)}"
        f". The paper's numbers are on the standard `{STANDARD_TEST_SET}` ({PAPER_TEST_SIZE:,} "
        "fixed sequences), so differences from the paper include the change of test set.")


def _header(df: pd.DataFrame, exp: dict[str, Any], name: str, ranked: tuple[str, str],
            origins: list[list[str]]) -> str:
    metric, mode = ranked
    counts = df["status"].value_counts().sort_index()
    done = int(counts.get("completed", 0))
    by_status = ", ".join(f"{n} {tables.STATUS_LABELS.get(s, s)}"
                          for s, n in counts.items() if s != "completed")
    top = best(df, metric, mode)
    test_mse = math.nan if top is None else top["test_mse"].mean()
    short_set, note = _test_set_note(df)
    algorithm = exp.get("algorithm", "n/a")
    summary = (f"{exp.get('experiment', name)}: {algorithm} search, {len(df)} trials ({done} "
               f"completed), best by {metric}: test MSE {insight.format_mse(test_mse)}, {short_set}")
    facts = [
        ["space file", f"`{portable_command(str(exp.get('space', 'n/a')))}`"],
        ["algorithm", f"{algorithm}" + (f", {exp['num_samples']} samples"
                                         if algorithm != "grid" and "num_samples" in exp else "")],
        ["scheduler", _scheduler(exp)],
        ["metric", f"{metric} ({mode})"],
        ["started", str(exp.get("started") or "n/a")],
        ["finished", str(exp.get("finished") or "not finished (running or interrupted)")],
        ["wall time", duration(exp.get("wall_seconds"), "long")],
        ["trials", f"{len(df)}: {done} completed" + (f", {by_status}" if by_status else "")],
        *origins,
        ["git commit", f"`{exp.get('git_commit', 'n/a')}`"],
        ["command", f"`{portable_command(str(exp.get('command', 'n/a')))}`"],
    ]
    return "\n\n".join([
        f"<!-- index: {printable(summary)} -->\n# {printable(exp.get('experiment', name))}: search report",
        printable(str(exp.get("description", "")).strip()) or "(no description)",
        note,
        tables.markdown_table(["", ""], facts, [False, False]),
    ])


_ABSOLUTE = re.compile(r"^(?P<head>sqlite:///|file://|--[\w-]+=)?(?P<path>[/~].*)$")


def portable_command(command: str) -> str:
    """A command line without the folders of the machine it ran on: each absolute path (also in a
    `--flag=` or an `sqlite:///` URI) shown as .../<its last part>, so that a report can travel."""
    try:
        words = shlex.split(command)
    except ValueError:  # not a shell command line: shown as it is
        return command
    shown = []
    for word in words:
        found = _ABSOLUTE.match(word)
        if found is None:
            shown.append(shlex.quote(word))
            continue
        name = Path(found["path"].rstrip("/")).name
        shown.append((found["head"] or "") + ".../" + shlex.quote(name) if name else word)
    return " ".join(shown)


def _scheduler(exp: dict[str, Any]) -> str:
    """`asha (grace period 1, reduction factor 2, max epochs 3)`, from a name or a settings dict."""
    raw = exp.get("scheduler", "none")
    if isinstance(raw, dict):
        settings = {k: v for k, v in raw.items() if k != "type"}
        name = str(raw.get("type", "n/a"))
    else:
        name = str(raw)
        settings = {k: exp[k] for k in ("grace_period", "reduction_factor", "max_epochs")
                    if k in exp and name == "asha"}
    details = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in settings.items())
    return f"{name} ({details})" if details else name


def _results(df: pd.DataFrame, exp: dict[str, Any], blocks: list[str], varied: list[str],
             ranked: tuple[str, str]) -> str:
    published = tables.PublishedRows(list(exp.get("published") or []))
    parts = ["## Results on the test set",
             "Test metrics of completed trials, one row per configuration: MSE and MAE are per "
             "frame, summed over pixels (0-1 scale); SSIM uses data_range 2.0 as the paper; PSNR in "
             "dB. n = completed repeats, shown as mean ± sample std when n >= 2. Bold: best of the "
             "block among completed rows." + (" Δ = ours − paper." if published.entries else "")]
    any_repeats = False
    for i, (values, trials) in enumerate(tables.split_blocks(df, blocks), start=1):
        if blocks:
            parts.append(f"### Block {i}: {tables.name_values(values, blocks)}")
        completed = trials[trials["status"] == "completed"]
        rows = tables.summarise(completed, varied)
        any_repeats |= any(r.n >= 2 for r in rows)
        if rows:
            parts.append(tables.block_table(rows, varied, published))
            sources = sorted({str(e.get("source")) for r in rows
                              if (e := tables.match_published(r.config, published))
                              and e.get("source")})
            if sources:
                parts.append("Paper values: " + "; ".join(sources) + ".")
        else:
            parts.append("No configuration of this block completed.")
        others = trials[trials["status"] != "completed"]
        if not others.empty:
            parts.append(f"**Not completed** ({len(others)} trial(s); never ranked, their last "
                         f"{long_label(ranked[0])} is from fewer epochs):")
            parts.append(tables.not_completed_table(others, varied, ranked[0]))
    if any_repeats:
        parts.append(tables.NOISE_FOOTNOTE)
    return "\n\n".join(parts)


def _figures(df: pd.DataFrame, run_dir: Path, fig_dir: Path, name: str, blocks: list[str],
             varied: list[str], ranked: tuple[str, str]) -> str:
    metric, mode = ranked
    parts = ["## Figures"]
    best, notes = _block_predictions(df, run_dir, blocks, varied, ranked)
    parts += notes
    if best:
        first = {k: a[0] for k, a in best[0][1].items()}
        strip = [("Input (frames 1-10)", first["inputs"]), ("Target (frames 11-20)", first["targets"]),
                 *((f"Prediction, {label}", arrays["preds"][0]) for label, arrays in best)]
        short_set = _test_set_note(df)[0]
        figures.save(figures.prediction_strip(strip, f"First test sequence ({short_set})"),
                     fig_dir / "predictions.png")
        parts.append(f"![Predictions of the best configuration of each block]({name}/predictions.png)"
                     "\n\nInput, target and the prediction of each block's best configuration by "
                     f"{metric} (paper Table 6).")
        parts.append(_animation(best, fig_dir, name))
    else:
        parts.append("No stored predictions (`predictions/<trial_id>.npz`) for a completed trial.")
    if any(figures.history_curve(h, metric)[0] for h in df["history"]):
        figures.save(figures.learning_curves(df, blocks + varied, metric, mode),
                     fig_dir / "learning_curves.png")
        words = long_label(metric)
        parts.append(f"![Learning curves]({name}/learning_curves.png)\n\n{words[0].upper()}{words[1:]} per "
                     "epoch; one colour per configuration (its repeats share it), named by its searched "
                     "values; dashed with a cross: stopped early; dotted: errored or diverged.")
    else:
        parts.append("No per-epoch history stored, so no learning curves.")
    figures.save(figures.cost_figure(df), fig_dir / "cost.png")
    parts.append(f"![Test MSE against size and training time]({name}/cost.png)\n\nEach point is a "
                 "trial; the red line is the Pareto front of completed trials (smaller and better).")
    if blocks + varied:
        figures.save(figures.parallel_coordinates(df, blocks + varied, metric, mode),
                     fig_dir / "parallel_coordinates.png")
        parts.append(f"![Parallel coordinates of the searched parameters]({name}/parallel_coordinates.png)"
                     f"\n\nOne line per trial through its searched values, coloured by its {metric} "
                     "(brighter is better); grey dashed: stopped early, at its last value.")
    else:
        parts.append("Nothing was searched, so no parallel coordinates.")
    figures.save(figures.efficiency_curve(df, metric, mode), fig_dir / "efficiency.png")
    parts.append(f"![Best so far against trial-epochs spent]({name}/efficiency.png)\n\nThe search's "
                 f"efficiency: the best {metric} of a completed trial (single trials, repeats not "
                 "averaged) against the trial-epochs spent, trials in the order they ended.")
    return "\n\n".join(parts)


def _block_predictions(df: pd.DataFrame, run_dir: Path, blocks: list[str], varied: list[str],
                       ranked: tuple[str, str]) -> tuple[list[tuple[str, dict[str, np.ndarray]]], list[str]]:
    """(its searched values, its stored test predictions) of each block's best configuration."""
    found: list[tuple[str, dict[str, np.ndarray]]] = []
    notes: list[str] = []
    for _, trials in tables.split_blocks(df, blocks):
        trial = _best_trial(trials[trials["status"] == "completed"], run_dir, ranked)
        if trial is None:
            continue
        try:
            found.append((tables.name_values(trial, blocks + varied),
                          runfolder.read_predictions(run_dir, trial["trial_id"])))
        except runfolder.RunFolderError as e:
            notes.append(f"{e}.")
    return found, notes


def _animation(best: list[tuple[str, dict[str, np.ndarray]]], fig_dir: Path, name: str) -> str:
    """predictions.gif: the first test sequences, input and target beside each block's best
    prediction (numbered when there are several blocks), and its markdown."""
    several = len(best) > 1
    predictions = [(f"prediction {i}" if several else "prediction 11-20", arrays["preds"])
                   for i, (_, arrays) in enumerate(best, start=1)]
    n = min(GIF_SEQUENCES, *(len(arrays["preds"]) for _, arrays in best))
    animation.write_gif(animation.columns_of(best[0][1], predictions, n), fig_dir / "predictions.gif")
    key = ("; ".join(f"prediction {i}: {label}" for i, (label, _) in enumerate(best, start=1))
           if several else f"prediction: {best[0][0]}")
    which = f"first {n} test sequences" if n > 1 else "first test sequence"
    return (f"![The {which}, moving]({name}/predictions.gif)\n\nThe {which} moving: input frame t "
            f"beside target and predicted frame 10 + t ({key}).")


def _best_trial(completed: pd.DataFrame, run_dir: Path, ranked: tuple[str, str]) -> pd.Series | None:
    """The completed trial with stored predictions whose configuration is best by the search
    metric, its best repeat."""
    stored = completed[[runfolder.predictions_path(run_dir, t).is_file() for t in completed["trial_id"]]]
    if stored.empty:  # also when nothing completed: completed[[]] selects no columns
        return None
    top = best(stored, *ranked)
    return None if top is None else top.iloc[0]


def _insight(df: pd.DataFrame, exp: dict[str, Any], run_dir: Path, searched: list[str],
             ranked: tuple[str, str]) -> str:
    completed = df[df["status"] == "completed"]
    parts = ["## Search insight", "\n".join(insight.best_lines(completed, *ranked, searched))]
    stops = insight.stop_summary(df)
    if stops:
        parts.append(stops)
    if exp.get("algorithm") in runfolder.OPTUNA_ALGORITHMS:
        try:
            parts += insight.importance_lines(runfolder.read_study(run_dir, exp.get("optuna_study")))
        except runfolder.RunFolderError as e:
            parts.append(f"Parameter importances: {e}.")
    gpu = float((exp.get("resources") or {}).get("gpu", 0) or 0)
    parts += ["### Cost", insight.cost_table(df, exp.get("wall_seconds"), gpu)]
    return "\n\n".join(parts)


def write_index(reports_dir: Path) -> Path:
    """Rewrite reports_dir/README.md: every report with its one-line summary, by name."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for md in sorted(reports_dir.glob("*.md")):
        if md.name == "README.md":
            continue
        found = INDEX_MARK.search(md.read_text(encoding="utf-8"))
        rows.append([f"[{md.stem}]({md.name})", found.group(1) if found else ""])
    body = (tables.markdown_table(["report", "summary"], rows, [False, False]) if rows
            else "No reports yet: run a search (`python -m search.run spaces/<name>.yaml`).")
    path = reports_dir / "README.md"
    path.write_text(f"# Reports\n\n{INDEX_INTRO}\n\n{body}\n", encoding="utf-8")
    return path
