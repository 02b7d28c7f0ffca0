"""The fixed sets: validation and test sequences that are the same on every machine for a seed,
and the standard Moving MNIST test set when the data folder holds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simvp_core.data.mnist import TEST_SEQ_FILE, has_standard_test_set, is_sample, load_mnist, resolve_data_dir
from simvp_core.data.moving import FRAME_SIZE, NUM_FRAMES, generate_sequences_uint8

TEST_SET_STANDARD = "mnist_test_seq.npy (standard Moving MNIST test set)"


def make_fixed_set(digits: Tensor, n: int, seed: int, chunk: int = 1000) -> Tensor:
    """A deterministic uint8 CPU set (n, 20, 1, 64, 64): the same on every machine for a seed.

    Generated on the CPU with a generator seeded by `seed`, `chunk` sequences at a time to bound
    the memory of intermediates (the chunk size is part of what fixes the set).
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    digits = digits.cpu()
    parts = [generate_sequences_uint8(digits, min(chunk, n - start), generator)
             for start in range(0, max(n, 1), chunk)]
    return torch.cat(parts)


def test_set_label(n: int, seed: int, num_digits: int, sample: bool = False) -> str:
    """How a generated stand-in test set was made, for results and reports (no machine's paths)."""
    if sample:
        return (f"generated stand-in from the bundled sample, NOT full MNIST: {n} sequences from its "
                f"{num_digits:,} test digits, seed {seed}")
    return (f"generated stand-in: {n} sequences from the {num_digits:,} MNIST test digits, "
            f"seed {seed} ({TEST_SEQ_FILE} not in the data dir)")


test_set_label.__test__ = False  # keep pytest from collecting it where a test module imports it


def load_test_set(n: int, seed: int, data_dir: str | Path | None = None,
                  digits: Tensor | None = None) -> tuple[Tensor, str]:
    """The first n test sequences, uint8 (n, 20, 1, 64, 64), and a label saying which set.

    Uses `<data_dir>/mnist_test_seq.npy` when present; otherwise a fixed-seed stand-in generated
    from `digits` (default: the MNIST test digits of data_dir).
    """
    folder = resolve_data_dir(data_dir)
    if has_standard_test_set(data_dir):
        return _read_test_seq(folder / TEST_SEQ_FILE, n), TEST_SET_STANDARD
    if digits is None:
        digits = load_mnist("test", data_dir)
    label = test_set_label(n, seed, len(digits), sample=is_sample(data_dir))
    return make_fixed_set(digits, n, seed), label


def _read_test_seq(path: Path, n: int) -> Tensor:
    """The first n sequences of a time-first uint8 (20, N, 64, 64) npy file, batch-first float."""
    try:
        frames = np.load(path, mmap_mode="r")
    except ValueError as e:
        raise ValueError(f"{path}: not a readable .npy file ({e}); replace it with an intact copy") from e
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != NUM_FRAMES \
            or frames.shape[2:] != (FRAME_SIZE, FRAME_SIZE):
        raise ValueError(f"{path}: expected uint8 (20, N, 64, 64) (time first), got "
                         f"{frames.dtype} {frames.shape}; replace it with the standard file")
    if n > frames.shape[1]:
        raise ValueError(f"{path}: asked for {n} test sequences but the file holds "
                         f"{frames.shape[1]}; lower test_size")
    seqs = torch.from_numpy(np.array(frames[:, :n]))  # a copy: the memory map is read-only
    return seqs.transpose(0, 1).unsqueeze(2).contiguous()

