"""Atomic file writes: a reader, or a run resumed after a kill, never sees half a file; a write
that fails (disk full, read-only, no permission, a path under a file) is one FileError line and
leaves what was there.

Torch-free and search-free, so the trainer and the search platform share the one implementation.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from simvp_core.files import FileError, make_folder, write_error


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file beside `path` that replaces it when the block ends, and is removed if the
    block raises: `path` holds the old content or the new, never a mix. An OSError of the write
    (the block's included: ENOSPC comes from its writes) is a FileError naming `path`."""
    path = Path(path)
    make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # open(x): the umask applies
    sink = None
    try:
        with open(tmp, "xb") as f:
            sink = _Sink(f)
            yield sink  # type: ignore[misc]
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # on a read-only file system even this may fail
            tmp.unlink(missing_ok=True)
        failed = sink.error if sink is not None and sink.error is not None else e
        if isinstance(failed, OSError) and not isinstance(failed, FileError):
            raise write_error(path, failed) from e
        raise


class _Sink:
    """The temp file as the block writes it, keeping the OSError of a failed write: torch.save
    turns it into a RuntimeError ('unexpected pos'), which must still read as a full disk."""

    def __init__(self, f: BinaryIO) -> None:
        self.file, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` (a str as UTF-8) to `path` atomically."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


__all__ = ["atomic_file", "atomic_write"]
