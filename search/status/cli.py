"""`python -m search.status [runs/<name>|NAME] [--storage DIR] [--json]`: one search's state in a
few lines (running with its driver, finished, interrupted and how to resume it; trials by outcome,
trial-epochs, elapsed and left, the best configuration, where the results, report, log and MLflow
runs are), or one line per search in --storage. Reads only. A folder that is not a search or
cannot be read: one line on stderr, exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from search.runfolder import EXPERIMENT_FILE, RunFolderError
from search.status.state import status
from simvp_core.oneline import OneLineParser, duration, print_error, short_path


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python -m search.status", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("run", nargs="?", help="runs/<name>, or a search's name in --storage; none: every search there")
    p.add_argument("--storage", type=Path, default=Path("runs"), help="the folder holding the run folders "
                   "(search.run's --storage; default: runs)")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.run is None:
            found = [status_or_error(d) for d in searches(args.storage)]
            print(json.dumps(found, indent=2) if args.json else
                  "\n".join(map(line, found)) or f"no searches in {args.storage}")
            return 0
        found = status(run_folder(args.run, args.storage))
    except RunFolderError as e:
        print_error(' '.join(str(e).split()))
        return 2
    print(json.dumps(found, indent=2) if args.json else text(found))
    return 0


def run_folder(run: str, storage: Path) -> Path:
    """The run folder a RUN argument names: a folder, else a search's name in the storage folder."""
    if Path(run).is_dir() or not (storage / run).is_dir():
        return Path(run)
    return storage / run


def searches(storage: Path) -> list[Path]:
    """The run folders in the storage folder (those holding experiment.json), by name."""
    if not storage.is_dir():
        raise RunFolderError(f"--storage {short_path(storage)}: no such folder; pass the folder holding the "
                             "run folders (search.run's --storage)")
    return sorted(d for d in storage.iterdir() if (d / EXPERIMENT_FILE).is_file())


def status_or_error(run_dir: Path) -> dict[str, Any]:
    """A search's status for the listing; one that cannot be read is listed with the reason."""
    try:
        return status(run_dir)
    except RunFolderError as e:
        return {"name": run_dir.name, "run_dir": str(run_dir), "state": "unreadable", "error": str(e)}


def line(s: dict[str, Any]) -> str:
    """One search in one line, for the listing."""
    if s["state"] in ("unreadable", "starting"):
        return f"{s['name']}: {s['state']}" + (f" ({' '.join(s['error'].split())[:200]})" if "error" in s else "")
    trials, best = s["trials"], s["best"]
    done = sum(trials[o] for o in ("completed", "stopped", "errored", "diverged"))
    shown = f", best {s['metric']} {best['value']:.5g}" if best else ""
    return f"{s['name']}: {s['state']}, {done}/{trials['planned'] or '?'} trials done{shown}"


def text(s: dict[str, Any]) -> str:
    """The search in a few lines."""
    head = f"search {s['name']} ({s['run_dir']}): {_state(s)}"
    if s["state"] == "starting":
        return head
    t = s["trials"]
    outcomes = ", ".join(f"{t[k]} {word}" for k, word in (
        ("completed", "completed"), ("stopped", "stopped early"), ("errored", "errored"), ("diverged", "diverged"),
        ("running", "running"), ("pending", "to run")) if t[k])
    epochs = s["trial_epochs"]
    spent = f"{epochs['spent']}" + (f" of at most {epochs['planned']}" if epochs["planned"] else "")
    left = ("" if s["left_s"] is None else
            f", {'at most ' if s['left_at_most'] else ''}~{duration(s['left_s'], 'long')} left at the rate so far")
    lines = [head, f"trials: {outcomes or 'none yet'} (of {t['planned'] or '?'} planned)",
             f"trial-epochs: {spent} spent; {duration(s['elapsed_s'], 'long')} elapsed{left}"]
    best = s["best"]
    if best is None:
        lines.append(f"best {s['metric']} ({s['mode']}): none yet")
    else:
        config = " ".join(f"{k}={_fmt(v)}" for k, v in best["config"].items()) or "(base configuration)"
        mean = f" (mean of {best['repeats']} repeats)" if best["repeats"] > 1 else ""
        lines.append(f"best {s['metric']} ({s['mode']}) of {best['of']}: {_fmt(best['value'])}{mean}, trial "
                     f"{best['trial_id']}: {config}")
    lines.append(f"results: {s['results'] or 'not written yet (when the search ends)'}")
    lines.append(f"report: {s['report'] or (s['report_planned'] or '?') + ' (not written yet)'}")
    mlflow = s["mlflow"]
    lines.append(f"MLflow: {mlflow['tracking_uri']} (parent run {mlflow['parent_run_id']}); view with: "
                 f"{mlflow['view']}" if mlflow else "MLflow: none (tracking was off)")
    if s["log"]:
        lines.append(f"log: {s['log']}")
    return "\n".join(lines)


def _state(s: dict[str, Any]) -> str:
    driver = s["driver"]
    if s["state"] in ("running", "starting"):
        where = f"driver pid {driver['pid']} on host {driver['host']}, since {driver['since']}"
        return s["state"] + f" ({where}" + ("; on another host: not checked from here)" if driver["alive"] is None
                                           else ")")
    if s["state"] == "finished":
        return f"finished {s['finished']}"
    killed = (f"; its driver (pid {driver['pid']} on host {driver['host']}) is gone without ending it (killed?)"
              if driver else "")
    resume = f"; resume with: {s['resume_command']}" if s["resume_command"] else "; nothing Tune recorded to resume"
    return f"interrupted{killed}{resume}"


def _fmt(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, float) and math.isfinite(v) else str(v)


__all__ = ["main", "build_parser", "text", "line", "run_folder"]
