"""Explicit-quantization (Q/DQ) INT8 ONNX for TensorRT, made with NVIDIA ModelOpt and calibrated on CPU.

TensorRT builds engines only on the GPU they will run on, so what we ship is an ONNX whose Q/DQ
placement already follows TensorRT's rules, and the device builds the engine from it. ModelOpt's
`modelopt.onnx.quantization.quantize` writes exactly that: symmetric int8 (zero-point 0),
Q->DQ pairs, per-channel weights, float bias (no int32 bias DequantizeLinear, which TensorRT's
ONNX parser rejects), no Q/DQ on the outputs of Conv/Gemm, one scale across each Concat, and the
classifier left in float.

ModelOpt runs in a child process (`python -m edgeincep.backends.tensorrt.modelopt`), for three reasons seen
on 0.47:
- `quantize` monkeypatches onnxruntime.quantization for the whole process (calibrators,
  QDQQuantizer, create_calibrator). After one call, edgeincep's own ONNX Runtime quantizer and the
  per-node sensitivity ranking (qdq_loss_debug) in the same process silently changed behaviour:
  the ranking came back empty, so fallback kept nothing in float.
- it logs to stdout (our report's stream) and its entropy calibrator prints a progress bar per
  tensor, and it writes intermediate files beside its input model;
- the calibration activations it holds (the child peaked at 466-502 MB for 300 images of the three
  reference nets) are returned to the system when it exits; its peak is reported as `quantizer_peak_rss_mb`.

The child quantizes a private copy inside a temporary folder; the parent stamps edgeincep's
metadata on the result and renames it into place. `nodes_to_exclude` entries are regular
expressions matched with re.match (a prefix match), so node names are escaped and anchored:
excluding "/a/Conv" never also excludes "/a/Conv_1".
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from edgeincep.children import child_env, last_line
from edgeincep.core.errors import UserError
from edgeincep.export.metadata import write_metadata
from edgeincep.fsutil import atomic_path

if TYPE_CHECKING:  # the calibration module imports the model registry (torch): devices and probes skip it
    from edgeincep.quantize.calibration import CalibrationSet

METHODS = ("max", "entropy")
PEER_CALL = "modelopt.onnx.quantization.quantize(onnx, calibration_data=images) with its defaults (CPU calibration)"
HIGH_PRECISION = ("fp16", "fp32")
LIBS = ("nvidia-modelopt", "onnx-graphsurgeon", "onnxslim")


@dataclass
class ModelOptConfig:
    method: str = "max"
    high_precision_dtype: str = "fp16"
    calibrate_per_node: bool = False
    exclude_nodes: list[str] = field(default_factory=list)
    log_level: str = "WARNING"
    # ModelOpt's own defaults instead of the settings above (the benchmark's peer row): only the
    # calibration data and the CPU as calibration provider, which a machine without a GPU needs.
    defaults: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown ModelOpt calibration method '{self.method}' (known: {', '.join(METHODS)})")
        if self.high_precision_dtype not in HIGH_PRECISION:
            raise UserError(f"unknown high-precision dtype '{self.high_precision_dtype}' "
                            f"(known: {', '.join(HIGH_PRECISION)})")


def unavailable_reason() -> str | None:
    try:
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e).splitlines()[0]
        return (f"nvidia-modelopt's ONNX quantizer is not importable ({missing}); install the tensorrt extra's "
                "pins with --no-deps (see README)")
    return None


def exclusion_patterns(nodes: list[str]) -> list[str]:
    """Exact node names as the anchored regular expressions ModelOpt's nodes_to_exclude expects."""
    return [re.escape(n) + r"\Z" for n in nodes]


