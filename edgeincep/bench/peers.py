"""Peer-default artifacts: what each runtime's own tools give with their defaults, to bench beside ours.

A user choosing this tool asks whether its INT8 beats what the runtime's vendor recipe gives, at equal
accuracy. Each backend that has such a recipe names it (`Backend.peer`) and builds it
(`Backend.peer_default`) from the same FP32 ONNX and the same calibration images a run used; this
module only walks the registry, records each file so `edgeincep bench` and `validate` take it, and
says which peers could not be built here and why.
"""
from __future__ import annotations

from pathlib import Path

from edgeincep.cache import save_record
from edgeincep.console import err
from edgeincep.core.errors import UserError
from edgeincep.quantize.calibration import CalibrationSet
from edgeincep.registry import get_backend, list_backends


def peer_targets(targets: list[str] | None = None) -> list[str]:
    """The backends with a peer recipe, in registry order (or `targets`, each checked to have one)."""
    names = list(targets) if targets else [n for n in list_backends() if get_backend(n).peer]
    for n in names:
        if not get_backend(n).peer:
            raise UserError(f"target '{n}' has no peer-default recipe (those that do: "
                            f"{', '.join(x for x in list_backends() if get_backend(x).peer)})")
    return names


def build_peers(fp32: Path, calib: CalibrationSet, out_dir: Path, targets: list[str] | None = None) -> list[dict]:
    """One record per peer: {target, peer, artifact} when built, {target, peer, skipped} when it cannot be here."""
    records = []
    for name in peer_targets(targets):
        backend = get_backend(name)
        reason = backend.unavailable_reason()
        if reason:
            records.append({"target": name, "peer": backend.peer, "skipped": reason})
            continue
        with err.status(f"peer default: {backend.peer}"):
            art = backend.peer_default(Path(fp32), calib, Path(out_dir))
        save_record(art, None)
        err.print(f"[green]built[/] {backend.peer}: {art.path.name} in {art.meta.get('seconds', 0):.1f} s")
        records.append({"target": name, "peer": backend.peer, "artifact": art.to_dict()})
    return records
