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
from typing import TYPE_CHECKING

from simvp_core.config import TrainConfig, takes
from simvp_core.oneline import OneLineParser, print_error
from simvp_core.train import add_field_flag, add_fp32_flag, apply_fp32

if TYPE_CHECKING:  # torch and what needs it are imported when a model is evaluated: --help stays fast
    import torch
    from torch import Tensor, nn

EXIT_BAD_INPUT = 2


def evaluate_model(model: nn.Module, seqs: Tensor, batch_size: int, device: torch.device,
                   amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """{"mse", "mae", "ssim" (data range 2.0), "psnr"} of the model's predictions over uint8
    sequences, the forward under autocast to `amp_dtype` when given."""
    import torch

    from simvp_core import data
    from simvp_core.metrics import MetricAccumulator

    model.eval()
    acc = MetricAccumulator()
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    with torch.no_grad():
        for start in range(0, len(seqs), batch_size):
            inputs, targets = data.split_frames(data.to_float(seqs[start:start + batch_size].to(device)))
            with autocast:
                preds = model(inputs)
            acc.update(preds.float(), targets)
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


def add_test_set_options(parser: argparse.ArgumentParser) -> None:
    """The test set and how to run it: the options every command that evaluates a model takes."""
    parser.add_argument("--data-dir", help="folder holding mnist_test_seq.npy or MNIST/raw/*.gz, fetched there "
                        "when neither is present ('sample' = the small shipped sample)")
    parser.add_argument("--test-size", type=int, default=10_000, help="test sequences (default: 10000)")
    parser.add_argument("--batch-size", type=int, default=100, help="sequences per batch (default: 100)")
    for name in ("device", "amp", "memory_format"):  # as the trainer's flags, from TrainConfig
        add_field_flag(parser, name)
    add_fp32_flag(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def test_sequences(n: int, data_dir: str | None) -> tuple[Tensor, str]:
    """The first n test sequences (uint8) and what they are: mnist_test_seq.npy when the data folder
    has it, else the trainer's stand-in, MNIST fetched first when missing."""
    from simvp_core import data
    from simvp_core.fetch import ensure_mnist
    from simvp_core.trainer import TEST_SEED

    if not data.has_standard_test_set(data_dir):
        data_dir = ensure_mnist(data_dir, allow_sample=False, log=lambda line: None)
    return data.load_test_set(n, TEST_SEED, data_dir=data_dir)


def evaluate_file(path: str, data_dir: str | None, test_size: int, batch_size: int, device: str,
                  amp: str = "auto", memory_format: str = "auto") -> dict:
    """The report of a saved model on the test set: preset, overrides, params, precision, test set,
    sequences and the metrics; ConvertError, ValueError or DataNotFoundError (one line) when it
    cannot be made."""
    from simvp_core import memory
    from simvp_core.convert import load_model
    from simvp_core.execution import choose
    from simvp_core.models import count_params
    from simvp_core.trainer import resolve_device

    check_sizes(test_size, batch_size)
    model, preset, overrides = load_model(path)
    memory.check(memory.evaluation(model.cfg, test_size, batch_size), "this evaluation")
    where = resolve_device(device)
    execution = choose(TrainConfig(device=device, amp=amp, memory_format=memory_format), where)
    model = execution.place(model, where)
    seqs, source = test_sequences(test_size, data_dir)
    metrics = evaluate_model(model, seqs, batch_size, where, execution.amp_dtype)
    return {"preset": preset, "overrides": overrides, "params": count_params(model),
            "precision": execution.precision, "device": str(where), "test_set": source,
            "sequences": len(seqs), **metrics}


def describe(report: dict, label: str) -> str:
    """The report as the command prints it: the model, the test set, the metrics."""
    changed = f", overrides {report['overrides']}" if report["overrides"] else ""
    return "\n".join([
        f"{label}: preset {report['preset']}{changed} ({report['params'] / 1e6:.3f}M params)",
        f"test set ({report['sequences']} sequences): {report['test_set']}; on {report['device']}, "
        f"{report['precision']}",
        f"mse {report['mse']:.4f}  mae {report['mae']:.4f}  ssim {report['ssim']:.5f} (data range 2.0)  "
        f"psnr {report['psnr']:.3f}"])


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m simvp_core.evaluate",
                           description="Evaluate a saved SimVP model on the Moving MNIST test set.")
    parser.add_argument("--checkpoint", required=True, help="our model file or a trainer checkpoint.pt")
    add_test_set_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = argparse.Namespace(**apply_fp32(parser, vars(parser.parse_args(argv))))
    from simvp_core.convert import ConvertError
    from simvp_core.data import DataNotFoundError

    try:
        report = evaluate_file(args.checkpoint, args.data_dir, args.test_size, args.batch_size, args.device,
                               args.amp, args.memory_format)
    except (ConvertError, ValueError, DataNotFoundError) as e:
        print_error(e)
        return EXIT_BAD_INPUT
    print(json.dumps({"checkpoint": args.checkpoint, **report}) if args.json else describe(report, args.checkpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
