"""simvp_core.fetch against a real HTTP server on 127.0.0.1: mirrors, md5, atomic writes, progress,
the `python -m simvp_core.data fetch` CLI and the automatic fetch of searches and trainings.

The server holds the real MNIST files (official md5s) when the tests find them (real_mnist_dir),
else IDX files built from the bundled sample, passed to the code under test as its md5 table.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from simvp_core import data, fetch
from simvp_core.oneline import short_path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "simvp_core.data", "fetch"]


def md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def idx_gz(array: np.ndarray, magic: int) -> bytes:
    """An IDX file (the MNIST layout), gzipped: big-endian magic and sizes, then uint8 data."""
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


@pytest.fixture(scope="module")
def mnist(real_mnist_dir) -> tuple[dict[str, bytes], dict[str, str]]:
    """(file name -> bytes, file name -> md5) of the four MNIST files the server holds."""
    if real_mnist_dir is not None:
        files = {name: (real_mnist_dir / data.MNIST_RAW / name).read_bytes() for name in data.MNIST_MD5}
        assert {name: md5(blob) for name, blob in files.items()} == data.MNIST_MD5
        return files, data.MNIST_MD5
    with np.load(data.SAMPLE_FILE) as sample:
        train, test = sample["train"], sample["test"]
    files = {"train-images-idx3-ubyte.gz": idx_gz(train, 0x803),
             "train-labels-idx1-ubyte.gz": idx_gz(np.zeros(len(train)), 0x801),
             "t10k-images-idx3-ubyte.gz": idx_gz(test, 0x803),
             "t10k-labels-idx1-ubyte.gz": idx_gz(np.zeros(len(test)), 0x801)}
    return files, {name: md5(blob) for name, blob in files.items()}


@pytest.fixture(scope="module")
def test_seq() -> bytes:
    """A small stand-in for mnist_test_seq.npy (the real one is 819 MB): uint8 (20, 3, 64, 64)."""
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).integers(0, 256, (20, 3, 64, 64), dtype=np.uint8))
    return buffer.getvalue()


class Server:
    """A ThreadingHTTPServer on a free loopback port. Routes, for every file it holds:
    /good/NAME the file; /corrupt/NAME the file with one byte changed (same length); /truncated/NAME
    Content-Length of the whole file but only half of it, then the connection closes; /stall/NAME
    half of it, then nothing until release is set. `hits` counts the requests per path."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.hits, self.release = files, Counter(), threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{route}/"

    def corrupted(self, name: str) -> bytes:
        blob = bytearray(self.files[name])
        blob[len(blob) // 2] ^= 0xFF
        return bytes(blob)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                route, _, name = self.path.strip("/").partition("/")
                if name not in server.files or route not in ("good", "corrupt", "truncated", "stall"):
                    self.send_error(404)
                    return
                blob = server.corrupted(name) if route == "corrupt" else server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                try:
                    if route in ("good", "corrupt"):
                        self.wfile.write(blob)
                        return
                    self.wfile.write(blob[: len(blob) // 2])
                    self.wfile.flush()
                    if route == "stall":
                        server.release.wait(120)
                except OSError:
                    pass  # the client went away
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture(scope="module")
def server(mnist, test_seq) -> Iterator[Server]:
    srv = Server({**mnist[0], data.TEST_SEQ_FILE: test_seq})
    yield srv
    srv.close()


@pytest.fixture
def dead(no_network) -> str:
    """A mirror nobody listens on (the one conftest sets for every test)."""
    return no_network


def raw_files(folder: Path) -> list[str]:
    """Everything in folder/MNIST/raw, hidden temp files included."""
    raw = folder / data.MNIST_RAW
    return sorted(os.listdir(raw)) if raw.is_dir() else []


def assert_fetched(folder: Path, mnist) -> None:
    files, md5s = mnist
    assert raw_files(folder) == sorted(files)  # nothing else: no temp file left
    for name in files:
        assert md5((folder / data.MNIST_RAW / name).read_bytes()) == md5s[name]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


# ---- downloads ----------------------------------------------------------------------------------

def test_files_land_with_their_md5_and_the_progress_is_a_few_plain_lines(tmp_path, server, mnist):
    out = io.StringIO()
    raw = fetch.fetch_mnist(tmp_path, mirrors=[server.url("good")], md5s=mnist[1], stream=out)
    assert raw == tmp_path / "MNIST" / "raw"
    assert_fetched(tmp_path, mnist)
    lines = out.getvalue().splitlines()
    for name in mnist[0]:
        mine = [line for line in lines if line.startswith(f"fetch: {name} ")]
        assert mine[0] == (f"fetch: {name} from {server.url('good')}{name} "
                           f"({fetch._size(len(mnist[0][name]))})")
        assert mine[-1].startswith(f"fetch: {name} done: ") and mine[-1].endswith("md5 ok")
        assert len(mine) <= 5 and "\r" not in out.getvalue()
    biggest = max(mnist[0], key=lambda n: len(mnist[0][n]))
    assert any("% (" in line for line in lines if biggest in line)  # a quarter line or more


def test_present_good_files_are_not_downloaded_again(tmp_path, server, mnist):
    fetch.fetch_mnist(tmp_path, mirrors=[server.url("good")], md5s=mnist[1], stream=io.StringIO())
    hits = sum(server.hits.values())
    out = io.StringIO()
    fetch.fetch_mnist(tmp_path, mirrors=[server.url("good")], md5s=mnist[1], stream=out)
    assert sum(server.hits.values()) == hits
    assert out.getvalue().count("(md5 ok)") == 4 and "already in" in out.getvalue()


def test_a_dead_mirror_is_skipped_for_the_next_one(tmp_path, server, mnist, dead):
    before = server.hits.copy()
    fetch.fetch_mnist(tmp_path, mirrors=[dead, server.url("good")], md5s=mnist[1], stream=io.StringIO())
    assert_fetched(tmp_path, mnist)
    assert all(server.hits[f"/good/{name}"] == before[f"/good/{name}"] + 1 for name in mnist[0])


@pytest.mark.parametrize("route", ["corrupt", "truncated"])
def test_a_bad_download_leaves_nothing_and_the_next_mirror_is_used(tmp_path, server, mnist, route):
    out = io.StringIO()
    fetch.fetch_mnist(tmp_path, mirrors=[server.url(route), server.url("good")], md5s=mnist[1],
                      stream=out)
    assert_fetched(tmp_path, mnist)
    assert f"from {server.url(route)}" in out.getvalue() and "failed: " in out.getvalue()


def test_a_corrupt_download_names_the_file_and_both_sums(tmp_path, server, mnist):
    name = "train-images-idx3-ubyte.gz"
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch_mnist(tmp_path, mirrors=[server.url("corrupt")], md5s=mnist[1], stream=io.StringIO())
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot fetch {name}: ")
    assert f"md5 {md5(server.corrupted(name))}, expected {mnist[1][name]}" in message
    assert "SIMVP_MNIST_MIRRORS" in message and short_path(tmp_path / "MNIST" / "raw", 64) in message
    assert raw_files(tmp_path) == []  # no half file, no temp file


def test_a_truncated_response_is_named_as_such(tmp_path, server, mnist):
    name = "train-images-idx3-ubyte.gz"
    size = len(mnist[0][name])
    with pytest.raises(fetch.FetchError, match=f"truncated: {size // 2:,} of {size:,} bytes"):
        fetch.fetch_mnist(tmp_path, mirrors=[server.url("truncated")], md5s=mnist[1],
                          stream=io.StringIO())
    assert raw_files(tmp_path) == []


def test_every_mirror_dead_says_each_reason_and_creates_nothing(tmp_path, dead, server):
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch_mnist(tmp_path / "d", mirrors=[dead, server.url("missing")], stream=io.StringIO())
    message = str(info.value)
    assert f"{dead}: Connection refused" in message  # each source by its folder: the line stays short
    assert f"{server.url('missing')}: HTTP 404" in message and len(message) < 300
    assert info.value.reasons[0] == f"{dead}train-images-idx3-ubyte.gz: Connection refused"
    assert not (tmp_path / "d").exists()


def test_a_wrong_local_file_is_refused_and_kept_before_any_download(tmp_path, server, mnist):
    name = "t10k-labels-idx1-ubyte.gz"
    path = tmp_path / data.MNIST_RAW / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a partial download by some other tool")
    hits = sum(server.hits.values())
    with pytest.raises(data.ChecksumError) as info:
        fetch.fetch_mnist(tmp_path, mirrors=[server.url("good")], md5s=mnist[1], stream=io.StringIO())
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{short_path(path, 64)}: md5 ") and len(message) < 300
    assert f"md5 {md5(path.read_bytes())}, expected {mnist[1][name]}" in message
    assert "delete it" in message and "python -m simvp_core.data fetch --data-dir" in message
    assert path.read_bytes() == b"a partial download by some other tool"
    assert sum(server.hits.values()) == hits and raw_files(tmp_path) == [name]


def test_the_test_set_is_fetched_from_the_env_url_with_an_md5_table(tmp_path, server, test_seq,
                                                                     monkeypatch):
    monkeypatch.setenv("SIMVP_MMNIST_TEST_URL", server.url("good") + data.TEST_SEQ_FILE)
    path = fetch.fetch_test_set(tmp_path, md5s={data.TEST_SEQ_FILE: md5(test_seq)},
                                stream=io.StringIO())
    assert path == tmp_path / data.TEST_SEQ_FILE and path.read_bytes() == test_seq
    assert sorted(os.listdir(tmp_path)) == [data.TEST_SEQ_FILE]
    seqs, label = data.load_test_set(3, seed=0, data_dir=tmp_path)
    assert label == data.TEST_SET_STANDARD and seqs.shape == (3, 20, 1, 64, 64)
    with pytest.raises(fetch.FetchError) as info:  # the official md5 is not the stand-in's
        fetch.fetch_test_set(tmp_path / "b", stream=io.StringIO())
    assert f"md5 {md5(test_seq)}, expected {fetch.TEST_SET_MD5[data.TEST_SEQ_FILE]}" in str(info.value)
    assert "SIMVP_MMNIST_TEST_URL" in str(info.value) and os.listdir(tmp_path / "b") == []


def test_on_a_tty_each_file_is_one_updating_line(tmp_path, server, mnist):
    master, slave = pty.openpty()
    with open(slave, "w") as tty:
        fetch.fetch_mnist(tmp_path, mirrors=[server.url("good")], md5s=mnist[1], stream=tty)
    output = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # Linux: EIO once the tty's other end is closed and drained
            break
        output += chunk
    os.close(master)
    lines = output.decode().replace("\r\n", "\n").rstrip("\n").split("\n")  # \r stays inside
    assert len(lines) == 4  # one per file, rewritten in place with \r
    for line, name in zip(lines, mnist[0]):
        assert line.startswith(f"\r\x1b[Kfetch: {name} from ") and "\r\x1b[Kfetch: " in line[1:]
        assert line.endswith("md5 ok")


# ---- the CLI ------------------------------------------------------------------------------------

def test_cli_fetches_from_the_env_mirrors(tmp_path, server, mnist, dead, real_mnist_dir, monkeypatch):
    monkeypatch.setenv("SIMVP_MNIST_MIRRORS", f"{dead},{server.url('good')}")
    proc = cli("--data-dir", str(tmp_path), env={})
    if real_mnist_dir is not None:  # the real files: their official md5s
        assert proc.returncode == 0, proc.stderr
        assert_fetched(tmp_path, mnist)
        assert proc.stdout.strip() == f"MNIST: {(tmp_path / 'MNIST' / 'raw').resolve()} (md5 ok)"
        assert proc.stderr.count("md5 ok") == 4
    else:  # files built from the sample are not MNIST: the CLI refuses them, leaving nothing
        assert proc.returncode == 2
        assert "error: cannot fetch train-images-idx3-ubyte.gz" in proc.stderr.splitlines()[-1]
        assert raw_files(tmp_path) == []
    # the same command in-process with the served files' md5 table: done in either case
    assert fetch.main(["fetch", "--data-dir", str(tmp_path / "b")], mnist_md5s=mnist[1]) == 0
    assert_fetched(tmp_path / "b", mnist)


def test_cli_test_set_flag(tmp_path, server, mnist, test_seq, monkeypatch, capsys):
    monkeypatch.setenv("SIMVP_MNIST_MIRRORS", server.url("good"))
    monkeypatch.setenv("SIMVP_MMNIST_TEST_URL", server.url("good") + data.TEST_SEQ_FILE)
    argv = ["fetch", "--data-dir", str(tmp_path), "--test-set"]
    assert fetch.main(argv, mnist_md5s=mnist[1]) == 2  # the official md5 of the 819 MB file
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"error: cannot fetch {data.TEST_SEQ_FILE}: ")
    assert f"md5 {md5(test_seq)}, expected be083ec986bfe91a449d63653c411eb2" in err
    assert not (tmp_path / data.TEST_SEQ_FILE).exists()
    assert fetch.main(argv, mnist_md5s=mnist[1], test_set_md5s={data.TEST_SEQ_FILE: md5(test_seq)}) == 0
    assert (tmp_path / data.TEST_SEQ_FILE).read_bytes() == test_seq
    assert f"test set: {(tmp_path / data.TEST_SEQ_FILE).resolve()} (md5 ok)" in capsys.readouterr().out


def test_cli_with_every_mirror_dead_exits_2_with_one_line(tmp_path, dead):
    proc = cli("--data-dir", str(tmp_path / "d"), env={"SIMVP_MNIST_MIRRORS": f"{dead}, {dead}x/"})
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: cannot fetch train-images-idx3-ubyte.gz: ")
    assert line.count("Connection refused") == 2 and f"{dead}x/: Connection refused" in line
    assert "SIMVP_MNIST_MIRRORS" in line and short_path(tmp_path / "d" / "MNIST" / "raw", 64) in line
    assert len(line) <= 300
    assert not (tmp_path / "d").exists()


def test_cli_refuses_the_sample_as_a_target(capsys):
    assert fetch.main(["fetch", "--data-dir", "sample"]) == 2
    assert "bundled sample" in capsys.readouterr().err


def test_a_killed_cli_leaves_no_partial_file(tmp_path, server):
    proc = subprocess.Popen([*CLI, "--data-dir", str(tmp_path)], cwd=REPO,
                            env={**os.environ, "SIMVP_MNIST_MIRRORS": server.url("stall")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(n.endswith(".part") for n in raw_files(tmp_path)):  # the download started
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert raw_files(tmp_path) == []


# ---- the automatic fetch of searches and trainings ----------------------------------------------

def test_ensure_mnist_fetches_a_missing_folder_and_says_so(tmp_path, server, mnist, monkeypatch):
    monkeypatch.setenv("SIMVP_MNIST_MIRRORS", server.url("good"))
    logged: list[str] = []
    folder = tmp_path / "new"
    assert fetch.ensure_mnist(folder, allow_sample=False, log=logged.append, md5s=mnist[1]) == str(folder)
    assert logged == [f"data: no MNIST in {folder}; fetching it "
                      f"(python -m simvp_core.data fetch --data-dir {folder})"]
    assert_fetched(folder, mnist)
    logged.clear()
    assert fetch.ensure_mnist(folder, allow_sample=False, log=logged.append, md5s=mnist[1]) == str(folder)
    assert logged == [f"data: MNIST from {folder}"]


def test_ensure_mnist_offline_falls_back_to_the_sample_only_when_allowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data here: the default is the per-user cache
    monkeypatch.delenv("SIMVP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "simvp-search"
    command = f"python -m simvp_core.data fetch --data-dir {cache}"
    logged: list[str] = []
    assert fetch.ensure_mnist(None, allow_sample=True, log=logged.append) == data.SAMPLE
    assert logged[0] == f"data: no MNIST in {cache}; fetching it ({command})"
    assert len(logged) == 2 and "Connection refused" in logged[1] and "bundled sample" in logged[1]
    with pytest.raises(data.DataNotFoundError) as info:
        fetch.ensure_mnist(None, allow_sample=False, log=logged.append)
    message = str(info.value)
    assert "\n" not in message and len(message) <= data.LINE_CHARS, message  # paths cut to fit
    assert message.startswith(f"MNIST not in {str(cache)[:8]}") and f"/{cache.name} and fetching" in message
    assert f"`python -m simvp_core.data fetch --data-dir {str(cache)[:8]}" in message
    assert "SIMVP_MNIST_MIRRORS" in message and "Connection refused" in message
    assert not cache.exists()
    logged.clear()
    assert fetch.ensure_mnist("sample", allow_sample=False, log=logged.append) == data.SAMPLE
    assert logged == [f"data: {fetch.SAMPLE_NOTE}"]


def test_ensure_mnist_refuses_a_wrong_present_file(tmp_path, mnist):
    for name, blob in mnist[0].items():
        (tmp_path / data.MNIST_RAW).mkdir(parents=True, exist_ok=True)
        (tmp_path / data.MNIST_RAW / name).write_bytes(blob)
    with pytest.raises(data.ChecksumError, match="train-images-idx3-ubyte.gz: md5"):
        fetch.ensure_mnist(tmp_path, allow_sample=True, log=lambda _: None,
                           md5s={**mnist[1], "train-images-idx3-ubyte.gz": "0" * 32})
