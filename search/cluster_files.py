"""Offline check of Ray cluster launcher files (`ray_cluster*.yaml`) with Ray's own validator.

`python -m search.cluster_files FILE...` prints OK or the error per file and exits 0 when all
pass, 2 otherwise: a broken or unsafe file is caught before `ray up` starts paying for machines.
Beyond Ray's schema it refuses what docs/cluster.md calls unsafe: Ray started without token
authentication, MLflow or the dashboard on every interface, a port other than SSH open to the
whole internet, and an on-premises worker that is also the head (or listed twice). It warns
(exit 0) of `# EDIT:` values still at the shipped example and of SSH open to the internet.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
from ray.autoscaler._private.util import prepare_config, validate_config

from search import safe_yaml
from simvp_core.files import read_bytes
from simvp_core.oneline import OneLineParser, print_error, short_path

MAX_FILE_BYTES = 1_000_000  # a cluster file is a few kB, as a space file


def _ray_message(error: Exception) -> str:
    """Ray's complaint as one line: schema errors give their key path, KeyErrors the missing key."""
    if isinstance(error, jsonschema.ValidationError):
        where = ".".join(str(part) for part in error.absolute_path)
        return f"{where}: {error.message}" if where else error.message
    if isinstance(error, KeyError):
        return f"missing key {error}"
    return str(error) or type(error).__name__


def validate_cluster_file(path: str | Path) -> dict[str, Any]:
    """Validate a cluster file as `ray up` would, offline, then refuse its unsafe values
    (`unsafe_values`); return Ray's prepared config.

    Raises ValueError naming the file and giving Ray's message, or the first unsafe value.
    """
    path = Path(path)
    raw = _read(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a YAML mapping with cluster_name, provider, ...; "
                         f"got {type(raw).__name__}")
    try:
        prepared = prepare_config(copy.deepcopy(raw))
        validate_config(prepared)
    except Exception as error:  # Ray raises schema, Value, Key, Runtime and click errors alike
        raise ValueError(f"{path}: rejected by Ray's cluster validator: "
                         f"{_ray_message(_located(error, raw))}") from error
    problems = unsafe_values(raw)
    if problems:
        raise ValueError(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                    if len(problems) > 1 else ""))
    return prepared


WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", "*"}
WORLD = {"0.0.0.0/0", "::/0"}
# Example values of the shipped files that no real cluster has: addresses of the documentation
# ranges (RFC 5737), the AMI id and AWS account of AWS's own examples, the bucket's name.
PLACEHOLDER = re.compile(r"\b(?:192\.0\.2|198\.51\.100|203\.0\.113)\.\d+|"
                         r"ami-0123456789abcdef0|\b123456789012\b|\bBUCKET\b")


