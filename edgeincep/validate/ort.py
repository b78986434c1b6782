"""ONNX Runtime CPU sessions: the FP32 reference every drift number is measured against, and the
predictor of the backends whose artifacts are ONNX files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeincep.core.artifact import Artifact

REFERENCE_TARGET = "onnxruntime"  # the FP32 ONNX is recorded as this runtime's fp32 artifact


class OrtPredictor:
    """`optimize=False` runs the graph as written (no fusions, no constant folding): what a Q/DQ file says."""

    def __init__(self, path: Path, threads: int = 0, name: str | None = None, precision: str = "fp32", *,
                 optimize: bool = True):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if optimize:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        else:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.log_severity_level = 3  # fp16 graphs warn once per node that the CPU cannot constant-fold them
        if threads:
            so.intra_op_num_threads = threads
        # Idle ORT workers otherwise spin for a while after each run, taking the cores from whatever
        # runs next (measured: OpenVINO's FP32 IR went from 63 to 83 ms interleaved with spinning ORT
        # sessions). On a device the spin burns the same cores the rest of the app needs.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = name or Path(path).name
        self.executed_precision = precision

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def reference_artifact(onnx_path: Path) -> Artifact:
    """The verified FP32 ONNX as the artifact every other one is compared with."""
    return Artifact(Path(onnx_path), REFERENCE_TARGET, "fp32", "onnx")


def reference_predictor(onnx_path: Path, threads: int = 0) -> OrtPredictor:
    art = reference_artifact(onnx_path)
    return OrtPredictor(art.path, threads, art.name, art.precision)
