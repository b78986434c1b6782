"""The pinned runtime requirements each device bundle's requirements.txt is written from.

Kept free of imports so ci/arm64-sysroot.sh can run this file with any python3 (`python3 pins.py rpi`)
and fill the emulated Raspberry Pi with exactly what the bundle tells a Pi to install.

numpy and Pillow are the host's versions (constraints.txt): the runner's preprocessing then runs the
same code on both sides. Each pin has aarch64 wheels for CPython 3.11 (Raspberry Pi OS bookworm) to
3.13 (trixie); ai-edge-litert's are tagged manylinux_2_27 only (glibc 2.27+).
"""
from __future__ import annotations

import sys

NUMPY = "numpy==2.4.6"
PILLOW = "pillow==13.0.0"
LITERT = "ai-edge-litert==2.3.0"
OPENVINO = "openvino==2026.4.1"
# The installer a bundle carries with its wheels (run from its own wheel file on the device); 25.0 is the last
# pip for Python 3.8 (JetPack 5), and installs on 3.9-3.13 alike.
PIP = "pip==25.0.1"

REQUIREMENTS: dict[str, list[str]] = {
    "rpi": [LITERT, NUMPY, PILLOW],
    "coral": [LITERT, NUMPY, PILLOW],
    "intel": [OPENVINO, NUMPY, PILLOW],
}

NOTES: dict[str, str] = {
    "rpi": "# Raspberry Pi 4/5, 64-bit Raspberry Pi OS (aarch64), Python 3.11-3.13.\n",
    "coral": "# Coral USB Accelerator / M.2 / PCIe on a 64-bit Linux host (aarch64 or x86-64), Python 3.11-3.13.\n"
             "# The Edge TPU delegate is not on PyPI: apt-get install libedgetpu1-std from Coral's apt repository\n"
             "# (https://coral.ai/software/#debian-packages). Without it run.py runs the CPU model.\n",
    "intel": "# Intel CPU (x86-64), Linux or Windows, Python 3.10-3.13.\n",
}


def requirements_txt(device: str) -> str:
    return NOTES[device] + "".join(f"{r}\n" for r in REQUIREMENTS[device])


if __name__ == "__main__":
    sys.stdout.write(requirements_txt(sys.argv[1]))
