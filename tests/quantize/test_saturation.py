"""Which CPUs clip 8-bit dot products in 16 bits (x86 without VNNI), the fact a run notes beside its U8S8 numbers.
What the kernels do on this machine is checked against it in tests/escalation/test_qat.py."""
from __future__ import annotations

import pytest

from edgeincep.quantize import saturation


@pytest.mark.parametrize(("machine", "flags", "saturates"), [
    ("x86_64", {"sse4_2", "avx2", "fma"}, True),                 # Haswell .. Skylake, AMD Zen 1-3
    ("x86_64", {"avx2", "avx512f", "avx512bw"}, True),           # Skylake-SP: AVX-512 but no VNNI
    ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, False),       # Cascade Lake and later, Zen 4
    ("x86_64", {"avx2", "avx_vnni"}, False),                     # Alder Lake: VNNI without AVX-512
    ("x86_64", {"avx2", "amx_int8", "avx512_vnni"}, False),
    ("x86_64", set(), False),                                    # nothing known: no claim
    ("aarch64", {"asimd", "asimddp"}, False),                    # Arm accumulates in 32 bits
])
def test_only_x86_without_vnni_saturates(monkeypatch, machine, flags, saturates):
    monkeypatch.setattr(saturation.platform, "machine", lambda: machine)
    monkeypatch.setattr(saturation, "cpu_flags", lambda: flags)
    assert saturation.u8s8_saturates() is saturates

