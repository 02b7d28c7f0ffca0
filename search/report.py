"""`python -m search.report runs/<name>`: the paper's tables and figures from one search's results.

The report is a pure function of `runs/<name>/` (results.parquet, experiment.json, predictions/,
optuna.db): regenerating it gives the same markdown, byte for byte, so it can live in git.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from search import figures, insight, layout, tables

REQUIRED_COLUMNS = (
    "trial_id", "status", "status_detail", "epochs_run", "searched", "config_key", "repeat",
    "val_mse", "best_val_mse", "test_mse", "test_mae", "test_ssim", "test_psnr", "test_set",
    "n_params", "seconds", "history", "epochs",
)
NUMERIC_COLUMNS = ("epochs_run", "repeat", "val_mse", "best_val_mse", "test_mse", "test_mae",
                   "test_ssim", "test_psnr", "n_params", "seconds", "epochs")
STANDARD_TEST_SET = "mnist_test_seq.npy"  # how simvp_core.data labels the standard file
PAPER_TEST_SIZE = 10_000
FIGURE_FILES = ("predictions.png", "learning_curves.png", "cost.png", "parallel_coordinates.png",
                "efficiency.png")
INDEX_MARK = re.compile(r"^<!-- index: (.*) -->$", re.MULTILINE)
INDEX_INTRO = (
    "One report per search, generated from `runs/<name>/` by `python -m search.report "
    "runs/<name>`; the search runner writes one at the end of every search. Each is a pure "
    "function of the stored results: regenerate a report rather than edit it.")


class ReportError(ValueError):
    """The run folder cannot be reported on: missing, unfinished or unreadable results."""


def load_run(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The trials of results.parquet (checked, numeric columns as floats) and experiment.json."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run folder; pass runs/<name> of a search "
                          "started with python -m search.run")
    exp_path = run_dir / layout.EXPERIMENT_FILE
    if not exp_path.is_file():
        raise ReportError(f"{exp_path} not found: {run_dir} is not a search run folder "
                          "(python -m search.run writes it when the search starts)")
    try:
        experiment = json.loads(exp_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{exp_path} is not valid JSON ({e}); rewrite it by resuming the search "
                          "(python -m search.run SPACE --resume)") from e
    path = run_dir / layout.RESULTS_FILE
    if not path.is_file():
        raise ReportError(f"{path} not found: the search has not written its results yet; let it "
                          "finish or resume it (python -m search.run SPACE --resume)")
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        reason = " ".join(str(e).split())
        raise ReportError(f"{path} cannot be read ({type(e).__name__}: {reason}); it is incomplete "
                          "or corrupt: resume the search to rewrite it") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ReportError(f"{path} lacks column(s) {', '.join(missing)}; it was not written by "
                          "this version of search.results: rerun the search")
    if df.empty:
        raise ReportError(f"{path} holds no trials; nothing to report")
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


def build_report(run_dir: Path, reports_dir: Path = Path("reports")) -> Path:
    """Write reports/<name>.md and reports/<name>/*.png for runs/<name>; returns the md path."""
    run_dir, reports_dir = Path(run_dir), Path(reports_dir)
    df, exp = load_run(run_dir)
    name = run_dir.name
    blocks = list(exp.get("blocks") or [])
    varied = [p for p in searched_names(df, exp) if p != "seed" and p not in blocks]
    absent = [p for p in blocks + varied if p not in df.columns]
    if absent:
        raise ReportError(f"{run_dir / layout.RESULTS_FILE} lacks the searched/block column(s) "
                          f"{', '.join(absent)} named in experiment.json; rerun the search")
    fig_dir = reports_dir / name
    fig_dir.mkdir(parents=True, exist_ok=True)
    for f in FIGURE_FILES:
        (fig_dir / f).unlink(missing_ok=True)
    sections = [
        _header(df, exp, name),
        _results(df, exp, blocks, varied),
        _figures(df, exp, run_dir, fig_dir, name, blocks, varied),
        _insight(df, exp, run_dir, blocks + varied),
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


def _header(df: pd.DataFrame, exp: dict[str, Any], name: str) -> str:
    counts = df["status"].value_counts().sort_index()
    done = int(counts.get("completed", 0))
    by_status = ", ".join(f"{n} {tables.STATUS_LABELS.get(s, s)}"
                          for s, n in counts.items() if s != "completed")
    top = layout.best(df, "test_mse", "min")
    best = math.nan if top is None else top["test_mse"].mean()
    short_set, note = _test_set_note(df)
    algorithm = exp.get("algorithm", "n/a")
    summary = (f"{exp.get('experiment', name)}: {algorithm} search, {len(df)} trials ({done} "
               f"completed), best test MSE {insight.format_mse(best)}, {short_set}")
    facts = [
        ["space file", f"`{exp.get('space', 'n/a')}`"],
        ["algorithm", f"{algorithm}" + (f", {exp['num_samples']} samples"
                                         if algorithm != "grid" and "num_samples" in exp else "")],
        ["scheduler", _scheduler(exp)],
        ["metric", f"{exp.get('metric', 'val_mse')} ({exp.get('mode', 'min')})"],
        ["started", str(exp.get("started") or "n/a")],
        ["finished", str(exp.get("finished") or "not finished (running or interrupted)")],
        ["wall time", insight.duration(exp.get("wall_seconds"))],
        ["trials", f"{len(df)}: {done} completed" + (f", {by_status}" if by_status else "")],
        ["git commit", f"`{exp.get('git_commit', 'n/a')}`"],
        ["command", f"`{exp.get('command', 'n/a')}`"],
    ]
    return "\n\n".join([
        f"<!-- index: {summary} -->\n# {exp.get('experiment', name)}: search report",
        str(exp.get("description", "")).strip() or "(no description)",
        note,
        tables.markdown_table(["", ""], facts, [False, False]),
    ])


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


def _results(df: pd.DataFrame, exp: dict[str, Any], blocks: list[str], varied: list[str]) -> str:
    published = list(exp.get("published") or [])
    parts = ["## Results on the test set",
             "Test metrics of completed trials, one row per configuration: MSE and MAE are per "
             "frame, summed over pixels (0-1 scale); SSIM uses data_range 2.0 as the paper; PSNR in "
             "dB. n = completed repeats, shown as mean ± sample std when n >= 2. Bold: best of the "
             "block among completed rows." + (" Δ = ours − paper." if published else "")]
    any_repeats = False
    for i, (values, trials) in enumerate(tables.split_blocks(df, blocks), start=1):
        if blocks:
            parts.append(f"### Block {i}: {tables.describe(values, blocks)}")
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
                         "validation MSE is from fewer epochs):")
            parts.append(tables.not_completed_table(others, varied))
    if any_repeats:
        parts.append(tables.NOISE_FOOTNOTE)
    return "\n\n".join(parts)


def _figures(df: pd.DataFrame, exp: dict[str, Any], run_dir: Path, fig_dir: Path, name: str,
             blocks: list[str], varied: list[str]) -> str:
    parts = ["## Figures"]
    strip, notes = _prediction_rows(df, run_dir, blocks, varied)
    parts += notes
    if strip:
        short_set = _test_set_note(df)[0]
        figures.save(figures.prediction_strip(strip, f"First test sequence ({short_set})"),
                     fig_dir / "predictions.png")
        parts.append(f"![Predictions of the best configuration of each block]({name}/predictions.png)"
                     "\n\nInput, target and the prediction of each block's best configuration by "
                     "test MSE (paper Table 6).")
    else:
        parts.append("No stored predictions (`predictions/<trial_id>.npz`) for a completed trial.")
    if any(figures.history_curve(h)[0] for h in df["history"]):
        figures.save(figures.learning_curves(df, blocks + varied), fig_dir / "learning_curves.png")
        parts.append(f"![Learning curves]({name}/learning_curves.png)\n\nValidation MSE per epoch; "
                     "one colour per configuration (its repeats share it), named by its searched "
                     "values; dashed with a cross: stopped early; dotted: errored or diverged.")
    else:
        parts.append("No per-epoch history stored, so no learning curves.")
    figures.save(figures.cost_figure(df), fig_dir / "cost.png")
    parts.append(f"![Test MSE against size and training time]({name}/cost.png)\n\nEach point is a "
                 "trial; the red line is the Pareto front of completed trials (smaller and better).")
    metric = exp.get("metric", "val_mse") if exp.get("metric", "val_mse") in df.columns else "val_mse"
    mode = exp.get("mode", layout.direction(metric))
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


def _prediction_rows(df: pd.DataFrame, run_dir: Path, blocks: list[str], varied: list[str]
                     ) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """Input and target of the first test sequence, then each block's best prediction."""
    rows: list[tuple[str, np.ndarray]] = []
    notes: list[str] = []
    for _, trials in tables.split_blocks(df, blocks):
        trial = _best_trial(trials[trials["status"] == "completed"], run_dir)
        if trial is None:
            continue
        path = layout.predictions_path(run_dir, trial["trial_id"])
        try:
            with np.load(path) as npz:
                arrays = {k: np.asarray(npz[k][0], dtype=np.float32)
                          for k in ("inputs", "targets", "preds")}
        except (OSError, ValueError, KeyError, IndexError) as e:
            notes.append(f"Predictions of trial {trial['trial_id']} unreadable ({type(e).__name__}).")
            continue
        if any(a.shape != (figures.FRAMES, 1, 64, 64) for a in arrays.values()):
            notes.append(f"Predictions of trial {trial['trial_id']} have an unexpected shape.")
            continue
        if not rows:
            rows = [("Input (frames 1-10)", arrays["inputs"]),
                    ("Target (frames 11-20)", arrays["targets"])]
        rows.append((f"Prediction, {tables.describe(trial, blocks + varied)}", arrays["preds"]))
    return rows, notes


def _best_trial(completed: pd.DataFrame, run_dir: Path) -> pd.Series | None:
    """The completed trial with stored predictions whose configuration is best by test MSE
    (best validation MSE where no test was run), its best repeat."""
    stored = completed[[layout.predictions_path(run_dir, t).is_file() for t in completed["trial_id"]]]
    if stored.empty:  # also when nothing completed: completed[[]] selects no columns
        return None
    column = "test_mse" if np.isfinite(stored["test_mse"]).any() else "best_val_mse"
    top = layout.best(stored, column, "min")
    return None if top is None else top.iloc[0]


def _insight(df: pd.DataFrame, exp: dict[str, Any], run_dir: Path, searched: list[str]) -> str:
    metric = exp.get("metric", "val_mse")
    metric = metric if metric in df.columns else "val_mse"
    completed = df[df["status"] == "completed"]
    parts = ["## Search insight",
             "\n".join(insight.best_lines(completed, metric, exp.get("mode", "min"), searched))]
    stops = insight.stop_summary(df)
    if stops:
        parts.append(stops)
    if exp.get("algorithm") in layout.OPTUNA_ALGORITHMS:
        db = run_dir / layout.OPTUNA_DB
        if db.is_file():
            parts += insight.importance_lines(db, exp.get("optuna_study"))
        else:
            parts.append(f"Parameter importances: {layout.OPTUNA_DB} not found in the run folder.")
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


def attach_to_mlflow(run_dir: Path, md_path: Path) -> bool:
    """Log the report and its figures to the search's MLflow parent run; False when not done."""
    exp = layout.read_experiment(run_dir)
    uri, run_id = exp.get("tracking_uri"), exp.get("mlflow_parent_run_id")
    if not uri or not run_id:
        return False
    md_path = Path(md_path)
    fig_dir = md_path.parent / md_path.stem
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        client.log_artifact(run_id, str(md_path), artifact_path="report")
        if fig_dir.is_dir():
            client.log_artifacts(run_id, str(fig_dir), artifact_path=f"report/{md_path.stem}")
    except Exception as e:  # best effort: the report is on disk whatever the tracking server says
        reason = " ".join(str(e).split())[:200]
        print(f"report: not attached to MLflow run {run_id} at {uri}: {type(e).__name__}: {reason}")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.report", description=__doc__)
    parser.add_argument("run", help="runs/<name>, or just the experiment name (looked up in --runs-dir)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    if not run_dir.is_dir() and (args.runs_dir / args.run).is_dir():
        run_dir = args.runs_dir / args.run
    try:
        print(build_report(run_dir, args.reports_dir))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
