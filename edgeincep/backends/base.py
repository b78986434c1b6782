"""The backend contract: what every `edgeincep/backends/<name>/` implements, with defaults for the optional parts.

A backend turns the verified FP32 ONNX into artifacts (`build`) and loads an artifact into a Predictor
(`load`): NCHW float32 batch in, logits out. Validation, gates, bench and bundles talk only to
Artifact, Predictor and BundleSpec, never to a runtime. Everything past `load` has a default that
means "this backend does not do that": no float references, no layer-level fallback, no accuracy
restoration, no device bundle.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgeincep.core.artifact import Artifact, QatArtifacts
from edgeincep.core.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    from pydantic import BaseModel

    from edgeincep.core.bundle import BundleSpec
    from edgeincep.core.predictor import Predictor
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet


class Backend(ABC):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Its recipe section `<name>:`, a core.settings.Strict subclass; None: no settings of its own.
    settings: ClassVar[type[BaseModel] | None] = None
    # Suffixes of files `edgeincep validate` / `bench` take as this backend's artifacts, and their format.
    suffixes: ClassVar[tuple[str, ...]] = ()
    file_format: ClassVar[str] = ""
    # The packages whose versions shape its artifacts (in its cache keys and the bench's machine record).
    libraries: ClassVar[tuple[str, ...]] = ()
    # Devices this backend writes bundles for; `edgeincep run` writes one for the first.
    bundle_devices: ClassVar[tuple[str, ...]] = ()
    # Peak memory of one build of a reference model with its validation, for schedulers (`edgeincep sweep`
    # declares it to Ray so a node never runs more builds than it can hold).
    build_memory_gb: ClassVar[float] = 1.0
    # The runtime vendor's own documented INT8 recipe, called with its defaults (see `peer_default`).
    peer: ClassVar[str] = ""
    # The escalation ladder's 16-bit rung: the recipe patch that makes `build` keep activations in 16-bit
    # integers (weights int8), or why this runtime cannot execute that.
    sixteen_bit_activations: ClassVar[dict | str] = "the runtime has no 16-bit integer activation kernels"
    # Why `build_keeping_float` with one layer does not keep only that layer in float (so the fallback rung
    # cannot measure what each layer costs alone), or None when it does.
    single_float_layer: ClassVar[str | None] = None

    def unavailable_reason(self) -> str | None:
        """None when the backend's tools import here; else why not (shown when it is skipped)."""
        return None

    @abstractmethod
    def build(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        """The gated INT8 artifact."""

    @abstractmethod
    def load(self, artifact: Artifact, threads: int = 0) -> Predictor: ...

    @abstractmethod
    def import_runtime(self) -> None:
        """Import the runtime's libraries (so a memory probe can tell runtime cost from model cost)."""

    def references(self, fp32: Path, recipe: RecipeBase, out_dir: Path) -> list[Artifact]:
        """The runtime's own float builds, validated and gated beside the INT8 one."""
        return []

    def layer_fallback_graph(self, artifact: Artifact) -> Path | None:
        """The Q/DQ ONNX whose nodes can be ranked by sensitivity and kept in float by `build_keeping_float`;
        None: no layer-level fallback."""
        return None

    def rank_layers(self, artifact: Artifact, fp32: Path, calib: CalibrationSet, recipe: RecipeBase,
                    x: np.ndarray) -> list[str] | None:
        """What `build_keeping_float` can keep in float, most damaged by INT8 first (measured on `x`); None: no
        layer-level fallback. By default the nodes of `layer_fallback_graph`, ranked on ONNX."""
        qdq = self.layer_fallback_graph(artifact)
        if qdq is None:
            return None
        from edgeincep.validate.sensitivity import rank_nodes

        return [n for n, _ in rank_nodes(fp32, qdq, x)]

    def build_keeping_float(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path,
                            float_nodes: Sequence[str]) -> Artifact:
        """The INT8 artifact with these layers (names from `rank_layers`) kept in float."""
        raise NotImplementedError(f"{self.name} has no layer-level float fallback")

    def layer_modules(self, artifact: Artifact, fp32: Path, names: Sequence[str]) -> dict[str, str]:
        """The PyTorch module path of each name `rank_layers` gave (those it can tell). By default the names
        are the FP32 ONNX's node names, which torch.onnx builds from the module scopes."""
        from edgeincep.attribution.names import module_path

        return {n: m for n in names if (m := module_path(n))}

    def has_restore_accuracy(self, recipe: RecipeBase) -> bool:
        """Whether `restore_accuracy` would act under this recipe."""
        return False

    def restore_accuracy(self, fp32: Path, calib: CalibrationSet, probe: tuple[np.ndarray, np.ndarray],
                         recipe: RecipeBase, out_dir: Path, deadline: float = math.inf) -> tuple[Artifact, dict] | None:
        """The runtime's own accuracy restoration against the recipe's budget, scored on `probe` (images, the
        class each should get): (artifact, what it did), or None. Raises OutOfTime past `deadline`
        (time.monotonic())."""
        return None

    def calibration_variants(self, recipe: RecipeBase) -> list[tuple[str, dict]]:
        """The escalation ladder's calibration rung: (label, recipe patch) for each other range-setting method
        `build` honors, besides the recipe's own; []: none (larger calibration sets are tried for every backend)."""
        return []

    def build_from_qat(self, qat: QatArtifacts, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        """The INT8 artifact from quantization-aware fine-tuning: by default this backend's own PTQ build of the
        fine-tuned FP32 weights (their ranges recalibrated into its native format); a backend that executes
        explicit Q/DQ may take `qat.qdq` as it is."""
        return self.build(qat.fp32, calib, recipe, out_dir)

    def adopt_qdq(self, qat: QatArtifacts, out_dir: Path) -> Artifact | None:
        """QAT's Q/DQ ONNX as this backend's artifact, on the exact grid it was fine-tuned on (no recalibration);
        None: this runtime does not execute that file as it is."""
        return None

    def peer_default(self, fp32: Path, calib: CalibrationSet, out_dir: Path) -> Artifact | None:
        """The INT8 artifact a user gets from the runtime's own tools alone: `peer`'s documented call, its
        defaults, from the same FP32 ONNX and calibration images and nothing of edgeincep's (no graph edits,
        no tuned settings). The benchmark puts it beside ours; None: no such recipe."""
        return None

    def layer_outputs(self, path: Path, fp32: Path, layers: list, x: np.ndarray) -> dict[str, tuple[str, np.ndarray]] | None:
        """Per-layer attribution (edgeincep.attribution, which passes its `Layer`s): module -> (the FP32 ONNX tensor
        it matches, its values on `x`, NCHW) for the layers this artifact's file lets us find; None: none."""
        return None

    def serving_throughput(self, artifact: Artifact, threads: int, image: np.ndarray, seconds: float) -> dict | None:
        """Images per second of one image per request in the runtime's own throughput mode (parallel streams,
        asynchronous requests), for a server fed by a camera; None: the runtime has no such mode."""
        return None

    def metadata(self, artifact: Artifact) -> dict[str, str]:
        """The edgeincep.* facts the artifact carries (model, width, preprocessing, labels)."""
        from edgeincep.export.metadata import read_metadata

        return read_metadata(artifact.path)

    def stored_precision(self, path: Path) -> str:
        """int8 when the file holds quantized operations, else fp32 (read from the file, not its name)."""
        return "fp32"

    def recognise(self, path: Path, device: str | None = None) -> Artifact:
        """The record of a file of this backend's given without the one its build wrote beside it (`validate`,
        `bench`, `bundle` for `device`): its precision read from the file; one error if it is not of a kind this
        backend reads. The one way a bare file becomes an Artifact."""
        path = Path(path)
        if path.suffix not in self.suffixes:
            what = f"{'an' if device[0] in 'aeiou' else 'a'} {device} bundle" if device else f"the {self.name} target"
            raise UserError(f"{what} takes {' or '.join(self.suffixes) or 'only files with their build record'}"
                            f", not a '{path.suffix}' file", path)
        return Artifact(path, self.name, self.stored_precision(path), self.file_format)

    def bundle_spec(self, artifact: Artifact, device: str, recipe: RecipeBase) -> BundleSpec | None:
        """What the device bundle for this artifact holds; None: no bundle (float references)."""
        return None
