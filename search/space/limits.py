"""What a space file may ask for at most, checked arithmetically before anything is expanded.

MAX_TRIALS caps a grid's points and num_samples (each times repeats); $SIMVP_MAX_TRIALS overrides it
(an integer in [1, MAX_TRIALS_CEILING]; any other value is refused, simvp_core.env.EnvError).
MAX_FILE_BYTES caps the file read before YAML parses it. brief() keeps quoted user values short.
"""

from __future__ import annotations

import math
from typing import Any

from simvp_core import env
from simvp_core.oneline import clip

MAX_TRIALS = 10_000  # trials per search; override with the environment variable SIMVP_MAX_TRIALS
MAX_FILE_BYTES = 1_000_000  # a space file is a few kB; anything over 1 MB is refused unparsed
ENV_MAX_TRIALS = "SIMVP_MAX_TRIALS"
MAX_TRIALS_CEILING = 10_000_000  # what $SIMVP_MAX_TRIALS may raise the cap to: the checks stay linear in it
QUOTE_CHARS = 60  # a user value quoted in an error line is cut to this many characters
_MAX_STATES = 100_000  # exact grid counting keeps at most this many partial assignments


def max_trials() -> int:
    """MAX_TRIALS, or $SIMVP_MAX_TRIALS when it is set (EnvError when it is not a positive integer)."""
    return env.integer(ENV_MAX_TRIALS, MAX_TRIALS, 1, MAX_TRIALS_CEILING)


def cap_hint() -> str:
    return f"at most {max_trials():,} trials (raise the cap with ${ENV_MAX_TRIALS})"


def brief(value: Any, limit: int = QUOTE_CHARS) -> str:
    """repr(value), cut to `limit` characters with an ellipsis."""
    return clip(repr(value), limit)


def grid_size(space: tuple) -> tuple[int, bool]:
    """(points, exact) of the product grid of `space` (Params), without building it.

    Counted exactly over the values later conditions refer to; when that would track more than
    _MAX_STATES partial assignments, the product of the value counts, an upper bound (exact False).
    """
    referenced_after = []  # for each param, the names a `when` at or after it refers to
    later: set[str] = set()
    for p in reversed(space):
        later |= {name for name, _ in p.when}
        referenced_after.append(set(later))
    referenced_after.reverse()
    states: dict[tuple, int] = {(): 1}  # the values kept so far (sorted items) -> how many points
    for i, p in enumerate(space):
        keep = referenced_after[i + 1] if i + 1 < len(space) else set()
        nxt: dict[tuple, int] = {}
        for state, count in states.items():
            chosen = dict(state)
            if not p.applies(chosen):
                options = [None]
            else:
                options = list(p.values)
            for v in options:
                new = {k: x for k, x in chosen.items() if k in keep}
                if v is not None and p.name in keep:
                    new[p.name] = v
                key = tuple(sorted(new.items(), key=lambda kv: kv[0]))
                nxt[key] = nxt.get(key, 0) + count
        if len(nxt) > _MAX_STATES:
            return math.prod(max(1, len(q.values)) for q in space), False
        states = nxt
    return sum(states.values()), True
