"""`python -m benchmarks.run [--device cpu|cuda] [--quick] [--out FILE]`: every benchmark table,
measured side by side in one run, printed as markdown and written as JSON.

Tables: training throughput and peak memory (the default path against plain fp32, per preset), data
pipeline headroom, evaluation throughput, several trials per GPU, platform overhead (search.run
against simvp_core.train) and search efficiency replayed on recorded learning curves (benchmarks.replay).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks import overhead, pipeline, training
from benchmarks.machine import machine_info, peak_bf16
from benchmarks.training import MEMORY_KIND, Budget
from simvp_core.models import PRESETS

TABLES = ("training", "data", "evaluation", "concurrency", "overhead", "search")
DEFAULT_OUT = Path("benchmarks/out/results.json")
OVERHEAD_REPEATS = 2


@dataclass(frozen=True)
class Sizes:
    """How much each table measures; quick and full presets per device in `sizes_for`."""

    presets: list[str]
    paths: list[str]
    budget: Budget
    augment_kinds: list[str]
    data_batches: int
    eval_n: int
    eval_batch: int
    windows: int = 3
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    concurrency_budget: Budget = Budget(50, 3)
    replay_seeds: int = 20
    batch_size: int = 16  # the paper's batch for Table 5


def sizes_for(device: str, quick: bool) -> Sizes:
    paths = training.paths_for(device, quick)
    if device == "cuda":
        presets = ["simvpv2", "poolformer", "simvpv2-l"] if quick else list(PRESETS)
        return Sizes(presets, paths, Budget(50, 3) if quick else Budget(100, 5),
                     ["none", "crop+flip"] if quick else ["none", "crop", "flip", "crop+flip"],
                     data_batches=50, eval_n=1000, eval_batch=100, windows=3 if quick else 5,
                     concurrency_budget=Budget(50, 3) if quick else Budget(100, 5))
    presets = ["simvpv2", "poolformer"] if quick else list(PRESETS)
    return Sizes(presets, paths, Budget(1, 3) if quick else Budget(2, 3),
                 ["none", "crop+flip"] if quick else ["none", "crop", "flip", "crop+flip"],
                 data_batches=20, eval_n=16 if quick else 64, eval_batch=16)


CPU_CALIBRATION = (" On CPU, plain and default+fp32 run the same computation (fp32, the same Adam; "
                   "reading the loss back costs nothing there), so default+fp32/plain reads the "
                   "measurement noise of this machine at the time, not a speed-up.")
NOTES = {
    "training": ("Training throughput at batch {batch}: Trainer.train_epoch, one warm-up window, then "
                 "the median of {windows} windows of {steps} step(s). plain = fp32, eager, contiguous, "
                 "loss read back every step, torch.optim.Adam's default implementation (not fused); "
                 "default = TrainConfig's defaults on this device (amp auto: bf16 where the device has "
                 "native bf16; loss read back every 25 steps; fused Adam on CUDA). Both: cuDNN "
                 "autotuning and TF32 convolutions on CUDA (PyTorch's default). The paths take turns "
                 "window by window. Other columns: one switch on top of default (graphs: the "
                 "graph-captured step). X/plain = speed-up over plain: the median over rounds of X's "
                 "window over plain's window of the same round. What each path ran: {precision}. "
                 "Memory: {memory}. "
                 "TFLOP/s counted: GMACs/seq x 2 x 3 (forward + backward) x seq/s.{peak}{cpu}"),
    "data": ("Data pipeline: generate_sequences + augment at batch {batch} on the training device "
             "(median of {windows} windows of {batches} batches) against the default path's consumption. "
             "The trainer generates inline, so 'data % of step' is the share of a training step spent "
             "making its batch: data is not the bottleneck while it is small."),
    "evaluation": ("Evaluation: {n} sequences in batches of {eval_batch}, median of {windows} runs "
                   "after a warm-up; metrics only on random frames, and Trainer.evaluate (forward "
                   "with the default path's settings + the four metrics) per preset."),
    "concurrency": ("Several trials per GPU: {counts} default-path trainings of {preset} in separate "
                    "processes on the same device (as Ray's fractional GPUs place them), timed together "
                    "after a warm-up ({windows} windows of {steps} steps each). aggregate = all "
                    "sequences / (last end - first start); fraction of linear = aggregate / (trials x "
                    "one trial's aggregate)."),
    "overhead": ("Platform overhead: the same small training ({training}) through the search (Ray "
                 "Tune, grid with 1 trial, no ASHA, MLflow, results, report) and through the training "
                 "CLI, both as subprocesses, alternating, {repeats} runs each; the fastest of each counts. "
                 "First epoch: the CLI's 'epoch 1/' line; the search's first result in Tune's "
                 "result.json."),
    "search": ("Search efficiency replayed on the learning curves recorded in benchmarks/curves.parquet "
               "(python -m benchmarks.replay): the platform's searchers and ASHA, {budget} trial-epochs "
               "each, {concurrency} trials at once, {seeds} replay seeds; see benchmarks/RESULTS.md."),
}


def print_table(name: str, table: dict) -> None:
    """A table's title, note and rows as markdown (list/dict-valued columns are JSON only)."""
    print(f"\n### {name}\n\n{table['note']}\n")
    if not table["rows"]:
        print(f"(no rows: {table.get('skipped', 'nothing measured')})")
        return
    frame = pd.DataFrame(table["rows"])
    nested = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (dict, list))).any()]
    frame = frame.drop(columns=nested)
    frame = frame.astype(object).where(frame.notna(), "")  # a missing value prints as a blank
    print(frame.to_markdown(index=False, floatfmt=".4g"))


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _training(sizes: Sizes, dev: str, data_dir: str, overrides: dict | None,
              peak: tuple[float, str] | None) -> tuple[list[dict], str]:
    """The training table and its note (which depends on the device and the known peak)."""
    if peak:
        peak_text = f" '% of peak' is of {peak[0] / 1e12:.0f} TFLOP/s dense bf16 ({peak[1]})."
    else:
        peak_text = " No % of peak: " + ("no peak is known for this GPU." if dev == "cuda"
                                         else "it is reported for GPUs only.")
    rows = training.training_table(sizes.presets, sizes.paths, dev, sizes.batch_size, sizes.budget,
                                   data_dir, overrides, peak)
    ran = "; ".join(f"{path} = {what}" for path, what in rows[0]["precision"].items()) if rows else "-"
    return rows, NOTES["training"].format(
        batch=sizes.batch_size, windows=sizes.budget.windows, steps=sizes.budget.window_steps,
        memory=MEMORY_KIND[dev], peak=peak_text, precision=ran,
        cpu=CPU_CALIBRATION if "default+fp32" in sizes.paths else "")


