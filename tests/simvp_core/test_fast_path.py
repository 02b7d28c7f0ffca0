"""The fast training path computes what the plain fp32 path computes, to stated tolerances."""

import math
import os
import shutil

import pytest
import torch

from simvp_core import data
from simvp_core.config import TrainConfig
from simvp_core.data import load_mnist
from simvp_core.trainer import DivergedError, Trainer

TINY = dict(preset="simvpv2", c_s=4, c_t=8, n_t=2, train_size=32, val_size=16, test_size=4,
            batch_size=4, eval_batch_size=8, epochs=1, device="cpu")
# bf16 keeps 8 significant bits (relative rounding 2**-9, about 0.2 %). After one epoch of 8 steps
# the bf16 run's validation metrics were at most 0.3 % from the fp32 run's over seeds 0-3, so
# 2 % relative (SSIM: also 0.005 absolute, it is near 0 untrained) leaves a margin of about 7.
BF16_REL_TOL = 0.02
BF16_SSIM_ABS_TOL = 0.005
# compile and channels_last only reorder float32 sums
FP32_TOL = 1e-5


@pytest.fixture(scope="module")
def digits():
    return load_mnist("train", data.SAMPLE), load_mnist("test", data.SAMPLE)


def make(digits, **changes) -> Trainer:
    return Trainer(TrainConfig(**{**TINY, **changes}), train_digits=digits[0], test_digits=digits[1])


def _inputs(trainer: Trainer, n: int = 2) -> torch.Tensor:
    return data.split_frames(data.to_float(trainer.val_set[:n]))[0]


def test_amp_auto_is_float32_on_cpu_and_bf16_is_opt_in(digits):
    assert make(digits).amp_dtype is None
    assert make(digits, amp="bf16").amp_dtype == torch.bfloat16


@pytest.mark.parametrize("seed", [0, 3])
def test_bf16_autocast_run_matches_the_float32_run_within_tolerance(digits, seed):
    fp32, bf16 = make(digits, seed=seed, amp="off"), make(digits, seed=seed, amp="bf16")
    untrained = fp32.evaluate("val")
    a, b = fp32.train_epoch(), bf16.train_epoch()
    assert a["loss"] != b["loss"]  # bf16 really ran: the numbers are not bit-identical
    for key in ("val_mse", "val_mae", "val_psnr"):
        assert b[key] == pytest.approx(a[key], rel=BF16_REL_TOL), key
    assert b["val_ssim"] == pytest.approx(a["val_ssim"], rel=BF16_REL_TOL, abs=BF16_SSIM_ABS_TOL)
    # training moved val_mse far more than the tolerance, so the comparison can fail
    assert abs(a["val_mse"] - untrained["mse"]) > 5 * BF16_REL_TOL * a["val_mse"]


def test_channels_last_forward_equals_the_default_forward(digits):
    default, channels_last = make(digits, amp="off"), make(digits, amp="off", channels_last=True)
    weight = channels_last.model.encoder.blocks[1].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    x = _inputs(default)
    default.model.eval()
    channels_last.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(channels_last.forward(x), default.forward(x), rtol=FP32_TOL, atol=FP32_TOL)


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="torch.compile on CPU (inductor) needs a C++ compiler: no g++ (or $CXX) on PATH")
def test_compiled_model_output_equals_eager_in_float32(digits):
    torch._dynamo.reset()
    eager, compiled = make(digits, amp="off"), make(digits, amp="off", compile=True)
    assert compiled.forward is not compiled.model
    x = _inputs(eager)
    eager.model.eval()
    compiled.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled.forward(x), eager.forward(x), rtol=FP32_TOL, atol=FP32_TOL)
    torch._dynamo.reset()


@pytest.mark.parametrize("sync_every, bad_step", [(3, 2), (3, 3), (3, 4), (100, 5)])
def test_a_nan_loss_is_caught_at_the_first_read_back_after_it(digits, sync_every, bad_step):
    trainer = make(digits, sync_every=sync_every)  # 8 steps per epoch
    steps = trainer.steps_per_epoch
    calls = 0
    real_loss = trainer._loss

    def loss_turning_nan(seqs):
        nonlocal calls
        calls += 1
        value = real_loss(seqs)
        return value * math.nan if calls >= bad_step else value

    trainer._loss = loss_turning_nan
    caught_at = min(math.ceil(bad_step / sync_every) * sync_every, steps)  # next read-back, or epoch end
    with pytest.raises(DivergedError, match=f"by step {caught_at};"):
        trainer.train_epoch()
    assert calls == caught_at  # stopped there: no step ran past the read-back
    assert caught_at - bad_step < sync_every
