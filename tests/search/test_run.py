"""search.run end to end: real local Ray, real MLflow stores (SQLite and an `mlflow server`),
tiny spaces. Searches run in-process through main(argv) on one shared Ray, except the driver
that is killed with SIGKILL, which is a subprocess joining that Ray (tests/search/faulty_driver.py).
The command line alone is tested in test_plan.py."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from search import layout, results
from search.run import main
from search.trainable import train_trial
from simvp_core.config import FIELD_TYPES
from tests.search.faults import parse_faults, with_faults

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def run(*argv: Any, faults: str = "") -> int:
    """search.run's main on argv; `faults` (tests/search/faults.py) wrap the trainable."""
    trainable = with_faults(train_trial, parse_faults(faults)) if faults else None
    return main([str(a) for a in argv], trainable)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def check_rows_against_tune(df: pd.DataFrame, run_dir: Path, epochs: int, record) -> None:
    """Every results row agrees with what Tune itself recorded for that trial (result.json)."""
    reported = record.results(run_dir)
    assert sorted(df["trial_id"]) == sorted(reported)
    assert list(df.columns) == list(layout.columns())
    for row in df.to_dict("records"):
        rows = reported[row["trial_id"]]
        epoch_rows = [r for r in rows if not r.get("diverged")]
        last = epoch_rows[-1]
        history = json.loads(row["history"])
        assert [h["epoch"] for h in history] == list(range(1, row["epochs_run"] + 1))
        assert row["epochs_run"] == last["epoch"]
        assert row["val_mse"] == pytest.approx(last["val_mse"])
        assert row["best_val_mse"] == pytest.approx(min(r["val_mse"] for r in epoch_rows))
        assert row["n_params"] == last["n_params"] and row["node_id"] == last["node_id"]
        assert row["precision"] == last["precision"] != ""
        for name, value in last["config"].items():
            if value is not None:
                assert row[name] == pytest.approx(value)
        assert json.loads(row["searched"]) and row["config_key"].startswith("{")
        if row["status"] == "completed":
            assert row["epochs_run"] == epochs
            assert row["test_mse"] == pytest.approx(last["test_mse"])
            assert row["test_set"] == last["test_set"] != ""
            with np.load(run_dir / "predictions" / f"{row['trial_id']}.npz") as npz:
                assert {k: (npz[k].dtype, npz[k].shape[1:]) for k in npz.files} == {
                    k: (np.float32, (10, 1, 64, 64)) for k in ("inputs", "targets", "preds")}
        else:
            assert math.isnan(row["test_mse"])
            assert not (run_dir / "predictions" / f"{row['trial_id']}.npz").exists()


def check_study(run_dir: Path, name: str, df: pd.DataFrame) -> None:
    """optuna.db against the results: one study trial per row, COMPLETE for a completed trial and
    PRUNED for one ASHA stopped, its intermediate values its history's val_mse at each epoch; any
    other study trial is one a killed driver left behind, FAIL with the reason; none RUNNING."""
    from search.resume import ORPHAN_REASON

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    told = [t for t in study.trials if t.user_attrs.get("fail_reason") != ORPHAN_REASON]
    assert all(t.state.name == "FAIL" and not t.intermediate_values for t in study.trials if t not in told)
    assert sorted(t.params["lr"] for t in told) == pytest.approx(sorted(df["lr"]))
    for row in df.to_dict("records"):
        trial = next(t for t in told if t.params["lr"] == pytest.approx(row["lr"]))
        assert trial.state.name == {"completed": "COMPLETE", "stopped": "PRUNED"}[row["status"]]
        history = {h["epoch"]: h["val_mse"] for h in json.loads(row["history"])}
        assert sorted(trial.intermediate_values) == sorted(history) == list(range(1, row["epochs_run"] + 1))
        assert [trial.intermediate_values[e] for e in history] == pytest.approx(list(history.values()))
        assert trial.value == pytest.approx(row["val_mse"])


