"""What ONNX Runtime's U8S8 kernels give on an x86 CPU without VNNI, beside this CPU, for the same files.

    python benchmarks/saturation.py [--model inception_resnet_v2] [--cpu Haswell] [--out out/saturation]

Builds the reference model's default ONNX Runtime INT8 (U8S8) and scores it against FP32 on a held-out probe of the
Fashion-MNIST train split (30 per class, disjoint from the shipped calibration images, as the test suite's probe),
once natively and once with the same interpreter and files under `qemu-x86_64-static -cpu CPU`: qemu's CPUID then
says what that CPU has, so ONNX Runtime picks the kernels it would pick there (Haswell: AVX2, no VNNI, 16-bit
saturating adds of 8-bit products; see edgeincep/quantize/saturation.py). Writes saturation.json. Needs Debian's
qemu-user-static and dataset-fashion-mnist (`make test-prerequisites`); the emulated half takes a few minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

# Run in the child, natively or emulated: only numpy and onnxruntime, on the files the parent wrote.
SCORE = """
import json, sys
import numpy as np, onnxruntime as ort
work = sys.argv[1]
x, y = np.load(work + "/x.npy"), np.load(work + "/y.npy")
def run(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 50]})[0] for i in range(0, len(x), 50)])
f, q = run(work + "/fp32.onnx"), run(work + "/int8.onnx")
print(json.dumps({"images": len(x), "agreement": float((f.argmax(1) == q.argmax(1)).mean()),
                  "sqnr_db": float(10 * np.log10((f ** 2).sum() / ((f - q) ** 2).sum())),
                  "top1_fp32": float((f.argmax(1) == y).mean()), "top1_int8": float((q.argmax(1) == y).mean())}))
"""


def prepare(model: str, work: Path) -> dict:
    from edgeincep.data import fashion_mnist as fm
    from edgeincep.export.onnx import labels_from_metadata, preprocess_from_metadata, read_metadata
    from edgeincep.paths import DEFAULT_CALIBRATION
    from edgeincep.pipeline.export_stage import run_export
    from edgeincep.quantize.calibration import load_calibration
    from edgeincep.recipes import find_recipe
    from edgeincep.registry import get_backend

    x, y = fm.load_split("train")
    probe = work / "probe"
    if not probe.is_dir():
        fm.write_folder(x, y, fm.held_out_indices(y, 30, seed=11, exclude=fm.folder_indices(DEFAULT_CALIBRATION)),
                        probe, "train")
    fp32 = run_export(model, weights="reference", out_dir=work / "export").path
    meta = read_metadata(fp32)
    pre = preprocess_from_metadata(meta)
    calib = load_calibration(DEFAULT_CALIBRATION, pre, count=300, seed=0)
    art = get_backend("onnxruntime").build(fp32, calib, find_recipe(model, "onnxruntime"), work / "int8")
    probe_set = load_calibration(probe, pre, count=300, seed=0)  # all of them
    names = labels_from_metadata(meta)
    np.save(work / "x.npy", probe_set.x)
    np.save(work / "y.npy", np.asarray([names.index(Path(p).parent.name) for p in probe_set.paths]))
    shutil.copyfile(fp32, work / "fp32.onnx")
    shutil.copyfile(art.path, work / "int8.onnx")
    return {"model": model, "fp32": str(fp32), "int8": str(art.path), "format": art.fmt}


def score(work: Path, cpu: str | None) -> dict:
    python = os.path.realpath(sys.executable)
    # Under qemu the venv's interpreter link is resolved, so its site-packages is named explicitly.
    code = f"import sys; sys.path[:0] = [{sysconfig.get_paths()['purelib']!r}]\n" + SCORE
    cmd = [python, "-c", code, str(work)]
    if cpu:
        qemu = shutil.which("qemu-x86_64-static")
        if qemu is None:
            sys.exit("saturation: qemu-x86_64-static is not installed (Debian's qemu-user-static)")
        cmd = [qemu, "-cpu", cpu, *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        sys.exit(f"saturation: the {'emulated' if cpu else 'native'} run failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="inception_resnet_v2")
    ap.add_argument("--cpu", default="Haswell", help="qemu's CPU model for the emulated run")
    ap.add_argument("--out", type=Path, default=Path("out/saturation"))
    args = ap.parse_args()
    from edgeincep.quantize.saturation import WIDE_INT8, cpu_flags, u8s8_saturates

    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    record = prepare(args.model, work)
    record["native"] = {**score(work, None), "u8s8_saturates": u8s8_saturates(),
                        "vnni_flags": sorted(cpu_flags() & set(WIDE_INT8))}
    record["emulated"] = {**score(work, args.cpu), "cpu": args.cpu}
    (work / "saturation.json").write_text(json.dumps(record, indent=1))
    for side in ("native", "emulated"):
        r = record[side]
        print(f"{side:9s} agreement {r['agreement']:.2%}  SQNR {r['sqnr_db']:.1f} dB  "
              f"top-1 {r['top1_fp32']:.2%} -> {r['top1_int8']:.2%}")
    print(f"wrote {work / 'saturation.json'}")


if __name__ == "__main__":
    main()
