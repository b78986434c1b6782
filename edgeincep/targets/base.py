"""The target seam: every backend is one module that registers a Target.

A Target turns the verified FP32 ONNX into artifacts (`build`) and loads an artifact into a
Predictor (`load`): NCHW float32 batch in, logits out. Validation, gates, bench and bundles talk
only to Artifact and Predictor, never to a runtime.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeincep.errors import UserError


@dataclass
class Artifact:
    path: Path
    target: str
    precision: str          # what the weights/activations are stored as: fp32, fp16, int8
    fmt: str                # e.g. "onnx", "onnx-qdq-u8s8"
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.target}:{self.precision}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["size_bytes"] = self.size_bytes()
        return d

    def files(self) -> list[Path]:
        """Every file the artifact consists of (an OpenVINO IR is .xml + .bin)."""
        extra = [self.path.with_suffix(".bin")] if self.path.suffix == ".xml" else []
        return [self.path, *[p for p in extra if p.exists()]]

    def size_bytes(self) -> int | None:
        return sum(p.stat().st_size for p in self.files()) if self.path.exists() else None

    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def save_sidecar(self, cache_key: str | None = None) -> None:
        from edgeincep.fsutil import write_text_atomic
        from edgeincep.pipeline.cache import outputs_digest

        record = self.to_dict() | {"cache_key": cache_key, "sha256": outputs_digest(self.files())}
        write_text_atomic(self.sidecar(), json.dumps(record, indent=2))

    @classmethod
    def from_dict(cls, d: dict) -> Artifact:
        return cls(Path(d["path"]), d["target"], d["precision"], d["fmt"], d.get("meta", {}))

    @classmethod
    def from_sidecar(cls, path: Path) -> Artifact:
        return cls.from_dict(json.loads(Path(path).read_text()))


class Predictor(Protocol):
    name: str
    executed_precision: str  # what the runtime really ran in (may differ from the file's)

    def predict(self, x: np.ndarray) -> np.ndarray: ...


class Target(ABC):
    name: str = ""
    description: str = ""

    def unavailable_reason(self) -> str | None:
        """None when the runtime is importable here; else why not (shown when skipped)."""
        return None

    @abstractmethod
    def load(self, artifact: Artifact, threads: int = 0) -> Predictor: ...

    @abstractmethod
    def import_runtime(self) -> None:
        """Import the runtime's libraries (so a memory probe can tell runtime cost from model cost)."""

    def metadata(self, artifact: Artifact) -> dict[str, str]:
        """The edgeincep.* facts the artifact carries (model, width, preprocessing, labels)."""
        from edgeincep.export.metadata import read_metadata

        return read_metadata(artifact.path)


_TARGETS: dict[str, Target] = {}


def register_target(cls: type[Target]) -> type[Target]:
    _TARGETS[cls.name] = cls()
    return cls


def get_target(name: str) -> Target:
    _load_all()
    if name not in _TARGETS:
        raise UserError(f"unknown target '{name}'; known targets: {', '.join(sorted(_TARGETS))}")
    return _TARGETS[name]


def list_targets() -> list[str]:
    _load_all()
    return sorted(_TARGETS)


def _load_all() -> None:
    from edgeincep.targets import edgetpu, onnxruntime, openvino, tensorrt, tflite  # noqa: F401
