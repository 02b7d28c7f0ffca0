"""The data folder and the MNIST files in it: where the folder is, reading the IDX image files
(gzipped or not) and the bundled sample, each file checked against its official md5.

`python -m simvp_core.data fetch` downloads the files (simvp_core.fetch); every error here is one
line saying how to fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simvp_core.oneline import short_path

ENV_DATA_DIR = "SIMVP_DATA_DIR"
DEFAULT_DATA_DIR = "data"
CACHE_NAME = "simvp-search"  # the per-user default: $XDG_CACHE_HOME/simvp-search
MNIST_RAW = Path("MNIST", "raw")  # where the MNIST files sit inside a data folder
SAMPLE = "sample"  # the literal data_dir that selects the small sample shipped in the package
SAMPLE_FILE = Path(__file__).parent.parent / "sample" / "mnist_sample.npz"
TEST_SEQ_FILE = "mnist_test_seq.npy"  # the standard Moving MNIST test set, when the folder has it
LINE_CHARS = 290  # an error line's budget: under 300 with the CLIs' "error: " in front

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


def has_standard_test_set(data_dir: str | Path | None = None) -> bool:
    """Whether `<data_dir>/mnist_test_seq.npy` is there (then no MNIST test digits are needed)."""
    return not is_sample(data_dir) and (resolve_data_dir(data_dir) / TEST_SEQ_FILE).is_file()
