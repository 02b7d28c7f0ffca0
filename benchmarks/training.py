"""Training throughput and peak memory of the real `Trainer` loop, the default path against plain fp32.

Each measurement runs `Trainer.train_epoch` (generation, forward, loss, backward, Adam, OneCycle,
the loss read-back) for one warm-up epoch and then `windows` timed epochs of `window_steps` steps;
the epoch's own `seq_per_s` (training only, validation excluded, ended by the loss read-back that
waits for the device) is one window, and the median of the windows is reported. The paths of a
preset take turns window by window, so that the machine's changing load hits them alike; each has
its own process, so that memory peaks and compile caches do not leak between them.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simvp_core import data
from simvp_core.config import FP32, TrainConfig
from simvp_core.models import build_model
from simvp_core.trainer import Trainer

# The execution settings of each path over TrainConfig's defaults ("default" is exactly the defaults;
# "plain" also gets torch.optim.Adam's default implementation, see use_plain_adam).
PATHS: dict[str, dict[str, Any]] = {
    "plain": {**FP32, "compile": "eager", "sync_every": 1},
    "default": {},
    "default+fp32": dict(FP32),
    "default+channels_last": {"memory_format": "channels_last"},
    "default+compile": {"compile": "default"},
    "default+graphs": {"compile": "graphs"},
}
BASELINE, DEFAULT = "plain", "default"
TRAINING_STEP_FLOPS_PER_MAC = 2 * 3  # a MAC is 2 FLOPs; forward + backward is about 3 forwards
MEMORY_KIND = {
    "cuda": "torch.cuda.max_memory_allocated during training (tensors only, not the CUDA context)",
    "cpu": "rise of the process's peak RSS during training (ru_maxrss minus the RSS before the "
           "first step), each path in its own process",
}


@dataclass(frozen=True)
class Budget:
    """Steps per timed window and number of windows; one more window runs first as warm-up."""

    window_steps: int
    windows: int


def paths_for(device: str, quick: bool) -> list[str]:
    """The paths measured on a device: plain and default always, then the switches worth a look
    there. On CUDA: channels_last (memory_format auto keeps it off until measured) and the graph-
    captured step; on CPU: --fp32 (what the default's bf16 buys) and torch.compile."""
    if device == "cuda":
        extra = ["default+channels_last", "default+graphs"] + ([] if quick else ["default+compile"])
    else:
        extra = ["default+fp32"] + ([] if quick else ["default+compile"])
    return [BASELINE, DEFAULT, *extra]


def load_digits(data_dir: str | Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST train and test digits ('sample' = the bundled 1000 + 500)."""
    return data.load_mnist("train", data_dir), data.load_mnist("test", data_dir)


def use_plain_adam(trainer: Trainer) -> None:
    """Give the trainer torch.optim.Adam's default implementation (never fused) and a fresh
    OneCycle schedule over the same steps: the optimizer of the plain path."""
    cfg = trainer.cfg
    trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=cfg.lr, fused=False)
    trainer.scheduler = torch.optim.lr_scheduler.OneCycleLR(
        trainer.optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * trainer.steps_per_epoch)


def make_trainer(preset: str, path: str, device: str, batch_size: int, budget: Budget,
                 digits: tuple[torch.Tensor, torch.Tensor], overrides: dict | None = None) -> Trainer:
    """A trainer whose epochs are the benchmark's windows; validation and test sets of 1 sequence."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
    cfg = TrainConfig(preset=preset, device=device, batch_size=batch_size,
                      train_size=budget.window_steps * batch_size, epochs=budget.windows + 1,
                      val_size=1, test_size=1, eval_batch_size=1, **(overrides or {}), **PATHS[path])
    trainer = Trainer(cfg, train_digits=digits[0], test_digits=digits[1])
    if path == BASELINE:
        use_plain_adam(trainer)
    return trainer


def _rss_bytes() -> int | None:
    """The process's resident memory now (Linux /proc), else None."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory of the work between construction and `mib()`; see MEMORY_KIND for which kind."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        self.rss_before = _rss_bytes()

    def mib(self) -> float | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.rss_before is None:
            return None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return max(0, peak - self.rss_before) / 2**20


class PathRun:
    """One path's trainer, advanced one window (epoch) at a time; the first window is warm-up."""

    def __init__(self, preset: str, path: str, device: str, batch_size: int, budget: Budget,
                 digits: tuple[torch.Tensor, torch.Tensor], overrides: dict | None = None) -> None:
        self.trainer = make_trainer(preset, path, device, batch_size, budget, digits, overrides)
        self.memory = PeakMemory(self.trainer.device)
        self.rates: list[float] = []

    def window(self) -> None:
        self.rates.append(self.trainer.train_epoch()["seq_per_s"])

    def result(self) -> dict:
        """Median seq/s of the timed windows, the windows, and the peak memory (of the process: the
        run has it to itself)."""
        timed = self.rates[1:]
        return {"seq_per_s": statistics.median(timed), "windows_seq_per_s": timed,
                "warmup_seq_per_s": self.rates[0], "peak_mib": self.memory.mib(),
                "precision": self.trainer.precision}


def _turn_worker(index: int, turns: list, results: Any, args: tuple, windows: int) -> None:
    """One path in its own process: runs a window whenever its turn comes, then passes the turn on."""
    try:
        preset, path, device, batch_size, budget, data_dir, overrides = args
        run = PathRun(preset, path, device, batch_size, budget, load_digits(data_dir), overrides)
        for _ in range(windows):
            turns[index].wait()
            turns[index].clear()
            run.window()
            turns[(index + 1) % len(turns)].set()
        results.put((index, run.result()))
    except BaseException as e:  # report it: the parent stops the others
        results.put((index, {"error": f"{type(e).__name__}: {e}"}))


def _collect(procs: list, results: Any, timeout_s: float) -> list[tuple[int, dict]]:
    """The (index, result) each process puts on `results`, by index. A process that reports an
    error, dies without reporting, or runs past the timeout stops them all with a RuntimeError."""
    outs: dict[int, dict] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(outs) < len(procs):
            try:
                index, out = results.get(timeout=1.0)
            except queue_module.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a benchmark process exited with code {dead[0]} before "
                                       "reporting; its traceback is above") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"benchmark processes gave no result within {timeout_s:.0f} s") from None
                continue
            if "error" in out:
                raise RuntimeError(f"a benchmark process failed: {out['error']}")
            outs[index] = out
    finally:
        for p in procs:
            if len(outs) == len(procs):
                p.join(timeout=60)
            if p.is_alive():
                p.terminate()
                p.join()
    return sorted(outs.items())


