"""Coral Edge TPU: the full-integer model with uint8 input/output, a compatibility report, and
`edgetpu_compiler` when it is on PATH.

The artifact is the CPU-runnable INT8 .tflite (validated here with LiteRT, like the TFLite
target's); the compiler's `*_edgetpu.tflite` runs only with an Edge TPU attached, so it is
written beside it, with the compiler's log (mapped ops, on-chip and off-chip parameter memory)
in the artifact record.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgeincep.backends.base import Backend
from edgeincep.backends.edgetpu import compat as edgetpu_compat
from edgeincep.core.artifact import Artifact
from edgeincep.fsutil import atomic_path, write_text_atomic
from edgeincep.litert.base import LiteRtBackendMixin
from edgeincep.litert.bundle import compat_report_path
from edgeincep.litert.graph import read_graph

if TYPE_CHECKING:
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet

COMPILER = "edgetpu_compiler"


def parse_compiler_log(text: str) -> dict:
    """The numbers a user looks for in edgetpu_compiler's log, and its per-operator table."""
    facts, ops, in_table = {}, [], False
    for line in text.splitlines():
        line = line.rstrip()
        if re.match(r"^\s*Operator\s+Count\s+Status", line):
            in_table = True
            continue
        if in_table:
            m = re.match(r"^\s*([A-Z0-9_]+)\s+(\d+)\s+(.+)$", line)
            if m:
                ops.append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3).strip()})
                continue
            if line.strip():
                in_table = False
        m = re.match(r"^Edge TPU Compiler version\s+(\S+)", line)
        if m:
            facts["Edge TPU Compiler version"] = m.group(1)
            continue
        m = re.match(r"^([A-Za-z][A-Za-z \-]+):\s+(.+)$", line)
        if m:
            facts[m.group(1).strip()] = m.group(2).strip()
    keys = {"on_tpu": "Number of operations that will run on Edge TPU",
            "on_cpu": "Number of operations that will run on CPU", "subgraphs": "Number of Edge TPU subgraphs",
            "on_chip_memory": "On-chip memory used for caching model parameters",
            "off_chip_memory": "Off-chip memory used for streaming uncached model parameters",
            "compiler_version": "Edge TPU Compiler version"}
    out = {k: facts[v] for k, v in keys.items() if v in facts}
    out["ops"] = ops
    return out


def compile_for_edgetpu(model: Path) -> dict:
    """Run edgetpu_compiler (when installed) into a temp dir; keep its model and log beside `model`."""
    exe = shutil.which(COMPILER)
    if exe is None:
        return {"ran": False, "reason": f"{COMPILER} is not on PATH (Coral's apt repository: edgetpu-compiler, x86-64)"}
    with tempfile.TemporaryDirectory(prefix="edgeincep-edgetpu-") as tmp:
        proc = subprocess.run([exe, "--show_operations", "--out_dir", tmp, str(model)],
                              capture_output=True, text=True, timeout=1800, check=False)
        log = proc.stdout + proc.stderr
        stem = model.name.removesuffix(".tflite")
        compiled = Path(tmp) / f"{stem}_edgetpu.tflite"
        result = {"ran": True, "returncode": proc.returncode, **parse_compiler_log(log)}
        log_out = model.with_name(f"{stem}_edgetpu.log")
        write_text_atomic(log_out, log)
        result["log"] = str(log_out)
        if proc.returncode == 0 and compiled.is_file():
            final = model.with_name(compiled.name)
            with atomic_path(final) as t:
                shutil.copyfile(compiled, t)
            result["model"] = str(final)
    return result


class EdgeTpuBackend(LiteRtBackendMixin, Backend):
    name = "edgetpu"
    description = "Coral Edge TPU: full-integer INT8 .tflite with uint8 I/O, compatibility report, edgetpu_compiler"
    bundle_devices = ("coral", "rpi")  # no section of its own: it reads `tflite:`, fixing some keys
    build_memory_gb = 3.0  # TensorFlow and onnx2tf in the converting child
    suffixes = ()  # a .tflite found without its record is taken as the tflite backend's
    # Coral's compiler maps int8 AVERAGE_POOL_2D itself: the pools stay pools (one op, not two).
    fixed: ClassVar[dict[str, object]] = {"io": "uint8", "depthwise_pools": False}
    sixteen_bit_activations = "the Edge TPU executes 8-bit integers only"
    single_float_layer = ("a float layer ends the Edge TPU's one integer subgraph: everything after it runs on the "
                          "CPU, so no layer can be float alone")

    def build(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        return self._convert(fp32, [("int8", self.int8_path(fp32, out_dir))], self._settings(recipe), calib)[0]

    def build_keeping_float(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path,
                            float_nodes: Sequence[str]) -> Artifact:
        """The Edge TPU runs one integer subgraph from the input: its compiler maps operators up to the first
        one it cannot, and everything after runs on the CPU. So a float layer cuts the graph there: every
        operator from the earliest of `float_nodes` on stays float (the CPU tail), the head stays int8."""
        from edgeincep.litert.graph import read_graph

        plain = self.build(fp32, calib, recipe, out_dir)
        graph = read_graph(plain.path)
        wanted = set(float_nodes)
        cut = min((op.index for op in graph.ops if graph.tensors[op.outputs[0]].name in wanted), default=None)
        if cut is None:
            return plain
        tail = [graph.tensors[op.outputs[0]].name for op in graph.ops[cut:] if op.name not in ("QUANTIZE", "DEQUANTIZE")]
        art = self._convert(fp32, [("int8", self.int8_path(fp32, out_dir))], self._settings(recipe), calib, tail)[0]
        art.meta["cpu_tail"] = {"from_operator": cut, "operators": len(tail), "of": len(graph.ops)}
        return art

    def after_build(self, art: Artifact) -> None:
        report = edgetpu_compat.check(read_graph(art.path))
        path = write_text_atomic(compat_report_path(art.path), json.dumps(report, indent=2))
        art.meta["edgetpu"] = {"compatible": report["compatible"], "summary": edgetpu_compat.summary(report),
                               "report": str(path), "compiler": compile_for_edgetpu(art.path)}
