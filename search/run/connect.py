"""Starting or joining Ray with bounds: while Ray connects, SIGINT and SIGTERM end the driver at
once, and a cluster that does not answer within the timeout is one line, exit 2.

Why a thread: ray.init waits for the cluster inside Ray's C++ code, which does not hand control
back to the interpreter, so no Python signal handler (Ray's own SIGTERM handler included) runs
until it returns, if it ever does. Python's C-level handler still writes each signal's number to
the wakeup fd (signal.set_wakeup_fd) the moment it arrives; a watcher thread reads it there and
ends the process. Nothing is written before Ray is up, so ending it then loses nothing; a local
Ray's own processes share the driver's fate (Ray starts them so).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from simvp_core.oneline import print_error

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def bounded(what: str, timeout_s: float, on_timeout: str) -> Iterator[None]:
    """Run the block (ray.init) so that SIGINT / SIGTERM end the process at once (exit 128 + the
    signal, one line on stderr) and the block running past `timeout_s` ends it with `on_timeout`
    on stderr (exit 2)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    saved_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    saved = {sig: signal.signal(sig, _noted) for sig in SIGNALS}  # a Python handler: the C one writes the fd
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                print_error(on_timeout)
                os._exit(2)
            ready, _, _ = select.select([read_fd], [], [], min(left, 0.2))
            for number in os.read(read_fd, 64) if ready else b"":
                if number in SIGNALS and not done.is_set():
                    name = signal.Signals(number).name
                    print_error(f"{name} while {what}; nothing was written", prefix="interrupted: ")
                    os._exit(128 + number)

    watcher = threading.Thread(target=watch, name="ray-connect-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.set_wakeup_fd(saved_fd)
        for sig, handler in saved.items():
            if signal.getsignal(sig) is _noted:  # Ray may have put its own in meanwhile: keep that one
                signal.signal(sig, handler)
        os.close(read_fd)
        os.close(write_fd)


def _noted(signum: int, frame: Any) -> None:
    """The signal is the watcher's to act on (it arrived through the wakeup fd)."""


__all__ = ["bounded"]
