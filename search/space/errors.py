"""SpaceError, the one form of every refusal: '<file>: <key.path>: <what is wrong>; expected <what>'.

A pydantic ValidationError of the space file becomes one SpaceError: its first problem, with the
expectation read off the declaration at that key (type, bounds, choices or description).
User values are quoted cut short (limits.brief), and the line past the file name stays under
BODY_CHARS whatever it quotes.
"""

from typing import Any, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from search.space.limits import QUOTE_CHARS, brief
from search.space.schema import KINDS, RANGE_KINDS, SpaceFile
from simvp_core.config import FIELD_TYPES, did_you_mean, expectation, show, without_none
from simvp_core.oneline import clip

KEY_CHARS = 80  # a key path (it may hold a user's key) is cut to this
BODY_CHARS = 270  # key + what + expected, at most (the file name comes before)


class SpaceError(ValueError):
    """A bad space file: '<file>: <key.path>: <what is wrong>; expected <what>'."""

    def __init__(self, key: str, what: str, expected: str, file: str = "(space)") -> None:
        key, what, expected = _short(key, what, expected)
        super().__init__(f"{file}: {key}: {what}; expected {expected}")
        self.key, self.what, self.expected = key, what, expected

    def in_file(self, file: str) -> "SpaceError":
        """The same refusal, labelled with the file it is about."""
        return SpaceError(self.key, self.what, self.expected, file)


def _short(key: str, what: str, expected: str) -> tuple[str, str, str]:
    """The three parts cut (with '...') so that together they hold at most BODY_CHARS characters."""
    key = clip(" ".join(str(key).split()), KEY_CHARS)
    what, expected = " ".join(str(what).split()), " ".join(str(expected).split())  # one line
    room = BODY_CHARS - len(key)
    if len(what) + len(expected) > room:
        expected = clip(expected, max(room // 2, room - len(what)))
        what = clip(what, room - len(expected))
    return key, what, expected


def key_path(loc: tuple) -> str:
    """('space', 'lr', 'loguniform', 0) -> 'space.lr.low'; ('published', 0, 'match') -> 'published[0].match'."""
    parts = list(loc)
    if len(parts) == 4 and parts[0] == "space" and parts[2] in RANGE_KINDS and isinstance(parts[3], int):
        parts[2:] = [("low", "high")[parts[3]]]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "(top level)"


def from_validation(error: ValidationError) -> SpaceError:
    """The first problem of a SpaceFile ValidationError, in the SpaceError form."""
    e = error.errors(include_url=False)[0]
    loc, kind, value = e["loc"], e["type"], e.get("input")
    key = key_path(loc)
    if kind == "space":
        return SpaceError(key, e["ctx"]["what"], e["ctx"]["expected"])
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    annotation, info = _declared_at(loc)
    if kind == "missing":
        return SpaceError(key, "missing", _expected(annotation, info, described=True))
    if kind in ("too_short", "too_long"):
        length = e["ctx"]["actual_length"]
        return SpaceError(key, f"got {length} items" if length else "empty list", _expected(annotation, info))
    what = f"got {_quote(value)}"
    if kind == "literal_error" and isinstance(value, str) and len(value) <= QUOTE_CHARS:
        what += did_you_mean(value, get_args(without_none(annotation)))
    if kind == "string_pattern_mismatch":
        return SpaceError(key, what, info.description)
    return SpaceError(key, what, _expected(annotation, info))


def _unknown_key(loc: tuple) -> SpaceError:
    """A key its mapping does not declare: a misspelt field, a kind that does not fit, or a typo."""
    *parent, name = loc
    allowed = list(_model_at(tuple(parent)).model_fields)
    key = key_path(loc)
    if set(allowed) == set(FIELD_TYPES):
        return SpaceError(key, f"unknown TrainConfig field {brief(name)}" + _close(name, allowed),
                          "a TrainConfig field (`python -m simvp_core.train --help` lists them)")
    if parent and parent[0] == "space" and name in KINDS:
        field, plural = parent[-1], {int: "integers", float: "floats", str: "strings", bool: "booleans"}
        samples = "integers" if name == "int" else "floats"
        return SpaceError(key, f"{name} samples {samples} but {field} holds {plural[FIELD_TYPES[field][0]]}",
                          f"one of {', '.join(k for k in allowed if k in KINDS)}")
    if parent and parent[0] == "space":
        return SpaceError(key, "unknown param kind or option" + _close(name, allowed),
                          f"one of {', '.join(allowed)}")
    return SpaceError(key, "unknown key" + _close(name, allowed), f"one of {', '.join(allowed)}")


def _quote(value: Any) -> str:
    """show(value), its repr cut short when long: "'xxxxx...' (str)"."""
    text = show(value)
    if len(text) <= QUOTE_CHARS + 10:
        return text
    return brief(value) + ("" if isinstance(value, (int, float)) else f" ({type(value).__name__})")


def _close(name: Any, allowed: list[str]) -> str:
    """did_you_mean, for a name short enough to be a misspelling."""
    return did_you_mean(name, allowed) if len(str(name)) <= QUOTE_CHARS else ""


def _declared_at(loc: tuple) -> tuple[Any, FieldInfo | None]:
    """The annotation a SpaceFile declares at loc, and the model field declaring it (None for an item)."""
    annotation: Any = SpaceFile
    info = None
    for part in loc:
        annotation = without_none(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields[part]
            annotation = info.annotation
        else:  # list[X] or dict[str, X]: an item
            annotation, info = get_args(annotation)[-1], None
    return annotation, info


def _model_at(loc: tuple) -> type[BaseModel]:
    return without_none(_declared_at(loc)[0])


def _expected(annotation: Any, info: FieldInfo | None, described: bool = False) -> str:
    """What belongs at a key: a mapping, a list, or a scalar in words; with the field's help if asked."""
    base = without_none(annotation)
    constraints = tuple(info.metadata) if info else ()
    origin = get_origin(base) or base
    if isinstance(origin, type) and issubclass(origin, (BaseModel, dict)):
        words = "a mapping"
    elif origin is list:
        low = next((c.min_length for c in constraints if isinstance(c, at.MinLen)), None)
        high = next((c.max_length for c in constraints if isinstance(c, at.MaxLen)), None)
        words = f"a list of {low}" if low and low == high else f"a list of at least {low}" if low else "a list"
        described = True
    else:
        words = expectation(base, constraints)
    help_text = info.description if info is not None and described else None
    return f"{words} ({help_text})" if help_text else words