def check_mlflow(uri: str, df: pd.DataFrame, run_dir: Path) -> None:
    """One parent run for the search, one child run per trial with everything the row says."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    info = layout.read_experiment(run_dir)
    assert info["tracking_uri"] == uri
    parent = client.get_run(info["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["space_file"] == info["space"]
    assert parent.data.tags["command"] == info["command"]
    assert parent.data.tags["git_commit"] == info["git_commit"]
    assert parent.data.params["train_size"] == "16"
    assert not set(info["searched"]) & set(parent.data.params)
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "space")] == [
        f"space/{Path(info['space']).name}"]
    exp_id = parent.info.experiment_id
    runs = client.search_runs([exp_id], max_results=1000)
    assert [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags] == [parent.info.run_id]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert Counter(r.data.tags["trial_id"] for r in children) == Counter(df["trial_id"])
    by_trial = {r.data.tags["trial_id"]: r for r in children}
    for row in df.to_dict("records"):
        child = by_trial[row["trial_id"]]
        assert child.info.run_id == row["mlflow_run_id"]
        assert set(child.data.params) == set(FIELD_TYPES)
        for name in json.loads(row["searched"]):
            assert child.data.params[name] == str(row[name])
        assert child.data.tags["status"] == row["status"]
        assert child.data.tags["status_detail"] == row["status_detail"]
        assert child.data.tags["precision"] == row["precision"]
        history = json.loads(row["history"])
        logged = client.get_metric_history(child.info.run_id, "val_mse")
        steps = sorted((m.step, m.value) for m in logged)
        assert [s for s, _ in steps] == [h["epoch"] for h in history]
        assert [v for _, v in steps] == pytest.approx([h["val_mse"] for h in history])
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "trial_config.json" in artifacts
        with tempfile.TemporaryDirectory() as tmp:
            config = json.loads(Path(client.download_artifacts(
                child.info.run_id, "trial_config.json", tmp)).read_text())
        assert config["trial_id"] == row["trial_id"] and config["config"]["epochs"] == row["epochs"]
        if row["status"] == "completed":
            assert child.data.metrics["test_mse"] == pytest.approx(row["test_mse"])
            assert "predictions.png" in artifacts
        else:
            assert "test_mse" not in child.data.metrics
        assert child.info.status == ("FAILED" if row["status"] in ("errored", "diverged") else "FINISHED")


@pytest.fixture(scope="module", autouse=True)
def _start_mlflow_server_early(mlflow_server) -> None:
    """The server takes seconds to start: let that overlap the tests that come before its use."""


# -- an Optuna + ASHA smoke search, SQLite MLflow -------------------------------------------------


@pytest.fixture(scope="module")
def asha_search(ray_address: str, storage: Path, mnist_dir: Path, write_space,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """4 Optuna trials (all listed points) x 2 epochs, ASHA grace 1: two good learning rates
    first, then two that barely move the weights, which ASHA stops after epoch 1."""
    folder = tmp_path_factory.mktemp("asha")
    points = [{"lr": lr} for lr in (0.01, 0.008, 1e-6, 2e-6)]
    space = write_space(folder, "asha", {"lr": {"loguniform": [1e-6, 0.02]}},
                        {"algorithm": "optuna", "num_samples": 4, "seed": 0,
                         "points_to_evaluate": points},
                        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2,
                                   "max_epochs": 2})
    reports = folder / "reports"
    code = run(space, "--smoke", "--storage", storage, "--data-dir", mnist_dir,
               "--max-concurrent", 2, "--reports-dir", reports)
    run_dir = storage / "asha-smoke"
    return {"code": code, "space": space, "run_dir": run_dir, "reports": reports,
            "df": results.read_results(run_dir) if (run_dir / "results.parquet").exists() else None}


def test_smoke_search_writes_results_that_match_tune(asha_search, tune_record) -> None:
    assert asha_search["code"] == 0
    df = asha_search["df"]
    assert len(df) == 4 and df["trial_id"].is_unique
    assert sorted(df["lr"]) == pytest.approx(sorted([0.01, 0.008, 1e-6, 2e-6]))
    check_rows_against_tune(df, asha_search["run_dir"], 2, tune_record)
    info = layout.read_experiment(asha_search["run_dir"])
    assert info["experiment"] == "asha-smoke" and info["algorithm"] == "optuna"
    assert info["optuna_study"] == "asha-smoke" and (asha_search["run_dir"] / "optuna.db").is_file()
    assert info["finished"] >= info["started"] and info["wall_seconds"] > 0


def test_asha_stops_the_poor_trials_early(asha_search) -> None:
    df = asha_search["df"]
    stopped = df[df["status"] == "stopped"]
    assert not stopped.empty and (stopped["epochs_run"] < 2).all()
    assert all(d == "stopped early by ASHA at epoch 1" for d in stopped["status_detail"])
    assert set(stopped["lr"]) & {1e-6, 2e-6}
    assert (df["status"] == "completed").any()
    assert set(df["status"]) <= {"completed", "stopped"}
    check_study(asha_search["run_dir"], "asha-smoke", df)


def test_smoke_search_is_tracked_in_sqlite_mlflow(asha_search, storage: Path) -> None:
    check_mlflow(f"sqlite:///{storage / 'mlflow.db'}", asha_search["df"], asha_search["run_dir"])


def test_smoke_search_builds_its_report_from_its_results(asha_search, tmp_path: Path) -> None:
    from search.report import build_report

    md_path = asha_search["reports"] / "asha-smoke.md"
    md = md_path.read_text()
    table = md[md.index("## Results on the test set"):md.index("**Not completed**")]
    rows = [[c.strip().strip("*") for c in line.strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| lr", "| ---"))]
    completed = asha_search["df"][asha_search["df"]["status"] == "completed"]
    assert len(rows) == len(completed) >= 1
    for _, trial in completed.iterrows():  # every value in the table is the parquet's
        row = next(r for r in rows if float(r[0]) == pytest.approx(trial["lr"], rel=1e-3))
        assert row[1:] == ["1", f"{trial['n_params'] / 1e6:.3f}", str(trial["epochs_run"]),
                           f"{trial['test_mse']:.2f}", f"{trial['test_mae']:.2f}",
                           f"{trial['test_ssim']:.4f}", f"{trial['test_psnr']:.2f}"]
    again = build_report(asha_search["run_dir"], tmp_path / "again")  # a pure function of runs/<name>
    assert again.read_bytes() == md_path.read_bytes()


def test_resume_refuses_a_space_that_changed(asha_search, storage: Path, tmp_path: Path,
                                             mnist_dir: Path, capsys) -> None:
    changed = tmp_path / asha_search["space"].name
    changed.write_text(asha_search["space"].read_text().replace("0.02", "0.03"))
    before = snapshot(asha_search["run_dir"])
    assert run(changed, "--smoke", "--resume", "--storage", storage, "--data-dir", mnist_dir) == 2
    assert "no longer says what" in capsys.readouterr().err
    assert snapshot(asha_search["run_dir"]) == before


def test_reusing_a_name_without_resume_exits_2_and_touches_nothing(asha_search, storage: Path,
                                                                   mnist_dir: Path, capsys) -> None:
    before = snapshot(asha_search["run_dir"])
    assert run(asha_search["space"], "--smoke", "--storage", storage, "--data-dir", mnist_dir) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a search named 'asha-smoke'" in err[0] and "--resume" in err[0]
    assert snapshot(asha_search["run_dir"]) == before


# -- retries from a checkpoint and a diverged trial, tracked on an mlflow server ----------------


@pytest.fixture(scope="module")
def fault_search(ray_address: str, storage: Path, mnist_dir: Path, mlflow_server, write_space,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Grid of 4 learning rates x 2 epochs, max_failures 1: one trial raises once before epoch 2,
    one raises there on every attempt, one's weights become NaN before epoch 2; tracked over
    HTTP on a real mlflow server."""
    folder = tmp_path_factory.mktemp("faults")
    space = write_space(folder, "faults", {"lr": {"grid": [0.01, 0.005, 0.003, 0.002]}},
                        {"algorithm": "grid"})
    uri = mlflow_server()
    code = run(space, "--storage", storage, "--data-dir", mnist_dir, "--tracking-uri", uri,
               "--reports-dir", folder / "reports",
               faults="raise_once_at_epoch=2@lr=0.005,raise_at_epoch=2@lr=0.003,nan_at_epoch=2@lr=0.002")
    run_dir = storage / "faults"
    return {"code": code, "uri": uri, "run_dir": run_dir, "df": results.read_results(run_dir)}


