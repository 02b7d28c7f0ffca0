"""search.run.disk_guard: a search stops, as a first Ctrl-C stops it, once its storage's disk has
less free space than the running trials' next checkpoints need; never before."""

from __future__ import annotations

import signal
from pathlib import Path

from search.run import disk_guard
from search.run.interrupts import Interrupts


def test_the_fit_is_stopped_once_when_the_disk_runs_low(tmp_path: Path) -> None:
    stopped: list[int] = []
    stop = Interrupts()
    with stop, stop.fitting():
        saved = signal.signal(signal.SIGUSR1, lambda sig, frame: stopped.append(sig))  # Tune's stop handler
        try:
            disk_guard.register(str(tmp_path), stop)
            roomy = disk_guard.DiskGuard(str(tmp_path), tmp_path, margin=1)
            roomy.on_step_begin(0, [])
            assert stopped == [] and stop.reason is None
            full = disk_guard.DiskGuard(str(tmp_path), tmp_path, margin=2**62)  # more than any disk has
            full.on_step_begin(1, [])
            full.checked = 0.0
            full.on_step_begin(2, [])  # once stopped, never again
        finally:
            signal.signal(signal.SIGUSR1, saved)
    assert stopped == [signal.SIGUSR1]
    assert stop.reason.startswith(f"--storage {tmp_path}: ") and "continue with --resume" in stop.reason
    assert stop.signal is None  # no signal: the driver exits 2 with the reason, not 130
