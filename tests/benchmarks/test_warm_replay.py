"""Warm start on the replay: the earlier search's completed trials reach the new study through the
platform's own warm start, and the cold-vs-warm rows in benchmarks/RESULTS.md are what the
(deterministic) replay gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import replay, warm_replay
from search.run import warm

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"


@pytest.fixture(scope="module")
def curves():
    return replay.Curves.read()


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


def test_the_tpe_asha_rows_in_results_md_are_what_the_replay_gives(curves):
    """The shipped search's pair (TPE + ASHA, cold and warm) over RESULTS.md's 20 replay seeds."""
    rows = warm_replay.warm_table(curves, list(range(20)), searches=(("TPE + ASHA", replay.ASHA),))
    computed = replay.markdown(rows).splitlines()[2:]
    assert len(computed) == 2 and all(line in RESULTS.read_text().splitlines() for line in computed), computed
