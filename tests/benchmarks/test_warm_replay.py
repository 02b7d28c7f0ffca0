"""Warm start on the replay: the earlier search's completed trials reach the new study through the
platform's own warm start, and the cold-vs-warm numbers in benchmarks/RESULTS.md are what the
(deterministic) replay gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import replay, warm_replay
from search.run import warm

RESULTS = (Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md").read_text()
SECTION = RESULTS[RESULTS.index("## Warm start on the replay"):]
RECOMPUTED = 4  # replay seeds recomputed here: the whole table costs 5-7 CPU-seconds


@pytest.fixture(scope="module")
def curves():
    return replay.Curves.read()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_the_earlier_half_seeds_the_new_study_with_its_completed_trials_on_seed_0s_curves(curves):
    (source,) = warm_replay.earlier_search(curves, seed=5)
    assert source.seeds and source.ignored == () and source.not_completed == 0
    for seed in source.seeds:  # the recorded run of seed 0 only: the new search replays seed 1's
        values = curves.runs[(curves.key(seed.params), warm_replay.EARLIER[0])][0]
        assert seed.value == values[-1] and list(seed.curve.values()) == list(values)
    spec = curves.spec(5, replay.ASHA)
    searcher = warm_replay.seeded((source,), replay.ASHA, "warm").build(curves, spec, np.random.default_rng(5))
    told = searcher._ot_study.trials
    assert [t.params for t in told] == [s.params for s in source.seeds]
    assert all(t.user_attrs[warm.SOURCE_ATTR] == warm_replay.SOURCE for t in told)


def test_results_md_holds_what_the_replay_gives_for_tpe_asha_cold_and_warm(curves):
    """The first replay seeds recomputed equal RESULTS.md's per-seed values, whose medians and
    counts are the table's TPE + ASHA rows."""
    rows = [c for c in map(cells, SECTION.splitlines()) if c[0] in ("TPE + ASHA, cold", "TPE + ASHA, warm")]
    summary = {c[0]: c for c in rows if len(c) == 13}  # the table's rows
    stored = {c[0]: c[1:] for c in rows if len(c) == 21}  # per replay seed, 0-19
    found = warm_replay.replays(curves, list(range(RECOMPUTED)), searches=(("TPE + ASHA", replay.ASHA),))
    computed = [cells(line) for line in warm_replay.per_seed(curves, found).splitlines()[2:]]
    assert [c[0] for c in computed] == sorted(stored) == sorted(summary)
    for name, *values in computed:
        assert stored[name][:RECOMPUTED] == values, name
        reach = np.array([float("inf") if c == "never" else float(c) for c in stored[name]])
        assert summary[name][7].split(" ")[0] == replay.number(np.median(reach))  # "to 0.5%: median"
        assert summary[name][8] == f"{int(np.isfinite(reach).sum())}/{len(reach)}"  # "reached 0.5%"
