"""Fetching the data: the four MNIST files and the standard Moving MNIST test set, verified by md5.

`python -m simvp_core.data fetch [--data-dir DIR] [--test-set]` runs main() here. Every download
streams into a hidden temp file beside its target and is renamed over it only when complete with
the expected md5; any failure (refused connection, HTTP error, timeout, fewer bytes than announced,
wrong md5) removes the temp file and tries the next mirror. A file already in place with the right
md5 is kept without a request. One with a wrong md5 is refused, never overwritten or deleted: it
may be the user's own copy, so the error names both sums and leaves deleting it to them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import secrets
import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from simvp_core import env
from simvp_core.data import mnist
from simvp_core.files import make_folder, write_error
from simvp_core.oneline import OneLineParser, clip, print_error, short_path

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
TEST_SET_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
TEST_SET_MD5 = {mnist.TEST_SEQ_FILE: "be083ec986bfe91a449d63653c411eb2"}
ENV_MIRRORS = "SIMVP_MNIST_MIRRORS"  # comma-separated base URLs holding the four .gz files
ENV_TEST_URL = "SIMVP_MMNIST_TEST_URL"
TIMEOUT_S = 30.0  # per connection attempt and per read
SAMPLE_NOTE = ("the bundled sample (simvp_core/sample/mnist_sample.npz: 1,000 train and 500 test "
               "digits, NOT full MNIST)")
_CHUNK = 1 << 16
_REASON_CHARS = 120


class FetchError(RuntimeError):
    """Every source of a file failed; `reasons` holds one 'url: why' per source."""

    def __init__(self, name: str, reasons: list[str], fix: str) -> None:
        super().__init__(f"cannot fetch {name}: {brief(reasons, 100)}; fix: {fix}")
        self.reasons = reasons


def brief(reasons: list[str], limit: int) -> str:
    """The 'url: why' reasons in at most `limit` characters: whole if they fit, else each source by
    its folder (the file is named already), else the distinct whys with the number of sources."""
    whole = "; ".join(reasons)
    if len(whole) <= limit:
        return whole
    pairs = [r.split(": ", 1) if ": " in r else [r, ""] for r in reasons]
    by_folder = "; ".join(f"{url.rsplit('/', 1)[0]}/: {why}" for url, why in pairs)
    if len(by_folder) <= limit:
        return by_folder
    whys = "; ".join(dict.fromkeys(why for _, why in pairs))
    text = f"{len(reasons)} source{'s' if len(reasons) > 1 else ''}: {whys}"
    return clip(text, limit)


class _SourceFailed(Exception):
    """One source did not deliver the file; the message is the reason."""


def mnist_mirrors() -> list[str]:
    """The MNIST base URLs to try in order: $SIMVP_MNIST_MIRRORS (each checked: EnvError for one
    that is not an http(s) or file URL), else torchvision's mirrors."""
    return env.urls(ENV_MIRRORS) or list(MNIST_MIRRORS)


def test_set_url() -> str:
    """Where the standard test set is fetched from: $SIMVP_MMNIST_TEST_URL (checked), else the original."""
    listed = env.raw(ENV_TEST_URL)
    return TEST_SET_URL if listed is None else env.url(ENV_TEST_URL, listed)


def fetch_mnist(data_dir: str | Path, mirrors: Sequence[str] | None = None,
                md5s: Mapping[str, str] = mnist.MNIST_MD5, timeout: float = TIMEOUT_S,
                stream: IO[str] | None = None) -> Path:
    """Download the files of `md5s` (default: the four MNIST .gz) into <data_dir>/MNIST/raw.

    Returns that folder. Files there with the right md5 are kept; ChecksumError for one with
    another md5 (before anything is downloaded); FetchError when every mirror fails for a file.
    """
    raw = Path(data_dir) / mnist.MNIST_RAW
    mirrors = mnist_mirrors() if mirrors is None else list(mirrors)
    fix = f"set {ENV_MIRRORS}=URL[,URL...] to mirrors of the four files, or copy them into {short_path(raw, 64)}"
    missing = [name for name in md5s if not _present(raw / name, md5s[name], data_dir, stream)]
    for name in missing:
        download([f"{m.rstrip('/')}/{name}" for m in mirrors], raw / name, md5s[name], fix,
                 timeout, stream)
    return raw