def measure_paths(preset: str, paths: list[str], device: str, batch_size: int, budget: Budget,
                  data_dir: str | Path | None, overrides: dict | None = None,
                  timeout_s: float = 3600.0) -> dict[str, dict]:
    """Each path's training seq/s and peak memory, the paths taking turns window by window, so
    that a change in the machine's load affects all of them alike; each path in its own spawned
    process (clean memory peaks and compile caches; only one computes at a time)."""
    windows = budget.windows + 1
    ctx = multiprocessing.get_context("spawn")
    turns, results = [ctx.Event() for _ in paths], ctx.Queue()
    procs = [ctx.Process(target=_turn_worker, args=(
        i, turns, results, (preset, path, device, batch_size, budget, data_dir, overrides), windows))
        for i, path in enumerate(paths)]
    for p in procs:
        p.start()
    turns[0].set()
    return {paths[i]: out for i, out in _collect(procs, results, timeout_s)}


def gmacs(preset: str, overrides: dict | None = None) -> float:
    """Forward GMACs per sequence of the preset with the overrides' model fields, counted on the
    meta device (no memory, no compute)."""
    from simvp_core.zoo import gmacs_per_sequence  # here: zoo imports pandas, which workers never need

    cfg = TrainConfig(preset=preset, **(overrides or {}))
    with torch.device("meta"):
        model = build_model(preset, **cfg.model_overrides())
    return gmacs_per_sequence(model)


def counted_tflops(gmacs_per_seq: float, seq_per_s: float) -> float:
    """Training TFLOP/s counted from the model's MACs: 2 FLOPs a MAC, forward + backward = 3 forwards."""
    return gmacs_per_seq * 1e9 * TRAINING_STEP_FLOPS_PER_MAC * seq_per_s / 1e12


def speedup(windows: list[float], base: list[float]) -> float:
    """The median over rounds of a path's window over the baseline's window of the same round (window
    i of every path ran in round i, under similar load), not the ratio of the two medians."""
    return statistics.median(w / b for w, b in zip(windows, base, strict=True))


