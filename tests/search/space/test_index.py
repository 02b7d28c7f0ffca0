"""search.space.index: lookups by `same` (floats within tolerance, True never 1) that keep every
check of a space file linear: duplicates in long choice lists, values among a param's, the trials a
published row reaches, the published row a configuration matches."""

from __future__ import annotations

import json

import pytest

from search.space import SpaceError, load_space
from search.space.index import RowIndex, SameIndex, lowest, same


def test_positions_are_found_as_same_finds_them() -> None:
    values = [0.1, 1, True, "gelu", None, 0.30000000000000004, 2.5e-12, [1, 2]]
    index = SameIndex(values)
    probes = [0.1 + 1e-13, 1.0, 1, True, False, "gelu", None, 0.3, 0.0, 2.6e-12, 5e-12, [1, 2], "1"]
    for probe in probes:
        expected = sum(1 << i for i, v in enumerate(values) if same(probe, v))
        assert index.rows(probe) == expected, probe
    assert index.first(1.0) == 1 and index.first(True) == 2 and index.first("relu") is None


def test_rows_match_a_configuration_key_by_key() -> None:
    published = [{"lr": 0.01, "act": "gelu"}, {"lr": 0.01}, {"act": "starrelu"}]
    rows = RowIndex(published)
    assert lowest(rows.matching({"lr": 0.01 + 1e-14, "act": "gelu"})) == 0
    assert lowest(rows.matching({"lr": 0.01, "act": "starrelu"})) == 1
    assert rows.matching({"lr": 0.02, "act": "starrelu"}) == 0b100
    assert rows.matching({"lr": 0.02}) == 0


def test_a_long_choice_list_and_many_published_rows_are_checked_exactly(tmp_path) -> None:
    """4,000 choices, as many listed trials and 800 published rows: the duplicate is named by its
    index, and every row is matched against every listed trial (each check linear; the red team's
    larger files took minutes before, see benchmarks/redteam.py)."""
    values = [round(0.001 + i * 1e-6, 9) for i in range(4_000)]
    doc = {"experiment": "long", "base": {"epochs": 1},
           "space": {"lr": {"choice": values}},
           "search": {"algorithm": "random", "num_samples": 4_000,
                      "points_to_evaluate": [{"lr": v} for v in values]},
           "published": [{"match": {"lr": v}, "source": f"row {i}", "mse": 1.0}
                         for i, v in enumerate(values[::5])]}
    path = tmp_path / "long.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML, and quick to write
    spec = load_space(path)
    assert len(spec.published) == 800 and len(spec.points_to_evaluate) == 4_000
    doc["space"]["lr"]["choice"] = values + [values[1234] + 1e-15]  # the same as settings
    path.write_text(json.dumps(doc))  # JSON is YAML, and quick to write
    with pytest.raises(SpaceError, match=r"space.lr.choice\[4000\]: duplicate value 0.002234"):
        load_space(path)
