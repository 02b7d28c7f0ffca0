"""search.safe_yaml: the one YAML reader of space and cluster files refuses, in one line naming the
place, what could not be read safely (anchors, deep nesting, long integers, non-string keys, huge
files, FIFOs); cluster files may use aliases, up to a bounded expansion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search import safe_yaml

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh"))


@pytest.mark.parametrize("text, where, what", [
    ("a:\n" + "".join(" " * i + "- \n" for i in range(0, 200, 2)), "line 65, column", "nested more than 64"),
    ("a: " + "[" * 5000 + "]" * 5000, "line 1, column", "nest"),  # libyaml's own limit may come first
    ("epochs: " + "9" * 5000, "line 1, column 9", "an integer of 5,000 digits"),
    ("1: 2", "line 1, column 1", "key 1 is a int"),
    ("base: {[a]: 1}", "line 1, column 8", "a list as a key"),
    ("a: &x 1\nb: *x", "line 1, column 4", "YAML anchor &x"),
    ("a: 1\na: 2", "line 2, column 1", "duplicate key 'a'"),
    ("a: [", "line ", "did not find expected node content"),
])
def test_what_cannot_be_read_safely_is_refused_naming_the_place(text, where, what) -> None:
    with pytest.raises(safe_yaml.YamlError) as info:
        safe_yaml.loads(text)
    assert info.value.where.startswith(where) and what in info.value.what, str(info.value)
    assert len(str(info.value)) < 300


def test_cluster_files_may_alias_until_the_expansion_is_too_large() -> None:
    assert safe_yaml.loads("a: &disk {size: 100}\nb: *disk", aliases=True) == {"a": {"size": 100}, "b": {"size": 100}}
    with pytest.raises(safe_yaml.YamlError, match="its aliases expand it to over 100,000 values"):
        safe_yaml.loads(LAUGHS, aliases=True)  # 10**8 values once expanded
    with pytest.raises(safe_yaml.YamlError, match="YAML anchor &a"):
        safe_yaml.loads(LAUGHS)  # a space file: none at all


def test_only_a_regular_utf8_file_within_the_limit_is_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "big.yaml").write_text("a: 1\n" + "# pad\n" * 1000)
    (tmp_path / "latin1.yaml").write_bytes("a: caf\xe9\n".encode("latin-1"))
    for name, words in (("fifo.yaml", "a FIFO (named pipe), not a regular space file"),
                        ("big.yaml", "over 1,000 bytes, refused unread"), ("latin1.yaml", "not UTF-8"),
                        ("missing.yaml", "no such space file")):
        with pytest.raises(safe_yaml.YamlError, match=words.replace("(", r"\(").replace(")", r"\)")):
            safe_yaml.load_file(tmp_path / name, 1000, "space file")
    assert safe_yaml.load_file(tmp_path / "big.yaml", 10_000, "space file") == {"a": 1}
