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

from simvp_core.config import FIELD_TYPES, TrainConfig, choices, takes
from simvp_core.oneline import OneLineParser, print_error

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field: type, choices, help and default from its declaration."""
    parser = OneLineParser(prog="python -m simvp_core.train",
                           description="Train one SimVP model on Moving MNIST.")
    for name, info in TrainConfig.model_fields.items():
        base, _ = FIELD_TYPES[name]
        flag = "--" + name.replace("_", "-")
        bounds = "" if choices(name) or base is bool else "; " + takes(name).removesuffix(" or null")
        default = "the preset's" if info.default is None else info.default
        help_text = f"{info.description}{bounds} (default: {default})"
        if base is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=info.default, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=base, default=info.default, choices=choices(name),
                                help=help_text)
    parser.add_argument("--data-dir", help="folder holding MNIST/raw/*.gz, fetched there when missing "
                        "(default: $SIMVP_DATA_DIR, else ./data if it holds MNIST, else "
                        "~/.cache/simvp-search; 'sample' = the small shipped sample)")
    parser.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    data_dir, out, resume = args.pop("data_dir"), args.pop("out"), args.pop("resume")
    from simvp_core.data import DataNotFoundError  # after parsing: --help stays fast (no torch)
    from simvp_core.fetch import ensure_mnist
    from simvp_core.trainer import DivergedError, run_training

    try:
        cfg = TrainConfig(**args)
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
