"""The Intel bundle: the INT8 IR (.xml + .bin) run by the shared device runner on OpenVINO's CPU plugin."""
from __future__ import annotations

import numpy as np

from edgeincep.core.artifact import Artifact
from edgeincep.core.bundle import BundleSpec
from edgeincep.core.errors import UserError
from edgeincep.device import RUNNER_SOURCE, pins
from edgeincep.device.kinds import device_kind

DEVICE = "intel"


def _tolerance(host_logits: np.ndarray) -> tuple[dict, str]:
    tol = float(0.02 * np.abs(host_logits).max())
    return {"openvino-cpu": tol}, ("OpenVINO picks kernels per CPU (AVX2, AVX-512, AMX): a different Intel CPU may "
                                   "round an int8 activation differently, so logits agree to 2% of the largest.")


def intel_bundle(art: Artifact) -> BundleSpec:
    xml, bins = art.path, [p for p in art.files() if p.suffix == ".bin"]
    if not bins:
        raise UserError("the OpenVINO IR has no .bin beside it", xml)
    # read_model finds the weights by the .xml's stem, so both files are renamed together.
    return BundleSpec(
        device=DEVICE, model_files={"model.int8.xml": xml, "model.int8.bin": bins[0]},
        runner={"runtime": "openvino", "model": "model.int8.xml",
                "inference_precision": art.meta.get("inference_precision", "f32"),
                "performance_hint": art.meta.get("performance_hint", "latency")},
        runner_source=RUNNER_SOURCE, requirements=tuple(pins.REQUIREMENTS[DEVICE]),
        requirements_txt=pins.requirements_txt(DEVICE), tolerance=_tolerance, title="Intel CPU, OpenVINO CPU plugin",
        platform=device_kind(DEVICE).platform, imports=("numpy", "PIL", "openvino"))
