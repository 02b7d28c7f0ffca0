"""Moving MNIST data: MNIST digits from IDX files, sequences generated on the fly, augmentation.

Follows section 4 of the reference facts: 20 frames of 64x64, two bouncing 28x28 digits combined
with an element-wise max, inputs frames 0-9 and targets frames 10-19, values / 255.
Everything is vectorised torch on the digits' device; randomness comes only from the
`torch.Generator` passed in, so a seed fixes the data. The MNIST files are checked against their
official md5 when read; `python -m simvp_core.data fetch` downloads them (simvp_core.fetch).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import sys
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from simvp_core.config import AUGMENTATIONS
from simvp_core.oneline import short_path

ENV_DATA_DIR = "SIMVP_DATA_DIR"
DEFAULT_DATA_DIR = "data"
CACHE_NAME = "simvp-search"  # the per-user default: $XDG_CACHE_HOME/simvp-search
MNIST_RAW = Path("MNIST", "raw")  # where the MNIST files sit inside a data folder
SAMPLE = "sample"  # the literal data_dir that selects the small sample shipped in the package
SAMPLE_FILE = Path(__file__).parent / "sample" / "mnist_sample.npz"
TEST_SEQ_FILE = "mnist_test_seq.npy"
TEST_SET_STANDARD = "mnist_test_seq.npy (standard Moving MNIST test set)"
LINE_CHARS = 290  # an error line's budget: under 300 with the CLIs' "error: " in front

NUM_FRAMES = 20
INPUT_FRAMES = 10
FRAME_SIZE = 64
STEP = 0.1  # distance moved per frame, in units of the free range [0, 1]
CROP_SCALE = 0.94  # crop augmentation: upscale by 1 / 0.94 (64 -> 68), crop back to 64
FLIP_P = 0.75  # each stage of the flip cascade fires with this probability

# The official md5 of the four MNIST files (as published, and as torchvision checks them), plus
# that of the two image files after gunzip: load_mnist reads either form.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
UNPACKED_MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
                "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea"}

_IMAGE_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_IDX_IMAGES_MAGIC = 0x00000803
_MNIST_FILES = ", ".join(MNIST_MD5)


class DataNotFoundError(FileNotFoundError):
    """The MNIST files are not where the data directory says they should be."""


class ChecksumError(ValueError):
    """A data file whose md5 is not the expected one (truncated, corrupt or another file)."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: the argument, else $SIMVP_DATA_DIR, else ./data if it holds MNIST, else
    the per-user cache $XDG_CACHE_HOME/simvp-search (default ~/.cache/simvp-search)."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_DATA_DIR) or None
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if has_mnist(DEFAULT_DATA_DIR):
        return Path(DEFAULT_DATA_DIR)
    cache = os.environ.get("XDG_CACHE_HOME", "")
    return Path(cache if os.path.isabs(cache) else Path.home() / ".cache") / CACHE_NAME


def is_sample(data_dir: str | Path | None) -> bool:
    """True when data_dir (or $SIMVP_DATA_DIR when it is None) is the literal 'sample'."""
    raw = os.environ.get(ENV_DATA_DIR) if data_dir is None else data_dir
    return raw is not None and os.fspath(raw) == SAMPLE


def has_mnist(folder: str | Path) -> bool:
    """Whether `folder` holds both MNIST image files load_mnist reads (gzipped or not)."""
    return all(_image_file(Path(folder), split) is not None for split in _IMAGE_FILES)


def _image_file(folder: Path, split: str) -> Path | None:
    raw, name = folder / MNIST_RAW, _IMAGE_FILES[split]
    return next((p for p in (raw / f"{name}.gz", raw / name) if p.is_file()), None)


