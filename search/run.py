"""`python -m search.run SPACE`: a search space on Ray Tune (grid, random or Optuna; ASHA),
tracked in MLflow, written to `runs/<name>/`, reported in `reports/<name>.md`.

The stages: search.plan (the command line, checked, as a Plan; --dry-run), search.driver (Ray
and Tune), search.resume (a killed search continued), search.finish (results, MLflow, report).
"""

from __future__ import annotations

import sys
from typing import Callable

from search import lock
from search.plan import UsageError, dry_run, make_plan


def main(argv: list[str] | None = None, trainable: Callable[..., None] | None = None) -> int:
    """Plan, then run: exit code 2 with one line on stderr for a bad command line; `trainable`
    replaces search.trainable.train_trial (same signature) when given."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        plan = make_plan(argv)
    except UsageError as e:
        # a run folder in use by a running search: say who holds it rather than what it holds
        print(f"error: {_holder(argv) or e}", file=sys.stderr)
        return 2
    if plan.dry_run:
        print(dry_run(plan))
        return 0
    try:  # a quick look before Ray starts; the driver takes the lock itself, atomically
        lock.check(plan.run_dir, takeover=plan.resume)
    except lock.LockHeld as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from search.driver import run_search  # Ray, Optuna, MLflow and torch: only for a real run

    return run_search(plan) if trainable is None else run_search(plan, trainable)


def _holder(argv: list[str]) -> str | None:
    """Why the run folder named by argv cannot be used when a live (or uncheckable) search holds
    its lock; None otherwise, or when argv names no run folder."""
    from search import plan as planning

    try:
        args = planning.build_parser().parse_args(argv)
        name = planning.check_name(args.name or planning.load_spec(args.space, args.smoke).experiment)
        lock.check(planning.local_root(args.storage) / name, takeover=True)
    except lock.LockHeld as e:
        return str(e)
    except (Exception, SystemExit):
        return None
    return None


if __name__ == "__main__":
    sys.exit(main())
