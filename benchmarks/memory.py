"""simvp_core.memory's estimate beside the measured peak: each configuration trains one epoch of
one step through `python -m simvp_core.train` (a fresh process: imports, data, model, the sets, a
training step, validation, the test set), its peak RSS polled every 50 ms (benchmarks.measure's
tree_rss), printed as a markdown table with the ratio estimate / measured.

`python -m benchmarks.memory [--data-dir DIR]` (a few minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.measure import psutil, tree_rss
from simvp_core import memory
from simvp_core.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
# (what, TrainConfig fields): one step of the batch (train_size = batch_size), one epoch
CONFIGS = [
    ("tiny", {"c_s": 4, "c_t": 8, "n_t": 1, "batch_size": 4, "val_size": 4, "test_size": 4}),
    ("simvpv2, batch 4", {"batch_size": 4, "val_size": 16, "test_size": 16}),
    ("simvpv2, batch 16", {"batch_size": 16, "val_size": 16, "test_size": 16}),
    ("tiny, val 10,000 and test 2,000", {"c_s": 4, "c_t": 8, "n_t": 1, "batch_size": 4, "val_size": 10_000,
                                         "test_size": 2_000}),
    ("incepu, batch 8", {"preset": "incepu", "batch_size": 8, "val_size": 16, "test_size": 16}),
    ("tau c_t 512, batch 4", {"preset": "tau", "c_t": 512, "batch_size": 4, "val_size": 16, "test_size": 16}),
]


def peak_mb(argv: list[str], cwd: Path) -> tuple[float, int]:
    """(peak RSS of the process tree in MB, exit code) of `python argv`."""
    proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(watched, pss=False))
        time.sleep(0.05)
    return peak / 1e6, proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("SIMVP_DATA_DIR") or str(REPO.parent / "shared/data"))
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} at the start", file=sys.stderr)
    rows = ["| configuration | estimate (MB) | measured peak RSS (MB) | estimate / measured |",
            "| --- | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
        for i, (what, fields) in enumerate(CONFIGS):
            values = {"epochs": 1, "eval_batch_size": 16, "device": "cpu", **fields}
            values["train_size"] = values["batch_size"]
            cfg = TrainConfig(**values)
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in values.items()]
            measured, code = peak_mb(["-m", "simvp_core.train", *flags, "--data-dir", args.data_dir,
                                      "--out", str(Path(tmp) / str(i))], Path(tmp))
            estimate = memory.training(cfg).total() / 1e6
            rows.append(f"| {what} | {estimate:,.0f} | {measured:,.0f} | "
                        f"{estimate / measured:.2f}{'' if code == 0 else f' (exit {code})'} |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
