"""Raspberry Pi and Coral bundles: the INT8 .tflite run by the shared device runner on LiteRT's CPU (XNNPACK),
or on the Edge TPU delegate with the compiled model when there is one."""
from __future__ import annotations

from pathlib import Path

from edgeincep.core.artifact import Artifact
from edgeincep.core.bundle import BundleSpec
from edgeincep.core.errors import UserError
from edgeincep.device import RUNNER_SOURCE, pins
from edgeincep.device.kinds import device_kind

TITLES = {"rpi": "Raspberry Pi 4 / 5 (64-bit Raspberry Pi OS), LiteRT with XNNPACK",
          "coral": "Coral Edge TPU (USB / M.2 / PCIe), LiteRT with the Edge TPU delegate"}
RUNTIMES = {"rpi": "litert", "coral": "edgetpu"}

# ARM vs x86 LiteRT on the reference models' INT8 bundles, arm64 under qemu as a Pi 4 (Cortex-A72) and a Pi 5
# (Cortex-A76): identical output codes on every image measured (docs/devices.md). The margin is for ARM cores
# whose features select XNNPACK kernels that were not emulated.
LITERT_OUTPUT_STEPS = 2


def compat_report_path(model: Path) -> Path:
    """Where the Edge TPU backend writes its compatibility report, beside the model."""
    return model.with_name(model.name.removesuffix(".tflite") + ".compat.json")


def edgetpu_compiled(art: Artifact) -> Path | None:
    named = ((art.meta.get("edgetpu") or {}).get("compiler") or {}).get("model")
    beside = art.path.with_name(art.path.name.removesuffix(".tflite") + "_edgetpu.tflite")
    for p in (Path(named) if named else None, beside):
        if p is not None and p.is_file():
            return p
    return None


def litert_bundle(art: Artifact, device: str) -> BundleSpec:
    runtime = RUNTIMES[device]
    files = {"model.int8.tflite": art.path}
    runner = {"runtime": runtime, "model": "model.int8.tflite"}
    notes, extra = "", None
    if runtime == "edgetpu":
        compiled = edgetpu_compiled(art)
        if compiled is not None:
            files["model.int8_edgetpu.tflite"] = compiled
            runner["edgetpu_model"] = "model.int8_edgetpu.tflite"
        notes, report = _coral_notes(art, runner)
        if report is not None:
            extra = {"edgetpu_compat.json": report}
    scale, zero_point = output_quantization(art.path)
    return BundleSpec(device=device, model_files=files, runner=runner, runner_source=RUNNER_SOURCE,
                      requirements=tuple(pins.REQUIREMENTS[device]), requirements_txt=pins.requirements_txt(device),
                      tolerance=lambda host: _tolerance(runtime, scale, zero_point), title=TITLES[device],
                      readme_notes=notes, extra_files=(lambda _facts: extra) if extra else None,
                      platform=device_kind(device).platform, imports=("numpy", "PIL", "ai_edge_litert.interpreter"))


def _tolerance(runtime: str, scale: float, zero_point: int) -> tuple[dict, str]:
    """Per runner backend what --check accepts beyond the same top-1 (common.deviation), and why."""
    tol = {"litert-cpu": {"output_steps": LITERT_OUTPUT_STEPS, "scale": scale, "zero_point": zero_point}}
    why = (f"the same top-1, and output codes within {LITERT_OUTPUT_STEPS} quantization steps ({scale:.6g} each) of "
           "the host's, compared as integers. LiteRT's int8 kernels (XNNPACK) gave the host's output codes exactly "
           "on arm64 as a Raspberry Pi 4 and 5 (Cortex-A72, Cortex-A76, emulated by qemu) for every reference "
           "model and test image measured; the margin covers ARM cores whose kernels were not emulated.")
    if runtime == "edgetpu":
        tol["edgetpu"] = None
        why += " On the Edge TPU (not available to edgeincep's tests) only the top-1 is compared."
    return tol, why


def output_quantization(path: Path) -> tuple[float, int]:
    """Scale and zero point of the model's integer output; with float I/O, of the tensor its final
    DEQUANTIZE reads (the logits are then (code - zero point) * scale all the same)."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeincep.litert.graph import builtin_code
    from edgeincep.litert.rewrite import load

    model = load(path.read_bytes())
    sub = model.subgraphs[0]
    index = sub.outputs[0]
    producer = next((op for op in sub.operators if index in op.outputs), None)
    if producer is not None and builtin_code(model.operatorCodes[producer.opcodeIndex]) == \
            schema.BuiltinOperator.DEQUANTIZE:
        index = producer.inputs[0]
    q = sub.tensors[index].quantization
    if q is None or q.scale is None or len(q.scale) != 1 or not q.scale[0] > 0:
        raise UserError("the INT8 model's output is not per-tensor quantized; a device bundle needs that", path)
    return float(q.scale[0]), int(q.zeroPoint[0])


def _coral_notes(art: Artifact, runner: dict) -> tuple[str, Path | None]:
    tpu = art.meta.get("edgetpu") or {}
    report = compat_report_path(art.path)
    compiled = "edgetpu_model" in runner
    lines = ["", "## Edge TPU", ""]
    if tpu.get("summary"):
        lines.append(f"Compatibility (edgeincep's check of the INT8 graph): {tpu['summary']}.")
    if compiled:
        comp = tpu.get("compiler") or {}
        facts = ", ".join(f"{k.replace('_', ' ')} {comp[k]}" for k in ("on_tpu", "on_cpu", "on_chip_memory",
                                                                         "off_chip_memory") if k in comp)
        lines.append(f"`model.int8_edgetpu.tflite` was compiled by edgetpu_compiler on the host{': ' + facts if facts else ''}.")
    else:
        lines.append("edgetpu_compiler was not available on the host, so the bundle holds only the CPU model: "
                     "compile it on an x86-64 Linux machine with `edgetpu_compiler model.int8.tflite` and add "
                     "`\"edgetpu_model\": \"model.int8_edgetpu.tflite\"` to manifest.json's runner entry.")
    lines += ["",
              ("The Edge TPU runtime is not on PyPI: install `libedgetpu1-std` (or `-max`) from Coral's apt repository "
              "(https://coral.ai/software/#debian-packages). `run.py` loads it as a LiteRT delegate and says which "
              "ran: `edgetpu`, or `litert-cpu` with the reason (no accelerator, no delegate, no compiled model). "
              "Coral's 2021 libedgetpu builds were made for TensorFlow 2.5; if LiteRT 2.x refuses the delegate, use a "
              "libedgetpu built for a current TensorFlow Lite. The Edge TPU path has not been run by edgeincep's tests "
              "(no accelerator there); the CPU path has."), ""]
    return "\n".join(lines), (report if report.is_file() else None)
