"""Paths cut in the middle, so that an error line naming a deeply nested file stays under about
300 characters and still ends with the file's name. Torch-free, for simvp_core and search alike."""

from __future__ import annotations

from pathlib import Path


def short_path(path: str | Path, limit: int = 80) -> str:
    """`path` as text, its middle replaced by '...' when longer than `limit` (the name is kept whole)."""
    text = str(path)
    if len(text) <= limit:
        return text
    name = Path(text).name
    tail = max(len(name) + 1, (limit - 3) // 2)
    head = max(limit - 3 - tail, 1)
    return text[:head] + "..." + text[-tail:]
