"""Whether this CPU's 8-bit dot products can saturate, which decides whether a U8S8 model computes its own grid.

x86 CPUs without VNNI multiply uint8 by int8 with VPMADDUBSW, which adds each pair of products into a signed
16-bit lane and clips it. ONNX Runtime's U8S8 kernels (QLinearConv, MatMulInteger) use it there, and so does
OpenVINO; both projects document the effect. With full-range int8 weights the clipped sums shift the logits:
measured on the reference Inception-ResNet-v2 at 75 px under `qemu-x86_64 -cpu Haswell`, U8S8 agreement with
FP32 fell from 99.0% to 95.0% and SQNR from 31.9 to 15.7 dB against a VNNI CPU running the same file. VNNI
(AVX512-VNNI, AVX-VNNI, AMX) accumulates in 32 bits and does not clip; Arm's dot-product instructions neither.
"""
from __future__ import annotations

import platform

# The flags of 8-bit dot products that accumulate in 32 bits.
WIDE_INT8 = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> set[str]:
    """The ISA flags /proc/cpuinfo lists (x86 `flags`, Arm `Features`); empty where there is no such file."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()  # noqa: SIM115 - tiny file
    except OSError:
        return set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def u8s8_saturates() -> bool:
    """True on an x86 CPU whose int8 dot products go through 16-bit saturating adds (no VNNI)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    flags = cpu_flags()
    return bool(flags) and not flags & set(WIDE_INT8)


SATURATION_NOTE = ("this CPU has no VNNI, so ONNX Runtime's U8S8 kernels add 8-bit products in saturating 16-bit "
                   "lanes here: the INT8 numbers measured on it are lower than the same file gives on a VNNI CPU "
                   "(Intel since Cascade Lake, AMD since Zen 4) and on Arm")
