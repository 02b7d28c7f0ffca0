"""benchmarks.training's arithmetic on known inputs: the speed-up over plain per round, the scaling of
concurrent trials, the counted TFLOP/s and the GMACs it counts them from."""

from __future__ import annotations

import pytest

from benchmarks.training import counted_tflops, gmacs, scaling, speedup

TINY_MODEL = {"c_s": 4, "c_t": 8, "n_t": 2}  # the smoke test's and the GPU check rehearsal's model


def test_the_speedup_is_the_median_of_the_rounds_ratios_not_the_ratio_of_the_medians():
    # rounds: 2/1, 6/2, 3/3 -> ratios 2, 3, 1 -> median 2; the medians' ratio would be 3/2 = 1.5,
    # the mean ratio 2.5
    assert speedup([2.0, 6.0, 3.0], [1.0, 2.0, 3.0]) == 2.0
    assert speedup([5.0, 1.0], [1.0, 1.0]) == 3.0  # an even number of rounds: the middle two's mean
    with pytest.raises(ValueError):  # a path with a window missing is a bug, not a shorter median
        speedup([1.0, 2.0], [1.0])


def test_scaling_divides_by_one_trials_aggregate_and_by_the_number_of_trials():
    rows = scaling([{"trials": 1, "aggregate seq/s": 10.0}, {"trials": 2, "aggregate seq/s": 16.0},
                    {"trials": 4, "aggregate seq/s": 20.0}])
    assert [r["aggregate/1 trial"] for r in rows] == pytest.approx([1.0, 1.6, 2.0])
    assert [r["fraction of linear"] for r in rows] == pytest.approx([1.0, 0.8, 0.5])


def test_counted_tflops_are_six_flops_a_mac_per_sequence():
    # 2.5 GMACs/seq x 2 FLOPs/MAC x 3 (forward + backward) x 4 seq/s = 60 GFLOP/s
    assert counted_tflops(2.5, 4.0) == pytest.approx(0.06)


def test_gmacs_count_the_preset_with_the_overrides():
    assert gmacs("simvpv2") == pytest.approx(2.783, abs=5e-4)  # RESULTS.md's training table
    assert gmacs("poolformer") == pytest.approx(2.456, abs=5e-4)
    assert gmacs("simvpv2", TINY_MODEL) == pytest.approx(0.030179328)  # meta-device count, pinned
