"""`python -m simvp_core.train`: a tiny run end to end, and every bad input's clear error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
               "starrelu", "--augment", "crop", "--weight-decay", "1e-4", "--out", str(out), "--data-dir",
               str(mnist_dir), check_rc=0)
    assert "epoch 1/1" in proc.stdout and "seq/s" in proc.stdout and "ETA" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"mse", "mae", "ssim", "psnr"}
    assert metrics["epochs"] == 1 and metrics["params"] > 0 and metrics["seconds"] > 0
    assert metrics["config"]["lambda_ddr"] == 0.1 and metrics["config"]["augment"] == "crop"
    assert "generated stand-in" in metrics["test_set"]
    assert ("bundled sample" in metrics["test_set"]) == (mnist_dir == "sample")
    assert proc.stdout.startswith("data: ")  # which data, in the first line
    assert metrics["config"]["weight_decay"] == 1e-4
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 1e-4  # Adam's L2 penalty

    again = run(*TINY, "--epochs", "1", "--out", str(out), "--data-dir", str(mnist_dir), check_rc=2)
    assert "--resume" in again.stderr and (out / "metrics.json").read_text() == json.dumps(metrics, indent=2)

    resumed = run(*TINY, "--epochs", "1", "--lambda-gdl", "0.5", "--lambda-ddr", "0.1", "--act",
                  "starrelu", "--augment", "crop", "--weight-decay", "1e-4", "--out", str(out), "--data-dir",
                  str(mnist_dir), "--resume", check_rc=0)
    assert "resumed" in resumed.stdout and "epoch 1/1" not in resumed.stdout
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]


@pytest.mark.parametrize("args,fragment", [
    (["--preset", "resnet"], "invalid choice"),
    (["--batch-size", "0"], "batch_size must be an integer in [1, "),
    (["--weight-decay", "-1"], "weight_decay must be a number in [0, "),
    (["--act", "relu"], "invalid choice"),
    (["--preset", "incepu", "--n-t", "1"], "n_t"),
    (["--lr", "fast"], "invalid float value"),
])
def test_bad_flags_exit_2_with_a_clear_message(tmp_path, mnist_dir, args, fragment):
    proc = run(*TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--data-dir", str(mnist_dir),
               *args, check_rc=2)
    assert fragment in proc.stderr
    assert not (tmp_path / "x" / "metrics.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here: --device cuda is valid")
def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, mnist_dir):
    proc = run(*TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--data-dir", str(mnist_dir),
               "--device", "cuda", check_rc=2)
    assert proc.stderr == "error: device 'cuda' requested but no CUDA GPU is visible; use --device cpu or auto\n"
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_the_start_line_and_metrics_say_which_precision_ran(tmp_path, mnist_dir):
    out = tmp_path / "fp32"
    proc = run(*TINY, "--epochs", "1", "--train-size", "8", "--fp32", "--out", str(out), "--data-dir",
               str(mnist_dir), check_rc=0)
    assert "parameters on cpu, fp32, contiguous; test set:" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "fp32, contiguous"
    assert (metrics["config"]["amp"], metrics["config"]["memory_format"]) == ("off", "contiguous")


def test_a_missing_data_folder_is_fetched_and_offline_says_how_to_fix_it(tmp_path):
    # conftest points the mirrors at a dead local port: the fetch fails, and the trainer never
    # falls back to the bundled sample
    nowhere = tmp_path / "nowhere"
    proc = run(*TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--data-dir", str(nowhere),
               check_rc=2)
    assert proc.stdout.splitlines()[0] == (f"data: no MNIST in {nowhere}; fetching it "
                                           f"(python -m simvp_core.data fetch --data-dir {nowhere})")
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) <= 300 and lines[0].startswith("error: MNIST not in /")
    for part in ("/nowhere and fetching it failed", "Connection refused", "/nowhere` online",
                 "`python -m simvp_core.data fetch --data-dir /", "SIMVP_MNIST_MIRRORS", "SIMVP_DATA_DIR"):
        assert part in lines[0]
    assert not (tmp_path / "x").exists() and not nowhere.exists()


def test_resume_without_a_checkpoint_is_refused(tmp_path, mnist_dir):
    proc = run(*TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--data-dir", str(mnist_dir),
               "--resume", check_rc=2)
    assert "no checkpoint" in proc.stderr


def test_resume_from_a_checkpoint_that_does_not_fit_exits_2_in_one_line_and_keeps_it(tmp_path, mnist_dir):
    from simvp_core.config import TrainConfig
    from simvp_core.data import load_mnist
    from simvp_core.trainer import Trainer

    def tiny(**changes):
        cfg = dict(preset="simvpv2", c_s=4, c_t=8, n_t=2, train_size=16, val_size=8, test_size=8,
                   batch_size=8, eval_batch_size=8, epochs=1, device="cpu")
        return Trainer(TrainConfig(**{**cfg, **changes}), load_mnist("train", mnist_dir)[:500],
                       load_mnist("test", mnist_dir)[:100])

    good = tmp_path / "good.pt"
    tiny().save_checkpoint(good)
    cases = {  # out folder -> (what its checkpoint.pt holds, what the line says)
        "truncated": (good.read_bytes()[:4000], "not a readable checkpoint (truncated or corrupt"),
        "garbage": (b"\x00\xffgarbage" * 300, "not a torch checkpoint file"),
        "foreign": ({"a": 1}, "not a checkpoint of this trainer"),
        "config": (tiny(c_s=6).state_dict(), "written for a different config: c_s 6 (now 4)"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).mkdir()
        ckpt = tmp_path / name / "checkpoint.pt"
        if isinstance(content, bytes):
            ckpt.write_bytes(content)
        else:
            torch.save(content, ckpt)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "simvp_core.train", *TINY, "--epochs", "1", "--out", str(tmp_path / name),
         "--data-dir", str(mnist_dir), "--resume"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for name in cases}
    for name, (_, words) in cases.items():
        _, err = procs[name].communicate(timeout=300)
        assert procs[name].returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and len(lines[0]) <= 300, err
        assert lines[0].startswith(f"error: {tmp_path / name / 'checkpoint.pt'}: ") and words in lines[0]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_help_imports_no_torch():
    probe = ("import sys\nfrom simvp_core.train import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
             "    pass\nprint('torch:', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--resume" in out.stdout, out.stderr
    assert out.stdout.splitlines()[-1] == "torch: False"
