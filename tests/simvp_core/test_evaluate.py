"""The evaluation CLI: a converted OpenSTL checkpoint and a trainer checkpoint evaluate on the test set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simvp_core import convert, evaluate
from simvp_core.config import TrainConfig
from simvp_core.data import load_test_set
from simvp_core.models import build_model
from simvp_core.trainer import TEST_SEED, Trainer

REPO = Path(__file__).resolve().parents[2]
TINY = {"c_s": 2, "c_t": 8, "n_t": 2}  # n_s 4: the translator works on 16x16 latents, cheaply


def test_a_converted_openstl_checkpoint_evaluates_through_the_cli_as_the_original_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("tau", **TINY)
    named = convert.convert_state(model.state_dict(), convert.OURS)
    torch.save({"state_dict": {"model." + k: v for k, v in named.items()}}, tmp_path / "openstl.ckpt")
    assert convert.main(["from-openstl", str(tmp_path / "openstl.ckpt"), str(tmp_path / "ours.pt")]) == 0

    result = subprocess.run([sys.executable, "-m", "simvp_core.evaluate", "--checkpoint", str(tmp_path / "ours.pt"),
                             "--data-dir", "sample", "--test-size", "2", "--device", "cpu", "--fp32", "--json"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["preset"], report["overrides"], report["sequences"]) == ("tau", TINY, 2)
    assert "bundled sample" in report["test_set"] and report["precision"] == "fp32, contiguous"
    seqs, _ = load_test_set(2, TEST_SEED, data_dir="sample")
    expected = evaluate.evaluate_model(model, seqs, 2, torch.device("cpu"))
    assert {k: report[k] for k in expected} == pytest.approx(expected, rel=1e-6)


def test_a_trainer_checkpoint_evaluates_to_the_trainers_own_test_metrics(tmp_path, capsys):
    cfg = TrainConfig(preset="simvpv2", **TINY, train_size=2, val_size=1, test_size=3, eval_batch_size=2,
                      device="cpu")
    trainer = Trainer(cfg, data_dir="sample")
    trainer.save_checkpoint(tmp_path / "checkpoint.pt")
    assert evaluate.main(["--checkpoint", str(tmp_path / "checkpoint.pt"), "--data-dir", "sample",
                          "--test-size", "3", "--batch-size", "2", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = trainer.evaluate("test")
    assert {k: report[k] for k in expected} == pytest.approx(expected, rel=1e-6)
    assert report["params"] == trainer.n_params and report["precision"] == trainer.precision


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here: --device cuda is valid")
def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    convert.save_model_file(tmp_path / "m.pt", "simvpv2", TINY, build_model("simvpv2", **TINY).state_dict())
    assert evaluate.main(["--checkpoint", str(tmp_path / "m.pt"), "--data-dir", "sample",
                          "--device", "cuda"]) == 2
    assert capsys.readouterr().err == ("error: device 'cuda' requested but no CUDA GPU is visible; use "
                                       "--device cpu or auto\n")


@pytest.mark.parametrize("make,fragment", [
    (lambda path: path.write_text("not a checkpoint"), "not a readable torch checkpoint"),
    (lambda path: torch.save({"weights": torch.zeros(1)}, path), "not a SimVP model file"),
    (lambda path: torch.save({"state_dict": {"model.hid.enc.0.conv1.weight": torch.zeros(1)}}, path),
     "convert it first"),
])
def test_a_file_that_is_not_a_model_is_refused_in_one_line(tmp_path, capsys, make, fragment):
    make(tmp_path / "x.pt")
    assert evaluate.main(["--checkpoint", str(tmp_path / "x.pt"), "--data-dir", "sample"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and len(err) < 300


def test_a_model_file_whose_weights_do_not_fit_its_preset_is_refused(tmp_path, capsys):
    state = build_model("simvpv2", **TINY).state_dict()
    convert.save_model_file(tmp_path / "m.pt", "simvpv2", {**TINY, "c_t": 32}, state)
    assert evaluate.main(["--checkpoint", str(tmp_path / "m.pt"), "--data-dir", "sample"]) == 2
    err = capsys.readouterr().err.strip()
    assert "wrong shape" in err and "translator.blocks.0.resize.weight" in err and len(err) < 300
