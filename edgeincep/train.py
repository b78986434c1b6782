"""Training (or fine-tuning) on a labelled image set, CPU-friendly and reproducible.

Images are decoded and resized once to the model input size (uint8, kept in memory), so an
epoch costs only the network: flips and small shifts are the augmentation. The schedule is
one-cycle SGD with Nesterov momentum and label smoothing, which reaches a good optimum in few
epochs. The result is a .safetensors checkpoint whose header carries everything needed to
rebuild and preprocess: model, width, classes, labels, preprocessing.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgeincep import __version__
from edgeincep.console import progress
from edgeincep.core.errors import UserError
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.images import resample_filter
from edgeincep.fsutil import atomic_path
from edgeincep.models.registry import check_input_size, create_model


@dataclass
class TrainConfig:
    model: str
    width: float = 0.125
    input_size: int = 75
    epochs: int = 6
    batch_size: int = 128
    lr: float = 0.2
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    seed: int = 0
    threads: int = 2
    max_shift: int = 4  # px at input size
    init: str | None = None  # start from these weights (fine-tuning, or a second cycle)
    teachers: tuple[str, ...] = ()  # distil from these trained models (their logits averaged)
    distill_alpha: float = 0.5  # weight of the teachers' soft targets against the labels
    temperature: float = 2.0


def resize_uint8(images: np.ndarray, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """(N, H, W) or (N, H, W, 3) uint8 -> (N, size, size, 3) uint8, the eval path's resize with crop_pct 1."""
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, a in enumerate(images):
        img = Image.fromarray(a).convert("RGB").resize((size, size), resample_filter(interpolation))
        out[i] = np.asarray(img)
    return out


def _to_input(batch_u8: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    x = batch_u8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if max_shift:
        pad = F.pad(x, (max_shift,) * 4, mode="replicate")
        dx, dy = (int(v) for v in torch.randint(0, 2 * max_shift + 1, (2,), generator=gen))
        x = pad[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return x


def evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, pre: Preprocess,
             batch_size: int = 500) -> tuple[float, float]:
    model.eval()
    top1 = top5 = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            logits = model(_to_input(torch.from_numpy(images[i:i + batch_size]), pre))
            y = torch.as_tensor(np.array(labels[i:i + batch_size], np.int64))
            k = min(5, logits.shape[1])
            top = logits.topk(k, 1).indices
            top1 += int((top[:, 0] == y).sum())
            top5 += int((top == y[:, None]).any(1).sum())
    return top1 / len(images), top5 / len(images)


def _initial_model(cfg: TrainConfig, num_classes: int) -> tuple[torch.nn.Module, dict | None]:
    """A fresh network, or one started from `cfg.init`; a classifier of another size is re-initialised."""
    from edgeincep.models.weights import build_with_weights, sha256_file

    model = create_model(cfg.model, num_classes=num_classes, width=cfg.width)
    if not cfg.init:
        return model, None
    loaded = build_with_weights(cfg.model, cfg.init, width=cfg.width)
    sd = loaded.model.state_dict()
    head = model.spec.classifier
    if sd[f"{head}.weight"].shape != model.state_dict()[f"{head}.weight"].shape:
        sd = {k: v for k, v in sd.items() if not k.startswith(f"{head}.")}
    missing, _ = model.load_state_dict(sd, strict=False)  # only a re-initialised classifier may be missing
    ckpt = loaded.checkpoint
    return model, {"source": ckpt.path.name, "sha256": sha256_file(ckpt.path),
                   "reinitialised": sorted(missing)}


def _teachers(cfg: TrainConfig, num_classes: int) -> list[torch.nn.Module]:
    from edgeincep.models.weights import build_with_weights

    nets = []
    for src in cfg.teachers:
        loaded = build_with_weights(_checkpoint_model(src), src)
        if loaded.model.spec.num_classes != num_classes:
            raise UserError(f"teacher {src} has {loaded.model.spec.num_classes} classes, the data has {num_classes}")
        nets.append(loaded.model.eval().to(memory_format=torch.channels_last))
    return nets


def _checkpoint_model(src: str) -> str:
    from edgeincep.models.weights import load_checkpoint

    name = load_checkpoint(src).metadata.get("model")
    if not name:
        raise UserError(f"teacher {src} does not say which model it is (no 'model' in its metadata)")
    return name


def _loss(logits: torch.Tensor, y: torch.Tensor, teachers: list[torch.nn.Module], x: torch.Tensor,
          cfg: TrainConfig) -> torch.Tensor:
    hard = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    if not teachers:
        return hard
    with torch.inference_mode():
        soft = torch.stack([t(x) for t in teachers]).mean(0)
    t = cfg.temperature
    # Hinton et al.: the T^2 factor keeps the soft term's gradients on the scale of the hard one.
    kd = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(soft.clone() / t, 1), reduction="batchmean") * t * t
    return (1 - cfg.distill_alpha) * hard + cfg.distill_alpha * kd


