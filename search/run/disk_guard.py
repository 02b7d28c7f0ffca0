"""A search stops before its storage's disk fills: a Tune callback that looks at the free space
every few seconds and, below what the running trials' next checkpoints need, stops the fit as a
first Ctrl-C does (Tune checkpoints its state; every finished epoch stays resumable). A full disk
would instead fail trials mid-write and leave no results; stopping early leaves room to write them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from search.run.interrupts import Interrupts
from simvp_core.oneline import size

CHECK_EVERY_S = 2.0


_STOPPERS: dict[str, Interrupts] = {}  # run folder -> this driver's Interrupts (a restored guard finds it)


def register(key: str, interrupts: Interrupts) -> None:
    """The Interrupts a guard of this run folder stops; the guard itself is pickled with Tune's state."""
    _STOPPERS[key] = interrupts


class DiskGuard(Callback):
    """Stop the fit (Interrupts.stop_fit) when `folder`'s file system has less than `margin` bytes free."""

    def __init__(self, key: str, folder: Path, margin: int) -> None:
        self.key, self.folder, self.margin = key, Path(folder), margin
        self.checked = 0.0

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        interrupts = _STOPPERS.get(self.key)
        if interrupts is None or interrupts.reason or now - self.checked < CHECK_EVERY_S:
            return
        self.checked = now
        try:
            stats = os.statvfs(self.folder)
        except OSError:
            return
        free = stats.f_bavail * stats.f_frsize
        if free < self.margin:
            interrupts.stop_fit(f"--storage {self.folder}: {size(free)} free on its disk, less than the next "
                                f"checkpoints need ({size(self.margin)}); the search stopped after its last "
                                "checkpoint: free some space and continue with --resume")


__all__ = ["DiskGuard", "register"]
