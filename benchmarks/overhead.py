"""Platform overhead: one small training through `search.run` against `simvp_core.train` directly.

Both run as subprocesses with the same TrainConfig, alternately, a few times each; the fastest run
of each counts. Measured: wall time start to exit, and start to the end of the first epoch (the
CLI's "epoch 1/" line; for the search, the moment the trial's first result reaches Tune's
result.json).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_TRAINING = {"preset": "simvpv2", "c_s": 8, "c_t": 16, "n_t": 2, "train_size": 64,
                 "val_size": 16, "test_size": 16, "batch_size": 16, "eval_batch_size": 16,
                 "epochs": 2}


def overhead_space(base: dict, gpu: float) -> dict:
    """A space file's content: the base config as a one-point grid, no scheduler."""
    return {"experiment": "overhead", "description": "benchmark: one small trial, platform overhead",
            "base": base, "space": {}, "search": {"algorithm": "grid"}, "metric": "val_mse",
            "resources": {"cpu": 1, "gpu": gpu}, "max_failures": 0}


def time_command(cmd: list[str], first_epoch: Callable[[str], bool] | None = None,
                 watch: Callable[[], bool] | None = None, timeout_s: float = 900.0) -> dict:
    """Run cmd in the repo root: wall seconds, and seconds until a stdout line satisfies
    `first_epoch` or `watch()` turns true (polled every 50 ms). Raises with the output's tail on failure."""
    lines: list[str] = []
    first: list[float] = []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if not first and first_epoch is not None and first_epoch(line):
                first.append(time.perf_counter() - start)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        if not first and watch is not None and watch():
            first.append(time.perf_counter() - start)
        if time.perf_counter() - start > timeout_s:
            proc.kill()
            raise RuntimeError(f"{' '.join(cmd)} ran past {timeout_s:.0f} s")
        time.sleep(0.05)
    wall = time.perf_counter() - start
    reader.join(timeout=10)
    if proc.returncode != 0:
        tail = "".join(lines[-20:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
    return {"wall_s": wall, "first_epoch_s": first[0] if first else None}


def _flag(name: str, value: object) -> list[str]:
    return [f"--{name.replace('_', '-')}", str(value)]


def _fastest(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return min(values) if values else None


def platform_table(device: str, data_dir: str, workdir: Path, repeats: int = 2,
                   base: dict | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Rows for the direct CLI and for search.run (each the fastest of `repeats` runs, the two
    alternating, so that other load on the machine only ever adds), then the overhead row:
    the differences in seconds and the ratio of wall times."""
    base = {**(base or TINY_TRAINING), "device": device}
    workdir.mkdir(parents=True, exist_ok=True)
    space = workdir / "overhead.yaml"
    space.write_text(yaml.safe_dump(overhead_space(base, gpu=1 if device == "cuda" else 0)))
    config_flags = [a for k, v in base.items() for a in _flag(k, v)]
    direct, searched = [], []
    for r in range(repeats):
        train_cmd = [sys.executable, "-m", "simvp_core.train", "--out", str(workdir / f"train{r}"),
                     "--data-dir", data_dir, *config_flags]
        direct.append(time_command(train_cmd, first_epoch=lambda line: line.startswith("epoch 1/")))
        tune_dir = workdir / "runs" / f"overhead{r}" / "tune"
        search_cmd = [sys.executable, "-m", "search.run", str(space), "--name", f"overhead{r}",
                      "--storage", str(workdir / "runs"), "--reports-dir", str(workdir / "reports"),
                      "--data-dir", data_dir]
        searched.append(time_command(search_cmd, watch=lambda d=tune_dir: any(
            p.stat().st_size > 0 for p in d.glob("*/result.json"))))
        log(f"  simvp_core.train {direct[-1]['wall_s']:.1f} s, search.run {searched[-1]['wall_s']:.1f} s")
    rows = [{"how": "python -m simvp_core.train", "wall s": _fastest(direct, "wall_s"),
             "to first epoch s": _fastest(direct, "first_epoch_s"), "runs": direct},
            {"how": "python -m search.run (grid, 1 trial)", "wall s": _fastest(searched, "wall_s"),
             "to first epoch s": _fastest(searched, "first_epoch_s"), "runs": searched}]
    first = [row["to first epoch s"] for row in rows]
    rows.append({"how": "overhead (search.run - train)", "wall s": rows[1]["wall s"] - rows[0]["wall s"],
                 "to first epoch s": None if None in first else first[1] - first[0],
                 "wall ratio": rows[1]["wall s"] / rows[0]["wall s"]})
    return rows