def test_a_failing_trial_is_retried_from_its_checkpoint(fault_search, tune_record) -> None:
    assert fault_search["code"] == 0
    df = fault_search["df"].set_index("lr")
    retried = df.loc[0.005]
    assert retried["status"] == "completed" and retried["retries"] == 1
    reported = tune_record.results(fault_search["run_dir"])[retried["trial_id"]]
    assert [r["epoch"] for r in reported] == [1, 2]  # epoch 1 was not trained again
    assert df.loc[0.01, "status"] == "completed" and df.loc[0.01, "retries"] == 0


def test_a_trial_failing_past_max_failures_is_errored_with_its_message(fault_search) -> None:
    row = fault_search["df"].set_index("lr").loc[0.003]
    assert row["status"] == "errored" and row["retries"] == 1 and row["epochs_run"] == 1
    assert row["status_detail"] == (
        "RuntimeError: injected fault before epoch 2 (after 1 retries)")
    assert math.isnan(row["test_mse"])


def test_a_nan_trial_is_recorded_as_diverged_and_not_retried(fault_search, tune_record) -> None:
    row = fault_search["df"].set_index("lr").loc[0.002]
    assert row["status"] == "diverged" and row["retries"] == 0 and row["epochs_run"] == 1
    assert "loss became nan in epoch 2" in row["status_detail"]
    reported = tune_record.results(fault_search["run_dir"])[row["trial_id"]]
    assert [(r["epoch"], bool(r.get("diverged"))) for r in reported] == [(1, False), (2, True)]
    assert math.isnan(row["test_mse"])


