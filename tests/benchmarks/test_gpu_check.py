"""benchmarks/gpu_check.sh: its rehearsal runs the GPU check end to end on the CPU at tiny sizes,
so the script cannot rot before a GPU runs it; its JSON and markdown say what was measured."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import REHEARSAL
from benchmarks.training import counted_tflops
from simvp_core.config import TrainConfig
from simvp_core.execution import choose

REPO = Path(__file__).resolve().parents[2]
TINY_GMACS = 0.030179328  # forward GMACs per sequence of the rehearsal's model (test_training.py pins it)
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, str]:
    out = tmp_path_factory.mktemp("gpu_check") / "out"
    proc = script("--rehearse", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md"]  # nothing else
    return proc, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_every_stage_ran_in_order_or_says_why_not(rehearsal):
    _, result, page = rehearsal
    stages = result["stages"]
    assert list(stages) == ["cuda_tests", "training", "real_training", "concurrency", "concurrency_mps"]
    assert [s["status"] for s in stages.values()] == ["done"] * 4 + ["skipped: rehearsal: CUDA MPS needs a GPU"]
    assert result["rehearsal"] and result["machine"]["device"] == "cpu"
    assert 0 < sum(s["seconds"] for s in stages.values()) <= result["wall_s"]
    assert page.startswith("# GPU check: REHEARSAL on the CPU at tiny sizes (not GPU numbers)")
    for name, stage in stages.items():
        assert f"## {name}\n\n{stage['status']} ({stage['seconds']:.0f} s)" in page


def test_the_cuda_tests_ran_and_skipped_here_with_the_reason(rehearsal):
    stage = rehearsal[1]["stages"]["cuda_tests"]
    source = (REPO / "tests/simvp_core/test_cuda.py").read_text()
    assert len(stage["tests"]) >= source.count("\ndef test_") > 5  # every test, parametrized ones too
    if torch.cuda.is_available():
        assert stage["counts"]["passed"] == len(stage["tests"])
    else:
        assert stage["counts"]["skipped"] == len(stage["tests"])
        assert all(t["message"].startswith("no CUDA GPU visible: ") for t in stage["tests"])


def test_the_training_table_compares_the_default_path_with_plain(rehearsal):
    _, result, page = rehearsal
    stage = result["stages"]["training"]
    rows = stage["rows"]
    assert [r["preset"] for r in rows] == REHEARSAL.presets
    default = choose(TrainConfig(), torch.device("cpu")).precision
    for row in rows:
        assert len(row["windows"]["default"]) == len(row["windows"]["plain"]) == REHEARSAL.budget.windows
        assert row["default/plain"] > 0 and row["default TFLOP/s"] > 0
        assert row["GMACs/seq"] == pytest.approx(TINY_GMACS)  # the rehearsal's tiny model, not the preset's
        assert row["precision"] == {"plain": "fp32, contiguous", "default": default}
        assert row["plain peak MiB"] > 0  # each path had a process of its own
    assert set(stage["left_out"]) == {"default+channels_last", "default+graphs"}
    assert f"What each path ran: plain = fp32, contiguous; default = {default}" in page


def test_the_real_training_ran_the_epochs_that_fit_its_time(rehearsal):
    _, result, page = rehearsal
    stage = result["stages"]["real_training"]
    assert (stage["preset"], stage["batch_size"], stage["train_size"]) == ("simvpv2", 16, REHEARSAL.train_size)
    epochs = stage["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(1, stage["epochs_done"] + 1))
    assert 1 <= stage["epochs_done"] <= stage["epochs_planned"]
    assert stage["training_seconds"] <= REHEARSAL.train_seconds + epochs[-1]["s/epoch"]
    assert stage["training_seconds"] >= sum(e["s/epoch"] for e in epochs) * 0.99
    for epoch in epochs:
        assert epoch["TFLOP/s"] == pytest.approx(counted_tflops(TINY_GMACS, epoch["seq/s"]))
        assert math.isfinite(epoch["val_mse"]) and epoch["val_mse"] > 0
        assert epoch["s/epoch"] > REHEARSAL.train_size / epoch["seq/s"]  # training + validation
    assert f"{stage['epochs_done']} of {stage['epochs_planned']} planned epochs" in page


def test_the_concurrency_table_scales_from_one_trial(rehearsal):
    rows = rehearsal[1]["stages"]["concurrency"]["rows"]
    assert [r["trials"] for r in rows] == REHEARSAL.counts
    for row in rows:
        assert row["aggregate seq/s"] > 0 and row["per-trial seq/s"] > 0 and row["fraction of linear"] > 0
        # all sequences over the span from the first start to the last end: never more than the
        # trials' own rates (each over its own, shorter or equal, time) added up
        assert row["aggregate seq/s"] <= row["trials"] * row["per-trial seq/s"] * (1 + 1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the real check would run")
def test_without_a_gpu_the_real_check_says_to_rehearse(tmp_path):
    proc = script(str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    assert proc.stderr.strip() == ("error: no CUDA GPU visible to torch; run with --rehearse to rehearse on "
                                   "the CPU")


def test_a_bad_command_line_is_the_usage_line_and_exit_2():
    proc = script("--rehearse", "a", "b")
    assert proc.returncode == 2 and proc.stderr.startswith("usage: benchmarks/gpu_check.sh")
