"""The Raspberry Pi bundle of an ExecuTorch INT8 .pte: run.py (numpy, Pillow) calling lib/libet_runner.so, the
ExecuTorch runtime libraries it loads beside it, and the model."""
from __future__ import annotations

from pathlib import Path

from edgeincep.backends.executorch.runner_build import LIBS, RUNNER, device_runtime, executorch_version
from edgeincep.core.artifact import Artifact
from edgeincep.core.bundle import BundleSpec
from edgeincep.device import pins
from edgeincep.device.kinds import device_kind

RUNNER_SOURCE = Path(__file__).with_name("device_run.py")
ARCHES = ("aarch64", "x86_64")
TITLE = "Raspberry Pi 4 / 5 (64-bit Raspberry Pi OS), ExecuTorch with the XNNPACK delegate"
# The board's XNNPACK INT8 kernels against the host's, on the reference models' bundles as arm64 under qemu
# (Pi 4: Cortex-A72, Pi 5: Cortex-A76). Logits are dequantized INT8 output codes, so a difference is a whole
# number of output steps; the margin is for ARM cores whose kernels were not emulated.
OUTPUT_STEPS = 2


def executorch_bundle(art: Artifact, device: str) -> BundleSpec:
    version = executorch_version()
    # The board's libraries, and this host's too, so that run.py --check also runs before the bundle ships.
    runtimes = {arch: device_runtime(arch) for arch in ARCHES}
    libs = {f"lib/{arch}/{lib}": folder / "lib" / lib for arch, folder in runtimes.items() for lib in (RUNNER, *LIBS)}
    runner = {"runtime": "executorch", "model": "model.int8.pte",
              "libraries": {arch: f"lib/{arch}/{RUNNER}" for arch in runtimes},
              "executorch": version, "delegation": art.meta.get("delegation")}
    quant = art.meta.get("output_quantization")
    requirements = (pins.NUMPY, pins.PILLOW)
    lib_mb = sum(p.stat().st_size for k, p in libs.items() if k.startswith("lib/aarch64/")) / 2**20
    notes = f"""
## ExecuTorch on the board

`run.py` hands each preprocessed image to `lib/aarch64/libet_runner.so` (through ctypes), a small library
compiled for aarch64 from edgeincep's `et_runner.cpp` against ExecuTorch {version}'s runtime libraries beside it
({lib_mb:.0f} MB in all: the runtime, its optimized kernels, the XNNPACK delegate and the thread pool, taken
unchanged from the `executorch=={version}` aarch64 wheel). `lib/x86_64/` holds the same for an x86-64 Linux
machine, so `python3 run.py --check` runs on the host before the bundle ships.

The board needs no torch: ExecuTorch's Python module would (it links libtorch, and PyPI's aarch64 torch is a
CUDA build of several GB), its runtime libraries do not. They need glibc 2.28 or newer (Raspberry Pi OS
bullseye and later). Delegation: {_delegation(art)}.
"""
    return BundleSpec(device=device, model_files={"model.int8.pte": art.path}, runner=runner,
                      runner_source=RUNNER_SOURCE, requirements=requirements,
                      requirements_txt=pins.NOTES[device] + "".join(f"{r}\n" for r in requirements),
                      tolerance=lambda host: _tolerance(quant), title=TITLE, readme_notes=notes,
                      extra_files=lambda _facts: libs, platform=device_kind(device).platform, imports=("numpy", "PIL"))


def _delegation(art: Artifact) -> str:
    d = art.meta.get("delegation") or {}
    if not d:
        return "not recorded"
    return (f"{d['delegated_ops']} ops run by XNNPACK in {d['delegates']} delegate(s), "
            f"{d['cpu_ops']} on ExecuTorch's own kernels")


def _tolerance(quant: dict | None) -> tuple[dict, str]:
    """What --check accepts (edgeincep_common.deviation): output codes compared as integers when the output is
    quantized, else the same top-1."""
    if not quant:
        return {"executorch": None}, "the same top-1 (the model's output quantization was not recorded)."
    tol = {"output_steps": OUTPUT_STEPS, **quant}
    why = (f"the same top-1, and output codes within {OUTPUT_STEPS} quantization steps ({quant['scale']:.6g} each) of "
           "the host's, compared as integers. ExecuTorch's XNNPACK INT8 kernels gave the host's output codes exactly "
           "on arm64 as a Raspberry Pi 4 and 5 (Cortex-A72, Cortex-A76, emulated by qemu) for the reference models' "
           "test images measured; the margin covers ARM cores whose kernels were not emulated.")
    return {"executorch": tol}, why
