"""`python -m search.space.json_schema`: the JSON Schema of a space file, derived from its pydantic
models (search.space.schema).

The committed copy is spaces/space.schema.json (every shipped space names it on its first line, for
editors); `--check` exits 1 when that copy is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from search.space.schema import SpaceFile
from simvp_core.oneline import OneLineParser

COMMITTED = Path(__file__).resolve().parents[2] / "spaces" / "space.schema.json"
SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
COMMAND = "python -m search.space.json_schema"


class _Generator(GenerateJsonSchema):
    """pydantic's JSON Schema less its noise: no titles echoing key names, no null default for a key
    that may only be left out."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: Any) -> dict[str, Any]:
        result = super().default_schema(schema)
        if "default" in result and result["default"] is None and {"type": "null"} not in result.get("anyOf", []):
            del result["default"]
        return result


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a space file, for editors (yaml-language-server) and other tools."""
    return {"$schema": SCHEMA_URI, **SpaceFile.model_json_schema(schema_generator=_Generator)}


def render() -> str:
    """The schema as committed: indented JSON, sorted keys, one trailing newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"compare with {COMMITTED.name} instead of printing")
    args = parser.parse_args(argv)
    if not args.check:
        sys.stdout.write(render())
        return 0
    if COMMITTED.exists() and COMMITTED.read_text() == render():
        return 0
    print(f"{COMMITTED} is stale: {COMMAND} > {COMMITTED}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
