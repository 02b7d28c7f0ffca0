"""`python -m search.run SPACE`: a search space on Ray Tune (grid, random or Optuna; ASHA),
tracked in MLflow, written to `runs/<name>/`, reported in `reports/<name>.md`."""

from __future__ import annotations

import sys
from collections.abc import Callable

from search.run.plan import UsageError, dry_run, make_plan
from simvp_core.oneline import print_error


def main(argv: list[str] | None = None, trainable: Callable[..., None] | None = None) -> int:
    """Plan, then run: exit code 2 with one line on stderr for a bad command line; `trainable`
    replaces search.trainable.train_trial (same signature) when given."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        plan = make_plan(argv)
    except UsageError as e:
        print_error(e)
        return 2
    if plan.dry_run:
        print(dry_run(plan))
        return 0
    from search.run.driver import run_search  # Ray, Optuna, MLflow and torch: only for a real run

    return run_search(plan) if trainable is None else run_search(plan, trainable)


__all__ = ["main"]
