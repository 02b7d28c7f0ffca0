"""`python -m simvp_core.train`: one training run, one flag per TrainConfig field.

MNIST missing from the data folder is fetched there first (simvp_core.fetch.ensure_mnist); if that
fails the run stops with the fetch command to run (no fallback to the bundled sample: ask for it with
--data-dir sample). Exit codes: 0 done, 2 bad input (flags, data, existing run), 3 diverged (NaN/inf loss).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from simvp_core.config import ACTIVATIONS, AMP_MODES, AUGMENTATIONS, DEVICES, FIELD_TYPES, TRANSLATORS, TrainConfig
from simvp_core.data import DataNotFoundError
from simvp_core.models import PRESETS

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

_CHOICES = {"preset": tuple(PRESETS), "translator": TRANSLATORS, "act": ACTIVATIONS,
            "augment": AUGMENTATIONS, "device": DEVICES, "amp": AMP_MODES}
_HELP = {
    "preset": "named model preset (paper Table 5)", "translator": "override the preset's translator",
    "n_s": "encoder/decoder blocks", "n_t": "translator blocks", "c_s": "encoder/decoder channels",
    "c_t": "translator channels", "act": "activation of the MetaFormer blocks",
    "augment": "augmentation of the 20-frame training sequences",
    "lambda_gdl": "weight of the gradient difference loss", "lambda_ddr": "weight of the DDR loss",
    "ddr_tau": "softmax temperature of DDR", "train_size": "training sequences per epoch",
    "val_size": "validation sequences (fixed, training digits)", "test_size": "test sequences",
    "amp": "bf16 autocast: auto = on GPU only", "channels_last": "channels_last memory format",
    "compile": "torch.compile the model", "sync_every": "read the loss back every N steps",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simvp_core.train",
                                     description="Train one SimVP model on Moving MNIST.")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        base, _ = FIELD_TYPES[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{_HELP.get(f.name, f.name)} (default: {default})"
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=base, default=default,
                                choices=_CHOICES.get(f.name), help=help_text)
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
    from simvp_core.fetch import ensure_mnist  # after parsing: --help stays fast
    from simvp_core.trainer import DivergedError, run_training

    try:
        cfg = TrainConfig(**args)
        run_training(cfg, out, resume=resume, data_dir=ensure_mnist(data_dir, allow_sample=False))
    except DivergedError as exc:
        print(f"diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, DataNotFoundError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
