"""The one YAML reader of the platform's input files (space files and cluster launcher files): plain
data only (SafeLoader), read from a regular file of bounded size, and refused in one line
(`YamlError`: where, what, what was expected) when it could not be read safely:

anchors and aliases (`&x` / `*x`: a few lines of them expand to gigabytes once anything walks or
prints the data), duplicate keys, keys that are not strings, nesting deeper than MAX_DEPTH (which
would exhaust Python's recursion), integers of more than MAX_DIGITS digits, files over the caller's
byte limit, FIFOs and devices. Numbers such as 1e-3 read as floats (YAML 1.2), not as strings.

Space files refuse every anchor. Cluster files may use them (Ray's own examples and the shipped
ray_cluster.yaml share the AMI and disk between node types), but only while the data they expand
to stays under MAX_EXPANDED values: a billion laughs is refused as it is for space files.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from simvp_core.files import FileError, read_bytes

MAX_DEPTH = 64  # nested mappings and lists; a space or cluster file needs fewer than 10
MAX_DIGITS = 30  # an integer longer than this is no setting (2**64 has 20 digits)
MAX_EXPANDED = 100_000  # values a file with aliases may expand to (a cluster file has a few hundred)
QUOTE_CHARS = 60


class YamlError(ValueError):
    """A YAML file refused: `where` (line and column, or '(file)'), `what`, `expected`."""

    def __init__(self, where: str, what: str, expected: str) -> None:
        super().__init__(f"{where}: {what}; expected {expected}")
        self.where, self.what, self.expected = where, what, expected


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 3] + "..."


def load_file(path: str | Path, max_bytes: int, what: str = "YAML file", aliases: bool = False) -> Any:
    """The file's YAML as plain data; YamlError for anything refused (above), the file included.
    `aliases`: anchors and aliases allowed up to MAX_EXPANDED values (cluster files)."""
    try:
        raw = read_bytes(path, max_bytes, what)
    except FileError as e:
        reason = str(e).split(": ", 1)[-1]
        raise YamlError("(file)", reason, f"a readable {what} of at most {max_bytes:,} bytes") from None
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise YamlError("(file)", f"not UTF-8 ({e.reason} at byte {e.start})", f"a UTF-8 {what}") from None
    return loads(text, aliases)


def loads(text: str, aliases: bool = False) -> Any:
    """YAML text as plain data; YamlError for anything refused (above)."""
    try:
        return yaml.load(text, Loader=_AliasLoader if aliases else _Loader)  # SafeLoaders: plain data only
    except _Refused as e:
        raise YamlError(_at(e.mark), e.what, e.expected) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        expected = "each key once per mapping" if "duplicate key" in str(e.problem) else "valid YAML"
        raise YamlError(_at(mark), " ".join(str(e.problem or e.context).split()), expected) from None
    except yaml.YAMLError as e:
        raise YamlError("(yaml)", " ".join(str(e).split())[:200], "valid YAML") from None
    except RecursionError:  # a guard of last resort: MAX_DEPTH refuses nesting before this
        raise YamlError("(yaml)", "nested too deeply", f"at most {MAX_DEPTH} levels") from None


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"


class _Refused(Exception):
    """Something the loader refuses before constructing it."""

    def __init__(self, what: str, expected: str, mark: Any) -> None:
        super().__init__(what)
        self.what, self.expected, self.mark = what, expected, mark


if yaml.__with_libyaml__:  # libyaml's scanner and parser (C, about 3x faster), our composer and constructor
    from yaml._yaml import CParser

    class _Base(Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
else:  # pragma: no cover (wheels of PyYAML ship libyaml)
    _Base = yaml.SafeLoader


class _Loader(_Base):
    """A safe loader (plain data only) that refuses anchors, aliases, deep nesting, long integers,
    duplicate and non-string keys, and reads 1e-3 as a float (YAML 1.2)."""

    aliases = False

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and not self.aliases:
            raise _Refused(f"YAML alias *{_brief(event.anchor)[1:-1]}",
                           "no YAML anchors or aliases: write each value out where it is used", event.start_mark)
        if getattr(event, "anchor", None) is not None and not self.aliases:
            raise _Refused(f"YAML anchor &{_brief(event.anchor)[1:-1]}",
                           "no YAML anchors or aliases: write each value out where it is used", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", "a flatter file", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_DIGITS:
            raise _Refused(f"an integer of {digits:,} digits", f"a number of at most {MAX_DIGITS} digits",
                           node.start_mark)
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                shown = f"a {type(key).__name__} as a key" if isinstance(key, (list, dict)) else (
                    f"key {_brief(key)} is a {type(key).__name__}")
                raise _Refused(shown, "string keys (quote it)", key_node.start_mark)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_brief(key)}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _AliasLoader(_Loader):
    """_Loader that allows anchors and aliases while the document expands to at most MAX_EXPANDED values."""

    aliases = True

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            try:
                count = _expanded(node, {}, set())
            except RecursionError:
                count = MAX_EXPANDED + 1
            if count > MAX_EXPANDED:
                raise _Refused(f"its aliases expand it to over {MAX_EXPANDED:,} values",
                               "fewer aliases (write the values out)", node.start_mark)
        return node


def _expanded(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values the node stands for once every alias is written out (memoised by node, so
    linear in the file; a node that contains itself counts as too many)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        return MAX_EXPANDED + 1
    open_.add(key)
    children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
        node.value if isinstance(node, yaml.SequenceNode) else [])
    total = 1
    for child in children:
        total += _expanded(child, sizes, open_)
        if total > MAX_EXPANDED:
            break
    open_.discard(key)
    sizes[key] = total
    return total


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))

__all__ = ["YamlError", "load_file", "loads", "MAX_DEPTH", "MAX_DIGITS"]