def _concurrency(sizes: Sizes, dev: str, data_dir: str,
                 overrides: dict | None) -> tuple[list[dict], str, str | None]:
    """Concurrent trials on a GPU; on a CPU no rows and why."""
    preset, budget = sizes.presets[0], sizes.concurrency_budget
    note = NOTES["concurrency"].format(preset=preset, windows=budget.windows, steps=budget.window_steps,
                                       counts=", ".join(map(str, sizes.concurrency)))
    if dev != "cuda":
        return [], note, "needs a GPU: run python -m benchmarks.run --device cuda"
    rows = training.concurrency_table(preset, dev, sizes.concurrency, sizes.batch_size, budget,
                                      data_dir, overrides)
    return rows, note, None


def _overhead(dev: str, data_dir: str) -> tuple[list[dict], str]:
    """search.run against simvp_core.train, in a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        rows = overhead.platform_table(dev, data_dir, Path(tmp), repeats=OVERHEAD_REPEATS)
    training_text = ", ".join(f"{k} {v}" for k, v in overhead.TINY_TRAINING.items())
    return rows, NOTES["overhead"].format(training=training_text, repeats=OVERHEAD_REPEATS)


def _search(seeds: int) -> tuple[list[dict], str]:
    """The replay's comparison table; Ray Tune and Optuna are imported only for it."""
    from benchmarks import replay

    rows = replay.methods_table(replay.Curves.read(), list(range(seeds)))
    return rows, NOTES["search"].format(budget=replay.BUDGET, concurrency=replay.CONCURRENCY, seeds=seeds)


