"""`python -m search.model evaluate | to-openstl | predict`: one command per thing to do with a
model, from the MLflow registry or a run (`--model-uri models:/smoke@best`) or from a file
(`--checkpoint FILE`: our model file or a trainer checkpoint).

A URI is resolved here, on the platform's side (search.tracking downloads the model file the
search registered); simvp_core is handed the file and never imports MLflow (its own
`python -m simvp_core.evaluate` / `convert` take files). Exit codes: 0 done, 2 bad input (one
line: a bad URI, a missing model, an unreachable store, a file that is not a model).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from simvp_core.oneline import OneLineParser, print_error, short_path

PROG = "python -m search.model"
DEFAULT_SEQUENCES = 4
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    from simvp_core.evaluate import add_test_set_options

    source = argparse.ArgumentParser(add_help=False)
    where = source.add_argument_group("the model (one of)").add_mutually_exclusive_group(required=True)
    where.add_argument("--model-uri", help="models:/NAME@ALIAS (a search's best: models:/<name>@best), "
                                           "models:/NAME/VERSION or runs:/RUN_ID/PATH")
    where.add_argument("--checkpoint", help="our model file or a trainer checkpoint.pt")
    source.add_argument("--tracking-uri", help="the MLflow store of --model-uri (default: $MLFLOW_TRACKING_URI, "
                                               "else sqlite:///runs/mlflow.db, the search's default)")
    parser = OneLineParser(prog=PROG, description="Evaluate, convert or watch a model: from the MLflow "
                           "registry or a run (--model-uri), or from a file (--checkpoint).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="{evaluate,to-openstl,predict}")
    evaluate = actions.add_parser("evaluate", parents=[source], help="test MSE / MAE / SSIM / PSNR",
                                  description="The model's metrics on the Moving MNIST test set.")
    add_test_set_options(evaluate)
    to_openstl = actions.add_parser("to-openstl", parents=[source], help="the model in OpenSTL's checkpoint layout",
                                    description="Write the model as OpenSTL's Lightning checkpoint.")
    to_openstl.add_argument("out", help="the OpenSTL checkpoint to write")
    predict = actions.add_parser("predict", parents=[source], help="an animated GIF of its predictions",
                                 description="An animated GIF of test sequences: input, target and the "
                                             "model's prediction side by side, with a frame counter.")
    predict.add_argument("--out", required=True, help="the GIF to write (FILE.gif)")
    predict.add_argument("--sequences", type=int, default=DEFAULT_SEQUENCES,
                         help=f"test sequences, one per row (default: {DEFAULT_SEQUENCES})")
    predict.add_argument("--data-dir", help="folder holding mnist_test_seq.npy or MNIST/raw/*.gz")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return parser


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the store `python -m search.run` writes to by default."""
    from search import runfolder

    return os.environ.get("MLFLOW_TRACKING_URI") or runfolder.default_tracking_uri(Path("runs").resolve())


@contextlib.contextmanager
def model_file(args: argparse.Namespace) -> Iterator[Path]:
    """The model's file while the block runs: --checkpoint itself, or --model-uri downloaded."""
    if args.checkpoint:
        yield Path(args.checkpoint)
        return
    from search.tracking.models import fetch_model_file

    with tempfile.TemporaryDirectory(prefix="simvp-model-") as d:
        yield fetch_model_file(args.model_uri, args.tracking_uri or default_tracking_uri(), Path(d))


def predict(path: Path, out: Path, sequences: int, data_dir: str | None, device: str) -> str:
    """Write the GIF of the model's predictions of the first `sequences` test sequences; returns
    which test set they are from."""
    import torch

    from search.report import animation
    from simvp_core import data
    from simvp_core.convert import load_model
    from simvp_core.evaluate import test_sequences
    from simvp_core.trainer import resolve_device

    if sequences < 1:
        raise ValueError(f"--sequences {sequences}: expected an integer >= 1")
    if out.suffix.lower() != ".gif":
        raise ValueError(f"--out {short_path(out)}: expected a file name ending in .gif")
    model, _, _ = load_model(path)
    where = resolve_device(device)
    seqs, source = test_sequences(sequences, data_dir)
    inputs, targets = data.split_frames(data.to_float(seqs.to(where)))
    with torch.no_grad():
        preds = model.to(where).eval()(inputs).float()
    arrays = {"inputs": inputs.cpu().numpy(), "targets": targets.cpu().numpy(), "preds": preds.cpu().numpy()}
    out.parent.mkdir(parents=True, exist_ok=True)
    animation.write_gif(animation.columns_of(arrays), out)
    return source


def run(args: argparse.Namespace) -> str:
    """Do the action; what it printed on success."""
    from simvp_core import evaluate
    from simvp_core.convert import to_openstl

    label = args.model_uri or args.checkpoint
    with model_file(args) as path:
        if args.action == "evaluate":
            report = evaluate.evaluate_file(str(path), args.data_dir, args.test_size, args.batch_size, args.device,
                                            args.amp, args.memory_format)
            key = "model_uri" if args.model_uri else "checkpoint"
            return json.dumps({key: label, **report}) if args.json else evaluate.describe(report, label)
        if args.action == "to-openstl":
            model_type = to_openstl(path, args.out)
            return f"wrote {args.out}: OpenSTL SimVP_Model(model_type={model_type!r}) of {label}"
        source = predict(path, Path(args.out), args.sequences, args.data_dir, args.device)
        return f"wrote {args.out}: {args.sequences} test sequence(s) of {source}, predicted by {label}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action == "evaluate":  # --fp32: the trainer's plain float32 settings
        from simvp_core.train import apply_fp32

        args = argparse.Namespace(**apply_fp32(parser, vars(args)))
    from search.tracking.models import ModelUriError
    from simvp_core.convert import ConvertError
    from simvp_core.data import DataNotFoundError

    try:
        print(run(args))
    except (ModelUriError, ConvertError, ValueError, DataNotFoundError) as e:
        print_error(' '.join(str(e).split()))
        return EXIT_BAD_INPUT
    except OSError as e:  # the output cannot be written
        print_error(f"{short_path(getattr(e, 'filename', '') or '')}: {e.strerror or e}")
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
