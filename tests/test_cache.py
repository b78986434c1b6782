"""A rerun skips finished stages; a changed input reruns what depends on it."""
from __future__ import annotations

import torch
from safetensors.torch import save_file

from edgeincep.models import create_model
from edgeincep.pipeline.export_stage import run_export


def _ckpt(path, seed):
    torch.manual_seed(seed)
    sd = create_model("inception_resnet_v1_cls", width=0.125, num_classes=10).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"width": "0.125"})
    return str(path)


def test_export_is_reused_until_the_checkpoint_changes(tmp_path, labelled_dir):
    ckpt = tmp_path / "m.safetensors"
    kw = dict(out_dir=tmp_path / "out", input_size=75, verify_images=labelled_dir)
    first = run_export("inception_resnet_v1_cls", weights=_ckpt(ckpt, 0), **kw)
    mtime = first.path.stat().st_mtime_ns
    again = run_export("inception_resnet_v1_cls", weights=str(ckpt), **kw)
    assert again.cached and again.path.stat().st_mtime_ns == mtime
    changed = run_export("inception_resnet_v1_cls", weights=_ckpt(ckpt, 1), **kw)
    assert not changed.cached and changed.path.stat().st_mtime_ns != mtime


def test_an_output_changed_on_disk_is_rebuilt_not_reused(tmp_path, labelled_dir):
    # Another tool rewriting the export (onnx2tf renames nodes in place), a truncated copy, a hand edit:
    # the stage record holds each output's sha256, so the changed file is never trusted.
    kw = dict(out_dir=tmp_path / "out", input_size=75, verify_images=labelled_dir)
    first = run_export("inception_resnet_v1_cls", weights=_ckpt(tmp_path / "m.safetensors", 0), **kw)
    data = bytearray(first.path.read_bytes())
    data[-1] ^= 0xFF
    first.path.write_bytes(bytes(data))
    again = run_export("inception_resnet_v1_cls", weights=str(tmp_path / "m.safetensors"), **kw)
    assert not again.cached
    assert again.path.read_bytes() != bytes(data)
