"""Environment variables the platform reads, each bounded: a value that is set but wrong is refused
in one line naming the variable and what it takes (EnvError), never ignored silently.

Torch-free, for simvp_core and search alike.
"""

from __future__ import annotations

import os
import urllib.parse

from simvp_core.oneline import printable

MAX_ENV_CHARS = 4096  # longer than any URL list or number the platform reads
URL_SCHEMES = ("http", "https", "file")


class EnvError(ValueError):
    """An environment variable set to a value the platform cannot use (one line)."""


def _quoted(value: str) -> str:
    text = printable(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def raw(name: str) -> str | None:
    """The variable's value, stripped; None when unset or empty. Refused past MAX_ENV_CHARS."""
    value = os.environ.get(name, "").strip()
    if len(value) > MAX_ENV_CHARS:
        raise EnvError(f"${name}: {len(value):,} characters; expected at most {MAX_ENV_CHARS:,} (unset it or "
                       "fix its value)")
    return value or None


def integer(name: str, default: int, low: int, high: int) -> int:
    """$name as an integer in [low, high]; `default` when unset or empty."""
    value = raw(name)
    if value is None:
        return default
    if not value.isascii() or not value.lstrip("+").isdigit() or len(value) > 19 or not low <= int(value) <= high:
        raise EnvError(f"${name}={_quoted(value)}: expected an integer in [{low:,}, {high:,}] (or unset it "
                       f"for the default {default:,})")
    return int(value)


def url(name: str, value: str) -> str:
    """One URL of $name checked: http(s):// or file://, a host for http(s), no spaces or control
    characters; EnvError otherwise."""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as e:
        raise EnvError(f"${name}: {_quoted(value)} is not a URL ({e}); expected http(s)://host/path/, "
                       "comma-separated") from None
    if (parts.scheme not in URL_SCHEMES or (parts.scheme != "file" and not parts.hostname)
            or any(c.isspace() or not c.isprintable() for c in value)):
        raise EnvError(f"${name}: {_quoted(value)} is not a URL; expected http(s)://host/path/ (or "
                       "file:///folder/), comma-separated")
    return value


def urls(name: str) -> list[str] | None:
    """$name as a comma-separated list of checked URLs; None when unset or empty."""
    value = raw(name)
    if value is None:
        return None
    listed = [u.strip() for u in value.split(",") if u.strip()]
    if not listed:
        raise EnvError(f"${name}={_quoted(value)}: no URL in it; expected http(s)://host/path/, comma-separated "
                       "(or unset it)")
    return [url(name, u) for u in listed]


__all__ = ["EnvError", "raw", "integer", "url", "urls", "MAX_ENV_CHARS"]