def _commands(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, command) for every shell command the file runs on its nodes."""
    keys = ("initialization_commands", "setup_commands", "head_setup_commands",
            "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    found = [(key, c) for key in keys for c in raw.get(key) or [] if isinstance(c, str)]
    for name, node_type in (raw.get("available_node_types") or {}).items():
        for key in keys:
            found += [(f"available_node_types.{name}.{key}", c)
                      for c in (node_type or {}).get(key) or [] if isinstance(c, str)]
    return found


def _bound_hosts(command: str) -> list[tuple[str, str]]:
    """(flag, address) of each `--host`/`--dashboard-host`, a `$VAR` followed to its assignment."""
    found = []
    for flag, host in re.findall(r"(--host|--dashboard-host)[= ]+[\"']?([^\"'\s;]+)", command):
        if host.startswith("$"):
            assigned = re.search(rf"\b{re.escape(host.strip('${}'))}=[\"']?([^\"'\s;]+)", command)
            host = assigned.group(1) if assigned else host
        found.append((flag, host))
    return found


def _world_rules(raw: dict[str, Any]) -> list[tuple[str, bool]]:
    """(description, SSH only) of each security group rule that lets in the whole internet."""
    rules = ((raw.get("provider") or {}).get("security_group") or {}).get("IpPermissions") or []
    found = []
    for i, rule in enumerate(rules):
        ranges = [r.get("CidrIp") for r in rule.get("IpRanges") or []]
        ranges += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges") or []]
        ssh_only = (str(rule.get("IpProtocol")), rule.get("FromPort"), rule.get("ToPort")) == (
            "tcp", 22, 22)
        ports = (f"ports {rule.get('FromPort')}-{rule.get('ToPort')}"
                 if rule.get("IpProtocol") not in ("-1", -1) else "all ports")
        found += [(f"provider.security_group.IpPermissions[{i}]: {ports} open to {cidr}", ssh_only)
                  for cidr in sorted(set(ranges) & WORLD)]
    return found


def unsafe_values(raw: dict[str, Any]) -> list[str]:
    """The file's unsafe settings, one line each with the fix (empty when there are none)."""
    problems = []
    for key, command in _commands(raw):
        if re.search(r"RAY_AUTH_MODE=[\"']?disabled", command):
            problems.append(f"{key}: RAY_AUTH_MODE=disabled lets anyone who reaches a port run "
                            "code; use RAY_AUTH_MODE=token")
        elif re.search(r"\bray start\b", command) and "RAY_AUTH_MODE=token" not in command:
            problems.append(f"{key}: `ray start` without token authentication; prefix it with "
                            "RAY_AUTH_MODE=token")
        for flag, host in _bound_hosts(command):
            if host in WILDCARD_HOSTS:
                problems.append(f"{key}: {flag} {host} listens on every interface; use "
                                "127.0.0.1 and the SSH tunnel of docs/cluster.md")
    problems += [f"{rule}; open only SSH (22), to your own address (a /32): the cluster's ports "
                 "stay inside the group" for rule, ssh_only in _world_rules(raw) if not ssh_only]
    provider = raw.get("provider") or {}
    workers = [str(ip) for ip in provider.get("worker_ips") or []]
    if provider.get("head_ip") is not None and str(provider["head_ip"]) in workers:
        problems.append(f"provider.worker_ips: {provider['head_ip']} is also head_ip; `ray stop` "
                        "on that worker would stop the head: list each machine once")
    for ip in sorted({ip for ip in workers if workers.count(ip) > 1}):
        problems.append(f"provider.worker_ips: {ip} is listed twice; list each machine once")
    return problems


def _read(path: Path) -> Any:
    """The file's YAML through the platform's one safe reader (search.safe_yaml), as space files
    are read (aliases allowed, up to a bounded expansion): deep nesting, huge files and FIFOs are
    refused in one line."""
    try:
        return safe_yaml.load_file(path, MAX_FILE_BYTES, "cluster file", aliases=True)
    except safe_yaml.YamlError as error:
        raise ValueError(f"{short_path(path)}: {error}") from None


def warnings(path: str | Path) -> list[str]:
    """What `ray up` would try but you probably did not mean: `# EDIT:` values still at the
    shipped example, SSH open to the whole internet. One line each, naming the file's line."""
    text = read_bytes(path, MAX_FILE_BYTES, "cluster file").decode()
    found = [f"{path}:{number}: `{line.split('# EDIT:')[0].strip()}` is still the shipped "
             "example: set the value this line's `# EDIT:` asks for"
             for number, line in enumerate(text.splitlines(), 1)
             if "# EDIT:" in line and PLACEHOLDER.search(line.split("# EDIT:")[0])]
    raw = safe_yaml.loads(text, aliases=True)
    found += [f"{path}: {rule}; better only your own address (a /32)"
              for rule, ssh_only in _world_rules(raw if isinstance(raw, dict) else {}) if ssh_only]
    return found


def _located(error: Exception, raw: dict[str, Any]) -> Exception:
    """For a KeyError (prepare_config reads required keys before the schema check), the schema's
    own error on the raw file, which says where the key is missing; else the error itself."""
    if isinstance(error, KeyError):
        try:
            validate_config(copy.deepcopy(raw))
        except jsonschema.ValidationError as schema_error:
            return schema_error
        except Exception:  # the schema passed; Ray's later checks need a prepared config
            pass
    return error


def main(argv: list[str] | None = None) -> int:
    """Check each file; 0 when all pass, 2 when any is rejected or unreadable."""
    parser = OneLineParser(prog="python -m search.cluster_files",
                                     description="Validate Ray cluster launcher files offline.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="e.g. ray_cluster.yaml")
    args = parser.parse_args(argv)
    status = 0
    for name in args.files:
        try:
            validate_cluster_file(name)
        except (ValueError, OSError) as error:
            print_error(error, prefix="ERROR ")  # one line on stderr, whatever Ray's message
            status = 2
        else:
            print(f"OK {name}")
            for warning in warnings(name):
                print(f"WARNING {warning}")
    return status


if __name__ == "__main__":
    sys.exit(main())
