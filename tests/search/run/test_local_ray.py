"""The embedded Ray of a search without --address (search.run.local_ray) and what a driver killed with
SIGKILL leaves (search.run.watchdog): one real driver subprocess starting its own Ray, with Ray's
token authentication on, as a user gets it (and Ray's warning saying so kept in search.log)."""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
import ray  # noqa: F401  (puts Ray's bundled psutil on sys.path)
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

from search import runfolder

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.e2e
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or bool(getattr(addr, "ipv4_mapped", None) and addr.ipv4_mapped.is_loopback)


def tree(pid: int) -> dict[int, psutil.Process]:
    root = psutil.Process(pid)
    return {p.pid: p for p in [root, *root.children(recursive=True)]}


def name(p: psutil.Process) -> str:
    with_args = p.cmdline() or [p.name()]
    return Path(with_args[0]).name if with_args[0].startswith("/") else with_args[0]


def listeners(procs: dict[int, psutil.Process]) -> list[tuple[str, int, int, str, str]]:
    """(ip, port, pid, process name, parent's name) of every listening TCP socket of `procs`."""
    out = []
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs:
            p = procs[c.pid]
            parent = procs.get(p.ppid())
            out.append((c.laddr.ip, c.laddr.port, c.pid, name(p), name(parent) if parent else ""))
    return out


def core(listener: tuple[str, int, int, str, str], driver: int) -> bool:
    """Ray's core: the GCS, the raylet, the driver's and the workers' core worker."""
    _, _, pid, proc, parent = listener
    return proc in ("gcs_server", "raylet") or pid == driver or (parent == "raylet" and proc not in AGENTS)


def ask_gcs(port: int, token: str | None) -> grpc.StatusCode:
    """A GCS call over a fresh connection, with `token` (None: none); its status code."""
    metadata = [("authorization", f"Bearer {token}")] if token is not None else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            reply = stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), metadata=metadata,
                                        timeout=20)
        except grpc.RpcError as e:
            return e.code()
    assert len(reply.node_info_list) == 1
    return grpc.StatusCode.OK


def test_a_local_search_listens_on_loopback_wants_the_token_and_leaves_nothing_when_killed(
        mnist_dir: Path, tmp_path: Path, write_space, subprocess_env, tune_record) -> None:
    space = write_space(tmp_path, "loopback", {"lr": {"grid": [0.01, 0.005]}}, {"algorithm": "grid"})
    storage = tmp_path / "runs"
    run_dir = storage / "loopback"
    env = subprocess_env()
    del env["RAY_AUTH_MODE"]  # Ray's default for a local ray.init: token authentication on
    log = tmp_path / "driver.log"
    driver = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "search" / "faulty_driver.py"), "sleep_per_epoch=3",
         str(space), "--storage", str(storage), "--data-dir", str(mnist_dir), "--reports-dir",
         str(tmp_path / "reports")], cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None and not tune_record.results(run_dir):
            time.sleep(0.2)  # until a trial has reported an epoch: its MLflow run exists
        assert driver.poll() is None and tune_record.results(run_dir), log.read_text()[-3000:]
        procs = tree(driver.pid)
        found = listeners(procs)
        gcs = [port for _, port, _, proc, _ in found if proc == "gcs_server"]
        assert len(gcs) == 1 and {proc for _, _, _, proc, _ in found} >= set(AGENTS), found
        open_ = [entry for entry in found if not loopback(entry[0]) and not core(entry, driver.pid)]
        assert not open_, "listening beyond loopback:\n" + "\n".join(map(str, found))

        said = log.read_text()  # Ray's warning that token authentication is on: in search.log, not here
        assert "Token authentication is enabled" not in said and "RAY_AUTH_MODE" not in said, said[-3000:]
        assert "Token authentication is enabled" in runfolder.log_path(run_dir).read_text()

        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        assert ask_gcs(gcs[0], None) == grpc.StatusCode.UNAUTHENTICATED
        assert ask_gcs(gcs[0], "not-" + token) == grpc.StatusCode.UNAUTHENTICATED
        assert ask_gcs(gcs[0], token) == grpc.StatusCode.OK

        started = {pid: p.create_time() for pid, p in procs.items()}
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        killed = time.monotonic()
        left = dict(started)
        while left and time.monotonic() < killed + 15:
            left = {pid: t for pid, t in left.items() if psutil.pid_exists(pid) and
                    psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and
                    psutil.Process(pid).create_time() == t}
            time.sleep(0.1)
        gone_after = time.monotonic() - killed
        assert not left and gone_after < 10, f"left after {gone_after:.1f} s: {left}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    parent = runfolder.read_experiment(run_dir)["mlflow_parent_run_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and client.get_run(parent).info.status == "RUNNING":
        time.sleep(0.2)
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert children and client.get_run(parent).info.status == "KILLED"
    statuses = [r.info.status for r in children]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses
