"""The embedded Ray of a search without --address: a one-machine Ray that listens on loopback only,
with Ray's token authentication left as Ray sets it (on, unless the user's RAY_AUTH_MODE says not).

What stays open, all on 127.0.0.1 (measured with Ray 2.60): the GCS, the raylet (node manager and
object manager) and each worker's gRPC port (the core; they need the token), the dashboard
agent's gRPC, HTTP and metrics ports, the runtime-env agent, and the minimal API server (no
dashboard UI) and autoscaler monitor, which ray.init always starts. No Ray client server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import ray
from ray._private import ray_constants


def init() -> None:
    """ray.init for this machine alone: every CPU, no dashboard UI, node address 127.0.0.1. Ray's
    own warning that token authentication is on goes to search.log (it is on by design); that it
    is off is worth a line: any local user could then reach this Ray."""
    with _loopback_node():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        print("warning: Ray's token authentication is off (RAY_AUTH_MODE=disabled): anyone on this machine "
              "can reach the search's Ray and run code as you; unset RAY_AUTH_MODE unless you mean it")


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Ray's own switch for a local-only node (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read at import,
    what Ray uses on macOS and Windows), for this ray.init only. `_node_ip_address="127.0.0.1"`
    is no substitute: ray.init swaps a loopback address for the host's."""
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