def test_fault_search_rows_match_tune_and_are_tracked_over_http(fault_search, tune_record) -> None:
    check_rows_against_tune(fault_search["df"], fault_search["run_dir"], 2, tune_record)
    check_mlflow(fault_search["uri"], fault_search["df"], fault_search["run_dir"])


# -- an unreachable tracking server --------------------------------------------------------------


def test_unreachable_tracking_server_loses_nothing_and_warns_once(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space, free_port,
        capsys) -> None:
    """Also: random search with seed repeats (rows as a grid's repeats, the study told their mean)
    and the progress line."""
    space = write_space(tmp_path, "offline", {"lr": {"uniform": [0.001, 0.01]}},
                        {"algorithm": "random", "num_samples": 1, "seed": 3}, repeats=2)
    port = free_port()
    code = run(space, "--storage", storage, "--data-dir", mnist_dir, "--tracking-uri",
               f"http://127.0.0.1:{port}", "--reports-dir", tmp_path / "reports")
    out = capsys.readouterr().out
    assert code == 0
    warnings = [line for line in out.splitlines() if "MLflow logging is off" in line]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0]
    progress = [line for line in out.splitlines() if line.startswith("progress: ")]
    assert progress[-1].startswith("progress: 2/2 trials done, 0 running, 4/4 trial-epochs, best val_mse ")
    df = results.read_results(storage / "offline").sort_values("repeat")
    assert list(df["status"]) == ["completed"] * 2 and list(df["mlflow_run_id"]) == [""] * 2
    assert (list(df["repeat"]), list(df["seed"]), df["config_key"].nunique()) == ([0, 1], [42, 43], 1)
    assert json.loads(df["searched"].iloc[0]) == ["lr", "seed"] and df["lr"].nunique() == 1
    assert 0.001 <= df["lr"].iloc[0] <= 0.01
    info = layout.read_experiment(storage / "offline")
    assert info["mlflow_parent_run_id"] is None and info["optuna_study"] == "offline"
    # random search is Optuna's RandomSampler, its study kept like TPE's for --resume
    study = optuna.load_study(study_name="offline", storage=f"sqlite:///{storage / 'offline' / 'optuna.db'}")
    assert [(t.state.name, t.params["lr"]) for t in study.trials] == [("COMPLETE", df["lr"].iloc[0])]
    assert study.trials[0].value == pytest.approx(df["val_mse"].mean())
    curves = [{h["epoch"]: h["val_mse"] for h in json.loads(r)} for r in df["history"]]
    assert [study.trials[0].intermediate_values[e] for e in (1, 2)] == pytest.approx(
        [(curves[0][e] + curves[1][e]) / 2 for e in (1, 2)])
    assert (tmp_path / "reports" / "offline.md").is_file()