def quantize_qdq(fp32: Path, out: Path, calib: CalibrationSet, cfg: ModelOptConfig,
                 metadata: dict[str, str] | None = None, *, twin: Path | None = None) -> dict:
    """Write the TensorRT-ready Q/DQ model to `out` (atomically); return what was done, for the report.

    `twin`: also write the same quantization with fp32 high precision there (one child, one import).
    """
    reason = unavailable_reason()
    if reason:
        raise UserError(reason)
    if len(calib) == 0:
        raise UserError("ModelOpt needs at least one calibration image")
    t0 = time.perf_counter()
    jobs = [(cfg.high_precision_dtype, out)]
    if twin is not None:
        jobs.append(("fp32", twin))
    with tempfile.TemporaryDirectory(prefix="edgeincep-modelopt-") as tmp:
        work = Path(tmp)
        shutil.copyfile(fp32, work / "model.onnx")
        np.save(work / "calib.npy", np.ascontiguousarray(calib.x, dtype=np.float32))
        request = {"cfg": asdict(cfg), "jobs": [hp for hp, _ in jobs]}
        (work / "request.json").write_text(json.dumps(request))
        proc = subprocess.run([sys.executable, "-m", "edgeincep.backends.tensorrt.modelopt", str(work)],
                              capture_output=True, text=True, env=child_env())
        result_path = work / "result.json"
        if proc.returncode != 0 or not result_path.is_file():
            raise UserError(f"ModelOpt could not quantize {Path(fp32).name}: {last_line(proc)}")
        result = json.loads(result_path.read_text())
        for hp, dst in jobs:
            with atomic_path(dst) as tmp_out:
                _stamp(work / f"model.qdq.{hp}.onnx", tmp_out, metadata or {}, cfg, hp)
    return {**int8_share(out), "tool": "nvidia-modelopt", "method": cfg.method, "format": "qdq-s8s8-trt",
            "high_precision_dtype": cfg.high_precision_dtype, "per_channel": True,
            "calibration_images": len(calib), "float_nodes": list(cfg.exclude_nodes),
            "modelopt_warnings": result["warnings"], "quantize_seconds": result["seconds"],
            "quantizer_peak_rss_mb": result["peak_rss_mb"], "seconds": round(time.perf_counter() - t0, 2)}


def _stamp(src: Path, dst: Path, metadata: dict[str, str], cfg: ModelOptConfig, hp: str) -> None:
    """Carry the FP32 model's edgeincep.* facts (labels, preprocessing, checkpoint) onto the Q/DQ model."""
    model = onnx.load(str(src))
    _drop_unused_initializers(model.graph)
    what = (f"nvidia-modelopt int8 q/dq, {cfg.method} calibration, per-channel symmetric int8 weights, "
            f"{hp} high precision")
    if cfg.defaults:
        what = f"nvidia-modelopt int8 q/dq, {PEER_CALL}"
    write_metadata(model, metadata | {"edgeincep.quantization": what, "edgeincep.float_nodes": ",".join(cfg.exclude_nodes)}
                   | ({"edgeincep.peer": PEER_CALL} if cfg.defaults else {}))
    onnx.save(model, str(dst))


def _drop_unused_initializers(graph) -> None:
    """ModelOpt leaves a reshape constant behind that no node reads; ONNX Runtime warns about it on every load."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def int8_share(path: Path) -> dict:
    """How many convolutions read int8 weights (ModelOpt leaves those TensorRT has no int8 kernel for in float)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    return {"convs": len(convs), "int8_convs": sum(producer.get(n.input[1]) == "DequantizeLinear" for n in convs)}


