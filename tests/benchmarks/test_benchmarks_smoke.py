"""The benchmark command at minimal sizes: table structure, positive finite numbers, JSON written.

The training table runs as the command runs it, each path in its own spawned process taking turns.
No timing is asserted (the numbers depend on the machine and its load). The platform-overhead
table starts Ray and is left out of the run (skip), but its space file and timer are tested; the
concurrency table is GPU only in the command; its function runs on the CPU in the GPU check's
rehearsal (test_gpu_check.py).
"""

import json
import math
import multiprocessing
import sys

import pytest
import torch
import yaml

from benchmarks import run as bench
from benchmarks.overhead import TINY_TRAINING, overhead_space, time_command
from benchmarks.replay import BUDGET, METHODS
from benchmarks.training import Budget
from simvp_core.config import TrainConfig
from simvp_core.execution import choose

TINY_MODEL = {"c_s": 4, "c_t": 8, "n_t": 2}
SIZES = bench.Sizes(presets=["simvpv2"], paths=["plain", "default"],  # the two the table requires
                    budget=Budget(1, 2), augment_kinds=["none", "crop+flip"], data_batches=2,
                    eval_n=4, eval_batch=4, windows=2, replay_seeds=2, batch_size=2)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out" / "results.json"
    res = bench.run(torch.device("cpu"), quick=True, out=out, data_dir="sample", skip={"overhead"},
                    sizes=SIZES, overrides=TINY_MODEL, command="test")
    assert multiprocessing.active_children() == []  # every path's process ended
    return res, out


def test_json_is_written_with_machine_and_every_table_not_skipped(result):
    res, out = result
    written = json.loads(out.read_text())
    assert set(written["tables"]) == {"training", "data", "evaluation", "concurrency", "search"}
    assert written["machine"]["cores"] >= 1 and written["machine"]["torch"] == torch.__version__
    assert written["machine"]["cpu"] and positive(written["wall_s"])
    assert all(t["note"] for t in written["tables"].values())


def test_training_table_has_a_row_per_preset_measured_by_a_process_per_path(result):
    res, out = result
    rows = res["tables"]["training"]["rows"]
    assert rows == json.loads(out.read_text())["tables"]["training"]["rows"]  # as written
    assert [r["preset"] for r in rows] == SIZES.presets
    for row in rows:
        for path in SIZES.paths:
            assert positive(row[f"{path} seq/s"]), path
            assert len(row["windows"][path]) == SIZES.budget.windows
            assert all(map(positive, row["windows"][path])) and positive(row["warm-up seq/s"][path])
        assert positive(row["default/plain"])
        # a peak memory per path: only a path that had a process to itself reports one
        assert positive(row["plain peak MiB"]) and positive(row["default peak MiB"])
        assert positive(row["GMACs/seq"]) and positive(row["default TFLOP/s"])
        assert "default % of peak" not in row  # CPU: no peak FLOP/s to compare with
        # what each path ran, as its trainer said it
        assert row["precision"]["plain"] == "fp32, contiguous"
        assert row["precision"]["default"] == choose(TrainConfig(), torch.device("cpu")).precision


def test_the_training_note_says_what_each_path_ran(result):
    note = result[0]["tables"]["training"]["note"]
    assert "plain = fp32, contiguous; default = " in note


def test_data_table_compares_generation_with_the_trainers_consumption(result):
    res = result[0]
    rows = res["tables"]["data"]["rows"]
    consumed = {r["preset"]: r["default seq/s"] for r in res["tables"]["training"]["rows"]}
    assert [(r["augment"], r["preset"]) for r in rows] == [
        (k, p) for k in SIZES.augment_kinds for p in SIZES.presets]
    for row in rows:
        assert row["trainer seq/s"] == consumed[row["preset"]]
        assert positive(row["generated seq/s"])
        # making a batch costs a small share of a training step (RESULTS.md: 0.1-0.3 %): the ratios
        # point the right way
        assert row["generated/consumed"] > 2 and 0 < row["data % of step"] < 50


def test_evaluation_table_has_metrics_only_then_one_row_per_preset(result):
    rows = result[0]["tables"]["evaluation"]["rows"]
    assert rows[0]["preset"] == "-" and [r["preset"] for r in rows[1:]] == SIZES.presets
    assert all(positive(r["seq/s"]) for r in rows)


def test_concurrency_needs_a_gpu_and_says_so_on_cpu(result):
    table = result[0]["tables"]["concurrency"]
    assert table["rows"] == [] and "GPU" in table["skipped"]


def test_search_table_replays_the_recorded_curves_for_every_method(result):
    table = result[0]["tables"]["search"]
    assert "curves.parquet" in table["note"]
    assert [r["search"] for r in table["rows"]] == [m.name for m in METHODS]
    for row in table["rows"]:
        assert 0 < row["spent"] <= BUDGET
        assert row["reached 2.0%"].endswith(f"/{SIZES.replay_seeds}")


def test_overhead_space_is_a_valid_one_trial_grid_of_the_same_training(tmp_path):
    from search.space import load_space

    base = {**TINY_TRAINING, "device": "cpu"}
    path = tmp_path / "overhead.yaml"
    path.write_text(yaml.safe_dump(overhead_space(base, gpu=0)))
    spec = load_space(path)
    assert spec.algorithm == "grid" and spec.scheduler == "none"
    (point,) = spec.grid_points()
    assert spec.trial_config(point) == TrainConfig(**base)


def test_time_command_times_the_first_epoch_line_and_reports_failures():
    timed = time_command([sys.executable, "-c", "import time; print('epoch 1/2', flush=True); "
                                                "time.sleep(0.5)"],
                         first_epoch=lambda line: line.startswith("epoch 1/"))
    assert 0 < timed["first_epoch_s"] < timed["wall_s"]
    with pytest.raises(RuntimeError, match="exited with 3"):
        time_command([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
