"""A real Ray cluster on loopback for the sweep and fleet tests: `ray start --head` on 127.0.0.1 plus more nodes
with `ray start --address`, each with its own CPUs and custom resources, with the session's throwaway token
(Ray's token authentication) that this process, as the driver, uses too; everything stopped at the end."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    # Ray's worker ports are 10002-19999 by default: the head's port must be outside them.
    for port in range(26000, 27000):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def ray_cluster(folder: Path, nodes: list[dict]) -> Iterator[str]:
    """The cluster's address; `nodes`: per node {"cpus": N, "resources": {...}}, the first is the head. The nodes
    take this process's Ray token (tests/conftest.py sets one for the session)."""
    assert os.environ.get("RAY_AUTH_TOKEN_PATH"), "the session's Ray token (tests/conftest.py ray_auth) is not set"
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        for i, node in enumerate(nodes):
            where = (["--head", "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats"]
                     if i == 0 else ["--address", address])
            done = subprocess.run([RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus",
                                   str(node.get("cpus", 1)), "--resources", json.dumps(node.get("resources", {})),
                                   *where], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
