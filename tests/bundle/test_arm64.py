"""The Raspberry Pi bundles' run.py inside an emulated arm64 Debian userland, as a Pi 4 and a Pi 5.

ci/arm64-sysroot.sh builds the userland (Debian's arm64 python3 and the bundle's pinned aarch64 wheels,
plus Raspberry Pi /proc/cpuinfo and /sys cpu files); qemu-aarch64-static runs it (bundle/emulate.py) as
a Pi 4 (Cortex-A72) and a Pi 5 (Cortex-A76, whose dot-product instructions select other XNNPACK int8
kernels).

What is true, and asserted for every reference model's default bundle: XNNPACK's int8 kernels on ARM give
the host's output codes exactly. That holds because the one operator whose rounding differs by
architecture (XNNPACK's int8 MUL: float32 on x86, fixed point on ARM) is given no product near a
rounding tie (litert/rewrite.exact_border_factors); before that, the Inception-v4 and
Inception-ResNet-v2 bundles differed by up to 5 output steps on most images and failed their own check.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import prerequisites
import pytest

from edgeincep.bundle import emulate
from edgeincep.core.artifact import Artifact
from edgeincep.data.folders import ImageSet, iter_batches
from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
from edgeincep.litert.bundle import LITERT_OUTPUT_STEPS
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.pipeline.bundle_stage import write_artifact_bundle
from edgeincep.pipeline.export_stage import run_export
from edgeincep.quantize.calibration import load_calibration
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend

MODELS = ["inception_resnet_v1", "inception_resnet_v2", "inception_v4"]
UNSEEN = 200  # test-split images (the bundles' samples come from the training split)


@pytest.fixture(scope="session")  # session: decided before the session-scoped model builds, so a skip is instant
def emulator() -> None:
    reason = emulate.unavailable_reason() or get_backend("tflite").unavailable_reason()
    if reason:
        prerequisites.missing(f"the arm64 proof cannot run: {reason}")


@pytest.fixture(scope="module")
def int8_models(emulator, tflite_int8, tmp_path_factory) -> dict[str, Artifact]:
    """Every reference model's default TFLite INT8 model (Inception-ResNet-v1's is shared with other tests)."""
    arts = {"inception_resnet_v1": tflite_int8}
    for name in MODELS[1:]:
        fp32 = run_export(name, weights="reference", out_dir=tmp_path_factory.mktemp(name)).path
        calib = load_calibration(DEFAULT_CALIBRATION, preprocess_from_metadata(read_metadata(fp32)), count=300, seed=0)
        arts[name] = get_backend("tflite").build(fp32, calib, Recipe(), fp32.parent)
    return arts


@pytest.fixture(scope="module")
def rpi_bundles(int8_models, tmp_path_factory):
    return {name: write_artifact_bundle(art, "rpi", {}, Recipe(), tmp_path_factory.mktemp(f"rpi-{name}")).folder
            for name, art in int8_models.items()}


@pytest.fixture(scope="module")
def unseen_images(fashion_mnist_test, tmp_path_factory) -> list:
    from edgeincep.data import fashion_mnist as fm

    x, y = fashion_mnist_test
    root = tmp_path_factory.mktemp("unseen")
    fm.write_folder(x, y, list(range(0, len(y), len(y) // UNSEEN)), root, "test")
    return sorted(root.rglob("*.png"))


def _host_logits(art: Artifact, paths: list) -> np.ndarray:
    pred = get_backend("tflite").load(art, 0)
    pre = preprocess_from_metadata(get_backend("tflite").metadata(art))
    images = ImageSet(paths[0].parent, list(paths), None, [])
    return np.concatenate([pred.predict(x) for x, _, _ in iter_batches(images, pre, 16)])


@pytest.mark.parametrize("board", sorted(emulate.BOARDS))
def test_rpi_runner_under_arm64_emulation_equals_the_host_on_every_image_kind(emulator, board, rpi_bundles,
                                                                              tflite_int8, mixed_images, tmp_path):
    folder = rpi_bundles["inception_resnet_v1"]
    out = tmp_path / "arm64.json"
    done = emulate.run_emulated(emulate.BOARDS[board], [str(folder / "run.py"), "--json", str(out),
                                                        *map(str, mixed_images)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Without the sysroot's cpuinfo files LiteRT crashes or silently runs without XNNPACK: require it ran.
    assert "Created TensorFlow Lite XNNPACK delegate for CPU" in done.stderr
    got = json.loads(out.read_text())
    assert got["versions"]["machine"] == "aarch64" and got["backend"] == "litert-cpu"
    assert got["versions"]["ai-edge-litert"] == "2.3.0"
    arm64 = np.asarray([r["logits"] for r in got["results"]], np.float32)
    np.testing.assert_array_equal(arm64, _host_logits(tflite_int8, mixed_images))


@pytest.mark.parametrize("board", sorted(emulate.BOARDS))
@pytest.mark.parametrize("model", MODELS)
def test_default_rpi_bundle_passes_its_check_on_the_board(emulator, rpi_bundles, model, board):
    folder = rpi_bundles[model]
    done = emulate.run_emulated(emulate.BOARDS[board], ["run.py", "--check"], folder)  # what deploy --check runs
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6/6 samples match the host" in done.stdout and "bit-identical" in done.stdout
    assert f"tolerance: {LITERT_OUTPUT_STEPS} output steps" in done.stdout


@pytest.mark.parametrize("model", MODELS)
def test_boards_give_the_hosts_output_codes_on_unseen_images(emulator, rpi_bundles, int8_models, unseen_images,
                                                            model):
    host = _host_logits(int8_models[model], unseen_images)
    record = emulate.device_drift(rpi_bundles[model], unseen_images, host, host, None)
    assert record["images"] == len(unseen_images) >= UNSEEN
    for board, entry in record["boards"].items():
        assert entry["max_output_steps"] == 0 and entry["identical_logits"] == 1.0, (board, entry)
        assert entry["top1_agreement_host_int8"] == 1.0 and entry["disagreements"] == []


def test_run_reports_what_each_board_computed_and_why_not_when_it_cannot(emulator, fmnist_val, tmp_path,
                                                                         monkeypatch):
    from edgeincep.pipeline.run import run_pipeline

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("validation: {device_images: 30}\n")
    kw = dict(weights="reference", target="tflite", val_dir=fmnist_val, calib_dir=None, out_dir=tmp_path / "out",
              limit=60, recipe_path=recipe)
    report = run_pipeline("inception_resnet_v1", **kw)
    int8 = next(a for a in report["validation"]["artifacts"] if a["precision"] == "int8")
    emulated = int8["bundle"]["emulated"]
    assert emulated["images"] == 30 and set(emulated["boards"]) == {"pi4", "pi5"}
    for entry in emulated["boards"].values():
        assert entry["top1_agreement_host_int8"] == 1.0 and entry["max_output_steps"] == 0
        assert entry["top1"] == entry["host_top1"]
    assert "device" in report["stages"]
    assert "On the device" in (tmp_path / "out" / "report.md").read_text()
    assert "On the device (arm64, emulated)" in (tmp_path / "out" / "report.html").read_text()

    monkeypatch.setenv("EDGEINCEP_ARM64_CACHE", str(tmp_path / "nowhere"))
    again = run_pipeline("inception_resnet_v1", **kw)  # the stage cache makes this a rerun of the reports
    int8 = next(a for a in again["validation"]["artifacts"] if a["precision"] == "int8")
    assert int8["bundle"]["emulated"] == {"skipped": f"no arm64 sysroot under {tmp_path / 'nowhere'} "
                                                     "(bash ci/arm64-sysroot.sh)"}


def test_a_board_run_that_fails_is_one_line_naming_the_board(emulator, rpi_bundles, unseen_images, tmp_path):
    import shutil

    broken = Path(shutil.copytree(rpi_bundles["inception_resnet_v1"], tmp_path / "broken"))
    (broken / "model.int8.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(RuntimeError, match=r"^pi5: run\.py exited 1: .+") as e:
        emulate.classify_on_board(broken, unseen_images[:2], emulate.BOARDS["pi5"])
    assert "\n" not in str(e.value)
