"""The Jetson bundle: the Q/DQ INT8 ONNX plus everything needed to build and check the engine on the device.

Contents (beside what every bundle has): the ONNX (fp16 high precision, exactly the validated artifact),
build_engine.sh (the exact trtexec command), run.py (TensorRT runner with an ONNX Runtime fallback; the
same file edgeincep's host predictor imports), expected_drift.json, and a README naming the JetPack /
TensorRT releases it was written for. `run.py --check` compares the samples with the host's logits: the
same top-1 on the engine, logits within 2% on ONNX Runtime's CPU.
"""
from __future__ import annotations

import json

import numpy as np

from edgeincep.backends.tensorrt.engine import EngineSettings, trtexec_command, trtexec_line
from edgeincep.backends.tensorrt.engine import input_name as onnx_input_name
from edgeincep.backends.tensorrt.settings import TensorRtSettings
from edgeincep.core.artifact import Artifact
from edgeincep.core.bundle import BundleFacts, BundleSpec
from edgeincep.core.settings import RecipeBase
from edgeincep.device import JETSON_RUNNER_SOURCE
from edgeincep.device.kinds import device_kind

ENGINE = "model.engine"
ONNX = "model.int8.qdq.onnx"
REQUIREMENTS = ("numpy>=1.24", "Pillow>=10", "onnxruntime>=1.17")
REQUIREMENTS_TXT = ("# TensorRT's Python bindings come with JetPack (python3-libnvinfer); not from PyPI.\n"
                    "numpy>=1.24\nPillow>=10\n# only for `run.py --backend onnxruntime` (the CPU check):\n"
                    "onnxruntime>=1.17\n")


def _tolerance(host_logits: np.ndarray, host_on_engine: bool) -> tuple[dict, str]:
    if host_on_engine:  # the host's own GPU computed the expected logits: other kernels, fp16 elsewhere
        return ({"onnxruntime": None, "tensorrt": None},
                ("the host's logits came from its own TensorRT engine; another GPU, TensorRT release or ONNX Runtime's "
                "CPU picks other kernels, so only the top-1 is compared."))
    tol = float(0.02 * np.abs(host_logits).max())
    return ({"onnxruntime": tol, "tensorrt": None},
            ("on ONNX Runtime's CPU (unoptimised, as on the host) logits agree to 2% of the largest (another CPU's "
             "kernels may round an int8 activation differently); the TensorRT engine picks its own int8 kernels and "
             "runs the rest in fp16, so there only the top-1 is compared."))


def build_script(input_name: str, input_size: int, s: EngineSettings) -> str:
    cmd = trtexec_command(ONNX, ENGINE, input_name=input_name, input_size=input_size, s=s,
                          timing_cache="timing.cache", trtexec="TRTEXEC")
    line = '"$TRTEXEC"' + trtexec_line(cmd).removeprefix("TRTEXEC")
    return f"""#!/usr/bin/env bash
# Builds {ENGINE} for *this* GPU and TensorRT version (engines do not move between them).
# INT8 + FP16: the Q/DQ nodes choose the int8 layers; the rest runs in fp16 rather than fp32.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
{line} \\
  "$@"
echo "built $(pwd)/{ENGINE}; try: python3 run.py --backend tensorrt <images>"
"""


def readme(meta: dict[str, str], s: TensorRtSettings, drift: dict, command: str, input_size: int) -> str:
    model = meta.get("edgeincep.model", "model")
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in drift.items() if k not in ("gate", "images"))
    n = (drift.get("images") or {}).get("count", "?")
    return f"""# {model}: INT8 for TensorRT on Jetson

Written for **JetPack {s.jetpack}** (TensorRT {s.tensorrt_version}, CUDA 12); any TensorRT 10.x should parse
the model. Made by edgeincep {meta.get("edgeincep.version", "")} from checkpoint sha256
`{meta.get("edgeincep.checkpoint_sha256", "unknown")}`.

`{ONNX}` is an explicit-quantization (Q/DQ) INT8 ONNX made with NVIDIA ModelOpt: symmetric int8,
per-channel weights, float bias, fp16 elsewhere. TensorRT engines are tied to the GPU and TensorRT
version that built them, so the engine is built here, on the device.

## 1. Build the engine (once per device / JetPack)

```
./build_engine.sh
```

which runs (trtexec ships with JetPack at /usr/src/tensorrt/bin/trtexec; set TRTEXEC to override):

```
{command}
```

Input `{meta.get("edgeincep.layout", "NCHW float32, RGB")}`, {input_size}x{input_size}, batch 1 to {s.max_batch}.

## 2. Run

```
python3 -m pip install -r requirements.txt   # numpy, Pillow; TensorRT's bindings come with JetPack
python3 run.py path/to/images/               # the engine if built, else ONNX Runtime on the CPU
python3 run.py --backend onnxruntime img.png # the CPU check, no GPU involved
python3 run.py --check                       # the bundled samples must give the host's results
```

`--check` runs `samples/` and compares with `expected.json` (the host's logits): on the engine the top-1 must
match; on ONNX Runtime's CPU the logits must also agree to 2% of the largest. `edgeincep deploy --check` runs it
on the device before switching the bundle in.

`run.py` reproduces edgeincep's preprocessing exactly (preprocess.json): shorter side to
floor(size / crop_pct), centre crop, /255, (x - mean) / std, RGB, NCHW.

## Expected drift (measured on the host, ONNX Runtime CPU, {n} images)

| measure | value |
| --- | --- |
{rows}

The engine computes the non-quantized layers in fp16 and picks its own int8 kernels, so expect
top-1 agreement with these figures within a few tenths of a point, not bit-identical logits.
`manifest.json` lists every file's sha256 and size, to check a copy against.
"""


def jetson_bundle(art: Artifact, recipe: RecipeBase) -> BundleSpec:
    from edgeincep.backends.tensorrt.engine import unavailable_reason
    from edgeincep.export.metadata import read_metadata

    s = recipe.tensorrt
    size = int(json.loads(read_metadata(art.path)["edgeincep.preprocess"])["input_size"])
    input_name = onnx_input_name(art.path)
    engine = EngineSettings.from_recipe(s)
    trtexec = trtexec_command(ONNX, ENGINE, input_name=input_name, input_size=size, s=engine)
    on_engine = unavailable_reason() is None  # then the host predictor (the samples' logits) is the engine

    def extra_files(facts: BundleFacts) -> dict[str, str]:
        return {"build_engine.sh": build_script(input_name, size, engine),
                "expected_drift.json": json.dumps(facts.drift, indent=1, default=str)}

    def readme_text(facts: BundleFacts) -> str:
        return readme(facts.meta, s, facts.drift, trtexec_line(trtexec), size)

    return BundleSpec(device="jetson", model_files={ONNX: art.path},
                      runner={"onnx": ONNX, "engine": ENGINE, "input": input_name},
                      runner_source=JETSON_RUNNER_SOURCE, requirements=REQUIREMENTS, requirements_txt=REQUIREMENTS_TXT,
                      tolerance=lambda host: _tolerance(host, on_engine), readme=readme_text, extra_files=extra_files,
                      manifest={"written_for": {"jetpack": s.jetpack, "tensorrt": s.tensorrt_version},
                                "trtexec": trtexec},
                      executable=frozenset({"build_engine.sh", "run.py"}),
                      platform=device_kind("jetson").platform, imports=("numpy", "PIL"))