def fetch_test_set(data_dir: str | Path, url: str | None = None,
                   md5s: Mapping[str, str] = TEST_SET_MD5, timeout: float = TIMEOUT_S,
                   stream: IO[str] | None = None) -> Path:
    """Download the standard mnist_test_seq.npy (819 MB) into data_dir; returns its path.

    url: else $SIMVP_MMNIST_TEST_URL, else the original at cs.toronto.edu. As fetch_mnist otherwise.
    """
    name = mnist.TEST_SEQ_FILE
    dest = Path(data_dir) / name
    if not _present(dest, md5s[name], data_dir, stream):
        url = url or test_set_url()
        download([url], dest, md5s[name], f"set {ENV_TEST_URL}=URL to a copy of {name}, or copy "
                 f"it into {Path(data_dir)}", timeout, stream)
    return dest


def download(urls: Sequence[str], dest: Path, md5: str, fix: str, timeout: float = TIMEOUT_S,
             stream: IO[str] | None = None) -> None:
    """Write `dest` from the first of `urls` that delivers it whole with the given md5.

    Raises FetchError naming each URL's reason and `fix` when none does.
    """
    reasons = []
    for url in urls:
        try:
            _download_from(url, dest, md5, timeout, stream or sys.stderr)
            return
        except _SourceFailed as e:
            reasons.append(f"{url}: {str(e)[:_REASON_CHARS]}")
    raise FetchError(dest.name, reasons or ["no source given"], fix)


def ensure_mnist(data_dir: str | Path | None, allow_sample: bool, log: Callable[[str], None] = print,
                 md5s: Mapping[str, str] = mnist.MNIST_MD5) -> str:
    """The MNIST folder a search or a training reads, fetched there first when it has no MNIST.

    data_dir resolves as mnist.resolve_data_dir does ('sample': the bundled sample). If fetching
    fails, allow_sample falls back to the bundled sample; otherwise DataNotFoundError names the
    reasons and the fetch command. A present file that is wrong raises ValueError (ChecksumError).
    One line through `log` says which data is used.
    """
    if mnist.is_sample(data_dir):
        log(f"data: {SAMPLE_NOTE}")
        return mnist.SAMPLE
    mnist_mirrors()  # a malformed $SIMVP_MNIST_MIRRORS is refused whether or not a fetch is needed
    folder = mnist.resolve_data_dir(data_dir)
    where = folder.resolve()
    command = f"python -m simvp_core.data fetch --data-dir {shlex.quote(str(where))}"
    if mnist.has_mnist(folder):
        log(f"data: MNIST from {where}")
    else:
        log(f"data: no MNIST in {where}; fetching it ({command})")
        try:
            fetch_mnist(folder, md5s=md5s)
        except FetchError as e:
            why = brief(e.reasons, 48)
            if not allow_sample:
                raise mnist.DataNotFoundError(mnist.fit_paths(lambda cut: (
                    f"MNIST not in {cut(where)} and fetching it failed ({why}); fix: `python -m "
                    f"simvp_core.data fetch --data-dir {cut(shlex.quote(str(where)))}` online, or "
                    f"{ENV_MIRRORS}=URL,..., or --data-dir (or {mnist.ENV_DATA_DIR}) with MNIST/raw"))) from e
            log(f"data: fetching MNIST failed ({why}); this space allows a fallback, so using "
                f"{SAMPLE_NOTE}; every result says 'bundled sample'; for real numbers run `{command}`")
            return mnist.SAMPLE
    checksums = {**mnist.UNPACKED_MD5, **md5s}
    for split in ("train", "test"):  # a wrong file is refused now, before any training starts
        mnist.load_mnist(split, folder, md5s=checksums)
    return str(folder)


def _present(path: Path, md5: str, data_dir: str | Path, stream: IO[str] | None) -> bool:
    """Whether path is already there with the right md5; ChecksumError if it holds another file."""
    if not path.is_file():
        return False
    command = f"python -m simvp_core.data fetch --data-dir {short_path(shlex.quote(str(data_dir)), 32)}"
    mnist.check_md5(path, md5, f"delete it and run `{command}` again")
    print(f"fetch: {path.name} already in {path.parent} (md5 ok)", file=stream or sys.stderr)
    return True


