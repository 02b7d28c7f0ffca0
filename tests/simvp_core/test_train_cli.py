"""`python -m simvp_core.train`: a tiny run end to end, and every bad input's clear error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["--preset", "simvpv2", "--c-s", "4", "--c-t", "8", "--n-t", "2", "--train-size", "16",
        "--val-size", "8", "--test-size", "8", "--batch-size", "8", "--eval-batch-size", "8",
        "--device", "cpu"]


def run(*args, check_rc=None):
    proc = subprocess.run([sys.executable, "-m", "simvp_core.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


def test_a_tiny_run_writes_metrics_and_a_resumable_checkpoint(tmp_path, mnist_dir):
    out = tmp_path / "run"
    proc = run(*TINY, "--epochs", "1", "--lambda-gdl", "0.5", "--lambda-ddr", "0.1", "--act",
               "starrelu", "--augment", "crop", "--out", str(out), "--data-dir", str(mnist_dir),
               check_rc=0)
    assert "epoch 1/1" in proc.stdout and "seq/s" in proc.stdout and "ETA" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"mse", "mae", "ssim", "psnr"}
    assert metrics["epochs"] == 1 and metrics["params"] > 0 and metrics["seconds"] > 0
    assert metrics["config"]["lambda_ddr"] == 0.1 and metrics["config"]["augment"] == "crop"
    assert "generated stand-in" in metrics["test_set"]
    assert (out / "checkpoint.pt").exists()

    again = run(*TINY, "--epochs", "1", "--out", str(out), "--data-dir", str(mnist_dir), check_rc=2)
    assert "--resume" in again.stderr and (out / "metrics.json").read_text() == json.dumps(metrics, indent=2)

    resumed = run(*TINY, "--epochs", "1", "--lambda-gdl", "0.5", "--lambda-ddr", "0.1", "--act",
                  "starrelu", "--augment", "crop", "--out", str(out), "--data-dir", str(mnist_dir),
                  "--resume", check_rc=0)
    assert "resumed" in resumed.stdout and "epoch 1/1" not in resumed.stdout
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]


@pytest.mark.parametrize("args,fragment", [
    (["--preset", "resnet"], "invalid choice"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--act", "relu"], "invalid choice"),
    (["--preset", "incepu", "--n-t", "1"], "n_t"),
    (["--lr", "fast"], "invalid float value"),
])
def test_bad_flags_exit_2_with_a_clear_message(tmp_path, mnist_dir, args, fragment):
    proc = run(*TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--data-dir", str(mnist_dir),
               *args, check_rc=2)
    assert fragment in proc.stderr
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_a_missing_data_folder_says_where_it_looked_and_how_to_fix_it(tmp_path):
    proc = run(*TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--data-dir",
               str(tmp_path / "nowhere"), check_rc=2)
    assert str(tmp_path / "nowhere") in proc.stderr and "SIMVP_DATA_DIR" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resume_without_a_checkpoint_is_refused(tmp_path, mnist_dir):
    proc = run(*TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--data-dir", str(mnist_dir),
               "--resume", check_rc=2)
    assert "no checkpoint" in proc.stderr
