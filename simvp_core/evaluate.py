"""`python -m simvp_core.evaluate --checkpoint FILE`: MSE, MAE, SSIM, PSNR of a saved model on the test set.

FILE is our model file (`python -m simvp_core.convert from-openstl` writes one) or a trainer
checkpoint; the model is rebuilt from the preset and overrides it names and loaded with
`weights_only=True`. The test set is `mnist_test_seq.npy` when the data folder has it, else the
trainer's generated stand-in (same seed). Exit codes: 0 done, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch import Tensor, nn

from simvp_core import data
from simvp_core.config import TrainConfig
from simvp_core.convert import ConvertError, load_model
from simvp_core.execution import choose as choose_execution
from simvp_core.metrics import MetricAccumulator
from simvp_core.models import count_params
from simvp_core.oneline import OneLineParser
from simvp_core.train import add_field_flag, add_fp32_flag, apply_fp32
from simvp_core.trainer import TEST_SEED, resolve_device

EXIT_BAD_INPUT = 2


@torch.no_grad()
def evaluate_model(model: nn.Module, seqs: Tensor, batch_size: int, device: torch.device,
                   amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """{"mse", "mae", "ssim" (data range 2.0), "psnr"} of the model's predictions over uint8
    sequences, the forward under autocast to `amp_dtype` when given."""
    model.eval()
    acc = MetricAccumulator()
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    for start in range(0, len(seqs), batch_size):
        inputs, targets = data.split_frames(data.to_float(seqs[start:start + batch_size].to(device)))
        with autocast:
            preds = model(inputs)
        acc.update(preds.float(), targets)
    return acc.compute()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m simvp_core.evaluate",
                                     description="Evaluate a saved SimVP model on the Moving MNIST test set.")
    parser.add_argument("--checkpoint", required=True, help="our model file or a trainer checkpoint.pt")
    parser.add_argument("--data-dir", help="folder holding mnist_test_seq.npy or MNIST/raw/*.gz, fetched there "
                        "when neither is present ('sample' = the small shipped sample)")
    parser.add_argument("--test-size", type=int, default=10_000, help="test sequences (default: 10000)")
    parser.add_argument("--batch-size", type=int, default=100, help="sequences per batch (default: 100)")
    for name in ("device", "amp", "memory_format"):  # as the trainer's flags, from TrainConfig
        add_field_flag(parser, name)
    add_fp32_flag(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = argparse.Namespace(**apply_fp32(parser, vars(parser.parse_args(argv))))
    from simvp_core.fetch import ensure_mnist  # after parsing: --help stays fast

    try:
        if args.test_size < 1 or args.batch_size < 1:
            raise ValueError(f"--test-size and --batch-size must be >= 1, got {args.test_size} and "
                             f"{args.batch_size}")
        model, preset, overrides = load_model(args.checkpoint)
        device = resolve_device(args.device)
        execution = choose_execution(TrainConfig(device=args.device, amp=args.amp,
                                                 memory_format=args.memory_format), device)
        if execution.channels_last:
            model = model.to(memory_format=torch.channels_last)
        data_dir = args.data_dir
        if not data.has_standard_test_set(data_dir):
            data_dir = ensure_mnist(data_dir, allow_sample=False, log=lambda line: None)
        seqs, source = data.load_test_set(args.test_size, TEST_SEED, data_dir=data_dir)
        metrics = evaluate_model(model.to(device), seqs, args.batch_size, device, execution.amp_dtype)
    except (ConvertError, ValueError, data.DataNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = {"checkpoint": args.checkpoint, "preset": preset, "overrides": overrides,
              "params": count_params(model), "precision": execution.precision, "test_set": source,
              "sequences": len(seqs), **metrics}
    if args.json:
        print(json.dumps(report))
    else:
        changed = f", overrides {overrides}" if overrides else ""
        print(f"{args.checkpoint}: preset {preset}{changed} ({report['params'] / 1e6:.3f}M params)")
        print(f"test set ({len(seqs)} sequences): {source}; on {device}, {execution.precision}")
        print(f"mse {metrics['mse']:.4f}  mae {metrics['mae']:.4f}  ssim {metrics['ssim']:.5f} (data range 2.0)  "
              f"psnr {metrics['psnr']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