def tensorrt_rule_violations(path: Path) -> list[str]:
    """Where a Q/DQ ONNX breaks the placement TensorRT's explicit quantization expects (empty: none).

    Rules: no int32 (bias) DequantizeLinear; every QuantizeLinear has an int8 zero point of 0;
    Q and DQ come in pairs (each Q feeds only DQs, each DQ reads a Q); Gemm/MatMul (the classifier)
    read no dequantized input; no Q directly on a Conv/Gemm/MatMul output; the dequantized inputs
    of a Concat share one scale.
    """
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def const(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    out: list[str] = []
    for n in graph.node:
        if n.op_type == "DequantizeLinear":
            src = const(n.input[0])
            if src is not None and src.dtype == np.int32:
                out.append(f"{n.name}: int32 DequantizeLinear (quantized bias; TensorRT's parser rejects it)")
            q = producer.get(n.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                out.append(f"{n.name}: DequantizeLinear not fed by a QuantizeLinear")
        elif n.op_type == "QuantizeLinear":
            zp = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            if zp is None or zp.dtype != np.int8:
                out.append(f"{n.name}: QuantizeLinear without an int8 zero point")
            elif zp.any():
                out.append(f"{n.name}: non-zero zero point (TensorRT int8 is symmetric)")
            if any(c.op_type != "DequantizeLinear" for c in consumers.get(n.output[0], [])):
                out.append(f"{n.name}: QuantizeLinear output read by something other than a DequantizeLinear")
            src = producer.get(n.input[0])
            if src is not None and src.op_type in ("Conv", "Gemm", "MatMul"):
                out.append(f"{n.name}: quantizes the output of {src.op_type} {src.name}")
        elif n.op_type in ("Gemm", "MatMul"):
            if any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input):
                out.append(f"{n.name}: {n.op_type} (classifier) reads a dequantized input; it should stay float")
        elif n.op_type == "Concat":
            scales = {float(np.asarray(const(producer[i].input[1])).reshape(-1)[0]) for i in n.input
                      if producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"}
            if len(scales) > 1:
                out.append(f"{n.name}: Concat inputs dequantized with {len(scales)} different scales")
    return out


# --- the child process ---------------------------------------------------------------------------

def _child(work: Path) -> None:
    import contextlib
    import io

    from edgeincep.children import die_with_parent

    die_with_parent()

    from modelopt.onnx.quantization import quantize

    from edgeincep.meter import status_mb

    request = json.loads((work / "request.json").read_text())
    cfg = ModelOptConfig(**request["cfg"])
    x = np.load(work / "calib.npy")
    t0 = time.perf_counter()
    jobs = request["jobs"]
    # One calibration for every job: ModelOpt quantizes in fp32 and then converts the float parts
    # with its own runtime-precision pass, so asking it for fp16 directly gives the same bytes as
    # that pass applied to the fp32 result (tests/quantize/test_modelopt.py) at twice the cost.
    base = "fp32" if "fp32" in jobs else jobs[0]
    # Its entropy calibrator prints a progress bar per tensor (hundreds of lines): not for the console.
    ours = {} if cfg.defaults else {
        "calibration_method": cfg.method, "high_precision_dtype": base, "calibrate_per_node": cfg.calibrate_per_node,
        "nodes_to_exclude": exclusion_patterns(cfg.exclude_nodes) or None}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantize(str(work / "model.onnx"), calibration_data=x, calibration_eps=["cpu"],
                 output_path=str(work / f"model.qdq.{base}.onnx"), log_level=cfg.log_level,
                 log_file=str(work / "modelopt.log"), **ours)
    if not (work / f"model.qdq.{base}.onnx").is_file():
        raise SystemExit(f"error: ModelOpt wrote no {base} model ({_warnings(work / 'modelopt.log')[-1:]})")
    for hp in jobs:
        if hp != base:
            onnx.save(runtime_precision(onnx.load(str(work / f"model.qdq.{base}.onnx")), hp),
                      str(work / f"model.qdq.{hp}.onnx"))
    (work / "result.json").write_text(json.dumps({
        "warnings": _warnings(work / "modelopt.log"), "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mb": status_mb("VmHWM")}))


def runtime_precision(qdq_fp32, high_precision_dtype: str):
    """ModelOpt's own last step of an int8 quantization: float tensors to `high_precision_dtype`,
    with its defaults (graph inputs and outputs kept fp32, no op types held back)."""
    from modelopt.onnx.quantization.precision_utils import _convert_to_runtime_precision

    return _convert_to_runtime_precision(qdq_fp32, quantize_mode="int8", high_precision_dtype=high_precision_dtype)


def _warnings(log: Path) -> list[str]:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    seen: list[str] = []
    for ln in lines:
        if " - WARNING - " in ln or " - ERROR - " in ln:
            msg = ln.split(" - ", 3)[-1]
            if msg not in seen:
                seen.append(msg)
    return seen[:20]


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
