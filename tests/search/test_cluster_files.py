"""The shipped Ray cluster files pass Ray's offline validator, broken ones are named and rejected,
and the files keep to the network policy of docs/cluster.md (SSH only from outside, token auth,
MLflow and the dashboard on the head's loopback); unsafe copies are refused."""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
import yaml

from search.cluster_files import validate_cluster_file, warnings

REPO = Path(__file__).resolve().parents[2]
AWS_FILE = REPO / "ray_cluster.yaml"
ONPREM_FILE = REPO / "ray_cluster.onprem.yaml"
CLUSTER_FILES = (AWS_FILE, ONPREM_FILE)


def load(path: Path) -> dict:
    """The cluster file as written, before Ray fills in its defaults."""
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_shipped_files_pass_rays_validator(path: Path) -> None:
    prepared = validate_cluster_file(path)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_onprem_keeps_every_listed_worker() -> None:
    """docs/cluster.md promises that Ray keeps every worker IP in the cluster."""
    n_workers = len(load(ONPREM_FILE)["provider"]["worker_ips"])
    prepared = validate_cluster_file(ONPREM_FILE)
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == n_workers


def test_aws_gpu_workers_autoscale_from_zero_on_spot() -> None:
    config = load(AWS_FILE)
    workers = {name: t for name, t in config["available_node_types"].items()
               if name != config["head_node_type"]}
    assert workers, "no worker node type"
    for node_type in workers.values():
        assert node_type["min_workers"] == 0
        assert 0 < node_type["max_workers"] <= config["max_workers"]
    assert any(t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
               for t in workers.values())


def _set(keys: tuple, value: object) -> Callable[[dict], None]:
    """A mutation that sets the value at the key path."""
    def mutate(config: dict) -> None:
        target = config
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return mutate


def _drop_provider_type(config: dict) -> None:
    del config["provider"]["type"]


def _min_workers_over_max(config: dict) -> None:
    config["available_node_types"]["gpu_spot"]["min_workers"] = config["max_workers"] + 1


def _add_aws_node_types(config: dict) -> None:
    aws = load(AWS_FILE)
    config["available_node_types"] = aws["available_node_types"]
    config["head_node_type"] = aws["head_node_type"]


BROKEN = {  # name: (file mutated, mutation, a fragment of Ray's message)
    "unknown-top-level-key": (AWS_FILE, _set(("gpus_per_node",), 1), "gpus_per_node"),
    "unknown-node-type-key": (AWS_FILE, _set(("available_node_types", "gpu_spot", "gpus"), 1),
                              "gpus"),
    "fractional-gpu": (AWS_FILE, _set(("available_node_types", "gpu_spot", "resources"),
                                      {"GPU": 0.25}), "0.25"),
    "missing-provider-type": (AWS_FILE, _drop_provider_type, "provider: 'type'"),
    "head-node-type-missing": (AWS_FILE, _set(("head_node_type",), "cpu_head"), "head_node_type"),
    "min-workers-over-max": (AWS_FILE, _min_workers_over_max, "min_workers"),
    "local-with-node-types": (ONPREM_FILE, _add_aws_node_types, "available_node_types"),
}


def write_broken(tmp_path: Path, name: str, table: dict = BROKEN, prefix: str = "broken") -> Path:
    """A copy of a shipped file with one mutation of `table` (BROKEN or UNSAFE) applied, in tmp_path."""
    source, mutate, _ = table[name]
    config = copy.deepcopy(load(source))
    mutate(config)
    path = tmp_path / f"{prefix}-{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_copies_are_rejected_naming_the_file(tmp_path: Path, name: str) -> None:
    path = write_broken(tmp_path, name)
    with pytest.raises(ValueError) as caught:
        validate_cluster_file(path)
    message = str(caught.value)
    assert str(path) in message
    assert BROKEN[name][2] in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["- just\n- a list\n", "cluster_name: [unclosed\n"],
                         ids=["not-a-mapping", "bad-yaml"])
def test_unusable_yaml_is_a_value_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{path.name}: ")):  # (a long path is cut in its middle)
        validate_cluster_file(path)


