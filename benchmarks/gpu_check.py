"""`python -m benchmarks.gpu_check OUTDIR [--rehearse]`: the GPU run of issue 20 in one go, run by
benchmarks/gpu_check.sh (which installs what is missing first). Writes OUTDIR/gpu_check.json and
OUTDIR/gpu_check.md.

Stages, each timed and recorded even when another fails: the `cuda` tests; the training table
(plain / default / default+channels_last / default+graphs for simvpv2 and simvpv2-l, % of the GPU's
bf16 peak from the zoo's counted FLOPs); a real training of simvpv2 at batch 16 on the
10,000-sequence stream for as many epochs as fit in 3 minutes (seq/s, s/epoch, validation MSE
per epoch); trials per GPU (1, 2, 4, 8 processes on the one device, as Ray's fractional GPUs
place them), again under CUDA MPS when nvidia-cuda-mps-control is there and time is left. The
whole run keeps to --budget-s from the shell script's start. --rehearse: the same stages on the
CPU at tiny sizes (graphs and MPS need CUDA and are left out, saying so), in well under 2 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks import training
from benchmarks.machine import machine_info, peak_bf16
from benchmarks.training import Budget
from simvp_core import data
from simvp_core.config import TrainConfig
from simvp_core.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CUDA_TESTS = "tests/simvp_core/test_cuda.py"
TINY_MODEL = {"c_s": 4, "c_t": 8, "n_t": 2}


@dataclass(frozen=True)
class Plan:
    """How much each stage does: the GPU run's sizes, or the rehearsal's."""

    device: str
    presets: list[str]
    paths: list[str]
    budget: Budget
    counts: list[int]
    concurrency_budget: Budget
    train_size: int  # the real training's stream, sequences per epoch
    val_size: int
    train_seconds: float  # the real training's time for epochs
    overrides: dict  # model fields over the presets' (the rehearsal's tiny model)
    mps: bool


GPU = Plan("cuda", ["simvpv2", "simvpv2-l"], ["plain", "default", "default+channels_last", "default+graphs"],
           Budget(25, 3), [1, 2, 4, 8], Budget(25, 2), 10_000, 1_000, 180.0, {}, True)
# the rehearsal: one preset (at its tiny sizes simvpv2-l is the same model as simvpv2)
REHEARSAL = Plan("cpu", ["simvpv2"], ["plain", "default"], Budget(1, 2), [1, 2], Budget(1, 1),
                 32, 16, 5.0, TINY_MODEL, False)
LEFT_OUT = {"default+channels_last": "measured on the GPU only (on a CPU with bf16 it is refused: wrong "
                                     "gradients)",
            "default+graphs": "CUDA graphs need a GPU"}


class Clock:
    """Seconds left of the run's budget, counted from the shell script's start."""

    def __init__(self, budget_s: float) -> None:
        self.end = float(os.environ.get("SIMVP_GPU_CHECK_START") or time.time()) + budget_s

    def left(self) -> float:
        return self.end - time.time()


def cuda_tests(timeout_s: float) -> dict:
    """Run the `cuda`-marked tests in a pytest of their own; per test its outcome (and why it skipped)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        xml = Path(tmp) / "cuda.xml"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", CUDA_TESTS, "-q",
                               "-p", "no:cacheprovider", f"--junitxml={xml}"], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout_s)
        if not xml.is_file():
            raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): {proc.stdout[-500:]}")
        cases = ET.parse(xml).getroot().iter("testcase")
    tests = []
    for case in cases:
        outcome = next(((child.tag, child.get("message", "")) for child in case
                        if child.tag in ("failure", "error", "skipped")), ("passed", ""))
        tests.append({"test": case.get("name"), "outcome": outcome[0], "message": outcome[1][:300],
                      "seconds": float(case.get("time", 0))})
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failure", "error", "skipped")}
    bad = counts["failure"] + counts["error"]
    status = f"failed: {bad} of {len(tests)} tests failed" if bad or proc.returncode not in (0, 5) else "done"
    return {"status": status, "exit_code": proc.returncode, "counts": counts, "tests": tests}


def training_rows(plan: Plan, data_dir: str, peak: tuple[float, str] | None, timeout_s: float) -> dict:
    """The training table; `timeout_s` for all of it, shared equally by the presets."""
    rows = training.training_table(plan.presets, plan.paths, plan.device, 16, plan.budget, data_dir,
                                   plan.overrides, peak, timeout_s=timeout_s / len(plan.presets))
    left_out = {p: why for p, why in LEFT_OUT.items() if p not in plan.paths}
    return {"rows": rows, "left_out": left_out}


