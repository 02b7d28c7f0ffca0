"""`python -m benchmarks.record_curves [--out benchmarks/curves.parquet] [--data-dir DIR]`: train
every configuration of a small real grid to the same max epochs and record its learning curves.

The table is what `benchmarks.replay` replays searches on, so that their cost is measured on how
SimVP learns, not on a formula. A narrow SimVPv2 (as spaces/smoke.yaml) trains with the real
`Trainer`, one thread, one run at a time; each finished run rewrites the parquet atomically, so a
rerun after a crash skips the runs already there. The command, date, machine and torch version
are kept in the parquet's metadata (`curves_meta`).
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.machine import cpu_model
from simvp_core import data
from simvp_core.atomic import atomic_write
from simvp_core.config import TrainConfig
from simvp_core.trainer import DivergedError, EpochEnd, Trainer

DEFAULT_OUT = Path("benchmarks/curves.parquet")
META_KEY = b"curves_meta"
# The searched grid: 2 x 2 x 2 x 2 x 2 = 32 configurations, each trained with every seed.
GRID: dict[str, tuple] = {
    "lr": (0.002, 0.01),
    "batch_size": (4, 8),
    "lambda_gdl": (0.0, 0.5),
    "lambda_ddr": (0.0, 0.1),
    "act": ("gelu", "starrelu"),
}
SEEDS = (0, 1)
MAX_EPOCHS = 10
# Fixed for every run: the smoke space's narrow model on a smaller epoch, on the CPU, in fp32
# channels_last, as the curves in curves.parquet were recorded.
BASE = dict(preset="simvpv2", c_s=4, c_t=32, n_t=2, train_size=64, val_size=32, test_size=8,
            eval_batch_size=32, epochs=MAX_EPOCHS, amp="off", memory_format="channels_last", device="cpu")
KEYS = (*GRID, "seed")


def grid_points() -> list[dict]:
    """Every (configuration, seed) of the grid, all configurations of one seed before the next."""
    return [dict(zip(GRID, values), seed=seed)
            for seed in SEEDS for values in itertools.product(*GRID.values())]


def run_curve(point: dict, train_digits: torch.Tensor, test_digits: torch.Tensor) -> list[dict]:
    """One run's rows (one per epoch); a diverged run keeps the epochs before it, flagged."""
    trainer = Trainer(TrainConfig(**BASE, **point), train_digits, test_digits)
    rows = []

    def record(end: EpochEnd) -> None:
        row = end.row
        rows.append({**point, "epoch": row["epoch"], "val_mse": row["val_mse"],
                     "val_ssim": row["val_ssim"], "loss": row["loss"],
                     "seconds": row["epoch_seconds"], "diverged": False})

    try:
        trainer.fit(record)
    except DivergedError:
        rows.append({**point, "epoch": trainer.epoch + 1, "val_mse": float("nan"),
                     "val_ssim": float("nan"), "loss": float("nan"), "seconds": float("nan"),
                     "diverged": True})
    return rows


def read_curves(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The recorded rows and the metadata written with them."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table.to_pandas(), meta


def write_curves(path: Path, rows: list[dict], meta: dict) -> None:
    """Rewrite the whole table atomically, the metadata in the parquet's schema."""
    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           META_KEY: json.dumps(meta).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write(path, buffer.getvalue())


def done_points(rows: list[dict]) -> set[tuple]:
    return {tuple(r[k] for k in KEYS) for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parquet to write (resumed)")
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: as "
                        "simvp_core.data.resolve_data_dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = read_curves(args.out)[0].to_dict("records") if args.out.is_file() else []
    done = done_points(rows)
    meta = {"command": "python -m benchmarks.record_curves " + shlex.join(sys.argv[1:] if argv is None else argv),
            "date": datetime.date.today().isoformat(), "cpu": cpu_model(), "threads": 1,
            "torch": torch.__version__, "base": BASE, "grid": {k: list(v) for k, v in GRID.items()},
            "seeds": list(SEEDS), "max_epochs": MAX_EPOCHS}
    train_digits = data.load_mnist("train", args.data_dir)
    test_digits = data.load_mnist("test", args.data_dir)
    points = grid_points()
    for i, point in enumerate(points, 1):
        if tuple(point[k] for k in KEYS) in done:
            continue
        start = time.perf_counter()
        rows += run_curve(point, train_digits, test_digits)
        write_curves(args.out, rows, meta)
        print(f"[{i}/{len(points)}] {point} final val_mse {rows[-1]['val_mse']:.2f} "
              f"in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