# -- a driver killed with SIGKILL, then resumed ----------------------------------------------------


def test_a_killed_search_resumes_without_losing_or_repeating_trials(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space,
        subprocess_env, tune_record, capsys) -> None:
    """Optuna + ASHA, the harder case: its searcher, scheduler and study are restored too."""
    points = [{"lr": lr} for lr in (0.01, 0.008, 1e-6, 2e-6)]
    space = write_space(tmp_path, "killed", {"lr": {"loguniform": [1e-6, 0.02]}},
                        {"algorithm": "optuna", "num_samples": 4, "points_to_evaluate": points},
                        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 2})
    run_dir = storage / "killed"
    argv = [space, "--storage", storage, "--data-dir", mnist_dir, "--max-concurrent", 2,
            "--reports-dir", tmp_path / "reports"]
    driver = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "search" / "faulty_driver.py"), "sleep_per_epoch=1.5",
         *map(str, argv), "--address", ray_address],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    states: dict[str, str] = {}
    while time.monotonic() < deadline and driver.poll() is None:
        states = tune_record.states(run_dir)
        if "TERMINATED" in states.values() and "RUNNING" in states.values():
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the driver finished before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert not (run_dir / "results.parquet").exists()
    finished_before = {t for t, s in states.items() if s == "TERMINATED"}
    assert finished_before

    capsys.readouterr()
    assert run(*argv, "--resume") == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("progress: ")]
    assert progress and progress[-1].startswith("progress: 4/4 trials done (")  # Tune restored the callback
    df = results.read_results(run_dir)
    reported = tune_record.results(run_dir)
    assert len(df) == 4 and df["trial_id"].is_unique and set(df["trial_id"]) == set(reported)
    assert set(df["status"]) == {"completed", "stopped"}
    assert sorted(df["lr"]) == pytest.approx(sorted(p["lr"] for p in points))  # none run twice
    check_study(run_dir, "killed", df)
    for trial_id in finished_before:  # done before the kill: not run again
        assert [r["epoch"] for r in reported[trial_id]] == list(range(1, len(reported[trial_id]) + 1))
    check_rows_against_tune(df, run_dir, 2, tune_record)
    check_mlflow(f"sqlite:///{storage / 'mlflow.db'}", df, run_dir)


# -- one search per name; honest exits on SIGINT / SIGTERM and when every trial errors ------------


def start_driver(argv: list[Any], ray_address: str, env: dict[str, str], log: Path,
                 faults: str = "sleep_per_epoch=1.5") -> subprocess.Popen:
    """A real driver subprocess joining the test Ray (tests/search/faulty_driver.py), output in `log`."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "search" / "faulty_driver.py"), faults,
         *map(str, argv), "--address", ray_address],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_running(driver: subprocess.Popen, run_dir: Path, record, timeout: float = 240) -> None:
    """Until the driver holds the lock and Tune has a trial running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        if (run_dir / layout.LOCK_FILE).exists() and "RUNNING" in record.states(run_dir).values():
            return
        time.sleep(0.2)
    raise AssertionError(f"the driver did not get to a running trial (exit {driver.poll()})")