def file_md5(path: str | Path) -> str:
    """The md5 of a file, hashed once per path, size and mtime: repeated loads do not re-read it."""
    st = os.stat(path)
    return _md5(os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


@lru_cache(maxsize=32)
def _md5(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: str | Path, expected: str, fix: str) -> None:
    """Raise ChecksumError (one line: the file, both sums, `fix`) unless path hashes to expected."""
    actual = file_md5(path)
    if actual != expected:
        raise ChecksumError(f"{short_path(path, 64)}: md5 {actual}, expected {expected} (corrupt, "
                            f"truncated or another file); {fix}")


def load_mnist(split: str = "train", data_dir: str | Path | None = None,
               md5s: Mapping[str, str] | None = None) -> Tensor:
    """MNIST images of one split as a uint8 (N, 28, 28) tensor (train 60000, test 10000).

    Reads `<data_dir>/MNIST/raw/{train,t10k}-images-idx3-ubyte[.gz]`, which must have its official
    md5 (md5s: file name -> md5 replaces that table, for files made elsewhere). data_dir == "sample"
    selects the small sample shipped in the package (1000 train, 500 test digits).
    """
    if split not in _IMAGE_FILES:
        raise ValueError(f"split must be one of {', '.join(_IMAGE_FILES)}; got {split!r}")
    if is_sample(data_dir):
        return torch.from_numpy(_read_sample(str(SAMPLE_FILE))[split].copy())
    folder = resolve_data_dir(data_dir)
    found = _image_file(folder, split)
    if found is not None:
        path = found.resolve()
        images = _read_idx_images(str(path), path.stat().st_mtime_ns)  # its errors say more
        check_md5(path, (md5s or {**MNIST_MD5, **UNPACKED_MD5})[found.name],
                  f"delete it and run python -m simvp_core.data fetch --data-dir {short_path(folder, 40)}")
        return torch.from_numpy(images.copy())
    raw, name = (folder / MNIST_RAW).resolve(), _IMAGE_FILES[split]
    missing = "" if folder.is_dir() else " (no such folder)"
    raise DataNotFoundError(fit_paths(lambda cut: (
        f"MNIST {split} images not found: no {name}.gz in {cut(raw)}{missing}; fix: "
        f"`python -m simvp_core.data fetch --data-dir {cut(folder)}`, or --data-dir DIR (or "
        f"{ENV_DATA_DIR}) holding MNIST/raw, or --data-dir {SAMPLE} (bundled sample)")))


def fit_paths(build: Callable[[Callable[[str | Path], str]], str], budget: int = LINE_CHARS) -> str:
    """build(cut) with the longest path cut (short_path limit) that keeps the line within budget, so
    an error stays one readable line however deep its paths are."""
    for limit in (200, 80, 60, 44, 32, 24):
        line = build(lambda path, limit=limit: short_path(path, limit))
        if len(line) <= budget:
            break
    return line


@lru_cache(maxsize=8)
def _read_idx_images(path: str, mtime_ns: int) -> np.ndarray:
    """Parse an IDX image file (gzipped or not) into a read-only uint8 (N, rows, cols) array;
    cached per path and mtime."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = Path(path).read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{short_path(path, 64)}: cannot decompress ({e}); replace it with an "
                         f"intact copy of the MNIST file") from e
    if len(data) < 16:
        raise ValueError(f"{short_path(path, 64)}: only {len(data)} bytes, too short for an IDX "
                         f"header; replace it with an intact copy of the MNIST file")
    magic, n, rows, cols = (int(v) for v in np.frombuffer(data, ">u4", count=4))
    if magic != _IDX_IMAGES_MAGIC:
        raise ValueError(f"{short_path(path, 64)}: IDX magic {magic:#010x}, expected "
                         f"{_IDX_IMAGES_MAGIC:#010x} (an images file); check that it is the right MNIST file")
    if (rows, cols) != (28, 28) or len(data) != 16 + n * rows * cols:
        raise ValueError(f"{short_path(path, 64)}: header says {n} images of {rows}x{cols} but the file "
                         f"holds {len(data) - 16} data bytes (truncated or corrupt); replace it with "
                         f"an intact copy of the MNIST file")
    images = np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    images.flags.writeable = False
    return images


@lru_cache(maxsize=1)
def _read_sample(path: str) -> dict[str, np.ndarray]:
    """The bundled sample's arrays ('train', 'test'), read once."""
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def bounce_positions(start: Tensor, velocity: Tensor, num_frames: int = NUM_FRAMES,
                     step: float = STEP) -> Tensor:
    """Positions (..., num_frames, 2) in [0, 1] of points moving from `start` (..., 2).

    The position is stepped before each frame; a coordinate leaving [0, 1] is clamped there and
    its velocity component flips (the Moving MNIST bounce).
    """
    pos, vel = start, velocity
    frames = []
    for _ in range(num_frames):
        pos = pos + vel * step
        out = (pos <= 0) | (pos >= 1)
        vel = torch.where(out, -vel, vel)
        pos = pos.clamp(0.0, 1.0)
        frames.append(pos)
    return torch.stack(frames, dim=-2)


def generate_sequences(digits: Tensor, n: int, generator: torch.Generator,
                       num_frames: int = NUM_FRAMES, size: int = FRAME_SIZE,
                       num_digits: int = 2) -> Tensor:
    """n Moving MNIST sequences, float32 (n, num_frames, 1, size, size) in [0, 1] on digits.device."""
    return to_float(generate_sequences_uint8(digits, n, generator, num_frames, size, num_digits))


def to_float(seqs: Tensor) -> Tensor:
    """uint8 pixels (0-255) to float32 in [0, 1]."""
    return seqs.to(torch.float32).div_(255)


def generate_sequences_uint8(digits: Tensor, n: int, generator: torch.Generator,
                             num_frames: int = NUM_FRAMES, size: int = FRAME_SIZE,
                             num_digits: int = 2) -> Tensor:
    """As generate_sequences, in uint8 pixels: 4x less memory for fixed sets kept whole.

    Random draws, in this order: digit indices (uniform, with replacement), then per digit
    x, y ~ U[0, 1) and theta ~ U[0, 2 pi) (float64). The pixel offset of a digit's top-left
    corner is int((size - 28) * pos), x giving the column and y the row; digits combine by an
    element-wise max.
    """
    _check_digits(digits)
    _check_generator(generator, digits.device)
    if n < 0 or num_frames < 1 or num_digits < 1:
        raise ValueError(f"need n >= 0, num_frames >= 1, num_digits >= 1; got n={n}, "
                         f"num_frames={num_frames}, num_digits={num_digits}")
    h, w = digits.shape[1:]
    if size < max(h, w):
        raise ValueError(f"size must be at least the digit size {h}x{w}; got {size}")
    device = digits.device
    chosen = digits[torch.randint(len(digits), (n, num_digits), generator=generator, device=device)]
    motion = torch.rand(n, num_digits, 3, generator=generator, device=device, dtype=torch.float64)
    theta = motion[..., 2] * (2 * math.pi)
    velocity = torch.stack((torch.cos(theta), torch.sin(theta)), dim=-1)
    pos = bounce_positions(motion[..., :2], velocity, num_frames)  # (n, D, T, (x, y))
    free = torch.tensor([size - w, size - h], dtype=pos.dtype, device=device)  # (x, y) ranges
    xy = (pos * free).long()  # pos >= 0, so this truncation is int()
    corner = (xy[..., 1] * size + xy[..., 0]).transpose(1, 2).contiguous()  # (n, T, D) flat index
    rows = torch.arange(h, device=device)[:, None]
    cols = torch.arange(w, device=device)[None, :]
    pixel = (rows * size + cols).reshape(1, 1, 1, h * w)  # flat offsets inside a placed digit
    index = (corner[..., None] + pixel).reshape(n, num_frames, num_digits * h * w)
    src = chosen.reshape(n, 1, num_digits * h * w).expand(n, num_frames, -1)
    canvas = torch.zeros(n, num_frames, size * size, dtype=torch.uint8, device=device)
    canvas.scatter_reduce_(-1, index, src, "amax")
    return canvas.view(n, num_frames, 1, size, size)


def augment(seqs: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Augment (B, T, C, H, W) sequences with one random transform per sequence, shared by its frames.

    crop: bilinear upscale by 1/0.94 then a random HxW crop. flip: with p=3/4 rotate 180 degrees,
    else with p=3/4 flip vertically, else with p=3/4 flip horizontally. crop+flip: crop, then flip.
    Random draws, in this order: crop top and left offsets, then three U[0, 1) per sequence.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment kind must be one of {', '.join(AUGMENTATIONS)}; got {kind!r}")
    if seqs.dim() != 5:
        raise ValueError(f"augment expects (B, T, C, H, W) sequences; got shape {tuple(seqs.shape)}")
    if kind == "none":
        return seqs
    _check_generator(generator, seqs.device)
    b, t, c, h, w = seqs.shape
    device = seqs.device
    source = seqs
    rows = torch.arange(h, device=device).expand(b, h)  # source row of each output row
    cols = torch.arange(w, device=device).expand(b, w)
    if "crop" in kind:
        source = F.interpolate(seqs.reshape(b * t, c, h, w), scale_factor=1 / CROP_SCALE,
                               mode="bilinear", align_corners=False)
        source = source.view(b, t, c, *source.shape[-2:])
        top = torch.randint(source.shape[-2] - h + 1, (b, 1), generator=generator, device=device)
        left = torch.randint(source.shape[-1] - w + 1, (b, 1), generator=generator, device=device)
        rows, cols = rows + top, cols + left
    if "flip" in kind:
        flip_rows, flip_cols = _flip_cascade(b, generator, device)
        rows = torch.where(flip_rows[:, None], rows.flip(1), rows)
        cols = torch.where(flip_cols[:, None], cols.flip(1), cols)
    # one gather moves every output pixel from its source pixel, the same for all frames
    index = (rows[:, :, None] * source.shape[-1] + cols[:, None, :]).view(b, 1, h * w)
    out = source.reshape(b, t * c, -1).gather(2, index.expand(b, t * c, h * w))
    return out.view(b, t, c, h, w)


def _flip_cascade(b: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per sequence, whether to flip rows and columns: with p=3/4 both (rotate 180 degrees),
    else with p=3/4 rows only (vertical flip), else with p=3/4 columns only (horizontal flip)."""
    fire = torch.rand(b, 3, generator=generator, device=device) < FLIP_P
    rotate = fire[:, 0]
    vertical = ~rotate & fire[:, 1]
    horizontal = ~rotate & ~vertical & fire[:, 2]
    return rotate | vertical, rotate | horizontal


def split_frames(seqs: Tensor) -> tuple[Tensor, Tensor]:
    """Split (B, 20, ...) sequences into inputs (frames 0-9) and targets (frames 10-19)."""
    if seqs.dim() < 2 or seqs.shape[1] != NUM_FRAMES:
        raise ValueError(f"expected (B, {NUM_FRAMES}, ...) sequences; got shape {tuple(seqs.shape)}")
    return seqs[:, :INPUT_FRAMES], seqs[:, INPUT_FRAMES:]


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


def has_standard_test_set(data_dir: str | Path | None = None) -> bool:
    """Whether `<data_dir>/mnist_test_seq.npy` is there (then no MNIST test digits are needed)."""
    return not is_sample(data_dir) and (resolve_data_dir(data_dir) / TEST_SEQ_FILE).is_file()


def _check_digits(digits: Tensor) -> None:
    if digits.dtype != torch.uint8 or digits.dim() != 3 or len(digits) == 0:
        raise ValueError(f"digits must be a non-empty uint8 (N, H, W) tensor; got "
                         f"{digits.dtype} {tuple(digits.shape)}")


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the data is on {device}; "
                         f"create it with torch.Generator(device={str(device)!r})")


def main(argv: list[str] | None = None) -> int:
    """`python -m simvp_core.data fetch [--data-dir DIR] [--test-set]`: see simvp_core.fetch."""
    from simvp_core import fetch  # fetch builds on this module

    return fetch.main(argv)


__all__ = ["DataNotFoundError", "ChecksumError", "resolve_data_dir", "is_sample", "has_mnist",
           "file_md5", "check_md5", "load_mnist", "bounce_positions", "generate_sequences",
           "generate_sequences_uint8", "to_float", "has_standard_test_set", "augment", "split_frames",
           "make_fixed_set", "load_test_set", "test_set_label", "TEST_SET_STANDARD", "SAMPLE",
           "ENV_DATA_DIR", "MNIST_MD5", "MNIST_RAW", "fit_paths", "LINE_CHARS"]

if __name__ == "__main__":
    sys.exit(main())
