"""`python -m search.run SPACE`: one search, from its command line to its report.

The stages, in order: plan (the command line checked into a Plan; --dry-run), driver (Ray and
Tune; resume on --resume, searchers, progress, interrupts, watchdog), rows (Tune's trials as
results rows), finish (results, MLflow, report). Importing this package loads neither Ray nor torch.
"""

from search.run.cli import main

__all__ = ["main"]
