"""Data generation and evaluation throughput on the training device.

The trainer generates each batch inline (no loader processes), so the data path costs a share of
every step: that share, generation time over step time, is what tells whether data could be the
bottleneck. Evaluation is timed both through the four metrics alone and through forward + metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.machine import median_rate
from simvp_core import data
from simvp_core.config import TrainConfig
from simvp_core.metrics import MetricAccumulator
from simvp_core.trainer import Trainer


def generation_rate(digits: torch.Tensor, kind: str, batch_size: int, batches: int,
                    windows: int) -> float:
    """Median seq/s of generate_sequences + augment(kind) at the trainer's batch size, on digits.device."""
    device = digits.device
    gen = torch.Generator(device=device).manual_seed(0)

    def work() -> int:
        for _ in range(batches):
            data.augment(data.generate_sequences(digits, batch_size, gen), kind, gen)
        return batches * batch_size

    work()  # warm-up
    return median_rate(work, device, windows)


def data_table(kinds: list[str], device: str, batch_size: int, batches: int, windows: int,
               data_dir: str | Path | None, consumed: dict[str, float]) -> list[dict]:
    """One row per (augmentation, preset): generated seq/s against the seq/s the default-path trainer
    consumes (`consumed`: preset -> seq/s, may be empty), their ratio, and data's share of a step."""
    digits = data.load_mnist("train", data_dir).to(device)
    rows = []
    for kind in kinds:
        generated = generation_rate(digits, kind, batch_size, batches, windows)
        if not consumed:  # training not measured: generation alone
            rows.append({"augment": kind, "preset": "-", "generated seq/s": generated})
        for preset, trainer_rate in consumed.items():
            rows.append({"augment": kind, "preset": preset, "generated seq/s": generated,
                         "trainer seq/s": trainer_rate, "generated/consumed": generated / trainer_rate,
                         "data % of step": 100 * trainer_rate / generated})
    return rows


def metrics_rate(device: str, n: int, batch_size: int, windows: int) -> float:
    """Median seq/s of MetricAccumulator (MSE, MAE, SSIM, PSNR) over n random sequences on the device."""
    gen = torch.Generator(device=device).manual_seed(0)
    target = torch.rand(n, data.NUM_FRAMES - data.INPUT_FRAMES, 1, 64, 64, generator=gen, device=device)
    pred = (target + 0.1 * torch.randn(target.shape, generator=gen, device=device)).clamp(-0.2, 1.2)

    def work() -> int:
        acc = MetricAccumulator()
        for i in range(0, n, batch_size):
            acc.update(pred[i:i + batch_size], target[i:i + batch_size])
        acc.compute()  # the one host sync, as in Trainer.evaluate
        return n

    work()
    return median_rate(work, torch.device(device), windows)


def evaluation_rate(preset: str, device: str, n: int, batch_size: int, windows: int,
                    digits: tuple[torch.Tensor, torch.Tensor], overrides: dict | None = None) -> float:
    """Median seq/s of Trainer.evaluate('val') (forward + metrics, default-path settings) over n sequences."""
    cfg = TrainConfig(preset=preset, device=device, val_size=n, eval_batch_size=batch_size,
                      train_size=1, batch_size=1, test_size=1, epochs=1, **(overrides or {}))
    trainer = Trainer(cfg, train_digits=digits[0], test_digits=digits[1])

    def work() -> int:
        trainer.evaluate("val")
        return n

    work()
    return median_rate(work, trainer.device, windows)


def evaluation_table(presets: list[str], device: str, n: int, batch_size: int, windows: int,
                     data_dir: str | Path | None, overrides: dict | None = None,
                     log: Callable[[str], None] = print) -> list[dict]:
    """A metrics-only row, then one forward + metrics row per preset."""
    rows = [{"what": "metrics only (MetricAccumulator: mse, mae, ssim, psnr)", "preset": "-",
             "seq/s": metrics_rate(device, n, batch_size, windows)}]
    digits = (data.load_mnist("train", data_dir), data.load_mnist("test", data_dir))
    for preset in presets:
        rate = evaluation_rate(preset, device, n, batch_size, windows, digits, overrides)
        log(f"  evaluation {preset:<11} {rate:9.2f} seq/s")
        rows.append({"what": "forward + metrics (Trainer.evaluate)", "preset": preset, "seq/s": rate})
    return rows
