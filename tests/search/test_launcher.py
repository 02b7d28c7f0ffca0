"""`ray up` of the shipped on-premises file, for real: over SSH into a network namespace that has
only `lo`, as a temporary user, with only the `# EDIT:` values changed. A tiny search is submitted
as docs/cluster.md says; then `ray down` must leave nothing running and nothing listening."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from simvp_core.data import SAMPLE
from tests.search.conftest import TINY_BASE
from tests.search.launcher.host import Host, missing_requirement, sh

REPO = Path(__file__).resolve().parents[2]
ONPREM_FILE = REPO / "ray_cluster.onprem.yaml"
EDIT_LINE = re.compile(r"^(\s*(?:-\s+|export\s+)?)([\w.]+)(:\s*|=)(.*?)(\s+# EDIT:.*)$")
RAY = Path(sys.executable).parent / "ray"
NAME = "launcher"

pytestmark = pytest.mark.e2e


def fill_edits(text: str, values: dict[str, str]) -> str:
    """The file with the value of each `# EDIT:` line whose key is in `values` replaced; every
    key must match exactly one such line, and no other line changes."""
    lines, used = text.splitlines(keepends=True), []
    for i, line in enumerate(lines):
        match = EDIT_LINE.match(line.rstrip("\n"))
        if match and match.group(2) in values:
            indent, key, sep, _, comment = match.groups()
            lines[i] = f"{indent}{key}{sep}{values[key]}{comment}\n"
            used.append(key)
    assert sorted(used) == sorted(values), f"# EDIT: lines matched {used}, wanted {list(values)}"
    return "".join(lines)


def tiny_space(path: Path) -> Path:
    """spaces/smoke.yaml shrunk to 2 trials of 1 short epoch (the tests' tiny model)."""
    spec = yaml.safe_load((REPO / "spaces" / "smoke.yaml").read_text())
    spec["experiment"] = NAME
    spec["base"] = {**spec["base"], **TINY_BASE, "epochs": 1}
    spec["search"]["num_samples"] = 2
    spec["scheduler"] = {"type": "none"}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def host(mnist_dir) -> Iterator[Host]:
    reason = missing_requirement()
    if reason:
        pytest.skip(f"launcher test: {reason}")
    # this python's packages, and in a virtualenv the python it was made from (the node's venv
    # reuses both: ray_cluster.onprem.yaml's .pth step)
    prefixes = dict.fromkeys(Path(p).resolve() for p in (sys.prefix, sys.base_prefix))
    machine = Host(root=Path(f"/run/simvp-launcher-{os.getpid()}"), expose=list(prefixes))
    try:
        machine.start()
        yield machine
    finally:
        machine.close()


def launcher(host: Host, *args: str, timeout: float, env: dict | None = None) -> str:
    """The `ray` CLI as the user runs it from the checkout root, inside the namespace, with its
    own /tmp/ray (the local provider keeps the cluster's state there)."""
    state = host.root / "launcher-ray"
    state.mkdir(exist_ok=True)
    Path("/tmp/ray").mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SIMVP_DATA"))}
    cmd = host.netns("unshare", "--mount", "--propagation", "private", "bash", "-c",
                     f'mount --bind {state} /tmp/ray && exec "$@"', "_", str(RAY), *args)
    start = time.monotonic()
    result = sh(cmd, timeout, cwd=REPO, env={**clean, **(env or {})})
    print(f"ray {args[0]}: {time.monotonic() - start:.1f} s")
    return result.stdout + result.stderr


def clients(host: Host, token: Path | None) -> str:
    """What the job API (HTTP), the GCS (what every Ray driver opens first) and the Ray Client
    server (`ray://`) answer inside the namespace, without a token or with the one at `token`."""
    probe = (
        "import os, urllib.request, urllib.error, grpc\n"
        "path = os.environ.get('RAY_AUTH_TOKEN_PATH')\n"
        "headers = {'Authorization': 'Bearer ' + open(path).read().strip()} if path else {}\n"
        "request = urllib.request.Request('http://127.0.0.1:8265/api/jobs/', headers=headers)\n"
        "try:\n urllib.request.urlopen(request, timeout=10); print('HTTP 200')\n"
        "except urllib.error.HTTPError as e:\n print('HTTP', e.code)\n"
        "from ray._raylet import GcsClient\n"
        "try:\n GcsClient(address='127.0.0.1:6379'); print('GCS connected')\n"
        "except Exception as e:\n print('GCS refused', type(e).__name__)\n"
        "from ray._private.grpc_utils import init_grpc_channel\n"
        "from ray.core.generated import ray_client_pb2 as pb, ray_client_pb2_grpc as pb_grpc\n"
        "stub = pb_grpc.RayletDriverStub(init_grpc_channel('127.0.0.1:10001'))\n"
        "try:\n stub.ClusterInfo(pb.ClusterInfoRequest(type=pb.ClusterInfoType.PING), timeout=10)\n"
        " print('CLIENT connected')\n"
        "except grpc.RpcError as e:\n print('CLIENT refused', e.code().name)\n")
    empty_home = host.root / "client-home"
    empty_home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(empty_home)
    if token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    return sh(host.netns(sys.executable, "-c", probe), 60, env=env).stdout


def mlflow_runs(db: Path) -> list[tuple[str, str | None]]:
    """(run id, parent run id) of every run of the search's experiment, read-only from SQLite."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute(
            "SELECT r.run_uuid, t.value FROM runs r JOIN experiments e "
            "ON r.experiment_id = e.experiment_id LEFT JOIN tags t ON t.run_uuid = r.run_uuid "
            "AND t.key = 'mlflow.parentRunId' WHERE e.name = ?", (NAME,)).fetchall()


def mlflow_pid(host: Host) -> int | None:
    """The pid of the process listening on the head's port 5000, if any."""
    found = [re.search(r"pid=(\d+)", s) for s in host.listening() if ":5000 " in s]
    return int(found[0].group(1)) if found and found[0] else None


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_ray_up_search_and_ray_down_on_a_namespace_host(host: Host, mnist_dir,
                                                        tmp_path: Path) -> None:
    home, user = host.home, host.user
    shared = home / "shared"  # the "NFS share": one machine, so any folder of it is shared
    for folder in (shared, home / "wheelhouse"):
        folder.mkdir()
    space = tiny_space(home / "tiny.yaml")
    data_dir = SAMPLE  # the bundled digits where this machine has no MNIST files
    if mnist_dir != SAMPLE:  # copied onto the share once, as the docs say: the user can read them
        data_dir = str(shared / "simvp-data")
        shutil.copytree(Path(mnist_dir) / "MNIST", Path(data_dir) / "MNIST")
    sh(["chown", "-R", f"{user}:", str(shared), str(home / "wheelhouse"), str(space)], 10)
    cluster_file = tmp_path / "ray_cluster.onprem.yaml"
    cluster_file.write_text(fill_edits(ONPREM_FILE.read_text(), {
        "head_ip": "127.0.0.1", "worker_ips": "[]", "ssh_user": user,
        "ssh_private_key": str(host.key), "SIMVP_PYTHON": sys.executable,
        "SIMVP_VENV_ARGS": '"--system-site-packages --without-pip"',
        # an empty wheelhouse: everything pinned is already in that python, so nothing is fetched
        "SIMVP_PIP_ARGS": f'"--no-index --find-links {home}/wheelhouse --no-build-isolation"',
        "SIMVP_DATA_DIR": data_dir, "MLFLOW_ARTIFACTS": f"{shared}/mlflow-artifacts"}))
    checked = sh([sys.executable, "-m", "search.cluster_files", str(cluster_file)], 60, cwd=REPO)
    assert checked.stdout.split() == ["OK", str(cluster_file)], checked.stdout

    launcher(host, "up", "-y", str(cluster_file), timeout=400)
    (reused,) = (home / "venv").glob("lib/python*/site-packages/simvp-reused-python.pth")
    assert (sys.prefix in reused.read_text()) == (sys.prefix != sys.base_prefix)  # a venv's packages reused
    token_file = home / ".ray" / "auth_token"
    assert token_file.stat().st_mode & 0o077 == 0, oct(token_file.stat().st_mode)
    token = tmp_path / "cluster.token"  # fetched as docs/cluster.md says, while MLflow starts
    launcher(host, "rsync-down", str(cluster_file), "~/.ray/auth_token", str(token), timeout=60)
    assert token.read_text().strip() == token_file.read_text().strip()
    refused, admitted = clients(host, None), clients(host, token)
    print("without the token:", refused.split(), "\nwith it:", admitted.split())
    assert refused.split() == ["HTTP", "401", "GCS", "refused", "AuthenticationError",
                               "CLIENT", "refused", "UNAUTHENTICATED"], refused
    assert admitted.split() == ["HTTP", "200", "GCS", "connected", "CLIENT", "connected"], admitted
    assert wait_for(lambda: mlflow_pid(host), 60), host.listening()
    # What a second `ray up` does to MLflow: the file's own command stops the old server first.
    first = mlflow_pid(host)
    (restart,) = [c for c in yaml.safe_load(cluster_file.read_text())["head_start_ray_commands"]
                  if "mlflow server" in c]
    launcher(host, "exec", str(cluster_file), restart, timeout=60)
    assert wait_for(lambda: mlflow_pid(host) not in (None, first), 60), host.listening()
    assert not Path(f"/proc/{first}").exists(), f"the old MLflow server {first} still runs"
    sockets = host.listening()
    print("listening on the head after ray up (and MLflow's restart):", *sockets, sep="\n  ")
    for line in sockets:
        address = line.split()[4].rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
        assert address in {"127.0.0.1", "::1"}, f"not loopback: {line}"

    storage = shared / "simvp-search"
    launcher(host, "job", "submit", "--address", "http://127.0.0.1:8265", "--working-dir", ".",
             "--", "python", "-m", "search.run", str(space), "--address", "auto",
             "--storage", str(storage), "--shared-storage",
             "--tracking-uri", "http://127.0.0.1:5000", timeout=300,
             env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)})

    results = pd.read_parquet(storage / NAME / "results.parquet")
    assert list(results["status"]) == ["completed", "completed"], results
    runs = mlflow_runs(home / "mlflow" / "mlflow.db")
    parents = [run for run, parent in runs if parent is None]
    assert len(parents) == 1, runs
    assert sorted(parent for _, parent in runs if parent) == parents * 2, runs

    launcher(host, "down", "-y", str(cluster_file), timeout=120)
    assert wait_for(lambda: not host.user_processes(), 30), host.user_processes()
    assert wait_for(lambda: [s for s in host.listening() if '"sshd"' not in s] == [], 15), \
        host.listening()
    host.stop_sshd()
    assert host.listening() == []
