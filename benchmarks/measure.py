"""One hardening case of benchmarks.redteam, run as a fresh subprocess and measured: its exit
code, stderr lines, longest line, peak memory (PSS) of its process tree, wall time, whether anything already
written changed; judged against the rules every refusal keeps, and tabled."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simvp_core.oneline import printable

try:
    import psutil
except ImportError:  # ray ships its own copy in ray/thirdparty_files
    sys.path.append(str(Path(importlib.util.find_spec("ray").origin).parent / "thirdparty_files"))
    import psutil

_COUNTER = itertools.count()
MAX_LINE, MAX_RSS_MB, MAX_REFUSAL_S = 300, 2048, 20.0
CONTROL = re.compile("[\\x00-\\x08\\x0b-\\x1f\\x7f]")  # what no name, path or description may print raw


@dataclass
class Case:
    """One command and what it must do: `expect` exit code; a refusal gives one stderr line in 20 s."""

    name: str
    argv: list[str]
    expect: int = 2
    refusal: bool = True
    guard: list[Path] = field(default_factory=list)  # must hash the same before and after
    must_say: str = ""  # said on stdout or stderr: exactly once, or at least once if not `once`
    once: bool = True
    timeout: float = 90.0
    signal_when: tuple[int, Callable[[], bool]] | None = None  # send sig once the predicate holds
    during: Case | None = None  # measured while this one runs, just before the signal
    keep: Path | None = None  # its files at the signal must all be there after (the lock excepted)
    group: bool = False  # the signal goes to the whole process group, as Ctrl-C in a terminal sends it
    absent: list[Path] = field(default_factory=list)  # must not exist after (a refusal writes nothing)
    env: dict[str, str] = field(default_factory=dict)  # over the common environment
    clean: list[Path] = field(default_factory=list)  # files (and the output) free of raw control characters


@dataclass
class Row:
    case: str
    rc: int | None
    lines: list[str]
    peak_mb: float
    seconds: float
    signal_s: float | None = None  # seconds from the signal to the exit
    message: str = ""  # the line that says what happened
    kept: bool | None = None  # whether the files there before (guard, keep) are all unchanged
    fails: list[str] = field(default_factory=list)
    longest: int = 0  # the longest line on stdout or stderr


def tree_rss(proc: psutil.Process, pss: bool = True) -> int:
    """Memory of proc and all its descendants, bytes (processes that end meanwhile count 0): each
    one's PSS (its private pages, and its share of the pages it shares: a search's Ray processes
    share most of torch's), RSS where PSS cannot be read or `pss` is False."""
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in members:
        try:
            total += _pss(p) if pss else p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _pss(p: psutil.Process) -> int:
    try:
        return p.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError):
        return p.memory_info().rss


def folder_hash(path: Path) -> str:
    """sha256 over the relative paths and contents of every file under path ('' if none)."""
    if not path.exists():
        return ""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path.parent)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def measure(case: Case, cwd: Path, env: dict[str, str]) -> list[Row]:
    """Run the case as a new session in cwd: its row, then the row of the case run `during` it."""
    before = [folder_hash(p) for p in case.guard]
    stem = cwd / f".case-{next(_COUNTER)}"
    out, err = stem.with_suffix(".out"), stem.with_suffix(".err")
    start = time.perf_counter()
    with open(out, "wb") as o, open(err, "wb") as e:
        popen = subprocess.Popen([sys.executable, *case.argv], cwd=cwd, env={**env, **case.env}, stdout=o, stderr=e,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    proc, peak, sent, inner, kept = psutil.Process(popen.pid), 0, None, [], []
    while popen.poll() is None and time.perf_counter() - start < case.timeout:
        peak = max(peak, tree_rss(proc))
        if case.signal_when and sent is None and case.signal_when[1]():
            inner = measure(case.during, cwd, env) if case.during else []
            kept = files_under(case.keep) if case.keep else []
            if case.group:
                os.killpg(popen.pid, case.signal_when[0])
            else:
                popen.send_signal(case.signal_when[0])
            sent = time.perf_counter()
        time.sleep(0.05)
    timed_out = popen.poll() is None
    if timed_out:
        popen.kill()
    rc = popen.wait()
    end = time.perf_counter()
    try:
        os.killpg(popen.pid, signal.SIGKILL)  # what the case left of its process group
    except (ProcessLookupError, PermissionError):
        pass
    stderr = err.read_text(errors="replace")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    text = out.read_text(errors="replace") + stderr
    said = [ln for ln in text.splitlines() if case.must_say and case.must_say in ln]
    row = Row(case.name, None if timed_out else rc, lines, peak / 2**20, end - start,
              None if sent is None else end - sent, message=(said or lines or [""])[0 if case.refusal else -1],
              longest=max(map(len, text.splitlines()), default=0))
    row.fails = judge(case, row, text, before)
    lost = [f for f in kept if not f.exists()]
    if lost:
        row.fails.append(f"{len(lost)} of {len(kept)} files lost, e.g. {lost[0]}")
    if case.keep and not kept and sent is not None:
        row.fails.append(f"nothing in {case.keep} at the signal to keep")
    made = [str(p) for p in case.absent if p.exists()]
    if made:
        row.fails.append("written: " + ", ".join(made))
    if case.guard or case.keep:
        row.kept = not lost and not any(f.startswith("changed:") for f in row.fails)
    return [row, *inner]


def files_under(folder: Path) -> list[Path]:
    """The files under folder, its lock excepted (released on exit, by design)."""
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.name != "search.lock")


