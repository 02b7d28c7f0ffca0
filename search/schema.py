"""`python -m search.schema`: the JSON Schema of a space file, derived from its pydantic models.

The committed copy is spaces/space.schema.json (every shipped space names it on its first line, for
editors); `--check` exits 1 when that copy is stale.
"""

import json
import sys
from pathlib import Path

from search.space.schema import json_schema
from simvp_core.oneline import OneLineParser

COMMITTED = Path(__file__).resolve().parents[1] / "spaces" / "space.schema.json"


def render() -> str:
    """The schema as committed: indented JSON, sorted keys, one trailing newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m search.schema", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"compare with {COMMITTED.name} instead of printing")
    args = parser.parse_args(argv)
    if not args.check:
        sys.stdout.write(render())
        return 0
    if COMMITTED.exists() and COMMITTED.read_text() == render():
        return 0
    print(f"{COMMITTED} is stale: python -m search.schema > {COMMITTED}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
