"""A space's GPU fraction reaches Ray's placement: on a Ray that declares one GPU, four trials of
`resources: {gpu: 0.25}` are placed together and run at once, as Tune itself records. The trials
train on the CPU (device cpu in the base), so no GPU is needed; the search is the real driver
(search.run.main) joining that Ray with --address, as on a cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import ray.cloudpickle

from search.run import main
from search.trainable import train_trial
from tests.search.faults import parse_faults, with_faults

pytestmark = pytest.mark.e2e
TRIALS = 4


@pytest.fixture(scope="module")
def one_gpu_ray() -> Iterator[str]:
    """A local Ray with 1 GPU and 4 CPUs declared (Ray takes declared resources as they are)."""
    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process; this test needs its own with num_gpus=1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=TRIALS, num_gpus=1, include_dashboard=False, log_to_driver=False)
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


def tune_trials(run_dir: Path) -> list[tuple[dict, dict]]:
    """(trial, runtime) of every trial in Tune's newest experiment-state snapshot."""
    snapshot = sorted((run_dir / "tune").glob("experiment_state-*.json"))[-1]
    return [(json.loads(trial), json.loads(runtime) if isinstance(runtime, str) else runtime)
            for trial, runtime in json.loads(snapshot.read_text())["trial_data"]]


def test_four_quarter_gpu_trials_are_placed_on_one_gpu_at_once(one_gpu_ray, tmp_path, write_space,
                                                               tune_record) -> None:
    space = write_space(tmp_path, "quarters", {"lr": {"grid": [1e-3, 2e-3, 3e-3, 4e-3]}},
                        base={"epochs": 1}, resources={"cpu": 1, "gpu": 0.25})
    slow = with_faults(train_trial, parse_faults("sleep_per_epoch=3"))  # long enough to overlap
    code = main([str(space), "--storage", str(tmp_path / "runs"), "--data-dir", "sample",
                 "--address", one_gpu_ray, "--reports-dir", str(tmp_path / "reports")], slow)
    assert code == 0
    run_dir = tmp_path / "runs" / "quarters"
    trials = tune_trials(run_dir)
    assert len(trials) == TRIALS and all(trial["status"] == "TERMINATED" for trial, _ in trials)
    for trial, _ in trials:  # the resources Tune asked Ray for, as Tune recorded them
        factory = ray.cloudpickle.loads(bytes.fromhex(trial["placement_group_factory"]))
        assert factory.bundles == [{"CPU": 1.0, "GPU": 0.25}]
    results = tune_record.results(run_dir)
    spans = []
    for trial, runtime in trials:
        last = results[trial["trial_id"]][-1]
        start = runtime["start_time"]  # when Tune started the trial, once Ray had placed it
        spans.append((start, start + last["time_total_s"]))  # the end: at least this late
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # one instant when all four ran