def run_cli(*files: Path) -> subprocess.CompletedProcess:
    """`python -m search.cluster_files FILES` from the repository root."""
    return subprocess.run([sys.executable, "-m", "search.cluster_files", *map(str, files)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_exits_0_on_the_shipped_files() -> None:
    result = run_cli(*CLUSTER_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK ") == 2


def test_cli_exits_2_on_a_broken_file(tmp_path: Path) -> None:
    broken = write_broken(tmp_path, "fractional-gpu")
    result = run_cli(AWS_FILE, broken)
    assert result.returncode == 2
    assert f"OK {AWS_FILE}" in result.stdout
    assert f"ERROR {broken}" in result.stderr and "ERROR" not in result.stdout


def test_security_group_opens_only_ssh_to_a_limited_range() -> None:
    rules = load(AWS_FILE)["provider"]["security_group"]["IpPermissions"]
    assert rules
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
        assert not rule.get("Ipv6Ranges") and not rule.get("UserIdGroupPairs"), rule
        assert rule["IpRanges"], rule
        for ip_range in rule["IpRanges"]:
            assert ipaddress.ip_network(ip_range["CidrIp"]).prefixlen > 0, rule


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_mlflow_and_dashboard_listen_on_the_heads_loopback_only(path: Path) -> None:
    config = load(path)
    head = config["head_start_ray_commands"]
    servers = [c for c in head if "mlflow server" in c]
    assert len(servers) == 1
    assert re.findall(r"--host[= ](\S+)", servers[0]) == ["127.0.0.1"], servers[0]
    assert any("ray start --head" in c and "--dashboard-host=127.0.0.1" in c for c in head)
    others = config["setup_commands"] + config["worker_start_ray_commands"]
    assert not any("mlflow server" in c for c in others)


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_ray_start_uses_the_token_the_head_makes_and_workers_receive(path: Path) -> None:
    config = load(path)
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for c in config[key] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts)
    assert any("ray get-auth-token --generate" in c and "umask 077" in c
               for c in config["head_setup_commands"])
    assert "~/.ray/auth_token" in config["cluster_synced_files"]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_ulimit_failure_is_reported_not_hidden(path: Path) -> None:
    config = load(path)
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ulimit -n 65536" in command:
            assert "ulimit -n 65536 ||" in command and "WARNING" in command, command
            assert "ulimit -n 65536;" not in command, command


def _replace_in_commands(key: str, old: str, new: str) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        config[key] = [c.replace(old, new) for c in config[key]]
    return mutate


def _open_to_world(protocol: str, first: int, last: int) -> Callable[[dict], None]:
    """A mutation adding an inbound rule from anywhere for these ports."""
    def mutate(config: dict) -> None:
        config["provider"]["security_group"]["IpPermissions"].append(
            {"IpProtocol": protocol, "FromPort": first, "ToPort": last,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    return mutate


def _mlflow_host_through_a_variable(config: dict) -> None:
    config["head_start_ray_commands"] = [
        c.replace("--host 127.0.0.1", '--host "$BIND"').replace("mkdir -p ~/mlflow",
                                                               "BIND=0.0.0.0; mkdir -p ~/mlflow")
        for c in config["head_start_ray_commands"]]


UNSAFE = {  # name: (file mutated, mutation, a fragment of the message)
    "token-auth-off": (ONPREM_FILE, _replace_in_commands(
        "worker_start_ray_commands", "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"),
        "worker_start_ray_commands: RAY_AUTH_MODE=disabled"),
    "token-auth-missing": (AWS_FILE, _replace_in_commands(
        "head_start_ray_commands", "RAY_AUTH_MODE=token ", ""), "without token authentication"),
    "mlflow-on-every-interface": (ONPREM_FILE, _replace_in_commands(
        "head_start_ray_commands", "--host 127.0.0.1", "--host 0.0.0.0"), "--host 0.0.0.0"),
    "dashboard-on-every-interface": (AWS_FILE, _replace_in_commands(
        "head_start_ray_commands", "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"),
        "--dashboard-host 0.0.0.0"),
    "mlflow-host-through-a-variable": (AWS_FILE, _mlflow_host_through_a_variable,
                                       "--host 0.0.0.0"),
    "mlflow-port-open-to-the-world": (AWS_FILE, _open_to_world("tcp", 5000, 5000),
                                      "ports 5000-5000 open to 0.0.0.0/0"),
    "all-traffic-open-to-the-world": (AWS_FILE, _open_to_world("-1", -1, -1),
                                      "all ports open to 0.0.0.0/0"),
    "worker-is-the-head": (ONPREM_FILE, _set(("provider", "worker_ips"), ["192.0.2.10"]),
                           "192.0.2.10 is also head_ip"),
    "worker-listed-twice": (ONPREM_FILE, _set(("provider", "worker_ips"),
                                              ["192.0.2.11", "192.0.2.11"]), "listed twice"),
}


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_copies_are_refused_with_the_fix(tmp_path: Path, name: str) -> None:
    fragment = UNSAFE[name][2]
    path = write_broken(tmp_path, name, UNSAFE, "unsafe")
    with pytest.raises(ValueError) as caught:
        validate_cluster_file(path)
    message = str(caught.value)
    assert str(path) in message and fragment in message, message
    assert "\n" not in message and len(message) < 300 + len(str(path)), message


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_nodes_install_pinned_torch_then_pinned_ray_and_the_project(path: Path) -> None:
    commands = load(path)["setup_commands"]
    torch_at = next(i for i, c in enumerate(commands) if "pip install torch==2.13.0" in c)
    project_at = next(i for i, c in enumerate(commands) if re.search(r"pip install .*-e ", c))
    assert torch_at < project_at
    assert f'"ray[default]=={ray.__version__}"' in commands[project_at]


EDIT_KEYS = {
    AWS_FILE: ("region:", "availability_zone:", "ssh_private_key:", "ImageId: &", "KeyName: &",
               "CidrIp:", "Arn:", "MLFLOW_ARTIFACTS=", "SIMVP_PIP_ARGS="),
    ONPREM_FILE: ("head_ip:", "worker_ips:", "ssh_user:", "ssh_private_key:", "SIMVP_PYTHON=",
                  "SIMVP_VENV_ARGS=", "SIMVP_PIP_ARGS=", "export SIMVP_DATA_DIR=",
                  "MLFLOW_ARTIFACTS="),
}


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_account_specific_values_are_marked_edit(path: Path) -> None:
    lines = path.read_text().splitlines()
    for key in EDIT_KEYS[path]:
        found = [line for line in lines if line.strip().lstrip("- ").startswith(key)]
        assert found, f"{key} not in {path.name}"
        assert all("# EDIT:" in line for line in found), found
    if path == AWS_FILE:
        bucket_lines = [line for line in lines if "s3://BUCKET" in line
                        and not line.lstrip().startswith("#")]
        assert bucket_lines and all("# EDIT:" in line for line in bucket_lines), bucket_lines


PLACEHOLDER_LINES = {  # what the shipped file still holds, and a value a user would put there
    AWS_FILE: {"203.0.113.7/32": "198.18.4.2/32", "ami-0123456789abcdef0": "ami-0f1e2d3c4b5a69788",
               "123456789012": "210987654321", "s3://BUCKET/": "s3://my-lab-bucket/"},
    ONPREM_FILE: {"192.0.2.10": "10.1.0.10", "[192.0.2.11, 192.0.2.12]": "[10.1.0.11]"},
}


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_edit_values_left_at_the_shipped_example_are_warned_by_line(path: Path) -> None:
    lines = path.read_text().splitlines()
    expected = sorted(i for i, line in enumerate(lines, 1) if "# EDIT:" in line
                      and any(old in line for old in PLACEHOLDER_LINES[path]))
    assert len(expected) == len(PLACEHOLDER_LINES[path]), expected
    found = warnings(path)
    assert [int(w.split(":")[1]) for w in found] == expected, found
    assert all("still the shipped example" in w for w in found), found


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_edited_values_pass_without_warnings(tmp_path: Path, path: Path) -> None:
    text = path.read_text()
    for old, new in PLACEHOLDER_LINES[path].items():
        text = text.replace(old, new)
    edited = tmp_path / path.name
    edited.write_text(text)
    validate_cluster_file(edited)
    assert warnings(edited) == []


def test_ssh_open_to_the_world_is_a_warning_not_an_error(tmp_path: Path) -> None:
    config = copy.deepcopy(load(AWS_FILE))
    _open_to_world("tcp", 22, 22)(config)
    path = tmp_path / "ssh-open.yaml"
    path.write_text(yaml.safe_dump(config))
    validate_cluster_file(path)
    assert any("ports 22-22 open to 0.0.0.0/0" in w for w in warnings(path))
    result = run_cli(path)
    assert result.returncode == 0 and "WARNING" in result.stdout, result.stdout


def test_files_that_cannot_be_read_safely_are_one_line_each_on_stderr(tmp_path: Path) -> None:
    """Issue 23: aliases that expand to gigabytes, nesting past Python's recursion, a FIFO, a huge
    file: each refused in one line (once a 15 MB one), the shipped file with its aliases still OK."""
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("cluster_name: x\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh")))
    deep = tmp_path / "deep.yaml"
    deep.write_text("cluster_name: " + "[" * 10_000 + "]" * 10_000 + "\n")
    big = tmp_path / "big.yaml"
    big.write_text("cluster_name: x\n" + "# padding\n" * 200_000)
    os.mkfifo(tmp_path / "fifo.yaml")
    bad = [laughs, deep, big, tmp_path / "fifo.yaml"]
    result = run_cli(AWS_FILE, *bad)
    assert result.returncode == 2 and f"OK {AWS_FILE}" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(bad) and all(len(line) <= 300 for line in lines), lines
    for path, line, words in zip(bad, lines, ("expand it to over 100,000 values", "nest", "refused unread",
                                             "a FIFO (named pipe)")):
        assert line.startswith("ERROR /") and f"{path.name}: " in line and words in line, line
