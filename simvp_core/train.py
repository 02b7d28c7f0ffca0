"""`python -m simvp_core.train`: one training run, one flag per TrainConfig field.

MNIST missing from the data folder is fetched there first (simvp_core.fetch.ensure_mnist); if that
fails the run stops with the fetch command to run (no fallback to the bundled sample: ask for it with
--data-dir sample). Exit codes: 0 done, 2 bad input (flags, data, existing run, a --resume checkpoint
that is unreadable, foreign or for another config: one line naming it, the file left as it is),
3 diverged (NaN/inf loss).
"""

from __future__ import annotations

import argparse
import sys

from simvp_core.config import FIELD_TYPES, FP32, TrainConfig, choices, takes
from simvp_core.oneline import OneLineParser, print_error

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field: type, choices, help and default from its declaration."""
    parser = OneLineParser(prog="python -m simvp_core.train",
                           description="Train one SimVP model on Moving MNIST.")
    for name in TrainConfig.model_fields:
        add_field_flag(parser, name)
    add_fp32_flag(parser)
    parser.add_argument("--data-dir", help="folder holding MNIST/raw/*.gz, fetched there when missing "
                        "(default: $SIMVP_DATA_DIR, else ./data if it holds MNIST, else "
                        "~/.cache/simvp-search; 'sample' = the small shipped sample)")
    parser.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    return parser


def add_field_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """The flag of one TrainConfig field: type, choices, help and default from its declaration."""
    info = TrainConfig.model_fields[name]
    base, _ = FIELD_TYPES[name]
    flag = "--" + name.replace("_", "-")
    bounds = "" if choices(name) else "; " + takes(name).removesuffix(" or null")
    default = "the preset's" if info.default is None else info.default
    parser.add_argument(flag, dest=name, type=base, default=info.default, choices=choices(name),
                        help=f"{info.description}{bounds} (default: {default})")


def add_fp32_flag(parser: argparse.ArgumentParser) -> None:
    """--fp32: the settings of config.FP32 in one flag (plain float32)."""
    settings = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in FP32.items())
    parser.add_argument("--fp32", action="store_true", help=f"plain float32: {settings}")


def apply_fp32(parser: argparse.ArgumentParser, args: dict) -> dict:
    """args with config.FP32 applied when --fp32 was given (popped); a flag set to something
    else at the same time is an error (exit 2)."""
    if not args.pop("fp32"):
        return args
    for name, value in FP32.items():
        if args[name] not in (value, parser.get_default(name)):
            parser.error(f"--fp32 sets --{name.replace('_', '-')} {value}; drop --{name.replace('_', '-')} "
                         f"{args[name]} or --fp32")
    return {**args, **FP32}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = apply_fp32(parser, vars(parser.parse_args(argv)))
    data_dir, out, resume = args.pop("data_dir"), args.pop("out"), args.pop("resume")
    from simvp_core.data import DataNotFoundError  # after parsing: --help stays fast (no torch)
    from simvp_core.fetch import ensure_mnist
    from simvp_core.trainer import DivergedError, resolve_device, run_training

    try:
        cfg = TrainConfig(**args)
        resolve_device(cfg.device)  # a missing GPU is refused before anything is written
        run_training(cfg, out, resume=resume, data_dir=ensure_mnist(data_dir, allow_sample=False))
    except DivergedError as exc:
        print_error(exc, prefix="diverged: ")
        return EXIT_DIVERGED
    except (ValueError, DataNotFoundError, FileExistsError, FileNotFoundError) as exc:
        print_error(exc)  # a FileError (unwritable --out, a full disk) and MemoryLimitError are ValueErrors
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