def run(device: torch.device, quick: bool, out: Path, data_dir: str, skip: set[str],
        sizes: Sizes | None = None, overrides: dict | None = None, command: str = "") -> dict:
    """Measure every table not in `skip`, print each as it is done, write and return the JSON.
    `sizes` and `overrides` (model fields, e.g. c_s) shrink the work for tests."""
    sizes = sizes or sizes_for(device.type, quick)
    dev, start = device.type, time.perf_counter()
    info = machine_info(device)
    peak = peak_bf16(info["gpu"]) if dev == "cuda" else None
    result: dict[str, Any] = {"command": command, "quick": quick, "machine": info,
                              "sizes": asdict(sizes), "tables": {}}
    if peak is not None:
        result["peak_bf16_flops"] = {"value": peak[0], "source": peak[1]}
    print(f"benchmarks on {info['device']} ({info['gpu'] or info['cpu']}, {info['cores']} cores, "
          f"torch {info['torch']}){' --quick' if quick else ''}")

    consumed: dict[str, float] = {}  # preset -> the default path's training seq/s, for the data table

    def training_rows() -> tuple[list[dict], str]:
        rows, note = _training(sizes, dev, data_dir, overrides, peak)
        consumed.update({row["preset"]: row["default seq/s"] for row in rows})
        return rows, note

    builders: dict[str, Callable[[], tuple]] = {
        "training": training_rows,
        "data": lambda: (pipeline.data_table(sizes.augment_kinds, dev, sizes.batch_size,
                                             sizes.data_batches, sizes.windows, data_dir, consumed),
                         NOTES["data"].format(batch=sizes.batch_size, windows=sizes.windows,
                                              batches=sizes.data_batches)),
        "evaluation": lambda: (pipeline.evaluation_table(sizes.presets, dev, sizes.eval_n,
                                                         sizes.eval_batch, sizes.windows, data_dir,
                                                         overrides),
                               NOTES["evaluation"].format(n=sizes.eval_n, eval_batch=sizes.eval_batch,
                                                          windows=sizes.windows)),
        "concurrency": lambda: _concurrency(sizes, dev, data_dir, overrides),
        "overhead": lambda: _overhead(dev, data_dir),
        "search": lambda: _search(sizes.replay_seeds),
    }
    for name in TABLES:  # in this order: the data table needs the training table's rates
        if name in skip:
            continue
        begun = time.perf_counter()
        rows, note, *skipped = builders[name]()
        table = {"note": note, "rows": rows, "seconds": time.perf_counter() - begun}
        if skipped and skipped[0]:
            table["skipped"] = skipped[0]
        result["tables"][name] = table
        print_table(name, table)
    result["wall_s"] = time.perf_counter() - start
    info["load_average_1min_end"] = machine_info(device)["load_average_1min"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(result), indent=2))
    print(f"\nall tables in {result['wall_s']:.0f} s -> {out}")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=(
        "Every benchmark table, measured side by side in one run, printed and written as JSON."))
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="default: cuda when a GPU is visible, else cpu")
    p.add_argument("--quick", action="store_true",
                   help="two presets (three on CUDA), few steps: minutes on a 2-core CPU")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file (default: {DEFAULT_OUT})")
    p.add_argument("--data-dir", default="sample",
                   help="MNIST folder; default 'sample', the bundled digits (speed does not depend on them)")
    p.add_argument("--skip", nargs="+", choices=TABLES, default=[], metavar="TABLE",
                   help=f"tables to leave out: {', '.join(TABLES)}")
    p.add_argument("--presets", nargs="+", choices=tuple(PRESETS), metavar="PRESET",
                   help=f"presets to measure instead of the mode's ({', '.join(PRESETS)})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible; use --device cpu", file=sys.stderr)
        return 2
    device = torch.device(name)
    sizes = sizes_for(name, args.quick)
    if args.presets:
        sizes = dataclasses.replace(sizes, presets=args.presets)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once, even when piped
    command = shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)])
    run(device, args.quick, args.out, args.data_dir, set(args.skip), sizes=sizes, command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
