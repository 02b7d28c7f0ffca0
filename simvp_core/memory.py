"""The memory a training or an evaluation needs, estimated from its settings before anything is
allocated, and checked against what this machine has (or a stated cap): sizes that are each within
their bounds can still multiply to tens of GB (a batch of 65,536 sequences, a million validation
sequences), and are refused in one line naming the setting instead of being swapped to death.

How it was calibrated (2026-12-06, torch 2.13 CPU, fp32, one thread): the rise of peak RSS
(ru_maxrss) over one Adam step at batch 2, 4 and 8 after a warm-up step at batch 1, for every
preset at its paper size and for simvpv2, poolformer and incepu with c_s 16/64, c_t 64/128/512,
n_t 2/8, n_s 2 and mlp_ratio 4 (23 runs). Per training sequence the rise is, in floats,
`9.0 * T * c_s * sum(h_i^2)` (encoder and decoder: every block's feature maps, h_i the size after
block i) `+ 4.4 * n_t * h_s^2 * c_t * (1 + mlp_ratio)` (translator blocks at the latent size h_s)
`+ 14 * h_s^2 * T * c_s` (the translator's input and output); a least-squares fit, within 15 % of
every measured run. An evaluation batch (no gradients) peaks at a quarter of that (measured 0.18-0.25);
the two add up in a run's peak (the allocator keeps the pages a training step freed, measured by
benchmarks.memory: simvpv2 at batch 4 with an evaluation batch of 16 peaks 0.9 GB over the tiny model).
Parameters count 16 bytes in training (weights, gradients, Adam's two moments), 4 in evaluation,
their number from the same sizes (within a factor 1.5 of count_params for every translator).
Fixed sets are uint8 (81,920 bytes a sequence) and held twice while built (torch.cat of chunks).
`python -m benchmarks.memory` prints estimate and measurement side by side for a few sizes.

Torch-free: the search's plan and --dry-run estimate each trial without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from simvp_core import env
from simvp_core.oneline import size
from simvp_core.presets import ModelConfig, resolve_model_config

if TYPE_CHECKING:
    from simvp_core.config import TrainConfig

ENV_LIMIT = "SIMVP_MEMORY_LIMIT_MB"  # a stated cap in MiB, used instead of the machine's MemAvailable
MIB = 2**20
PROCESS_BYTES = 400 * MIB  # Python, torch and the libraries once imported (measured: 400-450 MiB)
SEQUENCE_BYTES = 20 * 64 * 64  # one uint8 sequence of 20 frames of 64x64
INDEX_BYTES = 20 * 2 * 28 * 28 * 8  # the int64 scatter indices of generating one sequence (two digits)
MNIST_BYTES = (60_000 + 10_000) * 28 * 28  # the train and test digits, uint8
FIXED_SET_CHUNK = 1_000  # make_fixed_set's chunk (simvp_core.data.sets)
CODEC_FLOATS, TRANSLATOR_FLOATS, WIDTH_FLOATS = 9.0, 4.4, 14.0  # the calibrated factors (above)
EVAL_SHARE = 0.25  # an evaluation batch's peak over a training batch's


class MemoryLimitError(ValueError):
    """A configuration whose estimated memory exceeds what is available (one line naming the setting)."""


@dataclass(frozen=True)
class Part:
    """One allocation of an estimate: what it is, the setting that sizes it ('' for fixed costs) and
    the name to lower to shrink it."""

    what: str
    setting: str
    bytes: int
    lower: str = ""
    on_device: bool = False  # on the GPU when training there (activations, parameters, validation set)


@dataclass(frozen=True)
class Estimate:
    parts: tuple[Part, ...]

    def total(self, host_only: bool = False) -> int:
        return sum(p.bytes for p in self._parts(host_only))

    def _parts(self, host_only: bool) -> list[Part]:
        return [p for p in self.parts if not (host_only and p.on_device)]

    def largest(self, host_only: bool = False) -> Part:
        """The part a setting sizes that weighs most: the one to lower."""
        parts = self._parts(host_only)
        return max([p for p in parts if p.lower] or parts, key=lambda p: p.bytes)

    def describe(self, host_only: bool = False, parts: int = 3) -> str:
        """'about 7.4 GB (batch_size 32: 3.9 GB of activations; test_size 10,000: 1.6 GB test set; ...)'."""
        shown = sorted((p for p in self._parts(host_only) if p.setting), key=lambda p: -p.bytes)[:parts]
        detail = "; ".join(f"{p.setting}: {size(p.bytes)} {p.what}" for p in shown)
        return f"about {size(self.total(host_only))}" + (f" ({detail})" if detail else "")


def activation_floats(cfg: ModelConfig) -> float:
    """Floats a training step keeps per sequence for the backward pass (the calibrated fit above)."""
    t, _, h, _ = cfg.in_shape
    sizes = [h >> ((i + 1) // 2) for i in range(cfg.n_s)]  # the encoder's stride 1, 2, 1, 2, ...
    h_s = h >> (cfg.n_s // 2)
    return (CODEC_FLOATS * t * cfg.c_s * sum(s * s for s in sizes)
            + TRANSLATOR_FLOATS * cfg.n_t * h_s * h_s * cfg.c_t * (1 + cfg.mlp_ratio)
            + WIDTH_FLOATS * h_s * h_s * cfg.width)


def parameters(cfg: ModelConfig) -> float:
    """About how many parameters the model has (within a factor 1.5 for every translator)."""
    mlp = 1 + 2 * cfg.mlp_ratio
    return cfg.n_t * cfg.c_t ** 2 * mlp + 42 * cfg.n_s * cfg.c_s ** 2 + 0.4 * cfg.width * cfg.c_t * mlp


def _model(cfg: ModelConfig, bytes_per_param: int, what: str, on_device: bool = False) -> Part:
    sizes = f"n_s {cfg.n_s} n_t {cfg.n_t} c_s {cfg.c_s} c_t {cfg.c_t}"
    return Part(what, f"model {cfg.translator} {sizes}", int(bytes_per_param * parameters(cfg)),
                "the model's c_t, n_t or c_s", on_device)


def _fixed_set(what: str, name: str, n: int, on_device: bool = False) -> Part:
    """A fixed uint8 set: held twice while its chunks are joined, plus one chunk's scatter indices."""
    return Part(what, f"{name} {n:,}", 2 * n * SEQUENCE_BYTES + min(n, FIXED_SET_CHUNK) * INDEX_BYTES,
                name, on_device)


