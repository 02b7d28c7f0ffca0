"""Files the CLIs read and write, each refused in one line before it can hang, fill memory or be
overwritten by mistake.

- `open_regular(path)`: a regular file opened for reading; a FIFO, device, socket or folder is
  refused before anything blocks on it (opened non-blocking, checked with fstat).
- `write_error(path, e)`: an OSError of a write (disk full, read-only, permission, a path under a
  file, a name too long) as one line naming the path and the fix (`FileError`, errno kept).
- `check_output(out, inputs, kind_of, kind, overwrite)`: no command writes over a file it reads, or
  over an existing file of another kind, without an explicit --overwrite.
Torch-free, for simvp_core and search alike.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from simvp_core.oneline import short_path

NOT_REGULAR = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}
# what a failed write means, and what to do about it
WRITE_FIXES = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space"),
    errno.EFBIG: ("file too large for this file system", "write elsewhere"),
    errno.EROFS: ("read-only file system", "pass a writable location"),
    errno.EACCES: ("permission denied", "pass a writable location or fix its permissions"),
    errno.EPERM: ("operation not permitted", "pass a writable location or fix its permissions"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "pass a path under a folder"),
    errno.EEXIST: ("a part of the path is a file, not a folder", "pass a path under a folder"),
    errno.ENAMETOOLONG: ("a name in the path is too long", "use names of at most 255 bytes"),
    errno.EISDIR: ("it is a folder", "pass a file path"),
}


class FileError(OSError, ValueError):
    """A file that cannot be read or written as asked: one line naming it and the fix. Both an
    OSError (what a failed read or write is) and a ValueError (what the CLIs refuse as bad input)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code

    @property
    def problem(self) -> str:
        """The message without its fix: for callers that know a better one."""
        return str(self).split("; ")[0]


def kind_of_node(mode: int) -> str | None:
    """What a stat mode is when it is not a regular file ('a FIFO (named pipe)', ...); None if it is."""
    return None if stat.S_ISREG(mode) else NOT_REGULAR.get(stat.S_IFMT(mode), "not a regular file")


def check_regular(path: str | Path, what: str = "file") -> None:
    """FileError unless `path` is a regular file (followed through symlinks), without opening it:
    for libraries that open the path themselves (SQLite)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileError(f"{short_path(path)}: no such {what}", errno.ENOENT) from None
    except OSError as e:
        raise FileError(f"{short_path(path)}: cannot read this {what} ({e.strerror})", e.errno) from None
    node = kind_of_node(mode)
    if node:
        raise FileError(f"{short_path(path)}: {node}, not a regular {what}; pass the path of a {what}")


def open_regular(path: str | Path, what: str = "file") -> BinaryIO:
    """`path` opened for binary reading if it is a regular file; FileError (one line) if it is
    missing, unreadable, or a FIFO / device / socket / folder, decided before any read can block."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileError(f"{short_path(path)}: no such {what}", errno.ENOENT) from None
    except IsADirectoryError:
        raise FileError(f"{short_path(path)}: a folder, not a regular {what}; pass the path of a {what}",
                        errno.EISDIR) from None
    except OSError as e:
        raise FileError(f"{short_path(path)}: cannot read this {what} ({e.strerror})", e.errno) from None
    try:
        node = kind_of_node(os.fstat(fd).st_mode)
        if node:
            raise FileError(f"{short_path(path)}: {node}, not a regular {what}; pass the path of a {what}")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """A regular file's content, refused (FileError) past `limit` bytes without reading further."""
    with open_regular(path, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileError(f"{short_path(path)}: over {limit:,} bytes, refused unread; expected a {what} "
                        f"of at most {limit:,} bytes")
    return data


def write_error(path: str | Path, e: OSError) -> FileError:
    """A failed write to `path` as one line: what happened and what to do; the errno is kept."""
    if isinstance(e, FileError):
        return e
    what, fix = WRITE_FIXES.get(e.errno, (e.strerror or str(e) or type(e).__name__, "check the path"))
    return FileError(f"cannot write {short_path(path)}: {what}; {fix} (what was there is kept)", e.errno)


def make_folder(path: str | Path) -> Path:
    """mkdir -p, its failure (a file in the way, read-only, full, too long a name) a FileError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # a file where a folder should be
        raise write_error(path, OSError(errno.ENOTDIR, e.strerror)) from None
    except OSError as e:
        raise write_error(path, e) from None
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (the same path, a symlink or a hard link to it)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output(out: str | Path, inputs: Iterable[str | Path] = (), kind: str = "",
                 kind_of: Callable[[Path], str | None] | None = None, overwrite: bool = False) -> None:
    """The one rule for every output path: never the file a command reads, and never over an
    existing file of another kind (kind_of(out) != kind; None: unknown), unless `overwrite`
    (the command's --overwrite). Never over a folder or a non-regular file, whatever the flag."""
    out = Path(out)
    flag = "; pass --overwrite to replace it anyway" if not overwrite else ""
    for source in inputs:
        if same_file(out, source) and not overwrite:
            raise FileError(f"{short_path(out)}: the output is the input {short_path(source)}; writing it "
                            f"would replace what is read: choose another output path{flag}")
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise write_error(out, e) from None
    node = kind_of_node(mode)
    if node:
        raise FileError(f"{short_path(out)}: {node} is there; pass the path of a new file")
    if overwrite or kind_of is None:
        return
    found = kind_of(out)
    if found != kind:
        raise FileError(f"{short_path(out)} exists and holds {found or 'something else'}, not {kind}; choose "
                        f"another output path{flag}")


__all__ = ["FileError", "open_regular", "check_regular", "read_bytes", "write_error", "make_folder",
           "check_output", "same_file", "kind_of_node"]