def interrupted(sig: int, name: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space,
                ray_address: str, subprocess_env, tune_record, while_running=None,
                resume: bool = True) -> None:
    """A running grid search sent `sig`: its exit, results and MLflow runs; then, if `resume`,
    its --resume to the end."""
    space = write_space(tmp_path, name, {"lr": {"grid": [0.01, 0.005]}}, {"algorithm": "grid"})
    run_dir = storage / name
    argv = [space, "--storage", storage, "--data-dir", mnist_dir, "--reports-dir", tmp_path / "reports"]
    log = tmp_path / "driver.log"
    # epochs slow enough that the signal lands while trials run, not after they ended
    driver = start_driver(argv, ray_address, subprocess_env(), log, faults="sleep_per_epoch=5")
    try:
        wait_running(driver, run_dir, tune_record)
        if while_running:
            while_running(argv, run_dir, driver)
        driver.send_signal(sig)
        code = driver.wait(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    out = log.read_text()
    assert code == 128 + sig, out[-3000:]
    assert "interrupted; continue with --resume" in out.splitlines()
    assert f"search {name} finished" not in out
    assert not (run_dir / layout.LOCK_FILE).exists()  # released on the way out
    df = results.read_results(run_dir)  # what existed, written
    assert set(df["status"]) <= {"completed", "stopped"} and (df["status"] == "stopped").any()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    info = layout.read_experiment(run_dir)
    assert info["finished"] is None
    assert client.get_run(info["mlflow_parent_run_id"]).info.status == "KILLED"
    for run_id in df.loc[df["status"] == "stopped", "mlflow_run_id"]:
        assert client.get_run(run_id).info.status == "KILLED"
    if not resume:
        return

    assert run(*argv, "--resume") == 0
    df = results.read_results(run_dir)
    assert len(df) == 2 and (df["status"] == "completed").all()
    assert sorted(df["lr"]) == pytest.approx([0.005, 0.01])
    assert client.get_run(layout.read_experiment(run_dir)["mlflow_parent_run_id"]).info.status == "FINISHED"
    check_rows_against_tune(df, run_dir, 2, tune_record)


def test_a_second_search_of_the_same_name_is_refused_and_sigint_exits_130(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space,
        subprocess_env, tune_record) -> None:
    def second_search(argv: list[Any], run_dir: Path, first: subprocess.Popen) -> None:
        held = (run_dir / layout.LOCK_FILE).read_bytes()
        for extra in ([], ["--resume"]):
            second = subprocess.run(
                [sys.executable, "-m", "search.run", *map(str, argv), *extra, "--address", ray_address],
                cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=180)
            assert second.returncode == 2, second.stderr[-3000:]
            err = second.stderr.strip().splitlines()
            assert len(err) == 1 and f"pid {first.pid}" in err[0] and "running search" in err[0], err
            assert json.loads(held)["since"] in err[0]
        assert (run_dir / layout.LOCK_FILE).read_bytes() == held
        assert first.poll() is None

    interrupted(signal.SIGINT, "sigint", storage, mnist_dir, tmp_path, write_space, ray_address,
                subprocess_env, tune_record, second_search)


def test_sigterm_exits_143_with_trials_checkpointed_and_runs_killed(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space,
        subprocess_env, tune_record) -> None:
    """The same way out as SIGINT's (whose test also resumes), with SIGTERM's exit code."""
    interrupted(signal.SIGTERM, "sigterm", storage, mnist_dir, tmp_path, write_space, ray_address,
                subprocess_env, tune_record, resume=False)


def test_a_search_whose_trials_all_errored_exits_1_with_its_results(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space, capsys) -> None:
    space = write_space(tmp_path, "allerrored", {"lr": {"grid": [0.01, 0.005]}}, {"algorithm": "grid"},
                        max_failures=0)
    code = run(space, "--storage", storage, "--data-dir", mnist_dir, "--reports-dir",
               tmp_path / "reports", faults="raise_at_epoch=1")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1
    assert len(err) == 1 and "all 2 trials errored" in err[0] and "injected fault" in err[0]
    df = results.read_results(storage / "allerrored")
    assert list(df["status"]) == ["errored", "errored"]
    assert not (storage / "allerrored" / layout.LOCK_FILE).exists()
