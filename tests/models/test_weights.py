"""Checkpoints load from safetensors or weights-only torch files; anything else is refused clearly."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from edgeincep.core.errors import CheckpointError, OfflineError
from edgeincep.models import create_model
from edgeincep.models.weights import build_with_weights, load_checkpoint

NAME = "inception_resnet_v1_cls"


@pytest.fixture()
def small_sd():
    torch.manual_seed(0)
    return create_model(NAME, width=0.125, num_classes=10).state_dict()


def _same(model, sd):
    return all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


def test_safetensors_round_trip_with_width_from_metadata(tmp_path, small_sd):
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in small_sd.items()}, str(path), metadata={"width": "0.125"})
    loaded = build_with_weights(NAME, str(path))
    assert _same(loaded.model, small_sd)
    assert loaded.model.num_classes == 10
    assert any("10-class classifier" in n for n in loaded.notes)
    assert len(loaded.checkpoint.sha256) == 64


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd},
    lambda sd: {"model": sd, "epoch": 3},
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
])
def test_torch_files_nested_or_prefixed_load_weights_only(tmp_path, small_sd, wrap):
    path = tmp_path / "m.pt"
    torch.save(wrap(small_sd), path)
    loaded = build_with_weights(NAME, str(path), width=0.125)
    assert _same(loaded.model, small_sd)


class Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoint_needing_pickle_is_refused_and_never_executed(tmp_path, small_sd):
    marker = tmp_path / "pwned"
    Payload.marker = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": small_sd, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused: the checkpoint holds pickled Python objects") as e:
        load_checkpoint(str(path))
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_raw_pickle_file_is_refused(tmp_path):
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(str(path))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, small_sd, suffix):
    path = tmp_path / f"m{suffix}"
    if suffix == ".pt":
        torch.save(small_sd, path)
    else:
        save_file({k: v.contiguous() for k, v in small_sd.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(str(path))


def test_empty_and_missing_checkpoints(tmp_path):
    empty = tmp_path / "e.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(str(empty))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "nope.pt"))


def test_wrong_architecture_lists_counts_and_first_keys(tmp_path, small_sd):
    path = tmp_path / "v4.safetensors"
    other = create_model("inception_v4", width=0.125, num_classes=10).state_dict()
    save_file({k: v.contiguous() for k, v in other.items()}, str(path))
    with pytest.raises(CheckpointError) as e:
        build_with_weights(NAME, str(path), width=0.125)
    msg = str(e.value)
    assert str(path) in msg and "does not fit inception_resnet_v1_cls" in msg
    assert "missing" in msg and "unexpected" in msg and "conv2d_1a.conv.weight" in msg
    assert "\n" not in msg


def test_wrong_shapes_are_named(tmp_path, small_sd):
    path = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in small_sd.items()}, str(path))
    with pytest.raises(CheckpointError, match="wrong-shape"):
        build_with_weights(NAME, str(path), width=0.25)


def test_cadene_classifier_name_is_aliased_for_inception_resnet_v2(tmp_path):
    sd = create_model("inception_resnet_v2", width=0.125, num_classes=5).state_dict()
    sd = {k.replace("classif.", "last_linear."): v for k, v in sd.items()}
    path = tmp_path / "cadene.pth"
    torch.save(sd, path)
    loaded = build_with_weights("inception_resnet_v2", str(path), width=0.125)
    assert loaded.model.num_classes == 5


def test_hub_download_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"cannot fetch hf-hub:timm/inception_v4\.tf_in1k") as e:
        load_checkpoint("hf-hub:timm/inception_v4.tf_in1k")
    assert "\n" not in str(e.value)
