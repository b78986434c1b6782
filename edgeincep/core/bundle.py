"""What a backend says about its device bundle; the generic writer (edgeincep.bundle) does the rest."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BundleFacts:
    """What the writer measured and read before the README is written."""
    meta: dict[str, str]            # the artifact's edgeincep.* metadata
    preprocess: dict                # Preprocess.to_dict()
    drift: dict                     # the host's numbers the device should reproduce
    entry: dict                     # the artifact's validation entry (latency, drift, gate), {} outside a run
    reference: dict | None          # the FP32 reference's entry
    model_files: list[str]          # bundle names of the model file(s)
    samples: int                    # how many samples --check runs
    tolerance_why: str              # why --check accepts what it accepts
    wheels: dict | None = None      # the manifest's runtime.wheels entry when the bundle carries its wheels


@dataclass(frozen=True)
class DevicePlatform:
    """What the device's pip would install for: the wheels a bundle carries are downloaded for this."""
    machine: str                    # aarch64, x86_64 (platform.machine() on the device)
    python: str                     # the device's usual CPython, X.Y (overridable per bundle)
    glibc: str                      # the oldest glibc the device runs, X.Y: manylinux tags up to it
    provided: tuple[str, ...] = ()  # what the device's OS brings and the bundle must not (JetPack's TensorRT)
    system_site_packages: bool = False  # the runtime environment sees the OS's Python packages (for `provided`)


@dataclass(frozen=True)
class BundleSpec:
    device: str                                     # manifest "device" and the folder's suffix: rpi, coral, intel, ...
    model_files: Mapping[str, Path]                 # bundle name -> the artifact's file(s)
    runner: dict                                    # the manifest's runner entry: what run.py opens and how
    runner_source: Path                             # the device program shipped as run.py
    requirements: tuple[str, ...]                   # pinned device packages (manifest)
    requirements_txt: str                           # requirements.txt as written
    # host logits of the samples -> (per runner backend what --check accepts beyond the same top-1, why)
    tolerance: Callable[[Any], tuple[dict, str]]
    title: str = ""                                 # the standard README: what runs the model on the device
    readme_notes: str = ""                          # the standard README: a backend's own section
    readme: Callable[[BundleFacts], str] | None = None  # a backend's own README instead of the standard one
    extra_files: Callable[[BundleFacts], Mapping[str, Path | str | bytes]] | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict)  # backend-specific manifest entries
    executable: frozenset[str] = frozenset({"run.py"})
    platform: DevicePlatform | None = None          # what the bundle's wheels are for (None: it carries none)
    imports: tuple[str, ...] = ()                   # modules run.py needs: probed on the device before --check
