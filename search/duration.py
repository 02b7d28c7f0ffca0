"""Seconds in words, the one way the search writes a duration (progress line, summary, report):
`45 s`, `1 min 52 s`, `2 h 03 min 05 s`. Kept here until simvp_core carries the torch-free
formatter the trainer's own lines use."""

from __future__ import annotations

import math


def format_duration(seconds: float | None) -> str:
    """`45 s`, `1 min 52 s`, `2 h 03 min 05 s`; `n/a` for None or a non-finite value."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min {s % 60:02d} s"
