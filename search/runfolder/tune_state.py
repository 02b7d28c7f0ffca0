"""Tune's record of a search's trials as it runs: the newest `experiment_state-*.json` snapshot in
the search's Tune folder, one TuneTrial per trial (what search.status counts while the driver runs).

Read only. Tune rewrites the snapshot in place after each result, so a read that meets it half
written is tried again. The folder is the run folder's own `tune/` for a storage folder (so a run
folder copied elsewhere still reads), or the URI experiment.json names (s3://, gs://: pyarrow).
Light: no Ray; pyarrow only for a URI.
"""

from __future__ import annotations

import ast
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.runfolder import TUNE_DIR, RunFolderError, tune_path

STATE_PREFIX, STATE_SUFFIX = "experiment_state-", ".json"  # Tune's name for its snapshot


@dataclass(frozen=True)
class TuneTrial:
    """One trial as Tune's snapshot has it (the attributes search.run.progress counts)."""

    trial_id: str
    status: str  # PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    config: dict[str, Any]
    last_result: dict[str, Any]
    metric_analysis: dict[str, Any]
    num_failures: int


def folder(run_dir: Path, tune_storage: str | None) -> str:
    """Tune's folder of the search: a URI's, or the run folder's own tune/."""
    return tune_path(tune_storage) if tune_storage and "://" in tune_storage else str(Path(run_dir) / TUNE_DIR)


def read(tune_folder: str, tries: int = 10) -> list[TuneTrial] | None:
    """The trials of the newest snapshot; None before Tune's first. RunFolderError when it cannot
    be read or is not Tune's experiment state."""
    for _ in range(tries):
        text = _newest(tune_folder)
        if text is None:
            return None
        try:
            return _trials(json.loads(text))
        except json.JSONDecodeError:
            time.sleep(0.05)  # being rewritten
    raise RunFolderError(f"Tune's experiment state in {tune_folder} is not valid JSON; if the search is "
                         "not running, resume it to rewrite it")


def _newest(tune_folder: str) -> str | None:
    """The newest snapshot's text (names carry the session's start), or None."""
    try:
        if "://" not in tune_folder:
            names = [p.name for p in Path(tune_folder).iterdir()] if Path(tune_folder).is_dir() else []
            states = sorted(n for n in names if n.startswith(STATE_PREFIX) and n.endswith(STATE_SUFFIX))
            return (Path(tune_folder) / states[-1]).read_text(encoding="utf-8") if states else None
        from pyarrow import fs

        filesystem, root = fs.FileSystem.from_uri(tune_folder)
        found = filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True))
        states = sorted(f.path for f in found if f.base_name.startswith(STATE_PREFIX)
                        and f.base_name.endswith(STATE_SUFFIX))
        if not states:
            return None
        with filesystem.open_input_stream(states[-1]) as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunFolderError(f"Tune's experiment state in {tune_folder} cannot be read "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:120]})") from e


def _trials(state: Any) -> list[TuneTrial]:
    """TuneTrials from the snapshot: `trial_data` pairs of JSON texts, (trial, runtime metadata)."""
    try:
        trials = []
        for trial_text, runtime_text in state["trial_data"]:
            trial, runtime = json.loads(trial_text), json.loads(runtime_text)
            last = runtime.get("last_result") or {}
            config = last.get("config") if isinstance(last.get("config"), dict) else _config(trial.get("config"))
            trials.append(TuneTrial(str(trial["trial_id"]), str(trial["status"]), config, dict(last),
                                    dict(runtime.get("metric_analysis") or {}),
                                    int(runtime.get("num_failures") or 0)))
        return trials
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunFolderError(f"Tune's experiment state is not what this version of Ray writes "
                             f"({type(e).__name__}: {str(e)[:80]})") from e


def _config(text: Any) -> dict[str, Any]:
    """A trial's config as the snapshot writes it before its first result: a Python literal."""
    try:
        config = ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError):
        return {}
    return config if isinstance(config, dict) else {}


__all__ = ["TuneTrial", "read", "folder"]
