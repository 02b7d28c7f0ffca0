"""`python -m benchmarks.warm_replay [--seeds N]`: warm start measured on the replay
(benchmarks.replay): a search seeded with an earlier search's completed trials against the same
search started cold.

For each replay seed, an earlier search (TPE + ASHA, half the grid's budget, its own sampler seed)
runs on one half of the recorded runs (seed 0's curves); its completed trials become results rows
and go through the platform's own warm start (`search.run.warm.match`, then `.trials` into the
study, as `search.run.driver.searcher` does). The new search runs on the other half (seed 1's
curves), so nothing the earlier one saw is replayed to it; cold and warm share the replay seed and
differ only by the seeding. Each is scored as benchmarks.replay scores a search: on its own
completed trials (the seeds are not its results), against the grid's best mean over both seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import cpu_model
from benchmarks.replay import (
    ASHA,
    BUDGET,
    CURVES,
    METRIC,
    RESUMABLE,
    TARGETS,
    Curves,
    Method,
    Outcome,
    markdown,
    optuna_searcher,
    replay,
    summary,
)
from benchmarks.replay import per_seed as replay_per_seed
from search.run import warm
from search.space import SearchSpec

EARLIER, LATER = (0,), (1,)  # recorded seeds: the earlier search's half, the new search's half
EARLIER_BUDGET = BUDGET // 2
EARLIER_SEED = 1000  # added to the replay seed: the earlier search's sampler and draws
SOURCE = "earlier half"
SEARCHES = (("TPE", None), ("TPE + ASHA", ASHA))  # each run cold and warm


def earlier_rows(curves: Curves, spec: SearchSpec, outcome: Outcome) -> list[dict[str, Any]]:
    """The earlier search's completed trials as results.parquet rows (the fields warm start reads)."""
    rows = []
    for i, (_, key, value) in enumerate(outcome.completed):
        config = dict(zip(curves.names, key))
        history = [{"epoch": e, METRIC: float(v)} for e, v in enumerate(curves.runs[(key, EARLIER[0])][0], 1)]
        rows.append({"trial_id": f"earlier_{i:05d}", "status": "completed",
                     **spec.trial_config(config).to_dict(), METRIC: float(value),
                     "history": json.dumps(history)})
    return rows


def seeded(sources: tuple[warm.Source, ...], asha: tuple[int, int] | None, name: str) -> Method:
    """TPE (+ ASHA) whose study is seeded with `sources` before its first suggestion."""
    def build(curves: Curves, spec: SearchSpec, rng: np.random.Generator) -> Any:
        searcher = optuna_searcher(spec, "optuna", RESUMABLE)
        searcher.seed(warm.trials(spec, sources))
        return searcher
    return Method(name, build, asha)


def cold(asha: tuple[int, int] | None, name: str) -> Method:
    return Method(name, lambda curves, spec, rng: optuna_searcher(spec, "optuna", RESUMABLE), asha)


def earlier_search(curves: Curves, seed: int) -> tuple[warm.Source, ...]:
    """The earlier half-budget TPE + ASHA search on seed 0's curves, as the warm start reads it."""
    method = cold(ASHA, "earlier")
    outcome = replay(curves, method, seed + EARLIER_SEED, budget=EARLIER_BUDGET, recorded=EARLIER)
    spec = curves.spec(seed + EARLIER_SEED, ASHA)
    return (warm.match(spec, earlier_rows(curves, spec, outcome), SOURCE, Path("replay/earlier")),)


@dataclass
class Replays:
    """The new searches' outcomes by row name ('TPE + ASHA, warm'), and the trials each seeding told."""

    outcomes: dict[str, list[Outcome]]
    seeded: list[int]


def replays(curves: Curves, seeds: list[int], searches: tuple[tuple[str, Any], ...] = SEARCHES) -> Replays:
    """Per replay seed: the earlier search, then each (label, ASHA or None) of `searches` cold and warm."""
    found = Replays({}, [])
    for seed in seeds:
        sources = earlier_search(curves, seed)
        found.seeded.append(len(sources[0].seeds))
        for label, asha in searches:
            for start, method in (("cold", cold(asha, label)), ("warm", seeded(sources, asha, label))):
                found.outcomes.setdefault(f"{label}, {start}", []).append(
                    replay(curves, method, seed, recorded=LATER))
    return found


def warm_table(curves: Curves, found: Replays) -> list[dict[str, Any]]:
    """A summary row per search, as benchmarks.replay's table, with the trials seeded (median)."""
    return [{"search": name, "seeded trials": float(np.median(found.seeded)) if name.endswith("warm") else 0.0,
             **summary(curves, outcomes)} for name, outcomes in found.outcomes.items()]


def per_seed(curves: Curves, found: Replays, label: str = "TPE + ASHA") -> str:
    """Trial-epochs to within 0.5 % of the best per replay seed, `label` cold and warm: what the
    medians of its rows summarise (a test recomputes the first seeds)."""
    return replay_per_seed(curves, {f"{label}, {start}": found.outcomes[f"{label}, {start}"]
                                    for start in ("cold", "warm")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warm_replay",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="replay seeds (default 20)")
    parser.add_argument("--curves", type=Path, default=CURVES,
                        help="recorded curves (default benchmarks/curves.parquet)")
    args = parser.parse_args(argv)
    begun = time.perf_counter()
    curves = Curves.read(args.curves)
    print(f"curves: {args.curves}; earlier search: TPE + ASHA {ASHA}, {EARLIER_BUDGET} trial-epochs on "
          f"recorded seed {EARLIER[0]}; new search: {BUDGET} trial-epochs on recorded seed {LATER[0]}; "
          f"{args.seeds} replay seeds\n")
    found = replays(curves, list(range(args.seeds)))
    print(markdown(warm_table(curves, found)))
    print(f"\nTrial-epochs to within {TARGETS[-1]:.1%} of the best, per replay seed:\n")
    print(per_seed(curves, found))
    print(f"\n{time.perf_counter() - begun:.1f} s on {cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
