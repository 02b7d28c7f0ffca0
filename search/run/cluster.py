"""What the search needs to know about the Ray cluster it joined: which nodes are alive, whether
the storage can be reached from all of them, and a one-line description for the start banner.

Call these after Ray is connected; importing this module starts nothing.
"""

from __future__ import annotations

from typing import Any


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's live nodes as `ray.nodes()` describes them (dead nodes stay listed there)."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def check_storage(storage: str, shared: bool, n_nodes: int) -> None:
    """Refuse a node-local storage folder on a multi-node cluster: each trial writes its
    checkpoints and results from the node it runs on, and Ray no longer copies them to the head."""
    if n_nodes > 1 and "://" not in storage and not shared:
        raise ValueError(
            f"--storage {storage}: a local folder, but the Ray cluster has {n_nodes} live nodes; "
            "trials on the other nodes could not write their checkpoints and results there. Use an "
            "s3:// or gs:// URI, or a folder on a filesystem mounted at the same path on every node "
            "(NFS) together with --shared-storage")


def describe_cluster() -> str:
    """One line for the run's start banner: node count, total CPUs and GPUs, then each node."""
    nodes = alive_nodes()
    total = {"CPU": 0.0, "GPU": 0.0}
    parts = []
    for node in nodes:
        resources = node.get("Resources", {})
        for key in total:
            total[key] += resources.get(key, 0.0)
        head = " head" if any(k.startswith("node:__internal_head__") for k in resources) else ""
        parts.append(f"{node.get('NodeManagerAddress', '?')}{head} {node['NodeID'][:8]}: "
                     f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
    plural = "s" if len(nodes) != 1 else ""
    return (f"Ray cluster: {len(nodes)} node{plural}, {total['CPU']:g} CPUs, {total['GPU']:g} GPUs"
            + (f" ({'; '.join(parts)})" if parts else ""))
