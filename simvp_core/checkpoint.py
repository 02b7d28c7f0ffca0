"""The trainer's checkpoint file read back: loaded to the CPU, then every part checked against the
run that will resume from it before anything is restored. A file that cannot be resumed from is a
`CheckpointError`: one line saying what is wrong and what to do."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from torch import Tensor

from simvp_core.config import TrainConfig, fields_in
from simvp_core.files import FileError, open_regular
from simvp_core.oneline import clip

VERSION = 1
KEYS = frozenset({"version", "config", "epoch", "history", "model", "optimizer", "scheduler", "rng_cpu"})
FIX = "move it away and run without --resume to start anew"
RETIRED_EXECUTION_FIELDS = ("channels_last",)  # memory_format replaced it; older checkpoints hold it


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, foreign, or for another config/model."""


def read(path: str | Path) -> object:
    """The checkpoint's contents, every tensor on the CPU whatever device wrote it (the trainer
    moves weights and optimizer state to its device; RNG states must stay CPU tensors)."""
    try:
        with open_regular(path, "checkpoint") as f:  # a FIFO or device: refused, not waited on
            return torch.load(f, map_location="cpu", weights_only=True)
    except FileError as e:
        raise CheckpointError(f"{e}; {FIX}") from e
    except pickle.UnpicklingError as e:  # garbage, or a pickle holding more than tensors
        raise CheckpointError(f"{path}: not a torch checkpoint file (corrupt, or not written by "
                              f"torch.save with plain tensors); {FIX}") from e
    except Exception as e:  # torch.load raises many kinds (RuntimeError, OSError, EOFError...)
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                              f"{first_line(e)}); {FIX}") from e


def learning_fields(cfg: TrainConfig) -> dict:
    """The fields that change what is learned; execution fields may differ on resume."""
    execution = fields_in("execution")
    return {k: v for k, v in cfg.to_dict().items() if k not in execution}


def check(state: object, cfg: TrainConfig, model: dict[str, Tensor], n_params: int) -> None:
    """Everything a trainer of `cfg` (its model's state dict `model`) restores from `state`, checked
    before any of it is: the format, the config, the weights, the progress."""
    if not isinstance(state, dict) or not KEYS <= state.keys():
        raise CheckpointError(f"not a checkpoint of this trainer (expected the keys {', '.join(sorted(KEYS))}); {FIX}")
    if state["version"] != VERSION:
        raise CheckpointError(f"checkpoint format version {clip(repr(state['version']), 40)}, this trainer "
                              f"reads {VERSION}; {FIX}")
    try:  # its execution settings may differ (or be an older version's): this run's count
        values = {k: v for k, v in state["config"].items() if k not in RETIRED_EXECUTION_FIELDS}
        now = {k: getattr(cfg, k) for k in fields_in("execution")}
        saved = TrainConfig.from_dict({**values, **now})
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"its config is not valid here ({first_line(e)}); {FIX}") from e
    if learning_fields(saved) != learning_fields(cfg):
        diff = ", ".join(f"{k} {v!r} (now {getattr(cfg, k)!r})"
                         for k, v in learning_fields(saved).items() if getattr(cfg, k) != v)
        raise CheckpointError(f"written for a different config: {clip(diff, 120)}; resume with the same settings "
                              "or start a new run")
    _check_weights(state["model"], cfg, model, n_params)
    _check_progress(state, cfg.epochs)


def _check_weights(weights: object, cfg: TrainConfig, model: dict[str, Tensor], n_params: int) -> None:
    if (not isinstance(weights, dict) or weights.keys() != model.keys()
            or any(not isinstance(v, Tensor) or v.shape != model[k].shape for k, v in weights.items())):
        raise CheckpointError(f"its model weights do not fit this model ({cfg.preset}, {n_params:,} parameters): "
                              f"written for a different model; {FIX}")
    odd = next((k for k, v in weights.items()
                if v.is_complex() or v.dtype.is_floating_point != model[k].dtype.is_floating_point), None)
    if odd is not None:
        raise CheckpointError(f"weight {clip(odd, 60)} is {weights[odd].dtype}, not {model[odd].dtype} (complex "
                              f"weights would lose their imaginary part); {FIX}")


def _check_progress(state: dict, epochs: int) -> None:
    """The epochs done (in [0, epochs]), the history of as many rows, and the optimizer's,
    scheduler's and RNG's state of the types they restore from."""
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= epochs:
        raise CheckpointError(f"claims {clip(repr(epoch), 40)} epochs done, expected an integer in "
                              f"[0, {epochs}]; {FIX}")
    try:
        history = json.loads(state["history"]) if isinstance(state["history"], str) else None
    except (ValueError, RecursionError):
        history = None
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        raise CheckpointError(f"its history is not {epoch} epoch rows (corrupt); {FIX}")
    rng = state["rng_cpu"]
    if not (isinstance(state["optimizer"], dict) and {"state", "param_groups"} <= state["optimizer"].keys()
            and isinstance(state["scheduler"], dict) and isinstance(rng, Tensor) and rng.dtype == torch.uint8):
        raise CheckpointError(f"its optimizer, scheduler or RNG state is malformed; {FIX}")


def first_line(e: BaseException, limit: int = 64) -> str:
    """An exception's first line, clipped: torch's messages run to many lines."""
    return clip((str(e).strip().splitlines() or [type(e).__name__])[0], limit)
