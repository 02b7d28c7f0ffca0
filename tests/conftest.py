"""Shared fixtures: the MNIST folder the tests read, and no network for any test.

real_mnist_dir: the real MNIST files, from $SIMVP_DATA_DIR, else ../shared/data beside the checkout
(CI has it); None on a fresh machine. SIMVP_TEST_NO_SHARED=1 ignores ../shared/data, to run the
suite as a fresh machine does (unset SIMVP_DATA_DIR too). mnist_dir: that folder, else the literal
"sample" (the bundled sample), so the end-to-end, trainer and CLI tests run everywhere.

Tests marked `cuda` skip, with the reason, where torch sees no CUDA GPU.

Every test runs with SIMVP_MNIST_MIRRORS and SIMVP_MMNIST_TEST_URL pointing at a loopback port
nobody listens on: an automatic fetch fails at once instead of downloading; tests that fetch point
them at their own local server.

The suite computes with one thread per process (OMP_NUM_THREADS=1 unless set): its models are
tiny, and it runs trainings beside Ray's processes and its own subprocesses, where two threads
waiting on each other at every small operation measured 6-10x slower than one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts its thread pool; subprocesses inherit it
import torch  # noqa: E402

from simvp_core import data

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `cuda` run where torch sees a CUDA GPU and skip, saying why, elsewhere."""
    if item.get_closest_marker("cuda") and not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        pytest.skip(f"no CUDA GPU visible: torch.cuda.is_available() is False (torch {torch.__version__}, "
                    f"{build})")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[str]:
    """The base URL of a dead local mirror, set as every download source for the whole session."""
    dead = f"http://127.0.0.1:{_dead_port()}/"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMVP_MNIST_MIRRORS", dead)
        mp.setenv("SIMVP_MMNIST_TEST_URL", dead + data.TEST_SEQ_FILE)
        yield dead


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path | None:
    """The folder holding the real MNIST/raw/*.gz: $SIMVP_DATA_DIR, else ../shared/data; else None."""
    candidates = [os.environ.get("SIMVP_DATA_DIR")]
    if os.environ.get("SIMVP_TEST_NO_SHARED") != "1":
        candidates.append(str(SHARED_DATA))
    for candidate in candidates:
        if candidate and candidate != data.SAMPLE and data.has_mnist(candidate):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_dir(real_mnist_dir: Path | None) -> Path | str:
    """A data dir for the tests that train: the real MNIST folder, else "sample" (bundled digits)."""
    return real_mnist_dir or data.SAMPLE


def _mount(*args: str) -> bool:
    import subprocess

    try:
        return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def small_disk(tmp_path_factory) -> Iterator[Path]:
    """A real 256 kB file system (tmpfs) to fill: ENOSPC as a full disk gives it. Needs root to
    mount; skipped with the reason otherwise."""
    import subprocess

    folder = tmp_path_factory.mktemp("small_disk")
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)):
        pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs): the full-disk checks need a real one")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def read_only_dir(tmp_path_factory) -> Iterator[Path]:
    """A real read-only folder (a read-only bind mount) holding `kept.txt`: EROFS on every write.
    Needs root to mount; skipped with the reason otherwise."""
    import subprocess

    source = tmp_path_factory.mktemp("ro_source")
    (source / "kept.txt").write_text("there before\n")
    folder = tmp_path_factory.mktemp("read_only")
    if os.geteuid() != 0 or not (_mount("--bind", str(source), str(folder))
                                 and _mount("-o", "remount,bind,ro", str(folder))):
        pytest.skip("a read-only bind mount needs root (mount --bind, remount,ro): the EROFS checks need a real one")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)
