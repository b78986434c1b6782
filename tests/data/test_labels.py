"""Class names: ImageNet-1k in timm's order, label files, folders and CSVs matched to the model's classes by name."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgeincep.core.errors import DataError, UserError
from edgeincep.data.folders import model_labels, scan_folder
from edgeincep.data.labels import (
    IMAGENET_1K,
    class_index,
    hub_label_set,
    imagenet_1k,
    read_labels_csv,
    resolve_labels,
)
from edgeincep.models import create_model
from edgeincep.paths import DEFAULT_CALIBRATION

IMAGENET_NAMES = [c.name for c in imagenet_1k()]


def _pngs(n: int) -> list:
    return sorted(DEFAULT_CALIBRATION.rglob("*.png"))[:n]


def test_imagenet_1k_is_the_standard_index_order():
    classes = imagenet_1k()
    assert len(classes) == 1000 == len({c.id for c in classes}) == len({c.name for c in classes})
    assert (classes[0].id, classes[0].name) == ("n01440764", "tench")
    assert (classes[151].id, classes[151].name) == ("n02085620", "Chihuahua")
    assert (classes[999].id, classes[999].name) == ("n15075141", "toilet tissue")
    # The two first lemmas ImageNet repeats carry their synset, so a board's output is never ambiguous
    assert classes[134].name == "crane (n02012849)" and classes[517].name == "crane (n03126707)"


def test_timm_in1k_hub_ids_name_their_label_set():
    assert hub_label_set("hf-hub:timm/inception_v4.tf_in1k") == IMAGENET_1K
    assert hub_label_set("hf-hub:timm/inception_resnet_v2.tf_ens_adv_in1k") == IMAGENET_1K
    assert hub_label_set("hf-hub:timm/vit_base_patch16_224.augreg_in21k") is None
    assert hub_label_set("/data/model.safetensors") is None


def test_a_label_count_that_does_not_fit_the_classifier_is_one_line(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("cat\ndog\n")
    with pytest.raises(UserError, match=r"names.txt: 2 class names, but the model's classifier has 3 classes"):
        resolve_labels(f, 3)
    with pytest.raises(UserError, match=r"label set imagenet-1k: 1000 class names, but .* has 10 classes"):
        resolve_labels(IMAGENET_1K, 10)
    (tmp_path / "names.json").write_text(json.dumps(["a", "b", "a"]))
    with pytest.raises(UserError, match="'a' appears more than once"):
        resolve_labels(tmp_path / "names.json", 3)
    assert resolve_labels(f, 2) == ["cat", "dog"]


def test_a_class_is_named_by_its_synset_its_name_or_its_lemmas():
    index = class_index(IMAGENET_NAMES)
    assert index["n02085620"] == index["Chihuahua"] == 151
    assert index["tench, Tinca tinca"] == index["tench"] == 0
    assert "crane" not in index  # two classes share it: neither is guessed
    assert index["n03126707"] == 517


def test_an_imagenet_subset_folder_gets_the_true_class_indices(tmp_path):
    for synset, n in (("n02085620", 2), ("n01440764", 1)):  # Chihuahua (151) and tench (0), not classes 0 and 1
        (tmp_path / synset).mkdir()
        for p in _pngs(n):
            shutil.copy(p, tmp_path / synset / p.name)
    images = scan_folder(tmp_path)
    assert images.labels == [0, 1, 1]  # sorted folder order
    assert model_labels(images, IMAGENET_NAMES).tolist() == [0, 151, 151]


def test_a_folder_the_model_does_not_know_is_one_error_naming_it(tmp_path):
    (tmp_path / "n99999999").mkdir()
    shutil.copy(_pngs(1)[0], tmp_path / "n99999999" / "a.png")
    with pytest.raises(DataError, match=r"class 'n99999999' \(.*n99999999/\) is not a class of the model"):
        model_labels(scan_folder(tmp_path), IMAGENET_NAMES)


def _flat(tmp_path, n=3):
    root = tmp_path / "flat"
    root.mkdir()
    for i, p in enumerate(_pngs(n)):
        shutil.copy(p, root / f"img_{i}.png")
    return root


def test_a_flat_folder_is_labelled_by_a_csv(tmp_path):
    root = _flat(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nimg_0.png,Chihuahua\nimg_1.png,n02085620\nimages/img_2.png,tench\n")
    images = scan_folder(root, labels_csv=csv)
    assert images.labelled and model_labels(images, IMAGENET_NAMES).tolist() == [151, 151, 0]


def test_kaggles_imagenet_solution_csv_is_recognised(tmp_path):
    root = _flat(tmp_path, 2)
    for i in range(2):
        (root / f"img_{i}.png").rename(root / f"ILSVRC2012_val_0000000{i + 1}.JPEG")
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 10 20 30 40 n01440764 1 2 3 4\n"
                   "ILSVRC2012_val_00000001,n02085620 5 5 90 90\n")
    images = scan_folder(root, labels_csv=csv)
    assert model_labels(images, IMAGENET_NAMES).tolist() == [151, 0]


@pytest.mark.parametrize("body,message", [
    ("file,label\nimg_0.png,tench\nimg_9.png,tench\nimg_1.png,tench\nimg_2.png,tench\n",
     r"labels.csv: row 3: img_9.png is not an image of the folder"),
    ("file,label\nimg_0.png,tench\nimg_1.png,tench\nimg_0.png,goldfish\nimg_2.png,tench\n",
     r"labels.csv: row 4: img_0.png is labelled again \(first at row 2\)"),
    ("name,kind\nimg_0.png,tench\n", r"labels.csv: row 1: the header must name a file column"),
    ("file,label\nimg_0.png,tench\nimg_1.png,tench\n", r"labels.csv: no row labels .*img_2.png"),
    ("file,label\nimg_0.png,tench\nimg_1.png\nimg_2.png,tench\n", r"labels.csv: row 3: 1 column\(s\)"),
    ("", r"labels.csv: labels CSV is empty"),
])
def test_a_bad_csv_is_one_error_naming_the_csv_and_the_row(tmp_path, body, message):
    root = _flat(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text(body)
    with pytest.raises(DataError, match=message):
        scan_folder(root, labels_csv=csv)


def test_a_csv_class_the_model_does_not_know_names_its_row(tmp_path):
    root = _flat(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nimg_0.png,tench\nimg_1.png,unicorn\nimg_2.png,tench\n")
    with pytest.raises(DataError, match=r"class 'unicorn' \(.*labels.csv row 3\) is not a class of the model"):
        model_labels(scan_folder(root, labels_csv=csv), IMAGENET_NAMES)


def test_read_labels_csv_reports_labels_in_file_order(tmp_path):
    root = _flat(tmp_path, 2)
    files = sorted(root.iterdir())
    csv = tmp_path / "l.csv"
    csv.write_text("Label,File\n7,img_1.png\n3,img_0.png\n")
    labels, origin = read_labels_csv(csv, files)
    assert labels == ["3", "7"] and origin["7"].endswith("l.csv row 2")
    # a decimal label is a class index where the model has no class of that name
    assert model_labels(scan_folder(root, labels_csv=csv), IMAGENET_NAMES).tolist() == [3, 7]


@pytest.fixture(scope="module")
def always_chihuahua(tmp_path_factory):
    """A 1000-class checkpoint that predicts class 151 for every image, written without class names (as timm's
    model.safetensors is)."""
    model = create_model("inception_resnet_v1_cls", width=0.125, num_classes=1000)
    with torch.no_grad():
        model.last_linear.weight.zero_()
        model.last_linear.bias.zero_()
        model.last_linear.bias[151] = 10.0
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"width": "0.125"})
    return path


def _validate(cli, fp32, images, *extra):
    out = images.parent / f"{images.name}.json"
    r = cli("validate", fp32, "--images", images, "--json", out, *extra)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())["reference"]


def test_validating_on_one_imagenet_class_folder_scores_it_as_that_class(tmp_path, cli, always_chihuahua):
    folder = tmp_path / "val" / "n02085620"
    folder.mkdir(parents=True)
    for p in _pngs(4):
        shutil.copy(p, folder / p.name)
    common = ("--model", "inception_resnet_v1_cls", "--weights", always_chihuahua, "--input-size", "75")
    r = cli("export", *common, "--out", tmp_path / "named", "--labels", "imagenet-1k")
    assert r.exit_code == 0, r.output
    fp32 = next((tmp_path / "named").glob("*.fp32.onnx"))
    assert _validate(cli, fp32, tmp_path / "val")["top1"] == 1.0

    # the same images flat, labelled by a CSV
    flat = tmp_path / "flat"
    shutil.copytree(folder, flat)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\n" + "".join(f"{p.name},n02085620\n" for p in sorted(flat.iterdir())))
    assert _validate(cli, fp32, flat, "--val-labels", csv)["top1"] == 1.0

    # without names the folder can only be matched by its position: class 0, a top-1 of 0, and both are said
    r = cli("export", *common, "--out", tmp_path / "unnamed")
    assert r.exit_code == 0 and "--labels imagenet-1k" in r.output
    out = tmp_path / "unnamed.json"
    r = cli("validate", next((tmp_path / "unnamed").glob("*.fp32.onnx")), "--images", tmp_path / "val", "--json", out)
    assert "taken as classes 0..0 in sorted order; pass --labels" in " ".join(r.output.split())
    assert json.loads(out.read_text())["reference"]["top1"] == 0.0


def test_export_names_a_labels_file_that_does_not_fit(tmp_path, cli, always_chihuahua):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    r = cli("export", "--model", "inception_resnet_v1_cls", "--weights", always_chihuahua, "--input-size", "75",
            "--out", tmp_path / "o", "--labels", names)
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].endswith(
        "names.txt: 2 class names, but the model's classifier has 1000 classes")
    assert not list((tmp_path / "o").glob("*.onnx"))


def test_the_names_reach_the_onnx_metadata(tmp_path, always_chihuahua):
    from edgeincep.export.onnx import labels_from_metadata, read_metadata
    from edgeincep.pipeline.export_stage import run_export

    fp32 = run_export("inception_resnet_v1_cls", weights=str(always_chihuahua), out_dir=tmp_path, input_size=75,
                      labels="imagenet-1k").path
    names = labels_from_metadata(read_metadata(fp32))
    assert names == IMAGENET_NAMES and np.asarray(names)[151] == "Chihuahua"


def test_a_timm_imagenet_hub_checkpoint_gets_imagenet_names_unasked(tmp_path, monkeypatch):
    """hf-hub:timm/*.tf_in1k resolved from a Hugging Face cache laid out as hf_hub_download leaves it (offline)."""
    from edgeincep.export.onnx import labels_from_metadata, read_metadata
    from edgeincep.pipeline.export_stage import run_export

    snapshot = tmp_path / "hf" / "hub" / "models--timm--inception_resnet_v2.tf_in1k"
    commit = "0" * 40
    (snapshot / "snapshots" / commit).mkdir(parents=True)
    (snapshot / "refs").mkdir()
    (snapshot / "refs" / "main").write_text(commit)
    sd = create_model("inception_resnet_v2", width=0.125, num_classes=1000).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(snapshot / "snapshots" / commit / "model.safetensors"))
    from huggingface_hub import constants

    # huggingface_hub reads its environment once, at import: set both, whichever test imported it first
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    fp32 = run_export("inception_resnet_v2", weights="hf-hub:timm/inception_resnet_v2.tf_in1k", width=0.125,
                      out_dir=tmp_path / "out", input_size=75).path
    assert labels_from_metadata(read_metadata(fp32)) == IMAGENET_NAMES
