"""search.run.connect: while Ray connects (a call that never returns to the interpreter), SIGTERM
and SIGINT end the driver at once in one line, and a connection past its time limit is one line,
exit 2. Each case is a real process blocked in a call that signal handlers cannot interrupt."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
# the block: a lock taken twice, as ray.init waits inside C++ (Python's handler runs, returns, and
# the wait goes on); "ready" on stdout once the guard is in place
STUCK = """
import sys, threading
from search.run.connect import bounded
lock = threading.Lock()
lock.acquire()
with bounded("joining the Ray cluster at 10.0.0.5:6379", float(sys.argv[1]), "no cluster answered in time"):
    print("ready", flush=True)
    lock.acquire()
"""


def stuck(timeout_s: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", STUCK, str(timeout_s)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_driver_stuck_connecting_at_once(sig) -> None:
    proc = stuck(60)
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 3 and proc.returncode == 128 + sig
    assert err == (f"interrupted: {signal.Signals(sig).name} while joining the Ray cluster at 10.0.0.5:6379; "
                   "nothing was written\n")


def test_a_connection_past_its_time_limit_is_one_line_exit_2() -> None:
    started = time.monotonic()
    proc = stuck(1.0)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and err == "error: no cluster answered in time\n"
    assert time.monotonic() - started < 10
