"""Ray, imported and started only when asked for: a local runtime for one command (stopped after it), or a
cluster joined by address (`--ray-address`, else RAY_ADDRESS)."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from edgeincep.core.errors import UserError


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator:
    """The ray module, initialised; a runtime this started is shut down on exit, one it joined is left running."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed (pip install 'edgeincep[ray]')") from None
    started = False
    if not ray.is_initialized():
        try:
            # "local": a new runtime even when `ray start` left one on this machine, which ray.init() would join.
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
            raise UserError(f"cannot start or join {where}: {' '.join(str(e).split())[:300]}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def describe(ray, address: str | None) -> dict:
    return {"address": address or "local", "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "resources": {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}}
