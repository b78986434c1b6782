"""Quantization-aware fine-tuning in PyTorch: the last rung of the escalation ladder.

The model's BatchNorm is folded first (every backend quantizes the folded conv), then every Conv2d and
Linear computes on fake-quantized inputs and weights with the grid the builders use: activations
asymmetric uint8 per tensor, ranges fixed from the calibration images (min/max), and weights symmetric
int8 per output channel (scale = max |w| / 127, recomputed each step so it follows the weights).
Gradients pass the rounding straight through, so the weights learn to sit where INT8 keeps them.

The loss is distillation from the untouched FP32 model (what a run gates is agreement with it), optionally
mixed with cross-entropy on the training labels (`label_weight`).

Two files come out: the Q/DQ ONNX of the fake-quantized model (its learned grid, what TensorRT-style
explicit quantization reads) and the FP32 ONNX of the fine-tuned weights, which a backend's own PTQ
builder recalibrates into its native INT8 format.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeincep.console import err


class FakeQuant(nn.Module):
    """Wraps a Conv2d or Linear: fake-quantized input (uint8, per tensor) and weights (int8, per channel)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.register_buffer("act_min", torch.tensor(float("inf")))
        self.register_buffer("act_max", torch.tensor(float("-inf")))
        self.observing = True
        self.active = False
        # Plain Python numbers / a detached tensor, not buffers: an ONNX trace must see them as constants.
        self.scale, self.zero = 1.0, 0
        self.frozen_weight_scale: torch.Tensor | None = None

    def start(self) -> None:
        """Stop observing; fake-quantize from now on with the observed range (always holding zero)."""
        lo, hi = min(float(self.act_min), 0.0), max(float(self.act_max), 0.0)
        self.scale = max((hi - lo) / 255.0, 1e-8)
        self.zero = min(max(round(-lo / self.scale), 0), 255)
        self.observing, self.active = False, True

    def freeze(self) -> None:
        """Fix the weight scales (after training, before export)."""
        self.frozen_weight_scale = self._weight_scale().clone()

    def _weight_scale(self) -> torch.Tensor:
        return (self.inner.weight.detach().abs().flatten(1).amax(1) / 127.0).clamp_min(1e-12).float()

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.act_min = torch.minimum(self.act_min, x.detach().min())
            self.act_max = torch.maximum(self.act_max, x.detach().max())
        if not self.active:
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero, 0, 255)

    def _weight(self) -> torch.Tensor:
        w = self.inner.weight
        if not self.active:
            return w
        scale = self.frozen_weight_scale if self.frozen_weight_scale is not None else self._weight_scale()
        zero = torch.zeros(w.shape[0], dtype=torch.int32)
        # symmetric: |w| / scale <= 127, so -128 is never reached; ONNX export accepts only (-128, 127)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self._act(x), self._weight()
        if isinstance(self.inner, nn.Conv2d):
            c = self.inner
            return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)
        return F.linear(x, w, self.inner.bias)


def wrap(model: nn.Module) -> list[FakeQuant]:
    """Replace every Conv2d / Linear of `model` in place; the wrappers in module order."""
    wrapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                fq = FakeQuant(child)
                setattr(parent, name, fq)
                wrapped.append(fq)
    return wrapped


def unwrap(model: nn.Module) -> nn.Module:
    """A float copy of `model` with the (fine-tuned) Conv2d / Linear back in place of their wrappers."""
    plain = copy.deepcopy(model)
    for parent in list(plain.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FakeQuant):
                setattr(parent, name, child.inner)
    return plain


@dataclass
class QatConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-5
    label_weight: float = 0.0   # the rest of the loss is distillation from the FP32 model
    seed: int = 0
    threads: int = 0


