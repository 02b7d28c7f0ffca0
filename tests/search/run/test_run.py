"""search.run end to end: real local Ray, real MLflow stores (SQLite and an `mlflow server`),
tiny spaces. Searches run in-process through main(argv) on one shared Ray, except the driver
that is killed with SIGKILL, which is a subprocess joining that Ray (tests/search/faulty_driver.py).
The command line alone is tested in test_plan.py."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from search import metric, runfolder
from search.run import main
from search.runfolder import results
from search.status.cli import main as status_main
from search.trainable import train_trial
from simvp_core.config import FIELD_TYPES
from simvp_core.oneline import size
from tests.search.faults import parse_faults, with_faults

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.e2e


def run(*argv: Any, faults: str = "") -> int:
    """search.run's main on argv; `faults` (tests/search/faults.py) wrap the trainable."""
    trainable = with_faults(train_trial, parse_faults(faults)) if faults else None
    return main([str(a) for a in argv], trainable)


def run_printing(*argv: Any, faults: str = "") -> tuple[int, str]:
    """run(), and what it printed (the closing summary among it)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run(*argv, faults=faults)
    print(out.getvalue()[-5000:])  # shown when a test using it fails
    return code, out.getvalue()


def trial_checkpoint(run_dir: Path, trial_id: str) -> Path:
    """The one checkpoint Tune keeps of a trial (num_to_keep=1)."""
    (folder,) = (run_dir / "tune").glob(f"*_{trial_id}_*/checkpoint_*")
    return folder


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def fingerprint(folder: Path, skip: str = "") -> dict[str, tuple[int, str] | str]:
    """Every folder under `folder` and every file's mtime and content hash (paths holding `skip` left out)."""
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) if p.is_file() else "folder"
            for p in sorted(folder.rglob("*")) if not (skip and skip in str(p))}


