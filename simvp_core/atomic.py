"""Atomic file writes: a reader, or a run resumed after a kill, never sees half a file.

Torch-free and search-free, so the trainer and the search platform share the one implementation.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file beside `path` that replaces it when the block ends, and is removed if the
    block raises: `path` holds the old content or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # open(x): the umask applies
    try:
        with open(tmp, "xb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` (a str as UTF-8) to `path` atomically."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


__all__ = ["atomic_file", "atomic_write"]
