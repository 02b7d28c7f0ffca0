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

from simvp_core import data, memory
from simvp_core.config import TrainConfig, takes
from simvp_core.convert import ConvertError, load_model
from simvp_core.metrics import MetricAccumulator
from simvp_core.models import count_params
from simvp_core.oneline import OneLineParser, print_error
from simvp_core.trainer import TEST_SEED, resolve_device

EXIT_BAD_INPUT = 2


@torch.no_grad()
def evaluate_model(model: nn.Module, seqs: Tensor, batch_size: int, device: torch.device) -> dict[str, float]:
    """{"mse", "mae", "ssim" (data range 2.0), "psnr"} of the model's predictions over uint8 sequences."""
    model.eval()
    acc = MetricAccumulator()
    for start in range(0, len(seqs), batch_size):
        inputs, targets = data.split_frames(data.to_float(seqs[start:start + batch_size].to(device)))
        acc.update(model(inputs).float(), targets)
    return acc.compute()


def check_sizes(test_size: int, batch_size: int) -> None:
    """--test-size and --batch-size within the bounds TrainConfig declares for test_size and
    eval_batch_size (the memory they take is checked once the model is known)."""
    for flag, field, value in (("--test-size", "test_size", test_size),
                               ("--batch-size", "eval_batch_size", batch_size)):
        try:
            TrainConfig().replace(**{field: value})
        except ValueError:
            raise ValueError(f"{flag} {value}: expected {takes(field)} (TrainConfig's {field})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m simvp_core.evaluate",
                                     description="Evaluate a saved SimVP model on the Moving MNIST test set.")
    parser.add_argument("--checkpoint", required=True, help="our model file or a trainer checkpoint.pt")
    parser.add_argument("--data-dir", help="folder holding mnist_test_seq.npy or MNIST/raw/*.gz, fetched there "
                        "when neither is present ('sample' = the small shipped sample)")
    parser.add_argument("--test-size", type=int, default=10_000, help="test sequences (default: 10000)")
    parser.add_argument("--batch-size", type=int, default=100, help="sequences per batch (default: 100)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from simvp_core.fetch import ensure_mnist  # after parsing: --help stays fast

    try:
        check_sizes(args.test_size, args.batch_size)
        model, preset, overrides = load_model(args.checkpoint)
        memory.check(memory.evaluation(model.cfg, args.test_size, args.batch_size), "this evaluation")
        device = resolve_device(args.device)
        data_dir = args.data_dir
        if not data.has_standard_test_set(data_dir):
            data_dir = ensure_mnist(data_dir, allow_sample=False, log=lambda line: None)
        seqs, source = data.load_test_set(args.test_size, TEST_SEED, data_dir=data_dir)
        metrics = evaluate_model(model.to(device), seqs, args.batch_size, device)
    except (ConvertError, ValueError, data.DataNotFoundError) as e:
        print_error(e)
        return EXIT_BAD_INPUT
    report = {"checkpoint": args.checkpoint, "preset": preset, "overrides": overrides,
              "params": count_params(model), "test_set": source, "sequences": len(seqs), **metrics}
    if args.json:
        print(json.dumps(report))
    else:
        changed = f", overrides {overrides}" if overrides else ""
        print(f"{args.checkpoint}: preset {preset}{changed} ({report['params'] / 1e6:.3f}M params)")
        print(f"test set ({len(seqs)} sequences): {source}")
        print(f"mse {metrics['mse']:.4f}  mae {metrics['mae']:.4f}  ssim {metrics['ssim']:.5f} (data range 2.0)  "
              f"psnr {metrics['psnr']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
