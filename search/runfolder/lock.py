"""One search per name: `runs/<name>/search.lock` (LOCK_FILE), a small JSON file naming its
holder (host, pid, the process's start, when), created atomically (O_CREAT | O_EXCL) by the driver
as it enters the run folder and removed when it exits.

A lock whose holder is on this host and no longer alive (a driver killed with SIGKILL) is stale:
`acquire(..., takeover=True)` (what --resume passes) takes it over. A lock from another host
cannot be checked from here, so it is refused with the command that removes it. Light: no Ray.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.runfolder import LOCK_FILE, timestamp
from simvp_core.files import FileError, read_bytes, write_error
from simvp_core.oneline import short_path

MAX_LOCK_BYTES = 4096  # a lock is one line of JSON; a longer one is read no further
MAX_PID = 2**22  # Linux's largest pid_max: a larger "pid" is nobody (and os.kill would overflow)


class LockHeld(Exception):
    """The run folder is held by another search (or cannot be taken); one line."""


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc; None where there is none), so
    a reused PID is not taken for the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def holder_info() -> dict[str, Any]:
    """What this process writes into a lock it takes."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": start_ticks(os.getpid()),
            "since": timestamp(), "token": uuid.uuid4().hex}


def alive(info: dict[str, Any]) -> bool | None:
    """Whether the lock's holder still runs: True / False on this host, None on another host."""
    if info.get("host") != socket.gethostname():
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if _zombie(pid):
        return False
    started = info.get("pid_start")
    now = start_ticks(pid)
    return not (started and now and started != now)  # a different process under the same PID


def read(run_dir: Path, tries: int = 10) -> dict[str, Any] | None:
    """The lock's JSON; None when there is no lock. A lock being written (empty for a moment) is
    read again; one still unreadable after that reads as {} (a holder that cannot be checked).
    LockHeld when the lock is no small regular file (a FIFO, a folder): it is not ours to remove."""
    path = Path(run_dir) / LOCK_FILE
    for attempt in range(tries):
        if not os.path.lexists(path):
            return None
        try:
            text = read_bytes(path, MAX_LOCK_BYTES, "lock file").decode(errors="replace")
        except FileError as e:
            if e.errno == errno.ENOENT:
                return None  # released meanwhile
            raise LockHeld(f"{e.problem}; if no search of this name runs, remove it: "
                           f"rm -r {short_path(path)}") from None
        try:
            info = json.loads(text)
            if isinstance(info, dict):
                return info
        except (ValueError, RecursionError):
            pass
        if attempt < tries - 1:
            time.sleep(0.05)
    return {}


def holder_text(info: dict[str, Any]) -> str:
    """The holder in a few words (each field cut short: the lock file may hold anything)."""
    return (f"pid {str(info.get('pid', '?'))[:12]} on host {str(info.get('host', '?'))[:40]}, "
            f"since {str(info.get('since', '?'))[:32]}")


def _refusal(run_dir: Path, info: dict[str, Any]) -> str:
    path = Path(run_dir) / LOCK_FILE
    state = alive(info) if info else None
    if state:
        return (f"{short_path(run_dir)} is in use by a running search of the same name "
                f"({holder_text(info)}); wait for it, or stop it with: kill -INT {info['pid']}")
    return (f"locked by a search this machine cannot check ({holder_text(info)}); if no search of this "
            f"name runs there any more, remove the lock: rm {short_path(path)}")


def check(run_dir: Path, takeover: bool = False) -> None:
    """Raise LockHeld when a live (or uncheckable) holder has the run folder; a stale lock passes
    when `takeover`. Only a look: acquire is what takes the lock."""
    info = read(run_dir)
    if info is None:
        return
    state = alive(info) if info else None
    if state is False and takeover:
        return
    if state is False:
        raise LockHeld(f"{short_path(run_dir)} holds a stale lock ({holder_text(info)}, no longer "
                       "running); pass --resume to continue that search")
    raise LockHeld(_refusal(run_dir, info))


@dataclass
class Lock:
    path: Path
    info: dict[str, Any]

    def release(self) -> None:
        """Remove the lock if it is still this one."""
        try:
            current = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if current.get("token") == self.info["token"]:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _create(path: Path, info: dict[str, Any]) -> bool:
    """Create the lock holding `info`; False if one exists. A failed write (a full disk) removes the
    empty lock it made and is a FileError."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        path.unlink(missing_ok=True)
        raise write_error(path, e) from None
    return True


def _remove_stale(path: Path, seen: dict[str, Any]) -> None:
    """Move the stale lock aside and delete it, unless another process replaced it meanwhile
    (then put that one back)."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # someone else removed it first
    try:
        moved = json.loads(aside.read_text())
    except (OSError, ValueError):
        moved = {}
    if moved == seen:
        aside.unlink()
    else:  # a new holder took it between our read and the rename: give it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        aside.unlink()


def acquire(run_dir: Path, takeover: bool = False, log: Callable[[str], Any] = print) -> Lock:
    """Take the run folder's lock (the folder must exist); a stale one is taken over when
    `takeover` (said in one line through `log`). Raises LockHeld otherwise."""
    path = Path(run_dir) / LOCK_FILE
    info = holder_info()
    for _ in range(5):
        if _create(path, info):
            return Lock(path, info)
        seen = read(run_dir)
        if seen is None:
            continue  # released meanwhile: try again
        check(run_dir, takeover)  # raises unless stale and takeover
        if seen == read(run_dir, tries=1):
            log(f"lock: taking over the stale lock of a search that no longer runs ({holder_text(seen)})")
            _remove_stale(path, seen)
    raise LockHeld(f"{short_path(run_dir)}: could not take {LOCK_FILE} (other searches keep "
                   "taking it)")


__all__ = ["LockHeld", "Lock", "acquire", "check", "read", "alive", "holder_text", "holder_info"]