def train(cfg: TrainConfig, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          class_names: list[str], out: Path) -> dict:
    """Train (from scratch, or from `cfg.init`); write `out` (.safetensors) and return the model card's facts."""
    check_input_size(cfg.input_size)
    if len(train_x) < cfg.batch_size:
        raise UserError(f"{len(train_x)} training images are fewer than one batch of {cfg.batch_size}; "
                        f"lower --batch-size")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    model, init_facts = _initial_model(cfg, len(class_names))
    teachers = _teachers(cfg, len(class_names))
    pre = Preprocess(cfg.input_size, model.spec.preprocess.mean, model.spec.preprocess.std, 1.0, "bicubic")
    tr = torch.from_numpy(resize_uint8(train_x, cfg.input_size))
    te = resize_uint8(test_x, cfg.input_size)
    ytr = torch.from_numpy(train_y.astype(np.int64))
    model = model.train().to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0}],
                          lr=cfg.lr, momentum=0.9, nesterov=True)
    steps = (len(tr) // cfg.batch_size) * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    t0 = time.time()
    history = []
    with progress() as bar:
        task = bar.add_task(f"train {cfg.model}", total=steps)
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(len(tr), generator=gen)
            running = 0.0
            for b in range(len(tr) // cfg.batch_size):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x = _augment(_to_input(tr[idx], pre), gen, cfg.max_shift)
                loss = _loss(model(x), ytr[idx], teachers, x, cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running = 0.98 * running + 0.02 * loss.item() if b else loss.item()
                bar.update(task, advance=1, description=f"train {cfg.model} ep {epoch + 1}/{cfg.epochs} loss {running:.3f}")
            acc1, acc5 = evaluate(model, te, test_y, pre)
            history.append({"epoch": epoch + 1, "loss": round(running, 4), "top1": acc1, "top5": acc5,
                            "minutes": round((time.time() - t0) / 60, 2)})
            bar.console.print(f"epoch {epoch + 1}: test top-1 {acc1:.2%} top-5 {acc5:.2%}")
    model.eval()
    facts = {
        "model": cfg.model, "width": cfg.width, "num_classes": len(class_names), "labels": class_names,
        "preprocess": pre.to_dict(), "train_config": asdict(cfg), "history": history,
        "top1": history[-1]["top1"], "top5": history[-1]["top5"], "wall_minutes": round((time.time() - t0) / 60, 2),
        "torch": torch.__version__, "edgeincep": __version__,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if init_facts:
        facts["init"] = init_facts
    save_checkpoint(model, out, facts)
    return facts


def save_checkpoint(model: torch.nn.Module, out: Path, facts: dict) -> None:
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"model": facts["model"], "width": repr(float(facts["width"])), "num_classes": str(facts["num_classes"]),
            "labels": json.dumps(facts["labels"]), "preprocess": json.dumps(facts["preprocess"]),
            "edgeincep.version": __version__}
    with atomic_path(out) as tmp:
        save_file(sd, str(tmp), metadata=meta)
