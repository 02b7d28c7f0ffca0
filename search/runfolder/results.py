"""`runs/<name>/results.parquet`: one row per trial, its columns, and its reading and writing.

Written atomically in column order, sorted by trial; read back checked (readable, a results
table) and never rewritten on read. Rows are built from Tune's trials by search.run.rows.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.metric import METRICS, best_column, best_of, direction
from search.runfolder import RESULTS_FILE, RunFolderError
from simvp_core.atomic import atomic_write
from simvp_core.files import FileError, open_regular
from simvp_core.oneline import short_path

if TYPE_CHECKING:
    import pandas as pd

STATUSES = ("completed", "stopped", "errored", "diverged")
TRIAL_COLUMNS = ("trial_id", "status", "status_detail", "epochs_run")
OUTCOME_COLUMNS = (
    "searched", "config_key", "repeat", *(f"val_{m}" for m in METRICS),
    *(best_column(f"val_{m}") for m in METRICS), *(f"test_{m}" for m in METRICS), "test_set", "precision",
    "n_params", "seconds", "ended", "node_id", "retries", "history", "mlflow_run_id",
)
# what every results.parquet has held, whatever version of the platform wrote it
REQUIRED = (
    "trial_id", "status", "status_detail", "epochs_run", "searched", "config_key", "repeat",
    "val_mse", "best_val_mse", "test_mse", "test_mae", "test_ssim", "test_psnr", "test_set",
    "n_params", "seconds", "history", "epochs",
)


@functools.cache
def columns() -> tuple[str, ...]:
    """results.parquet's columns in order: the trial, every TrainConfig field, its outcome."""
    from simvp_core.config import FIELD_TYPES  # pydantic: only for what writes or checks rows

    return (*TRIAL_COLUMNS, *FIELD_TYPES, *OUTCOME_COLUMNS)


def path(run_dir: Path) -> Path:
    return Path(run_dir) / RESULTS_FILE


def write(rows: list[dict[str, Any]], run_dir: Path) -> Path:
    """Write rows to results.parquet atomically, in column order, sorted by trial_id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = columns()
    ordered = [{c: r[c] for c in names} for r in sorted(rows, key=lambda r: r["trial_id"])]
    table = pa.Table.from_pylist(ordered) if ordered else pa.table({c: [] for c in names})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write(path(run_dir), sink.getvalue().to_pybytes())
    return path(run_dir)


def read(run_dir: Path) -> pd.DataFrame:
    """The trials as stored. Best-value columns a file written before they existed lacks are
    derived from each trial's history (in memory; the file is left as it is)."""
    import pandas as pd
    import pyarrow as pa

    file = path(run_dir)
    if not os.path.lexists(file):
        raise RunFolderError(f"{short_path(file)} not found: the search has not written its results yet; let "
                             "it finish or resume it (python -m search.run SPACE --resume)")
    fix = "it is incomplete or corrupt: resume the search to rewrite it"
    try:
        with open_regular(file, RESULTS_FILE) as f:  # a FIFO or a folder is refused, not waited on
            df = pd.read_parquet(f)
    except FileError as e:
        raise RunFolderError(f"{e.problem}; {fix}") from None
    except (OSError, ValueError, RecursionError, pa.ArrowException) as e:
        reason = " ".join(str(e).split())[:100]
        raise RunFolderError(f"{short_path(file)} cannot be read ({type(e).__name__}: {reason}); {fix}") from e
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise RunFolderError(f"{short_path(file)} lacks column(s) {', '.join(missing)}; it was not written by "
                             "this version of the search: rerun the search")
    odd = sorted({str(s)[:20] for s in df["status"]} - set(STATUSES))
    if odd or df["trial_id"].map(lambda t: not isinstance(t, str)).any():
        raise RunFolderError(f"{short_path(file)} holds trials of unknown status ({', '.join(odd[:3]) or 'or id'}); "
                             f"{fix}")
    for metric in (f"val_{m}" for m in METRICS):
        if best_column(metric) not in df.columns:
            df[best_column(metric)] = [best_of([r.get(metric) for r in history_rows(h)], direction(metric))
                                       for h in df["history"]]
    return df


def history_rows(history: Any) -> list[dict[str, Any]]:
    """A trial's per-epoch rows from its `history` JSON; empty when absent or unreadable."""
    try:
        rows = json.loads(history) if isinstance(history, str) else []
    except json.JSONDecodeError:
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