def training(cfg: TrainConfig) -> Estimate:
    """What one training run (simvp_core.trainer.Trainer) of a TrainConfig needs at its peak."""
    model = resolve_model_config(cfg.preset, **cfg.model_overrides())
    gpu = cfg.device == "cuda"
    act = 4 * activation_floats(model)
    train_batch = cfg.batch_size * (act + INDEX_BYTES + 5 * SEQUENCE_BYTES)  # + uint8 and float frames
    eval_batch = cfg.eval_batch_size * (EVAL_SHARE * act + 5 * SEQUENCE_BYTES)
    return Estimate((Part("Python and torch", "", PROCESS_BYTES), Part("MNIST digits", "", MNIST_BYTES),
                     _model(model, 16, "of parameters, gradients and Adam", gpu),
                     _fixed_set("validation set", "val_size", cfg.val_size, gpu),
                     _fixed_set("test set", "test_size", cfg.test_size),
                     Part("of activations", f"batch_size {cfg.batch_size:,}", int(train_batch), "batch_size", gpu),
                     Part("of evaluation activations", f"eval_batch_size {cfg.eval_batch_size:,}", int(eval_batch),
                          "eval_batch_size", gpu)))


def evaluation(model: ModelConfig, test_size: int, batch_size: int) -> Estimate:
    """What `python -m simvp_core.evaluate` needs: the model, the test set, one batch's forward."""
    act = 4 * activation_floats(model)
    return Estimate((Part("Python and torch", "", PROCESS_BYTES), Part("MNIST digits", "", MNIST_BYTES),
                     _model(model, 4, "of parameters"),
                     _fixed_set("test set", "--test-size", test_size),
                     Part("of activations", f"--batch-size {batch_size:,}",
                          int(batch_size * (EVAL_SHARE * act + 5 * SEQUENCE_BYTES)), "--batch-size")))


def available() -> tuple[int, str]:
    """(bytes this process may use, where that figure comes from): $SIMVP_MEMORY_LIMIT_MB when set,
    else the kernel's MemAvailable, lowered to this cgroup's limit when there is one."""
    cap = env.integer(ENV_LIMIT, 0, 1, 2**40)
    if cap:
        return cap * MIB, f"${ENV_LIMIT}"
    found = [(v, w) for v, w in (_meminfo(), _cgroup_room()) if v is not None]
    return min(found) if found else (2**62, "no limit known")


def _meminfo() -> tuple[int | None, str]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available on this machine"
    except (OSError, ValueError, IndexError):
        pass
    return None, ""


def _cgroup_room() -> tuple[int | None, str]:
    """What this cgroup (v2) still lets us allocate, when it has a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            return max(0, int(limit) - int(used)), "left under this cgroup's memory.max"
    except (OSError, ValueError):
        pass
    return None, ""


def check(estimate: Estimate, what: str, host_only: bool = False, times: int = 1, fix: str = "",
          many: str = "runs") -> None:
    """MemoryLimitError (one line: the estimate and its largest part, what is available, the setting
    to lower) when `times` runs of `estimate` (`many`: what they are, e.g. trials) at once do not fit
    in the available memory."""
    room, source = available()
    each = estimate.total(host_only)
    if each * times <= room:
        return
    part = estimate.largest(host_only)
    needs = (f"{times} {many} at once need about {size(each * times)} (each {size(each)}; " if times > 1 else
             f"{what} needs about {size(each)} (")
    raise MemoryLimitError(
        f"{needs}{part.setting}: {size(part.bytes)} {part.what}), but {size(room)} is {source}; lower "
        f"{part.lower or 'its sizes'}{fix} (or set ${ENV_LIMIT} to what it may use)")


def fits(estimate: Estimate, host_only: bool = False) -> int:
    """How many runs of `estimate` fit in the available memory at once (0: not even one)."""
    room, _ = available()
    return int(room // max(1, estimate.total(host_only)))


__all__ = ["Estimate", "Part", "MemoryLimitError", "training", "evaluation", "available", "check", "fits",
           "size", "activation_floats", "parameters", "ENV_LIMIT"]
