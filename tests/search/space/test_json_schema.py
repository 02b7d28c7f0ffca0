"""search.space.json_schema: the committed JSON Schema is the generated one, accepts every shipped space and
rejects the broken ones a schema can see (one key at a time), as the pydantic models do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from search.space import SpaceError, read_yaml
from search.space.json_schema import COMMAND, COMMITTED, render
from search.space.schema import SpaceFile
from simvp_core.config import TrainConfig

REPO = Path(__file__).resolve().parents[3]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))
BROKEN = sorted((Path(__file__).parent / "broken_spaces").glob("*.yaml"))
# The broken files a JSON Schema rejects: one key's type, bounds, choices or spelling. The others
# break a rule across keys (conditions, points, reachability, budgets, models) or are not YAML.
SCHEMA_LEVEL = {
    "base_act_relu", "base_epochs_zero", "base_lr_infinite", "budget_unknown_key", "budget_zero", "cpu_zero",
    "empty_values", "gpu_negative", "grid_value_invalid", "keep_checkpoints_unknown", "loguniform_low_zero",
    "low_not_a_number", "missing_search", "not_a_mapping", "null_value", "test_metric", "uniform_on_int_field",
    "unknown_field_in_base", "unknown_field_in_space", "unknown_kind", "unknown_metric", "unknown_top_level_key"}
NOT_YAML = {"broken_yaml", "duplicate_key"}


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_the_generated_one():
    assert COMMITTED.read_text() == render(), f"regenerate: {COMMAND} > spaces/space.schema.json"


def test_the_cli_prints_it_and_checks_the_committed_copy():
    run = [sys.executable, "-m", "search.space.json_schema"]
    printed = subprocess.run(run, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert printed == COMMITTED.read_text()
    assert subprocess.run([*run, "--check"], cwd=REPO).returncode == 0


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_shipped_space_names_the_schema_and_passes_it(path, validator):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=space.schema.json"
    assert [e.message for e in validator.iter_errors(read_yaml(path))] == []


def test_the_schema_carries_trainconfig_declarations():
    defs = json.loads(COMMITTED.read_text())["$defs"]
    for name, info in TrainConfig.model_fields.items():
        assert defs["Settings"]["properties"][name]["description"] == info.description
        assert name in defs["Space"]["properties"] and name in defs["Values"]["properties"]
    epochs = defs["Values"]["properties"]["epochs"]
    assert (epochs["type"], epochs["minimum"], epochs["maximum"]) == ("integer", 1, 100_000)
    assert defs["Param_act"]["properties"]["grid"]["items"]["enum"] == ["gelu", "starrelu"]
    assert "uniform" not in defs["Param_batch_size"]["properties"]  # ranges only of the field's type
    assert defs["Settings"]["properties"]["lr"]["exclusiveMinimum"] == 0


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_the_schema_rejects_exactly_the_single_key_breaks(path, validator):
    if path.stem in NOT_YAML:
        with pytest.raises(SpaceError):
            read_yaml(path)
        return
    data = read_yaml(path)
    rejected = any(True for _ in validator.iter_errors(data))
    assert rejected == (path.stem in SCHEMA_LEVEL)
    try:  # the pydantic models, which the schema is generated from, draw the same line
        SpaceFile.model_validate(data)
        by_models = False
    except ValidationError:
        by_models = True
    assert by_models == rejected


def test_a_representative_part_of_the_corpus_is_schema_level():
    stems = {p.stem for p in BROKEN}
    assert SCHEMA_LEVEL <= stems and NOT_YAML <= stems
    assert len(SCHEMA_LEVEL) >= 15