def judge(case: Case, row: Row, text: str, before: list[str]) -> list[str]:
    """The rules the row breaks (empty: it passes)."""
    fails = []
    if row.rc is None:
        fails.append(f"still running after {case.timeout:.0f} s (killed)")
    elif row.rc != case.expect:
        fails.append(f"exit {row.rc}, expected {case.expect}")
    if case.refusal:
        if len(row.lines) != 1:
            fails.append(f"{len(row.lines)} stderr lines, expected 1")
        if row.seconds > MAX_REFUSAL_S:
            fails.append(f"refused after {row.seconds:.1f} s > {MAX_REFUSAL_S:.0f} s")
    if row.longest > MAX_LINE:  # every row, refusal or not, stdout and stderr alike
        fails.append(f"a line of {row.longest} chars (over {MAX_LINE})")
    raw = [str(p) for p in case.clean if p.is_file() and CONTROL.search(p.read_text(errors="replace"))]
    if case.clean and CONTROL.search(text):
        raw.append("its output")
    if raw:
        fails.append("raw control characters in " + ", ".join(raw))
    if row.signal_s is not None and row.signal_s > MAX_REFUSAL_S:
        fails.append(f"exited {row.signal_s:.1f} s after the signal > {MAX_REFUSAL_S:.0f} s")
    if case.signal_when and row.signal_s is None:
        fails.append("never signalled (not ready in time)")
    if row.peak_mb > MAX_RSS_MB:
        fails.append(f"peak {row.peak_mb:.0f} MB > {MAX_RSS_MB} MB")
    said = text.count(case.must_say) if case.must_say else 1
    if said == 0 or (case.once and said != 1):
        fails.append(f"says {case.must_say!r} {said} times, expected {'once' if case.once else 'at least once'}")
    changed = [str(p) for p, h in zip(case.guard, before) if folder_hash(p) != h]
    if changed:
        fails.append("changed: " + ", ".join(changed))
    return fails


def cell(text: str) -> str:
    """text as one markdown table cell."""
    return printable(text).replace("|", "\\|").replace("`", "'")


def table(rows: list[Row]) -> str:
    """The markdown table of the rows."""
    head = ("| case | exit | stderr lines | longest line, stdout or stderr (chars) | peak PSS (MB) | time (s) | "
            "files kept | message (first 100 chars) | result |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
    kept = {None: "-", True: "yes", False: "NO"}
    body = [f"| {cell(r.case)} | {'killed' if r.rc is None else r.rc} | {len(r.lines)} | "
            f"{r.longest} | {r.peak_mb:.0f} | {r.seconds:.1f}"
            f"{'' if r.signal_s is None else f' ({r.signal_s:.1f} after the signal)'} | {kept[r.kept]} | "
            f"{cell(r.message[:100])} | {'FAIL: ' + cell('; '.join(r.fails)) if r.fails else 'pass'} |"
            for r in rows]
    return "\n".join([head, *body])


def failures(rows: list[Row]) -> str:
    """What each failing case printed on stderr (first 3 and last 2 lines, cut to 300 chars)."""
    parts = []
    for r in (r for r in rows if r.fails):
        shown = r.lines if len(r.lines) <= 5 else [*r.lines[:3], "...", *r.lines[-2:]]
        parts.append(f"- **{r.case}**: " + "; ".join(r.fails) + "".join(
            f"\n    `{ln[:300]}`" for ln in shown))
    return "\n".join(parts)