def status(capsys, *argv: Any) -> dict[str, Any]:
    """python -m search.status --json on argv, read back."""
    capsys.readouterr()
    assert status_main([*map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@contextlib.contextmanager
def frozen(pid: int, run_dir: Path, record) -> Iterator[None]:
    """The driver stopped (SIGSTOP) between two writes of Tune's snapshot, then let go (SIGCONT)."""
    try:
        for _ in range(50):
            os.kill(pid, signal.SIGSTOP)
            if record.states(run_dir):  # its newest snapshot is whole
                break
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        else:
            raise AssertionError("Tune's snapshot was never whole while the driver was stopped")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def check_rows_against_tune(df: pd.DataFrame, run_dir: Path, epochs: int, record) -> None:
    """Every results row agrees with what Tune itself recorded for that trial (result.json)."""
    reported = record.results(run_dir)
    assert sorted(df["trial_id"]) == sorted(reported)
    assert list(df.columns) == list(results.columns())
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
    from search.run.resume import ORPHAN_REASON
    from search.run.warm import SOURCE_ATTR

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    ours = [t for t in study.trials if SOURCE_ATTR not in t.user_attrs]  # not seeded by a warm start
    told = [t for t in ours if t.user_attrs.get("fail_reason") != ORPHAN_REASON]
    assert all(t.state.name == "FAIL" and not t.intermediate_values for t in ours if t not in told)
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
    info = runfolder.read_experiment(run_dir)
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


# -- an Optuna + ASHA smoke search on an mlflow server: its model registered, its checkpoints kept -


@pytest.fixture(scope="module")
def asha_search(ray_address: str, storage: Path, mnist_dir: Path, write_space, mlflow_server,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """4 Optuna trials (all listed points) x 2 epochs, ASHA grace 1: two good learning rates
    first, then two that barely move the weights, which ASHA stops after epoch 1; tracked over
    HTTP on a real mlflow server, where its best model is registered; keep_checkpoints: best."""
    folder = tmp_path_factory.mktemp("asha")
    points = [{"lr": lr} for lr in (0.01, 0.008, 1e-6, 2e-6)]
    space = write_space(folder, "asha", {"lr": {"loguniform": [1e-6, 0.02]}},
                        {"algorithm": "optuna", "num_samples": 4, "seed": 0,
                         "points_to_evaluate": points},
                        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2,
                                   "max_epochs": 2})
    reports = folder / "reports"
    uri = mlflow_server()
    code, out = run_printing(space, "--smoke", "--storage", storage, "--data-dir", mnist_dir,
                             "--max-concurrent", 2, "--reports-dir", reports, "--tracking-uri", uri)
    run_dir = storage / "asha-smoke"
    return {"code": code, "space": space, "run_dir": run_dir, "reports": reports, "uri": uri, "out": out,
            "df": results.read(run_dir) if (run_dir / "results.parquet").exists() else None}


def test_smoke_search_writes_results_that_match_tune(asha_search, tune_record) -> None:
    assert asha_search["code"] == 0
    df = asha_search["df"]
    assert len(df) == 4 and df["trial_id"].is_unique
    assert sorted(df["lr"]) == pytest.approx(sorted([0.01, 0.008, 1e-6, 2e-6]))
    check_rows_against_tune(df, asha_search["run_dir"], 2, tune_record)
    info = runfolder.read_experiment(asha_search["run_dir"])
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


def test_smoke_search_is_tracked_on_an_mlflow_server(asha_search) -> None:
    check_mlflow(asha_search["uri"], asha_search["df"], asha_search["run_dir"])


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


def test_the_smoke_search_registers_its_best_model_and_one_line_loads_it(asha_search, mnist_dir,
                                                                          monkeypatch) -> None:
    """models:/<search>@best is the best completed trial by val_mse, logged to the parent run; the
    model MLflow loads reproduces that trial's test metrics on the same test set."""
    import mlflow.pytorch
    import torch
    from mlflow.tracking import MlflowClient

    from simvp_core.data import load_test_set, split_frames, to_float
    from simvp_core.metrics import MetricAccumulator
    from simvp_core.trainer import TEST_SEED

    top = metric.best(asha_search["df"], "val_mse", "min").iloc[0]
    client = MlflowClient(asha_search["uri"])
    version = client.get_model_version_by_alias("asha-smoke", "best")
    assert version.run_id == runfolder.read_experiment(asha_search["run_dir"])["mlflow_parent_run_id"]
    assert {k: version.tags[k] for k in ("search", "trial", "metric")} == {
        "search": "asha-smoke", "trial": top["trial_id"], "metric": "val_mse"}
    assert float(version.tags["value"]) == pytest.approx(top["val_mse"], rel=1e-5)
    assert version.tags["precision"] == top["precision"]  # what the trial's metrics were computed in
    assert [v.version for v in client.search_model_versions("name = 'asha-smoke'")] == [version.version]
    assert (f"model:   registered asha-smoke version {version.version} (alias best): trial {top['trial_id']}, "
            f"val_mse {top['val_mse']:.5g}; load it with mlflow.pytorch.load_model('models:/asha-smoke@best')"
            ) in asha_search["out"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", asha_search["uri"])
    model = mlflow.pytorch.load_model("models:/asha-smoke@best")  # the one line
    seqs, source = load_test_set(int(top["test_size"]), TEST_SEED, data_dir=mnist_dir)
    assert source == top["test_set"]
    accumulator, batch = MetricAccumulator(), int(top["eval_batch_size"])
    bf16 = top["precision"].startswith("bf16")  # the trial's test metrics: in the precision it ran
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(seqs), batch):
            inputs, targets = split_frames(to_float(seqs[start:start + batch]))
            accumulator.update(model(inputs).float(), targets)
    got = accumulator.compute()
    assert abs(got["mse"] - top["test_mse"]) <= 1e-4
    assert [got[m] for m in ("mae", "ssim", "psnr")] == pytest.approx(
        [top["test_mae"], top["test_ssim"], top["test_psnr"]], rel=1e-5)


def test_the_best_models_animation_is_in_the_report_and_in_mlflow(asha_search, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from PIL import Image

    md = (asha_search["reports"] / "asha-smoke.md").read_text()
    assert "](asha-smoke/predictions.gif)" in md
    parent = runfolder.read_experiment(asha_search["run_dir"])["mlflow_parent_run_id"]
    client = MlflowClient(asha_search["uri"])
    assert [a.path for a in client.list_artifacts(parent, "best_model")] == ["best_model/predictions.gif"]
    assert "report/asha-smoke/predictions.gif" in {a.path for a in client.list_artifacts(parent, "report/asha-smoke")}
    logged = Path(client.download_artifacts(parent, "best_model/predictions.gif", str(tmp_path)))
    for gif, sequences, columns in ((asha_search["reports"] / "asha-smoke" / "predictions.gif", 2, 3),
                                    (logged, 4, 3)):  # the report's first 2; the model's run: all 4 stored
        with Image.open(gif) as image:
            assert image.n_frames == 10 and image.info["loop"] == 0 and image.info["duration"] > 0
            assert image.size[1] > sequences * 64 * 2 and image.size[0] > columns * 64 * 2


def test_by_default_only_the_best_trial_keeps_its_model_state(asha_search) -> None:
    """keep_checkpoints best: the others keep their history (results are rebuilt from it), and their
    predictions live on in predictions/; the run folder's size before and after is in the summary."""
    from search.runfolder import checkpoints

    run_dir, df = asha_search["run_dir"], asha_search["df"]
    best_id = metric.best(df, "val_mse", "min").iloc[0]["trial_id"]
    for trial_id in df["trial_id"]:
        files = {p.name for p in trial_checkpoint(run_dir, trial_id).iterdir()}
        kept = {"checkpoint.pt", "history.json", "predictions.npz"} if trial_id == best_id else {"history.json"}
        assert files == kept, trial_id
    line = next(line for line in asha_search["out"].splitlines() if line.startswith("disk:"))
    found = re.fullmatch(r"disk: +(.+): (\S+ \S+) -> (\S+ \S+) \(keep_checkpoints best: model state deleted "
                         rf"from 3 finished trial\(s\); trial {best_id}'s kept\)", line)
    assert found, line
    before, after = (float(found[i].split()[0]) * {"kB": 1e3, "MB": 1e6}[found[i].split()[1]] for i in (2, 3))
    assert after < 0.8 * before
    assert found[3] == size(checkpoints.size(run_dir))


def test_status_of_the_finished_search_says_what_its_summary_says_and_writes_nothing(
        asha_search, storage: Path, capsys) -> None:
    run_dir, df = asha_search["run_dir"], asha_search["df"]
    report = asha_search["reports"] / "asha-smoke.md"
    before = fingerprint(run_dir), report.stat().st_mtime_ns
    found = status(capsys, run_dir)
    assert status_main(["asha-smoke", "--storage", str(storage)]) == 0  # by its name
    text = capsys.readouterr().out.splitlines()
    assert status_main(["--storage", str(storage)]) == 0  # every search there
    listing = capsys.readouterr().out.splitlines()
    assert (fingerprint(run_dir), report.stat().st_mtime_ns) == before
    info = runfolder.read_experiment(run_dir)
    assert (found["state"], found["driver"], found["resumable"], found["resume_command"]) == (
        "finished", None, False, None)
    assert {k: n for k, n in found["trials"].items() if n and k != "planned"} == df["status"].value_counts().to_dict()
    assert found["trials"]["planned"] == 4
    assert found["trial_epochs"] == {"spent": int(df["epochs_run"].sum()), "planned": 8}
    assert found["elapsed_s"] == pytest.approx(info["wall_seconds"], abs=0.1) and found["left_s"] is None
    top = metric.best(df, "val_mse", "min")
    assert (found["best"]["trial_id"], found["best"]["value"]) == (top.iloc[0]["trial_id"],
                                                                   pytest.approx(top["val_mse"].mean()))
    assert found["best"]["config"] == {"lr": pytest.approx(top.iloc[0]["lr"])}
    assert found["report"] == str(report.resolve()) and found["results"] == str(results.path(run_dir))
    assert found["mlflow"]["parent_run_id"] == info["mlflow_parent_run_id"]
    assert text[0] == f"search asha-smoke ({run_dir}): finished {info['finished']}"
    assert f"asha-smoke: finished, 4/4 trials done, best val_mse {top['val_mse'].mean():.5g}" in listing
    log = runfolder.log_path(run_dir).read_text()  # what Tune and MLflow said, kept out of the console
    assert "== Status ==" in log  # Tune's table
    assert "Waiting up to 60 seconds for model version to finish creation" in log  # MLflow's registry


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


def test_evaluate_convert_and_predict_take_the_registered_models_uri(asha_search, mnist_dir, tmp_path: Path,
                                                                     capsys) -> None:
    from PIL import Image

    from search import model as model_cli

    top = metric.best(asha_search["df"], "val_mse", "min").iloc[0]
    parent = runfolder.read_experiment(asha_search["run_dir"])["mlflow_parent_run_id"]
    registered = ["--model-uri", "models:/asha-smoke@best", "--tracking-uri", asha_search["uri"]]
    assert model_cli.main(["evaluate", *registered, "--data-dir", str(mnist_dir), "--test-size",
                           str(int(top["test_size"])), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert abs(report["mse"] - top["test_mse"]) <= 1e-4 and report["test_set"] == top["test_set"]
    assert model_cli.main(["to-openstl", "--model-uri", f"runs:/{parent}/model", "--tracking-uri",
                           asha_search["uri"], str(tmp_path / "openstl.ckpt")]) == 0
    import torch

    state = torch.load(tmp_path / "openstl.ckpt", weights_only=True)["state_dict"]
    assert state and all(k.startswith("model.") for k in state)
    assert model_cli.main(["predict", *registered, "--out", str(tmp_path / "p.gif"), "--sequences", "1",
                           "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    with Image.open(tmp_path / "p.gif") as gif:
        assert gif.n_frames == 10
    assert model_cli.main(["evaluate", "--model-uri", "models:/asha-smoke@nope", "--tracking-uri",
                           asha_search["uri"]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "models:/asha-smoke@nope: not found in http://" in err


def test_resuming_the_finished_search_after_its_checkpoints_went_changes_no_result(
        asha_search, storage: Path, mnist_dir: Path) -> None:
    """The trial checkpoints keep_checkpoints emptied are still what --resume restores from: the
    rows come back the same, the model is not registered twice, nothing more is deleted."""
    code, out = run_printing(asha_search["space"], "--smoke", "--resume", "--storage", storage, "--data-dir",
                             mnist_dir, "--max-concurrent", 2, "--reports-dir", asha_search["reports"])
    assert code == 0
    pd.testing.assert_frame_equal(results.read(asha_search["run_dir"]), asha_search["df"])
    assert "registered before; load it with" in out and "model state deleted from 0 finished" in out
    from mlflow.tracking import MlflowClient

    assert len(MlflowClient(asha_search["uri"]).search_model_versions("name = 'asha-smoke'")) == 1
    assert (asha_search["reports"] / "asha-smoke" / "predictions.gif").is_file()


# -- retries from a checkpoint and a diverged trial, tracked in SQLite --------------------------


@pytest.fixture(scope="module")
def fault_search(ray_address: str, storage: Path, mnist_dir: Path, write_space,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Grid of 4 learning rates x 2 epochs, max_failures 1: one trial raises once before epoch 2,
    one raises there on every attempt, one's weights become NaN before epoch 2; tracked in the
    SQLite store beside the run folders; ranked on val_ssim (max), not the default val_mse;
    --keep-checkpoints none."""
    folder = tmp_path_factory.mktemp("faults")
    space = write_space(folder, "faults", {"lr": {"grid": [0.01, 0.005, 0.003, 0.002]}},
                        {"algorithm": "grid"}, metric="val_ssim")
    code, out = run_printing(
        space, "--storage", storage, "--data-dir", mnist_dir, "--reports-dir", folder / "reports",
        "--keep-checkpoints", "none",
        faults="raise_once_at_epoch=2@lr=0.005,raise_at_epoch=2@lr=0.003,nan_at_epoch=2@lr=0.002")
    run_dir = storage / "faults"
    return {"code": code, "uri": f"sqlite:///{storage / 'mlflow.db'}", "run_dir": run_dir, "out": out,
            "df": results.read(run_dir), "report": folder / "reports" / "faults.md"}


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


def test_fault_search_rows_match_tune_and_are_tracked_in_sqlite(fault_search, tune_record) -> None:
    check_rows_against_tune(fault_search["df"], fault_search["run_dir"], 2, tune_record)
    check_mlflow(fault_search["uri"], fault_search["df"], fault_search["run_dir"])


def test_a_search_on_val_ssim_is_ranked_by_it_from_tune_to_the_report(fault_search, tune_record) -> None:
    """The metric is carried end to end: Tune's reports (a diverged epoch's val_ssim is NaN), the
    best column (each trial's highest val_ssim), MLflow's final metric, and the report's pick; the
    test MSE stands beside it."""
    df, run_dir = fault_search["df"], fault_search["run_dir"]
    info = runfolder.read_experiment(run_dir)
    assert (info["metric"], info["mode"]) == ("val_ssim", "max")
    diverged = df.set_index("lr").loc[0.002, "trial_id"]
    assert math.isnan(tune_record.results(run_dir)[diverged][-1]["val_ssim"])
    for row in df.to_dict("records"):
        assert row["best_val_ssim"] == pytest.approx(max(h["val_ssim"] for h in json.loads(row["history"])))
    top = metric.best(df, "val_ssim", "max").iloc[0]
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(fault_search["uri"]).get_run(info["mlflow_parent_run_id"])
    assert parent.data.metrics["best_val_ssim"] == pytest.approx(top["val_ssim"])
    md = fault_search["report"].read_text()
    assert f"best by val_ssim: test MSE {top['test_mse']:.2f}" in md.splitlines()[0]
    assert f"- Best by val_ssim (max): lr={top['lr']:.4g} — val_ssim {top['val_ssim']:.4g}" in md
    assert "best configuration by val_ssim (paper Table 6)" in md and "| last val SSIM |" in md


def test_keep_checkpoints_none_leaves_model_state_only_where_resume_retries(fault_search) -> None:
    """The errored trial keeps its checkpoint (--resume retries it from there); the finished ones,
    the best included, keep their history only: the best model is in the SQLite store's registry."""
    from mlflow.tracking import MlflowClient

    df, run_dir = fault_search["df"], fault_search["run_dir"]
    for row in df.to_dict("records"):
        files = {p.name for p in trial_checkpoint(run_dir, row["trial_id"]).iterdir()}
        assert ("checkpoint.pt" in files) == (row["status"] == "errored") and "history.json" in files
    assert "(keep_checkpoints none: model state deleted from 3 finished trial(s))" in fault_search["out"]
    top = metric.best(df, "val_ssim", "max").iloc[0]
    version = MlflowClient(fault_search["uri"]).get_model_version_by_alias("faults", "best")
    assert (version.tags["trial"], version.tags["metric"]) == (top["trial_id"], "val_ssim")


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
    df = results.read(storage / "offline").sort_values("repeat")
    assert list(df["status"]) == ["completed"] * 2 and list(df["mlflow_run_id"]) == [""] * 2
    assert (list(df["repeat"]), list(df["seed"]), df["config_key"].nunique()) == ([0, 1], [42, 43], 1)
    assert json.loads(df["searched"].iloc[0]) == ["lr", "seed"] and df["lr"].nunique() == 1
    assert 0.001 <= df["lr"].iloc[0] <= 0.01
    info = runfolder.read_experiment(storage / "offline")
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
        subprocess_env, tune_record, capsys, asha_search) -> None:
    """Optuna + ASHA, the harder case: its searcher, scheduler and study are restored too. Also
    warm-started from the smoke search (same fixed settings: its completed trials seed the study,
    once, kept across the resume) and under a budget every trial fits (each costed as trained)."""
    points = [{"lr": lr} for lr in (0.01, 0.008, 1e-6, 2e-6)]
    space = write_space(tmp_path, "killed", {"lr": {"loguniform": [1e-6, 0.02]}},
                        {"algorithm": "optuna", "num_samples": 4, "points_to_evaluate": points},
                        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 2},
                        budget={"params_m": 1}, warm_start=["asha-smoke"])
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
    killed = status(capsys, run_dir)  # the lock a killed driver left: interrupted, resumable
    assert (killed["state"], killed["resumable"], killed["driver"]["pid"], killed["driver"]["alive"]) == (
        "interrupted", True, driver.pid, False)
    assert killed["resume_command"] == runfolder.read_experiment(run_dir)["command"] + " --resume"

    capsys.readouterr()
    assert run(*argv, "--resume") == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("progress: ")]
    assert progress and progress[-1].startswith("progress: 4/4 trials done (")  # Tune restored the callback
    df = results.read(run_dir)
    reported = tune_record.results(run_dir)
    assert len(df) == 4 and df["trial_id"].is_unique and set(df["trial_id"]) == set(reported)
    assert set(df["status"]) == {"completed", "stopped"}
    assert sorted(df["lr"]) == pytest.approx(sorted(p["lr"] for p in points))  # none run twice
    check_study(run_dir, "killed", df)
    smoke = asha_search["df"][asha_search["df"]["status"] == "completed"]
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{run_dir / 'optuna.db'}").trials
    seeded = [t for t in study if t.user_attrs.get("warm_start") == "asha-smoke"]
    assert sorted((t.params["lr"], t.value) for t in seeded) == sorted(zip(smoke["lr"], smoke["val_mse"]))
    info = runfolder.read_experiment(run_dir)
    assert [(w["run"], w["seeded"]) for w in info["warm_start"]] == [("asha-smoke", len(smoke))]
    assert info["budget"] == {"params_m": 1.0}
    ours = {t.params["lr"]: t for t in study if t not in seeded and t.state.name != "FAIL"}
    for row in df.to_dict("records"):  # the budget's count is the trained model's
        assert ours[row["lr"]].user_attrs["params_m"] * 1e6 == pytest.approx(row["n_params"])
        assert ours[row["lr"]].constraints["params_m"] < 0
    report = (tmp_path / "reports" / "killed.md").read_text()
    assert f"| warm start | {len(smoke)} trial(s) seeded the study: {len(smoke)} from asha-smoke; 0 ignored |" in report
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


def wait_running(driver: subprocess.Popen, run_dir: Path, record, timeout: float = 240,
                 reported: bool = False) -> None:
    """Until the driver holds the lock and Tune has a trial running (and, if `reported`, one that
    has reported an epoch: its checkpoint written, its worker's words about it said)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        if (run_dir / runfolder.LOCK_FILE).exists() and "RUNNING" in record.states(run_dir).values() and (
                not reported or record.results(run_dir)):
            return
        time.sleep(0.2)
    raise AssertionError(f"the driver did not get to a running trial (exit {driver.poll()})")


def interrupted(sig: int, name: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space,
                ray_address: str, subprocess_env, tune_record, capsys, while_running=None,
                resume: bool = True, verbose: bool = False) -> None:
    """A running grid search sent `sig`: its exit, console (-v or not), results, MLflow runs and
    status; then, if `resume`, its --resume to the end."""
    space = write_space(tmp_path, name, {"lr": {"grid": [0.01, 0.005]}}, {"algorithm": "grid"})
    run_dir = storage / name
    argv = [space, "--storage", storage, "--data-dir", mnist_dir, "--reports-dir", tmp_path / "reports"]
    log = tmp_path / "driver.log"
    # epochs slow enough that the signal lands while trials run, not after they ended
    driver = start_driver([*argv, *(["-v"] if verbose else [])], ray_address, subprocess_env(), log,
                          faults="sleep_per_epoch=5")
    try:
        wait_running(driver, run_dir, tune_record)
        if while_running:
            while_running(argv, run_dir, driver)
        wait_running(driver, run_dir, tune_record, reported=True)  # so that a trial has said something
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
    check_console(out, run_dir, verbose)
    before = fingerprint(run_dir)
    found = status(capsys, run_dir)
    assert fingerprint(run_dir) == before
    assert (found["state"], found["driver"], found["resumable"]) == ("interrupted", None, True)
    assert found["resume_command"] == runfolder.read_experiment(run_dir)["command"] + " --resume"
    unfinished = [s for s in tune_record.states(run_dir).values() if s not in ("TERMINATED", "ERROR")]
    assert found["trials"]["pending"] == len(unfinished) >= 1 and found["trials"]["planned"] == 2
    assert not (run_dir / runfolder.LOCK_FILE).exists()  # released on the way out
    df = results.read(run_dir)  # what existed, written
    assert set(df["status"]) <= {"completed", "stopped"} and (df["status"] == "stopped").any()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    info = runfolder.read_experiment(run_dir)
    assert info["finished"] is None
    assert client.get_run(info["mlflow_parent_run_id"]).info.status == "KILLED"
    for run_id in df.loc[df["status"] == "stopped", "mlflow_run_id"]:
        assert client.get_run(run_id).info.status == "KILLED"
    if not resume:
        return

    assert run(*argv, "--resume") == 0
    df = results.read(run_dir)
    assert len(df) == 2 and (df["status"] == "completed").all()
    assert sorted(df["lr"]) == pytest.approx([0.005, 0.01])
    assert client.get_run(runfolder.read_experiment(run_dir)["mlflow_parent_run_id"]).info.status == "FINISHED"
    check_rows_against_tune(df, run_dir, 2, tune_record)


def check_console(out: str, run_dir: Path, verbose: bool) -> None:
    """Without -v, the console holds our lines alone (start summary, progress, summary), and
    search.log what Ray, Tune and the trials said; -v shows that on the console too."""
    said_elsewhere = ("== Status ==", "Checkpoint successfully created", "Connecting to existing Ray cluster")
    log = runfolder.log_path(run_dir).read_text()
    assert all(text in log for text in said_elsewhere), log[-3000:]
    if verbose:
        assert all(text in out for text in said_elsewhere), out[-3000:]
        return
    lines = out.splitlines()
    assert len(lines) <= 40 and not any(text in out for text in said_elsewhere), out
    assert any(line.startswith(f"search {run_dir.name}: ") for line in lines)
    assert f"from another shell: python -m search.status {run_dir.resolve()}" in lines


def test_a_second_search_of_the_same_name_is_refused_and_sigint_exits_130(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space,
        subprocess_env, tune_record, capsys) -> None:
    def second_search(argv: list[Any], run_dir: Path, first: subprocess.Popen) -> None:
        held = (run_dir / runfolder.LOCK_FILE).read_bytes()
        for extra in ([], ["--resume"]):
            second = subprocess.run(
                [sys.executable, "-m", "search.run", *map(str, argv), *extra, "--address", ray_address],
                cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=180)
            assert second.returncode == 2, second.stderr[-3000:]
            err = second.stderr.strip().splitlines()
            assert len(err) == 1 and f"pid {first.pid}" in err[0] and "running search" in err[0], err
            assert json.loads(held)["since"] in err[0]
        assert (run_dir / runfolder.LOCK_FILE).read_bytes() == held
        assert first.poll() is None
        with frozen(first.pid, run_dir, tune_record):  # status of the running search: it writes nothing
            before = fingerprint(run_dir, skip="checkpoint_")  # what the trials write while the driver waits
            found = status(capsys, run_dir)
            assert fingerprint(run_dir, skip="checkpoint_") == before
            states = list(tune_record.states(run_dir).values())
        assert found["state"] == "running" and found["resume_command"] is None
        assert found["driver"] == {"pid": first.pid, "host": socket.gethostname(), "since": json.loads(held)["since"],
                                   "alive": True}
        assert found["trials"]["running"] == states.count("RUNNING") >= 1 and found["trials"]["planned"] == 2
        assert found["results"] is None and found["elapsed_s"] > 0

    interrupted(signal.SIGINT, "sigint", storage, mnist_dir, tmp_path, write_space, ray_address,
                subprocess_env, tune_record, capsys, second_search)


def test_sigterm_exits_143_with_trials_checkpointed_and_runs_killed(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space,
        subprocess_env, tune_record, capsys) -> None:
    """The same way out as SIGINT's (whose test also resumes), with SIGTERM's exit code; with -v."""
    interrupted(signal.SIGTERM, "sigterm", storage, mnist_dir, tmp_path, write_space, ray_address,
                subprocess_env, tune_record, capsys, resume=False, verbose=True)


def test_a_search_whose_trials_all_errored_exits_1_with_its_results(
        ray_address: str, storage: Path, mnist_dir: Path, tmp_path: Path, write_space, capsys) -> None:
    space = write_space(tmp_path, "allerrored", {"lr": {"grid": [0.01, 0.005]}}, {"algorithm": "grid"},
                        max_failures=0)
    code = run(space, "--storage", storage, "--data-dir", mnist_dir, "--reports-dir",
               tmp_path / "reports", faults="raise_at_epoch=1")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1
    assert len(err) == 1 and "all 2 trials errored" in err[0] and "injected fault" in err[0]
    df = results.read(storage / "allerrored")
    assert list(df["status"]) == ["errored", "errored"]
    assert not (storage / "allerrored" / runfolder.LOCK_FILE).exists()
