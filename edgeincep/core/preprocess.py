"""The eval transform every model carries in its metadata and every consumer (calibration, validation,
bundles) applies: one record, so host and device read the same numbers."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preprocess:
    """Eval transform: resize shorter side to size/crop_pct, centre crop, normalise."""

    input_size: int = 299
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            input_size=int(d["input_size"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            crop_pct=float(d["crop_pct"]),
            interpolation=str(d["interpolation"]),
        )