def real_training(plan: Plan, data_dir: str, peak: tuple[float, str] | None) -> dict:
    """simvpv2 at batch 16 for as many epochs as fit in plan.train_seconds: a short probe times the
    step, the OneCycle schedule is planned for that many epochs, and training stops early if an
    epoch would end past the time."""
    digits = data.load_mnist("train", data_dir), data.load_mnist("test", data_dir)
    base = dict(preset="simvpv2", batch_size=16, device=plan.device, test_size=1, **plan.overrides)
    probe = Trainer(TrainConfig(**base, train_size=min(plan.train_size, 50 * 16), val_size=16,
                                epochs=1), *digits)
    probe_rate = probe.train_epoch()["seq_per_s"]
    per_epoch = (plan.train_size + plan.val_size) / probe_rate * 1.2  # validation costs less than this
    planned = max(1, int(plan.train_seconds // per_epoch))
    trainer = Trainer(TrainConfig(**base, train_size=plan.train_size, val_size=plan.val_size,
                                  epochs=planned), *digits)
    gmacs = training.gmacs("simvpv2", plan.overrides)
    start, epochs = time.perf_counter(), []
    while trainer.epoch < planned:
        row = trainer.train_epoch()
        tflops = training.counted_tflops(gmacs, row["seq_per_s"])
        epochs.append({"epoch": row["epoch"], "seq/s": row["seq_per_s"], "s/epoch": row["epoch_seconds"],
                       "val_mse": row["val_mse"], "TFLOP/s": tflops,
                       **({"% of peak": 100 * tflops * 1e12 / peak[0]} if peak else {})})
        if time.perf_counter() - start + row["epoch_seconds"] > plan.train_seconds:
            break
    return {"preset": "simvpv2", "batch_size": 16, "train_size": plan.train_size, "val_size": plan.val_size,
            "digits": "bundled sample" if data.is_sample(data_dir) else "MNIST", "precision": trainer.precision,
            "probe_seq_per_s": probe_rate, "epochs_planned": planned, "epochs_done": trainer.epoch,
            "training_seconds": time.perf_counter() - start, "epochs": epochs}


@contextlib.contextmanager
def mps_daemon() -> Iterator[None]:
    """The CUDA MPS control daemon for the block, its pipe and log folders private to this run; the
    clients (spawned trainings) find it through the environment."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        raise FileNotFoundError("nvidia-cuda-mps-control is not on PATH")
    with tempfile.TemporaryDirectory(prefix="gpu-check-mps-") as tmp:
        dirs = {"CUDA_MPS_PIPE_DIRECTORY": f"{tmp}/pipe", "CUDA_MPS_LOG_DIRECTORY": f"{tmp}/log"}
        for folder in dirs.values():
            Path(folder).mkdir()
        os.environ.update(dirs)
        try:
            subprocess.run([control, "-d"], check=True, timeout=30)
            yield
        finally:
            subprocess.run([control], input="quit\n", text=True, timeout=30)
            for name in dirs:
                os.environ.pop(name)


def concurrency_rows(plan: Plan, data_dir: str, timeout_s: float) -> dict:
    rows = training.concurrency_table("simvpv2", plan.device, plan.counts, 16, plan.concurrency_budget,
                                      data_dir, plan.overrides, timeout_s=timeout_s)
    return {"rows": rows}


def run_stage(result: dict, name: str, work: Callable[[], dict]) -> None:
    """Run one stage into result["stages"][name]: its output, seconds and status; a failure is
    recorded (with the end of its traceback) and the next stage runs."""
    print(f"== {name}", flush=True)
    begun = time.perf_counter()
    try:
        stage = {"status": "done", **work()}
    except Exception as e:  # keep the other stages' GPU time: record and go on
        stage = {"status": f"failed: {type(e).__name__}: {str(e)[:300]}",
                 "traceback": traceback.format_exc()[-3000:]}
    stage["seconds"] = time.perf_counter() - begun
    result["stages"][name] = stage
    print(f"   {stage['status']} in {stage['seconds']:.0f} s", flush=True)


def skip(result: dict, name: str, why: str) -> None:
    result["stages"][name] = {"status": f"skipped: {why}", "seconds": 0.0}
    print(f"== {name}: skipped: {why}", flush=True)


def run(out: Path, rehearse: bool, data_dir: str, budget_s: float) -> dict:
    """Every stage in order within the budget; writes and returns the JSON, writes the markdown."""
    plan = REHEARSAL if rehearse else GPU
    clock, begun = Clock(budget_s), time.perf_counter()
    device = torch.device(plan.device)
    info = machine_info(device)
    peak = peak_bf16(info["gpu"]) if plan.device == "cuda" else None
    result: dict[str, Any] = {"rehearsal": rehearse, "machine": info, "plan": asdict(plan),
                              "data_dir": data_dir, "budget_s": budget_s, "stages": {}}
    if peak:
        result["peak_bf16_flops"] = {"value": peak[0], "source": peak[1]}
    reserve = plan.train_seconds + 30  # the real training's time, kept until it has run
    run_stage(result, "cuda_tests", lambda: cuda_tests(max(30.0, min(120.0, clock.left() - reserve))))
    run_stage(result, "training", lambda: training_rows(plan, data_dir, peak,
                                                        max(30.0, clock.left() - reserve - 60)))
    run_stage(result, "real_training", lambda: real_training(plan, data_dir, peak))
    run_stage(result, "concurrency", lambda: concurrency_rows(plan, data_dir, max(30.0, clock.left() - 5)))
    if not plan.mps:
        skip(result, "concurrency_mps", "rehearsal: CUDA MPS needs a GPU")
    elif clock.left() < 90:
        skip(result, "concurrency_mps", f"out of time ({clock.left():.0f} s of the budget left)")
    else:
        def with_mps() -> dict:
            with mps_daemon():
                return concurrency_rows(plan, data_dir, max(30.0, clock.left() - 10))
        run_stage(result, "concurrency_mps", with_mps)
    result["wall_s"] = time.perf_counter() - begun
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(result))
    return result


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in (columns or frame.columns) if c in frame.columns]]
    nested = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (dict, list))).any()]
    return frame.drop(columns=nested).to_markdown(index=False, floatfmt=".4g")


def markdown(result: dict) -> str:
    """The JSON as a page: one section per stage, its table, and why a stage did not run."""
    info, stages = result["machine"], result["stages"]
    load = "unknown" if info["load_average_1min"] is None else f"{info['load_average_1min']:.2f}"
    kind = "REHEARSAL on the CPU at tiny sizes (not GPU numbers)" if result["rehearsal"] else "GPU run"
    lines = [f"# GPU check: {kind}", "",
             f"{info['date']} on {info['gpu'] or info['cpu']} ({info['cores']} cores, torch {info['torch']}, "
             f"1-minute load {load}); {result['wall_s']:.0f} s of a "
             f"{result['budget_s']:.0f} s budget; digits: {result['data_dir']}.", ""]
    for name, stage in stages.items():
        lines += [f"## {name}", "", f"{stage['status']} ({stage['seconds']:.0f} s)", ""]
        if name == "cuda_tests" and "tests" in stage:
            lines += [", ".join(f"{v} {k}" for k, v in stage["counts"].items()), "",
                      _table(stage["tests"], ["test", "outcome", "seconds", "message"]), ""]
        elif name == "training" and "rows" in stage:
            precision = stage["rows"][0]["precision"] if stage["rows"] else {}
            lines += [_table(stage["rows"]), "", "What each path ran: " +
                      "; ".join(f"{p} = {w}" for p, w in precision.items()), ""]
            lines += [f"Left out: {p}: {why}." for p, why in stage["left_out"].items()] + [""]
        elif name == "real_training" and "epochs" in stage:
            lines += [f"{stage['preset']} at batch {stage['batch_size']}, {stage['train_size']} sequences per "
                      f"epoch ({stage['digits']}), {stage['precision']}: {stage['epochs_done']} of "
                      f"{stage['epochs_planned']} planned epochs in {stage['training_seconds']:.0f} s.", "",
                      _table(stage["epochs"]), ""]
        elif "rows" in stage:
            ran = {row["precision"] for row in stage["rows"]}
            lines += [_table([{k: v for k, v in row.items() if k != "precision"} for row in stage["rows"]]),
                      "", f"What ran: {'; '.join(sorted(ran))}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--rehearse", action="store_true", help="the same stages on the CPU, tiny")
    parser.add_argument("--data-dir", default="sample", help="MNIST folder (default: the bundled sample)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="seconds for the whole run from the shell script's start (default: 450)")
    args = parser.parse_args(argv)
    if not args.rehearse and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch; run with --rehearse to rehearse on the CPU",
              file=sys.stderr)
        return 2
    result = run(args.out, args.rehearse, args.data_dir, args.budget_s)
    failed = [n for n, s in result["stages"].items() if s["status"].startswith("failed")]
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'} in {result['wall_s']:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
