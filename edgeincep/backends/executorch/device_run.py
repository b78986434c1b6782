#!/usr/bin/env python3
"""Classify images on a board with an ExecuTorch .pte (edgeincep bundle runner).

Needs numpy and Pillow only: the model runs in lib/<machine>/libet_runner.so, a small library linked against
ExecuTorch's runtime libraries beside it (XNNPACK delegate, optimized kernels), called through ctypes.
No torch.

  python3 run.py IMAGE_OR_FOLDER...                # top-5 per image
  python3 run.py --threads 4 --json out.json images/
  python3 run.py --check [--json out.json]         # the bundled samples must give the host's results

Images, preprocessing (the host's, bit for bit) and --check come from edgeincep_common.py beside this
file, the same module every edgeincep bundle runs.
"""
from __future__ import annotations

import ctypes
import json
import platform
import sys
from pathlib import Path

import numpy as np

if __package__:  # imported inside the edgeincep package (the bundle ships this file verbatim)
    from edgeincep.device.common import run, runner_command_line
else:  # the bundle's run.py: edgeincep_common.py lies beside it
    sys.dont_write_bytecode = True  # no __pycache__ in the bundle: its files must stay as the manifest lists them
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from edgeincep_common import run, runner_command_line

HERE = Path(__file__).resolve().parent
_FLOATS = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")


class ExecuTorchSession:
    """The .pte's forward method: one CHW float32 image in, its logits out."""

    backend = "executorch"

    def __init__(self, bundle: Path, runner: dict, threads: int = 0):
        machine = platform.machine()
        if machine not in runner["libraries"]:
            raise SystemExit(f"error: this bundle carries ExecuTorch for {', '.join(runner['libraries'])}; "
                             f"this machine is {machine}")
        library = bundle / runner["libraries"][machine]
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as e:
            raise SystemExit(f"error: cannot load {library.name}: {e}") from None
        lib.et_open.restype = ctypes.c_void_p
        lib.et_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.et_error.restype = ctypes.c_char_p
        lib.et_input_numel.restype = lib.et_output_numel.restype = ctypes.c_uint64
        lib.et_input_numel.argtypes = lib.et_output_numel.argtypes = lib.et_close.argtypes = [ctypes.c_void_p]
        lib.et_run.restype = ctypes.c_int
        lib.et_run.argtypes = [ctypes.c_void_p, _FLOATS, _FLOATS]
        self.lib = lib
        self.handle = lib.et_open(str(bundle / runner["model"]).encode(), int(threads))
        if not self.handle:
            raise SystemExit(f"error: ExecuTorch cannot run {runner['model']}: {lib.et_error().decode()}")
        self.input_size = int(lib.et_input_numel(self.handle))
        self.output = np.empty(int(lib.et_output_numel(self.handle)), np.float32)

    def predict(self, chw: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(chw, dtype=np.float32)
        if data.size != self.input_size:
            raise SystemExit(f"error: the model takes {self.input_size} values per image, got {data.size}")
        if self.lib.et_run(self.handle, data, self.output) != 0:
            raise SystemExit(f"error: ExecuTorch failed: {self.lib.et_error().decode()}")
        return self.output.copy()

    def close(self) -> None:
        if self.handle:
            self.lib.et_close(self.handle)
            self.handle = None


def main(argv: list[str] | None = None) -> int:
    args, bundle, runner, cfg, labels = runner_command_line(
        __doc__.splitlines()[0], HERE, "XNNPACK threads (0: ExecuTorch's default, one per core)", argv)
    session = ExecuTorchSession(bundle, runner, args.threads)
    try:
        results, code = run(session, cfg, labels, bundle, None if args.check else args.images, args.top)
    finally:
        session.close()
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": session.backend, "results": results}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
