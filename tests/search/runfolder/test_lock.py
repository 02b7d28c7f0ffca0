"""search.runfolder.lock with real processes: a holder subprocess keeps others out, a killed one leaves a
stale lock that only a takeover (--resume) takes, a lock from another host is refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search import runfolder
from search.runfolder import lock
from simvp_core.oneline import short_path

REPO = Path(__file__).resolve().parents[3]
HOLD = ("import sys, time; from pathlib import Path; from search.runfolder import lock; "
        "held = lock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(float(sys.argv[2])); "
        "held.release(); print('released', flush=True)")


def holder(run_dir: Path, seconds: float = 60) -> subprocess.Popen:
    """A real process that takes the lock of run_dir and sleeps; returns once it holds it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_held_lock_names_its_holder_and_keeps_others_out(tmp_path: Path) -> None:
    proc = holder(tmp_path)
    try:
        info = lock.read(tmp_path)
        assert info["pid"] == proc.pid and info["host"] == socket.gethostname() and info["since"]
        before = (tmp_path / runfolder.LOCK_FILE).read_bytes()
        for takeover in (False, True):  # a live holder is never taken over, not even by --resume
            with pytest.raises(lock.LockHeld) as e:
                lock.acquire(tmp_path, takeover=takeover)
            msg = str(e.value)
            assert "\n" not in msg and f"pid {proc.pid}" in msg and socket.gethostname() in msg
            assert info["since"] in msg and "running" in msg
            with pytest.raises(lock.LockHeld):
                lock.check(tmp_path, takeover=takeover)
        assert (tmp_path / runfolder.LOCK_FILE).read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == [runfolder.LOCK_FILE]
    finally:
        kill(proc)


def test_a_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    proc = holder(tmp_path, seconds=0.2)
    assert proc.stdout.readline().strip() == "released"
    proc.wait(timeout=30)
    assert lock.read(tmp_path) is None
    with lock.acquire(tmp_path) as held:
        assert lock.read(tmp_path)["pid"] == os.getpid()
        assert held.path == tmp_path / runfolder.LOCK_FILE
    assert not (tmp_path / runfolder.LOCK_FILE).exists()


def test_a_killed_holder_leaves_a_stale_lock_only_a_takeover_takes(tmp_path: Path) -> None:
    proc = holder(tmp_path)
    kill(proc)
    assert lock.read(tmp_path)["pid"] == proc.pid and lock.alive(lock.read(tmp_path)) is False
    with pytest.raises(lock.LockHeld, match="stale lock .*--resume"):
        lock.acquire(tmp_path)
    said: list[str] = []
    held = lock.acquire(tmp_path, takeover=True, log=said.append)
    assert len(said) == 1 and "taking over the stale lock" in said[0] and f"pid {proc.pid}" in said[0]
    assert lock.read(tmp_path)["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == [runfolder.LOCK_FILE]
    held.release()
    assert not (tmp_path / runfolder.LOCK_FILE).exists()


def test_only_one_of_two_takeovers_wins(tmp_path: Path) -> None:
    kill(holder(tmp_path))
    script = ("import sys, time; from pathlib import Path; from search.runfolder import lock\n"
              "try:\n    held = lock.acquire(Path(sys.argv[1]), takeover=True, log=lambda s: None)\n"
              "except lock.LockHeld:\n    print('refused', flush=True)\n"
              "else:\n    print('held', flush=True); time.sleep(3); held.release()\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["held", "refused"]


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(tmp_path: Path) -> None:
    path = tmp_path / runfolder.LOCK_FILE
    path.write_text(json.dumps({"host": "elsewhere.example", "pid": os.getpid(),
                                "since": "2026-01-01T00:00:00+00:00", "token": "x"}))
    assert lock.alive(lock.read(tmp_path)) is None
    for takeover in (False, True):
        with pytest.raises(lock.LockHeld) as e:
            lock.acquire(tmp_path, takeover=takeover)
        assert "elsewhere.example" in str(e.value) and f"rm {short_path(path)}" in str(e.value)
    assert lock.read(tmp_path)["host"] == "elsewhere.example"


def test_a_reused_pid_is_not_taken_for_the_holder(tmp_path: Path) -> None:
    info = {**lock.holder_info(), "pid_start": "1"}  # this process's PID, another start time
    assert lock.alive(lock.holder_info()) is True
    assert lock.alive(info) is (False if lock.start_ticks(os.getpid()) else True)


def test_release_leaves_a_lock_that_is_not_its_own(tmp_path: Path) -> None:
    held = lock.acquire(tmp_path)
    (tmp_path / runfolder.LOCK_FILE).write_text(json.dumps({**held.info, "token": "other"}))
    held.release()
    assert (tmp_path / runfolder.LOCK_FILE).exists()


def test_the_lock_is_written_whole(tmp_path: Path) -> None:
    start = time.time()
    with lock.acquire(tmp_path):
        info = json.loads((tmp_path / runfolder.LOCK_FILE).read_text())
    assert set(info) == {"host", "pid", "pid_start", "since", "token"} and time.time() - start < 5


def test_every_refusal_is_one_line_under_300_characters_however_deep_the_run_folder(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a_run_folder_nested_far_below_the_storage_root"] * 8)
    deep.mkdir(parents=True)
    holders = {"live": lock.holder_info(), "dead": {**lock.holder_info(), "pid": 2**22 + 1},
               "foreign": {"host": "h" * 64, "pid": 1, "since": "2026-12-02T00:00:00.000000+00:00"}}
    for kind, info in holders.items():
        (deep / runfolder.LOCK_FILE).write_text(json.dumps(info))
        with pytest.raises(lock.LockHeld) as e:
            lock.check(deep)
        message = str(e.value)
        assert len(str(deep)) > 300 and len(message) <= 300 and "\n" not in message, (kind, message)
        assert str(tmp_path)[:12] in message, message  # the folder, cut in the middle
