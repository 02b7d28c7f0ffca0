"""search.run on a real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`): a
head without CPUs, so every trial runs on one of two 1-CPU worker nodes, each its own raylet.
The drivers run in-process through main(argv) and join the cluster with --address."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from search import runfolder
from search.run import main
from search.run.cluster import check_storage
from search.runfolder import results
from search.trainable import train_trial
from tests.search.faults import parse_faults, with_faults

EPOCHS = 3
TINY = {"preset": "simvpv2", "c_s": 4, "c_t": 8, "n_t": 2, "train_size": 8, "val_size": 4,
        "test_size": 4, "batch_size": 4, "eval_batch_size": 4}
GRID = {"lambda_gdl": {"grid": [0.0, 0.5, 1.0, 1.5]}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Head (0 CPUs) + 2 worker nodes (1 CPU each), shared by the tests of this module."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")  # a local test cluster: no token authentication
        mp.delenv("RAY_ADDRESS", raising=False)
        # Cluster records its address in /tmp/ray/ray_current_cluster, where any ray.init() without
        # an address on this machine would find and join it: keep it private to these tests
        mp.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
        mp.setattr(ray._common.utils, "reset_ray_address", lambda *a, **k: None)
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        try:
            for _ in range(2):
                c.add_node(num_cpus=1)
            c.wait_for_nodes()
            yield c
        finally:
            c.shutdown()


def worker_ids(cluster: Any) -> set[str]:
    return {node.node_id for node in cluster.worker_nodes}


def search_args(space: Path, storage: Path, mnist_dir: Path, cluster: Any, *extra: Any) -> list[str]:
    return [str(a) for a in (space, "--storage", storage, "--data-dir", mnist_dir, "--address",
                             cluster.address, "--reports-dir", storage / "reports", *extra)]


def reported(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Tune's record so far: trial_id -> every result reported (result.json), in order."""
    out = {}
    for path in (run_dir / "tune").glob("*/result.json"):
        try:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, ValueError):  # a line being written
            continue
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def test_check_storage_refuses_only_a_local_unshared_folder_on_several_nodes() -> None:
    with pytest.raises(ValueError, match=r"s3:// or gs://.*--shared-storage") as e:
        check_storage("runs", shared=False, n_nodes=3)
    assert "runs" in str(e.value) and "3 live nodes" in str(e.value) and "\n" not in str(e.value)
    check_storage("runs", shared=False, n_nodes=1)
    check_storage("/mnt/shared/runs", shared=True, n_nodes=3)
    check_storage("s3://bucket/runs", shared=False, n_nodes=3)


@pytest.mark.e2e
def test_a_local_storage_folder_is_refused_on_a_multi_node_cluster(
        cluster: Any, tmp_path: Path, mnist_dir: Path, write_space, capsys) -> None:
    space = write_space(tmp_path, "local", GRID, base=TINY)
    storage = tmp_path / "runs"
    assert main(search_args(space, storage, mnist_dir, cluster)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --storage {storage}")
    assert "3 live nodes" in err[0] and "--shared-storage" in err[0]
    assert not storage.exists()


@pytest.mark.e2e
def test_a_search_spreads_its_trials_over_the_worker_nodes(
        cluster: Any, tmp_path: Path, mnist_dir: Path, write_space, capsys) -> None:
    space = write_space(tmp_path, "spread", GRID, base={**TINY, "epochs": 1})
    storage = tmp_path / "runs"
    assert main(search_args(space, storage, mnist_dir, cluster, "--shared-storage")) == 0
    assert "Ray cluster: 3 nodes, 2 CPUs, 0 GPUs" in capsys.readouterr().out
    df = results.read(storage / "spread")
    assert sorted(df["lambda_gdl"]) == [0.0, 0.5, 1.0, 1.5] and (df["status"] == "completed").all()
    nodes = set(df["node_id"])
    assert len(nodes) == 2 and nodes <= worker_ids(cluster)
    assert cluster.head_node.node_id not in nodes


@pytest.mark.e2e
def test_a_search_survives_losing_a_worker_node(
        cluster: Any, tmp_path: Path, mnist_dir: Path, write_space, record_property) -> None:
    """Kill the node of a trial between its epochs (a 2 s sleep before each), add a fresh node:
    the trial continues from its last checkpoint elsewhere; no trial is lost or run twice."""
    from mlflow.tracking import MlflowClient

    start = time.monotonic()
    space = write_space(tmp_path, "nodeloss", GRID, base={**TINY, "epochs": EPOCHS}, max_failures=2)
    storage = tmp_path / "runs"
    run_dir = storage / "nodeloss"
    outcome: dict[str, Any] = {}

    def drive() -> None:
        try:
            outcome["code"] = main(search_args(space, storage, mnist_dir, cluster, "--shared-storage"),
                                   with_faults(train_trial, parse_faults("sleep_per_epoch=2")))
        except BaseException as e:  # re-raised in the test's own thread below
            outcome["error"] = e

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and driver.is_alive():
        for trial_id, rows in reported(run_dir).items():
            # two epochs (and two sleeps) still to go: the kill lands inside the trial
            if rows[-1]["epoch"] <= EPOCHS - 2 and rows[-1]["node_id"] in worker_ids(cluster):
                victim = trial_id, rows[-1]["node_id"], rows[-1]["epoch"]
                break
        time.sleep(0.1)
    assert victim is not None, f"no trial was seen between epochs: {outcome}"
    trial_id, node_id, epochs_before = victim
    node = next(n for n in cluster.worker_nodes if n.node_id == node_id)
    cluster.remove_node(node, allow_graceful=False)
    cluster.add_node(num_cpus=1)
    driver.join(timeout=240)
    assert not driver.is_alive(), "the search did not finish within 240 s of the node loss"
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["code"] == 0

    df = results.read(run_dir)
    assert len(df) == 4 and df["trial_id"].is_unique
    assert sorted(df["lambda_gdl"]) == [0.0, 0.5, 1.0, 1.5]  # every point once, none twice
    assert (df["status"] == "completed").all() and (df["epochs_run"] == EPOCHS).all()
    row = df.set_index("trial_id").loc[trial_id]
    assert row["retries"] >= 1 and row["node_id"] != node_id
    assert [h["epoch"] for h in json.loads(row["history"])] == list(range(1, EPOCHS + 1))
    rows = reported(run_dir)[trial_id]
    # continued from its checkpoint: no epoch reported twice, the lost node's epochs kept
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    assert [r["node_id"] for r in rows[:epochs_before]] == [node_id] * epochs_before
    assert rows[-1]["node_id"] != node_id

    client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    parent = runfolder.read_experiment(run_dir)["mlflow_parent_run_id"]
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert Counter(r.data.tags["trial_id"] for r in children) == Counter(df["trial_id"])
    assert all(r.info.status == "FINISHED" for r in children)
    recovered = int((df["retries"] >= 1).sum())
    record_property("recovered_trials", recovered)
    record_property("wall_seconds", round(time.monotonic() - start))
    print(f"\nnode loss: {recovered} trial(s) recovered from their checkpoints after killing node "
          f"{node_id[:8]} at epoch {epochs_before} of trial {trial_id}; "
          f"{time.monotonic() - start:.0f} s")
