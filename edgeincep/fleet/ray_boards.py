"""The fleet's boards as Ray resources: where a Ray cluster is in use, each board's shard loop runs as a Ray task on
a node that offers the board's resource (`board:<device kind>`, e.g. `ray start --resources '{"board:rpi": 2}'`
on the machine that can reach two Raspberry Pis), and the shard queue lives in a Ray actor.

The queue, the exactly-once rule and the per-board loop are the ones the thread path uses (shards.py,
Fleet._work): only where the loop runs and where the queue lives change. Results are kept in the actor as they
complete, so a board task that dies loses nothing but its own shard in flight, which goes back to the queue.
"""
from __future__ import annotations

import time
from pathlib import Path

from edgeincep.fleet.shards import WAIT, Shard, ShardQueue
from edgeincep.ray_runtime import ray_session


class QueueActor:
    """A ShardQueue behind a Ray actor (single-threaded: callers poll try_take instead of blocking in it)."""

    def __init__(self, shards: list[Shard], max_attempts: int = 3):
        self.queue = ShardQueue(shards, max_attempts)
        self.done_by: dict[str, int] = {}

    def try_take(self, board: str):
        return self.queue.try_take(board)

    def complete(self, shard: Shard, board: str, results: list[dict]) -> bool:
        kept = self.queue.complete(shard, board, results)
        if kept:
            self.done_by[board] = self.done_by.get(board, 0) + len(shard.images)
        return kept

    def fail(self, shard: Shard, board: str, why: str) -> None:
        self.queue.fail(shard, board, why)

    def release(self, board: str, why: str) -> None:
        self.queue.release(board, why)

    def progress(self) -> dict[str, int]:
        return dict(self.done_by)

    def finish(self) -> tuple[dict, list[Shard], int]:
        lost = self.queue.abandon()
        return self.queue.results, lost, self.queue.total


class RemoteQueue:
    """What Fleet._work needs of a queue (take / complete / fail), over the actor, from inside a Ray task."""

    def __init__(self, ray, actor):
        self.ray, self.actor = ray, actor

    def take(self, board: str) -> Shard | None:
        while True:
            got = self.ray.get(self.actor.try_take.remote(board))
            if got != WAIT:
                return got
            time.sleep(0.2)

    def complete(self, shard: Shard, board: str, result: object) -> bool:
        return self.ray.get(self.actor.complete.remote(shard, board, result))

    def fail(self, shard: Shard, board: str, why: str) -> None:
        self.ray.get(self.actor.fail.remote(shard, board, why))


def _board_task(fleet_class, bundle: Path, inventory, shard_timeout: float, run, name: str, paths: list[Path],
                actor):
    """One board's shard loop (Fleet._work) on the node Ray chose; the Fleet is rebuilt here from plain facts
    (the driver's holds its console callbacks and locks)."""
    import ray

    run.node = ray.get_runtime_context().get_node_id()
    fleet = fleet_class(bundle, inventory, shard_timeout=shard_timeout)
    fleet._work(run, name, RemoteQueue(ray, actor), paths, lambda *_: None)
    return run


def run_on_ray(fleet, ready: list, name: str, paths: list[Path], shards: list[Shard], address: str | None,
               on_event) -> tuple[dict, list[Shard], list]:
    """(results by shard index, lost shards, the boards' runs) with each board's loop a Ray task."""
    with ray_session(address) as ray:
        offered = ray.cluster_resources()
        actor = ray.remote(QueueActor).options(num_cpus=0).remote(shards)
        refs = []
        for run in ready:
            resource = f"board:{run.board.device}"
            # Boards of a kind no node offers run anywhere (one design for clusters that do not label nodes).
            opts = {"num_cpus": 0, "max_retries": 0, **({"resources": {resource: 1}} if resource in offered else {})}
            refs.append(ray.remote(_board_task).options(**opts).remote(
                type(fleet), fleet.bundle, fleet.inventory, fleet.shard_timeout, run, name, paths, actor))
        board_of = {ref: run.board.name for ref, run in zip(refs, ready, strict=True)}
        seen: dict[str, int] = {}
        pending = list(refs)
        while pending:
            ready_refs, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in ready_refs:
                try:
                    ray.get(ref)
                except Exception as e:  # noqa: BLE001 (the task died holding a shard: it goes to another board)
                    ray.get(actor.release.remote(board_of[ref], f"its Ray task died ({type(e).__name__})"))
            for board, count in ray.get(actor.progress.remote()).items():
                if count > seen.get(board, 0):
                    on_event("shard-done", board, {"images": count - seen.get(board, 0), "shard": -1, "seconds": 0})
                    seen[board] = count
        runs = []
        for run, ref in zip(ready, refs, strict=True):
            try:
                runs.append(ray.get(ref))
            except Exception as e:  # noqa: BLE001 (the board's task died: its shard in flight is already back)
                run.state, run.reason = "dropped", f"its Ray task died: {type(e).__name__}"
                runs.append(run)
        results, lost, _ = ray.get(actor.finish.remote())
    return results, lost, runs