@dataclass
class QatResult:
    model: nn.Module            # the fake-quantized model (wrappers in place), eval mode
    float_model: nn.Module      # its fine-tuned weights as a plain float model
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    agreement_before: float = 0.0   # fake-quantized model vs FP32 on the held-out check images
    agreement_after: float = 0.0
    steps_done: int = 0             # fewer than asked when the deadline came first


def _agreement(a: nn.Module, b: nn.Module, x: np.ndarray) -> float:
    with torch.inference_mode():
        xs = torch.from_numpy(x)
        return float((a(xs).argmax(1) == b(xs).argmax(1)).float().mean())


def fine_tune(model: nn.Module, calib_x: np.ndarray, train_x: np.ndarray, train_y: np.ndarray,
              cfg: QatConfig, check_x: np.ndarray | None = None, deadline: float = math.inf) -> QatResult:
    """QAT of `model` (left untouched) on preprocessed NCHW float images `train_x` with labels `train_y`; no step
    starts after `deadline` (time.monotonic()), and the result says how many ran."""
    from edgeincep.export.fold import fold_batchnorm

    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    teacher = fold_batchnorm(model).eval()
    student = fold_batchnorm(model).eval()
    fqs = wrap(student)
    with torch.inference_mode():
        for i in range(0, len(calib_x), 32):  # the activation ranges: min/max over the calibration images
            student(torch.from_numpy(calib_x[i:i + 32]))
    for fq in fqs:
        fq.start()
    check = check_x if check_x is not None else calib_x[:256]
    before = _agreement(student, teacher, check)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    history = []
    # eval mode throughout: the folded model has no BatchNorm left, and dropout would only add noise to
    # a distillation target
    with err.status(f"quantization-aware fine-tuning ({cfg.steps} steps of {cfg.batch_size})") as status:
        done = 0
        for step in range(cfg.steps):
            if time.monotonic() > deadline:
                break
            done = step + 1
            idx = rng.choice(len(train_x), size=min(cfg.batch_size, len(train_x)), replace=False)
            x = torch.from_numpy(train_x[idx])
            y = torch.from_numpy(train_y[idx].astype(np.int64))
            with torch.no_grad():
                target = teacher(x)
            logits = student(x)
            loss = (F.kl_div(F.log_softmax(logits, 1), F.log_softmax(target, 1), log_target=True,
                             reduction="batchmean") * (1 - cfg.label_weight)
                    + F.cross_entropy(logits, y) * cfg.label_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 20 == 0 or step == cfg.steps - 1:
                value = loss.item()
                history.append({"step": step, "loss": round(value, 5)})
                status.update(f"quantization-aware fine-tuning: step {step + 1}/{cfg.steps}, loss {value:.4f}")
    student.eval()
    for fq in fqs:
        fq.freeze()
    after = _agreement(student, teacher, check)
    return QatResult(student, unwrap(student), history, time.perf_counter() - t0, before, after, done)


def export_qdq(result: QatResult, out: Path, example: np.ndarray, metadata: dict[str, str]) -> Path:
    """The fake-quantized model as Q/DQ ONNX (QuantizeLinear/DequantizeLinear around every Conv/Gemm input
    and weight), written atomically with the run's metadata."""
    import onnx

    from edgeincep.export.metadata import write_metadata
    from edgeincep.export.onnx import output_name
    from edgeincep.fsutil import atomic_path

    with atomic_path(out) as tmp:
        torch.onnx.export(result.model.eval(), (torch.from_numpy(example[:1].copy()),), str(tmp), dynamo=False,
                          do_constant_folding=True, opset_version=17, input_names=["input"],
                          output_names=[output_name(result.float_model)],
                          dynamic_axes={"input": {0: "batch"}, output_name(result.float_model): {0: "batch"}})
        proto = onnx.load(str(tmp))
        write_metadata(proto, metadata | {"edgeincep.quantization": "quantization-aware fine-tuning (edgeincep QAT): "
                                          "uint8 activations per tensor, int8 weights per channel"})
        onnx.save(proto, str(tmp))
    return out

