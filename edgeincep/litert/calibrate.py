"""TensorFlow's TFLite calibrator, run on every core: the images are split across processes.

TensorFlow's calibrator runs the float model one image at a time in one thread and holds the GIL
while it does (two calibrators in two threads took as long as one after the other). On
full-size Inception-ResNet-v2 at 299 px that is ~0.7 s an image, over three minutes for 300.

Its statistics are the plain minimum and maximum of every tensor over all images (calibration
logger `MinMax::Update`, no averaging), and min/max are exact under any split. So each worker
calibrates a share of the images with TensorFlow's own calibrator, and the shares are merged by
element-wise min/max written into the first worker's calibrated model in place: the result is
byte-identical to one calibrator fed every image (tests/litert/test_calibrate.py).

Images are fed one at a time, as TensorFlow's converter feeds its representative dataset:
batching them changes float rounding in the convolutions, so the ranges would differ in the
last bit from what the converter gives.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeincep.children import child_env, die_with_parent, last_line
from edgeincep.core.errors import ConversionError

# A child costs a TensorFlow import and a copy of the model (~5 s): worth it only when the
# parent alone would spend longer than this on the child's share.
MIN_CHILD_SECONDS = 15.0


def _stats(model: bytearray):
    """(min, max) float32 views into `model`'s bytes for every tensor with calibration statistics."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for s in range(root.SubgraphsLength()):
        sub = root.Subgraphs(s)
        for t in range(sub.TensorsLength()):
            q = sub.Tensors(t).Quantization()
            if q is not None and q.MinLength() and q.MaxLength():
                yield (s, t), q.MinAsNumpy(), q.MaxAsNumpy()


def merge(first: bytes, others: list[bytes]) -> bytes:
    """`first` with every tensor's range widened to cover the ranges in `others` (same model)."""
    out = bytearray(first)
    ranges = {key: (lo, hi) for key, lo, hi in _stats(out)}  # views: writing them edits `out`
    for other in others:
        seen = {key: (lo, hi) for key, lo, hi in _stats(bytearray(other))}
        if seen.keys() != ranges.keys():
            raise ConversionError("TFLite calibration workers returned different models; cannot merge their ranges")
        for key, (lo, hi) in seen.items():
            np.minimum(ranges[key][0], lo, out=ranges[key][0])
            np.maximum(ranges[key][1], hi, out=ranges[key][1])
    return bytes(out)


def calibrate(float_model: bytes, images: np.ndarray, workers: int | None = None) -> bytes:
    """The float model with TensorFlow's calibration statistics over `images` (N x H x W x C float32).

    `workers`: processes to use (default: the cores this process may run on). The parent times
    its first image and starts children only when their share would take longer than starting them.
    """
    from tensorflow.lite.python.optimize import calibrator

    model = bytes(calibrator.add_intermediate_tensors(float_model))
    images = np.ascontiguousarray(images, dtype=np.float32)
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(images)))
    with tempfile.TemporaryDirectory(prefix="edgeincep-tflite-calib-") as tmp, _Workers(Path(tmp)) as pool:
        def representative():
            t0 = time.perf_counter()
            yield [images[:1]]
            rest = np.arange(1, len(images))
            parts = np.array_split(rest, workers)
            if workers > 1 and len(parts[1]) * (time.perf_counter() - t0) > MIN_CHILD_SECONDS:
                pool.start(model, [images[idx] for idx in parts[1:]])
            else:
                parts = [rest]
            for i in parts[0]:
                yield [images[i:i + 1]]

        mine = bytes(calibrator.Calibrator(model).calibrate(representative))
        return merge(mine, pool.results())


class _Workers:
    """Child processes calibrating their share of the images, each in `python -m` this module."""

    def __init__(self, work: Path):
        self.work = work
        self.children: list[tuple[int, subprocess.Popen]] = []

    def start(self, model: bytes, shares: list[np.ndarray]) -> None:
        (self.work / "model.tflite").write_bytes(model)
        for k, share in enumerate(shares, start=1):
            np.save(self.work / f"part{k}.npy", share)
            with open(self.work / f"worker{k}.log", "wb") as log:
                self.children.append((k, subprocess.Popen([sys.executable, "-m", __name__, str(self.work), str(k)],
                                                          stdout=log, stderr=subprocess.STDOUT, env=child_env())))

    def results(self) -> list[bytes]:
        out = []
        for k, proc in self.children:
            rc = proc.wait()
            result = self.work / f"calibrated{k}.tflite"
            if rc != 0 or not result.is_file():
                log = (self.work / f"worker{k}.log").read_text(errors="replace")
                raise ConversionError(f"TFLite calibration worker {k} failed (exit {rc}): {last_line(text=log)}")
            out.append(result.read_bytes())
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for _, proc in self.children:  # on an error or an interrupt in the parent: no orphans
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _child(work: Path, k: int) -> None:
    die_with_parent()
    from tensorflow.lite.python.optimize import calibrator

    images = np.load(work / f"part{k}.npy")

    def representative():
        for i in range(len(images)):
            yield [images[i:i + 1]]

    calibrated = calibrator.Calibrator((work / "model.tflite").read_bytes()).calibrate(representative)
    out = work / f"calibrated{k}.tflite"
    tmp = out.with_suffix(".part")
    tmp.write_bytes(bytes(calibrated))
    tmp.replace(out)


if __name__ == "__main__":
    _child(Path(sys.argv[1]), int(sys.argv[2]))
