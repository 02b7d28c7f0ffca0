"""Offline check of Ray cluster launcher files (`ray_cluster*.yaml`) with Ray's own validator.

`python -m search.cluster_files FILE...` prints OK or the error per file and exits 0 when all
pass, 2 otherwise: a broken file is caught before `ray up` starts paying for machines.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config


def _ray_message(error: Exception) -> str:
    """Ray's complaint as one line: schema errors give their key path, KeyErrors the missing key."""
    if isinstance(error, jsonschema.ValidationError):
        where = ".".join(str(part) for part in error.absolute_path)
        return f"{where}: {error.message}" if where else error.message
    if isinstance(error, KeyError):
        return f"missing key {error}"
    return str(error) or type(error).__name__


def validate_cluster_file(path: str | Path) -> dict[str, Any]:
    """Validate a cluster file as `ray up` would, offline; return Ray's prepared config.

    Raises ValueError naming the file and giving Ray's message when Ray rejects it.
    """
    path = Path(path)
    with path.open() as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a YAML mapping with cluster_name, provider, ...; "
                         f"got {type(raw).__name__}")
    try:
        prepared = prepare_config(copy.deepcopy(raw))
        validate_config(prepared)
    except Exception as error:  # Ray raises schema, Value, Key, Runtime and click errors alike
        raise ValueError(f"{path}: rejected by Ray's cluster validator: "
                         f"{_ray_message(_located(error, raw))}") from error
    return prepared


def _located(error: Exception, raw: dict[str, Any]) -> Exception:
    """For a KeyError (prepare_config reads required keys before the schema check), the schema's
    own error on the raw file, which says where the key is missing; else the error itself."""
    if isinstance(error, KeyError):
        try:
            validate_config(copy.deepcopy(raw))
        except jsonschema.ValidationError as schema_error:
            return schema_error
        except Exception:  # the schema passed; Ray's later checks need a prepared config
            pass
    return error


def main(argv: list[str] | None = None) -> int:
    """Check each file; 0 when all pass, 2 when any is rejected or unreadable."""
    parser = argparse.ArgumentParser(prog="python -m search.cluster_files",
                                     description="Validate Ray cluster launcher files offline.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="e.g. ray_cluster.yaml")
    args = parser.parse_args(argv)
    status = 0
    for name in args.files:
        try:
            validate_cluster_file(name)
        except (ValueError, OSError) as error:
            print(f"ERROR {error}")
            status = 2
        else:
            print(f"OK {name}")
    return status


if __name__ == "__main__":
    sys.exit(main())
