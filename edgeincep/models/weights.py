"""Checkpoint loading: safetensors, torch files (weights_only), hub ids; never plain unpickling.

`load_checkpoint(source)` returns a flat state dict; `build_with_weights` builds a model that
fits it (adopting the checkpoint's class count) and loads it strictly, or raises one
CheckpointError that names the file and summarises what does not fit.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgeincep.core.errors import CheckpointError, OfflineError
from edgeincep.fsutil import sha256_file
from edgeincep.models.registry import ModelSpec, create_model, get_spec

HUB_PREFIX = "hf-hub:"
FACENET_PREFIX = "facenet:"
# facenet-pytorch's release files (the project's own GitHub release assets).
FACENET_URLS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    path: Path
    sha256: str
    # safetensors header metadata; edgeincep writes model/width/num_classes/labels there
    metadata: dict[str, str]


def resolve(source: str) -> Path:
    """A local path, or a hub id downloaded into the Hugging Face / torch cache."""
    if source.startswith(HUB_PREFIX):
        return _download_hf(source[len(HUB_PREFIX):])
    if source.startswith(FACENET_PREFIX):
        return _download_url(source, FACENET_URLS.get(source[len(FACENET_PREFIX):]))
    path = Path(source).expanduser()
    if not path.exists():
        raise CheckpointError("checkpoint file not found", path)
    if path.is_dir():
        raise CheckpointError("is a directory, expected a .safetensors/.pt/.pth checkpoint file", path)
    return path


def _download_hf(repo_id: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a core dependency
        raise CheckpointError(f"huggingface_hub is not installed ({e})") from None
    try:
        return Path(hf_hub_download(repo_id, "model.safetensors"))
    except Exception as e:  # noqa: BLE001 - the hub raises many connection/lookup error types
        raise OfflineError(
            f"cannot fetch {HUB_PREFIX}{repo_id} from the Hugging Face hub ({type(e).__name__}); "
            "check the network, or download model.safetensors elsewhere and pass it with --weights FILE"
        ) from None


def _download_url(source: str, url: str | None) -> Path:
    if url is None:
        raise CheckpointError(f"unknown checkpoint '{source}'; known: {', '.join(FACENET_PREFIX + k for k in FACENET_URLS)}")
    try:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        cache.mkdir(parents=True, exist_ok=True)
        dst = cache / url.rsplit("/", 1)[1]
        if not dst.exists():
            torch.hub.download_url_to_file(url, str(dst), progress=True)
        return dst
    except Exception as e:  # noqa: BLE001 - urllib, ssl and OS errors all mean "not fetched"
        raise OfflineError(
            f"cannot download {source} ({type(e).__name__}); check the network, or fetch {url} "
            "elsewhere and pass it with --weights FILE"
        ) from None


def load_checkpoint(source: str) -> Checkpoint:
    path = resolve(source)
    if path.stat().st_size == 0:
        raise CheckpointError("checkpoint is empty (0 bytes)", path)
    if path.suffix == ".safetensors":
        sd, meta = _read_safetensors(path)
    else:
        sd, meta = _read_torch(path), {}
    return Checkpoint(_flatten(sd, path), path, sha256_file(path), meta)


def _read_safetensors(path: Path) -> tuple[dict, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            # safe_open is not iterable, hence keys()
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"not a readable safetensors file (corrupt or truncated: {_first_line(e)})", path) from None


def _read_torch(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = _first_line(e)
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                "refused: the checkpoint holds pickled Python objects beyond tensors, and unpickling "
                "could run arbitrary code; re-save it as a plain state_dict or .safetensors "
                f"({msg})",
                path,
            ) from None
        raise CheckpointError(f"not a readable checkpoint (corrupt pickle: {msg})", path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"not a readable checkpoint (corrupt or truncated: {_first_line(e)})", path) from None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _flatten(obj, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap {'state_dict': ...}-style nesting and DataParallel's `module.` prefix."""
    for _ in range(3):
        if isinstance(obj, dict) and not _is_state_dict(obj):
            inner = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not _is_state_dict(obj):
        raise CheckpointError("holds no state dict of tensors (looked under " + ", ".join(_NESTED_KEYS) + ")", path)
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_state_dict(d: dict) -> bool:
    return bool(d) and sum(isinstance(v, torch.Tensor) for v in d.values()) >= max(1, len(d) // 2)


def apply_aliases(sd: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for old, new in spec.key_aliases.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


def checkpoint_num_classes(sd: dict[str, torch.Tensor], spec: ModelSpec) -> int | None:
    w = sd.get(f"{spec.classifier}.weight")
    return int(w.shape[0]) if w is not None and w.ndim == 2 else None


def mismatch_report(model: nn.Module, sd: dict[str, torch.Tensor], limit: int = 3) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {list(sd[k].shape)} vs model {list(own[k].shape)}"
        for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} wrong-shape keys"]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{label}: {', '.join(keys[:limit])}{more}")
    return "; ".join(parts)


@dataclass
class LoadedModel:
    model: nn.Module
    checkpoint: Checkpoint | None
    notes: list[str]


def build_with_weights(
    name: str, weights: str | None, *, num_classes: int | None = None, width: float | None = None, in_chans: int = 3
) -> LoadedModel:
    """Build `name` and load `weights` strictly. A different classifier size is adopted, and said.

    The width multiplier comes from the argument, else the checkpoint's own metadata, else 1.
    """
    spec = get_spec(name)
    notes: list[str] = []
    if weights is None:
        model = create_model(name, num_classes=num_classes, width=width or 1.0, in_chans=in_chans)
        return LoadedModel(model, None, notes)
    ckpt = load_checkpoint(weights)
    if width is None:
        width = float(ckpt.metadata.get("width", 1.0))
    sd = apply_aliases(ckpt.state_dict, spec)
    found = checkpoint_num_classes(sd, spec)
    if num_classes is None and found is not None and found != spec.num_classes:
        notes.append(f"{ckpt.path.name} has a {found}-class classifier; building {name} with {found} classes")
        num_classes = found
    if num_classes is not None and found is not None and num_classes not in (found, 0):
        raise CheckpointError(f"has a {found}-class classifier, but {num_classes} classes were asked for "
                              f"(drop --num-classes to adopt the checkpoint's {found}, or retrain the classifier)",
                              ckpt.path)
    if found is None and f"{spec.classifier}.weight" not in sd and num_classes is None:
        num_classes = 0 if spec.classifier == "logits" else None  # facenet embedding-only files
    model = create_model(name, num_classes=num_classes, width=width, in_chans=in_chans)
    problem = mismatch_report(model, sd)
    if problem:
        raise CheckpointError(f"does not fit {name}: {problem}", ckpt.path)
    model.load_state_dict(sd, strict=True)
    model.eval()
    return LoadedModel(model, ckpt, notes)