def training_table(presets: list[str], paths: list[str], device: str, batch_size: int,
                   budget: Budget, data_dir: str | Path | None, overrides: dict | None = None,
                   peak: tuple[float, str] | None = None,
                   log: Callable[[str], None] = print, timeout_s: float = 3600.0) -> list[dict]:
    """One row per preset: median seq/s and peak memory per path; each path's speed over plain's
    (the median over rounds of the ratio of the two windows of a round); the default path's counted
    TFLOP/s and each path's fraction of `peak` FLOP/s when given; what each path ran (precision)."""
    if BASELINE not in paths or DEFAULT not in paths:
        raise ValueError(f"paths must include {BASELINE!r} and {DEFAULT!r}; got {paths}")
    rows = []
    for preset in presets:
        row: dict[str, Any] = {"preset": preset, "GMACs/seq": gmacs(preset, overrides)}
        results = measure_paths(preset, paths, device, batch_size, budget, data_dir, overrides, timeout_s)
        for path in paths:
            log(f"  training {preset:<11} {path:<19} {results[path]['seq_per_s']:9.2f} seq/s")
        base = results[BASELINE]["windows_seq_per_s"]
        for path in paths:
            row[f"{path} seq/s"] = results[path]["seq_per_s"]
            if path != BASELINE:
                row[f"{path}/plain"] = speedup(results[path]["windows_seq_per_s"], base)
        for path in (BASELINE, DEFAULT):
            row[f"{path} peak MiB"] = results[path]["peak_mib"]
        row["default TFLOP/s"] = counted_tflops(row["GMACs/seq"], row["default seq/s"])
        if peak is not None:
            for path in paths:
                tflops = counted_tflops(row["GMACs/seq"], row[f"{path} seq/s"])
                row[f"{path} % of peak"] = 100 * tflops * 1e12 / peak[0]
        row["precision"] = {path: results[path]["precision"] for path in paths}
        row["windows"] = {path: results[path]["windows_seq_per_s"] for path in paths}
        row["warm-up seq/s"] = {path: results[path]["warmup_seq_per_s"] for path in paths}
        rows.append(row)
    return rows


# -- several trials sharing one device -------------------------------------------------------

def _concurrent_worker(index: int, preset: str, device: str, batch_size: int, budget: Budget,
                       data_dir: str | Path | None, overrides: dict | None, barrier: Any,
                       results: Any) -> None:
    """One of N trials: warm up, wait for the others, then time `budget.windows` epochs."""
    try:
        trainer = make_trainer(preset, DEFAULT, device, batch_size, budget, load_digits(data_dir), overrides)
        trainer.train_epoch()
        barrier.wait()
        start = time.monotonic()  # system-wide clock: comparable between the processes
        for _ in range(budget.windows):
            trainer.train_epoch()
        end = time.monotonic()
        results.put((index, {"start": start, "end": end, "precision": trainer.precision,
                             "sequences": budget.windows * budget.window_steps * batch_size}))
    except BaseException as e:  # report instead of leaving the others waiting at the barrier
        barrier.abort()
        results.put((index, {"error": f"{type(e).__name__}: {e}"}))


def measure_concurrent(preset: str, device: str, n_trials: int, batch_size: int, budget: Budget,
                       data_dir: str | Path | None, overrides: dict | None = None,
                       timeout_s: float = 1800.0) -> dict:
    """n_trials default-path trainings in separate processes on one device, timed together: all their
    sequences over the span from the first start to the last end, and each one's own rate (both
    include the 1-sequence validation after each window)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(n_trials), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(
        i, preset, device, batch_size, budget, data_dir, overrides, barrier, results))
        for i in range(n_trials)]
    for p in procs:
        p.start()
    outs = [out for _, out in _collect(procs, results, timeout_s)]
    span = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    return {"trials": n_trials, "aggregate seq/s": sum(o["sequences"] for o in outs) / span,
            "per-trial seq/s": statistics.mean(o["sequences"] / (o["end"] - o["start"]) for o in outs),
            "precision": outs[0]["precision"]}


def concurrency_table(preset: str, device: str, counts: list[int], batch_size: int, budget: Budget,
                      data_dir: str | Path | None, overrides: dict | None = None,
                      log: Callable[[str], None] = print, timeout_s: float = 1800.0) -> list[dict]:
    """One row per number of concurrent trials: aggregate seq/s, relative to one trial's and as a
    fraction of linear scaling (n trials doing n times one trial's work)."""
    if not counts or counts[0] != 1:
        raise ValueError(f"counts must start with 1 (the reference); got {counts}")
    rows = []
    for n in counts:
        row = {"preset": preset, **measure_concurrent(preset, device, n, batch_size, budget,
                                                      data_dir, overrides, timeout_s)}
        log(f"  {n} concurrent trial(s): {row['aggregate seq/s']:.2f} seq/s in all")
        rows.append(row)
    return scaling(rows)


def scaling(rows: list[dict]) -> list[dict]:
    """Add to each row its aggregate seq/s over the first row's (1 trial) and that over the number
    of trials: the fraction of linear scaling."""
    single = rows[0]["aggregate seq/s"]
    for row in rows:
        row["aggregate/1 trial"] = row["aggregate seq/s"] / single
        row["fraction of linear"] = row["aggregate/1 trial"] / row["trials"]
    return rows
