"""Text for one-line messages: paths cut in the middle (so that an error line naming a deeply nested
file stays under about 300 characters and still ends with the file's name), control characters
escaped, the one way every CLI prints a refusal (`print_error`), durations, and an argparse whose
usage errors are one line. Torch-free, for simvp_core and search alike."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Literal, NoReturn

MAX_LINE = 300  # every refusal is one line of at most this many characters
# C0 and C1 control characters (newline, carriage return, escape, ...) and the Unicode line breaks
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """str(text) on one line: every control character (a newline, a terminal escape) written as a
    Python escape (\\n, \\x1b), so that names, paths and descriptions cannot break a line, a table
    or the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def clip(text: object, limit: int) -> str:
    """str(text), its end replaced by '...' when longer than `limit`."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clip_middle(text: str, limit: int) -> str:
    """text, its middle replaced by ' ... ' when longer than `limit`: what is wrong (the start) and
    the fix (the end) both stay."""
    if len(text) <= limit:
        return text
    tail = (limit - 5) // 3
    return text[:limit - 5 - tail] + " ... " + text[-tail:]


def error_line(message: object, prefix: str = "error: ") -> str:
    """A refusal as the CLIs print it: one line (control characters escaped) of at most MAX_LINE
    characters."""
    return clip_middle(prefix + printable(str(message).strip()), MAX_LINE)


def print_error(message: object, prefix: str = "error: ") -> None:
    """Print a refusal on stderr: error_line(message)."""
    print(error_line(message, prefix), file=sys.stderr, flush=True)


def short_path(path: str | Path, limit: int = 80) -> str:
    """`path` as text, its middle replaced by '...' when longer than `limit` (the name is kept whole)."""
    text = str(path)
    if len(text) <= limit:
        return text
    name = Path(text).name
    tail = max(len(name) + 1, (limit - 3) // 2)
    head = max(limit - 3 - tail, 1)
    return text[:head] + "..." + text[-tail:]


def duration(seconds: float | None, style: Literal["short", "long"] = "short") -> str:
    """Seconds, rounded, as progress lines show them (short: 45s, 1m52s, 2h03m) or as reports do
    (long: 45 s, 1 min 52 s, 2 h 03 min 05 s); 'n/a' for None, NaN or infinity."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    s = max(0, round(seconds))
    h, m = s // 3600, s % 3600 // 60
    if style == "long":
        return f"{s} s" if s < 60 else f"{m} min {s % 60:02d} s" if s < 3600 else f"{h} h {m:02d} min {s % 60:02d} s"
    return f"{s}s" if s < 60 else f"{m}m{s % 60:02d}s" if s < 3600 else f"{h}h{m:02d}m"


def size(n_bytes: int | None) -> str:
    """Bytes in decimal units as a summary shows them: 512 B, 1.5 kB, 12.3 MB, 405 GB; 'n/a' for None."""
    if n_bytes is None:
        return "n/a"
    value, units = float(n_bytes), ("B", "kB", "MB", "GB", "TB")
    i = 0
    while abs(value) >= 999.95 and i < len(units) - 1:
        value, i = value / 1000, i + 1
    if i == 0:
        return f"{int(value)} B"
    return f"{value:.1f} {units[i]}" if abs(value) < 100 else f"{value:.0f} {units[i]}"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`error: PROG: what; see PROG --help`, exit code 2),
    as every other refusal of the CLIs, instead of the multi-line usage block."""

    def error(self, message: str) -> NoReturn:
        cut = clip_middle(printable(message), 200)  # it may quote a huge value
        self.exit(2, f"error: {self.prog}: {cut}; see {self.prog} --help\n")
