"""The shipped Ray cluster files pass Ray's offline validator, broken ones are named and rejected,
and the files keep to the network policy of docs/cluster.md (SSH only, nothing on 0.0.0.0)."""

from __future__ import annotations

import copy
import ipaddress
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
import yaml

from search.cluster_files import validate_cluster_file

REPO = Path(__file__).resolve().parents[2]
AWS_FILE = REPO / "ray_cluster.yaml"
ONPREM_FILE = REPO / "ray_cluster.onprem.yaml"
CLUSTER_FILES = (AWS_FILE, ONPREM_FILE)
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", "*", ""}


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


def write_broken(tmp_path: Path, name: str) -> Path:
    """A copy of a shipped file with one BROKEN mutation applied, in tmp_path."""
    source, mutate, _ = BROKEN[name]
    config = copy.deepcopy(load(source))
    mutate(config)
    path = tmp_path / f"broken-{name}.yaml"
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
    with pytest.raises(ValueError, match=re.escape(str(path))):
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
    assert f"ERROR {broken}" in result.stdout


def test_security_group_opens_only_ssh_to_a_limited_range() -> None:
    rules = load(AWS_FILE)["provider"]["security_group"]["IpPermissions"]
    assert rules
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
        assert not rule.get("Ipv6Ranges") and not rule.get("UserIdGroupPairs"), rule
        assert rule["IpRanges"], rule
        for ip_range in rule["IpRanges"]:
            assert ipaddress.ip_network(ip_range["CidrIp"]).prefixlen > 0, rule


def mlflow_host(command: str) -> str:
    """The address `mlflow server --host` binds, following one `$VAR` to its assignment."""
    match = re.search(r"--host[= ]\"?([^\"\s]+)", command)
    assert match, f"mlflow server without --host binds 127.0.0.1, unreachable by workers: {command}"
    host = match.group(1)
    if host.startswith("$"):
        assignment = re.search(rf"\b{re.escape(host[1:])}=(\$\([^)]*\)|\S+?);", command)
        assert assignment, f"{host} is never assigned in: {command}"
        host = assignment.group(1)
    return host


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_mlflow_and_dashboard_are_not_bound_to_every_interface(path: Path) -> None:
    config = load(path)
    head = config["head_start_ray_commands"]
    servers = [c for c in head if "mlflow server" in c]
    assert len(servers) == 1
    host = mlflow_host(servers[0])
    assert host not in WILDCARD_HOSTS and host not in {"127.0.0.1", "localhost"}, host
    assert not any("0.0.0.0" in c for c in head)
    assert any("ray start --head" in c and "--dashboard-host=127.0.0.1" in c for c in head)
    others = config["setup_commands"] + config["worker_start_ray_commands"]
    assert not any("mlflow server" in c for c in others)


def test_mlflow_host_parser_sees_a_wildcard_binding() -> None:
    assert mlflow_host("IP=0.0.0.0; mlflow server --host \"$IP\" --port 5000") == "0.0.0.0"
    assert mlflow_host("mlflow server --host=:: --port 5000") == "::"


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_nodes_install_pinned_torch_then_pinned_ray_and_the_project(path: Path) -> None:
    commands = load(path)["setup_commands"]
    torch_at = next(i for i, c in enumerate(commands) if "pip install torch==2.13.0" in c)
    project_at = next(i for i, c in enumerate(commands) if re.search(r"pip install .*-e ", c))
    assert torch_at < project_at
    assert f'"ray[default]=={ray.__version__}"' in commands[project_at]


EDIT_KEYS = {
    AWS_FILE: ("region:", "availability_zone:", "ssh_private_key:", "ImageId: &", "KeyName: &",
               "CidrIp:", "Arn:"),
    ONPREM_FILE: ("head_ip:", "worker_ips:", "ssh_user:", "ssh_private_key:"),
}


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_account_specific_values_are_marked_edit(path: Path) -> None:
    lines = path.read_text().splitlines()
    for key in EDIT_KEYS[path]:
        found = [line for line in lines if line.strip().lstrip("- ").startswith(key)]
        assert found, f"{key} not in {path.name}"
        assert all("# EDIT:" in line for line in found), found
    if path == AWS_FILE:
        bucket_lines = [i for i, line in enumerate(lines) if "s3://BUCKET" in line
                        and not line.lstrip().startswith("#")]
        assert bucket_lines
        assert any("# EDIT:" in line and "BUCKET" in line for line in lines[bucket_lines[-1]:])
