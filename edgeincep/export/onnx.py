"""FP32 ONNX export, proven numerically against PyTorch before the file is put in place.

Steps: fold BN -> export (opset >= 17, dynamic batch) to a temp file -> strip Identity
nodes -> record metadata -> onnx.checker full check -> ONNX Runtime vs PyTorch on real
preprocessed images -> rename into place. Any failure leaves no file behind.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgeincep import __version__
from edgeincep.core.errors import ExportMismatchError, UserError
from edgeincep.core.preprocess import Preprocess
from edgeincep.export.fold import fold_batchnorm
from edgeincep.export.metadata import read_metadata, write_metadata  # noqa: F401 - read_metadata is part of this module's interface
from edgeincep.fsutil import atomic_path
from edgeincep.models.registry import ModelSpec, check_input_size

DEFAULT_OPSET = 17
INPUT_NAME = "input"


@dataclass
class ExportResult:
    path: Path
    size_bytes: int
    seconds: float
    max_abs_diff: float
    tolerance: float
    top1_agreement: float
    n_images: int
    metadata: dict[str, str] = field(default_factory=dict)
    cached: bool = False

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "size_bytes": self.size_bytes, "seconds": round(self.seconds, 3),
            "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
            "top1_agreement": self.top1_agreement, "n_images": self.n_images, "cached": self.cached,
        }


def output_name(model: nn.Module) -> str:
    return "logits" if getattr(model, "num_classes", 1) > 0 else "embedding"


def build_metadata(spec: ModelSpec, model: nn.Module, preprocess: Preprocess | int, *, class_names: list[str] | None,
                   checkpoint_sha256: str | None, width: float, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The facts every later stage reads back from the ONNX file (an int means the spec's preprocessing at that size)."""
    if isinstance(preprocess, int):
        preprocess = replace(spec.preprocess, input_size=preprocess)
    pre = preprocess.to_dict()
    meta = {
        "edgeincep.version": __version__,
        "edgeincep.model": spec.name,
        "edgeincep.width": repr(float(width)),
        "edgeincep.num_classes": str(getattr(model, "num_classes", spec.num_classes)),
        "edgeincep.preprocess": json.dumps(pre, sort_keys=True),
        "edgeincep.labels": json.dumps(class_names or []),
        "edgeincep.checkpoint_sha256": checkpoint_sha256 or "none (untrained or synthetic weights)",
        "edgeincep.layout": "NCHW float32, RGB",
    }
    meta.update(extra or {})
    return meta


def preprocess_from_metadata(meta: dict[str, str], path: str | Path = "") -> Preprocess:
    try:
        return Preprocess.from_dict(json.loads(meta["edgeincep.preprocess"]))
    except (KeyError, ValueError, TypeError):
        raise UserError("no edgeincep preprocessing in the ONNX metadata (export it with edgeincep)", path) from None


def labels_from_metadata(meta: dict[str, str]) -> list[str]:
    try:
        names = json.loads(meta.get("edgeincep.labels", "[]"))
    except ValueError:
        return []
    return names if isinstance(names, list) else []


def _torch_export(model: nn.Module, example: torch.Tensor, path: Path, opset: int, out_name: str) -> None:
    # The TorchScript exporter is ~20x faster than the dynamo one on these nets (1.6 s vs 36 s
    # for Inception-ResNet-v2) and emits the same ops; it is deprecated, so fall back if gone.
    kwargs = dict(input_names=[INPUT_NAME], output_names=[out_name], opset_version=opset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=False, do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, out_name: {0: "batch"}}, **kwargs)
    except (TypeError, RuntimeError, NotImplementedError):
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False,
                          dynamic_shapes=({0: batch},), **kwargs)


def strip_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop Identity nodes (the TorchScript exporter adds them around shared constants)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[i] = name
    del graph.node[:]
    graph.node.extend(keep)
    return model


def run_onnx(path: str | Path, x: np.ndarray, threads: int = 0) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def export_onnx(
    model: nn.Module,
    out_path: str | Path,
    *,
    input_size: int,
    verify_images: np.ndarray,
    metadata: dict[str, str],
    opset: int = DEFAULT_OPSET,
    rtol: float | None = None,
) -> ExportResult:
    """Export `model` (eval mode) and prove ONNX Runtime reproduces it on `verify_images` (NCHW)."""
    check_input_size(input_size)
    if opset < 17:
        raise UserError(f"opset {opset} is too old: edgeincep needs opset >= 17")
    if verify_images.ndim != 4 or verify_images.shape[2:] != (input_size, input_size):
        raise UserError(f"verification images must be N x C x {input_size} x {input_size}, got {verify_images.shape}")
    spec: ModelSpec = model.spec
    rtol = spec.export_rtol if rtol is None else rtol
    out_path = Path(out_path)
    t0 = time.perf_counter()
    model = model.eval()
    folded = fold_batchnorm(model)
    example = torch.from_numpy(verify_images[:1].copy())
    out_name = output_name(model)
    with atomic_path(out_path) as tmp:
        _torch_export(folded, example, tmp, opset, out_name)
        proto = strip_identities(onnx.load(str(tmp)))
        write_metadata(proto, metadata, keep_existing=False)
        proto.producer_name = "edgeincep"
        proto.producer_version = __version__
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        with torch.inference_mode():
            ref = model(torch.from_numpy(verify_images)).numpy()
        got = run_onnx(tmp, verify_images)
        diff = float(np.abs(got - ref).max())
        tol = float(rtol * ref.std() + 1e-5)
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        if not np.isfinite(diff) or diff > tol:
            raise ExportMismatchError(
                f"ONNX Runtime differs from PyTorch by {diff:.3g} (tolerance {tol:.3g} = {rtol:g} x logit std) "
                f"on {len(verify_images)} images; export discarded"
            )
    seconds = time.perf_counter() - t0
    return ExportResult(out_path, out_path.stat().st_size, seconds, diff, tol, agree, len(verify_images), metadata)
