"""The host predictor: a .pte on ExecuTorch's own Python runtime (the XNNPACK delegate on this CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class ExecuTorchPredictor:
    """Programs are lowered for a static batch of one, as a device runs them: a batch is run image by image."""

    def __init__(self, path: Path, threads: int = 0, name: str | None = None, precision: str = "int8",
                 delegation: dict | None = None):
        import torch

        from edgeincep.backends.executorch.quiet import quiet_native, quiet_python

        with quiet_python(), quiet_native():
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            if threads:
                # XNNPACK's threads come from ExecuTorch's one process-wide pool.
                portable_lib._unsafe_reset_threadpool(threads)
            self.program = Runtime.get().load_program(Path(path))
            self.method = self.program.load_method("forward")
        self._torch = torch
        self.name = name or Path(path).name
        # What ran where: a partly delegated graph runs the rest on ExecuTorch's portable kernels, in float.
        d = delegation or {}
        where = (f"XNNPACK: {d['delegated_ops']} of {d['delegated_ops'] + d['cpu_ops']} ops delegated"
                 if "delegated_ops" in d else "XNNPACK")
        self.executed_precision = f"{precision} ({where})"

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows = [self.method.execute([self._torch.from_numpy(x[i:i + 1])])[0].numpy() for i in range(len(x))]
        return np.concatenate(rows).astype(np.float32, copy=False)
