"""`python -m search.run.watchdog DRIVER_PID SINCE RUN_DIR`: what a driver killed with SIGKILL leaves,
cleaned up. Ray's agents outlive their raylet by about a minute, and the search's MLflow runs
would stay RUNNING until a --resume.

The driver starts it (`watch`) and keeps a pipe to its stdin. Until that pipe closes, it notes
every descendant of the driver born since SINCE (Ray's processes, the trials). A driver that
leaves `watch` writes "done" first: the watchdog exits. A pipe closed without "done" means the
driver died: it SIGKILLs the processes it noted that still run (the same PID and start, so no
other process and no other Ray instance), then, if the driver held the run folder's lock, ends the
search's RUNNING MLflow runs (the parent and its children) as KILLED. Light: no Ray, and MLflow
only once the driver is dead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from search import runfolder
from search.runfolder import lock

POLL_S = 0.5  # how often the driver's process tree is looked at
TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def watch(run_dir: Path, since: float) -> Iterator[None]:
    """A watchdog over this process's descendants born since `since` (time.time()) for the block."""
    boot_since = since - (time.time() - time.clock_gettime(time.CLOCK_BOOTTIME))
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.run.watchdog", str(os.getpid()), f"{boot_since:.3f}", str(run_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        start_new_session=True)  # Ctrl-C on the terminal is for the driver alone
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent PID, start in clock ticks since boot) from /proc; None for a gone or zombie process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def _table() -> dict[int, tuple[int, int]]:
    """Every live process: PID -> (parent PID, start ticks)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    return table


def descendants(roots: set[int], min_ticks: int) -> dict[int, int]:
    """PID -> start ticks of the live descendants of `roots` started at `min_ticks` or later."""
    table, found, frontier = _table(), {}, set(roots)
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier and pid not in found}
        found.update({pid: table[pid][1] for pid in frontier})
    return {pid: ticks for pid, ticks in found.items() if ticks >= min_ticks and pid != os.getpid()}


def end_processes(noted: dict[int, int], timeout: float = 10.0) -> None:
    """SIGKILL the noted processes (and what they started since) that still run; wait for them."""
    noted = {**noted, **descendants(set(noted), 0)}
    for pid, ticks in noted.items():
        if (_stat(pid) or (0, -1))[1] == ticks:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any((_stat(p) or (0, -1))[1] == t for p, t in noted.items()):
        time.sleep(0.1)


def end_runs(run_dir: Path, driver: int, driver_ticks: str | None) -> None:
    """The search's RUNNING MLflow runs ended as KILLED, if the dead driver held the run folder."""
    held = lock.read(run_dir) or {}
    if held.get("pid") != driver or held.get("pid_start") != driver_ticks:
        return  # never got the lock (refused, or died before): the search is not this driver's
    try:
        info = runfolder.read_experiment(run_dir)
    except (OSError, ValueError):
        return
    uri, parent = info.get("tracking_uri"), info.get("mlflow_parent_run_id")
    if uri and parent:
        from search.tracking import end_killed_runs  # MLflow: only once the driver is dead

        end_killed_runs(uri, parent)


def main(argv: list[str]) -> int:
    driver, boot_since, run_dir = int(argv[0]), float(argv[1]), Path(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    min_ticks, driver_ticks = int(boot_since * TICKS), lock.start_ticks(driver)
    noted: dict[int, int] = {}
    said: list[bytes] = []
    reader = threading.Thread(target=lambda: said.append(sys.stdin.buffer.read()), daemon=True)
    reader.start()
    while reader.is_alive() and (_stat(driver) or (0, None))[1] == int(driver_ticks or -1):
        noted.update(descendants({driver}, min_ticks))
        reader.join(POLL_S)
    reader.join(POLL_S)  # a driver that said "done" and exited at once
    if said and said[0].startswith(b"done"):
        return 0
    end_processes(noted)
    end_runs(run_dir, driver, driver_ticks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
