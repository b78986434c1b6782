"""The artifact record: a file a backend built, what it holds, and facts about how it was made."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Artifact:
    path: Path
    target: str             # the backend that built it and can load it
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
        """The JSON record beside the file (written by the stage cache)."""
        return sidecar_path(self.path)

    @classmethod
    def from_dict(cls, d: dict) -> Artifact:
        return cls(Path(d["path"]), d["target"], d["precision"], d["fmt"], d.get("meta", {}))

    @classmethod
    def from_sidecar(cls, path: Path) -> Artifact:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class QatArtifacts:
    """What quantization-aware fine-tuning hands every backend's builder."""
    fp32: Path       # the fine-tuned weights as a verified FP32 ONNX (the run's metadata)
    qdq: Path        # the fake-quantized model as Q/DQ ONNX (the learned grid)
    record: dict     # steps, loss history, seconds, agreement before/after on the probe images


def sidecar_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".json")
