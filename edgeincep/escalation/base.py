"""What every rung of the escalation ladder works with: the run's context, a scored candidate, the rung
contract and the registry rungs join by name."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgeincep.core.artifact import Artifact
from edgeincep.validate.gates import violations

if TYPE_CHECKING:
    from edgeincep.backends.base import Backend
    from edgeincep.core.artifact import QatArtifacts
    from edgeincep.core.settings import RecipeBase
    from edgeincep.escalation.probe import ProbeSet
    from edgeincep.quantize.calibration import CalibrationSet


@dataclass
class Context:
    backend: Backend
    fp32: Path
    calib: CalibrationSet
    recipe: RecipeBase
    out_dir: Path
    probe: ProbeSet
    score: Callable[[Artifact], dict]                       # drift on the probe, + size and latency ratio
    probe_targets: object                                   # the FP32 model's top-1 on the probe images
    calibration: Callable[[int], CalibrationSet | None]     # a larger calibration set, None: not that many images
    qat: Callable[[float], QatArtifacts] | None             # QAT's files by a deadline, made once per run; None: no --train
    deadline: float = math.inf                              # time.monotonic() at which the time budget ends

    def folder(self, label: str) -> Path:
        return self.out_dir / "escalation" / self.backend.name / label


@dataclass
class Candidate:
    label: str
    artifact: Artifact
    recipe: RecipeBase
    calib: CalibrationSet
    drift: dict
    seconds: float
    info: dict = field(default_factory=dict)

    def passes(self, budget) -> bool:
        return not violations(self.drift, budget)

    def rank(self, budget) -> tuple:
        """Meets the budget first, then agrees more, then drops less."""
        return (self.passes(budget), self.drift["top1_agreement"], -(self.drift.get("top1_drop_points") or 0.0))

    def row(self, budget) -> dict:
        d = self.drift
        return {"label": self.label, "path": str(self.artifact.path), "fmt": self.artifact.fmt,
                "passed": self.passes(budget), "violations": violations(d, budget),
                "top1_agreement": d["top1_agreement"], "top1_drop_points": d.get("top1_drop_points"),
                "sqnr_db": d.get("sqnr_db"), "latency_vs_fp32": d.get("latency_vs_fp32"),
                "size_bytes": d.get("size_bytes"), "seconds": round(self.seconds, 2), **self.info}


class Rung(ABC):
    name: ClassVar[str]
    title: ClassVar[str]

    def unavailable(self, ctx: Context) -> str | None:
        """Why this rung cannot run for this backend and run (said in the report), or None."""
        return None

    @abstractmethod
    def candidates(self, ctx: Context, history: list[Candidate], make: Callable[..., Candidate]) -> list[Candidate]:
        """The artifacts this rung tries, each made and scored through `make(label, build, recipe, calib)`;
        `history` holds every candidate of the rungs before."""


RUNGS: dict[str, type[Rung]] = {}


def register_rung(cls: type[Rung]) -> type[Rung]:
    RUNGS[cls.name] = cls
    return cls
