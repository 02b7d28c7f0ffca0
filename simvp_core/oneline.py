"""Paths cut in the middle, so that an error line naming a deeply nested file stays under about
300 characters and still ends with the file's name, and an argparse whose usage errors are one line.
Torch-free, for simvp_core and search alike."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn


def short_path(path: str | Path, limit: int = 80) -> str:
    """`path` as text, its middle replaced by '...' when longer than `limit` (the name is kept whole)."""
    text = str(path)
    if len(text) <= limit:
        return text
    name = Path(text).name
    tail = max(len(name) + 1, (limit - 3) // 2)
    head = max(limit - 3 - tail, 1)
    return text[:head] + "..." + text[-tail:]


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`error: PROG: what; see PROG --help`, exit code 2),
    as every other refusal of the CLIs, instead of the multi-line usage block."""

    def error(self, message: str) -> NoReturn:
        cut = message if len(message) <= 200 else message[:197] + "..."  # it may quote a huge value
        self.exit(2, f"error: {self.prog}: {cut}; see {self.prog} --help\n")
