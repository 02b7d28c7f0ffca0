"""Lookups by `same` (equal as settings: floats within 1e-9 relative or 1e-12 absolute, True never
equal to 1) in O(log n), so that every check of a space file and every match of the report stays
linear in what it reads: duplicates in a long choice list, a value among a param's values, the
published rows a configuration matches, the trials a published row reaches.

Sets of rows are Python ints used as bitsets (bit i: row i), so intersecting them is cheap.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import Any


def plain(value: Any) -> Any:
    """A numpy scalar (as pandas rows hold them) as the Python value it stands for."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)) else value


def same(a: Any, b: Any) -> bool:
    """Equal as settings: floats within 1e-12, True never equal to 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-12)
    return a == b


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class SameIndex:
    """The positions of a list of values, found by `same`: hashed for everything but numbers, by
    bisection on the sorted numbers (a float matches within its tolerance)."""

    def __init__(self, values: Iterable[Any]) -> None:
        self.exact: dict[Any, int] = {}  # (type tag, value) -> bitset of positions
        self.unhashable: list[tuple[Any, int]] = []
        numbers: dict[float, int] = {}
        for i, value in enumerate(values):
            value = plain(value)
            if _number(value) and math.isfinite(value):
                numbers[float(value)] = numbers.get(float(value), 0) | 1 << i
                continue
            try:
                key = (type(value) is bool, value)
                self.exact[key] = self.exact.get(key, 0) | 1 << i
            except TypeError:  # a list or a mapping: compared one by one
                self.unhashable.append((value, 1 << i))
        self.numbers = sorted(numbers)
        self.number_rows = [numbers[n] for n in self.numbers]

    def rows(self, value: Any) -> int:
        """The bitset of the positions whose value is `same` as `value`."""
        value = plain(value)
        if _number(value) and math.isfinite(value):
            x = float(value)
            tol = max(1e-9 * abs(x), 1e-12) * 1.01  # a window at least as wide as isclose's
            lo, hi = bisect.bisect_left(self.numbers, x - tol), bisect.bisect_right(self.numbers, x + tol)
            found = 0
            for n, rows in zip(self.numbers[lo:hi], self.number_rows[lo:hi]):
                if same(x, n):
                    found |= rows
            return found
        try:
            found = self.exact.get((type(value) is bool, value), 0)
        except TypeError:
            found = 0
        for other, rows in self.unhashable:
            if same(value, other):
                found |= rows
        return found

    def first(self, value: Any) -> int | None:
        """The first position whose value is `same` as `value`, or None."""
        return lowest(self.rows(value))


def lowest(rows: int) -> int | None:
    """The smallest position of a bitset (None when empty)."""
    return (rows & -rows).bit_length() - 1 if rows else None


class RowIndex:
    """Rows (mappings name -> value), indexed per name: which rows have `name` set to a value, and
    which rows have `name` at all (a key absent from a row, or None in it, is not set)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.size = len(rows)
        self.all = (1 << self.size) - 1
        names = list(dict.fromkeys(k for row in rows for k in row))
        self.has = {n: sum(1 << i for i, row in enumerate(rows) if row.get(n) is not None) for n in names}
        self.values = {n: SameIndex(row.get(n) for row in rows) for n in names}

    def having(self, name: str, value: Any) -> int:
        """The rows whose `name` is `same` as value."""
        index = self.values.get(name)
        return 0 if index is None else index.rows(value) & self.has[name]

    def matching(self, config: Any) -> int:
        """The rows every one of whose keys `config` (a mapping or an object of attributes) has
        with the same value: a published row's `match` against a configuration."""
        get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k, None))
        found = self.all
        for name, rows in self.has.items():
            found &= (self.all ^ rows) | self.having(name, get(name))
            if not found:
                break
        return found


__all__ = ["SameIndex", "RowIndex", "lowest", "same", "plain"]
