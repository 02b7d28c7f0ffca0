"""Search space files: a YAML file validated, all of it, into a frozen SearchSpec before anything runs.

The format is documented in spaces/README.md; every key and value type under `base`, `space` and
the points comes from TrainConfig's own declarations (simvp_core.config).
"""

from search.space.errors import SpaceError
from search.space.explain import explain
from search.space.parse import load_space, parse_space, read_yaml
from search.space.sampling import optuna_space
from search.space.smoke import SMOKE_CAPS, scale_to_smoke
from search.space.spec import Param, SearchSpec, matches

__all__ = ["SMOKE_CAPS", "Param", "SearchSpec", "SpaceError", "explain", "load_space", "matches", "optuna_space",
           "parse_space", "read_yaml", "scale_to_smoke"]
