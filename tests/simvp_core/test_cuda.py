"""On a CUDA GPU: the generator, augmentations, losses, metrics, trainer, checkpoint/resume and the
fast paths compute what the CPU computes. Every test is marked `cuda`: where no GPU is visible they
skip with the reason (tests/conftest.py); benchmarks/gpu_check.sh runs them on a GPU.

Tolerances: float32 on the GPU differs from the CPU in the order of its sums (about 1e-6 relative);
convolutions use TF32 there by default (PyTorch's default for cuDNN: a 10-bit mantissa, about
5e-4 relative per rounding), so what goes through a network is compared at TF32_TOL. Resuming
rebuilds cuDNN's autotuned choices, which may pick other algorithms (other sums): RESUME_TOL.
These bounds are reasoned, not yet measured on a GPU: the first GPU run confirms or tightens them.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from simvp_core import data
from simvp_core.config import FP32, TrainConfig
from simvp_core.losses import total_loss
from simvp_core.metrics import MetricAccumulator
from simvp_core.trainer import Trainer
from tests.simvp_core.test_fast_path import BF16_REL_TOL, BF16_SSIM_ABS_TOL

pytestmark = pytest.mark.cuda

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
TINY = dict(preset="simvpv2", c_s=4, c_t=8, n_t=2, train_size=16, val_size=8, test_size=4,
            batch_size=4, eval_batch_size=8, epochs=2, device="cuda")
FLOAT_TOL = 1e-5
TF32_TOL = 1e-2
RESUME_TOL = 1e-3


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    return data.load_mnist("train", data.SAMPLE), data.load_mnist("test", data.SAMPLE)


def make(digits, **changes: Any) -> Trainer:
    return Trainer(TrainConfig(**{**TINY, **changes}), train_digits=digits[0], test_digits=digits[1])


class SameDraws:
    """torch.rand / torch.randint as the data module calls them: `record()` keeps what a GPU call
    draws, `replay()` hands the same numbers, on the CPU, to a CPU call: the two devices' random
    streams differ, so this is how the same computation is compared."""

    NAMES = ("rand", "randint")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mp, self.real, self.drawn = monkeypatch, {n: getattr(torch, n) for n in self.NAMES}, []

    def record(self) -> None:
        for name in self.NAMES:
            self.mp.setattr(torch, name, self._recording(self.real[name]))

    def replay(self) -> None:
        for name in self.NAMES:
            self.mp.setattr(torch, name, lambda *args, **kwargs: self.drawn.pop(0).cpu())

    def _recording(self, draw):
        def recording(*args, **kwargs):
            value = draw(*args, **kwargs)
            self.drawn.append(value)
            return value
        return recording


def test_generation_on_the_gpu_is_the_cpu_generation_of_the_same_draws(digits, monkeypatch):
    draws = SameDraws(monkeypatch)
    draws.record()
    gpu = data.generate_sequences_uint8(digits[0].to(CUDA), 6, torch.Generator(CUDA).manual_seed(0))
    draws.replay()
    cpu = data.generate_sequences_uint8(digits[0], 6, torch.Generator(CPU).manual_seed(0))
    assert gpu.device.type == "cuda" and gpu.dtype == torch.uint8 and gpu.shape == (6, 20, 1, 64, 64)
    assert not draws.drawn and torch.equal(gpu.cpu(), cpu)
    again = data.generate_sequences_uint8(digits[0].to(CUDA), 6, torch.Generator(CUDA).manual_seed(0))
    assert torch.equal(again, gpu)  # deterministic per seed on the GPU too


@pytest.mark.parametrize("kind", ["crop", "flip", "crop+flip"])
def test_each_augmentation_on_the_gpu_is_the_cpu_one_of_the_same_draws(digits, monkeypatch, kind):
    seqs = data.generate_sequences(digits[0], 6, torch.Generator(CPU).manual_seed(1))
    draws = SameDraws(monkeypatch)
    draws.record()
    gpu = data.augment(seqs.to(CUDA), kind, torch.Generator(CUDA).manual_seed(2))
    draws.replay()
    cpu = data.augment(seqs, kind, torch.Generator(CPU).manual_seed(2))
    assert not draws.drawn and not torch.equal(cpu, seqs)  # it did transform
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=FLOAT_TOL, atol=FLOAT_TOL)


def _prediction_pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator(CPU).manual_seed(3)
    targets = torch.rand(3, 10, 1, 64, 64, generator=generator)
    return (targets + 0.1 * torch.randn(targets.shape, generator=generator)).clamp(-0.2, 1.2), targets


def test_losses_on_the_gpu_equal_the_cpu_losses():
    preds, targets = _prediction_pair()
    cpu_loss, cpu_parts = total_loss(preds, targets, 0.5, 0.1, 0.1)
    gpu_loss, gpu_parts = total_loss(preds.to(CUDA), targets.to(CUDA), 0.5, 0.1, 0.1)
    assert gpu_loss.device.type == "cuda"
    assert gpu_loss.item() == pytest.approx(cpu_loss.item(), rel=FLOAT_TOL)
    assert {k: float(v) for k, v in gpu_parts.items()} == pytest.approx(
        {k: float(v) for k, v in cpu_parts.items()}, rel=FLOAT_TOL)


def test_metrics_on_the_gpu_equal_the_cpu_metrics():
    preds, targets = _prediction_pair()
    cpu, gpu = MetricAccumulator(), MetricAccumulator()
    cpu.update(preds, targets)
    gpu.update(preds.to(CUDA), targets.to(CUDA))
    assert gpu.compute() == pytest.approx(cpu.compute(), rel=FLOAT_TOL)


def test_the_trainer_trains_on_the_gpu_and_says_what_ran(digits):
    trainer = make(digits)
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert trainer.optimizer.defaults["fused"] and torch.cuda.get_device_name() in trainer.precision
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    assert trainer.precision.startswith("bf16 autocast" if bf16 else "fp32")
    untrained = trainer.evaluate("val")
    row = trainer.train_epoch()
    assert row["val_mse"] < untrained["mse"] and row["seq_per_s"] > 0


def test_gpu_evaluation_equals_cpu_evaluation_of_the_same_weights(digits):
    gpu, cpu = make(digits, **FP32), make(digits, device="cpu", **FP32)
    cpu.model.load_state_dict(gpu.model.state_dict())
    assert gpu.evaluate("val") == pytest.approx(cpu.evaluate("val"), rel=TF32_TOL)


def test_the_checkpoint_holds_the_gpu_generator_and_resume_reproduces_the_run(digits, tmp_path):
    straight = make(digits, augment="crop+flip", drop_path=0.1)
    rows = [straight.train_epoch(), straight.train_epoch()]
    first = make(digits, augment="crop+flip", drop_path=0.1)
    first.train_epoch()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert len(state["rng_cuda"]) == torch.cuda.device_count()
    assert torch.equal(state["rng_cuda"][0], torch.cuda.get_rng_state(0))
    torch.cuda.manual_seed_all(999)  # whatever happened in between must not matter
    resumed = make(digits, augment="crop+flip", drop_path=0.1)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    again = resumed.train_epoch()
    for key in ("loss", "val_mse"):
        assert again[key] == pytest.approx(rows[1][key], rel=RESUME_TOL), key
    assert abs(rows[1]["val_mse"] - rows[0]["val_mse"]) > 10 * RESUME_TOL * rows[1]["val_mse"]

    del state["rng_cuda"]  # a checkpoint written before it was kept: every epoch reseeds anyway
    torch.save(state, tmp_path / "old.pt")
    old = make(digits, augment="crop+flip", drop_path=0.1)
    old.load_checkpoint(tmp_path / "old.pt")
    assert old.train_epoch()["val_mse"] == pytest.approx(rows[1]["val_mse"], rel=RESUME_TOL)


def test_bf16_on_the_gpu_matches_float32_within_tolerance(digits):
    a = make(digits, epochs=1, **FP32).train_epoch()
    b = make(digits, epochs=1, amp="bf16", memory_format="contiguous").train_epoch()
    assert a["loss"] != b["loss"]
    for key in ("val_mse", "val_mae", "val_psnr"):
        assert b[key] == pytest.approx(a[key], rel=BF16_REL_TOL), key
    assert b["val_ssim"] == pytest.approx(a["val_ssim"], rel=BF16_REL_TOL, abs=BF16_SSIM_ABS_TOL)


def test_channels_last_on_the_gpu_computes_the_contiguous_forward(digits):
    contiguous, channels_last = make(digits, **FP32), make(digits, amp="off", memory_format="channels_last")
    x = data.split_frames(data.to_float(contiguous.val_set[:2].to(CUDA)))[0]
    contiguous.model.eval()
    channels_last.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(channels_last.forward(x), contiguous.forward(x), rtol=TF32_TOL, atol=TF32_TOL)


def test_the_graph_captured_step_trains_as_the_eager_step(digits):
    torch._dynamo.reset()
    eager, graphs = make(digits, epochs=1, **FP32), make(digits, epochs=1, compile="graphs", **FP32)
    assert graphs.precision == "fp32, contiguous, CUDA graphs (torch.compile reduce-overhead)"
    a, b = eager.train_epoch(), graphs.train_epoch()
    assert b["loss"] == pytest.approx(a["loss"], rel=TF32_TOL)
    assert b["val_mse"] == pytest.approx(a["val_mse"], rel=TF32_TOL)
    assert torch._dynamo.utils.counters["inductor"].get("cudagraph_skips", 0) == 0  # the graphs ran
    torch._dynamo.reset()
