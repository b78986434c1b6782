"""Running a sweep's trials: on Ray (a local runtime started for the command, or a cluster by address), or in this
process.

Each trial is a Ray task that declares one CPU and its backend's build memory (Backend.build_memory_gb), so
Ray never places two TensorFlow conversions on a node that cannot hold them. A worker that dies mid-task
(SIGKILL, out of memory, a node lost) has its task retried by Ray on any node (`max_retries`); the driver
gets exactly one result per task. A trial that fails in its own code is a result ("failed", one line), never
retried. Trials an earlier run finished (their trial.json in the store) are not run again.
"""
from __future__ import annotations

import json
from collections.abc import Callable

from edgeincep.ray_runtime import describe, ray_session
from edgeincep.registry import get_backend
from edgeincep.sweep.trial import TrialSpec, finished, head, run_trial
from edgeincep.yamlfile import one_line

Event = Callable[[str, TrialSpec, dict], None]  # (kind, trial, details): queued, running, done, resumed
MAX_RETRIES = 3


def _attempts(spec: TrialSpec) -> list[dict]:
    try:
        lines = (spec.folder / "started.json").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(ln) for ln in lines if ln.strip()]


def run_local(specs: list[TrialSpec], on_event: Event) -> list[dict]:
    results = []
    for spec in specs:
        on_event("running", spec, {})
        results.append(run_trial(spec))
        on_event("done", spec, results[-1])
    return results


def run_ray(specs: list[TrialSpec], address: str | None, on_event: Event) -> tuple[list[dict], dict]:
    """The trials' results in `specs` order, and what the cluster was (nodes, resources)."""
    with ray_session(address) as ray:
        cluster = describe(ray, address)
        task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(run_trial)
        pending = {}
        for spec in specs:
            gb = get_backend(spec.target).build_memory_gb
            ref = task.options(num_cpus=1, memory=int(gb * 2**30), name=f"trial {spec.id}").remote(spec)
            pending[ref] = spec
            on_event("queued", spec, {"memory_gb": gb})
        results: dict[str, dict] = {}
        running: set[str] = set()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for spec in pending.values():
                if spec.id in running:
                    continue
                attempts = _attempts(spec)
                if attempts:
                    running.add(spec.id)
                    on_event("running", spec, attempts[-1])
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as e:  # noqa: BLE001 (retries exhausted, or the task itself could not run)
                    record = {**head(spec), "status": "failed", "error": f"{type(e).__name__}: {one_line(e)[:300]}"}
                record["attempts"] = len(_attempts(spec))
                results[spec.id] = record
                on_event("done", spec, record)
        return [results[s.id] for s in specs], cluster


def run_trials(specs: list[TrialSpec], *, use_ray: bool = True, address: str | None = None,
               on_event: Event | None = None) -> tuple[list[dict], dict]:
    """Every trial's result, in `specs` order, each exactly once; finished ones come from the store."""
    on_event = on_event or (lambda kind, spec, details: None)
    done: dict[str, dict] = {}
    todo = []
    for spec in specs:
        record = finished(spec)
        if record is not None:
            done[spec.id] = {**record, "resumed": True}
            on_event("resumed", spec, done[spec.id])
        else:
            todo.append(spec)
    cluster: dict = {"address": None, "nodes": 0, "resources": {}}
    if todo:
        if use_ray:
            results, cluster = run_ray(todo, address, on_event)
        else:
            results = run_local(todo, on_event)
        done.update({r["id"]: r for r in results})
    return [done[s.id] for s in specs], cluster
