"""The device side of an ExecuTorch bundle: et_runner.cpp compiled for the board (libet_runner.so) against
ExecuTorch's own runtime libraries, taken from the executorch wheel of the host's version for the board.

ExecuTorch's Python runtime links libtorch, and the aarch64 torch wheel on PyPI is a CUDA build: no
board wants that. The runtime libraries themselves (libexecutorch, the optimized kernels, the XNNPACK
delegate, the thread pool) link only the C and C++ runtimes, so a small library that loads the .pte behind a
C interface (run.py calls it through ctypes) is all the board needs beside numpy and Pillow.

Built once per (ExecuTorch version, architecture, runner source) under the user cache and reused.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from edgeincep.core.errors import UserError
from edgeincep.device import wheels
from edgeincep.device.wheels import pip_download

SOURCE = Path(__file__).with_name("et_runner.cpp")
RUNNER = "libet_runner.so"
LIBS = ("libexecutorch.so", "libexecutorch_kernels_optimized.so", "libexecutorch_backend_xnnpack.so",
        "libexecutorch_threadpool.so")
# Kernels and the delegate register themselves when loaded: linked even though no symbol is referenced.
LINK = ["-Wl,--no-as-needed", "-lexecutorch_backend_xnnpack", "-lexecutorch_kernels_optimized",
        "-lexecutorch_threadpool", "-lexecutorch", "-Wl,--as-needed"]
COMPILERS = {"aarch64": "aarch64-linux-gnu-g++", "x86_64": "g++"}
INSTALL_HINT = {"aarch64": "apt-get install g++-aarch64-linux-gnu", "x86_64": "apt-get install g++"}


def cache_root() -> Path:
    return wheels.cache_root() / "executorch-runtime"


def executorch_version() -> str:
    return metadata.version("executorch")


def _host_package() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("executorch")  # a namespace package: no __file__
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _wheel_package(version: str, work: Path) -> Path:
    """ExecuTorch's aarch64 wheel, downloaded (no dependencies) and unpacked: its lib/ and include/."""
    try:
        found = pip_download([f"executorch=={version}"], work / "wheel", machine="aarch64", glibc="2.39",
                             python="3.11", deps=False)
    except UserError as e:
        raise UserError(f"executorch=={version} for aarch64 (the bundle's runtime libraries): {e}") from None
    with zipfile.ZipFile(found[0]) as whl:
        whl.extractall(work / "unpacked", [n for n in whl.namelist()
                                           if n.startswith(("executorch/lib/", "executorch/include/"))])
    return work / "unpacked" / "executorch"


def device_runtime(arch: str) -> Path:
    """A folder `lib/` with libet_runner.so and the runtime libraries it loads (rpath $ORIGIN), for `arch`."""
    version = executorch_version()
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(LINK).encode()).hexdigest()[:12]
    final = cache_root() / f"{version}-{arch}-{digest}"
    if all((final / "lib" / lib).is_file() for lib in (RUNNER, *LIBS)):
        return final
    compiler = shutil.which(COMPILERS[arch])
    if compiler is None:
        raise UserError(f"the ExecuTorch device runner is compiled for {arch} with {COMPILERS[arch]}, which is not "
                        f"installed ({INSTALL_HINT[arch]})")
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{final.name}-", dir=final.parent) as tmp:
        work = Path(tmp)
        package = _host_package() if arch == os.uname().machine else _wheel_package(version, work)
        out = work / "runtime"
        (out / "lib").mkdir(parents=True)
        for lib in LIBS:
            shutil.copy2(package / "lib" / lib, out / "lib" / lib)
        include = package / "include"
        cmd = [compiler, "-std=c++17", "-O2", "-DC10_USING_CUSTOM_GENERATED_MACROS", f"-I{include}",
               f"-I{include / 'executorch/runtime/core/portable_type/c10'}", "-shared", "-fPIC", str(SOURCE),
               "-o", str(out / "lib" / RUNNER), f"-L{out / 'lib'}", *LINK, "-Wl,-rpath,$ORIGIN", "-s"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            first = next((ln for ln in done.stderr.splitlines() if "error" in ln), done.stderr.strip()[:300])
            raise UserError(f"compiling the ExecuTorch device runner for {arch} failed: {first}", SOURCE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(out, final)
    return final
