"""The training loop: Adam + OneCycleLR per step on Moving MNIST generated on the fly.

A library first: `Trainer.fit` is the one epoch loop, calling back after each epoch; the search's
trainable reports from that callback, and `run_training` (the CLI's) checkpoints and prints a
progress line from it. Every epoch reseeds its own data stream and the global RNG from
(seed, epoch), so resuming after epoch k reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from simvp_core import data, memory
from simvp_core.atomic import atomic_file, atomic_write
from simvp_core.config import TrainConfig, fields_in
from simvp_core.files import FileError, make_folder, open_regular
from simvp_core.losses import total_loss
from simvp_core.metrics import MetricAccumulator
from simvp_core.models import build_model, count_params
from simvp_core.oneline import duration
from simvp_core.outputs import CHECKPOINT_FILE, METRICS_FILE

VAL_SEED = 1_000_003  # the validation set is the same for every trial, whatever its seed
TEST_SEED = 2_000_003  # seed of the generated stand-in test set
CHECKPOINT_VERSION = 1


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: the run cannot recover, and retrying repeats it."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, foreign, or for another config/model."""


_STATE_KEYS = frozenset({"version", "config", "epoch", "history", "model", "optimizer", "scheduler",
                         "rng_cpu"})
_CHECKPOINT_FIX = "move it away and run without --resume to start anew"


def _first_line(e: BaseException, limit: int = 64) -> str:
    """An exception's first line, clipped: torch's messages run to many lines."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return _clip(text, limit)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def check_memory(cfg: TrainConfig, device: torch.device) -> None:
    """memory.MemoryLimitError (one line naming the setting) when the training cannot fit: the
    host's memory, and on a GPU the device's free memory for what lives there."""
    estimate = memory.training(cfg)
    gpu = device.type == "cuda"
    memory.check(estimate, "this training", host_only=gpu)
    if gpu:
        free, _ = torch.cuda.mem_get_info(device)
        on_device = estimate.total() - estimate.total(host_only=True)
        if on_device > free:
            raise memory.MemoryLimitError(
                f"this training needs {memory.size(on_device)} on {device} ({estimate.describe(parts=2)}), "
                f"but {memory.size(free)} is free there; lower {estimate.largest().lower or 'its sizes'}")


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, stream)."""
    return (seed * 1_000_003 + epoch * 7_919 + stream) % (2**63 - 1)


