"""search.run.preflight: the plan's bounded checks. An --address where no Ray cluster answers, a
malformed --tracking-uri, trials that do not fit in memory or on the storage's disk, and a run folder
whose files cannot be read back are each one line, before anything starts or is written."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from search.run import preflight
from search.space import load_space
from simvp_core import memory


def test_an_address_where_no_ray_cluster_answers_is_refused_within_the_probe(monkeypatch, listening) -> None:
    preflight.check_address(listening)  # answers as gRPC: a cluster's head
    preflight.check_address("auto")  # Ray's to resolve
    monkeypatch.setattr(preflight, "PROBE_TIMEOUT_S", 0.5)
    with socket.socket() as dead, socket.socket() as silent:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: refused
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts, never answers
        cases = {f"127.0.0.1:{dead.getsockname()[1]}": "Connection refused",
                 f"127.0.0.1:{silent.getsockname()[1]}": "no answer",
                 "x:y:z": "not host:port", "host name:1": "not host:port", "[::1:6379": "not host:port"}
        for address, words in cases.items():
            with pytest.raises(preflight.PreflightError) as info:
                preflight.check_address(address)
            assert words in str(info.value) and len(str(info.value)) < 300, str(info.value)


@pytest.mark.parametrize("uri, words", [
    ("foo://x", "unknown scheme 'foo://'"), ("http://[::1", "not a URI (Invalid IPv6 URL)"),
    ("http://host:99999", "not a URI"), ("http:///path", "no host"), ("", "empty"),
    ("http://a b", "with spaces"), ("sqlite:////proc/x/mlflow.db", "not a writable folder"),
])
def test_a_malformed_tracking_uri_is_refused(uri, words) -> None:
    with pytest.raises(preflight.PreflightError, match=words.replace("(", r"\(").replace(")", r"\)")):
        preflight.check_tracking_uri(uri)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "https://mlflow.example.org", "sqlite:///runs/mlflow.db",
                                 "file:///tmp/mlruns", "mlruns", "postgresql://u@db:5432/mlflow", "databricks"])
def test_a_well_formed_tracking_uri_passes_whether_or_not_it_answers(uri) -> None:
    preflight.check_tracking_uri(uri)  # a dead server turns MLflow logging off, by design


def test_trials_that_do_not_fit_in_memory_are_refused_naming_the_setting(tmp_path, write_space, monkeypatch) -> None:
    monkeypatch.setenv(memory.ENV_LIMIT, "2000")
    (tmp_path / "big.yaml").write_text(yaml.safe_dump({
        "base": {"c_s": 4, "c_t": 8, "n_t": 1, "epochs": 1, "train_size": 8, "test_size": 4, "val_size": 4},
        "space": {"eval_batch_size": {"grid": [8, 65_536]}}, "search": {"algorithm": "grid"}}))
    big = load_space(tmp_path / "big.yaml")
    with pytest.raises(preflight.PreflightError, match=r"each trial needs about .* GB \(eval_batch_size 65,536"):
        preflight.check_memory(big, at_once=1)
    small = load_space(write_space(tmp_path, "small", {"lr": {"grid": [0.01, 0.02]}}))
    line = preflight.check_memory(small, at_once=2)
    assert line.startswith("memory: about ") and "2 at once" in line
    monkeypatch.setenv(memory.ENV_LIMIT, str(int(preflight.trial_memory(small).total() * 1.5) // 2**20))
    with pytest.raises(preflight.PreflightError,
                       match=r"2 trials at once need about .* \(each .*, or pass --max-concurrent 1"):
        preflight.check_memory(small, at_once=2)
    sampled = load_space(write_space(tmp_path, "sampled", {"mlp_ratio": {"uniform": [1.0, 60.0]}},
                                     {"algorithm": "random", "num_samples": 2}))
    assert max(c.mlp_ratio for c in preflight.trial_configs(sampled)) == 60.0  # the range's top


def test_a_disk_without_room_for_the_next_checkpoints_is_refused(small_disk: Path, tmp_path, write_space) -> None:
    spec = load_space(write_space(tmp_path, "disk", {"lr": {"grid": [0.01]}}))
    with pytest.raises(preflight.PreflightError, match=r"kB free on its disk, but 1 trial\(s\) at once need about"):
        preflight.check_disk(small_disk / "runs", spec, at_once=1)
    assert preflight.check_disk(tmp_path / "runs", spec, at_once=1).startswith("disk: about ")
    assert not (small_disk / "runs").exists()


def test_a_run_folder_to_resume_is_read_back_whole_before_anything_is_written(tmp_path, write_space) -> None:
    spec = load_space(write_space(tmp_path, "opt", {"lr": {"uniform": [0.001, 0.01]}},
                                  {"algorithm": "random", "num_samples": 2}))
    run_dir = tmp_path / "runs" / "opt"
    (run_dir / "tune").mkdir(parents=True)
    (run_dir / "optuna.db").write_text("not a database")
    (run_dir / "results.parquet").write_bytes(b"PAR1 truncated")
    (run_dir / "tune" / "tuner.pkl").write_bytes(b"garbage")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    previous = {"optuna_study": "opt"}
    steps = [("optuna.db is not an SQLite database", lambda: study(run_dir)),
             ("results.parquet cannot be read", lambda: (run_dir / "results.parquet").unlink()),
             ("Tune's state in", None)]
    for words, repair in steps:
        with pytest.raises(preflight.PreflightError, match=words) as info:
            preflight.check_resumable(run_dir, str(run_dir / "tune"), previous, spec)
        assert str(info.value).startswith("--resume: ") and len(str(info.value)) < 300
        assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == {
            p: b for p, b in before.items() if p.exists()}
        if repair:
            repair()
            before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert os.listdir(run_dir / "tune") == ["tuner.pkl"]


def study(run_dir: Path) -> None:
    import optuna

    from search import runfolder

    (run_dir / "optuna.db").unlink()
    optuna.create_study(study_name="opt", storage=runfolder.optuna_storage(run_dir))