def _download_from(url: str, dest: Path, md5: str, timeout: float, stream: IO[str]) -> None:
    """One attempt: stream url into a temp file beside dest, rename it over dest once verified."""
    request = urllib.request.Request(url, headers={"User-Agent": "simvp-search"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise _SourceFailed(_reason(e)) from e
    with response:
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        make_folder(dest.parent)
        _check_room(dest, total)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
        progress = _Progress(dest.name, url, total, stream)
        try:
            digest, got = hashlib.md5(usedforsecurity=False), 0
            with open(tmp, "xb") as out:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _SourceFailed(f"{_reason(e)} after {got:,} bytes") from e
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    progress.update(got)
            if total is not None and got < total:
                raise _SourceFailed(f"truncated: {got:,} of {total:,} bytes")
            if digest.hexdigest() != md5:
                raise _SourceFailed(f"md5 {digest.hexdigest()}, expected {md5}")
            os.replace(tmp, dest)
        except BaseException as e:  # interrupted too: never leave the temp file behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            progress.fail(str(e) if isinstance(e, _SourceFailed) else type(e).__name__)
            if isinstance(e, OSError):  # the write: a full or read-only disk, no fault of the source
                raise write_error(dest, e) from e
            raise
        progress.done(got)


def _check_room(dest: Path, total: int | None) -> None:
    """A download whose announced size does not fit on dest's disk is refused before a byte is written."""
    try:
        stats = os.statvfs(dest.parent)
    except OSError:
        return
    if total is not None and stats.f_bavail * stats.f_frsize < total:
        raise write_error(dest, OSError(errno.ENOSPC, "no space left"))


def _reason(e: BaseException) -> str:
    """A short why for a failed request: 'HTTP 404 Not Found', 'Connection refused', 'timed out'."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else OSError(str(e.reason))
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


class _Progress:
    """Download progress on stderr: one line rewritten in place on a tty, else a line per quarter."""

    def __init__(self, name: str, url: str, total: int | None, stream: IO[str]) -> None:
        self.name, self.url, self.total, self.stream = name, url, total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = self.shown = time.monotonic()
        self.quarter = 0
        self._line(f"{name} from {url}" + (f" ({_size(total)})" if total else ""),
                   end="" if self.tty else "\n")

    def update(self, got: int) -> None:
        if self.tty:
            if time.monotonic() - self.shown >= 0.1:
                self.shown = time.monotonic()
                rate = got / max(self.shown - self.start, 1e-6)
                self._line(f"{self.name} {self._part(got)}  {_size(rate)}/s")
        elif self.total and got < self.total and got * 4 // self.total > self.quarter:
            self.quarter = got * 4 // self.total
            self._line(f"{self.name} {self._part(got)}", end="\n")

    def done(self, got: int) -> None:
        self._line(f"{self.name} done: {_size(got)} in {time.monotonic() - self.start:.1f} s, "
                   "md5 ok", end="\n")

    def fail(self, reason: str) -> None:
        self._line(f"{self.name} from {self.url} failed: {reason[:_REASON_CHARS]}", end="\n")

    def _part(self, got: int) -> str:
        if not self.total:
            return _size(got)
        return f"{100 * got // self.total:3d}% ({_size(got)} of {_size(self.total)})"

    def _line(self, text: str, end: str = "") -> None:
        prefix = "\r\x1b[K" if self.tty else ""  # on a tty: back to the line's start, clear it
        self.stream.write(f"{prefix}fetch: {text}{end}")
        self.stream.flush()


def main(argv: list[str] | None = None, mnist_md5s: Mapping[str, str] = mnist.MNIST_MD5,
         test_set_md5s: Mapping[str, str] = TEST_SET_MD5) -> int:
    """The `fetch` command. Exit codes: 0 done, 2 bad input, a refused file or no source worked."""
    parser = OneLineParser(prog="python -m simvp_core.data",
                                     description="Download the data files, verified by md5.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="the four MNIST files into DIR/MNIST/raw (and, with "
                                "--test-set, mnist_test_seq.npy into DIR)")
    fetch.add_argument("--data-dir", help=f"default: ${mnist.ENV_DATA_DIR}, else ./data if it holds "
                       "MNIST, else $XDG_CACHE_HOME/simvp-search (~/.cache/simvp-search)")
    fetch.add_argument("--test-set", action="store_true",
                       help="also the standard Moving MNIST test set (819 MB)")
    args = parser.parse_args(argv)
    if mnist.is_sample(args.data_dir):
        print_error(f"--data-dir {mnist.SAMPLE} is the bundled sample, nothing to fetch; pass another folder")
        return 2
    folder = mnist.resolve_data_dir(args.data_dir)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the temp file is removed
    try:
        raw = fetch_mnist(folder, md5s=mnist_md5s)
        print(f"MNIST: {raw.resolve()} (md5 ok)")
        if args.test_set:
            print(f"test set: {fetch_test_set(folder, md5s=test_set_md5s).resolve()} (md5 ok)")
    except (FetchError, mnist.ChecksumError, env.EnvError, OSError) as e:
        print_error(e)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no partial file was left", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