class Trainer:
    """One SimVP training run, advanced one epoch at a time."""

    def __init__(self, cfg: TrainConfig, train_digits: Tensor | None = None,
                 test_digits: Tensor | None = None, data_dir: str | Path | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        check_memory(cfg, self.device)  # before anything of it is allocated
        bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if bf16 else None
        if train_digits is None:
            train_digits = data.load_mnist("train", data_dir)
        if test_digits is None and not data.has_standard_test_set(data_dir):
            test_digits = data.load_mnist("test", data_dir)
        self.train_digits = train_digits.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are fixed: autotune each conv once

        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.preset, **cfg.model_overrides()).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.n_params = count_params(self.model)
        self.forward = torch.compile(self.model) if cfg.compile else self.model

        self.steps_per_epoch = max(1, cfg.train_size // cfg.batch_size)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr,
                                          weight_decay=cfg.weight_decay, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * self.steps_per_epoch)

        # uint8 on the device: validation runs every epoch without host-to-device copies
        self.val_set = data.make_fixed_set(train_digits, cfg.val_size, VAL_SEED).to(self.device)
        self.test_set, self.test_set_source = data.load_test_set(
            cfg.test_size, TEST_SEED, data_dir=data_dir, digits=test_digits)
        self.epoch = 0
        self.history: list[dict] = []

    # -- training ----------------------------------------------------------------------------

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _loss(self, seqs: Tensor) -> Tensor:
        inputs, targets = data.split_frames(seqs)
        with self._autocast():
            preds = self.forward(inputs)
        loss, _ = total_loss(preds.float(), targets, self.cfg.lambda_gdl, self.cfg.lambda_ddr,
                             self.cfg.ddr_tau)
        return loss

    def train_epoch(self) -> dict:
        """Train one epoch, then validate; returns (and appends to history) the epoch's row."""
        cfg = self.cfg
        if self.epoch >= cfg.epochs:
            raise RuntimeError(f"all {cfg.epochs} epochs are done; nothing left to train")
        epoch = self.epoch + 1
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, 0))
        gen = torch.Generator(device=self.device).manual_seed(_epoch_seed(cfg.seed, epoch, 1))
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        pending = torch.zeros((), device=self.device)
        start = time.perf_counter()
        for step in range(1, self.steps_per_epoch + 1):
            seqs = data.generate_sequences(self.train_digits, cfg.batch_size, gen)
            if cfg.augment != "none":
                seqs = data.augment(seqs, cfg.augment, gen)
            loss = self._loss(seqs)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            pending += loss.detach()
            if step % cfg.sync_every == 0 or step == self.steps_per_epoch:
                value = float(pending)  # the only host sync: once every sync_every steps
                if not math.isfinite(value):
                    raise DivergedError(
                        f"loss became {value} in epoch {epoch} by step {step}; "
                        f"lower lr (now {cfg.lr}) or the loss weights")
                loss_sum += pending
                pending.zero_()
        train_seconds = time.perf_counter() - start
        val = self.evaluate("val")
        epoch_seconds = time.perf_counter() - start
        self.epoch = epoch
        row = {
            "epoch": epoch,
            "loss": float(loss_sum) / self.steps_per_epoch,
            **{f"val_{k}": v for k, v in val.items()},
            "lr_now": self.scheduler.get_last_lr()[0],  # the schedule's rate now; cfg.lr is its peak
            "seconds": train_seconds,
            "seq_per_s": self.steps_per_epoch * cfg.batch_size / train_seconds,
            "epoch_seconds": epoch_seconds,
        }
        self.history.append(row)
        return row

    # -- evaluation --------------------------------------------------------------------------

    def _sets(self, split: str) -> Tensor:
        if split == "val":
            return self.val_set
        if split == "test":
            return self.test_set
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict:
        """MSE, MAE, SSIM (data range 2.0), PSNR over the whole split, batched on the device."""
        seqs = self._sets(split)
        self.model.eval()
        acc = MetricAccumulator()
        for i in range(0, len(seqs), self.cfg.eval_batch_size):
            batch = data.to_float(seqs[i:i + self.cfg.eval_batch_size].to(self.device))
            inputs, targets = data.split_frames(batch)
            with self._autocast():
                preds = self.forward(inputs)
            acc.update(preds.float(), targets)
        return acc.compute()

    @torch.no_grad()
    def predict(self, n: int = 4, split: str = "test") -> tuple[Tensor, Tensor, Tensor]:
        """Inputs, targets and predictions of the first n sequences of a split, on the CPU."""
        batch = data.to_float(self._sets(split)[:n].to(self.device))
        inputs, targets = data.split_frames(batch)
        self.model.eval()
        with self._autocast():
            preds = self.forward(inputs)
        return inputs.cpu(), targets.cpu(), preds.float().cpu()

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "history": json.dumps(self.history),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict(); CheckpointError (nothing restored) for one that does not fit."""
        self._check_state(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        self.epoch = int(state["epoch"])
        self.history = json.loads(state["history"])

    def save_checkpoint(self, path: str | Path) -> None:
        """Write atomically: a run killed mid-write keeps its previous checkpoint."""
        with atomic_file(path) as f:
            torch.save(self.state_dict(), f)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a save_checkpoint() file. CheckpointError (one line naming the file) for a file
        that is unreadable (truncated, corrupt), not a checkpoint of this trainer, or written for a
        different config or model; the file is only read, and nothing is restored then."""
        try:
            with open_regular(path, "checkpoint") as f:  # a FIFO or device: refused, not waited on
                state = torch.load(f, map_location=self.device, weights_only=True)
        except FileError as e:
            raise CheckpointError(f"{e}; {_CHECKPOINT_FIX}") from e
        except pickle.UnpicklingError as e:  # garbage, or a pickle holding more than tensors
            raise CheckpointError(f"{path}: not a torch checkpoint file (corrupt, or not written by "
                                  f"torch.save with plain tensors); {_CHECKPOINT_FIX}") from e
        except Exception as e:  # torch.load raises many kinds (RuntimeError, OSError, EOFError...)
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                                  f"{_first_line(e)}); {_CHECKPOINT_FIX}") from e
        try:
            self.load_state_dict(state)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from e

    def _check_state(self, state: object) -> None:
        """Everything load_state_dict restores, checked before any of it is."""
        if not isinstance(state, dict) or not _STATE_KEYS <= state.keys():
            raise CheckpointError(f"not a checkpoint of this trainer (expected the keys "
                                  f"{', '.join(sorted(_STATE_KEYS))}); {_CHECKPOINT_FIX}")
        if state["version"] != CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint format version {state['version']!r}, this trainer reads "
                                  f"{CHECKPOINT_VERSION}; {_CHECKPOINT_FIX}")
        try:
            saved = TrainConfig.from_dict(state["config"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"its config is not valid here ({_first_line(e)}); "
                                  f"{_CHECKPOINT_FIX}") from e
        if _learning_fields(saved) != _learning_fields(self.cfg):
            diff = ", ".join(f"{k} {v!r} (now {getattr(self.cfg, k)!r})"
                             for k, v in _learning_fields(saved).items() if getattr(self.cfg, k) != v)
            raise CheckpointError(f"written for a different config: {_clip(diff)}; resume with the "
                                  "same settings or start a new run")
        mine = self.model.state_dict()
        model = state["model"]
        if (not isinstance(model, dict) or model.keys() != mine.keys()
                or any(not isinstance(v, Tensor) or v.shape != mine[k].shape for k, v in model.items())):
            raise CheckpointError(f"its model weights do not fit this model ({self.cfg.preset}, "
                                  f"{self.n_params:,} parameters): written for a different model; "
                                  f"{_CHECKPOINT_FIX}")
        odd = next((k for k, v in model.items() if v.is_complex() or v.dtype.is_floating_point
                    != mine[k].dtype.is_floating_point), None)
        if odd is not None:
            raise CheckpointError(f"weight {_clip(odd, 60)} is {model[odd].dtype}, not {mine[odd].dtype} (complex "
                                  f"weights would lose their imaginary part); {_CHECKPOINT_FIX}")
        self._check_progress(state)

    def _check_progress(self, state: dict) -> None:
        """The epochs done (in [0, epochs]), the history of as many rows, and the optimizer's,
        scheduler's and RNG's state of the types they restore from."""
        epoch, epochs = state["epoch"], self.cfg.epochs
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= epochs:
            raise CheckpointError(f"claims {_clip(repr(epoch), 40)} epochs done, expected an integer in "
                                  f"[0, {epochs}]; {_CHECKPOINT_FIX}")
        try:
            history = json.loads(state["history"]) if isinstance(state["history"], str) else None
        except (ValueError, RecursionError):
            history = None
        if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
            raise CheckpointError(f"its history is not {epoch} epoch rows (corrupt); {_CHECKPOINT_FIX}")
        rng = state["rng_cpu"]
        if not (isinstance(state["optimizer"], dict) and {"state", "param_groups"} <= state["optimizer"].keys()
                and isinstance(state["scheduler"], dict) and isinstance(rng, Tensor) and rng.dtype == torch.uint8):
            raise CheckpointError(f"its optimizer, scheduler or RNG state is malformed; {_CHECKPOINT_FIX}")

    # -- the epoch loop ----------------------------------------------------------------------

    def fit(self, on_epoch: Callable[[EpochEnd], None] = lambda end: None) -> list[dict]:
        """Train the epochs left, calling `on_epoch` after each; returns the history.

        A trainer restored after its last epoch trains nothing and calls back once with its last
        row (restored=True), so that the caller's final step still runs. A NaN/inf loss raises
        DivergedError before that epoch's callback: the caller decides what divergence means.
        """
        if self.epoch >= self.cfg.epochs:
            on_epoch(EpochEnd(self.history[-1], last=True, restored=True))
        while self.epoch < self.cfg.epochs:
            row = self.train_epoch()
            on_epoch(EpochEnd(row, last=self.epoch >= self.cfg.epochs, restored=False))
        return self.history


@dataclass(frozen=True)
class EpochEnd:
    """What Trainer.fit hands its callback after an epoch."""

    row: dict  # the epoch's history row
    last: bool  # the run's last epoch: time for the test metrics
    restored: bool  # read from a checkpoint, not trained now (a run resumed after its end)


def _learning_fields(cfg: TrainConfig) -> dict:
    """The fields that change what is learned; execution fields may differ on resume."""
    execution = fields_in("execution")
    return {k: v for k, v in cfg.to_dict().items() if k not in execution}


def run_training(cfg: TrainConfig, out_dir: str | Path, resume: bool = False,
                 data_dir: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Train to the end, checkpointing every epoch; writes and returns `out_dir/metrics.json`."""
    out = Path(out_dir)
    ckpt, metrics_path = out / CHECKPOINT_FILE, out / METRICS_FILE
    if not resume and (ckpt.exists() or metrics_path.exists()):
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose "
                              "another --out")
    if resume and not ckpt.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}; run without --resume to start")
    check_memory(cfg, resolve_device(cfg.device))  # a refused run leaves no folder behind
    make_folder(out)
    trainer = Trainer(cfg, data_dir=data_dir)
    if resume:
        trainer.load_checkpoint(ckpt)
        log(f"resumed from {ckpt} after epoch {trainer.epoch}")
    log(f"{cfg.preset}: {trainer.n_params / 1e6:.3f}M parameters on {trainer.device}; "
        f"test set: {trainer.test_set_source}")

    def checkpoint_and_log(end: EpochEnd) -> None:
        if end.restored:  # checkpointed when it was trained
            return
        trainer.save_checkpoint(ckpt)
        row = end.row
        eta = row["epoch_seconds"] * (cfg.epochs - row["epoch"])
        log(f"epoch {row['epoch']}/{cfg.epochs}  loss {row['loss']:.5f}  val_mse {row['val_mse']:.3f}  "
            f"{row['seq_per_s']:.1f} seq/s  ETA {duration(eta)}")

    trainer.fit(checkpoint_and_log)
    test_start = time.perf_counter()
    test = trainer.evaluate("test")
    test_seconds = time.perf_counter() - test_start
    result = {
        "test": test,
        "test_set": trainer.test_set_source,
        "val": {k[4:]: v for k, v in trainer.history[-1].items() if k.startswith("val_")},
        "params": trainer.n_params,
        "epochs": trainer.epoch,
        "seconds": sum(r["epoch_seconds"] for r in trainer.history) + test_seconds,
        "config": cfg.to_dict(),
        "history": trainer.history,
    }
    atomic_write(metrics_path, json.dumps(result, indent=2))
    log("test " + "  ".join(f"{k} {v:.4f}" for k, v in test.items()) + f"  -> {metrics_path}")
    return result
