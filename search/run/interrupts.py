"""SIGINT and SIGTERM during a search, one way: Tune stops after its last checkpoint, and what
exists is written (exit 130 / 143); a second signal stops at once."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class Interrupts:
    """SIGINT and SIGTERM, one way: while Tune fits, the first of either asks Tune to stop as
    Ctrl-C does (its SIGUSR1 handler, the one it installs next to SIGINT's: Tune then checkpoints
    the experiment and returns); outside the fit, or a second time, KeyboardInterrupt. `.signal`
    is the first one received (None: none)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self.reason: str | None = None  # why the fit was stopped without a signal (stop_fit)
        self._fitting = False
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT comes here first, as SIGTERM
        for sig in self.SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._saved:
            if self._env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """Around Tuner.fit: until Tune installs its SIGUSR1 handler, none (a stale one from an
        earlier fit in this process would stop nothing)."""
        usr1 = hasattr(signal, "SIGUSR1") and bool(self._saved)
        saved = signal.signal(signal.SIGUSR1, signal.SIG_IGN) if usr1 else None
        self._fitting = True
        try:
            yield
        finally:
            self._fitting = False
            if usr1:
                signal.signal(signal.SIGUSR1, saved)

    def stop_fit(self, reason: str) -> None:
        """Stop the fit as a first signal does (Tune checkpoints and returns), for `reason`."""
        tune_stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if self.reason is None and self._fitting and callable(tune_stop):
            self.reason = reason
            tune_stop(signal.SIGUSR1, None)

    def _handle(self, sig: int, frame: Any) -> None:
        first = self.signal is None
        self.signal = self.signal or sig
        tune_stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if first and self._fitting and callable(tune_stop):
            print(f"\n{signal.Signals(sig).name} received: stopping the search after Tune's last "
                  "checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)
            tune_stop(sig, frame)
            return
        raise KeyboardInterrupt


__all__ = ["Interrupts"]
