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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from simvp_core import checkpoint, data, memory
from simvp_core.atomic import atomic_file, atomic_write
from simvp_core.checkpoint import VERSION as CHECKPOINT_VERSION
from simvp_core.checkpoint import CheckpointError
from simvp_core.config import TrainConfig
from simvp_core.execution import choose as choose_execution
from simvp_core.files import make_folder
from simvp_core.losses import total_loss
from simvp_core.metrics import MetricAccumulator
from simvp_core.models import build_model, count_params
from simvp_core.oneline import duration, size
from simvp_core.outputs import CHECKPOINT_FILE, METRICS_FILE

VAL_SEED = 1_000_003  # the validation set is the same for every trial, whatever its seed
TEST_SEED = 2_000_003  # seed of the generated stand-in test set


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: the run cannot recover, and retrying repeats it."""


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
                f"this training needs {size(on_device)} on {device} ({estimate.describe(parts=2)}), "
                f"but {size(free)} is free there; lower {estimate.largest().lower or 'its sizes'}")


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
        self.execution = choose_execution(cfg, self.device)
        self.amp_dtype = self.execution.amp_dtype
        self.precision = self.execution.precision  # what runs, in words: every output shows it
        if train_digits is None:
            train_digits = data.load_mnist("train", data_dir)
        if test_digits is None and not data.has_standard_test_set(data_dir):
            test_digits = data.load_mnist("test", data_dir)
        self.train_digits = train_digits.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are fixed: autotune each conv once

        torch.manual_seed(cfg.seed)
        self.model = self.execution.place(build_model(cfg.preset, **cfg.model_overrides()), self.device)
        self.n_params = count_params(self.model)
        self.forward = self.model  # evaluation runs eager: once per epoch, not worth a compile
        self._loss = self._compiled_loss(self.execution.compile_mode)

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

    def _compiled_loss(self, mode: str | None) -> Callable[[Tensor], Tensor]:
        """The step's forward + loss: eager, torch.compile'd (its backward too, via AOTAutograd), or
        with mode 'reduce-overhead' also captured as CUDA graphs, replayed each step."""
        if mode is None:
            return self._eager_loss
        compiled = torch.compile(self._eager_loss, mode=mode)
        if mode != "reduce-overhead":
            return compiled

        def graphed(seqs: Tensor) -> Tensor:
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are consumed
            return compiled(seqs)
        return graphed

    def _eager_loss(self, seqs: Tensor) -> Tensor:
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
            **({"rng_cuda": torch.cuda.get_rng_state_all()} if self.device.type == "cuda" else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict(); CheckpointError (nothing restored) for one that does not fit."""
        checkpoint.check(state, self.cfg, self.model.state_dict(), self.n_params)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if self.device.type == "cuda" and "rng_cuda" in state:  # absent: written on a CPU, or before
            # it was kept; every epoch reseeds every device anyway, so it is not needed to resume
            states = [s.cpu() for s in state["rng_cuda"]][:torch.cuda.device_count()]
            for index, rng in enumerate(states):
                torch.cuda.set_rng_state(rng, index)
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
        state = checkpoint.read(path)
        try:
            self.load_state_dict(state)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from e

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
    log(f"{cfg.preset}: {trainer.n_params / 1e6:.3f}M parameters on {trainer.device}, "
        f"{trainer.precision}; test set: {trainer.test_set_source}")

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
        "precision": trainer.precision,
        "epochs": trainer.epoch,
        "seconds": sum(r["epoch_seconds"] for r in trainer.history) + test_seconds,
        "config": cfg.to_dict(),
        "history": trainer.history,
    }
    atomic_write(metrics_path, json.dumps(result, indent=2))
    log("test " + "  ".join(f"{k} {v:.4f}" for k, v in test.items()) + f"  -> {metrics_path}")
    return result
