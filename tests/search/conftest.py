"""Shared fixtures for the search tests: one local Ray per test module, tiny space files, an
`mlflow server` on a free local port, and readers of what Tune itself recorded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# A model and data small enough that one epoch takes about a second on one CPU core.
TINY_BASE = {"preset": "simvpv2", "n_s": 2, "n_t": 2, "c_s": 4, "c_t": 8, "train_size": 16,
             "val_size": 8, "test_size": 8, "batch_size": 8, "eval_batch_size": 8, "epochs": 2,
             "device": "cpu"}


def _write_space(folder: Path, name: str, space: dict[str, Any], search: dict[str, Any] | None = None,
                 base: dict[str, Any] | None = None, **top: Any) -> Path:
    """A space file with the tiny base (plus `base`); `space`/`search` as in the YAML format."""
    data = {"experiment": name, "description": f"test space {name}",
            "base": {**TINY_BASE, **(base or {})}, "space": space,
            "search": search or {"algorithm": "grid"}, "scheduler": {"type": "none"},
            "resources": {"cpu": 1, "gpu": 0}, "max_failures": 1, **top}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tune_trial_states(run_dir: Path) -> dict[str, str]:
    """trial_id -> status in Tune's newest experiment-state snapshot (empty before the first)."""
    snapshots = sorted((run_dir / "tune").glob("experiment_state-*.json"))
    if not snapshots:
        return {}
    try:
        state = json.loads(snapshots[-1].read_text())
    except (OSError, ValueError):
        return {}
    return {json.loads(trial)["trial_id"]: json.loads(trial)["status"]
            for trial, _ in state.get("trial_data", [])}


def _tune_results(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Tune's own record: trial_id -> every reported result in order (result.json), for the
    trials of the experiment state (a killed driver can leave folders of trials it never recorded)."""
    known = _tune_trial_states(run_dir)
    out: dict[str, list[dict[str, Any]]] = {}
    for path in (run_dir / "tune").glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows and rows[0]["trial_id"] in known:
            out[rows[0]["trial_id"]] = rows
    return out


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """One local Ray (2 CPUs) for the searches of a test module: drivers in this process reuse it,
    driver subprocesses join it with --address."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")  # a local test cluster: no token authentication
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray.get_runtime_context().gcs_address
        if started:
            ray.shutdown()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, fresh_mlflow_store) -> Path:
    """One storage folder (and so one SQLite MLflow store, made empty) for the searches of a test module."""
    folder = tmp_path_factory.mktemp("runs")
    fresh_mlflow_store(folder)
    return folder


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `mlflow server` on 127.0.0.1:<free port>; call the fixture's value to wait for it.

    It starts as soon as a test module asks for it, so its start-up overlaps earlier tests."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{folder / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=folder, stdout=log, stderr=subprocess.STDOUT)

    def wait(timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return uri
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow server at {uri} not healthy after {timeout} s")

    yield wait
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def fresh_mlflow_store(tmp_path_factory: pytest.TempPathFactory):
    """fresh_mlflow_store(folder) -> the URI of a new, empty SQLite MLflow store in folder: a copy of
    one made once per session (making one runs MLflow's schema migrations, seconds each time)."""
    from mlflow.tracking import MlflowClient

    template = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{template}").search_experiments()  # creates and migrates the schema

    def fresh(folder: Path) -> str:
        shutil.copyfile(template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"
    return fresh


def _subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a driver subprocess: the repo importable, no token auth."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def write_space():
    """write_space(folder, name, space, search=None, base=None, **top) -> a tiny space file."""
    return _write_space


@pytest.fixture(scope="session")
def tune_record():
    """Readers of Tune's own files: .results(run_dir) (result.json rows per trial) and
    .states(run_dir) (trial statuses of the newest experiment-state snapshot)."""
    class Record:
        results = staticmethod(_tune_results)
        states = staticmethod(_tune_trial_states)
    return Record


@pytest.fixture(scope="session")
def free_port():
    """free_port() -> a local TCP port nobody listens on (at the time of the call)."""
    return _free_port


@pytest.fixture(scope="session")
def subprocess_env():
    """subprocess_env(**extra) -> environment for a driver subprocess (repo importable, no auth)."""
    return _subprocess_env


@pytest.fixture
def listening() -> Iterator[str]:
    """host:port of a server that answers as a gRPC server does (an HTTP/2 SETTINGS frame), as a
    Ray cluster's head: what the plan's probe of --address asks of it."""
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()

        def serve() -> None:
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        threading.Thread(target=serve, daemon=True).start()
        yield f"127.0.0.1:{s.getsockname()[1]}"
